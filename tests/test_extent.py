"""Tests of the polar extent panner (BS.2127 7.3.8.2).

Expected values come from the standard's equations worked by hand (the distance modification
of the extent, the weight of points around a circular extent, the fade to the point source
for small extents, the rms combination of the two depth distances) or from laws the panner
must obey (unit power, left/right mirror symmetry, a full-width ring is the same whatever the
source azimuth, a tall shape is a wide one turned a quarter turn, spreading grows as the
source comes closer).
"""

from __future__ import annotations

import functools
import math

import jax.numpy as jnp
import numpy as np
import pytest

from layouts import get_layout, polar_to_cartesian
from renderer.extent import (
    FADE_WIDTH_DEG,
    PolarExtentPanner,
    cached_polar_extent,
    extent_weights,
    modified_extent,
    polar_extent_gains_batched,
    polar_extent_gains_x64,
    spreading_points,
)
from renderer.point_source import point_source_gains_x64

CHUNK = 64  # every call uses one padded shape: one compilation per layout
TOL = 2e-6  # float32 evaluation


@functools.cache
def panner(name: str) -> PolarExtentPanner:
    return cached_polar_extent(get_layout(name))


def gains(name: str, positions, width, height=0.0, depth=0.0) -> np.ndarray:
    positions = np.asarray(positions, dtype=np.float64).reshape(-1, 3)
    n = len(positions)
    return polar_extent_gains_batched(
        panner(name), positions, np.broadcast_to(width, n), np.broadcast_to(height, n),
        np.broadcast_to(depth, n), chunk=CHUNK).astype(np.float64)


def cart(az, el, dist=1.0) -> np.ndarray:
    """(..., 3) positions from degrees (vectorised polar_to_cartesian)."""
    az, el, dist = np.broadcast_arrays(np.radians(az), np.radians(el), dist)
    return dist[..., None] * np.stack(
        [-np.sin(az) * np.cos(el), np.cos(az) * np.cos(el), np.sin(el)], axis=-1)


def random_cases(n: int, seed: int):
    rng = np.random.default_rng(seed)
    az = rng.uniform(-180, 180, n)
    el = np.degrees(np.arcsin(rng.uniform(-1, 1, n)))
    dist = rng.choice([0.2, 0.6, 1.0, 1.0, 1.7], n)
    width = rng.choice([0.0, 3.0, 20.0, 90.0, 200.0, 360.0], n)
    height = rng.choice([0.0, 7.0, 45.0, 120.0], n)
    depth = rng.choice([0.0, 0.0, 0.4], n)
    return cart(az, el, dist), width, height, depth


FRONT_BASIS = jnp.asarray(np.eye(3), jnp.float32)  # right, front, up for a source at the front


# --- sphere points -------------------------------------------------------------------------


def test_spreading_points_rows():
    points = spreading_points()
    assert np.allclose(np.linalg.norm(points, axis=1), 1.0)
    el = np.round(np.degrees(np.arcsin(np.clip(points[:, 2], -1, 1))), 6)
    rows = np.unique(el)
    assert np.allclose(rows, np.arange(-90, 91, 5))  # 37 rows, 5 degrees apart
    equator = points[el == 0]
    assert len(equator) == 72  # 2 (37 - 1) points around the full circle
    az = np.sort(np.degrees(np.arctan2(-equator[:, 0], equator[:, 1])) % 360)
    assert np.allclose(np.diff(az), 5.0)
    # rows get sparser towards the poles in proportion to cos(el); one point at each pole
    assert np.sum(el == 60) == 36 and np.sum(el == 90) == 1 and np.sum(el == -90) == 1


# --- distance modification (7.3.8.2.4) ------------------------------------------------------


def test_modified_extent_hand_values():
    def angle(size, d):
        return 4 * math.degrees(math.atan2(size, d))

    # extent 0 (size 0.2) at distance 0.5: on the upper segment towards 360
    a1 = angle(0.2, 1.0)
    expected_0 = 360 * (angle(0.2, 0.5) - a1) / (360 - a1)
    # extent 90 (size 0.4) at distance 2: on the lower segment, scaled towards 0
    expected_90 = 90 * angle(0.4, 2.0) / angle(0.4, 1.0)
    # extent 360 (size 1) at distance 3: 360 * 4 atan(1/3) / 180
    expected_360 = 360 * angle(1.0, 3.0) / 180.0
    got = modified_extent(jnp.array([0.0, 90.0, 45.0, 45.0, 360.0]),
                          jnp.array([0.5, 2.0, 1.0, 0.0, 3.0]))
    assert np.allclose(got, [expected_0, expected_90, 45.0, 360.0, expected_360], atol=1e-4)


def test_modified_extent_monotonic_in_distance():
    d = jnp.linspace(0.0, 3.0, 61)
    for extent in (0.0, 10.0, 90.0, 300.0):
        m = np.asarray(modified_extent(jnp.full_like(d, extent), d))
        assert np.all(np.diff(m[:21]) < 0)  # strictly shrinking up to the loudspeakers
        # beyond them: shrinking (a zero extent stays zero)
        assert np.all(np.diff(m[20:]) < 0) if extent > 0 else np.all(m[20:] == 0)
        assert m[0] == pytest.approx(360.0) and m[20] == pytest.approx(extent, abs=1e-4)


# --- weight function (7.3.8.2.1) -----------------------------------------------------------


def test_weights_circle_hand():
    # width == height == 40: a circle of radius 20 degrees, fading to 0 at 30 degrees
    angles = np.array([0.0, 10.0, 19.0, 25.0, 29.0, 35.0, 120.0])
    for az_dir in (0.0, 90.0, 200.0):  # the circle looks the same in every direction
        axis = np.radians(az_dir)
        offs = np.radians(angles)
        points = np.stack([np.sin(offs) * np.cos(axis), np.cos(offs), np.sin(offs) * np.sin(axis)],
                          axis=-1)
        w = extent_weights(points, FRONT_BASIS, jnp.float32(40.0), jnp.float32(40.0))
        expected = np.clip(1 - (angles - 20.0) / FADE_WIDTH_DEG, 0, 1)
        assert np.allclose(w, expected, atol=1e-5)


def test_weights_tall_is_wide_turned():
    rng = np.random.default_rng(3)
    points = rng.normal(size=(500, 3))
    points /= np.linalg.norm(points, axis=1, keepdims=True)
    # a quarter turn about the source direction (Y): right -> up, up -> left
    turned = np.stack([-points[:, 2], points[:, 1], points[:, 0]], axis=-1)
    for w, h in ((20.0, 80.0), (5.0, 150.0), (60.0, 170.0)):
        tall = extent_weights(points, FRONT_BASIS, jnp.float32(w), jnp.float32(h))
        wide = extent_weights(turned, FRONT_BASIS, jnp.float32(h), jnp.float32(w))
        assert np.allclose(tall, wide, atol=1e-5)


def test_weights_full_width_closes_ring():
    points = cart([0.0, 180.0, 90.0, -135.0, 0.0, 0.0], [0.0, 0.0, 0.0, 5.0, 30.0, 90.0])
    w = extent_weights(points, FRONT_BASIS, jnp.float32(360.0), jnp.float32(10.0))
    # the whole horizon is inside (5 degrees above it too); 30 degrees up is outside the fade
    assert np.allclose(w, [1, 1, 1, 1, 0, 0], atol=1e-6)


# --- gains ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["0+5+0", "4+5+0"])
def test_zero_extent_at_distance_one_is_point_source(name):
    rng = np.random.default_rng(1)
    v = rng.normal(size=(100, 3))
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    expected = np.asarray(point_source_gains_x64(panner(name).point_source, v))
    assert np.allclose(gains(name, v, 0.0), expected, atol=TOL)


@pytest.mark.parametrize("name", ["0+5+0", "4+5+0"])
def test_power_normalised(name):
    pos, w, h, d = random_cases(300, 5)
    g = gains(name, pos, w, h, d)
    assert np.all(g >= 0)
    assert np.allclose(np.sum(g * g, axis=1), 1.0, atol=1e-5)


def test_full_width_on_horizontal_layout():
    # a 360 degree wide source on the horizon is the same ring whatever its azimuth
    az = np.array([0.0, 30.0, 77.0, 180.0, -120.0])
    g = gains("0+5+0", cart(az, 0.0), 360.0)
    assert np.allclose(g, g[0], atol=TOL)
    names = panner("0+5+0").channel_names
    idx = {n: i for i, n in enumerate(names)}
    assert g[0, idx["M+030"]] == pytest.approx(g[0, idx["M-030"]], abs=TOL)
    assert g[0, idx["M+110"]] == pytest.approx(g[0, idx["M-110"]], abs=TOL)
    assert np.all(g[0] > 0.1)  # every loudspeaker plays
    assert np.sum(g[0] ** 2) == pytest.approx(1.0, abs=1e-5)
    # the point source at the front plays from the centre alone
    assert np.allclose(gains("0+5+0", cart(0.0, 0.0), 0.0)[0], np.eye(5)[idx["M+000"]],
                       atol=TOL)


def _mirror_permutation(names: tuple[str, ...]) -> np.ndarray:
    def mirrored(n: str) -> str:
        if n[1:] in ("+000", "+180") or n[-3:] in ("000", "180"):
            return n
        return n.replace("+", "#").replace("-", "+").replace("#", "-")

    return np.array([names.index(mirrored(n)) for n in names])


@pytest.mark.parametrize("name", ["0+5+0", "4+5+0"])
def test_mirror_symmetry(name):
    pos, w, h, d = random_cases(200, 7)
    mirrored = pos * np.array([-1.0, 1.0, 1.0])
    perm = _mirror_permutation(panner(name).channel_names)
    assert np.allclose(gains(name, mirrored, w, h, d), gains(name, pos, w, h, d)[:, perm],
                       atol=2e-5)


def test_depth_combines_two_distances_as_rms():
    rng = np.random.default_rng(11)
    n = 40
    direction = cart(rng.uniform(-180, 180, n), rng.uniform(-60, 60, n))
    dist = rng.uniform(0.2, 1.5, n)
    depth = rng.uniform(0.1, 2.0, n)  # some near ends clip to distance 0
    w, h = rng.choice([0.0, 30.0, 100.0], n), rng.choice([0.0, 20.0], n)
    both = gains("4+5+0", direction * dist[:, None], w, h, depth)
    far = gains("4+5+0", direction * (dist + depth / 2)[:, None], w, h)
    near = gains("4+5+0", direction * np.maximum(dist - depth / 2, 1e-3)[:, None], w, h)
    # a near end clipped to 0 is the 360 degree extent of the listening position;
    # 1e-3 instead of 0 keeps the direction and changes the extent by < 1e-2 degrees
    assert np.allclose(both, np.sqrt((far ** 2 + near ** 2) / 2), atol=2e-4)
    assert not np.allclose(both, far, atol=1e-2)


def test_spreading_grows_as_distance_shrinks():
    names = panner("0+5+0").channel_names
    centre = names.index("M+000")
    distances = [2.0, 1.0, 0.9, 0.8, 0.6, 0.4, 0.3, 0.2, 0.1, 0.05, 0.0]
    g = gains("0+5+0", cart(0.0, 0.0, np.array(distances)), 0.0)
    # a point source at the front plays from the centre alone, at or beyond the speakers;
    # closer, the source spreads more and more away from it
    assert np.allclose(g[:2, centre], 1.0, atol=TOL)
    assert np.all(np.diff(g[1:, centre]) < 0)
    assert g[-1, centre] ** 2 < 0.1
    # at the listening position any extent becomes 360 x 360 (basis: the front)
    full = gains("0+5+0", cart(0.0, 0.0), 360.0, 360.0)
    assert np.allclose(g[-1], full[0], atol=TOL)
    assert np.allclose(gains("0+5+0", np.zeros((3, 3)), [0.0, 50.0, 360.0], [0.0, 10.0, 0.0]),
                       full[0], atol=TOL)


def test_zero_position_with_depth_point_part_is_silent():
    # distance 0 with depth 3: the far end (1.5) is a point source with no direction; the
    # reference renderer's gains are NaN there and become 0
    g = gains("0+5+0", np.zeros((2, 3)), 0.0, 0.0, [3.0, 0.5])
    assert np.all(g[0] == 0.0)
    assert np.sum(g[1] ** 2) == pytest.approx(1.0, abs=1e-5)  # far end 0.25: fully spread


def test_width_zero_height_positive():
    names = panner("4+5+0").channel_names
    idx = {n: i for i, n in enumerate(names)}
    pos = cart(0.0, 0.0)
    tall = gains("4+5+0", pos, 0.0, 60.0)[0]
    assert np.sum(tall ** 2) == pytest.approx(1.0, abs=1e-5)
    assert tall[idx["U+030"]] == pytest.approx(tall[idx["U-030"]], abs=TOL)
    assert tall[idx["U+030"]] > 0.1 and tall[idx["M+000"]] > 0.5
    # the spread uses at least 5 degrees in each direction: width 0 equals width 5
    assert np.allclose(tall, gains("4+5+0", pos, 5.0, 60.0)[0], atol=TOL)
    # a tall source plays more from the height layer than a wide one of the same size
    wide = gains("4+5+0", pos, 60.0, 0.0)[0]
    ups = [idx[n] for n in ("U+030", "U-030", "U+110", "U-110")]
    assert np.sum(tall[ups] ** 2) > np.sum(wide[ups] ** 2) + 0.05


def test_small_extent_fades_in_power():
    # below the 10 degree fade, gains^2 = (1 - a) point^2 + a spread(5 x 5)^2, a = size / 10
    pos = cart(np.array([10.0, 100.0, -150.0]), np.array([0.0, 20.0, -10.0]))
    point = gains("4+5+0", pos, 0.0)
    g2 = gains("4+5+0", pos, 2.0, 2.0)
    g4 = gains("4+5+0", pos, 4.0, 1.0)  # max(width, height) sets the share
    spread_sq = (g2 ** 2 - 0.8 * point ** 2) / 0.2
    assert np.allclose(g4 ** 2, 0.6 * point ** 2 + 0.4 * spread_sq, atol=2e-5)
    assert not np.allclose(g2, point, atol=1e-2)


def test_batched_padding_and_float64_agree():
    pos, w, h, d = random_cases(150, 13)
    g = gains("0+5+0", pos, w, h, d)  # three padded chunks
    assert np.allclose(gains("0+5+0", pos[:5], w[:5], h[:5], d[:5]), g[:5], atol=1e-7)
    g64 = np.asarray(polar_extent_gains_x64(panner("0+5+0"), pos[:32], w[:32], h[:32], d[:32]))
    assert g64.dtype == np.float64
    assert np.allclose(g64, g[:32], atol=1e-5)
    assert np.allclose(np.sum(g64 ** 2, axis=1), 1.0, atol=1e-12)


def test_polar_to_cartesian_convention():
    # the helper used above follows the project convention (+90 azimuth = left = -X)
    assert np.allclose(cart(90.0, 0.0), polar_to_cartesian(90.0, 0.0))
