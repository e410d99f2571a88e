"""Tests of the point source panner (BS.2127 6.1).

Expected values come from the standard's equations worked by hand (2-D VBAP pairs, triangle
centroids, the 0+2+0 downmix and level law) or from laws the panner must obey (a source on a
loudspeaker plays from it alone, unit power, left/right mirror symmetry, continuity).
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np
import pytest

from layouts import Layout, LayoutError, get_layout, polar_to_cartesian
from renderer.point_source import (
    PointSourcePanner,
    configure_point_source,
    point_source_gains_batch,
    point_source_gains_x64,
    polar_direction,
)

BS2051 = ["0+2+0", "0+5+0", "2+5+0", "4+5+0", "4+5+1", "3+7+0", "4+9+0", "9+10+3", "0+7+0", "4+7+0"]
FULL = [n for n in BS2051 if n != "0+2+0"]
PAD = 512  # every call is padded to this many directions: one compilation per layout
TOL = 2e-6  # float32 evaluation


@functools.cache
def panner(name: str) -> PointSourcePanner:
    return configure_point_source(get_layout(name))


def gains(p: PointSourcePanner, directions: np.ndarray) -> np.ndarray:
    """(n, 3) -> (n, n_speakers) through the jitted function with a fixed padded shape."""
    directions = np.asarray(directions, dtype=np.float32).reshape(-1, 3)
    out = []
    for start in range(0, len(directions), PAD):
        chunk = directions[start:start + PAD]
        padded = np.concatenate([chunk, np.tile([[0.0, 1.0, 0.0]], (PAD - len(chunk), 1))])
        out.append(np.asarray(point_source_gains_batch(p, padded))[: len(chunk)])
    return np.concatenate(out)


def unit(az: float, el: float = 0.0) -> np.ndarray:
    return polar_to_cartesian(az, el, 1.0)


def random_directions(n: int, seed: int = 0) -> np.ndarray:
    d = np.random.default_rng(seed).normal(size=(n, 3))
    return d / np.linalg.norm(d, axis=1, keepdims=True)


def mirror_name(name: str) -> str:
    """BS.2051 label of the loudspeaker mirrored left/right (M+030 <-> M-030)."""
    if len(name) == 5 and name[1] in "+-" and name[2:] not in ("000", "180"):
        return name[0] + {"+": "-", "-": "+"}[name[1]] + name[2:]
    if name.endswith("SC"):
        return name[0] + {"+": "-", "-": "+"}[name[1]] + "SC"
    return name


def with_position(layout: Layout, name: str, az: float, el: float) -> Layout:
    speakers = tuple(dataclasses.replace(s, azimuth=az, elevation=el) if s.name == name else s
                     for s in layout.speakers)
    return dataclasses.replace(layout, speakers=speakers)


@pytest.mark.parametrize("name", BS2051)
def test_outputs_are_non_lfe_speakers(name):
    layout = get_layout(name)
    p = panner(name)
    assert p.channel_names == tuple(s.name for s in layout.speakers if not s.is_lfe)
    assert gains(p, random_directions(3)).shape == (3, p.n_speakers)


@pytest.mark.parametrize("name", BS2051)
def test_source_on_speaker_plays_from_it_alone(name):
    p = panner(name)
    speakers = [s for s in get_layout(name).speakers if not s.is_lfe]
    g = gains(p, np.array([s.unit_vector for s in speakers]))
    np.testing.assert_allclose(g, np.eye(len(speakers)), atol=TOL)


@pytest.mark.parametrize("name", FULL)
def test_unit_power(name):
    g = gains(panner(name), random_directions(400, seed=1))
    np.testing.assert_allclose(np.sum(g**2, axis=1), 1.0, atol=4 * TOL)
    assert np.all(g >= 0.0)
    assert np.all(np.isfinite(g))


@pytest.mark.parametrize("name", BS2051)
def test_left_right_mirror_symmetry(name):
    p = panner(name)
    d = random_directions(300, seed=2)
    mirrored = d * np.array([-1.0, 1.0, 1.0])
    perm = [p.channel_names.index(mirror_name(n)) for n in p.channel_names]
    np.testing.assert_allclose(gains(p, mirrored), gains(p, d)[:, perm], atol=2 * TOL)


@pytest.mark.parametrize("az", [40.0, 55.0, 70.0, 95.0])
def test_0_5_0_horizontal_pair_is_2d_vbap(az):
    # On the horizontal plane between M+030 and M+110 the region is bounded by the edge
    # M+030 - M+110, so the standard reduces to 2-D VBAP on that pair.
    p = panner("0+5+0")
    g = gains(p, unit(az)[None])[0]
    basis = np.array([[-np.sin(np.radians(a)), np.cos(np.radians(a))] for a in (30.0, 110.0)])
    pair = np.linalg.solve(basis.T, unit(az)[:2])
    pair /= np.linalg.norm(pair)
    expected = np.zeros(p.n_speakers)
    expected[p.channel_names.index("M+030")] = pair[0]
    expected[p.channel_names.index("M+110")] = pair[1]
    np.testing.assert_allclose(g, expected, atol=TOL)


def test_0_5_0_midpoint_between_front_and_surround_is_equal():
    p = panner("0+5+0")
    g = gains(p, unit(70.0)[None])[0]
    i, j = p.channel_names.index("M+030"), p.channel_names.index("M+110")
    np.testing.assert_allclose([g[i], g[j]], [np.sqrt(0.5)] * 2, atol=TOL)


def test_triangle_centroid_gets_equal_gains():
    # 4+5+0: M+000, M+030 and U+030 span a hull triangle; the sum of the three unit vectors
    # is reproduced by VBAP with equal gains 1/sqrt(3).
    p = panner("4+5+0")
    names = ("M+000", "M+030", "U+030")
    d = sum(s.unit_vector for s in get_layout("4+5+0").speakers if s.name in names)
    g = gains(p, d[None])[0]
    expected = np.zeros(p.n_speakers)
    expected[[p.channel_names.index(n) for n in names]] = 1.0 / np.sqrt(3.0)
    np.testing.assert_allclose(g, expected, atol=TOL)


def test_stereo_front_centre_is_equal_and_unit_power():
    g = gains(panner("0+2+0"), unit(0.0)[None])[0]
    np.testing.assert_allclose(g, [np.sqrt(0.5)] * 2, atol=TOL)


def test_stereo_rear_is_minus_3db():
    # directly behind: 0+5+0 pans equally to M+110/M-110, which downmix to L/R; the level law
    # gives 0.5 ** 0.5 in amplitude (-3 dB) when only rear loudspeakers play.
    g = gains(panner("0+2+0"), unit(180.0)[None])[0]
    np.testing.assert_allclose(g, [0.5, 0.5], atol=TOL)


def test_stereo_source_at_surround_speaker():
    # on M+110: downmix 1/sqrt(2) to the left only, normalised to 1, then -3 dB
    p = panner("0+2+0")
    g = gains(p, unit(110.0)[None])[0]
    expected = np.zeros(2)
    expected[p.channel_names.index("M+030")] = np.sqrt(0.5)
    np.testing.assert_allclose(g, expected, atol=TOL)


def test_stereo_power_between_minus_3db_and_0db():
    g = gains(panner("0+2+0"), random_directions(300, seed=3))
    power = np.sum(g**2, axis=1)
    assert np.all(power <= 1.0 + TOL)
    assert np.all(power >= 0.5 - TOL)


@pytest.mark.parametrize("name", ["0+2+0", "0+5+0", "4+5+1", "9+10+3", "4+7+0"])
def test_continuity_along_paths(name):
    p = panner(name)
    step = 0.05
    paths = [np.stack([np.arange(-180.0, 180.0, step), np.full(7200, el)], axis=1)
             for el in (0.0, 17.0, 38.0, -20.0)]
    paths.append(np.stack([np.full(3600, 60.0), np.arange(-90.0, 90.0, step)], axis=1))
    paths.append(np.stack([np.full(3600, 180.0), np.arange(-90.0, 90.0, step)], axis=1))
    for path in paths:
        g = gains(p, np.array([unit(a, e) for a, e in path]))
        assert np.max(np.abs(np.diff(g, axis=0))) < 0.01


def test_real_positions_used_for_gains():
    # M+110 moved to 115 degrees: triangulation stays on the nominal layout, but a source at
    # the real position plays from that loudspeaker alone
    layout = with_position(get_layout("0+5+0"), "M+110", 115.0, 5.0)
    p = configure_point_source(layout)
    g = gains(p, unit(115.0, 5.0)[None])[0]
    expected = np.zeros(p.n_speakers)
    expected[p.channel_names.index("M+110")] = 1.0
    np.testing.assert_allclose(g, expected, atol=TOL)
    np.testing.assert_allclose(np.sum(gains(p, random_directions(200)) ** 2, axis=1), 1.0,
                               atol=4 * TOL)


def test_screen_speaker_out_of_range_raises():
    layout = with_position(get_layout("4+9+0"), "M+SC", 30.0, 0.0)
    with pytest.raises(LayoutError, match="M\\+SC"):
        configure_point_source(layout)


@pytest.mark.parametrize("sc_az", [10.0, 45.0])
def test_wide_and_narrow_screen_speakers(sc_az):
    layout = get_layout("4+9+0")
    layout = with_position(with_position(layout, "M+SC", sc_az, 0.0), "M-SC", -sc_az, 0.0)
    p = configure_point_source(layout)
    g = gains(p, unit(sc_az)[None])[0]
    assert g[p.channel_names.index("M+SC")] == pytest.approx(1.0, abs=TOL)
    np.testing.assert_allclose(np.sum(gains(p, random_directions(200)) ** 2, axis=1), 1.0,
                               atol=4 * TOL)


def test_vectorised_shape_and_values():
    p = panner("4+7+0")
    d = random_directions(35, seed=4).reshape(5, 7, 3)
    g = np.asarray(point_source_gains_batch(p, d))
    assert g.shape == (5, 7, p.n_speakers)
    np.testing.assert_allclose(g.reshape(35, -1), gains(p, d.reshape(35, 3)), atol=1e-7)


def test_x64_matches_float32_and_is_float64():
    p = panner("9+10+3")
    d = random_directions(PAD, seed=6)
    g64 = np.asarray(point_source_gains_x64(p, d))
    assert g64.dtype == np.float64
    np.testing.assert_allclose(np.sum(g64**2, axis=1), 1.0, atol=1e-12)
    np.testing.assert_allclose(g64, gains(p, d), atol=TOL)


def test_polar_direction_convention():
    d = np.asarray(polar_direction(np.array([0.0, 90.0, -90.0, 180.0, 0.0]),
                                   np.array([0.0, 0.0, 0.0, 0.0, 90.0])))
    expected = [[0, 1, 0], [-1, 0, 0], [1, 0, 0], [0, -1, 0], [0, 0, 1]]
    np.testing.assert_allclose(d, expected, atol=1e-6)
    assert np.asarray(polar_direction(np.zeros((2, 3)), 10.0)).shape == (2, 3, 3)
