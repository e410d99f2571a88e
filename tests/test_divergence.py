"""Tests of objectDivergence (BS.2127 7.3.7).

Expected values follow from the standard's definition: power weights v/(v+1) for each side
source and (1-v)/(v+1) for the centre; polar side sources at +/- azimuthRange around the
source direction (default 45 degrees) at the same distance; cartesian side sources at
+/- positionRange along X, clipped to the cube.
"""

from __future__ import annotations

import numpy as np
import pytest

from renderer.divergence import diverge

NAN = np.nan


def cart(az, el, d=1.0):
    az, el = np.radians(az), np.radians(el)
    return d * np.array([-np.sin(az) * np.cos(el), np.cos(az) * np.cos(el), np.sin(el)])


def test_weights():
    pos = np.tile(cart(0, 0), (4, 1))
    w, _ = diverge(pos, [0.0, 0.5, 1.0, 0.25], NAN, NAN, False)
    np.testing.assert_allclose(w[0], [0, 1, 0])
    np.testing.assert_allclose(w[1], [1 / 3, 1 / 3, 1 / 3])
    np.testing.assert_allclose(w[2], [0.5, 0, 0.5])
    np.testing.assert_allclose(w[3], [0.2, 0.6, 0.2])
    v = np.random.default_rng(0).uniform(0, 1, 100)
    w, _ = diverge(np.tile(cart(0, 0), (100, 1)), v, NAN, NAN, False)
    np.testing.assert_allclose(w.sum(axis=1), 1.0)


def test_no_divergence_keeps_position():
    pos = np.array([cart(20, 10, 0.7), [0.3, -0.2, 0.1]])
    w, src = diverge(pos, [0.0, 0.0], [30.0, NAN], [NAN, 0.5], [False, True])
    np.testing.assert_array_equal(w, [[0, 1, 0], [0, 1, 0]])
    for k in range(3):
        np.testing.assert_array_equal(src[:, k], pos)


def test_polar_side_sources():
    pos = np.array([cart(0, 0), cart(90, 0, 0.5), cart(0, 0)])
    _, src = diverge(pos, [1.0, 0.5, 1.0], [30.0, 20.0, NAN], NAN, False)
    np.testing.assert_allclose(src[0], [cart(30, 0), cart(0, 0), cart(-30, 0)], atol=1e-12)
    np.testing.assert_allclose(src[1], [cart(110, 0, 0.5), cart(90, 0, 0.5), cart(70, 0, 0.5)],
                               atol=1e-12)
    np.testing.assert_allclose(src[2], [cart(45, 0), cart(0, 0), cart(-45, 0)], atol=1e-12)


def test_polar_side_sources_elevated():
    # an elevated source: the side sources lie on the great circle through the source that is
    # perpendicular to its vertical plane, +/- azimuthRange away, mirror images of each other
    # across that plane
    p = cart(40, 35, 1.2)
    _, src = diverge(p[None], [1.0], [25.0], NAN, False)
    left, centre, right = src[0]
    np.testing.assert_allclose(centre, p)
    for side in (left, right):
        assert np.linalg.norm(side) == pytest.approx(1.2)
        assert np.degrees(np.arccos(side @ p / 1.44)) == pytest.approx(25.0)
    up = cart(40, 35 + 90)  # the source's own "up" direction
    right_axis = cart(40 - 90, 0)  # and its "right" direction
    assert (left @ right_axis) == pytest.approx(-(right @ right_axis))
    assert (left @ up) == pytest.approx(0.0, abs=1e-12)
    assert (right @ up) == pytest.approx(0.0, abs=1e-12)
    assert (left @ right_axis) < 0  # left is to the left


def test_cartesian_side_sources():
    pos = np.array([[0.2, 0.5, 0.1], [0.9, 0.0, 0.0], [0.2, 0.5, 0.1]])
    _, src = diverge(pos, [1.0, 1.0, 0.5], [NAN, NAN, NAN], [0.3, 0.3, NAN], True)
    np.testing.assert_allclose(src[0], [[0.5, 0.5, 0.1], [0.2, 0.5, 0.1], [-0.1, 0.5, 0.1]])
    np.testing.assert_allclose(src[1], [[1.0, 0.0, 0.0], [0.9, 0.0, 0.0], [0.6, 0.0, 0.0]])
    np.testing.assert_allclose(src[2], np.tile(pos[2], (3, 1)))  # default positionRange 0


def test_mode_mismatch_messages():
    msgs: list[str] = []
    diverge(np.array([[0.0, 1.0, 0.0], cart(0, 0), cart(0, 0)]), [0.5, 0.5, 0.0],
            [30.0, NAN, NAN], [NAN, 0.2, 0.2], [True, False, False], msgs)
    assert len(msgs) == 2
    assert "azimuthRange" in msgs[0] and "positionRange" in msgs[1]
