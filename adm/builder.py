"""Programmatic ADM authoring: build an :class:`~adm.model.AdmDocument` plus its chna entries.

:class:`AdmBuilder` is mutable while a scene is put together and ends in immutable model
objects (:meth:`AdmBuilder.build`); :func:`write_adm_bwf` writes audio, ``chna`` and ``axml``
as a BW64 file. IDs are allocated the way the ITU/EBU production tools number them
(ITU-R BS.2076-2 clause 6): ``APR_1001``, ``ACO_1001``, ``AO_1001``; packs and channels
``AP_tttt1001``/``AC_tttt1001`` (``tttt`` = typeLabel, one running number per element kind
across types); blocks ``AB_tttt1001_00000001``; stream and track formats mirror their channel
(``AS_tttt1001``, ``AT_tttt1001_01``); track UIDs ``ATU_00000001``.

Example::

    b = AdmBuilder("Demo")
    ids = b.add_object("fly-by", [ObjectsBlockSpec((30.0, 0.0), rtime=0, duration=1),
                                  ObjectsBlockSpec((-30.0, 0.0), rtime=1, duration=1)],
                       track_index=3)
    b.add_direct_speakers("bed", pack_format_id="AP_00010002", track_indices=[1, 2])
    doc, chna = b.build()
    write_adm_bwf("scene.wav", audio, 48000, doc, chna)
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import NamedTuple

import numpy as np

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
    BoundedValue,
    CartesianPosition,
    ChnaEntry,
    DirectSpeakersBlock,
    DirectSpeakersCartesianPosition,
    DirectSpeakersPolarPosition,
    DirectSpeakersPosition,
    Frequency,
    HoaBlock,
    JumpPosition,
    LoudnessMetadata,
    ObjectPosition,
    ObjectsBlock,
    PolarPosition,
    Screen,
    TypeDefinition,
)

__all__ = [
    "AdmBuilder",
    "ObjectsBlockSpec",
    "ObjectIds",
    "ChannelsIds",
    "SpeakerSpec",
    "ATMOS_BED_7_1_2",
    "write_adm_bwf",
]

TimeLike = Fraction | int | float | str

# Dolby Atmos bed channels as Dolby's tools write them: room-centric labels with fixed
# cartesian positions (X right, Y front, Z up). A 7.1.2 bed; take a prefix for smaller beds.
ATMOS_BED_7_1_2: tuple[tuple[str, CartesianPosition], ...] = (
    ("RC_L", CartesianPosition(-1.0, 1.0, 0.0)),
    ("RC_R", CartesianPosition(1.0, 1.0, 0.0)),
    ("RC_C", CartesianPosition(0.0, 1.0, 0.0)),
    ("RC_LFE", CartesianPosition(-1.0, 1.0, -1.0)),
    ("RC_Lss", CartesianPosition(-1.0, 0.0, 0.0)),
    ("RC_Rss", CartesianPosition(1.0, 0.0, 0.0)),
    ("RC_Lrs", CartesianPosition(-1.0, -1.0, 0.0)),
    ("RC_Rrs", CartesianPosition(1.0, -1.0, 0.0)),
    ("RC_Lts", CartesianPosition(-1.0, 0.0, 1.0)),
    ("RC_Rts", CartesianPosition(1.0, 0.0, 1.0)),
)

# Labels of LFE channels (BS.2051 and Dolby's room-centric one) that get a low-pass element.
_LFE_LABELS = frozenset({"LFE", "LFE1", "LFE2", "LFEL", "LFER", "RC_LFE"})

# A custom DirectSpeakers channel: (label, azimuth, elevation[, distance]) in degrees, or
# (label, position) with a polar/cartesian object or DirectSpeakers position.
SpeakerSpec = (
    tuple[str, float, float]
    | tuple[str, float, float, float]
    | tuple[str, ObjectPosition | DirectSpeakersPosition]
)


def _time(value: TimeLike | None, what: str) -> Fraction | None:
    """Exact seconds from a Fraction/int/str, or a float via its shortest decimal repr."""
    if value is None:
        return None
    if isinstance(value, float):
        value = repr(value)
    try:
        t = Fraction(value)
    except (ValueError, ZeroDivisionError) as exc:
        raise AdmError(f"{what}: bad time {value!r}: {exc}") from None
    if t < 0:
        raise AdmError(f"{what}: negative time {t}")
    return t


@dataclass(frozen=True)
class ObjectsBlockSpec:
    """The commonly used parts of an Objects audioBlockFormat (BS.2076-2 clause 5.4.3.3).

    ``position``: :class:`PolarPosition`, :class:`CartesianPosition` (the block's cartesian
    flag follows from it) or a tuple ``(azimuth, elevation[, distance])`` in degrees.
    ``rtime``/``duration``: seconds relative to the object start (exact; floats are read via
    their decimal repr). ``jump``/``interpolation_length`` (seconds) give jumpPosition.
    Pass a full :class:`ObjectsBlock` to :meth:`AdmBuilder.add_object` for anything else.
    """

    position: ObjectPosition | tuple[float, ...]
    rtime: TimeLike | None = None
    duration: TimeLike | None = None
    width: float = 0.0
    height: float = 0.0
    depth: float = 0.0
    gain: float = 1.0
    diffuse: float = 0.0
    jump: bool = False
    interpolation_length: TimeLike | None = None
    importance: int = 10

    def to_block(self, where: str = "block") -> ObjectsBlock:
        """The equivalent :class:`ObjectsBlock` with ``id=""`` (the builder fills it in)."""
        pos = self.position
        if isinstance(pos, tuple):
            if not 2 <= len(pos) <= 3:
                raise AdmError(f"{where}: position tuple must be (azimuth, elevation[, distance])")
            pos = PolarPosition(*(float(v) for v in pos))
        jump = JumpPosition()
        if self.jump or self.interpolation_length is not None:
            jump = JumpPosition(self.jump, _time(self.interpolation_length, where))
        return ObjectsBlock(
            id="", position=pos, rtime=_time(self.rtime, where),
            duration=_time(self.duration, where), cartesian=isinstance(pos, CartesianPosition),
            width=self.width, height=self.height, depth=self.depth, gain=self.gain,
            diffuse=self.diffuse, jump_position=jump, importance=self.importance,
        )


class ObjectIds(NamedTuple):
    """IDs created by :meth:`AdmBuilder.add_object` (one Objects channel on one track)."""

    object_id: str
    pack_format_id: str
    channel_format_id: str
    track_uid_id: str
    stream_format_id: str
    track_format_id: str


class ChannelsIds(NamedTuple):
    """IDs created for a multichannel object (DirectSpeakers or HOA), in track order."""

    object_id: str
    pack_format_id: str
    channel_format_ids: tuple[str, ...]
    track_uid_ids: tuple[str, ...]


def _common_definitions() -> AdmDocument:
    from adm.common_definitions import common_definitions

    return common_definitions()


class AdmBuilder:
    """Mutable ADM scene under construction; :meth:`build` returns immutable model objects.

    By default an audioProgramme ``APR_1001`` named ``programme_name`` with one audioContent
    ``ACO_1001`` (named ``content_name``, default the programme name) is created; objects go
    into that content unless told otherwise. ``programme_name=None`` starts empty.
    ``common_definitions`` (an :class:`AdmDocument` of BS.2094 elements) defaults to
    :func:`adm.common_definitions.common_definitions`, loaded when first needed.
    """

    def __init__(
        self,
        programme_name: str | None = "Programme",
        content_name: str | None = None,
        *,
        common_definitions: AdmDocument | None = None,
    ) -> None:
        self._programmes: list[AudioProgramme] = []
        self._contents: list[AudioContent] = []
        self._objects: list[AudioObject] = []
        self._packs: list[AudioPackFormat] = []
        self._channels: list[AudioChannelFormat] = []
        self._streams: list[AudioStreamFormat] = []
        self._tracks: list[AudioTrackFormat] = []
        self._uids: list[AudioTrackUID] = []
        self._chna: list[ChnaEntry] = []
        self._common_used: dict[str, object] = {}  # referenced common elements, in use order
        self._common = common_definitions
        self._next_pack = 0x1001
        self._next_channel = 0x1001
        self._used_tracks: dict[int, str] = {}
        if programme_name is not None:
            programme = self.add_programme(programme_name)
            self.add_content(content_name if content_name is not None else programme_name,
                             programme=programme)

    # ---------------------------------------------------------------------------------------
    # programme / content
    # ---------------------------------------------------------------------------------------

    def add_programme(
        self,
        name: str,
        *,
        start: TimeLike | None = None,
        end: TimeLike | None = None,
        language: str | None = None,
        reference_screen: Screen | None = None,
        loudness: Sequence[LoudnessMetadata] = (),
    ) -> str:
        """Add an audioProgramme (no contents yet); returns its ID ``APR_xxxx``."""
        pid = f"APR_{0x1001 + len(self._programmes):04X}"
        self._programmes.append(AudioProgramme(
            id=pid, name=name, start=_time(start, pid), end=_time(end, pid), language=language,
            reference_screen=reference_screen, loudness=tuple(loudness),
        ))
        return pid

    def add_content(
        self,
        name: str,
        *,
        programme: str | Sequence[str] | None = None,
        dialogue: int | None = None,
        language: str | None = None,
        loudness: Sequence[LoudnessMetadata] = (),
    ) -> str:
        """Add an audioContent, referenced from ``programme`` (default: the first programme,
        if any; ``()`` for none); returns its ID ``ACO_xxxx``."""
        cid = f"ACO_{0x1001 + len(self._contents):04X}"
        if programme is None:
            programmes = [self._programmes[0].id] if self._programmes else []
        else:
            programmes = [programme] if isinstance(programme, str) else list(programme)
        indices = [self._index(self._programmes, pid, "audioProgramme") for pid in programmes]
        self._contents.append(AudioContent(
            id=cid, name=name, dialogue=dialogue, language=language, loudness=tuple(loudness),
        ))
        for i in indices:
            p = self._programmes[i]
            self._programmes[i] = dataclasses.replace(p, content_ids=p.content_ids + (cid,))
        return cid

    # ---------------------------------------------------------------------------------------
    # objects
    # ---------------------------------------------------------------------------------------

    def add_object(
        self,
        name: str,
        blocks: Sequence[ObjectsBlockSpec | ObjectsBlock],
        track_index: int,
        *,
        start: TimeLike | None = None,
        duration: TimeLike | None = None,
        gain: float = 1.0,
        mute: bool = False,
        content: str | Sequence[str] | None = None,
        parent: str | None = None,
        complementary: Sequence[str] = (),
        importance: int | None = None,
        interact: bool | None = None,
        disable_ducking: bool | None = None,
        dialogue: int | None = None,
    ) -> ObjectIds:
        """Add an Objects audioObject with one channel on file track ``track_index`` (1-based).

        Creates audioObject -> audioPackFormat -> audioChannelFormat (with the blocks) and the
        audioStreamFormat/audioTrackFormat pair, an audioTrackUID and its chna entry.
        Block IDs are always assigned here; each block's cartesian flag follows its position.
        Block timing: a single block with neither rtime nor duration stays untimed; otherwise
        a missing first rtime is 0, a missing rtime follows the previous block, a missing
        duration runs to the next block's rtime, and for the last block to the object's
        ``duration`` (an :class:`AdmError` if that is not given either).
        ``content``: audioContent ID(s) to list the object in; default the first content, or
        none if ``parent`` (an audioObject ID: nested object) is given.
        ``complementary``: IDs of existing objects complementary to this one.
        """
        self._check(name, [track_index], content, parent, complementary)
        start_t = _time(start, name)
        duration_t = _time(duration, name)
        if not blocks:
            raise AdmError(f"object {name!r}: no blocks given")
        converted = [
            b.to_block(f"object {name!r} block {i}") if isinstance(b, ObjectsBlockSpec) else b
            for i, b in enumerate(blocks)
        ]
        for i, b in enumerate(converted):
            if not isinstance(b, ObjectsBlock):
                raise AdmError(f"object {name!r} block {i}: expected ObjectsBlock(Spec), "
                               f"got {type(b).__name__}")
        timed = self._block_times(name, converted, duration_t)

        pack_id = self._alloc_pack(TypeDefinition.Objects)
        channel_id, stream_id, track_id = self._alloc_channel(TypeDefinition.Objects)
        suffix = channel_id[3:]
        final_blocks = tuple(
            dataclasses.replace(b, id=f"AB_{suffix}_{k:08X}",
                                cartesian=isinstance(b.position, CartesianPosition))
            for k, b in enumerate(timed, 1)
        )
        self._channels.append(AudioChannelFormat(
            id=channel_id, name=name, type=TypeDefinition.Objects, blocks=final_blocks))
        self._packs.append(AudioPackFormat(
            id=pack_id, name=name, type=TypeDefinition.Objects, channel_format_ids=(channel_id,)))
        self._add_stream_track(name, channel_id, stream_id, track_id)
        uid = self._add_track_uid(track_index, track_id, pack_id, name)
        oid = self._add_object_element(
            name, (pack_id,), (uid,), start_t, duration_t, gain, mute, content, parent,
            complementary, importance, interact, disable_ducking, dialogue,
        )
        return ObjectIds(oid, pack_id, channel_id, uid, stream_id, track_id)

    def add_object_group(
        self,
        name: str,
        *,
        start: TimeLike | None = None,
        duration: TimeLike | None = None,
        gain: float = 1.0,
        mute: bool = False,
        content: str | Sequence[str] | None = None,
        parent: str | None = None,
        complementary: Sequence[str] = (),
    ) -> str:
        """Add an audioObject with no audio of its own, to nest others in (``parent=``)."""
        self._check(name, [], content, parent, complementary)
        return self._add_object_element(
            name, (), (), _time(start, name), _time(duration, name), gain, mute, content,
            parent, complementary, None, None, None, None,
        )

    def set_complementary(self, object_id: str, complementary: Sequence[str]) -> None:
        """Make ``complementary`` (object IDs) the audioComplementaryObjectIDRefs of
        ``object_id`` (BS.2076-2 clause 5.5.3: alternatives of which one is rendered)."""
        i = self._index(self._objects, object_id, "audioObject")
        for cid in complementary:
            self._index(self._objects, cid, "audioObject")
        self._objects[i] = dataclasses.replace(
            self._objects[i], complementary_object_ids=tuple(complementary))

    # ---------------------------------------------------------------------------------------
    # DirectSpeakers / HOA
    # ---------------------------------------------------------------------------------------

    def add_direct_speakers(
        self,
        name: str,
        track_indices: Sequence[int],
        *,
        pack_format_id: str | None = None,
        channels: Sequence[SpeakerSpec] | None = None,
        start: TimeLike | None = None,
        duration: TimeLike | None = None,
        gain: float = 1.0,
        mute: bool = False,
        content: str | Sequence[str] | None = None,
        parent: str | None = None,
    ) -> ChannelsIds:
        """Add a DirectSpeakers audioObject (a bed) on ``track_indices`` (1-based, in order).

        Either ``pack_format_id``, a BS.2094 common-definition pack (e.g. ``AP_00010002``
        stereo, ``AP_00010017`` 7.1.4): its channels, in pack order, go to the tracks, and the
        track UIDs refer to the common audioTrackFormats (``AT_0001xxxx_01``); or ``channels``:
        custom speakers (see :data:`SpeakerSpec`, e.g. :data:`ATMOS_BED_7_1_2`), for which a
        pack and channel formats (one untimed block each, labelled) are created.
        """
        if (pack_format_id is None) == (channels is None):
            raise AdmError(f"bed {name!r}: give exactly one of pack_format_id and channels")
        tracks = list(track_indices)
        self._check(name, tracks, content, parent, ())
        if pack_format_id is not None:
            pack_id, channel_ids, track_refs, used = self._common_pack(pack_format_id, name)
            if len(tracks) != len(channel_ids):
                raise AdmError(f"bed {name!r}: {pack_format_id} has {len(channel_ids)} "
                               f"channels but {len(tracks)} track indices were given")
            for element in used:
                self._common_used.setdefault(element.id, element)  # type: ignore[attr-defined]
        else:
            assert channels is not None
            if len(tracks) != len(channels):
                raise AdmError(f"bed {name!r}: {len(channels)} channels but {len(tracks)} "
                               "track indices were given")
            speakers = [_speaker(spec, name) for spec in channels]
            pack_id = self._alloc_pack(TypeDefinition.DirectSpeakers)
            channel_ids, track_refs = [], []
            for label, position in speakers:
                cid, sid, tid = self._alloc_channel(TypeDefinition.DirectSpeakers)
                block = DirectSpeakersBlock(id=f"AB_{cid[3:]}_00000001", position=position,
                                            speaker_labels=(label,))
                # LFE channels carry a 120 Hz low-pass frequency element, as Dolby and the
                # BS.2094 common definitions write them (BS.2127 identifies LFE by it).
                frequency = Frequency(low_pass=120.0) if label in _LFE_LABELS else Frequency()
                self._channels.append(AudioChannelFormat(
                    id=cid, name=label, type=TypeDefinition.DirectSpeakers, blocks=(block,),
                    frequency=frequency))
                self._add_stream_track(label, cid, sid, tid)
                channel_ids.append(cid)
                track_refs.append(tid)
            self._packs.append(AudioPackFormat(
                id=pack_id, name=name, type=TypeDefinition.DirectSpeakers,
                channel_format_ids=tuple(channel_ids)))
        uids = tuple(self._add_track_uid(t, ref, pack_id, name)
                     for t, ref in zip(tracks, track_refs, strict=True))
        oid = self._add_object_element(
            name, (pack_id,), uids, _time(start, name), _time(duration, name), gain, mute,
            content, parent, (), None, None, None, None,
        )
        return ChannelsIds(oid, pack_id, tuple(channel_ids), uids)

    def add_hoa(
        self,
        name: str,
        order: int,
        track_indices: Sequence[int],
        *,
        normalization: str = "SN3D",
        nfc_ref_dist: float | None = None,
        screen_ref: bool | None = None,
        start: TimeLike | None = None,
        duration: TimeLike | None = None,
        gain: float = 1.0,
        mute: bool = False,
        content: str | Sequence[str] | None = None,
        parent: str | None = None,
    ) -> ChannelsIds:
        """Add an HOA audioObject of ``order`` (``(order+1)**2`` tracks, ACN order) with its
        own pack and channel formats (BS.2076-2 clause 5.4.3.4: order/degree/normalization
        per block)."""
        if order < 0:
            raise AdmError(f"HOA {name!r}: negative order {order}")
        tracks = list(track_indices)
        self._check(name, tracks, content, parent, ())
        if len(tracks) != (order + 1) ** 2:
            raise AdmError(f"HOA {name!r}: order {order} needs {(order + 1) ** 2} tracks, "
                           f"{len(tracks)} given")
        pack_id = self._alloc_pack(TypeDefinition.HOA)
        channel_ids, track_refs = [], []
        for n in range(order + 1):
            for m in range(-n, n + 1):
                cid, sid, tid = self._alloc_channel(TypeDefinition.HOA)
                cname = f"{name}_ACN{n * n + n + m}"
                block = HoaBlock(id=f"AB_{cid[3:]}_00000001", order=n, degree=m,
                                 normalization=normalization, nfc_ref_dist=nfc_ref_dist,
                                 screen_ref=screen_ref)
                self._channels.append(AudioChannelFormat(
                    id=cid, name=cname, type=TypeDefinition.HOA, blocks=(block,)))
                self._add_stream_track(cname, cid, sid, tid)
                channel_ids.append(cid)
                track_refs.append(tid)
        self._packs.append(AudioPackFormat(
            id=pack_id, name=name, type=TypeDefinition.HOA, channel_format_ids=tuple(channel_ids)))
        uids = tuple(self._add_track_uid(t, ref, pack_id, name)
                     for t, ref in zip(tracks, track_refs, strict=True))
        oid = self._add_object_element(
            name, (pack_id,), uids, _time(start, name), _time(duration, name), gain, mute,
            content, parent, (), None, None, None, None,
        )
        return ChannelsIds(oid, pack_id, tuple(channel_ids), uids)

    # ---------------------------------------------------------------------------------------
    # result
    # ---------------------------------------------------------------------------------------

    def build(
        self, sample_rate: int | None = None, bit_depth: int | None = None
    ) -> tuple[AdmDocument, tuple[ChnaEntry, ...]]:
        """The immutable document and the chna entries (sorted by track index).

        Common-definition elements the scene refers to are included (marked
        ``is_common_definition``) after the scene's own elements, so every reference
        resolves. ``sample_rate``/``bit_depth``, if given, are set on the track UIDs.
        """
        common = list(self._common_used.values())
        uids = self._uids
        if sample_rate is not None or bit_depth is not None:
            uids = [dataclasses.replace(u, sample_rate=sample_rate, bit_depth=bit_depth)
                    for u in uids]
        doc = AdmDocument(
            programmes=tuple(self._programmes),
            contents=tuple(self._contents),
            objects=tuple(self._objects),
            pack_formats=tuple(self._packs)
            + tuple(e for e in common if isinstance(e, AudioPackFormat)),
            channel_formats=tuple(self._channels)
            + tuple(e for e in common if isinstance(e, AudioChannelFormat)),
            stream_formats=tuple(self._streams)
            + tuple(e for e in common if isinstance(e, AudioStreamFormat)),
            track_formats=tuple(self._tracks)
            + tuple(e for e in common if isinstance(e, AudioTrackFormat)),
            track_uids=tuple(uids),
            source="<AdmBuilder>",
        )
        chna = tuple(sorted(self._chna, key=lambda e: (e.track_index, e.track_uid)))
        return doc, chna

    # ---------------------------------------------------------------------------------------
    # internals
    # ---------------------------------------------------------------------------------------

    @staticmethod
    def _index(elements: list, element_id: str, kind: str) -> int:
        for i, e in enumerate(elements):
            if e.id == element_id:
                return i
        raise AdmError(f"AdmBuilder: no {kind} {element_id!r}")

    def _check(self, name: str, tracks: Sequence[int], content, parent, complementary) -> None:
        """Validate an element's references and tracks before anything is changed."""
        seen: set[int] = set()
        for t in tracks:
            if isinstance(t, bool) or not isinstance(t, (int, np.integer)) or t < 1:
                raise AdmError(f"{name!r}: track index must be an integer >= 1, got {t!r}")
            if int(t) in self._used_tracks or int(t) in seen:
                by = self._used_tracks.get(int(t), name)
                raise AdmError(f"{name!r}: track {int(t)} is already used by {by}")
            seen.add(int(t))
        if parent is not None:
            self._index(self._objects, parent, "audioObject (parent)")
        for cid in complementary:
            self._index(self._objects, cid, "audioObject (complementary)")
        if content is None:
            if parent is None and not self._contents:
                raise AdmError(f"object {name!r}: no audioContent to put it in; add_content first")
        else:
            for cid in [content] if isinstance(content, str) else list(content):
                self._index(self._contents, cid, "audioContent")

    def _alloc_pack(self, type_: TypeDefinition) -> str:
        pid = f"AP_{type_.value}{self._next_pack:04X}"
        self._next_pack += 1
        return pid

    def _alloc_channel(self, type_: TypeDefinition) -> tuple[str, str, str]:
        suffix = f"{type_.value}{self._next_channel:04X}"
        self._next_channel += 1
        return f"AC_{suffix}", f"AS_{suffix}", f"AT_{suffix}_01"

    def _add_stream_track(self, name: str, channel_id: str, stream_id: str, track_id: str) -> None:
        self._streams.append(AudioStreamFormat(
            id=stream_id, name=f"PCM_{name}", format_label="0001", channel_format_id=channel_id,
            track_format_ids=(track_id,)))
        self._tracks.append(AudioTrackFormat(
            id=track_id, name=f"PCM_{name}", format_label="0001", stream_format_id=stream_id))

    def _add_track_uid(self, track_index: int, ref: str, pack_id: str, name: str) -> str:
        track_index = int(track_index)  # validated by _check
        uid = f"ATU_{len(self._uids) + 1:08X}"
        self._used_tracks[track_index] = uid
        is_channel = ref.startswith("AC_")
        self._uids.append(AudioTrackUID(
            id=uid, track_index=track_index,
            track_format_id=None if is_channel else ref,
            channel_format_id=ref if is_channel else None,
            pack_format_id=pack_id,
        ))
        self._chna.append(ChnaEntry(track_index, uid, ref, pack_id))
        return uid

    def _add_object_element(
        self, name, pack_ids, uids, start, duration, gain, mute, content, parent,
        complementary, importance, interact, disable_ducking, dialogue,
    ) -> str:
        oid = f"AO_{0x1001 + len(self._objects):04X}"
        self._objects.append(AudioObject(
            id=oid, name=name, start=start, duration=duration, pack_format_ids=tuple(pack_ids),
            complementary_object_ids=tuple(complementary), track_uid_ids=tuple(uids),
            gain=float(gain), mute=bool(mute), importance=importance, interact=interact,
            disable_ducking=disable_ducking, dialogue=dialogue,
        ))
        if parent is not None:
            i = self._index(self._objects, parent, "audioObject (parent)")
            p = self._objects[i]
            self._objects[i] = dataclasses.replace(p, object_ids=p.object_ids + (oid,))
        if content is None:
            if parent is not None:
                contents = []
            else:
                contents = [self._contents[0].id]
        else:
            contents = [content] if isinstance(content, str) else list(content)
        for cid in contents:
            i = self._index(self._contents, cid, "audioContent")
            c = self._contents[i]
            self._contents[i] = dataclasses.replace(c, object_ids=c.object_ids + (oid,))
        return oid

    @staticmethod
    def _block_times(
        name: str, blocks: list[ObjectsBlock], object_duration: Fraction | None
    ) -> list[ObjectsBlock]:
        if len(blocks) == 1 and blocks[0].rtime is None and blocks[0].duration is None:
            return blocks
        rtimes: list[Fraction] = []
        for i, b in enumerate(blocks):
            if b.rtime is not None:
                rtimes.append(b.rtime)
            elif i == 0:
                rtimes.append(Fraction(0))
            elif blocks[i - 1].duration is not None:
                rtimes.append(rtimes[-1] + blocks[i - 1].duration)
            else:
                raise AdmError(f"object {name!r} block {i - 1}: give its duration or the "
                               "next block's rtime")
        out: list[ObjectsBlock] = []
        for i, b in enumerate(blocks):
            duration = b.duration
            if duration is None:
                if i + 1 < len(blocks):
                    duration = rtimes[i + 1] - rtimes[i]
                elif object_duration is not None:
                    duration = object_duration - rtimes[i]
                else:
                    raise AdmError(f"object {name!r}: the last block needs a duration, or "
                                   "give the object a duration")
            if duration <= 0:
                raise AdmError(f"object {name!r} block {i}: duration {duration} is not positive")
            out.append(dataclasses.replace(b, rtime=rtimes[i], duration=duration))
        return out

    def _common_pack(
        self, pack_id: str, name: str
    ) -> tuple[str, list[str], list[str], list[object]]:
        """A common pack's channels (flattened, pack order), the track reference for each
        (its common audioTrackFormat, else the channel itself) and the common elements used."""
        if self._common is None:
            self._common = _common_definitions()
        common = self._common
        pack = common.get(pack_id)
        if not isinstance(pack, AudioPackFormat):
            raise AdmError(f"bed {name!r}: {pack_id} is not a common-definition audioPackFormat")
        if pack.type is not TypeDefinition.DirectSpeakers:
            raise AdmError(f"bed {name!r}: {pack_id} is {pack.type.name}, not DirectSpeakers")
        used: list[object] = []
        channel_ids: list[str] = []

        def walk(p: AudioPackFormat) -> None:
            used.append(p)
            channel_ids.extend(p.channel_format_ids)
            for sub in p.pack_format_ids:
                walk(common.lookup(sub, AudioPackFormat, p.id))  # type: ignore[arg-type]

        walk(pack)
        streams_by_channel = {s.channel_format_id: s for s in common.stream_formats
                              if s.channel_format_id is not None and s.track_format_ids}
        track_refs: list[str] = []
        for cid in channel_ids:
            used.append(common.lookup(cid, AudioChannelFormat, pack_id))
            stream = streams_by_channel.get(cid)
            if stream is None:  # BS.2076-2: a track UID may refer to the channel directly
                track_refs.append(cid)
                continue
            track = common.lookup(stream.track_format_ids[0], AudioTrackFormat, stream.id)
            used.extend((stream, track))
            track_refs.append(track.id)  # type: ignore[attr-defined]
        return pack.id, channel_ids, track_refs, used


def _speaker(spec: SpeakerSpec, bed: str) -> tuple[str, DirectSpeakersPosition]:
    """(label, DirectSpeakers position) from a :data:`SpeakerSpec`."""
    if not isinstance(spec, tuple) or not spec or not isinstance(spec[0], str):
        raise AdmError(f"bed {bed!r}: bad speaker spec {spec!r}")
    label = spec[0]
    if len(spec) == 2:
        pos = spec[1]
        if isinstance(pos, (DirectSpeakersPolarPosition, DirectSpeakersCartesianPosition)):
            return label, pos
        if isinstance(pos, PolarPosition):
            return label, DirectSpeakersPolarPosition(
                BoundedValue(pos.azimuth), BoundedValue(pos.elevation), BoundedValue(pos.distance))
        if isinstance(pos, CartesianPosition):
            return label, DirectSpeakersCartesianPosition(
                BoundedValue(pos.x), BoundedValue(pos.y), BoundedValue(pos.z))
    elif len(spec) in (3, 4) and all(isinstance(v, (int, float)) for v in spec[1:]):
        values = [float(v) for v in spec[1:]]  # type: ignore[arg-type]
        return label, DirectSpeakersPolarPosition(*(BoundedValue(v) for v in values))
    raise AdmError(f"bed {bed!r}: bad speaker spec {spec!r}")


def write_adm_bwf(
    path: str | os.PathLike[str],
    audio: np.ndarray,
    sample_rate: int,
    doc: AdmDocument,
    chna: Sequence[ChnaEntry],
    bit_depth: int = 24,
    sample_format: str = "int",
) -> None:
    """Write ``audio`` (float, shape ``(frames, tracks)``, full scale +-1) as a BW64 file with
    ``chna`` and the ``axml`` of ``doc`` (EBU Tech 3285 / ITU-R BS.2088).

    ``bit_depth``: 16/24/32 for ``sample_format="int"``, 32/64 for ``"float"``.
    """
    from adm.bw64 import Bw64Writer
    from adm.xml_write import adm_to_xml

    audio = np.asarray(audio)
    if audio.ndim == 1:
        audio = audio[:, None]
    if audio.ndim != 2:
        raise AdmError(f"{path}: audio must have shape (frames, tracks), got {audio.shape}")
    axml = adm_to_xml(doc)
    with Bw64Writer(path, sample_rate, audio.shape[1], bit_depth=bit_depth,
                    sample_format=sample_format, chna=tuple(chna), axml=axml) as writer:
        writer.write(audio)
