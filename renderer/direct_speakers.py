"""Gains for render items with typeDefinition == DirectSpeakers (ITU-R BS.2127 clause 8).

A DirectSpeakers channel is routed, in this order of preference, by:

1. the mapping rules of BS.2127 clause 8, when the channel belongs to a known ITU
   common-definition pack (e.g. 22.2 -> 5.1 downmix rules);
2. its speakerLabel, when the output layout has a speaker with that (normalised) label and the
   same LFE-ness;
3. its position: the unique nearest speaker of the right kind inside the block's bounds;
4. otherwise the point-source panner on its position (non-LFE) or the layout's LFE1 (LFE),
   or nowhere if the layout has no LFE.

Polar positions are compared with the speakers' nominal BS.2051 positions and panned with the
polar point-source panner; cartesian positions are compared with the layout's allocentric
speaker positions and panned with the allocentric point-source panner, as the reference does.

Everything here is plain numpy and runs once per block; only the point-source fallback calls
the JAX panner in :mod:`renderer.point_source`.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

import numpy as np

from adm.model import (
    DEFAULT_SCREEN,
    BoundedValue,
    DirectSpeakersBlock,
    DirectSpeakersCartesianPosition,
    DirectSpeakersPolarPosition,
    Frequency,
    Screen,
    ScreenEdgeLock,
)
from layouts.model import Layout, LayoutError, polar_to_cartesian
from renderer.allocentric import AllocentricPanner, configure_allocentric
from renderer.point_source import PointSourcePanner, cached_point_source
from renderer.screen import ScreenEdges, screen_edges

__all__ = [
    "DirectSpeakersPanner",
    "configure_direct_speakers",
    "direct_speakers_gains",
    "is_lfe_frequency",
    "nominal_speaker_label",
    "ITU_PACK_LAYOUTS",
    "MAPPING_RULES",
    "MappingRule",
    "ScreenEdges",
    "screen_edges",
]

# Tolerance (degrees for angles, unit-cube / radius units for lengths) used by the bounds and
# nearest-speaker tests, as in the reference renderer.
_TOL = 1e-5

# Highest lowPass frequency (Hz) of an LFE channel (BS.2127 clause 8).
LFE_MAX_LOW_PASS_HZ = 200.0

_URN_RE = re.compile(r"^urn:itu:bs:2051:[0-9]+:speaker:(.*)$")

# Alternative LFE spellings accepted as speakerLabels.
_DEFAULT_SUBSTITUTIONS: dict[str, str] = {"LFE": "LFE1", "LFEL": "LFE1", "LFER": "LFE2"}

_LFE_LABELS = ("LFE1", "LFE2")


# --------------------------------------------------------------------------------------------
# Mapping rules (BS.2127 clause 8), as data
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MappingRule:
    """One downmix/mapping rule for a speakerLabel of an ITU common-definition pack.

    The rule applies when the channel's normalised label equals ``label``, the input pack's
    layout is in ``input_layouts`` (any if None), the output layout's name is in
    ``output_layouts`` (any if None) and every speaker named in ``gains`` exists in the
    output layout. ``gains`` is ((speaker name, linear gain), ...).
    """

    label: str
    gains: tuple[tuple[str, float], ...]
    input_layouts: tuple[str, ...] | None = None
    output_layouts: tuple[str, ...] | None = None


def _r(label: str, *gains: tuple[str, float], inputs: tuple[str, ...] | None = None,
       outputs: tuple[str, ...] | None = None) -> MappingRule:
    return MappingRule(label, tuple((n, float(g)) for n, g in gains), inputs, outputs)


_h, _t, _q = np.sqrt(1 / 2), np.sqrt(1 / 3), np.sqrt(1 / 4)
_tt = np.sqrt(2 / 3)
_L22 = ("9+10+3",)
_LFE_IN = ("9+10+3", "3+7+0")

# Rules for the left half of the sphere and the centre line; the right-hand mirror images are
# added by :func:`_with_mirrored_rules`. Earlier rules take precedence.
_BASE_RULES: tuple[MappingRule, ...] = (
    _r("M+000", ("M+000", 1)),
    _r("M+000", ("M+030", _h), ("M-030", _h)),
    _r("M+060", ("M+060", 1)),
    _r("M+060", ("M+030", _tt), ("M+110", _t)),
    _r("M+060", ("M+030", _h), ("M+090", _h)),
    _r("M+060", ("M+030", 1)),
    _r("M+090", ("M+090", 1)),
    _r("M+090", ("M+030", _t), ("M+110", _tt), inputs=_L22),
    _r("M+090", ("M+030", _h), ("M+110", _h)),
    _r("M+090", ("M+030", _h)),
    _r("M+110", ("M+110", 1)),
    _r("M+110", ("M+135", 1)),
    _r("M+110", ("M+030", _h)),
    _r("M+135", ("M+135", 1)),
    _r("M+135", ("M+110", 1)),
    _r("M+135", ("M+030", _h)),
    _r("M+180", ("M+180", 1)),
    _r("M+180", ("M+135", _h), ("M-135", _h)),
    _r("M+180", ("M+110", _h), ("M-110", _h)),
    _r("M+180", ("M+030", _q), ("M-030", _q)),
    _r("U+000", ("U+000", 1)),
    _r("U+000", ("U+030", _h), ("U-030", _h)),
    _r("U+000", ("U+045", _h), ("U-045", _h)),
    _r("U+000", ("M+000", 1)),
    _r("U+000", ("M+030", _h), ("M-030", _h)),
    _r("U+030", ("U+030", 1)),
    _r("U+030", ("U+045", 1)),
    _r("U+030", ("M+030", 1)),
    _r("U+045", ("U+045", 1)),
    _r("U+045", ("U+030", 1)),
    _r("U+045", ("M+030", 1)),
    _r("U+090", ("U+090", 1)),
    _r("U+090", ("U+045", _tt), ("UH+180", _t), inputs=_L22),
    _r("U+090", ("U+030", _h), ("U+110", _h)),
    _r("U+090", ("U+045", _h), ("U+135", _h)),
    _r("U+090", ("M+090", 1)),
    _r("U+090", ("U+030", _h), ("M+110", _h)),
    _r("U+090", ("M+030", _h), ("M+110", _h)),
    _r("U+090", ("M+030", _h)),
    _r("U+110", ("U+110", 1)),
    _r("U+110", ("U+135", 1)),
    _r("U+110", ("U+045", _h), ("UH+180", _h)),
    _r("U+110", ("M+110", 1)),
    _r("U+110", ("M+135", 1)),
    _r("U+110", ("M+030", _h)),
    _r("U+135", ("U+135", 1)),
    _r("U+135", ("U+110", 1)),
    _r("U+135", ("U+045", _t), ("UH+180", _tt), inputs=_L22),
    _r("U+135", ("U+045", _h), ("UH+180", _h)),
    _r("U+135", ("M+135", 1)),
    _r("U+135", ("M+110", 1)),
    _r("U+135", ("M+030", _h)),
    _r("U+180", ("U+180", 1)),
    _r("U+180", ("UH+180", 1)),
    _r("U+180", ("U+135", _h), ("U-135", _h)),
    _r("U+180", ("U+110", _h), ("U-110", _h)),
    _r("U+180", ("M+135", _h), ("M-135", _h)),
    _r("U+180", ("M+110", _h), ("M-110", _h)),
    _r("U+180", ("M+030", _q), ("M-030", _q)),
    _r("UH+180", ("UH+180", 1)),
    _r("UH+180", ("U+180", 1)),
    _r("UH+180", ("U+135", _h), ("U-135", _h)),
    _r("UH+180", ("U+110", _h), ("U-110", _h)),
    _r("UH+180", ("M+135", _h), ("M-135", _h)),
    _r("UH+180", ("M+110", _h), ("M-110", _h)),
    _r("UH+180", ("M+030", _q), ("M-030", _q)),
    _r("T+000", ("T+000", 1)),
    _r("T+000", ("U+045", _q), ("U-045", _q), ("U+135", _q), ("U-135", _q)),
    _r("T+000", ("U+030", _q), ("U-030", _q), ("U+110", _q), ("U-110", _q)),
    _r("T+000", ("U+045", _t), ("U-045", _t), ("UH+180", _t)),
    _r("T+000", ("U+045", _q), ("U-045", _q), ("M+135", _q), ("M-135", _q)),
    _r("T+000", ("U+030", _q), ("U-030", _q), ("M+110", _q), ("M-110", _q)),
    _r("T+000", ("M+030", _q), ("M-030", _q), ("M+135", _q), ("M-135", _q)),
    _r("T+000", ("M+030", _q), ("M-030", _q), ("M+110", _q), ("M-110", _q)),
    _r("T+000", ("M+030", _q), ("M-030", _q)),
    _r("B+000", ("B+000", 1)),
    _r("B+000", ("M+000", 1)),
    _r("B+000", ("M+030", _h), ("M-030", _h)),
    _r("B+045", ("B+045", 1)),
    _r("B+045", ("M+030", 1)),
    _r("LFE1", ("LFE1", 1), inputs=_LFE_IN, outputs=_LFE_IN),
    _r("LFE2", ("LFE2", 1), inputs=_LFE_IN, outputs=_LFE_IN),
    _r("LFE1", ("LFE1", _h), inputs=_LFE_IN),
    _r("LFE2", ("LFE1", _h), inputs=_LFE_IN),
    _r("LFE1", ("LFE1", 1)),
)


def _mirror_name(name: str) -> str:
    """Left/right mirror image of a BS.2051 label ("M+030" <-> "M-030"); labels on the median
    plane (azimuth 000 or 180) and labels without a sign are their own mirror image."""
    if name.endswith(("000", "180")):
        return name
    if "+" in name:
        return name.replace("+", "-")
    return name.replace("-", "+")


def _with_mirrored_rules(rules: tuple[MappingRule, ...]) -> tuple[MappingRule, ...]:
    """Each rule followed by its mirror image, unless the mirror image is the same rule."""
    out: list[MappingRule] = []
    for rule in rules:
        out.append(rule)
        mirrored = MappingRule(
            _mirror_name(rule.label),
            tuple((_mirror_name(n), g) for n, g in rule.gains),
            rule.input_layouts,
            rule.output_layouts,
        )
        if mirrored.label != rule.label or sorted(mirrored.gains) != sorted(rule.gains):
            out.append(mirrored)
    return tuple(out)


MAPPING_RULES: tuple[MappingRule, ...] = _with_mirrored_rules(_BASE_RULES)

# ITU common-definition DirectSpeakers packs that the mapping rules know, and their BS.2051
# layout. Keys are upper-case IDs.
ITU_PACK_LAYOUTS: dict[str, str] = {
    "AP_00010001": "0+1+0",
    "AP_00010002": "0+2+0",
    "AP_0001000C": "0+5+0",
    "AP_00010003": "0+5+0",
    "AP_00010004": "2+5+0",
    "AP_00010005": "4+5+0",
    "AP_00010010": "4+5+1",
    "AP_00010007": "3+7+0",
    "AP_00010008": "4+9+0",
    "AP_00010009": "9+10+3",
    "AP_0001000F": "0+7+0",
    "AP_00010017": "4+7+0",
}


# --------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class DirectSpeakersPanner:
    """A layout configured for DirectSpeakers rendering (numpy arrays; build it with
    :func:`configure_direct_speakers`).

    Arrays have one row per output channel (``n`` = ``layout.n_channels``, LFE included):
    ``nominal_azimuth``/``nominal_elevation`` (n,) degrees and ``nominal_positions`` (n, 3)
    cartesian unit vectors of the BS.2051 nominal positions; ``is_lfe`` (n,) bool;
    ``allocentric_positions`` (n, 3) in the unit cube. ``allocentric`` is the allocentric
    panner for cartesian positions; it and ``allocentric_positions`` are None where the layout
    has no allocentric positions (cartesian blocks then raise :class:`LayoutError` with
    ``allocentric_problem``). ``screen`` is the reproduction screen's edges (None: no screen,
    screenEdgeLock is ignored).
    """

    layout: Layout
    allocentric: AllocentricPanner | None
    channel_names: tuple[str, ...]
    is_lfe: np.ndarray
    nominal_azimuth: np.ndarray
    nominal_elevation: np.ndarray
    nominal_positions: np.ndarray
    allocentric_positions: np.ndarray | None
    allocentric_problem: str | None = None
    screen: ScreenEdges | None = None
    substitutions: Mapping[str, str] = field(default_factory=dict)

    @property
    def point_source(self) -> PointSourcePanner:
        """The point-source panner for the fallback, configured when first needed."""
        return cached_point_source(self.layout.without_lfe)


def configure_direct_speakers(
    layout: Layout,
    additional_substitutions: Mapping[str, str] | None = None,
    screen: Screen | None = DEFAULT_SCREEN,
) -> DirectSpeakersPanner:
    """Configure DirectSpeakers rendering for ``layout`` (BS.2127 clause 8).

    ``additional_substitutions`` maps extra speakerLabel spellings to BS.2051 labels (added to
    LFE -> LFE1, LFEL -> LFE1, LFER -> LFE2), like the reference renderer's option of that
    name. ``screen`` is the reproduction screen used by screenEdgeLock (default: the BS.2076
    default screen; None: no screen).
    """
    speakers = layout.speakers
    nominal = np.array([s.nominal for s in speakers], dtype=float).reshape(-1, 2)
    nominal_positions = np.array(
        [polar_to_cartesian(az, el, 1.0) for az, el in nominal], dtype=float
    ).reshape(-1, 3)

    allo_table = dict(layout.allocentric_positions)
    allocentric_positions: np.ndarray | None = None
    allocentric: AllocentricPanner | None = None
    problem: str | None = None
    missing = [s.name for s in speakers if s.name not in allo_table]
    if missing:
        problem = (
            f"layout {layout.name} has no allocentric position for loudspeaker(s) "
            f"{', '.join(missing)}, needed for cartesian DirectSpeakers positions"
        )
    else:
        try:
            allocentric = configure_allocentric(layout)
        except LayoutError as exc:
            problem = str(exc)
        else:
            allocentric_positions = np.array([allo_table[s.name] for s in speakers], dtype=float)

    substitutions = dict(_DEFAULT_SUBSTITUTIONS)
    substitutions.update(additional_substitutions or {})

    return DirectSpeakersPanner(
        layout=layout,
        allocentric=allocentric,
        channel_names=layout.channel_names,
        is_lfe=layout.is_lfe.copy(),
        nominal_azimuth=nominal[:, 0].copy(),
        nominal_elevation=nominal[:, 1].copy(),
        nominal_positions=nominal_positions,
        allocentric_positions=allocentric_positions,
        allocentric_problem=problem,
        screen=None if screen is None else screen_edges(screen),
        substitutions=substitutions,
    )


# --------------------------------------------------------------------------------------------
# Label and LFE decisions
# --------------------------------------------------------------------------------------------


def nominal_speaker_label(label: str, substitutions: Mapping[str, str] | None = None) -> str:
    """The BS.2051 label named by an ADM speakerLabel: the part after
    ``urn:itu:bs:2051:<version>:speaker:`` if it has that form, then LFE / LFEL / LFER (or the
    given ``substitutions``) replaced by LFE1 / LFE1 / LFE2. Other labels are returned
    unchanged (labels that are not BS.2051 names then match no speaker)."""
    match = _URN_RE.match(label)
    if match is not None:
        label = match.group(1)
    table = _DEFAULT_SUBSTITUTIONS if substitutions is None else substitutions
    return table.get(label, label)


def is_lfe_frequency(frequency: Frequency) -> bool:
    """True if an audioChannelFormat's frequency element marks an LFE channel: a lowPass of at
    most 200 Hz and no highPass (BS.2127 clause 8). Warns (UserWarning) if frequency
    information is present but does not mark an LFE channel."""
    if (
        frequency.low_pass is not None
        and frequency.low_pass <= LFE_MAX_LOW_PASS_HZ
        and frequency.high_pass is None
    ):
        return True
    if frequency.low_pass is not None or frequency.high_pass is not None:
        warnings.warn(
            f"not treating channel with frequency lowPass={frequency.low_pass} "
            f"highPass={frequency.high_pass} as LFE",
            stacklevel=2,
        )
    return False


def _is_lfe_channel(panner: DirectSpeakersPanner, block: DirectSpeakersBlock,
                    frequency: Frequency) -> bool:
    by_frequency = is_lfe_frequency(frequency)
    by_label = any(
        nominal_speaker_label(label, panner.substitutions) in _LFE_LABELS
        for label in block.speaker_labels
    )
    # A low-pass channel labelled with another spelling of LFE (Dolby's "RC_LFE") agrees in
    # substance: only a real disagreement is reported.
    lfe_like_label = any("LFE" in label.upper() for label in block.speaker_labels)
    if by_frequency != by_label and block.speaker_labels and not (
            by_frequency and lfe_like_label):
        warnings.warn(
            f"audioBlockFormat {block.id}: LFE indication from the frequency element does not "
            "match the speakerLabel",
            stacklevel=3,
        )
    return by_frequency or by_label


# --------------------------------------------------------------------------------------------
# Position matching
# --------------------------------------------------------------------------------------------


def _bounds(v: BoundedValue) -> tuple[float, float]:
    return (v.value if v.min is None else v.min, v.value if v.max is None else v.max)


def _inside_angle_range(x: np.ndarray, start: float, end: float, tol: float) -> np.ndarray:
    """(n,) bool: angles ``x`` (degrees) within the range going anticlockwise from ``start`` to
    ``end``, widened by ``tol``. A range spanning 360 degrees means any angle; equal ends mean
    one angle."""
    while end - 360.0 > start:
        end -= 360.0
    while end < start:
        end += 360.0
    lo = start - tol
    x = lo + np.mod(np.asarray(x, dtype=float) - lo, 360.0)  # into [lo, lo + 360)
    return x <= end + tol


def _polar_within_bounds(panner: DirectSpeakersPanner, az: BoundedValue, el: BoundedValue,
                         dist: BoundedValue) -> np.ndarray:
    az_min, az_max = _bounds(az)
    el_min, el_max = _bounds(el)
    d_min, d_max = _bounds(dist)
    elevation = panner.nominal_elevation
    distance = 1.0  # nominal distance of every BS.2051 loudspeaker
    # loudspeakers at the poles have no defined azimuth and match any azimuth range
    az_ok = _inside_angle_range(panner.nominal_azimuth, az_min, az_max, _TOL) | (
        np.abs(elevation) >= 90.0 - _TOL
    )
    return (
        az_ok
        & (elevation > el_min - _TOL) & (elevation < el_max + _TOL)
        & (distance > d_min - _TOL) & (distance < d_max + _TOL)
    )


def _cartesian_within_bounds(allo: np.ndarray,
                             pos: DirectSpeakersCartesianPosition) -> np.ndarray:
    lo, hi = np.array([_bounds(v) for v in (pos.x, pos.y, pos.z)], dtype=float).T
    return np.all(allo + _TOL >= lo, axis=1) & np.all(allo - _TOL <= hi, axis=1)


def _unique_closest(positions: np.ndarray, target: np.ndarray,
                    candidates: np.ndarray) -> int | None:
    """Index of the candidate nearest ``target`` if no other candidate is as near (within the
    tolerance), else None."""
    idx = np.flatnonzero(candidates)
    dist = np.linalg.norm(positions[idx] - target[None, :], axis=1)
    best = int(np.argmin(dist))
    if np.count_nonzero(np.abs(dist - dist[best]) < _TOL) == 1:
        return int(idx[best])
    return None


def _lock_to_screen_edge(edges: ScreenEdges | None, lock: ScreenEdgeLock | None,
                         az: float, el: float) -> tuple[float, float]:
    if edges is None or lock is None:
        return az, el
    if lock.horizontal == "left":
        az = edges.left_azimuth
    elif lock.horizontal == "right":
        az = edges.right_azimuth
    if lock.vertical == "top":
        el = edges.top_elevation
    elif lock.vertical == "bottom":
        el = edges.bottom_elevation
    return az, el


# --------------------------------------------------------------------------------------------
# Gains
# --------------------------------------------------------------------------------------------

def _mapping_rule_gains(panner: DirectSpeakersPanner, block: DirectSpeakersBlock,
                        pack_format_ids: tuple[str, ...]) -> np.ndarray | None:
    if not pack_format_ids or not block.speaker_labels:
        return None
    input_layout = ITU_PACK_LAYOUTS.get(pack_format_ids[-1].upper())
    if input_layout is None:
        return None
    label = nominal_speaker_label(block.speaker_labels[0], panner.substitutions)
    names = set(panner.channel_names)
    for rule in MAPPING_RULES:
        if rule.label != label:
            continue
        if rule.input_layouts is not None and input_layout not in rule.input_layouts:
            continue
        if rule.output_layouts is not None and panner.layout.name not in rule.output_layouts:
            continue
        if all(name in names for name, _ in rule.gains):
            out = np.zeros(len(panner.channel_names))
            for name, gain in rule.gains:
                out[panner.channel_names.index(name)] = gain
            return out
    return None


def _one_hot(panner: DirectSpeakersPanner, index: int) -> np.ndarray:
    out = np.zeros(len(panner.channel_names))
    out[index] = 1.0
    return out


def direct_speakers_gains(
    panner: DirectSpeakersPanner,
    block: DirectSpeakersBlock,
    frequency: Frequency,
    pack_format_ids: tuple[str, ...] = (),
    screen_edge_lock: ScreenEdgeLock | None = None,
    pack_is_common_definition: bool = True,
) -> np.ndarray:
    """(n_channels,) linear gains (LFE channels included, layout order) for one DirectSpeakers
    audioBlockFormat (BS.2127 clause 8).

    ``frequency`` is the audioChannelFormat's frequency element (LFE decision).
    ``pack_format_ids`` is the chain of audioPackFormat IDs leading to the channel, outermost
    first; the last one (the pack that holds the channel) selects the mapping rules if it is an
    ITU common-definition pack listed in :data:`ITU_PACK_LAYOUTS` and
    ``pack_is_common_definition`` (it came from the BS.2094 definitions, not from the file's
    own XML). ``screen_edge_lock`` is the
    position's screenEdgeLock (default: the block's ``screen_edge_lock`` attribute if it has
    one, else none); it moves a polar position to the reproduction screen's edge.

    The block's ``gain`` is not applied here (the reference renderer does not apply it to
    DirectSpeakers either). Warns (UserWarning) where the LFE indications disagree.
    """
    pos = block.position
    if not isinstance(pos, (DirectSpeakersPolarPosition, DirectSpeakersCartesianPosition)):
        raise TypeError(f"audioBlockFormat {block.id}: unexpected position {pos!r}")
    cartesian = isinstance(pos, DirectSpeakersCartesianPosition)
    if screen_edge_lock is None:
        screen_edge_lock = getattr(block, "screen_edge_lock", None)

    lfe = _is_lfe_channel(panner, block, frequency)
    if not lfe and any("LFE" in label.upper() for label in block.speaker_labels):
        warnings.warn(
            f"audioBlockFormat {block.id} is not treated as LFE but has 'LFE' in a speakerLabel; "
            "use a BS.2051 speakerLabel or the audioChannelFormat frequency element instead",
            stacklevel=2,
        )

    # 1. mapping rules for ITU common-definition packs
    gains = _mapping_rule_gains(panner, block, pack_format_ids if pack_is_common_definition
                                else ())
    if gains is not None:
        return gains

    # 2. speakerLabel match of the same kind (LFE or not); earlier labels take precedence
    for label in block.speaker_labels:
        name = nominal_speaker_label(label, panner.substitutions)
        if name in panner.channel_names:
            idx = panner.channel_names.index(name)
            if bool(panner.is_lfe[idx]) == lfe:
                return _one_hot(panner, idx)

    # 3. the unique nearest loudspeaker of the same kind within the bounds
    if cartesian:
        if panner.allocentric_positions is None:
            raise LayoutError(f"audioBlockFormat {block.id}: {panner.allocentric_problem}")
        locked = screen_edge_lock is not None and (
            screen_edge_lock.horizontal is not None or screen_edge_lock.vertical is not None
        )
        if locked and panner.screen is not None:
            warnings.warn(
                f"audioBlockFormat {block.id}: screenEdgeLock on a cartesian DirectSpeakers "
                "position is not supported; ignored",
                stacklevel=2,
            )
        positions = panner.allocentric_positions
        within = _cartesian_within_bounds(positions, pos)
        target = np.array([pos.x.value, pos.y.value, pos.z.value], dtype=float)
    else:
        az, el = _lock_to_screen_edge(
            panner.screen, screen_edge_lock, pos.azimuth.value, pos.elevation.value
        )
        positions = panner.nominal_positions
        within = _polar_within_bounds(
            panner,
            replace(pos.azimuth, value=az),
            replace(pos.elevation, value=el),
            pos.distance,
        )
        target = polar_to_cartesian(az, el, pos.distance.value)
    within &= panner.is_lfe if lfe else ~panner.is_lfe
    if np.any(within):
        closest = _unique_closest(positions, target, within)
        if closest is not None:
            return _one_hot(panner, closest)

    # 4. otherwise LFE goes to LFE1 (or nowhere) and the rest is panned
    out = np.zeros(len(panner.channel_names))
    if lfe:
        if "LFE1" in panner.channel_names:
            out[panner.channel_names.index("LFE1")] = 1.0
        return out
    from renderer.objects import point_gains  # (objects builds on this module's panners)

    if cartesian:
        panned = point_gains(panner.allocentric, target)
    else:
        panned = point_gains(panner.point_source, [az, el, pos.distance.value])
    out[~panner.is_lfe] = panned[0]
    return out
