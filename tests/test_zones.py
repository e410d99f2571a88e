"""Tests of zoneExclusion (BS.2127 7.3.12).

Expected values are worked out from the standard's rules: which loudspeakers a zone holds
(nominal positions, 1e-6 tolerance, poles match any azimuth), and where an excluded
loudspeaker's power goes (same layer first, then up before down; keep front/back; nearest;
equal candidates share equally), so the total power is kept.
"""

from __future__ import annotations

import numpy as np
import pytest

from adm.model import CartesianZone, PolarZone
from layouts import get_layout
from renderer.zones import (
    allocentric_excluded,
    apply_zone_exclusion,
    excluded_speakers,
    zone_exclusion_downmix,
)


def names(layout):
    return [s.name for s in layout.speakers if not s.is_lfe]


def mask(layout, *excl):
    return np.array([n in excl for n in names(layout)])


def test_polar_zone_selects_speakers():
    layout = get_layout("0+5+0")
    zones = [
        (PolarZone(-10, 10, 20, 40),),  # M+030
        (PolarZone(-10, 10, 100, -100),),  # anticlockwise 100 -> 260: both surrounds
        (PolarZone(-10, 10, 20, 40), PolarZone(0, 0, 0, 0)),  # plus M+000 (boundary)
        (),
        (PolarZone(5, 40, -180, 180),),  # nothing at those elevations
    ]
    ex = excluded_speakers(layout, zones)
    np.testing.assert_array_equal(ex[0], mask(layout, "M+030"))
    np.testing.assert_array_equal(ex[1], mask(layout, "M+110", "M-110"))
    np.testing.assert_array_equal(ex[2], mask(layout, "M+030", "M+000"))
    assert not ex[3].any() and not ex[4].any()


def test_pole_speaker_matches_any_azimuth():
    layout = get_layout("9+10+3")
    ex = excluded_speakers(layout, [(PolarZone(80, 90, 10, 20),)])
    np.testing.assert_array_equal(ex[0], mask(layout, "T+000"))


def test_cartesian_zone_uses_nominal_unit_vectors():
    layout = get_layout("0+5+0")
    # M+030's nominal direction is (-0.5, 0.866, 0)
    ex = excluded_speakers(layout, [(CartesianZone(-0.6, -0.4, 0.8, 0.9, -0.1, 0.1),),
                                    (CartesianZone(-1, 1, 0.9, 1, -0.1, 0.1),)])
    np.testing.assert_array_equal(ex[0], mask(layout, "M+030"))
    np.testing.assert_array_equal(ex[1], mask(layout, "M+000"))


def test_excluded_speaker_goes_to_nearest_same_side():
    layout = get_layout("0+5+0")
    n = names(layout)
    g = np.array([[0.6, 0.0, 0.8, 0.0, 0.0]])  # M+030 0.6, M+000 0.8
    out = apply_zone_exclusion(layout, g, mask(layout, "M+030")[None])
    expected = np.zeros(5)
    expected[n.index("M+000")] = 1.0  # sqrt(0.6^2 + 0.8^2)
    np.testing.assert_allclose(out[0], expected)


def test_excluded_centre_splits_equally():
    layout = get_layout("0+5+0")
    n = names(layout)
    g = np.zeros((1, 5))
    g[0, n.index("M+000")] = 1.0
    out = apply_zone_exclusion(layout, g, mask(layout, "M+000")[None])[0]
    assert out[n.index("M+000")] == 0.0
    assert out[n.index("M+030")] == pytest.approx(np.sqrt(0.5))
    assert out[n.index("M-030")] == pytest.approx(np.sqrt(0.5))


def test_same_layer_and_front_back_preferred():
    layout = get_layout("4+5+0")
    n = names(layout)
    d = zone_exclusion_downmix(layout, mask(layout, "U+030"))
    # U+030 keeps to its layer and to the front: U-030, not the nearer M+030 nor U+110
    assert d[n.index("U+030"), n.index("U-030")] == 1.0
    assert d[n.index("U+030")].sum() == 1.0
    # with the whole middle layer excluded, its power moves up (not down), nearest first
    d = zone_exclusion_downmix(layout, mask(layout, "M+030", "M-030", "M+000", "M+110", "M-110"))
    assert d[n.index("M+030"), n.index("U+030")] == 1.0
    assert d[n.index("M+000"), n.index("U+030")] == 0.5
    assert d[n.index("M+000"), n.index("U-030")] == 0.5
    assert d[n.index("M-110"), n.index("U-110")] == 1.0
    np.testing.assert_allclose(d.sum(axis=1), 1.0)


def test_none_or_all_excluded_is_identity_and_power_is_kept():
    layout = get_layout("9+10+3")
    k = len(names(layout))
    np.testing.assert_array_equal(zone_exclusion_downmix(layout, np.zeros(k, bool)), np.eye(k))
    np.testing.assert_array_equal(zone_exclusion_downmix(layout, np.ones(k, bool)), np.eye(k))
    rng = np.random.default_rng(0)
    g = np.abs(rng.normal(size=(200, k)))
    ex = rng.random((200, k)) < 0.3
    out = apply_zone_exclusion(layout, g, ex)
    np.testing.assert_allclose(np.sum(out**2, axis=1), np.sum(g**2, axis=1))
    partial = ex.any(axis=1) & ~ex.all(axis=1)
    assert np.all(out[partial][ex[partial]] == 0.0)


def test_allocentric_row_rule():
    layout = get_layout("0+7+0")
    # a side loudspeaker (|X| = 1, |Y| < 1) takes its whole row with it
    ex = allocentric_excluded(layout, mask(layout, "M+090")[None])
    np.testing.assert_array_equal(ex[0], mask(layout, "M+090", "M-090"))
    # a corner loudspeaker does not
    ex = allocentric_excluded(layout, mask(layout, "M+030")[None])
    np.testing.assert_array_equal(ex[0], mask(layout, "M+030"))
    # nothing left -> nothing excluded
    ex = allocentric_excluded(layout, np.ones((1, 7), bool))
    assert not ex.any()
