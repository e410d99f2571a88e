"""Importance filtering (``--importance N``): objects, packs and Objects blocks."""

from __future__ import annotations

import dataclasses
from fractions import Fraction

import numpy as np
import pytest

from adm.builder import AdmBuilder, ObjectsBlockSpec, write_adm_bwf
from adm.importance import filter_by_importance
from adm.items import (
    DirectSpeakersRenderItem,
    HoaRenderItem,
    ItemContext,
    ObjectRenderItem,
    select_items,
)
from adm.model import (
    DEFAULT_SCREEN,
    AdmError,
    AudioChannelFormat,
    BoundedValue,
    DirectSpeakersBlock,
    DirectSpeakersPolarPosition,
    Frequency,
    ObjectsBlock,
    PolarPosition,
    TypeDefinition,
)


def context(importance=None, pack_importance=None) -> ItemContext:
    return ItemContext(object_start=None, object_duration=None, reference_screen=DEFAULT_SCREEN,
                       channel_frequency=Frequency(), pack_absolute_distance=None,
                       importance=importance, pack_importance=pack_importance)


def object_item(track, importance=None, pack_importance=None, block_importances=(10,)):
    blocks = tuple(
        ObjectsBlock(id=f"AB_00031001_{i + 1:08X}", position=PolarPosition(0.0),
                     rtime=Fraction(i), duration=Fraction(1), importance=imp, gain=0.5)
        for i, imp in enumerate(block_importances)
    )
    channel = AudioChannelFormat("AC_00031001", "obj", TypeDefinition.Objects, blocks)
    return ObjectRenderItem(track, channel, context(importance, pack_importance))


def direct_item(track, block_importance=10, importance=None):
    block = DirectSpeakersBlock(id="AB_00011001_00000001",
                                position=DirectSpeakersPolarPosition(BoundedValue(30.0)),
                                speaker_labels=("M+030",), importance=block_importance)
    channel = AudioChannelFormat("AC_00011001", "L", TypeDefinition.DirectSpeakers, (block,))
    return DirectSpeakersRenderItem(track, channel, context(importance))


def test_object_importance_drops_items_below_threshold():
    items = (object_item(0, importance=3), object_item(1, importance=5),
             object_item(2, importance=None), object_item(3, importance=9))
    kept = filter_by_importance(items, 5)
    assert [i.track_index for i in kept] == [1, 2, 3]  # 5 is kept, not given = most important
    assert filter_by_importance(items, 0) == items
    assert [i.track_index for i in filter_by_importance(items, 10)] == [2]


def test_pack_importance_drops_items_below_threshold():
    items = (object_item(0, pack_importance=2), direct_item(1),
             object_item(2, importance=8, pack_importance=6))
    assert [i.track_index for i in filter_by_importance(items, 6)] == [1, 2]
    assert [i.track_index for i in filter_by_importance(items, 7)] == [1]


def test_objects_blocks_below_threshold_are_muted():
    item = object_item(0, block_importances=(10, 2, 7))
    (kept,) = filter_by_importance((item,), 5)
    gains = [b.gain for b in kept.channel_format.blocks]
    assert gains == [0.5, 0.0, 0.5]
    # everything else about the blocks is unchanged
    for old, new in zip(item.channel_format.blocks, kept.channel_format.blocks, strict=True):
        assert dataclasses.replace(new, gain=old.gain) == old
    # DirectSpeakers block importance is not used
    ds = direct_item(1, block_importance=1)
    assert filter_by_importance((ds,), 5) == (ds,)


def test_hoa_item_kept_while_any_channel_passes():
    builder = AdmBuilder()
    builder.add_hoa("amb", 1, [1, 2, 3, 4])
    doc, _ = builder.build()
    doc = dataclasses.replace(doc, pack_formats=tuple(
        dataclasses.replace(p, importance=4) if p.type == TypeDefinition.HOA else p
        for p in doc.pack_formats))
    (item,) = select_items(doc)
    assert isinstance(item, HoaRenderItem)
    assert filter_by_importance((item,), 4) == (item,)
    assert filter_by_importance((item,), 5) == ()


def test_bad_threshold():
    with pytest.raises(AdmError, match="must be an integer"):
        filter_by_importance((), 2.5)  # type: ignore[arg-type]


def test_render_file_with_importance(tmp_path):
    """Two objects on the stereo loudspeakers: the less important one is not rendered, and a
    block below the threshold (jumpPosition, no interpolation) is silent."""
    import soundfile as sf

    from renderer.render import render_file

    sr = 48000
    builder = AdmBuilder()
    builder.add_object("keep", [
        ObjectsBlockSpec((30.0, 0.0), rtime="0", duration="0.05", jump=True),
        ObjectsBlockSpec((30.0, 0.0), rtime="0.05", duration="0.05", jump=True, importance=2),
    ], 1, duration="0.1", importance=8)
    builder.add_object("drop", [ObjectsBlockSpec((-30.0, 0.0))], 2, importance=3)
    doc, chna = builder.build()
    n = sr // 10
    rng = np.random.default_rng(1)
    audio = rng.uniform(-0.5, 0.5, (n, 2))
    source = tmp_path / "in.wav"
    write_adm_bwf(source, audio, sr, doc, chna, bit_depth=32, sample_format="float")

    out = tmp_path / "out.wav"
    render_file(source, out, "0+2+0", importance_threshold=5)
    rendered, _ = sf.read(out, dtype="float64")
    half = n // 2
    np.testing.assert_allclose(rendered[:half, 0], audio[:half, 0], atol=1e-6)
    np.testing.assert_array_equal(rendered[half:, 0], 0.0)
    np.testing.assert_array_equal(rendered[:, 1], 0.0)

    render_file(source, out, "0+2+0")  # no threshold: both objects, both blocks
    rendered, _ = sf.read(out, dtype="float64")
    np.testing.assert_allclose(rendered, audio, atol=1e-6)
