"""Loudspeaker layout data model.

Angles in degrees (azimuth anticlockwise, 0 = front, +90 = left; elevation up); distance in
metres-equivalent units where 1 = the nominal listening radius.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np


class LayoutError(ValueError):
    """Unknown layout name or invalid layout/speakers file; the message says which."""


@dataclass(frozen=True)
class Speaker:
    """One loudspeaker (output channel) of a layout.

    ``name`` is the BS.2051 label (e.g. "M+030", "LFE1"). ``az_range``/``el_range`` are the
    BS.2051 permitted ranges (degrees, inclusive); equal to the nominal value where the
    standard gives none. ``nominal_azimuth``/``nominal_elevation`` are the BS.2051 nominal
    angles, which BS.2127 uses for some decisions even when the real position differs.
    """

    name: str
    azimuth: float
    elevation: float
    distance: float = 1.0
    is_lfe: bool = False
    nominal_azimuth: float | None = None
    nominal_elevation: float | None = None
    az_range: tuple[float, float] | None = None
    el_range: tuple[float, float] | None = None
    gain: float = 1.0
    screen_speaker: bool = False

    @property
    def nominal(self) -> tuple[float, float]:
        """(azimuth, elevation) nominal position in degrees."""
        az = self.azimuth if self.nominal_azimuth is None else self.nominal_azimuth
        el = self.elevation if self.nominal_elevation is None else self.nominal_elevation
        return az, el

    @property
    def unit_vector(self) -> np.ndarray:
        """(3,) cartesian unit vector of the real position: X right, Y front, Z up."""
        return polar_to_cartesian(self.azimuth, self.elevation, 1.0)


@dataclass(frozen=True)
class Layout:
    """A loudspeaker layout in output channel order.

    ``name`` is the BS.2051 name ("4+7+0") or the name of a non-BS.2051 layout ("9.1.6").
    ``allocentric_positions`` maps speaker name to its (X, Y, Z) allocentric position, for
    the cartesian (allocentric) panner; empty if the layout has none defined.
    """

    name: str
    speakers: tuple[Speaker, ...]
    allocentric_positions: tuple[tuple[str, tuple[float, float, float]], ...] = ()
    description: str = ""

    @property
    def channel_names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.speakers)

    @property
    def is_lfe(self) -> np.ndarray:
        """(n_channels,) bool."""
        return np.array([s.is_lfe for s in self.speakers], dtype=bool)

    @property
    def without_lfe(self) -> Layout:
        return replace(self, speakers=tuple(s for s in self.speakers if not s.is_lfe))

    @property
    def n_channels(self) -> int:
        return len(self.speakers)

    def index(self, name: str) -> int:
        """Output channel index of the speaker called ``name``."""
        for i, s in enumerate(self.speakers):
            if s.name == name:
                return i
        raise LayoutError(f"layout {self.name} has no speaker {name}")

    @property
    def positions(self) -> np.ndarray:
        """(n_channels, 3) cartesian unit vectors of the real positions (LFE included)."""
        return np.array([s.unit_vector for s in self.speakers]).reshape(-1, 3)


def polar_to_cartesian(azimuth, elevation, distance=1.0) -> np.ndarray:
    """X right, Y front, Z up from degrees (azimuth anticlockwise from front) and distance.

    Scalars give shape (3,); arrays broadcast together and give (..., 3).
    """
    az, el, dist = np.broadcast_arrays(np.radians(np.asarray(azimuth, dtype=float)),
                                       np.radians(np.asarray(elevation, dtype=float)),
                                       np.asarray(distance, dtype=float))
    return np.stack([-np.sin(az) * np.cos(el) * dist, np.cos(az) * np.cos(el) * dist,
                     np.sin(el) * dist], axis=-1)
