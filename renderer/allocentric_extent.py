"""Allocentric extent panner for cartesian objects with a size (ITU-R BS.2127 clause 7.3,
allocentric extent: width, height and depth of blocks with ``cartesian="1"``).

A sized source is spread over a regular grid of *virtual* sources filling the room cube: 40
values of X and of Y in [-1, 1], and 40 values of Z in [-1, 1] when the loudspeakers lie on three
or more planes, else 20 values of Z in [0, 1] (the source Z is then raised to at least 0).
Each virtual value is panned along its own axis with the allocentric one-dimensional law
(:mod:`renderer.allocentric`) within the grid of the loudspeaker (column gain within its row,
row gain within its plane, plane gain), and the source weights the virtual values with

    w(v) = 10 ** -min((1.5 (v - c) / (2 s)) ** 4, 6.5)          (X and Y)
    w(z) = 10 ** -min((1.5 (z - c) / s) ** 4, 6.5) * cos(3 pi z / 7)

where ``c`` is the source coordinate and ``s`` the scaled size (piecewise-linear map of the
ADM size 0, 0.2, 0.5, 0.75, 1 -> 0, 0.3, 1, 1.8, 2.8, at least one grid step). With an
exponent ``p`` (6 for an effective size up to 0.5, falling linearly to 2 at 2.8) the per-axis
sums ``f = sum_v (g(v) w(v)) ** p`` (zeroed below -130 dB), their product (the inside part,
normalised and weighted by a size/position dependent ``mu``) and the six cube-face terms form
``g_size = (g_bound + mu g_inside) ** (1 / p)``, which is normalised and, for effective sizes
below 0.2, cross-faded with the point-source gains. A block whose width, height and depth are
all 0 gets the allocentric point-source gains exactly.

The reference renderer's mapping of the ADM parameters to the axes is kept: ``width`` scales
X, ``height`` scales Y and ``depth`` scales Z (Dolby Atmos objects carry equal values).

The panner is configured once per layout (:func:`configure_allocentric_extent`): the virtual
panning gains do not depend on the source, so they are tabulated (as logarithms) per
loudspeaker, per row and per plane. :func:`allocentric_extent_gains` is a pure,
jit-compatible JAX function of a batch of blocks; with a per-block set of excluded
loudspeakers (zone exclusion) the tables are rebuilt per block from the remaining
loudspeakers, as BS.2127 pans over those only. :func:`allocentric_extent_gains_batched` runs it
over any number of blocks in chunks of one compiled shape.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from layouts.model import Layout
from renderer.allocentric import (
    AllocentricPanner,
    _axis_weights,
    allocentric_gains,
    configure_allocentric,
)

__all__ = [
    "AllocentricExtentPanner",
    "allocentric_extent_gains",
    "allocentric_extent_gains_batched",
    "configure_allocentric_extent",
]

N_VIRTUAL = 40  # virtual sources per axis (X, Y; Z on three or more planes)
N_VIRTUAL_Z_FLAT = 20  # virtual Z values in [0, 1] for layouts with fewer than three planes
_EXP_LIMIT = 6.5  # weights and per-axis sums are floored at 10 ** -6.5 (-130 dB)
_LOG_ZERO = -1.0e4  # stands in for log(0) in the tables (exp(p * _LOG_ZERO) == 0)
_S_FADE = 0.2  # effective size below which the point-source gains are cross-faded in
_S_MAX = 2.8  # largest scaled size
_SIZE_IN = (0.0, 0.2, 0.5, 0.75, 1.0)
_SIZE_OUT = (0.0, 0.3, 1.0, 1.8, 2.8)
_BIG = 1e9


@jax.tree_util.register_dataclass
@dataclass(frozen=True)
class _ExtentTables:
    """Source-independent tables of the extent panner for one set of active loudspeakers.

    Leading batch dims ``...`` are empty for the layout itself, (B,) under zone exclusion.
    V = N_VIRTUAL virtual values; P planes, R rows of the allocentric grid; N loudspeakers.

    - ``log_gx`` (..., N, V): log of each loudspeaker's gain within its row for virtual X.
    - ``log_gy`` (..., P * R, V): log of each row's gain within its plane for virtual Y.
    - ``log_gz`` (..., P, V): log of each plane's gain for virtual Z (padding: _LOG_ZERO).

    The virtual axis is last so that the sums over it run along contiguous memory.
    - ``zs`` (..., V): virtual Z values (padded with 1 beyond the last).
    - ``z_last`` (...,) int: index of the last virtual Z (39 or 19).
    - ``three_planes`` (...,) bool: three or more planes (Z grid over [-1, 1]).
    - ``dim`` (...,) int: number of axes along which the loudspeakers' positions vary.
    - ``kind`` (...,) int: 0 = a left/right line, 1 = one horizontal plane, 2 = volume.
    """

    log_gx: jax.Array
    log_gy: jax.Array
    log_gz: jax.Array
    zs: jax.Array
    z_last: jax.Array
    three_planes: jax.Array
    dim: jax.Array
    kind: jax.Array


@jax.tree_util.register_dataclass
@dataclass(frozen=True)
class AllocentricExtentPanner:
    """Allocentric extent panner configured for one layout's N non-LFE loudspeakers.

    ``point``: the allocentric point-source panner (grid, positions, names in output order).
    ``tables``: the virtual-source tables with every loudspeaker active.
    """

    point: AllocentricPanner
    tables: _ExtentTables

    @property
    def n_speakers(self) -> int:
        return self.point.n_speakers

    @property
    def names(self) -> tuple[str, ...]:
        return self.point.names


def _safe_log(g: jax.Array) -> jax.Array:
    positive = g > 0
    return jnp.where(positive, jnp.log(jnp.where(positive, g, 1.0)), _LOG_ZERO)


def _extent_tables(point: AllocentricPanner, active: jax.Array) -> _ExtentTables:
    """Tables for the loudspeakers marked in ``active`` (..., N) bool (see _ExtentTables)."""
    active = jnp.asarray(active, dtype=bool)
    batch = active.shape[:-1]
    dtype = jnp.result_type(float)
    cell_valid = point.cell_real & jnp.take(active, point.cell_speaker, axis=-1)  # (..., P,R,C)
    row_valid = jnp.any(cell_valid, axis=-1)  # (..., P, R)
    plane_valid = jnp.any(row_valid, axis=-1)  # (..., P)
    v = jnp.linspace(-1.0, 1.0, N_VIRTUAL, dtype=dtype)

    gx = _axis_weights(v[:, None, None], point.col_x.astype(dtype), cell_valid[..., None, :, :, :])
    p, r, c = point.speaker_cell[:, 0], point.speaker_cell[:, 1], point.speaker_cell[:, 2]
    gx = gx[..., p, r, c]  # (..., V, N)
    gy = _axis_weights(v[:, None], point.row_y.astype(dtype), row_valid[..., None, :, :])

    three = jnp.sum(plane_valid, axis=-1) >= 3
    flat = jnp.concatenate([
        jnp.linspace(0.0, 1.0, N_VIRTUAL_Z_FLAT, dtype=dtype),
        jnp.ones(N_VIRTUAL - N_VIRTUAL_Z_FLAT, dtype=dtype),
    ])
    zs = jnp.where(three[..., None], v, flat)  # (..., V)
    z_valid = three[..., None] | (jnp.arange(N_VIRTUAL) < N_VIRTUAL_Z_FLAT)
    gz = _axis_weights(zs, point.plane_z.astype(dtype), plane_valid[..., None, :])
    gz = jnp.where(z_valid[..., None], gz, 0.0)  # (..., V, P)

    pos = point.positions.astype(dtype)
    hi = jnp.max(jnp.where(active[..., None], pos, -_BIG), axis=-2)  # (..., 3)
    lo = jnp.min(jnp.where(active[..., None], pos, _BIG), axis=-2)
    varies = hi > lo
    kind = jnp.where(~varies[..., 1] & ~varies[..., 2], 0, jnp.where(~varies[..., 2], 1, 2))
    n_p, n_r = point.row_y.shape
    return _ExtentTables(
        log_gx=jnp.swapaxes(_safe_log(gx), -1, -2),
        log_gy=jnp.swapaxes(_safe_log(gy).reshape(gy.shape[:-2] + (n_p * n_r,)), -1, -2),
        log_gz=jnp.swapaxes(_safe_log(gz), -1, -2),
        zs=zs,
        z_last=jnp.where(three, N_VIRTUAL - 1, N_VIRTUAL_Z_FLAT - 1),
        three_planes=jnp.broadcast_to(three, batch),
        dim=jnp.sum(varies, axis=-1),
        kind=kind,
    )


_jit_tables = jax.jit(_extent_tables)


def configure_allocentric_extent(layout: Layout) -> AllocentricExtentPanner:
    """Configure the allocentric extent panner for a layout (once; BS.2127 clause 7.3).

    Raises LayoutError if the layout lacks allocentric positions (see configure_allocentric).
    """
    point = configure_allocentric(layout)
    tables = _jit_tables(point, np.ones(point.n_speakers, dtype=bool))
    return AllocentricExtentPanner(point=point, tables=tables)


def _scale_size(size: jax.Array) -> jax.Array:
    """ADM size (0..1) -> scaled size (0..2.8), piecewise linear through _SIZE_IN/_SIZE_OUT."""
    out = jnp.zeros_like(size)
    for x0, x1, y0, y1 in zip(_SIZE_IN[:-1], _SIZE_IN[1:], _SIZE_OUT[:-1], _SIZE_OUT[1:],
                              strict=True):
        out = out + jnp.clip(size - x0, 0.0, x1 - x0) * ((y1 - y0) / (x1 - x0))
    return out


def _h(s: jax.Array, d_bound: jax.Array) -> jax.Array:
    """Per-axis factor of the inside weight mu, for scaled size s and distance to the walls."""
    roomy = (d_bound >= 2.0 * s) & (d_bound >= 0.4)
    n = jnp.maximum(2.0 * s, 0.4)
    h_roomy = jnp.cbrt(n * n * n / (0.32 * s))
    a = d_bound / 0.4
    h_near = jnp.cbrt(d_bound / 2.0 * (a * a))
    return jnp.where(roomy, h_roomy, h_near)


def _log_weights(v: jax.Array, c: jax.Array, scale: jax.Array) -> jax.Array:
    """log of 10 ** -min((1.5 (v - c) / scale) ** 4, 6.5); v (..., V) or (V,), c, scale (B,)."""
    u = 1.5 * (v - c[:, None]) / scale[:, None]
    u2 = u * u
    return -jnp.minimum(u2 * u2, _EXP_LIMIT) * np.log(10.0)


def _normalise(g: jax.Array) -> jax.Array:
    """g / |g| along the last axis; zeros where |g| <= 1e-16."""
    norm = jnp.sqrt(jnp.sum(g * g, axis=-1, keepdims=True))
    ok = norm > 1e-16
    return jnp.where(ok, g / jnp.where(ok, norm, 1.0), 0.0)


def allocentric_extent_gains(
    panner: AllocentricExtentPanner,
    positions: jax.Array,
    width: jax.Array,
    height: jax.Array,
    depth: jax.Array,
    excluded: jax.Array | None = None,
) -> jax.Array:
    """Allocentric extent gains (BS.2127 clause 7.3) of a batch of cartesian blocks.

    positions: (B, 3) X, Y, Z in the unit cube (clipped to [-1, 1] here too).
    width, height, depth: (B,) ADM cartesian sizes, 0..1 (width scales X, height Y, depth Z,
    as the reference renderer does). excluded: optional (B, N) bool, loudspeakers to skip as
    returned by :func:`renderer.allocentric.allocentric_exclusion`; the block is then panned
    over the remaining loudspeakers only and excluded ones get 0.
    Returns (B, N) gains over the layout's non-LFE loudspeakers (output order), unit power;
    blocks with width = height = depth = 0 get the allocentric point-source gains exactly.
    Pure and jit-compatible.
    """
    positions = jnp.asarray(positions)
    if not jnp.issubdtype(positions.dtype, jnp.floating):
        positions = positions.astype(jnp.result_type(float))
    dtype = positions.dtype
    positions = jnp.clip(positions, -1.0, 1.0)
    width = jnp.asarray(width, dtype)
    height = jnp.asarray(height, dtype)
    depth = jnp.asarray(depth, dtype)
    point = panner.point
    p_idx = point.speaker_cell[:, 0]
    row_idx = p_idx * point.row_y.shape[1] + point.speaker_cell[:, 1]  # flat (plane, row)

    if excluded is None:
        tables = panner.tables
    else:
        excluded = jnp.asarray(excluded, dtype=bool)
        tables = _extent_tables(point, ~excluded)
    tables = jax.tree.map(lambda a: a.astype(dtype) if jnp.issubdtype(a.dtype, jnp.floating)
                          else a, tables)

    xo, yo = positions[:, 0], positions[:, 1]
    three = tables.three_planes
    zo = jnp.where(three, positions[:, 2], jnp.maximum(positions[:, 2], 0.0))

    # scaled sizes, at least one step of the virtual grid
    n_z = jnp.where(three, N_VIRTUAL, N_VIRTUAL_Z_FLAT).astype(dtype)
    sx = jnp.maximum(_scale_size(width), 2.0 / (N_VIRTUAL - 1))
    sy = jnp.maximum(_scale_size(height), 2.0 / (N_VIRTUAL - 1))
    sz = jnp.maximum(_scale_size(depth), 2.0 / (n_z - 1.0))

    # effective size and exponent
    big = jnp.maximum(jnp.maximum(sx, sy), sz)
    small = jnp.minimum(jnp.minimum(sx, sy), sz)
    mid = sx + sy + sz - big - small
    s_plane = 0.75 * jnp.maximum(sx, sy) + 0.25 * jnp.minimum(sx, sy)
    s_cube = (6.0 / 9.0) * big + (2.0 / 9.0) * mid + (1.0 / 9.0) * small
    s_eff = jnp.where(tables.kind == 0, sx, jnp.where(tables.kind == 1, s_plane, s_cube))
    p = jnp.where(s_eff <= 0.5, 6.0, 6.0 - 4.0 * ((s_eff - 0.5) / (_S_MAX - 0.5)))

    # weight of the inside part: distance to the nearest wall along the varying axes
    dx = jnp.minimum(xo + 1.0, 1.0 - xo)
    dy = jnp.minimum(yo + 1.0, 1.0 - yo)
    dz = jnp.minimum(zo + 1.0, 1.0 - zo)
    dim = tables.dim
    d_bound = jnp.where(dim == 1, dx, jnp.where(dim == 2, jnp.minimum(dx, dy),
                                                 jnp.minimum(jnp.minimum(dx, dy), dz)))
    hx, hy, hz = _h(sx, d_bound), _h(sy, d_bound), _h(sz, d_bound)
    hxy = hx * hy
    mu = jnp.where(dim == 1, hx * hx * hx,
                   jnp.where(dim == 2, hxy * jnp.sqrt(hxy), hxy * hz))

    # log weights of the virtual values (B, V)
    v = jnp.linspace(-1.0, 1.0, N_VIRTUAL, dtype=dtype)
    lwx = _log_weights(v, xo, 2.0 * sx)
    lwy = _log_weights(v, yo, 2.0 * sy)
    lwz = _log_weights(tables.zs, zo, sz) + jnp.log(jnp.cos(tables.zs * (3.0 * np.pi / 7.0)))

    # per-axis sums f = sum_v (g w) ** p, per loudspeaker / row / plane, floored at -130 dB
    pb = p[:, None]
    floor = 10.0 ** -_EXP_LIMIT

    def axis_sum(log_g: jax.Array, log_w: jax.Array) -> jax.Array:
        """(B, K): sum over V of exp(p (log_g + log_w)); log_g (..., K, V), log_w (B, V)."""
        f = jnp.sum(jnp.exp(pb[..., None] * (log_g + log_w[:, None, :])), axis=-1)
        return jnp.where(f < floor, 0.0, f)

    fx = axis_sum(tables.log_gx, lwx)
    fy = axis_sum(tables.log_gy, lwy)[:, row_idx]
    fz = axis_sum(tables.log_gz, lwz)[:, p_idx]

    # the six faces of the cube: first and last virtual value of each axis (not floored)
    def face(log_g: jax.Array, log_w: jax.Array) -> jax.Array:
        return jnp.exp(pb * (log_g + log_w[:, None]))

    b_x = face(tables.log_gx[..., 0], lwx[:, 0]) + face(tables.log_gx[..., -1], lwx[:, -1])
    b_y = face(tables.log_gy[..., 0], lwy[:, 0]) + face(tables.log_gy[..., -1], lwy[:, -1])
    b_y = b_y[:, row_idx]
    z_last = jnp.broadcast_to(tables.z_last, xo.shape)
    lwz_last = jnp.take_along_axis(lwz, z_last[:, None], axis=1)[:, 0]
    log_gz_last = jnp.take_along_axis(
        jnp.broadcast_to(tables.log_gz, xo.shape + tables.log_gz.shape[-2:]),
        z_last[:, None, None], axis=2)[..., 0]
    b_z = (face(tables.log_gz[..., 0], lwz[:, 0]) + face(log_gz_last, lwz_last))[:, p_idx]

    g_inside = _normalise(fx * fy * fz)
    g_bound = b_x * fy * fz + fx * b_y * fz + fx * fy * b_z
    g_size = _normalise(jnp.power(g_bound + mu[:, None] * g_inside, 1.0 / pb))

    # cross-fade with the point-source gains for small sources
    fade = s_eff < _S_FADE
    angle = s_eff * (np.pi / (2.0 * _S_FADE))
    alpha = jnp.where(fade, jnp.cos(angle), 0.0)[:, None]
    beta = jnp.where(fade, jnp.sin(angle), 1.0)[:, None]
    # one point-source evaluation serves both: the source itself for point blocks, the
    # raised Z for the cross-fade of sized blocks
    is_point = (width == 0) & (height == 0) & (depth == 0)
    point_pos = positions.at[:, 2].set(jnp.where(is_point, positions[:, 2], zo))
    point_gains = allocentric_gains(point, point_pos, excluded)
    g_total = _normalise(alpha * point_gains + beta * g_size)
    return jnp.where(is_point[:, None], point_gains, g_total)


_jit_extent_gains = jax.jit(allocentric_extent_gains)


def allocentric_extent_gains_batched(
    panner: AllocentricExtentPanner,
    positions: np.ndarray,
    width: np.ndarray,
    height: np.ndarray,
    depth: np.ndarray,
    excluded: np.ndarray | None = None,
    chunk: int = 1024,
) -> np.ndarray:
    """:func:`allocentric_extent_gains` over any number of blocks, ``chunk`` at a time.

    positions (B, 3), width/height/depth (B,), excluded optional (B, N) bool; the last chunk is
    padded so that every call has the same shape (one compilation per chunk size, dtype and
    layout). Returns (B, N) float32 numpy gains; memory is bounded by ``chunk``.
    """
    positions = np.asarray(positions, dtype=np.float32).reshape(-1, 3)
    n = len(positions)
    sizes = [np.broadcast_to(np.asarray(s, dtype=np.float32), (n,)) for s in (width, height, depth)]
    n_out = panner.n_speakers
    out = np.zeros((n, n_out), dtype=np.float32)
    if excluded is not None:
        excluded = np.broadcast_to(np.asarray(excluded, dtype=bool), (n, n_out))
    for start in range(0, n, chunk):
        stop = min(start + chunk, n)
        pad = chunk - (stop - start)
        pos = np.pad(positions[start:stop], ((0, pad), (0, 0)))
        w, h, d = (np.pad(s[start:stop], (0, pad)) for s in sizes)
        excl = None if excluded is None else np.pad(excluded[start:stop], ((0, pad), (0, 0)))
        result = _jit_extent_gains(panner, pos, w, h, d, excl)
        out[start:stop] = np.asarray(result)[: stop - start]
    return out
