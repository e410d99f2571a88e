"""Importance filtering of render items (BS.2127 importance handling; BS.2076-2 importance).

A renderer asked to render only the content of importance N or above:

* mutes each Objects audioBlockFormat whose ``importance`` is below N (its gain becomes 0, so
  the gains move to silence and back as for any block gain change);
* drops the items whose audioObject importance (the lowest on the object path) is below N;
* drops the items whose audioPackFormat importance (the lowest on the pack path) is below N.

An importance not given counts as the highest. An HOA item is kept when any of its channels
passes (see :class:`adm.items.ItemContext` for how the per-channel values are combined).
DirectSpeakers and HOA block importances are not used, as in BS.2127.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from adm.items import ObjectRenderItem, RenderItem
from adm.model import AdmError, ObjectsBlock

__all__ = ["filter_by_importance"]


def _passes(importance: int | None, threshold: int) -> bool:
    return importance is None or importance >= threshold


def _mute_unimportant_blocks(item: ObjectRenderItem, threshold: int) -> ObjectRenderItem:
    blocks = item.channel_format.blocks
    if all(not isinstance(b, ObjectsBlock) or b.importance >= threshold for b in blocks):
        return item
    muted = tuple(
        replace(b, gain=0.0) if isinstance(b, ObjectsBlock) and b.importance < threshold else b
        for b in blocks
    )
    return replace(item, channel_format=replace(item.channel_format, blocks=muted))


def filter_by_importance(
    items: Sequence[RenderItem], threshold: int
) -> tuple[RenderItem, ...]:
    """The render items (from :func:`adm.items.select_items`) of importance ``threshold`` or
    more, with the less important Objects blocks muted (gain 0).

    ``threshold``: an integer importance (BS.2076: 0 lowest .. 10 highest); 0 keeps
    everything. Items keep their order. Raises :class:`AdmError` for a non-integer threshold.
    """
    if isinstance(threshold, bool) or not isinstance(threshold, int):
        raise AdmError(f"importance threshold must be an integer, got {threshold!r}")
    kept: list[RenderItem] = []
    for item in items:
        context = item.context
        if not (_passes(context.importance, threshold)
                and _passes(context.pack_importance, threshold)):
            continue
        if isinstance(item, ObjectRenderItem):
            item = _mute_unimportant_blocks(item, threshold)
        kept.append(item)
    return tuple(kept)
