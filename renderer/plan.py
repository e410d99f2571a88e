"""Gain plan: render items -> segments of per-track gain functions (arrays only).

This is the boundary between metadata and audio: the engine mixes the audio with the plan and
never sees ADM. Objects gains are computed for all blocks of all items in one batched JAX call
(:func:`renderer.objects.object_block_gains`); DirectSpeakers gains per channel
(:mod:`renderer.direct_speakers`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from adm.columns import ObjectsBlockColumns
from adm.items import DirectSpeakersRenderItem, HoaRenderItem, ObjectRenderItem
from adm.model import DEFAULT_SCREEN, ObjectsBlock, Screen
from layouts.model import Layout
from renderer.direct_speakers import configure_direct_speakers, direct_speakers_gains
from renderer.hoa import hoa_warnings
from renderer.matrix import DelayedTracks, hoa_item_segments, item_inputs
from renderer.objects import configure_objects, direct_diffuse_split, object_block_gains
from renderer.timing import Segments, block_timings, segments_for_track


@dataclass(frozen=True)
class GainPlan:
    """Everything the engine needs: segments over ``n_outputs`` channels, and notes for the user.

    With ``diffuse`` set, the segments' gains have ``2 * n_outputs`` columns: the direct
    loudspeaker signals, then the diffuse ones, which the render decorrelates (BS.2127
    diffuse path) before adding them to the direct ones.
    """

    segments: Segments
    n_outputs: int
    warnings: tuple[str, ...] = field(default=())
    diffuse: bool = False
    delayed_tracks: tuple[tuple[int, int], ...] = ()  # (file track, delay samples): see matrix


def _pad(gains: np.ndarray) -> np.ndarray:
    """(S, n) gains -> (S, 2n) with zero diffuse gains."""
    return np.concatenate([gains, np.zeros_like(gains)], axis=1)


def _item_segments(item, gains: np.ndarray, sample_rate: int, where: str,
                   delayed: DelayedTracks | None, interpolate: bool) -> list[Segments]:
    """Segments of one Objects or DirectSpeakers item: its blocks' timing applied to
    ``gains`` (B, n) on each track feeding it (one, or a Matrix mix with gains); [] if silent.
    """
    inputs = item_inputs(item, sample_rate, where, delayed)
    if not inputs:
        return []
    channel = item.channel_format
    timings = block_timings(channel.blocks, sample_rate, item.context.object_start,
                            item.context.object_duration, interpolate=interpolate,
                            where=f"{where}audioChannelFormat {channel.id}: ")
    return [segments_for_track(track, timings, gains * np.float32(g)) for track, g in inputs]


OBJECT_GROUP_BLOCKS = 32768
"""Objects blocks whose gains are computed together (bounds the plan's working memory)."""


def _groups(items: Sequence, limit: int) -> list[list]:
    """``items`` in consecutive groups of at most ``limit`` blocks (an item with more blocks
    is a group of its own)."""
    groups: list[list] = [[]]
    count = 0
    for item in items:
        n = len(item.channel_format.blocks)
        if groups[-1] and count + n > limit:
            groups.append([])
            count = 0
        groups[-1].append(item)
        count += n
    return groups


def _joined_blocks(parts: Sequence[Sequence[ObjectsBlock]]) -> Sequence[ObjectsBlock]:
    """The Objects blocks of several channels one after the other: as columns when every
    channel holds its blocks so (:mod:`adm.columns`), else as a list."""
    if parts and all(isinstance(p, ObjectsBlockColumns) for p in parts):
        try:
            return ObjectsBlockColumns.concatenate(parts)  # type: ignore[arg-type]
        except OverflowError:  # no common tick in 63 bits: the gains do not need times
            pass
    return [block for blocks in parts for block in blocks]


def _object_scale(item) -> float:
    context = item.context
    return 0.0 if context.object_mute else context.object_gain


def build_gain_plan(
    items: Sequence, layout: Layout, sample_rate: int, source: str = "",
    screen: Screen | None = DEFAULT_SCREEN, n_tracks: int | None = None,
) -> GainPlan:
    """Gain plan for ``items`` (from :func:`adm.items.select_items`) rendered to ``layout``,
    whose reproduction screen is ``screen`` (None: no screen; screenRef and screenEdgeLock
    then leave positions unchanged). ``n_tracks``: the file's track count, needed only for
    Matrix coefficient delays (delayed copies of tracks are numbered after the file's)."""
    where = f"{source}: " if source else ""
    n_out = layout.n_channels
    has_diffuse = False
    delayed = DelayedTracks(n_tracks) if n_tracks is not None else None
    parts: list[Segments] = []
    loudspeaker_only: list[Segments] = []
    warnings: list[str] = []

    object_items = [i for i in items if isinstance(i, ObjectRenderItem)]
    direct_items = [i for i in items if isinstance(i, DirectSpeakersRenderItem)]
    hoa_items = [i for i in items if isinstance(i, HoaRenderItem)]

    if object_items:
        panner = configure_objects(layout)
        messages: list[str] = []
        # items in groups of about OBJECT_GROUP_BLOCKS blocks: the gains of one group are
        # computed in one batch and turned into segments before the next group, so the
        # working memory does not grow with the file
        for group in _groups(object_items, OBJECT_GROUP_BLOCKS):
            group_blocks = _joined_blocks([item.channel_format.blocks for item in group])
            group_scale = np.repeat([_object_scale(item) for item in group],
                                    [len(item.channel_format.blocks) for item in group])
            gains = object_block_gains(panner, group_blocks, group_scale,
                                       reference_screen=object_items[0].context.reference_screen,
                                       reproduction_screen=screen,
                                       messages=messages)
            direct, diffuse = direct_diffuse_split(gains, group_blocks)
            del gains
            group_diffuse = bool(np.any(diffuse))
            has_diffuse |= group_diffuse
            gains = np.concatenate([direct, diffuse], axis=1) if group_diffuse else direct
            del direct, diffuse
            offset = 0
            for item in group:
                n = len(item.channel_format.blocks)
                item_parts = _item_segments(item, gains[offset:offset + n], sample_rate, where,
                                            delayed, interpolate=True)
                offset += n
                (parts if group_diffuse else loudspeaker_only).extend(item_parts)
        warnings.extend(f"{where}{m}" for m in dict.fromkeys(messages))

    if direct_items:
        ds_panner = configure_direct_speakers(layout, screen=screen)
        for item in direct_items:
            if item.track_index is None and item.track_mix is None:
                continue  # silent
            blocks = item.channel_format.blocks
            scale = _object_scale(item)
            gains = np.array([
                direct_speakers_gains(
                    ds_panner, block, item.channel_format.frequency,
                    item.context.pack_format_ids,
                    pack_is_common_definition=item.pack_is_common_definition,
                ) * block.gain * scale
                for block in blocks
            ]).reshape(len(blocks), n_out)
            loudspeaker_only.extend(_item_segments(item, gains, sample_rate, where, delayed,
                                                   interpolate=False))

    for item in hoa_items:
        loudspeaker_only.append(hoa_item_segments(item, layout, sample_rate, where=where,
                                                  delayed=delayed))
        warnings.extend(f"{where}{note}" for note in hoa_warnings(item))

    if has_diffuse:  # DirectSpeakers and HOA have no diffuse part
        loudspeaker_only = [replace(p, gains_from=_pad(p.gains_from), gains_to=_pad(p.gains_to))
                            for p in loudspeaker_only]
    parts.extend(loudspeaker_only)
    width = 2 * n_out if has_diffuse else n_out
    return GainPlan(segments=Segments.concatenate(parts, width), n_outputs=n_out,
                    warnings=tuple(warnings), diffuse=has_diffuse,
                    delayed_tracks=tuple(delayed.delays) if delayed is not None else ())
