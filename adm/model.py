"""Frozen dataclasses for the ADM (ITU-R BS.2076-2) elements that rendering needs.

Parse at the edge: :mod:`adm.xml` turns XML into these objects, and nothing after it sees XML.
References between elements are kept as ID strings; :class:`AdmDocument` resolves them.

Units: times are exact :class:`fractions.Fraction` seconds; angles are degrees (azimuth
anticlockwise, 0 = front, +90 = left; elevation up); cartesian coordinates are X right,
Y front, Z up in the unit cube; gains are linear factors.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from functools import cached_property


class TypeDefinition(enum.Enum):
    """BS.2076 typeDefinition / typeLabel (clause 5.2)."""

    DirectSpeakers = "0001"
    Matrix = "0002"
    Objects = "0003"
    HOA = "0004"
    Binaural = "0005"

    @classmethod
    def from_label(cls, label: str) -> TypeDefinition:
        """Look up by typeLabel ("0003") or typeDefinition ("Objects")."""
        for member in cls:
            if label in (member.value, member.name):
                return member
        raise ValueError(f"unknown typeDefinition/typeLabel {label!r}")


# --------------------------------------------------------------------------------------------
# Positions
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PolarPosition:
    """Object position in polar form: degrees, distance 1 = on the loudspeakers."""

    azimuth: float
    elevation: float = 0.0
    distance: float = 1.0


@dataclass(frozen=True, slots=True)
class CartesianPosition:
    """Object position in cartesian form: X right, Y front, Z up, unit cube."""

    x: float
    y: float
    z: float = 0.0


ObjectPosition = PolarPosition | CartesianPosition


@dataclass(frozen=True)
class BoundedValue:
    """A DirectSpeakers coordinate with optional bound="min"/"max" values."""

    value: float
    min: float | None = None
    max: float | None = None


@dataclass(frozen=True)
class DirectSpeakersPolarPosition:
    """DirectSpeakers position in polar form (degrees), with optional bounds."""

    azimuth: BoundedValue
    elevation: BoundedValue = BoundedValue(0.0)
    distance: BoundedValue = BoundedValue(1.0)


@dataclass(frozen=True)
class DirectSpeakersCartesianPosition:
    """DirectSpeakers position in cartesian form, with optional bounds."""

    x: BoundedValue
    y: BoundedValue
    z: BoundedValue = BoundedValue(0.0)


DirectSpeakersPosition = DirectSpeakersPolarPosition | DirectSpeakersCartesianPosition


# --------------------------------------------------------------------------------------------
# audioBlockFormat sub-elements (Objects)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ScreenEdgeLock:
    """screenEdgeLock attributes of the position elements: "left"/"right", "top"/"bottom"."""

    horizontal: str | None = None
    vertical: str | None = None


@dataclass(frozen=True)
class JumpPosition:
    """jumpPosition flag and its interpolationLength (seconds, None if not given)."""

    flag: bool = False
    interpolation_length: Fraction | None = None


@dataclass(frozen=True)
class ChannelLock:
    """channelLock flag and maxDistance."""

    flag: bool = False
    max_distance: float | None = None


@dataclass(frozen=True)
class ObjectDivergence:
    """objectDivergence value (0..1) with azimuthRange (degrees) or positionRange (cartesian)."""

    value: float = 0.0
    azimuth_range: float | None = None
    position_range: float | None = None


@dataclass(frozen=True)
class PolarZone:
    """zoneExclusion zone in polar form (degrees)."""

    min_elevation: float
    max_elevation: float
    min_azimuth: float
    max_azimuth: float
    label: str | None = None


@dataclass(frozen=True)
class CartesianZone:
    """zoneExclusion zone in cartesian form."""

    min_x: float
    max_x: float
    min_y: float
    max_y: float
    min_z: float
    max_z: float
    label: str | None = None


Zone = PolarZone | CartesianZone


# --------------------------------------------------------------------------------------------
# audioBlockFormats
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ObjectsBlock:
    """audioBlockFormat of an Objects channel (BS.2076-2 clause 5.4.3.3).

    ``rtime``/``duration`` are seconds relative to the audioObject start, or both None.
    ``gain`` is linear. ``cartesian`` is the block's cartesian flag; ``position`` is then a
    :class:`CartesianPosition`, else a :class:`PolarPosition`. Slotted (as are the positions):
    a long master has hundreds of thousands of these.
    """

    id: str
    position: ObjectPosition
    rtime: Fraction | None = None
    duration: Fraction | None = None
    cartesian: bool = False
    width: float = 0.0
    height: float = 0.0
    depth: float = 0.0
    gain: float = 1.0
    diffuse: float = 0.0
    channel_lock: ChannelLock = ChannelLock()
    object_divergence: ObjectDivergence = ObjectDivergence()
    jump_position: JumpPosition = JumpPosition()
    screen_ref: bool = False
    screen_edge_lock: ScreenEdgeLock = ScreenEdgeLock()
    importance: int = 10
    zone_exclusion: tuple[Zone, ...] = ()
    head_locked: bool = False


@dataclass(frozen=True)
class DirectSpeakersBlock:
    """audioBlockFormat of a DirectSpeakers channel (clause 5.4.3.1)."""

    id: str
    position: DirectSpeakersPosition
    speaker_labels: tuple[str, ...] = ()
    rtime: Fraction | None = None
    duration: Fraction | None = None
    gain: float = 1.0
    importance: int = 10
    head_locked: bool = False
    screen_edge_lock: ScreenEdgeLock = ScreenEdgeLock()


@dataclass(frozen=True)
class HoaBlock:
    """audioBlockFormat of an HOA channel (clause 5.4.3.4). ``None`` = not given."""

    id: str
    order: int | None = None
    degree: int | None = None
    normalization: str | None = None
    nfc_ref_dist: float | None = None
    screen_ref: bool | None = None
    equation: str | None = None
    rtime: Fraction | None = None
    duration: Fraction | None = None
    gain: float = 1.0
    importance: int = 10
    head_locked: bool = False


@dataclass(frozen=True)
class MatrixCoefficient:
    """One coefficient of a Matrix block: input channel reference plus gain/phase/delay."""

    input_channel_format_id: str
    gain: float | None = None
    gain_var: str | None = None
    phase: float | None = None
    phase_var: str | None = None
    delay: float | None = None
    delay_var: str | None = None


@dataclass(frozen=True)
class MatrixBlock:
    """audioBlockFormat of a Matrix channel (clause 5.4.3.2)."""

    id: str
    coefficients: tuple[MatrixCoefficient, ...] = ()
    output_channel_format_id: str | None = None
    output_channel_id: str | None = None
    rtime: Fraction | None = None
    duration: Fraction | None = None
    gain: float = 1.0
    importance: int = 10


@dataclass(frozen=True)
class BinauralBlock:
    """audioBlockFormat of a Binaural channel."""

    id: str
    rtime: Fraction | None = None
    duration: Fraction | None = None
    gain: float = 1.0
    importance: int = 10


BlockFormat = ObjectsBlock | DirectSpeakersBlock | HoaBlock | MatrixBlock | BinauralBlock


# --------------------------------------------------------------------------------------------
# Main elements
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Frequency:
    """frequency element of an audioChannelFormat (Hz; None = not given)."""

    low_pass: float | None = None
    high_pass: float | None = None


@dataclass(frozen=True)
class AudioChannelFormat:
    """audioChannelFormat: one channel's type and its time-ordered blocks (a tuple, or for
    an Objects channel read for rendering, :class:`adm.columns.ObjectsBlockColumns`: the same
    sequence of blocks held as arrays)."""

    id: str
    name: str
    type: TypeDefinition
    blocks: Sequence[BlockFormat] = ()
    frequency: Frequency = Frequency()
    is_common_definition: bool = False


@dataclass(frozen=True)
class AudioPackFormat:
    """audioPackFormat: channels and nested packs; HOA and Matrix attributes when relevant."""

    id: str
    name: str
    type: TypeDefinition
    channel_format_ids: tuple[str, ...] = ()
    pack_format_ids: tuple[str, ...] = ()
    importance: int | None = None
    absolute_distance: float | None = None
    # HOA
    normalization: str | None = None
    nfc_ref_dist: float | None = None
    screen_ref: bool | None = None
    # Matrix
    encode_pack_format_ids: tuple[str, ...] = ()
    decode_pack_format_ids: tuple[str, ...] = ()
    input_pack_format_id: str | None = None
    output_pack_format_id: str | None = None
    is_common_definition: bool = False


@dataclass(frozen=True)
class AudioStreamFormat:
    """audioStreamFormat: links track formats to a channel format or a pack format."""

    id: str
    name: str
    format_label: str = "0001"
    channel_format_id: str | None = None
    pack_format_id: str | None = None
    track_format_ids: tuple[str, ...] = ()
    is_common_definition: bool = False


@dataclass(frozen=True)
class AudioTrackFormat:
    """audioTrackFormat: refers to its audioStreamFormat."""

    id: str
    name: str
    format_label: str = "0001"
    stream_format_id: str | None = None
    is_common_definition: bool = False


@dataclass(frozen=True)
class AudioTrackUID:
    """audioTrackUID: a track of the file. ``track_index`` is 1-based (chna), None if silent.

    A track UID refers either to an audioTrackFormat or (BS.2076-2) directly to an
    audioChannelFormat, plus the audioPackFormat it belongs to.
    """

    id: str
    track_index: int | None = None
    track_format_id: str | None = None
    channel_format_id: str | None = None
    pack_format_id: str | None = None
    sample_rate: int | None = None
    bit_depth: int | None = None


@dataclass(frozen=True)
class AudioObject:
    """audioObject. ``start``/``duration`` seconds (None = not given); ``gain`` linear.

    ``track_uid_ids`` may contain "ATU_00000000" for a silent track.
    """

    id: str
    name: str
    start: Fraction | None = None
    duration: Fraction | None = None
    pack_format_ids: tuple[str, ...] = ()
    object_ids: tuple[str, ...] = ()
    complementary_object_ids: tuple[str, ...] = ()
    track_uid_ids: tuple[str, ...] = ()
    gain: float = 1.0
    mute: bool = False
    importance: int | None = None
    interact: bool | None = None
    disable_ducking: bool | None = None
    dialogue: int | None = None


@dataclass(frozen=True)
class LoudnessMetadata:
    """loudnessMetadata of a programme or content (LUFS / LU / dBTP; None = not given)."""

    method: str | None = None
    integrated_loudness: float | None = None
    loudness_range: float | None = None
    max_true_peak: float | None = None
    max_momentary: float | None = None
    max_short_term: float | None = None
    dialogue_loudness: float | None = None


@dataclass(frozen=True)
class AudioContent:
    """audioContent: a set of audioObjects."""

    id: str
    name: str
    object_ids: tuple[str, ...] = ()
    dialogue: int | None = None
    language: str | None = None
    loudness: tuple[LoudnessMetadata, ...] = ()


@dataclass(frozen=True)
class PolarScreen:
    """referenceScreen in polar form: centre azimuth/elevation/distance (deg), width (deg)."""

    aspect_ratio: float
    centre_azimuth: float
    centre_elevation: float
    centre_distance: float
    width_azimuth: float


@dataclass(frozen=True)
class CartesianScreen:
    """referenceScreen in cartesian form: centre X/Y/Z and width X."""

    aspect_ratio: float
    centre_x: float
    centre_y: float
    centre_z: float
    width_x: float


Screen = PolarScreen | CartesianScreen

# BS.2076-2 default reference screen (polar, 1.78:1, 58 degrees wide, straight ahead).
DEFAULT_SCREEN = PolarScreen(
    aspect_ratio=1.78, centre_azimuth=0.0, centre_elevation=0.0, centre_distance=1.0,
    width_azimuth=58.0,
)


@dataclass(frozen=True)
class AudioProgramme:
    """audioProgramme: contents, time span (seconds) and optional referenceScreen."""

    id: str
    name: str
    content_ids: tuple[str, ...] = ()
    start: Fraction | None = None
    end: Fraction | None = None
    language: str | None = None
    reference_screen: Screen | None = None
    loudness: tuple[LoudnessMetadata, ...] = ()


@dataclass(frozen=True)
class ChnaEntry:
    """One chna chunk entry: 1-based track index, track UID, track/channel format ID, pack ID."""

    track_index: int
    track_uid: str
    track_format_id: str
    pack_format_id: str | None = None


@dataclass(frozen=True)
class AdmDocument:
    """All ADM elements of a file, with the BS.2094 common definitions it refers to merged in.

    Elements keep the order of the XML. :meth:`lookup` resolves an ID of any element kind.
    """

    programmes: tuple[AudioProgramme, ...] = ()
    contents: tuple[AudioContent, ...] = ()
    objects: tuple[AudioObject, ...] = ()
    pack_formats: tuple[AudioPackFormat, ...] = ()
    channel_formats: tuple[AudioChannelFormat, ...] = ()
    stream_formats: tuple[AudioStreamFormat, ...] = ()
    track_formats: tuple[AudioTrackFormat, ...] = ()
    track_uids: tuple[AudioTrackUID, ...] = ()
    source: str = field(default="<adm>", compare=False)

    @cached_property
    def _index(self) -> dict[str, object]:
        index: dict[str, object] = {}
        for group in (
            self.programmes, self.contents, self.objects, self.pack_formats,
            self.channel_formats, self.stream_formats, self.track_formats, self.track_uids,
        ):
            for element in group:
                index[element.id] = element
        return index

    def get(self, element_id: str) -> object | None:
        """The element with this ID, or None."""
        return self._index.get(element_id)

    def lookup(self, element_id: str, kind: type | None = None, referrer: str = "") -> object:
        """The element with this ID; :class:`AdmError` naming the referrer if it is missing
        or (with ``kind``) of another type."""
        element = self._index.get(element_id)
        where = f" (referenced from {referrer})" if referrer else ""
        if element is None:
            raise AdmError(f"{self.source}: ADM reference to missing element {element_id}{where}")
        if kind is not None and not isinstance(element, kind):
            raise AdmError(
                f"{self.source}: {element_id}{where} is a {type(element).__name__}, "
                f"expected {kind.__name__}"
            )
        return element


class AdmError(ValueError):
    """Invalid ADM content: the message names the file, the element and the problem."""
