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

from adm.columns import ObjectsBlockColumns
from adm.model import DEFAULT_SCREEN, CartesianPosition, ObjectsBlock, PolarPosition, Screen
from layouts.model import Layout, polar_to_cartesian
from renderer.allocentric import AllocentricPanner, allocentric_gains, configure_allocentric
from renderer.allocentric_extent import (
    allocentric_extent_gains_batched,
    configure_allocentric_extent,
)
from renderer.channel_lock import channel_lock, configure_channel_lock
from renderer.divergence import diverge
from renderer.extent import cached_polar_extent, polar_extent_gains_batched
from renderer.point_source import PointSourcePanner, cached_point_source, point_source_gains
from renderer.screen import screen_edge_lock, screen_scale
from renderer.zones import allocentric_excluded, apply_zone_exclusion, excluded_speakers


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


GAIN_BATCH = 16384
"""Blocks per call of the batched gain kernels (a power of two: one compiled shape)."""


_BATCH_SIZES: dict[object, int] = {}  # the largest batch size used by each gain kernel


def _bucket(n: int) -> int:
    size = 1024
    while size < n:
        size *= 2
    return size


def _in_batches(kernel, configured, coords: np.ndarray, scale: np.ndarray,
                minimum: int = 0) -> np.ndarray:
    """``kernel(configured, coords, scale)`` (:func:`_polar_block_gains` or
    :func:`_cartesian_block_gains`) of rows ``coords`` (N, 3), ``scale`` (N,): (N,
    n_speakers). In batches of one size, so that one or two compiled shapes serve every file
    and the kernels' working memory does not grow with it: GAIN_BATCH rows, the last batch
    overlapping the one before it; a few rows (small files) in 1024s, unless this process
    has compiled a larger size already (a few rows would otherwise cost a compilation of
    their own), or than ``minimum``."""
    n = len(coords)
    size = GAIN_BATCH if n > GAIN_BATCH // 16 else _bucket(n)
    size = max(size, minimum, _BATCH_SIZES.get(kernel, 0))
    _BATCH_SIZES[kernel] = size
    out = None
    for begin in range(0, n, size):
        chunk = slice(max(0, min(begin, n - size)), begin + size)
        rows = coords[chunk]
        pad = size - len(rows)
        result = np.asarray(kernel(
            configured,
            np.pad(rows, ((0, pad), (0, 0)), constant_values=1.0).astype(np.float32),
            np.pad(scale[chunk], (0, pad)).astype(np.float32)))[:len(rows)]
        if out is None:
            out = np.zeros((n, result.shape[1]))
        out[chunk] = result
    return out


def point_gains(configured: PointSourcePanner | AllocentricPanner,
                coords: np.ndarray) -> np.ndarray:
    """Plain point-source gains of positions ``coords`` (N, 3) with a configured panner: for
    a :class:`PointSourcePanner`, azimuth, elevation (degrees) and distance; for an
    :class:`AllocentricPanner`, X, Y, Z (clipped to the unit cube). Returns (N, n_speakers)
    over the non-LFE loudspeakers, through the compiled kernels of the Objects blocks, in
    batches of their large size (so that a DirectSpeakers channel panned between loudspeakers
    costs no compilation of its own in a file with objects)."""
    kernel = (_cartesian_block_gains if isinstance(configured, AllocentricPanner)
              else _polar_block_gains)
    coords = np.asarray(coords, np.float64).reshape(-1, 3)
    return _in_batches(kernel, configured, coords, np.ones(len(coords)), GAIN_BATCH)


def block_parameters(blocks: Sequence[ObjectsBlock]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """coords (B, 3), cartesian (B,) bool, block gain (B,) (linear)."""
    if isinstance(blocks, ObjectsBlockColumns):
        return blocks.position, blocks.cartesian, blocks.gain
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


def needs_full_pipeline(block: ObjectsBlock) -> bool:
    """True if the block uses any BS.2127 step beyond plain point-source panning: extent
    (or a polar distance below 1, which the standard spreads like extent), screenRef,
    screenEdgeLock, channelLock, objectDivergence or zoneExclusion."""
    lock = block.screen_edge_lock
    return bool(block.width or block.height or block.depth or block.screen_ref
                or lock.horizontal or lock.vertical or block.channel_lock.flag
                or block.object_divergence.value or block.zone_exclusion
                or (not block.cartesian and block.position.distance < 1.0))


def object_block_gains(
    panner: ObjectPanner,
    blocks: Sequence[ObjectsBlock],
    extra_scale: np.ndarray | None = None,
    reference_screen: Screen = DEFAULT_SCREEN,
    messages: list[str] | None = None,
    reproduction_screen: Screen | None = DEFAULT_SCREEN,
) -> np.ndarray:
    """Gains of every block before the direct/diffuse split: (B, n_channels) float64, LFE
    channels 0. ``extra_scale`` (B,) multiplies each block's gains (audioObject gain and
    mute). ``reference_screen``: the programme's (for screenRef); ``reproduction_screen``: the
    room's (None: no screen). Warnings of the standard's
    steps are appended to ``messages``. See :func:`direct_diffuse_split`.

    Blocks that are plain point sources take one batched JAX call per panner; the others go
    through the whole BS.2127 gain calculation (:func:`_full_pipeline_gains`).
    """
    n_blocks = len(blocks)
    n_channels = panner.layout.n_channels
    if n_blocks == 0:
        return np.zeros((0, n_channels))
    coords, cartesian, scale = block_parameters(blocks)
    if extra_scale is not None:
        scale = scale * extra_scale
    full = (blocks.needs_full_pipeline() if isinstance(blocks, ObjectsBlockColumns)
            else np.array([needs_full_pipeline(b) for b in blocks], dtype=bool))
    speaker_gains = np.zeros((n_blocks, int((~panner.lfe_mask).sum())))
    for mask, function, configured in (
        (~cartesian & ~full, _polar_block_gains, lambda: panner.point_source),
        (cartesian & ~full, _cartesian_block_gains, lambda: panner.allocentric),
    ):
        rows = np.flatnonzero(mask)
        if len(rows):
            speaker_gains[rows] = _in_batches(function, configured(), coords[rows], scale[rows])
    if full.any():
        chosen = [blocks[i] for i in np.flatnonzero(full)]
        speaker_gains[full] = _full_pipeline_gains(
            panner.layout, chosen, coords[full], cartesian[full], reference_screen,
            reproduction_screen, messages) * scale[full, None]
    gains = np.zeros((n_blocks, n_channels))
    gains[:, ~panner.lfe_mask] = speaker_gains
    return gains


def _full_pipeline_gains(layout: Layout, blocks: Sequence[ObjectsBlock], coords: np.ndarray,
                         cartesian: np.ndarray, reference_screen: Screen,
                         reproduction: Screen | None, messages: list[str] | None) -> np.ndarray:
    """The BS.2127 clause 7.3 gain calculation for B blocks, in the standard's order:
    position, screen scaling (7.3.3), screen edge lock (7.3.4), channel lock (7.3.5, with the
    zone-excluded loudspeakers removed for cartesian blocks), divergence (7.3.7), extent
    panning of each diverged source (polar 7.3.8 / allocentric), their power sum, zone
    exclusion for polar blocks (7.3.11). Returns (B, n_speakers) gains without block gain.
    """
    b = len(blocks)
    positions = np.where(
        cartesian[:, None], np.clip(coords, -1.0, 1.0),
        polar_to_cartesian(coords[:, 0], coords[:, 1], coords[:, 2]))
    positions = screen_scale(positions, np.array([x.screen_ref for x in blocks]),
                             reference_screen, reproduction, cartesian, layout)
    positions = screen_edge_lock(
        positions, [x.screen_edge_lock.horizontal for x in blocks],
        [x.screen_edge_lock.vertical for x in blocks], reproduction, cartesian, layout)
    excluded = excluded_speakers(layout, [x.zone_exclusion for x in blocks])
    excluded_allo = allocentric_excluded(layout, excluded) if cartesian.any() else excluded
    nan = float("nan")
    positions = channel_lock(
        cached_channel_lock(layout), positions,
        np.array([x.channel_lock.flag for x in blocks]),
        np.array([x.channel_lock.max_distance if x.channel_lock.max_distance is not None
                  else nan for x in blocks]),
        cartesian, excluded_allo)

    def optional(values):
        return np.array([nan if v is None else v for v in values], dtype=float)

    weights, sources = diverge(
        positions, np.array([x.object_divergence.value for x in blocks], dtype=float),
        optional([x.object_divergence.azimuth_range for x in blocks]),
        optional([x.object_divergence.position_range for x in blocks]), cartesian, messages)
    width = np.array([x.width for x in blocks], dtype=float)
    height = np.array([x.height for x in blocks], dtype=float)
    depth = np.array([x.depth for x in blocks], dtype=float)
    n_speakers = excluded.shape[1]
    power = np.zeros((b, n_speakers))
    for k in range(sources.shape[1]):
        for rows, is_cartesian in ((~cartesian, False), (cartesian, True)):
            rows = rows & (weights[:, k] > 0)
            if not rows.any():
                continue
            if is_cartesian:
                allo_excluded = excluded_allo[rows]
                g = allocentric_extent_gains_batched(
                    cached_allocentric_extent(layout), sources[rows, k], width[rows],
                    height[rows], depth[rows],
                    excluded=allo_excluded if allo_excluded.any() else None)
            else:
                g = polar_extent_gains_batched(
                    cached_polar_extent(layout), sources[rows, k], width[rows], height[rows],
                    depth[rows])
            power[rows] += weights[rows, k, None] * np.square(g.astype(np.float64))
    gains = np.sqrt(power)
    polar = ~cartesian
    if polar.any():
        gains[polar] = apply_zone_exclusion(layout, gains[polar], excluded[polar])
    return np.nan_to_num(gains)


@functools.lru_cache(maxsize=16)
def cached_channel_lock(layout: Layout):
    return configure_channel_lock(layout)


@functools.lru_cache(maxsize=16)
def cached_allocentric_extent(layout: Layout):
    return configure_allocentric_extent(layout)


def direct_diffuse_split(
    gains: np.ndarray, blocks: Sequence[ObjectsBlock]
) -> tuple[np.ndarray, np.ndarray]:
    """BS.2127 direct/diffuse split: (direct, diffuse) gains, ``gains * sqrt(1 - diffuse)`` and
    ``gains * sqrt(diffuse)`` per block; each (B, n_channels)."""
    if isinstance(blocks, ObjectsBlockColumns):
        diffuse = blocks.diffuse.reshape(-1, 1)
    else:
        diffuse = np.array([b.diffuse for b in blocks], dtype=float).reshape(-1, 1)
    return gains * np.sqrt(1.0 - diffuse), gains * np.sqrt(diffuse)
