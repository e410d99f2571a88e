"""Rendering item selection (ITU-R BS.2127 clause 5.2, "Determination of rendering items").

:func:`select_items` walks an :class:`~adm.model.AdmDocument` once and turns it into a flat tuple
of frozen render items: one per Objects or DirectSpeakers channel and one per HOA pack. Each item
carries the channel format(s) with their blocks, the 0-based input track(s) and an
:class:`ItemContext` with everything the renderer needs from above the channel (object timing,
gain and mute, reference screen, pack absoluteDistance, importance), so that nothing after this
module needs the ADM tree.

The steps follow BS.2127 clause 5.2:

1. validate the element structure (no loops, consistent pack/channel types, HOA parameters);
2. choose the audioProgramme (the requested one, else the only one, else the lowest ID);
3. walk programme -> audioContents -> audioObjects and every nested audioObject path, or, with no
   programme, every audioObject path from the objects no other object refers to; with no
   programme and no objects, use every track of the chna chunk;
4. drop paths through audioObjects that are not selected in their complementary group;
5. allocate the audioObject's audioTrackUIDs (and ATU_00000000 silent tracks) to the channels of
   its audioPackFormats (nested packs expanded) -- the allocation must be unique;
6. build the items by pack type; Matrix packs (direct, decode, and encode-then-decode use,
   or pre-applied) become items of their outputPackFormat's type whose input is a mix of
   tracks (``track_mix``), as BS.2127 clause 5.2 and its matrix track specs describe.

Times are exact :class:`fractions.Fraction` seconds; gains are linear factors.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from fractions import Fraction
from typing import cast

from adm.model import (
    DEFAULT_SCREEN,
    AdmDocument,
    AdmError,
    AudioChannelFormat,
    AudioContent,
    AudioObject,
    AudioPackFormat,
    AudioProgramme,
    AudioStreamFormat,
    AudioTrackFormat,
    AudioTrackUID,
    CartesianPosition,
    Frequency,
    HoaBlock,
    MatrixBlock,
    ObjectsBlock,
    Screen,
    TypeDefinition,
)

SILENT_TRACK_UID = "ATU_00000000"

__all__ = [
    "SILENT_TRACK_UID",
    "DirectSpeakersRenderItem",
    "HoaRenderItem",
    "ItemContext",
    "ObjectRenderItem",
    "RenderItem",
    "TrackMix",
    "select_items",
]


# --------------------------------------------------------------------------------------------
# Render items
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ItemContext:
    """Parameters from above the audioChannelFormat that rendering needs (BS.2127 "ExtraData"
    plus the audioObject-level parameters of BS.2076-2 clause 5.3).

    ``object_start``/``object_duration`` are seconds, from the innermost audioObject of the path
    (as BS.2127 clause 5.2 uses them), None when not given or with no audioObject (chna only).
    ``object_gain`` is the product of the linear gains of the audioObjects on the path;
    ``object_mute`` is true when any of them is muted. ``object_ids`` and ``pack_format_ids`` are
    the paths of IDs from the outermost to the innermost element (for messages and for the
    DirectSpeakers common-definition rules, which look at the innermost pack).
    ``importance`` is the lowest audioObject importance on the path and ``pack_importance`` the
    lowest audioPackFormat importance on the path (None = not given = most important). For an
    HOA item ``pack_importance`` is the highest of the per-channel values (None if any is None),
    so that "keep the item when any channel passes the threshold" is a single comparison.
    """

    object_start: Fraction | None
    object_duration: Fraction | None
    reference_screen: Screen
    channel_frequency: Frequency
    pack_absolute_distance: float | None
    object_gain: float = 1.0
    object_mute: bool = False
    object_ids: tuple[str, ...] = ()
    pack_format_ids: tuple[str, ...] = ()
    importance: int | None = None
    pack_importance: int | None = None


TrackMix = tuple[tuple[int, float, float], ...]
"""The input of a render item made by a Matrix pack: terms ``(track, gain, delay_ms)`` with the
0-based input track, the linear gain and the delay in milliseconds (BS.2076-2 matrix
coefficients multiplied along the encode/decode chain); the input signal is the sum of the
terms. Each (track, delay) appears once."""


@dataclass(frozen=True)
class ObjectRenderItem:
    """One Objects channel: ``track_index`` is the 0-based input channel (None = silent).

    ``track_mix``: for a channel produced by a Matrix pack, the mix of tracks that is its input
    (``track_index`` is then None); None otherwise. See :data:`TrackMix`.
    """

    track_index: int | None
    channel_format: AudioChannelFormat
    context: ItemContext
    track_mix: TrackMix | None = None


@dataclass(frozen=True)
class DirectSpeakersRenderItem:
    """One DirectSpeakers channel: ``track_index`` is the 0-based input channel (None = silent).

    ``pack_is_common_definition`` tells whether the innermost pack (``context.pack_format_ids[-1]``)
    is a BS.2094 common definition, which the DirectSpeakers renderer's ITU pack rules need.
    ``track_mix``: as for :class:`ObjectRenderItem`.
    """

    track_index: int | None
    channel_format: AudioChannelFormat
    context: ItemContext
    pack_is_common_definition: bool = False
    track_mix: TrackMix | None = None


@dataclass(frozen=True)
class HoaRenderItem:
    """One HOA pack: n channels with their 0-based input tracks (None = silent).

    ``orders``/``degrees`` have one entry per channel (ACN order n, degree m of each channel's
    single block). ``normalization`` ("SN3D" default), ``nfc_ref_dist`` (metres, None = no
    near-field compensation, a value of 0 also means none) and ``screen_ref`` (False default) are
    taken from the pack path and the block (they must agree; BS.2127 clause 5.2.5). ``rtime`` and
    ``duration`` (seconds or None) are those of the channels' single blocks.
    ``track_mixes``: for a pack produced by a Matrix pack, one :data:`TrackMix` or None per
    channel (None: ``track_indices[i]`` is the input); None otherwise.
    """

    track_indices: tuple[int | None, ...]
    channel_formats: tuple[AudioChannelFormat, ...]
    context: ItemContext
    orders: tuple[int, ...]
    degrees: tuple[int, ...]
    normalization: str = "SN3D"
    nfc_ref_dist: float | None = None
    screen_ref: bool = False
    rtime: Fraction | None = None
    duration: Fraction | None = None
    track_mixes: tuple[TrackMix | None, ...] | None = None


RenderItem = ObjectRenderItem | DirectSpeakersRenderItem | HoaRenderItem


# --------------------------------------------------------------------------------------------
# Structure validation (BS.2127 clause 5.2.1)
# --------------------------------------------------------------------------------------------


def _pack(doc: AdmDocument, pack_id: str, referrer: str) -> AudioPackFormat:
    return cast(AudioPackFormat, doc.lookup(pack_id, AudioPackFormat, referrer))


def _channel(doc: AdmDocument, channel_id: str, referrer: str) -> AudioChannelFormat:
    return cast(AudioChannelFormat, doc.lookup(channel_id, AudioChannelFormat, referrer))


def _object(doc: AdmDocument, object_id: str, referrer: str) -> AudioObject:
    return cast(AudioObject, doc.lookup(object_id, AudioObject, referrer))


def _validate_object_loops(doc: AdmDocument, src: str) -> None:
    done: set[str] = set()

    def visit(obj: AudioObject, path: tuple[str, ...]) -> None:
        if obj.id in path:
            loop = " -> ".join(path[path.index(obj.id):] + (obj.id,))
            raise AdmError(f"{src}: loop in audioObject references: {loop}")
        if obj.id in done:
            return
        for sub_id in obj.object_ids:
            visit(_object(doc, sub_id, f"audioObject {obj.id}"), path + (obj.id,))
        done.add(obj.id)

    for obj in doc.objects:
        visit(obj, ())


def _validate_packs(doc: AdmDocument, src: str) -> None:
    """Types of sub-packs and channels match their pack; pack references form a multitree
    (no loops, and no channel or pack reachable twice from one pack)."""
    for pack in doc.pack_formats:
        where = f"audioPackFormat {pack.id}"
        for channel_id in pack.channel_format_ids:
            channel = _channel(doc, channel_id, where)
            if channel.type != pack.type:
                raise AdmError(
                    f"{src}: {where} has type {pack.type.name} but contains audioChannelFormat "
                    f"{channel.id} of type {channel.type.name}"
                )
        for sub_id in pack.pack_format_ids:
            sub = _pack(doc, sub_id, where)
            if sub.type != pack.type:
                raise AdmError(
                    f"{src}: {where} has type {pack.type.name} but contains audioPackFormat "
                    f"{sub.id} of type {sub.type.name}"
                )
        if pack.type != TypeDefinition.Matrix and (
            pack.input_pack_format_id or pack.output_pack_format_id or pack.encode_pack_format_ids
        ):
            raise AdmError(
                f"{src}: {where} is not a Matrix pack but has inputPackFormat, outputPackFormat "
                "or encodePackFormat references"
            )

    for root in doc.pack_formats:
        _check_multitree(doc, src, root, root, (), {})


def _check_multitree(
    doc: AdmDocument,
    src: str,
    root: AudioPackFormat,
    pack: AudioPackFormat,
    path: tuple[str, ...],
    reached: dict[str, tuple[str, ...]],
) -> None:
    """From ``root``, no pack reference loops back and no element is reachable twice."""
    path = path + (pack.id,)
    children = [("audioPackFormat", i) for i in pack.pack_format_ids]
    children += [("audioChannelFormat", i) for i in pack.channel_format_ids]
    for kind, child_id in children:
        if child_id in path:
            loop = " -> ".join(path[path.index(child_id):] + (child_id,))
            raise AdmError(f"{src}: loop in audioPackFormat references: {loop}")
        if child_id in reached:
            raise AdmError(
                f"{src}: {kind} {child_id} is included more than once in audioPackFormat "
                f"{root.id} (via {' -> '.join(reached[child_id])} and {' -> '.join(path)})"
            )
        reached[child_id] = path
        if kind == "audioPackFormat":
            sub = _pack(doc, child_id, f"audioPackFormat {pack.id}")
            _check_multitree(doc, src, root, sub, path, reached)


def _validate_channels(doc: AdmDocument, src: str) -> None:
    for channel in doc.channel_formats:
        where = f"audioChannelFormat {channel.id}"
        has_frequency = (
            channel.frequency.low_pass is not None or channel.frequency.high_pass is not None
        )
        if channel.type == TypeDefinition.Objects:
            if has_frequency:
                raise AdmError(f"{src}: Objects {where} must not have a frequency element")
            for block in channel.blocks:
                if not isinstance(block, ObjectsBlock):
                    continue
                if block.cartesian != isinstance(block.position, CartesianPosition):
                    raise AdmError(
                        f"{src}: audioBlockFormat {block.id}: cartesian flag "
                        f"({int(block.cartesian)}) does not match its position coordinates"
                    )
        elif channel.type == TypeDefinition.HOA:
            if len(channel.blocks) != 1:
                raise AdmError(
                    f"{src}: HOA {where} must have exactly one audioBlockFormat, "
                    f"it has {len(channel.blocks)}"
                )
            if has_frequency:
                raise AdmError(f"{src}: HOA {where} must not have a frequency element")
            block = channel.blocks[0]
            if not isinstance(block, HoaBlock):
                raise AdmError(f"{src}: HOA {where} has a non-HOA audioBlockFormat {block.id}")
            if block.equation is not None:
                raise AdmError(
                    f"{src}: HOA audioBlockFormat {block.id} has an equation attribute, which "
                    "is not supported (use order and degree)"
                )
            if block.order is None or block.degree is None:
                missing = "order" if block.order is None else "degree"
                raise AdmError(f"{src}: HOA audioBlockFormat {block.id} has no {missing}")


class _MatrixType:
    DIRECT = "direct"
    ENCODE = "encode"
    DECODE = "decode"


def _matrix_type(pack: AudioPackFormat) -> str | None:
    """Direct packs refer to an input and an output pack, encode packs to an input pack only,
    decode packs to an output pack only (BS.2076-2 clause 5.3.4); None: neither."""
    if pack.input_pack_format_id is not None:
        if pack.output_pack_format_id is not None:
            return _MatrixType.DIRECT
        return _MatrixType.ENCODE
    if pack.output_pack_format_id is not None:
        return _MatrixType.DECODE
    return None


def _matrix_input_pack(doc: AdmDocument, pack: AudioPackFormat) -> AudioPackFormat:
    """The pack whose channels a Matrix pack's coefficients refer to: the encode pack of a
    decode matrix, else the inputPackFormat."""
    where = f"audioPackFormat {pack.id}"
    if _matrix_type(pack) == _MatrixType.DECODE:
        return _pack(doc, pack.encode_pack_format_ids[0], where)
    return _pack(doc, pack.input_pack_format_id, where)  # type: ignore[arg-type]


def _validate_matrix_channel(channel: AudioChannelFormat, src: str) -> None:
    where = f"Matrix audioChannelFormat {channel.id}"
    if len(channel.blocks) != 1:
        raise AdmError(f"{src}: {where} must have exactly one audioBlockFormat, it has "
                       f"{len(channel.blocks)}")
    block = channel.blocks[0]
    if not isinstance(block, MatrixBlock):
        raise AdmError(f"{src}: {where} has a non-Matrix audioBlockFormat {block.id}")
    if block.rtime is not None or block.duration is not None:
        raise AdmError(f"{src}: Matrix audioBlockFormat {block.id} has rtime or duration; "
                       "Matrix blocks apply for the whole audioObject")
    for coefficient in block.coefficients:
        for attr, name in (("gain_var", "gainVar"), ("phase_var", "phaseVar"),
                           ("delay_var", "delayVar"), ("phase", "phase")):
            if getattr(coefficient, attr) is not None:
                raise AdmError(
                    f"{src}: Matrix audioBlockFormat {block.id}: coefficient for "
                    f"{coefficient.input_channel_format_id} uses {name}, which is not supported"
                )
        if coefficient.delay is not None and coefficient.delay < 0:
            raise AdmError(
                f"{src}: Matrix audioBlockFormat {block.id}: coefficient for "
                f"{coefficient.input_channel_format_id} has a negative delay"
            )


def _validate_matrix_pack(doc: AdmDocument, pack: AudioPackFormat, src: str) -> None:
    where = f"Matrix audioPackFormat {pack.id}"
    kind = _matrix_type(pack)
    if kind is None:
        raise AdmError(f"{src}: {where} refers to no inputPackFormat or outputPackFormat")
    for ref, name in ((pack.input_pack_format_id, "inputPackFormat"),
                      (pack.output_pack_format_id, "outputPackFormat")):
        if ref is not None and _pack(doc, ref, where).type == TypeDefinition.Matrix:
            raise AdmError(f"{src}: {where}: its {name} {ref} must not be a Matrix pack")
    if pack.encode_pack_format_ids and kind != _MatrixType.DECODE:
        raise AdmError(f"{src}: {where} refers to encodePackFormats but is not a decode matrix")
    if kind == _MatrixType.DECODE:
        if len(pack.encode_pack_format_ids) != 1:
            raise AdmError(f"{src}: decode {where} must refer to exactly one encodePackFormat, "
                           f"it refers to {len(pack.encode_pack_format_ids)}")
        encode = _pack(doc, pack.encode_pack_format_ids[0], where)
        if encode.type != TypeDefinition.Matrix or _matrix_type(encode) != _MatrixType.ENCODE:
            raise AdmError(f"{src}: {where}: its encodePackFormat {encode.id} is not an encode "
                           "Matrix pack (a Matrix pack with an inputPackFormat only)")
    if pack.pack_format_ids:
        raise AdmError(f"{src}: {where} must not contain audioPackFormats")

    input_pack = _matrix_input_pack(doc, pack)
    input_ids = {c.id for _, c in _pack_channels(doc, input_pack)}
    channels = [_channel(doc, c, where) for c in pack.channel_format_ids]
    for channel in channels:
        block = channel.blocks[0]
        assert isinstance(block, MatrixBlock)
        for coefficient in block.coefficients:
            if coefficient.input_channel_format_id not in input_ids:
                raise AdmError(
                    f"{src}: {where}: audioChannelFormat {channel.id} has a coefficient for "
                    f"{coefficient.input_channel_format_id}, which is not in its input or "
                    f"encode audioPackFormat {input_pack.id}"
                )
    if kind == _MatrixType.ENCODE:
        return
    output_pack = _pack(doc, pack.output_pack_format_id, where)  # type: ignore[arg-type]
    output_ids = [c.id for _, c in _pack_channels(doc, output_pack)]
    used: set[str] = set()
    for channel in channels:
        block = channel.blocks[0]
        assert isinstance(block, MatrixBlock)
        out = block.output_channel_format_id
        if out is None:
            raise AdmError(f"{src}: {where}: audioBlockFormat {block.id} has no "
                           "outputChannelFormatIDRef (a direct or decode matrix needs one)")
        if out in used:
            raise AdmError(f"{src}: {where}: more than one of its channels outputs to "
                           f"audioChannelFormat {out}")
        if out not in output_ids:
            raise AdmError(f"{src}: {where}: audioBlockFormat {block.id} outputs to "
                           f"audioChannelFormat {out}, which is not in its outputPackFormat "
                           f"{output_pack.id}")
        used.add(out)
    missing = [c for c in output_ids if c not in used]
    if missing:
        raise AdmError(f"{src}: {where}: no channel outputs to audioChannelFormat "
                       f"{', '.join(missing)} of its outputPackFormat {output_pack.id}")


def _validate_matrix(doc: AdmDocument, src: str) -> None:
    """Matrix channels and packs (the checks BS.2127 clause 5.2.1 makes of them)."""
    for channel in doc.channel_formats:
        if channel.type == TypeDefinition.Matrix:
            _validate_matrix_channel(channel, src)
    for pack in doc.pack_formats:
        if pack.type == TypeDefinition.Matrix:
            _validate_matrix_pack(doc, pack, src)


# --------------------------------------------------------------------------------------------
# Pack paths and parameters along them
# --------------------------------------------------------------------------------------------


def _pack_paths(doc: AdmDocument, root: AudioPackFormat) -> Iterator[tuple[AudioPackFormat, ...]]:
    """Every path of packs from ``root`` (depth first, root first)."""
    yield (root,)
    for sub_id in root.pack_format_ids:
        for path in _pack_paths(doc, _pack(doc, sub_id, f"audioPackFormat {root.id}")):
            yield (root,) + path


def _pack_channels(
    doc: AdmDocument, root: AudioPackFormat
) -> list[tuple[tuple[AudioPackFormat, ...], AudioChannelFormat]]:
    """All channels reachable from ``root``, each with its pack path (root first)."""
    out = []
    for path in _pack_paths(doc, root):
        for channel_id in path[-1].channel_format_ids:
            out.append((path, _channel(doc, channel_id, f"audioPackFormat {path[-1].id}")))
    return out


def _path_value(src: str, elements: Sequence[object], attr: str, what: str, default=None):
    """The value of ``attr`` given anywhere on a path of elements; given values must agree."""
    given = [getattr(e, attr) for e in elements if getattr(e, attr) is not None]
    if not given:
        return default
    if any(value != given[0] for value in given[1:]):
        ids = " -> ".join(e.id for e in elements)  # type: ignore[attr-defined]
        raise AdmError(f"{src}: conflicting {what} values on the path {ids}")
    return given[0]


def _min_importance(values: Sequence[int | None]) -> int | None:
    """Lowest importance; None (not given) counts as the highest importance."""
    given = [v for v in values if v is not None]
    return min(given) if given else None


@dataclass(frozen=True)
class _HoaParams:
    order: int
    degree: int
    normalization: str
    nfc_ref_dist: float | None
    screen_ref: bool
    rtime: Fraction | None
    duration: Fraction | None


def _hoa_channel_params(
    src: str, path: tuple[AudioPackFormat, ...], channel: AudioChannelFormat
) -> _HoaParams:
    block = channel.blocks[0]
    assert isinstance(block, HoaBlock)
    chain = list(path) + [block]
    nfc = _path_value(src, chain, "nfc_ref_dist", "nfcRefDist")
    return _HoaParams(
        order=block.order,  # type: ignore[arg-type]
        degree=block.degree,  # type: ignore[arg-type]
        normalization=_path_value(src, chain, "normalization", "normalization", "SN3D"),
        nfc_ref_dist=None if nfc == 0.0 else nfc,
        screen_ref=_path_value(src, chain, "screen_ref", "screenRef", False),
        rtime=block.rtime,
        duration=block.duration,
    )


def _hoa_pack_params(doc: AdmDocument, src: str, root: AudioPackFormat) -> list[_HoaParams]:
    """Per-channel HOA parameters of a pack, checking the pack-wide ones agree and that no
    (order, degree) pair repeats (BS.2127 clause 5.2.5)."""
    channels = _pack_channels(doc, root)
    params = [_hoa_channel_params(src, path, channel) for path, channel in channels]
    for name, label in (
        ("rtime", "rtime"), ("duration", "duration"), ("normalization", "normalization"),
        ("nfc_ref_dist", "nfcRefDist"), ("screen_ref", "screenRef"),
    ):
        for (_, channel), p in zip(channels[1:], params[1:], strict=True):
            if getattr(p, name) != getattr(params[0], name):
                raise AdmError(
                    f"{src}: HOA audioPackFormat {root.id}: audioChannelFormats "
                    f"{channels[0][1].id} and {channel.id} have different {label} values; they "
                    "must be the same in a pack"
                )
    seen: set[tuple[int, int]] = set()
    for p in params:
        if (p.order, p.degree) in seen:
            raise AdmError(
                f"{src}: HOA audioPackFormat {root.id} has order {p.order} degree {p.degree} "
                "more than once"
            )
        seen.add((p.order, p.degree))
    return params


# --------------------------------------------------------------------------------------------
# Pack allocation (BS.2127 clause 5.2.3)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Slot:
    """A channel to fill in a candidate pack: its ID and the pack IDs from the root to it."""

    channel_id: str
    pack_ids: tuple[str, ...]


@dataclass(frozen=True)
class _Candidate:
    """A pack that tracks may be allocated to, with its channels (nested packs expanded)."""

    root_id: str
    slots: tuple[_Slot, ...]


@dataclass(frozen=True)
class _Track:
    """A real track to allocate: the channel and pack its audioTrackUID refers to."""

    uid: AudioTrackUID
    channel_id: str
    pack_id: str


_OPEN = object()  # marks a slot not yet filled; None in a slot means a silent track


def _fits(track: _Track | None, slot: _Slot) -> bool:
    return track is None or (track.channel_id == slot.channel_id and track.pack_id in slot.pack_ids)


def _place(track: _Track | None, fill: tuple) -> tuple | None:
    """``fill`` with ``track`` put in the first open slot it fits, or None."""
    pack, slots = fill
    for i, (slot, current) in enumerate(zip(pack.slots, slots, strict=True)):
        if current is _OPEN and _fits(track, slot):
            return pack, slots[:i] + (track,) + slots[i + 1:]
    return None


def _allocations(
    candidates: list[_Candidate],
    tracks: tuple[_Track | None, ...],
    pack_refs: tuple[str, ...] | None,
) -> Iterator[tuple]:
    """Every way to put ``tracks`` (real ones first, then None for each silent track) into
    candidate packs so that each used pack is filled exactly, each track is used once, and,
    when ``pack_refs`` is given, the used packs are exactly those references (BS.2127 5.2.3).

    Yields tuples of (candidate, slot contents). Equivalent placements of silent tracks are
    produced once only. Depth-first search with an explicit stack (no recursion limit).
    """
    stack: list[tuple[list[_Candidate], tuple, tuple[str, ...] | None, tuple]] = [
        (candidates, tracks, pack_refs, ())
    ]
    while stack:
        cands, tracks, refs, partial = stack.pop()
        if not tracks:
            if not refs and all(s is not _OPEN for _, slots in partial for s in slots):
                yield partial
            continue
        n_open = sum(1 for _, slots in partial for s in slots if s is _OPEN)
        if len(tracks) < n_open:
            continue
        cands = _still_possible(cands, tracks, refs, len(tracks) - n_open)
        track, rest = tracks[0], tracks[1:]
        children = []
        for new_partial, remaining in _extensions(track, cands, refs, partial):
            forced = _fill_forced(rest, new_partial)
            if forced is not None:
                children.append((cands, forced[0], remaining, forced[1]))
        stack.extend(reversed(children))


def _still_possible(
    cands: list[_Candidate],
    tracks: tuple[_Track | None, ...],
    refs: tuple[str, ...] | None,
    n_free: int,
) -> list[_Candidate]:
    """Candidates that could still be started: not more channels than free tracks, among the
    remaining pack references if any, and each channel fillable by some remaining track."""
    any_silent = any(t is None for t in tracks)
    keys = {(t.channel_id, t.pack_id) for t in tracks if t is not None}

    def fillable(slot: _Slot) -> bool:
        return any_silent or any((slot.channel_id, p) in keys for p in slot.pack_ids)

    return [
        c for c in cands
        if len(c.slots) <= n_free
        and (refs is None or c.root_id in refs)
        and all(fillable(slot) for slot in c.slots)
    ]


def _extensions(
    track: _Track | None,
    cands: list[_Candidate],
    refs: tuple[str, ...] | None,
    partial: tuple,
) -> Iterator[tuple[tuple, tuple[str, ...] | None]]:
    """Partial allocations with ``track`` placed in a started pack or in a new candidate pack,
    each with the pack references still to be used."""
    for i, fill in enumerate(partial):
        placed = _place(track, fill)
        if placed is not None:
            yield partial[:i] + (placed,) + partial[i + 1:], refs
            if track is None:
                return  # a silent track fills any open slot equally well
    for cand in cands:
        if refs is None:
            remaining = None
        else:
            j = refs.index(cand.root_id)
            remaining = refs[:j] + refs[j + 1:]
        placed = _place(track, (cand, (_OPEN,) * len(cand.slots)))
        if placed is not None:
            yield partial + (placed,), remaining


def _fill_forced(tracks: tuple[_Track | None, ...], partial: tuple) -> tuple[tuple, tuple] | None:
    """Fill each open slot that only one remaining track (or only silent tracks) can fill.

    Returns (remaining tracks, new partial), or None if some open slot cannot be filled.
    """
    left = list(tracks)
    new_partial = []
    for pack, slots in partial:
        filled = []
        for slot, current in zip(pack.slots, slots, strict=True):
            if current is _OPEN:
                options = [i for i, t in enumerate(left) if _fits(t, slot)]
                if not options:
                    return None
                if len(options) == 1 or left[options[0]] is None:
                    current = left.pop(options[0])
            filled.append(current)
        new_partial.append((pack, tuple(filled)))
    return tuple(left), tuple(new_partial)


# --------------------------------------------------------------------------------------------
# Selection
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Path:
    """A selected path: programme (or None), audioObjects outer -> inner (empty: chna only)."""

    programme: AudioProgramme | None
    objects: tuple[AudioObject, ...]


def _choose_programme(
    doc: AdmDocument, programme_id: str | None, src: str
) -> AudioProgramme | None:
    if programme_id is not None:
        element = doc.get(programme_id)
        if not isinstance(element, AudioProgramme):
            known = ", ".join(p.id for p in doc.programmes) or "none"
            problem = "is not an audioProgramme" if element is not None else "not found"
            raise AdmError(
                f"{src}: audioProgramme {programme_id} {problem} (programmes: {known})"
            )
        return element
    if len(doc.programmes) > 1:
        chosen = min(doc.programmes, key=lambda p: p.id)
        warnings.warn(
            f"{src}: {len(doc.programmes)} audioProgrammes; rendering {chosen.id}, the one with "
            "the lowest ID (choose another with its ID)",
            stacklevel=3,
        )
        return chosen
    return doc.programmes[0] if doc.programmes else None


def _object_paths(doc: AdmDocument, root: AudioObject) -> Iterator[tuple[AudioObject, ...]]:
    """The path to ``root`` and to every audioObject nested in it, depth first."""
    yield (root,)
    for sub_id in root.object_ids:
        for path in _object_paths(doc, _object(doc, sub_id, f"audioObject {root.id}")):
            yield (root,) + path


def _selected_paths(doc: AdmDocument, programme_id: str | None, src: str) -> list[_Path]:
    if not (doc.programmes or doc.objects):
        if programme_id is not None:
            raise AdmError(f"{src}: audioProgramme {programme_id} not found (no programmes)")
        return [_Path(None, ())]
    programme = _choose_programme(doc, programme_id, src)
    if programme is not None:
        roots = []
        for content_id in programme.content_ids:
            content = doc.lookup(content_id, AudioContent, f"audioProgramme {programme.id}")
            for object_id in content.object_ids:  # type: ignore[attr-defined]
                roots.append(_object(doc, object_id, f"audioContent {content_id}"))
    else:
        nested = {sub for obj in doc.objects for sub in obj.object_ids}
        roots = [obj for obj in doc.objects if obj.id not in nested]
    return [_Path(programme, path) for root in roots for path in _object_paths(doc, root)]


def _unselected_complementary(
    doc: AdmDocument, chosen_ids: Sequence[str], src: str
) -> set[str]:
    """IDs of the audioObjects of complementary groups that are not chosen (BS.2127 5.2.2).

    A group is its leader (the audioObject with audioComplementaryObjectIDRefs) and the objects
    it refers to; with none of a group chosen, the leader is.
    """
    for object_id in chosen_ids:
        _object(doc, object_id, "the complementary object selection")
    groups = [
        (leader, (leader.id,) + leader.complementary_object_ids)
        for leader in doc.objects if leader.complementary_object_ids
    ]
    in_groups = {object_id for _, members in groups for object_id in members}
    for object_id in chosen_ids:
        if object_id not in in_groups:
            raise AdmError(
                f"{src}: selected audioObject {object_id} is not in any complementary "
                "audioObject group"
            )
    dropped: set[str] = set()
    for leader, members in groups:
        chosen = [m for m in members if m in chosen_ids] or [leader.id]
        if len(chosen) > 1:
            raise AdmError(
                f"{src}: more than one audioObject selected from the complementary group of "
                f"{leader.id}: {', '.join(chosen)}"
            )
        dropped.update(m for m in members if m not in chosen)
    return dropped


def _track_for_uid(doc: AdmDocument, uid: AudioTrackUID, src: str) -> _Track:
    """The channel and pack a selected audioTrackUID refers to (via its track and stream
    format, or directly to a channel format as BS.2076-2 allows)."""
    where = f"audioTrackUID {uid.id}"
    if uid.track_index is None:
        raise AdmError(f"{src}: {where} has no track index (it is not in the chna chunk)")
    if uid.track_index < 1:
        raise AdmError(f"{src}: {where} has track index {uid.track_index}; they start at 1")
    if uid.channel_format_id is not None:
        channel_id = uid.channel_format_id
        _channel(doc, channel_id, where)
    elif uid.track_format_id is not None:
        track_format = doc.lookup(uid.track_format_id, AudioTrackFormat, where)
        stream_id = track_format.stream_format_id  # type: ignore[attr-defined]
        if stream_id is None:
            raise AdmError(
                f"{src}: audioTrackFormat {track_format.id} (of {where}) has no "  # type: ignore[attr-defined]
                "audioStreamFormat reference"
            )
        stream = doc.lookup(stream_id, AudioStreamFormat, f"audioTrackFormat {uid.track_format_id}")
        channel_id = stream.channel_format_id  # type: ignore[attr-defined]
        if channel_id is None:
            raise AdmError(
                f"{src}: audioStreamFormat {stream_id} (of {where}) has no audioChannelFormat "
                "reference; coded formats are not supported"
            )
        _channel(doc, channel_id, f"audioStreamFormat {stream_id}")
    else:
        raise AdmError(f"{src}: {where} refers to no audioTrackFormat or audioChannelFormat")
    if uid.pack_format_id is None:
        raise AdmError(
            f"{src}: {where} has no audioPackFormat reference; coded formats are not supported"
        )
    _pack(doc, uid.pack_format_id, where)
    return _Track(uid, channel_id, uid.pack_format_id)


def _candidates(doc: AdmDocument) -> list[_Candidate]:
    """Every pack of the document as an allocation candidate.

    A direct or decode Matrix pack gives two candidates: tracks of the channels of its input
    (direct) or encode (decode) pack, referring to the Matrix pack itself; and tracks of its
    own channels (matrix already applied). A decode pack gives a third: tracks of the channels
    of its encode pack's input pack, referring to the encode pack (encode then decode). An
    audioObject refers to the direct or decode pack in each case. Encode packs are not
    candidates of their own.
    """
    out = []
    for pack in doc.pack_formats:
        own = tuple(
            _Slot(channel.id, tuple(p.id for p in path))
            for path, channel in _pack_channels(doc, pack)
        )
        if pack.type != TypeDefinition.Matrix:
            out.append(_Candidate(pack.id, own))
            continue
        kind = _matrix_type(pack)
        if kind == _MatrixType.ENCODE:
            continue
        input_pack = _matrix_input_pack(doc, pack)
        out.append(_Candidate(pack.id, tuple(
            _Slot(channel.id, (pack.id,)) for _, channel in _pack_channels(doc, input_pack)
        )))
        out.append(_Candidate(pack.id, own))
        if kind == _MatrixType.DECODE:
            source = _pack(doc, input_pack.input_pack_format_id, "")  # type: ignore[arg-type]
            out.append(_Candidate(pack.id, tuple(
                _Slot(channel.id, (input_pack.id,)) for _, channel in _pack_channels(doc, source)
            )))
    return out


def _reference_problems(
    doc: AdmDocument,
    pack_refs: tuple[str, ...] | None,
    tracks: list[_Track],
    n_silent: int,
) -> list[str]:
    """Likely causes of a failed allocation, for the error message."""
    problems = []
    if pack_refs is not None:
        if (tracks or n_silent) and not pack_refs:
            problems.append("it refers to audioTrackUIDs but to no audioPackFormat")
        if pack_refs and not (tracks or n_silent):
            problems.append("it refers to audioPackFormats but to no audioTrackUID")
        reachable = {
            p.id
            for ref in pack_refs
            for path in _pack_paths(doc, _pack(doc, ref, ""))
            for p in path
        }
        for t in tracks:
            if t.pack_id not in reachable:
                problems.append(
                    f"track UID {t.uid.id} refers to pack {t.pack_id}, which the audioObject "
                    "does not refer to"
                )
        n_channels = sum(len(_pack_channels(doc, _pack(doc, ref, ""))) for ref in pack_refs)
        n_tracks = len(tracks) + n_silent
        if pack_refs and n_channels != n_tracks:
            problems.append(
                f"its packs {', '.join(pack_refs)} have {n_channels} channels but it refers to "
                f"{n_tracks} track UIDs ({n_silent} silent)"
            )
        if len(pack_refs) > 1:
            problems.append("it refers to more than one audioPackFormat")
    for t in tracks:
        in_pack = {c.id for _, c in _pack_channels(doc, _pack(doc, t.pack_id, ""))}
        if t.channel_id not in in_pack:
            problems.append(
                f"track UID {t.uid.id} refers to channel {t.channel_id} which is not in pack "
                f"{t.pack_id}"
            )
    return problems


def _allocate(
    doc: AdmDocument, candidates: list[_Candidate], path: _Path, src: str
) -> tuple:
    """The unique allocation of the path's tracks to packs (tuple of (candidate, slot
    contents)); AdmError when there is none or more than one."""
    if path.objects:
        obj = path.objects[-1]
        context = f"audioObject {obj.id}"
        pack_refs: tuple[str, ...] | None = obj.pack_format_ids
        real_ids = [t for t in obj.track_uid_ids if t != SILENT_TRACK_UID]
        n_silent = len(obj.track_uid_ids) - len(real_ids)
        uids = [doc.lookup(t, AudioTrackUID, context) for t in real_ids]
    else:
        context = "the chna chunk"
        pack_refs = None
        n_silent = 0
        uids = list(doc.track_uids)
    tracks = [_track_for_uid(doc, uid, src) for uid in uids]  # type: ignore[arg-type]
    for pack_id in pack_refs or ():
        _pack(doc, pack_id, context)

    found = _allocations(candidates, tuple(tracks) + (None,) * n_silent, pack_refs)
    first = next(found, None)
    second = next(found, None)
    if first is not None and second is None:
        return first
    kind = "conflicting" if first is None else "ambiguous"
    problems = _reference_problems(doc, pack_refs, tracks, n_silent)
    detail = "; possible reasons: " + "; ".join(problems) if problems else ""
    raise AdmError(
        f"{src}: {context}: {kind} references, its audioTrackUIDs cannot be allocated to "
        f"the channels of its audioPackFormats{detail}"
    )


def _base_context(path: _Path) -> ItemContext:
    objects = path.objects
    gain = 1.0
    for obj in objects:
        gain *= obj.gain
    screen = path.programme.reference_screen if path.programme is not None else None
    return ItemContext(
        object_start=objects[-1].start if objects else None,
        object_duration=objects[-1].duration if objects else None,
        reference_screen=screen if screen is not None else DEFAULT_SCREEN,
        channel_frequency=Frequency(),
        pack_absolute_distance=None,
        object_gain=gain,
        object_mute=any(obj.mute for obj in objects),
        object_ids=tuple(obj.id for obj in objects),
        importance=_min_importance([obj.importance for obj in objects]) if objects else None,
    )


def _matrix_terms(
    doc: AdmDocument, channel_id: str, allocated: dict[str, int | None], src: str
) -> list[tuple[int, float, float]]:
    """The signal of a channel as (track, gain, delay_ms) terms: an allocated channel is its
    track (nothing if silent); a Matrix channel is the sum of its coefficients applied to the
    signals of their input channels, followed recursively (encode then decode)."""
    if channel_id in allocated:
        track = allocated[channel_id]
        return [] if track is None else [(track, 1.0, 0.0)]
    channel = _channel(doc, channel_id, "a Matrix coefficient")
    block = channel.blocks[0] if channel.blocks else None
    if channel.type != TypeDefinition.Matrix or not isinstance(block, MatrixBlock):
        raise AdmError(f"{src}: audioChannelFormat {channel_id} is used by a Matrix pack but "
                       "has no track and is not a Matrix channel")
    terms = []
    for coefficient in block.coefficients:
        gain = 1.0 if coefficient.gain is None else coefficient.gain
        delay = 0.0 if coefficient.delay is None else coefficient.delay
        for track, g, d in _matrix_terms(doc, coefficient.input_channel_format_id, allocated,
                                         src):
            terms.append((track, gain * g, delay + d))
    return terms


def _matrix_outputs(
    doc: AdmDocument, matrix: AudioPackFormat, allocated: dict[str, int | None], src: str
) -> tuple[AudioPackFormat, list[int | None], list[TrackMix | None]]:
    """A direct or decode Matrix pack allocated to tracks -> its outputPackFormat with, per
    output channel (in that pack's order), the input track or the mix of tracks feeding it.

    Terms on the same track with the same delay are summed, terms of gain 0 dropped; a channel
    with no terms is silent, a channel with a single unit-gain undelayed term is that track.
    """
    output_id = cast(str, matrix.output_pack_format_id)
    output = _pack(doc, output_id, f"audioPackFormat {matrix.id}")
    feeds: dict[str, tuple[int | None, TrackMix | None]] = {}
    for channel_id in matrix.channel_format_ids:
        block = _channel(doc, channel_id, f"audioPackFormat {matrix.id}").blocks[0]
        assert isinstance(block, MatrixBlock) and block.output_channel_format_id is not None
        summed: dict[tuple[int, float], float] = {}
        for track, gain, delay in _matrix_terms(doc, channel_id, allocated, src):
            summed[(track, delay)] = summed.get((track, delay), 0.0) + gain
        mix = tuple((t, g, d) for (t, d), g in summed.items() if g != 0.0)
        if not mix:
            feed: tuple[int | None, TrackMix | None] = (None, None)
        elif len(mix) == 1 and mix[0][1] == 1.0 and mix[0][2] == 0.0:
            feed = (mix[0][0], None)
        else:
            feed = (None, mix)
        feeds[block.output_channel_format_id] = feed
    channels = _pack_channels(doc, output)
    return (output, [feeds[c.id][0] for _, c in channels], [feeds[c.id][1] for _, c in channels])


def _items_for_pack(
    doc: AdmDocument, path: _Path, fill: tuple, src: str
) -> list[RenderItem]:
    cand, contents = fill
    root = _pack(doc, cand.root_id, "")
    where = f"audioObject {path.objects[-1].id}" if path.objects else "chna"
    base = _base_context(path)
    tracks: list[int | None] = [None if t is None else t.uid.track_index - 1 for t in contents]
    mixes: list[TrackMix | None] = [None] * len(tracks)
    if root.type == TypeDefinition.Matrix:
        allocated = {slot.channel_id: track
                     for slot, track in zip(cand.slots, tracks, strict=True)}
        root, tracks, mixes = _matrix_outputs(doc, root, allocated, src)
    channels = _pack_channels(doc, root)

    if root.type in (TypeDefinition.Objects, TypeDefinition.DirectSpeakers):
        items: list[RenderItem] = []
        for (pack_path, channel), track_index, mix in zip(channels, tracks, mixes, strict=True):
            context = replace(
                base,
                channel_frequency=channel.frequency,
                pack_absolute_distance=_path_value(
                    src, pack_path, "absolute_distance", "absoluteDistance"
                ),
                pack_format_ids=tuple(p.id for p in pack_path),
                pack_importance=_min_importance([p.importance for p in pack_path]),
            )
            if root.type == TypeDefinition.Objects:
                items.append(ObjectRenderItem(track_index, channel, context, track_mix=mix))
            else:
                items.append(DirectSpeakersRenderItem(
                    track_index, channel, context,
                    pack_is_common_definition=pack_path[-1].is_common_definition,
                    track_mix=mix,
                ))
        return items

    if root.type == TypeDefinition.HOA:
        params = _hoa_pack_params(doc, src, root)
        distances = [
            _path_value(src, pack_path, "absolute_distance", "absoluteDistance")
            for pack_path, _ in channels
        ]
        if any(d != distances[0] for d in distances[1:]):
            raise AdmError(
                f"{src}: HOA audioPackFormat {root.id}: its channels have different "
                "absoluteDistance values; they must be the same in a pack"
            )
        channel_importances = [
            _min_importance([p.importance for p in pack_path]) for pack_path, _ in channels
        ]
        pack_importance = (
            None if any(i is None for i in channel_importances) else max(channel_importances)
        )
        context = replace(
            base,
            pack_absolute_distance=distances[0],
            pack_format_ids=(root.id,),
            pack_importance=pack_importance,
        )
        first = params[0]
        return [HoaRenderItem(
            track_indices=tuple(tracks),
            channel_formats=tuple(channel for _, channel in channels),
            context=context,
            orders=tuple(p.order for p in params),
            degrees=tuple(p.degree for p in params),
            normalization=first.normalization,
            nfc_ref_dist=first.nfc_ref_dist,
            screen_ref=first.screen_ref,
            rtime=first.rtime,
            duration=first.duration,
            track_mixes=tuple(mixes) if any(m is not None for m in mixes) else None,
        )]

    if root.type == TypeDefinition.Binaural:
        raise AdmError(
            f"{src}: Binaural content is not rendered to loudspeakers ({where}, pack {root.id})"
        )
    raise AdmError(f"{src}: {where}: cannot render audioPackFormat {root.id} of type "
                   f"{root.type.name}")


def select_items(
    doc: AdmDocument,
    programme_id: str | None = None,
    complementary_object_ids: Sequence[str] = (),
    source: str = "",
) -> tuple[RenderItem, ...]:
    """Determine the rendering items of a document (ITU-R BS.2127 clause 5.2).

    Args:
        doc: the ADM, merged with the BS.2094 common definitions it uses, with
            ``AudioTrackUID.track_index`` (1-based) set from the chna chunk.
        programme_id: audioProgramme to render; default: the only one, or with several the one
            with the lowest ID (a warning says so).
        complementary_object_ids: audioObjects to render from their complementary groups; a
            group with none of them listed renders its leader (the object holding the
            audioComplementaryObjectIDRefs). The others of each group are not rendered.
        source: name of the file for messages (default ``doc.source``).

    Returns:
        The items in document order: per programme content and audioObject path (depth
        first), per allocated pack, per channel. Track indices in the items are 0-based input
        channels, None for ATU_00000000 silent tracks and for channels fed by a mix of
        tracks (``track_mix``/``track_mixes``, made by Matrix packs: a Matrix pack gives the
        items of its outputPackFormat, in that pack's channel order).

    Raises:
        AdmError: a structure, reference or allocation error, naming the elements involved;
            also for Matrix coefficients with gainVar, phaseVar, delayVar or phase (not
            supported, as in the reference renderer) and Binaural packs (not rendered to
            loudspeakers).
    """
    src = source or doc.source
    _validate_object_loops(doc, src)
    _validate_packs(doc, src)
    _validate_channels(doc, src)
    _validate_matrix(doc, src)
    for pack in doc.pack_formats:
        if pack.type == TypeDefinition.HOA:
            _hoa_pack_params(doc, src, pack)

    dropped = _unselected_complementary(doc, complementary_object_ids, src)
    paths = _selected_paths(doc, programme_id, src)
    candidates = _candidates(doc)

    items: list[RenderItem] = []
    for path in paths:
        if any(obj.id in dropped for obj in path.objects):
            continue
        for fill in _allocate(doc, candidates, path, src):
            items.extend(_items_for_pack(doc, path, fill, src))
    return tuple(items)
