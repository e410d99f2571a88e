"""Allocentric point-source panner for cartesian objects (ITU-R BS.2127 clause 7.3, gain
calculator: allocentric panning of blocks with ``cartesian="1"``).

The loudspeakers of a layout sit at *allocentric* positions (X right, Y front, Z up, in the
unit cube; BS.2127 table of allocentric loudspeaker positions, ``layouts/data``). They are
grouped into horizontal *planes* (equal Z), each plane into *rows* (equal Y) and each row into
*columns* (one loudspeaker each, sorted by X). A source at (x, y, z) is panned separately along
each axis, with the same one-dimensional law:

- between the two neighbouring values ``a < b`` of the grid that bracket ``v``:
  ``t = (v - a) / (b - a)``, gains ``cos(t pi/2)`` for ``a`` and ``sin(t pi/2)`` for ``b``
  (equal-power, so each axis keeps the sum of squares 1);
- at or beyond the first/last value (or when the grid has one value): gain 1 on that value
  (positions outside the loudspeakers' extent are clamped to it).

Z picks (up to) two planes; in each of them Y picks two rows; in each row X picks two
loudspeakers. A loudspeaker's gain is the product of its plane, row and column gains, so the
total power (sum of squared gains) is exactly 1.

The panner is configured once per layout with numpy (:func:`configure_allocentric`) into a
pytree of arrays (:class:`AllocentricPanner`); the gains are a pure, jit-compatible JAX
function (:func:`allocentric_gains`) of any batch of positions. The grid is kept as padded
(P planes, R rows, C columns) arrays with validity masks, which also lets a per-block set of
excluded loudspeakers (zone exclusion; :func:`allocentric_exclusion`) be applied without
reconfiguring: the tree is then built, as BS.2127 does, from the remaining loudspeakers only.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import jax
import jax.numpy as jnp
import numpy as np

from layouts.model import Layout, LayoutError
from renderer.jax_setup import on_device

__all__ = [
    "AllocentricPanner",
    "allocentric_exclusion",
    "allocentric_gains",
    "allocentric_positions",
    "configure_allocentric",
]

_BIG = 1e9  # sentinel beyond any grid value (grids lie in [-1, 1])


@jax.tree_util.register_dataclass
@dataclass(frozen=True)
class AllocentricPanner:
    """Allocentric panner configured for one layout's non-LFE loudspeakers (N of them).

    Array fields (P planes, R rows per plane, C columns per row, padded):

    - ``plane_z`` (P,): Z of each plane, ascending.
    - ``row_y`` (P, R): Y of each row of a plane, ascending.
    - ``col_x`` (P, R, C): X of each loudspeaker of a row, ascending.
    - ``cell_real`` (P, R, C) bool: the cell holds a loudspeaker (False for padding).
    - ``cell_speaker`` (P, R, C) int: index (0..N-1) of that loudspeaker (0 for padding).
    - ``speaker_cell`` (N, 3) int: (plane, row, column) of each loudspeaker.
    - ``side`` (N,) bool: loudspeaker on a side wall but not in a corner (|X| = 1, |Y| != 1).
    - ``row_mates`` (N, N) bool: same Y and Z (same row).
    - ``positions`` (N, 3): the allocentric positions, in output order.

    ``names`` (static): loudspeaker names in output order (the layout order, LFE removed).
    """

    plane_z: jax.Array
    row_y: jax.Array
    col_x: jax.Array
    cell_real: jax.Array
    cell_speaker: jax.Array
    speaker_cell: jax.Array
    side: jax.Array
    row_mates: jax.Array
    positions: jax.Array
    names: tuple[str, ...] = field(metadata=dict(static=True), default=())

    @property
    def n_speakers(self) -> int:
        return len(self.names)


def allocentric_positions(layout: Layout) -> np.ndarray:
    """(N, 3) allocentric positions of the layout's non-LFE loudspeakers, in layout order.

    Raises LayoutError if the layout lacks a position for one of them (BS.2127 defines them
    only for the BS.2051 layouts; our extra layouts carry their own).
    """
    table = dict(layout.allocentric_positions)
    out = []
    for s in layout.speakers:
        if s.is_lfe:
            continue
        if s.name not in table:
            raise LayoutError(
                f"layout {layout.name}: no allocentric position for loudspeaker {s.name}; "
                "cartesian objects cannot be rendered on it"
            )
        out.append(table[s.name])
    return np.asarray(out, dtype=np.float64).reshape(-1, 3)


def configure_allocentric(layout: Layout) -> AllocentricPanner:
    """Build the plane/row/column grid of the layout's non-LFE loudspeakers (numpy, once).

    Raises LayoutError if an allocentric position is missing or two loudspeakers share one.
    """
    pos = allocentric_positions(layout)
    names = tuple(s.name for s in layout.speakers if not s.is_lfe)
    n = len(names)
    if n == 0:
        raise LayoutError(f"layout {layout.name}: no non-LFE loudspeakers to pan to")
    if len({tuple(p) for p in pos}) != n:
        raise LayoutError(f"layout {layout.name}: two loudspeakers share an allocentric position")

    planes = np.unique(pos[:, 2])
    rows = [np.unique(pos[pos[:, 2] == z, 1]) for z in planes]
    n_p = len(planes)
    n_r = max(len(r) for r in rows)
    cols = [[np.sort(pos[(pos[:, 2] == z) & (pos[:, 1] == y), 0]) for y in rows[p]]
            for p, z in enumerate(planes)]
    n_c = max(len(c) for row in cols for c in row)

    row_y = np.zeros((n_p, n_r))
    col_x = np.zeros((n_p, n_r, n_c))
    cell_real = np.zeros((n_p, n_r, n_c), dtype=bool)
    cell_speaker = np.zeros((n_p, n_r, n_c), dtype=np.int32)
    speaker_cell = np.zeros((n, 3), dtype=np.int32)
    for k, (x, y, z) in enumerate(pos):
        p = int(np.searchsorted(planes, z))
        r = int(np.searchsorted(rows[p], y))
        c = int(np.searchsorted(cols[p][r], x))
        row_y[p, r] = y
        col_x[p, r, c] = x
        cell_real[p, r, c] = True
        cell_speaker[p, r, c] = k
        speaker_cell[k] = (p, r, c)

    side = (np.abs(pos[:, 0]) == 1.0) & (np.abs(pos[:, 1]) != 1.0)
    row_mates = (pos[:, None, 1] == pos[None, :, 1]) & (pos[:, None, 2] == pos[None, :, 2])
    return AllocentricPanner(
        plane_z=on_device(planes),
        row_y=on_device(row_y),
        col_x=on_device(col_x),
        cell_real=on_device(cell_real),
        cell_speaker=on_device(cell_speaker),
        speaker_cell=on_device(speaker_cell),
        side=on_device(side),
        row_mates=on_device(row_mates),
        positions=on_device(pos),
        names=names,
    )


def _axis_weights(v: jax.Array, grid: jax.Array, valid: jax.Array) -> jax.Array:
    """One-dimensional equal-power panning weights over the valid entries of a grid.

    v: (...,) source coordinate, broadcastable against ``grid.shape[:-1]``.
    grid: (..., n) values (distinct among valid entries); valid: (..., n) bool.
    Returns (..., n) weights: cos/sin of ``t pi/2`` on the two valid values bracketing ``v``,
    1 on the nearest end value when ``v`` is at/beyond it; 0 on invalid entries and where no
    entry is valid.
    """
    first = jnp.min(jnp.where(valid, grid, _BIG), axis=-1)
    last = jnp.max(jnp.where(valid, grid, -_BIG), axis=-1)
    vc = jnp.clip(v, first, jnp.maximum(first, last))[..., None]
    below = valid & (grid <= vc)
    above = valid & (grid > vc)
    lo = jnp.max(jnp.where(below, grid, -_BIG), axis=-1, keepdims=True)
    hi = jnp.min(jnp.where(above, grid, _BIG), axis=-1, keepdims=True)
    has_hi = jnp.any(above, axis=-1, keepdims=True)
    den = jnp.where(has_hi, hi - lo, 1.0)
    t = jnp.where(has_hi, (vc - lo) / den, 0.0)
    angle = t * (jnp.pi / 2)
    w_lo = jnp.where(valid & (grid == lo), jnp.cos(angle), 0.0)
    w_hi = jnp.where(above & (grid == hi), jnp.sin(angle), 0.0)
    return w_lo + w_hi


def allocentric_exclusion(panner: AllocentricPanner, excluded: jax.Array) -> jax.Array:
    """Loudspeakers the allocentric panner must skip, from the zone-exclusion set.

    excluded: (..., N) bool, loudspeakers excluded by the block's zoneExclusion.
    Returns (..., N) bool: BS.2127 also removes every loudspeaker of the row of an excluded
    side loudspeaker (|X| = 1, |Y| != 1), so that the remaining rows stay pannable; if that
    leaves no loudspeaker, nothing is excluded.
    """
    excluded = jnp.asarray(excluded, dtype=bool)
    trigger = excluded & panner.side  # (..., N)
    widened = excluded | jnp.any(trigger[..., :, None] & panner.row_mates, axis=-2)
    return widened & ~jnp.all(widened, axis=-1, keepdims=True)


def allocentric_gains(
    panner: AllocentricPanner, positions: jax.Array, excluded: jax.Array | None = None
) -> jax.Array:
    """Allocentric panning gains (BS.2127 clause 7.3) for cartesian source positions.

    positions: (..., 3) X, Y, Z (allocentric, unit cube; values outside the loudspeakers'
    extent are clamped to it). excluded: optional (..., N) bool of loudspeakers to skip, as
    returned by :func:`allocentric_exclusion` (the panner is then that of the remaining
    loudspeakers; excluded ones get 0). Returns (..., N) gains over the layout's non-LFE
    loudspeakers in layout order, with sum of squares 1. Pure and jit-compatible.
    """
    positions = jnp.asarray(positions)
    if not jnp.issubdtype(positions.dtype, jnp.floating):
        positions = positions.astype(jnp.result_type(float))
    dtype = positions.dtype
    x, y, z = positions[..., 0], positions[..., 1], positions[..., 2]
    batch = positions.shape[:-1]
    n_p, n_r, n_c = panner.col_x.shape

    cell_valid = panner.cell_real
    if excluded is not None:
        active = ~jnp.asarray(excluded, dtype=bool)  # (..., N)
        cell_valid = cell_valid & jnp.take(active, panner.cell_speaker, axis=-1)
    cell_valid = jnp.broadcast_to(cell_valid, batch + (n_p, n_r, n_c))
    row_valid = jnp.any(cell_valid, axis=-1)  # (..., P, R)
    plane_valid = jnp.any(row_valid, axis=-1)  # (..., P)

    wz = _axis_weights(z, panner.plane_z.astype(dtype), plane_valid)  # (..., P)
    wy = _axis_weights(y[..., None], panner.row_y.astype(dtype), row_valid)  # (..., P, R)
    wx = _axis_weights(x[..., None, None], panner.col_x.astype(dtype), cell_valid)  # (..., P, R, C)

    p, r, c = panner.speaker_cell[:, 0], panner.speaker_cell[:, 1], panner.speaker_cell[:, 2]
    return wz[..., p] * wy[..., p, r] * wx[..., p, r, c]
