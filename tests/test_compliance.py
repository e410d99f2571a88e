"""Delivery-spec checks on measured signals (levels known from BS.1770 by construction)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from renderer.compliance import (
    SPECS,
    ComplianceError,
    check,
    format_table,
    get_spec,
    normalization_gain_db,
    report_json,
)
from renderer.loudness import LoudnessResult, measure

FS = 48000


def tone(loudness_lufs: float, seconds: float = 4.0, *, burst_dbfs: float | None = None):
    """(frames, 2) float32 1 kHz stereo sine whose loudness is ``loudness_lufs``: each channel
    at peak level loudness + 0 dB (two channels of power A^2/2 add 3 dB, the K-weighting
    gain at 1 kHz is cancelled by the -0.691 offset). ``burst_dbfs``: one sample set to that
    level (a sample peak, hence a true peak, of that level)."""
    t = np.arange(round(seconds * FS)) / FS
    x = 10 ** (loudness_lufs / 20) * np.sin(2 * np.pi * 1000 * t)
    x = np.stack([x, x], axis=1)
    if burst_dbfs is not None:
        x[FS, 0] = 10 ** (burst_dbfs / 20)
    return x.astype(np.float32)


@pytest.fixture(scope="module")
def at_23():
    return measure(tone(-23.0), FS, np.ones(2))


@pytest.fixture(scope="module")
def at_20():
    return measure(tone(-20.0), FS, np.ones(2))


def test_specs_and_aliases():
    assert get_spec("R128") is SPECS["r128"] is get_spec("ebu-r128")
    assert get_spec("atsc-a85") is SPECS["a85"] is get_spec("A85")
    assert get_spec("Streaming").dialogue_gated
    r128, a85, st = SPECS["r128"], SPECS["a85"], SPECS["streaming"]
    assert (r128.target_lufs, r128.tolerance_lu, r128.max_true_peak_dbtp) == (-23, 0.5, -1)
    assert (a85.target_lufs, a85.tolerance_lu, a85.max_true_peak_dbtp) == (-24, 2, -2)
    assert (st.target_lufs, st.tolerance_lu, st.max_true_peak_dbtp) == (-27, 2, -2)
    with pytest.raises(ComplianceError, match="nope"):
        get_spec("nope")


def test_minus_23_passes_r128_and_a85(at_23):
    assert at_23.integrated_lufs == pytest.approx(-23.0, abs=0.1)
    c = check("tv.wav", at_23, get_spec("r128"))
    assert c.loudness_ok and c.peak_ok and c.passed and c.notes == ()
    # -23 is within -24 +/- 2
    assert check("tv.wav", at_23, get_spec("a85")).passed


def test_minus_20_fails_loudness(at_20):
    for name in ("r128", "a85"):
        c = check("loud.wav", at_20, get_spec(name))
        assert not c.loudness_ok and c.peak_ok and not c.passed
        assert any("LUFS" in n for n in c.notes)


def test_true_peak_above_ceiling_fails_everywhere():
    r = measure(tone(-23.0, burst_dbfs=-0.5), FS, np.ones(2))
    assert r.true_peak_dbtp >= -0.5 - 0.01
    assert r.integrated_lufs == pytest.approx(-23.0, abs=0.1)
    for spec in SPECS.values():
        c = check("hot.wav", r, spec, dialogue=r)
        assert not c.peak_ok and not c.passed, spec.name


def test_dialogue_gated_spec(at_20):
    dialogue = measure(tone(-27.0), FS, np.ones(2))
    spec = get_spec("streaming")
    # programme at -20, dialogue at -27: the streaming spec judges the dialogue
    c = check("film.wav", at_20, spec, dialogue=dialogue)
    assert c.loudness_ok and c.passed
    assert c.dialogue_lufs == pytest.approx(-27.0, abs=0.1)
    assert c.measured_lufs == pytest.approx(-20.0, abs=0.1)
    # without the dialogue: the programme is used, and a note says so
    c = check("film.wav", at_20, spec)
    assert not c.loudness_ok
    assert any("dialogue" in n for n in c.notes)
    # R128 ignores the dialogue
    assert not check("film.wav", at_20, get_spec("r128"), dialogue=dialogue).loudness_ok


def test_silent_output_fails():
    r = measure(np.zeros((FS, 2), np.float32), FS, np.ones(2))
    c = check("silent.wav", r, get_spec("r128"))
    assert not c.loudness_ok and not c.passed
    with pytest.raises(ComplianceError):
        normalization_gain_db(r, get_spec("r128"))


def test_normalization_gain_reaches_target():
    x = tone(-30.0)
    r = measure(x, FS, np.ones(2))
    for name in ("r128", "a85"):
        spec = get_spec(name)
        gain = normalization_gain_db(r, spec)
        after = measure(x * np.float32(10 ** (gain / 20)), FS, np.ones(2))
        assert after.integrated_lufs == pytest.approx(spec.target_lufs, abs=0.02)
        assert check("x", after, spec).passed


def test_normalization_gain_limited_by_true_peak():
    # -30 LUFS with a -3 dBTP spike: +7 dB would reach -23 but put the peak at +4 dBTP
    x = tone(-30.0, burst_dbfs=-3.0)
    r = measure(x, FS, np.ones(2))
    spec = get_spec("r128")
    gain = normalization_gain_db(r, spec)
    assert gain == pytest.approx(spec.max_true_peak_dbtp - r.true_peak_dbtp, abs=1e-9)
    assert gain < spec.target_lufs - r.integrated_lufs
    after = measure(x * np.float32(10 ** (gain / 20)), FS, np.ones(2))
    assert after.true_peak_dbtp == pytest.approx(spec.max_true_peak_dbtp, abs=0.01)


def test_normalization_gain_uses_dialogue_for_gated_spec(at_20):
    dialogue = measure(tone(-29.0), FS, np.ones(2))
    gain = normalization_gain_db(at_20, get_spec("streaming"), dialogue)
    assert gain == pytest.approx(-27.0 - dialogue.integrated_lufs, abs=1e-9)


def test_table_and_json(at_23, at_20):
    results = {"tv.wav": at_23, "loud.wav": at_20}
    checks = [check(name, r, get_spec(s)) for name, r in results.items()
              for s in ("r128", "streaming")]
    table = format_table(checks, results)
    lines = table.splitlines()
    tv = next(line for line in lines if line.startswith("tv.wav"))
    loud = next(line for line in lines if line.startswith("loud.wav"))
    assert "-23.0" in tv and "PASS" in tv
    assert "FAIL (-20.0 LUFS)" in loud
    assert "EBU R128" in lines[0] and "Streaming" in lines[0]
    assert any("dialogue" in line for line in lines)   # the streaming spec's note
    data = report_json(checks, results)
    text = json.dumps(data)                             # JSON-serialisable
    assert "Infinity" not in text and "NaN" not in text
    assert data["outputs"]["tv.wav"]["integrated_lufs"] == pytest.approx(-23.0, abs=0.1)
    assert data["passed"] is False
    assert {c["spec"] for c in data["checks"]} == {"EBU R128", "Streaming"}


def test_json_of_silence_has_no_infinity():
    silent = LoudnessResult(
        integrated_lufs=-math.inf, loudness_range_lu=0.0, max_momentary_lufs=-math.inf,
        max_short_term_lufs=-math.inf, true_peak_dbtp=-math.inf,
        sample_peak_dbfs=-math.inf, channel_true_peak_dbtp=(-math.inf,),
        momentary=np.full(3, -np.inf), short_term=np.zeros(0), duration_s=1.0)
    checks = [check("s.wav", silent, get_spec("a85"))]
    data = report_json(checks, {"s.wav": silent})
    json.dumps(data, allow_nan=False)
    assert data["outputs"]["s.wav"]["integrated_lufs"] is None
    assert "-inf" in format_table(checks, {"s.wav": silent})
