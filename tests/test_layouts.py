"""Tests of the named layouts (BS.2051 tables, aliases, extra layouts)."""

from __future__ import annotations

import re

import numpy as np
import pytest

from layouts import (
    Layout,
    LayoutError,
    describe_layouts,
    film_labels,
    get_layout,
    layout_names,
)

BS2051 = ["0+2+0", "0+5+0", "2+5+0", "4+5+0", "4+5+1", "3+7+0", "4+9+0", "9+10+3", "0+7+0", "4+7+0"]
ALIASES = {"2.0": "0+2+0", "5.1": "0+5+0", "7.1": "0+7+0", "5.1.4": "4+5+0", "7.1.4": "4+7+0"}
EXTRAS = ["5.1.2", "7.1.2", "9.1.6"]
ALL = BS2051 + list(ALIASES) + EXTRAS

# channel counts: BS.2051 layout names give (upper + middle + bottom) speakers plus the LFEs.
COUNTS = {
    "0+2+0": 2, "0+5+0": 6, "2+5+0": 8, "4+5+0": 10, "4+5+1": 11, "3+7+0": 12,
    "4+9+0": 14, "9+10+3": 24, "0+7+0": 8, "4+7+0": 12, "7.1.2": 10, "9.1.6": 16,
    "5.1.2": 8, "2.0": 2, "5.1": 6, "7.1": 8, "5.1.4": 10, "7.1.4": 12,
}


def test_names_order():
    assert layout_names() == ALL


@pytest.mark.parametrize("name", ALL)
def test_channel_count(name):
    layout = get_layout(name)
    assert isinstance(layout, Layout)
    assert layout.n_channels == COUNTS[name]
    assert len(set(layout.channel_names)) == layout.n_channels


@pytest.mark.parametrize("name", BS2051)
def test_bs2051_name_counts_speakers(name):
    # "U+M+B": U upper-layer (U/UH/T), M middle-layer, B bottom-layer speakers, plus LFE.
    u, m, b = (int(x) for x in name.split("+"))
    layout = get_layout(name)
    names = [s.name for s in layout.speakers if not s.is_lfe]
    assert sum(n[0] in "UT" for n in names) == u
    assert sum(n[0] == "M" for n in names) == m
    assert sum(n[0] == "B" for n in names) == b


def test_order_4_7_0():
    assert get_layout("4+7+0").channel_names == (
        "M+030", "M-030", "M+000", "LFE1", "M+090", "M-090",
        "M+135", "M-135", "U+045", "U-045", "U+135", "U-135",
    )


def test_extra_orders():
    assert get_layout("5.1.2").channel_names == (
        "M+030", "M-030", "M+000", "LFE1", "M+110", "M-110", "U+090", "U-090")
    assert film_labels("5.1.2") == ("L", "R", "C", "LFE", "Ls", "Rs", "Ltm", "Rtm")
    assert film_labels("7.1.2") == (
        "L", "R", "C", "LFE", "Lss", "Rss", "Lrs", "Rrs", "Ltm", "Rtm")
    assert film_labels("9.1.6") == (
        "L", "R", "C", "LFE", "Lss", "Rss", "Lrs", "Rrs", "Lw", "Rw",
        "Ltf", "Rtf", "Ltm", "Rtm", "Ltr", "Rtr")
    l916 = get_layout("9.1.6")
    assert l916.speakers[l916.index("M+060")].azimuth == 60.0
    for name in ("U+045", "U+090", "U+135"):
        assert l916.speakers[l916.index(name)].elevation == 30.0


@pytest.mark.parametrize("alias,target", sorted(ALIASES.items()))
def test_aliases_equal(alias, target):
    assert get_layout(alias) == get_layout(target)
    assert film_labels(alias) == film_labels(target)
    assert film_labels(alias)[:2] == ("L", "R")


def test_film_labels_none_without_film_name():
    assert film_labels("9+10+3") is None
    assert film_labels("4+7+0") == (
        "L", "R", "C", "LFE", "Lss", "Rss", "Lrs", "Rrs", "Ltf", "Rtf", "Ltr", "Rtr")


@pytest.mark.parametrize("name", ALL)
def test_labels_match_lfe(name):
    labels = film_labels(name)
    if labels is None:
        return
    layout = get_layout(name)
    assert len(labels) == layout.n_channels
    assert [lab == "LFE" for lab in labels] == list(layout.is_lfe)


@pytest.mark.parametrize("name", BS2051 + EXTRAS)
def test_nominal_within_range(name):
    for s in get_layout(name).speakers:
        az, el = s.nominal
        assert (az, el) == (s.azimuth, s.elevation)
        assert s.az_range[0] <= az <= s.az_range[1], s.name
        assert s.el_range[0] <= el <= s.el_range[1], s.name


def _mirror_name(name: str) -> str:
    m = re.fullmatch(r"([A-Z]+)([+-])(\d{3}|SC)", name)
    assert m, name
    prefix, sign, rest = m.groups()
    if rest in ("000", "180"):
        return name
    return prefix + ("-" if sign == "+" else "+") + rest


@pytest.mark.parametrize("name", BS2051 + EXTRAS)
def test_left_right_symmetry(name):
    layout = get_layout(name)
    allo = dict(layout.allocentric_positions)
    for s in layout.speakers:
        if s.is_lfe:
            continue
        m = layout.speakers[layout.index(_mirror_name(s.name))]
        assert m.elevation == s.elevation
        if abs(s.azimuth) == 180.0:
            assert m is s
        else:
            assert m.azimuth == -s.azimuth
            assert m.az_range == (-s.az_range[1], -s.az_range[0])
        assert m.el_range == s.el_range
        x, y, z = allo[s.name]
        assert allo[m.name] == (-x, y, z)
        # name sign matches the side: positive azimuth = left = negative X
        assert np.sign(x) == -np.sign(s.azimuth) or abs(s.azimuth) == 180.0


@pytest.mark.parametrize("name", BS2051 + EXTRAS)
def test_allocentric_positions(name):
    layout = get_layout(name)
    allo = dict(layout.allocentric_positions)
    assert set(allo) == set(layout.channel_names)
    pts = np.array([allo[n] for n in layout.channel_names if not n.startswith("LFE")])
    assert np.all(np.abs(pts) <= 1.0)
    assert len({tuple(p) for p in pts}) == len(pts)  # no two speakers at one point
    for s in layout.speakers:
        x, y, z = allo[s.name]
        if s.is_lfe:
            assert z == -1.0
            continue
        # layer by elevation, front/back by azimuth (BS.2127 allocentric rules)
        assert z == np.sign(round(s.elevation))
        if s.elevation == 90.0:
            assert (x, y) == (0.0, 0.0)
        elif abs(s.azimuth) < 90:
            assert y > 0
        elif abs(s.azimuth) > 90:
            assert y == -1.0
        else:
            assert y == 0.0


def test_screen_speakers():
    layout = get_layout("4+9+0")
    sc = [s for s in layout.speakers if s.screen_speaker]
    assert [s.name for s in sc] == ["M+SC", "M-SC"]
    # BS.2127 polar->cartesian: azimuth 15 lies halfway between 0 (X=0) and 30 (X=-1)
    assert dict(layout.allocentric_positions)["M+SC"] == (-0.5, 1.0, 0.0)


def test_wide_allocentric():
    # tan(22.5 deg), as BS.2127 places M+060 of 9+10+3
    allo = dict(get_layout("9.1.6").allocentric_positions)
    assert allo["M+060"] == pytest.approx((-1.0, np.tan(np.radians(22.5)), 0.0), abs=1e-6)
    assert allo["M+060"] == dict(get_layout("9+10+3").allocentric_positions)["M+060"]


def test_unknown_name():
    with pytest.raises(LayoutError, match=r"unknown layout '7\.1\.3'; known layouts: 0\+2\+0"):
        get_layout("7.1.3")
    with pytest.raises(LayoutError, match="unknown layout"):
        film_labels("nope")


def test_describe():
    text = describe_layouts()
    lines = text.splitlines()
    assert len(lines) == len(BS2051) + len(EXTRAS)
    line = next(x for x in lines if x.startswith("4+7+0"))
    assert "7.1.4" in line and "M+030/L" in line and "U-135/Rtr" in line
