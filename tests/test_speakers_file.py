"""Speakers files (``-l speakers.yaml``): reading, mapping a layout onto a room, rendering."""

from __future__ import annotations

import numpy as np
import pytest

from adm.model import DEFAULT_SCREEN, CartesianScreen, PolarScreen
from layouts import get_layout
from layouts.model import LayoutError
from layouts.speakers_file import (
    RealLayout,
    RealSpeaker,
    apply_real_layout,
    load_speakers_file,
    parse_speakers,
)

STEREO_ROOM = """
speakers:
  - {channel: 3, names: M+030, position: {az: 35.0, el: 5.0, r: 2.5}, gain_linear: 0.5}
  - {channel: 1, names: [M-030], position: {az: -25.0, el: 0.0, r: 2.0}}
screen:
  type: polar
  aspectRatio: 2.0
  centrePosition: {az: 0.0, el: 5.0, r: 3.0}
  widthAzimuth: 40.0
"""


def write(tmp_path, text: str):
    path = tmp_path / "speakers.yaml"
    path.write_text(text)
    return path


# --------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------


def test_load_full_file(tmp_path):
    real = load_speakers_file(write(tmp_path, STEREO_ROOM))
    assert real.speakers == (
        RealSpeaker(channel=3, names=("M+030",), azimuth=35.0, elevation=5.0, distance=2.5,
                    gain=0.5),
        RealSpeaker(channel=1, names=("M-030",), azimuth=-25.0, elevation=0.0, distance=2.0),
    )
    assert real.screen == PolarScreen(aspect_ratio=2.0, centre_azimuth=0.0, centre_elevation=5.0,
                                      centre_distance=3.0, width_azimuth=40.0)


def test_list_form_defaults_and_cartesian_screen(tmp_path):
    real = load_speakers_file(write(tmp_path, "- {channel: 0, names: [U+180, UH+180]}\n"))
    assert real.speakers == (RealSpeaker(channel=0, names=("U+180", "UH+180")),)
    assert not real.speakers[0].has_position
    assert real.screen == DEFAULT_SCREEN  # no screen entry: the default screen
    real = parse_speakers({"screen": {"type": "cart", "aspectRatio": 1.5, "widthX": 0.6,
                                      "centrePosition": {"X": 0.0, "Y": 1.0, "Z": 0.1}}})
    assert real.speakers is None
    assert real.screen == CartesianScreen(1.5, 0.0, 1.0, 0.1, 0.6)
    assert parse_speakers({"screen": None}).screen is None  # screen: null = no screen


@pytest.mark.parametrize("text, message", [
    ("speakers: [{channel: 0, names: M+030}", "not valid YAML"),
    ("42", "expected a list of loudspeakers"),
    ("speakers:\n  - {names: M+030}", "speaker 1: the loudspeaker has no channel"),
    ("- {channel: 0, names: M+030}\n- {channel: 1}", "speaker 2: the loudspeaker has no names"),
    ("- {channel: -1, names: M+030}", "speaker 1: channel must be a 0-based"),
    ("- {channel: 1.5, names: M+030}", "channel must be a 0-based"),
    ("- {channel: 0, names: [3]}", "names must be a BS.2051 label"),
    ("- {channel: 0, names: M+030, gain_linear: loud}", "gain_linear must be a number"),
    ("- {channel: 0, names: M+030, position: {az: 30}}", "position has no el"),
    ("- {channel: 0, names: M+030, position: {az: 30, el: 0, X: 1}}", "unknown key(s) X"),
    ("- {channel: 0, names: M+030, position: {az: 200, el: 0}}", "outside -180..180"),
    ("- {channel: 0, names: M+030, gian_linear: 1}", "unknown key(s) gian_linear"),
    ("- {channel: 2, names: M+030}\n- {channel: 2, names: M-030}",
     "speaker 2: channel 2 is already used by speaker 1"),
    ("speakers: []", "non-empty list"),
    ("screen: {type: round}", "screen type must be"),
])
def test_bad_files(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(LayoutError) as info:
        load_speakers_file(path)
    assert str(path) in str(info.value)
    assert message in str(info.value)


def test_missing_file(tmp_path):
    with pytest.raises(LayoutError, match="cannot read speakers file"):
        load_speakers_file(tmp_path / "nope.yaml")


# --------------------------------------------------------------------------------------------
# Mapping a layout onto a room
# --------------------------------------------------------------------------------------------


def test_apply_positions_gains_and_routing(tmp_path):
    real = load_speakers_file(write(tmp_path, STEREO_ROOM))
    layout, upmix, warnings = apply_real_layout(get_layout("0+2+0"), real)
    left, right = layout.speakers
    assert (left.azimuth, left.elevation, left.distance) == (35.0, 5.0, 2.5)
    assert (left.nominal_azimuth, left.nominal_elevation) == (30.0, 0.0)
    assert (right.azimuth, right.nominal_azimuth) == (-25.0, -30.0)
    # 4 file channels (highest channel 3); M+030 -> 3 with gain 0.5, M-030 -> 1
    expected = np.zeros((4, 2))
    expected[3, 0] = 0.5
    expected[1, 1] = 1.0
    np.testing.assert_array_equal(upmix, expected)
    # M+030/M-030 have no BS.2051 range other than their nominal angle
    assert any("M+030: azimuth 35" in w for w in warnings)
    assert any("M+030: elevation 5" in w for w in warnings)
    assert any("M-030: azimuth -25" in w for w in warnings)
    assert all(str(tmp_path) in w for w in warnings)


def test_apply_in_range_no_warnings_and_multiple_names():
    # 0+5+0 surrounds may be 100..120 degrees, elevation 0..15: no warning
    real = parse_speakers([
        {"channel": 0, "names": ["M+030", "M+SC"]},
        {"channel": 1, "names": "M-030"},
        {"channel": 2, "names": "M+000"},
        {"channel": 3, "names": "LFE1"},
        {"channel": 4, "names": "M+110", "position": {"az": 115.0, "el": 10.0}},
        {"channel": 5, "names": "M-110", "position": {"az": -100.0, "el": 0.0}},
    ])
    layout, upmix, warnings = apply_real_layout(get_layout("5.1"), real)
    assert warnings == []
    np.testing.assert_array_equal(upmix, np.eye(6))
    assert layout.speakers[4].azimuth == 115.0 and layout.speakers[4].distance == 1.0


def test_apply_unmapped_and_out_of_range_surround():
    real = parse_speakers([
        {"channel": 0, "names": "M+030"},
        {"channel": 1, "names": "M-030"},
        {"channel": 2, "names": "M+110", "position": {"az": 130.0, "el": 0.0}},
        {"channel": 3, "names": "T+000"},
    ])
    layout, upmix, warnings = apply_real_layout(get_layout("0+5+0"), real)
    assert upmix.shape == (4, 6)
    assert np.count_nonzero(upmix) == 3
    text = "\n".join(warnings)
    assert "M+110: azimuth 130 is outside the BS.2051 range 100..120" in text
    for name in ("M+000", "LFE1", "M-110"):
        assert f"layout channel {name} is not sent to any output" in text
    assert "channel 3 (T+000): no such loudspeaker" in text
    # unmapped channels keep their nominal positions
    assert layout.speakers[layout.index("M-110")].azimuth == -110.0


def test_apply_without_speakers_is_identity():
    layout = get_layout("4+5+0")
    new, upmix, warnings = apply_real_layout(layout, RealLayout(speakers=None))
    assert new == layout and warnings == []
    np.testing.assert_array_equal(upmix, np.eye(layout.n_channels))


# --------------------------------------------------------------------------------------------
# Rendering through render_file with a speakers file
# --------------------------------------------------------------------------------------------


def test_render_with_speakers_file(tmp_path):
    """A DirectSpeakers stereo bed on a stereo room: each bed channel lands, with its
    loudspeaker's gain, on the file channel the speakers file gives it."""
    import soundfile as sf

    from adm.builder import AdmBuilder, write_adm_bwf
    from renderer.render import render_file

    builder = AdmBuilder()
    builder.add_direct_speakers("bed", [1, 2], pack_format_id="AP_00010002")
    doc, chna = builder.build()
    sr, n = 48000, 4800
    t = np.arange(n) / sr
    audio = np.stack([0.5 * np.sin(2 * np.pi * 440 * t), 0.25 * np.sin(2 * np.pi * 660 * t)], 1)
    source = tmp_path / "in.wav"
    write_adm_bwf(source, audio, sr, doc, chna, bit_depth=32, sample_format="float")
    speakers = write(tmp_path, STEREO_ROOM)
    out = tmp_path / "out.wav"
    report = render_file(source, out, "0+2+0", speakers_file=speakers, output_gain_db=-6.0)
    rendered, rate = sf.read(out, dtype="float64")
    assert rendered.shape == (n, 4) and rate == sr
    g = 10 ** (-6 / 20)
    np.testing.assert_allclose(rendered[:, 3], 0.5 * g * audio[:, 0], atol=1e-6)
    np.testing.assert_allclose(rendered[:, 1], g * audio[:, 1], atol=1e-6)
    np.testing.assert_array_equal(rendered[:, [0, 2]], 0.0)
    assert report.peak.shape == (4,)
    assert any("M+030: azimuth 35" in w for w in report.warnings)
