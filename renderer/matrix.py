"""Inputs of render items made by Matrix packs (BS.2127 clause 5.2 matrix track specs).

A render item from a Matrix pack (see :data:`adm.items.TrackMix`) has as its input a mix of
file tracks, each with a gain (and a delay). The gain plan is linear in the input, so such an
item is planned as one set of segments per contributing track, with the item's gains scaled
by the track's coefficient: ``out = sum_k g_k * G(t) x_k(t)`` with G the item's gain function.

Coefficient delays (BS.2076-2 ``delay``, milliseconds, rounded to whole samples as
``ceil(fs * delay / 1000 - 0.5)``) that round to a nonzero number of samples are not
supported yet: the engine reads every track without delay.
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

__all__ = ["delay_samples", "hoa_item_segments", "item_inputs", "mix_inputs"]


def delay_samples(delay_ms: float, sample_rate: int) -> int:
    """A coefficient delay in whole samples: milliseconds rounded half up."""
    return int(math.ceil(sample_rate * delay_ms / 1000.0 - 0.5))


def mix_inputs(mix: TrackMix, sample_rate: int, where: str = "") -> list[tuple[int, float]]:
    """(track, gain) pairs of a track mix; AdmError for a delay of one sample or more."""
    for track, _, delay in mix:
        if delay_samples(delay, sample_rate) != 0:
            raise AdmError(f"{where}Matrix delays are not supported yet (a {delay:g} ms delay "
                           f"on input track {track + 1})")
    return [(track, gain) for track, gain, _ in mix]


def item_inputs(
    item: ObjectRenderItem | DirectSpeakersRenderItem, sample_rate: int, where: str = ""
) -> list[tuple[int, float]]:
    """The (0-based track, linear gain) pairs whose sum is the item's input; [] if silent."""
    if item.track_mix is not None:
        return mix_inputs(item.track_mix, sample_rate,
                          f"{where}audioChannelFormat {item.channel_format.id}: ")
    return [] if item.track_index is None else [(item.track_index, 1.0)]


def hoa_item_segments(item: HoaRenderItem, layout: Layout, sample_rate: int,
                      where: str = "") -> Segments:
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
                mix, sample_rate, f"{where}audioChannelFormat {item.channel_formats[i].id}: ")
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
