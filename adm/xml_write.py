"""Serialise an :class:`~adm.model.AdmDocument` to ITU-R BS.2076-2 XML (the ``axml`` payload).

The document is wrapped as EBU Tech 3364 / BS.2076-2 files from production tools are::

    <ebuCoreMain xmlns="urn:ebu:metadata-schema:ebuCore_2016" ...>
      <coreMetadata><format><audioFormatExtended version="ITU-R_BS.2076-2"> ...

Elements marked ``is_common_definition`` (ITU-R BS.2094) are not written: readers merge the
common definitions in themselves. Optional attributes and sub-elements are written only when
the model holds a value other than the BS.2076-2 default, so a reader gets back the same model.
Floats are written with Python's ``repr`` (shortest string that reads back to the same float);
times as ``hh:mm:ss.fffff`` when that is exact, otherwise in the BS.2076-2 sample form
``hh:mm:ss.SSSSSsRATE`` (e.g. ``00:00:00.02460S48000``).
"""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

from lxml import etree

from adm.model import (
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
    BinauralBlock,
    BoundedValue,
    CartesianPosition,
    CartesianScreen,
    CartesianZone,
    ChannelLock,
    DirectSpeakersBlock,
    DirectSpeakersCartesianPosition,
    DirectSpeakersPolarPosition,
    HoaBlock,
    JumpPosition,
    LoudnessMetadata,
    MatrixBlock,
    ObjectDivergence,
    ObjectsBlock,
    PolarPosition,
    PolarScreen,
    PolarZone,
)
from adm.timecode import format_time

__all__ = ["adm_to_xml", "format_adm_time", "EBUCORE_NS", "BS2076_VERSION"]

EBUCORE_NS = "urn:ebu:metadata-schema:ebuCore_2016"
BS2076_VERSION = "ITU-R_BS.2076-2"
_XSI_NS = "http://www.w3.org/2001/XMLSchema-instance"
_XML_NS = "http://www.w3.org/XML/1998/namespace"

# formatLabel -> formatDefinition (BS.2076-2 clause 5.2, Table 2).
_FORMAT_DEFINITIONS = {"0001": "PCM"}


# --------------------------------------------------------------------------------------------
# Value formatting
# --------------------------------------------------------------------------------------------


def _f(value: float) -> str:
    """Float as the shortest string that reads back to the same float."""
    return repr(float(value))


def _b(value: bool) -> str:
    return "1" if value else "0"


def format_adm_time(time: Fraction | int, where: str = "<time>") -> str:
    """Format a non-negative time in seconds as a BS.2076-2 time string.

    ``hh:mm:ss.fffff`` when exact, otherwise the sample form ``hh:mm:ss.SSSSSsRATE`` (see
    :func:`adm.timecode.format_time`). Raises :class:`AdmError` naming ``where`` on bad input.
    """
    try:
        return format_time(Fraction(time))
    except ValueError as exc:
        raise AdmError(f"{where}: {exc}") from None


def _seconds(value: Fraction, where: str) -> str:
    """A duration in seconds as a plain decimal (interpolationLength).

    Exact when the fraction has a terminating decimal expansion; otherwise rounded to 12
    decimals (below a nanosecond), which a reader gets back only approximately.
    """
    value = Fraction(value)
    if value < 0:
        raise AdmError(f"{where}: negative interpolationLength {value}")
    den = value.denominator
    while den % 2 == 0:
        den //= 2
    while den % 5 == 0:
        den //= 5
    if den == 1:
        text = format(Decimal(value.numerator) / Decimal(value.denominator), "f")
    else:
        text = f"{float(value):.12f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text or "0"


# --------------------------------------------------------------------------------------------
# Element helpers
# --------------------------------------------------------------------------------------------


def _q(tag: str) -> str:
    return f"{{{EBUCORE_NS}}}{tag}"


def _sub(parent: etree._Element, tag: str, text: str | None = None, **attrs: str) -> etree._Element:
    element = etree.SubElement(parent, _q(tag), attrs)
    if text is not None:
        element.text = text
    return element


def _refs(parent: etree._Element, tag: str, ids: tuple[str, ...]) -> None:
    for ref in ids:
        _sub(parent, tag, ref)


def _timing(attrs: dict[str, str], rtime, duration, where: str, rname: str = "rtime") -> None:
    if rtime is not None:
        attrs[rname] = format_adm_time(rtime, where)
    if duration is not None:
        attrs["duration"] = format_adm_time(duration, where)


# --------------------------------------------------------------------------------------------
# Programme / content / object
# --------------------------------------------------------------------------------------------


def _loudness(parent: etree._Element, loudness: tuple[LoudnessMetadata, ...]) -> None:
    for item in loudness:
        attrs = {} if item.method is None else {"loudnessMethod": item.method}
        element = _sub(parent, "loudnessMetadata", **attrs)
        for tag, value in (
            ("integratedLoudness", item.integrated_loudness),
            ("loudnessRange", item.loudness_range),
            ("maxTruePeak", item.max_true_peak),
            ("maxMomentary", item.max_momentary),
            ("maxShortTerm", item.max_short_term),
            ("dialogueLoudness", item.dialogue_loudness),
        ):
            if value is not None:
                _sub(element, tag, _f(value))


def _programme(parent: etree._Element, p: AudioProgramme) -> None:
    attrs = {"audioProgrammeID": p.id, "audioProgrammeName": p.name}
    if p.language is not None:
        attrs["audioProgrammeLanguage"] = p.language
    if p.start is not None:
        attrs["start"] = format_adm_time(p.start, p.id)
    if p.end is not None:
        attrs["end"] = format_adm_time(p.end, p.id)
    element = _sub(parent, "audioProgramme", **attrs)
    _refs(element, "audioContentIDRef", p.content_ids)
    _loudness(element, p.loudness)
    screen = p.reference_screen
    if screen is not None:
        s = _sub(element, "audioProgrammeReferenceScreen", aspectRatio=_f(screen.aspect_ratio))
        if isinstance(screen, PolarScreen):
            _sub(s, "screenCentrePosition", azimuth=_f(screen.centre_azimuth),
                 elevation=_f(screen.centre_elevation), distance=_f(screen.centre_distance))
            _sub(s, "screenWidth", azimuth=_f(screen.width_azimuth))
        elif isinstance(screen, CartesianScreen):
            _sub(s, "screenCentrePosition", X=_f(screen.centre_x), Y=_f(screen.centre_y),
                 Z=_f(screen.centre_z))
            _sub(s, "screenWidth", X=_f(screen.width_x))
        else:
            raise AdmError(f"{p.id}: unknown referenceScreen type {type(screen).__name__}")


def _content(parent: etree._Element, c: AudioContent) -> None:
    attrs = {"audioContentID": c.id, "audioContentName": c.name}
    if c.language is not None:
        attrs["audioContentLanguage"] = c.language
    element = _sub(parent, "audioContent", **attrs)
    _refs(element, "audioObjectIDRef", c.object_ids)
    _loudness(element, c.loudness)
    if c.dialogue is not None:
        _sub(element, "dialogue", str(c.dialogue))


def _object(parent: etree._Element, o: AudioObject) -> None:
    attrs = {"audioObjectID": o.id, "audioObjectName": o.name}
    _timing(attrs, o.start, o.duration, o.id, rname="start")
    if o.dialogue is not None:
        attrs["dialogue"] = str(o.dialogue)
    if o.importance is not None:
        attrs["importance"] = str(o.importance)
    if o.interact is not None:
        attrs["interact"] = _b(o.interact)
    if o.disable_ducking is not None:
        attrs["disableDucking"] = _b(o.disable_ducking)
    element = _sub(parent, "audioObject", **attrs)
    _refs(element, "audioPackFormatIDRef", o.pack_format_ids)
    _refs(element, "audioObjectIDRef", o.object_ids)
    _refs(element, "audioComplementaryObjectIDRef", o.complementary_object_ids)
    _refs(element, "audioTrackUIDRef", o.track_uid_ids)
    if o.gain != 1.0:
        _sub(element, "gain", _f(o.gain))
    if o.mute:
        _sub(element, "mute", "1")


# --------------------------------------------------------------------------------------------
# Blocks
# --------------------------------------------------------------------------------------------


def _block_common(element: etree._Element, block) -> None:
    """gain / importance / headLocked, shared by the block types that carry them."""
    if block.gain != 1.0:
        _sub(element, "gain", _f(block.gain))
    if block.importance != 10:
        _sub(element, "importance", str(block.importance))
    if getattr(block, "head_locked", False):
        _sub(element, "headLocked", "1")


def _objects_position(element: etree._Element, block: ObjectsBlock) -> None:
    pos = block.position
    lock = block.screen_edge_lock
    h = {} if lock.horizontal is None else {"screenEdgeLock": lock.horizontal}
    v = {} if lock.vertical is None else {"screenEdgeLock": lock.vertical}
    if isinstance(pos, PolarPosition):
        if block.cartesian:
            raise AdmError(f"{block.id}: cartesian block with a polar position")
        _sub(element, "position", _f(pos.azimuth), coordinate="azimuth", **h)
        _sub(element, "position", _f(pos.elevation), coordinate="elevation", **v)
        _sub(element, "position", _f(pos.distance), coordinate="distance")
    elif isinstance(pos, CartesianPosition):
        if not block.cartesian:
            raise AdmError(f"{block.id}: cartesian position in a block without cartesian flag")
        _sub(element, "position", _f(pos.x), coordinate="X", **h)
        _sub(element, "position", _f(pos.y), coordinate="Y")
        _sub(element, "position", _f(pos.z), coordinate="Z", **v)
    else:
        raise AdmError(f"{block.id}: unknown position type {type(pos).__name__}")


def _objects_block(element: etree._Element, block: ObjectsBlock) -> None:
    _objects_position(element, block)
    if block.cartesian:
        _sub(element, "cartesian", "1")
    for tag, value in (("width", block.width), ("height", block.height),
                       ("depth", block.depth)):
        if value != 0.0:
            _sub(element, tag, _f(value))
    if block.gain != 1.0:
        _sub(element, "gain", _f(block.gain))
    if block.diffuse != 0.0:
        _sub(element, "diffuse", _f(block.diffuse))
    if block.channel_lock != ChannelLock():
        attrs = {}
        if block.channel_lock.max_distance is not None:
            attrs["maxDistance"] = _f(block.channel_lock.max_distance)
        _sub(element, "channelLock", _b(block.channel_lock.flag), **attrs)
    if block.object_divergence != ObjectDivergence():
        div = block.object_divergence
        attrs = {}
        if div.azimuth_range is not None:
            attrs["azimuthRange"] = _f(div.azimuth_range)
        if div.position_range is not None:
            attrs["positionRange"] = _f(div.position_range)
        _sub(element, "objectDivergence", _f(div.value), **attrs)
    if block.jump_position != JumpPosition():
        jump = block.jump_position
        attrs = {}
        if jump.interpolation_length is not None:
            attrs["interpolationLength"] = _seconds(jump.interpolation_length, block.id)
        _sub(element, "jumpPosition", _b(jump.flag), **attrs)
    if block.screen_ref:
        _sub(element, "screenRef", "1")
    if block.importance != 10:
        _sub(element, "importance", str(block.importance))
    if block.zone_exclusion:
        zones = _sub(element, "zoneExclusion")
        for zone in block.zone_exclusion:
            if isinstance(zone, PolarZone):
                attrs = {"minElevation": _f(zone.min_elevation),
                         "maxElevation": _f(zone.max_elevation),
                         "minAzimuth": _f(zone.min_azimuth),
                         "maxAzimuth": _f(zone.max_azimuth)}
            elif isinstance(zone, CartesianZone):
                attrs = {"minX": _f(zone.min_x), "maxX": _f(zone.max_x),
                         "minY": _f(zone.min_y), "maxY": _f(zone.max_y),
                         "minZ": _f(zone.min_z), "maxZ": _f(zone.max_z)}
            else:
                raise AdmError(f"{block.id}: unknown zone type {type(zone).__name__}")
            _sub(zones, "zone", zone.label, **attrs)
    if block.head_locked:
        _sub(element, "headLocked", "1")


def _bounded(
    element: etree._Element, coordinate: str, value: BoundedValue, lock: str | None = None
) -> None:
    attrs = {"coordinate": coordinate}
    if lock is not None:
        attrs["screenEdgeLock"] = lock
    _sub(element, "position", _f(value.value), **attrs)
    if value.max is not None:
        _sub(element, "position", _f(value.max), coordinate=coordinate, bound="max")
    if value.min is not None:
        _sub(element, "position", _f(value.min), coordinate=coordinate, bound="min")


def _direct_speakers_block(element: etree._Element, block: DirectSpeakersBlock) -> None:
    for label in block.speaker_labels:
        _sub(element, "speakerLabel", label)
    pos = block.position
    lock = block.screen_edge_lock
    if isinstance(pos, DirectSpeakersPolarPosition):
        _bounded(element, "azimuth", pos.azimuth, lock.horizontal)
        _bounded(element, "elevation", pos.elevation, lock.vertical)
        _bounded(element, "distance", pos.distance)
    elif isinstance(pos, DirectSpeakersCartesianPosition):
        _sub(element, "cartesian", "1")  # flag before the coordinates, as Dolby writes it
        _bounded(element, "X", pos.x, lock.horizontal)
        _bounded(element, "Y", pos.y)
        _bounded(element, "Z", pos.z, lock.vertical)
    else:
        raise AdmError(f"{block.id}: unknown DirectSpeakers position type {type(pos).__name__}")
    _block_common(element, block)


def _hoa_block(element: etree._Element, block: HoaBlock) -> None:
    if block.equation is not None:
        _sub(element, "equation", block.equation)
    if block.order is not None:
        _sub(element, "order", str(block.order))
    if block.degree is not None:
        _sub(element, "degree", str(block.degree))
    if block.normalization is not None:
        _sub(element, "normalization", block.normalization)
    if block.nfc_ref_dist is not None:
        _sub(element, "nfcRefDist", _f(block.nfc_ref_dist))
    if block.screen_ref is not None:
        _sub(element, "screenRef", _b(block.screen_ref))
    _block_common(element, block)


def _matrix_block(element: etree._Element, block: MatrixBlock) -> None:
    if block.output_channel_format_id is not None:
        _sub(element, "outputChannelFormatIDRef", block.output_channel_format_id)
    if block.output_channel_id is not None:
        _sub(element, "outputChannelIDRef", block.output_channel_id)
    if block.coefficients:
        matrix = _sub(element, "matrix")
        for c in block.coefficients:
            attrs = {}
            for name, value in (("gain", c.gain), ("phase", c.phase), ("delay", c.delay)):
                if value is not None:
                    attrs[name] = _f(value)
            for name, value in (("gainVar", c.gain_var), ("phaseVar", c.phase_var),
                                ("delayVar", c.delay_var)):
                if value is not None:
                    attrs[name] = value
            _sub(matrix, "coefficient", c.input_channel_format_id, **attrs)
    _block_common(element, block)


def _block(parent: etree._Element, block) -> None:
    attrs = {"audioBlockFormatID": block.id}
    _timing(attrs, block.rtime, block.duration, block.id)
    element = _sub(parent, "audioBlockFormat", **attrs)
    if isinstance(block, ObjectsBlock):
        _objects_block(element, block)
    elif isinstance(block, DirectSpeakersBlock):
        _direct_speakers_block(element, block)
    elif isinstance(block, HoaBlock):
        _hoa_block(element, block)
    elif isinstance(block, MatrixBlock):
        _matrix_block(element, block)
    elif isinstance(block, BinauralBlock):
        _block_common(element, block)
    else:
        raise AdmError(f"{block!r}: unknown audioBlockFormat type")


# --------------------------------------------------------------------------------------------
# Formats
# --------------------------------------------------------------------------------------------


def _pack(parent: etree._Element, p: AudioPackFormat) -> None:
    attrs = {"audioPackFormatID": p.id, "audioPackFormatName": p.name,
             "typeLabel": p.type.value, "typeDefinition": p.type.name}
    if p.importance is not None:
        attrs["importance"] = str(p.importance)
    element = _sub(parent, "audioPackFormat", **attrs)
    _refs(element, "audioChannelFormatIDRef", p.channel_format_ids)
    _refs(element, "audioPackFormatIDRef", p.pack_format_ids)
    if p.absolute_distance is not None:
        _sub(element, "absoluteDistance", _f(p.absolute_distance))
    _refs(element, "encodePackFormatIDRef", p.encode_pack_format_ids)
    _refs(element, "decodePackFormatIDRef", p.decode_pack_format_ids)
    if p.input_pack_format_id is not None:
        _sub(element, "inputPackFormatIDRef", p.input_pack_format_id)
    if p.output_pack_format_id is not None:
        _sub(element, "outputPackFormatIDRef", p.output_pack_format_id)
    if p.normalization is not None:
        _sub(element, "normalization", p.normalization)
    if p.nfc_ref_dist is not None:
        _sub(element, "nfcRefDist", _f(p.nfc_ref_dist))
    if p.screen_ref is not None:
        _sub(element, "screenRef", _b(p.screen_ref))


def _channel(parent: etree._Element, c: AudioChannelFormat) -> None:
    element = _sub(parent, "audioChannelFormat", audioChannelFormatID=c.id,
                   audioChannelFormatName=c.name, typeLabel=c.type.value,
                   typeDefinition=c.type.name)
    for block in c.blocks:
        _block(element, block)
    if c.frequency.low_pass is not None:
        _sub(element, "frequency", _f(c.frequency.low_pass), typeDefinition="lowPass")
    if c.frequency.high_pass is not None:
        _sub(element, "frequency", _f(c.frequency.high_pass), typeDefinition="highPass")


def _format_attrs(label: str) -> dict[str, str]:
    attrs = {"formatLabel": label}
    if label in _FORMAT_DEFINITIONS:
        attrs["formatDefinition"] = _FORMAT_DEFINITIONS[label]
    return attrs


def _stream(parent: etree._Element, s: AudioStreamFormat) -> None:
    element = _sub(parent, "audioStreamFormat", audioStreamFormatID=s.id,
                   audioStreamFormatName=s.name, **_format_attrs(s.format_label))
    if s.channel_format_id is not None:
        _sub(element, "audioChannelFormatIDRef", s.channel_format_id)
    if s.pack_format_id is not None:
        _sub(element, "audioPackFormatIDRef", s.pack_format_id)
    _refs(element, "audioTrackFormatIDRef", s.track_format_ids)


def _track_format(parent: etree._Element, t: AudioTrackFormat) -> None:
    element = _sub(parent, "audioTrackFormat", audioTrackFormatID=t.id,
                   audioTrackFormatName=t.name, **_format_attrs(t.format_label))
    if t.stream_format_id is not None:
        _sub(element, "audioStreamFormatIDRef", t.stream_format_id)


def _track_uid(parent: etree._Element, u: AudioTrackUID) -> None:
    attrs = {"UID": u.id}
    if u.sample_rate is not None:
        attrs["sampleRate"] = str(u.sample_rate)
    if u.bit_depth is not None:
        attrs["bitDepth"] = str(u.bit_depth)
    element = _sub(parent, "audioTrackUID", **attrs)
    if u.track_format_id is not None:
        _sub(element, "audioTrackFormatIDRef", u.track_format_id)
    if u.channel_format_id is not None:
        _sub(element, "audioChannelFormatIDRef", u.channel_format_id)
    if u.pack_format_id is not None:
        _sub(element, "audioPackFormatIDRef", u.pack_format_id)


# --------------------------------------------------------------------------------------------
# Document
# --------------------------------------------------------------------------------------------


def adm_to_xml(doc: AdmDocument) -> bytes:
    """Serialise ``doc`` to BS.2076-2 XML bytes (UTF-8, with XML declaration).

    Element order follows BS.2076-2 clause 5: audioProgramme, audioContent, audioObject,
    audioPackFormat, audioChannelFormat, audioStreamFormat, audioTrackFormat, audioTrackUID.
    Common-definition elements (``is_common_definition=True``) and the silent track UID
    ``ATU_00000000`` are skipped. Raises :class:`AdmError` for values that cannot be written
    (negative times, a block whose cartesian flag contradicts its position).
    """
    root = etree.Element(_q("ebuCoreMain"), nsmap={None: EBUCORE_NS, "xsi": _XSI_NS})
    root.set(f"{{{_XSI_NS}}}schemaLocation", f"{EBUCORE_NS} ebucore.xsd")
    root.set(f"{{{_XML_NS}}}lang", "en")
    core = _sub(root, "coreMetadata")
    fmt = _sub(core, "format")
    afx = _sub(fmt, "audioFormatExtended", version=BS2076_VERSION)

    for p in doc.programmes:
        _programme(afx, p)
    for c in doc.contents:
        _content(afx, c)
    for o in doc.objects:
        _object(afx, o)
    for pack in doc.pack_formats:
        if not pack.is_common_definition:
            _pack(afx, pack)
    for channel in doc.channel_formats:
        if not channel.is_common_definition:
            _channel(afx, channel)
    for stream in doc.stream_formats:
        if not stream.is_common_definition:
            _stream(afx, stream)
    for track in doc.track_formats:
        if not track.is_common_definition:
            _track_format(afx, track)
    for uid in doc.track_uids:
        if uid.id != "ATU_00000000":
            _track_uid(afx, uid)

    return etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True)

