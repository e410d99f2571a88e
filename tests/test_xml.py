"""ADM XML reader (adm.xml): elements, time forms, wrappers, security, references, chna."""

from __future__ import annotations

from fractions import Fraction

import pytest

from adm.common_definitions import common_definitions
from adm.model import (
    AdmError,
    AudioChannelFormat,
    AudioObject,
    AudioPackFormat,
    AudioTrackUID,
    BoundedValue,
    CartesianPosition,
    CartesianScreen,
    CartesianZone,
    ChnaEntry,
    DirectSpeakersBlock,
    DirectSpeakersCartesianPosition,
    DirectSpeakersPolarPosition,
    HoaBlock,
    MatrixBlock,
    ObjectsBlock,
    PolarPosition,
    PolarScreen,
    PolarZone,
    TypeDefinition,
)
from adm.xml import apply_chna, check_references, parse_adm_xml

EBU_2016 = "urn:ebu:metadata-schema:ebuCore_2016"


def ebu(body: str, ns: str | None = EBU_2016) -> bytes:
    """Wrap audioFormatExtended content in ebuCoreMain/coreMetadata/format."""
    xmlns = f' xmlns="{ns}"' if ns else ""
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<ebuCoreMain{xmlns}><coreMetadata><format><audioFormatExtended>\n"
        f"{body}\n"
        "</audioFormatExtended></format></coreMetadata></ebuCoreMain>\n"
    ).encode()


def bare(body: str) -> bytes:
    return f"<audioFormatExtended>{body}</audioFormatExtended>".encode()


def objects_channel(blocks: str, cid: str = "AC_00031001") -> str:
    return (f'<audioChannelFormat audioChannelFormatID="{cid}" audioChannelFormatName="obj" '
            f'typeLabel="0003" typeDefinition="Objects">{blocks}</audioChannelFormat>')


def one_block(inner: str, attrs: str = "") -> ObjectsBlock:
    doc = parse_adm_xml(bare(objects_channel(
        f'<audioBlockFormat audioBlockFormatID="AB_00031001_00000001" {attrs}>{inner}'
        "</audioBlockFormat>")))
    block = doc.lookup("AC_00031001", AudioChannelFormat).blocks[0]
    assert isinstance(block, ObjectsBlock)
    return block


# --------------------------------------------------------------------------------------------
# A complete small programme
# --------------------------------------------------------------------------------------------

FULL = """
<audioProgramme audioProgrammeID="APR_1001" audioProgrammeName="Main" audioProgrammeLanguage="en"
    start="00:00:00.00000" end="00:00:10.00000">
  <audioContentIDRef>ACO_1001</audioContentIDRef>
  <loudnessMetadata loudnessMethod="ITU-R BS.1770">
    <integratedLoudness>-23.0</integratedLoudness><maxTruePeak> -1.5 </maxTruePeak>
    <loudnessRange>7</loudnessRange><dialogueLoudness>-24</dialogueLoudness>
  </loudnessMetadata>
  <audioProgrammeReferenceScreen aspectRatio="1.78">
    <screenCentrePosition azimuth="0.0" elevation="0.0" distance="1.0"/>
    <screenWidth azimuth="58.0"/>
  </audioProgrammeReferenceScreen>
</audioProgramme>
<audioContent audioContentID="ACO_1001" audioContentName="Dialogue" audioContentLanguage="en">
  <audioObjectIDRef>AO_1001</audioObjectIDRef>
  <audioObjectIDRef>AO_1002</audioObjectIDRef>
  <dialogue dialogueContentKind="1">1</dialogue>
  <loudnessMetadata><integratedLoudness>-20</integratedLoudness></loudnessMetadata>
</audioContent>
<audioObject audioObjectID="AO_1001" audioObjectName="Bed" start="00:00:00.00000"
    duration="00:00:10.00000" dialogue="0" importance="8" interact="0" disableDucking="1">
  <audioPackFormatIDRef>AP_00010002</audioPackFormatIDRef>
  <audioTrackUIDRef>ATU_00000001</audioTrackUIDRef>
  <audioTrackUIDRef>ATU_00000002</audioTrackUIDRef>
  <gain gainUnit="dB">-6</gain>
</audioObject>
<audioObject audioObjectID="AO_1002" audioObjectName="Voice" start="00:00:01.00480S48000">
  <audioPackFormatIDRef>AP_00031001</audioPackFormatIDRef>
  <audioTrackUIDRef>ATU_00000003</audioTrackUIDRef>
  <audioComplementaryObjectIDRef>AO_1001</audioComplementaryObjectIDRef>
  <gain>0.5</gain>
  <mute>true</mute>
</audioObject>
<audioPackFormat audioPackFormatID="AP_00031001" audioPackFormatName="voice" typeLabel="0003"
    typeDefinition="Objects" importance="9">
  <audioChannelFormatIDRef>AC_00031001</audioChannelFormatIDRef>
  <absoluteDistance>4.5</absoluteDistance>
</audioPackFormat>
<audioChannelFormat audioChannelFormatID="AC_00031001" audioChannelFormatName="voice"
    typeDefinition="Objects">
  <audioBlockFormat audioBlockFormatID="AB_00031001_00000001" rtime="00:00:00.00000"
      duration="00:00:00.50000">
    <position coordinate="azimuth">30.0</position>
    <position coordinate="elevation">10.0</position>
  </audioBlockFormat>
  <audioBlockFormat audioBlockFormatID="AB_00031001_00000002" rtime="00:00:00.50000"
      duration="00:00:00.01000S48000">
    <position coordinate="azimuth" screenEdgeLock="left">-30.0</position>
    <position coordinate="elevation" screenEdgeLock="top">0.0</position>
    <position coordinate="distance">0.5</position>
    <width>10</width><height>20</height><depth>0.1</depth>
    <gain gainUnit="dB">-20</gain><diffuse>0.25</diffuse>
    <channelLock maxDistance="0.3">1</channelLock>
    <objectDivergence azimuthRange="30">0.5</objectDivergence>
    <jumpPosition interpolationLength="0.05">1</jumpPosition>
    <screenRef>1</screenRef><importance>7</importance><headLocked>1</headLocked>
    <zoneExclusion>
      <zone minElevation="-10" maxElevation="10" minAzimuth="100" maxAzimuth="-100">rear</zone>
    </zoneExclusion>
  </audioBlockFormat>
</audioChannelFormat>
<audioStreamFormat audioStreamFormatID="AS_00031001" audioStreamFormatName="voice"
    formatLabel="0001" formatDefinition="PCM">
  <audioChannelFormatIDRef>AC_00031001</audioChannelFormatIDRef>
  <audioTrackFormatIDRef>AT_00031001_01</audioTrackFormatIDRef>
</audioStreamFormat>
<audioTrackFormat audioTrackFormatID="AT_00031001_01" audioTrackFormatName="voice"
    formatDefinition="PCM">
  <audioStreamFormatIDRef>AS_00031001</audioStreamFormatIDRef>
</audioTrackFormat>
<audioTrackUID UID="ATU_00000001" sampleRate="48000" bitDepth="24">
  <audioTrackFormatIDRef>AT_00010001_01</audioTrackFormatIDRef>
  <audioPackFormatIDRef>AP_00010002</audioPackFormatIDRef>
</audioTrackUID>
<audioTrackUID UID="ATU_00000002" sampleRate="48000" bitDepth="24">
  <audioTrackFormatIDRef>AT_00010002_01</audioTrackFormatIDRef>
  <audioPackFormatIDRef>AP_00010002</audioPackFormatIDRef>
</audioTrackUID>
<audioTrackUID UID="ATU_00000003" sampleRate="48000" bitDepth="24">
  <audioTrackFormatIDRef>AT_00031001_01</audioTrackFormatIDRef>
  <audioPackFormatIDRef>AP_00031001</audioPackFormatIDRef>
</audioTrackUID>
"""


@pytest.fixture(scope="module")
def full_doc():
    return parse_adm_xml(ebu(FULL), source="full.wav")


def test_programme_content_loudness_screen(full_doc) -> None:
    (programme,) = full_doc.programmes
    assert programme.id == "APR_1001" and programme.name == "Main"
    assert programme.language == "en"
    assert programme.content_ids == ("ACO_1001",)
    assert (programme.start, programme.end) == (Fraction(0), Fraction(10))
    assert programme.reference_screen == PolarScreen(1.78, 0.0, 0.0, 1.0, 58.0)
    (loudness,) = programme.loudness
    assert loudness.method == "ITU-R BS.1770"
    assert loudness.integrated_loudness == -23.0
    assert loudness.max_true_peak == -1.5  # surrounding whitespace accepted
    assert loudness.loudness_range == 7.0 and loudness.dialogue_loudness == -24.0
    assert loudness.max_momentary is None
    (content,) = full_doc.contents
    assert content.object_ids == ("AO_1001", "AO_1002")
    assert content.dialogue == 1 and content.language == "en"
    assert content.loudness[0].integrated_loudness == -20.0


def test_objects(full_doc) -> None:
    bed = full_doc.lookup("AO_1001", AudioObject)
    assert bed.pack_format_ids == ("AP_00010002",)
    assert bed.track_uid_ids == ("ATU_00000001", "ATU_00000002")
    assert bed.gain == pytest.approx(10 ** (-6 / 20))  # gainUnit="dB" -> linear
    assert (bed.start, bed.duration) == (Fraction(0), Fraction(10))
    assert (bed.dialogue, bed.importance, bed.interact, bed.disable_ducking) == (0, 8, False, True)
    assert bed.mute is False
    voice = full_doc.lookup("AO_1002", AudioObject)
    assert voice.start == 1 + Fraction(480, 48000)  # sample-count time form
    assert voice.duration is None
    assert voice.complementary_object_ids == ("AO_1001",)
    assert voice.gain == 0.5 and voice.mute is True
    assert voice.importance is None and voice.interact is None


def test_pack_stream_track_uid(full_doc) -> None:
    pack = full_doc.lookup("AP_00031001", AudioPackFormat)
    assert pack.type is TypeDefinition.Objects
    assert pack.channel_format_ids == ("AC_00031001",)
    assert pack.importance == 9 and pack.absolute_distance == 4.5
    assert pack.is_common_definition is False
    stream = full_doc.get("AS_00031001")
    assert stream.channel_format_id == "AC_00031001"
    assert stream.track_format_ids == ("AT_00031001_01",) and stream.format_label == "0001"
    assert full_doc.get("AT_00031001_01").stream_format_id == "AS_00031001"
    uid = full_doc.lookup("ATU_00000003", AudioTrackUID)
    assert (uid.sample_rate, uid.bit_depth) == (48000, 24)
    assert uid.track_format_id == "AT_00031001_01" and uid.pack_format_id == "AP_00031001"
    assert uid.track_index is None


def test_objects_blocks(full_doc) -> None:
    channel = full_doc.lookup("AC_00031001", AudioChannelFormat)
    assert channel.type is TypeDefinition.Objects  # typeDefinition alone is enough
    first, second = channel.blocks
    # BS.2076-2 defaults
    assert first.position == PolarPosition(30.0, 10.0, 1.0)
    assert (first.rtime, first.duration) == (Fraction(0), Fraction(1, 2))
    assert first.cartesian is False
    assert (first.width, first.height, first.depth, first.gain, first.diffuse) == (0, 0, 0, 1, 0)
    assert first.importance == 10 and not first.screen_ref and not first.head_locked
    assert not first.jump_position.flag and first.jump_position.interpolation_length is None
    assert not first.channel_lock.flag and first.object_divergence.value == 0.0
    assert first.zone_exclusion == ()
    # everything given
    assert second.position == PolarPosition(-30.0, 0.0, 0.5)
    assert second.duration == Fraction(1000, 48000)  # "00:00:00.01000S48000"
    assert second.screen_edge_lock.horizontal == "left"
    assert second.screen_edge_lock.vertical == "top"
    assert (second.width, second.height, second.depth) == (10.0, 20.0, 0.1)
    assert second.gain == pytest.approx(0.1)  # -20 dB
    assert second.diffuse == 0.25
    assert second.channel_lock.flag and second.channel_lock.max_distance == 0.3
    assert second.object_divergence.value == 0.5
    assert second.object_divergence.azimuth_range == 30.0
    assert second.object_divergence.position_range is None
    assert second.jump_position.flag
    assert second.jump_position.interpolation_length == Fraction(1, 20)
    assert second.screen_ref and second.importance == 7 and second.head_locked
    assert second.zone_exclusion == (PolarZone(-10.0, 10.0, 100.0, -100.0, label="rear"),)


def test_common_definition_reference_resolved(full_doc) -> None:
    # AP_00010002 (stereo, BS.2094) is not in the file; it and its channels are merged in
    pack = full_doc.lookup("AP_00010002", AudioPackFormat)
    assert pack.is_common_definition
    assert pack.channel_format_ids == ("AC_00010001", "AC_00010002")
    left = full_doc.lookup("AC_00010001", AudioChannelFormat)
    assert left.blocks[0].position.azimuth.value == 30.0
    assert full_doc.get("AT_00010001_01").stream_format_id == "AS_00010001"


def test_common_definitions_51_pack_and_lfe() -> None:
    common = common_definitions()
    assert all(p.is_common_definition for p in common.pack_formats)
    pack = common.lookup("AP_00010003", AudioPackFormat)  # 5.1 (0+5+0), BS.2051 order
    labels = []
    for channel_id in pack.channel_format_ids:
        block = common.lookup(channel_id, AudioChannelFormat).blocks[0]
        assert isinstance(block, DirectSpeakersBlock)
        labels.append(block.speaker_labels[0].rsplit(":", 1)[1])
    assert labels == ["M+030", "M-030", "M+000", "LFE", "M+110", "M-110"]
    lfe = common.lookup("AC_00010004", AudioChannelFormat)
    assert lfe.frequency.low_pass == 120.0 and lfe.frequency.high_pass is None
    # lower-case hex digits in the data are normalised: AP_0001000a -> AP_0001000A
    assert common.get("AP_0001000A") is not None
    hoa = common.lookup("AC_00040002", AudioChannelFormat).blocks[0]
    assert isinstance(hoa, HoaBlock)
    assert (hoa.order, hoa.degree, hoa.normalization) == (1, -1, "SN3D")


# --------------------------------------------------------------------------------------------
# Objects blocks: cartesian vs polar, flags, errors
# --------------------------------------------------------------------------------------------


def test_cartesian_object_block() -> None:
    block = one_block('<cartesian>1</cartesian><position coordinate="X">-0.5</position>'
                      '<position coordinate="Y">1</position>')
    assert block.cartesian is True
    assert block.position == CartesianPosition(-0.5, 1.0, 0.0)  # Z defaults to 0


def test_cartesian_flag_from_coordinates_when_absent() -> None:
    block = one_block('<position coordinate="X">0.1</position>'
                      '<position coordinate="Y">0.2</position>'
                      '<position coordinate="Z">0.3</position>')
    assert block.cartesian is True and block.position == CartesianPosition(0.1, 0.2, 0.3)
    polar = one_block('<position coordinate="azimuth">45</position>')
    assert polar.cartesian is False and polar.position == PolarPosition(45.0, 0.0, 1.0)


@pytest.mark.parametrize(
    ("inner", "message"),
    [
        ('<cartesian>1</cartesian><position coordinate="azimuth">0</position>', "disagrees"),
        ('<cartesian>0</cartesian><position coordinate="X">0</position>'
         '<position coordinate="Y">0</position>', "disagrees"),
        ('<position coordinate="azimuth">0</position><position coordinate="X">0</position>',
         "mixes polar and cartesian"),
        ('<position coordinate="X">0</position>', "needs X and Y"),
        ('<position coordinate="elevation">0</position>', "no azimuth"),
        ("<gain>1</gain>", "no position"),
        ('<position coordinate="azimuth">0</position><position coordinate="azimuth">1</position>',
         "duplicate"),
        ('<position coordinate="azimuth" screenEdgeLock="top">0</position>', "screenEdgeLock"),
        ('<position coordinate="azimuth">0</position><gain gainUnit="bel">1</gain>', "gainUnit"),
        ('<position coordinate="azimuth">0</position><cartesian>yes</cartesian>', "bad boolean"),
    ],
)
def test_objects_block_errors(inner: str, message: str) -> None:
    with pytest.raises(AdmError, match=message) as info:
        one_block(inner)
    assert "AB_00031001_00000001" in str(info.value)


def test_bad_number_names_element_and_attribute() -> None:
    with pytest.raises(AdmError) as info:
        one_block('<position coordinate="azimuth">abc</position>')
    text = str(info.value)
    assert "AB_00031001_00000001" in text and "azimuth" in text and "'abc'" in text
    with pytest.raises(AdmError, match="AB_00031001_00000001.*bad number 'nan' for width"):
        one_block('<position coordinate="azimuth">0</position><width>nan</width>')
    with pytest.raises(AdmError, match="AB_00031001_00000001 rtime"):
        one_block('<position coordinate="azimuth">0</position>', 'rtime="0:00:00.x"')


def test_cartesian_zone_and_position_range() -> None:
    block = one_block(
        '<cartesian>true</cartesian><position coordinate="X">0</position>'
        '<position coordinate="Y">0</position><objectDivergence positionRange="0.25">1'
        '</objectDivergence><zoneExclusion><zone minX="-1" maxX="1" minY="-1" maxY="0" '
        'minZ="0" maxZ="1"/></zoneExclusion>')
    assert block.object_divergence.position_range == 0.25
    assert block.zone_exclusion == (CartesianZone(-1.0, 1.0, -1.0, 0.0, 0.0, 1.0),)


def test_block_with_duration_but_no_rtime_starts_at_zero() -> None:
    block = one_block('<position coordinate="azimuth">0</position>', 'duration="00:00:01.0"')
    assert (block.rtime, block.duration) == (Fraction(0), Fraction(1))


# --------------------------------------------------------------------------------------------
# DirectSpeakers, HOA, Matrix, Binaural
# --------------------------------------------------------------------------------------------


def test_direct_speakers_bounds_and_labels() -> None:
    doc = parse_adm_xml(bare(
        '<audioChannelFormat audioChannelFormatID="AC_00011001" audioChannelFormatName="L" '
        'typeLabel="0001"><audioBlockFormat audioBlockFormatID="AB_00011001_00000001">'
        "<speakerLabel>M+030</speakerLabel><speakerLabel> L </speakerLabel>"
        '<position coordinate="azimuth">30</position>'
        '<position coordinate="azimuth" bound="min">25</position>'
        '<position coordinate="azimuth" bound="max">35</position>'
        '<position coordinate="elevation">0</position>'
        "<gain>0.5</gain><importance>4</importance><headLocked>1</headLocked>"
        "</audioBlockFormat></audioChannelFormat>"))
    block = doc.lookup("AC_00011001", AudioChannelFormat).blocks[0]
    assert isinstance(block, DirectSpeakersBlock)
    assert block.speaker_labels == ("M+030", "L")
    assert block.position == DirectSpeakersPolarPosition(
        BoundedValue(30.0, 25.0, 35.0), BoundedValue(0.0), BoundedValue(1.0))
    assert (block.gain, block.importance, block.head_locked) == (0.5, 4, True)


def test_direct_speakers_bound_without_value_refused() -> None:
    with pytest.raises(AdmError, match="bounds but no value"):
        parse_adm_xml(bare(
            '<audioChannelFormat audioChannelFormatID="AC_00011001" audioChannelFormatName="L" '
            'typeLabel="0001"><audioBlockFormat audioBlockFormatID="AB_00011001_00000001">'
            '<position coordinate="azimuth" bound="min">25</position>'
            "</audioBlockFormat></audioChannelFormat>"))


def test_hoa_matrix_binaural_blocks_and_pack_attributes() -> None:
    doc = parse_adm_xml(bare(
        '<audioPackFormat audioPackFormatID="AP_00041001" audioPackFormatName="hoa" '
        'typeLabel="0004"><audioChannelFormatIDRef>AC_00041001</audioChannelFormatIDRef>'
        "<normalization>N3D</normalization><nfcRefDist>2.0</nfcRefDist><screenRef>0</screenRef>"
        "</audioPackFormat>"
        '<audioChannelFormat audioChannelFormatID="AC_00041001" audioChannelFormatName="W" '
        'typeDefinition="HOA"><audioBlockFormat audioBlockFormatID="AB_00041001_00000001">'
        "<order>0</order><degree>0</degree><normalization>N3D</normalization>"
        "<nfcRefDist>2</nfcRefDist><screenRef>0</screenRef><equation>1</equation>"
        "</audioBlockFormat></audioChannelFormat>"
        '<audioPackFormat audioPackFormatID="AP_00021001" audioPackFormatName="ms" '
        'typeLabel="0002"><audioChannelFormatIDRef>AC_00021001</audioChannelFormatIDRef>'
        "<inputPackFormatIDRef>AP_00010002</inputPackFormatIDRef>"
        "<outputPackFormatIDRef>AP_00010002</outputPackFormatIDRef>"
        "<encodePackFormatIDRef>AP_00010002</encodePackFormatIDRef>"
        "<decodePackFormatIDRef>AP_00010002</decodePackFormatIDRef></audioPackFormat>"
        '<audioChannelFormat audioChannelFormatID="AC_00021001" audioChannelFormatName="M" '
        'typeLabel="0002"><audioBlockFormat audioBlockFormatID="AB_00021001_00000001">'
        '<matrix><coefficient gain="0.5" phase="180" delay="1.5" gainVar="g">AC_00010001'
        '</coefficient><coefficient gain="-6" gainUnit="dB">ac_00010002</coefficient></matrix>'
        "<outputChannelFormatIDRef>AC_00010003</outputChannelFormatIDRef>"
        "</audioBlockFormat></audioChannelFormat>"
        '<audioChannelFormat audioChannelFormatID="AC_00051001" audioChannelFormatName="B" '
        'typeLabel="0005"><audioBlockFormat audioBlockFormatID="AB_00051001_00000001">'
        "<gain>2</gain></audioBlockFormat></audioChannelFormat>"))
    hoa_pack = doc.lookup("AP_00041001", AudioPackFormat)
    assert hoa_pack.type is TypeDefinition.HOA
    assert (hoa_pack.normalization, hoa_pack.nfc_ref_dist, hoa_pack.screen_ref) == (
        "N3D", 2.0, False)
    hoa = doc.lookup("AC_00041001", AudioChannelFormat).blocks[0]
    assert hoa == HoaBlock("AB_00041001_00000001", order=0, degree=0, normalization="N3D",
                           nfc_ref_dist=2.0, screen_ref=False, equation="1")
    matrix_pack = doc.lookup("AP_00021001", AudioPackFormat)
    assert matrix_pack.input_pack_format_id == "AP_00010002"
    assert matrix_pack.output_pack_format_id == "AP_00010002"
    assert matrix_pack.encode_pack_format_ids == ("AP_00010002",)
    assert matrix_pack.decode_pack_format_ids == ("AP_00010002",)
    matrix = doc.lookup("AC_00021001", AudioChannelFormat).blocks[0]
    assert isinstance(matrix, MatrixBlock)
    first, second = matrix.coefficients
    assert (first.input_channel_format_id, first.gain, first.phase, first.delay) == (
        "AC_00010001", 0.5, 180.0, 1.5)
    assert first.gain_var == "g" and first.phase_var is None
    assert second.input_channel_format_id == "AC_00010002"  # hex case normalised
    assert second.gain == pytest.approx(10 ** (-6 / 20))
    assert matrix.output_channel_format_id == "AC_00010003"
    binaural = doc.lookup("AC_00051001", AudioChannelFormat)
    assert binaural.type is TypeDefinition.Binaural and binaural.blocks[0].gain == 2.0


def test_frequency_high_pass_and_type_mismatch() -> None:
    doc = parse_adm_xml(bare(
        '<audioChannelFormat audioChannelFormatID="AC_00011001" audioChannelFormatName="L" '
        'typeLabel="0001"><frequency typeDefinition="highPass">20</frequency>'
        '<frequency typeDefinition="lowPass">200</frequency>'
        '<audioBlockFormat audioBlockFormatID="AB_00011001_00000001">'
        '<position coordinate="azimuth">0</position></audioBlockFormat></audioChannelFormat>'))
    frequency = doc.lookup("AC_00011001", AudioChannelFormat).frequency
    assert (frequency.low_pass, frequency.high_pass) == (200.0, 20.0)
    with pytest.raises(AdmError, match="contradicts"):
        parse_adm_xml(bare(
            '<audioChannelFormat audioChannelFormatID="AC_00011001" audioChannelFormatName="L" '
            'typeLabel="0001" typeDefinition="Objects"/>'))


def test_cartesian_reference_screen() -> None:
    doc = parse_adm_xml(bare(
        '<audioProgramme audioProgrammeID="APR_1001" audioProgrammeName="p">'
        '<audioProgrammeReferenceScreen aspectRatio="2.39">'
        '<screenCentrePosition X="0.0" Y="1.0" Z="0.1"/><screenWidth X="1.5"/>'
        "</audioProgrammeReferenceScreen></audioProgramme>"))
    assert doc.programmes[0].reference_screen == CartesianScreen(2.39, 0.0, 1.0, 0.1, 1.5)
    assert parse_adm_xml(bare(
        '<audioProgramme audioProgrammeID="APR_1001" audioProgrammeName="p"/>'
    )).programmes[0].reference_screen is None


# --------------------------------------------------------------------------------------------
# Wrappers, namespaces, IDs
# --------------------------------------------------------------------------------------------

SMALL = (
    '<audioObject audioObjectID="ao_1001" audioObjectName="o">'
    "<audioPackFormatIDRef>ap_00010001</audioPackFormatIDRef>"
    "<audioTrackUIDRef>ATU_00000000</audioTrackUIDRef></audioObject>"
)


@pytest.mark.parametrize(
    "data",
    [
        ebu(SMALL, "urn:ebu:metadata-schema:ebuCore_2014"),
        ebu(SMALL, EBU_2016),
        ebu(SMALL, None),
        bare(SMALL),
        # prefixed namespace
        ('<ebu:ebuCoreMain xmlns:ebu="urn:ebu:metadata-schema:ebuCore_2016"><ebu:coreMetadata>'
         "<ebu:format><ebu:audioFormatExtended>" + SMALL.replace("<", "<ebu:")
         .replace("<ebu:/", "</ebu:") + "</ebu:audioFormatExtended></ebu:format>"
         "</ebu:coreMetadata></ebu:ebuCoreMain>").encode(),
        # serial ADM (BS.2125) frame
        ('<frame version="ITU-R_BS.2125-1"><frameHeader><frameFormat frameFormatID="FF_00000001"'
         ' start="00:00:00.00000" duration="00:00:00.50000" type="full"/></frameHeader>'
         f"<audioFormatExtended>{SMALL}</audioFormatExtended></frame>").encode(),
        # NUL padding of an axml chunk
        ebu(SMALL) + b"\x00" * 17,
    ],
)
def test_wrappers_and_namespaces(data: bytes) -> None:
    doc = parse_adm_xml(data)
    (obj,) = doc.objects
    assert obj.id == "AO_1001"  # IDs and references are upper-cased
    assert obj.pack_format_ids == ("AP_00010001",)
    assert obj.track_uid_ids == ("ATU_00000000",)  # silent track allowed
    assert doc.lookup("AP_00010001", AudioPackFormat).is_common_definition


def test_no_audio_format_extended() -> None:
    with pytest.raises(AdmError, match="no audioFormatExtended"):
        parse_adm_xml(b"<ebuCoreMain><coreMetadata/></ebuCoreMain>", source="x.wav")


def test_duplicate_id_refused() -> None:
    with pytest.raises(AdmError, match="duplicate ADM ID AO_1001"):
        parse_adm_xml(bare(SMALL + SMALL.replace("ao_1001", "AO_1001")))


def test_file_element_overrides_common_definition() -> None:
    doc = parse_adm_xml(bare(
        '<audioPackFormat audioPackFormatID="AP_00010002" audioPackFormatName="my stereo" '
        'typeLabel="0001"><audioChannelFormatIDRef>AC_00010001</audioChannelFormatIDRef>'
        "</audioPackFormat>"))
    pack = doc.lookup("AP_00010002", AudioPackFormat)
    assert pack.name == "my stereo" and not pack.is_common_definition
    assert [p.id for p in doc.pack_formats].count("AP_00010002") == 1


# --------------------------------------------------------------------------------------------
# Security and syntax errors
# --------------------------------------------------------------------------------------------

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol9 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
]>
<audioFormatExtended><audioObject audioObjectID="AO_1001" audioObjectName="&lol9;"/>
</audioFormatExtended>"""

EXTERNAL_ENTITY = b"""<?xml version="1.0"?>
<!DOCTYPE audioFormatExtended [ <!ENTITY xxe SYSTEM "file:///etc/passwd"> ]>
<audioFormatExtended><audioObject audioObjectID="AO_1001" audioObjectName="&xxe;"/>
</audioFormatExtended>"""


@pytest.mark.parametrize("data", [BILLION_LAUGHS, EXTERNAL_ENTITY])
def test_entity_declarations_refused(data: bytes) -> None:
    with pytest.raises(AdmError, match="entity declarations are not allowed") as info:
        parse_adm_xml(data, source="evil.wav")
    assert "evil.wav" in str(info.value)
    assert "root:" not in str(info.value)  # nothing of /etc/passwd leaked


def test_plain_doctype_without_entities_is_fine() -> None:
    doc = parse_adm_xml(b"<!DOCTYPE audioFormatExtended>" + bare(SMALL))
    assert doc.objects[0].id == "AO_1001"


def test_xml_syntax_error_names_line() -> None:
    data = b'<audioFormatExtended>\n<audioObject audioObjectID="AO_1001">\n</audioFormat>\n'
    with pytest.raises(AdmError, match=r"bad\.wav: XML syntax error at line 3"):
        parse_adm_xml(data, source="bad.wav")


# --------------------------------------------------------------------------------------------
# References and strictness
# --------------------------------------------------------------------------------------------


def test_missing_reference_message() -> None:
    data = bare('<audioObject audioObjectID="AO_1001" audioObjectName="o">'
                "<audioPackFormatIDRef>AP_00031999</audioPackFormatIDRef></audioObject>")
    with pytest.raises(AdmError) as info:
        parse_adm_xml(data, source="m.wav")
    assert str(info.value) == (
        "m.wav: ADM reference to missing element AP_00031999 (referenced from AO_1001)")


def test_reference_to_wrong_kind() -> None:
    data = bare('<audioObject audioObjectID="AO_1001" audioObjectName="o">'
                "<audioPackFormatIDRef>AC_00010001</audioPackFormatIDRef></audioObject>")
    with pytest.raises(AdmError, match="AC_00010001 .*expected AudioPackFormat"):
        parse_adm_xml(data)


def test_unknown_items_ignored_unless_strict() -> None:
    data = bare('<audioObject audioObjectID="AO_1001" audioObjectName="o" fancy="1">'
                "<audioObjectLabel>x</audioObjectLabel><sparkle/></audioObject>")
    assert parse_adm_xml(data).objects[0].id == "AO_1001"
    with pytest.raises(AdmError, match="unknown attribute 'fancy'"):
        parse_adm_xml(data, strict=True)
    data = bare('<audioObject audioObjectID="AO_1001" audioObjectName="o">'
                "<audioObjectLabel>x</audioObjectLabel><sparkle/></audioObject>")
    with pytest.raises(AdmError, match="unknown element <sparkle>"):
        parse_adm_xml(data, strict=True)


def test_common_definitions_pass_strict_mode() -> None:
    from importlib import resources

    data = resources.files("adm").joinpath("data/common_definitions.xml").read_bytes()
    doc = parse_adm_xml(data, strict=True)
    assert len(doc.pack_formats) == len(common_definitions().pack_formats)


# --------------------------------------------------------------------------------------------
# Dolby-style snippet (cartesian bed and objects)
# --------------------------------------------------------------------------------------------

DOLBY = """
<audioPackFormat audioPackFormatID="AP_00011001" audioPackFormatName="RoomCentric_2.0"
    typeLabel="0001" typeDefinition="DirectSpeakers">
  <audioChannelFormatIDRef>AC_00011001</audioChannelFormatIDRef>
  <audioChannelFormatIDRef>AC_00011002</audioChannelFormatIDRef>
</audioPackFormat>
<audioChannelFormat audioChannelFormatID="AC_00011001" audioChannelFormatName="RoomCentricLeft"
    typeLabel="0001" typeDefinition="DirectSpeakers">
  <audioBlockFormat audioBlockFormatID="AB_00011001_00000001">
    <speakerLabel>RC_L</speakerLabel>
    <cartesian>1</cartesian>
    <position coordinate="X">-1.000000</position>
    <position coordinate="Y">1.000000</position>
    <position coordinate="Z">0.000000</position>
  </audioBlockFormat>
</audioChannelFormat>
<audioChannelFormat audioChannelFormatID="AC_00011002" audioChannelFormatName="RoomCentricLFE"
    typeLabel="0001" typeDefinition="DirectSpeakers">
  <audioBlockFormat audioBlockFormatID="AB_00011002_00000001">
    <speakerLabel>RC_LFE</speakerLabel>
    <position coordinate="X">-1.000000</position>
    <position coordinate="Y">1.000000</position>
    <position coordinate="Z">-1.000000</position>
  </audioBlockFormat>
</audioChannelFormat>
<audioChannelFormat audioChannelFormatID="AC_00031001" audioChannelFormatName="Object 1"
    typeLabel="0003" typeDefinition="Objects">
  <audioBlockFormat audioBlockFormatID="AB_00031001_00000001" rtime="00:00:00.00000"
      duration="00:00:00.02000">
    <cartesian>1</cartesian>
    <position coordinate="X">-0.500000</position>
    <position coordinate="Y">0.250000</position>
    <position coordinate="Z">0.000000</position>
    <width>0.000000</width><depth>0.000000</depth><height>0.000000</height>
    <gain>1.000000</gain>
    <jumpPosition interpolationLength="0">1</jumpPosition>
  </audioBlockFormat>
  <audioBlockFormat audioBlockFormatID="AB_00031001_00000002" rtime="00:00:00.02000"
      duration="00:00:05.98000">
    <cartesian>1</cartesian>
    <position coordinate="X">0.300000</position>
    <position coordinate="Y">-1.000000</position>
    <width>0.2</width><depth>0.2</depth><height>0.2</height>
    <jumpPosition interpolationLength="0.005208">1</jumpPosition>
  </audioBlockFormat>
</audioChannelFormat>
"""


def test_dolby_style_snippet() -> None:
    doc = parse_adm_xml(ebu(DOLBY, "urn:ebu:metadata-schema:ebuCore_2014"))
    left = doc.lookup("AC_00011001", AudioChannelFormat).blocks[0]
    assert isinstance(left, DirectSpeakersBlock)
    assert left.speaker_labels == ("RC_L",)
    assert left.position == DirectSpeakersCartesianPosition(
        BoundedValue(-1.0), BoundedValue(1.0), BoundedValue(0.0))
    lfe = doc.lookup("AC_00011002", AudioChannelFormat).blocks[0]
    assert lfe.position.z == BoundedValue(-1.0)
    first, second = doc.lookup("AC_00031001", AudioChannelFormat).blocks
    assert first.cartesian and first.position == CartesianPosition(-0.5, 0.25, 0.0)
    assert first.jump_position.flag and first.jump_position.interpolation_length == 0
    assert second.rtime == Fraction(1, 50) and second.duration == Fraction(598, 100)
    assert second.position == CartesianPosition(0.3, -1.0, 0.0)
    assert (second.width, second.depth, second.height) == (0.2, 0.2, 0.2)
    # 0.005208 s read exactly from its digits (250 samples at 48 kHz is 0.0052083..)
    assert second.jump_position.interpolation_length == Fraction(5208, 1_000_000)


# --------------------------------------------------------------------------------------------
# chna merge
# --------------------------------------------------------------------------------------------


def test_chna_sets_track_indices(full_doc) -> None:
    chna = [
        ChnaEntry(1, "ATU_00000001", "AT_00010001_01", "AP_00010002"),
        ChnaEntry(2, "ATU_00000002", "AT_00010002_01", "AP_00010002"),
        ChnaEntry(3, "atu_00000003", "at_00031001_01", "AP_00031001"),
    ]
    doc = apply_chna(full_doc, chna, n_tracks=3, source="full.wav")
    assert [u.track_index for u in doc.track_uids] == [1, 2, 3]
    assert full_doc.track_uids[0].track_index is None  # input unchanged (immutable)


def test_chna_creates_missing_uids() -> None:
    doc = parse_adm_xml(bare(
        '<audioObject audioObjectID="AO_1001" audioObjectName="o">'
        "<audioPackFormatIDRef>AP_00010002</audioPackFormatIDRef>"
        "<audioTrackUIDRef>ATU_00000001</audioTrackUIDRef>"
        "<audioTrackUIDRef>ATU_00000002</audioTrackUIDRef></audioObject>"
        '<audioTrackUID UID="ATU_00000001"/><audioTrackUID UID="ATU_00000002"/>'
        '<audioObject audioObjectID="AO_1002" audioObjectName="silent-ish">'
        "<audioPackFormatIDRef>AP_00010001</audioPackFormatIDRef>"
        "<audioTrackUIDRef>ATU_00000009</audioTrackUIDRef></audioObject>"
        '<audioTrackUID UID="ATU_00000009"/>'))
    chna = [
        ChnaEntry(1, "ATU_00000001", "AT_00010001_01", "AP_00010002"),
        ChnaEntry(2, "ATU_00000002", "AC_00010002_00", "AP_00010002"),  # BS.2076-2 channel ref
        ChnaEntry(3, "ATU_00000005", "AC_00010003", None),
    ]
    merged = apply_chna(doc, chna, n_tracks=3, source="f.wav")
    by_id = {u.id: u for u in merged.track_uids}
    assert by_id["ATU_00000001"].track_format_id == "AT_00010001_01"
    assert by_id["ATU_00000001"].pack_format_id == "AP_00010002"
    assert by_id["ATU_00000002"].channel_format_id == "AC_00010002"
    assert by_id["ATU_00000002"].track_format_id is None
    new = by_id["ATU_00000005"]
    assert (new.track_index, new.channel_format_id, new.pack_format_id) == (
        3, "AC_00010003", None)
    assert by_id["ATU_00000009"].track_index is None  # not in chna: silent


def test_chna_disagreement_and_bad_track_index(full_doc) -> None:
    wrong_pack = [ChnaEntry(1, "ATU_00000001", "AT_00010001_01", "AP_00010003")]
    with pytest.raises(AdmError, match="ATU_00000001.*AP_00010003.*AP_00010002"):
        apply_chna(full_doc, wrong_pack, n_tracks=3, source="full.wav")
    wrong_track = [ChnaEntry(1, "ATU_00000001", "AT_00010003_01", "AP_00010002")]
    with pytest.raises(AdmError, match="ATU_00000001.*AT_00010003_01"):
        apply_chna(full_doc, wrong_track, n_tracks=3, source="full.wav")
    wrong_channel = [ChnaEntry(1, "ATU_00000001", "AC_00010002", "AP_00010002")]
    with pytest.raises(AdmError, match="ATU_00000001.*AC_00010002.*AC_00010001"):
        apply_chna(full_doc, wrong_channel, n_tracks=3, source="full.wav")
    too_far = [ChnaEntry(5, "ATU_00000001", "AT_00010001_01", "AP_00010002")]
    with pytest.raises(AdmError, match="full.wav: chna entry for track 5 but the file has 3"):
        apply_chna(full_doc, too_far, n_tracks=3, source="full.wav")
    silent = [ChnaEntry(1, "ATU_00000000", "AT_00010001_01", None)]
    with pytest.raises(AdmError, match="reserved"):
        apply_chna(full_doc, silent, n_tracks=3, source="full.wav")
    dangling = [ChnaEntry(1, "ATU_00000007", "AT_00099999_01", None)]
    with pytest.raises(AdmError, match="missing element AT_00099999_01"):
        apply_chna(full_doc, dangling, n_tracks=3, source="full.wav")


def test_check_references_accepts_parsed_document(full_doc) -> None:
    check_references(full_doc)  # raises on failure
    assert full_doc.get("ATU_00000003") is not None


# --------------------------------------------------------------------------------------------
# Speed
# --------------------------------------------------------------------------------------------


def test_large_file_parses_quickly() -> None:
    n_objects, n_blocks = 128, 24
    parts = []
    for i in range(n_objects):
        oid = f"{0x1001 + i:04X}"
        blocks = "".join(
            f'<audioBlockFormat audioBlockFormatID="AB_0003{oid}_{b + 1:08X}" '
            f'rtime="00:00:{b // 10:02d}.{(b % 10) * 10000:05d}" duration="00:00:00.10000">'
            f'<cartesian>1</cartesian><position coordinate="X">0.{b}</position>'
            '<position coordinate="Y">0.5</position><position coordinate="Z">0</position>'
            "<width>0.1</width><depth>0.1</depth><height>0.1</height><gain>1</gain>"
            '<jumpPosition interpolationLength="0.005208">1</jumpPosition></audioBlockFormat>'
            for b in range(n_blocks)
        )
        parts.append(
            f'<audioObject audioObjectID="AO_{oid}" audioObjectName="o">'
            f"<audioPackFormatIDRef>AP_0003{oid}</audioPackFormatIDRef></audioObject>"
            f'<audioPackFormat audioPackFormatID="AP_0003{oid}" audioPackFormatName="p" '
            f'typeLabel="0003"><audioChannelFormatIDRef>AC_0003{oid}</audioChannelFormatIDRef>'
            f'</audioPackFormat><audioChannelFormat audioChannelFormatID="AC_0003{oid}" '
            f'audioChannelFormatName="c" typeLabel="0003">{blocks}</audioChannelFormat>')
    data = ebu("".join(parts))
    doc = parse_adm_xml(data)
    assert sum(len(c.blocks) for c in doc.channel_formats if not c.is_common_definition) == (
        n_objects * n_blocks)


def test_direct_speakers_screen_edge_lock_is_read_and_written_back():
    from adm.model import DirectSpeakersBlock, ScreenEdgeLock
    from adm.xml_write import adm_to_xml

    doc = parse_adm_xml(b"""<audioFormatExtended>
      <audioChannelFormat audioChannelFormatID="AC_00011001" audioChannelFormatName="Lsc"
          typeLabel="0001">
        <audioBlockFormat audioBlockFormatID="AB_00011001_00000001">
          <speakerLabel>M+SC</speakerLabel>
          <position coordinate="azimuth" screenEdgeLock="left">15.0</position>
          <position coordinate="elevation">0.0</position>
        </audioBlockFormat>
      </audioChannelFormat></audioFormatExtended>""")
    block = doc.lookup("AC_00011001").blocks[0]
    assert isinstance(block, DirectSpeakersBlock)
    assert block.screen_edge_lock == ScreenEdgeLock("left", None)
    again = parse_adm_xml(adm_to_xml(doc)).lookup("AC_00011001").blocks[0]
    assert again.screen_edge_lock == ScreenEdgeLock("left", None)
