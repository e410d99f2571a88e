"""Delivery-spec compliance: loudness target and true-peak ceiling of each deliverable.

Specs (levels in LUFS, tolerances in LU, peaks in dBTP):

* ``r128``: EBU R 128, programme loudness -23.0 +/- 0.5 LU (R 128 allows +/- 0.5 LU where
  the target cannot be met exactly, e.g. live), maximum true peak -1 dBTP.
* ``a85``: ATSC A/85 (US broadcast, CALM Act), -24 LKFS +/- 2 dB, true peak -2 dBTP.
* ``streaming``: dialogue-gated -27 LUFS +/- 2 LU, true peak -2 dBTP, as the common
  streaming-service delivery specs for film and episodic content ask: the loudness is the
  integrated loudness of the dialogue (measured on the dialogue content rendered alone) when
  it is given.

Loudness is judged on the value rounded to 0.1 LU, the resolution meters display (EBU Tech
3341); the true peak is judged unrounded (a ceiling).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from renderer.loudness import LoudnessResult

__all__ = [
    "SPECS",
    "ComplianceCheck",
    "ComplianceError",
    "DeliverySpec",
    "check",
    "format_table",
    "get_spec",
    "normalization_gain_db",
    "report_json",
]


class ComplianceError(ValueError):
    """Unknown delivery spec or a measurement a spec cannot be applied to; says which."""


@dataclass(frozen=True)
class DeliverySpec:
    """A delivery specification: ``target_lufs`` +/- ``tolerance_lu`` (LUFS, LU) and a true
    peak ceiling ``max_true_peak_dbtp`` (dBTP). ``dialogue_gated``: the loudness is measured
    on the dialogue when a dialogue measurement is given."""

    name: str
    target_lufs: float
    tolerance_lu: float
    max_true_peak_dbtp: float
    dialogue_gated: bool
    description: str


SPECS: dict[str, DeliverySpec] = {
    "r128": DeliverySpec("EBU R128", -23.0, 0.5, -1.0, False,
                         "EBU R 128: programme loudness -23 LUFS +/- 0.5 LU, true peak "
                         "<= -1 dBTP"),
    "a85": DeliverySpec("ATSC A/85", -24.0, 2.0, -2.0, False,
                        "ATSC A/85: -24 LKFS +/- 2 dB, true peak <= -2 dBTP"),
    "streaming": DeliverySpec("Streaming", -27.0, 2.0, -2.0, True,
                              "Streaming: dialogue-gated -27 LUFS +/- 2 LU, true peak "
                              "<= -2 dBTP"),
}

_ALIASES = {"ebu-r128": "r128", "ebu_r128": "r128", "ebur128": "r128", "ebu r128": "r128",
            "atsc-a85": "a85", "atsc_a85": "a85", "atsc a/85": "a85", "a/85": "a85"}


def get_spec(name: str) -> DeliverySpec:
    """The spec called ``name`` (case-insensitive): "r128" / "ebu-r128", "a85" /
    "atsc-a85", "streaming"."""
    key = str(name).strip().lower()
    key = _ALIASES.get(key, key)
    if key not in SPECS:
        raise ComplianceError(f"unknown delivery spec {name!r} (known: {', '.join(SPECS)})")
    return SPECS[key]


@dataclass(frozen=True)
class ComplianceCheck:
    """Outcome of checking one output against one spec. ``measured_lufs``: the programme's
    integrated loudness (LUFS); ``measured_true_peak``: its maximum true peak (dBTP);
    ``dialogue_lufs``: the dialogue's integrated loudness, None when not measured;
    ``judged_lufs``: the one compared with the target (dialogue or programme)."""

    output: str
    spec: str
    measured_lufs: float
    measured_true_peak: float
    dialogue_lufs: float | None
    loudness_ok: bool
    peak_ok: bool
    passed: bool
    notes: tuple[str, ...]
    judged_lufs: float = float("nan")   # the loudness the spec was judged on (LUFS)


def _judged_loudness(result: LoudnessResult, spec: DeliverySpec,
                     dialogue: LoudnessResult | None) -> tuple[float, list[str]]:
    """(the loudness the spec is judged on, notes)."""
    notes: list[str] = []
    if spec.dialogue_gated:
        if dialogue is None:
            notes.append("no dialogue measurement: the full programme's loudness was used "
                         "instead of the dialogue loudness")
        elif not math.isfinite(dialogue.integrated_lufs):
            notes.append("the dialogue is silent: the full programme's loudness was used")
        else:
            return float(dialogue.integrated_lufs), notes
    return float(result.integrated_lufs), notes


def check(output: str, result: LoudnessResult, spec: DeliverySpec,
          dialogue: LoudnessResult | None = None) -> ComplianceCheck:
    """Check one output's measurement against ``spec``.

    Loudness: |L - target| <= tolerance, with L rounded to 0.1 LU; L is the dialogue's
    integrated loudness for a dialogue-gated spec when ``dialogue`` is given, else the
    programme's (a note says so). Peak: programme true peak <= the ceiling.
    """
    loudness, notes = _judged_loudness(result, spec, dialogue)
    if math.isfinite(loudness):
        deviation = round(loudness, 1) - spec.target_lufs
        loudness_ok = abs(deviation) <= spec.tolerance_lu + 1e-9
        if not loudness_ok:
            notes.append(f"loudness {loudness:.1f} LUFS is {deviation:+.1f} LU from the "
                         f"target {spec.target_lufs:.1f} (tolerance +/-{spec.tolerance_lu:g})")
    else:
        loudness_ok = False
        notes.append("silent: no block above the -70 LUFS absolute gate")
    tp = float(result.true_peak_dbtp)
    if math.isnan(tp):
        peak_ok = False
        notes.append("true peak not measured")
    else:
        peak_ok = tp <= spec.max_true_peak_dbtp
        if not peak_ok:
            notes.append(f"true peak {tp:.2f} dBTP is above {spec.max_true_peak_dbtp:g} dBTP")
    return ComplianceCheck(
        output=output,
        spec=spec.name,
        measured_lufs=float(result.integrated_lufs),
        measured_true_peak=tp,
        dialogue_lufs=None if dialogue is None else float(dialogue.integrated_lufs),
        loudness_ok=loudness_ok,
        peak_ok=peak_ok,
        passed=loudness_ok and peak_ok,
        notes=tuple(notes),
        judged_lufs=loudness,
    )


def normalization_gain_db(result: LoudnessResult, spec: DeliverySpec,
                          dialogue: LoudnessResult | None = None) -> float:
    """Gain (dB) that brings the output to ``spec``'s target loudness, reduced where needed so
    that its true peak stays at or below the spec's ceiling.

    The loudness is the dialogue's for a dialogue-gated spec when ``dialogue`` is given (a
    gain moves the dialogue and the programme alike). Where the peak limit wins, the result
    stays below the target: nothing here limits or compresses. The gain is only a figure:
    it is never applied silently, callers apply it on request (``--normalize-to``) and
    say so.
    """
    loudness, _ = _judged_loudness(result, spec, dialogue)
    if not math.isfinite(loudness):
        raise ComplianceError(f"cannot normalise to {spec.name}: the programme is silent")
    gain = spec.target_lufs - loudness
    tp = float(result.true_peak_dbtp)
    if math.isfinite(tp):
        gain = min(gain, spec.max_true_peak_dbtp - tp)
    return float(gain)


def _fmt(v: float | None, unit: str = "") -> str:
    if v is None or math.isnan(v):
        return "-"
    if math.isinf(v):
        return "-inf" if v < 0 else "inf"
    return f"{v:.1f}{unit}"


def format_table(checks: Sequence[ComplianceCheck],
                 results: Mapping[str, LoudnessResult],
                 dialogue: Mapping[str, LoudnessResult | None] | None = None) -> str:
    """Terminal table, one row per output: integrated loudness (LUFS), loudness range (LU),
    maximum momentary and short-term loudness (LUFS), true peak (dBTP), dialogue loudness
    (LUFS: from ``dialogue``, output name -> its dialogue's result, else from the checks)
    and, per spec, PASS or FAIL with the failing figures; the checks' notes below."""
    specs = list(dict.fromkeys(c.spec for c in checks))
    by_key = {(c.output, c.spec): c for c in checks}
    outputs = list(dict.fromkeys([*results, *(c.output for c in checks)]))
    header = ["output", "integrated", "LRA", "max M", "max S", "true peak", "dialogue", *specs]
    units = ["", "LUFS", "LU", "LUFS", "LUFS", "dBTP", "LUFS", *([""] * len(specs))]
    rows: list[list[str]] = []
    notes: list[str] = []
    for name in outputs:
        r = results.get(name)
        mine = [by_key[(name, s)] for s in specs if (name, s) in by_key]
        said = (dialogue or {}).get(name)
        speech = (said.integrated_lufs if said is not None else
                  next((c.dialogue_lufs for c in mine if c.dialogue_lufs is not None), None))
        if r is not None:
            row = [name, _fmt(r.integrated_lufs), _fmt(r.loudness_range_lu),
                   _fmt(r.max_momentary_lufs), _fmt(r.max_short_term_lufs),
                   _fmt(r.true_peak_dbtp), _fmt(speech)]
        else:
            row = [name, _fmt(mine[0].measured_lufs), "-", "-", "-",
                   _fmt(mine[0].measured_true_peak), _fmt(speech)]
        for s in specs:
            c = by_key.get((name, s))
            if c is None:
                row.append("")
                continue
            if c.passed:
                row.append("PASS")
            else:
                why = []
                if not c.loudness_ok:
                    why.append(f"{_fmt(c.judged_lufs)} LUFS")
                if not c.peak_ok:
                    why.append(f"{_fmt(c.measured_true_peak)} dBTP")
                row.append(f"FAIL ({', '.join(why)})")
            notes.extend(f"{name} / {s}: {n}" for n in c.notes)
        rows.append(row)
    table = [header, units, *rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]

    def line(row: list[str]) -> str:
        cells = [row[0].ljust(widths[0])]
        cells += [c.rjust(widths[i]) for i, c in enumerate(row[1:7], start=1)]
        cells += [c.ljust(widths[i]) for i, c in enumerate(row[7:], start=7)]
        return "  ".join(cells).rstrip()

    lines = [line(header), line(units)]
    lines.append("-" * max(len(x) for x in lines))
    lines += [line(row) for row in rows]
    lines += notes
    return "\n".join(lines)


def report_json(checks: Sequence[ComplianceCheck],
                results: Mapping[str, LoudnessResult]) -> dict[str, Any]:
    """JSON-friendly report: per output its figures (:meth:`LoudnessResult.as_dict` without
    the time series) and per spec the check; non-finite numbers are None."""
    def num(v: float | None) -> float | None:
        return None if v is None or not math.isfinite(v) else round(float(v), 3)

    out: dict[str, Any] = {"outputs": {name: r.as_dict(series=False)
                                       for name, r in results.items()},
                           "checks": []}
    specs_used = {c.spec for c in checks}
    out["specs"] = {key: {"name": s.name, "target_lufs": s.target_lufs,
                          "tolerance_lu": s.tolerance_lu,
                          "max_true_peak_dbtp": s.max_true_peak_dbtp,
                          "dialogue_gated": s.dialogue_gated, "description": s.description}
                    for key, s in SPECS.items() if s.name in specs_used}
    for c in checks:
        out["checks"].append({
            "output": c.output, "spec": c.spec,
            "measured_lufs": num(c.measured_lufs),
            "measured_true_peak_dbtp": num(c.measured_true_peak),
            "dialogue_lufs": num(c.dialogue_lufs),
            "judged_lufs": num(c.judged_lufs),
            "loudness_ok": c.loudness_ok, "peak_ok": c.peak_ok, "passed": c.passed,
            "notes": list(c.notes),
        })
    out["passed"] = all(c.passed for c in checks)
    return out
