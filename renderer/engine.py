"""Streaming mix of a gain plan over the input audio.

The gain of each track is a piecewise-linear function of the sample index (see
:mod:`renderer.timing`): *holds* (constant gains) and *ramps* (linear from one gain vector to
another). The engine splits the audio into sub-blocks of ``sub_block`` frames and sends
``sub_blocks`` of them at a time to one jitted JAX function:

* holds that cover a whole sub-block go into a dense (tracks, outputs) gain matrix for that
  sub-block, so most of the work is a batched matrix product ``x @ H``;
* everything else touching the sub-block (ramps, and holds starting or ending inside it) is
  expanded into *columns*: a hold contributes the track masked to its range, a ramp two
  columns, the track weighted by ``1 - p`` and by ``p``; their contribution is ``A @ G`` with
  ``A[s, c] = x[s, track_c] * weight_c(s)`` inside the column's range and 0 outside.

Column counts are padded to powers of two, so a few compiled shapes serve a whole file.
Segments are swept in time order, taken from their source (:mod:`renderer.segment_store`) as
the mix reaches them and dropped when they end, so the mixer holds only the segments playing
and memory does not grow with the file's length; the JAX call for one batch runs while the
caller reads the next.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from adm.bw64 import aligned_empty
from renderer.segment_store import SegmentSource, SegmentWindow
from renderer.timing import Segments

HOLD, FADE_OUT, FADE_IN = 0, 1, 2


def decode_samples(data: jax.Array, encoding: str, n_tracks: int) -> jax.Array:
    """Samples as float32 in [-1, 1) from input frames (..., frames, bytes or tracks).

    ``encoding``: "float" (``data`` is already float32 (..., frames, tracks)), or "pcm16",
    "pcm24", "pcm32", "float32": ``data`` is the file's little-endian sample bytes, uint8
    (..., frames, tracks * bytes_per_sample). Integer PCM of b bits is scaled by 2**-(b-1).
    Done inside the mixing kernel, so the bytes are read once and decoded in the same pass.
    """
    if encoding == "float":
        return data
    shape = data.shape[:-1] + (n_tracks, -1)
    raw = data.reshape(shape)
    if encoding == "pcm24":
        b = raw.astype(jnp.int32)
        # the sample shifted left by 8 bits as a signed int32, then scaled by 2**-31
        word = (b[..., 0] << 8) | (b[..., 1] << 16) | (b[..., 2] << 24)
        return word.astype(jnp.float32) * jnp.float32(2.0 ** -31)
    kind, scale = {"pcm16": (jnp.int16, 2.0 ** -15), "pcm32": (jnp.int32, 2.0 ** -31),
                   "float32": (jnp.float32, 1.0)}[encoding]
    values = jax.lax.bitcast_convert_type(raw, kind)
    return values.astype(jnp.float32) * jnp.float32(scale)


@functools.partial(jax.jit, static_argnames=("encoding", "n_tracks"))
def _mix_batch(data, hold_gains, track, rel_first, rel_last, p_first, step, kind, gains,
               encoding, n_tracks):
    """Mix K sub-blocks of M frames.

    data: (K, M, T) float32 input, or (K, M, T * bytes) uint8 sample bytes (see
    :func:`decode_samples`). hold_gains: (K, T, n_out) gains of whole-sub-block holds.
    Partial columns, (K, C) each: track index, range ``[rel_first, rel_last)`` within the
    sub-block, interpolation factor at ``rel_first`` and its step per sample, kind (HOLD,
    FADE_OUT, FADE_IN); gains (K, C, n_out). Returns (K * M, n_out).
    """
    x = decode_samples(data, encoding, n_tracks)
    dense = jnp.einsum("kmt,kto->kmo", x, hold_gains)
    m = x.shape[1]
    i = jnp.arange(m, dtype=jnp.int32)[None, :, None]
    inside = (i >= rel_first[:, None, :]) & (i < rel_last[:, None, :])
    p = p_first[:, None, :] + (i - rel_first[:, None, :]).astype(jnp.float32) * step[:, None, :]
    kind = kind[:, None, :]
    weight = jnp.where(kind == HOLD, 1.0, jnp.where(kind == FADE_OUT, 1.0 - p, p))
    columns = jnp.take_along_axis(x, track[:, None, :], axis=2)
    a = jnp.where(inside, columns * weight, 0.0)
    out = dense + jnp.einsum("kmc,kco->kmo", a, gains)
    return out.reshape(-1, out.shape[-1])


def _bucket(n: int) -> int:
    size = 16
    while size < n:
        size *= 2
    return size


class Mixer:
    """Mixes consecutive batches of input frames with a gain plan.

    ``plan``: the segments (see :class:`renderer.timing.Segments`), or a
    :class:`renderer.segment_store.SegmentSource` giving them as the mix reaches them (then
    only the segments playing are held); ``n_outputs``: its gain columns; ``n_tracks``:
    input channels. Call :meth:`dispatch` with consecutive batches of ``frames_per_call``
    frames (the last may be shorter); it returns a JAX array (computed asynchronously) of
    shape (frames_per_call, n_outputs), of which the first ``len(x)`` rows are the output.
    """

    def __init__(self, plan: Segments | SegmentSource, n_outputs: int, n_tracks: int,
                 sub_block: int = 256, sub_blocks: int = 128):
        self.source = plan if isinstance(plan, SegmentSource) else SegmentSource.of(plan)
        self.n_outputs = n_outputs
        self.n_tracks = n_tracks
        self.sub_block = sub_block
        self.sub_blocks = sub_blocks
        self.frames_per_call = sub_block * sub_blocks
        self._position = 0  # first frame of the next batch
        self._window = SegmentWindow(self.source, n_outputs)  # the segments playing

    def dispatch(self, x: np.ndarray, encoding: str = "float") -> jax.Array:
        """Start mixing the next batch ``x``: float32 (frames, n_tracks) samples, or the
        file's sample bytes (frames, n_tracks * bytes) with their ``encoding`` (see
        :func:`decode_samples`). See the class doc for the result."""
        m, k_count = self.sub_block, self.sub_blocks
        n = len(x)
        start = self._position
        self._position += n
        if n < self.frames_per_call:
            x = np.pad(x, ((0, self.frames_per_call - n), (0, 0)))
        # the segments overlapping frames [start, start + n) (the sweep goes forward in time)
        self._window.take(start + n)
        self._window.drop(start)
        segs = self._window.segments
        # Columns: a hold is one column, a ramp two (FADE_OUT weighted by 1 - p with its
        # from-gains, FADE_IN by p with its to-gains).
        is_ramp = segs.is_ramp
        ramp, hold = np.flatnonzero(is_ramp), np.flatnonzero(~is_ramp)
        segment = np.concatenate([hold, ramp, ramp])
        kind = np.concatenate([np.full(len(hold), HOLD, np.int8),
                               np.full(len(ramp), FADE_OUT, np.int8),
                               np.full(len(ramp), FADE_IN, np.int8)])
        first, last = segs.first[segment], segs.last[segment]
        rel_first, rel_last = first - start, last - start
        sb_lo = np.clip(rel_first // m, 0, k_count - 1)
        sb_hi = np.clip((rel_last - 1) // m, 0, k_count - 1)

        # Holds covering whole sub-blocks: a difference array over sub-blocks, summed.
        is_hold = kind == HOLD
        full_lo = np.clip(-(-rel_first // m), 0, k_count)
        full_hi = np.clip(rel_last // m, 0, k_count)  # exclusive
        full = is_hold & (full_hi > full_lo)
        full_segments = segment[full]
        tracks = segs.track[full_segments]
        hold_gains = self._hold_gains(full_lo[full], full_hi[full], tracks,
                                      segs.gains_to[full_segments])

        # Partial columns: ramps in every sub-block they touch; holds where they start or
        # end inside a sub-block.
        starts_inside = is_hold & (rel_first > sb_lo * m)
        ends_inside = is_hold & (rel_last < (sb_hi + 1) * m)
        ramp = ~is_hold
        span = np.where(ramp, sb_hi - sb_lo + 1, 0)
        entry_col = np.concatenate([
            np.repeat(np.arange(len(segment)), span),
            np.flatnonzero(starts_inside),
            np.flatnonzero(ends_inside & ~(starts_inside & (sb_lo == sb_hi))),
        ])
        run_start = np.repeat(np.cumsum(span) - span, span)
        entry_sb = np.concatenate([
            np.repeat(sb_lo, span) + np.arange(int(span.sum())) - run_start,
            sb_lo[starts_inside],
            sb_hi[ends_inside & ~(starts_inside & (sb_lo == sb_hi))],
        ]).astype(np.int64)
        order = np.argsort(entry_sb, kind="stable")
        entry_col, entry_sb = entry_col[order], entry_sb[order]
        counts = np.bincount(entry_sb, minlength=k_count)
        width = _bucket(int(counts.max()) if len(counts) else 1)
        slot = np.arange(len(entry_sb)) - np.repeat(np.cumsum(counts) - counts, counts)

        seg = segment[entry_col]
        e_kind = kind[entry_col]
        c_first = first[entry_col]
        sub_start = start + entry_sb * m
        e_first = np.clip(c_first - sub_start, 0, m)
        e_last = np.clip(last[entry_col] - sub_start, 0, m)
        dp = segs.ramp_step[seg]
        e_p0 = segs.ramp_start[seg] + (sub_start + e_first - c_first) * dp
        e_gains = np.where((e_kind == FADE_OUT)[:, None], segs.gains_from[seg],
                           segs.gains_to[seg])

        def table(values, dtype, extra=()):
            out = np.zeros((k_count, width) + extra, dtype)
            out[entry_sb, slot] = values
            return out

        return _mix_batch(
            x.reshape(k_count, m, -1),
            hold_gains,
            table(segs.track[seg], np.int32),
            table(e_first, np.int32),
            table(e_last, np.int32),
            table(e_p0, np.float32),
            table(dp, np.float32),
            table(e_kind, np.int32),
            table(e_gains, np.float32, (self.n_outputs,)),
            encoding=encoding, n_tracks=self.n_tracks,
        )

    def _hold_gains(self, lo: np.ndarray, hi: np.ndarray, tracks: np.ndarray,
                    gains: np.ndarray) -> np.ndarray:
        """(sub_blocks, n_tracks, n_outputs) float32 gains of the holds covering whole
        sub-blocks ``[lo, hi)`` of ``tracks`` (H,) with ``gains`` (H, n_outputs). Where no two
        holds of one track share a sub-block (the usual case) each gain is placed as it is;
        otherwise they are summed (in float64) through a difference array over sub-blocks."""
        k_count, n_tracks = self.sub_blocks, self.n_tracks
        span = hi - lo
        sub_block = np.repeat(lo, span) + (np.arange(int(span.sum()))
                                           - np.repeat(np.cumsum(span) - span, span))
        cell = sub_block * n_tracks + np.repeat(tracks, span)
        if len(cell) and np.bincount(cell).max() > 1:
            index = np.concatenate([lo * n_tracks + tracks, hi * n_tracks + tracks])
            values = np.asarray(gains, np.float64)
            weights = np.concatenate([values, -values])
            size = (k_count + 1) * n_tracks
            diff = np.stack([np.bincount(index, weights[:, o], size)
                             for o in range(self.n_outputs)], axis=1)
            diff = diff.reshape(k_count + 1, n_tracks, self.n_outputs)
            return np.cumsum(diff[:k_count], axis=0).astype(np.float32)
        out = aligned_empty((k_count * n_tracks, self.n_outputs), np.float32)  # no copy by JAX
        out.fill(0.0)
        out[cell] = np.repeat(np.asarray(gains, np.float32), span, axis=0)
        return out.reshape(k_count, n_tracks, self.n_outputs)

    def mix(self, x: np.ndarray, encoding: str = "float") -> np.ndarray:
        """Mix the next batch and wait for it: (len(x), n_outputs) float32."""
        return np.asarray(self.dispatch(x, encoding))[:len(x)]
