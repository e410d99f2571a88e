"""Binaural (headphone) rendering of ADM render items with HRTFs.

ITU-R BS.2127 defines loudspeaker rendering only; this renderer goes past it, reusing the
standard's metadata interpretation (block timing, clause 7.2; cartesian-to-polar conversion,
clause 10; the full object pipeline, clause 7) and adding HRTF filtering. Three paths are mixed:

1. **Per-track HRTF path** for plain point sources: Objects items whose blocks are all point
   sources (no extent, divergence, screen or zone processing, channel lock, distance < 1 or
   diffuseness: :func:`renderer.objects.needs_full_pipeline`) and DirectSpeakers channels that
   are not LFE, when fed by a single track (no Matrix mix). Each gets a direction and a gain
   over time: polar blocks give the unit vector of (azimuth, elevation); cartesian blocks
   (Dolby Atmos objects and beds, clipped to the unit cube as BS.2127 does) the direction of
   the BS.2127 clause 10 point conversion (``RC_L`` at (-1, 1, 0) plays at azimuth 30). The
   gain is the block gain times the audioObject gain (0 when muted). Direction and gain form a
   four-column gain function (x, y, z, g) with the speaker renderer's block timing (jumps and
   interpolation ramps); the direction is renormalised.
2. **Virtual-loudspeaker path** for everything else (extent, diffuse, divergence, HOA, Matrix):
   the full BS.2127 render to the 22 non-LFE loudspeakers of ``9+10+3`` (including diffuse
   decorrelation), each loudspeaker signal filtered with the HRTF of its direction. For
   headphones, diffuse objects are also spread and wide objects also decorrelated
   (:func:`binaural_extent`), so both give wide, decorrelated images.
3. **LFE** (DirectSpeakers LFE channels): added to both ears without HRTF, at ``lfe_gain_db``
   (default 0 dB: unity gain to each ear), time-aligned with the HRTF paths.

HRTF filters: for a direction with interpolation weights ``w_i`` over the measured directions
``i`` of its triangle (:mod:`renderer.hrtf`), the filter of each ear is
``sum_i w_i A_i(k) * exp(-j 2 pi k d / N)`` with the delay-free spectra ``A_i`` and the
interpolated onset delay ``d = sum_i w_i d_i`` (samples), times the source gain; at a measured
direction this is exactly its HRIR. The onset delays stay in the filters: an HRIR that is a unit
impulse at sample 0 passes the input unchanged, so the output is time-aligned with the input.

Convolution is overlap-save with an FFT of ``N`` points (at least 2048 and twice the filter
length ``L``) and a hop of ``M = N - L + 1`` samples (1481 for the default set at 48 kHz), all
rows at once: the source signals laid out (rows, frames), so that each window's FFT reads
contiguous samples, their spectra (rows, hops, bins) and the filters (rows, ears, bins), so
that a filter update writes one contiguous row; the sum over sources is taken bin by bin. Gains
(block gain, audioObject gain, the start and end of objects) are applied to the source signals
sample by sample with the speaker renderer's block timing. Directions are followed every
``round(4096 / M)`` hops (3 hops, 93 ms, at 48 kHz with the default set; about the block rate
of exported Atmos masters), taken at the end of that hop; the hop is computed with the previous
and the new filters and crossfaded linearly, so moving sources do not click. Only sources whose
direction changed get a new filter, and a source that is silent points at the direction of its
next block, so its filter is ready when it starts; a source without gain over a whole call of
the stage skips its updates and gets its filter when it is heard again (its row adds exact
zeros meanwhile, and is left out of the FFTs and products where a quarter or more of its row
group is silent). The convolution runs with numpy and the package's C loops on a CPU host (its
forward FFTs eight windows at a time in AVX2 vectors, else scipy's), its rows in groups in
parallel threads, and with the same operations in JAX on an accelerator
(:meth:`BinauralSetup.stage`'s ``backend``).

Memory does not grow with the file's length or its number of blocks: the per-track sources'
gain functions are taken from a :class:`renderer.segment_store.SegmentSource` as the render
reaches them and dropped when they end (:class:`BinauralBuilder` routes Objects items one
audioChannelFormat at a time, so their gain functions can be spooled to a temporary file and
the virtual path planned in batches), and a silence is a zero-gain hold pointing at the next
block, so no lookahead is needed for a silent source to point there.

Head orientation (static): ``yaw`` positive turns the head to the left (anticlockwise seen from
above, like azimuth), ``pitch`` positive raises the nose, ``roll`` positive lowers the right
ear. Source and virtual loudspeaker directions are rotated into head coordinates before the
HRTF lookup.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import numpy as np

from adm.columns import ObjectsBlockColumns
from adm.items import DirectSpeakersRenderItem, HoaRenderItem, ObjectRenderItem
from adm.model import (
    CartesianPosition,
    DirectSpeakersCartesianPosition,
    DirectSpeakersPolarPosition,
    ObjectsBlock,
)
from layouts import get_layout
from layouts.model import Layout
from renderer.direct_speakers import is_lfe_frequency, nominal_speaker_label
from renderer.engine import Mixer
from renderer.objects import needs_full_pipeline
from renderer.plan import GainPlan, build_gain_plan
from renderer.screen import point_cart_to_polar
from renderer.segment_store import SegmentSource, SegmentWindow
from renderer.timing import Segments, block_timings, segments_for_track
from renderer.workers import available_cpus

if TYPE_CHECKING:
    from renderer.hrtf import HrtfModel, HrtfSet

__all__ = [
    "VIRTUAL_LAYOUT_NAME",
    "BinauralBuilder",
    "BinauralSetup",
    "BinauralStage",
    "HeadOrientation",
    "configure_binaural",
    "render_binaural_array",
]

VIRTUAL_LAYOUT_NAME = "9+10+3"
"""Loudspeaker layout of the virtual-loudspeaker path (its LFE channels are dropped)."""

_LFE_LABELS = frozenset({"LFE", "LFE1", "LFE2", "LFEL", "LFER", "RC_LFE"})
_UPDATES_PER_CALL = 5  # a call convolves this many update intervals of hops
_MIN_FFT = 2048
_FINE = 32  # phase factors: exp(-j w k d) with k = FINE * c + f, from two short tables
_UPDATE_SAMPLES = 4096  # directions are followed about this often (85 ms at 48 kHz)
_MAX_ROW_GROUPS = 4  # rows convolved in at most this many threads

try:  # the filter construction and the products in C, where the package was built with them
    from renderer import _binaural as _native
except ImportError:  # pragma: no cover - a build without a C compiler
    _native = None


# ------------------------------------------------------------------------------------------
# Head orientation
# ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class HeadOrientation:
    """Static head orientation in degrees.

    ``yaw`` positive: head turned left (anticlockwise seen from above, like azimuth);
    ``pitch`` positive: nose up; ``roll`` positive: right ear down. Applied in the order yaw,
    then pitch about the turned head's right axis, then roll about its front axis.
    """

    yaw: float = 0.0
    pitch: float = 0.0
    roll: float = 0.0

    def matrix(self) -> np.ndarray:
        """(3, 3) rotation from head to world coordinates (X right, Y front, Z up): a direction
        ``v_head`` of the head's frame is ``R @ v_head`` in the world; ``R.T @ v_world`` is a
        world direction as the head hears it."""
        y, p, r = (math.radians(a) for a in (self.yaw, self.pitch, self.roll))
        rz = np.array([[math.cos(y), -math.sin(y), 0.0],
                       [math.sin(y), math.cos(y), 0.0],
                       [0.0, 0.0, 1.0]])
        rx = np.array([[1.0, 0.0, 0.0],
                       [0.0, math.cos(p), -math.sin(p)],
                       [0.0, math.sin(p), math.cos(p)]])
        ry = np.array([[math.cos(r), 0.0, math.sin(r)],
                       [0.0, 1.0, 0.0],
                       [-math.sin(r), 0.0, math.cos(r)]])
        return rz @ rx @ ry


def _unit_vector(azimuth, elevation) -> np.ndarray:
    """(..., 3) unit vectors of azimuth/elevation in degrees (design.md conventions)."""
    az, el = np.radians(azimuth), np.radians(elevation)
    return np.stack([-np.sin(az) * np.cos(el), np.cos(az) * np.cos(el), np.sin(el)], axis=-1)


# ------------------------------------------------------------------------------------------
# Item routing
# ------------------------------------------------------------------------------------------


def _is_point_object(item: ObjectRenderItem) -> bool:
    blocks = item.channel_format.blocks
    if isinstance(blocks, ObjectsBlockColumns):
        return bool(len(blocks)) and not (blocks.needs_full_pipeline().any()
                                          or blocks.diffuse.any())
    return bool(blocks) and all(
        isinstance(b, ObjectsBlock) and not needs_full_pipeline(b) and b.diffuse == 0.0
        for b in blocks)


def _is_lfe(item: DirectSpeakersRenderItem) -> bool:
    if is_lfe_frequency(item.channel_format.frequency):
        return True
    return any(nominal_speaker_label(label) in _LFE_LABELS or label in _LFE_LABELS
               for block in item.channel_format.blocks for label in block.speaker_labels)


def _block_directions(blocks: Sequence) -> np.ndarray:
    """(B, 3) unit vectors of the blocks' positions (polar, or cartesian converted)."""
    if isinstance(blocks, ObjectsBlockColumns):
        polar, is_cart, cart = blocks.position[:, :2].copy(), blocks.cartesian, blocks.position
    else:
        polar, is_cart, cart = _block_positions(blocks)
    if is_cart.any():
        # BS.2127 clause 10 point conversion of the cube-clipped position; centre -> front
        az, el, _ = point_cart_to_polar(np.clip(cart[is_cart], -1.0, 1.0))
        polar[is_cart, 0], polar[is_cart, 1] = az, el
    return _unit_vector(polar[:, 0], polar[:, 1])


def _block_positions(blocks: Sequence) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Azimuth and elevation (B, 2) of the polar blocks, which are cartesian (B,) and the
    cartesian ones' X, Y, Z (B, 3)."""
    polar = np.zeros((len(blocks), 2))
    cart = np.zeros((len(blocks), 3))
    is_cart = np.zeros(len(blocks), bool)
    for i, block in enumerate(blocks):
        position = block.position
        if isinstance(position, CartesianPosition):
            cart[i], is_cart[i] = (position.x, position.y, position.z), True
        elif isinstance(position, DirectSpeakersCartesianPosition):
            cart[i] = (position.x.value, position.y.value, position.z.value)
            is_cart[i] = True
        elif isinstance(position, DirectSpeakersPolarPosition):
            polar[i] = (position.azimuth.value, position.elevation.value)
        else:
            polar[i] = (position.azimuth, position.elevation)
    return polar, is_cart, cart


def binaural_extent(block: ObjectsBlock) -> ObjectsBlock:
    """The block as the virtual-loudspeaker path renders it for headphones.

    On loudspeakers, BS.2127 extent spreads one coherent signal over several loudspeakers and
    diffuseness decorrelates it per loudspeaker; the room and the listener's movements make
    either sound wide. Over headphones coherent copies from symmetric directions reach both
    ears identically (a wide frontal source would sound mono), and a diffuse source panned to
    one loudspeaker stays a point. So for headphones:

    * diffuseness ``d`` also spreads the source: polar width at least ``360 d`` degrees and
      height at least ``180 d`` degrees; cartesian width, height and depth at least ``d``
      (a fully diffuse sound comes from all around);
    * extent is also decorrelated: the diffuse part becomes ``max(d, e)`` with
      ``e = min(1, max(width, height) / 180)`` for polar sizes (degrees) and
      ``e = min(1, max(width, height, depth))`` for cartesian ones (room units); the
      decorrelated part keeps the extent's loudspeaker gains (BS.2127 clause 7.4 filters).

    A point source (no extent, ``d = 0``) is unchanged.
    """
    d = float(block.diffuse)
    if block.cartesian:
        width, height, depth = (max(v, d) for v in (block.width, block.height, block.depth))
        e = min(1.0, max(width, height, depth))
    else:
        width, height = max(block.width, 360.0 * d), max(block.height, 180.0 * d)
        depth = block.depth
        e = min(1.0, max(width, height) / 180.0)
    if (width, height, depth) == (block.width, block.height, block.depth) and e <= d:
        return block
    return dataclasses.replace(block, width=width, height=height, depth=depth,
                               diffuse=max(d, e))


def _widened(item: ObjectRenderItem) -> ObjectRenderItem:
    """``item`` with :func:`binaural_extent` applied to every block."""
    channel = item.channel_format
    blocks = tuple(binaural_extent(b) for b in channel.blocks)
    if all(a is b for a, b in zip(blocks, channel.blocks)):
        return item
    return dataclasses.replace(item, channel_format=dataclasses.replace(channel, blocks=blocks))


def _scale(item) -> float:
    return 0.0 if item.context.object_mute else float(item.context.object_gain)


# ------------------------------------------------------------------------------------------
# Filters and gains (numpy)
# ------------------------------------------------------------------------------------------


def _triangle_neighbours(triangles: np.ndarray) -> np.ndarray:
    """(T, 3) direction indices of triangles -> (T, 3): the triangle across the edge opposite
    each vertex (the other one with that edge), -1 where there is none."""
    opposite = np.sort(np.stack([triangles[:, [1, 2, 0]], triangles[:, [2, 0, 1]]], axis=-1),
                       axis=-1)                                      # (T, 3, 2) edges
    key = (opposite[..., 0] * (int(triangles.max(initial=0)) + 1) + opposite[..., 1]).ravel()
    order = np.argsort(key, kind="stable")
    pair = np.flatnonzero(key[order][1:] == key[order][:-1])        # an edge's two sides
    neighbours = np.full(len(key), -1, np.int64)
    neighbours[order[pair]] = order[pair + 1] // 3
    neighbours[order[pair + 1]] = order[pair] // 3
    return neighbours.reshape(-1, 3)


class _FilterBank:
    """The HRTF model as arrays for fast filter construction.

    The model's (D, 2, B) delay-free spectra as float32 rows (D, 2 ears * 2 * padded bins), real
    and imaginary parts interleaved, zero past bin B; ``delays`` (D, 2) samples;
    ``inverses`` (T, 3, 3) per-triangle matrices (``v @ inverses[t]`` = barycentric weights
    of direction ``v`` in triangle ``t``); ``triangles`` (T, 3) direction indices;
    ``neighbours`` (T, 3) the triangle across the edge opposite each vertex.
    """

    def __init__(self, model: HrtfModel) -> None:
        self.delays = np.asarray(model.delays, np.float64)
        self.triangles = np.asarray(model.triangles, np.int64)
        self.inverses = np.asarray(model.inverses, np.float64)
        self.neighbours = _triangle_neighbours(self.triangles)
        from renderer.hrtf import barycentric_columns, containing_triangles  # (JAX)

        self.columns = barycentric_columns(model)
        self._containing = containing_triangles
        self.fft_size = int(model.fft_size)
        self.bins = self.fft_size // 2 + 1
        self._n_coarse = self.bins // _FINE + 1
        # bins k = FINE * c + f of the phase factors' two tables: FINE * c, then f
        self._table_k = np.concatenate([np.arange(self._n_coarse) * float(_FINE),
                                        np.arange(_FINE, dtype=np.float64)])
        # the spectra padded to whole tables of phase factors (zeros past the last bin), as
        # float32 rows of re, im interleaved: (D, 2 ears * 2 * n_coarse * FINE)
        n_directions = len(model.aligned_spectra)
        padded = np.zeros((n_directions, 2, self._n_coarse * _FINE), np.complex64)
        padded[..., :self.bins] = model.aligned_spectra
        self._padded_real = padded.view(np.float32).reshape(n_directions, -1)

    def find_triangles(self, v: np.ndarray) -> np.ndarray:
        """(Q, 3) unit vectors -> (Q,) index of a triangle containing each (brute force)."""
        return self._containing(self.columns, v)

    def weights(self, v: np.ndarray, hint: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Barycentric weights (Q, 3) and triangle indices (Q,) of unit vectors ``v`` (Q, 3);
        ``hint`` (Q,): triangles to try first (the previous ones of moving sources)."""
        w = np.einsum("qi,qij->qj", v, self.inverses[hint])
        miss = np.flatnonzero(w.min(axis=1) < -1e-9)
        tri = hint.copy()
        if len(miss):
            tri[miss] = self.find_triangles(v[miss])
            w[miss] = np.einsum("qi,qij->qj", v[miss], self.inverses[tri[miss]])
        w = np.maximum(w, 0.0)
        w /= np.maximum(w.sum(axis=1, keepdims=True), 1e-12)
        # exactly one measured response at (numerically) a measured direction
        snap = w.max(axis=1) >= 1.0 - 1e-6
        w[snap] = (w[snap] == w[snap].max(axis=1, keepdims=True)).astype(np.float64)
        return w, tri

    def filters(self, v: np.ndarray, hint: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Filters (Q, 2, B) complex64 of unit vectors ``v`` (Q, 3) and their triangles:
        ``sum_i w_i A_i(k) exp(-j 2 pi k d / N)``, ``d = sum_i w_i d_i`` per ear."""
        if _native is not None:
            dest = np.empty((len(v), 2, self.bins), np.complex64)
            return dest, self.place(v, hint, dest, np.arange(len(v)))
        w, tri = self.weights(v, hint)
        index = self.triangles[tri]                                   # (Q, 3)
        delay = np.einsum("qi,qie->qe", w, self.delays[index])       # (Q, 2)
        n_coarse = self._n_coarse
        # exp(-j 2 pi k d / N) for k = FINE * c + f: the product of two short tables of
        # complex64 factors, applied one after the other. The phase in turns is reduced to
        # [-1/2, 1/2] in float64, then its cosine and sine taken in float32 (numpy's float32
        # trigonometry is vectorised, 15x quicker than float64's; the factors are complex64)
        turns = (-delay[..., None] / self.fft_size) * self._table_k
        turns -= np.rint(turns)
        angle = (2.0 * np.pi * turns).astype(np.float32)
        factors = np.empty(angle.shape, np.complex64)                 # (Q, 2, n_coarse + FINE)
        factors.real, factors.imag = np.cos(angle), np.sin(angle)
        q, w32 = len(v), w.astype(np.float32)
        # the weighted sum of the three spectra, on their real and imaginary parts, as a
        # sparse (Q, D) matrix of the weights times the padded spectra (one pass in C)
        import scipy.sparse

        weights = scipy.sparse.csr_matrix(
            (w32.ravel(), index.ravel(), np.arange(0, 3 * q + 1, 3)),
            shape=(q, len(self._padded_real)))
        h = (weights @ self._padded_real).view(np.complex64).reshape(q, 2, n_coarse * _FINE)
        by_coarse = h.reshape(q, 2, n_coarse, _FINE)
        by_coarse *= factors[..., :n_coarse, None]
        by_coarse *= factors[..., None, n_coarse:]
        return h[..., :self.bins], tri

    def place(self, v: np.ndarray, hint: np.ndarray, dest: np.ndarray,
              rows: np.ndarray | slice) -> np.ndarray:
        """The filters of unit vectors ``v`` (Q, 3) (see :meth:`filters`; ``hint`` (Q,) the
        triangles to try first) written into ``dest[rows]`` (dest: the convolution's (R, 2,
        B) complex64 filters; rows: Q of them); returns their triangles (Q,). In one pass in
        C where the package was built with it (``_binaural.place``: weights, delays' phase
        factors, the weighted sums, written where they go)."""
        if _native is None:
            new, tri = self.filters(v, hint)
            dest[rows] = new
            return tri
        if isinstance(rows, slice):
            rows = np.arange(dest.shape[0])[rows]
        tri = np.empty(len(v), np.int64)
        _native.place(np.ascontiguousarray(v, np.float64),
                      np.ascontiguousarray(hint, np.int64), self.inverses, self.triangles,
                      self.neighbours, self.delays, self._padded_real, float(self.fft_size),
                      self._n_coarse, _FINE, dest, np.ascontiguousarray(rows, np.int64), tri)
        return tri


def _gain_breakpoints(segments: Segments, order: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Breakpoints (keys, values) of every source's gain (column 3 of its segments) for
    :func:`numpy.interp` over keys ``source * _KEY + sample``: each segment gives its values
    at its first and last samples, and zeros half a sample outside it where no segment of the
    same source follows or precedes directly (gaps are silent). ``order``: the segments'
    indices sorted by source, then first sample."""
    track = segments.track[order].astype(np.int64)
    first = segments.first[order].astype(np.float64)
    last = np.minimum(segments.last[order], _KEY // 2).astype(np.float64) - 1.0
    g_from = segments.gains_from[order, 3].astype(np.float64)
    g_to = segments.gains_to[order, 3].astype(np.float64)
    p_first = segments.ramp_start[order]
    p_last = p_first + (last - first) * segments.ramp_step[order]
    v_first = g_from + p_first * (g_to - g_from)
    v_last = g_from + p_last * (g_to - g_from)
    base = track * _KEY
    joined = np.zeros(len(first), bool)  # segment i directly follows segment i - 1
    joined[1:] = (track[1:] == track[:-1]) & (first[1:] == last[:-1] + 1.0)
    gap_before = ~joined
    gap_after = np.ones(len(first), bool)
    gap_after[:-1] = ~joined[1:]
    keys = np.concatenate([base[gap_before] + first[gap_before] - 0.5, base + first,
                           base + last, base[gap_after] + last[gap_after] + 0.5])
    values = np.concatenate([np.zeros(int(gap_before.sum())), v_first, v_last,
                             np.zeros(int(gap_after.sum()))])
    order = np.argsort(keys, kind="stable")
    return keys[order], values[order]


_KEY = float(2 ** 40)  # samples of one source in the interpolation keys


def _scale_columns(x: np.ndarray, gains: np.ndarray, rows: int = 256) -> None:
    """``x *= gains`` for a C-contiguous (n, C) ``x`` and (C,) ``gains``, on ``rows`` frames
    at a time as one long row against the gains repeated (numpy's broadcast product runs one
    short inner loop per frame)."""
    whole = len(x) - len(x) % rows
    if whole:
        flat = x[:whole].reshape(-1, rows * x.shape[1])
        np.multiply(flat, np.tile(gains.astype(x.dtype), rows), out=flat)
    if whole < len(x):
        x[whole:] *= gains


def _bucket(n: int, minimum: int) -> int:
    size = minimum
    while size < n:
        size *= 2
    return size


# ------------------------------------------------------------------------------------------
# Setup
# ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BinauralSetup:
    """A configured binaural render (see the module doc).

    ``plan``: gain plan of the virtual-loudspeaker path on ``virtual_layout`` (mix it with a
    :class:`renderer.engine.Mixer` of width ``2 * n_outputs`` if ``plan.diffuse`` else
    ``n_outputs``, and pass its output to :meth:`BinauralStage.process`). ``point_tracks``
    (P,): input track of each per-track HRTF source; ``point_segments``: their gain functions
    with 4 columns (x, y, z, gain), ``track`` = source index, as one set in memory or as a
    :class:`renderer.segment_store.SegmentSource` (spooled runs; it can be swept by one
    stage only). Each source's segments cover it from sample 0 to its end: its silences are
    zero-gain holds pointing at its next block (:class:`BinauralBuilder` makes them so).
    ``lfe_tracks``: input tracks
    added to both ears with ``lfe_gain`` (linear). ``virtual_directions`` (V, 3): world
    directions of the virtual loudspeakers. ``rotation`` (3, 3): head -> world.
    """

    plan: GainPlan
    warnings: tuple[str, ...]
    model: Any
    sample_rate: int
    n_tracks: int
    point_tracks: np.ndarray
    point_segments: Segments | SegmentSource
    lfe_tracks: tuple[int, ...]
    lfe_gain: float
    virtual_layout: Layout
    virtual_directions: np.ndarray
    rotation: np.ndarray
    uses_virtual: bool = True
    _bank: Any = field(default=None, repr=False, compare=False)
    _swept: list = field(default_factory=list, repr=False, compare=False)

    @property
    def mixer_width(self) -> int:
        """Columns of the virtual path's mix: ``2 * n_outputs`` with diffuse, else n_outputs."""
        return 2 * self.plan.n_outputs if self.plan.diffuse else self.plan.n_outputs

    def stage(self, backend: str | None = None) -> BinauralStage:
        """A fresh streaming stage for one pass over the audio. ``backend``: "numpy" (host
        FFTs) or "jax" (for accelerators); default: numpy on a CPU, JAX otherwise."""
        return BinauralStage(self, backend)

    def point_source(self) -> SegmentSource:
        """A source of :attr:`point_segments` for one sweep forward in time: a fresh one over
        a set in memory; the spooled source itself, once."""
        if isinstance(self.point_segments, Segments):
            return SegmentSource.of(self.point_segments)
        if self._swept:
            raise ValueError("binaural setup: its spooled point-source segments have been "
                             "swept already; make a new setup for another pass")
        self._swept.append(True)
        return self.point_segments


def _load_model(hrtf, sample_rate: int):
    """A prepared HRTF model at ``sample_rate`` with fft_size N >= 2048 and filters no longer
    than N / 2 + 1 samples (so that the overlap-save hop N - L + 1 is at least N / 2)."""
    if hasattr(hrtf, "aligned_spectra"):  # already prepared
        model = hrtf
        if int(model.sample_rate) != sample_rate:
            raise ValueError(f"HRTF model is for {model.sample_rate} Hz, the render is at "
                             f"{sample_rate} Hz")
        if model.filter_length > model.fft_size // 2 + 1:
            raise ValueError(f"HRTF model: filters of {model.filter_length} samples need an "
                             f"fft_size of at least {2 * (model.filter_length - 1)}")
        return model
    from renderer import hrtf as hrtf_module

    # a SOFA file's model comes from the disk cache by the file's bytes where it was prepared
    # before (the file is then not read as SOFA); this module's source chooses its size
    file = hrtf_module.DEFAULT_SOFA if hrtf is None else hrtf
    if isinstance(file, (str, os.PathLike)):
        model = hrtf_module.model_of_file(file, sample_rate, depends_on=(__file__,))
        if model is not None:
            return model
    if hrtf is None:
        hrtf_set = hrtf_module.default_hrtf()
    elif isinstance(hrtf, (str, os.PathLike)):
        hrtf_set = hrtf_module.load_sofa(hrtf)
    else:
        hrtf_set = hrtf
    model = hrtf_module.prepare_hrtf(hrtf_set, sample_rate)
    fft_size = max(_MIN_FFT, 2 * _bucket(max(model.filter_length - 1, 1), 1))
    if model.fft_size != fft_size:
        model = hrtf_module.prepare_hrtf(hrtf_set, sample_rate, fft_size)
    if isinstance(file, (str, os.PathLike)):
        hrtf_module.keep_model_of_file(file, sample_rate, model, depends_on=(__file__,))
    return model


def _point_segments(item, index: int, sample_rate: int, where: str) -> Segments:
    """Gain function (x, y, z, g) of one per-track source (``track`` = ``index``): its blocks'
    directions and gains with BS.2127 block timing, plus zero-gain holds over the samples
    before its first segment and between segments that point at the next segment's direction
    (a silent source's filter is ready when it starts, whatever the length of the silence)."""
    blocks = item.channel_format.blocks
    values = np.zeros((len(blocks), 4), np.float32)
    values[:, :3] = _block_directions(blocks)
    block_gains = (blocks.gain if isinstance(blocks, ObjectsBlockColumns)
                   else np.array([b.gain for b in blocks], dtype=float))
    values[:, 3] = block_gains * _scale(item)
    timing = block_timings(blocks, sample_rate, item.context.object_start,
                           item.context.object_duration,
                           interpolate=isinstance(item, ObjectRenderItem),
                           where=f"{where}audioChannelFormat {item.channel_format.id}: ")
    seg = segments_for_track(index, timing, values)
    order = np.argsort(seg.first, kind="stable")
    first = seg.first[order]
    before = np.concatenate([[0], seg.last[order][:-1]])  # end of the previous segment
    gap = np.flatnonzero(first > before)
    if not len(gap):
        return seg
    direction = seg.gains_to[order[gap]].copy()
    direction[:, 3] = 0.0
    holds = Segments(track=np.full(len(gap), index, np.int32), first=before[gap],
                     last=first[gap], ramp_start=np.zeros(len(gap)),
                     ramp_step=np.zeros(len(gap)), gains_from=direction, gains_to=direction)
    return Segments.concatenate([seg, holds], 4)


class BinauralBuilder:
    """Routes render items to the three paths of a binaural render (see the module doc), all
    at once or in batches (Objects items read one audioChannelFormat at a time), and makes
    the :class:`BinauralSetup`.

    Arguments as :func:`configure_binaural`. :meth:`add` routes a batch: per-track sources
    get the next indices (in the order they are added) and their gain functions are returned,
    to be kept or spooled; the items of the virtual path are returned (Objects widened by
    :func:`binaural_extent`) for :func:`renderer.plan.build_gain_plan` on :attr:`layout`.
    :meth:`setup` makes the setup from the virtual path's plan and the sources' gain
    functions.
    """

    def __init__(self, sample_rate: int, n_tracks: int, *,
                 hrtf: HrtfSet | HrtfModel | str | os.PathLike | None = None,
                 orientation: HeadOrientation = HeadOrientation(),
                 lfe_gain_db: float = 0.0, source: str = "") -> None:
        self.sample_rate, self.n_tracks, self.source = sample_rate, n_tracks, source
        self._hrtf, self._model, self._preparing = hrtf, None, None
        self.rotation = orientation.matrix()
        self.lfe_gain = 10.0 ** (lfe_gain_db / 20.0)
        self.layout: Layout = get_layout(VIRTUAL_LAYOUT_NAME).without_lfe
        """The virtual path's loudspeakers (``9+10+3`` without its LFE channels)."""
        self.point_tracks: list[int] = []
        self.lfe_tracks: list[int] = []
        self.notes: list[str] = []
        self.uses_virtual = False

    @property
    def model(self) -> HrtfModel:
        """The prepared HRTF model at the render's rate (:meth:`prepare`)."""
        return self.prepare()

    def prepare(self) -> HrtfModel:
        """Load and prepare the HRTF set, once: on first use, so that routing alone (a forked
        planning process) never pays for it; or take the result of
        :meth:`prepare_in_background` (its errors are raised here)."""
        if self._model is None:
            if self._preparing is not None:
                self._model = self._preparing.result()
            else:
                self._model = _load_model(self._hrtf, self.sample_rate)
        return self._model

    def prepare_in_background(self) -> None:
        """Start preparing the HRTF set in a thread while the caller goes on (mostly numpy
        and FFTs, which release the GIL); :meth:`prepare` waits for it."""
        if self._model is None and self._preparing is None:
            pool = ThreadPoolExecutor(1)
            self._preparing = pool.submit(_load_model, self._hrtf, self.sample_rate)
            pool.shutdown(wait=False)

    def add(self, items: Sequence) -> tuple[Segments, list]:
        """Route ``items``: (gain functions of their per-track sources, 4 columns x, y, z,
        gain, ``track`` = source index; the items for the virtual path)."""
        where = f"{self.source}: " if self.source else ""
        parts, virtual = [], []
        for item in items:
            point = False
            if isinstance(item, ObjectRenderItem):
                point = item.track_mix is None and _is_point_object(item)
                if not point:
                    virtual.append(_widened(item))
            elif isinstance(item, DirectSpeakersRenderItem):
                if _is_lfe(item):
                    if item.track_mix is not None:
                        self.notes.append(f"{where}audioChannelFormat {item.channel_format.id}"
                                          ": LFE fed by a Matrix mix is not rendered "
                                          "binaurally")
                    elif item.track_index is not None and _scale(item) != 0.0:
                        self.lfe_tracks.append(item.track_index)
                elif item.track_mix is None:
                    point = True
                else:
                    virtual.append(item)
            elif isinstance(item, HoaRenderItem):
                virtual.append(item)
            if point and item.track_index is not None:
                parts.append(_point_segments(item, len(self.point_tracks), self.sample_rate,
                                             where))
                self.point_tracks.append(item.track_index)
        self.uses_virtual = self.uses_virtual or bool(virtual)
        return Segments.concatenate(parts, 4), virtual

    def setup(self, plan: GainPlan, point_segments: Segments | SegmentSource) -> BinauralSetup:
        """The setup of everything added: ``plan`` of the virtual path on :attr:`layout`;
        ``point_segments``: the gain functions :meth:`add` returned, as one set or as a
        source of the runs they were spooled to."""
        layout = self.layout
        directions = _unit_vector(np.array([s.azimuth for s in layout.speakers]),
                                  np.array([s.elevation for s in layout.speakers]))
        return BinauralSetup(
            plan=plan, warnings=tuple(self.notes) + plan.warnings,
            model=self.model, sample_rate=self.sample_rate, n_tracks=self.n_tracks,
            point_tracks=np.array(self.point_tracks, np.int64), point_segments=point_segments,
            lfe_tracks=tuple(self.lfe_tracks), lfe_gain=self.lfe_gain, virtual_layout=layout,
            virtual_directions=directions, rotation=self.rotation,
            uses_virtual=self.uses_virtual, _bank=_FilterBank(self.model))


def configure_binaural(
    items: Sequence,
    sample_rate: int,
    n_tracks: int,
    *,
    hrtf: HrtfSet | HrtfModel | str | os.PathLike | None = None,
    orientation: HeadOrientation = HeadOrientation(),
    lfe_gain_db: float = 0.0,
    source: str = "",
) -> BinauralSetup:
    """Configure a binaural render of ``items`` (from :func:`adm.items.select_items`) at
    ``sample_rate`` Hz from ``n_tracks`` input tracks, all blocks at once (see
    :class:`BinauralBuilder` for items given in batches).

    ``hrtf``: an :class:`renderer.hrtf.HrtfSet`, a SOFA file path, a prepared ``HrtfModel``
    at ``sample_rate``, or None for :func:`renderer.hrtf.default_hrtf`. ``orientation``: the
    static head orientation. ``lfe_gain_db``: gain of LFE channels to each ear (dB).
    """
    builder = BinauralBuilder(sample_rate, n_tracks, hrtf=hrtf, orientation=orientation,
                              lfe_gain_db=lfe_gain_db, source=source)
    points, virtual = builder.add(items)
    plan = build_gain_plan(virtual, builder.layout, sample_rate, source=source,
                           n_tracks=n_tracks)
    return builder.setup(plan, points)


# ------------------------------------------------------------------------------------------
# Streaming stage
# ------------------------------------------------------------------------------------------


class _PointWindow(SegmentWindow):
    """The per-track sources' segments around the stage's position in the file (a
    :class:`renderer.segment_store.SegmentWindow`: only the segments playing are held), with
    their lookup arrays (sorted by source, then time) and gain breakpoints
    (:func:`_gain_breakpoints`), made again when the segments change. The gains of a sample
    depend only on the segment covering it, so breakpoints of these segments give the same
    values as those of the whole file."""

    def __init__(self, source: SegmentSource) -> None:
        super().__init__(source, 4)
        self.floor = 0  # the sample of the last direction lookup (later ones are not before)
        self._lookup: SimpleNamespace | None = None

    def take(self, end: int) -> bool:
        changed = super().take(end)
        if changed:
            self._lookup = None
        return changed

    def drop(self, before: int) -> bool:
        changed = super().drop(before)
        if changed:
            self._lookup = None
        return changed

    def lookup(self) -> SimpleNamespace:
        """Arrays of the segments held: ``seg_*`` sorted by source then first sample,
        ``seg_key`` = source * _KEY + first; gain breakpoints ``keys``/``values`` and the
        ``value_run`` number of each value (equal neighbours share it)."""
        if self._lookup is None:
            seg = self.segments
            order = np.lexsort((seg.first, seg.track))
            track, first = seg.track[order], seg.first[order]
            keys, values = _gain_breakpoints(seg, order)
            self._lookup = SimpleNamespace(
                seg_track=track, seg_first=first, seg_last=seg.last[order],
                seg_key=track * _KEY + first, seg_p0=seg.ramp_start[order],
                seg_step=seg.ramp_step[order],
                seg_from=seg.gains_from[order, :3].astype(np.float64),
                seg_direction=seg.gains_to[order, :3].astype(np.float64),
                keys=keys, values=values,
                value_run=np.concatenate([[0], np.cumsum(np.diff(values) != 0)]))
        return self._lookup


class BinauralStage:
    """Streams the binaural output of a :class:`BinauralSetup`.

    :meth:`process` takes the virtual path's mix and the input tracks of the next ``n``
    frames and returns the output frames (m, 2) that are complete (fewer than ``n`` at first:
    audio is processed several hops at a time); :meth:`finish` returns the rest, so
    the whole output has exactly the input's length and is aligned with it.

    Rows of the convolution: the P per-track sources (their gains applied sample by sample),
    the V virtual loudspeakers, then one LFE row (a flat filter of the LFE gain). The sources'
    segments are taken from :meth:`BinauralSetup.point_source` as the input reaches them and
    dropped when they end (:class:`_PointWindow`): only the segments playing are held.
    """

    n_outputs = 2
    skip_silent_updates = True
    """Whether sources silent over a whole call skip their filter updates and, where they are
    a quarter or more of a row group, its FFTs and products (the output is the same up to
    float rounding)."""

    def __init__(self, setup: BinauralSetup, backend: str | None = None):
        self.setup = setup
        if backend is None:  # the host's threaded FFTs on a CPU, JAX on an accelerator
            import jax

            backend = "numpy" if jax.default_backend() == "cpu" else "jax"
        if backend not in ("numpy", "jax"):
            raise ValueError(f"binaural backend must be 'numpy' or 'jax', not {backend!r}")
        self.ops = _NumpyOps() if backend == "numpy" else _JaxOps()
        bank: _FilterBank = setup._bank
        self.bank = bank
        self.fft_size = bank.fft_size
        self.hop = bank.fft_size - int(setup.model.filter_length) + 1  # overlap-save hop
        self.overlap = self.fft_size - self.hop  # input frames before a hop in its window
        self.update_hops = max(1, round(_UPDATE_SAMPLES / self.hop))
        self.hops_per_call = _UPDATES_PER_CALL * self.update_hops
        self.n_point = len(setup.point_tracks)
        self.n_virtual = setup.plan.n_outputs if setup.uses_virtual else 0
        self.lfe_row = self.n_point + self.n_virtual if setup.lfe_tracks else None
        self.n_rows = self.n_point + self.n_virtual + (1 if setup.lfe_tracks else 0)
        self.diffuse = None
        if setup.uses_virtual and setup.plan.diffuse:
            from renderer.decorrelation import DiffuseMixer, design_decorrelators

            self.diffuse = DiffuseMixer(design_decorrelators(setup.virtual_layout))
        # source signals from absolute frame `self.start` (the overlap before a hop first)
        self._storage = np.zeros((self.n_rows, self.overlap), np.float32)
        self._offset = 0  # of the buffer in the storage
        self.buffer = self._storage[:, :self.overlap]  # (rows, frames)
        self.start = -self.overlap
        self.virtual = np.zeros((0, self.n_virtual), np.float32)  # feeds not yet placed
        self.virtual_end = 0  # absolute frame up to which the virtual rows are filled
        self.frames_in = 0
        self.frames_out = 0
        self.hop_index = 0
        filters = np.zeros((self.n_rows, 2, bank.bins), np.complex64)
        self.triangle = np.zeros(self.n_point, np.int64)
        self.direction = np.zeros((self.n_point, 3))
        # a source silent over a whole call gets no new filter: it is marked stale and gets
        # its filter when it is heard again (a silent row adds exact zeros whatever it is)
        self.audible: list[tuple[int, int, np.ndarray]] = []  # frames [a, b): sources heard
        self.stale = np.zeros(self.n_point, bool)
        if self.n_point:
            self.points = _PointWindow(setup.point_source())
            self.direction = self._directions(np.zeros(self.n_point, np.int64))
            self.triangle = bank.find_triangles(self.direction)
            filters[:self.n_point], self.triangle = bank.filters(self.direction,
                                                                 self.triangle)
        if self.n_virtual:
            v = setup.virtual_directions @ setup.rotation
            filters[self.n_point:self.n_point + self.n_virtual] = bank.filters(
                v, bank.find_triangles(v))[0]
        if self.lfe_row is not None:
            filters[self.lfe_row] = setup.lfe_gain
        self.filters = self.ops.asarray(filters)  # (rows, 2, B)
        # rows in groups convolved in parallel threads on a CPU host: the point sources
        # split evenly, the virtual loudspeakers and LFE with the last group
        cores = available_cpus()
        n_groups = max(1, min(cores, _MAX_ROW_GROUPS, self.n_point)) if backend == "numpy" \
            else 1
        edges = np.linspace(0, self.n_point, n_groups + 1).round().astype(int)
        self.groups = [_RowGroup(rows=slice(int(a), int(b)), points=slice(int(a), int(b)))
                       for a, b in zip(edges[:-1], edges[1:])]
        self.groups[-1] = _RowGroup(rows=slice(int(edges[-2]), self.n_rows),
                                    points=self.groups[-1].points)
        self.fft_workers = max(1, cores // n_groups)
        self.pool = ThreadPoolExecutor(n_groups - 1) if n_groups > 1 else None

    def _directions(self, samples: np.ndarray) -> np.ndarray:
        """(P, 3) unit directions (head coordinates) of the sources at ``samples`` (P,), which
        never go back in time from one call to the next: the (x, y, z) columns of each
        source's segment covering that sample, interpolated as the gains are; a source between
        blocks points at its next block's direction (the zero-gain holds of its silences), so
        its filter is ready when it starts; after its end, and where the interpolated vector
        vanishes without a next segment, it points to the front."""
        window = self.points
        window.take(int(samples.max()) + 1)
        window.floor = int(samples.min())
        sources = np.arange(self.n_point)
        query = sources * _KEY + samples
        front = np.array([0.0, 1.0, 0.0])
        while True:
            w = window.lookup()
            if not len(w.seg_key):
                return np.tile(front, (self.n_point, 1)) @ self.setup.rotation
            at = np.searchsorted(w.seg_key, query, side="right") - 1  # segment starting before
            valid = at >= 0
            at = np.maximum(at, 0)
            inside = valid & (w.seg_track[at] == sources) & (w.seg_last[at] > samples)
            p = w.seg_p0[at] + (samples - w.seg_first[at]) * w.seg_step[at]
            vec = w.seg_from[at] + p[:, None] * (w.seg_direction[at] - w.seg_from[at])
            silent = ~inside | (np.linalg.norm(vec, axis=-1) < 1e-9)
            # a vector vanishing inside a segment (a ramp through the origin) points at the
            # next segment, which starts where this one ends: have it taken
            ahead = silent & inside
            if not ahead.any() or int(w.seg_last[at[ahead]].max()) < window.taken:
                break
            window.take(int(w.seg_last[at[ahead]].max()) + 1)
        if silent.any():  # the next segment of the source, if any
            nxt = np.minimum(at + valid, len(w.seg_key) - 1)
            same = w.seg_track[nxt] == sources
            vec[silent] = np.where(same[silent, None], w.seg_direction[nxt[silent]], front)
        norm = np.linalg.norm(vec, axis=-1)
        vec = np.where(norm[:, None] > 1e-9, vec / np.maximum(norm, 1e-12)[:, None], front)
        return vec @ self.setup.rotation

    def _sources(self, tracks: np.ndarray, first: int, out: np.ndarray) -> None:
        """Write into ``out`` (rows, n) the source signals of input frames [first, first + n)
        (consecutive calls go forward in time): point tracks times their gains
        (sample-accurate, BS.2127 block timing), zeros for the virtual rows, LFE. The gains'
        breakpoints are looked up here; the threads share the frames between them."""
        n = len(tracks)
        gains = varying = keys = values = lo = hi = None
        if self.n_point:
            window = self.points
            window.take(first + n)
            window.drop(min(first, window.floor))
            w = window.lookup()
            keys, values = w.keys, w.values
            gains = np.zeros(self.n_point, np.float32)
            varying = np.zeros(self.n_point, bool)
        if self.n_point and len(keys):
            base = np.arange(self.n_point, dtype=np.float64) * _KEY
            # the breakpoints around the frames: the last one at or before the first frame
            # to the first one at or after the last frame
            lo = np.maximum(np.searchsorted(keys, base + first, side="right") - 1, 0)
            hi = np.searchsorted(keys, base + first + n - 1, side="left")
            hi = np.minimum(hi, len(keys) - 1)
            # constant over these frames: covered by this source's breakpoints, all of one
            # value (one run of equal values from lo to hi)
            covered = ((keys[lo] >= base) & (keys[lo] <= base + first)
                       & (keys[hi] >= base + first + n - 1) & (keys[hi] < base + _KEY))
            constant = covered & (w.value_run[lo] == w.value_run[hi])
            gains = np.where(constant, values[lo], 0.0).astype(np.float32)
            varying = ~constant

        if self.n_point:  # which sources have a gain in these frames
            self.audible.append((first, first + n, varying | (gains != 0.0)))

        moving = np.flatnonzero(varying) if lo is not None else ()
        unit = gains is None or bool((gains == 1.0).all())  # the usual case: no product
        point_tracks = self.setup.point_tracks

        def frames_of(frames: tuple[int, int]) -> None:
            """Frames [a, b) of every row (the threads split the frames, not the rows: the
            samples of one frame are read together)."""
            a, b = frames
            if self.n_point and _native is not None:  # in one pass (_binaural.rows)
                _native.rows(tracks[a:b], point_tracks,
                             np.ones(self.n_point, np.float32) if unit else gains,
                             out[:self.n_point, a:b])
            elif self.n_point:
                picked = np.take(tracks[a:b], point_tracks, axis=1)
                if not unit:
                    _scale_columns(picked, gains)
                out[:self.n_point, a:b] = picked.T
            for p in moving:
                kp, vp = keys[lo[p]:hi[p] + 1], values[lo[p]:hi[p] + 1]
                samples = np.arange(first + a, first + b, dtype=np.float64) + p * _KEY
                out[p, a:b] = tracks[a:b, point_tracks[p]] * np.interp(
                    samples, kp, vp, left=0.0, right=0.0).astype(np.float32)
            out[self.n_point:self.n_point + self.n_virtual, a:b] = 0.0
            if self.lfe_row is not None:
                out[self.lfe_row, a:b] = tracks[a:b, list(self.setup.lfe_tracks)].sum(axis=1)

        edges = np.linspace(0, n, len(self.groups) + 1).astype(int).tolist()
        self._in_groups(frames_of, list(zip(edges[:-1], edges[1:])))

    def _heard(self, first: int, end: int) -> np.ndarray:
        """(P,) bool: the sources with a gain anywhere in frames [first, end) (at the
        granularity of the blocks given to :meth:`process`); forgets what lies before."""
        self.audible = [a for a in self.audible if a[1] > first]
        heard = np.zeros(self.n_point, bool)
        for a, b, mask in self.audible:
            if a < end and b > first:
                heard |= mask
        return heard

    def _extend(self, n: int) -> np.ndarray:
        """Lengthen :attr:`buffer` (rows, frames) by ``n`` frames (not initialised) and return
        them (rows, n): the buffer is a view of a larger storage, moved to its start when the
        storage's end is reached. The storage holds four times what the buffer needs when it
        grows, so the buffer is moved once every few calls, to a place it does not overlap
        (numpy would copy an overlapping move twice)."""
        used = self.buffer.shape[1]
        capacity = self._storage.shape[1]
        if self._offset + used + n > capacity:
            storage = self._storage
            if 2 * (used + n) > capacity:
                storage = np.empty((self.n_rows, max(2 * capacity, 4 * (used + n))), np.float32)
            storage[:, :used] = self.buffer
            self._storage, self._offset = storage, 0
        self.buffer = self._storage[:, self._offset:self._offset + used + n]
        return self.buffer[:, used:]

    def process(self, mixed: np.ndarray, tracks: np.ndarray) -> np.ndarray:
        """mixed (n, mixer width), tracks (n, >= n_tracks) float32 -> (m, 2) float32. The
        tracks in C order, or each track's frames contiguous (as the render decodes them for
        headphone outputs only)."""
        tracks = np.asarray(tracks, np.float32)
        if not (tracks.flags.c_contiguous or tracks.strides[0] == tracks.itemsize):
            tracks = np.ascontiguousarray(tracks)
        self._sources(tracks, self.frames_in, self._extend(len(tracks)))
        self.frames_in += len(tracks)
        if self.n_virtual:
            mixed = np.asarray(mixed, np.float32)
            n = self.setup.plan.n_outputs
            if self.diffuse is not None:
                feeds = self.diffuse.process(mixed[:, :n], mixed[:, n:2 * n])
            else:
                feeds = mixed[:, :n]
            self.virtual = np.concatenate([self.virtual, np.asarray(feeds, np.float32)])
        return self._run(final=False)

    def finish(self) -> np.ndarray:
        """(m, 2): the remaining output frames (total output length = input length)."""
        if self.n_virtual and self.diffuse is not None:
            n = self.setup.plan.n_outputs
            tail = self.diffuse.finish().astype(np.float32).reshape(-1, n)
            self.virtual = np.concatenate([self.virtual, tail])
        try:
            return self._run(final=True)
        finally:
            if self.pool is not None:
                self.pool.shutdown()

    def _place_virtual(self) -> None:
        """Move the virtual feeds that have arrived into the buffer's virtual rows."""
        if not self.n_virtual or not len(self.virtual):
            return
        begin = self.virtual_end - self.start
        n = min(len(self.virtual), self.buffer.shape[1] - begin)
        if n > 0:
            rows = slice(self.n_point, self.n_point + self.n_virtual)
            self.buffer[rows, begin:begin + n] = self.virtual[:n].T
            self.virtual = self.virtual[n:]
            self.virtual_end += n

    def _ready(self) -> int:
        """Frames after the overlap before the next hop whose every row is complete."""
        end = self.start + self.buffer.shape[1]
        if self.n_virtual:
            end = min(end, self.virtual_end)
        return end - (self.start + self.overlap)

    def _run(self, final: bool) -> np.ndarray:
        self._place_virtual()
        outputs = []
        while True:
            ready = self._ready()
            if ready >= self.hops_per_call * self.hop:
                outputs.append(self._call(self.hops_per_call))
            elif final and self.frames_out < self.frames_in:
                hops = -(-(self.frames_in - self.frames_out) // self.hop)
                pad = self.overlap + hops * self.hop - self.buffer.shape[1]
                if pad > 0:
                    self._extend(pad)[:] = 0.0
                outputs.append(self._call(hops))
            else:
                break
            self._place_virtual()
        out = np.concatenate(outputs) if outputs else np.zeros((0, 2), np.float32)
        excess = self.frames_out - self.frames_in
        if final and excess > 0:
            out = out[:len(out) - excess]
            self.frames_out = self.frames_in
        return out

    def _call(self, k_hops: int) -> np.ndarray:
        """Convolve the next ``k_hops`` hops of every row; (k_hops * hop, 2) output.

        The hops are cut into runs at the direction updates; the updates (directions of the
        sources at the end of their hop, the sources that moved) are found first, then each
        group of rows (:meth:`_convolve_rows`, groups in parallel threads on a CPU host) gives
        its share of every hop's output spectrum and of the faded hops' spectra with the new
        filters; the shares are summed, transformed back and the faded hops crossfaded."""
        hop, ops = self.hop, self.ops
        n_fft, overlap = self.fft_size, self.overlap
        runs: list[tuple[int, int]] = []  # hops [a, b) convolved with the same filters
        updates: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # run -> (moved, directions)
        before = self.direction.copy()  # the directions at the call's start
        k = 0
        while k < k_hops:
            update_at = (self.update_hops - 1) - (self.hop_index + k) % self.update_hops
            run = min(update_at + 1, k_hops - k)
            runs.append((k, k + run))
            k += run
            if run == update_at + 1 and self.n_point:
                sample = (self.hop_index + k) * hop - 1
                direction = self._directions(np.full(self.n_point, sample, np.int64))
                moved = np.flatnonzero(np.any(direction != self.direction, axis=1))
                if len(moved):
                    updates[len(runs) - 1] = (moved, direction[moved])
                    self.direction[moved] = direction[moved]
        block = self.buffer[:, :overlap + k_hops * hop]
        heard = self._heard(self.start, self.start + block.shape[1])
        shares = self._in_groups(lambda group: self._convolve_rows(group, block, k_hops, runs,
                                                                   updates, before, heard))
        out, fades = shares[0]
        for more_out, more_fades in shares[1:]:
            out = out + more_out
            fades = [a + b for a, b in zip(fades, more_fades, strict=True)]
        frames = ops.irfft(out, n_fft)[..., overlap:]  # (K, 2, M)
        if fades:
            new = ops.irfft(ops.stack(fades), n_fft)[..., overlap:]
            frames = ops.crossfade(frames, [runs[r][1] - 1 for r in updates], new)
        consumed = k_hops * hop
        self.buffer = self.buffer[:, consumed:]
        self._offset += consumed
        self.start += consumed
        self.hop_index += k_hops
        self.frames_out += consumed
        frames = np.asarray(frames, np.float32)
        return np.ascontiguousarray(frames.transpose(0, 2, 1)).reshape(consumed, 2)

    def _in_groups(self, work, parts: Sequence | None = None) -> list:
        """``work(part)`` for every part (default: every row group), one per thread: the last
        in this thread, the others in the stage's thread pool (numpy and the C loops release
        the GIL)."""
        *others, last = self.groups if parts is None else parts
        futures = [self.pool.submit(work, part) for part in others]
        mine = work(last)
        return [f.result() for f in futures] + [mine]

    def _convolve_rows(self, group: _RowGroup, block, k_hops: int,
                       runs: list[tuple[int, int]],
                       updates: dict[int, tuple[np.ndarray, np.ndarray]],
                       before: np.ndarray, heard: np.ndarray):
        """One row group's share of a call: (k_hops, 2, B) output spectra and, for each
        update, (2, B) spectrum of the faded hop with the new filters. The group's moving
        sources get their new filters (rows of :attr:`filters`) at their update, except
        those silent over the whole call (not ``heard`` (P,): no gain in its frames), which
        are marked stale; a stale source heard in the call gets the filter of its direction
        at the call's start (``before`` (P, 3)) first. A group with a quarter or more of its
        sources silent convolves only its other rows."""
        ops, rows = self.ops, group.rows
        points = np.arange(group.points.start, group.points.stop)
        silent = ~heard[points] & self.skip_silent_updates
        late = points[self.stale[points] & ~silent]
        if len(late):
            self.filters, self.triangle[late] = ops.update_rows(
                self.bank, self.filters, late, before[late], self.triangle[late])
            self.stale[late] = False
        # the rows convolved: all of the group's, or, when a quarter or more of its sources
        # are silent (numpy on the host), the heard ones (a silent row adds only zeros)
        kept: slice | np.ndarray = rows
        if isinstance(ops, _NumpyOps) and len(points) and silent.sum() * 4 >= len(points):
            kept = np.flatnonzero(~np.concatenate(
                [silent, np.zeros(rows.stop - group.points.stop, bool)])) + rows.start
        signals = block[kept] if isinstance(kept, slice) else np.take(block, kept, axis=0)
        filters = self.filters[kept]
        outputs, fades = [], []
        hop = self.hop
        for r, (a, b) in enumerate(runs):
            # the spectra of one run at a time (rows kept, b - a, B): still in the cache for
            # their products
            spectrum = ops.spectra(signals[:, a * hop:(b - 1) * hop + self.fft_size], b - a,
                                   hop, self.fft_size, self.fft_workers)
            outputs.append(ops.matmul(spectrum, filters))
            if r not in updates:
                continue
            moved, direction = updates[r]
            mine = (moved >= group.points.start) & (moved < group.points.stop)
            quiet = mine.copy()
            quiet[mine] = silent[moved[mine] - group.points.start]
            self.stale[moved[quiet]] = True
            mine &= ~quiet
            if not mine.any():
                fades.append(outputs[-1][-1])  # this group's filters did not change
                continue
            sources = moved[mine]
            # every source of the group moving (the usual case in busy mixes): a slice
            whole = len(sources) == group.points.stop - group.points.start
            self.filters, self.triangle[sources] = ops.update_rows(
                self.bank, self.filters, group.points if whole else sources, direction[mine],
                self.triangle[sources])
            filters = self.filters[kept]
            # hop b - 1 again with the new filters, to fade to
            fades.append(ops.matmul(spectrum[:, -1:], filters)[0])
        out = ops.concatenate(outputs) if len(outputs) > 1 else outputs[0]
        return out, fades


@dataclass(frozen=True)
class _RowGroup:
    """Rows of the convolution done together: ``rows`` of the buffer and filters, of which
    the point sources ``points`` (absolute row = source index)."""

    rows: slice
    points: slice


@functools.lru_cache(maxsize=4)
def _fft_twiddles(n_fft: int) -> tuple[np.ndarray, np.ndarray]:
    """The twiddle factors of ``_binaural.spectra`` for a real FFT of ``n_fft`` points (M =
    n_fft / 2): exp(-2 pi i t / M) and exp(-2 pi i t / n_fft) for t < M, complex64 (taken
    in double precision)."""
    t = np.arange(n_fft // 2)
    return (np.exp(-2j * np.pi * t / (n_fft // 2)).astype(np.complex64),
            np.exp(-2j * np.pi * t / n_fft).astype(np.complex64))


class _NumpyOps:
    """Array operations of the convolution on the host (numpy and the package's C loops;
    scipy's FFTs where those are not built or the CPU has no AVX2)."""

    @staticmethod
    def matmul(spectra: np.ndarray, filters: np.ndarray) -> np.ndarray:
        """(R, K, B) spectra times (R, 2, B) filters -> (K, 2, B): the product summed over the
        rows, bin by bin. In C where the package was built with it (``_binaural.products``),
        else with numpy, a row at a time."""
        shape = (spectra.shape[1], 2, spectra.shape[2])
        if _native is not None:
            out = np.empty(shape, np.complex64)
            _native.products(spectra, filters, out)
            return out
        out = np.zeros(shape, np.complex64)
        for r in range(spectra.shape[0]):
            out += spectra[r, :, None, :] * filters[r, None, :, :]
        return out
    concatenate = staticmethod(np.concatenate)
    stack = staticmethod(np.stack)

    @staticmethod
    def asarray(x: np.ndarray) -> np.ndarray:
        return np.asarray(x)

    @staticmethod
    def spectra(block: np.ndarray, k_hops: int, hop: int, n_fft: int,
                workers: int = -1) -> np.ndarray:
        """(rows, frames) with frames = n_fft - hop + k_hops * hop -> (rows, k_hops, B): the
        rfft of each overlap-save window (n_fft frames, the last hop of them new), each read
        from contiguous samples. With the package's C loops on a CPU with AVX2 (and n_fft a
        power of two), eight windows at a time (``_binaural.spectra``), else scipy's."""
        if _native is not None and n_fft & (n_fft - 1) == 0 and block.dtype == np.float32:
            out = np.empty((block.shape[0], k_hops, n_fft // 2 + 1), np.complex64)
            try:
                _native.spectra(block, k_hops, hop, *_fft_twiddles(n_fft), out)
                return out
            except RuntimeError:  # no AVX2 and FMA here (or turned off, for the tests)
                pass
        import scipy.fft  # (imported here: the C loops' FFT is the usual one)

        windows = np.lib.stride_tricks.as_strided(
            block, shape=(block.shape[0], k_hops, n_fft),
            strides=(block.strides[0], hop * block.strides[1], block.strides[1]),
            writeable=False)
        return scipy.fft.rfft(windows, axis=-1, workers=workers)

    @staticmethod
    def irfft(x: np.ndarray, n: int) -> np.ndarray:
        return np.fft.irfft(x, n=n, axis=-1)

    @staticmethod
    def update_rows(bank: _FilterBank, filters: np.ndarray, rows, v: np.ndarray,
                    hint: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The filters of directions ``v`` (Q, 3) into ``filters[rows]`` (in place);
        returns (filters, their triangles (Q,))."""
        return filters, bank.place(v, hint, filters, rows)

    @staticmethod
    def crossfade(frames: np.ndarray, hops: list[int], new: np.ndarray) -> np.ndarray:
        """Hop ``hops[j]`` of ``frames`` (K, 2, M) faded linearly to ``new[j]``."""
        ramp = ((np.arange(frames.shape[-1], dtype=np.float32) + 1.0) / frames.shape[-1])
        for j, u in enumerate(hops):
            frames[u] += ramp * (new[j] - frames[u])
        return frames


class _JaxOps:
    """The same operations in JAX, for accelerators: the source signals go to the device once
    per call; spectra, products and filters stay there."""

    def __init__(self) -> None:
        import jax.numpy as jnp

        self.jnp = jnp
        self.concatenate = jnp.concatenate
        self.stack = jnp.stack

    def matmul(self, spectra, filters):
        return self.jnp.einsum("rkb,reb->keb", spectra, filters)

    def asarray(self, x: np.ndarray):
        return self.jnp.asarray(x)

    def spectra(self, block: np.ndarray, k_hops: int, hop: int, n_fft: int,
                workers: int = -1):
        jnp = self.jnp
        data = jnp.asarray(block)
        index = hop * jnp.arange(k_hops)[:, None] + jnp.arange(n_fft)[None, :]
        return jnp.fft.rfft(data[:, index], axis=-1)

    def irfft(self, x, n: int):
        return self.jnp.fft.irfft(x, n=n, axis=-1)

    def update_rows(self, bank: _FilterBank, filters, rows, v: np.ndarray, hint: np.ndarray):
        """The filters of directions ``v`` (Q, 3) into rows ``rows`` of the device's
        ``filters``; returns (the new filters, their triangles (Q,))."""
        new, tri = bank.filters(v, hint)
        return filters.at[rows].set(self.asarray(new)), tri

    def crossfade(self, frames, hops: list[int], new):
        jnp = self.jnp
        ramp = (jnp.arange(frames.shape[-1], dtype=jnp.float32) + 1.0) / frames.shape[-1]
        u = jnp.asarray(hops)
        faded = frames[u] + ramp * (new - frames[u])
        return frames.at[u].set(faded)


# ------------------------------------------------------------------------------------------
# Convenience
# ------------------------------------------------------------------------------------------


def render_binaural_array(items: Sequence, audio: np.ndarray, sample_rate: int,
                          backend: str | None = None, **configure_kwargs) -> np.ndarray:
    """Binaural render of ``audio`` (frames, n_tracks) float -> (frames, 2) float32, left then
    right, driving the virtual path's Mixer and a :class:`BinauralStage` in chunks.
    ``backend``: see :meth:`BinauralSetup.stage`; ``configure_kwargs``: those of
    :func:`configure_binaural`."""
    from renderer.matrix import TrackDelayer

    audio = np.asarray(audio, np.float32)
    setup = configure_binaural(items, sample_rate, audio.shape[1], **configure_kwargs)
    plan = setup.plan
    delayer = TrackDelayer(list(plan.delayed_tracks), audio.shape[1])
    mixer = Mixer(plan.segments, setup.mixer_width, audio.shape[1] + len(plan.delayed_tracks))
    stage = setup.stage(backend)
    outputs = []
    step = mixer.frames_per_call
    for begin in range(0, len(audio), step):
        block = delayer.process(audio[begin:begin + step])
        mixed = mixer.mix(block) if setup.uses_virtual else np.zeros((len(block), 0))
        outputs.append(stage.process(mixed, block))
    outputs.append(stage.finish())
    return np.concatenate(outputs).astype(np.float32)
