"""Tests for adm.builder (ADM authoring) and adm.xml_write (BS.2076-2 serialisation).

Expected XML values are written out by hand from the scene definitions and BS.2076-2's
element/attribute names; round trips go through the independent reader adm.xml.
"""

from __future__ import annotations

import dataclasses
import importlib.util
from fractions import Fraction

import numpy as np
import pytest
from lxml import etree

from adm.builder import (
    ATMOS_BED_7_1_2,
    AdmBuilder,
    ObjectsBlockSpec,
    write_adm_bwf,
)
from adm.model import (
    AdmDocument,
    AdmError,
    AudioChannelFormat,
    AudioPackFormat,
    AudioStreamFormat,
    AudioTrackFormat,
    BoundedValue,
    CartesianPosition,
    CartesianScreen,
    CartesianZone,
    ChannelLock,
    DirectSpeakersBlock,
    DirectSpeakersPolarPosition,
    JumpPosition,
    LoudnessMetadata,
    MatrixBlock,
    MatrixCoefficient,
    ObjectDivergence,
    ObjectsBlock,
    PolarPosition,
    PolarZone,
    ScreenEdgeLock,
    TypeDefinition,
)
from adm.xml_write import adm_to_xml, format_adm_time

NS = {"a": "urn:ebu:metadata-schema:ebuCore_2016"}
HAVE_READER = importlib.util.find_spec("adm.xml") is not None
needs_reader = pytest.mark.skipif(not HAVE_READER, reason="adm.xml reader not available yet")

GROUPS = ("programmes", "contents", "objects", "pack_formats", "channel_formats",
          "stream_formats", "track_formats", "track_uids")


def _afx(doc: AdmDocument) -> etree._Element:
    root = etree.fromstring(adm_to_xml(doc))
    (afx,) = root.xpath("/a:ebuCoreMain/a:coreMetadata/a:format/a:audioFormatExtended",
                        namespaces=NS)
    return afx


def _x(el: etree._Element, path: str) -> list:
    return el.xpath(path, namespaces=NS)


def _local(el: etree._Element) -> str:
    return etree.QName(el).localname


def _own(doc: AdmDocument) -> dict[str, tuple]:
    """The document's elements minus common definitions, track indices cleared."""
    out = {}
    for group in GROUPS:
        elements = [e for e in getattr(doc, group)
                    if not getattr(e, "is_common_definition", False)]
        if group == "track_uids":
            elements = [dataclasses.replace(e, track_index=None) for e in elements]
        out[group] = tuple(elements)
    return out


def _small_scene() -> AdmBuilder:
    """Bed of 2 custom speakers on tracks 1-2, a moving polar object on 3, a cartesian
    object on 4 (Atmos-like)."""
    b = AdmBuilder("Demo")
    b.add_direct_speakers("bed", [1, 2], channels=[("M+030", 30.0, 0.0), ("M-030", -30.0, 0.0)])
    b.add_object(
        "fly", [ObjectsBlockSpec((30.0, 10.0), rtime=0, duration=Fraction(1, 2), width=20.0),
                ObjectsBlockSpec((-30.0, 0.0, 0.5), gain=0.5)],
        track_index=3, duration=Fraction(3, 2),
    )
    b.add_object(
        "cart", [ObjectsBlockSpec(CartesianPosition(0.25, -0.5, 1.0), depth=0.5,
                                  jump=True, interpolation_length=0)],
        track_index=4, start=Fraction(1, 4), gain=0.5, mute=True,
    )
    return b


# --------------------------------------------------------------------------------------------
# time formatting
# --------------------------------------------------------------------------------------------


def test_format_adm_time_decimal_and_sample_forms() -> None:
    assert format_adm_time(Fraction(0)) == "00:00:00.00000"
    assert format_adm_time(Fraction(3723, 1) + Fraction(1, 4)) == "01:02:03.25000"
    # 1/48000 s is not a 5-decimal value; 48 kHz is the smallest usual rate making it exact
    assert format_adm_time(Fraction(3661) + Fraction(7, 48000)) == "01:01:01.00007S48000"
    assert format_adm_time(Fraction(1, 44100)) == "00:00:00.00001S44100"
    with pytest.raises(AdmError, match="AB_X"):
        format_adm_time(Fraction(-1), "AB_X")


# --------------------------------------------------------------------------------------------
# XML of a known scene
# --------------------------------------------------------------------------------------------


def test_small_scene_xml_structure() -> None:
    doc, _ = _small_scene().build()
    root = etree.fromstring(adm_to_xml(doc))
    assert root.tag == "{urn:ebu:metadata-schema:ebuCore_2016}ebuCoreMain"
    afx = _afx(doc)
    assert afx.get("version") == "ITU-R_BS.2076-2"
    assert [_local(c) for c in afx] == (
        ["audioProgramme", "audioContent"] + ["audioObject"] * 3 + ["audioPackFormat"] * 3
        + ["audioChannelFormat"] * 4 + ["audioStreamFormat"] * 4 + ["audioTrackFormat"] * 4
        + ["audioTrackUID"] * 4
    )
    (prog,) = _x(afx, "a:audioProgramme")
    assert dict(prog.attrib) == {"audioProgrammeID": "APR_1001", "audioProgrammeName": "Demo"}
    assert _x(prog, "a:audioContentIDRef/text()") == ["ACO_1001"]
    assert _x(afx, "a:audioContent/a:audioObjectIDRef/text()") == ["AO_1001", "AO_1002",
                                                                    "AO_1003"]
    # objects
    bed, fly, cart = _x(afx, "a:audioObject")
    assert dict(bed.attrib) == {"audioObjectID": "AO_1001", "audioObjectName": "bed"}
    assert _x(bed, "a:audioPackFormatIDRef/text()") == ["AP_00011001"]
    assert _x(bed, "a:audioTrackUIDRef/text()") == ["ATU_00000001", "ATU_00000002"]
    assert [_local(c) for c in bed] == ["audioPackFormatIDRef"] + ["audioTrackUIDRef"] * 2
    assert fly.get("duration") == "00:00:01.50000" and fly.get("start") is None
    assert _x(fly, "a:audioPackFormatIDRef/text()") == ["AP_00031002"]
    assert _x(fly, "a:gain") == [] and _x(fly, "a:mute") == []
    assert cart.get("start") == "00:00:00.25000" and cart.get("duration") is None
    assert _x(cart, "a:gain/text()") == ["0.5"] and _x(cart, "a:mute/text()") == ["1"]
    assert _x(cart, "a:audioTrackUIDRef/text()") == ["ATU_00000004"]


def test_small_scene_block_xml() -> None:
    doc, _ = _small_scene().build()
    afx = _afx(doc)
    (fly,) = _x(afx, "a:audioChannelFormat[@audioChannelFormatID='AC_00031003']")
    assert fly.get("typeLabel") == "0003" and fly.get("typeDefinition") == "Objects"
    assert fly.get("audioChannelFormatName") == "fly"
    b1, b2 = _x(fly, "a:audioBlockFormat")
    assert dict(b1.attrib) == {"audioBlockFormatID": "AB_00031003_00000001",
                               "rtime": "00:00:00.00000", "duration": "00:00:00.50000"}
    assert [(p.get("coordinate"), p.text) for p in _x(b1, "a:position")] == [
        ("azimuth", "30.0"), ("elevation", "10.0"), ("distance", "1.0")]
    assert [_local(c) for c in b1] == ["position"] * 3 + ["width"]
    assert _x(b1, "a:width/text()") == ["20.0"]
    # second block: rtime follows the first, duration runs to the object's end (1.5 s)
    assert dict(b2.attrib) == {"audioBlockFormatID": "AB_00031003_00000002",
                               "rtime": "00:00:00.50000", "duration": "00:00:01.00000"}
    assert [(p.get("coordinate"), p.text) for p in _x(b2, "a:position")] == [
        ("azimuth", "-30.0"), ("elevation", "0.0"), ("distance", "0.5")]
    assert [_local(c) for c in b2] == ["position"] * 3 + ["gain"]
    assert _x(b2, "a:gain/text()") == ["0.5"]

    (cart,) = _x(afx, "a:audioChannelFormat[@audioChannelFormatID='AC_00031004']/"
                      "a:audioBlockFormat")
    assert dict(cart.attrib) == {"audioBlockFormatID": "AB_00031004_00000001"}
    assert [(p.get("coordinate"), p.text) for p in _x(cart, "a:position")] == [
        ("X", "0.25"), ("Y", "-0.5"), ("Z", "1.0")]
    assert [_local(c) for c in cart] == ["position"] * 3 + ["cartesian", "depth",
                                                            "jumpPosition"]
    assert _x(cart, "a:cartesian/text()") == ["1"]
    (jump,) = _x(cart, "a:jumpPosition")
    assert jump.text == "1" and jump.get("interpolationLength") == "0"

    (left,) = _x(afx, "a:audioChannelFormat[@audioChannelFormatID='AC_00011001']/"
                      "a:audioBlockFormat")
    assert [_local(c) for c in left] == ["speakerLabel"] + ["position"] * 3
    assert _x(left, "a:speakerLabel/text()") == ["M+030"]
    assert _x(left, "a:position[@coordinate='azimuth']/text()") == ["30.0"]


def test_small_scene_formats_and_uids_xml() -> None:
    doc, _ = _small_scene().build()
    afx = _afx(doc)
    (stream,) = _x(afx, "a:audioStreamFormat[@audioStreamFormatID='AS_00031003']")
    assert stream.get("formatLabel") == "0001" and stream.get("formatDefinition") == "PCM"
    assert _x(stream, "a:audioChannelFormatIDRef/text()") == ["AC_00031003"]
    assert _x(stream, "a:audioTrackFormatIDRef/text()") == ["AT_00031003_01"]
    (track,) = _x(afx, "a:audioTrackFormat[@audioTrackFormatID='AT_00031003_01']")
    assert _x(track, "a:audioStreamFormatIDRef/text()") == ["AS_00031003"]
    (uid,) = _x(afx, "a:audioTrackUID[@UID='ATU_00000003']")
    assert _x(uid, "a:audioTrackFormatIDRef/text()") == ["AT_00031003_01"]
    assert _x(uid, "a:audioPackFormatIDRef/text()") == ["AP_00031002"]
    (pack,) = _x(afx, "a:audioPackFormat[@audioPackFormatID='AP_00011001']")
    assert pack.get("typeDefinition") == "DirectSpeakers" and pack.get("typeLabel") == "0001"
    assert _x(pack, "a:audioChannelFormatIDRef/text()") == ["AC_00011001", "AC_00011002"]


def test_all_objects_block_options_are_written() -> None:
    block = ObjectsBlock(
        id="AB_00031001_00000001",
        position=PolarPosition(-110.0, 15.5, 0.75),
        rtime=Fraction(1, 48000), duration=Fraction(251, 48000),
        width=10.0, height=5.0, depth=0.25, gain=0.1, diffuse=0.3,
        channel_lock=ChannelLock(True, 0.5),
        object_divergence=ObjectDivergence(0.5, azimuth_range=30.0),
        jump_position=JumpPosition(True, Fraction(250, 48000)),
        screen_ref=True, screen_edge_lock=ScreenEdgeLock("left", "top"), importance=7,
        zone_exclusion=(PolarZone(-10.0, 10.0, 100.0, 120.0, "rear"),
                        CartesianZone(-1.0, 0.0, -1.0, 1.0, 0.0, 1.0)),
        head_locked=True,
    )
    doc = AdmDocument(channel_formats=(AudioChannelFormat(
        "AC_00031001", "o", TypeDefinition.Objects, blocks=(block,)),))
    (el,) = _x(_afx(doc), "a:audioChannelFormat/a:audioBlockFormat")
    assert el.get("rtime") == "00:00:00.00001S48000"
    assert el.get("duration") == "00:00:00.00251S48000"
    pos = {p.get("coordinate"): (p.text, p.get("screenEdgeLock")) for p in _x(el, "a:position")}
    assert pos == {"azimuth": ("-110.0", "left"), "elevation": ("15.5", "top"),
                   "distance": ("0.75", None)}
    values = {_local(c): c.text for c in el if _local(c) not in ("position", "zoneExclusion")}
    assert values == {"width": "10.0", "height": "5.0", "depth": "0.25", "gain": "0.1",
                      "diffuse": "0.3", "channelLock": "1", "objectDivergence": "0.5",
                      "jumpPosition": "1", "screenRef": "1", "importance": "7",
                      "headLocked": "1"}
    assert _x(el, "a:channelLock/@maxDistance") == ["0.5"]
    assert _x(el, "a:objectDivergence/@azimuthRange") == ["30.0"]
    assert _x(el, "a:objectDivergence/@positionRange") == []
    # 250/48000 s has no finite decimal expansion: written to 12 decimals
    assert _x(el, "a:jumpPosition/@interpolationLength") == ["0.005208333333"]
    z1, z2 = _x(el, "a:zoneExclusion/a:zone")
    assert dict(z1.attrib) == {"minElevation": "-10.0", "maxElevation": "10.0",
                               "minAzimuth": "100.0", "maxAzimuth": "120.0"}
    assert z1.text == "rear"
    assert dict(z2.attrib) == {"minX": "-1.0", "maxX": "0.0", "minY": "-1.0", "maxY": "1.0",
                               "minZ": "0.0", "maxZ": "1.0"}
    assert z2.text is None


def test_direct_speakers_bounds_matrix_hoa_pack_and_programme_extras() -> None:
    ds = DirectSpeakersBlock(
        "AB_00011001_00000001",
        DirectSpeakersPolarPosition(BoundedValue(30.0, min=22.5, max=45.0)),
        speaker_labels=("M+030", "L"), gain=0.5,
    )
    mx = MatrixBlock("AB_00021001_00000001", coefficients=(
        MatrixCoefficient("AC_00010001", gain=0.5, phase_var="p"),
        MatrixCoefficient("AC_00010002", delay=2.0)), output_channel_format_id="AC_00010003")
    hoa_pack = AudioPackFormat("AP_00041001", "h", TypeDefinition.HOA, normalization="N3D",
                               nfc_ref_dist=2.0, screen_ref=False, importance=3)
    common_pack = AudioPackFormat("AP_00010002", "stereo", TypeDefinition.DirectSpeakers,
                                  is_common_definition=True)
    doc = AdmDocument(
        pack_formats=(common_pack, hoa_pack),
        channel_formats=(
            AudioChannelFormat("AC_00011001", "L", TypeDefinition.DirectSpeakers, (ds,)),
            AudioChannelFormat("AC_00021001", "m", TypeDefinition.Matrix, (mx,)),
        ),
    )
    afx = _afx(doc)
    assert _x(afx, "a:audioPackFormat/@audioPackFormatID") == ["AP_00041001"]
    (p,) = _x(afx, "a:audioPackFormat")
    assert p.get("importance") == "3"
    assert {_local(c): c.text for c in p} == {"normalization": "N3D", "nfcRefDist": "2.0",
                                              "screenRef": "0"}
    b_ds, b_mx = _x(afx, "a:audioChannelFormat/a:audioBlockFormat")
    assert _x(b_ds, "a:speakerLabel/text()") == ["M+030", "L"]
    assert [(e.get("coordinate"), e.get("bound"), e.text) for e in _x(b_ds, "a:position")] == [
        ("azimuth", None, "30.0"), ("azimuth", "max", "45.0"), ("azimuth", "min", "22.5"),
        ("elevation", None, "0.0"), ("distance", None, "1.0")]
    assert _x(b_ds, "a:gain/text()") == ["0.5"]
    assert _x(b_mx, "a:outputChannelFormatIDRef/text()") == ["AC_00010003"]
    c1, c2 = _x(b_mx, "a:matrix/a:coefficient")
    assert (c1.text, dict(c1.attrib)) == ("AC_00010001", {"gain": "0.5", "phaseVar": "p"})
    assert (c2.text, dict(c2.attrib)) == ("AC_00010002", {"delay": "2.0"})

    b = AdmBuilder(None)
    b.add_programme("P", start=0, end=Fraction(10), language="en",
                    reference_screen=CartesianScreen(1.78, 0.0, 1.0, 0.0, 1.0),
                    loudness=[LoudnessMetadata(method="ITU-R BS.1770",
                                               integrated_loudness=-23.0)])
    doc2, _ = b.build()
    (prog,) = _x(_afx(doc2), "a:audioProgramme")
    assert dict(prog.attrib) == {"audioProgrammeID": "APR_1001", "audioProgrammeName": "P",
                                 "audioProgrammeLanguage": "en", "start": "00:00:00.00000",
                                 "end": "00:00:10.00000"}
    assert _x(prog, "a:loudnessMetadata/@loudnessMethod") == ["ITU-R BS.1770"]
    assert _x(prog, "a:loudnessMetadata/a:integratedLoudness/text()") == ["-23.0"]
    (centre,) = _x(prog, "a:audioProgrammeReferenceScreen/a:screenCentrePosition")
    assert dict(centre.attrib) == {"X": "0.0", "Y": "1.0", "Z": "0.0"}
    assert _x(prog, "a:audioProgrammeReferenceScreen/a:screenWidth/@X") == ["1.0"]


def test_writer_rejects_flag_position_mismatch() -> None:
    block = ObjectsBlock("AB_00031001_00000001", PolarPosition(0.0), cartesian=True)
    doc = AdmDocument(channel_formats=(AudioChannelFormat(
        "AC_00031001", "o", TypeDefinition.Objects, blocks=(block,)),))
    with pytest.raises(AdmError, match="AB_00031001_00000001"):
        adm_to_xml(doc)


# --------------------------------------------------------------------------------------------
# builder: IDs, references, chna
# --------------------------------------------------------------------------------------------


def test_ids_references_and_chna_are_consistent() -> None:
    doc, chna = _small_scene().build()
    assert [o.id for o in doc.objects] == ["AO_1001", "AO_1002", "AO_1003"]
    assert [p.id for p in doc.pack_formats] == ["AP_00011001", "AP_00031002", "AP_00031003"]
    assert [c.id for c in doc.channel_formats] == ["AC_00011001", "AC_00011002",
                                                   "AC_00031003", "AC_00031004"]
    assert [s.id for s in doc.stream_formats] == ["AS_00011001", "AS_00011002",
                                                  "AS_00031003", "AS_00031004"]
    assert [t.id for t in doc.track_formats] == ["AT_00011001_01", "AT_00011002_01",
                                                 "AT_00031003_01", "AT_00031004_01"]
    assert [(e.track_index, e.track_uid, e.track_format_id, e.pack_format_id) for e in chna] == [
        (1, "ATU_00000001", "AT_00011001_01", "AP_00011001"),
        (2, "ATU_00000002", "AT_00011002_01", "AP_00011001"),
        (3, "ATU_00000003", "AT_00031003_01", "AP_00031002"),
        (4, "ATU_00000004", "AT_00031004_01", "AP_00031003"),
    ]
    # every chain resolves: UID -> track format -> stream -> channel, which is in the pack
    for entry in chna:
        uid = doc.lookup(entry.track_uid)
        assert uid.track_index == entry.track_index
        track = doc.lookup(uid.track_format_id, AudioTrackFormat)
        stream = doc.lookup(track.stream_format_id, AudioStreamFormat)
        assert track.id in stream.track_format_ids
        pack = doc.lookup(uid.pack_format_id, AudioPackFormat)
        assert stream.channel_format_id in pack.channel_format_ids
        doc.lookup(stream.channel_format_id, AudioChannelFormat)
    for obj in doc.objects:
        for ref in obj.pack_format_ids:
            doc.lookup(ref, AudioPackFormat)
        for ref in obj.track_uid_ids:
            assert doc.lookup(ref).pack_format_id in obj.pack_format_ids
    # block IDs follow their channel; the cartesian flag follows the position type
    for channel in doc.channel_formats:
        for k, block in enumerate(channel.blocks, 1):
            assert block.id == f"AB_{channel.id[3:]}_{k:08X}"
    cart = doc.lookup("AC_00031004").blocks[0]
    assert cart.cartesian and cart.rtime is None and cart.duration is None
    assert cart.jump_position == JumpPosition(True, Fraction(0))


def test_block_timing_rules() -> None:
    b = AdmBuilder()
    ids = b.add_object("o", [ObjectsBlockSpec((0.0, 0.0), duration=0.5),
                             ObjectsBlockSpec((10.0, 0.0), rtime=0.75),
                             ObjectsBlockSpec((20.0, 0.0), rtime=1)],
                       track_index=1, duration=3)
    doc, _ = b.build()
    blocks = doc.lookup(ids.channel_format_id).blocks
    assert [(x.rtime, x.duration) for x in blocks] == [
        (0, Fraction(1, 2)), (Fraction(3, 4), Fraction(1, 4)), (1, 2)]
    # missing first rtime is 0, a missing rtime follows the previous block, floats are read
    # through their decimal repr (0.1 -> 1/10 exactly)
    b = AdmBuilder()
    ids = b.add_object("p", [ObjectsBlockSpec((0.0, 0.0), duration=0.1),
                             ObjectsBlockSpec((10.0, 0.0), duration=0.2)], track_index=1)
    doc, _ = b.build()
    blocks = doc.lookup(ids.channel_format_id).blocks
    assert [(x.rtime, x.duration) for x in blocks] == [
        (0, Fraction(1, 10)), (Fraction(1, 10), Fraction(1, 5))]
    with pytest.raises(AdmError, match="last block needs a duration"):
        AdmBuilder().add_object("o", [ObjectsBlockSpec((0.0, 0.0), rtime=0),
                                      ObjectsBlockSpec((1.0, 0.0), rtime=1)], track_index=1)
    with pytest.raises(AdmError, match="next block's rtime"):
        AdmBuilder().add_object("o", [ObjectsBlockSpec((0.0, 0.0)),
                                      ObjectsBlockSpec((1.0, 0.0), duration=1)], track_index=1)
    with pytest.raises(AdmError, match="not positive"):
        AdmBuilder().add_object("o", [ObjectsBlockSpec((0.0, 0.0), rtime=1),
                                      ObjectsBlockSpec((1.0, 0.0), rtime=1, duration=1)],
                                track_index=1)


def test_full_objects_block_instances_are_kept() -> None:
    block = ObjectsBlock("", CartesianPosition(0.0, 1.0), diffuse=0.5,
                         channel_lock=ChannelLock(True))
    b = AdmBuilder()
    ids = b.add_object("o", [block], track_index=2)
    doc, _ = b.build()
    (got,) = doc.lookup(ids.channel_format_id).blocks
    assert got == dataclasses.replace(block, id="AB_00031001_00000001", cartesian=True)


def test_builder_errors() -> None:
    b = AdmBuilder()
    b.add_object("a", [ObjectsBlockSpec((0.0, 0.0))], track_index=1)
    with pytest.raises(AdmError, match="track 1 is already used"):
        b.add_object("b", [ObjectsBlockSpec((0.0, 0.0))], track_index=1)
    with pytest.raises(AdmError, match="track index"):
        b.add_object("b", [ObjectsBlockSpec((0.0, 0.0))], track_index=0)
    with pytest.raises(AdmError, match="2 channels but 3"):
        b.add_direct_speakers("bed", [2, 3, 4], channels=[("L", 30, 0), ("R", -30, 0)])
    with pytest.raises(AdmError, match="exactly one"):
        b.add_direct_speakers("bed", [2])
    with pytest.raises(AdmError, match="AO_1009"):
        b.add_object("c", [ObjectsBlockSpec((0.0, 0.0))], track_index=5, parent="AO_1009")
    with pytest.raises(AdmError, match="ACO_1005"):
        b.add_object("c", [ObjectsBlockSpec((0.0, 0.0))], track_index=5, content="ACO_1005")
    with pytest.raises(AdmError, match="order 1 needs 4 tracks"):
        b.add_hoa("h", 1, [6, 7])
    with pytest.raises(AdmError, match="track 7 is already used"):
        b.add_direct_speakers("bed", [7, 7], channels=[("L", 30, 0), ("R", -30, 0)])
    # failed calls leave nothing behind
    doc, chna = b.build()
    assert [o.name for o in doc.objects] == ["a"] and len(chna) == 1
    assert len(doc.pack_formats) == 1 and len(doc.channel_formats) == 1
    assert doc.contents[0].object_ids == ("AO_1001",)


def test_programmes_contents_nested_and_complementary_objects() -> None:
    b = AdmBuilder("Main", "Music")
    dialogue = b.add_content("Dialogue", dialogue=1, language="en")
    p2 = b.add_programme("Alt")
    b.add_content("Effects", programme=[p2])
    group = b.add_object_group("crowd", content=[dialogue])
    child = b.add_object("voice 1", [ObjectsBlockSpec((0.0, 0.0))], track_index=1,
                         parent=group)
    en = b.add_object("commentary en", [ObjectsBlockSpec((0.0, 0.0))], track_index=2,
                      content=dialogue, dialogue=1)
    fr = b.add_object("commentary fr", [ObjectsBlockSpec((0.0, 0.0))], track_index=3,
                      content=dialogue)
    b.set_complementary(en.object_id, [fr.object_id])
    doc, _ = b.build()
    assert [(p.id, p.name, p.content_ids) for p in doc.programmes] == [
        ("APR_1001", "Main", ("ACO_1001", "ACO_1002")), ("APR_1002", "Alt", ("ACO_1003",))]
    assert [(c.id, c.name, c.object_ids) for c in doc.contents] == [
        ("ACO_1001", "Music", ()), ("ACO_1002", "Dialogue", (group, en.object_id,
                                                             fr.object_id)),
        ("ACO_1003", "Effects", ())]
    assert doc.lookup(group).object_ids == (child.object_id,)
    assert doc.lookup(group).pack_format_ids == () and doc.lookup(group).track_uid_ids == ()
    assert doc.lookup(en.object_id).complementary_object_ids == (fr.object_id,)
    afx = _afx(doc)
    (o,) = _x(afx, f"a:audioObject[@audioObjectID='{en.object_id}']")
    assert o.get("dialogue") == "1"
    assert _x(o, "a:audioComplementaryObjectIDRef/text()") == [fr.object_id]
    assert _x(afx, f"a:audioObject[@audioObjectID='{group}']/a:audioObjectIDRef/text()") == [
        child.object_id]
    (c,) = _x(afx, "a:audioContent[@audioContentID='ACO_1002']")
    assert c.get("audioContentLanguage") == "en" and _x(c, "a:dialogue/text()") == ["1"]


def test_atmos_style_cartesian_bed() -> None:
    b = AdmBuilder("Atmos")
    ids = b.add_direct_speakers("Master", list(range(1, 11)), channels=ATMOS_BED_7_1_2)
    doc, chna = b.build()
    assert len(ids.channel_format_ids) == 10 and len(chna) == 10
    (lfe,) = _x(_afx(doc), "a:audioChannelFormat[@audioChannelFormatName='RC_LFE']/"
                           "a:audioBlockFormat")
    assert [_local(c) for c in lfe] == ["speakerLabel", "cartesian"] + ["position"] * 3
    assert [(p.get("coordinate"), p.text) for p in _x(lfe, "a:position")] == [
        ("X", "-1.0"), ("Y", "1.0"), ("Z", "-1.0")]


def _tiny_common() -> AdmDocument:
    """Hand-made stand-in for BS.2094 stereo (AP_00010002: AC_00010001/2 via AS/AT)."""
    def ch(n: int, az: float) -> AudioChannelFormat:
        return AudioChannelFormat(
            f"AC_0001000{n}", f"ch{n}", TypeDefinition.DirectSpeakers,
            (DirectSpeakersBlock(f"AB_0001000{n}_00000001",
                                 DirectSpeakersPolarPosition(BoundedValue(az))),),
            is_common_definition=True)
    return AdmDocument(
        pack_formats=(AudioPackFormat("AP_00010002", "stereo", TypeDefinition.DirectSpeakers,
                                      ("AC_00010001", "AC_00010002"),
                                      is_common_definition=True),),
        channel_formats=(ch(1, 30.0), ch(2, -30.0)),
        stream_formats=tuple(AudioStreamFormat(f"AS_0001000{n}", "s", "0001",
                                               f"AC_0001000{n}", None, (f"AT_0001000{n}_01",),
                                               is_common_definition=True) for n in (1, 2)),
        track_formats=tuple(AudioTrackFormat(f"AT_0001000{n}_01", "t", "0001",
                                             f"AS_0001000{n}", is_common_definition=True)
                            for n in (1, 2)),
    )


def test_common_definition_bed_with_injected_definitions() -> None:
    b = AdmBuilder("P", common_definitions=_tiny_common())
    ids = b.add_direct_speakers("stereo", [3, 4], pack_format_id="AP_00010002")
    b.add_object("o", [ObjectsBlockSpec((0.0, 0.0))], track_index=1)
    doc, chna = b.build()
    assert ids.channel_format_ids == ("AC_00010001", "AC_00010002")
    assert [(e.track_index, e.track_uid, e.track_format_id, e.pack_format_id) for e in chna] == [
        (1, "ATU_00000003", "AT_00031001_01", "AP_00031001"),
        (3, "ATU_00000001", "AT_00010001_01", "AP_00010002"),
        (4, "ATU_00000002", "AT_00010002_01", "AP_00010002")]
    # the common elements resolve inside the document but are not written to the XML
    assert doc.lookup("AT_00010002_01").is_common_definition
    afx = _afx(doc)
    assert _x(afx, "a:audioPackFormat/@audioPackFormatID") == ["AP_00031001"]
    assert _x(afx, "a:audioTrackFormat/@audioTrackFormatID") == ["AT_00031001_01"]
    (uid,) = _x(afx, "a:audioTrackUID[@UID='ATU_00000002']")
    assert _x(uid, "a:audioTrackFormatIDRef/text()") == ["AT_00010002_01"]
    assert _x(uid, "a:audioPackFormatIDRef/text()") == ["AP_00010002"]


@needs_reader
def test_common_definition_7_1_4_bed_uses_bs2094_pack() -> None:
    b = AdmBuilder("P")
    ids = b.add_direct_speakers("bed", list(range(1, 13)), pack_format_id="AP_00010017")
    doc, chna = b.build()
    # BS.2094 AP_00010017 (7.1.4): L R C LFE Lss Rss Lrs Rrs Ltf Rtf Ltr Rtr
    expected = ["01", "02", "03", "04", "0A", "0B", "1C", "1D", "22", "23", "1E", "1F"]
    assert [c.upper() for c in ids.channel_format_ids] == [f"AC_000100{n}" for n in expected]
    assert [e.track_format_id.upper() for e in chna] == [f"AT_000100{n}_01" for n in expected]
    assert all(e.pack_format_id == "AP_00010017" for e in chna)
    left = doc.lookup(ids.channel_format_ids[0]).blocks[0]
    assert left.position.azimuth.value == 30.0
    assert _x(_afx(doc), "a:audioPackFormat") == []


# --------------------------------------------------------------------------------------------
# round trips through the reader and a BW64 file
# --------------------------------------------------------------------------------------------


def _rich_scene() -> AdmBuilder:
    b = _small_scene()
    b.add_object("full", [ObjectsBlock(
        "", PolarPosition(45.0, 20.0), rtime=Fraction(0), duration=Fraction(7, 48000),
        width=30.0, height=10.0, depth=0.5, gain=0.25, diffuse=0.5,
        channel_lock=ChannelLock(True, 0.25),
        object_divergence=ObjectDivergence(0.5, azimuth_range=20.0),
        jump_position=JumpPosition(True, Fraction(1, 200)), screen_ref=True,
        screen_edge_lock=ScreenEdgeLock("right", "bottom"), importance=5,
        zone_exclusion=(PolarZone(-5.0, 5.0, 170.0, 190.0, "back"),), head_locked=True)],
        track_index=5, start=Fraction(1, 3), duration=Fraction(7, 48000), importance=8,
        interact=True, disable_ducking=False)
    b.add_hoa("amb", 1, [6, 7, 8, 9], normalization="N3D")
    b.add_direct_speakers("stereo", [10, 11], pack_format_id="AP_00010002")
    return b


@needs_reader
def test_xml_round_trip_gives_equal_dataclasses() -> None:
    from adm.xml import parse_adm_xml

    doc, _ = _rich_scene().build()
    back = parse_adm_xml(adm_to_xml(doc), source="roundtrip")
    assert _own(back) == _own(doc)
    # the common-definition elements the builder used are the reader's BS.2094 ones
    for group in GROUPS[3:7]:
        for element in getattr(doc, group):
            if element.is_common_definition:
                assert back.get(element.id) == element


@needs_reader
def test_bwf_file_round_trip(tmp_path) -> None:
    from adm.bw64 import Bw64Reader
    from adm.xml import apply_chna, parse_adm_xml

    doc, chna = _rich_scene().build(sample_rate=48000, bit_depth=24)
    rng = np.random.default_rng(1)
    audio = (rng.uniform(-0.5, 0.5, size=(1000, 11))).astype(np.float32)
    path = tmp_path / "scene.wav"
    write_adm_bwf(path, audio, 48000, doc, chna)
    with Bw64Reader(path) as reader:
        assert (reader.sample_rate, reader.channels, reader.bit_depth) == (48000, 11, 24)
        assert reader.chna == chna
        axml = reader.axml
        got = reader.read()
    assert axml == adm_to_xml(doc)
    # 24-bit PCM: error at most half a quantisation step
    assert np.max(np.abs(got - audio)) <= 2.0 ** -24 + 1e-9
    back = apply_chna(parse_adm_xml(axml, source=str(path)), chna, 11, str(path))
    assert _own(back) == _own(doc)
    assert {u.id: u.track_index for u in back.track_uids} == {
        u.id: u.track_index for u in doc.track_uids}
    assert all(u.sample_rate == 48000 and u.bit_depth == 24 for u in back.track_uids)


def test_atmos_bed_lfe_has_low_pass_frequency():
    from adm.builder import ATMOS_BED_7_1_2, AdmBuilder

    b = AdmBuilder("p")
    ids = b.add_direct_speakers("bed", list(range(1, 11)), channels=ATMOS_BED_7_1_2)
    doc, _ = b.build()
    channels = [doc.lookup(cid) for cid in ids.channel_format_ids]
    low_pass = {c.name: c.frequency.low_pass for c in channels}
    assert low_pass["RC_LFE"] == 120.0
    assert all(v is None for name, v in low_pass.items() if name != "RC_LFE")
