"""Inputs of render items made by Matrix packs (BS.2127 clause 5.2 matrix track specs).

A render item from a Matrix pack (see :data:`adm.items.TrackMix`) has as its input a mix of
file tracks, each with a gain (and a delay). The gain plan is linear in the input, so such an
item is planned as one set of segments per contributing track, with the item's gains scaled
by the track's coefficient: ``out = sum_k g_k * G(t) x_k(t)`` with G the item's gain function.

Coefficient delays (BS.2076-2 ``delay``, milliseconds, rounded to whole samples as
``ceil(fs * delay / 1000 - 0.5)``, as the reference renderer does) are planned on *delayed
tracks*: extra input channels, numbered after the file's tracks, that the render feeds with a
file track delayed by that many samples (see :class:`DelayedTracks`).
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np

from adm.items import DirectSpeakersRenderItem, HoaRenderItem, ObjectRenderItem, TrackMix
from adm.model import AdmError
from layouts.model import Layout
from renderer.hoa import hoa_segments
from renderer.timing import Segments

__all__ = ["DelayedTracks", "TrackDelayer", "delay_samples", "hoa_item_segments", "item_inputs",
           "mix_inputs"]


class DelayedTracks:
    """Registry of (file track, delay in samples) inputs that a plan needs.

    Delayed input ``i`` is engine track ``n_file_tracks + i``; the render appends these
    channels to each block of file audio (:class:`TrackDelayer`).
    """

    def __init__(self, n_file_tracks: int) -> None:
        self.n_file_tracks = n_file_tracks
        self.delays: list[tuple[int, int]] = []

    def track(self, file_track: int, delay: int) -> int:
        """Engine track index of ``file_track`` delayed by ``delay`` samples."""
        if delay == 0:
            return file_track
        key = (file_track, delay)
        if key not in self.delays:
            self.delays.append(key)
        return self.n_file_tracks + self.delays.index(key)


class TrackDelayer:
    """Appends the delayed tracks of a :class:`DelayedTracks` to consecutive audio blocks.

    ``process(x)``: x (n, T) float32 -> (n, T + len(delays)); delayed track ``i`` is
    ``x[t - delay_i, track_i]`` (0 before the start), across block boundaries.
    """

    def __init__(self, delays: list[tuple[int, int]], n_tracks: int) -> None:
        self.delays = list(delays)
        longest = max((d for _, d in self.delays), default=0)
        self.history = np.zeros((longest, n_tracks), np.float32)

    def process(self, x: np.ndarray) -> np.ndarray:
        if not self.delays:
            return x
        joined = np.concatenate([self.history, x])
        n, start = len(x), len(self.history)
        extra = np.stack([joined[start - d:start - d + n, t] for t, d in self.delays], axis=1)
        if start:
            self.history = joined[len(joined) - start:]
        return np.concatenate([x, extra.astype(x.dtype)], axis=1)


def delay_samples(delay_ms: float, sample_rate: int) -> int:
    """A coefficient delay in whole samples: milliseconds rounded half up."""
    return int(math.ceil(sample_rate * delay_ms / 1000.0 - 0.5))


def mix_inputs(mix: TrackMix, sample_rate: int, where: str = "",
               delayed: DelayedTracks | None = None) -> list[tuple[int, float]]:
    """(engine track, gain) pairs of a track mix. Delayed inputs are registered in
    ``delayed``; without it, a delay of one sample or more is an AdmError."""
    inputs = []
    for track, gain, delay in mix:
        samples = delay_samples(delay, sample_rate)
        if samples != 0 and delayed is None:
            raise AdmError(f"{where}Matrix delays are not supported here (a {delay:g} ms delay "
                           f"on input track {track + 1})")
        if samples < 0:
            raise AdmError(f"{where}negative Matrix delay ({delay:g} ms on input track "
                           f"{track + 1})")
        inputs.append((delayed.track(track, samples) if samples else track, gain))
    return inputs


def item_inputs(
    item: ObjectRenderItem | DirectSpeakersRenderItem, sample_rate: int, where: str = "",
    delayed: DelayedTracks | None = None,
) -> list[tuple[int, float]]:
    """The (0-based engine track, linear gain) pairs whose sum is the item's input; [] if
    silent."""
    if item.track_mix is not None:
        return mix_inputs(item.track_mix, sample_rate,
                          f"{where}audioChannelFormat {item.channel_format.id}: ", delayed)
    return [] if item.track_index is None else [(item.track_index, 1.0)]


def hoa_item_segments(item: HoaRenderItem, layout: Layout, sample_rate: int,
                      where: str = "", delayed: DelayedTracks | None = None) -> Segments:
    """:func:`renderer.hoa.hoa_segments` for an HOA item whose channels may be track mixes.

    Channels fed by a mix are planned on placeholder track numbers (negative, never seen by
    the engine), whose segments are then copied to each track of the mix with scaled gains.
    """
    if item.track_mixes is None:
        return hoa_segments(item, layout, sample_rate, where=where)
    placeholders = {}
    tracks: list[int | None] = []
    for i, (track, mix) in enumerate(zip(item.track_indices, item.track_mixes, strict=True)):
        if mix is None:
            tracks.append(track)
        else:
            placeholders[-1 - i] = mix_inputs(
                mix, sample_rate, f"{where}audioChannelFormat {item.channel_formats[i].id}: ",
                delayed)
            tracks.append(-1 - i)
    segments = hoa_segments(replace(item, track_indices=tuple(tracks), track_mixes=None),
                            layout, sample_rate, where=where)
    return expand_placeholders(segments, placeholders)


def expand_placeholders(segments: Segments,
                        placeholders: dict[int, list[tuple[int, float]]]) -> Segments:
    """Replace the segments of each placeholder track by one copy per (track, gain) of its
    mix, gains multiplied by the gain; other segments are kept as they are."""
    keep = ~np.isin(segments.track, list(placeholders))
    fields = ("track", "first", "last", "ramp_start", "ramp_step", "gains_from", "gains_to")
    parts = [Segments(*(getattr(segments, f)[keep] for f in fields))]
    for placeholder, inputs in placeholders.items():
        rows = segments.track == placeholder
        for track, gain in inputs:
            parts.append(Segments(
                track=np.full(int(rows.sum()), track, np.int32),
                first=segments.first[rows], last=segments.last[rows],
                ramp_start=segments.ramp_start[rows], ramp_step=segments.ramp_step[rows],
                gains_from=segments.gains_from[rows] * np.float32(gain),
                gains_to=segments.gains_to[rows] * np.float32(gain),
            ))
    return Segments.concatenate(parts, segments.gains_from.shape[1])
