"""Tests for renderer.binaural: HRTF rendering of point sources, beds, LFE, wide sources.

Expected values come from the HRIRs themselves (convolution with numpy), from synthetic HRTF
sets with known delays and levels, from the head-rotation geometry worked out by hand, and from
the Woodworth spherical-head ITD model for the bound on ITD steps.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from adm.builder import ATMOS_BED_7_1_2, AdmBuilder, ObjectsBlockSpec
from adm.items import select_items
from renderer.binaural import HeadOrientation, configure_binaural, render_binaural_array
from renderer.hrtf import HrtfSet, default_hrtf, resample_hrtf

SR = 48000
RNG = np.random.default_rng(7)


def _noise(n: int, tracks: int = 1) -> np.ndarray:
    return (0.1 * RNG.standard_normal((n, tracks))).astype(np.float32)


def _object_items(blocks, n_tracks: int = 1, track: int = 1):
    b = AdmBuilder("p")
    b.add_object("o", blocks, track)
    doc, _ = b.build()
    return select_items(doc)


def _static(az: float, el: float = 0.0, **spec):
    return _object_items([ObjectsBlockSpec((az, el), **spec)])


# ------------------------------------------------------------------------------------------
# analysis helpers (independent of the renderer)


def _lag(a: np.ndarray, b: np.ndarray, max_lag: int = 64) -> float:
    """Sub-sample lag (samples) by which b follows a: peak of the cross-correlation with a
    parabola through the three highest points."""
    full = np.correlate(b, a, mode="full")
    centre = len(a) - 1
    window = full[centre - max_lag:centre + max_lag + 1]
    i = int(np.argmax(window))
    if 0 < i < len(window) - 1:
        y0, y1, y2 = window[i - 1:i + 2]
        i = i + 0.5 * (y0 - y2) / (y0 - 2 * y1 + y2)
    return i - max_lag


def _band_levels(x: np.ndarray) -> np.ndarray:
    """Energy in dB of octave bands centred 250 Hz .. 8 kHz."""
    spectrum = np.abs(np.fft.rfft(x)) ** 2
    f = np.fft.rfftfreq(len(x), 1.0 / SR)
    centres = 250.0 * 2.0 ** np.arange(6)
    return np.array([10 * np.log10(spectrum[(f >= c / np.sqrt(2)) & (f < c * np.sqrt(2))].sum())
                     for c in centres])


def _coherence(y: np.ndarray) -> float:
    """Interaural coherence: max |normalised cross-correlation| within +-1 ms."""
    left, right = y[:, 0] - y[:, 0].mean(), y[:, 1] - y[:, 1].mean()
    full = np.correlate(right, left, mode="full") / np.sqrt((left ** 2).sum() * (right ** 2).sum())
    centre, lag = len(left) - 1, SR // 1000
    return float(np.abs(full[centre - lag:centre + lag + 1]).max())


def _kemar_hrir(az: float, el: float) -> np.ndarray:
    """(2, L) HRIR of a measured KEMAR direction at 48 kHz, straight from the set."""
    h = resample_hrtf(default_hrtf(), SR)
    d = np.asarray(h.directions)
    i = int(np.flatnonzero((np.abs(d[:, 0] % 360 - az % 360) < 1e-6)
                           & (np.abs(d[:, 1] - el) < 1e-6))[0])
    return np.asarray(h.hrirs[i], np.float64)


def _synthetic_set(delay_fn, gain_fn, length: int = 64) -> HrtfSet:
    """A grid (azimuth step 10, elevation -60..60 step 30, plus poles) of delayed, scaled unit
    impulses: ear e of direction (az, el) is gain_fn(az, el)[e] at sample delay_fn(az, el)[e]."""
    dirs = [(az, el) for el in (-60, -30, 0, 30, 60) for az in range(0, 360, 10)]
    dirs += [(0, -90), (0, 90)]
    hrirs = np.zeros((len(dirs), 2, length), np.float32)
    for i, (az, el) in enumerate(dirs):
        for e in range(2):
            hrirs[i, e, int(delay_fn(az, el)[e])] = gain_fn(az, el)[e]
    return HrtfSet(sample_rate=SR, directions=np.array(dirs, float), hrirs=hrirs, name="synthetic")


def _itd_set() -> HrtfSet:
    def delays(az, el):
        s = np.sin(np.radians(az)) * np.cos(np.radians(el))
        return 20 - round(10 * s), 20 + round(10 * s)

    def gains(az, el):
        s = np.sin(np.radians(az)) * np.cos(np.radians(el))
        return 10 ** (3 * s / 20), 10 ** (-3 * s / 20)

    return _synthetic_set(delays, gains)


IMPULSE_SET = _synthetic_set(lambda az, el: (0, 0), lambda az, el: (1.0, 1.0))
ITD_SET = _itd_set()


# ------------------------------------------------------------------------------------------
# tests


def test_head_orientation_matrix_by_hand():
    front, left, up, right = (np.array(v, float) for v in ([0, 1, 0], [-1, 0, 0], [0, 0, 1],
                                                            [1, 0, 0]))
    np.testing.assert_allclose(HeadOrientation(yaw=90).matrix() @ front, left, atol=1e-12)
    np.testing.assert_allclose(HeadOrientation(pitch=90).matrix() @ front, up, atol=1e-12)
    np.testing.assert_allclose(HeadOrientation(roll=90).matrix() @ right, -up, atol=1e-12)
    r = HeadOrientation(10, 20, 30).matrix()
    np.testing.assert_allclose(r @ r.T, np.eye(3), atol=1e-12)


@pytest.mark.parametrize("n", [1000, 20001, 40960])
def test_unit_impulse_hrtf_passes_input_unchanged_and_keeps_length(n):
    x = _noise(n)
    y = render_binaural_array(_static(37.0, 12.0), x, SR, hrtf=IMPULSE_SET)
    assert y.shape == (n, 2)
    np.testing.assert_allclose(y, np.repeat(x, 2, axis=1), atol=2e-6)


def test_measured_direction_of_synthetic_set_gives_its_delays_and_levels():
    n = 6000
    x = _noise(n)
    y = render_binaural_array(_static(30.0), x, SR, hrtf=ITD_SET)
    # az 30: left 5 samples early (delay 15), +1.5 dB; right delay 25, -1.5 dB
    g = 10 ** (1.5 / 20)
    np.testing.assert_allclose(y[15:, 0], g * x[:n - 15, 0], atol=2e-5)
    np.testing.assert_allclose(y[25:, 1], x[:n - 25, 0] / g, atol=2e-5)


def _kemar_render_and_reference(n: int) -> tuple[np.ndarray, np.ndarray]:
    """(n, 2) renders of noise from azimuth 30 (a measured KEMAR direction): dubstage's, and
    the linear convolution of the noise with that direction's HRIR (numpy)."""
    x = _noise(n)[:, 0]
    y = render_binaural_array(_static(30.0), x[:, None], SR)
    h = _kemar_hrir(30.0, 0.0)
    return y, np.stack([np.convolve(x, h[e])[:n] for e in range(2)], axis=1)


def test_kemar_measured_direction_reproduces_its_hrir():
    y, ref = _kemar_render_and_reference(24000)
    itd_out = _lag(y[:, 0], y[:, 1]) / SR
    itd_ref = _lag(ref[:, 0], ref[:, 1]) / SR
    assert itd_ref > 100e-6  # source on the left: the right ear lags
    assert abs(itd_out - itd_ref) < 20e-6
    ild_out = _band_levels(y[:, 0]) - _band_levels(y[:, 1])
    ild_ref = _band_levels(ref[:, 0]) - _band_levels(ref[:, 1])
    assert np.all(np.abs(ild_out - ild_ref) < 1.0)
    for e in range(2):
        assert np.corrcoef(y[:, e], ref[:, e])[0, 1] >= 0.98


def test_kemar_measured_direction_equals_direct_convolution_across_calls(host_loops):
    # 70,000 frames: several calls of the streaming overlap-save convolution and a partial
    # last one; at a measured direction the filter is that HRIR, so the render is the plain
    # linear convolution with it (float32 rounding only)
    y, ref = _kemar_render_and_reference(70000)
    error_db = 10 * np.log10(((y - ref) ** 2).mean() / (ref ** 2).mean())
    assert error_db < -100.0


def test_itd_and_ild_vary_smoothly_between_measured_directions():
    # elevation 5 lies between KEMAR's 0 and 10 degree rings: every direction is interpolated
    x = np.zeros((4096, 1), np.float32)
    x[0] = 1.0
    itds, ilds = [], []
    for az in range(0, 95, 5):
        y = render_binaural_array(_static(float(az), 5.0), x, SR)
        itds.append(_lag(y[:, 0], y[:, 1]) / SR)
        ilds.append(10 * np.log10((y[:, 0] ** 2).sum() / (y[:, 1] ** 2).sum()))
    steps = np.diff(itds)
    # Woodworth: ITD = (a / c) (theta + sin theta); its steepest slope, 2 a / c with a = 8.75 cm,
    # is 45 us per 5 degrees. Allow twice that, and at most a one-sample dip (21 us).
    assert itds[0] < 30e-6 and itds[-1] > 500e-6
    assert np.all(steps > -1.0 / SR)
    assert np.all(steps < 90e-6)
    assert np.all(np.abs(np.diff(ilds)) < 4.0)


def _sine_500() -> np.ndarray:
    """1 s of a 500 Hz sine at half scale, one track."""
    t = np.arange(SR) / SR
    return (0.5 * np.sin(2 * np.pi * 500 * t)).astype(np.float32)[:, None]


def _sweep(elevation: float = 0.0):
    """An object moving from the front to azimuth 90 (whole-block interpolation), then
    jumping to azimuth -60."""
    return _object_items([
        ObjectsBlockSpec((0.0, 0.0), rtime=0, duration=Fraction(1, 10)),
        ObjectsBlockSpec((90.0, elevation), rtime=Fraction(1, 10), duration=Fraction(4, 10)),
        ObjectsBlockSpec((-60.0, 0.0), rtime=Fraction(1, 2), duration=Fraction(1, 2),
                         jump=True, interpolation_length=0),
    ])


def test_moving_object_does_not_click():
    x = _sine_500()
    y = render_binaural_array(_sweep(), x, SR)
    static_steps = max(np.abs(np.diff(render_binaural_array(_static(az), x, SR), axis=0)).max()
                       for az in (0.0, 90.0, -60.0))
    assert np.abs(np.diff(y, axis=0)).max() <= 1.2 * static_steps


def test_rows_convolved_in_parallel_groups_give_the_one_group_render(monkeypatch):
    # six point sources in three row groups: the first group's two are static (their
    # filters never change while the others' do), the rest move and jump; the output is
    # the sum of the groups' shares, so it must equal the render of one group of all rows
    import renderer.binaural as binaural

    b = AdmBuilder("p")
    for k, az in enumerate((30.0, -110.0)):
        b.add_object(f"static{k}", [ObjectsBlockSpec((az, 0.0))], k + 1)
    for k in range(4):
        b.add_object(f"mover{k}", [
            ObjectsBlockSpec((20.0 * k, 0.0), rtime=0, duration=Fraction(1, 10)),
            ObjectsBlockSpec((90.0 - 40 * k, 10.0 * k), rtime=Fraction(1, 10),
                             duration=Fraction(4, 10)),
            ObjectsBlockSpec((-60.0 + 30 * k, 0.0), rtime=Fraction(1, 2),
                             duration=Fraction(1, 2), jump=True, interpolation_length=0),
        ], k + 3)
    doc, _ = b.build()
    items = select_items(doc)
    x = _noise(SR, 6)
    monkeypatch.setattr(binaural, "available_cpus", lambda: 3)
    monkeypatch.setattr(binaural, "_MAX_ROW_GROUPS", 3)
    grouped = render_binaural_array(items, x, SR, backend="numpy")
    monkeypatch.setattr(binaural, "_MAX_ROW_GROUPS", 1)
    single = render_binaural_array(items, x, SR, backend="numpy")
    assert np.abs(single).max() > 0.05
    np.testing.assert_allclose(grouped, single, atol=1e-5)


def test_sources_silent_over_whole_calls_skip_their_updates_with_the_same_output(
        monkeypatch):
    # an object silent for several calls, moving meanwhile, then heard again in the first
    # hops of a call (before that call's first update), beside one that plays throughout:
    # the filters it skipped are made when it is heard again, so the render is the one with
    # every update made
    from renderer.binaural import BinauralStage

    f = Fraction
    probe = configure_binaural(_static(0.0), SR, 1).stage()
    call = probe.hops_per_call * probe.hop  # call k's hops start at frame k * call
    chunk = 32768  # render_binaural_array's blocks: audibility is known per block
    # a call whose first run starts at a block's first frame: the call before it is silent
    k = next(k for k in range(3, 200) if -(k * call) % chunk < probe.hop)
    onset = f(-(-(k * call) // chunk) * chunk, SR)
    b = AdmBuilder("p")
    b.add_object("sometimes", [
        ObjectsBlockSpec((0.0, 0.0), rtime=0, duration=f(1, 2)),
        ObjectsBlockSpec((60.0, 0.0), rtime=f(1, 2), duration=f(1, 4), gain=0.0),
        ObjectsBlockSpec((-120.0, 20.0), rtime=f(3, 4), duration=f(3, 4), gain=0.0,
                         jump=True, interpolation_length=0),
        ObjectsBlockSpec((40.0, -10.0), rtime=f(3, 2), duration=onset - f(3, 2), gain=0.0),
        ObjectsBlockSpec((40.0, -10.0), rtime=onset, duration=f(1), jump=True,
                         interpolation_length=0),
    ], 1)
    b.add_object("always", [
        ObjectsBlockSpec((-30.0, 0.0), rtime=0, duration=f(2)),
        ObjectsBlockSpec((150.0, 0.0), rtime=f(2), duration=onset - f(1)),
    ], 2)
    doc, _ = b.build()
    items = select_items(doc)
    x = _noise(int((onset + 1) * SR), 2)
    stale = []
    convolve = BinauralStage._convolve_rows

    def watched(self, *args):
        stale.append(bool(self.stale.any()))
        return convolve(self, *args)

    monkeypatch.setattr(BinauralStage, "_convolve_rows", watched)
    skipping = render_binaural_array(items, x, SR)
    assert any(stale)  # some updates were skipped
    monkeypatch.setattr(BinauralStage, "skip_silent_updates", False)
    every = render_binaural_array(items, x, SR)
    start = int(onset * SR)
    assert np.abs(every[start:start + probe.hop]).max() > 0.05  # heard in that first run
    # (equal up to float rounding: a filter made later may come from a neighbouring
    # triangle at an edge, or from sums in another order)
    np.testing.assert_allclose(skipping, every, rtol=0, atol=1e-6)


def test_lfe_goes_to_both_ears_at_the_documented_level():
    b = AdmBuilder("p")
    b.add_direct_speakers("bed", [1, 2, 3, 4, 5, 6], pack_format_id="AP_00010003")  # 5.1
    doc, _ = b.build()
    items = select_items(doc)
    x = np.zeros((5000, 6), np.float32)
    x[:, 3] = _noise(5000)[:, 0]  # LFE1 is the fourth channel of the 5.1 pack
    y = render_binaural_array(items, x, SR)
    np.testing.assert_allclose(y[:, 0], x[:, 3], atol=1e-6)
    np.testing.assert_allclose(y[:, 1], x[:, 3], atol=1e-6)
    y6 = render_binaural_array(items, x, SR, lfe_gain_db=-6.0)
    np.testing.assert_allclose(y6, np.repeat(x[:, 3:4], 2, 1) * 10 ** (-6 / 20), atol=1e-6)


def test_bed_channels_play_at_their_nominal_positions():
    n = 8000
    x = _noise(n)
    reference = render_binaural_array(_static(30.0), x, SR)
    b = AdmBuilder("p")
    b.add_direct_speakers("stereo", [1, 2], pack_format_id="AP_00010002")  # M+030, M-030
    doc, _ = b.build()
    stereo = render_binaural_array(select_items(doc), np.concatenate([x, 0 * x], 1), SR)
    np.testing.assert_allclose(stereo, reference, atol=1e-5)
    # Dolby bed RC_L at cartesian (-1, 1, 0): azimuth 30 by the BS.2127 clause 10 conversion
    b = AdmBuilder("p")
    b.add_direct_speakers("bed", [1], channels=[ATMOS_BED_7_1_2[0]])
    doc, _ = b.build()
    atmos = render_binaural_array(select_items(doc), x, SR)
    np.testing.assert_allclose(atmos, reference, atol=1e-5)


def test_diffuse_object_is_less_coherent_and_wide_object_is_spread():
    n = 24000
    x = _noise(n)
    point = _coherence(render_binaural_array(_static(0.0), x, SR))
    point_side = _coherence(render_binaural_array(_static(30.0), x, SR))
    # diffuse (BS.2127 clause 7.4) decorrelates each virtual loudspeaker: with an extent that
    # spreads the source over all of them the ears receive mostly uncorrelated signals
    diffuse = _coherence(render_binaural_array(
        _static(0.0, width=360.0, height=180.0, diffuse=1.0), x, SR))
    assert point > 0.9
    assert diffuse < point - 0.1
    # diffuseness alone, even of an object on a loudspeaker direction, and extent alone, even
    # symmetric about the median plane, give decorrelated ears (binaural_extent)
    diffuse_only = _coherence(render_binaural_array(_static(30.0, diffuse=1.0), x, SR))
    assert diffuse_only < 0.5 < point_side
    for width in (60.0, 180.0):
        wide = _coherence(render_binaural_array(_static(0.0, width=width), x, SR))
        assert wide < point - 0.2

    # extent (BS.2127 clause 7.3.7): a 360-degree-wide source surrounds the listener evenly, so
    # the interaural level difference of a source at 60 degrees (over 3 dB as a point) all but
    # vanishes
    def ild(y):
        return 10 * np.log10((y[:, 0] ** 2).sum() / (y[:, 1] ** 2).sum())

    narrow = ild(render_binaural_array(_static(60.0), x, SR))
    wide = ild(render_binaural_array(_static(60.0, width=360.0, height=180.0), x, SR))
    assert narrow > 3.0
    assert abs(wide) < 2.0  # decorrelated: energies add, slightly unevenly over directions


def test_head_yaw_turns_the_scene():
    n = 8000
    x = _noise(n)
    turned = render_binaural_array(_static(30.0), x, SR, orientation=HeadOrientation(yaw=30.0))
    ahead = render_binaural_array(_static(0.0), x, SR)
    np.testing.assert_allclose(turned, ahead, atol=1e-5)


def test_setup_routes_items_to_their_paths():
    b = AdmBuilder("p")
    b.add_direct_speakers("bed", [1, 2, 3, 4, 5, 6], pack_format_id="AP_00010003")
    b.add_object("point", [ObjectsBlockSpec((10.0, 0.0))], 7)
    b.add_object("wide", [ObjectsBlockSpec((10.0, 0.0), width=40.0)], 8)
    doc, _ = b.build()
    setup = configure_binaural(select_items(doc), SR, 8, hrtf=IMPULSE_SET)
    assert sorted(setup.point_tracks.tolist()) == [0, 1, 2, 4, 5, 6]
    assert setup.lfe_tracks == (3,)
    assert set(setup.plan.segments.track.tolist()) == {7}
    assert setup.virtual_layout.n_channels == 22


def test_accelerator_path_equals_the_host_path(host_loops):
    """The JAX convolution (used on accelerators) computes the same output as the host's
    one (numpy and scipy, with or without its C loops), here on the CPU: an object moving
    (up to 20 degrees elevation) and jumping, so filters are updated and crossfaded."""
    x = _sine_500()
    sweep = _sweep(elevation=20.0)
    host = render_binaural_array(sweep, x, SR, backend="numpy")
    device = render_binaural_array(sweep, x, SR, backend="jax")
    assert host.shape == device.shape == (SR, 2)
    np.testing.assert_allclose(device, host, atol=2e-5 * np.abs(host).max())


def _write_sofa(path, rate: int, directions, delays, gains, length: int = 96):
    """A SimpleFreeFieldHRIR SOFA file (h5py, as netCDF-4 readers see it) of delayed, scaled
    unit impulses: ear e of direction i is gains[i][e] at sample delays[i][e]."""
    import h5py

    irs = np.zeros((len(directions), 2, length))
    for i, (d, g) in enumerate(zip(delays, gains)):
        for e in range(2):
            irs[i, e, d[e]] = g[e]
    with h5py.File(path, "w") as f:
        f.attrs["Conventions"] = "SOFA"
        f.attrs["SOFAConventions"] = "SimpleFreeFieldHRIR"
        f["Data.IR"] = irs
        f["Data.SamplingRate"] = np.array([float(rate)])
        positions = np.column_stack([np.asarray(directions, float), np.ones(len(directions))])
        f.create_dataset("SourcePosition", data=positions).attrs["Type"] = "spherical"
    return path


@pytest.mark.parametrize("rate", [48000, 44100])
def test_sofa_file_with_known_delays_and_levels_through_the_command_line(tmp_path, rate):
    """`dubstage render -s binaural --hrtf set.sofa`: an object at a measured direction gets
    that direction's interaural delay (within 20 us) and level difference (within 1 dB), also
    when the set is at 44.1 kHz and the render at 48 kHz (the set is resampled)."""
    import soundfile as sf

    from adm.builder import write_adm_bwf
    from renderer.cli import main

    directions = [(az, el) for el in (-45, 0, 45) for az in range(0, 360, 30)]
    directions += [(0, -90), (0, 90)]

    def lateral(az, el):
        return np.sin(np.radians(az)) * np.cos(np.radians(el))

    delays = [(30 - round(12 * lateral(a, e)), 30 + round(12 * lateral(a, e)))
              for a, e in directions]
    gains = [(10 ** (4 * lateral(a, e) / 20), 10 ** (-4 * lateral(a, e) / 20))
             for a, e in directions]
    sofa = _write_sofa(tmp_path / "set.sofa", rate, directions, delays, gains)
    for az in (30.0, 90.0, -60.0):
        b = AdmBuilder("p")
        b.add_object("o", [ObjectsBlockSpec((az, 0.0))], 1)
        doc, chna = b.build()
        scene = tmp_path / f"scene{az:g}.wav"
        write_adm_bwf(scene, _noise(SR // 2), SR, doc, chna, bit_depth=32, sample_format="float")
        out = tmp_path / f"bin{az:g}.wav"
        assert main(["render", "--no-progress", "-s", "binaural", "--hrtf", str(sofa),
                     str(scene), str(out)]) == 0
        y, _ = sf.read(out)
        i = directions.index((az % 360, 0))
        expected_itd = (delays[i][1] - delays[i][0]) / rate  # seconds, right after left
        assert abs(_lag(y[:, 0], y[:, 1]) / SR - expected_itd) <= 20e-6
        ild = 10 * np.log10((y[:, 0] ** 2).sum() / (y[:, 1] ** 2).sum())
        assert abs(ild - 20 * np.log10(gains[i][0] / gains[i][1])) <= 1.0


@pytest.fixture(params=["native", "native-plain", "numpy"])
def host_loops(request, monkeypatch):
    """The binaural host's filter construction and per-bin products in renderer/_binaural.c
    (where it is built; its AVX2 products and its plain loops) and in numpy."""
    import renderer.binaural as binaural

    native = binaural._native
    if request.param.startswith("native") and native is None:
        pytest.skip("the native binaural loops are not built")
    if request.param == "numpy":
        monkeypatch.setattr(binaural, "_native", None)
    elif request.param == "native-plain":
        native.use_vectors(False)
        request.addfinalizer(lambda: native.use_vectors(True))
    return request.param


def test_filters_are_the_weighted_spectra_times_the_delay_phase(host_loops):
    # the filter bank against the formula in float64: sum_i w_i A_i(k) exp(-j 2 pi k d / N)
    # with d = sum_i w_i d_i per ear, for directions inside triangles (three weights)
    from renderer.binaural import _FilterBank, _load_model

    model = _load_model(None, 48000)
    bank = _FilterBank(model)
    rng = np.random.default_rng(3)
    v = rng.standard_normal((20, 3))
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    h, tri = bank.filters(v, bank.find_triangles(v))
    w, _ = bank.weights(v, tri)
    index = np.asarray(model.triangles)[tri]
    spectra = np.asarray(model.aligned_spectra, np.complex128)[index]  # (Q, 3, 2, B)
    delay = np.einsum("qi,qie->qe", w, np.asarray(model.delays)[index])  # (Q, 2)
    k = np.arange(bank.bins)
    expected = (np.einsum("qi,qieb->qeb", w, spectra)
                * np.exp(-2j * np.pi * k * delay[..., None] / bank.fft_size))
    scale = np.abs(expected).max(axis=-1, keepdims=True)
    assert np.abs(h - expected).max() / scale.min() < 2e-6


def test_filters_placed_in_rows_of_the_convolution(host_loops):
    # rows 5, 2 and 7 of a (9, 2, B) filter array get the filters of three directions (one of
    # them hinted with a triangle that does not hold it, one a measured direction: its
    # measured spectrum times its delays' phase); the other rows stay as they were
    from renderer.binaural import _FilterBank, _load_model

    model = _load_model(None, 48000)
    bank = _FilterBank(model)
    measured = np.asarray(model.unit_vectors)[100]
    v = np.array([[0.6, 0.7, 0.2], [-0.3, -0.9, -0.1], measured])
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    dest = np.full((9, 2, bank.bins), 7 + 1j, np.complex64)
    tri = bank.place(v, np.zeros(3, np.int64), dest, np.array([5, 2, 7]))
    for q, t in enumerate(tri):  # a triangle that holds each direction
        assert (v[q] @ bank.inverses[t]).min() > -1e-9
    expected, _ = bank.filters(v, tri)
    np.testing.assert_array_equal(dest[[5, 2, 7]], expected)
    assert (dest[[0, 1, 3, 4, 6, 8]] == np.complex64(7 + 1j)).all()
    k = np.arange(bank.bins)
    phase = np.exp(-2j * np.pi * k * np.asarray(model.delays)[100][:, None] / bank.fft_size)
    at_measured = np.asarray(model.aligned_spectra)[100] * phase
    assert np.abs(dest[7] - at_measured).max() < 1e-5 * np.abs(at_measured).max()


def test_native_filter_placing_checks_its_arguments():
    import renderer.binaural as binaural
    from renderer.binaural import _FilterBank, _load_model

    if binaural._native is None:
        pytest.skip("the native binaural loops are not built")
    bank = _FilterBank(_load_model(None, 48000))

    def place(v=((0.0, 1.0, 0.0),), hint=(0,), rows=(0,), dest=None, triangles=None,
              neighbours=None):
        dest = np.zeros((2, 2, bank.bins), np.complex64) if dest is None else dest
        binaural._native.place(
            np.array(v, np.float64), np.array(hint, np.int64), bank.inverses,
            bank.triangles if triangles is None else triangles,
            bank.neighbours if neighbours is None else neighbours, bank.delays,
            bank._padded_real, float(bank.fft_size), bank._n_coarse, 32, dest,
            np.array(rows, np.int64), np.empty(len(v), np.int64))

    place()
    with pytest.raises(ValueError):  # a row that is not there
        place(rows=(2,))
    with pytest.raises(ValueError):  # a triangle that is not there
        place(hint=(len(bank.triangles),))
    with pytest.raises(ValueError):  # a triangle of a direction that is not there
        place(triangles=np.full_like(bank.triangles, len(bank.delays)))
    with pytest.raises(ValueError):  # more bins than the spectra hold
        place(dest=np.zeros((2, 2, bank._n_coarse * 32 + 1), np.complex64))
    with pytest.raises(ValueError):  # hints for other directions
        place(hint=(0, 0))
    with pytest.raises(ValueError):  # a neighbour that is not there
        place(neighbours=np.full_like(bank.neighbours, len(bank.triangles)))
    with pytest.raises(ValueError):  # neighbours of other triangles
        place(neighbours=bank.neighbours[1:])


def test_triangle_neighbours_share_the_edge_opposite_each_vertex():
    # neighbours[t, j] holds the two vertices of t other than vertex j and not vertex j
    # itself, and t is its neighbour back; on the packaged set's sphere every edge has one
    from renderer.binaural import _FilterBank, _load_model, _triangle_neighbours

    bank = _FilterBank(_load_model(None, 48000))
    triangles, neighbours = bank.triangles, bank.neighbours
    assert neighbours.shape == triangles.shape and (neighbours >= 0).all()
    for t in range(len(triangles)):
        for j in range(3):
            u = neighbours[t, j]
            edge = set(triangles[t]) - {triangles[t, j]}
            assert edge <= set(triangles[u]) and triangles[t, j] not in set(triangles[u])
            assert t in neighbours[u]
    # an open surface: two triangles with one shared edge, the others with none
    np.testing.assert_array_equal(_triangle_neighbours(np.array([[0, 1, 2], [2, 1, 3]])),
                                  [[1, -1, -1], [-1, -1, 0]])


def test_filters_placed_from_far_hints_are_in_a_triangle_holding_each_direction(host_loops):
    # 300 random directions, each hinted with a random triangle (mostly far away: the C
    # path walks and, where the walk stops short, searches all): each gets a triangle that
    # holds it, and the one the brute-force search finds where the direction is clear of
    # the triangles' edges
    from renderer.binaural import _FilterBank, _load_model

    bank = _FilterBank(_load_model(None, 48000))
    rng = np.random.default_rng(9)
    v = rng.standard_normal((300, 3))
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    hint = rng.integers(0, len(bank.triangles), 300)
    dest = np.zeros((300, 2, bank.bins), np.complex64)
    tri = bank.place(v, hint, dest, np.arange(300))
    weights = np.einsum("qi,qij->qj", v, bank.inverses[tri])
    assert (weights.min(axis=1) > -1e-9).all()
    brute = bank.find_triangles(v)
    clear = np.einsum("qi,qij->qj", v, bank.inverses[brute]).min(axis=1) > 1e-6
    assert clear.sum() > 250
    np.testing.assert_array_equal(tri[clear], brute[clear])


@pytest.mark.parametrize("rows", [1, 3, 4, 63, 64])
def test_products_sum_each_bins_spectra_times_filters_over_the_rows(host_loops, rows):
    # out[k, e, b] = sum_r X[r, k, b] H[r, e, b], against the sum written out in complex128;
    # the filters rows of a wider array (a group's), the spectra a hop of a run; bins 1025
    # and 37 (the last ones not a whole vector)
    from renderer.binaural import _NumpyOps

    rng = np.random.default_rng(rows)

    def complex_normal(*shape):
        return (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(
            np.complex64)

    for bins in (1025, 37):
        spectra = complex_normal(rows, 3, bins)
        filters = complex_normal(rows + 5, 2, bins)[2:rows + 2]
        expected = np.zeros((3, 2, bins), np.complex128)
        for r in range(rows):
            expected += (spectra[r, :, None, :].astype(np.complex128)
                         * filters[r, None, :, :].astype(np.complex128))
        for hops in (slice(None), slice(-1, None)):
            out = _NumpyOps.matmul(spectra[:, hops], filters)
            assert out.shape == expected[hops].shape and out.dtype == np.complex64
            scale = np.sqrt(rows) * 2
            assert np.abs(out - expected[hops]).max() < 1e-5 * scale


@pytest.mark.parametrize("n_fft, rows, hops, hop", [(2048, 13, 3, 1481), (4096, 9, 2, 3000),
                                                    (16, 3, 5, 7), (32, 8, 1, 32)])
def test_window_spectra_are_the_dft_of_each_window(host_loops, n_fft, rows, hops, hop):
    # each overlap-save window's spectrum against numpy's FFT in float64 (the DFT's
    # definition, sum_n x[n] exp(-j 2 pi k n / N)), in both FFT sizes of radix 4 and those
    # with a radix-2 pass, windows not a multiple of the eight done together
    from renderer.binaural import _NumpyOps

    rng = np.random.default_rng(n_fft + rows)
    frames = (hops - 1) * hop + n_fft
    block = rng.standard_normal((rows, frames + 7)).astype(np.float32)[:, 2:2 + frames]
    got = _NumpyOps.spectra(block, hops, hop, n_fft)
    windows = np.stack([block[:, k * hop:k * hop + n_fft] for k in range(hops)], axis=1)
    expected = np.fft.rfft(windows.astype(np.float64), axis=-1)
    assert got.shape == (rows, hops, n_fft // 2 + 1) and got.dtype == np.complex64
    assert np.abs(got - expected).max() < 1e-6 * np.abs(expected).max()


def test_native_spectra_check_their_arguments():
    import renderer.binaural as binaural

    if binaural._native is None or not binaural._native.use_vectors(True):
        pytest.skip("the native binaural loops are not built, or this CPU has no AVX2")
    twiddles = binaural._fft_twiddles(64)
    block = np.zeros((2, 100), np.float32)
    out = np.empty((2, 2, 33), np.complex64)
    binaural._native.spectra(block, 2, 30, *twiddles, out)
    with pytest.raises(ValueError):  # windows past the block's end
        binaural._native.spectra(block, 2, 40, *twiddles, out)
    with pytest.raises(ValueError):  # an output for other bins
        binaural._native.spectra(block, 2, 30, *twiddles, np.empty((2, 2, 32), np.complex64))
    with pytest.raises(ValueError):  # not a power of two
        binaural._native.spectra(block, 2, 30, *binaural._fft_twiddles(48), out)
    with pytest.raises(ValueError):  # float64 samples
        binaural._native.spectra(block.astype(np.float64), 2, 30, *twiddles, out)
    binaural._native.use_vectors(False)
    try:
        with pytest.raises(RuntimeError):  # the plain loops have no FFT: scipy's is used
            binaural._native.spectra(block, 2, 30, *twiddles, out)
    finally:
        binaural._native.use_vectors(True)


def test_native_products_check_their_arguments():
    import renderer.binaural as binaural

    if binaural._native is None:
        pytest.skip("the native binaural loops are not built")
    spectra = np.zeros((4, 2, 5), np.complex64)
    filters = np.zeros((4, 2, 5), np.complex64)
    out = np.empty((2, 2, 5), np.complex64)
    binaural._native.products(spectra, filters, out)
    with pytest.raises(ValueError):  # filters for other rows
        binaural._native.products(spectra, np.zeros((3, 2, 5), np.complex64), out)
    with pytest.raises(ValueError):  # complex128
        binaural._native.products(spectra.astype(np.complex128), filters, out)
    with pytest.raises(ValueError):  # the bins of a spectrum not contiguous
        binaural._native.products(np.zeros((4, 2, 10), np.complex64)[:, :, ::2], filters, out)
    with pytest.raises(ValueError):  # filters for other bins
        binaural._native.products(spectra, np.zeros((4, 2, 6), np.complex64), out)
    with pytest.raises(ValueError):  # an output for fewer hops
        binaural._native.products(spectra, filters, np.empty((1, 2, 5), np.complex64))


def test_native_rows_are_the_tracks_columns_scaled():
    # out[p, f] = tracks[f, columns[p]] * gains[p], into the rows of a wider buffer, over
    # more frames than one pass takes (64)
    import renderer.binaural as binaural

    if binaural._native is None:
        pytest.skip("the native binaural loops are not built")
    rng = np.random.default_rng(5)
    tracks = rng.standard_normal((150, 7)).astype(np.float32)
    columns = np.array([6, 0, 3, 3], np.int64)
    gains = np.array([1.0, 0.5, -2.0, 0.0], np.float32)
    buffer = np.full((6, 200), 9.0, np.float32)
    binaural._native.rows(tracks, columns, gains, buffer[1:5, 20:170])
    np.testing.assert_array_equal(buffer[1:5, 20:170], (tracks[:, columns] * gains).T)
    assert (buffer[[0, 5]] == 9.0).all() and (buffer[:, :20] == 9.0).all()
    assert (buffer[:, 170:] == 9.0).all()
    # the tracks laid out track by track (each track's frames contiguous, rows padded)
    by_tracks = np.full((7, 160), np.nan, np.float32)
    by_tracks[:, :150] = tracks.T
    again = np.full((6, 200), 9.0, np.float32)
    binaural._native.rows(by_tracks[:, :150].T, columns, gains, again[1:5, 20:170])
    np.testing.assert_array_equal(again, buffer)
    with pytest.raises(ValueError):  # a column that is not there
        binaural._native.rows(tracks, np.array([7], np.int64), gains[:1], buffer[:1, :150])
    with pytest.raises(ValueError):  # fewer frames out than in
        binaural._native.rows(tracks, columns, gains, buffer[:4, :149])
    with pytest.raises(ValueError):  # float64 tracks
        binaural._native.rows(tracks.astype(np.float64), columns, gains, buffer[:4, :150])
