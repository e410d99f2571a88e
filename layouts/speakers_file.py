"""Real listening rooms: the speakers file of ``dubstage render -l speakers.yaml``.

The file format is the one the BS.2127 reference renderer (``ear-render -l``) reads. The YAML
top level is either a list of loudspeakers or a mapping with an optional ``speakers`` list
and an optional ``screen``::

    speakers:
      - {channel: 0, names: M+030, position: {az: 32.0, el: 2.0, r: 2.1}, gain_linear: 0.9}
      - {channel: 1, names: [M-030], position: {az: -29.0, el: 0.0, r: 2.0}}
      - {channel: 5, names: [U+180, UH+180]}
    screen:            # optional; ``screen: null`` = no screen; absent = the default screen
      type: polar      # or "cart" with centrePosition {X, Y, Z} and widthX
      aspectRatio: 1.78
      centrePosition: {az: 0.0, el: 0.0, r: 1.0}
      widthAzimuth: 58.0

Per loudspeaker: ``channel`` is the 0-based output channel; ``names`` the BS.2051 label(s) of
the layout channel(s) it plays; ``position`` (degrees, azimuth anticlockwise; ``r`` the
distance) its real position; ``gain_linear`` a linear gain for its feed.

:func:`apply_real_layout` maps a named layout onto the room (BS.2127 clause 6.1.3 / 11.1: the
renderer works with the real loudspeaker positions, the nominal ones keep deciding the layout's
structure): layout channels take the real positions of the loudspeakers that name them, and an
upmix matrix routes each rendered layout channel, with its gain, to its file channel.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from adm.model import DEFAULT_SCREEN, CartesianScreen, PolarScreen, Screen

from .model import Layout, LayoutError

__all__ = ["RealLayout", "RealSpeaker", "apply_real_layout", "load_speakers_file"]


@dataclass(frozen=True)
class RealSpeaker:
    """One loudspeaker of a room.

    ``channel``: 0-based output channel. ``names``: BS.2051 labels of the layout channels it
    reproduces. ``azimuth``/``elevation`` (degrees) and ``distance`` (file units, metres in
    practice): its real position, all None when the file gives none (the layout's nominal
    position is kept). ``gain``: linear gain applied to its feed.
    """

    channel: int
    names: tuple[str, ...]
    azimuth: float | None = None
    elevation: float | None = None
    distance: float | None = None
    gain: float = 1.0

    @property
    def has_position(self) -> bool:
        return self.azimuth is not None


@dataclass(frozen=True)
class RealLayout:
    """A listening room read from a speakers file.

    ``speakers``: the loudspeakers, or None when the file lists none (the layout is then used
    as it is, one output per layout channel). ``screen``: the reproduction screen (the BS.2076
    default screen when the file has no ``screen`` entry; None when it says ``screen: null``,
    which turns screen-related processing off). ``source``: the file, for messages.
    """

    speakers: tuple[RealSpeaker, ...] | None = None
    screen: Screen | None = DEFAULT_SCREEN
    source: str = ""


# --------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------


def _number(value: Any, what: str, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise LayoutError(f"{where}: {what} must be a number, got {value!r}")
    number = float(value)
    if not math.isfinite(number):
        raise LayoutError(f"{where}: {what} must be finite, got {value!r}")
    return number


def _mapping(value: Any, what: str, where: str) -> dict:
    if not isinstance(value, dict):
        raise LayoutError(f"{where}: {what} must be a mapping, got {value!r}")
    return value


def _keys(d: dict, required: set[str], optional: set[str], what: str, where: str) -> None:
    missing = sorted(required - set(d))
    if missing:
        raise LayoutError(f"{where}: {what} has no {', '.join(missing)}")
    unknown = sorted(str(k) for k in set(d) - required - optional)
    if unknown:
        raise LayoutError(f"{where}: {what} has unknown key(s) {', '.join(unknown)}")


def _polar(value: Any, what: str, where: str) -> tuple[float, float, float]:
    """(azimuth, elevation, distance) from ``{az, el, r}``; ``r`` defaults to 1."""
    d = _mapping(value, what, where)
    _keys(d, {"az", "el"}, {"r"}, what, where)
    az = _number(d["az"], f"{what} az", where)
    el = _number(d["el"], f"{what} el", where)
    r = _number(d.get("r", 1.0), f"{what} r", where)
    if not -180.0 <= az <= 180.0:
        raise LayoutError(f"{where}: {what} az {az:g} is outside -180..180 degrees")
    if not -90.0 <= el <= 90.0:
        raise LayoutError(f"{where}: {what} el {el:g} is outside -90..90 degrees")
    if r < 0.0:
        raise LayoutError(f"{where}: {what} r {r:g} is negative")
    return az, el, r


def _speaker(entry: Any, where: str) -> RealSpeaker:
    d = _mapping(entry, "a loudspeaker entry", where)
    _keys(d, {"channel", "names"}, {"position", "gain_linear"}, "the loudspeaker", where)
    channel = d["channel"]
    if isinstance(channel, bool) or not isinstance(channel, int) or channel < 0:
        raise LayoutError(f"{where}: channel must be a 0-based channel number, got {channel!r}")
    names = d["names"]
    names = [names] if isinstance(names, str) else names
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise LayoutError(f"{where}: names must be a BS.2051 label or a list of them, "
                          f"got {d['names']!r}")
    az = el = r = None
    if d.get("position") is not None:
        az, el, r = _polar(d["position"], "position", where)
    gain = _number(d.get("gain_linear", 1.0), "gain_linear", where)
    return RealSpeaker(channel=channel, names=tuple(names), azimuth=az, elevation=el,
                       distance=r, gain=gain)


def _screen(value: Any, where: str) -> Screen | None:
    if value is None:
        return None
    d = _mapping(value, "screen", where)
    kind = d.get("type")
    if kind == "polar":
        _keys(d, {"type", "aspectRatio", "centrePosition", "widthAzimuth"}, set(), "screen", where)
        az, el, r = _polar(d["centrePosition"], "screen centrePosition", where)
        return PolarScreen(
            aspect_ratio=_number(d["aspectRatio"], "screen aspectRatio", where),
            centre_azimuth=az, centre_elevation=el, centre_distance=r,
            width_azimuth=_number(d["widthAzimuth"], "screen widthAzimuth", where),
        )
    if kind == "cart":
        _keys(d, {"type", "aspectRatio", "centrePosition", "widthX"}, set(), "screen", where)
        centre = _mapping(d["centrePosition"], "screen centrePosition", where)
        _keys(centre, {"X", "Y", "Z"}, set(), "screen centrePosition", where)
        return CartesianScreen(
            aspect_ratio=_number(d["aspectRatio"], "screen aspectRatio", where),
            centre_x=_number(centre["X"], "screen centrePosition X", where),
            centre_y=_number(centre["Y"], "screen centrePosition Y", where),
            centre_z=_number(centre["Z"], "screen centrePosition Z", where),
            width_x=_number(d["widthX"], "screen widthX", where),
        )
    raise LayoutError(f"{where}: screen type must be 'polar' or 'cart', got {kind!r}")


def parse_speakers(data: Any, source: str = "<speakers>") -> RealLayout:
    """A :class:`RealLayout` from already-parsed YAML data (a list or a mapping)."""
    if isinstance(data, list):
        data = {"speakers": data}
    if not isinstance(data, dict):
        raise LayoutError(f"{source}: expected a list of loudspeakers or a mapping with "
                          f"'speakers' and/or 'screen', got {type(data).__name__}")
    _keys(data, set(), {"speakers", "screen"}, "the file", source)
    speakers = None
    if "speakers" in data:
        entries = data["speakers"]
        if not isinstance(entries, list) or not entries:
            raise LayoutError(f"{source}: 'speakers' must be a non-empty list of loudspeakers")
        speakers = tuple(_speaker(e, f"{source}, speaker {i + 1}") for i, e in enumerate(entries))
        first: dict[int, int] = {}
        for i, s in enumerate(speakers):
            if s.channel in first:
                raise LayoutError(f"{source}, speaker {i + 1}: channel {s.channel} is already "
                                  f"used by speaker {first[s.channel] + 1}")
            first[s.channel] = i
    screen = _screen(data["screen"], f"{source}, screen") if "screen" in data else DEFAULT_SCREEN
    return RealLayout(speakers=speakers, screen=screen, source=source)


def load_speakers_file(path: str | os.PathLike) -> RealLayout:
    """Read a speakers file (format: see the module docstring).

    Raises :class:`LayoutError` naming the file, the loudspeaker entry (1-based) and the
    problem, for an unreadable file, bad YAML, a missing or unknown key, a value of the wrong
    type or out of range, or two loudspeakers on the same output channel.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise LayoutError(f"{path}: cannot read speakers file: {e}") from e
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        detail = " ".join(str(e).split())
        raise LayoutError(f"{path}: not valid YAML: {detail}") from e
    return parse_speakers(data, str(path))


# --------------------------------------------------------------------------------------------
# Mapping a layout onto a room
# --------------------------------------------------------------------------------------------


def _inside_azimuth_range(azimuth: float, lo: float, hi: float) -> bool:
    """Is ``azimuth`` in the range from ``lo`` anticlockwise to ``hi`` (degrees)? A range of
    360 degrees or more contains every angle; ``lo == hi`` is a single angle."""
    while hi - 360.0 > lo:
        hi -= 360.0
    while hi < lo:
        hi += 360.0
    while azimuth - 360.0 >= lo:
        azimuth -= 360.0
    while azimuth < lo:
        azimuth += 360.0
    return azimuth <= hi


def position_warnings(layout: Layout) -> list[str]:
    """One message per loudspeaker position outside its BS.2051 permitted range."""
    out = []
    for s in layout.speakers:
        if s.az_range is not None and not _inside_azimuth_range(s.azimuth, *s.az_range):
            out.append(f"{s.name}: azimuth {s.azimuth:g} is outside the BS.2051 range "
                       f"{s.az_range[0]:g}..{s.az_range[1]:g}")
        if s.el_range is not None and not s.el_range[0] <= s.elevation <= s.el_range[1]:
            out.append(f"{s.name}: elevation {s.elevation:g} is outside the BS.2051 range "
                       f"{s.el_range[0]:g}..{s.el_range[1]:g}")
    return out


def upmix_warnings(layout: Layout, upmix: np.ndarray) -> list[str]:
    """Routing problems of an upmix matrix (n_out, n_layout): a layout channel going to no
    output or to several, an output fed by several layout channels."""
    out = []
    for name, column in zip(layout.channel_names, upmix.T, strict=True):
        used = np.flatnonzero(column)
        if len(used) == 0:
            out.append(f"layout channel {name} is not sent to any output channel (silent)")
        elif len(used) > 1:
            out.append(f"layout channel {name} is sent to several output channels: "
                       f"{', '.join(str(i) for i in used)}")
    for channel, row in enumerate(upmix):
        used = np.flatnonzero(row)
        if len(used) > 1:
            names = ", ".join(layout.channel_names[i] for i in used)
            out.append(f"output channel {channel} is fed by several layout channels: {names}")
    return out


def apply_real_layout(
    layout: Layout, real: RealLayout
) -> tuple[Layout, np.ndarray, list[str]]:
    """Map ``layout`` (a named layout) onto the room ``real``.

    Each layout channel is played by the first loudspeaker whose ``names`` contain its
    BS.2051 label: it takes that loudspeaker's real azimuth, elevation and distance (the
    ``nominal_*`` fields and permitted ranges are kept), and the upmix matrix routes it to the
    loudspeaker's output channel with its gain. Layout channels no loudspeaker names stay at
    their nominal positions and are not output. Loudspeakers naming no layout channel give
    silent outputs.

    Returns ``(layout, upmix, warnings)``: the layout with real positions (same channels and
    order, so rendering is unchanged), the upmix matrix of shape (n_out, n_layout) with
    n_out = 1 + the highest ``channel`` of the file (the identity when the file lists no
    loudspeakers) such that ``file_output = layout_output @ upmix.T``, and messages for
    positions outside their BS.2051 ranges and for routing problems (as the reference
    renderer prints them; rendering goes ahead).
    """
    where = f"{real.source}: " if real.source else ""
    if real.speakers is None:
        return layout, np.eye(layout.n_channels), []
    n_out = max(s.channel for s in real.speakers) + 1
    upmix = np.zeros((n_out, layout.n_channels))
    speakers = []
    notes: list[str] = []
    for i, channel in enumerate(layout.speakers):
        matches = [s for s in real.speakers if channel.name in s.names]
        if matches:
            match = matches[0]
            if len(matches) > 1:
                others = ", ".join(str(s.channel) for s in matches[1:])
                notes.append(f"{where}{channel.name} is named by more than one loudspeaker; "
                             f"using channel {match.channel}, not {others}")
            upmix[match.channel, i] = match.gain
            if match.has_position:
                channel = replace(
                    channel,
                    azimuth=match.azimuth, elevation=match.elevation, distance=match.distance,
                    nominal_azimuth=channel.nominal[0], nominal_elevation=channel.nominal[1],
                )
        speakers.append(channel)
    known = set(layout.channel_names)
    for s in real.speakers:
        unknown = [n for n in s.names if n not in known]
        if len(unknown) == len(s.names):
            notes.append(f"{where}channel {s.channel} ({', '.join(s.names)}): no such "
                         f"loudspeaker in layout {layout.name}; it stays silent")
    new_layout = replace(layout, speakers=tuple(speakers))
    notes += [f"{where}{m}" for m in position_warnings(new_layout)]
    notes += [f"{where}{m}" for m in upmix_warnings(new_layout, upmix)]
    return new_layout, upmix, notes
