"""Polar extent panner for Objects with width, height and depth (ITU-R BS.2127-1 clause 7.3.8).

An object with a non-zero extent is rendered as a weighted field of virtual sources spread over
the sphere (the *spreading panner*, BS.2127 7.3.8.2.2): a fixed set of quasi-uniform sphere
points is panned once with the point source panner (clause 6.1); for a block, each point gets a
weight in [0, 1] from the extent's shape (7.3.8.2.1), the weighted sum of the points' gains is
normalised to unit power, and blended in power with the point source gains of the block's
position when the extent is smaller than the 10 degree fade (7.3.8.2.3).

The shape is a rectangle in the source's local azimuth/elevation with maximally rounded ends:
the straight edges follow azimuth lines of a basis rotated onto the source (rotated a further
90 degrees about the source for sources taller than wide), the ends are circles whose centres
lie on the source's horizon, and the weight falls linearly from 1 at the shape's edge to 0 at
10 degrees outside it. Wide shapes are stretched so that a width of 360 degrees closes the
ring behind the listener.

Distance (7.3.8.2.4): the width and height are modified by the block's distance so that a
source closer than the loudspeakers grows (360 degrees at the listening position) and a far
source shrinks; with a depth, the gains are computed at the two distances distance +- depth/2
(clipped at 0) and combined as their root-mean-square.

Sphere points: the spreading panner uses 37 rows of points from pole to pole, 5 degrees apart
in elevation, each row holding round(72 cos(elevation)) equally spaced points (at least one),
1,652 points in all, as in the reference renderer. (The 5200-point spherical t-design in
``renderer/data/tdesign_5200_100.dat`` is *not* this set: BS.2127 uses it for the HOA
decoder.)

API
---
:func:`configure_polar_extent` (numpy, once per layout; :func:`cached_polar_extent` caches it)
builds a :class:`PolarExtentPanner` pytree. :func:`polar_extent_gains` is a pure, jit-compatible
JAX function of it over a batch of blocks. Its working memory is about
``B * 2 * 1652 * 4`` bytes per temporary (float32), so callers should pass bounded batches:
:func:`polar_extent_gains_batched` loops over fixed-size padded chunks (default 256 blocks,
the fastest on CPU: larger chunks fall out of cache) with a single compiled shape per layout
and chunk size.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import jax
import jax.numpy as jnp
import numpy as np

from layouts.model import Layout
from renderer.point_source import (
    PointSourcePanner,
    cached_point_source,
    point_source_gains,
    point_source_gains_x64,
)

__all__ = [
    "PolarExtentPanner",
    "cached_polar_extent",
    "configure_polar_extent",
    "extent_weights",
    "modified_extent",
    "polar_extent_gains",
    "polar_extent_gains_batched",
    "polar_extent_gains_x64",
    "spreading_points",
]

FADE_WIDTH_DEG = 10.0
"""Width of the linear weight fade outside the extent's shape, degrees (BS.2127 7.3.8.2.1)."""

N_ROWS = 37
"""Rows of the spreading panner's sphere points, pole to pole (5 degree spacing)."""

_MIN_SIZE = 0.2  # size of a zero extent in the distance modification (7.3.8.2.4)
_NORM_EPS = 1e-10  # positions shorter than this have no direction: the front is used
_POLE_EL_DEG = 1e-5  # sources within this of a pole get azimuth 0 for the basis
_SKIP = 1e-10  # point/spread parts with a smaller share are left out, as in the reference


def spreading_points(n_rows: int = N_ROWS) -> np.ndarray:
    """(P, 3) unit vectors of the spreading panner's virtual sources (BS.2127 7.3.8.2.2).

    ``n_rows`` rows at elevations evenly spaced from -90 to +90 degrees; a row at elevation el
    has round(2 (n_rows - 1) cos(el)) points (at least one) at azimuths evenly spaced from 0.
    37 rows give 1652 points. Cartesian convention X right, Y front, Z up.
    """
    rows = []
    for el in np.linspace(-90.0, 90.0, n_rows):
        count = max(int(round(np.cos(np.radians(el)) * 2 * (n_rows - 1))), 1)
        az = np.radians(np.linspace(0.0, 360.0, count, endpoint=False))
        el_r = np.radians(el)
        rows.append(np.stack([-np.sin(az) * np.cos(el_r), np.cos(az) * np.cos(el_r),
                              np.full(count, np.sin(el_r))], axis=-1))
    return np.concatenate(rows)


@jax.tree_util.register_dataclass
@dataclass(frozen=True)
class PolarExtentPanner:
    """The polar extent panner configured for one layout, as a JAX pytree.

    - ``point_source``: the layout's :class:`~renderer.point_source.PointSourcePanner`.
    - ``points`` (P, 3): the spreading panner's unit vectors (:func:`spreading_points`).
    - ``point_gains`` (P, n_speakers): point source gains of each of those points (float64).

    Static field ``channel_names``: the non-LFE loudspeakers in layout order (the outputs).
    """

    point_source: PointSourcePanner
    points: np.ndarray | jax.Array
    point_gains: np.ndarray | jax.Array
    channel_names: tuple[str, ...] = field(metadata=dict(static=True))

    @property
    def n_speakers(self) -> int:
        """Number of outputs (non-LFE loudspeakers of the layout)."""
        return len(self.channel_names)


def configure_polar_extent(layout: Layout) -> PolarExtentPanner:
    """Configure the polar extent panner for ``layout`` (BS.2127 7.3.8.2.2); numpy, float64.

    Pans the spreading panner's sphere points with the layout's point source panner once.
    Raises :class:`~layouts.model.LayoutError` where the point source panner does.
    """
    psp = cached_point_source(layout)
    points = spreading_points()
    gains = np.asarray(point_source_gains_x64(psp, points), dtype=np.float64)
    return PolarExtentPanner(point_source=psp, points=points, point_gains=gains,
                             channel_names=psp.channel_names)


@functools.lru_cache(maxsize=16)
def cached_polar_extent(layout: Layout) -> PolarExtentPanner:
    """:func:`configure_polar_extent`, configured once per layout and process."""
    return configure_polar_extent(layout)


# ---------------------------------------------------------------------------------------------
# pure JAX parts
# ---------------------------------------------------------------------------------------------


def modified_extent(extent: jax.typing.ArrayLike, distance: jax.typing.ArrayLike) -> jax.Array:
    """Width or height modified by distance (BS.2127 7.3.8.2.4); degrees in and out.

    The extent is mapped to a size s = 0.2 + 0.8 extent / 360 (clipped to [0.2, 1]); the angle
    a(d) = 4 atan2(s, d) (degrees) is then mapped piecewise linearly with a(0) -> 0,
    a(1) -> extent and 360 -> 360. So distance 1 keeps the extent, distance 0 gives 360 and
    larger distances shrink it. Inputs broadcast; distance >= 0.
    """
    extent = jnp.asarray(extent)
    distance = jnp.asarray(distance, extent.dtype)
    size = _MIN_SIZE + (1.0 - _MIN_SIZE) * jnp.clip(extent / 360.0, 0.0, 1.0)
    angle_1 = 4.0 * jnp.degrees(jnp.arctan(size))
    # a(d) - a(1) without cancellation: atan(s/d) - atan(s) = atan2(s (1 - d), d + s^2), exactly
    # 0 at distance 1 (the gains of small extents depend on the square root of this near 1)
    excess = 4.0 * jnp.degrees(jnp.arctan2(size * (1.0 - distance), distance + size * size))
    excess = jnp.minimum(excess, 360.0 - angle_1)
    near = extent * (1.0 + excess / angle_1)
    far = extent + (360.0 - extent) * excess / (360.0 - angle_1)
    return jnp.where(excess <= 0.0, near, far)


def _safe_unit(positions: jax.Array) -> jax.Array:
    """(..., 3) -> unit vectors; vectors shorter than 1e-10 become the front (0, 1, 0)."""
    norm = jnp.linalg.norm(positions, axis=-1, keepdims=True)
    front = jnp.zeros_like(positions).at[..., 1].set(1.0)
    return jnp.where(norm < _NORM_EPS, front, positions / jnp.where(norm < _NORM_EPS, 1.0, norm))


def _source_basis(unit: jax.Array) -> jax.Array:
    """(..., 3) unit source directions -> (..., 3, 3) orthonormal bases, rows (x', y', z').

    y' points at the source, x' is horizontal (to its right) and z' is up along the source's
    azimuth line: the local coordinate system of BS.2127 for azimuth az, elevation el. Within
    1e-5 degrees of a pole the azimuth is taken as 0.
    """
    x, y, z = unit[..., 0], unit[..., 1], unit[..., 2]
    horiz = jnp.hypot(x, y)  # cos(el)
    pole = horiz < np.sin(np.radians(_POLE_EL_DEG))
    safe = jnp.where(pole, 1.0, horiz)
    cos_az = jnp.where(pole, 1.0, y / safe)
    sin_az = jnp.where(pole, 0.0, -x / safe)
    zero = jnp.zeros_like(x)
    right = jnp.stack([cos_az, sin_az, zero], axis=-1)
    front = jnp.stack([-sin_az * horiz, cos_az * horiz, z], axis=-1)
    up = jnp.stack([sin_az * z, -cos_az * z, horiz], axis=-1)
    return jnp.stack([right, front, up], axis=-2)


def _interp_knee(x: jax.Array, x0: float, x1: float, y0: jax.Array, y1: jax.Array) -> jax.Array:
    """Linear from (x0, y0) to (x1, y1), constant outside."""
    t = jnp.clip((x - x0) / (x1 - x0), 0.0, 1.0)
    return y0 + t * (y1 - y0)


# atan(u) ~ u P(u^2) on |u| <= tan(pi/8), max error 2.4e-10 (least-squares minimax fit)
_ATAN_COEFFS = (0.9999999994122843, -0.33333308081443985, 0.19998238210122674,
                -0.14240430225024803, 0.10575793734327836, -0.06040186954657039)
_TAN_PI_8 = float(np.tan(np.pi / 8))


def _angle(y: jax.Array, x: jax.Array) -> jax.Array:
    """atan2(y, x) for y >= 0, in radians [0, pi].

    float64: ``jnp.arctan2``. float32: a polynomial (error ~1e-7 rad, the float32 rounding),
    because XLA's CPU inverse trigonometric functions are not vectorised (~50 ns each, which
    would dominate the extent panner's cost).
    """
    if x.dtype == jnp.float64:
        return jnp.arctan2(y, x)
    ax = jnp.abs(x)
    big = jnp.maximum(y, ax)
    z = jnp.minimum(y, ax) / jnp.where(big > 0.0, big, 1.0)  # in [0, 1]
    reduced = z > _TAN_PI_8
    u = jnp.where(reduced, (z - 1.0) / (z + 1.0), z)  # |u| <= tan(pi/8)
    u2 = u * u
    poly = _ATAN_COEFFS[-1]
    for coeff in _ATAN_COEFFS[-2::-1]:
        poly = poly * u2 + coeff
    t = u * poly + jnp.where(reduced, np.pi / 4, 0.0)  # atan(z)
    t = jnp.where(y > ax, np.pi / 2 - t, t)
    return jnp.where(x < 0.0, np.pi - t, t)


def extent_weights(points: jax.typing.ArrayLike, basis: jax.Array, width: jax.Array,
                   height: jax.Array) -> jax.Array:
    """Weights of sphere points for extent shapes (BS.2127 7.3.8.2.1).

    ``points`` (P, 3) unit vectors; ``basis`` (..., 3, 3) orthonormal source bases (rows
    right, front, up: the source's local coordinate system); ``width``/``height`` (...) in
    degrees, edge to edge. Returns (..., P) weights in [0, 1]: 1 inside the shape, falling
    linearly to 0 at 10 degrees outside it.
    """
    dtype = basis.dtype
    points = jnp.asarray(points, dtype)
    half_w = jnp.radians(width) / 2.0
    half_h = jnp.radians(height) / 2.0
    radius = jnp.minimum(half_w, half_h)
    # taller than wide: rotate the shape a quarter turn about the source (swap right and up)
    flip = half_h > half_w
    long_half = jnp.maximum(half_w, half_h)  # the rounded rectangle's half length
    basis = jnp.where(flip[..., None, None], basis[..., ::-1, :], basis)
    # stretch wide shapes so that a full width meets behind the listener; fully for a
    # half-height up to 45 degrees, fading out by 90 degrees
    pi = np.pi
    stretched = jnp.where(long_half <= pi / 2, long_half,
                          _interp_knee(long_half, pi / 2, pi, pi / 2, pi + radius))
    long_half = jnp.where(radius <= pi / 4, stretched,
                          _interp_knee(radius, pi / 4, pi / 2, stretched, long_half))
    # angle of the end circles' centres from the source, along the source's horizon; in [0, pi]
    centre = long_half - radius
    cos_c = jnp.cos(centre)[..., None]
    sin_c = jnp.sin(centre)[..., None]
    radius = radius[..., None]

    # point components in the (flipped) basis, (..., P) each; written as broadcast
    # multiply-adds so that XLA fuses everything below into one loop
    px, py, pz = points[:, 0], points[:, 1], points[:, 2]
    c0, c1, c2 = (basis[..., k, 0:1] * px + basis[..., k, 1:2] * py + basis[..., k, 2:3] * pz
                  for k in range(3))
    horiz = jnp.sqrt(c0 * c0 + c1 * c1)
    side = jnp.abs(c0)
    # between the circle centres (|local azimuth| <= centre): angle from the horizon,
    # atan2(|c2|, horiz); elsewhere: angle to the nearer circle centre (the one on the
    # point's side), from the cross and dot products with it
    on_flat = c1 >= horiz * cos_c
    dot = side * sin_c + c1 * cos_c
    cross = jnp.sqrt(c2 * c2 + jnp.square(side * cos_c - c1 * sin_c))
    dist = _angle(jnp.where(on_flat, jnp.abs(c2), cross), jnp.where(on_flat, horiz, dot)) - radius
    return jnp.clip(1.0 - dist / np.radians(FADE_WIDTH_DEG), 0.0, 1.0)


def polar_extent_gains(panner: PolarExtentPanner, positions: jax.typing.ArrayLike,
                       width: jax.typing.ArrayLike, height: jax.typing.ArrayLike,
                       depth: jax.typing.ArrayLike,
                       distance: jax.typing.ArrayLike | None = None) -> jax.Array:
    """Gains of Objects blocks with extent (BS.2127 7.3.8.2), pure JAX, jit-compatible.

    ``positions`` (B, 3): cartesian position vectors (X right, Y front, Z up) whose length is
    the block's distance (distance 1 = on the loudspeakers; 0 allowed). ``width``/``height``
    (B,): degrees; ``depth`` (B,): distance units. Returns (B, n_speakers) gains for the
    non-LFE loudspeakers in layout order, unit power (0+2+0: as its point source panner).

    Every block is evaluated the same way (no branching on values): the extents are modified
    by distance at distance +- depth/2 (clipped at 0; both equal when depth is 0), each pair
    gives sqrt(a_p g_point^2 + a_s g_spread^2) with a_s = min(max(w, h) / 10 deg, 1) and
    a_p = 1 - a_s, the spread computed with w, h at least 5 degrees, and the two results are
    combined as their root-mean-square.

    Memory is O(B * 1652) per temporary: pass bounded batches (e.g. 256 to 1024 blocks), or use
    :func:`polar_extent_gains_batched`. Computed in JAX's default float dtype.

    ``distance`` (B,), optional: the blocks' distances (the lengths of ``positions``) where the
    caller knows them more precisely, e.g. the ADM distance itself. Recommended in float32:
    for a small extent the gains depend on the square root of the distance's deviation below
    1, so a float32 norm of 1 - 6e-8 (instead of 1) would spread a point source by ~1e-4 in
    gain. Default: the norm of ``positions``.
    """
    gains_table = jnp.asarray(panner.point_gains)
    dtype = gains_table.dtype
    positions = jnp.asarray(positions, dtype).reshape(-1, 3)
    width = jnp.asarray(width, dtype).reshape(-1)
    height = jnp.asarray(height, dtype).reshape(-1)
    depth = jnp.asarray(depth, dtype).reshape(-1)

    if distance is None:
        distance = jnp.linalg.norm(positions, axis=-1)
    else:
        distance = jnp.asarray(distance, dtype).reshape(-1)
    distances = jnp.maximum(jnp.stack([distance + depth / 2.0, distance - depth / 2.0], -1),
                            0.0)  # (B, 2)
    w = modified_extent(width[:, None], distances)
    h = modified_extent(height[:, None], distances)
    spread_share = jnp.clip(jnp.maximum(w, h) / FADE_WIDTH_DEG, 0.0, 1.0)  # (B, 2)
    point_share = 1.0 - spread_share

    unit = _safe_unit(positions)
    # the point part pans the position's direction (scaled first, so that short vectors do
    # not underflow); positions shorter than 1e-10 have none (see below)
    largest = jnp.max(jnp.abs(positions), axis=-1)
    scaled = positions / jnp.where(largest > 0.0, largest, 1.0)[:, None]
    scaled_norm = jnp.linalg.norm(scaled, axis=-1)
    no_direction = largest * scaled_norm < _NORM_EPS
    direction = jnp.where(no_direction[:, None], unit,
                          scaled / jnp.where(largest > 0.0, scaled_norm, 1.0)[:, None])
    point = point_source_gains(panner.point_source, direction)  # (B, n)

    basis = _source_basis(unit)[:, None]  # (B, 1, 3, 3)
    weights = extent_weights(panner.points, basis, jnp.maximum(w, FADE_WIDTH_DEG / 2),
                             jnp.maximum(h, FADE_WIDTH_DEG / 2))  # (B, 2, P)
    spread = weights @ gains_table  # (B, 2, n)
    spread = spread / jnp.linalg.norm(spread, axis=-1, keepdims=True)

    use_point = (point_share > _SKIP)[..., None]
    use_spread = (spread_share > _SKIP)[..., None]
    power = (jnp.where(use_point, point_share[..., None] * jnp.square(point)[:, None], 0.0)
             + jnp.where(use_spread, spread_share[..., None] * jnp.square(spread), 0.0))
    gains = jnp.sqrt(jnp.mean(power, axis=1))
    # a point part for a position of (nearly) zero length, possible with a depth at the far
    # distance, has no direction: the reference's gains are NaN there (for lengths below
    # ~1e-10), which its gain calculator turns into 0
    undefined = no_direction & jnp.any(point_share > _SKIP, axis=1)
    return jnp.where(undefined[:, None], 0.0, gains)


_polar_extent_gains_jit = jax.jit(polar_extent_gains)


def polar_extent_gains_x64(panner: PolarExtentPanner, positions: jax.typing.ArrayLike,
                           width: jax.typing.ArrayLike, height: jax.typing.ArrayLike,
                           depth: jax.typing.ArrayLike,
                           distance: jax.typing.ArrayLike | None = None) -> jax.Array:
    """:func:`polar_extent_gains` evaluated in float64 (jitted, x64 enabled locally).

    Same shapes and units; pass float64 numpy inputs for full accuracy. Unbatched: keep B
    bounded (see :func:`polar_extent_gains_batched`).
    """
    with jax.enable_x64(True):
        args = [np.asarray(a, dtype=np.float64) for a in (positions, width, height, depth)]
        if distance is not None:
            args.append(np.asarray(distance, dtype=np.float64))
        return _polar_extent_gains_jit(panner, *args)


def polar_extent_gains_batched(panner: PolarExtentPanner, positions: np.ndarray,
                               width: np.ndarray, height: np.ndarray, depth: np.ndarray,
                               chunk: int = 256, x64: bool = False) -> np.ndarray:
    """:func:`polar_extent_gains` over any number of blocks, in fixed-size padded chunks.

    ``positions`` (B, 3), ``width``/``height``/``depth`` (B,) as :func:`polar_extent_gains`.
    Every chunk is padded to ``chunk`` blocks, so one compiled shape serves any B and the
    working memory stays bounded (a few MB per temporary for 256 blocks in float32). ``x64``
    computes in float64. The distances are computed here in float64 (see the ``distance``
    argument of :func:`polar_extent_gains`). Returns (B, n_speakers) numpy gains (float32, or
    float64 with ``x64``).
    """
    positions = np.asarray(positions, dtype=np.float64).reshape(-1, 3)
    n_blocks = positions.shape[0]
    params = [np.broadcast_to(np.asarray(a, dtype=np.float64), (n_blocks,))
              for a in (width, height, depth)] + [np.linalg.norm(positions, axis=-1)]
    out = np.zeros((n_blocks, panner.n_speakers), np.float64 if x64 else np.float32)
    dtype = np.float64 if x64 else np.float32
    with jax.enable_x64(x64):
        for start in range(0, n_blocks, chunk):
            stop = min(start + chunk, n_blocks)
            pad = chunk - (stop - start)
            pos = np.pad(positions[start:stop], ((0, pad), (0, 0)), constant_values=1.0)
            rest = [np.pad(a[start:stop], (0, pad)) for a in params]
            result = _polar_extent_gains_jit(panner, pos.astype(dtype),
                                             *(a.astype(dtype) for a in rest))
            out[start:stop] = np.asarray(result)[: stop - start]
    return out
