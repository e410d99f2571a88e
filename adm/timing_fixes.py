"""Checks and fix-ups for audioBlockFormat timing in exported ADM files.

Files written by production tools (Dolby Atmos renderers and others) often have
audioBlockFormats whose ``rtime + duration`` does not reach the next block's ``rtime``
(or runs past it), an ``interpolationLength`` longer than its block, or blocks that end
after the audioObject that plays them. BS.2076-2 (clause 5.4.3) wants consecutive blocks of
an audioChannelFormat to be contiguous and within their audioObject; BS.2127 (clause 7.3.2
and the block timing of the renderer) assumes it. :func:`check_block_timing` reports these
problems and, on request, repairs them in the same way and order as the reference renderer's
``--enable-block-duration-fix`` option:

1. for each pair of consecutive timed blocks of a channel, the first block's duration is
   set so that it ends where the next block starts (an interpolationLength that fitted the
   old duration but not the shortened one is shortened with it);
2. an interpolationLength longer than its (timed) block is cut to the block's duration;
3. for each audioObject with a duration, every block of the channels it uses that ends after
   the object is shortened to end with it (an interpolationLength then longer than the block
   is cut too); for untimed blocks an interpolationLength longer than the object is cut to
   the object's duration.

All work is on exact times: the document's times are scaled to integers on their common
denominator (no Fraction arithmetic per block), so a clean document of 100k blocks is
checked in well under a second, and every block of it fixed in a fraction of a second more.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Collection
from fractions import Fraction

from adm.columns import NO_LENGTH, ObjectsBlockColumns
from adm.model import (
    AdmDocument,
    AdmError,
    AudioChannelFormat,
    AudioObject,
    AudioPackFormat,
    BlockFormat,
    JumpPosition,
    ObjectsBlock,
    TypeDefinition,
)

__all__ = ["check_block_timing", "object_channel_formats", "format_seconds"]


def format_seconds(t: Fraction) -> str:
    """Exact text for a time in seconds: a decimal when the value has one ("0.02 s"),
    else a fraction ("1/3 s")."""
    t = Fraction(t)
    return _seconds_formatter(t.denominator)(t.numerator)


def _seconds_formatter(scale: int) -> Callable[[int], str]:
    """A function formatting ``ticks / scale`` seconds exactly (see :func:`format_seconds`);
    fast for the common case of a scale with only the prime factors 2 and 5."""
    den, twos, fives = scale, 0, 0
    while den % 2 == 0:
        den //= 2
        twos += 1
    while den % 5 == 0:
        den //= 5
        fives += 1
    if den != 1:
        def as_fraction(ticks: int) -> str:
            g = math.gcd(ticks, scale)
            return f"{ticks // g}/{scale // g} s" if scale != g else f"{ticks // g} s"
        return as_fraction

    digits = max(twos, fives)
    unit = 10**digits
    factor = unit // scale

    def as_decimal(ticks: int) -> str:
        sign = "-" if ticks < 0 else ""
        whole, frac = divmod(abs(ticks) * factor, unit)
        if frac == 0:
            return f"{sign}{whole} s"
        return f"{sign}{whole}.{frac:0{digits}d}".rstrip("0") + " s"

    return as_decimal


def object_channel_formats(doc: AdmDocument, obj: AudioObject) -> tuple[AudioChannelFormat, ...]:
    """The audioChannelFormats an audioObject plays: the channels of the audioPackFormats it
    refers to, including those of nested packs, each once, in reference order (BS.2076-2
    clause 5.1). For a Matrix pack the channels of its outputPackFormat are the ones rendered
    (BS.2127 clause 5.2), as in the reference renderer's item selection. Nested audioObjects
    are not followed: they have their own timing. Missing references raise :class:`AdmError`.
    """
    seen: set[str] = set()
    out: list[AudioChannelFormat] = []

    def visit_pack(pack_id: str, referrer: str, path: tuple[str, ...]) -> None:
        if pack_id in path:
            raise AdmError(f"{doc.source}: loop in audioPackFormat references at {pack_id} "
                           f"(from {referrer})")
        pack = doc.lookup(pack_id, AudioPackFormat, referrer)
        assert isinstance(pack, AudioPackFormat)
        where = f"audioPackFormat {pack.id}"
        if pack.type == TypeDefinition.Matrix and not path:
            if pack.output_pack_format_id is not None:
                visit_pack(pack.output_pack_format_id, where, path + (pack.id,))
            return
        for channel_id in pack.channel_format_ids:
            if channel_id not in seen:
                seen.add(channel_id)
                channel = doc.lookup(channel_id, AudioChannelFormat, where)
                assert isinstance(channel, AudioChannelFormat)
                out.append(channel)
        for sub_id in pack.pack_format_ids:
            visit_pack(sub_id, where, path + (pack.id,))

    for pack_id in obj.pack_format_ids:
        visit_pack(pack_id, f"audioObject {obj.id}", ())
    return tuple(out)


def _has_interpolation_length(block: BlockFormat) -> bool:
    return (
        isinstance(block, ObjectsBlock)
        and block.jump_position.flag
        and block.jump_position.interpolation_length is not None
    )


def _evolve(block: BlockFormat, changes: dict[str, object]) -> BlockFormat:
    """``dataclasses.replace`` for the block dataclasses (frozen, no ``__post_init__``),
    without the per-call field introspection: thousands of blocks may need a fix."""
    cls = type(block)
    new = object.__new__(cls)
    if "__slots__" in cls.__dict__:  # slotted dataclasses: the slots' own setters
        for name in cls.__slots__:
            cls.__dict__[name].__set__(new, changes.get(name, getattr(block, name)))
        return new
    new.__dict__.update(block.__dict__)
    new.__dict__.update(changes)
    return new


class _Channel:
    """Working state of one audioChannelFormat: its times as integer ticks (seconds times
    the document's common denominator) and the changes made."""

    __slots__ = ("index", "channel", "raw", "rtime", "duration", "interp", "new_duration",
                 "new_interp")

    def __init__(self, index: int, channel: AudioChannelFormat) -> None:
        self.index = index
        self.channel = channel
        blocks = channel.blocks
        self.raw = (
            [b.rtime for b in blocks],
            [b.duration for b in blocks],
            [b.jump_position.interpolation_length if _has_interpolation_length(b) else None
             for b in blocks],
        )
        self.rtime: list[int | None] = []
        self.duration: list[int | None] = []
        self.interp: list[int | None] = []
        self.new_duration: dict[int, int] = {}
        self.new_interp: dict[int, int] = {}

    def denominators(self) -> set[int]:
        return {t.denominator for times in self.raw for t in times if t is not None}

    def to_ticks(self, factors: dict[int, int]) -> None:
        self.rtime, self.duration, self.interp = (
            [None if t is None else t.numerator * factors[t.denominator] for t in times]
            for times in self.raw
        )

    def set_duration(self, i: int, value: int) -> None:
        self.duration[i] = value
        self.new_duration[i] = value

    def set_interp(self, i: int, value: int) -> None:
        self.interp[i] = value
        self.new_interp[i] = value

    def rebuilt(self, seconds: Callable[[int], Fraction]) -> AudioChannelFormat:
        if not self.new_duration and not self.new_interp:
            return self.channel
        blocks = list(self.channel.blocks)
        for i in sorted(self.new_duration.keys() | self.new_interp.keys()):
            block = blocks[i]
            changes: dict[str, object] = {}
            if i in self.new_duration:
                changes["duration"] = seconds(self.new_duration[i])
            if i in self.new_interp:
                assert isinstance(block, ObjectsBlock)
                changes["jump_position"] = JumpPosition(
                    block.jump_position.flag, seconds(self.new_interp[i]))
            blocks[i] = _evolve(block, changes)
        return dataclasses.replace(self.channel, blocks=tuple(blocks))


def check_block_timing(doc: AdmDocument, fix: bool = False,
                       channel_ids: Collection[str] | None = None,
                       ) -> tuple[AdmDocument, tuple[str, ...]]:
    """Check (and with ``fix``, repair) the timing of the audioBlockFormats of ``doc``.

    The checks, in this order (the reference renderer's ``--enable-block-duration-fix``):

    1. consecutive blocks of a channel, both with rtime and duration: the first must end at
       the second's rtime (BS.2076-2 clause 5.4.3). Fix: its duration becomes
       ``next.rtime - rtime`` (extended over a gap, contracted over an overlap); if its
       interpolationLength fitted the old duration but not the new one, it becomes the new
       duration too (mentioned in the same message).
    2. an Objects block with rtime and duration whose interpolationLength (jumpPosition
       flag set) is longer than its duration. Fix: interpolationLength = duration.
    3. for each audioObject with a duration, in document order, the blocks of the channels
       it plays (:func:`object_channel_formats`): a timed block ending after the object's
       duration (block times are relative to the object start) has its duration shortened
       by the excess (and its interpolationLength cut to the new duration if longer, with a
       message of its own); an untimed block whose interpolationLength is longer than the
       object's duration gets the object's duration as interpolationLength.

    Common-definition channels (BS.2094, ``is_common_definition``) carry no timing and are
    left out. Blocks with only one of rtime/duration are skipped by checks 1 and 2 and are
    an :class:`AdmError` in check 3 (as in the reference, which rejects them).

    ``channel_ids``: check only these audioChannelFormats (default: all of them).

    Returns ``(document, messages)``: the document (``doc`` itself when nothing changed or
    ``fix`` is false) and one human-readable warning per problem, naming the block (and the
    object) and, when fixed, the old and new values in exact seconds.

    Raises :class:`AdmError` when a block starts at or after the end of its audioObject and
    ``fix`` is set (advancing its end would put it before its start), or, with ``fix``, when
    a block's next block does not start after it (the fixed duration would not be positive;
    the reference renderer would write a non-positive duration here).
    """
    src = doc.source
    checked = [(i, ch) for i, ch in enumerate(doc.channel_formats)
               if not ch.is_common_definition and (channel_ids is None or ch.id in channel_ids)]
    if checked and _columns_in_order(doc, [ch for _, ch in checked]):
        return doc, ()
    states = [_Channel(i, ch) for i, ch in checked]
    denominators = {1}
    for state in states:
        denominators |= state.denominators()
    for obj in doc.objects:
        if obj.duration is not None:
            denominators.add(Fraction(obj.duration).denominator)
    scale = math.lcm(*denominators)
    factors = {den: scale // den for den in denominators}
    for state in states:
        state.to_ticks(factors)
    sec = _seconds_formatter(scale)
    cache: dict[int, Fraction] = {}

    def seconds(ticks: int) -> Fraction:
        value = cache.get(ticks)
        if value is None:
            value = cache[ticks] = Fraction(ticks, scale)
        return value

    by_id = {state.channel.id: state for state in states}
    messages: list[str] = []

    # 1. durations against the next block's rtime
    for state in states:
        rtime, duration, interp = state.rtime, state.duration, state.interp
        blocks = state.channel.blocks
        for i in range(len(rtime) - 1):
            ra, da, rb = rtime[i], duration[i], rtime[i + 1]
            if ra is None or da is None or rb is None or duration[i + 1] is None:
                continue
            new = rb - ra
            if new == da:
                continue
            block_id, next_id = blocks[i].id, blocks[i + 1].id
            kind = f"gap of {sec(new - da)}" if new > da else f"overlap of {sec(da - new)}"
            if not fix:
                messages.append(
                    f"audioBlockFormat {block_id}: rtime {sec(ra)} + duration {sec(da)} ends at "
                    f"{sec(ra + da)}, but the next block {next_id} starts at {sec(rb)} ({kind})"
                )
                continue
            if new <= 0:
                raise AdmError(
                    f"{src}: audioBlockFormat {next_id} (rtime {sec(rb)}) does not start after "
                    f"the previous block {block_id} (rtime {sec(ra)}); cannot fix the duration "
                    f"of {block_id}"
                )
            verb = "extended" if new > da else "contracted"
            text = (
                f"audioBlockFormat {block_id}: {verb} duration to reach the rtime of the next "
                f"block {next_id} ({kind}); was {sec(da)}, now {sec(new)}"
            )
            state.set_duration(i, new)
            il = interp[i]
            if il is not None and da >= il > new:
                state.set_interp(i, new)
                text += f"; interpolationLength shortened with it: was {sec(il)}, now {sec(new)}"
            messages.append(text)

    # 2. interpolationLength against the block's duration
    for state in states:
        rtime, duration, interp = state.rtime, state.duration, state.interp
        blocks = state.channel.blocks
        for i, il in enumerate(interp):
            if il is None or rtime[i] is None:
                continue
            d = duration[i]
            if d is None or il <= d:
                continue
            if fix:
                state.set_interp(i, d)
                messages.append(
                    f"audioBlockFormat {blocks[i].id}: contracted interpolationLength to the "
                    f"block's duration; was {sec(il)}, now {sec(d)}"
                )
            else:
                messages.append(
                    f"audioBlockFormat {blocks[i].id}: interpolationLength {sec(il)} is longer "
                    f"than the block's duration {sec(d)}"
                )

    # 3. blocks against the end of the audioObjects that play them
    for obj in doc.objects:
        if obj.duration is None:
            continue
        duration = Fraction(obj.duration)
        end = duration.numerator * factors[duration.denominator]
        for channel in object_channel_formats(doc, obj):
            state = by_id.get(channel.id)
            if state is None:
                continue  # common definition: no timing
            _clamp_to_object(state, obj, end, fix, messages, sec, src)

    if not fix or not any(s.new_duration or s.new_interp for s in states):
        return doc, tuple(messages)
    channels = list(doc.channel_formats)
    for state in states:
        channels[state.index] = state.rebuilt(seconds)
    return dataclasses.replace(doc, channel_formats=tuple(channels)), tuple(messages)


def _columns_in_order(doc: AdmDocument, channels: list[AudioChannelFormat]) -> bool:
    """True if ``channels`` all hold their blocks as columns (:mod:`adm.columns`) and pass
    the three checks of :func:`check_block_timing`: each block ends where the next starts,
    no interpolationLength is longer than its block, and no block ends after an audioObject
    with a duration that plays it. Computed on the columns' integer ticks."""
    ends: dict[str, Fraction] = {}
    for channel in channels:
        blocks = channel.blocks
        if not isinstance(blocks, ObjectsBlockColumns):
            return False
        if not len(blocks):
            continue
        end = blocks.rtime + blocks.duration
        if (blocks.rtime[1:] != end[:-1]).any():
            return False
        given = blocks.jump & (blocks.interpolation_length != NO_LENGTH)
        if (blocks.interpolation_length[given] > blocks.duration[given]).any():
            return False
        ends[channel.id] = blocks.seconds(end.max())
    for obj in doc.objects:
        if obj.duration is not None:
            for channel in object_channel_formats(doc, obj):
                if channel.id in ends and ends[channel.id] > obj.duration:
                    return False
    return True


def _clamp_to_object(
    state: _Channel,
    obj: AudioObject,
    end: int,
    fix: bool,
    messages: list[str],
    sec: Callable[[int], str],
    src: str,
) -> None:
    """Check 3 of :func:`check_block_timing` for one channel of one object (ticks)."""
    rtime, duration, interp = state.rtime, state.duration, state.interp
    blocks = state.channel.blocks
    for i, block in enumerate(blocks):
        r, d = rtime[i], duration[i]
        if r is None and d is None:
            il = interp[i]
            if il is None or il <= end:
                continue
            if fix:
                state.set_interp(i, end)
                messages.append(
                    f"audioBlockFormat {block.id}: reduced interpolationLength to the duration "
                    f"of audioObject {obj.id}; was {sec(il)}, now {sec(end)}"
                )
            else:
                messages.append(
                    f"audioBlockFormat {block.id}: interpolationLength {sec(il)} is longer than "
                    f"the duration {sec(end)} of audioObject {obj.id}"
                )
            continue
        if r is None or d is None:
            raise AdmError(
                f"{src}: audioBlockFormat {block.id} of audioChannelFormat {state.channel.id} "
                "has only one of rtime and duration; give both or neither"
            )
        block_end = r + d
        if block_end <= end:
            continue
        shift = block_end - end
        if not fix:
            messages.append(
                f"audioBlockFormat {block.id}: ends at {sec(block_end)}, after the end of "
                f"audioObject {obj.id} (duration {sec(end)})"
            )
            continue
        if shift >= d:
            raise AdmError(
                f"{src}: audioBlockFormat {block.id} starts at rtime {sec(r)}, not before the "
                f"end of audioObject {obj.id} (duration {sec(end)}): advancing its end by "
                f"{sec(shift)} would put it before its start"
            )
        new = d - shift
        state.set_duration(i, new)
        messages.append(
            f"audioBlockFormat {block.id}: advanced its end by {sec(shift)} to the end of "
            f"audioObject {obj.id}; duration was {sec(d)}, now {sec(new)}"
        )
        il = interp[i]
        if il is not None and il > new:
            state.set_interp(i, new)
            messages.append(
                f"audioBlockFormat {block.id}: while advancing its end to the end of audioObject "
                f"{obj.id}, reduced interpolationLength too; was {sec(il)}, now {sec(new)}"
            )
