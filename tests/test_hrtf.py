"""HRTF data layer: SOFA reading, resampling, interpolation weights and spectra.

Test sets are written with h5py and hold HRIRs that are pure delays with known gains, so the
expected delays, levels and barycentric weights follow from their construction.
"""

from __future__ import annotations

import functools
import math

import h5py
import jax
import numpy as np
import pytest

from renderer.hrtf import (
    HrtfError,
    HrtfSet,
    default_hrtf,
    hrtf_spectra,
    hrtf_spectra_jax,
    interpolation_weights,
    load_sofa,
    prepare_hrtf,
    resample_hrtf,
    resampling_matrix,
)

FS = 44100
TAPS = 64
# octahedron: front, left, back, right, up, down (azimuth, elevation in degrees)
OCTA = np.array([[0, 0], [90, 0], [180, 0], [-90, 0], [0, 90], [0, -90]], dtype=float)
# per direction and ear (left, right): onset delays in samples and gains; right lags for left
OCTA_DELAY = np.array([[20, 20], [12, 28], [20, 20], [28, 12], [19, 19], [21, 21]], dtype=float)
OCTA_GAIN = np.array([[1.0, 1.0], [1.6, 0.4], [0.7, 0.7], [0.4, 1.6], [0.9, 0.9], [0.5, 0.5]])


def unit(az, el):
    """X right, Y front, Z up from degrees (written out here, independently of the package)."""
    az, el = np.broadcast_arrays(np.radians(az), np.radians(el))
    return np.stack([-np.sin(az) * np.cos(el), np.cos(az) * np.cos(el), np.sin(el)], axis=-1)


def delayed_impulses(delays, gains, taps=TAPS):
    """Band-limited (periodic) impulses gain * delta(t - d): (..., taps), fractional d allowed."""
    k = np.arange(taps // 2 + 1)
    spec = gains[..., None] * np.exp(-2j * np.pi * k * delays[..., None] / taps)
    return np.fft.irfft(spec, taps)


def integer_impulses(delays, gains, taps=TAPS):
    out = np.zeros(delays.shape + (taps,))
    for idx in np.ndindex(*delays.shape):
        out[idx + (int(delays[idx]),)] = gains[idx]
    return out


def write_sofa(path, positions, irs, *, rate=FS, pos_type="spherical",
               convention="SimpleFreeFieldHRIR", receivers=None, delay=None, skip=()):
    with h5py.File(path, "w") as f:
        f.attrs["Conventions"] = "SOFA"
        f.attrs["SOFAConventions"] = convention
        f.attrs["Title"] = "test set"
        if "Data.IR" not in skip:
            f["Data.IR"] = np.asarray(irs, dtype=np.float64)
        f["Data.SamplingRate"] = np.array([rate], dtype=float)
        if delay is not None:
            f["Data.Delay"] = np.asarray(delay, dtype=float)
        sp = f.create_dataset("SourcePosition", data=np.asarray(positions, dtype=float))
        sp.attrs["Type"] = pos_type
        if receivers is not None:
            rp = f.create_dataset("ReceiverPosition", data=np.asarray(receivers, dtype=float))
            rp.attrs["Type"] = "cartesian"
    return path


def octa_positions(distance=1.5):
    return np.column_stack([OCTA, np.full(len(OCTA), distance)])


@pytest.fixture
def octa_file(tmp_path):
    return write_sofa(tmp_path / "octa.sofa", octa_positions(),
                      integer_impulses(OCTA_DELAY, OCTA_GAIN))


def phase_delay(spectrum, n_fft, max_bin=None):
    """Group delay in samples from a least-squares fit of the unwrapped phase (low bins)."""
    n = max_bin or n_fft // 8
    k = np.arange(1, n)
    phase = np.unwrap(np.angle(spectrum[..., 1:n]))
    return -np.polyfit(k, phase.T if phase.ndim > 1 else phase, 1)[0] * n_fft / (2 * np.pi)


# ---------------------------------------------------------------------------------------------
# loading


def test_load_spherical(octa_file):
    hrtf = load_sofa(octa_file)
    assert hrtf.sample_rate == FS and isinstance(hrtf.sample_rate, int)
    assert hrtf.directions.shape == (6, 2) and hrtf.hrirs.shape == (6, 2, TAPS)
    assert hrtf.hrirs.dtype == np.float32
    np.testing.assert_allclose(hrtf.directions, OCTA)
    np.testing.assert_array_equal(hrtf.hrirs, np.float32(integer_impulses(OCTA_DELAY, OCTA_GAIN)))
    assert hrtf.name == "test set"
    assert hrtf.distance == pytest.approx(1.5)


def test_load_azimuth_wrapped_and_duplicates_dropped(tmp_path):
    pos = np.vstack([octa_positions(), [[360, 0, 1.5], [45, 90, 1.5]]])
    pos[3, 0] = 270.0                      # right written as 270
    delays = np.vstack([OCTA_DELAY, [[5, 5], [6, 6]]])
    gains = np.vstack([OCTA_GAIN, [[1, 1], [1, 1]]])
    hrtf = load_sofa(write_sofa(tmp_path / "dup.sofa", pos, integer_impulses(delays, gains)))
    np.testing.assert_allclose(hrtf.directions, OCTA, atol=1e-12)
    np.testing.assert_array_equal(hrtf.hrirs, np.float32(integer_impulses(OCTA_DELAY, OCTA_GAIN)))


def test_load_cartesian(tmp_path):
    # SOFA cartesian: x front, y left, z up
    xyz = np.array([[2, 0, 0], [0, 2, 0], [-2, 0, 0], [0, -2, 0], [0, 0, 2], [0, 0, -2.0]])
    hrtf = load_sofa(write_sofa(tmp_path / "cart.sofa", xyz,
                                integer_impulses(OCTA_DELAY, OCTA_GAIN), pos_type="cartesian"))
    np.testing.assert_allclose(unit(*hrtf.directions.T), unit(*OCTA.T), atol=1e-12)
    assert hrtf.directions[1, 0] == pytest.approx(90.0)
    assert hrtf.distance == pytest.approx(2.0)


def test_receiver_positions_decide_left_ear(tmp_path):
    irs = integer_impulses(OCTA_DELAY, OCTA_GAIN)
    swapped = [[[0.0], [-0.09], [0.0]], [[0.0], [0.09], [0.0]]]   # receiver 0 on the right
    hrtf = load_sofa(write_sofa(tmp_path / "rx.sofa", octa_positions(), irs, receivers=swapped))
    np.testing.assert_array_equal(hrtf.hrirs[:, 0], np.float32(irs[:, 1]))
    np.testing.assert_array_equal(hrtf.hrirs[:, 1], np.float32(irs[:, 0]))
    normal = [[[0.0], [0.09], [0.0]], [[0.0], [-0.09], [0.0]]]
    hrtf = load_sofa(write_sofa(tmp_path / "rx2.sofa", octa_positions(), irs, receivers=normal))
    np.testing.assert_array_equal(hrtf.hrirs, np.float32(irs))


def test_data_delay_is_added(tmp_path):
    irs = integer_impulses(OCTA_DELAY, OCTA_GAIN)
    hrtf = load_sofa(write_sofa(tmp_path / "d.sofa", octa_positions(), irs, delay=[[3, 5]]))
    expected = integer_impulses(OCTA_DELAY + [3, 5], OCTA_GAIN, taps=TAPS + 5)
    np.testing.assert_allclose(hrtf.hrirs, expected)


@pytest.mark.parametrize("case", ["convention", "missing_ir", "text", "one_receiver", "nan",
                                  "three_directions", "directory", "bad_type"])
def test_errors_name_the_file(tmp_path, case):
    irs = integer_impulses(OCTA_DELAY, OCTA_GAIN)
    path = tmp_path / f"bad_{case}.sofa"
    expect = ""
    if case == "convention":
        write_sofa(path, octa_positions(), irs, convention="GeneralFIR")
        expect = "GeneralFIR"
    elif case == "missing_ir":
        write_sofa(path, octa_positions(), irs, skip=("Data.IR",))
        expect = "Data.IR"
    elif case == "text":
        path.write_text("this is not a SOFA file\n")
        expect = "HDF5"
    elif case == "one_receiver":
        write_sofa(path, octa_positions(), irs[:, :1])
        expect = "receivers"
    elif case == "nan":
        irs[2, 1, 5] = np.nan
        write_sofa(path, octa_positions(), irs)
        expect = "NaN"
    elif case == "three_directions":
        write_sofa(path, octa_positions()[:3], irs[:3])
        expect = "at least 4"
    elif case == "directory":
        path.mkdir()
        expect = "not a file"
    elif case == "bad_type":
        write_sofa(path, octa_positions(), irs, pos_type="polar")
        expect = "Type"
    with pytest.raises(HrtfError) as info:
        load_sofa(path)
    message = str(info.value)
    assert message.startswith(str(path) + ": ")
    assert expect in message and "\n" not in message


# ---------------------------------------------------------------------------------------------
# resampling


@pytest.mark.parametrize("rate_in, rate_out, freq", [(44100, 48000, 15000.0),
                                                      (48000, 44100, 12000.0),
                                                      (96000, 44100, 9000.0)])
def test_resampling_matrix_reproduces_a_sine_below_the_lower_nyquist(rate_in, rate_out, freq):
    # a sine sampled at rate_in, interpolated to rate_out, equals the same sine sampled at
    # rate_out (away from the ends, where the samples outside count as zeros)
    n_in = 2000
    x = np.sin(2 * np.pi * freq * np.arange(n_in) / rate_in + 0.3)
    y = resampling_matrix(n_in, rate_in, rate_out) @ x
    assert len(y) == math.ceil(n_in * rate_out / rate_in)
    expected = np.sin(2 * np.pi * freq * np.arange(len(y)) / rate_out + 0.3)
    middle = slice(len(y) // 4, 3 * len(y) // 4)
    error = y[middle] - expected[middle]
    assert 10 * np.log10((error ** 2).mean() / (expected[middle] ** 2).mean()) < -70.0


def test_resampling_matrix_removes_what_the_lower_rate_cannot_hold():
    # 30 kHz at 96 kHz down to 44.1 kHz (Nyquist 22.05 kHz): removed, not folded to 14.1 kHz
    n_in = 4000
    x = np.sin(2 * np.pi * 30000.0 * np.arange(n_in) / 96000)
    y = resampling_matrix(n_in, 96000, 44100) @ x
    middle = y[len(y) // 4:3 * len(y) // 4]
    assert np.sqrt((middle ** 2).mean()) < 1e-3


def test_resample_scales_delay_and_keeps_level():
    delays = np.array([[20.0, 31.0]] * 4)
    gains = np.array([[1.0, 0.5]] * 4)
    hrtf = HrtfSet(FS, OCTA[:4].copy(), integer_impulses(delays, gains, 256).astype(np.float32))
    out = resample_hrtf(hrtf, 48000)
    assert out.sample_rate == 48000
    assert out.hrirs.shape == (4, 2, math.ceil(256 * 48000 / 44100))
    n_fft = 4096
    spec = np.fft.rfft(out.hrirs[0].astype(float), n_fft)
    max_bin = int(8000 / 48000 * n_fft)            # fit below 8 kHz
    np.testing.assert_allclose(phase_delay(spec, n_fft, max_bin), [20 * 48 / 44.1, 31 * 48 / 44.1],
                               atol=0.01)
    k1 = round(1000 / 48000 * n_fft)
    np.testing.assert_allclose(np.abs(spec[:, k1]), [1.0, 0.5], rtol=0.01)
    assert resample_hrtf(hrtf, FS) is hrtf


# ---------------------------------------------------------------------------------------------
# interpolation on the octahedron


@functools.cache
def octa_set(fractional=False):
    delays = OCTA_DELAY + (np.array([[0.3, 0.7], [0.45, 0.2], [0.1, 0.9], [0.6, 0.35],
                                     [0.25, 0.5], [0.8, 0.15]]) if fractional else 0.0)
    irs = (delayed_impulses if fractional else integer_impulses)(delays, OCTA_GAIN)
    return HrtfSet(FS, OCTA.copy(), irs.astype(np.float32)), delays


def test_octahedron_model_shapes():
    hrtf, _ = octa_set()
    model = prepare_hrtf(hrtf, FS)
    assert model.unit_vectors.shape == (6, 3)          # poles are measured: nothing added
    assert model.triangles.shape == (8, 3) and model.triangles.dtype == np.int32
    assert model.inverses.shape == (8, 3, 3)
    assert model.fft_size == 512 and model.fft_size >= 2 * model.filter_length
    assert model.filter_length >= TAPS
    assert model.aligned_spectra.shape == (6, 2, 257)
    assert model.aligned_spectra.dtype == np.complex64
    np.testing.assert_allclose(model.unit_vectors, unit(*OCTA.T), atol=1e-15)


def test_weights_one_hot_at_measured_directions():
    hrtf, _ = octa_set()
    model = prepare_hrtf(hrtf, FS)
    idx, w = interpolation_weights(model, unit(*OCTA.T))
    assert idx.dtype == np.int32 and w.dtype == np.float32
    for i in range(6):
        hot = np.flatnonzero(w[i])
        assert hot.size == 1 and w[i, hot[0]] == 1.0 and idx[i, hot[0]] == i


def random_directions(n: int, seed: int) -> np.ndarray:
    """(n, 3) unit vectors spread uniformly over the sphere."""
    v = np.random.default_rng(seed).normal(size=(n, 3))
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_weights_are_barycentric_everywhere():
    hrtf, _ = octa_set()
    model = prepare_hrtf(hrtf, FS)
    v = random_directions(2000, seed=1)
    idx, w = interpolation_weights(model, v)
    assert np.all(w >= 0)
    np.testing.assert_allclose(w.sum(axis=-1), 1.0, atol=1e-6)
    # on the octahedron the face containing v is fixed by the signs of its coordinates and the
    # barycentric weights are |v_i| / sum |v_j| (the face's vertices are the axes)
    expected = np.abs(v) / np.abs(v).sum(axis=1, keepdims=True)
    got = np.zeros((2000, 3))
    axis_of = {0: 1, 1: 0, 2: 1, 3: 0, 4: 2, 5: 2}   # octahedron vertex -> coordinate axis
    for p in range(2000):
        for j in range(3):
            got[p, axis_of[int(idx[p, j])]] += w[p, j]
    np.testing.assert_allclose(got, expected, atol=1e-6)
    # and the weighted sum of the vertex vectors points along v
    s = np.einsum("pk,pki->pi", w.astype(float), unit(*OCTA.T)[idx])
    np.testing.assert_allclose(np.cross(s, v), 0.0, atol=1e-6)
    assert np.all(np.einsum("pi,pi->p", s, v) > 0)
    # any leading shape
    idx2, w2 = interpolation_weights(model, v.reshape(40, 50, 3))
    assert idx2.shape == (40, 50, 3) and w2.shape == (40, 50, 3)


@pytest.mark.parametrize("fractional", [False, True])
def test_measured_direction_reproduces_hrir(fractional):
    hrtf, _ = octa_set(fractional)
    model = prepare_hrtf(hrtf, FS)
    spectra = hrtf_spectra(model, unit(*OCTA.T))
    assert spectra.shape == (6, 2, model.fft_size // 2 + 1) and spectra.dtype == np.complex64
    irs = np.fft.irfft(spectra, model.fft_size)
    np.testing.assert_allclose(irs[..., :TAPS], hrtf.hrirs, atol=2e-6)
    np.testing.assert_allclose(irs[..., TAPS:], 0.0, atol=2e-6)


@pytest.mark.parametrize("fractional", [False, True])
def test_delay_interpolated_midway(fractional):
    hrtf, delays = octa_set(fractional)
    model = prepare_hrtf(hrtf, FS)
    mid = unit(45.0, 0.0)                                # halfway between front (0) and left (1)
    idx, w = interpolation_weights(model, mid)
    weight_of = {int(i): float(x) for i, x in zip(idx, w) if x > 0}
    assert weight_of == pytest.approx({0: 0.5, 1: 0.5}, abs=1e-6)
    spec = hrtf_spectra(model, mid)
    expected = (delays[0] + delays[1]) / 2
    np.testing.assert_allclose(phase_delay(spec, model.fft_size), expected, atol=0.02)
    k = model.fft_size // TAPS             # first bin of the 64-point DFT: coherent sum of gains
    np.testing.assert_allclose(np.abs(spec[:, k]), (OCTA_GAIN[0] + OCTA_GAIN[1]) / 2, rtol=2e-3)


def test_virtual_pole_closes_the_bottom_cap():
    # rings at 0 and -30 degrees plus the zenith: nothing below -30
    az = np.arange(0, 360, 45.0)
    dirs = np.vstack([np.column_stack([az, np.zeros(8)]), np.column_stack([az, np.full(8, -30.0)]),
                      [[0.0, 90.0]]])
    delays = np.vstack([np.column_stack([20 - 6 * np.sin(np.radians(az))] * 2),
                        np.column_stack([25 + 4 * np.cos(np.radians(az)), np.full(8, 23.0)]),
                        [[18.0, 18.0]]])
    delays = np.round(delays)
    gains = np.ones_like(delays)
    hrtf = HrtfSet(FS, dirs, integer_impulses(delays, gains).astype(np.float32))
    model = prepare_hrtf(hrtf, FS)
    assert model.unit_vectors.shape == (18, 3)
    np.testing.assert_allclose(model.unit_vectors[17], [0, 0, -1])
    down = unit(0.0, -90.0)
    idx, w = interpolation_weights(model, down)
    assert int(idx[np.argmax(w)]) == 17 and w.max() == 1.0
    # the pole's response is the mean of the -30 degree ring: its delay is the ring's mean
    spec = hrtf_spectra(model, down)
    np.testing.assert_allclose(phase_delay(spec, model.fft_size), delays[8:16].mean(axis=0),
                               atol=0.02)
    # every direction near the bottom is interpolated from the ring and the pole
    rng = np.random.default_rng(2)
    v = unit(rng.uniform(-180, 180, 500), rng.uniform(-90, -33, 500))
    idx, w = interpolation_weights(model, v)
    assert np.all(np.isin(idx[w > 0], np.r_[8:16, 17]))


def test_jax_version_inside_jit():
    hrtf, _ = octa_set(True)
    model = prepare_hrtf(hrtf, FS)
    rng = np.random.default_rng(3)
    v = np.vstack([unit(*OCTA.T), rng.normal(size=(20, 3))])
    idx, w = interpolation_weights(model, v)
    fn = jax.jit(hrtf_spectra_jax, static_argnums=4)
    out = np.asarray(fn(model.aligned_spectra, model.delays, idx, w, model.fft_size))
    assert out.shape == (26, 2, model.fft_size // 2 + 1) and out.dtype == np.complex64
    irs = np.fft.irfft(out[:6], model.fft_size)
    np.testing.assert_allclose(irs[..., :TAPS], hrtf.hrirs, atol=2e-6)
    # elsewhere the same maths; summation order may change the float32 delay by an ulp (~2e-6
    # samples), i.e. the phase by up to ~1e-5 rad at the top bins
    np.testing.assert_allclose(out, hrtf_spectra(model, v), atol=2e-5)


def test_prepare_resamples():
    hrtf, delays = octa_set()
    model = prepare_hrtf(hrtf, 48000)
    assert model.sample_rate == 48000
    spec = hrtf_spectra(model, unit(90.0, 0.0))
    max_bin = int(8000 / 48000 * model.fft_size)
    np.testing.assert_allclose(phase_delay(spec, model.fft_size, max_bin),
                               delays[1] * 48000 / 44100, atol=0.02)


# ---------------------------------------------------------------------------------------------
# the packaged MIT KEMAR set


@functools.cache
def kemar_model():
    return prepare_hrtf(default_hrtf(), FS)


def lowband_lag(left, right, fs, n_fft=8192, f_max=1500.0, up=16):
    """Lag of right behind left in seconds, from the cross-spectrum below f_max."""
    spec_l, spec_r = np.fft.rfft(left, n_fft), np.fft.rfft(right, n_fft)
    cross = spec_r * np.conj(spec_l)
    cross[np.fft.rfftfreq(n_fft, 1 / fs) > f_max] = 0
    xc = np.fft.irfft(cross, n_fft * up)
    lag = int(np.argmax(xc))
    if lag > n_fft * up // 2:
        lag -= n_fft * up
    return lag / (fs * up)


def test_kemar_loads():
    hrtf = default_hrtf()
    assert hrtf is default_hrtf()
    assert hrtf.sample_rate == 44100 and hrtf.hrirs.shape[1:] == (2, 512)
    el = hrtf.directions[:, 1]
    assert np.sum(el >= -40) == 710 and el.min() == -90
    assert hrtf.distance == pytest.approx(1.4)


def test_kemar_covers_the_sphere():
    model = kemar_model()
    v = random_directions(3000, seed=4)
    idx, w = interpolation_weights(model, v)
    assert np.all(w >= 0)
    np.testing.assert_allclose(w.sum(axis=-1), 1.0, atol=1e-6)
    cos = np.einsum("pi,pki->pk", v, model.unit_vectors[idx])
    assert np.degrees(np.arccos(np.clip(cos[w > 0], -1, 1))).max() < 15.0


def test_kemar_itd_and_ild():
    model = kemar_model()
    fs = model.sample_rate
    side, front = np.fft.irfft(hrtf_spectra(model, unit(np.array([90.0, 0.0]), 0.0)),
                               model.fft_size)
    itd = lowband_lag(side[0], side[1], fs)
    assert 550e-6 < itd < 800e-6                         # right ear lags for a source on the left
    assert abs(lowband_lag(front[0], front[1], fs)) < 25e-6
    idx, w = interpolation_weights(model, unit(90.0, 0.0))
    d = (w[:, None] * model.delays[idx]).sum(axis=0)
    assert 550e-6 < (d[1] - d[0]) / fs < 800e-6
    # ILD at 90 degrees: energy ratio over the 4-8 kHz octave
    spec = np.fft.rfft(side, 4096)
    band = (np.fft.rfftfreq(4096, 1 / fs) >= 4000) & (np.fft.rfftfreq(4096, 1 / fs) < 8000)
    energy = (np.abs(spec[:, band]) ** 2).sum(axis=1)
    assert 10 * np.log10(energy[0] / energy[1]) > 10.0


def test_kemar_itd_is_continuous_in_azimuth():
    model = kemar_model()
    az = np.arange(-180.0, 180.0, 0.5)
    for el in (0.0, 25.0, -55.0):
        idx, w = interpolation_weights(model, unit(az, el))
        d = (w[..., None] * model.delays[idx]).sum(axis=1)
        itd = d[:, 1] - d[:, 0]
        step = np.abs(np.diff(np.r_[itd, itd[0]]))
        assert step.max() < 0.6                          # samples per half degree: no jumps
        assert np.all(itd[(az > 10) & (az < 170)] > 0)   # left side: right ear lags


def test_explicit_fft_size():
    hrtf, _ = octa_set(True)
    model = prepare_hrtf(hrtf, FS, fft_size=1024)
    assert model.fft_size == 1024 and model.aligned_spectra.shape == (6, 2, 513)
    irs = np.fft.irfft(hrtf_spectra(model, unit(*OCTA.T)), 1024)
    np.testing.assert_allclose(irs[..., :TAPS], hrtf.hrirs, atol=2e-6)
    with pytest.raises(HrtfError, match="fft_size 32"):
        prepare_hrtf(hrtf, FS, fft_size=32)


# ---------------------------------------------------------------------------------------------
# the disk cache of prepared models


def _same_model(a, b):
    assert (a.sample_rate, a.fft_size, a.filter_length) == (b.sample_rate, b.fft_size,
                                                            b.filter_length)
    for name in ("unit_vectors", "delays", "aligned_spectra", "triangles", "inverses"):
        x, y = getattr(a, name), getattr(b, name)
        assert x.dtype == y.dtype and x.shape == y.shape, name
        np.testing.assert_array_equal(x, y, err_msg=name)


def test_prepared_models_are_kept_on_disk(tmp_path, monkeypatch):
    from renderer import hrtf as hrtf_module

    monkeypatch.setenv("DUBSTAGE_CACHE_DIR", str(tmp_path))
    hrtf_set, _ = octa_set(fractional=True)
    hrtf_module._prepare_cached.cache_clear()
    fresh = hrtf_module._prepare(hrtf_set, 48000, 256)
    first = prepare_hrtf(hrtf_set, 48000, 256)  # prepared and stored
    stored = list((tmp_path / "hrtf").glob("*.npz"))
    assert len(stored) == 1
    hrtf_module._prepare_cached.cache_clear()
    again = prepare_hrtf(hrtf_set, 48000, 256)  # read back
    _same_model(fresh, first)
    _same_model(fresh, again)
    # another rate or size, or other data, is another entry
    prepare_hrtf(hrtf_set, 44100, 256)
    prepare_hrtf(hrtf_set, 48000, 512)
    changed = HrtfSet(FS, hrtf_set.directions, hrtf_set.hrirs * np.float32(0.5))
    _same_model(prepare_hrtf(changed, 48000, 256), hrtf_module._prepare(changed, 48000, 256))
    assert len(list((tmp_path / "hrtf").glob("*.npz"))) == 4
    # a damaged entry is prepared again and rewritten
    stored[0].write_bytes(stored[0].read_bytes()[:1000])
    hrtf_module._prepare_cached.cache_clear()
    _same_model(fresh, prepare_hrtf(hrtf_set, 48000, 256))
    hrtf_module._prepare_cached.cache_clear()
    assert hrtf_module._read_model(stored[0], 48000) is not None
    # errors are not stored
    with pytest.raises(HrtfError, match="fft_size"):
        prepare_hrtf(hrtf_set, 48000, 30)
    assert len(list((tmp_path / "hrtf").iterdir())) == 4
    hrtf_module._prepare_cached.cache_clear()


def test_no_disk_cache_when_turned_off(tmp_path, monkeypatch):
    from renderer import hrtf as hrtf_module

    monkeypatch.setenv("DUBSTAGE_CACHE_DIR", "off")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setenv("HOME", str(tmp_path))
    hrtf_module._prepare_cached.cache_clear()
    _same_model(prepare_hrtf(octa_set()[0], 48000, 256),
                hrtf_module._prepare(octa_set()[0], 48000, 256))
    assert not any(tmp_path.iterdir())
    hrtf_module._prepare_cached.cache_clear()


def test_models_of_sofa_files_are_found_by_the_files_bytes(tmp_path, monkeypatch):
    # a headphone render's SOFA file (the packaged one, copied) is read and prepared once;
    # afterwards its model comes from the disk cache by the file's bytes without reading it
    # as SOFA; a file with other bytes, or another rate, has no model there
    import shutil

    from renderer import binaural
    from renderer import hrtf as hrtf_module

    monkeypatch.setenv("DUBSTAGE_CACHE_DIR", str(tmp_path / "cache"))
    sofa = tmp_path / "set.sofa"
    shutil.copyfile(hrtf_module.DEFAULT_SOFA, sofa)
    hrtf_module._prepare_cached.cache_clear()
    first = binaural._load_model(sofa, 48000)
    assert len(list((tmp_path / "cache" / "hrtf").glob("file-*.npz"))) == 1
    hrtf_module._prepare_cached.cache_clear()

    def not_read(*args):
        raise AssertionError("the SOFA file was read")

    monkeypatch.setattr(hrtf_module, "load_sofa", not_read)
    _same_model(first, binaural._load_model(sofa, 48000))
    _same_model(first, hrtf_module.model_of_file(sofa, 48000, (binaural.__file__,)))
    assert hrtf_module.model_of_file(sofa, 44100, (binaural.__file__,)) is None
    assert hrtf_module.model_of_file(sofa, 48000) is None  # other code chose its size
    sofa.write_bytes(sofa.read_bytes() + b"\0")
    assert hrtf_module.model_of_file(sofa, 48000, (binaural.__file__,)) is None
    monkeypatch.setenv("DUBSTAGE_CACHE_DIR", "off")
    assert hrtf_module.model_of_file(sofa, 48000, (binaural.__file__,)) is None
