"""Tests of the DirectSpeakers gain calculation (BS.2127 clause 8).

Expected values come from the standard's rules (label routing, LFE handling, the mapping-rule
table) and from hand-computed panning laws (VBAP on a horizontal pair, the allocentric
cos/sin balance), never from the code under test.
"""

from __future__ import annotations

import warnings
from dataclasses import replace

import numpy as np
import pytest

from adm.model import (
    BoundedValue,
    DirectSpeakersBlock,
    DirectSpeakersCartesianPosition,
    DirectSpeakersPolarPosition,
    Frequency,
    ScreenEdgeLock,
)
from layouts import LayoutError, get_layout
from renderer.direct_speakers import (
    configure_direct_speakers,
    direct_speakers_gains,
    is_lfe_frequency,
    nominal_speaker_label,
    screen_edges,
)

BS2051 = ["0+2+0", "0+5+0", "2+5+0", "4+5+0", "4+5+1", "3+7+0", "4+9+0", "9+10+3", "0+7+0", "4+7+0"]
NO_FREQ = Frequency()
LFE_FREQ = Frequency(low_pass=120.0)


@pytest.fixture(scope="module")
def panners():
    cache = {}

    def get(name):
        if name not in cache:
            cache[name] = configure_direct_speakers(get_layout(name))
        return cache[name]

    return get


def polar(az, el=0.0, dist=1.0, labels=(), az_bounds=(None, None), el_bounds=(None, None)):
    pos = DirectSpeakersPolarPosition(
        BoundedValue(az, *az_bounds), BoundedValue(el, *el_bounds), BoundedValue(dist)
    )
    return DirectSpeakersBlock(id="AB_00011001_00000001", position=pos, speaker_labels=labels)


def cart(x, y, z, labels=()):
    pos = DirectSpeakersCartesianPosition(BoundedValue(x), BoundedValue(y), BoundedValue(z))
    return DirectSpeakersBlock(id="AB_00011002_00000001", position=pos, speaker_labels=labels)


def one_hot(layout_name, speaker):
    layout = get_layout(layout_name)
    out = np.zeros(layout.n_channels)
    out[layout.index(speaker)] = 1.0
    return out


def gains_of(layout_name, pairs):
    layout = get_layout(layout_name)
    out = np.zeros(layout.n_channels)
    for name, g in pairs:
        out[layout.index(name)] = g
    return out


def vbap_pair(az, az1, az2):
    """Unit-power gains of a horizontal source at az between speakers at az1 and az2 (2-D
    VBAP: g_i proportional to sin of the angle to the other speaker)."""
    g1 = np.sin(np.radians(az2 - az))
    g2 = np.sin(np.radians(az - az1))
    norm = np.hypot(g1, g2)
    return g1 / norm, g2 / norm


# --------------------------------------------------------------------------------------------
# labels
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("layout_name", BS2051)
def test_every_label_routes_to_its_own_channel(panners, layout_name):
    layout = get_layout(layout_name)
    p = panners(layout_name)
    for s in layout.speakers:
        az, el = s.nominal
        # a position far from the speaker: the label alone must decide
        block = polar(az + 180.0 if not s.is_lfe else 0.0, -el, labels=(s.name,))
        g = direct_speakers_gains(p, block, LFE_FREQ if s.is_lfe else NO_FREQ)
        assert g.shape == (layout.n_channels,)
        np.testing.assert_array_equal(g, one_hot(layout_name, s.name))


@pytest.mark.parametrize("version", [0, 1, 2])
def test_urn_labels(panners, version):
    p = panners("4+5+0")
    for name in ("M+000", "U-110", "M+110"):
        block = polar(0.0, labels=(f"urn:itu:bs:2051:{version}:speaker:{name}",))
        np.testing.assert_array_equal(
            direct_speakers_gains(p, block, NO_FREQ), one_hot("4+5+0", name)
        )


def test_first_matching_label_wins_and_missing_labels_are_skipped(panners):
    p = panners("4+5+0")
    g = direct_speakers_gains(p, polar(0.0, labels=("B+000", "M-030", "M+030")), NO_FREQ)
    np.testing.assert_array_equal(g, one_hot("4+5+0", "M-030"))


def test_nominal_speaker_label():
    assert nominal_speaker_label("urn:itu:bs:2051:1:speaker:M+030") == "M+030"
    assert nominal_speaker_label("LFE") == "LFE1"
    assert nominal_speaker_label("LFEL") == "LFE1"
    assert nominal_speaker_label("urn:itu:bs:2051:0:speaker:LFER") == "LFE2"
    assert nominal_speaker_label("RC_L") == "RC_L"
    assert nominal_speaker_label("urn:itu:bs:2051:x:speaker:M+030").startswith("urn:")
    assert nominal_speaker_label("Left", {"Left": "M+030"}) == "M+030"


def test_additional_substitutions(panners):
    p = configure_direct_speakers(get_layout("0+5+0"), additional_substitutions={"L": "M+030"})
    g = direct_speakers_gains(p, polar(-110.0, labels=("L",)), NO_FREQ)
    np.testing.assert_array_equal(g, one_hot("0+5+0", "M+030"))


# --------------------------------------------------------------------------------------------
# LFE
# --------------------------------------------------------------------------------------------


def test_is_lfe_frequency():
    assert is_lfe_frequency(Frequency(low_pass=120.0))
    assert is_lfe_frequency(Frequency(low_pass=200.0))
    with pytest.warns(UserWarning):
        assert not is_lfe_frequency(Frequency(low_pass=250.0))
    with pytest.warns(UserWarning):
        assert not is_lfe_frequency(Frequency(low_pass=120.0, high_pass=20.0))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert not is_lfe_frequency(Frequency())


def test_lfe_by_label_goes_to_lfe1(panners):
    p = panners("0+5+0")
    with pytest.warns(UserWarning, match="LFE indication"):
        g = direct_speakers_gains(p, polar(0.0, labels=("LFE",)), NO_FREQ)
    np.testing.assert_array_equal(g, one_hot("0+5+0", "LFE1"))


def test_lfe_by_low_pass_goes_to_lfe1(panners):
    p = panners("0+5+0")
    # no label, position at the front centre: only LFE loudspeakers may receive it
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        g = direct_speakers_gains(p, polar(0.0, labels=("RC_LFE",)), LFE_FREQ)
    np.testing.assert_array_equal(g, one_hot("0+5+0", "LFE1"))
    g = direct_speakers_gains(p, polar(0.0), LFE_FREQ)
    np.testing.assert_array_equal(g, one_hot("0+5+0", "LFE1"))


def test_lfe2_routing(panners):
    np.testing.assert_array_equal(
        direct_speakers_gains(panners("9+10+3"), polar(0.0, labels=("LFER",)), LFE_FREQ),
        one_hot("9+10+3", "LFE2"),
    )
    # a layout without LFE2 takes every LFE channel in LFE1
    np.testing.assert_array_equal(
        direct_speakers_gains(panners("0+5+0"), polar(0.0, labels=("LFE2",)), LFE_FREQ),
        one_hot("0+5+0", "LFE1"),
    )


def test_lfe_dropped_without_lfe_speaker(panners):
    g = direct_speakers_gains(panners("0+2+0"), polar(0.0, labels=("LFE1",)), LFE_FREQ)
    np.testing.assert_array_equal(g, np.zeros(2))


def test_lfe_label_is_not_matched_by_a_non_lfe_channel(panners):
    # "M+030" label on an LFE channel (by frequency): the label is a non-LFE speaker, so the
    # channel still goes to the LFE output
    with pytest.warns(UserWarning):
        g = direct_speakers_gains(panners("0+5+0"), polar(30.0, labels=("M+030",)), LFE_FREQ)
    np.testing.assert_array_equal(g, one_hot("0+5+0", "LFE1"))


# --------------------------------------------------------------------------------------------
# positions
# --------------------------------------------------------------------------------------------


def test_absent_label_falls_back_to_unit_power_panning(panners):
    p = panners("0+5+0")
    g = direct_speakers_gains(p, polar(90.0, labels=("M+090",)), NO_FREQ)
    assert np.sum(g**2) == pytest.approx(1.0, abs=1e-6)
    assert g[get_layout("0+5+0").index("LFE1")] == 0.0
    g30, g110 = vbap_pair(90.0, 30.0, 110.0)
    np.testing.assert_allclose(g, gains_of("0+5+0", [("M+030", g30), ("M+110", g110)]),
                               atol=1e-6)


def test_unknown_label_at_speaker_position_routes_to_it(panners):
    for name in ("M+110", "M-030", "M+000"):
        az, _ = get_layout("0+5+0").speakers[get_layout("0+5+0").index(name)].nominal
        g = direct_speakers_gains(panners("0+5+0"), polar(az, labels=("RC_X",)), NO_FREQ)
        np.testing.assert_array_equal(g, one_hot("0+5+0", name))
    # azimuth given as an equivalent angle
    g = direct_speakers_gains(panners("0+5+0"), polar(-250.0), NO_FREQ)
    np.testing.assert_array_equal(g, one_hot("0+5+0", "M+110"))


def test_label_match_ignores_position(panners):
    # the reference matches labels before looking at the position or its bounds
    g = direct_speakers_gains(
        panners("0+5+0"), polar(-110.0, labels=("M+030",), az_bounds=(-120.0, -100.0)), NO_FREQ
    )
    np.testing.assert_array_equal(g, one_hot("0+5+0", "M+030"))


def test_bounds(panners):
    p = panners("0+5+0")
    # off-speaker position without bounds: panned
    g = direct_speakers_gains(p, polar(40.0), NO_FREQ)
    assert np.count_nonzero(g) == 2
    # bounds that include M+030 only: snapped to it
    g = direct_speakers_gains(p, polar(40.0, az_bounds=(20.0, 60.0)), NO_FREQ)
    np.testing.assert_array_equal(g, one_hot("0+5+0", "M+030"))
    # bounds that exclude the nearest speaker: no match, panned
    g = direct_speakers_gains(p, polar(35.0, az_bounds=(32.0, 60.0)), NO_FREQ)
    g30, g110 = vbap_pair(35.0, 30.0, 110.0)
    np.testing.assert_allclose(g, gains_of("0+5+0", [("M+030", g30), ("M+110", g110)]),
                               atol=1e-6)
    # bounds that hold one far speaker: the only candidate is used
    g = direct_speakers_gains(p, polar(40.0, az_bounds=(100.0, 120.0)), NO_FREQ)
    np.testing.assert_array_equal(g, one_hot("0+5+0", "M+110"))
    # elevation bounds: (0, 20) holds M+030 only; (5, 20) holds neither M+030 nor U+030
    p = panners("4+5+0")
    g = direct_speakers_gains(p, polar(30.0, 10.0, el_bounds=(0.0, 20.0)), NO_FREQ)
    np.testing.assert_array_equal(g, one_hot("4+5+0", "M+030"))
    g = direct_speakers_gains(p, polar(30.0, 10.0, el_bounds=(5.0, 20.0)), NO_FREQ)
    assert g[get_layout("4+5+0").index("M+030")] > 0.5
    assert g[get_layout("4+5+0").index("U+030")] > 0.1
    assert np.sum(g**2) == pytest.approx(1.0, abs=1e-6)


def test_equidistant_candidates_are_panned(panners):
    # behind: M+110 and M-110 are equally near and both within the range 100 .. -100
    g = direct_speakers_gains(panners("0+5+0"), polar(180.0, az_bounds=(100.0, -100.0)), NO_FREQ)
    h = np.sqrt(0.5)
    np.testing.assert_allclose(g, gains_of("0+5+0", [("M+110", h), ("M-110", h)]), atol=1e-6)


def test_cartesian_positions(panners):
    p = panners("4+7+0")
    # Dolby-style bed channels: labels are not BS.2051, the allocentric position decides
    for label, xyz, speaker in [
        ("RC_L", (-1.0, 1.0, 0.0), "M+030"),
        ("RC_R", (1.0, 1.0, 0.0), "M-030"),
        ("RC_C", (0.0, 1.0, 0.0), "M+000"),
        ("RC_Lss", (-1.0, 0.0, 0.0), "M+090"),
        ("RC_Rrs", (1.0, -1.0, 0.0), "M-135"),
    ]:
        g = direct_speakers_gains(p, cart(*xyz, labels=(label,)), NO_FREQ)
        np.testing.assert_array_equal(g, one_hot("4+7+0", speaker))
    # RC_Lts at (-1, 0, 1): no speaker there; halfway between the rows y=1 and y=-1 of the
    # upper plane, equal-power: cos(pi/4) each
    g = direct_speakers_gains(p, cart(-1.0, 0.0, 1.0, labels=("RC_Lts",)), NO_FREQ)
    h = np.cos(np.pi / 4)
    np.testing.assert_allclose(g, gains_of("4+7+0", [("U+045", h), ("U+135", h)]), atol=1e-6)
    # the LFE bed channel with its lowPass goes to LFE1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        g = direct_speakers_gains(p, cart(-1.0, 1.0, -1.0, labels=("RC_LFE",)), LFE_FREQ)
    np.testing.assert_array_equal(g, one_hot("4+7+0", "LFE1"))


def test_cartesian_needs_allocentric_positions():
    layout = replace(get_layout("0+5+0"), allocentric_positions=())
    p = configure_direct_speakers(layout)
    # polar content still works
    g = direct_speakers_gains(p, polar(30.0), NO_FREQ)
    np.testing.assert_array_equal(g, one_hot("0+5+0", "M+030"))
    with pytest.raises(LayoutError, match="allocentric"):
        direct_speakers_gains(p, cart(-1.0, 1.0, 0.0), NO_FREQ)


# --------------------------------------------------------------------------------------------
# screen edge lock
# --------------------------------------------------------------------------------------------


def test_default_screen_edges():
    from adm.model import DEFAULT_SCREEN

    e = screen_edges(DEFAULT_SCREEN)
    # 58 degrees wide, 1.78:1, straight ahead at distance 1
    assert e.left_azimuth == pytest.approx(29.0)
    assert e.right_azimuth == pytest.approx(-29.0)
    top = np.degrees(np.arctan(np.tan(np.radians(29.0)) / 1.78))
    assert e.top_elevation == pytest.approx(top)
    assert e.bottom_elevation == pytest.approx(-top)


def test_screen_edge_lock_moves_position_to_screen_edge(panners):
    p = panners("0+5+0")
    block = polar(25.0, labels=("M+SC",))
    g = direct_speakers_gains(p, block, NO_FREQ, screen_edge_lock=ScreenEdgeLock("left"))
    g0, g30 = vbap_pair(29.0, 0.0, 30.0)
    np.testing.assert_allclose(g, gains_of("0+5+0", [("M+000", g0), ("M+030", g30)]), atol=1e-6)
    # without a reproduction screen the lock is ignored
    p = configure_direct_speakers(get_layout("0+5+0"), screen=None)
    g = direct_speakers_gains(p, block, NO_FREQ, screen_edge_lock=ScreenEdgeLock("left"))
    g0, g30 = vbap_pair(25.0, 0.0, 30.0)
    np.testing.assert_allclose(g, gains_of("0+5+0", [("M+000", g0), ("M+030", g30)]), atol=1e-6)


# --------------------------------------------------------------------------------------------
# mapping rules for ITU packs
# --------------------------------------------------------------------------------------------


def test_mapping_rules_22_2_to_5_1(panners):
    p = panners("0+5+0")
    pack = ("AP_00010009",)
    # 22.2 side channels on 5.1: sqrt(1/3) front, sqrt(2/3) surround (BS.2127 mapping table)
    g = direct_speakers_gains(p, polar(90.0, labels=("M+090",)), NO_FREQ, pack)
    np.testing.assert_allclose(
        g, gains_of("0+5+0", [("M+030", np.sqrt(1 / 3)), ("M+110", np.sqrt(2 / 3))])
    )
    g = direct_speakers_gains(p, polar(-90.0, labels=("M-090",)), NO_FREQ, pack)
    np.testing.assert_allclose(
        g, gains_of("0+5+0", [("M-030", np.sqrt(1 / 3)), ("M-110", np.sqrt(2 / 3))])
    )
    # both 22.2 LFEs go to LFE1 at -3 dB
    for label in ("LFE1", "LFE2"):
        g = direct_speakers_gains(p, polar(0.0, labels=(label,)), LFE_FREQ, pack)
        np.testing.assert_allclose(g, gains_of("0+5+0", [("LFE1", np.sqrt(0.5))]))
    # without the pack, the same label is panned by position
    g = direct_speakers_gains(p, polar(90.0, labels=("M+090",)), NO_FREQ)
    g30, g110 = vbap_pair(90.0, 30.0, 110.0)
    np.testing.assert_allclose(g, gains_of("0+5+0", [("M+030", g30), ("M+110", g110)]),
                               atol=1e-6)


def test_mapping_rules_22_2_top_centre_to_4_5_0(panners):
    g = direct_speakers_gains(
        panners("4+5+0"), polar(0.0, 90.0, labels=("T+000",)), NO_FREQ, ("AP_00010009",)
    )
    pairs = [(n, 0.5) for n in ("U+030", "U-030", "U+110", "U-110")]
    np.testing.assert_allclose(g, gains_of("4+5+0", pairs))


def test_mapping_rules_centre_to_stereo(panners):
    # 5.1 centre on 0+2+0: -3 dB to each side; the innermost pack ID decides (any case)
    for packs in (("AP_00010003",), ("AP_00011234", "AP_0001000C")):
        g = direct_speakers_gains(panners("0+2+0"), polar(0.0, labels=("M+000",)), NO_FREQ,
                                  packs)
        np.testing.assert_allclose(g, [np.sqrt(0.5), np.sqrt(0.5)])
    # 5.1 LFE on stereo: no LFE output, no rule applies, dropped
    g = direct_speakers_gains(panners("0+2+0"), polar(0.0, labels=("LFE1",)), LFE_FREQ,
                              ("AP_00010003",))
    np.testing.assert_array_equal(g, [0.0, 0.0])


def test_dolby_lfe_label_with_low_pass_is_lfe_without_warning(panners):
    p = panners("0+5+0")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        g = direct_speakers_gains(p, polar(0.0, labels=("RC_LFE",)), Frequency(low_pass=120.0))
    np.testing.assert_array_equal(g, one_hot("0+5+0", "LFE1"))


def test_mapping_rules_only_for_common_definition_packs(panners):
    # M+090 of 22.2 on 0+5+0: the BS.2127 rule gives sqrt(1/3) to M+030 and sqrt(2/3) to
    # M+110, but only for the BS.2094 pack; a file's own pack with that ID is panned by
    # position instead (between M+030 and M+110, with other gains, power 1).
    block = polar(90.0, labels=("M+090",))
    rule = dict(zip(get_layout("0+5+0").channel_names,
                    direct_speakers_gains(panners("0+5+0"), block, NO_FREQ, ("AP_00010009",))))
    assert rule["M+030"] == pytest.approx(np.sqrt(1 / 3), abs=1e-6)
    assert rule["M+110"] == pytest.approx(np.sqrt(2 / 3), abs=1e-6)
    own = direct_speakers_gains(panners("0+5+0"), block, NO_FREQ, ("AP_00010009",),
                                pack_is_common_definition=False)
    g = dict(zip(get_layout("0+5+0").channel_names, own))
    assert float(np.sum(own ** 2)) == pytest.approx(1.0, abs=1e-6)
    assert g["M+030"] > 0 and g["M+110"] > 0
    assert g["M+110"] != pytest.approx(rule["M+110"], abs=1e-3)
