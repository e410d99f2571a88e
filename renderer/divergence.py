"""objectDivergence for Objects (ITU-R BS.2127 clause 7.3.7).

A diverged block is rendered as three virtual sources - left, centre, right - whose panned
gains are combined in power: ``g = sqrt(sum_k w_k g_k^2)``. For a divergence value ``v`` the
power weights are ``w_left = w_right = v / (v + 1)`` and ``w_centre = (1 - v) / (v + 1)``,
so they sum to 1, give the centre only at ``v = 0``, 1/3 each at ``v = 0.5`` and the two sides
only (1/2 each) at ``v = 1``.

- Polar blocks: the side sources are at azimuth +/- azimuthRange (default 45 degrees) and
  elevation 0 in the coordinate system turned so that the block's direction is straight
  ahead, at the block's distance.
- Cartesian blocks: the side sources are the block's position moved by +/- positionRange
  (default 0) along X, clipped to the unit cube.

:func:`diverge` is vectorised over a batch of B blocks and always returns three sources
(weights 0, 1, 0 and three copies of the position when a block has no divergence).
"""

from __future__ import annotations

import numpy as np

from layouts.model import polar_to_cartesian

__all__ = ["DEFAULT_AZIMUTH_RANGE", "diverge"]

DEFAULT_AZIMUTH_RANGE = 45.0  # degrees (BS.2076 default of azimuthRange)


def diverge(
    positions: np.ndarray,
    value: np.ndarray,
    azimuth_range: np.ndarray,
    position_range: np.ndarray,
    cartesian: np.ndarray,
    messages: list[str] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The three virtual sources of a batch of B blocks (BS.2127 7.3.7).

    positions: (B, 3) cartesian positions (after screen modifiers and channelLock).
    value: (B,) objectDivergence value (0 = none). azimuth_range: (B,) degrees, NaN = not
    given. position_range: (B,) NaN = not given. cartesian: (B,) bool.
    messages: if a list, warnings are appended to it (azimuthRange given for a cartesian
    block, positionRange given for a polar block, as the reference renderer warns; the
    value that does not apply is ignored).

    Returns ``(weights, sources)``: weights (B, 3) power weights of the left, centre and
    right sources; sources (B, 3, 3) their positions (axis 1: left, centre, right).
    """
    positions = np.array(positions, dtype=float).reshape(-1, 3)
    n = len(positions)
    value = np.broadcast_to(np.asarray(value, dtype=float), (n,))
    azimuth_range = np.broadcast_to(np.asarray(azimuth_range, dtype=float), (n,))
    position_range = np.broadcast_to(np.asarray(position_range, dtype=float), (n,))
    cartesian = np.broadcast_to(np.asarray(cartesian, dtype=bool), (n,))

    active = value != 0.0
    side = np.where(active, value / (value + 1.0), 0.0)
    centre = np.where(active, (1.0 - value) / (value + 1.0), 1.0)
    weights = np.stack([side, centre, side], axis=1)
    sources = np.repeat(positions[:, None, :], 3, axis=1)

    if messages is not None:
        for i in np.flatnonzero(active & cartesian & ~np.isnan(azimuth_range)):
            messages.append(
                f"block {i}: azimuthRange specified for a cartesian block; "
                "using cartesian divergence (positionRange)"
            )
        for i in np.flatnonzero(active & ~cartesian & ~np.isnan(position_range)):
            messages.append(
                f"block {i}: positionRange specified for a polar block; "
                "using polar divergence (azimuthRange)"
            )

    rows = active & cartesian
    if np.any(rows):
        pr = np.nan_to_num(position_range[rows], nan=0.0)
        offset = np.zeros((len(pr), 3))
        offset[:, 0] = pr
        p = positions[rows]
        sources[rows] = np.clip(np.stack([p + offset, p, p - offset], axis=1), -1.0, 1.0)

    rows = active & ~cartesian
    if np.any(rows):
        p = positions[rows]
        ar = np.where(np.isnan(azimuth_range[rows]), DEFAULT_AZIMUTH_RANGE, azimuth_range[rows])
        dist = np.linalg.norm(p, axis=-1)
        az = -np.degrees(np.arctan2(p[:, 0], p[:, 1]))
        el = np.degrees(np.arctan2(p[:, 2], np.hypot(p[:, 0], p[:, 1])))
        # local axes (b, 3 axes, 3): right, front (the block's direction), up
        axes = np.stack(
            [
                polar_to_cartesian(az - 90.0, np.zeros_like(el), np.ones_like(el)),
                polar_to_cartesian(az, el, np.ones_like(el)),
                polar_to_cartesian(az, el + 90.0, np.ones_like(el)),
            ],
            axis=1,
        )
        zeros = np.zeros_like(ar)
        left_local = polar_to_cartesian(ar, zeros, dist)  # (b, 3) coordinates in the local axes
        right_local = polar_to_cartesian(-ar, zeros, dist)
        left = np.einsum("bi,bij->bj", left_local, axes)
        right = np.einsum("bi,bij->bj", right_local, axes)
        sources[rows] = np.stack([left, p, right], axis=1)
    return weights, sources
