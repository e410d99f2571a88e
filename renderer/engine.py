"""Streaming mix of a gain plan over the input audio.

The gain of each track is a piecewise-linear function of the sample index (see
:mod:`renderer.timing`): *holds* (constant gains) and *ramps* (linear from one gain vector to
another). The engine splits the audio into sub-blocks of ``sub_block`` frames and sends
``sub_blocks`` of them at a time to one jitted JAX function. Each segment is seen as what it
adds to its track's gains: its first gains from its first frame on, the change of a ramp
(``to - from``) weighted by its interpolation factor (which stays 1 after the ramp), and its
last gains taken away from its end on. So for each sub-block:

* the gains of the segments playing at its first frame form a dense (tracks, outputs)
  matrix, and most of the work is a batched matrix product ``x @ G``;
* what changes inside it is a few *transition columns*: the steps where segments start or
  end inside it (those of one track at one frame summed: a hold that follows a ramp to its
  gains adds nothing), and the ramps touching it. Their contribution is ``A @ D`` with
  ``A[s, c] = x[s, track_c] * weight_c(s)`` and ``D`` the changes of gains: 0 before the
  column's frame, then 1 for a step; for a ramp, its interpolation factor ``p`` until its
  end and 1 after it.

Column counts are padded to powers of two, so a few compiled shapes serve a whole file.

On the CPU the same computation is done by a native kernel (``renderer/_mixkernel.c``, built
with the package where a C compiler is found) which decodes the file's sample bytes as it
mixes them, four frames at a time, in worker threads: no float32 copy of the input goes
through memory, and the products run at the CPU's vector width (numpy's decoding and XLA's
CPU code for these small products took about three times its CPU time, benchmarks/README.md).
Without it, or on an accelerator, the JAX kernel runs. Where the tracks themselves are needed
(binaural outputs, Matrix delays), the kernel's decoding gives them
(:meth:`Mixer.start_decoding`).

Segments are swept in time order, taken from their source (:mod:`renderer.segment_store`) as
the mix reaches them and dropped when they end, so the mixer holds only the segments playing
and memory does not grow with the file's length; the JAX call for one batch runs while the
caller reads the next.
"""

from __future__ import annotations

import functools
from concurrent.futures import Future, ThreadPoolExecutor
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from adm.bw64 import aligned_empty
from renderer.segment_store import SegmentSource, SegmentWindow
from renderer.timing import SEGMENT_FIELDS, Segments
from renderer.workers import available_cpus

try:  # the native kernel, where the package was built with it
    from renderer import _mixkernel
except ImportError:  # pragma: no cover - a build without a C compiler
    _mixkernel = None

NATIVE_KERNEL: bool | None = None
"""Whether mixers use the native kernel (None: where it is built and JAX runs on the CPU)."""

_NATIVE_ENCODINGS = {"pcm16": (0, 2), "pcm24": (1, 3), "pcm32": (2, 4), "float32": (3, 4),
                     "float": (3, 4)}
"""The native kernel's code of each encoding, and the bytes of one sample."""


def native_kernel_available() -> bool:
    """Whether the native mixing kernel was built with the package."""
    return _mixkernel is not None


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
def _mix_batch(data, base_gains, track, rel_first, rel_last, p_first, step, delta, encoding,
               n_tracks):
    """Mix K sub-blocks of M frames.

    data: (K, M, T) float32 input, or (K, M, T * bytes) uint8 sample bytes (see
    :func:`decode_samples`). base_gains: (K, T, n_out) the gains at each sub-block's start
    (see :class:`Mixer`). Transition columns, (K, C) each: the track, the first frame of the
    sub-block it changes (``rel_first``), the frame from which its weight is 1
    (``rel_last``), its weight at ``rel_first`` (``p_first``) and the weight's increase per
    frame (``step``); delta (K, C, n_out): the change of gains it makes. A column's weight
    at frame m is 0 before ``rel_first``, ``p_first + (m - rel_first) * step`` before
    ``rel_last``, 1 from it on. Returns (K * M, n_out).
    """
    x = decode_samples(data, encoding, n_tracks)
    dense = jnp.einsum("kmt,kto->kmo", x, base_gains)
    m = x.shape[1]
    i = jnp.arange(m, dtype=jnp.int32)[None, :, None]
    since = i - rel_first[:, None, :]
    p = p_first[:, None, :] + since.astype(jnp.float32) * step[:, None, :]
    weight = jnp.where(since < 0, 0.0, jnp.where(i < rel_last[:, None, :], p, 1.0))
    columns = jnp.take_along_axis(x, track[:, None, :], axis=2)
    out = dense + jnp.einsum("kmc,kco->kmo", columns * weight, delta)
    return out.reshape(-1, out.shape[-1])


class MixTables(NamedTuple):
    """What one batch of K sub-blocks is mixed with (see :func:`_mix_batch`): base_gains
    (K, T, n_out) float32; track, rel_first, rel_last (K, C) int32; p_first, step (K, C)
    float32; delta (K, C, n_out) float32; counts (K,) int: the columns each sub-block uses
    (its first ones; the others are padding, of no effect)."""

    base_gains: np.ndarray
    track: np.ndarray
    rel_first: np.ndarray
    rel_last: np.ndarray
    p_first: np.ndarray
    step: np.ndarray
    delta: np.ndarray
    counts: np.ndarray


class PendingMix:
    """A batch being mixed by the native kernel in worker threads: ``np.asarray(pending)``
    waits for it and gives the (frames_per_call, n_outputs) float32 result. ``done``, if
    given, is called once the threads have finished (it releases their input)."""

    def __init__(self, out: np.ndarray, parts: list[Future], done=None) -> None:
        self._out, self._parts, self._done = out, parts, done

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        try:
            for part in self._parts:
                part.result()
        finally:
            self._parts = []
            if self._done is not None:
                done, self._done = self._done, None
                done()
        return self._out if dtype is None else self._out.astype(dtype)


def _spans(count: int, parts: int) -> list[tuple[int, int]]:
    """[0, count) cut into at most ``parts`` non-empty consecutive spans of nearly equal
    length (the work of the native kernel's threads)."""
    edges = np.linspace(0, count, max(1, min(count, parts)) + 1).round().astype(int).tolist()
    return [(a, b) for a, b in zip(edges[:-1], edges[1:]) if b > a]


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
    input channels. Call :meth:`dispatch` (or :meth:`dispatch_bytes`) with consecutive
    batches of ``frames_per_call`` frames (the last may be shorter); it returns the result
    being computed: ``np.asarray`` of it is (frames_per_call, n_outputs) float32, of which
    the first ``len(x)`` rows are the output. ``native``: mix with the native kernel (default:
    :data:`NATIVE_KERNEL`); :meth:`close` stops its threads.
    """

    def __init__(self, plan: Segments | SegmentSource, n_outputs: int, n_tracks: int,
                 sub_block: int = 256, sub_blocks: int = 128, native: bool | None = None):
        self.source = plan if isinstance(plan, SegmentSource) else SegmentSource.of(plan)
        self.n_outputs = n_outputs
        self.n_tracks = n_tracks
        self.sub_block = sub_block
        self.sub_blocks = sub_blocks
        self.frames_per_call = sub_block * sub_blocks
        if native is None:
            native = (NATIVE_KERNEL if NATIVE_KERNEL is not None
                      else _mixkernel is not None and jax.default_backend() == "cpu")
        if native and (_mixkernel is None or sub_block % 4 or n_outputs > 512):
            native = False
        self.native = native
        self._position = 0  # first frame of the next batch
        self._window = SegmentWindow(self.source, n_outputs)  # the segments playing
        self._pool: ThreadPoolExecutor | None = None
        self._table_width = 16  # columns of the last batch's tables

    def dispatch(self, x: np.ndarray, encoding: str = "float") -> jax.Array | PendingMix:
        """Start mixing the next batch ``x``: float32 (frames, n_tracks) samples, or the
        file's sample bytes (frames, n_tracks * bytes) with their ``encoding`` (see
        :func:`decode_samples`). See the class doc for the result."""
        n = len(x)
        if self.native:
            data = np.ascontiguousarray(x, np.float32 if encoding == "float" else None)
            if encoding == "pcm24":  # with a byte before the first sample
                data = np.concatenate([np.zeros(1, np.uint8), data.reshape(-1).view(np.uint8)])
                return self.dispatch_bytes(data, 1, n, encoding)
            return self.dispatch_bytes(data, 0, n, encoding)
        tables = self._tables(n)
        if n < self.frames_per_call:  # the last batch, padded with silence
            padded = aligned_empty((self.frames_per_call,) + x.shape[1:], x.dtype)
            padded[:n] = x
            padded[n:] = 0
            x = padded
        return _mix_batch(x.reshape(self.sub_blocks, self.sub_block, -1), *tables[:-1],
                          encoding=encoding, n_tracks=self.n_tracks)

    def dispatch_bytes(self, data, first_byte: int, n: int, encoding: str,
                       done=None) -> PendingMix:
        """Start mixing the next batch of ``n`` frames with the native kernel, from the
        bytes ``data`` (a buffer: the file's samples from byte ``first_byte`` on, as
        ``encoding`` "pcm16", "pcm24", "pcm32" or "float32"/"float" gives them; "pcm24" needs
        the byte before ``first_byte``). ``done()`` is called when the kernel no longer
        reads ``data``. See the class doc for the result."""
        if not self.native:
            raise ValueError("this mixer does not use the native kernel")
        width = -(-self.n_outputs // 4) * 4  # the kernel's vectors of 8 (and 4) outputs
        tables = self._tables(n, width)  # made in C: contiguous, as the kernel takes them
        out = np.empty((self.frames_per_call, width), np.float32)
        code, _ = _NATIVE_ENCODINGS[encoding]
        futures = [self._threads().submit(
            _mixkernel.mix, data, first_byte, n, code, self.n_tracks, self.sub_block, *tables,
            k0, k1, out)
            for k0, k1 in _spans(self.sub_blocks, 2 * available_cpus())]
        return PendingMix(out[:, :self.n_outputs], futures, done)

    def start_decoding(self, data, first_byte: int, n: int, encoding: str,
                       out: np.ndarray) -> list[Future]:
        """Start decoding ``n`` frames of the file's bytes (as :meth:`dispatch_bytes` takes
        them) into ``out`` (n, the file's channels) float32 with the native kernel's decoding,
        in its threads: the parts being decoded (``out`` and ``data`` are in use until they
        are done)."""
        if not self.native:
            raise ValueError("this mixer does not use the native kernel")
        code, width = _NATIVE_ENCODINGS[encoding]
        channels = out.shape[1]  # the mixer's tracks may add delayed copies of some
        return [self._threads().submit(_mixkernel.decode, data,
                                       first_byte + a * channels * width, b - a, code,
                                       channels, out[a:b])
                for a, b in _spans(n, available_cpus())]

    def _threads(self) -> ThreadPoolExecutor:
        """The native kernel's worker threads (started when first needed)."""
        if self._pool is None:
            self._pool = ThreadPoolExecutor(available_cpus(), thread_name_prefix="mix")
        return self._pool

    def close(self) -> None:
        """Stop the native kernel's threads (idempotent)."""
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None

    def _tables(self, n: int, outputs: int | None = None) -> MixTables:
        """The tables of the next batch of ``n`` frames; the mixer moves on to the batch
        after it. ``outputs``: the native kernel's gain columns of base_gains and delta, at
        least ``n_outputs`` (those past it zero: its padding). Made in C with the native
        kernel (``_mixkernel.tables``), else by :meth:`_tables_numpy`."""
        start = self._position
        self._position += n
        # the segments overlapping frames [start, start + n) (the sweep goes forward in time)
        self._window.take(start + n)
        self._window.drop(start)
        segs = self._window.segments
        if not self.native:
            return self._tables_numpy(segs, start)
        return self._tables_native(segs, start, self.n_outputs if outputs is None else outputs)

    def _tables_native(self, segs: Segments, start: int, outputs: int) -> MixTables:
        """:meth:`_tables` in C (``_mixkernel.tables``), from the segments ``segs``
        overlapping the batch that starts at frame ``start``."""
        k_count, n_tracks = self.sub_blocks, self.n_tracks
        base_gains = aligned_empty((k_count, n_tracks, outputs), np.float32)
        counts = np.empty(k_count, np.int64)
        arguments = [np.ascontiguousarray(getattr(segs, f), dtype) for f, dtype in (
            ("track", np.int32), ("first", np.int64), ("last", np.int64),
            ("ramp_start", np.float64), ("ramp_step", np.float64),
            ("gains_from", np.float32), ("gains_to", np.float32))]
        width = self._table_width
        while True:
            columns = [np.empty((k_count, width), dtype) for dtype in (
                np.int32, np.int32, np.int32, np.float32, np.float32)]
            delta = np.empty((k_count, width, outputs), np.float32)
            needed = _mixkernel.tables(*arguments, start, self.sub_block, n_tracks, width,
                                       base_gains, *columns, delta, counts)
            if needed == width:
                return MixTables(base_gains, *columns, delta, counts)
            self._table_width = width = needed

    def _tables_numpy(self, segs: Segments, start: int) -> MixTables:
        """:meth:`_tables` in numpy, from the segments ``segs`` overlapping the batch that
        starts at frame ``start``."""
        m, k_count = self.sub_block, self.sub_blocks
        if (segs.last <= segs.first).any():  # an empty segment adds nothing (nor its steps)
            nonempty = segs.last > segs.first
            segs = Segments(*(getattr(segs, f)[nonempty] for f in SEGMENT_FIELDS))
        first, last = segs.first - start, segs.last - start  # relative to this batch
        is_ramp = segs.is_ramp
        begin = np.where(is_ramp[:, None], segs.gains_from, segs.gains_to)  # (S, n_out)

        # The gains at each sub-block's start: those of the segments covering it (a ramp:
        # its from-gains, its ramp being a transition column)
        lo = np.clip(-(-first // m), 0, k_count)
        hi = np.clip(-(-last // m), 0, k_count)  # exclusive
        covers = hi > lo
        base_gains = self._base_gains(lo[covers], hi[covers], segs.track[covers],
                                      begin[covers])

        # Steps inside sub-blocks: each segment adds its first gains where it starts and
        # takes its last gains away where it ends; those of one track at one frame are summed
        # (a hold following a ramp to its gains cancels out) and zero sums are left out
        frames = k_count * m
        at = np.concatenate([first, last])
        inside = (at > 0) & (at < frames) & (at % m != 0)
        key = (np.concatenate([segs.track, segs.track]).astype(np.int64)[inside] * frames
               + at[inside])
        change = np.concatenate([begin, -segs.gains_to])[inside]
        order = np.argsort(key, kind="stable")
        key = key[order]
        runs = np.flatnonzero(np.concatenate([[True], key[1:] != key[:-1]])) if len(key) \
            else np.zeros(0, np.intp)
        keys = key[runs]
        steps = (np.add.reduceat(change[order].astype(np.float64), runs, axis=0) if len(runs)
                 else np.zeros((0, self.n_outputs)))
        kept = np.flatnonzero(steps.any(axis=1))
        step_track, step_at = np.divmod(keys[kept], frames)

        # Ramps: a column in every sub-block they touch, weighted by their interpolation
        # factor, and by 1 after their end (where their last gains are taken away)
        ramp = np.flatnonzero(is_ramp & (first < frames) & (last > 0))
        sb_lo = np.clip(first[ramp] // m, 0, k_count - 1)
        sb_hi = np.clip((last[ramp] - 1) // m, 0, k_count - 1)
        span = sb_hi - sb_lo + 1
        which_ramp = np.repeat(ramp, span)
        ramp_sb = np.repeat(sb_lo, span) + (np.arange(int(span.sum()))
                                            - np.repeat(np.cumsum(span) - span, span))
        ramp_first = np.clip(first[which_ramp] - ramp_sb * m, 0, m)
        ramp_last = np.clip(last[which_ramp] - ramp_sb * m, 0, m)
        ramp_p0 = segs.ramp_start[which_ramp] + (
            ramp_sb * m + ramp_first - first[which_ramp]) * segs.ramp_step[which_ramp]

        entry_sb = np.concatenate([step_at // m, ramp_sb])
        order = np.argsort(entry_sb, kind="stable")
        entry_sb = entry_sb[order]
        counts = np.bincount(entry_sb, minlength=k_count)
        width = _bucket(int(counts.max()) if len(counts) else 1)
        slot = np.arange(len(entry_sb)) - np.repeat(np.cumsum(counts) - counts, counts)
        n_steps = len(kept)

        def table(step_values, ramp_values, dtype, extra=()):
            out = np.zeros((k_count, width) + extra, dtype)
            values = np.concatenate([np.broadcast_to(step_values, (n_steps,) + extra),
                                     ramp_values])
            out[entry_sb, slot] = values[order]
            return out

        ramp_delta = segs.gains_to[which_ramp] - segs.gains_from[which_ramp]
        return MixTables(
            base_gains,
            table(step_track, segs.track[which_ramp], np.int32),
            table(step_at % m, ramp_first, np.int32),
            table(step_at % m, ramp_last, np.int32),
            table(1.0, ramp_p0, np.float32),
            table(0.0, segs.ramp_step[which_ramp], np.float32),
            table(steps[kept], ramp_delta, np.float32, (self.n_outputs,)),
            counts,
        )

    def _base_gains(self, lo: np.ndarray, hi: np.ndarray, tracks: np.ndarray,
                    gains: np.ndarray) -> np.ndarray:
        """(sub_blocks, n_tracks, n_outputs) float32 gains at the start of each sub-block:
        ``gains`` (H, n_outputs) of ``tracks`` (H,) at the starts of sub-blocks ``[lo, hi)``.
        Where no two segments of one track share a sub-block start (the usual case) each gain
        is placed as it is; otherwise they are summed (in float64) through a difference array
        over sub-blocks."""
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
