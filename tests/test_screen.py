"""Tests of the screen position modifiers (BS.2127 7.3.3 screenRef, 7.3.4 screenEdgeLock) and
the clause 10 point conversion they use.

Expected values are worked out here from the standard's definitions: the edge angles of a flat
screen, the piecewise-linear edge-to-edge remapping, the clause 10 sector mapping, never from
the code under test.
"""

from __future__ import annotations

import numpy as np
import pytest

from adm.model import DEFAULT_SCREEN, CartesianScreen, PolarScreen
from layouts import get_layout
from renderer.screen import (
    compensate_position,
    point_cart_to_polar,
    point_polar_to_cart,
    screen_edge_lock,
    screen_edges,
    screen_scale,
)

L050 = get_layout("0+5+0")
L490 = get_layout("4+9+0")  # has U+045: cartesian positions get the azimuth compensation
DEFAULT_TOP = np.degrees(np.arctan(np.tan(np.radians(29.0)) / 1.78))


def cart(az, el, d=1.0):
    az, el = np.radians(az), np.radians(el)
    return d * np.array([-np.sin(az) * np.cos(el), np.cos(az) * np.cos(el), np.sin(el)])


def az_el_d(v):
    v = np.asarray(v, dtype=float)
    return (
        np.degrees(np.arctan2(-v[..., 0], v[..., 1])),
        np.degrees(np.arctan2(v[..., 2], np.hypot(v[..., 0], v[..., 1]))),
        np.linalg.norm(v, axis=-1),
    )


def sector_point(az, left_az, right_az, left_xy, right_xy):
    """Clause 10: position of ``az`` on the cube edge between two sector corners, by the
    tangent law between the corners' azimuths and the equal-power angle of the balance."""
    mid = (left_az + right_az) / 2
    half = right_az - mid
    g_r = 0.5 + 0.5 * np.tan(np.radians(az - mid)) / np.tan(np.radians(half))
    p = np.arctan2(g_r, 1 - g_r) / (np.pi / 2)
    return np.asarray(left_xy) + (np.asarray(right_xy) - np.asarray(left_xy)) * p


def random_positions(rng, n):
    pol = np.array([cart(a, e, d) for a, e, d in zip(
        rng.uniform(-180, 180, n), rng.uniform(-89, 89, n), rng.uniform(0.2, 2, n))])
    cub = rng.uniform(-1, 1, (n, 3))
    return np.concatenate([pol, cub]), np.r_[np.zeros(n, bool), np.ones(n, bool)]


# --------------------------------------------------------------------------------------------
# screen edges and point conversion
# --------------------------------------------------------------------------------------------


def test_default_screen_edges():
    e = screen_edges(DEFAULT_SCREEN)
    assert e.left_azimuth == pytest.approx(29.0)
    assert e.right_azimuth == pytest.approx(-29.0)
    assert e.top_elevation == pytest.approx(DEFAULT_TOP)
    assert e.bottom_elevation == pytest.approx(-DEFAULT_TOP)


def test_cartesian_screen_edges():
    # 2 wide at Y = 1: the edges are at 45 degrees; 2:1 -> half height 0.5
    e = screen_edges(CartesianScreen(2.0, 0.0, 1.0, 0.0, 2.0))
    assert (e.left_azimuth, e.right_azimuth) == pytest.approx((45.0, -45.0))
    assert e.top_elevation == pytest.approx(np.degrees(np.arctan(0.5)))


def test_screen_behind_listener_is_rejected():
    with pytest.raises(ValueError, match="behind"):
        screen_edges(PolarScreen(1.78, 0.0, 0.0, 1.0, 200.0))


@pytest.mark.parametrize("az, xy", [(0, (0, 1)), (30, (-1, 1)), (-30, (1, 1)), (110, (-1, -1)),
                                    (-110, (1, -1)), (180, (0, -1))])
def test_point_polar_to_cart_corners(az, xy):
    np.testing.assert_allclose(point_polar_to_cart(az, 0.0, 1.0), [*xy, 0.0], atol=1e-12)


def test_point_polar_to_cart_elevation():
    # el = 30 maps to the top corner's 45-degree angle: z = r = 1; el 90 is straight up
    np.testing.assert_allclose(point_polar_to_cart(0.0, 30.0, 1.0), [0, 1, 1], atol=1e-12)
    np.testing.assert_allclose(point_polar_to_cart(0.0, 90.0, 1.0), [0, 0, 1], atol=1e-12)
    np.testing.assert_allclose(point_polar_to_cart(15.0, 0.0, 0.5),
                               [*(0.5 * sector_point(15, 30, 0, (-1, 1), (0, 1))), 0], atol=1e-12)


def test_point_conversion_round_trip():
    rng = np.random.default_rng(1)
    p = rng.uniform(-1, 1, (500, 3))
    az, el, d = point_cart_to_polar(p)
    assert np.all((az >= -180) & (az < 180))
    np.testing.assert_allclose(point_polar_to_cart(az, el, d), p, atol=1e-9)
    az, el, d = point_cart_to_polar(np.array([[0, 0, 0.5], [0, 0, 0]]))
    np.testing.assert_allclose(np.c_[az, el, d], [[0, 90, 0.5], [0, 0, 0]])


def test_compensation_only_with_u045():
    az, el = compensate_position(np.array([30.0, 30.0, -30.0, 100.0]),
                                 np.array([0.0, 30.0, 30.0, 30.0]), L490)
    # at el 30 the +/-30 breakpoint moves to +/-20; linear towards +/-180
    np.testing.assert_allclose(az, [30.0, 20.0, -20.0, 20.0 + 70.0 * 160.0 / 150.0])
    az, _ = compensate_position(np.array([30.0]), np.array([30.0]), L050)
    np.testing.assert_allclose(az, [30.0])


# --------------------------------------------------------------------------------------------
# screenRef
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("layout", [L050, get_layout("4+5+0")])
def test_screen_ref_same_screens_is_identity(layout):
    pos, cartesian = random_positions(np.random.default_rng(2), 200)
    out = screen_scale(pos, np.ones(len(pos), bool), DEFAULT_SCREEN, DEFAULT_SCREEN, cartesian,
                       layout)
    np.testing.assert_allclose(out, pos, atol=1e-9)


def test_screen_ref_off_or_no_reproduction_screen_is_identity():
    pos, cartesian = random_positions(np.random.default_rng(3), 50)
    wide = PolarScreen(1.78, 0.0, 0.0, 1.0, 90.0)
    np.testing.assert_array_equal(
        screen_scale(pos, np.zeros(len(pos), bool), DEFAULT_SCREEN, wide, cartesian, L050), pos)
    np.testing.assert_array_equal(
        screen_scale(pos, np.ones(len(pos), bool), DEFAULT_SCREEN, None, cartesian, L050), pos)


def test_screen_ref_polar_scaling():
    wide = PolarScreen(1.78, 0.0, 0.0, 1.0, 90.0)  # edges at +/-45 degrees
    top = np.degrees(np.arctan(1.0 / 1.78))
    src = np.array([cart(29, 0, 1.5), cart(14.5, 0), cart(104.5, 0), cart(-29, DEFAULT_TOP),
                    cart(0, (90 + DEFAULT_TOP) / 2)])
    out = screen_scale(src, np.ones(5, bool), DEFAULT_SCREEN, wide, np.zeros(5, bool), L050)
    az, el, d = az_el_d(out)
    np.testing.assert_allclose(az, [45, 22.5, (45 + 180) / 2, -45, 0], atol=1e-9)
    np.testing.assert_allclose(el, [0, 0, 0, top, (90 + top) / 2], atol=1e-9)
    np.testing.assert_allclose(d, [1.5, 1, 1, 1, 1], atol=1e-12)


def test_screen_ref_cartesian_scaling():
    wide = PolarScreen(1.78, 0.0, 0.0, 1.0, 90.0)
    # the cube point at polar azimuth 29 (the reference screen's left edge) moves to the
    # cube point of azimuth 45 (the reproduction screen's left edge); 0+5+0 has no U+045
    src = np.array([[*sector_point(29, 30, 0, (-1, 1), (0, 1)), 0.0]])
    out = screen_scale(src, [True], DEFAULT_SCREEN, wide, [True], L050)
    expected = sector_point(45, 110, 30, (-1, -1), (-1, 1))
    np.testing.assert_allclose(out[0], [*expected, 0.0], atol=1e-9)


# --------------------------------------------------------------------------------------------
# screenEdgeLock
# --------------------------------------------------------------------------------------------


def test_screen_edge_lock_polar():
    src = np.array([cart(10, 5, 0.8)] * 4 + [cart(-100, 20)])
    h = np.array(["left", "right", None, "left", None], dtype=object)
    v = np.array([None, None, "top", "bottom", None], dtype=object)
    out = screen_edge_lock(src, h, v, DEFAULT_SCREEN, np.zeros(5, bool), L050)
    az, el, d = az_el_d(out)
    np.testing.assert_allclose(az, [29, -29, 10, 29, -100], atol=1e-9)
    np.testing.assert_allclose(el, [5, 5, DEFAULT_TOP, -DEFAULT_TOP, 20], atol=1e-9)
    np.testing.assert_allclose(d, [0.8, 0.8, 0.8, 0.8, 1.0], atol=1e-12)


def test_screen_edge_lock_without_screen_is_identity():
    src = np.array([cart(10, 5)])
    out = screen_edge_lock(src, ["left"], ["top"], None, [False], L050)
    np.testing.assert_array_equal(out, src)


def test_screen_edge_lock_cartesian():
    # front centre of the cube, locked to the left edge: the cube point of azimuth 29
    out = screen_edge_lock(np.array([[0.0, 1.0, 0.0]]), ["left"], [None], DEFAULT_SCREEN,
                           [True], L050)
    np.testing.assert_allclose(out[0], [*sector_point(29, 30, 0, (-1, 1), (0, 1)), 0.0],
                               atol=1e-9)
