"""ADM XML (ITU-R BS.2076-2) -> :mod:`adm.model` objects, plus the chna merge.

Entry points:

* :func:`parse_adm_xml` - bytes of an ``axml`` chunk or an ADM XML file -> :class:`AdmDocument`
  with the BS.2094 common definitions merged in and every reference checked;
* :func:`check_references` - every ``...IDRef`` resolves to an element of the right kind;
* :func:`apply_chna` - merge the ``chna`` chunk's track table (BS.2076-2 clause 6 / BS.2088).

The XML is parsed with a locked-down lxml parser (no entity resolution, no DTD loading, no
network, no huge trees); a document whose DOCTYPE declares entities is refused outright. It is
read as a stream (``iterparse``), each main element being dropped from the tree once it is
converted, so that a large file's tree is never held in memory as a whole.
Accepted layouts: ``ebuCoreMain/coreMetadata/format/audioFormatExtended`` (any namespace, or
none), the BS.2094 ``ituADM`` wrapper, a bare ``audioFormatExtended`` root and the serial-ADM
(BS.2125) ``frame/audioFormatExtended`` form. Elements are matched by local name.

IDs and ID references are normalised by stripping whitespace and upper-casing them (the hex
digits of ADM IDs are case-insensitive in practice: ``AC_0001000a`` == ``AC_0001000A``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import itertools
import math
import operator
import os
import re
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from fractions import Fraction
from typing import TYPE_CHECKING, Any, TypeVar

import lxml.etree as etree
import numpy as np

from .columns import NO_LENGTH, ObjectsBlockColumns
from .model import (
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
    BlockFormat,
    BoundedValue,
    CartesianPosition,
    CartesianScreen,
    CartesianZone,
    ChannelLock,
    ChnaEntry,
    DirectSpeakersBlock,
    DirectSpeakersCartesianPosition,
    DirectSpeakersPolarPosition,
    Frequency,
    HoaBlock,
    JumpPosition,
    LoudnessMetadata,
    MatrixBlock,
    MatrixCoefficient,
    ObjectDivergence,
    ObjectsBlock,
    PolarPosition,
    PolarScreen,
    PolarZone,
    Screen,
    ScreenEdgeLock,
    TypeDefinition,
    Zone,
)
from .timecode import parse_time

if TYPE_CHECKING:
    from .bw64 import Bw64Reader

__all__ = [
    "parse_adm_xml",
    "parse_adm_elements",
    "merge_common_definitions",
    "check_references",
    "apply_chna",
    "read_adm",
    "SILENT_TRACK_UID",
]

SILENT_TRACK_UID = "ATU_00000000"

# --------------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------------

_LOCAL_NAMES: dict[str, str] = {}


def _lname(tag: str) -> str:
    """Local name of an lxml tag ``{namespace}name`` (cached: tags repeat a lot)."""
    name = _LOCAL_NAMES.get(tag)
    if name is None:
        name = tag.rpartition("}")[2]
        _LOCAL_NAMES[tag] = name
    return name


def _children(el: etree._Element) -> Iterable[tuple[str, etree._Element]]:
    """(local name, element) of the element children of ``el`` (comments and PIs skipped)."""
    for child in el:
        tag = child.tag
        if tag.__class__ is str:
            name = _LOCAL_NAMES.get(tag)
            yield (name if name is not None else _lname(tag)), child


def _norm_id(text: str) -> str:
    return text.strip().upper()


_FLOAT_RE = re.compile(r"\s*[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?\s*\Z")
_INT_RE = re.compile(r"\s*[+-]?\d+\s*\Z")
_BOOLS = {"0": False, "1": True, "false": False, "true": True}
# the commonest form of an ADM time (BS.2076-2 clause 5.1), read without parse_time()
_PLAIN_TIME_RE = re.compile(r"([0-9]+):([0-5][0-9]):([0-5][0-9])\.([0-9]{1,18})\Z")
_DECIMAL_SECONDS_RE = re.compile(r"\s*\+?(?:\d+\.?\d*|\.\d+)\s*\Z")


class _Ctx:
    """Where we are: the source name (for messages) and the strictness."""

    __slots__ = ("source", "strict", "_times", "_seconds", "_floats", "warnings")

    def __init__(self, source: str, strict: bool) -> None:
        self.source = source
        self.strict = strict
        # memo of converted values: block times and numbers repeat a lot in real files
        self._times: dict[str, Fraction] = {}
        self._seconds: dict[str, Fraction] = {}
        self._floats: dict[str, float] = {}
        # warnings are issued once the whole document has parsed (see parse_adm_elements)
        self.warnings: list[str] = []

    def bound_memos(self, limit: int = 1 << 16) -> None:
        """Empty the memos of converted values that have grown past ``limit`` entries (block
        times are mostly distinct: a pass over a long document must not keep them all)."""
        for memo in (self._times, self._seconds, self._floats):
            if len(memo) > limit:
                memo.clear()

    def error(self, el: etree._Element | None, owner: str, message: str) -> AdmError:
        line = getattr(el, "sourceline", None)
        where = f"line {line}: " if line else ""
        who = f"{owner}: " if owner else ""
        return AdmError(f"{self.source}: {where}{who}{message}")

    # value conversions; ``what`` names the attribute or sub-element --------------------------

    def float(self, el: etree._Element | None, owner: str, what: str,
              text: str | None) -> float:
        value = self._floats.get(text)  # type: ignore[arg-type]
        if value is None:
            if text is None or _FLOAT_RE.match(text) is None:
                raise self.error(el, owner, f"bad number {text!r} for {what}")
            value = self._floats[text] = float(text)
        return value

    def int(self, el: etree._Element | None, owner: str, what: str, text: str | None) -> int:
        if text is None or _INT_RE.match(text) is None:
            raise self.error(el, owner, f"bad integer {text!r} for {what}")
        return int(text)

    def bool(self, el: etree._Element | None, owner: str, what: str,
             text: str | None) -> bool:
        value = _BOOLS.get(text)  # type: ignore[arg-type]  # the usual spellings, as they are
        if value is not None:
            return value
        value = _BOOLS.get(text.strip().lower()) if text is not None else None
        if value is None:
            raise self.error(el, owner, f"bad boolean {text!r} for {what} (expected 0/1)")
        return value

    def time(self, el: etree._Element | None, owner: str, what: str,
             text: str | None) -> Fraction | None:
        if text is None:
            return None
        value = self._times.get(text)
        if value is None:
            plain = _PLAIN_TIME_RE.match(text)
            if plain is not None:  # hh:mm:ss.fffff, read as parse_time() reads it
                hours, minutes, seconds, digits = plain.groups()
                denominator = 10 ** len(digits)
                value = self._times[text] = Fraction(
                    ((int(hours) * 60 + int(minutes)) * 60 + int(seconds)) * denominator
                    + int(digits), denominator)
                return value
            try:
                value = self._times[text] = parse_time(text)
            except AdmError as exc:
                # the same message as parse_time(text, f"{owner} {what}"), whose element name
                # is only formatted here, on the error path
                raise self.error(el, f"{owner} {what}", str(exc)) from None
        return value

    def seconds(self, el: etree._Element | None, owner: str, what: str, text: str) -> Fraction:
        """A plain decimal number of seconds, read exactly from its digits."""
        value = self._seconds.get(text)
        if value is None:
            if _DECIMAL_SECONDS_RE.match(text) is None:
                raise self.error(el, owner, f"bad number of seconds {text!r} for {what}")
            value = self._seconds[text] = Fraction(text.strip().lstrip("+"))
        return value

    def ref(self, el: etree._Element, owner: str) -> str:
        text = el.text
        ref = _norm_id(text) if text else ""
        if not ref:
            raise self.error(el, owner, f"empty <{_lname(el.tag)}>")
        return ref

    def gain(self, el: etree._Element, owner: str, text: str | None, what: str = "gain") -> float:
        """A gain value with its ``gainUnit`` attribute ("linear" default, or "dB")."""
        return self.gain_in(el, owner, text, el.get("gainUnit"), what)

    def gain_in(self, el: etree._Element | None, owner: str, text: str | None,
                unit: str | None, what: str = "gain") -> float:
        """A gain value ``text`` in ``unit`` (the ``gainUnit`` attribute's text, or None)."""
        value = self.float(el, owner, what, text)
        if unit is None or unit.strip() == "linear":
            return value
        if unit.strip().lower() == "db":
            return 10.0 ** (value / 20.0)
        raise self.error(el, owner, f"bad gainUnit {unit!r} (expected linear or dB)")

    # strictness -------------------------------------------------------------------------------

    def check_attrs(self, el: etree._Element, owner: str, allowed: frozenset[str]) -> None:
        """In strict mode, refuse attributes that BS.2076-2 does not define for ``el``."""
        for key in el.attrib:
            if key not in allowed and not key.startswith("{"):
                raise self.error(el, owner, f"unknown attribute {key!r} of <{_lname(el.tag)}>")

    def unknown(self, child: etree._Element | None, name: str, owner: str,
                known: frozenset[str] = frozenset()) -> None:
        """An unexpected sub-element: ignored, unless strict and not a known, unused one."""
        if self.strict and name not in known:
            raise self.error(child, owner, f"unknown element <{name}>")


def _required_id(ctx: _Ctx, el: etree._Element, attr: str) -> str:
    value = el.get(attr)
    if value is None or not value.strip():
        raise ctx.error(el, "", f"<{_lname(el.tag)}> has no {attr}")
    return _norm_id(value)


def _type_definition(ctx: _Ctx, el: etree._Element, owner: str) -> TypeDefinition:
    """typeLabel and/or typeDefinition (they must agree) -> :class:`TypeDefinition`."""
    label = el.get("typeLabel")
    definition = el.get("typeDefinition")
    from_label = from_definition = None
    if label is not None:
        try:
            from_label = TypeDefinition(f"{int(label.strip(), 16):04X}")
        except ValueError:
            raise ctx.error(el, owner, f"unknown typeLabel {label!r}") from None
    if definition is not None:
        try:
            from_definition = TypeDefinition[definition.strip()]
        except KeyError:
            raise ctx.error(el, owner, f"unknown typeDefinition {definition!r}") from None
    if from_label is not None and from_definition is not None and from_label != from_definition:
        raise ctx.error(el, owner, f"typeLabel {label!r} contradicts typeDefinition {definition!r}")
    result = from_label or from_definition
    if result is None:
        raise ctx.error(el, owner, "no typeLabel or typeDefinition")
    return result


_FORMAT_DEFINITIONS = {"PCM": "0001", "DATA": "0002"}


def _format_label(ctx: _Ctx, el: etree._Element, owner: str) -> str:
    """formatLabel (4 hex digits) or formatDefinition ("PCM") -> label string, default 0001."""
    label = el.get("formatLabel")
    if label is not None:
        try:
            return f"{int(label.strip(), 16):04X}"
        except ValueError:
            raise ctx.error(el, owner, f"bad formatLabel {label!r}") from None
    definition = el.get("formatDefinition")
    if definition is not None:
        return _FORMAT_DEFINITIONS.get(definition.strip().upper(), "0001")
    return "0001"


# --------------------------------------------------------------------------------------------
# Allowed attributes and known-but-unused sub-elements (strict mode), BS.2076-2 clause 5
# --------------------------------------------------------------------------------------------

_TYPE_ATTRS = frozenset({"typeLabel", "typeDefinition", "typeLink", "typeLanguage"})
_FORMAT_ATTRS = frozenset({"formatLabel", "formatDefinition", "formatLink", "formatLanguage"})
_PROGRAMME_ATTRS = frozenset({
    "audioProgrammeID", "audioProgrammeName", "audioProgrammeLanguage", "start", "end",
    "maxDuckingDepth",
}) | _TYPE_ATTRS | _FORMAT_ATTRS
_PROGRAMME_KNOWN = frozenset({
    "audioProgrammeLabel", "authoringInformation", "alternativeValueSetIDRef",
})
_CONTENT_ATTRS = frozenset({"audioContentID", "audioContentName", "audioContentLanguage"}) \
    | _TYPE_ATTRS
_CONTENT_KNOWN = frozenset({"audioContentLabel", "alternativeValueSetIDRef"})
_OBJECT_ATTRS = frozenset({
    "audioObjectID", "audioObjectName", "start", "duration", "dialogue", "importance",
    "interact", "disableDucking",
})
_OBJECT_KNOWN = frozenset({
    "audioObjectLabel", "audioComplementaryObjectGroupLabel", "audioObjectInteraction",
    "headLocked", "positionOffset", "alternativeValueSet",
})
_PACK_ATTRS = frozenset({"audioPackFormatID", "audioPackFormatName", "importance"}) | _TYPE_ATTRS
_PACK_KNOWN = frozenset({"audioPackFormatLabel"})
_CHANNEL_ATTRS = frozenset({"audioChannelFormatID", "audioChannelFormatName"}) | _TYPE_ATTRS
_BLOCK_ATTRS = frozenset({
    "audioBlockFormatID", "rtime", "duration", "lstart", "lduration", "initializeBlock",
})
_BLOCK_KNOWN = frozenset({"headphoneVirtualise"})
_STREAM_ATTRS = frozenset({"audioStreamFormatID", "audioStreamFormatName"}) | _FORMAT_ATTRS \
    | _TYPE_ATTRS
_TRACK_ATTRS = frozenset({"audioTrackFormatID", "audioTrackFormatName"}) | _FORMAT_ATTRS \
    | _TYPE_ATTRS
_UID_ATTRS = frozenset({"UID", "sampleRate", "bitDepth"}) | _TYPE_ATTRS
_UID_KNOWN = frozenset({"audioMXFLookUp"})
_AFE_KNOWN = frozenset({"audioFormatCustom", "profileList", "tagList", "alternativeValueSet"})
_LOUDNESS_ATTRS = frozenset({"loudnessMethod", "loudnessRecType", "loudnessCorrectionType"})
_LOUDNESS_FIELDS = {
    "integratedLoudness": "integrated_loudness",
    "loudnessRange": "loudness_range",
    "maxTruePeak": "max_true_peak",
    "maxMomentary": "max_momentary",
    "maxShortTerm": "max_short_term",
    "dialogueLoudness": "dialogue_loudness",
}
_GAIN_ATTRS = frozenset({"gainUnit"})
_POSITION_ATTRS = frozenset({"coordinate", "screenEdgeLock", "bound"})
_ZONE_POLAR = ("minElevation", "maxElevation", "minAzimuth", "maxAzimuth")
_ZONE_CART = ("minX", "maxX", "minY", "maxY", "minZ", "maxZ")
_COORD_ALIASES = {"x": "X", "y": "Y", "z": "Z"}
_POLAR_COORDS = frozenset({"azimuth", "elevation", "distance"})
_CART_COORDS = frozenset({"X", "Y", "Z"})


# --------------------------------------------------------------------------------------------
# audioProgramme, audioContent, audioObject
# --------------------------------------------------------------------------------------------


def _loudness(ctx: _Ctx, el: etree._Element, owner: str) -> LoudnessMetadata:
    if ctx.strict:
        ctx.check_attrs(el, owner, _LOUDNESS_ATTRS)
    values: dict[str, float] = {}
    for name, child in _children(el):
        field_name = _LOUDNESS_FIELDS.get(name)
        if field_name is None:
            ctx.unknown(child, name, owner)
            continue
        values[field_name] = ctx.float(child, owner, name, child.text)
    method = el.get("loudnessMethod")
    return LoudnessMetadata(method=method, **values)


def _screen(ctx: _Ctx, el: etree._Element, owner: str) -> Screen:
    """audioProgrammeReferenceScreen: polar (azimuth attributes) or cartesian (X attributes)."""
    if ctx.strict:
        ctx.check_attrs(el, owner, frozenset({"aspectRatio"}))
    aspect_text = el.get("aspectRatio")
    aspect = 1.78 if aspect_text is None else ctx.float(el, owner, "aspectRatio", aspect_text)
    kinds: set[str] = set()
    centre: tuple[float, float, float] | None = None
    width: float | None = None
    for name, child in _children(el):
        attrib = child.attrib
        if name == "screenCentrePosition":
            if "X" in attrib:
                kinds.add("cartesian")
                centre = tuple(
                    ctx.float(child, owner, f"screenCentrePosition {k}", attrib.get(k, "0"))
                    for k in ("X", "Y", "Z")
                )
            elif "azimuth" in attrib:
                kinds.add("polar")
                centre = (
                    ctx.float(child, owner, "screenCentrePosition azimuth", attrib["azimuth"]),
                    ctx.float(child, owner, "screenCentrePosition elevation",
                              attrib.get("elevation", "0")),
                    ctx.float(child, owner, "screenCentrePosition distance",
                              attrib.get("distance", "1")),
                )
            else:
                raise ctx.error(child, owner, "screenCentrePosition needs azimuth or X attributes")
        elif name == "screenWidth":
            if "X" in attrib:
                kinds.add("cartesian")
                width = ctx.float(child, owner, "screenWidth X", attrib["X"])
            elif "azimuth" in attrib:
                kinds.add("polar")
                width = ctx.float(child, owner, "screenWidth azimuth", attrib["azimuth"])
            else:
                raise ctx.error(child, owner, "screenWidth needs an azimuth or X attribute")
        elif name == "aspectRatio":
            aspect = ctx.float(child, owner, "aspectRatio", child.text)
        else:
            ctx.unknown(child, name, owner)
    if len(kinds) > 1:
        raise ctx.error(el, owner, "referenceScreen mixes polar and cartesian values")
    if kinds == {"cartesian"}:
        cx, cy, cz = centre if centre is not None else (0.0, 1.0, 0.0)
        if width is None:
            raise ctx.error(el, owner, "cartesian referenceScreen has no screenWidth X")
        return CartesianScreen(aspect, cx, cy, cz, width)
    az, el_, dist = centre if centre is not None else (0.0, 0.0, 1.0)
    return PolarScreen(aspect, az, el_, dist, 58.0 if width is None else width)


def _programme(ctx: _Ctx, el: etree._Element) -> AudioProgramme:
    pid = _required_id(ctx, el, "audioProgrammeID")
    if ctx.strict:
        ctx.check_attrs(el, pid, _PROGRAMME_ATTRS)
    contents: list[str] = []
    loudness: list[LoudnessMetadata] = []
    screen: Screen | None = None
    for name, child in _children(el):
        if name == "audioContentIDRef":
            contents.append(ctx.ref(child, pid))
        elif name == "loudnessMetadata":
            loudness.append(_loudness(ctx, child, pid))
        elif name == "audioProgrammeReferenceScreen":
            screen = _screen(ctx, child, pid)
        else:
            ctx.unknown(child, name, pid, _PROGRAMME_KNOWN)
    return AudioProgramme(
        id=pid,
        name=el.get("audioProgrammeName", ""),
        content_ids=tuple(contents),
        start=ctx.time(el, pid, "start", el.get("start")),
        end=ctx.time(el, pid, "end", el.get("end")),
        language=el.get("audioProgrammeLanguage"),
        reference_screen=screen,
        loudness=tuple(loudness),
    )


def _content(ctx: _Ctx, el: etree._Element) -> AudioContent:
    cid = _required_id(ctx, el, "audioContentID")
    if ctx.strict:
        ctx.check_attrs(el, cid, _CONTENT_ATTRS)
    objects: list[str] = []
    loudness: list[LoudnessMetadata] = []
    dialogue: int | None = None
    for name, child in _children(el):
        if name == "audioObjectIDRef":
            objects.append(ctx.ref(child, cid))
        elif name == "loudnessMetadata":
            loudness.append(_loudness(ctx, child, cid))
        elif name == "dialogue":
            dialogue = ctx.int(child, cid, "dialogue", child.text)
        else:
            ctx.unknown(child, name, cid, _CONTENT_KNOWN)
    return AudioContent(
        id=cid,
        name=el.get("audioContentName", ""),
        object_ids=tuple(objects),
        dialogue=dialogue,
        language=el.get("audioContentLanguage"),
        loudness=tuple(loudness),
    )


def _object(ctx: _Ctx, el: etree._Element) -> AudioObject:
    oid = _required_id(ctx, el, "audioObjectID")
    if ctx.strict:
        ctx.check_attrs(el, oid, _OBJECT_ATTRS)
    packs: list[str] = []
    objects: list[str] = []
    complementary: list[str] = []
    uids: list[str] = []
    gain = 1.0
    mute = False
    for name, child in _children(el):
        if name == "audioTrackUIDRef":
            uids.append(ctx.ref(child, oid))
        elif name == "audioPackFormatIDRef":
            packs.append(ctx.ref(child, oid))
        elif name == "audioObjectIDRef":
            objects.append(ctx.ref(child, oid))
        elif name == "audioComplementaryObjectIDRef":
            complementary.append(ctx.ref(child, oid))
        elif name == "gain":
            gain = ctx.gain(child, oid, child.text)
        elif name == "mute":
            mute = ctx.bool(child, oid, "mute", child.text)
        else:
            ctx.unknown(child, name, oid, _OBJECT_KNOWN)
    attrib = el.attrib
    dialogue = attrib.get("dialogue")
    importance = attrib.get("importance")
    interact = attrib.get("interact")
    disable_ducking = attrib.get("disableDucking")
    return AudioObject(
        id=oid,
        name=attrib.get("audioObjectName", ""),
        start=ctx.time(el, oid, "start", attrib.get("start")),
        duration=ctx.time(el, oid, "duration", attrib.get("duration")),
        pack_format_ids=tuple(packs),
        object_ids=tuple(objects),
        complementary_object_ids=tuple(complementary),
        track_uid_ids=tuple(uids),
        gain=gain,
        mute=mute,
        importance=None if importance is None else ctx.int(el, oid, "importance", importance),
        interact=None if interact is None else ctx.bool(el, oid, "interact", interact),
        disable_ducking=(None if disable_ducking is None
                         else ctx.bool(el, oid, "disableDucking", disable_ducking)),
        dialogue=None if dialogue is None else ctx.int(el, oid, "dialogue", dialogue),
    )


# --------------------------------------------------------------------------------------------
# audioPackFormat, audioStreamFormat, audioTrackFormat, audioTrackUID
# --------------------------------------------------------------------------------------------


def _pack(ctx: _Ctx, el: etree._Element, common: bool) -> AudioPackFormat:
    pid = _required_id(ctx, el, "audioPackFormatID")
    if ctx.strict:
        ctx.check_attrs(el, pid, _PACK_ATTRS)
    lists: dict[str, list[str]] = {
        "audioChannelFormatIDRef": [], "audioPackFormatIDRef": [],
        "encodePackFormatIDRef": [], "decodePackFormatIDRef": [],
    }
    single: dict[str, str] = {}
    values: dict[str, object] = {}
    for name, child in _children(el):
        target = lists.get(name)
        if target is not None:
            target.append(ctx.ref(child, pid))
        elif name in ("inputPackFormatIDRef", "outputPackFormatIDRef"):
            single[name] = ctx.ref(child, pid)
        elif name == "absoluteDistance":
            values["absolute_distance"] = ctx.float(child, pid, name, child.text)
        elif name == "normalization":
            values["normalization"] = (child.text or "").strip()
        elif name == "nfcRefDist":
            values["nfc_ref_dist"] = ctx.float(child, pid, name, child.text)
        elif name == "screenRef":
            values["screen_ref"] = ctx.bool(child, pid, name, child.text)
        else:
            ctx.unknown(child, name, pid, _PACK_KNOWN)
    importance = el.get("importance")
    return AudioPackFormat(
        id=pid,
        name=el.get("audioPackFormatName", ""),
        type=_type_definition(ctx, el, pid),
        channel_format_ids=tuple(lists["audioChannelFormatIDRef"]),
        pack_format_ids=tuple(lists["audioPackFormatIDRef"]),
        importance=None if importance is None else ctx.int(el, pid, "importance", importance),
        encode_pack_format_ids=tuple(lists["encodePackFormatIDRef"]),
        decode_pack_format_ids=tuple(lists["decodePackFormatIDRef"]),
        input_pack_format_id=single.get("inputPackFormatIDRef"),
        output_pack_format_id=single.get("outputPackFormatIDRef"),
        is_common_definition=common,
        **values,  # type: ignore[arg-type]
    )


def _single_ref(ctx: _Ctx, child: etree._Element, owner: str, refs: dict[str, str],
                name: str) -> None:
    if name in refs:
        raise ctx.error(child, owner, f"more than one <{name}>")
    refs[name] = ctx.ref(child, owner)


def _stream(ctx: _Ctx, el: etree._Element, common: bool) -> AudioStreamFormat:
    sid = _required_id(ctx, el, "audioStreamFormatID")
    if ctx.strict:
        ctx.check_attrs(el, sid, _STREAM_ATTRS)
    refs: dict[str, str] = {}
    tracks: list[str] = []
    for name, child in _children(el):
        if name == "audioTrackFormatIDRef":
            tracks.append(ctx.ref(child, sid))
        elif name in ("audioChannelFormatIDRef", "audioPackFormatIDRef"):
            _single_ref(ctx, child, sid, refs, name)
        else:
            ctx.unknown(child, name, sid)
    return AudioStreamFormat(
        id=sid,
        name=el.get("audioStreamFormatName", ""),
        format_label=_format_label(ctx, el, sid),
        channel_format_id=refs.get("audioChannelFormatIDRef"),
        pack_format_id=refs.get("audioPackFormatIDRef"),
        track_format_ids=tuple(tracks),
        is_common_definition=common,
    )


def _track(ctx: _Ctx, el: etree._Element, common: bool) -> AudioTrackFormat:
    tid = _required_id(ctx, el, "audioTrackFormatID")
    if ctx.strict:
        ctx.check_attrs(el, tid, _TRACK_ATTRS)
    refs: dict[str, str] = {}
    for name, child in _children(el):
        if name == "audioStreamFormatIDRef":
            _single_ref(ctx, child, tid, refs, name)
        else:
            ctx.unknown(child, name, tid)
    return AudioTrackFormat(
        id=tid,
        name=el.get("audioTrackFormatName", ""),
        format_label=_format_label(ctx, el, tid),
        stream_format_id=refs.get("audioStreamFormatIDRef"),
        is_common_definition=common,
    )


def _track_uid(ctx: _Ctx, el: etree._Element) -> AudioTrackUID:
    uid = _required_id(ctx, el, "UID")
    if uid == SILENT_TRACK_UID:
        raise ctx.error(el, uid, "audioTrackUID ATU_00000000 is reserved for silent tracks")
    if ctx.strict:
        ctx.check_attrs(el, uid, _UID_ATTRS)
    refs: dict[str, str] = {}
    for name, child in _children(el):
        if name in ("audioTrackFormatIDRef", "audioChannelFormatIDRef", "audioPackFormatIDRef"):
            _single_ref(ctx, child, uid, refs, name)
        else:
            ctx.unknown(child, name, uid, _UID_KNOWN)
    sample_rate = el.get("sampleRate")
    bit_depth = el.get("bitDepth")
    return AudioTrackUID(
        id=uid,
        track_format_id=refs.get("audioTrackFormatIDRef"),
        channel_format_id=refs.get("audioChannelFormatIDRef"),
        pack_format_id=refs.get("audioPackFormatIDRef"),
        sample_rate=None if sample_rate is None else ctx.int(el, uid, "sampleRate", sample_rate),
        bit_depth=None if bit_depth is None else ctx.int(el, uid, "bitDepth", bit_depth),
    )


# --------------------------------------------------------------------------------------------
# audioBlockFormat (BS.2076-2 clause 5.4.3)
# --------------------------------------------------------------------------------------------

# Large files have tens of thousands of Objects blocks whose small sub-elements repeat: one
# shared (immutable) instance per distinct text/attribute combination. Bounded, so that a
# hostile file cannot grow them without limit; a value not cached is simply built again.
_CACHE_LIMIT = 1024
_JUMP_CACHE: dict[tuple[str | None, str | None], JumpPosition] = {}
_CHANNEL_LOCK_CACHE: dict[tuple[str | None, str | None], ChannelLock] = {}
_DIVERGENCE_CACHE: dict[tuple[str | None, str | None, str | None], ObjectDivergence] = {}
_EDGE_LOCK_CACHE: dict[tuple[str | None, str | None], ScreenEdgeLock] = {}

_T = TypeVar("_T")


def _builder(cls: type[_T], names: tuple[str, ...]) -> Callable[..., _T]:
    """A fast constructor for the frozen dataclass ``cls``, taking the values of the fields
    ``names`` (all of them, in field order) positionally: for the hot paths of large files.

    The frozen ``__init__`` sets each field through ``object.__setattr__``; this fills the
    instance's slots through their own setters (or its ``__dict__``, for a class without
    slots) directly, in field order, so the instance is identical to
    ``cls(**dict(zip(names, values)))`` (same ``==``, ``hash``, ``repr``, ``vars``,
    ``dataclasses.replace``). If ``cls`` does not have exactly these fields (the model has
    changed) or has a ``__post_init__``, the builder just calls ``cls`` with keywords.
    """
    fields = dataclasses.fields(cls)
    if tuple(f.name for f in fields) != names or not all(f.init for f in fields) \
            or hasattr(cls, "__post_init__"):
        return lambda *values: cls(**dict(zip(names, values, strict=True)))
    new = object.__new__
    if "__slots__" in cls.__dict__:  # slotted: the slots' own setters (no frozen check)
        # one straight-line function per class (no loop: the hot path of large files)
        namespace: dict[str, object] = {"new": new, "cls": cls}
        lines = []
        for k, name in enumerate(names):
            namespace[f"set{k}"] = cls.__dict__[name].__set__
            lines.append(f"    set{k}(instance, v{k})")
        arguments = ", ".join(f"v{k}" for k in range(len(names)))
        source = (f"def build_slotted({arguments}):\n    instance = new(cls)\n"
                  + "\n".join(lines) + "\n    return instance\n")
        exec(compile(source, f"<builder of {cls.__name__}>", "exec"), namespace)
        return namespace["build_slotted"]  # type: ignore[return-value]

    def build(*values: object) -> _T:
        instance = new(cls)
        instance.__dict__.update(zip(names, values))  # callers give all values
        return instance

    return build


_new_cartesian = _builder(CartesianPosition, ("x", "y", "z"))
_new_polar = _builder(PolarPosition, ("azimuth", "elevation", "distance"))
_OBJECTS_BLOCK_REQUIRED = ("id", "position", "rtime", "duration", "cartesian")
_OBJECTS_BLOCK_OPTIONAL = (
    "width", "height", "depth", "gain", "diffuse", "channel_lock", "object_divergence",
    "jump_position", "screen_ref", "screen_edge_lock", "importance", "zone_exclusion",
    "head_locked",
)
_new_objects_block = _builder(ObjectsBlock, _OBJECTS_BLOCK_REQUIRED + _OBJECTS_BLOCK_OPTIONAL)
# the BS.2076-2 default values of the _OBJECTS_BLOCK_OPTIONAL fields
_OBJECTS_BLOCK_DEFAULTS = tuple(
    getattr(ObjectsBlock("", CartesianPosition(0.0, 0.0)), name)
    for name in _OBJECTS_BLOCK_OPTIONAL
)


def _block_id(ctx: _Ctx, el: etree._Element, channel_id: str) -> str:
    value = el.get("audioBlockFormatID")
    if value is None or not value.strip():
        raise ctx.error(el, channel_id, "audioBlockFormat has no audioBlockFormatID")
    return _norm_id(value)


def _zone_exclusion(ctx: _Ctx, el: etree._Element, owner: str) -> tuple[Zone, ...]:
    zones: list[Zone] = []
    for name, child in _children(el):
        if name != "zone":
            ctx.unknown(child, name, owner)
            continue
        attrib = child.attrib
        label = (child.text or "").strip() or None
        has_polar = any(k in attrib for k in _ZONE_POLAR)
        has_cart = any(k in attrib for k in _ZONE_CART)
        if has_polar == has_cart:
            raise ctx.error(child, owner, "zone needs either min/maxElevation/Azimuth or "
                            "min/maxX/Y/Z attributes")
        keys = _ZONE_POLAR if has_polar else _ZONE_CART
        missing = [k for k in keys if k not in attrib]
        if missing:
            raise ctx.error(child, owner, f"zone lacks {', '.join(missing)}")
        values = [ctx.float(child, owner, f"zone {k}", attrib[k]) for k in keys]
        zones.append(PolarZone(*values, label=label) if has_polar
                     else CartesianZone(*values, label=label))
    return tuple(zones)


# position coordinate attribute -> (coordinate name, whether it is a polar one)
_COORDS: dict[str, tuple[str, bool]] = {
    "azimuth": ("azimuth", True), "elevation": ("elevation", True),
    "distance": ("distance", True),
    "X": ("X", False), "Y": ("Y", False), "Z": ("Z", False),
    "x": ("X", False), "y": ("Y", False), "z": ("Z", False),
}


# (local name, element or None, attribute getter, text or None) of one child of a block: the
# element-independent form in which both readers (lxml, and the raw-text scan of
# iter_channel_formats) hand an Objects audioBlockFormat's children to _objects_block_parts
_Child = tuple[str, "etree._Element | None", Callable[[str], "str | None"], "str | None"]


class _FastPathUnsupported(Exception):
    """The raw-text reading of iter_channel_formats met something that it does not read
    exactly as lxml does: the lxml reading takes over."""


def _objects_block(ctx: _Ctx, el: etree._Element, channel_id: str) -> ObjectsBlock:
    """Objects audioBlockFormat (clause 5.4.3.3) of the lxml tree: its children are handed to
    :func:`_objects_block_parts`."""
    local_names = _LOCAL_NAMES
    children: list[_Child] = []
    append = children.append
    for child in el:  # _children() inlined
        tag = child.tag
        if tag.__class__ is str:
            append((local_names.get(tag) or _lname(tag), child, child.get, child.text))
    get = el.get
    return _objects_block_parts(ctx, el, channel_id, get("audioBlockFormatID"), get("rtime"),
                                get("duration"), children)


def _objects_block_parts(ctx: _Ctx, el: etree._Element | None, channel_id: str,
                         bid: str | None, rtime_text: str | None, duration_text: str | None,
                         children: Iterable[_Child]) -> ObjectsBlock:
    """Objects audioBlockFormat (clause 5.4.3.3) from its attributes' texts and its children;
    defaults as BS.2076-2. The one interpretation of both readers.

    ``el`` and each child's element are those of the lxml tree (for the line numbers of
    errors, strict mode and zoneExclusion), or None for the raw-text reading, which is never
    strict and leaves blocks with a zoneExclusion to lxml (:class:`_FastPathUnsupported`).
    The hot path of large files (tens of thousands of blocks): sub-elements are read into
    locals, repeated values come from caches and the block is built by :func:`_builder`.
    """
    if bid is None or not bid.strip():  # _block_id() inlined
        raise ctx.error(el, channel_id, "audioBlockFormat has no audioBlockFormatID")
    bid = bid.strip().upper()
    strict = ctx.strict
    if strict:
        ctx.check_attrs(el, bid, _BLOCK_ATTRS)  # type: ignore[arg-type]
    (width, height, depth, gain, diffuse, channel_lock, divergence, jump, screen_ref,
     edge_lock, importance, zones, head_locked) = _OBJECTS_BLOCK_DEFAULTS
    coords: dict[str, float] = {}
    n_polar = n_cart = 0
    edge_h: str | None = None
    edge_v: str | None = None
    cartesian_flag: bool | None = None
    floats = ctx._floats
    for name, child, get, text in children:
        if name == "position":
            if strict:
                ctx.check_attrs(child, bid, _POSITION_ATTRS)  # type: ignore[arg-type]
            coord = get("coordinate")
            if coord is None:
                raise ctx.error(child, bid, "position has no coordinate attribute")
            known = _COORDS.get(coord)
            if known is None:
                raise ctx.error(child, bid, f"unknown position coordinate {coord!r}")
            coord, polar = known
            if coord in coords:
                raise ctx.error(child, bid, f"duplicate position coordinate {coord!r}")
            value = floats.get(text)  # type: ignore[arg-type]
            coords[coord] = value if value is not None else ctx.float(child, bid, coord, text)
            if polar:
                n_polar += 1
            else:
                n_cart += 1
            lock = get("screenEdgeLock")
            if lock is not None:
                edge_h, edge_v = _screen_edge_lock(ctx, child, bid, coord, lock, edge_h, edge_v)
        elif name == "cartesian":
            cartesian_flag = _BOOLS.get(text)  # type: ignore[arg-type]
            if cartesian_flag is None:
                cartesian_flag = ctx.bool(child, bid, "cartesian", text)
        elif name == "jumpPosition":
            length = get("interpolationLength")
            jump_key = (text, length)
            jump = _JUMP_CACHE.get(jump_key)  # type: ignore[assignment]
            if jump is None:
                jump = JumpPosition(
                    flag=ctx.bool(child, bid, "jumpPosition", text),
                    interpolation_length=(None if length is None else ctx.seconds(
                        child, bid, "jumpPosition interpolationLength", length)),
                )
                if len(_JUMP_CACHE) < _CACHE_LIMIT:
                    _JUMP_CACHE[jump_key] = jump
        elif name == "width":
            width = ctx.float(child, bid, name, text)
        elif name == "height":
            height = ctx.float(child, bid, name, text)
        elif name == "depth":
            depth = ctx.float(child, bid, name, text)
        elif name == "diffuse":
            diffuse = ctx.float(child, bid, name, text)
        elif name == "gain":
            gain = ctx.gain_in(child, bid, text, get("gainUnit"))
        elif name == "channelLock":
            max_distance = get("maxDistance")
            lock_key = (text, max_distance)
            channel_lock = _CHANNEL_LOCK_CACHE.get(lock_key)  # type: ignore[assignment]
            if channel_lock is None:
                channel_lock = ChannelLock(
                    flag=ctx.bool(child, bid, "channelLock", text),
                    max_distance=(None if max_distance is None else ctx.float(
                        child, bid, "channelLock maxDistance", max_distance)),
                )
                if len(_CHANNEL_LOCK_CACHE) < _CACHE_LIMIT:
                    _CHANNEL_LOCK_CACHE[lock_key] = channel_lock
        elif name == "objectDivergence":
            az_range = get("azimuthRange")
            pos_range = get("positionRange")
            divergence_key = (text, az_range, pos_range)
            divergence = _DIVERGENCE_CACHE.get(divergence_key)  # type: ignore[assignment]
            if divergence is None:
                divergence = ObjectDivergence(
                    value=ctx.float(child, bid, "objectDivergence", text),
                    azimuth_range=(None if az_range is None else ctx.float(
                        child, bid, "objectDivergence azimuthRange", az_range)),
                    position_range=(None if pos_range is None else ctx.float(
                        child, bid, "objectDivergence positionRange", pos_range)),
                )
                if len(_DIVERGENCE_CACHE) < _CACHE_LIMIT:
                    _DIVERGENCE_CACHE[divergence_key] = divergence
        elif name == "screenRef":
            screen_ref = ctx.bool(child, bid, name, text)
        elif name == "importance":
            importance = ctx.int(child, bid, name, text)
        elif name == "headLocked":
            head_locked = ctx.bool(child, bid, name, text)
        elif name == "zoneExclusion":
            if child is None:
                raise _FastPathUnsupported("zoneExclusion")
            zones = _zone_exclusion(ctx, child, bid)
        else:
            ctx.unknown(child, name, bid, _BLOCK_KNOWN)  # type: ignore[arg-type]

    position: PolarPosition | CartesianPosition
    if n_polar:
        if n_cart:
            raise ctx.error(el, bid, "position mixes polar and cartesian coordinates")
        if "azimuth" not in coords:
            raise ctx.error(el, bid, "polar position has no azimuth")
        position = _new_polar(
            coords["azimuth"], coords.get("elevation", 0.0), coords.get("distance", 1.0))
        is_cartesian = False
    elif n_cart:
        if "X" not in coords or "Y" not in coords:
            raise ctx.error(el, bid, "cartesian position needs X and Y")
        position = _new_cartesian(coords["X"], coords["Y"], coords.get("Z", 0.0))
        is_cartesian = True
    else:
        raise ctx.error(el, bid, "audioBlockFormat has no position")
    if cartesian_flag is not None and cartesian_flag != is_cartesian:
        raise ctx.error(el, bid, f"cartesian flag {int(cartesian_flag)} disagrees with the "
                        f"{'cartesian' if is_cartesian else 'polar'} position coordinates")
    if edge_h is not None or edge_v is not None:
        edge_lock = _EDGE_LOCK_CACHE.get((edge_h, edge_v))  # type: ignore[assignment]
        if edge_lock is None:  # at most 3 x 3 values
            edge_lock = _EDGE_LOCK_CACHE[edge_h, edge_v] = ScreenEdgeLock(edge_h, edge_v)
    times = ctx._times
    rtime = times.get(rtime_text) if rtime_text is not None else None  # type: ignore[arg-type]
    if rtime is None:
        rtime = ctx.time(el, bid, "rtime", rtime_text)  # type: ignore[arg-type]
    duration = (times.get(duration_text)  # type: ignore[arg-type]
                if duration_text is not None else None)
    if duration is None:
        duration = ctx.time(el, bid, "duration", duration_text)  # type: ignore[arg-type]
    return _new_objects_block(  # _OBJECTS_BLOCK_REQUIRED + _OBJECTS_BLOCK_OPTIONAL
        bid, position, rtime, duration, is_cartesian, width, height, depth, gain, diffuse,
        channel_lock, divergence, jump, screen_ref, edge_lock, importance, zones, head_locked,
    )


def _bounded(ctx: _Ctx, el: etree._Element, bid: str, coord: str,
             values: dict[str, float] | None, default: float | None) -> BoundedValue:
    if values is None:
        if default is None:
            raise ctx.error(el, bid, f"position has no {coord}")
        return BoundedValue(default)
    if "value" not in values:
        raise ctx.error(el, bid, f"position {coord} has bounds but no value")
    return BoundedValue(values["value"], values.get("min"), values.get("max"))


def _screen_edge_lock(ctx, child, bid: str, coord: str, lock: str,
                      edge_h: str | None, edge_v: str | None) -> tuple[str | None, str | None]:
    """Apply a position element's screenEdgeLock attribute to (horizontal, vertical)."""
    lock = lock.strip()
    if coord in ("azimuth", "X") and lock in ("left", "right"):
        return lock, edge_v
    if coord in ("elevation", "Z") and lock in ("top", "bottom"):
        return edge_h, lock
    raise ctx.error(child, bid, f"screenEdgeLock {lock!r} is not valid on the {coord} coordinate")


def _direct_speakers_block(ctx: _Ctx, el: etree._Element, channel_id: str) -> DirectSpeakersBlock:
    """DirectSpeakers audioBlockFormat (clause 5.4.3.1)."""
    bid = _block_id(ctx, el, channel_id)
    strict = ctx.strict
    if strict:
        ctx.check_attrs(el, bid, _BLOCK_ATTRS)
    coords: dict[str, dict[str, float]] = {}
    labels: list[str] = []
    values: dict[str, object] = {}
    edge_h: str | None = None
    edge_v: str | None = None
    for name, child in _children(el):
        if name == "position":
            if strict:
                ctx.check_attrs(child, bid, _POSITION_ATTRS)
            coord = child.get("coordinate")
            if coord is None:
                raise ctx.error(child, bid, "position has no coordinate attribute")
            coord = _COORD_ALIASES.get(coord, coord)
            if coord not in _POLAR_COORDS and coord not in _CART_COORDS:
                raise ctx.error(child, bid, f"unknown position coordinate {coord!r}")
            bound = (child.get("bound") or "value").strip()
            if bound not in ("value", "min", "max"):
                raise ctx.error(child, bid, f"bad position bound {bound!r} (expected min or max)")
            slot = coords.setdefault(coord, {})
            if bound in slot:
                raise ctx.error(child, bid, f"duplicate position {coord} {bound}")
            what = f"position {coord}" + ("" if bound == "value" else f" bound={bound}")
            slot[bound] = ctx.float(child, bid, what, child.text)
            lock = child.get("screenEdgeLock")
            if lock is not None:
                edge_h, edge_v = _screen_edge_lock(ctx, child, bid, coord, lock, edge_h, edge_v)
        elif name == "speakerLabel":
            labels.append((child.text or "").strip())
        elif name == "gain":
            values["gain"] = ctx.gain(child, bid, child.text)
        elif name == "importance":
            values["importance"] = ctx.int(child, bid, name, child.text)
        elif name == "headLocked":
            values["head_locked"] = ctx.bool(child, bid, name, child.text)
        else:
            ctx.unknown(child, name, bid, _BLOCK_KNOWN)

    position: DirectSpeakersPolarPosition | DirectSpeakersCartesianPosition
    if coords.keys() & _POLAR_COORDS:
        if coords.keys() & _CART_COORDS:
            raise ctx.error(el, bid, "position mixes polar and cartesian coordinates")
        position = DirectSpeakersPolarPosition(
            _bounded(ctx, el, bid, "azimuth", coords.get("azimuth"), None),
            _bounded(ctx, el, bid, "elevation", coords.get("elevation"), 0.0),
            _bounded(ctx, el, bid, "distance", coords.get("distance"), 1.0),
        )
    elif coords:
        position = DirectSpeakersCartesianPosition(
            _bounded(ctx, el, bid, "X", coords.get("X"), None),
            _bounded(ctx, el, bid, "Y", coords.get("Y"), None),
            _bounded(ctx, el, bid, "Z", coords.get("Z"), 0.0),
        )
    else:
        raise ctx.error(el, bid, "audioBlockFormat has no position")
    if edge_h is not None or edge_v is not None:
        values["screen_edge_lock"] = ScreenEdgeLock(edge_h, edge_v)
    return DirectSpeakersBlock(
        id=bid,
        position=position,
        speaker_labels=tuple(labels),
        rtime=ctx.time(el, bid, "rtime", el.get("rtime")),
        duration=ctx.time(el, bid, "duration", el.get("duration")),
        **values,  # type: ignore[arg-type]
    )


def _hoa_block(ctx: _Ctx, el: etree._Element, channel_id: str) -> HoaBlock:
    """HOA audioBlockFormat (clause 5.4.3.4)."""
    bid = _block_id(ctx, el, channel_id)
    if ctx.strict:
        ctx.check_attrs(el, bid, _BLOCK_ATTRS)
    values: dict[str, object] = {}
    for name, child in _children(el):
        if name in ("order", "degree", "importance"):
            values[name] = ctx.int(child, bid, name, child.text)
        elif name in ("normalization", "equation"):
            values[name] = (child.text or "").strip()
        elif name == "nfcRefDist":
            values["nfc_ref_dist"] = ctx.float(child, bid, name, child.text)
        elif name == "screenRef":
            values["screen_ref"] = ctx.bool(child, bid, name, child.text)
        elif name == "gain":
            values["gain"] = ctx.gain(child, bid, child.text)
        elif name == "headLocked":
            values["head_locked"] = ctx.bool(child, bid, name, child.text)
        else:
            ctx.unknown(child, name, bid, _BLOCK_KNOWN)
    return HoaBlock(
        id=bid,
        rtime=ctx.time(el, bid, "rtime", el.get("rtime")),
        duration=ctx.time(el, bid, "duration", el.get("duration")),
        **values,  # type: ignore[arg-type]
    )


_COEFFICIENT_ATTRS = frozenset({
    "gain", "gainUnit", "gainVar", "phase", "phaseVar", "delay", "delayVar",
})


def _coefficient(ctx: _Ctx, el: etree._Element, bid: str) -> MatrixCoefficient:
    if ctx.strict:
        ctx.check_attrs(el, bid, _COEFFICIENT_ATTRS)
    attrib = el.attrib
    gain = attrib.get("gain")
    phase = attrib.get("phase")
    delay = attrib.get("delay")
    return MatrixCoefficient(
        input_channel_format_id=ctx.ref(el, bid),
        gain=None if gain is None else ctx.gain(el, bid, gain, "coefficient gain"),
        gain_var=attrib.get("gainVar"),
        phase=None if phase is None else ctx.float(el, bid, "coefficient phase", phase),
        phase_var=attrib.get("phaseVar"),
        delay=None if delay is None else ctx.float(el, bid, "coefficient delay", delay),
        delay_var=attrib.get("delayVar"),
    )


def _matrix_block(ctx: _Ctx, el: etree._Element, channel_id: str) -> MatrixBlock:
    """Matrix audioBlockFormat (clause 5.4.3.2)."""
    bid = _block_id(ctx, el, channel_id)
    if ctx.strict:
        ctx.check_attrs(el, bid, _BLOCK_ATTRS)
    values: dict[str, object] = {}
    coefficients: list[MatrixCoefficient] | None = None
    refs: dict[str, str] = {}
    for name, child in _children(el):
        if name == "matrix":
            if coefficients is not None:
                raise ctx.error(child, bid, "more than one <matrix>")
            coefficients = []
            for sub_name, sub in _children(child):
                if sub_name == "coefficient":
                    coefficients.append(_coefficient(ctx, sub, bid))
                else:
                    ctx.unknown(sub, sub_name, bid)
        elif name in ("outputChannelFormatIDRef", "outputChannelIDRef"):
            _single_ref(ctx, child, bid, refs, name)
        elif name == "gain":
            values["gain"] = ctx.gain(child, bid, child.text)
        elif name == "importance":
            values["importance"] = ctx.int(child, bid, name, child.text)
        else:
            ctx.unknown(child, name, bid, _BLOCK_KNOWN)
    return MatrixBlock(
        id=bid,
        coefficients=tuple(coefficients or ()),
        output_channel_format_id=refs.get("outputChannelFormatIDRef"),
        output_channel_id=refs.get("outputChannelIDRef"),
        rtime=ctx.time(el, bid, "rtime", el.get("rtime")),
        duration=ctx.time(el, bid, "duration", el.get("duration")),
        **values,  # type: ignore[arg-type]
    )


def _binaural_block(ctx: _Ctx, el: etree._Element, channel_id: str) -> BinauralBlock:
    bid = _block_id(ctx, el, channel_id)
    if ctx.strict:
        ctx.check_attrs(el, bid, _BLOCK_ATTRS)
    values: dict[str, object] = {}
    for name, child in _children(el):
        if name == "gain":
            values["gain"] = ctx.gain(child, bid, child.text)
        elif name == "importance":
            values["importance"] = ctx.int(child, bid, name, child.text)
        else:
            ctx.unknown(child, name, bid, _BLOCK_KNOWN | {"headLocked"})
    return BinauralBlock(
        id=bid,
        rtime=ctx.time(el, bid, "rtime", el.get("rtime")),
        duration=ctx.time(el, bid, "duration", el.get("duration")),
        **values,  # type: ignore[arg-type]
    )


_BLOCK_PARSERS = {
    TypeDefinition.Objects: _objects_block,
    TypeDefinition.DirectSpeakers: _direct_speakers_block,
    TypeDefinition.HOA: _hoa_block,
    TypeDefinition.Matrix: _matrix_block,
    TypeDefinition.Binaural: _binaural_block,
}


def _block_sort_key(block: BlockFormat) -> tuple[Fraction, Fraction]:
    zero = Fraction(0)
    return (block.rtime if block.rtime is not None else zero,
            block.duration if block.duration is not None else zero)


def _tidy_blocks(ctx: _Ctx, channel_id: str,
                 blocks: list[BlockFormat]) -> tuple[BlockFormat, ...]:
    """Give a block with a duration but no rtime rtime 0, and put blocks in time order
    (with a warning if they were not), as the BS.2127 reference renderer does on load."""
    for i, block in enumerate(blocks):
        if block.rtime is None and block.duration is not None:
            blocks[i] = dataclasses.replace(block, rtime=Fraction(0))
    # Blocks are in order when their (rtime, duration) keys never decrease. Strictly increasing
    # rtimes (the usual case) settle that without building the keys.
    zero = Fraction(0)
    rtimes = [zero if block.rtime is None else block.rtime for block in blocks]
    if any(b <= a for a, b in zip(rtimes, rtimes[1:], strict=False)):
        keys = [_block_sort_key(b) for b in blocks]
        if any(a > b for a, b in zip(keys, keys[1:], strict=False)):
            ctx.warnings.append(f"audioBlockFormats of {channel_id} are out of time order; "
                                "sorted them")
            blocks = sorted(blocks, key=_block_sort_key)
    return tuple(blocks)


def _frequency(ctx: _Ctx, child: etree._Element | None, cid: str, kind: str | None,
               text: str | None, low_pass: float | None,
               high_pass: float | None) -> tuple[float | None, float | None]:
    """A channel's ``frequency`` element (typeDefinition ``kind``, value ``text`` in Hz)
    applied to its (low pass, high pass) cut-offs."""
    kind = (kind or "").strip()
    value = ctx.float(child, cid, f"frequency {kind}", text)  # type: ignore[arg-type]
    if kind == "lowPass" and low_pass is None:
        return value, high_pass
    if kind == "highPass" and high_pass is None:
        return low_pass, value
    if kind in ("lowPass", "highPass"):
        raise ctx.error(child, cid, f"more than one {kind} frequency")
    raise ctx.error(child, cid, f"frequency typeDefinition must be lowPass or "
                    f"highPass, not {kind!r}")


def _channel(ctx: _Ctx, el: etree._Element, common: bool,
             defer: TypeDefinition | None = None) -> AudioChannelFormat:
    """audioChannelFormat; with ``defer`` equal to its type, its blocks are not read (left
    empty, to be read by :func:`iter_channel_formats`)."""
    cid = _required_id(ctx, el, "audioChannelFormatID")
    if ctx.strict:
        ctx.check_attrs(el, cid, _CHANNEL_ATTRS)
    type_ = _type_definition(ctx, el, cid)
    parse_block = _BLOCK_PARSERS[type_]
    skip_blocks = type_ is defer
    blocks: list[BlockFormat] = []
    low_pass: float | None = None
    high_pass: float | None = None
    local_names = _LOCAL_NAMES
    for child in el:  # _children() inlined: a channel can have tens of thousands of blocks
        tag = child.tag
        if tag.__class__ is not str:
            continue
        name = local_names.get(tag) or _lname(tag)
        if name == "audioBlockFormat":
            if not skip_blocks:
                blocks.append(parse_block(ctx, child, cid))
        elif name == "frequency":
            if ctx.strict:
                ctx.check_attrs(child, cid, frozenset({"typeDefinition"}))
            low_pass, high_pass = _frequency(ctx, child, cid, child.get("typeDefinition"),
                                             child.text, low_pass, high_pass)
        else:
            ctx.unknown(child, name, cid)
    return AudioChannelFormat(
        id=cid,
        name=el.get("audioChannelFormatName", ""),
        type=type_,
        blocks=_tidy_blocks(ctx, cid, blocks),
        frequency=Frequency(low_pass, high_pass),
        is_common_definition=common,
    )


# --------------------------------------------------------------------------------------------
# Documents
# --------------------------------------------------------------------------------------------


_ENTITY_UTF16 = ("<!ENTITY".encode("utf-16-le"), "<!ENTITY".encode("utf-16-be"))


def _declares_entities(data: bytes, start: int = 0, stop: int | None = None) -> bool:
    """Whether a DOCTYPE internal subset of ``data[start:stop]`` declares entities (checked
    before parsing, so that the refusal does not depend on where libxml2 would trip over the
    entity)."""
    stop = len(data) if stop is None else stop
    doctype = data.find(b"<!DOCTYPE", start, stop)
    if doctype >= 0:
        end = data.find(b"]>", doctype, stop)
        if data.find(b"<!ENTITY", doctype, end if end >= 0 else stop) >= 0:
            return True
    return any(data.find(pattern, start, stop) >= 0 for pattern in _ENTITY_UTF16)


_PADDING = b"\x00 \t\r\n"
_PADDING_STEP = 4096


def _unpadded_range(data: bytes) -> tuple[int, int]:
    """``(start, stop)`` such that ``data[start:stop] == data.strip(_PADDING)``, found without
    copying ``data`` (a large axml chunk) as ``strip`` would."""
    start, stop = 0, len(data)
    while start < stop:
        piece = data[start:start + _PADDING_STEP]
        kept = len(piece.lstrip(_PADDING))
        start += len(piece) - kept
        if kept:
            break
    while stop > start:
        piece = data[max(start, stop - _PADDING_STEP):stop]
        kept = len(piece.rstrip(_PADDING))
        stop -= len(piece) - kept
        if kept:
            break
    return start, stop


class _ByteRange:
    """A minimal binary file over ``data[start:stop]`` for :func:`lxml.etree.iterparse`, which
    reads it in small pieces: the bytes are never copied as a whole."""

    def __init__(self, data: bytes, start: int, stop: int) -> None:
        self._view = memoryview(data)[start:stop]
        self._pos = 0

    def read(self, size: int | None = -1) -> bytes:
        pos = self._pos
        end = len(self._view) if size is None or size < 0 else min(len(self._view), pos + size)
        self._pos = end
        return self._view[pos:end].tobytes()


class FileRegion:
    """ADM XML stored in a region of an open file (an axml chunk), read in pieces with
    ``os.pread``: neither pass over a large chunk holds it whole in memory.

    ``fd``: the file descriptor; ``offset``/``size``: the region in bytes.
    """

    _STEP = 1 << 20

    def __init__(self, fd: int, offset: int, size: int) -> None:
        self.fd, self.offset, self.size = fd, offset, size

    def read_at(self, start: int, stop: int) -> bytes:
        """Bytes ``[start, stop)`` of the region."""
        return os.pread(self.fd, max(0, stop - start), self.offset + start)

    def unpadded_range(self) -> tuple[int, int]:
        """``(start, stop)`` of the region without the NUL/white padding at its ends."""
        start, stop = 0, self.size
        while start < stop:
            piece = self.read_at(start, min(stop, start + _PADDING_STEP))
            kept = len(piece.lstrip(_PADDING))
            start += len(piece) - kept
            if kept:
                break
        while stop > start:
            piece = self.read_at(max(start, stop - _PADDING_STEP), stop)
            kept = len(piece.rstrip(_PADDING))
            stop -= len(piece) - kept
            if kept:
                break
        return start, stop

    def declares_entities(self, start: int, stop: int) -> bool:
        """As :func:`_declares_entities`, scanning the region piece by piece."""
        head = self.read_at(start, min(stop, start + self._STEP))
        doctype = head.find(b"<!DOCTYPE")
        if doctype >= 0:  # the DOCTYPE precedes the root element: near the start
            end = head.find(b"]>", doctype)
            if head.find(b"<!ENTITY", doctype, end if end >= 0 else len(head)) >= 0:
                return True
        overlap = max(len(p) for p in _ENTITY_UTF16) - 1
        pos = start
        while pos < stop:
            piece = self.read_at(max(start, pos - overlap), min(stop, pos + self._STEP))
            if any(piece.find(pattern) >= 0 for pattern in _ENTITY_UTF16):
                return True
            pos += self._STEP
        return False

    def reader(self, start: int, stop: int) -> _FileRangeReader:
        return _FileRangeReader(self, start, stop)


class _FileRangeReader:
    """A minimal binary file over bytes ``[start, stop)`` of a :class:`FileRegion`."""

    def __init__(self, region: FileRegion, start: int, stop: int) -> None:
        self._region, self._pos, self._stop = region, start, stop

    def read(self, size: int | None = -1) -> bytes:
        end = self._stop if size is None or size < 0 else min(self._stop, self._pos + size)
        data = self._region.read_at(self._pos, end)
        self._pos = end
        return data


_PARSER_OPTIONS = {
    "resolve_entities": False, "no_network": True, "load_dtd": False, "huge_tree": False,
    "remove_comments": True, "remove_pis": True,
}
_WRAPPERS_DEPTH = 6
_FORMAT_EXTENDED = "audioFormatExtended"
# the elements of audioFormatExtended that are read; iterparse reports only these
_EVENT_TAGS = tuple(f"{{*}}{name}" for name in (
    _FORMAT_EXTENDED, "audioProgramme", "audioContent", "audioObject", "audioPackFormat",
    "audioChannelFormat", "audioStreamFormat", "audioTrackFormat", "audioTrackUID",
))


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while a document is read (or its blocks are
    planned): the tens of thousands of small immutable objects of a large file would make it
    run again and again over objects that it cannot free (some tenth of the reading time);
    they are freed by their reference counts. Nests: only the outermost pause resumes it."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _syntax_error(source: str, data: bytes, exc: etree.XMLSyntaxError) -> AdmError:
    """The error for XML that is not well-formed. libxml2 words some errors differently when
    it parses in pieces, as iterparse does: the message is taken from a parse of the whole
    text at once, so that it does not depend on how the text was read."""
    try:
        etree.fromstring(data, etree.XMLParser(**_PARSER_OPTIONS))
    except etree.XMLSyntaxError as whole_text_exc:
        exc = whole_text_exc
    line = exc.lineno if exc.lineno else "?"
    return AdmError(f"{source}: XML syntax error at line {line}: {exc.msg}")


def _is_top_format_extended(el: etree._Element) -> bool:
    """Whether the audioFormatExtended ``el`` is one the ADM is read from: the root itself, or
    under at most ``_WRAPPERS_DEPTH`` levels of wrappers (ebuCoreMain/coreMetadata/format,
    ituADM/coreMetadata/format, S-ADM frame, ...) none of which is an audioFormatExtended."""
    for depth, ancestor in enumerate(el.iterancestors(), start=1):
        if depth > _WRAPPERS_DEPTH or _lname(ancestor.tag) == _FORMAT_EXTENDED:
            return False
    return True


def _drop_unknown_children(ctx: _Ctx, afe: etree._Element,
                           until: etree._Element | None) -> None:
    """Check (strict mode) and remove the children of ``afe`` before ``until`` (all of them if
    None). Called when a main element ends, every earlier main element has been read and
    removed already, so these are the elements that audioFormatExtended does not define."""
    leftovers = []
    for child in afe:
        if child is until:
            break
        leftovers.append(child)
    for child in leftovers:
        if child.tag.__class__ is str:
            ctx.unknown(child, _lname(child.tag), _FORMAT_EXTENDED, _AFE_KNOWN)
        afe.remove(child)


def parse_adm_elements(data: bytes | str | FileRegion, source: str = "<axml>",
                       strict: bool = False, is_common_definition: bool = False,
                       defer: TypeDefinition | None = None) -> AdmDocument:
    """Parse ADM XML into an :class:`AdmDocument` without merging the common definitions and
    without checking references (see :func:`parse_adm_xml` for the full job).

    ``is_common_definition`` marks the packs, channels, stream and track formats as such
    (used to load the BS.2094 data).

    The XML is read as a stream (lxml ``iterparse``, entities, DTD loading and network access
    all off): each main element is converted when its end tag is reached and then dropped, so
    the whole tree of a large file is never held in memory. Errors come out as if the whole
    document were parsed first: an XML syntax error or an entity declaration anywhere wins
    over the first content error, which is held back until the end of the document.
    """
    if isinstance(data, FileRegion):
        region = data
        start, stop = region.unpadded_range()
        if start == stop:
            raise AdmError(f"{source}: empty XML document")
        if region.declares_entities(start, stop):
            raise AdmError(f"{source}: entity declarations are not allowed in ADM XML")
        if defer is TypeDefinition.Objects and not is_common_definition:
            # the whole text checked first (its syntax errors win), then parsed without the
            # Objects blocks, if they can be cut out safely
            _check_well_formed(region, start, stop, source)
            cut = _without_objects_blocks(region, start, stop)
            if cut is not None:
                try:
                    return _read_elements(_Ctx(source, strict), _ByteRange(cut, 0, len(cut)),
                                          is_common_definition, defer, None)
                except _CutNotParsed:
                    pass  # the cut broke the text (a block inside another element): whole
        stream = region.reader(start, stop)
    else:
        if isinstance(data, str):
            data = data.encode("utf-8")
        # axml chunks are often NUL padded: read data[start:stop] without copying all of it
        data = bytes(data)
        start, stop = _unpadded_range(data)
        if start == stop:
            raise AdmError(f"{source}: empty XML document")
        if _declares_entities(data, start, stop):
            raise AdmError(f"{source}: entity declarations are not allowed in ADM XML")
        stream = _ByteRange(data, start, stop)
    whole = data  # for the message of a syntax error

    def text() -> bytes:
        return whole.read_at(start, stop) if isinstance(whole, FileRegion) \
            else whole[start:stop]

    return _read_elements(_Ctx(source, strict), stream, is_common_definition, defer, text)


class _CutNotParsed(Exception):
    """The text with its Objects blocks cut out did not parse (see parse_adm_elements)."""


def _read_elements(ctx: _Ctx, stream: Any, common: bool, defer: TypeDefinition | None,
                   text: Callable[[], bytes] | None) -> AdmDocument:
    """The elements of the XML read from ``stream`` (see :func:`parse_adm_elements`);
    ``text()`` gives the whole text for the message of a syntax error; None: a syntax error
    raises :class:`_CutNotParsed`."""
    source, strict = ctx.source, ctx.strict
    programmes: list[AudioProgramme] = []
    contents: list[AudioContent] = []
    objects: list[AudioObject] = []
    packs: list[AudioPackFormat] = []
    channels: list[AudioChannelFormat] = []
    streams: list[AudioStreamFormat] = []
    tracks: list[AudioTrackFormat] = []
    uids: list[AudioTrackUID] = []
    events = etree.iterparse(stream, events=("start", "end"), tag=_EVENT_TAGS,
                             **_PARSER_OPTIONS)
    afe: etree._Element | None = None  # the audioFormatExtended being read
    n_afes = 0
    error: AdmError | None = None  # the first content error, raised after the whole parse
    with gc_paused():
        try:
            for event, el in events:
                if error is not None:
                    if event == "end":
                        el.clear()  # only the syntax check is left to do: free memory
                    continue
                try:
                    if event == "start":
                        if afe is None and _lname(el.tag) == _FORMAT_EXTENDED \
                                and _is_top_format_extended(el):
                            afe = el
                            n_afes += 1
                            if strict:
                                ctx.check_attrs(afe, _FORMAT_EXTENDED, frozenset({"version"}))
                        continue
                    name = _lname(el.tag)
                    if name == _FORMAT_EXTENDED:
                        if el is afe:
                            _drop_unknown_children(ctx, afe, None)
                            afe = None
                        continue  # (one inside another is an unknown element of the outer one)
                    if afe is None or el.getparent() is not afe:
                        continue  # not a child of a top audioFormatExtended: read (or not) as such
                    _drop_unknown_children(ctx, afe, el)
                    if name == "audioChannelFormat":
                        channels.append(_channel(ctx, el, common, defer))
                    elif name == "audioObject":
                        objects.append(_object(ctx, el))
                    elif name == "audioPackFormat":
                        packs.append(_pack(ctx, el, common))
                    elif name == "audioStreamFormat":
                        streams.append(_stream(ctx, el, common))
                    elif name == "audioTrackFormat":
                        tracks.append(_track(ctx, el, common))
                    elif name == "audioTrackUID":
                        uids.append(_track_uid(ctx, el))
                    elif name == "audioContent":
                        contents.append(_content(ctx, el))
                    else:  # audioProgramme
                        programmes.append(_programme(ctx, el))
                    el.clear()
                    afe.remove(el)
                except AdmError as exc:
                    error = exc
        except etree.XMLSyntaxError as exc:
            if text is None:
                raise _CutNotParsed() from None
            raise _syntax_error(source, text(), exc) from None
    root = events.root
    if root is None:
        raise AdmError(f"{source}: empty XML document")
    dtd = root.getroottree().docinfo.internalDTD
    if dtd is not None and any(True for _ in dtd.iterentities()):
        raise AdmError(f"{source}: entity declarations are not allowed in ADM XML")
    if not n_afes:
        raise AdmError(f"{source}: no audioFormatExtended element in the XML "
                       f"(root element <{_lname(root.tag)}>)")
    for message in ctx.warnings:
        warnings.warn(message, stacklevel=2)
    if error is not None:
        raise error
    seen: set[str] = set()
    for group in (programmes, contents, objects, packs, channels, streams, tracks, uids):
        for element in group:
            if element.id in seen:
                raise AdmError(f"{source}: duplicate ADM ID {element.id}")
            seen.add(element.id)
    return AdmDocument(
        programmes=tuple(programmes), contents=tuple(contents), objects=tuple(objects),
        pack_formats=tuple(packs), channel_formats=tuple(channels),
        stream_formats=tuple(streams), track_formats=tuple(tracks), track_uids=tuple(uids),
        source=source,
    )


def merge_common_definitions(doc: AdmDocument) -> AdmDocument:
    """Add every BS.2094 common-definition element whose ID the document does not define
    (a file's own element with a common-definition ID overrides it). Appended after the
    file's elements."""
    from .common_definitions import common_definitions

    common = common_definitions()
    present = {e.id for group in (doc.pack_formats, doc.channel_formats, doc.stream_formats,
                                  doc.track_formats) for e in group}
    return dataclasses.replace(
        doc,
        pack_formats=doc.pack_formats
        + tuple(e for e in common.pack_formats if e.id not in present),
        channel_formats=doc.channel_formats
        + tuple(e for e in common.channel_formats if e.id not in present),
        stream_formats=doc.stream_formats
        + tuple(e for e in common.stream_formats if e.id not in present),
        track_formats=doc.track_formats
        + tuple(e for e in common.track_formats if e.id not in present),
    )


def check_references(doc: AdmDocument) -> None:
    """Check that every ``...IDRef`` of ``doc`` names an element of the right kind.

    Raises :class:`AdmError` "ADM reference to missing element X (referenced from Y)" (or
    "... is a K, expected L") for the first bad reference. ``ATU_00000000`` (a silent track,
    BS.2076-2) is allowed in audioObjects.
    """
    look = doc.lookup
    for programme in doc.programmes:
        for ref in programme.content_ids:
            look(ref, AudioContent, programme.id)
    for content in doc.contents:
        for ref in content.object_ids:
            look(ref, AudioObject, content.id)
    for obj in doc.objects:
        for ref in obj.pack_format_ids:
            look(ref, AudioPackFormat, obj.id)
        for ref in obj.object_ids + obj.complementary_object_ids:
            look(ref, AudioObject, obj.id)
        for ref in obj.track_uid_ids:
            if ref != SILENT_TRACK_UID:
                look(ref, AudioTrackUID, obj.id)
    for pack in doc.pack_formats:
        for ref in pack.channel_format_ids:
            look(ref, AudioChannelFormat, pack.id)
        for ref in pack.pack_format_ids + pack.encode_pack_format_ids \
                + pack.decode_pack_format_ids:
            look(ref, AudioPackFormat, pack.id)
        for ref in (pack.input_pack_format_id, pack.output_pack_format_id):
            if ref is not None:
                look(ref, AudioPackFormat, pack.id)
    for channel in doc.channel_formats:
        if channel.type is not TypeDefinition.Matrix:
            continue
        for block in channel.blocks:
            assert isinstance(block, MatrixBlock)
            for coefficient in block.coefficients:
                look(coefficient.input_channel_format_id, AudioChannelFormat, block.id)
            for ref in (block.output_channel_format_id, block.output_channel_id):
                if ref is not None:
                    look(ref, AudioChannelFormat, block.id)
    for stream in doc.stream_formats:
        if stream.channel_format_id is not None:
            look(stream.channel_format_id, AudioChannelFormat, stream.id)
        if stream.pack_format_id is not None:
            look(stream.pack_format_id, AudioPackFormat, stream.id)
        for ref in stream.track_format_ids:
            look(ref, AudioTrackFormat, stream.id)
    for track in doc.track_formats:
        if track.stream_format_id is not None:
            look(track.stream_format_id, AudioStreamFormat, track.id)
    for uid in doc.track_uids:
        if uid.track_format_id is not None:
            look(uid.track_format_id, AudioTrackFormat, uid.id)
        if uid.channel_format_id is not None:
            look(uid.channel_format_id, AudioChannelFormat, uid.id)
        if uid.pack_format_id is not None:
            look(uid.pack_format_id, AudioPackFormat, uid.id)


# --------------------------------------------------------------------------------------------
# iter_channel_formats: the second reading of deferred Objects channels
# --------------------------------------------------------------------------------------------
#
# The document has been read (and found well-formed) by lxml once already. The second reading
# scans its raw text for the wanted audioChannelFormats and reads their audioBlockFormats with
# regular expressions, handing the same raw attribute and element texts as lxml would give to
# the same interpretation (_objects_block_parts, _frequency, _tidy_blocks). Whatever the scan
# does not read exactly as lxml does (references ``&...;``, comments, CDATA or processing
# instructions in a channel, nested sub-elements such as zoneExclusion, an encoding other than
# UTF-8, a type other than Objects, strict mode, any error) hands that channel and the rest of
# the document over to lxml, so errors (with their line numbers) are lxml's.

_NAME = r"[^\s<>/:=!?\"']+"
_PREFIX = rf"(?:{_NAME}:)?"
_ATTRS = r"((?:\s+[^\s<>/=\"']+\s*=\s*(?:\"[^\"<]*\"|'[^'<]*'))*)"
_ATTR_RE = re.compile(r"([^\s<>/=\"']+)\s*=\s*(?:\"([^\"<]*)\"|'([^'<]*)')")
# a start tag, end tag or empty-element tag: (end "/", qualified name, local name, attributes,
# empty "/")
_TAG_RE = re.compile(rf"<(/?)({_PREFIX}({_NAME})){_ATTRS}\s*(/?)>".encode())
# a child of an audioChannelFormat: an audioBlockFormat (attributes, content or None) or
# another element without sub-elements (name, attributes, text, "</" unless empty-element)
_CHANNEL_CHILD_RE = re.compile(
    rf"<{_PREFIX}(?:audioBlockFormat{_ATTRS}\s*(?:/>|>"
    rf"([^<]*(?:<(?!/{_PREFIX}audioBlockFormat\s*>)[^<]*)*)</{_PREFIX}audioBlockFormat\s*>)"
    rf"|({_NAME}){_ATTRS}\s*(?:/>|>([^<]*)(</)[^>]*>))"
)
# a child of an audioBlockFormat without sub-elements: (local name, attributes, text)
_BLOCK_CHILD_RE = re.compile(rf"<{_PREFIX}({_NAME}){_ATTRS}\s*(?:/>|>([^<]*)</[^>]*>)")
_NESTED_CHANNEL_RE = re.compile(rf"<{_PREFIX}audioChannelFormat[\s/>]".encode())
# what the first parse's cutting looks for: markup other than elements, or a channel
_CUT_SCAN_RE = re.compile(rf"<[!?]|<{_PREFIX}audioChannelFormat[\s/>]".encode())
_CUT_KEEP_LIMIT = 1 << 26  # bytes of text kept by the cut, at most (64 MiB)
_NOT_LINE_ENDS = bytes(b for b in range(256) if b not in b"\r\n")
_BLOCK_START_RE = re.compile(rf"<{_PREFIX}audioBlockFormat[\s/>]".encode())
_XML_DECLARATION_RE = re.compile(rb"<\?xml\s[^>]*?encoding\s*=\s*[\"']([^\"']*)[\"']")
_UTF8_ENCODINGS = frozenset({"utf-8", "utf8", "us-ascii", "ascii"})
_UTF8_BOM = b"\xef\xbb\xbf"
_WIDE_STARTS = (b"\xfe\xff", b"\xff\xfe", b"\x00")  # UTF-16 or UTF-32 text begins so
_ATTR_SPACES = str.maketrans("\t\n", "  ")  # attribute-value normalisation (XML 1.0 3.3.3)
_ATTR_GETTERS: dict[str, Callable[[str], str | None]] = {}
_CLOSE_TAGS: dict[bytes, re.Pattern[bytes]] = {}
_SCAN_STEP = 1 << 22
_CHANNEL_B = b"audioChannelFormat"
_FORMAT_EXTENDED_B = _FORMAT_EXTENDED.encode()


def _raw_attrs(text: str) -> dict[str, str]:
    """The attributes of a start tag's attribute text (no references in it), their values
    normalised as an XML parser does (line ends already are)."""
    if "\t" in text or "\n" in text:
        text = text.translate(_ATTR_SPACES)
    return {name: double or single for name, double, single in _ATTR_RE.findall(text)}


def _attr_getter(text: str) -> Callable[[str], str | None]:
    """``get`` of :func:`_raw_attrs` ``(text)``, shared by equal attribute texts."""
    getter = _ATTR_GETTERS.get(text)
    if getter is None:
        getter = _raw_attrs(text).get
        if len(_ATTR_GETTERS) < 4 * _CACHE_LIMIT:
            _ATTR_GETTERS[text] = getter
    return getter


class _BlockShape:
    """The exact markup of an audioBlockFormat as a pattern that captures only its texts:
    machine-written files repeat one markup for thousands of blocks, each of which is then
    matched at once. ``plan``: (local name, attribute getter, group or -1) of each child
    (group: the index in ``match.groups()`` of its text); ``id``, ``rtime``, ``duration``:
    those of the block's attributes (-1: absent); ``n_tags``: its number of '<'."""

    __slots__ = ("pattern", "names", "getters", "texts", "id", "rtime", "duration", "n_tags")

    def __init__(self, pattern: re.Pattern[str], plan: list[tuple[str, Any, int]],
                 attr_groups: dict[str, int], n_groups: int, n_tags: int) -> None:
        # the group n_groups (the last) never matches: its value None stands for what is
        # absent (an attribute, the text of an empty element)
        self.pattern, self.n_tags = pattern, n_tags
        self.names = tuple(name for name, _, _ in plan)
        self.getters = tuple(get for _, get, _ in plan)
        indices = [n_groups if k < 0 else k for _, _, k in plan] + [n_groups]
        getter = operator.itemgetter(*indices)  # one more: always a tuple
        self.texts: Callable[[tuple[str | None, ...]], tuple[str | None, ...]] = getter
        self.id = attr_groups.get("audioBlockFormatID", n_groups)
        self.rtime = attr_groups.get("rtime", n_groups)
        self.duration = attr_groups.get("duration", n_groups)


_SHAPES: dict[str, _BlockShape] = {}
_NONES = itertools.repeat(None)
_SHAPED_ATTRS = frozenset({"audioBlockFormatID", "rtime", "duration"})


def _attr_value_pattern(quote: str) -> str:
    """A group capturing an attribute value between ``quote`` characters (not one that an
    XML parser would normalise or that holds a reference)."""
    return f"([^{quote}<&\\t\\n]*)"


def _start_tag_pattern(body: str, match: re.Match[str],
                       capture: Callable[[str, str], tuple[str, int]],
                       ) -> tuple[list[str], dict[str, int], int]:
    """Pieces of a pattern matching the start tag of the audioBlockFormat ``match`` (of
    :data:`_CHANNEL_CHILD_RE`, with content) of ``body`` as it is written, but for the values
    of its audioBlockFormatID, rtime and duration: ``capture(name, quote)`` gives the pattern
    of each and its number of groups. Returns (pieces, first group of each captured
    attribute, number of groups)."""
    escape = re.escape
    parts = [escape(body[match.start():match.start(1)])]
    groups: dict[str, int] = {}
    n_groups = 0
    attrs, attrs_start = match.group(1), match.start(1)
    last = 0
    for attr in _ATTR_RE.finditer(attrs):
        name = attr.group(1)
        if name in _SHAPED_ATTRS and name not in groups:
            value = 2 if attr.group(2) is not None else 3
            pattern, count = capture(name, attrs[attr.start(value) - 1])
            parts.append(escape(attrs[last:attr.start(value)]))
            parts.append(pattern)
            groups[name] = n_groups
            n_groups += count
            last = attr.end(value)
    parts.append(escape(body[attrs_start + last:match.start(2)]))
    return parts, groups, n_groups


def _block_shape(body: str, match: re.Match[str]) -> _BlockShape:
    """The shape of the audioBlockFormat ``match`` (of :data:`_CHANNEL_CHILD_RE`, with content,
    whose children have been checked to have no sub-elements) of ``body``."""
    escape = re.escape
    start_tag, attr_groups, n_groups = _start_tag_pattern(
        body, match, lambda name, quote: (_attr_value_pattern(quote), 1))
    parts = [r"[^<]*", *start_tag]
    content, content_start = match.group(2), match.start(2)
    plan: list[tuple[str, Any, int]] = []
    for child in _BLOCK_CHILD_RE.finditer(content):
        local, child_attrs, text = child.groups()
        parts.append(r"[^<]*")
        if text is None:
            parts.append(escape(child.group(0)))
            plan.append((local, _attr_getter(child_attrs), -1))
        else:
            parts.append(escape(content[child.start():child.start(3)]))
            parts.append(r"([^<&]+)?")  # no text: None, as lxml gives
            parts.append(escape(content[child.end(3):child.end()]))
            plan.append((local, _attr_getter(child_attrs), n_groups))
            n_groups += 1
    parts.append(r"[^<]*")
    parts.append(escape(body[content_start + len(content):match.end()]))
    parts.append(r"((?!))?")  # the group that never matches
    source = "".join(parts)
    shape = _SHAPES.get(source)
    if shape is None:
        shape = _BlockShape(re.compile(source), plan, attr_groups, n_groups,
                            match.group(0).count("<"))
        if len(_SHAPES) < 256:
            _SHAPES[source] = shape
    return shape


# -- Objects channels as columns (adm.columns) ------------------------------------------------

# the children a block read into columns may have (each at most once; position once per
# coordinate), and those of their attributes whose values are read from each block
_COLUMN_CHILDREN = frozenset({"position", "cartesian", "jumpPosition", "gain", "diffuse",
                              "width", "height", "depth", "screenRef", "importance",
                              "headLocked", "channelLock", "objectDivergence"})
_COLUMN_CHILD_ATTRS = {"jumpPosition": ("interpolationLength",), "gain": ("gainUnit",),
                       "channelLock": ("maxDistance",),
                       "objectDivergence": ("azimuthRange", "positionRange")}
# hh:mm:ss.fffff as _Ctx.time reads it, with at most 9 digits (times fit int64 ticks)
_COLUMN_TIME = r"([0-9]{1,9}):([0-5][0-9]):([0-5][0-9])\.([0-9]{1,9})"
_COLUMN_SCALE_LIMIT = 10 ** 12  # ticks per second, at most
_CARTESIAN_COORDS = frozenset({"X", "Y", "Z"})
_ALL_COORDS = _CARTESIAN_COORDS | _POLAR_COORDS


class _ColumnShape:
    """The markup of an audioBlockFormat as a pattern capturing its values (its ID, the four
    parts of its rtime and of its duration, each child's text and read attributes), to read a
    channel whose blocks all have this markup with one ``findall``. ``children``: (local name,
    coordinate or None, group of its text, {read attribute: its group});
    ``n_tags``: the number of '<' of one block."""

    __slots__ = ("pattern", "n_tags", "id", "rtime", "duration", "children")

    def __init__(self, pattern: re.Pattern[str], n_tags: int, groups: dict[str, int],
                 children: list[tuple[str, str | None, int, dict[str, int]]]) -> None:
        self.pattern, self.n_tags, self.children = pattern, n_tags, children
        self.id, self.rtime = groups["audioBlockFormatID"], groups["rtime"]
        self.duration = groups["duration"]


def _column_shape(body: str, match: re.Match[str]) -> _ColumnShape | None:
    """The :class:`_ColumnShape` of the audioBlockFormat ``match`` (of
    :data:`_CHANNEL_CHILD_RE`, with content) of ``body``, or None for a block that columns
    do not hold (another child, a child twice, a screenEdgeLock, a position neither polar nor
    cartesian, a time not given)."""
    escape = re.escape
    # the text between blocks is matched at the end of each
    parts, groups, n_groups = _start_tag_pattern(
        body, match, lambda name, quote: (_attr_value_pattern(quote), 1)
        if name == "audioBlockFormatID" else (_COLUMN_TIME, 4))
    if len(groups) != len(_SHAPED_ATTRS):
        return None
    content, content_start = match.group(2), match.start(2)
    children: list[tuple[str, str | None, int, dict[str, int]]] = []
    seen: set[str] = set()
    for child in _BLOCK_CHILD_RE.finditer(content):
        local, child_attrs, text = child.groups()
        if local not in _COLUMN_CHILDREN or text is None:
            return None
        coordinate, attr_groups, done = None, {}, child.start()
        parts.append(r"[^<]*")
        for attr in _ATTR_RE.finditer(child_attrs):
            name = attr.group(1)
            value = 2 if attr.group(2) is not None else 3
            if local == "position" and name == "coordinate":
                known = _COORDS.get(attr.group(value))
                if known is None:
                    return None
                coordinate = known[0]
            elif local == "position" and name == "screenEdgeLock":
                return None
            elif name in _COLUMN_CHILD_ATTRS.get(local, ()) and name not in attr_groups:
                at = child.start(2) + attr.start(value)
                parts.append(escape(content[done:at]))
                parts.append(_attr_value_pattern(child_attrs[attr.start(value) - 1]))
                attr_groups[name], n_groups = n_groups, n_groups + 1
                done = child.start(2) + attr.end(value)
        key = local if coordinate is None else coordinate
        if key in seen or (local == "position") != (coordinate is not None):
            return None
        seen.add(key)
        parts.append(escape(content[done:child.start(3)]))
        parts.append(r"([^<&]+)?")
        parts.append(escape(content[child.end(3):child.end()]))
        children.append((local, coordinate, n_groups, attr_groups))
        n_groups += 1
    coordinates = seen & _ALL_COORDS
    if not ({"X", "Y"} <= coordinates <= _CARTESIAN_COORDS
            or ("azimuth" in coordinates and coordinates <= _POLAR_COORDS)):
        return None
    parts.append(r"[^<]*")
    parts.append(escape(body[content_start + len(content):match.end()]))
    parts.append(r"[^<]*")
    return _ColumnShape(re.compile("".join(parts)), match.group(0).count("<"), groups,
                        children)


def _column_values(texts: Sequence[str], convert: Callable[[str], Any],
                   dtype: Any) -> np.ndarray:
    """``convert`` of each of ``texts`` as an array, converting each distinct text once."""
    table = {text: convert(text) for text in set(texts)}
    return np.fromiter(map(table.__getitem__, texts), dtype, len(texts))


def _float_values(texts: Sequence[str]) -> np.ndarray:
    """The numbers ``texts`` as :meth:`_Ctx.float` reads them (an error: ValueError)."""
    values = np.fromiter(map(float, texts), np.float64, len(texts))
    # float() also reads infinities, NaN and digits grouped with "_", which are refused
    if not np.isfinite(values).all() or "_" in "".join(texts):
        raise ValueError("not a plain number")
    return values


def _optional_floats(columns: list[tuple[str, ...]], group: int | None, n: int) -> np.ndarray:
    """The numbers of the attribute captured in ``group`` (None: not given: NaN)."""
    return np.full(n, np.nan) if group is None else _float_values(columns[group])


_COLUMN_SHAPES_MAX = 4  # markups of the blocks of one channel read into columns, at most


def _objects_columns(ctx: _Ctx, body: str,
                     first: re.Match[str]) -> ObjectsBlockColumns | None:
    """The blocks of an Objects channel's content ``body`` (whose first child is the block
    ``first``, a :data:`_CHANNEL_CHILD_RE` match with content) as columns when every element
    in it is an audioBlockFormat of at most :data:`_COLUMN_SHAPES_MAX` markups that columns
    hold, its values read as :func:`_objects_block_parts` reads them, its rtimes increasing;
    otherwise (or for any bad value) None, and the channel is read block by block.

    One markup (machine-written files) is read by one ``findall``. Otherwise each markup is
    found with ``finditer`` from the first block not matched yet, and the blocks of the
    markups are put back in document order."""
    n_lt = body.count("<")
    shape = _column_shape(body, first)
    if shape is None:
        return None
    found = shape.pattern.findall(body)
    # each match holds n_tags '<' of its own: all of them are in blocks of this shape
    if found and len(found) * shape.n_tags == n_lt:
        return _in_order(_shape_columns(ctx, shape, found))
    parts: list[ObjectsBlockColumns] = []
    starts: list[int] = []
    spans: list[tuple[int, int]] = []
    covered = 0
    for _ in range(_COLUMN_SHAPES_MAX):
        matches = list(shape.pattern.finditer(body))
        columns = _shape_columns(ctx, shape, [m.groups() for m in matches]) if matches \
            else None
        if columns is None:
            return None
        parts.append(columns)
        starts += [m.start() for m in matches]
        spans = sorted(spans + [m.span() for m in matches])
        covered += len(matches) * shape.n_tags
        if covered == n_lt:
            order = np.argsort(starts, kind="stable")
            return _in_order(ObjectsBlockColumns.concatenate(parts).take(order))
        # the first block not matched yet, after the matched ones before it
        at = 0
        for start, end in spans:
            if start > at and "<" in body[at:start]:
                break
            at = max(at, end)
        nxt = _CHANNEL_CHILD_RE.search(body, at)
        if nxt is None or nxt.group(2) is None:
            return None
        shape = _column_shape(body, nxt)
        if shape is None:
            return None
    return None


def _in_order(columns: ObjectsBlockColumns | None) -> ObjectsBlockColumns | None:
    """``columns`` if their rtimes increase (else None: read block by block, sorted with a
    warning)."""
    if columns is None or (len(columns) > 1
                           and not (columns.rtime[1:] > columns.rtime[:-1]).all()):
        return None
    return columns


def _shape_columns(ctx: _Ctx, shape: _ColumnShape,
                   found: list[tuple[str, ...]]) -> ObjectsBlockColumns | None:
    """The blocks matched by ``shape`` (their groups ``found``) as columns, or None for a
    value that columns do not hold or that is wrong."""
    n = len(found)
    columns = list(zip(*found))
    try:
        ids = [text.strip().upper() for text in columns[shape.id]]
        if not all(ids):
            return None
        times = []
        digits = 0
        for group in (shape.rtime, shape.duration):
            hours, minutes, seconds = (
                np.fromiter(map(int, columns[group + k]), np.int64, n) for k in range(3))
            fraction = columns[group + 3]
            lengths = np.fromiter(map(len, fraction), np.int64, n)
            times.append(((hours * 60 + minutes) * 60 + seconds,
                          np.fromiter(map(int, fraction), np.int64, n), lengths))
            digits = max(digits, int(lengths.max()))
        values: dict[str, Any] = {}
        jump = np.zeros(n, bool)
        length_texts: Sequence[str] = ()  # the interpolationLengths given
        length_values: dict[str, Fraction] = {}
        cartesian_flags = None
        coords: dict[str, np.ndarray] = {}
        for local, coordinate, text_group, attr_groups in shape.children:
            texts = columns[text_group]
            if coordinate is not None:
                coords[coordinate] = _float_values(texts)
            elif local == "cartesian" or local == "screenRef" or local == "headLocked":
                flags = _column_values(texts, lambda t, name=local: ctx.bool(
                    None, "", name, t), bool)
                if local == "cartesian":
                    cartesian_flags = flags
                else:
                    values[local] = flags
            elif local == "jumpPosition":
                jump = _column_values(texts, lambda t: ctx.bool(None, "", "jumpPosition", t), bool)
                if "interpolationLength" in attr_groups:
                    length_texts = columns[attr_groups["interpolationLength"]]
                    length_values = {text: ctx.seconds(None, "", local, text)
                                     for text in set(length_texts)}
            elif local == "gain":
                units = (columns[attr_groups["gainUnit"]] if attr_groups
                         else itertools.repeat(None))
                pairs = list(zip(texts, units))
                values[local] = _column_values(
                    pairs, lambda pair: ctx.gain_in(None, "", pair[0], pair[1]), np.float64)
            elif local == "channelLock":
                values["channel_lock"] = _column_values(
                    texts, lambda t: ctx.bool(None, "", "channelLock", t), bool)
                values["max_distance"] = _optional_floats(
                    columns, attr_groups.get("maxDistance"), n)
            elif local == "objectDivergence":
                values["divergence"] = _float_values(texts)
                values["azimuth_range"] = _optional_floats(
                    columns, attr_groups.get("azimuthRange"), n)
                values["position_range"] = _optional_floats(
                    columns, attr_groups.get("positionRange"), n)
            elif local == "importance":
                values[local] = _column_values(texts, lambda t: ctx.int(None, "", "importance", t),
                                               np.int64)
            else:  # diffuse, width, height, depth
                values[local] = _float_values(texts)
    except (AdmError, ValueError, OverflowError):
        return None  # read block by block, which reports the problem exactly
    is_cartesian = "X" in coords
    if cartesian_flags is not None and not (cartesian_flags == is_cartesian).all():
        return None
    # every time on one tick: 10**digits seconds, and the interpolationLengths' denominators
    scale = math.lcm(10 ** digits, *{t.denominator for t in length_values.values()})
    longest = max(int(whole.max()) for whole, _, _ in times) + 1
    if scale > _COLUMN_SCALE_LIMIT or longest * scale >= 1 << 62 or any(
            t * scale >= 1 << 62 for t in length_values.values()):
        return None
    rtime, duration = (whole * scale + fraction * (scale // 10 ** lengths)
                       for whole, fraction, lengths in times)
    interpolation_length = (
        _column_values(length_texts, lambda text: int(length_values[text] * scale), np.int64)
        if length_texts else np.full(n, NO_LENGTH, np.int64))
    position = np.empty((n, 3))
    for k, (name, default) in enumerate(
            (("X", 0.0), ("Y", 0.0), ("Z", 0.0)) if is_cartesian
            else (("azimuth", 0.0), ("elevation", 0.0), ("distance", 1.0))):
        position[:, k] = coords.get(name, default)
    zeros = np.zeros(n)
    return ObjectsBlockColumns(
        ids=tuple(ids), position=position, cartesian=np.full(n, is_cartesian),
        time_scale=scale, rtime=rtime, duration=duration, jump=jump,
        interpolation_length=interpolation_length,
        gain=values.get("gain", np.ones(n)), diffuse=values.get("diffuse", zeros),
        width=values.get("width", zeros), height=values.get("height", zeros),
        depth=values.get("depth", zeros), screen_ref=values.get("screenRef", np.zeros(n, bool)),
        importance=values.get("importance", np.full(n, 10, np.int64)),
        head_locked=values.get("headLocked", np.zeros(n, bool)),
        channel_lock=values.get("channel_lock", np.zeros(n, bool)),
        max_distance=values.get("max_distance", np.full(n, np.nan)),
        divergence=values.get("divergence", zeros),
        azimuth_range=values.get("azimuth_range", np.full(n, np.nan)),
        position_range=values.get("position_range", np.full(n, np.nan)))


def _raw_objects_channel(ctx: _Ctx, attrs: dict[str, str], body: str) -> AudioChannelFormat:
    """An Objects audioChannelFormat from its start tag's attributes and its content's text
    (no references, comments, CDATA or processing instructions; line ends normalised), read
    as :func:`_channel` reads the lxml element. Raises :class:`_FastPathUnsupported` for what
    it does not read exactly so, and :class:`AdmError` (without line numbers) for bad values.
    """
    cid = attrs.get("audioChannelFormatID")
    if cid is None or not cid.strip():
        raise _FastPathUnsupported("no audioChannelFormatID")
    cid = _norm_id(cid)
    type_ = _type_definition(ctx, attrs, cid)  # type: ignore[arg-type]  # only .get is used
    if type_ is not TypeDefinition.Objects:
        raise _FastPathUnsupported("not an Objects channel")
    first = _CHANNEL_CHILD_RE.search(body)
    if first is not None and first.group(2) is not None:  # a block with content: columns?
        columns = _objects_columns(ctx, body, first)
        if columns is not None:
            return AudioChannelFormat(id=cid, name=attrs.get("audioChannelFormatName", ""),
                                      type=type_, blocks=columns, frequency=Frequency(),
                                      is_common_definition=False)
    blocks: list[BlockFormat] = []
    low_pass: float | None = None
    high_pass: float | None = None
    n_tags = 0  # the '<' of the elements read, to be sure that no element was skipped
    getters = _ATTR_GETTERS
    shapes: list[_BlockShape] = []  # the latest first
    n_shapes = 0
    pos = 0
    while True:
        for shape in shapes:
            shaped = shape.pattern.match(body, pos)
            if shaped is not None:
                values = shaped.groups()
                blocks.append(_objects_block_parts(
                    ctx, None, cid, values[shape.id], values[shape.rtime],
                    values[shape.duration],
                    zip(shape.names, _NONES, shape.getters, shape.texts(values))))
                n_tags += shape.n_tags
                pos = shaped.end()
                break
        else:
            match = _CHANNEL_CHILD_RE.search(body, pos)
            if match is None:
                break
            pos = match.end()
            block_attrs, content, name, other_attrs, text, end_tag = match.groups()
            if name is None:  # an audioBlockFormat
                children: list[_Child] = []
                if content is None:
                    n_tags += 1
                else:
                    found = _BLOCK_CHILD_RE.findall(content)
                    n_lt = content.count("<")
                    # every '<' of the content belongs to a child read (each has two, or one
                    # and a "/>"), so that none has sub-elements
                    if n_lt + content.count("/>") != 2 * len(found):
                        raise _FastPathUnsupported("sub-elements in an audioBlockFormat")
                    n_tags += n_lt + 2
                    children = [(local, None, getters.get(child_attrs)
                                 or _attr_getter(child_attrs), child_text or None)
                                for local, child_attrs, child_text in found]
                get = _raw_attrs(block_attrs).get
                blocks.append(_objects_block_parts(
                    ctx, None, cid, get("audioBlockFormatID"), get("rtime"), get("duration"),
                    children))
                if content is not None and n_shapes < 16:
                    shapes.insert(0, _block_shape(body, match))
                    del shapes[4:]
                    n_shapes += 1
            else:
                n_tags += 2 if end_tag else 1
                if name == "frequency":
                    low_pass, high_pass = _frequency(
                        ctx, None, cid, _raw_attrs(other_attrs).get("typeDefinition"),
                        text or None, low_pass, high_pass)
                elif name == "audioBlockFormat":
                    raise _FastPathUnsupported("unexpected audioBlockFormat")
                else:
                    ctx.unknown(None, name, cid)
    if n_tags != body.count("<"):
        raise _FastPathUnsupported("sub-elements in an audioChannelFormat")
    return AudioChannelFormat(
        id=cid,
        name=attrs.get("audioChannelFormatName", ""),
        type=type_,
        blocks=_tidy_blocks(ctx, cid, blocks),
        frequency=Frequency(low_pass, high_pass),
        is_common_definition=False,
    )


class _Chunks:
    """Bytes ``[start, stop)`` of a :class:`FileRegion`, read into ``buf`` piece by piece."""

    def __init__(self, region: FileRegion, start: int, stop: int) -> None:
        self._region, self._next, self._stop = region, start, stop
        self.buf = b""

    def more(self, keep: int) -> bool:
        """Drop ``buf[:keep]`` and append the next piece (at least as long as what is left);
        False (and ``buf`` unchanged) at the end."""
        if self._next >= self._stop:
            return False
        end = min(self._stop, self._next + max(_SCAN_STEP, len(self.buf) - keep))
        self.buf = self.buf[keep:] + self._region.read_at(self._next, end)
        self._next = end
        return True


def _close_tag(qname: bytes) -> re.Pattern[bytes]:
    pattern = _CLOSE_TAGS.get(qname)
    if pattern is None:
        pattern = re.compile(b"</" + re.escape(qname) + rb"\s*>")
        if len(_CLOSE_TAGS) < 64:
            _CLOSE_TAGS[qname] = pattern
    return pattern


def _text(raw: bytes) -> str:
    """UTF-8 document text with its line ends normalised (XML 1.0 2.11)."""
    text = raw.decode("utf-8")
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    return text


class _NoTarget:
    """An lxml parser target that builds nothing: the parse only checks well-formedness."""

    def close(self) -> None:
        return None


def _check_well_formed(region: FileRegion, start: int, stop: int, source: str) -> None:
    """Raise the :func:`_syntax_error` of bytes ``[start, stop)`` if they are not well-formed
    XML (libxml2, the options of every parse here, read in pieces, no tree built)."""
    parser = etree.XMLParser(target=_NoTarget(), **_PARSER_OPTIONS)
    try:
        for piece_start in range(start, stop, _SCAN_STEP):
            parser.feed(region.read_at(piece_start, min(stop, piece_start + _SCAN_STEP)))
        parser.close()
    except etree.XMLSyntaxError as exc:
        raise _syntax_error(source, region.read_at(start, stop), exc) from None


def _is_objects_channel(attrs: dict[str, str]) -> bool:
    """Whether a start tag's attributes make an Objects audioChannelFormat (read as
    :func:`_type_definition` reads them; anything it refuses is not)."""
    try:
        return _type_definition(_Ctx("", False), attrs, "") is TypeDefinition.Objects
    except AdmError:
        return False


def _declares_other_encoding(buf: bytes, at: int) -> bool:
    """Whether an XML declaration at ``buf[at]`` names an encoding other than UTF-8 (or
    ASCII, its subset)."""
    declaration = _XML_DECLARATION_RE.match(buf, at)
    return declaration is not None and declaration.group(1).decode(
        "ascii", "replace").strip().lower() not in _UTF8_ENCODINGS


def _has_markup(buf: bytes, start: int, stop: int) -> bool:
    """Whether ``buf[start:stop]`` has a comment, CDATA, DOCTYPE or processing instruction
    ("<!" or "<?"; the rare "!" and "?" are searched, not the frequent "<")."""
    for mark in (b"!", b"?"):
        at = buf.find(mark, start + 1, stop)
        while at >= 0:
            if buf[at - 1] == 0x3C:  # "<"
                return True
            at = buf.find(mark, at + 1, stop)
    return False


def _last_block_end(buf: bytes, start: int, stop: int) -> int | None:
    """The end of the last audioBlockFormat end tag (or empty-element tag) in
    ``buf[start:stop]`` of a text without comments or CDATA; None if the last mention of the
    name is not such a tag."""
    name = buf.rfind(b"audioBlockFormat", start, stop)
    lt = buf.rfind(b"<", start, name) if name >= 0 else -1
    tag = _TAG_RE.match(buf, lt) if lt >= 0 else None
    if tag is None or tag.end() <= name or tag.end() > stop \
            or tag.group(3) != b"audioBlockFormat" or not (tag.group(1) or tag.group(5)):
        return None
    return tag.end()


def _without_objects_blocks(region: FileRegion, start: int, stop: int) -> bytes | None:
    """The well-formed document ``[start, stop)`` with the audioBlockFormats of its Objects
    audioChannelFormats replaced by their line ends (line numbers stay as they were), for
    the first parse of a document whose Objects blocks are deferred: libxml2 then builds
    the few thousand structural elements, not the blocks' hundreds of thousands.

    In each Objects channel, everything from its first block's start tag to its last block's
    end tag goes, elements between blocks included (:func:`iter_channel_formats` reads the
    channel again, whole). None (nothing cut) for a text with comments, CDATA, processing
    instructions other than the XML declaration, a DOCTYPE, or an encoding other than
    UTF-8, and where more than ``_CUT_KEEP_LIMIT`` bytes would be kept (the whole text is
    then parsed as a stream). Memory: the largest channel and the text kept.
    """
    chunks = _Chunks(region, start, stop)
    chunks.more(0)
    buf = chunks.buf
    if buf.startswith(_WIDE_STARTS):
        return None
    first_tag = len(_UTF8_BOM) if buf.startswith(_UTF8_BOM) else 0  # a declaration's place
    pieces: list[bytes] = []
    i = emitted = 0  # scanned up to i; buf[:emitted] is in pieces

    def read_on(keep: int) -> bool:
        """Move on to the next piece of text, keeping buf[keep:]."""
        nonlocal buf, i, emitted, first_tag
        old, old_emitted = buf, emitted
        if not chunks.more(keep):
            return False
        pieces.append(old[old_emitted:keep])
        buf, i, emitted = chunks.buf, 0, 0
        first_tag = first_tag - keep if first_tag >= keep else -1
        return True

    def too_much() -> bool:
        return sum(len(p) for p in pieces) > _CUT_KEEP_LIMIT

    while True:
        found = _CUT_SCAN_RE.search(buf, i)
        if found is None or len(buf) - found.start() < 512:  # a tag may go on: read more
            if read_on(max(i, len(buf) - 512) if found is None else found.start()):
                if too_much():
                    return None
                continue
            if found is None:  # the end of the text
                pieces.append(buf[emitted:])
                return None if too_much() else b"".join(pieces)
        lt = found.start()
        if buf[lt + 1:lt + 2] == b"?":  # only the XML declaration, at the very start
            end = buf.find(b"?>", lt)
            if lt != first_tag or end < 0 or _declares_other_encoding(buf, lt):
                return None
            i = end + 2
            continue
        if buf[lt + 1:lt + 2] == b"!":
            return None  # a comment, CDATA or DOCTYPE: their text could look like tags
        tag = _TAG_RE.match(buf, lt)  # an audioChannelFormat start tag
        if tag is None:
            return None
        i = tag.end()
        if tag.group(5) or b"&" in tag.group(4):
            continue
        try:
            if not _is_objects_channel(_raw_attrs(_text(tag.group(4)))):
                continue
        except UnicodeDecodeError:
            return None
        close = _close_tag(tag.group(2)).search(buf, tag.end())
        if close is None:  # the channel goes on: read it whole, from its start tag
            if read_on(lt) and not too_much():
                continue
            return None
        body_start, body_end = tag.end(), close.start()
        i = close.end()
        if _has_markup(buf, body_start, body_end):
            return None
        if buf.find(_CHANNEL_B, body_start, body_end) >= 0:  # a channel inside? scan it
            i = body_start
            continue
        first = _BLOCK_START_RE.search(buf, body_start, body_end)
        last = _last_block_end(buf, body_start, body_end)
        if first is not None and last is not None and last > first.start():
            pieces.append(buf[emitted:first.start()])
            if buf.find(b"\r", first.start(), last) < 0:
                pieces.append(b"\n" * buf.count(b"\n", first.start(), last))
            else:  # the line ends as they are (a lone CR ends a line too)
                pieces.append(buf[first.start():last].translate(None, _NOT_LINE_ENDS))
            emitted = last


def _holds(buf: bytes, markup: bytes, start: int, stop: int) -> bool:
    """Whether ``buf[start:stop]`` holds ``markup`` ('<' and a rarer byte: looking for that
    byte first is much quicker where '<' abounds)."""
    return buf.find(markup[1:], start, stop) >= 0 and buf.find(markup, start, stop) >= 0


def _raw_channels(ctx: _Ctx, region: FileRegion,
                  channel_ids: set[str]) -> Iterator[AudioChannelFormat | None]:
    """The audioChannelFormats ``channel_ids`` (children of an audioFormatExtended) of the
    well-formed document in ``region``, in document order, read from its raw text; yields
    None (and stops) where the rest is to be read with lxml, from that channel on."""
    start, stop = region.unpadded_range()
    chunks = _Chunks(region, start, stop)
    chunks.more(0)
    buf = chunks.buf
    i = len(_UTF8_BOM) if buf.startswith(_UTF8_BOM) else 0
    if buf.startswith(_WIDE_STARTS) or _declares_other_encoding(buf, i):
        yield None  # UTF-16 or UTF-32, or another declared encoding
        return
    stack: list[bytes] = []  # local names of the open elements
    while True:
        lt = buf.find(b"<", i)
        if lt < 0 or len(buf) - lt < 16:
            if chunks.more(i if lt < 0 else lt):
                buf, i = chunks.buf, 0
                continue
            if lt < 0:
                return
        second = buf[lt + 1:lt + 2]
        if second == b"!" or second == b"?":
            if buf.startswith(b"<!--", lt):
                end, skip = buf.find(b"-->", lt + 4), 3
            elif buf.startswith(b"<![CDATA[", lt):
                end, skip = buf.find(b"]]>", lt + 9), 3
            elif second == b"?":
                end, skip = buf.find(b"?>", lt + 2), 2
            else:  # a DOCTYPE
                yield None
                return
            if end >= 0:
                i = end + skip
            elif chunks.more(lt):
                buf, i = chunks.buf, 0
            else:
                yield None
                return
            continue
        tag = _TAG_RE.match(buf, lt)
        close = None
        if tag is not None and tag.group(3) == _CHANNEL_B and not tag.group(1) \
                and not tag.group(5):  # an audioChannelFormat start tag: find its end tag
            close = _close_tag(tag.group(2)).search(buf, tag.end())
            if close is None:
                tag = None
        if tag is None:  # the tag (or the channel) goes on in the next piece
            if chunks.more(lt):
                buf, i = chunks.buf, 0
                continue
            yield None
            return
        is_end, _, local, attr_bytes, empty = tag.groups()
        if is_end:
            if stack:
                stack.pop()
            i = tag.end()
            continue
        if local != _CHANNEL_B:
            if not empty:
                stack.append(local)
            i = tag.end()
            continue
        # an audioChannelFormat: its content is buf[body_start:body_end]
        body_start = tag.end()
        body_end, after = (body_start, body_start) if close is None \
            else (close.start(), close.end())
        if buf.find(b"&", lt, body_start) >= 0:
            yield None  # a reference in its start tag (its ID?)
            return
        try:
            attrs = _raw_attrs(_text(attr_bytes))
        except UnicodeDecodeError:
            yield None
            return
        wanted = bool(stack) and stack[-1] == _FORMAT_EXTENDED_B \
            and (attrs.get("audioChannelFormatID") or "").strip().upper() in channel_ids
        plain = (buf.find(b"&", body_start, body_end) < 0
                 and not _holds(buf, b"<!", body_start, body_end)
                 and not _holds(buf, b"<?", body_start, body_end)
                 and (buf.find(_CHANNEL_B, body_start, body_end) < 0  # the quick answer
                      or _NESTED_CHANNEL_RE.search(buf, body_start, body_end) is None))
        if not wanted:
            if plain:
                i = after
            else:  # read its content tag by tag
                if close is not None:
                    stack.append(local)
                i = body_start
            continue
        channel: AudioChannelFormat | None = None
        if plain:
            with gc_paused():
                try:
                    channel = _raw_objects_channel(ctx, attrs,
                                                   _text(buf[body_start:body_end]))
                except (AdmError, _FastPathUnsupported, UnicodeDecodeError):
                    channel = None
        if channel is None:
            ctx.warnings.clear()
            yield None
            return
        i = after
        yield channel


def _lxml_channels(ctx: _Ctx, region: FileRegion, channel_ids: set[str],
                   skip: int) -> Iterator[AudioChannelFormat]:
    """As :func:`_raw_channels`, with lxml ``iterparse``, less the first ``skip`` channels
    (read already)."""
    start, stop = region.unpadded_range()
    events = etree.iterparse(region.reader(start, stop), events=("end",),
                             tag="{*}audioChannelFormat", **_PARSER_OPTIONS)
    for _, el in events:
        cid = (el.get("audioChannelFormatID") or "").strip().upper()
        if cid in channel_ids:
            parent = el.getparent()
            if parent is not None and _lname(parent.tag) == _FORMAT_EXTENDED:
                if skip:
                    skip -= 1
                else:
                    yield _channel(ctx, el, False)
        el.clear()
        parent = el.getparent()
        if parent is not None:
            parent.remove(el)


def iter_channel_formats(region: FileRegion, channel_ids: set[str], source: str = "<axml>",
                         strict: bool = False) -> Iterator[AudioChannelFormat]:
    """The audioChannelFormats ``channel_ids`` of a document already parsed once (with their
    blocks deferred: :func:`parse_adm_xml`'s ``defer``), read again from ``region`` one at a
    time, blocks included, in document order. Only one channel's blocks are held at a time.
    Raises :class:`AdmError` as the full parse would for a problem in those blocks.

    The document must be well-formed (as the first parse found it): Objects channels are read
    from its raw text (see :func:`_raw_channels`), the rest with lxml, with the same results.
    """
    ctx = _Ctx(source, strict)
    done = 0
    if not strict:
        raw = _raw_channels(ctx, region, channel_ids)
        for channel in raw:
            if channel is None:
                break
            for message in ctx.warnings:
                warnings.warn(message, stacklevel=2)
            ctx.warnings.clear()
            ctx.bound_memos()
            done += 1
            yield channel
        else:
            return
        raw.close()
    for channel in _lxml_channels(ctx, region, channel_ids, done):
        for message in ctx.warnings:
            warnings.warn(message, stacklevel=2)
        ctx.warnings.clear()
        ctx.bound_memos()
        yield channel


def parse_adm_xml(data: bytes | FileRegion, source: str = "<axml>", strict: bool = False,
                  defer: TypeDefinition | None = None) -> AdmDocument:
    """Parse ADM XML (an ``axml`` chunk or an ADM XML file's bytes) into an AdmDocument.

    The BS.2094 common definitions that the file does not define are merged in and all
    references are checked (:func:`check_references`). ``strict=True`` refuses attributes and
    elements that BS.2076-2 does not define; otherwise they are ignored. Raises
    :class:`AdmError` naming ``source``, the line and the element on any problem.

    ``data``: the bytes, or a :class:`FileRegion` of an open file (read in pieces).
    ``defer``: a type (Objects) whose channels are read without their blocks, to be read one
    channel at a time by :func:`iter_channel_formats`.
    """
    doc = merge_common_definitions(parse_adm_elements(data, source, strict, defer=defer))
    check_references(doc)
    return doc


# --------------------------------------------------------------------------------------------
# chna
# --------------------------------------------------------------------------------------------


_CHNA_CHANNEL_PAD = re.compile(r"(?<=^AC_[0-9A-F]{8})_00$")


def _channel_of_track_format(doc: AdmDocument, track_format_id: str) -> str | None:
    track = doc.get(track_format_id)
    if not isinstance(track, AudioTrackFormat) or track.stream_format_id is None:
        return None
    stream = doc.get(track.stream_format_id)
    return stream.channel_format_id if isinstance(stream, AudioStreamFormat) else None


def apply_chna(doc: AdmDocument, chna: Sequence[ChnaEntry], n_tracks: int,
               source: str) -> AdmDocument:
    """Merge a chna chunk's entries into ``doc`` (BS.2076-2 / BS.2088 ``chna``).

    Each entry gives its audioTrackUID a 1-based ``track_index``. A UID the XML lacks is
    created from the entry (its track reference is an audioTrackFormat ID ``AT_...`` or, as
    BS.2076-2 allows, an audioChannelFormat ID ``AC_...``; plus the pack). References the XML
    already gives must agree with the chna. UIDs not in the chna keep ``track_index=None``.
    Raises :class:`AdmError` naming ``source`` and the UID on any disagreement, and for a
    track index outside ``1..n_tracks``.
    """
    uids: dict[str, AudioTrackUID] = {uid.id: uid for uid in doc.track_uids}
    order: list[str] = [uid.id for uid in doc.track_uids]
    for entry in chna:
        uid_id = _norm_id(entry.track_uid)
        where = f"{source}: chna entry for {uid_id}"
        if uid_id == SILENT_TRACK_UID:
            raise AdmError(f"{where}: UID ATU_00000000 is reserved for silent tracks")
        if not 1 <= entry.track_index <= n_tracks:
            raise AdmError(f"{source}: chna entry for track {entry.track_index} but the file "
                           f"has {n_tracks} tracks ({uid_id})")
        track_ref = _norm_id(entry.track_format_id or "")
        pack_ref = _norm_id(entry.pack_format_id) if entry.pack_format_id else None
        if pack_ref == "AP_00000000":
            pack_ref = None  # an all-zero pack field means "no pack"
        if track_ref.startswith("AT_"):
            chna_track, chna_channel = track_ref, None
        elif track_ref.startswith("AC_"):
            # BS.2088: a channel format ID in the 14-character field is padded with "_00"
            chna_track, chna_channel = None, _CHNA_CHANNEL_PAD.sub("", track_ref)
        else:
            raise AdmError(f"{where}: track reference {entry.track_format_id!r} is neither an "
                           "audioTrackFormat (AT_...) nor an audioChannelFormat (AC_...) ID")
        uid = uids.get(uid_id)
        if uid is None:
            uids[uid_id] = AudioTrackUID(
                id=uid_id, track_index=entry.track_index, track_format_id=chna_track,
                channel_format_id=chna_channel, pack_format_id=pack_ref,
            )
            order.append(uid_id)
            continue
        if uid.track_index is not None and uid.track_index != entry.track_index:
            raise AdmError(f"{where}: UID listed for tracks {uid.track_index} and "
                           f"{entry.track_index}")
        changes: dict[str, object] = {"track_index": entry.track_index}
        if chna_track is not None:
            if uid.track_format_id is None:
                if uid.channel_format_id is not None:
                    channel = _channel_of_track_format(doc, chna_track)
                    if channel is not None and channel != uid.channel_format_id:
                        raise AdmError(f"{where}: chna track format {chna_track} (channel "
                                       f"{channel}) disagrees with the XML's "
                                       f"audioChannelFormatIDRef {uid.channel_format_id}")
                changes["track_format_id"] = chna_track
            elif uid.track_format_id != chna_track:
                raise AdmError(f"{where}: chna audioTrackFormatIDRef {chna_track} disagrees "
                               f"with the XML's {uid.track_format_id}")
        else:
            if uid.channel_format_id is None:
                if uid.track_format_id is not None:
                    channel = _channel_of_track_format(doc, uid.track_format_id)
                    if channel is not None and channel != chna_channel:
                        raise AdmError(f"{where}: chna audioChannelFormatIDRef {chna_channel} "
                                       f"disagrees with the XML's track format "
                                       f"{uid.track_format_id} (channel {channel})")
                changes["channel_format_id"] = chna_channel
            elif uid.channel_format_id != chna_channel:
                raise AdmError(f"{where}: chna audioChannelFormatIDRef {chna_channel} "
                               f"disagrees with the XML's {uid.channel_format_id}")
        if pack_ref is not None:
            if uid.pack_format_id is None:
                changes["pack_format_id"] = pack_ref
            elif uid.pack_format_id != pack_ref:
                raise AdmError(f"{where}: chna audioPackFormatIDRef {pack_ref} disagrees with "
                               f"the XML's {uid.pack_format_id}")
        uids[uid_id] = dataclasses.replace(uid, **changes)  # type: ignore[arg-type]
    result = dataclasses.replace(doc, track_uids=tuple(uids[i] for i in order))
    check_references(result)
    return result


def read_adm(reader: Bw64Reader, strict: bool = False,
             defer_objects: bool = False) -> AdmDocument:
    """The ADM of an open file: its axml parsed (read from the file in pieces) and merged with
    the chna chunk. ``defer_objects``: Objects channels are read without their blocks (see
    :func:`iter_channel_formats`)."""
    source = str(reader.path)
    if reader.chna is None:
        raise AdmError(f"{source}: no chna chunk: this is not an ADM BWF file")
    region = reader.axml_region()
    if region is None:
        doc = AdmDocument(source=source)
    else:
        doc = parse_adm_xml(region, source=source, strict=strict,
                            defer=TypeDefinition.Objects if defer_objects else None)
    return apply_chna(doc, reader.chna, reader.channels, source=source)
