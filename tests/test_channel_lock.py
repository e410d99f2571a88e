"""Tests of channelLock (BS.2127 7.3.5).

Expected values are worked out from the rule: move to the nearest loudspeaker (real unit
vectors for polar blocks; allocentric positions with distance weights (1/16, 4, 32) on
(dX^2, dY^2, dZ^2) for cartesian blocks) if within maxDistance; ties go to the lowest |el|,
then el, then |az|, then az.
"""

from __future__ import annotations

import numpy as np

from layouts import get_layout
from renderer.channel_lock import channel_lock, configure_channel_lock

NAN = np.nan


def cart(az, el, d=1.0):
    az, el = np.radians(az), np.radians(el)
    return d * np.array([-np.sin(az) * np.cos(el), np.cos(az) * np.cos(el), np.sin(el)])


def test_snaps_to_nearest_speaker():
    cfg = configure_channel_lock(get_layout("0+5+0"))
    pos = np.array([cart(20, 0), cart(-100, 10, 0.5), cart(170, 0)])
    out = channel_lock(cfg, pos, True, NAN, False)
    np.testing.assert_allclose(out, [cart(30, 0), cart(-110, 0), cart(110, 0)], atol=1e-12)


def test_flag_off_is_identity():
    cfg = configure_channel_lock(get_layout("0+5+0"))
    pos = np.array([cart(20, 0), [0.3, 0.3, 0.0]])
    np.testing.assert_array_equal(channel_lock(cfg, pos, False, NAN, [False, True]), pos)


def test_max_distance():
    cfg = configure_channel_lock(get_layout("0+5+0"))
    chord = 2 * np.sin(np.radians(5))  # from az 20 to M+030
    pos = np.tile(cart(20, 0), (2, 1))
    out = channel_lock(cfg, pos, True, [chord - 0.01, chord + 0.01], False)
    np.testing.assert_allclose(out[0], pos[0])
    np.testing.assert_allclose(out[1], cart(30, 0), atol=1e-12)


def test_tie_goes_to_priority():
    cfg = configure_channel_lock(get_layout("0+2+0"))
    # straight ahead: M+030 and M-030 equally near; equal |el|, el, |az| -> lower az (M-030)
    out = channel_lock(cfg, cart(0, 0)[None], True, NAN, False)
    np.testing.assert_allclose(out[0], cart(-30, 0), atol=1e-12)
    # between M+030 (el 0) and U+030 (el 30) of 4+5+0: the lower |elevation| wins
    cfg = configure_channel_lock(get_layout("4+5+0"))
    out = channel_lock(cfg, cart(30, 15)[None], True, NAN, False)
    np.testing.assert_allclose(out[0], cart(30, 0), atol=1e-12)


def test_cartesian_uses_weighted_allocentric_distance():
    cfg = configure_channel_lock(get_layout("4+5+0"))
    src = np.array([[0.0, 1.0, 0.6]])
    # plain distance: M+000 (0, 1, 0) at 0.6 beats U+/-030 (-/+1, 1, 1) at 1.08; weighted:
    # M+000 sqrt(32 * 0.36) = 3.39, U+/-030 sqrt(1/16 + 32 * 0.16) = 2.28 -> the upper pair;
    # tie -> lower azimuth: U-030 at (1, 1, 1)
    out = channel_lock(cfg, src, True, NAN, True)
    np.testing.assert_allclose(out[0], [1.0, 1.0, 1.0])
    # maxDistance is tested on the plain distance: 0.7 leaves only M+000
    out = channel_lock(cfg, src, True, 0.7, True)
    np.testing.assert_allclose(out[0], [0.0, 1.0, 0.0])


def test_cartesian_respects_excluded():
    layout = get_layout("4+5+0")
    cfg = configure_channel_lock(layout)
    names = cfg.names
    excluded = np.array([[n in ("U+030", "U-030") for n in names]])
    out = channel_lock(cfg, np.array([[0.0, 1.0, 0.6]]), True, NAN, True, excluded)
    np.testing.assert_allclose(out[0], [0.0, 1.0, 0.0])
    # polar blocks ignore the (allocentric) exclusion mask
    excluded = np.array([[n == "M+030" for n in names]])
    out = channel_lock(cfg, cart(25, 0)[None], True, NAN, False, excluded)
    np.testing.assert_allclose(out[0], cart(30, 0), atol=1e-12)
