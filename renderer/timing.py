"""Block timing and gain interpolation (ITU-R BS.2127 clause 7.2, interpretation of the Objects
metadata timing with jumpPosition / interpolationLength; clause 8 for DirectSpeakers, whose
gains switch at block boundaries).

A render item's audioBlockFormats are turned into *segments* of a track's gain function, each
covering a half-open range of sample indices:

* a **ramp** from the previous block's gains to this block's gains, over the block's
  interpolation time (the whole block, or jumpPosition's interpolationLength, 0 when not given),
  only when the block starts exactly where the previous one ended;
* a **hold** of this block's gains until the block ends.

Times are exact fractions of a second. A boundary at fractional sample ``t`` affects samples
``s >= ceil(t)``; inside a ramp from ``a`` to ``b`` (fractional samples) the interpolation
factor at sample ``s`` is ``(s - a) / (b - a)``, so a ramp need not start or end on a sample.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from adm.columns import NO_LENGTH, ObjectsBlockColumns
from adm.model import AdmError

OPEN_END = np.iinfo(np.int64).max // 4
"""Sample index used for "until the end of the file" (blocks without duration)."""


@dataclass(frozen=True)
class ChannelTiming:
    """Timing of a channel's blocks in samples, as arrays over its B blocks.

    For block ``i``: samples ``[ramp_first[i], ramp_last[i])`` ramp from the previous block's
    gains to this block's (only where ``interpolates[i]``), with interpolation factor
    ``ramp_p0[i] + k * ramp_step[i]`` at sample ``ramp_first[i] + k``; samples
    ``[hold_first[i], hold_last[i])`` hold this block's gains. ``hold_last`` is
    :data:`OPEN_END` for a block without end. All int64 / float64 / bool arrays of shape (B,).
    """

    ramp_first: np.ndarray
    ramp_last: np.ndarray
    ramp_p0: np.ndarray
    ramp_step: np.ndarray
    interpolates: np.ndarray
    hold_first: np.ndarray
    hold_last: np.ndarray


def _ceil_div(numerator: int, denominator: int) -> int:
    return -((-numerator) // denominator)


def block_timings(
    blocks: Sequence,
    sample_rate: int,
    object_start: Fraction | None,
    object_duration: Fraction | None,
    interpolate: bool,
    where: str = "",
) -> ChannelTiming:
    """Where each block ramps and holds, in samples (exact rational arithmetic).

    ``blocks``: audioBlockFormats of one channel in time order (with ``rtime``/``duration``
    in seconds relative to the object start). ``interpolate``: True for Objects (gains ramp
    from the previous block), False for DirectSpeakers (gains switch at the block start).
    Raises :class:`AdmError` for overlapping blocks, half-given timing, a block ending after
    its object, or an interpolationLength longer than its block.

    Channels whose blocks all have rtime and duration are computed with numpy on integer
    ticks (all times on a common denominator), when the numbers fit in 64 bits; otherwise
    block by block with Python integers. Both give the same result.
    """
    fast = _block_timings_vectorised(blocks, sample_rate, object_start, object_duration,
                                     interpolate, where)
    if fast is not None:
        return fast
    return _block_timings_exact(blocks, sample_rate, object_start, object_duration,
                                interpolate, where)


_TICKS_LIMIT = 1 << 61


def _block_timings_vectorised(blocks, sr, object_start, object_duration, interpolate, where):
    """numpy version of :func:`_block_timings_exact` for fully timed channels, or None."""
    n = len(blocks)
    extra = [t for t in (object_start, object_duration) if t is not None]
    obj_start = object_start if object_start is not None else Fraction(0)
    if isinstance(blocks, ObjectsBlockColumns):  # integer ticks already
        if n == 0:
            return None
        tick = math.lcm(blocks.time_scale, *{t.denominator for t in extra})
        factor = tick // blocks.time_scale
        has_jump = blocks.jump
        lengths = np.where(has_jump & (blocks.interpolation_length != NO_LENGTH),
                           blocks.interpolation_length, 0)
        maxima = [int(a.max()) * factor for a in (blocks.rtime, blocks.duration, lengths)]
        obj_ticks = obj_start.numerator * (tick // obj_start.denominator)
        if (obj_ticks + sum(maxima)) * sr >= _TICKS_LIMIT or tick * sr >= _TICKS_LIMIT:
            return None
        start = blocks.rtime * factor + obj_ticks
        end = start + blocks.duration * factor
        jump_length = lengths * factor
    else:
        if n == 0 or any(b.rtime is None or b.duration is None for b in blocks):
            return None
        rtimes = [b.rtime for b in blocks]
        durations = [b.duration for b in blocks]
        jumps = [getattr(b, "jump_position", None) for b in blocks]
        # jumpPosition set: interpolate over interpolationLength (0 when not given)
        given = [(j.interpolation_length or Fraction(0)) if j is not None and j.flag else None
                 for j in jumps]
        denominators = {t.denominator for t in rtimes} | {t.denominator for t in durations}
        denominators |= {t.denominator for t in given if t is not None}
        denominators |= {t.denominator for t in extra}
        tick = math.lcm(*denominators)

        def tick_counts(values) -> list[int]:  # exact Python ints: no overflow before the check
            return [v.numerator * (tick // v.denominator) for v in values]

        start_ticks, duration_ticks = tick_counts(rtimes), tick_counts(durations)
        jump_ticks = tick_counts([length if length is not None else Fraction(0)
                                  for length in given])
        obj_ticks = obj_start.numerator * (tick // obj_start.denominator)
        horizon = (obj_ticks + max(start_ticks) + max(duration_ticks) + max(jump_ticks)) * sr
        if horizon >= _TICKS_LIMIT or tick * sr >= _TICKS_LIMIT:
            return None
        start = np.array(start_ticks, np.int64) + obj_ticks
        end = start + np.array(duration_ticks, np.int64)
        has_jump = np.array([length is not None for length in given])
        jump_length = np.array(jump_ticks, np.int64)
    if object_duration is not None:
        late = np.flatnonzero(end > int((obj_start + object_duration) * tick))
        if len(late):
            raise AdmError(f"{where}audioBlockFormat {blocks[late[0]].id} ends after its "
                           "audioObject")
    overlap = np.flatnonzero(start[1:] < end[:-1])
    if len(overlap):
        raise AdmError(f"{where}audioBlockFormat {blocks[overlap[0] + 1].id} overlaps the "
                       "previous block (--enable-block-duration-fix repairs this)")
    target = start.copy()
    if interpolate:
        contiguous = np.zeros(n, bool)
        contiguous[1:] = start[1:] == end[:-1]
        target = np.where(contiguous, np.where(has_jump, start + jump_length, end), start)
        too_long = np.flatnonzero(target > end)
        if len(too_long):
            raise AdmError(f"{where}audioBlockFormat {blocks[too_long[0]].id}: "
                           "interpolationLength is longer than the block")
    # positions in samples are ticks * sr / tick; a boundary at t affects samples >= ceil(t)
    s_scaled, t_scaled, e_scaled = start * sr, target * sr, end * sr
    first = -((-s_scaled) // tick)
    last = -((-t_scaled) // tick)
    interpolates = last > first
    span = np.where(interpolates, t_scaled - s_scaled, 1).astype(np.float64)
    p_first = (first * tick - s_scaled) / span
    p_last = (last * tick - s_scaled) / span
    steps = np.where(interpolates, last - first, 1)
    ramp_p0 = np.where(interpolates, p_first, 0.0)
    ramp_step = np.where(interpolates, (p_last - p_first) / steps, 0.0)
    return ChannelTiming(first, last, ramp_p0, ramp_step, interpolates, last,
                         -((-e_scaled) // tick))


def _block_timings_exact(
    blocks: Sequence,
    sample_rate: int,
    object_start: Fraction | None,
    object_duration: Fraction | None,
    interpolate: bool,
    where: str = "",
) -> ChannelTiming:
    """Block-by-block version of :func:`block_timings` with unbounded Python integers.

    Times are kept as exact fractions of a sample, ``numerator / denominator`` in Python
    integers (no rounding, no Fraction overhead); a boundary at fractional sample ``t``
    affects samples from ``ceil(t)``.
    """
    sr = sample_rate
    obj_start = object_start if object_start is not None else Fraction(0)
    os_n, os_d = obj_start.numerator * sr, obj_start.denominator
    has_end = object_duration is not None
    if has_end:
        obj_end = (obj_start + object_duration) * sr
        oe_n, oe_d = obj_end.numerator, obj_end.denominator
    n = len(blocks)
    ramp_first = np.zeros(n, np.int64)
    ramp_last = np.zeros(n, np.int64)
    ramp_p0 = np.zeros(n)
    ramp_step = np.zeros(n)
    interpolates = np.zeros(n, bool)
    hold_first = np.zeros(n, np.int64)
    hold_last = np.zeros(n, np.int64)
    last_end: tuple[int, int] | None = None  # numerator, denominator; None: no block yet
    last_open = False
    for i, block in enumerate(blocks):
        rtime, duration = block.rtime, block.duration
        if (rtime is None) != (duration is None):
            raise AdmError(f"{where}audioBlockFormat {block.id}: rtime and duration must be "
                           "given together")
        if rtime is None:
            s_n, s_d = os_n, os_d
            open_end = not has_end
            if has_end:
                e_n, e_d = oe_n, oe_d
        else:
            r_n, r_d = rtime.numerator, rtime.denominator
            s_n, s_d = os_n * r_d + r_n * sr * os_d, os_d * r_d
            e_n = s_n * duration.denominator + duration.numerator * sr * s_d
            e_d = s_d * duration.denominator
            open_end = False
            if has_end and e_n * oe_d > oe_n * e_d:
                raise AdmError(f"{where}audioBlockFormat {block.id} ends after its audioObject")
        if last_end is not None and (last_open or s_n * last_end[1] < last_end[0] * s_d):
            raise AdmError(f"{where}audioBlockFormat {block.id} overlaps the previous block "
                           "(--enable-block-duration-fix repairs this)")
        t_n, t_d = s_n, s_d
        contiguous = last_end is not None and s_n * last_end[1] == last_end[0] * s_d
        if interpolate and contiguous:
            jump = getattr(block, "jump_position", None)
            if jump is not None and jump.flag:
                length = jump.interpolation_length or Fraction(0)
                t_n = s_n * length.denominator + length.numerator * sr * s_d
                t_d = s_d * length.denominator
            elif open_end:
                raise AdmError(f"{where}audioBlockFormat {block.id}: cannot interpolate over "
                               "a block without end")
            else:
                t_n, t_d = e_n, e_d
            if not open_end and t_n * e_d > e_n * t_d:
                raise AdmError(f"{where}audioBlockFormat {block.id}: interpolationLength is "
                               "longer than the block")
        first = _ceil_div(s_n, s_d)
        target = _ceil_div(t_n, t_d)
        ramp_first[i], ramp_last[i] = first, target
        if target > first:
            # p = (s - start) / (target - start) at the first and last ramp samples
            span_n = t_n * s_d - s_n * t_d  # (target - start) * s_d * t_d
            p_first = (first * s_d - s_n) * t_d / span_n
            p_last = (target * s_d - s_n) * t_d / span_n
            ramp_p0[i] = p_first
            ramp_step[i] = (p_last - p_first) / (target - first)
            interpolates[i] = True
        hold_first[i] = target
        hold_last[i] = OPEN_END if open_end else _ceil_div(e_n, e_d)
        last_end = (s_n, s_d) if open_end else (e_n, e_d)
        last_open = open_end
    return ChannelTiming(ramp_first, ramp_last, ramp_p0, ramp_step, interpolates,
                         hold_first, hold_last)


SEGMENT_FIELDS = ("track", "first", "last", "ramp_start", "ramp_step", "gains_from", "gains_to")
"""The fields of :class:`Segments`, in order."""


@dataclass(frozen=True)
class Segments:
    """Segments of one or more tracks' gain functions, ready for the mixing engine.

    Shapes: S segments, n_out outputs. ``first``/``last``: int64 (S,) half-open sample range
    ``[first, last)``. ``ramp_start``/``ramp_step``: float64 (S,), interpolation factor at
    ``first`` and its increment per sample (both 0 for holds). ``gains_from``/``gains_to``:
    float32 (S, n_out); equal for holds. ``track``: int32 (S,) 0-based input track index.
    """

    track: np.ndarray
    first: np.ndarray
    last: np.ndarray
    ramp_start: np.ndarray
    ramp_step: np.ndarray
    gains_from: np.ndarray
    gains_to: np.ndarray

    @property
    def is_ramp(self) -> np.ndarray:
        return self.ramp_step != 0.0

    @staticmethod
    def concatenate(parts: Sequence[Segments], n_out: int) -> Segments:
        """All ``parts`` as one set of segments (n_out columns). A list given as ``parts`` is
        emptied, so that each piece can be freed as soon as it has been copied."""
        if not parts:
            return Segments(
                track=np.zeros(0, np.int32), first=np.zeros(0, np.int64),
                last=np.zeros(0, np.int64), ramp_start=np.zeros(0), ramp_step=np.zeros(0),
                gains_from=np.zeros((0, n_out), np.float32),
                gains_to=np.zeros((0, n_out), np.float32),
            )
        columns = {f: [getattr(p, f) for p in parts] for f in SEGMENT_FIELDS}
        if isinstance(parts, list):  # the caller's pieces are not needed any more
            parts.clear()
        joined = {}
        for f in SEGMENT_FIELDS:  # one at a time: each field's pieces are freed once joined
            joined[f] = np.concatenate(columns.pop(f))
        return Segments(**joined)


def segments_for_track(track: int, timing: ChannelTiming, gains: np.ndarray) -> Segments:
    """One track's segments from its block timing and per-block gains (B, n_out)."""
    gains = np.asarray(gains, np.float32)
    n_out = gains.shape[1]
    ramp = np.flatnonzero(timing.interpolates)
    hold = np.flatnonzero(timing.hold_last > timing.hold_first)
    previous = np.concatenate([np.zeros((1, n_out), np.float32), gains[:-1]])
    n = len(ramp) + len(hold)
    return Segments(
        track=np.full(n, track, np.int32),
        first=np.concatenate([timing.ramp_first[ramp], timing.hold_first[hold]]),
        last=np.concatenate([timing.ramp_last[ramp], timing.hold_last[hold]]),
        ramp_start=np.concatenate([timing.ramp_p0[ramp], np.zeros(len(hold))]),
        ramp_step=np.concatenate([timing.ramp_step[ramp], np.zeros(len(hold))]),
        gains_from=np.concatenate([previous[ramp], gains[hold]]),
        gains_to=np.concatenate([gains[ramp], gains[hold]]),
    )


def evaluate_segments(segments: Segments, n_tracks: int, samples: np.ndarray) -> np.ndarray:
    """The gain functions of a plan sampled at given sample indices.

    ``samples``: (P,) int sample indices, sorted ascending. Returns float32
    (P, n_tracks, n_out): for each sample and input track, the sum of the gains of the segments
    of that track covering the sample (holds give their gains, ramps the linear interpolation
    ``from + p * (to - from)`` with ``p = ramp_start + (sample - first) * ramp_step``); 0 where no
    segment covers it. This is the gain the engine applies to that track's sample.
    """
    samples = np.asarray(samples, np.int64)
    n_out = segments.gains_to.shape[1]
    out = np.zeros((len(samples), n_tracks, n_out), np.float32)
    lo = np.searchsorted(samples, segments.first, side="left")
    hi = np.searchsorted(samples, segments.last, side="left")
    counts = hi - lo
    if counts.sum() == 0:
        return out
    seg = np.repeat(np.arange(len(counts)), counts)
    index = np.arange(int(counts.sum())) - np.repeat(np.cumsum(counts) - counts, counts)
    index += lo[seg]
    p = segments.ramp_start[seg] + (samples[index] - segments.first[seg]) * segments.ramp_step[seg]
    g_from, g_to = segments.gains_from[seg], segments.gains_to[seg]
    gains = g_from + p[:, None].astype(np.float32) * (g_to - g_from)
    np.add.at(out, (index, segments.track[seg]), gains)
    return out
