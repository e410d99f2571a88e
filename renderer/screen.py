"""Screen-related position modifiers for Objects (ITU-R BS.2127 clauses 7.3.3 and 7.3.4).

- :func:`screen_edges`: the left/right azimuths and bottom/top elevations of a screen
  description (BS.2076 referenceScreen form, or the reproduction screen of a layout).
- :func:`screen_scale` (screenRef, BS.2127 7.3.3): azimuth and elevation are remapped
  piecewise-linearly so that the reference screen's edges land on the reproduction screen's
  edges (azimuth between the edges and +/-180 degrees, elevation between the edges and +/-90
  degrees); the distance is kept.
- :func:`screen_edge_lock` (screenEdgeLock, BS.2127 7.3.4): the azimuth and/or elevation is
  replaced by that of the named reproduction screen edge.

Cartesian blocks are converted to polar and back with the BS.2127 clause 10 point conversion
(:func:`point_cart_to_polar`, :func:`point_polar_to_cart`), and the resulting azimuth is
compensated for layouts with U+045 loudspeakers so that allocentric panning keeps the source
vertically above its screen position (:func:`compensate_position`).

Everything is vectorised over a batch of B blocks (numpy, float64). Positions are (B, 3)
cartesian vectors: X right, Y front, Z up.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from adm.model import CartesianScreen, PolarScreen, Screen
from layouts.model import Layout, polar_to_cartesian

__all__ = [
    "ScreenEdges",
    "compensate_position",
    "point_cart_to_polar",
    "point_polar_to_cart",
    "screen_edge_lock",
    "screen_edges",
    "screen_scale",
]


# --------------------------------------------------------------------------------------------
# Angles
# --------------------------------------------------------------------------------------------


def _azimuth(v: np.ndarray) -> np.ndarray:
    """(...,) azimuth in degrees (anticlockwise from front) of (..., 3) vectors."""
    v = np.asarray(v, dtype=float)
    return -np.degrees(np.arctan2(v[..., 0], v[..., 1]))


def _elevation(v: np.ndarray) -> np.ndarray:
    """(...,) elevation in degrees of (..., 3) vectors."""
    v = np.asarray(v, dtype=float)
    return np.degrees(np.arctan2(v[..., 2], np.hypot(v[..., 0], v[..., 1])))


def _wrap_from(x: np.ndarray, start: np.ndarray | float) -> np.ndarray:
    """The angle ``x`` (degrees) shifted by whole turns into [start, start + 360)."""
    out = start + np.mod(np.asarray(x, dtype=float) - start, 360.0)
    return np.where(out >= start + 360.0, out - 360.0, out)


def _in_angle_range(x: np.ndarray, start: float, end: float) -> np.ndarray:
    """(...,) bool: ``x`` lies in the range going anticlockwise from ``start`` to ``end``."""
    while end - 360.0 > start:
        end -= 360.0
    while end < start:
        end += 360.0
    return _wrap_from(x, start) <= end


# --------------------------------------------------------------------------------------------
# Screen edges
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ScreenEdges:
    """Azimuths (degrees) of the left/right edges and elevations (degrees) of the bottom/top
    edges of a screen, as seen from the listening position."""

    left_azimuth: float
    right_azimuth: float
    bottom_elevation: float
    top_elevation: float


def screen_edges(screen: Screen) -> ScreenEdges:
    """Edge angles of a referenceScreen-style screen description (BS.2127 7.3.3: a flat
    rectangle of the given width and aspect ratio, centred on the given position and facing
    the listener).

    Raises ValueError if the screen reaches behind the listener or past the poles."""
    if isinstance(screen, PolarScreen):
        centre = polar_to_cartesian(
            screen.centre_azimuth, screen.centre_elevation, screen.centre_distance
        )
        half_width = screen.centre_distance * np.tan(np.radians(screen.width_azimuth / 2.0))
        right_axis = polar_to_cartesian(screen.centre_azimuth - 90.0, 0.0)
        up_axis = polar_to_cartesian(screen.centre_azimuth, screen.centre_elevation + 90.0)
        x_vec = right_axis * half_width
        z_vec = up_axis * (half_width / screen.aspect_ratio)
    elif isinstance(screen, CartesianScreen):
        centre = np.array([screen.centre_x, screen.centre_y, screen.centre_z], dtype=float)
        half_width = screen.width_x / 2.0
        x_vec = np.array([half_width, 0.0, 0.0])
        z_vec = np.array([0.0, 0.0, half_width / screen.aspect_ratio])
    else:
        raise TypeError(f"unexpected screen {screen!r}")
    edges = ScreenEdges(
        left_azimuth=float(_azimuth(centre - x_vec)),
        right_azimuth=float(_azimuth(centre + x_vec)),
        bottom_elevation=float(_elevation(centre - z_vec)),
        top_elevation=float(_elevation(centre + z_vec)),
    )
    if edges.right_azimuth > edges.left_azimuth:
        raise ValueError(f"invalid screen {screen!r}: it extends behind the listener")
    if float(_azimuth(centre - z_vec) - _azimuth(centre + z_vec)) > 1e-3:
        raise ValueError(f"invalid screen {screen!r}: it extends past the top or bottom")
    return edges


# --------------------------------------------------------------------------------------------
# BS.2127 clause 10 point conversion (polar <-> cartesian), vectorised
# --------------------------------------------------------------------------------------------

# Sector boundaries of the conversion: polar azimuth and the matching cartesian corner or
# front-centre point; sector k runs from boundary k+1 (its right) anticlockwise to boundary k
# (its left).
_SECTOR_AZ = np.array([0.0, -30.0, -110.0, 110.0, 30.0])
_SECTOR_POS = np.array(
    [[0.0, 1.0], [1.0, 1.0], [1.0, -1.0], [-1.0, -1.0], [-1.0, 1.0]]
)
_SECTOR_CART_AZ = _azimuth(np.c_[_SECTOR_POS, np.zeros(5)])
_EL_TOP = 30.0  # polar elevation of the top corner ...
_EL_TOP_TILDE = 45.0  # ... and its angle in the cube
# inverse of the [[left], [right]] XY matrix of each sector
_SECTOR_INV = np.array(
    [np.linalg.inv(np.array([_SECTOR_POS[k], _SECTOR_POS[(k + 1) % 5]])) for k in range(5)]
)


def _sector(az: np.ndarray, boundaries: np.ndarray) -> np.ndarray:
    """(...,) int: the first sector k whose range [boundary k+1, boundary k] holds ``az``."""
    out = np.full(np.shape(az), -1, dtype=int)
    for k in range(len(boundaries)):
        inside = _in_angle_range(az, boundaries[(k + 1) % 5], boundaries[k])
        out = np.where((out < 0) & inside, k, out)
    return out


def _az_to_linear(left_az: np.ndarray, right_az: np.ndarray, az: np.ndarray) -> np.ndarray:
    mid = (left_az + right_az) / 2.0
    half = right_az - mid
    g_r = 0.5 + 0.5 * np.tan(np.radians(az - mid)) / np.tan(np.radians(half))
    return np.arctan2(g_r, 1.0 - g_r) * (2.0 / np.pi)


def _linear_to_az(left_az: np.ndarray, right_az: np.ndarray, t: np.ndarray) -> np.ndarray:
    mid = (left_az + right_az) / 2.0
    half = right_az - mid
    g_l, g_r = np.cos(t * (np.pi / 2)), np.sin(t * (np.pi / 2))
    g_r = g_r / (g_l + g_r)
    return mid + np.degrees(np.arctan(2.0 * (g_r - 0.5) * np.tan(np.radians(half))))


def point_polar_to_cart(az: np.ndarray, el: np.ndarray, dist: np.ndarray) -> np.ndarray:
    """(..., 3) cartesian (allocentric cube) position of polar positions (degrees, distance),
    by the BS.2127 clause 10 point conversion."""
    az, el, dist = np.broadcast_arrays(
        np.asarray(az, dtype=float), np.asarray(el, dtype=float), np.asarray(dist, dtype=float)
    )
    abs_el = np.abs(el)
    top = abs_el > _EL_TOP
    el_tilde_top = _EL_TOP_TILDE + (90.0 - _EL_TOP_TILDE) * (abs_el - _EL_TOP) / (90.0 - _EL_TOP)
    z = np.where(top, dist * np.sign(el), np.tan(np.radians(_EL_TOP_TILDE * el / _EL_TOP)) * dist)
    r_xy = np.where(top, dist * np.tan(np.radians(90.0 - el_tilde_top)), dist)

    k = _sector(az, _SECTOR_AZ)
    kr = (k + 1) % 5
    left_az, right_az = _SECTOR_AZ[k], _SECTOR_AZ[kr]
    p = _az_to_linear(_wrap_from(left_az, right_az), right_az, _wrap_from(az, right_az))
    left_pos, right_pos = _SECTOR_POS[k], _SECTOR_POS[kr]
    xy = r_xy[..., None] * (left_pos + (right_pos - left_pos) * p[..., None])
    return np.concatenate([xy, z[..., None]], axis=-1)


def point_cart_to_polar(positions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Azimuth, elevation (degrees) and distance, each (...,), of (..., 3) cartesian
    (allocentric cube) positions, by the BS.2127 clause 10 point conversion (inverse of
    :func:`point_polar_to_cart`). A position on the Z axis has azimuth 0."""
    positions = np.asarray(positions, dtype=float)
    x, y, z = positions[..., 0], positions[..., 1], positions[..., 2]
    eps = 1e-10
    on_axis = (np.abs(x) < eps) & (np.abs(y) < eps)

    k = _sector(_azimuth(np.stack([x, y, np.zeros_like(x)], axis=-1)), _SECTOR_CART_AZ)
    kr = (k + 1) % 5
    inv = _SECTOR_INV[k]  # (..., 2, 2)
    g_lr = np.einsum("...i,...ij->...j", np.stack([x, y], axis=-1), inv)
    r_xy = np.sum(g_lr, axis=-1)
    safe_r = np.where(on_axis, 1.0, r_xy)
    left_az, right_az = _SECTOR_AZ[k], _SECTOR_AZ[kr]
    az = _linear_to_az(_wrap_from(left_az, right_az), right_az, g_lr[..., 1] / safe_r)
    az = _wrap_from(az, -180.0)

    el_tilde = np.degrees(np.arctan(z / safe_r))
    steep = np.abs(el_tilde) > _EL_TOP_TILDE
    el_steep = np.sign(el_tilde) * (
        _EL_TOP + (90.0 - _EL_TOP) * (np.abs(el_tilde) - _EL_TOP_TILDE) / (90.0 - _EL_TOP_TILDE)
    )
    el = np.where(steep, el_steep, _EL_TOP * el_tilde / _EL_TOP_TILDE)
    dist = np.where(steep, np.abs(z), r_xy)

    # positions on the Z axis (or at the origin) have no azimuth
    at_origin = on_axis & (np.abs(z) < eps)
    az = np.where(on_axis, 0.0, az)
    el = np.where(on_axis, np.where(at_origin, 0.0, np.sign(z) * 90.0), el)
    dist = np.where(on_axis, np.where(at_origin, 0.0, np.abs(z)), dist)
    return az, el, dist


def compensate_position(az: np.ndarray, el: np.ndarray, layout: Layout
                        ) -> tuple[np.ndarray, np.ndarray]:
    """Azimuth compensation for screen-modified cartesian positions (BS.2127 7.3.3/7.3.4).

    For layouts with a U+045 loudspeaker, whose allocentric position lies above the
    M+030 corner although it is at 45 degrees azimuth, the azimuth is remapped so that
    allocentric panning keeps the source above its screen position: the +/-30 degree
    breakpoints move to +/-20 degrees at 30 degrees elevation (linear in elevation between
    0, 30 and 90 degrees). Other layouts: unchanged. az, el: (...,) degrees.
    """
    az = np.asarray(az, dtype=float)
    el = np.asarray(el, dtype=float)
    if not any(s.name == "U+045" and not s.is_lfe for s in layout.speakers):
        return az, el
    right_az = np.interp(el, [0.0, 30.0, 90.0], [30.0, 30.0 * (30.0 / 45.0), 30.0])
    # piecewise-linear map of az through (-180, -180), (-r, -r'), (r, r'), (180, 180) with
    # r = 30: breakpoints differ per block, so interpolate by hand
    a = np.clip(az, -180.0, 180.0)
    new_az = np.where(
        a < -30.0,
        -180.0 + (a + 180.0) * (180.0 - right_az) / 150.0,
        np.where(
            a <= 30.0,
            -right_az + (a + 30.0) * (2.0 * right_az) / 60.0,
            right_az + (a - 30.0) * (180.0 - right_az) / 150.0,
        ),
    )
    return new_az, el


# --------------------------------------------------------------------------------------------
# screenRef scaling (BS.2127 7.3.3)
# --------------------------------------------------------------------------------------------


def _interp4(x: np.ndarray, lo: float, a: float, b: float, hi: float,
             a2: float, b2: float) -> np.ndarray:
    """np.interp(x, (lo, a, b, hi), (lo, a2, b2, hi))."""
    return np.interp(x, [lo, a, b, hi], [lo, a2, b2, hi])


def _scale_az_el(az: np.ndarray, el: np.ndarray, ref: ScreenEdges, rep: ScreenEdges
                 ) -> tuple[np.ndarray, np.ndarray]:
    new_az = _interp4(az, -180.0, ref.right_azimuth, ref.left_azimuth, 180.0,
                      rep.right_azimuth, rep.left_azimuth)
    new_el = _interp4(el, -90.0, ref.bottom_elevation, ref.top_elevation, 90.0,
                      rep.bottom_elevation, rep.top_elevation)
    return new_az, new_el


def _as_bool(x: np.ndarray, n: int) -> np.ndarray:
    return np.broadcast_to(np.asarray(x, dtype=bool), (n,))


def screen_scale(
    positions: np.ndarray,
    screen_ref: np.ndarray,
    reference_screen: Screen,
    reproduction_screen: Screen | None,
    cartesian: np.ndarray,
    layout: Layout,
) -> np.ndarray:
    """screenRef position scaling (BS.2127 7.3.3) of a batch of blocks.

    positions: (B, 3) cartesian positions (polar blocks: cart(az, el, distance); cartesian
    blocks: X, Y, Z clipped to [-1, 1]). screen_ref: (B,) bool, the blocks' screenRef flag.
    reference_screen: the programme's referenceScreen (the BS.2076 default when it has none).
    reproduction_screen: the layout's screen (None: no screen, positions unchanged).
    cartesian: (B,) bool, the blocks' cartesian flag. layout: the output layout (the U+045
    compensation of cartesian blocks).

    Returns (B, 3): polar blocks have azimuth/elevation remapped edge to edge and keep their
    distance; cartesian blocks are mapped through the clause 10 polar form, scaled, azimuth-
    compensated and mapped back. Blocks without screenRef are unchanged. Raises ValueError
    for an invalid screen.
    """
    positions = np.array(positions, dtype=float).reshape(-1, 3)
    n = len(positions)
    screen_ref = _as_bool(screen_ref, n)
    cartesian = _as_bool(cartesian, n)
    if reproduction_screen is None or not np.any(screen_ref):
        return positions
    ref = screen_edges(reference_screen)
    rep = screen_edges(reproduction_screen)
    out = positions.copy()

    polar_rows = screen_ref & ~cartesian
    if np.any(polar_rows):
        p = positions[polar_rows]
        az, el = _scale_az_el(_azimuth(p), _elevation(p), ref, rep)
        out[polar_rows] = polar_to_cartesian(az, el, np.linalg.norm(p, axis=-1))

    cart_rows = screen_ref & cartesian
    if np.any(cart_rows):
        az, el, dist = point_cart_to_polar(positions[cart_rows])
        az, el = _scale_az_el(az, el, ref, rep)
        az, el = compensate_position(az, el, layout)
        out[cart_rows] = point_polar_to_cart(az, el, dist)
    return out


# --------------------------------------------------------------------------------------------
# screenEdgeLock (BS.2127 7.3.4)
# --------------------------------------------------------------------------------------------


def _codes(x: object, n: int) -> np.ndarray:
    arr = np.empty(n, dtype=object)
    if x is None or isinstance(x, str):
        arr[:] = x
    else:
        arr[:] = list(x)  # type: ignore[call-overload]
    return arr


def screen_edge_lock(
    positions: np.ndarray,
    horizontal: np.ndarray | list[str | None],
    vertical: np.ndarray | list[str | None],
    reproduction_screen: Screen | None,
    cartesian: np.ndarray,
    layout: Layout,
) -> np.ndarray:
    """screenEdgeLock of a batch of blocks (BS.2127 7.3.4).

    positions: (B, 3) cartesian positions (after :func:`screen_scale`). horizontal: (B,)
    "left" / "right" / None; vertical: (B,) "top" / "bottom" / None (the position element's
    screenEdgeLock). reproduction_screen: the layout's screen (None: positions unchanged).
    cartesian: (B,) bool. layout: the output layout (U+045 compensation of cartesian blocks).

    Returns (B, 3): for each block with a lock, the azimuth (horizontal lock) and/or elevation
    (vertical lock) is replaced by the reproduction screen's edge, keeping the distance; the
    polar form of cartesian blocks is the clause 10 conversion, and their azimuth is then
    compensated (:func:`compensate_position`). Other values than those above are ignored
    (treated as no lock on that axis, as the reference renderer does).
    """
    positions = np.array(positions, dtype=float).reshape(-1, 3)
    n = len(positions)
    horizontal = _codes(horizontal, n)
    vertical = _codes(vertical, n)
    cartesian = _as_bool(cartesian, n)
    if reproduction_screen is None:
        return positions
    edges = screen_edges(reproduction_screen)
    h_set = np.array([h is not None for h in horizontal], dtype=bool)
    v_set = np.array([v is not None for v in vertical], dtype=bool)
    modify = h_set | v_set
    if not np.any(modify):
        return positions

    h_left = horizontal == "left"
    h_right = horizontal == "right"
    v_top = vertical == "top"
    v_bottom = vertical == "bottom"

    def lock(az: np.ndarray, el: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        az = np.where(h_left[rows], edges.left_azimuth, az)
        az = np.where(h_right[rows], edges.right_azimuth, az)
        el = np.where(v_top[rows], edges.top_elevation, el)
        el = np.where(v_bottom[rows], edges.bottom_elevation, el)
        return az, el

    out = positions.copy()
    polar_rows = modify & ~cartesian
    if np.any(polar_rows):
        p = positions[polar_rows]
        az, el = lock(_azimuth(p), _elevation(p), polar_rows)
        out[polar_rows] = polar_to_cartesian(az, el, np.linalg.norm(p, axis=-1))

    cart_rows = modify & cartesian
    if np.any(cart_rows):
        az, el, dist = point_cart_to_polar(positions[cart_rows])
        az, el = lock(az, el, cart_rows)
        az, el = compensate_position(az, el, layout)
        out[cart_rows] = point_polar_to_cart(az, el, dist)
    return out
