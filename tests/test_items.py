"""Tests of rendering item selection (BS.2127 clause 5.2) on hand-built ADM documents."""

from __future__ import annotations

from fractions import Fraction

import pytest

from adm.items import (
    DirectSpeakersRenderItem,
    HoaRenderItem,
    ObjectRenderItem,
    select_items,
)
from adm.model import (
    DEFAULT_SCREEN,
    AdmDocument,
    AdmError,
    AudioChannelFormat,
    AudioContent,
    AudioObject,
    AudioPackFormat,
    AudioProgramme,
    AudioStreamFormat,
    AudioTrackFormat,
    AudioTrackUID,
    BoundedValue,
    DirectSpeakersBlock,
    DirectSpeakersPolarPosition,
    Frequency,
    HoaBlock,
    ObjectsBlock,
    PolarPosition,
    PolarScreen,
    TypeDefinition,
)

OBJ = TypeDefinition.Objects
DS = TypeDefinition.DirectSpeakers
HOA = TypeDefinition.HOA


# --------------------------------------------------------------------------------------------
# Helpers: tiny builders for the model dataclasses
# --------------------------------------------------------------------------------------------


def obj_channel(cid: str, azimuth: float = 0.0) -> AudioChannelFormat:
    block = ObjectsBlock(id=f"AB_{cid[3:]}_00000001", position=PolarPosition(azimuth, 0.0, 1.0))
    return AudioChannelFormat(id=cid, name=cid, type=OBJ, blocks=(block,))


def ds_channel(cid: str, label: str, azimuth: float, lfe: bool = False) -> AudioChannelFormat:
    block = DirectSpeakersBlock(
        id=f"AB_{cid[3:]}_00000001",
        position=DirectSpeakersPolarPosition(BoundedValue(azimuth)),
        speaker_labels=(label,),
    )
    return AudioChannelFormat(
        id=cid, name=label, type=DS, blocks=(block,),
        frequency=Frequency(low_pass=120.0) if lfe else Frequency(), is_common_definition=True,
    )


def hoa_channel(cid: str, order: int, degree: int, **block_kw) -> AudioChannelFormat:
    block = HoaBlock(id=f"AB_{cid[3:]}_00000001", order=order, degree=degree, **block_kw)
    return AudioChannelFormat(id=cid, name=cid, type=HOA, blocks=(block,))


def pack(pid: str, type_: TypeDefinition, channels=(), packs=(), **kw) -> AudioPackFormat:
    return AudioPackFormat(
        id=pid, name=pid, type=type_, channel_format_ids=tuple(channels),
        pack_format_ids=tuple(packs), **kw,
    )


def uid(uid_id: str, index: int | None, channel: str, pack_id: str) -> AudioTrackUID:
    """A track UID referring directly to a channel format (BS.2076-2 style)."""
    return AudioTrackUID(
        id=uid_id, track_index=index, channel_format_id=channel, pack_format_id=pack_id
    )


def obj(oid: str, packs=(), uids=(), **kw) -> AudioObject:
    return AudioObject(
        id=oid, name=oid, pack_format_ids=tuple(packs), track_uid_ids=tuple(uids), **kw
    )


def programme(prid: str, contents, **kw) -> AudioProgramme:
    return AudioProgramme(id=prid, name=prid, content_ids=tuple(contents), **kw)


def content(cid: str, objects) -> AudioContent:
    return AudioContent(id=cid, name=cid, object_ids=tuple(objects))


def mono_object_parts(n: int, track: int | None = None, **obj_kw):
    """Channel, pack, track UID and object of a one-channel Objects object number ``n``."""
    num = 0x1000 + n
    ch = obj_channel(f"AC_0003{num:04X}", azimuth=10.0 * n)
    pk = pack(f"AP_0003{num:04X}", OBJ, [ch.id])
    tu = uid(f"ATU_0000000{n}", n if track is None else track, ch.id, pk.id)
    ob = obj(f"AO_{num:04X}", [pk.id], [tu.id], **obj_kw)
    return ch, pk, tu, ob


def doc_of(*parts_lists, programmes=(), contents=(), extra_objects=(), **kw) -> AdmDocument:
    """Document from lists of (channel, pack, uid, object) tuples plus programmes/contents."""
    chans, packs_, uids_, objs = [], [], [], []
    for ch, pk, tu, ob in parts_lists:
        chans.append(ch)
        packs_.append(pk)
        uids_.append(tu)
        objs.append(ob)
    return AdmDocument(
        programmes=tuple(programmes), contents=tuple(contents),
        objects=tuple(objs) + tuple(extra_objects), pack_formats=tuple(packs_),
        channel_formats=tuple(chans), track_uids=tuple(uids_), source="test.wav", **kw,
    )


def ids(items) -> list[str]:
    return [it.channel_format.id for it in items]


# --------------------------------------------------------------------------------------------
# Basic selection
# --------------------------------------------------------------------------------------------


def test_single_object_item_and_context() -> None:
    parts = mono_object_parts(1, track=3, start=Fraction(1, 2), duration=Fraction(5))
    doc = doc_of(
        parts, programmes=[programme("APR_1001", ["ACO_1001"])],
        contents=[content("ACO_1001", [parts[3].id])],
    )
    (item,) = select_items(doc)
    assert isinstance(item, ObjectRenderItem)
    assert item.track_index == 2  # chna index 3 is the third input channel
    assert item.channel_format is parts[0]
    ctx = item.context
    assert ctx.object_start == Fraction(1, 2)
    assert ctx.object_duration == Fraction(5)
    assert ctx.reference_screen == DEFAULT_SCREEN
    assert ctx.channel_frequency == Frequency()
    assert ctx.pack_absolute_distance is None
    assert ctx.object_gain == 1.0 and ctx.object_mute is False
    assert ctx.object_ids == ("AO_1001",)
    assert ctx.pack_format_ids == ("AP_00031001",)


def test_several_objects_in_content_order() -> None:
    p1, p2, p3 = (mono_object_parts(n) for n in (1, 2, 3))
    doc = doc_of(
        p1, p2, p3, programmes=[programme("APR_1001", ["ACO_1001", "ACO_1002"])],
        contents=[content("ACO_1001", ["AO_1003", "AO_1001"]), content("ACO_1002", ["AO_1002"])],
    )
    items = select_items(doc)
    assert ids(items) == ["AC_00031003", "AC_00031001", "AC_00031002"]
    assert [it.track_index for it in items] == [2, 0, 1]


def test_objects_not_in_programme_are_not_rendered() -> None:
    p1, p2 = mono_object_parts(1), mono_object_parts(2)
    doc = doc_of(
        p1, p2, programmes=[programme("APR_1001", ["ACO_1001"])],
        contents=[content("ACO_1001", ["AO_1002"])],
    )
    assert ids(select_items(doc)) == ["AC_00031002"]


def test_track_uid_through_track_and_stream_format() -> None:
    ch = obj_channel("AC_00031001")
    pk = pack("AP_00031001", OBJ, [ch.id])
    sf = AudioStreamFormat(id="AS_00031001", name="s", channel_format_id=ch.id,
                           track_format_ids=("AT_00031001_01",))
    tf = AudioTrackFormat(id="AT_00031001_01", name="t", stream_format_id=sf.id)
    tu = AudioTrackUID(id="ATU_00000001", track_index=1, track_format_id=tf.id,
                       pack_format_id=pk.id)
    ob = obj("AO_1001", [pk.id], [tu.id])
    doc = AdmDocument(objects=(ob,), pack_formats=(pk,), channel_formats=(ch,),
                      stream_formats=(sf,), track_formats=(tf,), track_uids=(tu,))
    (item,) = select_items(doc)
    assert item.channel_format.id == "AC_00031001" and item.track_index == 0


# --------------------------------------------------------------------------------------------
# DirectSpeakers bed via common-definition-like packs
# --------------------------------------------------------------------------------------------


def bed_doc() -> AdmDocument:
    chans = (
        ds_channel("AC_00010001", "M+030", 30.0),
        ds_channel("AC_00010002", "M-030", -30.0),
        ds_channel("AC_00010004", "LFE", 0.0, lfe=True),
    )
    pk = pack("AP_00010099", DS, [c.id for c in chans], is_common_definition=True)
    # common-definition chain: track format -> stream format -> channel
    streams = tuple(
        AudioStreamFormat(id=f"AS_{c.id[3:]}", name="s", channel_format_id=c.id,
                          is_common_definition=True)
        for c in chans
    )
    tracks = tuple(
        AudioTrackFormat(id=f"AT_{c.id[3:]}_01", name="t", stream_format_id=f"AS_{c.id[3:]}",
                         is_common_definition=True)
        for c in chans
    )
    uids = tuple(
        AudioTrackUID(id=f"ATU_0000000{i + 1}", track_index=i + 1,
                      track_format_id=f"AT_{c.id[3:]}_01", pack_format_id=pk.id)
        for i, c in enumerate(chans)
    )
    # the object lists its tracks in another order than the pack lists its channels
    ob = obj("AO_1001", [pk.id], [uids[2].id, uids[0].id, uids[1].id])
    return AdmDocument(
        programmes=(programme("APR_1001", ["ACO_1001"]),),
        contents=(content("ACO_1001", ["AO_1001"]),), objects=(ob,), pack_formats=(pk,),
        channel_formats=chans, stream_formats=streams, track_formats=tracks, track_uids=uids,
    )


def test_direct_speakers_bed() -> None:
    items = select_items(bed_doc())
    assert all(isinstance(it, DirectSpeakersRenderItem) for it in items)
    # items follow the pack's channel order; each channel gets the track that refers to it
    assert ids(items) == ["AC_00010001", "AC_00010002", "AC_00010004"]
    assert [it.track_index for it in items] == [0, 1, 2]
    assert all(it.pack_is_common_definition for it in items)
    assert items[2].context.channel_frequency == Frequency(low_pass=120.0)
    assert items[0].context.channel_frequency == Frequency()
    assert items[0].context.pack_format_ids == ("AP_00010099",)


def test_chna_only_document_renders_every_track_by_its_pack() -> None:
    full = bed_doc()
    doc = AdmDocument(
        pack_formats=full.pack_formats, channel_formats=full.channel_formats,
        stream_formats=full.stream_formats, track_formats=full.track_formats,
        track_uids=full.track_uids,
    )
    items = select_items(doc)
    assert ids(items) == ["AC_00010001", "AC_00010002", "AC_00010004"]
    assert [it.track_index for it in items] == [0, 1, 2]
    ctx = items[0].context
    assert ctx.object_start is None and ctx.object_ids == () and ctx.object_gain == 1.0
    assert ctx.reference_screen == DEFAULT_SCREEN


# --------------------------------------------------------------------------------------------
# Nested objects, gains, mute, importance
# --------------------------------------------------------------------------------------------


def test_nested_objects_gain_product_mute_and_importance() -> None:
    inner = mono_object_parts(2, gain=0.5, start=Fraction(3), importance=7)
    inner_muted = mono_object_parts(3, mute=True)
    outer = mono_object_parts(1, gain=0.25, start=Fraction(1), importance=4)
    outer = outer[:3] + (
        obj("AO_1001", outer[3].pack_format_ids, outer[3].track_uid_ids, gain=0.25,
            start=Fraction(1), importance=4, object_ids=("AO_1002", "AO_1003")),
    )
    doc = doc_of(
        outer, inner, inner_muted, programmes=[programme("APR_1001", ["ACO_1001"])],
        contents=[content("ACO_1001", ["AO_1001"])],
    )
    items = select_items(doc)
    # depth first: the outer object's own channel, then each nested object
    assert ids(items) == ["AC_00031001", "AC_00031002", "AC_00031003"]
    c_outer, c_inner, c_muted = (it.context for it in items)
    assert c_outer.object_gain == 0.25 and c_outer.object_ids == ("AO_1001",)
    assert c_inner.object_gain == pytest.approx(0.25 * 0.5)
    assert c_inner.object_ids == ("AO_1001", "AO_1002")
    # the innermost object's start applies (BS.2127 uses the object holding the tracks)
    assert c_inner.object_start == Fraction(3)
    assert c_inner.importance == 4  # lowest along the path
    assert c_muted.object_mute is True and c_inner.object_mute is False
    assert c_muted.object_gain == 0.25


def test_muted_outer_object_mutes_nested() -> None:
    inner = mono_object_parts(2)
    outer = ("unused", "unused", "unused", obj("AO_1001", object_ids=("AO_1002",), mute=True))
    doc = AdmDocument(
        programmes=(programme("APR_1001", ["ACO_1001"]),),
        contents=(content("ACO_1001", ["AO_1001"]),),
        objects=(outer[3], inner[3]), pack_formats=(inner[1],), channel_formats=(inner[0],),
        track_uids=(inner[2],),
    )
    (item,) = select_items(doc)
    assert item.context.object_mute is True
    assert item.context.object_ids == ("AO_1001", "AO_1002")


def test_no_programme_uses_root_objects_only_once() -> None:
    inner = mono_object_parts(2)
    outer = mono_object_parts(1)
    outer = outer[:3] + (obj("AO_1001", outer[3].pack_format_ids, outer[3].track_uid_ids,
                             object_ids=("AO_1002",)),)
    # the nested object comes first in the document, but is reached only through AO_1001
    doc = doc_of(inner, outer)
    items = select_items(doc)
    assert ids(items) == ["AC_00031001", "AC_00031002"]
    assert items[1].context.object_ids == ("AO_1001", "AO_1002")


# --------------------------------------------------------------------------------------------
# Complementary objects
# --------------------------------------------------------------------------------------------


def complementary_doc() -> AdmDocument:
    parts = [mono_object_parts(n) for n in (1, 2, 3, 4)]
    leader = parts[0][3]
    parts[0] = parts[0][:3] + (
        obj(leader.id, leader.pack_format_ids, leader.track_uid_ids,
            complementary_object_ids=("AO_1002", "AO_1003")),
    )
    return doc_of(
        *parts, programmes=[programme("APR_1001", ["ACO_1001"])],
        contents=[content("ACO_1001", ["AO_1001", "AO_1002", "AO_1003", "AO_1004"])],
    )


def test_complementary_default_is_group_leader() -> None:
    assert ids(select_items(complementary_doc())) == ["AC_00031001", "AC_00031004"]


def test_complementary_selected_member() -> None:
    items = select_items(complementary_doc(), complementary_object_ids=["AO_1003"])
    assert ids(items) == ["AC_00031003", "AC_00031004"]


def test_complementary_selection_errors() -> None:
    with pytest.raises(AdmError, match="AO_1004 is not in any complementary"):
        select_items(complementary_doc(), complementary_object_ids=["AO_1004"])
    with pytest.raises(AdmError, match="more than one audioObject .* AO_1001: AO_1002, AO_1003"):
        select_items(complementary_doc(), complementary_object_ids=["AO_1002", "AO_1003"])
    with pytest.raises(AdmError, match="AO_9999"):
        select_items(complementary_doc(), complementary_object_ids=["AO_9999"])


# --------------------------------------------------------------------------------------------
# Programme choice
# --------------------------------------------------------------------------------------------


def two_programme_doc() -> AdmDocument:
    p1, p2 = mono_object_parts(1), mono_object_parts(2)
    screen = PolarScreen(1.5, 5.0, 0.0, 1.0, 40.0)
    return doc_of(
        p1, p2,
        programmes=[programme("APR_1002", ["ACO_1002"]),
                    programme("APR_1001", ["ACO_1001"], reference_screen=screen)],
        contents=[content("ACO_1001", ["AO_1001"]), content("ACO_1002", ["AO_1002"])],
    )


def test_programme_by_id() -> None:
    items = select_items(two_programme_doc(), programme_id="APR_1002")
    assert ids(items) == ["AC_00031002"]
    assert items[0].context.reference_screen == DEFAULT_SCREEN


def test_default_programme_is_lowest_id_with_warning() -> None:
    with pytest.warns(UserWarning, match="APR_1001"):
        items = select_items(two_programme_doc())
    assert ids(items) == ["AC_00031001"]
    assert items[0].context.reference_screen == PolarScreen(1.5, 5.0, 0.0, 1.0, 40.0)


def test_programme_id_errors() -> None:
    with pytest.raises(AdmError, match="audioProgramme APR_1005 not found"):
        select_items(two_programme_doc(), programme_id="APR_1005")
    with pytest.raises(AdmError, match="AO_1001 is not an audioProgramme"):
        select_items(two_programme_doc(), programme_id="AO_1001")


# --------------------------------------------------------------------------------------------
# Silent tracks, nested packs, several packs per object
# --------------------------------------------------------------------------------------------


def test_silent_track() -> None:
    c1, c2 = obj_channel("AC_00031001", 30.0), obj_channel("AC_00031002", -30.0)
    pk = pack("AP_00031001", OBJ, [c1.id, c2.id])
    tu = uid("ATU_00000001", 4, c2.id, pk.id)
    ob = obj("AO_1001", [pk.id], ["ATU_00000000", tu.id])
    doc = AdmDocument(objects=(ob,), pack_formats=(pk,), channel_formats=(c1, c2),
                      track_uids=(tu,))
    items = select_items(doc)
    assert ids(items) == ["AC_00031001", "AC_00031002"]
    assert [it.track_index for it in items] == [None, 3]


def nested_pack_doc(track_pack_for_c3: str = "AP_00031002") -> AdmDocument:
    c1, c2, c3 = (obj_channel(f"AC_0003100{i}") for i in (1, 2, 3))
    sub = pack("AP_00031002", OBJ, [c3.id], absolute_distance=3.0, importance=5)
    root = pack("AP_00031001", OBJ, [c1.id, c2.id], packs=[sub.id], importance=8)
    uids = (
        uid("ATU_00000001", 1, c1.id, root.id),
        uid("ATU_00000002", 2, c2.id, root.id),
        uid("ATU_00000003", 3, c3.id, track_pack_for_c3),
    )
    ob = obj("AO_1001", [root.id], [u.id for u in reversed(uids)])
    return AdmDocument(objects=(ob,), pack_formats=(root, sub), channel_formats=(c1, c2, c3),
                       track_uids=uids)


@pytest.mark.parametrize("track_pack", ["AP_00031001", "AP_00031002"])
def test_nested_packs(track_pack: str) -> None:
    """Tracks of a sub-pack's channel may name the sub-pack or the root pack."""
    items = select_items(nested_pack_doc(track_pack))
    assert ids(items) == ["AC_00031001", "AC_00031002", "AC_00031003"]
    assert [it.track_index for it in items] == [0, 1, 2]
    assert items[0].context.pack_format_ids == ("AP_00031001",)
    assert items[2].context.pack_format_ids == ("AP_00031001", "AP_00031002")
    assert items[0].context.pack_absolute_distance is None
    assert items[2].context.pack_absolute_distance == 3.0
    assert items[0].context.pack_importance == 8
    assert items[2].context.pack_importance == 5


def test_two_packs_in_one_object() -> None:
    p1, p2 = mono_object_parts(1), mono_object_parts(2)
    ob = obj("AO_1001", [p2[1].id, p1[1].id], [p1[2].id, p2[2].id])
    doc = AdmDocument(objects=(ob,), pack_formats=(p1[1], p2[1]),
                      channel_formats=(p1[0], p2[0]), track_uids=(p1[2], p2[2]))
    items = select_items(doc)
    assert sorted(ids(items)) == ["AC_00031001", "AC_00031002"]
    by_channel = {it.channel_format.id: it.track_index for it in items}
    assert by_channel == {"AC_00031001": 0, "AC_00031002": 1}


def test_same_pack_twice_with_silent_tracks() -> None:
    """Two references to one mono pack with one real and one silent track: the allocation is
    unique (the silent track fills the second copy)."""
    ch, pk, tu, _ = mono_object_parts(1)
    ob = obj("AO_1001", [pk.id, pk.id], ["ATU_00000000", tu.id])
    doc = AdmDocument(objects=(ob,), pack_formats=(pk,), channel_formats=(ch,),
                      track_uids=(tu,))
    items = select_items(doc)
    assert [it.track_index for it in items] == [0, None]


# --------------------------------------------------------------------------------------------
# HOA
# --------------------------------------------------------------------------------------------


def test_hoa_pack_is_one_item() -> None:
    acn = [(0, 0), (1, -1), (1, 0), (1, 1)]
    chans = tuple(hoa_channel(f"AC_0004100{i + 1}", n, m) for i, (n, m) in enumerate(acn))
    pk = pack("AP_00041001", HOA, [c.id for c in chans], normalization="N3D", nfc_ref_dist=0.0)
    uids = tuple(uid(f"ATU_0000000{i + 1}", i + 5, c.id, pk.id) for i, c in enumerate(chans))
    ob = obj("AO_1001", [pk.id], [uids[0].id, uids[1].id, "ATU_00000000", uids[3].id])
    doc = AdmDocument(objects=(ob,), pack_formats=(pk,), channel_formats=chans,
                      track_uids=uids)
    (item,) = select_items(doc)
    assert isinstance(item, HoaRenderItem)
    assert item.track_indices == (4, 5, None, 7)
    assert item.orders == (0, 1, 1, 1) and item.degrees == (0, -1, 0, 1)
    assert item.normalization == "N3D"
    assert item.nfc_ref_dist is None  # 0 means no near-field compensation
    assert item.screen_ref is False
    assert item.channel_formats == chans
    assert item.context.channel_frequency == Frequency()


def test_hoa_defaults_and_block_level_parameters() -> None:
    chans = (hoa_channel("AC_00041001", 0, 0, nfc_ref_dist=2.0),
             hoa_channel("AC_00041002", 1, -1, nfc_ref_dist=2.0))
    pk = pack("AP_00041001", HOA, [c.id for c in chans])
    uids = tuple(uid(f"ATU_0000000{i + 1}", i + 1, c.id, pk.id) for i, c in enumerate(chans))
    doc = AdmDocument(objects=(obj("AO_1001", [pk.id], [u.id for u in uids]),),
                      pack_formats=(pk,), channel_formats=chans, track_uids=uids)
    (item,) = select_items(doc)
    assert item.normalization == "SN3D" and item.nfc_ref_dist == 2.0


def test_hoa_errors() -> None:
    chans = (hoa_channel("AC_00041001", 1, 0), hoa_channel("AC_00041002", 1, 0))
    pk = pack("AP_00041001", HOA, [c.id for c in chans])
    with pytest.raises(AdmError, match="AP_00041001 has order 1 degree 0 more than once"):
        select_items(AdmDocument(pack_formats=(pk,), channel_formats=chans))
    chans = (hoa_channel("AC_00041001", 0, 0, normalization="N3D"),
             hoa_channel("AC_00041002", 1, 0, normalization="SN3D"))
    with pytest.raises(AdmError, match="AC_00041001 and AC_00041002 have different normaliz"):
        select_items(AdmDocument(pack_formats=(pk,), channel_formats=chans))
    chans = (hoa_channel("AC_00041001", 0, 0, normalization="N3D"), chans[1])
    pk2 = pack("AP_00041001", HOA, [c.id for c in chans], normalization="SN3D")
    with pytest.raises(AdmError, match="conflicting normalization values"):
        select_items(AdmDocument(pack_formats=(pk2,), channel_formats=chans))


# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------


def single_object_doc(ob: AudioObject, *extra_uids: AudioTrackUID) -> AdmDocument:
    c1, c2 = obj_channel("AC_00031001"), obj_channel("AC_00031002")
    c5 = obj_channel("AC_00031005")
    p1 = pack("AP_00031001", OBJ, [c1.id, c2.id])
    p2 = pack("AP_00031002", OBJ, [c5.id])
    uids = (uid("ATU_00000001", 1, c1.id, p1.id), uid("ATU_00000002", 2, c2.id, p1.id))
    return AdmDocument(objects=(ob,), pack_formats=(p1, p2), channel_formats=(c1, c2, c5),
                       track_uids=uids + extra_uids, source="bad.wav")


def test_error_track_channel_not_in_pack() -> None:
    bad = uid("ATU_00000005", 3, "AC_00031005", "AP_00031001")
    ob = obj("AO_1003", ["AP_00031001"], ["ATU_00000001", "ATU_00000005"])
    with pytest.raises(AdmError) as err:
        select_items(single_object_doc(ob, bad))
    msg = str(err.value)
    assert msg.startswith("bad.wav: audioObject AO_1003: conflicting")
    assert "track UID ATU_00000005 refers to channel AC_00031005 which is not in pack " \
           "AP_00031001" in msg


def test_error_track_pack_not_referenced_by_object() -> None:
    other = uid("ATU_00000005", 3, "AC_00031005", "AP_00031002")
    ob = obj("AO_1003", ["AP_00031001"], ["ATU_00000001", "ATU_00000002", "ATU_00000005"])
    with pytest.raises(AdmError, match="ATU_00000005 refers to pack AP_00031002, which the "
                                       "audioObject does not refer to"):
        select_items(single_object_doc(ob, other))


def test_error_too_few_tracks_for_pack() -> None:
    ob = obj("AO_1003", ["AP_00031001"], ["ATU_00000001"])
    with pytest.raises(AdmError, match=r"AO_1003: conflicting.*have 2 channels but it refers "
                                       r"to 1 track UIDs"):
        select_items(single_object_doc(ob))
    with pytest.raises(AdmError, match=r"^other\.wav: audioObject AO_1003"):
        select_items(single_object_doc(ob), source="other.wav")


def test_error_pack_without_tracks() -> None:
    ob = obj("AO_1003", ["AP_00031001"], [])
    with pytest.raises(AdmError, match="refers to audioPackFormats but to no audioTrackUID"):
        select_items(single_object_doc(ob))


def test_error_ambiguous_in_chna_mode() -> None:
    """A track naming a pack that is also nested in another pack could belong to either."""
    ch = obj_channel("AC_00031001")
    inner = pack("AP_00031001", OBJ, [ch.id])
    outer = pack("AP_00031002", OBJ, packs=[inner.id])
    tu = uid("ATU_00000001", 1, ch.id, inner.id)
    doc = AdmDocument(pack_formats=(inner, outer), channel_formats=(ch,), track_uids=(tu,))
    with pytest.raises(AdmError, match="the chna chunk: ambiguous"):
        select_items(doc)


def test_error_track_without_index_and_missing_reference() -> None:
    ob = obj("AO_1003", ["AP_00031001"], ["ATU_00000001", "ATU_00000009"])
    no_index = uid("ATU_00000009", None, "AC_00031002", "AP_00031001")
    with pytest.raises(AdmError, match="ATU_00000009 has no track index"):
        select_items(single_object_doc(ob, no_index))
    with pytest.raises(AdmError, match="missing element ATU_00000009.*AO_1003"):
        select_items(single_object_doc(ob))


def test_error_binaural_and_bad_matrix() -> None:
    ch = AudioChannelFormat(id="AC_00050001", name="L", type=TypeDefinition.Binaural)
    pk = pack("AP_00050001", TypeDefinition.Binaural, [ch.id])
    tu = uid("ATU_00000001", 1, ch.id, pk.id)
    doc = AdmDocument(objects=(obj("AO_1001", [pk.id], [tu.id]),), pack_formats=(pk,),
                      channel_formats=(ch,), track_uids=(tu,))
    with pytest.raises(AdmError, match=r"Binaural content is not rendered to loudspeakers "
                                       r"\(audioObject AO_1001, pack AP_00050001\)"):
        select_items(doc)

    ch = AudioChannelFormat(id="AC_00021001", name="M", type=TypeDefinition.Matrix)
    pk = pack("AP_00021001", TypeDefinition.Matrix, [ch.id], output_pack_format_id="AP_1")
    tu = uid("ATU_00000001", 1, ch.id, pk.id)
    doc = AdmDocument(objects=(obj("AO_1001", [pk.id], [tu.id]),), pack_formats=(pk,),
                      channel_formats=(ch,), track_uids=(tu,))
    # a Matrix channel needs exactly one block (the coefficients)
    with pytest.raises(AdmError, match=r"Matrix audioChannelFormat AC_00021001 must have "
                                       r"exactly one audioBlockFormat"):
        select_items(doc)


def test_error_structure() -> None:
    a = obj("AO_1001", object_ids=("AO_1002",))
    b = obj("AO_1002", object_ids=("AO_1001",))
    with pytest.raises(AdmError, match="loop in audioObject references: AO_1001 -> AO_1002 -> "
                                       "AO_1001"):
        select_items(AdmDocument(objects=(a, b)))

    ch = obj_channel("AC_00031001")
    pk = pack("AP_00011001", DS, [ch.id])
    with pytest.raises(AdmError, match="AP_00011001 has type DirectSpeakers but contains "
                                       "audioChannelFormat AC_00031001 of type Objects"):
        select_items(AdmDocument(pack_formats=(pk,), channel_formats=(ch,)))

    twice = pack("AP_00031001", OBJ, [ch.id, ch.id])
    with pytest.raises(AdmError, match="AC_00031001 is included more than once in "
                                       "audioPackFormat AP_00031001"):
        select_items(AdmDocument(pack_formats=(twice,), channel_formats=(ch,)))

    p1 = pack("AP_00031001", OBJ, packs=["AP_00031002"])
    p2 = pack("AP_00031002", OBJ, packs=["AP_00031001"])
    with pytest.raises(AdmError, match="loop in audioPackFormat references"):
        select_items(AdmDocument(pack_formats=(p1, p2)))
