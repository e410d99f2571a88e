"""channelLock for Objects (ITU-R BS.2127 clause 7.3.5), as a position transformation.

A block with channelLock flag 1 is moved onto the nearest loudspeaker (non-LFE), if one lies
closer than ``maxDistance`` (when given; within 1e-5). Among loudspeakers at the same weighted
distance (within 1e-5) the one with the highest priority wins: lowest absolute elevation,
then lowest elevation, then lowest absolute azimuth, then lowest azimuth (real positions).

- Polar (egocentric) blocks: the real loudspeaker directions (unit vectors) and the plain
  Euclidean distance.
- Cartesian (allocentric) blocks: the allocentric loudspeaker positions, with loudspeakers
  excluded by zoneExclusion not considered; the nearest one is chosen by the weighted
  distance ``sqrt(dx^2 / 16 + 4 dy^2 + 32 dz^2)`` (the maxDistance test stays unweighted).

:func:`configure_channel_lock` builds the arrays once per layout; :func:`channel_lock` is a
vectorised numpy function of a batch of B blocks.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from layouts.model import Layout, LayoutError
from renderer.allocentric import allocentric_positions

__all__ = ["ChannelLockConfig", "channel_lock", "configure_channel_lock"]

_TOL = 1e-5
_ALLO_WEIGHTS = np.array([1.0 / 16.0, 4.0, 32.0])


@dataclass(frozen=True, eq=False)
class ChannelLockConfig:
    """channelLock arrays for a layout's N non-LFE loudspeakers (layout order).

    ``ego_positions`` (N, 3): unit vectors of the real positions. ``allo_positions`` (N, 3):
    allocentric positions, or None if the layout has none (cartesian blocks with channelLock
    then raise :class:`layouts.model.LayoutError`). ``priority`` (N,) int: 0 = preferred.
    ``names``: the loudspeaker names.
    """

    names: tuple[str, ...]
    ego_positions: np.ndarray
    allo_positions: np.ndarray | None
    priority: np.ndarray
    allo_problem: str | None = None


def configure_channel_lock(layout: Layout) -> ChannelLockConfig:
    """channelLock configuration for ``layout`` (LFE loudspeakers are left out)."""
    speakers = [s for s in layout.speakers if not s.is_lfe]
    az = np.array([s.azimuth for s in speakers], dtype=float)
    el = np.array([s.elevation for s in speakers], dtype=float)
    # priority order: |el|, then el, then |az|, then az (np.lexsort: last key is primary)
    order = np.lexsort((az, np.abs(az), el, np.abs(el)))
    priority = np.empty(len(speakers), dtype=int)
    priority[order] = np.arange(len(speakers))
    ego = np.array([s.unit_vector for s in speakers], dtype=float).reshape(-1, 3)
    allo: np.ndarray | None
    problem: str | None = None
    try:
        allo = allocentric_positions(layout)
    except LayoutError as exc:
        allo, problem = None, str(exc)
    return ChannelLockConfig(
        names=tuple(s.name for s in speakers),
        ego_positions=ego,
        allo_positions=allo,
        priority=priority,
        allo_problem=problem,
    )


def _lock(positions: np.ndarray, speakers: np.ndarray, priority: np.ndarray,
          max_distance: np.ndarray, usable: np.ndarray, weights: np.ndarray | None
          ) -> np.ndarray:
    """positions (b, 3), speakers (N, 3), max_distance (b,), usable (b, N) -> (b, 3)."""
    diff = positions[:, None, :] - speakers[None, :, :]  # (b, N, 3)
    dist = np.linalg.norm(diff, axis=-1)
    within = np.isnan(max_distance)[:, None] | (dist < max_distance[:, None] + _TOL)
    candidate = usable & within
    has_any = np.any(candidate, axis=1)
    weighted = dist if weights is None else np.sqrt(np.sum(weights * diff**2, axis=-1))
    weighted = np.where(candidate, weighted, np.inf)
    best = np.min(weighted, axis=1, keepdims=True)
    tied = candidate & (weighted < best + _TOL)
    chosen = np.argmin(np.where(tied, priority[None, :], np.iinfo(np.int64).max), axis=1)
    return np.where(has_any[:, None], speakers[chosen], positions)


def channel_lock(
    cfg: ChannelLockConfig,
    positions: np.ndarray,
    flag: np.ndarray,
    max_distance: np.ndarray,
    cartesian: np.ndarray,
    excluded: np.ndarray | None = None,
) -> np.ndarray:
    """Apply channelLock to a batch of B blocks (BS.2127 7.3.5).

    positions: (B, 3) positions after the screen modifiers. flag: (B,) bool channelLock flag.
    max_distance: (B,) maxDistance, NaN where not given (no limit). cartesian: (B,) bool.
    excluded: (B, N) bool, loudspeakers removed by zoneExclusion for cartesian blocks (the
    widened set, :func:`renderer.zones.allocentric_excluded`), or None; it is ignored for
    polar blocks, whose zone exclusion acts on the gains instead.

    Returns (B, 3): each locked block moved onto its chosen loudspeaker's position (unit
    vector for polar blocks, allocentric position for cartesian ones), others unchanged.
    Raises LayoutError for a locked cartesian block on a layout without allocentric
    positions.
    """
    positions = np.array(positions, dtype=float).reshape(-1, 3)
    n_blocks = len(positions)
    flag = np.broadcast_to(np.asarray(flag, dtype=bool), (n_blocks,))
    max_distance = np.broadcast_to(np.asarray(max_distance, dtype=float), (n_blocks,))
    cartesian = np.broadcast_to(np.asarray(cartesian, dtype=bool), (n_blocks,))
    n = len(cfg.names)
    out = positions.copy()

    rows = flag & ~cartesian
    if np.any(rows):
        usable = np.ones((int(rows.sum()), n), dtype=bool)
        out[rows] = _lock(positions[rows], cfg.ego_positions, cfg.priority,
                          max_distance[rows], usable, None)

    rows = flag & cartesian
    if np.any(rows):
        if cfg.allo_positions is None:
            raise LayoutError(f"channelLock on cartesian blocks: {cfg.allo_problem}")
        if excluded is None:
            usable = np.ones((int(rows.sum()), n), dtype=bool)
        else:
            usable = ~np.broadcast_to(np.asarray(excluded, dtype=bool), (n_blocks, n))[rows]
        out[rows] = _lock(positions[rows], cfg.allo_positions, cfg.priority,
                          max_distance[rows], usable, _ALLO_WEIGHTS)
    return out
