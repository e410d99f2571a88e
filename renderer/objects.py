"""Gains for render items with typeDefinition == Objects (ITU-R BS.2127 clause 7).

The BS.2127 gain calculator (clause 7.3) computes, for each audioBlockFormat, loudspeaker gains
from the block's position: polar positions through the point-source panner (clause 6.1) and
blocks with the cartesian flag through the allocentric panner on the layout's allocentric
loudspeaker positions (clause 7.3, allocentric panning); then
the block gain and the direct/diffuse split (``sqrt(1 - diffuse)`` for the direct part) are
applied, and LFE channels get no signal.

Everything here is batched: the configured panners are pytrees of arrays, and
:func:`object_block_gains` computes all blocks of all objects in one jitted call, padded to a
few bucket sizes so that compilations are reused.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from adm.model import CartesianPosition, ObjectsBlock, PolarPosition
from layouts.model import Layout
from renderer.allocentric import AllocentricPanner, allocentric_gains, configure_allocentric
from renderer.point_source import PointSourcePanner, cached_point_source, point_source_gains


@dataclass(frozen=True)
class ObjectPanner:
    """Object gain calculation configured for one layout.

    ``lfe_mask``: (n_channels,) bool, True for LFE outputs (always silent for Objects). The
    point-source and allocentric panners are configured when first needed, so a file with
    only cartesian objects never builds the point-source panner's triangulation.
    """

    layout: Layout
    lfe_mask: np.ndarray

    @property
    def point_source(self) -> PointSourcePanner:
        return cached_point_source(self.layout)

    @property
    def allocentric(self) -> AllocentricPanner:
        return _cached_allocentric(self.layout)


@functools.lru_cache(maxsize=16)
def _cached_allocentric(layout: Layout) -> AllocentricPanner:
    return configure_allocentric(layout)


def configure_objects(layout: Layout) -> ObjectPanner:
    """Configure the Objects gain calculation for ``layout``."""
    return ObjectPanner(layout=layout, lfe_mask=layout.is_lfe)


def _polar_to_cartesian(azimuth, elevation, distance):
    az, el = jnp.radians(azimuth), jnp.radians(elevation)
    return distance[..., None] * jnp.stack(
        [-jnp.sin(az) * jnp.cos(el), jnp.cos(az) * jnp.cos(el), jnp.sin(el)], axis=-1)


@jax.jit
def _polar_block_gains(point_source, coords, scale):
    """Gains of polar blocks: coords (B, 3) azimuth, elevation (degrees), distance; scale (B,)
    linear gain applied after panning. Returns (B, n_speakers), non-LFE speakers."""
    polar_vec = _polar_to_cartesian(coords[:, 0], coords[:, 1], coords[:, 2])
    norm = jnp.linalg.norm(polar_vec, axis=-1, keepdims=True)
    # BS.2127: a source at the listening position has no direction; the reference renderer
    # yields NaN gains there and replaces them by 0.
    direction = polar_vec / jnp.where(norm > 0, norm, 1.0)
    gains = jnp.where(norm > 0, point_source_gains(point_source, direction), 0.0)
    return gains * scale[:, None]


@jax.jit
def _cartesian_block_gains(allocentric, coords, scale):
    """Gains of cartesian blocks: coords (B, 3) X, Y, Z (clipped to the unit cube, as
    BS.2127 does); scale (B,). Returns (B, n_speakers), non-LFE speakers."""
    return allocentric_gains(allocentric, jnp.clip(coords, -1.0, 1.0)) * scale[:, None]


def _bucket(n: int) -> int:
    size = 64
    while size < n:
        size *= 2
    return size


def block_parameters(blocks: Sequence[ObjectsBlock]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """coords (B, 3), cartesian (B,) bool, block gain (B,) (linear)."""
    coords = np.zeros((len(blocks), 3))
    cartesian = np.zeros(len(blocks), dtype=bool)
    scale = np.zeros(len(blocks))
    for i, block in enumerate(blocks):
        position = block.position
        if isinstance(position, CartesianPosition):
            coords[i] = (position.x, position.y, position.z)
            cartesian[i] = True
        else:
            assert isinstance(position, PolarPosition)
            coords[i] = (position.azimuth, position.elevation, position.distance)
        scale[i] = block.gain
    return coords, cartesian, scale


def object_block_gains(
    panner: ObjectPanner, blocks: Sequence[ObjectsBlock], extra_scale: np.ndarray | None = None
) -> np.ndarray:
    """Gains of every block before the direct/diffuse split: (B, n_channels) float64, LFE
    channels 0. ``extra_scale`` (B,) multiplies each block's gains (audioObject gain and
    mute). See :func:`direct_diffuse_split`."""
    n_blocks = len(blocks)
    n_channels = panner.layout.n_channels
    if n_blocks == 0:
        return np.zeros((0, n_channels))
    coords, cartesian, scale = block_parameters(blocks)
    if extra_scale is not None:
        scale = scale * extra_scale
    speaker_gains = np.zeros((n_blocks, int((~panner.lfe_mask).sum())))
    for mask, function, configured in (
        (~cartesian, _polar_block_gains, lambda: panner.point_source),
        (cartesian, _cartesian_block_gains, lambda: panner.allocentric),
    ):
        count = int(mask.sum())
        if count == 0:
            continue
        pad = _bucket(count) - count
        result = function(
            configured(),
            jnp.asarray(np.pad(coords[mask], ((0, pad), (0, 0)), constant_values=1.0),
                        jnp.float32),
            jnp.asarray(np.pad(scale[mask], (0, pad)), jnp.float32),
        )
        speaker_gains[mask] = np.asarray(result)[:count]
    gains = np.zeros((n_blocks, n_channels))
    gains[:, ~panner.lfe_mask] = speaker_gains
    return gains


def direct_diffuse_split(
    gains: np.ndarray, blocks: Sequence[ObjectsBlock]
) -> tuple[np.ndarray, np.ndarray]:
    """BS.2127 direct/diffuse split: (direct, diffuse) gains, ``gains * sqrt(1 - diffuse)`` and
    ``gains * sqrt(diffuse)`` per block; each (B, n_channels)."""
    diffuse = np.array([b.diffuse for b in blocks], dtype=float).reshape(-1, 1)
    return gains * np.sqrt(1.0 - diffuse), gains * np.sqrt(diffuse)
