"""Tests for renderer.hoa (BS.2127 clause 9: AllRAD HOA decoding and HOA render items).

Expected values come from the spherical-harmonic definitions (hand-evaluated first-order
harmonics, orthonormality of N3D, the FuMa "maximum 1" convention), energy and symmetry laws of
the decoder, and the exact timing rule (a boundary at t seconds affects samples >= ceil(t * fs)).
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest

from adm.items import HoaRenderItem, ItemContext
from adm.model import (
    DEFAULT_SCREEN,
    AdmError,
    AudioChannelFormat,
    Frequency,
    HoaBlock,
    TypeDefinition,
)
from layouts import get_layout
from layouts.model import Layout, Speaker
from renderer.hoa import (
    hoa_decode_matrix,
    hoa_segments,
    hoa_warnings,
    normalization_factors,
    real_spherical_harmonics,
    virtual_speaker_directions,
)


def acn_channels(order: int) -> tuple[np.ndarray, np.ndarray]:
    """Orders and degrees of the full set up to ``order`` in ACN order (ACN = n^2 + n + m)."""
    n = np.array([k for k in range(order + 1) for _ in range(2 * k + 1)])
    m = np.array([d for k in range(order + 1) for d in range(-k, k + 1)])
    return n, m


def encode(order: int, az_deg: float, el_deg: float, normalization: str) -> np.ndarray:
    """(C,) ambisonic signals of a unit plane wave from (az, el) degrees."""
    n, m = acn_channels(order)
    return real_spherical_harmonics(n, m, [math.radians(az_deg)], [math.radians(el_deg)],
                                    normalization)[:, 0]


def speaker_gains(layout: Layout, order: int, az: float, el: float, norm: str) -> np.ndarray:
    n, m = acn_channels(order)
    return hoa_decode_matrix(layout, n, m, norm) @ encode(order, az, el, norm)


@pytest.fixture(scope="module")
def l500() -> Layout:
    return get_layout("0+5+0")


@pytest.fixture(scope="module")
def cube() -> Layout:
    el = math.degrees(math.atan(1 / math.sqrt(2)))
    return Layout("cube", tuple(Speaker(f"S{i}", az, e) for i, (az, e) in enumerate(
        [(a, e) for e in (el, -el) for a in (45.0, 135.0, -135.0, -45.0)])))


# --------------------------------------------------------------------------------------------
# spherical harmonics
# --------------------------------------------------------------------------------------------


def test_first_order_sn3d_harmonics_by_hand() -> None:
    az, el = math.radians(30.0), math.radians(20.0)
    y = real_spherical_harmonics([0, 1, 1, 1], [0, -1, 0, 1], [az], [el], "SN3D")[:, 0]
    # W = 1, Y = sin(az) cos(el) (left), Z = sin(el), X = cos(az) cos(el) (front)
    expected = [1.0, math.sin(az) * math.cos(el), math.sin(el), math.cos(az) * math.cos(el)]
    np.testing.assert_allclose(y, expected, atol=1e-14)


def test_second_order_sn3d_by_hand() -> None:
    az, el = math.radians(-50.0), math.radians(35.0)
    y = real_spherical_harmonics([2] * 5, [-2, -1, 0, 1, 2], [az], [el], "SN3D")[:, 0]
    s3 = math.sqrt(3.0)
    ce, se = math.cos(el), math.sin(el)
    expected = [s3 / 2 * math.sin(2 * az) * ce**2, s3 / 2 * math.sin(az) * math.sin(2 * el),
                0.5 * (3 * se**2 - 1), s3 / 2 * math.cos(az) * math.sin(2 * el),
                s3 / 2 * math.cos(2 * az) * ce**2]
    np.testing.assert_allclose(y, expected, atol=1e-14)


def test_n3d_is_orthonormal_on_the_virtual_speakers() -> None:
    # (1/4pi) integral of Y Y' over the sphere = identity for N3D; the t-design integrates
    # these products (degree <= 10) exactly
    pts = virtual_speaker_directions()
    assert pts.shape == (5200, 3)
    np.testing.assert_allclose(np.linalg.norm(pts, axis=1), 1.0, atol=1e-12)
    az = np.arctan2(-pts[:, 0], pts[:, 1])
    el = np.arcsin(np.clip(pts[:, 2], -1, 1))
    n, m = acn_channels(5)
    y = real_spherical_harmonics(n, m, az, el, "N3D")
    np.testing.assert_allclose(y @ y.T / len(pts), np.eye(36), atol=1e-10)


def test_fuma_weights() -> None:
    # FuMa: W = 1/sqrt(2); every higher harmonic has maximum |value| 1 over the sphere
    assert normalization_factors([0], [0], "FuMa")[0] == pytest.approx(1 / math.sqrt(2))
    az, el = np.meshgrid(np.radians(np.arange(-180, 180, 0.5)),
                         np.radians(np.arange(-90, 90.1, 0.5)))
    n, m = acn_channels(3)
    y = real_spherical_harmonics(n[1:], m[1:], az.ravel(), el.ravel(), "FuMa")
    np.testing.assert_allclose(np.abs(y).max(axis=1), 1.0, atol=2e-4)
    # N3D = sqrt(2n + 1) * SN3D
    np.testing.assert_allclose(normalization_factors(n, m, "N3D") / normalization_factors(
        n, m, "SN3D"), np.sqrt(2 * n + 1), rtol=1e-14)


# --------------------------------------------------------------------------------------------
# decode matrix
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("norm", ["SN3D", "N3D", "FuMa"])
def test_plane_wave_loudest_at_nearest_speaker(l500: Layout, norm: str) -> None:
    # (at first order a frontal wave gives M+030/M-030 more than M+000: wide lobes)
    for az, name in [(30.0, "M+030"), (-30.0, "M-030"), (110.0, "M+110"), (-110.0, "M-110")]:
        g = speaker_gains(l500, 1, az, 0.0, norm)
        assert np.argmax(g) == l500.index(name), (az, g)
        assert g[l500.index("LFE1")] == 0.0


def test_front_left_plane_wave_first_order_sn3d(l500: Layout) -> None:
    g = speaker_gains(l500, 1, 25.0, 5.0, "SN3D")
    assert np.argmax(g) == l500.index("M+030")
    assert g[l500.index("M+030")] > g[l500.index("M-030")]


def test_normalisations_give_same_gains_for_same_field(l500: Layout) -> None:
    for order in (1, 2, 3):
        n, m = acn_channels(order)
        sn3d = encode(order, 63.0, 17.0, "SN3D")
        signals = {
            "SN3D": sn3d,
            "N3D": sn3d * np.sqrt(2 * n + 1),  # known conversion factor
            "FuMa": encode(order, 63.0, 17.0, "FuMa"),
        }
        gains = {k: hoa_decode_matrix(l500, n, m, k) @ s for k, s in signals.items()}
        np.testing.assert_allclose(gains["N3D"], gains["SN3D"], atol=1e-12)
        np.testing.assert_allclose(gains["FuMa"], gains["SN3D"], atol=1e-12)


def test_order_zero_gives_unit_power_and_equal_gains_on_symmetric_layout(cube: Layout) -> None:
    d = hoa_decode_matrix(cube, [0], [0], "SN3D")
    assert d.shape == (8, 1)
    # W of any plane wave is 1 (SN3D): the mean-power normalisation makes the power exactly 1
    assert np.sum(d**2) == pytest.approx(1.0, abs=1e-12)
    np.testing.assert_allclose(d[:, 0], 1 / math.sqrt(8), rtol=1e-4)
    # first order on the cube: W equal, X/Y/Z columns follow the speakers' signs
    d1 = hoa_decode_matrix(cube, [0, 1, 1, 1], [0, -1, 0, 1], "SN3D")
    np.testing.assert_allclose(d1[:, 0], d1[0, 0], rtol=1e-4)
    signs = np.sign(np.stack([cube.positions[:, 0] * -1, cube.positions[:, 2],
                              cube.positions[:, 1]], axis=1))  # Y (left), Z, X (front)
    np.testing.assert_array_equal(np.sign(d1[:, 1:]), signs)


def test_left_right_symmetry(l500: Layout) -> None:
    n, m = acn_channels(3)
    d = hoa_decode_matrix(l500, n, m, "N3D")
    mirror = [l500.index(s.name.replace("+", "#").replace("-", "+").replace("#", "-"))
              if s.name[1:] not in ("+000", "FE1") else i for i, s in enumerate(l500.speakers)]
    # mirroring left/right flips the sign of the m < 0 harmonics (sin(|m| az)); the t-design
    # itself is not exactly mirror-symmetric, hence the tolerance
    flip = np.where(m < 0, -1.0, 1.0)
    np.testing.assert_allclose(d[mirror], d * flip, atol=1e-4)
    assert np.max(np.abs(d)) > 0.1


def test_mean_power_is_one_over_the_sphere(l500: Layout) -> None:
    # independent quadrature: Gauss-Legendre in sin(el) x uniform azimuth
    x, w = np.polynomial.legendre.leggauss(40)
    az = np.radians(np.arange(0.0, 360.0, 3.0))
    el = np.arcsin(x)
    az_g, el_g = np.meshgrid(az, el)
    weights = np.repeat(w[:, None], len(az), axis=1).ravel() / (2 * len(az))
    for order, norm in [(1, "SN3D"), (3, "FuMa"), (5, "N3D")]:
        n, m = acn_channels(order)
        y = real_spherical_harmonics(n, m, az_g.ravel(), el_g.ravel(), norm)
        power = np.sum((hoa_decode_matrix(l500, n, m, norm) @ y) ** 2, axis=0)
        assert np.sum(weights * power) == pytest.approx(1.0, rel=0.01)


def test_order_five(l500: Layout) -> None:
    n, m = acn_channels(5)
    d = hoa_decode_matrix(l500, n, m, "SN3D")
    assert d.shape == (6, 36) and d.dtype == np.float64 and np.all(np.isfinite(d))
    assert np.all(d[l500.index("LFE1")] == 0.0)
    for name in ("M+030", "M-030", "M+000", "M+110", "M-110"):
        az = l500.speakers[l500.index(name)].azimuth
        g = speaker_gains(l500, 5, az, 0.0, "SN3D")
        assert np.argmax(g) == l500.index(name)
        # higher order: more of the energy on the target speaker than at first order
        g1 = speaker_gains(l500, 1, az, 0.0, "SN3D")
        assert g[np.argmax(g)] ** 2 / np.sum(g**2) > g1[np.argmax(g1)] ** 2 / np.sum(g1**2)


def test_channel_order_does_not_matter(l500: Layout) -> None:
    n, m = acn_channels(2)
    perm = np.random.default_rng(3).permutation(len(n))
    d = hoa_decode_matrix(l500, n, m, "SN3D")
    np.testing.assert_allclose(hoa_decode_matrix(l500, n[perm], m[perm], "SN3D"), d[:, perm],
                               atol=1e-14)


def test_decode_errors(l500: Layout) -> None:
    with pytest.raises(AdmError, match="normalization 'maxN'"):
        hoa_decode_matrix(l500, [0], [0], "maxN")
    n, m = acn_channels(4)
    with pytest.raises(AdmError, match="FuMa.*order 3"):
        hoa_decode_matrix(l500, n, m, "FuMa")
    with pytest.raises(AdmError, match="order 51"):
        hoa_decode_matrix(l500, [51], [0], "SN3D")
    with pytest.raises(AdmError, match="degree 2"):
        hoa_decode_matrix(l500, [1], [2], "SN3D")


# --------------------------------------------------------------------------------------------
# render items
# --------------------------------------------------------------------------------------------


def make_item(order: int, tracks, *, start=None, duration=None, rtime=None, block_duration=None,
              gain=1.0, mute=False, nfc=None, screen_ref=False,
              normalization="SN3D", block_gain=1.0) -> HoaRenderItem:
    n, m = acn_channels(order)
    channels = tuple(
        AudioChannelFormat(id=f"AC_0004{1001 + i:04X}", name=f"ch{i}", type=TypeDefinition.HOA,
                           blocks=(HoaBlock(id=f"AB_0004{1001 + i:04X}_00000001", order=int(a),
                                            degree=int(b), rtime=rtime,
                                            duration=block_duration, gain=block_gain),))
        for i, (a, b) in enumerate(zip(n, m)))
    context = ItemContext(object_start=start, object_duration=duration,
                          reference_screen=DEFAULT_SCREEN, channel_frequency=Frequency(),
                          pack_absolute_distance=None, object_gain=gain, object_mute=mute,
                          object_ids=("AO_1001",), pack_format_ids=("AP_00041001",))
    return HoaRenderItem(track_indices=tuple(tracks), channel_formats=channels, context=context,
                         orders=tuple(int(x) for x in n), degrees=tuple(int(x) for x in m),
                         normalization=normalization, nfc_ref_dist=nfc, screen_ref=screen_ref,
                         rtime=rtime, duration=block_duration)


def test_segments_hold_decoder_columns_over_object_span(l500: Layout) -> None:
    sr = 48000
    item = make_item(1, [4, 5, None, 7], start=Fraction(1, 3) + Fraction(1, 96000),
                     duration=Fraction(1, 2), gain=0.5)
    seg = hoa_segments(item, l500, sr)
    d = hoa_decode_matrix(l500, item.orders, item.degrees, "SN3D")
    assert list(seg.track) == [4, 5, 7]  # the silent channel has no segment
    # start 16000.5 samples -> first affected sample 16001; end 40000.5 -> last 40001 (excl.)
    assert np.all(seg.first == 16001) and np.all(seg.last == 40001)
    assert np.all(seg.ramp_step == 0.0)
    np.testing.assert_allclose(seg.gains_to, 0.5 * d[:, [0, 1, 3]].T, rtol=1e-6)
    np.testing.assert_array_equal(seg.gains_from, seg.gains_to)


def test_segments_block_timing_and_open_end(l500: Layout) -> None:
    sr = 48000
    seg = hoa_segments(make_item(1, range(4)), l500, sr)
    assert np.all(seg.first == 0) and np.all(seg.last > 10**15)  # whole file
    timed = hoa_segments(make_item(1, range(4), start=Fraction(1), rtime=Fraction(1, 4),
                                   block_duration=Fraction(1, 2)), l500, sr)
    assert np.all(timed.first == 60000) and np.all(timed.last == 84000)
    muted = hoa_segments(make_item(1, range(4), mute=True), l500, sr)
    assert np.all(muted.gains_to == 0.0)


def test_segments_errors_name_the_pack(l500: Layout) -> None:
    with pytest.raises(AdmError, match=r"f\.wav: audioPackFormat AP_00041001: .*FuMa"):
        hoa_segments(make_item(4, range(25), normalization="FuMa"), l500, 48000,
                     where="f.wav: ")


def test_block_gain_is_applied_and_reported(l500: Layout) -> None:
    plain = hoa_segments(make_item(1, range(4)), l500, 48000)
    half = hoa_segments(make_item(1, range(4), block_gain=0.5, gain=0.5), l500, 48000)
    np.testing.assert_allclose(half.gains_to, 0.25 * plain.gains_to, rtol=1e-6)
    assert any("gain" in s for s in hoa_warnings(make_item(1, range(4), block_gain=0.5)))


def test_warnings() -> None:
    assert hoa_warnings(make_item(1, range(4))) == []
    assert hoa_warnings(make_item(1, range(4), nfc=0.0)) == []
    notes = hoa_warnings(make_item(1, range(4), nfc=2.0, screen_ref=True))
    assert any("nfcRefDist" in s and "not applied" in s for s in notes)
    assert any("screenRef" in s for s in notes)
