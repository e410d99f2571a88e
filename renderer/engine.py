"""Streaming mix of a gain plan over the input audio.

The gain of each track is a piecewise-linear function of the sample index (see
:mod:`renderer.timing`). For each chunk of ``chunk_frames`` input frames the engine gathers the
segments that touch the chunk and expands them into *columns*: a hold contributes the track
masked to its sample range; a ramp contributes two columns, the track weighted by ``1 - p`` and
by ``p`` (``p`` the interpolation factor). The chunk's output is then one matrix product

    out (N, n_out) = A (N, C) @ G (C, n_out)

with ``A[s, c] = x[s, track_c] * weight_c(s)`` inside the column's range and 0 outside, computed
by one jitted JAX function. Column counts are padded to powers of two so that a few compiled
shapes serve every chunk. Memory is bounded by the chunk size, whatever the file length.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from renderer.timing import Segments

HOLD, FADE_OUT, FADE_IN = 0, 1, 2


@dataclass(frozen=True)
class Columns:
    """Segments expanded into mixing columns (C of them), with a chunk -> columns index.

    ``chunk_ptr``: (n_chunks + 1,) int64 and ``chunk_cols``: int64; the columns touching chunk
    ``c`` are ``chunk_cols[chunk_ptr[c]:chunk_ptr[c + 1]]``.
    """

    track: np.ndarray
    first: np.ndarray
    last: np.ndarray
    ramp_start: np.ndarray
    ramp_step: np.ndarray
    kind: np.ndarray
    gains: np.ndarray
    chunk_ptr: np.ndarray
    chunk_cols: np.ndarray


def expand_columns(segments: Segments, n_frames: int, chunk_frames: int) -> Columns:
    """Expand ``segments`` into columns and index them by chunk of ``chunk_frames`` frames."""
    ramp = segments.is_ramp
    hold = ~ramp
    parts = []
    for mask, kind, gains in (
        (hold, HOLD, segments.gains_to),
        (ramp, FADE_OUT, segments.gains_from),
        (ramp, FADE_IN, segments.gains_to),
    ):
        parts.append((
            segments.track[mask], segments.first[mask], segments.last[mask],
            segments.ramp_start[mask], segments.ramp_step[mask],
            np.full(int(mask.sum()), kind, np.int32), gains[mask],
        ))
    track, first, last, p0, dp, kind, gains = (np.concatenate(x) for x in zip(*parts))
    last = np.minimum(last, n_frames)
    keep = last > first
    track, first, last, p0, dp, kind, gains = (
        a[keep] for a in (track, first, last, p0, dp, kind, gains))

    n_chunks = max(1, -(-n_frames // chunk_frames))
    chunk_lo = first // chunk_frames
    chunk_hi = (last - 1) // chunk_frames
    counts = chunk_hi - chunk_lo + 1
    col_of_entry = np.repeat(np.arange(len(first)), counts)
    starts = np.repeat(chunk_lo - np.cumsum(counts) + counts, counts)
    chunk_of_entry = starts + np.arange(len(col_of_entry))
    order = np.argsort(chunk_of_entry, kind="stable")
    chunk_cols = col_of_entry[order]
    chunk_ptr = np.searchsorted(chunk_of_entry[order], np.arange(n_chunks + 1))
    return Columns(track.astype(np.int32), first, last, p0, dp, kind,
                   gains.astype(np.float32), chunk_ptr.astype(np.int64), chunk_cols)


@jax.jit
def _mix_chunk(x, track, rel_first, rel_last, p_first, step, kind, gains):
    """One chunk: x (N, T) float32; per column (C,) arrays; gains (C, n_out) -> (N, n_out).

    ``rel_first``/``rel_last``: the column's range within the chunk; ``p_first``: the
    interpolation factor at ``rel_first``; ``step``: its increment per sample.
    """
    n = x.shape[0]
    i = jnp.arange(n, dtype=jnp.int32)[:, None]
    inside = (i >= rel_first[None, :]) & (i < rel_last[None, :])
    p = p_first[None, :] + (i - rel_first[None, :]).astype(jnp.float32) * step[None, :]
    weight = jnp.where(kind[None, :] == HOLD, 1.0, jnp.where(kind[None, :] == FADE_OUT, 1.0 - p, p))
    a = jnp.where(inside, x[:, track] * weight, 0.0)
    return jnp.dot(a, gains, precision=jax.lax.Precision.HIGHEST)


def _bucket(n: int) -> int:
    size = 32
    while size < n:
        size *= 2
    return size


class Mixer:
    """Mixes chunks of input audio with a gain plan; call :meth:`mix` with consecutive chunks."""

    def __init__(self, segments: Segments, n_outputs: int, n_frames: int, chunk_frames: int):
        self.columns = expand_columns(segments, n_frames, chunk_frames)
        self.n_outputs = n_outputs
        self.chunk_frames = chunk_frames

    def mix(self, chunk_index: int, x: np.ndarray) -> np.ndarray:
        """Output (len(x), n_outputs) float32 for input chunk ``chunk_index`` (float32 (N, T))."""
        cols = self.columns
        n = len(x)
        if chunk_index + 1 >= len(cols.chunk_ptr):
            return np.zeros((n, self.n_outputs), np.float32)
        idx = cols.chunk_cols[cols.chunk_ptr[chunk_index]:cols.chunk_ptr[chunk_index + 1]]
        if len(idx) == 0:
            return np.zeros((n, self.n_outputs), np.float32)
        start = chunk_index * self.chunk_frames
        first = cols.first[idx]
        rel_first = np.clip(first - start, 0, n)
        rel_last = np.clip(cols.last[idx] - start, 0, n)
        p_first = cols.ramp_start[idx] + (start + rel_first - first) * cols.ramp_step[idx]
        size = _bucket(len(idx))
        pad = size - len(idx)

        def padded(a, dtype):
            return np.pad(a.astype(dtype), [(0, pad)] + [(0, 0)] * (a.ndim - 1))

        n_padded = self.chunk_frames
        if n < n_padded:
            x = np.pad(x, ((0, n_padded - n), (0, 0)))
        out = _mix_chunk(
            jnp.asarray(x, jnp.float32),
            padded(cols.track[idx], np.int32),
            padded(rel_first, np.int32),
            padded(rel_last, np.int32),
            padded(p_first, np.float32),
            padded(cols.ramp_step[idx], np.float32),
            padded(cols.kind[idx], np.int32),
            padded(cols.gains[idx], np.float32),
        )
        return np.asarray(out)[:n]
