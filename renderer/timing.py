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

from adm.model import AdmError, ObjectsBlock

OPEN_END = np.iinfo(np.int64).max // 4
"""Sample index used for "until the end of the file" (blocks without duration)."""


@dataclass(frozen=True)
class BlockTiming:
    """Timing of one block in fractional samples (``end`` may be ``math.inf``).

    ``target`` is where the ramp from the previous block's gains ends (== ``start`` when the
    block does not interpolate).
    """

    start: Fraction
    target: Fraction
    end: Fraction | float
    interpolates: bool


def _ceil(x: Fraction | float) -> int:
    if isinstance(x, float) and math.isinf(x):
        return OPEN_END
    return math.ceil(x)


def block_timings(
    blocks: Sequence,
    sample_rate: int,
    object_start: Fraction | None,
    object_duration: Fraction | None,
    interpolate: bool,
    where: str = "",
) -> list[BlockTiming]:
    """Start, ramp target and end of each block, in fractional samples.

    ``blocks``: audioBlockFormats of one channel in time order (with ``rtime``/``duration``
    in seconds relative to the object start). ``interpolate``: True for Objects (gains ramp
    from the previous block), False for DirectSpeakers (gains switch at the block start).
    Raises :class:`AdmError` for overlapping blocks, half-given timing, a block ending after
    its object, or an interpolationLength longer than its block.
    """
    obj_start = object_start if object_start is not None else Fraction(0)
    obj_end: Fraction | float = (
        obj_start + object_duration if object_duration is not None else math.inf
    )
    timings: list[BlockTiming] = []
    last_end: Fraction | float | None = None
    for block in blocks:
        if (block.rtime is None) != (block.duration is None):
            raise AdmError(f"{where}audioBlockFormat {block.id}: rtime and duration must be "
                           "given together")
        if block.rtime is None:
            start, end = obj_start, obj_end
        else:
            start = obj_start + block.rtime
            end = start + block.duration
            if end > obj_end:
                raise AdmError(f"{where}audioBlockFormat {block.id} ends after its audioObject")
        if last_end is not None and start < last_end:
            raise AdmError(f"{where}audioBlockFormat {block.id} overlaps the previous block "
                           "(use --fix-block-timing to repair exported files)")
        target = start
        interpolates = False
        if interpolate and last_end is not None and start == last_end:
            interp = _interpolation_time(block, end - start)
            target = start + interp
            if target > end:
                raise AdmError(f"{where}audioBlockFormat {block.id}: interpolationLength is "
                               "longer than the block")
            interpolates = target != start
        timings.append(BlockTiming(
            start=start * sample_rate,
            target=target * sample_rate,
            end=end * sample_rate if not (isinstance(end, float) and math.isinf(end)) else end,
            interpolates=interpolates,
        ))
        last_end = end
    return timings


def _interpolation_time(block, duration):
    """BS.2127: jumpPosition set -> interpolationLength (0 if absent); else the whole block."""
    if isinstance(block, ObjectsBlock) and block.jump_position.flag:
        length = block.jump_position.interpolation_length
        return length if length is not None else Fraction(0)
    return duration


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
        if not parts:
            return Segments(
                track=np.zeros(0, np.int32), first=np.zeros(0, np.int64),
                last=np.zeros(0, np.int64), ramp_start=np.zeros(0), ramp_step=np.zeros(0),
                gains_from=np.zeros((0, n_out), np.float32),
                gains_to=np.zeros((0, n_out), np.float32),
            )
        return Segments(*(np.concatenate([getattr(p, f) for p in parts]) for f in (
            "track", "first", "last", "ramp_start", "ramp_step", "gains_from", "gains_to")))


def segments_for_track(
    track: int, timings: Sequence[BlockTiming], gains: np.ndarray
) -> Segments:
    """Turn one track's block timings and per-block gains (n_blocks, n_out) into segments."""
    rows_track, rows_first, rows_last, rows_p0, rows_dp, rows_from, rows_to = \
        [], [], [], [], [], [], []
    previous = None
    for timing, g in zip(timings, gains):
        if timing.interpolates:
            first, last = _ceil(timing.start), _ceil(timing.target)
            if last > first:
                span = timing.target - timing.start
                p_first = float((first - timing.start) / span)
                p_last = float((last - timing.start) / span)
                rows_track.append(track)
                rows_first.append(first)
                rows_last.append(last)
                rows_p0.append(p_first)
                rows_dp.append((p_last - p_first) / (last - first))
                rows_from.append(previous)
                rows_to.append(g)
        first, last = _ceil(timing.target), _ceil(timing.end)
        if last > first:
            rows_track.append(track)
            rows_first.append(first)
            rows_last.append(last)
            rows_p0.append(0.0)
            rows_dp.append(0.0)
            rows_from.append(g)
            rows_to.append(g)
        previous = g
    n_out = gains.shape[1]
    return Segments(
        track=np.array(rows_track, np.int32),
        first=np.array(rows_first, np.int64),
        last=np.array(rows_last, np.int64),
        ramp_start=np.array(rows_p0, np.float64),
        ramp_step=np.array(rows_dp, np.float64),
        gains_from=np.array(rows_from, np.float32).reshape(-1, n_out),
        gains_to=np.array(rows_to, np.float32).reshape(-1, n_out),
    )
