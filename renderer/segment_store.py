"""Where the mixer finds a gain plan's segments: in memory, or spooled to a temporary file.

A plan is made of *runs*: sets of segments (:class:`renderer.timing.Segments`) sorted by their
first sample. The :class:`renderer.engine.Mixer` asks a :class:`SegmentSource` for the
segments starting before the end of each batch it mixes, in time order, so it holds only the
segments that are playing. A :class:`MemoryRun` keeps its segments as arrays; a
:class:`SpooledRun` keeps them in a :class:`SegmentSpool` (one unnamed temporary file) and
reads them back a few hundred at a time as the mix reaches them, so the plan's memory does
not grow with the number of blocks but for one small buffer per run (a run holds about 32,768
blocks' segments: some 4 MB an hour of a dense master, 70,000 blocks a minute).

Several outputs mixed by one mixer have their gains side by side in its columns; a run holds
the gains of one or more of them, and its *placements* say where each of its column ranges
goes in the mixer's columns (other columns are zero).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence

import numpy as np

from renderer.timing import SEGMENT_FIELDS as _FIELDS
from renderer.timing import Segments

Placement = tuple[int, int, int]
"""(first column in the run, first column in the mixer, number of columns)."""


def _sorted(segments: Segments) -> Segments:
    """``segments`` ordered by first sample (stable), without those that cover nothing."""
    keep = np.flatnonzero(segments.last > segments.first)
    order = keep[np.argsort(segments.first[keep], kind="stable")]
    if len(order) == len(segments.first) and np.all(order[:-1] < order[1:]):
        return segments
    return Segments(*(getattr(segments, f)[order] for f in _FIELDS))


class MemoryRun:
    """A run held in memory: ``segments`` (any order; sorted here)."""

    def __init__(self, segments: Segments) -> None:
        self.segments = _sorted(segments)
        self.width = self.segments.gains_to.shape[1]
        self._next = 0

    def take(self, end: int) -> Segments:
        """The segments not taken yet whose first sample is before ``end``."""
        stop = int(np.searchsorted(self.segments.first, end, side="left"))
        start, self._next = self._next, max(stop, self._next)
        seg = self.segments
        return Segments(*(getattr(seg, f)[start:stop] for f in _FIELDS))


def _record_type(width: int) -> np.dtype:
    return np.dtype([("track", "<i4"), ("first", "<i8"), ("last", "<i8"),
                     ("ramp_start", "<f8"), ("ramp_step", "<f8"),
                     ("gains_from", "<f4", (width,)), ("gains_to", "<f4", (width,))])


class SegmentSpool:
    """An unnamed temporary file (deleted when closed) holding runs of segments.

    ``folder``: where to create it (default: the system's temporary folder).
    """

    def __init__(self, folder: str | os.PathLike | None = None) -> None:
        self._file = tempfile.TemporaryFile(dir=folder, prefix="dubstage-plan-")
        self._size = 0
        self.bytes_written = 0

    def add(self, segments: Segments, chunk: int = 256) -> SpooledRun:
        """Write ``segments`` (sorted here) to the file; a run that reads them back ``chunk``
        at a time."""
        seg = _sorted(segments)
        width = seg.gains_to.shape[1]
        records = np.empty(len(seg.first), _record_type(width))
        for f in _FIELDS:
            records[f] = getattr(seg, f)
        data = records.tobytes()
        offset = self._size
        os.pwrite(self._file.fileno(), data, offset)
        self._size += len(data)
        self.bytes_written += len(data)
        return SpooledRun(self, offset, len(records), width, chunk)

    def read(self, offset: int, size: int) -> bytes:
        data = os.pread(self._file.fileno(), size, offset)
        if len(data) != size:
            raise OSError(f"temporary gain plan file: read {len(data)} of {size} bytes")
        return data

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> SegmentSpool:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class SpooledRun:
    """A run in a :class:`SegmentSpool`: ``count`` records from byte ``offset``, their
    ``track`` numbers shifted by ``track_offset`` when read (runs numbered by another
    process)."""

    def __init__(self, spool: SegmentSpool, offset: int, count: int, width: int,
                 chunk: int = 256, track_offset: int = 0) -> None:
        self.spool, self.offset, self.count, self.width = spool, offset, count, width
        self.track_offset = track_offset
        self._type = _record_type(width)
        self._chunk = max(1, chunk)
        self._read = 0       # records read from the file
        self._buffer = np.zeros(0, self._type)
        self._position = 0   # records of the buffer already taken

    def take(self, end: int) -> Segments:
        """The segments not taken yet whose first sample is before ``end``."""
        pieces = []
        while True:
            if self._position == len(self._buffer):
                if self._read == self.count:
                    break
                n = min(self._chunk, self.count - self._read)
                size = self._type.itemsize
                data = self.spool.read(self.offset + self._read * size, n * size)
                self._buffer = np.frombuffer(data, self._type)
                self._read += n
                self._position = 0
            firsts = self._buffer["first"]
            stop = self._position + int(np.searchsorted(firsts[self._position:], end, "left"))
            pieces.append(self._buffer[self._position:stop])
            self._position = stop
            if stop < len(self._buffer):
                break
        records = pieces[0] if len(pieces) == 1 else np.concatenate(
            pieces or [np.zeros(0, self._type)])
        segments = Segments(*(np.ascontiguousarray(records[f]) for f in _FIELDS))
        if self.track_offset:
            np.add(segments.track, np.int32(self.track_offset), out=segments.track)
        return segments


class SegmentSource:
    """The segments of several runs, placed in ``width`` mixer columns.

    ``runs``: (run, placements) pairs; see :data:`Placement`. A run whose one placement maps
    all its columns onto all of the mixer's is passed through without copying its gains.
    """

    def __init__(self, runs: Sequence[tuple[MemoryRun | SpooledRun, Sequence[Placement]]],
                 width: int) -> None:
        self.runs = [(run, tuple(places)) for run, places in runs]
        self.width = width

    @staticmethod
    def of(segments: Segments) -> SegmentSource:
        """One in-memory run of ``segments`` filling all the columns."""
        width = segments.gains_to.shape[1]
        return SegmentSource([(MemoryRun(segments), [(0, 0, width)])], width)

    def take(self, end: int) -> Segments:
        """Every run's segments not taken yet that start before sample ``end``."""
        parts = []
        for run, places in self.runs:
            seg = run.take(end)
            if len(seg.first) == 0:
                continue
            if places == ((0, 0, self.width),) and run.width == self.width:
                parts.append(seg)
                continue
            gains_from = np.zeros((len(seg.first), self.width), np.float32)
            gains_to = np.zeros_like(gains_from)
            for run_column, column, count in places:
                gains_from[:, column:column + count] = \
                    seg.gains_from[:, run_column:run_column + count]
                gains_to[:, column:column + count] = seg.gains_to[:, run_column:run_column + count]
            parts.append(Segments(seg.track, seg.first, seg.last, seg.ramp_start,
                                  seg.ramp_step, gains_from, gains_to))
        if len(parts) == 1:
            return parts[0]
        return Segments.concatenate(parts, self.width)


class SegmentWindow:
    """The segments of a source around a position that only moves forward in time: taken
    when the position reaches their first sample, forgotten when they have ended, so only
    the segments playing are held (``segments``, ``width`` gain columns)."""

    def __init__(self, source: SegmentSource | MemoryRun | SpooledRun, width: int) -> None:
        self.source = source
        self.segments = Segments.concatenate([], width)
        self.taken = 0  # the segments starting before this sample have been taken

    def take(self, end: int) -> bool:
        """Take the segments that start before sample ``end``; whether there were any."""
        if end <= self.taken:
            return False
        self.taken = end
        new = self.source.take(end)
        if not len(new.first):
            return False
        self.segments = Segments.concatenate([self.segments, new], new.gains_to.shape[1]) \
            if len(self.segments.first) else new
        return True

    def drop(self, before: int) -> bool:
        """Forget the segments that end at or before sample ``before``; whether there were
        any."""
        keep = self.segments.last > before
        if keep.all():
            return False
        self.segments = Segments(*(getattr(self.segments, f)[keep] for f in _FIELDS))
        return True
