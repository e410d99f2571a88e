"""The raw-text reading of Objects audioBlockFormats (adm.xml.iter_channel_formats) against the
full lxml parse (parse_adm_xml without defer), the independent reference: same channels and
blocks (==), same warnings, same errors."""

from __future__ import annotations

import os
import warnings
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from adm.builder import AdmBuilder, ObjectsBlockSpec, write_adm_bwf
from adm.bw64 import Bw64Reader
from adm.model import (
    AdmError,
    CartesianPosition,
    ChannelLock,
    ObjectDivergence,
    ObjectsBlock,
    PolarPosition,
    TypeDefinition,
)
from adm.xml import (
    FileRegion,
    _Ctx,
    _raw_channels,
    _without_objects_blocks,
    iter_channel_formats,
    parse_adm_xml,
)
from adm.xml_write import adm_to_xml

NS = "urn:ebu:metadata-schema:ebuCore_2016"


def _wrap(channels: str, layout: str = "ebucore") -> bytes:
    """A minimal ADM document holding ``channels`` (audioChannelFormat elements)."""
    if layout == "ebucore":
        text = (f'<?xml version="1.0" encoding="UTF-8"?>\n<ebuCoreMain xmlns="{NS}">\n'
                f"<coreMetadata><format><audioFormatExtended>\n{channels}\n"
                "</audioFormatExtended></format></coreMetadata></ebuCoreMain>\n")
    elif layout == "prefixed":
        text = (f"<?xml version='1.0' encoding='utf-8'?>\n<adm:ebuCoreMain xmlns:adm='{NS}'>"
                f"<adm:coreMetadata><adm:format><adm:audioFormatExtended>\n{channels}\n"
                "</adm:audioFormatExtended></adm:format></adm:coreMetadata>"
                "</adm:ebuCoreMain>")
    else:  # a bare audioFormatExtended without namespace or declaration
        text = f"<audioFormatExtended>\n{channels}\n</audioFormatExtended>"
    return text.encode("utf-8")


def _channel(cid: str, blocks: str, p: str = "", extra: str = "") -> str:
    return (f'<{p}audioChannelFormat audioChannelFormatID="{cid}" audioChannelFormatName="ch"'
            f' typeDefinition="Objects">{extra}{blocks}</{p}audioChannelFormat>')


def _block(n: int, body: str, rtime: str | None = None, duration: str = "00:00:00.50000",
           p: str = "") -> str:
    rtime = f"00:00:{n // 2:02d}.{5 * (n % 2)}0000" if rtime is None else rtime
    return (f'<{p}audioBlockFormat audioBlockFormatID="AB_00031001_{n + 1:08d}" '
            f'rtime="{rtime}" duration="{duration}">{body}</{p}audioBlockFormat>')


def _polar(az: float, el: float = 0.0, p: str = "") -> str:
    return (f'<{p}position coordinate="azimuth">{az}</{p}position>'
            f'<{p}position coordinate="elevation">{el}</{p}position>')


def _region(tmp_path: Path, data: bytes, pad: int = 0) -> FileRegion:
    path = tmp_path / f"axml_{abs(hash(data))}.xml"
    path.write_bytes(data + b"\0" * pad)
    fd = os.open(path, os.O_RDONLY)
    return FileRegion(fd, 0, len(data) + pad)


def _reference(data: bytes):
    """(Objects channel IDs as the deferred first pass finds them, the full parse's channels
    of those IDs in document order, its warnings)."""
    deferred = parse_adm_xml(data, defer=TypeDefinition.Objects)
    ids = {c.id for c in deferred.channel_formats
           if c.type is TypeDefinition.Objects and not c.is_common_definition}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        full = parse_adm_xml(data)
    return ids, [c for c in full.channel_formats if c.id in ids], [str(w.message) for w in caught]


def _check(tmp_path: Path, data: bytes, fast: bool = True, pad: int = 0,
           messages: list[str] | None = None) -> list:
    """The channels of ``data`` read by iter_channel_formats equal the full parse's, with the
    same warnings (their texts are appended to ``messages``); ``fast``: the raw-text reading
    read all of them (no lxml fallback)."""
    ids, expected, expected_warnings = _reference(data)
    assert expected
    region = _region(tmp_path, data, pad)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            got = list(iter_channel_formats(region, ids))
        assert got == expected
        assert [str(w.message) for w in caught] == expected_warnings
        if messages is not None:
            messages.extend(expected_warnings)
        raw = list(_raw_channels(_Ctx("<axml>", False), region, ids))
        if fast:
            assert raw == expected
        else:
            assert raw[-1] is None
    finally:
        os.close(region.fd)
    return got


def _check_error(tmp_path: Path, data: bytes) -> str:
    """The full parse and iter_channel_formats refuse ``data`` with the same message."""
    ids = {c.id for c in parse_adm_xml(data, defer=TypeDefinition.Objects).channel_formats
           if c.type is TypeDefinition.Objects}
    with pytest.raises(AdmError) as full_error:
        parse_adm_xml(data)
    region = _region(tmp_path, data)
    try:
        with pytest.raises(AdmError) as error:
            list(iter_channel_formats(region, ids))
    finally:
        os.close(region.fd)
    assert str(error.value) == str(full_error.value)
    return str(error.value)


# --------------------------------------------------------------------------------------------
# documents written by adm.builder / adm.xml_write
# --------------------------------------------------------------------------------------------


def _built_doc():
    builder = AdmBuilder("fast path")
    builder.add_object("polar", [
        ObjectsBlockSpec((30.0, 10.0), rtime=0, duration=Fraction(1, 2)),
        ObjectsBlockSpec((-110.0, 0.0, 0.5), rtime=Fraction(1, 2), duration=Fraction(1, 2),
                         width=20.0, height=5.0, gain=0.5, diffuse=0.25, jump=True,
                         interpolation_length=Fraction(1, 200)),
    ], track_index=1)
    builder.add_object("cartesian", [
        ObjectsBlockSpec(CartesianPosition(0.25, 1.0, 0.5), rtime=0, duration=Fraction(1, 3)),
        ObjectsBlockSpec(CartesianPosition(-1.0, -1.0, 0.0), rtime=Fraction(1, 3),
                         duration=Fraction(2, 3), depth=0.5, importance=7),
    ], track_index=2)
    builder.add_object("full block", [
        ObjectsBlock("", PolarPosition(45.0, 30.0), rtime=Fraction(0), duration=Fraction(1),
                     channel_lock=ChannelLock(True, 0.5),
                     object_divergence=ObjectDivergence(0.5, 30.0), screen_ref=True,
                     head_locked=True),
    ], track_index=3)
    builder.add_direct_speakers("bed", [4, 5], pack_format_id="AP_00010002")
    return builder.build(sample_rate=48000)


def test_builder_document_bytes(tmp_path: Path) -> None:
    doc, _ = _built_doc()
    channels = _check(tmp_path, adm_to_xml(doc), pad=64)
    # the hand-computed values survive the round trip (the reference is not just itself)
    polar = channels[0].blocks
    assert polar[0].position == PolarPosition(30.0, 10.0, 1.0)
    assert polar[1].rtime == Fraction(1, 2) and polar[1].gain == 0.5
    assert polar[1].jump_position.interpolation_length == Fraction(1, 200)
    assert channels[1].blocks[1].position == CartesianPosition(-1.0, -1.0, 0.0)
    assert channels[1].blocks[1].cartesian and channels[1].blocks[1].importance == 7
    assert channels[2].blocks[0].channel_lock == ChannelLock(True, 0.5)


def test_builder_bwf_file(tmp_path: Path) -> None:
    doc, chna = _built_doc()
    path = tmp_path / "scene.wav"
    write_adm_bwf(path, np.zeros((480, 5)), 48000, doc, chna)
    with Bw64Reader(path) as reader:
        region = reader.axml_region()
        start, stop = region.unpadded_range()
        data = region.read_at(start, stop)
        ids, expected, _ = _reference(data)
        assert list(iter_channel_formats(region, ids)) == expected
        assert list(_raw_channels(_Ctx("<axml>", False), region, ids)) == expected


# --------------------------------------------------------------------------------------------
# hand-written variants read by the raw-text path
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("layout", ["ebucore", "prefixed", "bare"])
def test_layouts(tmp_path: Path, layout: str) -> None:
    p = "adm:" if layout == "prefixed" else ""
    blocks = "".join(_block(n, _polar(10.0 * n, 5.0, p), p=p) for n in range(4))
    data = _wrap(_channel("AC_00031001", blocks, p) + _channel("AC_00031002", blocks, p),
                 layout)
    channels = _check(tmp_path, data)
    assert [b.position.azimuth for b in channels[0].blocks] == [0.0, 10.0, 20.0, 30.0]


def test_attribute_syntax_and_whitespace(tmp_path: Path) -> None:
    blocks = (
        "\n  <audioBlockFormat duration = '00:00:00.50000'\n\trtime='00:00:00.00000' "
        "audioBlockFormatID='ab_00031001_00000001' >\n"
        "    <position   coordinate = 'elevation' >  12.5 </position>\n"
        "    <position coordinate=\"azimuth\">-30</position >\n"
        "    <cartesian>0</cartesian>\n"
        "    <width/>\n"  # an empty width: an error? no: only in the second channel below
        "  </audioBlockFormat>\n"
    ).replace("    <width/>\n", "")
    blocks += "\r\n" + _block(1, "<position coordinate='X'>1</position>\r\n"
                                 "<position coordinate='Y'>0.5</position><cartesian>1"
                                 "</cartesian><jumpPosition>1</jumpPosition>")
    data = _wrap(_channel("AC_00031001", blocks))
    channels = _check(tmp_path, data)
    first, second = channels[0].blocks
    assert first.id == "AB_00031001_00000001"
    assert first.position == PolarPosition(-30.0, 12.5, 1.0)
    assert second.position == CartesianPosition(1.0, 0.5, 0.0) and second.jump_position.flag


def test_polar_cartesian_jump_gain_and_friends(tmp_path: Path) -> None:
    bodies = [
        _polar(30.0) + '<position coordinate="distance">0.5</position>'
        '<jumpPosition interpolationLength="0.005208">1</jumpPosition>',
        _polar(40.0) + "<jumpPosition>1</jumpPosition><gain gainUnit=\"dB\">-6</gain>",
        _polar(50.0) + "<gain>0.25</gain><width>10</width><height>20</height>"
        "<depth>0.5</depth><diffuse>0.75</diffuse><importance>3</importance>"
        "<headLocked>1</headLocked><screenRef>1</screenRef>",
        _polar(60.0) + '<channelLock maxDistance="0.25">1</channelLock>'
        '<objectDivergence azimuthRange="45">0.5</objectDivergence>'
        "<unknownThing a='1'>x</unknownThing><headphoneVirtualise/>",
        '<position coordinate="azimuth" screenEdgeLock="left">70</position>'
        '<position coordinate="elevation" screenEdgeLock="top">5</position>',
        '<position coordinate="x">0.5</position><position coordinate="y">1</position>'
        '<position coordinate="z">0.25</position><cartesian>true</cartesian>',
    ]
    blocks = "\n".join(_block(n, body) for n, body in enumerate(bodies))
    data = _wrap(_channel("AC_00031001", blocks, extra='<frequency typeDefinition="lowPass">'
                          "120</frequency>"))
    (channel,) = _check(tmp_path, data)
    b = channel.blocks
    assert channel.frequency.low_pass == 120.0
    assert b[0].jump_position.interpolation_length == Fraction(5208, 1000000)
    assert b[1].gain == pytest.approx(10 ** (-6 / 20))
    assert (b[2].width, b[2].importance, b[2].head_locked) == (10.0, 3, True)
    assert b[3].channel_lock.max_distance == 0.25
    assert b[4].screen_edge_lock.horizontal == "left" and b[5].cartesian


def test_sample_times_and_repeated_shapes(tmp_path: Path) -> None:
    # many blocks of one markup (read by one pattern), times in the sample form
    blocks = "\n".join(
        _block(n, f'\n  <position coordinate="azimuth">{n * 0.5}</position>\n'
                  '  <position coordinate="elevation">0.0</position>\n  ',
               rtime=f"00:00:{n // 100:02d}.{(n % 100) * 480:05d}S48000",
               duration="00:00:00.00480S48000")
        for n in range(300))
    (channel,) = _check(tmp_path, _wrap(_channel("AC_00031001", blocks)))
    assert channel.blocks[101].rtime == 1 + Fraction(480, 48000)
    assert channel.blocks[299].position.azimuth == 149.5


def test_blocks_out_of_time_order_warn(tmp_path: Path) -> None:
    blocks = _block(1, _polar(1.0)) + _block(0, _polar(0.0))
    messages: list[str] = []
    (channel,) = _check(tmp_path, _wrap(_channel("AC_00031001", blocks)), messages=messages)
    assert messages == ["audioBlockFormats of AC_00031001 are out of time order; sorted them"]
    assert [b.rtime for b in channel.blocks] == [Fraction(0), Fraction(1, 2)]


def test_only_wanted_channels_of_the_top_format_extended(tmp_path: Path) -> None:
    data = _wrap(
        _channel("AC_00031001", _block(0, _polar(1.0)))
        + "<!-- a comment <audioChannelFormat> outside the channels -->"
        + '<audioChannelFormat audioChannelFormatID="AC_00011001" typeDefinition="DirectSpeakers">'
        "<audioBlockFormat audioBlockFormatID='AB_00011001_00000001'><!-- here too -->"
        "<speakerLabel>M+000</speakerLabel><position coordinate='azimuth'>0</position>"
        "</audioBlockFormat></audioChannelFormat>"
        + _channel("AC_00031002", _block(0, _polar(2.0))))
    assert [c.id for c in _check(tmp_path, data)] == ["AC_00031001", "AC_00031002"]


# --------------------------------------------------------------------------------------------
# what the raw-text path leaves to lxml: same results all the same
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("body", [
    _polar(10.0) + "<!-- a comment in the block -->",
    '<position coordinate="azimuth">&#x31;5</position>',
    _polar(10.0) + "<gain><![CDATA[0.5]]></gain>",
    _polar(10.0) + "<?pi inside?>",
    _polar(10.0) + '<zoneExclusion><zone minX="-1" maxX="0" minY="-1" maxY="1" minZ="-1"'
    ' maxZ="1">left</zone></zoneExclusion>',
])
def test_fallback_to_lxml(tmp_path: Path, body: str) -> None:
    data = _wrap(_channel("AC_00031001", _block(0, _polar(1.0)))
                 + _channel("AC_00031002", _block(0, body) + _block(1, _polar(3.0)))
                 + _channel("AC_00031003", _block(0, _polar(4.0))))
    channels = _check(tmp_path, data, fast=False)
    assert [c.id for c in channels] == ["AC_00031001", "AC_00031002", "AC_00031003"]


def test_other_encoding_falls_back(tmp_path: Path) -> None:
    text = _wrap(_channel("AC_00031001", _block(0, _polar(1.0)))).decode()
    data = text.replace('encoding="UTF-8"', 'encoding="ISO-8859-1"').encode("latin-1")
    _check(tmp_path, data, fast=False)


@pytest.mark.parametrize("body", [
    '<position coordinate="azimuth">ten</position>',
    _polar(10.0) + "<cartesian>1</cartesian>",
    _polar(10.0) + "<width></width>",
    '<position coordinate="azimuth">1</position><position coordinate="azimuth">2</position>',
    '<position coordinate="Q">1</position>',
    _polar(10.0) + '<gain gainUnit="bel">1</gain>',
])
def test_bad_values_raise_as_the_full_parse(tmp_path: Path, body: str) -> None:
    data = _wrap(_channel("AC_00031001", _block(0, _polar(1.0)))
                 + _channel("AC_00031002", "\n" + _block(0, body)))
    message = _check_error(tmp_path, data)
    assert "line " in message and "AB_00031001_00000001: " in message


def test_bad_time_raises_as_the_full_parse(tmp_path: Path) -> None:
    data = _wrap(_channel("AC_00031001", _block(0, _polar(1.0), rtime="00:61:00.0")))
    assert "rtime" in _check_error(tmp_path, data)


# --------------------------------------------------------------------------------------------
# the first parse of a file, which defers the Objects blocks: the text is checked whole, then
# parsed with the Objects channels' blocks cut out (adm.xml._without_objects_blocks)
# --------------------------------------------------------------------------------------------


def _deferred(tmp_path: Path, data: bytes):
    """The deferred first parse of ``data`` from a file region (blocks cut out of the text)
    and from the bytes (the whole text read by lxml, nothing cut)."""
    region = _region(tmp_path, data)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from_file = parse_adm_xml(region, defer=TypeDefinition.Objects)
            from_bytes = parse_adm_xml(data, defer=TypeDefinition.Objects)
    finally:
        os.close(region.fd)
    return from_file, from_bytes


def _cut(tmp_path: Path, data: bytes) -> bytes | None:
    region = _region(tmp_path, data)
    try:
        return _without_objects_blocks(region, 0, len(data))
    finally:
        os.close(region.fd)


def _bed(p: str = "") -> str:
    return (f'<{p}audioChannelFormat audioChannelFormatID="AC_00011001" '
            f'audioChannelFormatName="L" typeDefinition="DirectSpeakers">'
            f'<{p}audioBlockFormat audioBlockFormatID="AB_00011001_00000001">'
            f'<{p}speakerLabel>M+030</{p}speakerLabel>{_polar(30.0, p=p)}'
            f"</{p}audioBlockFormat></{p}audioChannelFormat>")


@pytest.mark.parametrize("layout", ["ebucore", "prefixed", "bare"])
def test_first_parse_without_objects_blocks_equals_the_whole_parse(tmp_path: Path,
                                                                   layout: str) -> None:
    p = "adm:" if layout == "prefixed" else ""
    blocks = "\n".join(_block(n, _polar(10.0 * n, p=p), p=p) for n in range(5))
    frequency = f'<{p}frequency typeDefinition="lowPass">120</{p}frequency>'
    data = _wrap(_channel("AC_00031001", blocks, p=p, extra=frequency) + "\n" + _bed(p)
                 + "\n" + _channel("AC_00031002", "\n" + blocks + "\n", p=p), layout)
    cut = _cut(tmp_path, data)
    assert cut is not None
    # the Objects blocks are gone, line ends kept; the DirectSpeakers block stays
    assert cut.count(b"\n") == data.count(b"\n")
    assert cut.count(b"audioBlockFormatID=") == 1 and b"AB_00011001_00000001" in cut
    from_file, from_bytes = _deferred(tmp_path, data)
    assert from_file == from_bytes
    assert from_file.get("AC_00031001").frequency.low_pass == 120.0


def test_first_parse_of_a_built_master_equals_the_whole_parse(tmp_path: Path) -> None:
    doc, _ = _built_doc()
    data = adm_to_xml(doc)
    assert len(_cut(tmp_path, data)) < len(data)
    from_file, from_bytes = _deferred(tmp_path, data)
    assert from_file == from_bytes


def _errors(tmp_path: Path, data: bytes) -> tuple[str, str]:
    """The messages of the deferred first parse of ``data`` refused from a file region (its
    blocks cut) and from the bytes (the whole text read by lxml)."""
    region = _region(tmp_path, data)
    try:
        with pytest.raises(AdmError) as from_file:
            parse_adm_xml(region, defer=TypeDefinition.Objects)
    finally:
        os.close(region.fd)
    with pytest.raises(AdmError) as whole:
        parse_adm_xml(data, defer=TypeDefinition.Objects)
    return str(from_file.value), str(whole.value)


def test_syntax_error_inside_an_objects_block_is_found_by_the_first_parse(
        tmp_path: Path) -> None:
    data = _wrap(_channel("AC_00031001", _block(0, _polar(1.0)) + "\n"
                          + _block(1, _polar(2.0) + "<gain>1</gian>")))
    from_file, whole = _errors(tmp_path, data)
    # lines: declaration, root, wrappers, the channel and first block, the second block
    assert "XML syntax error at line 5" in whole
    assert from_file == whole


@pytest.mark.parametrize("line_end", ["\n", "\r\n", "\r"])
def test_errors_after_the_cut_blocks_name_the_same_lines(tmp_path: Path,
                                                         line_end: str) -> None:
    blocks = "\n".join(_block(n, _polar(10.0 * n)) for n in range(4))
    bad_object = ('<audioObject audioObjectID="AO_1001" audioObjectName="o">'
                  "<gain>loud</gain></audioObject>")
    data = _wrap(_channel("AC_00031001", blocks) + "\n" + bad_object).replace(
        b"\n", line_end.encode())
    from_file, whole = _errors(tmp_path, data)
    assert from_file == whole
    if line_end != "\r":  # (libxml2 counts no line for a lone CR)
        # lines: declaration, root, wrappers, the channel's 4 blocks (4-7), the object
        assert "line 8: AO_1001" in whole


@pytest.mark.parametrize("markup", ["<!-- a note -->", "<![CDATA[ text ]]>",
                                    "<?app data?>"])
def test_first_parse_cuts_nothing_from_comments_cdata_or_instructions(tmp_path: Path,
                                                                      markup: str) -> None:
    data = _wrap(_channel("AC_00031001", markup + _block(0, _polar(1.0))))
    assert _cut(tmp_path, data) is None
    from_file, from_bytes = _deferred(tmp_path, data)
    assert from_file == from_bytes


def test_first_parse_falls_back_when_the_cut_would_break_the_text(tmp_path: Path) -> None:
    # the last block sits inside an unknown element: cutting from the first block to it
    # would leave that element's end tag alone; the whole text is parsed instead
    blocks = (_block(0, _polar(1.0)) + "\n<other>" + _block(1, _polar(2.0)) + "</other>")
    data = _wrap(_channel("AC_00031001", blocks))
    cut = _cut(tmp_path, data)
    assert cut is not None and b"</other>" in cut and b"<other>" not in cut
    from_file, from_bytes = _deferred(tmp_path, data)
    assert from_file == from_bytes


def _three_channels(layout: str) -> bytes:
    p = "adm:" if layout == "prefixed" else ""
    blocks = "\n".join(_block(n, _polar(10.0 * n, p=p), p=p) for n in range(5))
    return _wrap(_channel("AC_00031001", blocks, p=p) + "\n" + _bed(p) + "\n"
                 + _channel("AC_00031002", "\n" + blocks + "\n", p=p), layout)


@pytest.mark.parametrize("step", [40, 300, 1000])
@pytest.mark.parametrize("document", ["built", "ebucore", "prefixed", "bare"])
def test_cut_read_in_small_pieces_is_the_same(tmp_path: Path, monkeypatch, step: int,
                                              document: str) -> None:
    # the text read a few bytes at a time: declaration, tags, channels and blocks across
    # the pieces' ends
    import adm.xml as adm_xml

    data = adm_to_xml(_built_doc()[0]) if document == "built" else _three_channels(document)
    whole = _cut(tmp_path, data)
    assert whole is not None
    monkeypatch.setattr(adm_xml, "_SCAN_STEP", step)
    assert _cut(tmp_path, data) == whole
    from_file, from_bytes = _deferred(tmp_path, data)
    assert from_file == from_bytes
    # more kept text than allowed: nothing cut, the whole text parsed
    monkeypatch.setattr(adm_xml, "_CUT_KEEP_LIMIT", 100)
    assert _cut(tmp_path, data) is None
    from_file, from_bytes = _deferred(tmp_path, data)
    assert from_file == from_bytes


def test_first_parse_cuts_channels_typed_by_label_alone(tmp_path: Path) -> None:
    # typeLabel="0003" without typeDefinition, single-quoted: an Objects channel all the same
    blocks = "\n".join(_block(n, _polar(10.0 * n)) for n in range(3))
    channel = _channel("AC_00031001", blocks).replace(' typeDefinition="Objects"',
                                                       " typeLabel='0003'")
    data = _wrap(channel)
    cut = _cut(tmp_path, data)
    assert cut is not None and b"audioBlockFormat" not in cut
    from_file, from_bytes = _deferred(tmp_path, data)
    assert from_file == from_bytes


# --------------------------------------------------------------------------------------------
# channels read into columns (adm.columns.ObjectsBlockColumns): one pattern for all blocks
# --------------------------------------------------------------------------------------------


def _moving(n: int, body: str = "", rtime: str | None = None, duration: str | None = None,
            az: float | None = None) -> str:
    """Block ``n`` of a channel of 0.25 s blocks moving 1.5 degrees a block."""
    az = 1.5 * n if az is None else az
    return _block(n, _polar(az, 2.0) + body,
                  rtime=rtime or f"00:00:{n // 4:02d}.{25 * (n % 4):02d}000",
                  duration=duration or "00:00:00.25000")


def test_one_markup_reads_into_columns_with_exact_values(tmp_path: Path) -> None:
    from adm.columns import NO_LENGTH, ObjectsBlockColumns

    body = ('<gain gainUnit="dB">{g}</gain><jumpPosition interpolationLength="{il}">1'
            "</jumpPosition><importance>{imp}</importance><diffuse>0.5</diffuse>")
    blocks = "\n".join(_moving(n, body.format(g=-6 * (n % 2), il="0.005208" if n else "0",
                                              imp=n % 11)) for n in range(40))
    (channel,) = _check(tmp_path, _wrap(_channel("AC_00031001", blocks)))
    columns = channel.blocks
    assert isinstance(columns, ObjectsBlockColumns) and len(columns) == 40
    # hand-computed: five digits of the times (1e5) and 0.005208 = 651 / 125000: one tick
    # is 1 / lcm(100000, 125000) = 1 / 500000 s
    assert columns.time_scale == 500_000
    assert columns.rtime[5] == 625_000 and columns.duration[5] == 125_000
    assert columns.interpolation_length[1] == 2604 and columns.interpolation_length[0] == 0
    assert NO_LENGTH < 0
    assert columns[5].rtime == Fraction(5, 4)
    assert columns[1].gain == 10 ** (-6 / 20) and columns[2].gain == 1.0
    assert columns[7].importance == 7 and columns[7].position == PolarPosition(10.5, 2.0, 1.0)


def test_columns_take_the_longest_fraction_of_a_second(tmp_path: Path) -> None:
    from adm.columns import ObjectsBlockColumns

    blocks = (_moving(0, rtime="00:00:00.0", duration="00:00:00.5")
              + _moving(1, rtime="00:00:00.5", duration="00:00:00.123456789")
              + _moving(2, rtime="00:00:00.623456789", duration="00:00:01.00"))
    (channel,) = _check(tmp_path, _wrap(_channel("AC_00031001", blocks)))
    assert isinstance(channel.blocks, ObjectsBlockColumns)
    assert channel.blocks.time_scale == 10 ** 9
    assert channel.blocks[2].rtime == Fraction(623456789, 10 ** 9)


@pytest.mark.parametrize("case", [
    "five markups",  # more than columns read
    "ten digits",  # a time finer than a nanosecond
    "sample times",  # the sample form of a time
    "out of order",
    "frequency",  # an element beside the blocks
    "edge lock",
    "not a plain number",
    "infinite",
    "a child twice",
])
def test_what_columns_do_not_hold_is_read_block_by_block(tmp_path: Path, case: str) -> None:
    from adm.columns import ObjectsBlockColumns

    blocks = [_moving(n) for n in range(4)]
    extra = ""
    if case == "five markups":
        blocks = [_moving(n, "".join(f"<{name}>0.{n}</{name}>" for name in
                                     ("width", "height", "depth", "diffuse")[:n]))
                  for n in range(5)]
    elif case == "ten digits":
        blocks[3] = _moving(3, rtime="00:00:00.7500000000")
    elif case == "sample times":
        blocks[1] = _moving(1, rtime="00:00:00.12000S48000", duration="00:00:00.12000S48000")
    elif case == "out of order":
        blocks[1], blocks[2] = blocks[2], blocks[1]
    elif case == "frequency":
        extra = '<frequency typeDefinition="lowPass">120</frequency>'
    elif case == "edge lock":
        blocks = [_block(n, '<position coordinate="azimuth" screenEdgeLock="left">10'
                            '</position>', rtime=f"00:00:0{n}.00000",
                         duration="00:00:01.00000") for n in range(3)]
    elif case == "not a plain number":
        blocks[1] = _moving(1, az=1_0)
        blocks[1] = blocks[1].replace(">10<", ">1_0<")
    elif case == "infinite":
        blocks[2] = _moving(2).replace(">3.0<", ">1e999<")  # inf, as float() reads it
    elif case == "a child twice":
        blocks = [_moving(n, "<gain>0.5</gain><gain>0.25</gain>") for n in range(3)]
    data = _wrap(_channel("AC_00031001", "".join(blocks), extra=extra))
    if case == "not a plain number":
        assert "line " in _check_error(tmp_path, data)
        return
    (channel,) = _check(tmp_path, data)
    assert not isinstance(channel.blocks, ObjectsBlockColumns)


def test_blocks_as_production_tools_write_them_read_into_columns(tmp_path: Path) -> None:
    # every parameter written in every block, channelLock and objectDivergence included
    from adm.columns import ObjectsBlockColumns

    body = ('<position coordinate="distance">1.000000</position><width>0.000000</width>'
            "<height>0.000000</height><depth>0.000000</depth><gain>1.000000</gain>"
            "<diffuse>0.000000</diffuse>"
            '<channelLock maxDistance="{md}">{lock}</channelLock>'
            '<objectDivergence azimuthRange="{az}">{div}</objectDivergence>'
            '<jumpPosition interpolationLength="0.000000">0</jumpPosition>'
            "<screenRef>0</screenRef><importance>10</importance>")
    blocks = "\n".join(_moving(n, body.format(md="0.000000" if n != 3 else "0.5",
                                              lock=int(n == 3), az="45.000000",
                                              div="0.000000" if n != 5 else "0.25"))
                       for n in range(8))
    (channel,) = _check(tmp_path, _wrap(_channel("AC_00031001", blocks)))
    columns = channel.blocks
    assert isinstance(columns, ObjectsBlockColumns)
    assert list(np.flatnonzero(columns.needs_full_pipeline())) == [3, 5]
    assert columns[3].channel_lock == ChannelLock(True, 0.5)
    assert columns[5].object_divergence == ObjectDivergence(0.25, 45.0, None)
    assert columns[0].object_divergence == ObjectDivergence(0.0, 45.0, None)


def test_blocks_of_a_few_markups_read_into_columns_in_document_order(tmp_path: Path) -> None:
    # the first block alone, one in the middle with a width, the others alike
    from adm.columns import ObjectsBlockColumns

    blocks = [_moving(0, "<jumpPosition>0</jumpPosition>")]
    blocks += [_moving(n, '<jumpPosition interpolationLength="0.005">1</jumpPosition>'
                          + ("<width>12.5</width>" if n == 6 else "")) for n in range(1, 12)]
    (channel,) = _check(tmp_path, _wrap(_channel("AC_00031001", "\n".join(blocks))))
    columns = channel.blocks
    assert isinstance(columns, ObjectsBlockColumns) and len(columns) == 12
    assert [b.rtime for b in columns] == [Fraction(n, 4) for n in range(12)]
    assert columns[6].width == 12.5 and columns[5].width == 0.0
    assert columns[0].jump_position.interpolation_length is None
    assert columns[1].jump_position.interpolation_length == Fraction(1, 200)


def test_random_block_markups_read_as_the_full_parse(tmp_path: Path) -> None:
    # channels of one to five markups drawn from the children that columns hold, with the
    # attributes and spacing varied: equal to the full parse, whichever way they are read
    rng = np.random.default_rng(7)
    optional = [
        lambda n: f"<width>{rng.uniform(0, 30):.3f}</width>",
        lambda n: f"<gain>{rng.uniform(0, 1):.4f}</gain>",
        lambda n: f'<gain gainUnit="dB">{rng.uniform(-20, 0):.2f}</gain>',
        lambda n: f"<diffuse>{rng.uniform(0, 1):.2f}</diffuse>",
        lambda n: f"<importance>{rng.integers(0, 11)}</importance>",
        lambda n: "<headLocked>0</headLocked>",
        lambda n: '<jumpPosition interpolationLength="0.0025">1</jumpPosition>',
        lambda n: "<jumpPosition>1</jumpPosition>",
        lambda n: f'<channelLock maxDistance="{rng.uniform(0, 2):.2f}">{n % 2}</channelLock>',
        lambda n: f'<objectDivergence positionRange="0.1">{rng.uniform(0, 1):.2f}'
                  "</objectDivergence>",
    ]
    channels = []
    for c in range(12):
        markups = [sorted(rng.choice(len(optional), size=rng.integers(0, 4), replace=False))
                   for _ in range(rng.integers(1, 6))]
        cartesian = bool(c % 2)
        blocks = []
        for n in range(int(rng.integers(1, 30))):
            chosen = markups[int(rng.integers(len(markups)))]
            kinds = {optional[k](n).split(">")[0].split()[0] for k in chosen}
            if len(kinds) < len(chosen):
                chosen = chosen[:1]  # one gain, one jumpPosition
            position = (f'<position coordinate="X">{rng.uniform(-1, 1):.4f}</position>'
                        f'<position coordinate="Y">{rng.uniform(-1, 1):.4f}</position>'
                        "<cartesian>1</cartesian>") if cartesian else _polar(
                round(float(rng.uniform(-180, 180)), 3), round(float(rng.uniform(-30, 60)), 3))
            spacing = "\n  " if rng.random() < 0.5 else ""
            body = spacing.join([position] + [optional[k](n) for k in chosen])
            blocks.append(_block(n, body, rtime=f"00:00:{n // 2:02d}.{5 * (n % 2)}0000"))
        channels.append(_channel(f"AC_000310{c + 1:02X}", "\n".join(blocks)))
    _check(tmp_path, _wrap("\n".join(channels)))
