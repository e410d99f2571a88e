"""The audioBlockFormats of one Objects channel as arrays (BS.2076-2 clause 5.4.3.3).

A long master has tens of thousands of Objects blocks, most of them plain moving points
written by a machine in one markup. :func:`adm.xml.iter_channel_formats` reads such a channel
straight into an :class:`ObjectsBlockColumns`: one array per block parameter, times as exact
integer ticks. It is a sequence of :class:`adm.model.ObjectsBlock` like the tuple of blocks
of any other channel (an element is built when it is asked for), so every consumer works
with it unchanged; the renderer's hot paths (timing checks, block timing, gains) read its
arrays directly.

Blocks with a zoneExclusion or a screenEdgeLock are not held so; the parser reads channels
with them block by block.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, fields
from fractions import Fraction
from typing import overload

import numpy as np

from adm.model import (
    CartesianPosition,
    ChannelLock,
    JumpPosition,
    ObjectDivergence,
    ObjectsBlock,
    PolarPosition,
)

__all__ = ["ObjectsBlockColumns", "NO_LENGTH"]

NO_LENGTH = -1
"""``interpolation_length`` of a block whose jumpPosition has no interpolationLength."""


@dataclass(frozen=True, eq=False)
class ObjectsBlockColumns(Sequence[ObjectsBlock]):
    """B Objects blocks of one channel, in time order, as arrays of shape (B,) (``position``
    (B, 3)); read-only.

    ``position``: X, Y, Z where ``cartesian``, else azimuth, elevation (degrees), distance.
    Times are integer ticks of ``1 / time_scale`` seconds (int64): ``rtime`` and
    ``duration`` (every block has both), ``interpolation_length`` (:data:`NO_LENGTH` where
    the jumpPosition gives none); ``jump``: the jumpPosition flag. ``gain`` is linear.
    ``channel_lock`` and its ``max_distance``, objectDivergence's ``divergence`` and its
    ``azimuth_range`` and ``position_range``: NaN where not given. The other fields are those
    of :class:`adm.model.ObjectsBlock`; the ones not held here (screenEdgeLock,
    zoneExclusion) have their defaults.
    """

    ids: tuple[str, ...]
    position: np.ndarray
    cartesian: np.ndarray
    time_scale: int
    rtime: np.ndarray
    duration: np.ndarray
    jump: np.ndarray
    interpolation_length: np.ndarray
    gain: np.ndarray
    diffuse: np.ndarray
    width: np.ndarray
    height: np.ndarray
    depth: np.ndarray
    screen_ref: np.ndarray
    importance: np.ndarray
    head_locked: np.ndarray
    channel_lock: np.ndarray
    max_distance: np.ndarray
    divergence: np.ndarray
    azimuth_range: np.ndarray
    position_range: np.ndarray

    def __post_init__(self) -> None:
        n = len(self.ids)
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, np.ndarray):
                if len(value) != n:
                    raise ValueError(f"ObjectsBlockColumns: {f.name} has {len(value)} rows, "
                                     f"not {n}")
                value.flags.writeable = False

    # -- the sequence of blocks ---------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.ids)

    @overload
    def __getitem__(self, index: int) -> ObjectsBlock: ...

    @overload
    def __getitem__(self, index: slice) -> ObjectsBlockColumns: ...

    def __getitem__(self, index):
        if isinstance(index, slice):
            return self.take(np.arange(len(self))[index])
        n = len(self)
        if not -n <= index < n:
            raise IndexError("block index out of range")
        return self._block(index % n)

    def __iter__(self) -> Iterator[ObjectsBlock]:
        for i in range(len(self)):
            yield self._block(i)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sequence) or isinstance(other, str | bytes):
            return NotImplemented
        return len(self) == len(other) and all(a == b for a, b in zip(self, other))

    def __hash__(self) -> int:
        return hash(tuple(self))

    def __repr__(self) -> str:
        first = f", first {self.ids[0]}" if self.ids else ""
        return f"ObjectsBlockColumns({len(self)} blocks{first})"

    def seconds(self, ticks: int) -> Fraction:
        """``ticks`` as exact seconds."""
        return Fraction(int(ticks), self.time_scale)

    def _block(self, i: int) -> ObjectsBlock:
        x, y, z = self.position[i].tolist()
        cartesian = bool(self.cartesian[i])
        length = int(self.interpolation_length[i])
        return ObjectsBlock(
            id=self.ids[i],
            position=CartesianPosition(x, y, z) if cartesian else PolarPosition(x, y, z),
            rtime=self.seconds(self.rtime[i]),
            duration=self.seconds(self.duration[i]),
            cartesian=cartesian,
            width=float(self.width[i]),
            height=float(self.height[i]),
            depth=float(self.depth[i]),
            gain=float(self.gain[i]),
            diffuse=float(self.diffuse[i]),
            jump_position=JumpPosition(
                bool(self.jump[i]), None if length == NO_LENGTH else self.seconds(length)),
            screen_ref=bool(self.screen_ref[i]),
            importance=int(self.importance[i]),
            head_locked=bool(self.head_locked[i]),
            channel_lock=ChannelLock(bool(self.channel_lock[i]),
                                     _optional(self.max_distance[i])),
            object_divergence=ObjectDivergence(float(self.divergence[i]),
                                               _optional(self.azimuth_range[i]),
                                               _optional(self.position_range[i])),
        )

    # -- arrays -------------------------------------------------------------------------------

    def take(self, rows: np.ndarray) -> ObjectsBlockColumns:
        """The blocks ``rows`` (an integer index array), as columns."""
        rows = np.asarray(rows, np.intp)
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        return ObjectsBlockColumns(**{
            name: (value[rows] if isinstance(value, np.ndarray)
                   else tuple(value[i] for i in rows.tolist()) if name == "ids" else value)
            for name, value in values.items()})

    def needs_full_pipeline(self) -> np.ndarray:
        """(B,) bool: the blocks that need the BS.2127 gain calculation beyond plain point
        panning (as :func:`renderer.objects.needs_full_pipeline`): extent, screenRef,
        channelLock, objectDivergence, or a polar distance below 1."""
        return ((self.width != 0) | (self.height != 0) | (self.depth != 0) | self.screen_ref
                | self.channel_lock | (self.divergence != 0)
                | (~self.cartesian & (self.position[:, 2] < 1.0)))

    @staticmethod
    def concatenate(parts: Sequence[ObjectsBlockColumns]) -> ObjectsBlockColumns:
        """The blocks of ``parts`` one after the other (times on a common tick: the least
        common multiple of theirs). Raises OverflowError if a time does not fit 63 bits."""
        if not parts:
            raise ValueError("nothing to concatenate")
        scale = math.lcm(*{p.time_scale for p in parts})
        values: dict[str, object] = {"time_scale": scale, "ids": tuple(
            block_id for p in parts for block_id in p.ids)}
        for f in fields(ObjectsBlockColumns):
            if f.name in values:
                continue
            arrays = [getattr(p, f.name) for p in parts]
            if f.name in ("rtime", "duration", "interpolation_length"):
                arrays = [_rescaled(a, scale // p.time_scale) for a, p in zip(arrays, parts)]
            values[f.name] = np.concatenate(arrays)
        return ObjectsBlockColumns(**values)  # type: ignore[arg-type]


def _optional(value: float) -> float | None:
    """A number held as NaN where not given, as the model has it (None)."""
    return None if np.isnan(value) else float(value)


def _rescaled(ticks: np.ndarray, factor: int) -> np.ndarray:
    """Tick counts times ``factor`` (:data:`NO_LENGTH` kept), refusing an overflow."""
    if factor == 1:
        return ticks
    if len(ticks) and int(np.abs(ticks).max()) * factor >= 1 << 62:
        raise OverflowError("block times do not fit 63 bits on a common tick")
    return np.where(ticks == NO_LENGTH, NO_LENGTH, ticks * factor)
