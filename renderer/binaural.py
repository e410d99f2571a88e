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
   interpolation ramps), sampled once per processing hop; the direction is renormalised.
2. **Virtual-loudspeaker path** for everything else (extent, diffuse, divergence, HOA, Matrix):
   the full BS.2127 render to the 22 non-LFE loudspeakers of ``9+10+3`` (including diffuse
   decorrelation), each loudspeaker signal filtered with the HRTF of its direction.
3. **LFE** (DirectSpeakers LFE channels): added to both ears without HRTF, at ``lfe_gain_db``
   (default 0 dB: unity gain to each ear), time-aligned with the HRTF paths.

HRTF filters: for a direction with interpolation weights ``w_i`` over the measured directions
``i`` of its triangle (:mod:`renderer.hrtf`), the filter of each ear is
``sum_i w_i A_i(k) * exp(-j 2 pi k d / N)`` with the delay-free spectra ``A_i`` and the
interpolated onset delay ``d = sum_i w_i d_i`` (samples), times the source gain; at a measured
direction this is exactly its HRIR. The onset delays stay in the filters: an HRIR that is a unit
impulse at sample 0 passes the input unchanged, so the output is time-aligned with the input.

Convolution is overlap-save with an FFT of ``N`` points and a hop of ``M = N / 2`` samples
(``N`` at least 2048 and long enough for the filters). Filters are evaluated at the last sample
of each hop; when a source's filter changes, the hop is computed with the previous and the new
filters and crossfaded linearly over the hop, so moving sources do not click. Gains and
directions are therefore followed at the hop rate (``M`` samples, 21 ms at 48 kHz with
``N = 2048``), with linear interpolation between hops, rather than sample by sample as in the
loudspeaker renderer. Many hops of all sources go through one jitted JAX call; only sources
whose filter changes in a hop get a new filter.

Head orientation (static): ``yaw`` positive turns the head to the left (anticlockwise seen from
above, like azimuth), ``pitch`` positive raises the nose, ``roll`` positive lowers the right
ear. Source and virtual loudspeaker directions are rotated into head coordinates before the
HRTF lookup.
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp
import numpy as np

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
from renderer.timing import Segments, block_timings, evaluate_segments, segments_for_track

if TYPE_CHECKING:
    from renderer.hrtf import HrtfModel, HrtfSet

__all__ = [
    "VIRTUAL_LAYOUT_NAME",
    "BinauralSetup",
    "BinauralStage",
    "HeadOrientation",
    "configure_binaural",
    "render_binaural_array",
]

VIRTUAL_LAYOUT_NAME = "9+10+3"
"""Loudspeaker layout of the virtual-loudspeaker path (its LFE channels are dropped)."""

_LFE_LABELS = frozenset({"LFE", "LFE1", "LFE2", "LFEL", "LFER", "RC_LFE"})
_HOPS_PER_CALL = 16
_MIN_FFT = 2048
_FINE = 32  # phase factors: exp(-j w k d) with k = FINE * c + f, from two short tables


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
    if is_cart.any():
        # BS.2127 clause 10 point conversion of the cube-clipped position; centre -> front
        az, el, _ = point_cart_to_polar(np.clip(cart[is_cart], -1.0, 1.0))
        polar[is_cart, 0], polar[is_cart, 1] = az, el
    return _unit_vector(polar[:, 0], polar[:, 1])


def _scale(item) -> float:
    return 0.0 if item.context.object_mute else float(item.context.object_gain)


# ------------------------------------------------------------------------------------------
# Filters (JAX)
# ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _FilterBank:
    """Device arrays for filter construction. Spectra are (D, 2, Bp) real and imaginary
    parts, Bp = bins padded to a multiple of _FINE; delays (D, 2) samples; ``inverse`` (T, 3, 3)
    maps a direction to its weights in triangle t (``w = v @ inverse[t]``)."""

    spectra_re: jax.Array
    spectra_im: jax.Array
    delays: jax.Array
    inverse: jax.Array
    triangles: jax.Array
    fft_size: int
    bins: int


jax.tree_util.register_dataclass(
    _FilterBank, data_fields=["spectra_re", "spectra_im", "delays", "inverse", "triangles"],
    meta_fields=["fft_size", "bins"])


def _filter_bank(model: HrtfModel) -> _FilterBank:
    spectra = np.asarray(model.aligned_spectra)
    n_bins = spectra.shape[-1]
    padded = _FINE * -(-n_bins // _FINE)
    spectra = np.pad(spectra, ((0, 0), (0, 0), (0, padded - n_bins)))
    vectors = np.asarray(model.unit_vectors, np.float64)
    triangles = np.asarray(model.triangles, np.int32)
    inverse = np.linalg.inv(vectors[triangles])  # rows: the triangle's vertex vectors
    return _FilterBank(
        spectra_re=jnp.asarray(spectra.real, jnp.float32),
        spectra_im=jnp.asarray(spectra.imag, jnp.float32),
        delays=jnp.asarray(np.asarray(model.delays), jnp.float32),
        inverse=jnp.asarray(inverse, jnp.float32),
        triangles=jnp.asarray(triangles),
        fft_size=int(model.fft_size), bins=n_bins)


@jax.jit
def _build_filters(bank: _FilterBank, directions: jax.Array, gains: jax.Array):
    """Filters of directions (Q, 3) (unit vectors, head coordinates) with gains (Q,):
    real and imaginary parts (Q, 2, Bp) of ``g * sum_i w_i A_i exp(-j 2 pi k d / N)``."""
    w_all = jnp.einsum("qj,tjk->qtk", directions, bank.inverse)
    best = jnp.argmax(jnp.min(w_all, axis=-1), axis=1)
    w = jnp.maximum(jnp.take_along_axis(w_all, best[:, None, None], axis=1)[:, 0], 0.0)
    w = w / jnp.maximum(jnp.sum(w, axis=-1, keepdims=True), 1e-12)
    index = bank.triangles[best]  # (Q, 3)
    n_dir, _, n_pad = bank.spectra_re.shape
    flat = index.reshape(-1)
    coef = (w * gains[:, None])[..., None]
    a_re = jnp.take(bank.spectra_re.reshape(n_dir, -1), flat, axis=0).reshape(
        index.shape + (2 * n_pad,))
    a_im = jnp.take(bank.spectra_im.reshape(n_dir, -1), flat, axis=0).reshape(
        index.shape + (2 * n_pad,))
    h_re = jnp.sum(a_re * coef, axis=1).reshape(-1, 2, n_pad)
    h_im = jnp.sum(a_im * coef, axis=1).reshape(-1, 2, n_pad)
    delay = jnp.sum(bank.delays[index] * w[..., None], axis=1)  # (Q, 2)
    scale = -2.0 * jnp.pi / bank.fft_size
    coarse = delay[..., None] * (scale * _FINE * jnp.arange(n_pad // _FINE, dtype=jnp.float32))
    fine = delay[..., None] * (scale * jnp.arange(_FINE, dtype=jnp.float32))
    cc, sc, cf, sf = jnp.cos(coarse), jnp.sin(coarse), jnp.cos(fine), jnp.sin(fine)
    p_re = (cc[..., :, None] * cf[..., None, :] - sc[..., :, None] * sf[..., None, :])
    p_im = (cc[..., :, None] * sf[..., None, :] + sc[..., :, None] * cf[..., None, :])
    p_re = p_re.reshape(delay.shape + (n_pad,))
    p_im = p_im.reshape(delay.shape + (n_pad,))
    return h_re * p_re - h_im * p_im, h_re * p_im + h_im * p_re


@functools.partial(jax.jit, static_argnames=("bins",))
def _convolve(state_re, state_im, frames, update_index, new_re, new_im, bins):
    """One call: K hops of all sources.

    state_re/im (S, 2, Bp): each source's filter before the first hop. frames (S, (K+1) M):
    the previous hop's input, then K hops. update_index (K, U) int32: sources whose filter
    changes at the end of each hop (padding: the always-silent last source); new_re/im
    (K, U, 2, Bp): their new filters. Returns the new state and the output (K, 2, M) with
    each hop crossfaded linearly from the old filters to the new ones.
    """
    n_src, n_total = frames.shape
    k_hops = update_index.shape[0]
    hop = n_total // (k_hops + 1)
    n_pad = state_re.shape[-1]
    blocks = frames.reshape(n_src, k_hops + 1, hop)
    windows = jnp.concatenate([blocks[:, :-1], blocks[:, 1:]], axis=-1)  # (S, K, 2M)
    spectrum = jnp.fft.rfft(windows, axis=-1)
    spectrum = jnp.pad(spectrum, ((0, 0), (0, 0), (0, n_pad - spectrum.shape[-1])))
    x_re = jnp.transpose(jnp.real(spectrum), (1, 0, 2))  # (K, S, Bp)
    x_im = jnp.transpose(jnp.imag(spectrum), (1, 0, 2))

    def step(state, inputs):
        h_re, h_im = state
        xr, xi, upd, n_re, n_im = inputs
        y_re = jnp.einsum("sb,seb->eb", xr, h_re) - jnp.einsum("sb,seb->eb", xi, h_im)
        y_im = jnp.einsum("sb,seb->eb", xr, h_im) + jnp.einsum("sb,seb->eb", xi, h_re)
        d_re, d_im = n_re - h_re[upd], n_im - h_im[upd]
        ur, ui = xr[upd][:, None, :], xi[upd][:, None, :]
        z_re = y_re + jnp.sum(ur * d_re - ui * d_im, axis=0)
        z_im = y_im + jnp.sum(ur * d_im + ui * d_re, axis=0)
        h_re = h_re.at[upd].set(n_re)
        h_im = h_im.at[upd].set(n_im)
        return (h_re, h_im), (y_re, y_im, z_re, z_im)

    (state_re, state_im), (y_re, y_im, z_re, z_im) = jax.lax.scan(
        step, (state_re, state_im), (x_re, x_im, update_index, new_re, new_im))
    old = jnp.fft.irfft(jax.lax.complex(y_re, y_im)[..., :bins], n=2 * hop, axis=-1)[..., hop:]
    new = jnp.fft.irfft(jax.lax.complex(z_re, z_im)[..., :bins], n=2 * hop, axis=-1)[..., hop:]
    ramp = (jnp.arange(hop, dtype=jnp.float32) + 1.0) / hop
    return state_re, state_im, old + ramp * (new - old)


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
    with 4 columns (x, y, z, gain), ``track`` = source index. ``lfe_tracks``: input tracks
    added to both ears with ``lfe_gain`` (linear). ``virtual_directions`` (V, 3): world
    directions of the virtual loudspeakers. ``rotation`` (3, 3): head -> world.
    """

    plan: GainPlan
    warnings: tuple[str, ...]
    model: Any
    sample_rate: int
    n_tracks: int
    point_tracks: np.ndarray
    point_segments: Segments
    lfe_tracks: tuple[int, ...]
    lfe_gain: float
    virtual_layout: Layout
    virtual_directions: np.ndarray
    rotation: np.ndarray
    uses_virtual: bool = True
    _bank: Any = field(default=None, repr=False, compare=False)

    @property
    def mixer_width(self) -> int:
        """Columns of the virtual path's mix: ``2 * n_outputs`` with diffuse, else n_outputs."""
        return 2 * self.plan.n_outputs if self.plan.diffuse else self.plan.n_outputs

    def stage(self) -> BinauralStage:
        """A fresh streaming stage for one pass over the audio."""
        return BinauralStage(self)


def _load_model(hrtf, sample_rate: int):
    """A prepared HRTF model at ``sample_rate`` with fft_size N >= 2048 and filters no longer
    than N / 2 + 1 samples (overlap-save with hop N / 2)."""
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
    return model


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
    ``sample_rate`` Hz from ``n_tracks`` input tracks.

    ``hrtf``: an :class:`renderer.hrtf.HrtfSet`, a SOFA file path, a prepared ``HrtfModel``
    at ``sample_rate``, or None for :func:`renderer.hrtf.default_hrtf`. ``orientation``: the
    static head orientation. ``lfe_gain_db``: gain of LFE channels to each ear (dB).
    """
    where = f"{source}: " if source else ""
    model = _load_model(hrtf, sample_rate)
    rotation = orientation.matrix()
    point_items, virtual_items, lfe_tracks, notes = [], [], [], []
    for item in items:
        if isinstance(item, ObjectRenderItem):
            if item.track_mix is None and _is_point_object(item):
                point_items.append(item)
            else:
                virtual_items.append(item)
        elif isinstance(item, DirectSpeakersRenderItem):
            if _is_lfe(item):
                if item.track_mix is not None:
                    notes.append(f"{where}audioChannelFormat {item.channel_format.id}: LFE "
                                 "fed by a Matrix mix is not rendered binaurally")
                elif item.track_index is not None and _scale(item) != 0.0:
                    lfe_tracks.append(item.track_index)
            elif item.track_mix is None:
                point_items.append(item)
            else:
                virtual_items.append(item)
        elif isinstance(item, HoaRenderItem):
            virtual_items.append(item)

    parts, tracks = [], []
    for item in point_items:
        if item.track_index is None:
            continue
        blocks = item.channel_format.blocks
        is_object = isinstance(item, ObjectRenderItem)
        values = np.zeros((len(blocks), 4), np.float32)
        values[:, :3] = _block_directions(blocks)
        values[:, 3] = [b.gain * _scale(item) for b in blocks]
        timing = block_timings(blocks, sample_rate, item.context.object_start,
                               item.context.object_duration, interpolate=is_object,
                               where=f"{where}audioChannelFormat {item.channel_format.id}: ")
        parts.append(segments_for_track(len(tracks), timing, values))
        tracks.append(item.track_index)
    layout = get_layout(VIRTUAL_LAYOUT_NAME).without_lfe
    plan = build_gain_plan(virtual_items, layout, sample_rate, source=source,
                           n_tracks=n_tracks)
    directions = _unit_vector(np.array([s.azimuth for s in layout.speakers]),
                              np.array([s.elevation for s in layout.speakers]))
    return BinauralSetup(
        plan=plan, warnings=tuple(notes) + plan.warnings, model=model,
        sample_rate=sample_rate, n_tracks=n_tracks,
        point_tracks=np.array(tracks, np.int64),
        point_segments=Segments.concatenate(parts, 4),
        lfe_tracks=tuple(lfe_tracks), lfe_gain=10.0 ** (lfe_gain_db / 20.0),
        virtual_layout=layout, virtual_directions=directions, rotation=rotation,
        uses_virtual=bool(virtual_items), _bank=_filter_bank(model))


# ------------------------------------------------------------------------------------------
# Streaming stage
# ------------------------------------------------------------------------------------------


class BinauralStage:
    """Streams the binaural output of a :class:`BinauralSetup`.

    :meth:`process` takes the virtual path's mix and the input tracks of the next ``n``
    frames and returns the output frames (m, 2) that are complete (fewer than ``n`` at first:
    audio is processed in calls of ``16 * M`` frames); :meth:`finish` returns the rest, so the
    whole output has exactly the input's length and is aligned with it.
    """

    n_outputs = 2

    def __init__(self, setup: BinauralSetup):
        self.setup = setup
        bank = setup._bank
        self.bank = bank
        self.hop = bank.fft_size // 2
        self.chunk = _HOPS_PER_CALL * self.hop
        n_point = len(setup.point_tracks)
        self.n_point = n_point
        self.n_virtual = setup.plan.n_outputs if setup.uses_virtual else 0
        self.lfe_row = n_point + self.n_virtual if setup.lfe_tracks else None
        n_rows = n_point + self.n_virtual + (1 if setup.lfe_tracks else 0) + 1  # + silent
        self.n_rows = 32 * -(-n_rows // 32) if n_rows > 16 else _bucket(n_rows, 4)
        self.silent = self.n_rows - 1
        self.diffuse = None
        if setup.uses_virtual and setup.plan.diffuse:
            from renderer.decorrelation import DiffuseMixer, design_decorrelators

            self.diffuse = DiffuseMixer(design_decorrelators(setup.virtual_layout))
        # buffers of source signals, (frames, rows), starting at absolute frame `self.start`
        self.direct = np.zeros((self.hop, self.n_rows), np.float32)  # previous hop first
        self.virtual = np.zeros((0, self.n_virtual), np.float32)
        self.start = -self.hop  # absolute frame of self.direct[0]
        self.frames_in = 0
        self.frames_out = 0
        self.hop_index = 0  # next hop to compute
        self.previous_virtual = np.zeros((self.hop, self.n_virtual), np.float32)
        # initial filters: sources at frame 0, fixed virtual loudspeakers and LFE
        n_pad = bank.spectra_re.shape[-1]
        state_re = np.zeros((self.n_rows, 2, n_pad), np.float32)
        state_im = np.zeros_like(state_re)
        self.current = np.zeros((n_point, 4), np.float32)
        if n_point:
            self.current = self._targets(np.array([0]))[0]
            f_re, f_im = self._filters(self.current)
            state_re[:n_point], state_im[:n_point] = f_re, f_im
        if self.n_virtual:
            v = setup.virtual_directions @ setup.rotation
            f_re, f_im = _build_filters(bank, jnp.asarray(v, jnp.float32),
                                        jnp.ones(len(v), jnp.float32))
            state_re[n_point:n_point + self.n_virtual] = np.asarray(f_re)
            state_im[n_point:n_point + self.n_virtual] = np.asarray(f_im)
        if self.lfe_row is not None:
            state_re[self.lfe_row, :, :bank.bins] = setup.lfe_gain
        self.state_re, self.state_im = jnp.asarray(state_re), jnp.asarray(state_im)

    def _targets(self, samples: np.ndarray) -> np.ndarray:
        """(len(samples), P, 4): unit direction (head coordinates) and gain per source."""
        values = evaluate_segments(self.setup.point_segments, self.n_point, samples)
        vec = values[..., :3].astype(np.float64)
        norm = np.linalg.norm(vec, axis=-1, keepdims=True)
        vec = np.where(norm > 1e-9, vec / np.where(norm > 1e-9, norm, 1.0), [0.0, 1.0, 0.0])
        out = np.empty(values.shape, np.float32)
        out[..., :3] = vec @ self.setup.rotation
        out[..., 3] = values[..., 3]
        return out

    def _filters(self, targets: np.ndarray):
        f_re, f_im = _build_filters(self.bank, jnp.asarray(targets[:, :3]),
                                    jnp.asarray(targets[:, 3]))
        return np.asarray(f_re), np.asarray(f_im)

    def _sources(self, tracks: np.ndarray) -> np.ndarray:
        """(n, n_rows) direct-path source signals (point tracks, zeros for virtual, LFE)."""
        out = np.zeros((len(tracks), self.n_rows), np.float32)
        if self.n_point:
            out[:, :self.n_point] = tracks[:, self.setup.point_tracks]
        if self.lfe_row is not None:
            out[:, self.lfe_row] = tracks[:, list(self.setup.lfe_tracks)].sum(axis=1)
        return out

    def process(self, mixed: np.ndarray, tracks: np.ndarray) -> np.ndarray:
        """mixed (n, mixer width), tracks (n, >= n_tracks) float32 -> (m, 2) float32."""
        tracks = np.asarray(tracks, np.float32)
        self.frames_in += len(tracks)
        self.direct = np.concatenate([self.direct, self._sources(tracks)])
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
        return self._run(final=True)

    def _run(self, final: bool) -> np.ndarray:
        outputs = []
        while True:
            first = self.hop_index * self.hop
            ready = self._ready_frames()
            if ready - first >= self.chunk:
                outputs.append(self._call(self.chunk))
            elif final and self.frames_out < self.frames_in:
                outputs.append(self._call(ready - first, pad=True))
            else:
                break
        out = np.concatenate(outputs) if outputs else np.zeros((0, 2), np.float32)
        if final:
            out = out[:max(self.frames_in - (self.frames_out - len(out)), 0)]
        return out

    def _ready_frames(self) -> int:
        end = self.start + len(self.direct)
        if self.n_virtual:
            # self.virtual holds frames [hop_index * hop, ...) of the virtual feeds
            end = min(end, self.hop_index * self.hop + len(self.virtual))
        return end

    def _call(self, frames: int, pad: bool = False) -> np.ndarray:
        hop, k_hops = self.hop, _HOPS_PER_CALL
        n_frames = k_hops * hop
        first = self.hop_index * hop
        block = self.direct[:hop + n_frames]
        if len(block) < hop + n_frames:
            block = np.pad(block, ((0, hop + n_frames - len(block)), (0, 0)))
        else:
            block = block.copy()
        if self.n_virtual:
            v = self.virtual[:n_frames]
            col = slice(self.n_point, self.n_point + self.n_virtual)
            block[hop:hop + len(v), col] = v
            block[:hop, col] = self.previous_virtual
            self.previous_virtual = block[n_frames:n_frames + hop, col].copy()
            self.virtual = self.virtual[n_frames:]
        self.direct = self.direct[n_frames:]
        self.start += n_frames
        # filter updates at the last sample of each hop
        n_pad = self.bank.spectra_re.shape[-1]
        if self.n_point:
            samples = first + hop * np.arange(1, k_hops + 1) - 1
            targets = self._targets(samples)
            previous = np.concatenate([self.current[None], targets[:-1]])
            changed = np.any(targets != previous, axis=-1)  # (K, P)
            self.current = targets[-1]
            counts = changed.sum(axis=1)
            width = _bucket(int(counts.max()), 4)
            update = np.full((k_hops, width), self.silent, np.int32)
            query = np.zeros((k_hops, width, 4), np.float32)
            query[..., 1] = 1.0
            hop_i, src = np.nonzero(changed)
            slot = np.arange(len(hop_i)) - np.repeat(np.cumsum(counts) - counts, counts)
            update[hop_i, slot] = src
            query[hop_i, slot] = targets[hop_i, src]
            f_re, f_im = _build_filters(self.bank, jnp.asarray(query[..., :3].reshape(-1, 3)),
                                        jnp.asarray(query[..., 3].reshape(-1)))
            f_re = f_re.reshape(k_hops, width, 2, n_pad)
            f_im = f_im.reshape(k_hops, width, 2, n_pad)
        else:
            update = np.full((k_hops, 4), self.silent, np.int32)
            f_re = f_im = jnp.zeros((k_hops, 4, 2, n_pad), jnp.float32)
        self.state_re, self.state_im, out = _convolve(
            self.state_re, self.state_im, jnp.asarray(block.T), jnp.asarray(update),
            f_re, f_im, bins=self.bank.bins)
        out = np.asarray(out).transpose(0, 2, 1).reshape(n_frames, 2)
        self.hop_index += k_hops
        keep = n_frames if not pad else max(frames, 0)
        self.frames_out += keep
        return out[:keep]


# ------------------------------------------------------------------------------------------
# Convenience
# ------------------------------------------------------------------------------------------


def render_binaural_array(items: Sequence, audio: np.ndarray, sample_rate: int,
                          **configure_kwargs) -> np.ndarray:
    """Binaural render of ``audio`` (frames, n_tracks) float -> (frames, 2) float32, left then
    right, driving the virtual path's Mixer and a :class:`BinauralStage` in chunks.
    ``configure_kwargs``: those of :func:`configure_binaural`."""
    from renderer.matrix import TrackDelayer

    audio = np.asarray(audio, np.float32)
    setup = configure_binaural(items, sample_rate, audio.shape[1], **configure_kwargs)
    plan = setup.plan
    delayer = TrackDelayer(list(plan.delayed_tracks), audio.shape[1])
    mixer = Mixer(plan.segments, setup.mixer_width, audio.shape[1] + len(plan.delayed_tracks))
    stage = setup.stage()
    outputs = []
    step = mixer.frames_per_call
    for begin in range(0, len(audio), step):
        block = delayer.process(audio[begin:begin + step])
        mixed = mixer.mix(block) if setup.uses_virtual else np.zeros((len(block), 0))
        outputs.append(stage.process(mixed, block))
    outputs.append(stage.finish())
    return np.concatenate(outputs).astype(np.float32)
