"""zoneExclusion for Objects (ITU-R BS.2127 clause 7.3.12).

1. :func:`excluded_speakers`: a non-LFE loudspeaker is excluded by a block when its *nominal*
   position lies in one of the block's zones (within 1e-6): a polar zone tests the nominal
   elevation against [minElevation, maxElevation] and the nominal azimuth against the range
   going anticlockwise from minAzimuth to maxAzimuth (loudspeakers at the poles match any
   azimuth range); a cartesian zone tests the nominal position's unit vector against the box
   [minX, maxX] x [minY, maxY] x [minZ, maxZ].
2. Polar blocks are panned as usual and their gains redistributed away from the excluded
   loudspeakers (:func:`apply_zone_exclusion`): the power of each excluded loudspeaker goes,
   in equal shares, to the non-excluded loudspeakers of the first group of its priority list
   (:func:`zone_exclusion_downmix`) that has any. A loudspeaker's groups are the other
   loudspeakers ordered by the key (layer change, front/back change, distance, front/back
   distance), loudspeakers with equal keys (within 1e-6) forming one group, where

   - layer change: layers B (elevation < -10), M (< 10), U (< 75), T (the rest), with the
     preference (from a layer, best first) B: B M U T; M: M U T B; U: U T M B; T: T U M B;
   - front/back change: |sign(y_from) - sign(y_to)| (sign 0 within 1e-6 of y = 0);
   - distance: between nominal unit vectors; front/back distance: |y_from - y_to|.

   If no loudspeaker or every loudspeaker is excluded, nothing is redistributed.
3. Cartesian blocks are panned by the allocentric panner on the remaining loudspeakers
   (:func:`allocentric_excluded` adds the rest of the row of an excluded side loudspeaker).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np

from adm.model import CartesianZone, PolarZone, Zone
from layouts.model import Layout, polar_to_cartesian
from renderer.allocentric import allocentric_positions

__all__ = [
    "allocentric_excluded",
    "apply_zone_exclusion",
    "excluded_speakers",
    "zone_exclusion_downmix",
]

_EPS = 1e-6

# preference between layers (B, M, U, T): _LAYER_RANK[from, to], lower is preferred
_LAYER_RANK = np.array([[0, 1, 2, 3], [3, 0, 1, 2], [3, 2, 0, 1], [3, 2, 1, 0]])


def _non_lfe_nominal(layout: Layout) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Nominal azimuths (n,), elevations (n,) and unit vectors (n, 3) of the non-LFE
    loudspeakers."""
    nominal = np.array([s.nominal for s in layout.speakers if not s.is_lfe], dtype=float)
    nominal = nominal.reshape(-1, 2)
    vectors = np.array([polar_to_cartesian(az, el, 1.0) for az, el in nominal]).reshape(-1, 3)
    return nominal[:, 0], nominal[:, 1], vectors


def _in_azimuth_range(az: np.ndarray, start: float, end: float, tol: float) -> np.ndarray:
    """(n,) bool: azimuths ``az`` within the range anticlockwise from ``start`` to ``end``,
    widened by ``tol`` (a range spanning 360 degrees holds every angle)."""
    while end - 360.0 > start:
        end -= 360.0
    while end < start:
        end += 360.0
    lo = start - tol
    x = lo + np.mod(np.asarray(az, dtype=float) - lo, 360.0)
    x = np.where(x >= lo + 360.0, x - 360.0, x)
    return x <= end + tol


def excluded_speakers(layout: Layout, zones_per_block: Sequence[tuple[Zone, ...]]) -> np.ndarray:
    """(B, n) bool: the non-LFE loudspeakers (layout order) excluded by each block's zones.

    zones_per_block: for each of the B blocks, its zoneExclusion zones (empty: none).
    Raises TypeError for a zone of another type.
    """
    az, el, vec = _non_lfe_nominal(layout)
    out = np.zeros((len(zones_per_block), len(az)), dtype=bool)
    at_pole = np.abs(el) > 90.0 - _EPS
    for b, zones in enumerate(zones_per_block):
        for zone in zones:
            if isinstance(zone, CartesianZone):
                out[b] |= (
                    (vec[:, 0] - _EPS < zone.max_x) & (vec[:, 0] + _EPS > zone.min_x)
                    & (vec[:, 1] - _EPS < zone.max_y) & (vec[:, 1] + _EPS > zone.min_y)
                    & (vec[:, 2] - _EPS < zone.max_z) & (vec[:, 2] + _EPS > zone.min_z)
                )
            elif isinstance(zone, PolarZone):
                out[b] |= (
                    (el - _EPS < zone.max_elevation) & (el + _EPS > zone.min_elevation)
                    & (at_pole | _in_azimuth_range(az, zone.min_azimuth, zone.max_azimuth, _EPS))
                )
            else:
                raise TypeError(f"zoneExclusion: unexpected zone {zone!r}")
    return out


def allocentric_excluded(layout: Layout, excluded: np.ndarray) -> np.ndarray:
    """(B, n) bool: the loudspeakers the allocentric panner leaves out for cartesian blocks.

    excluded: (B, n) from :func:`excluded_speakers`. An excluded loudspeaker on a side wall
    but not in a corner (allocentric |X| = 1, |Y| != 1) also excludes every loudspeaker of
    its row (same allocentric Y and Z), so that the remaining rows stay pannable; if that
    leaves no loudspeaker, none is excluded. Raises LayoutError if the layout has no
    allocentric positions.
    """
    pos = allocentric_positions(layout)
    excluded = np.asarray(excluded, dtype=bool).reshape(-1, len(pos))
    side = (np.abs(pos[:, 0]) == 1.0) & (np.abs(pos[:, 1]) != 1.0)
    row_mates = (pos[:, None, 1] == pos[None, :, 1]) & (pos[:, None, 2] == pos[None, :, 2])
    trigger = excluded & side
    widened = excluded | np.any(trigger[:, :, None] & row_mates[None], axis=1)
    return widened & ~np.all(widened, axis=1, keepdims=True)


def _layer(el: np.ndarray) -> np.ndarray:
    return np.select([el < -10.0, el < 10.0, el < 75.0], [0, 1, 2], default=3)


def _sign(x: np.ndarray) -> np.ndarray:
    return np.where(x > _EPS, 1, np.where(x < -_EPS, -1, 0))


@functools.lru_cache(maxsize=32)
def _priority_groups(layout: Layout) -> tuple[tuple[tuple[int, ...], ...], ...]:
    """For each non-LFE loudspeaker, the other loudspeakers grouped by priority key (best
    group first; the loudspeaker itself alone in the first group)."""
    _, el, vec = _non_lfe_nominal(layout)
    n = len(el)
    layer = _layer(el)
    sign_y = _sign(vec[:, 1])
    out = []
    for i in range(n):
        keys = np.stack(
            [
                _LAYER_RANK[layer[i], layer].astype(float),
                np.abs(sign_y[i] - sign_y).astype(float),
                np.linalg.norm(vec[i] - vec, axis=1),
                np.abs(vec[i, 1] - vec[:, 1]),
            ],
            axis=1,
        )
        # merge equal keys (tolerance) in order of first appearance, then sort the groups
        group_keys: list[np.ndarray] = []
        members: list[list[int]] = []
        for j in range(n):
            for g, key in enumerate(group_keys):
                if np.all(np.abs(keys[j] - key) < _EPS):
                    members[g].append(j)
                    break
            else:
                group_keys.append(keys[j])
                members.append([j])
        order = sorted(range(len(group_keys)), key=lambda g: tuple(group_keys[g]))
        groups = tuple(tuple(members[g]) for g in order)
        if groups[0] != (i,):
            raise ValueError(
                f"layout {layout.name}: zone exclusion priority of loudspeaker {i} does not "
                "start with itself (two loudspeakers share a nominal position?)"
            )
        out.append(groups)
    return tuple(out)


@functools.lru_cache(maxsize=256)
def _downmix_cached(layout: Layout, mask: bytes) -> np.ndarray:
    excluded = np.frombuffer(mask, dtype=bool)
    n = len(excluded)
    if np.all(excluded) or not np.any(excluded):
        return np.eye(n)
    downmix = np.zeros((n, n))
    for i, groups in enumerate(_priority_groups(layout)):
        for group in groups:
            idx = np.array(group)
            keep = idx[~excluded[idx]]
            if len(keep):
                downmix[i, keep] = 1.0 / len(keep)
                break
    downmix.setflags(write=False)
    return downmix


def zone_exclusion_downmix(layout: Layout, excluded: np.ndarray) -> np.ndarray:
    """(n, n) power downmix for one set of excluded non-LFE loudspeakers (n,) bool:
    ``M[i, j]`` is the share of loudspeaker i's power sent to loudspeaker j (rows sum to 1).
    Identity when none or all are excluded. Cached per layout and mask (read-only array)."""
    excluded = np.ascontiguousarray(excluded, dtype=bool).reshape(-1)
    n = sum(1 for s in layout.speakers if not s.is_lfe)
    if len(excluded) != n:
        raise ValueError(
            f"zone exclusion mask has {len(excluded)} entries, layout {layout.name} has {n} "
            "non-LFE loudspeakers"
        )
    return _downmix_cached(layout, excluded.tobytes())


def apply_zone_exclusion(layout: Layout, gains: np.ndarray, excluded: np.ndarray) -> np.ndarray:
    """(B, n) gains with each block's excluded loudspeakers' power redistributed:
    ``sqrt(gains^2 @ M)`` with M the block's :func:`zone_exclusion_downmix`.

    gains: (B, n) non-LFE loudspeaker gains of polar blocks; excluded: (B, n) bool.
    """
    gains = np.asarray(gains, dtype=float)
    excluded = np.asarray(excluded, dtype=bool).reshape(gains.shape)
    out = np.array(gains, dtype=float, copy=True)
    rows = np.flatnonzero(np.any(excluded, axis=1) & ~np.all(excluded, axis=1))
    if len(rows) == 0:
        return out
    masks, inverse = np.unique(excluded[rows], axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    for m, mask in enumerate(masks):
        sel = rows[inverse == m]
        out[sel] = np.sqrt(gains[sel] ** 2 @ zone_exclusion_downmix(layout, mask))
    return out
