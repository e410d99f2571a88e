"""Decorrelation filters and streaming FIR processing for the diffuse path of Objects.

BS.2127 clause 7.4 (decorrelation filters) and clause 7.1 (structure of the object renderer):
an object's gains are split into a *direct* part, ``sqrt(1 - diffuse)``, and a *diffuse* part,
``sqrt(diffuse)``. The diffuse loudspeaker signals are each filtered by a per-channel random-phase
all-pass FIR filter, the direct signals are delayed by the filters' group delay ``D``, and the
two are summed.

Filter design (one filter per output channel, length ``L`` = 512 by default):

* the channel's *seed* is the position of its name in the layout's channel names sorted as
  Python strings (code-point order), so a channel gets the same filter whatever its position in
  the output;
* ``L // 2 - 1`` uniform numbers ``u_i = w_i / 2**32`` are made from the raw 32-bit outputs
  ``w_i`` of the MT19937 generator initialised with that seed (the standard ``init_genrand``);
* the spectrum of the filter has unit magnitude at every rfft bin, phase 0 at DC and Nyquist
  and phase ``2 pi u_i`` at bins ``1 .. L/2 - 1``; the filter is its inverse real DFT.

Alignment contract of a file render (the reference renders the whole file, then a tail of
zeros, and advances the object renderer's output by its delay):

* the direct signal is delayed by ``D = (L - 1) // 2``: ``a[t] = direct[t - D]``;
* the diffuse signal is convolved: ``b[t] = sum_k h[k] diffuse[t - k]``;
* the sum is advanced by ``D`` so that it lines up with DirectSpeakers/HOA output and time 0:
  ``out[t] = a[t + D] + b[t + D] = direct[t] + sum_k h[k] diffuse[t + D - k]``,
  for ``0 <= t < N`` (``diffuse`` taken as zero outside ``[0, N)``; the last ``D`` outputs need
  ``D`` samples of zero tail pushed through the stream).

The reference additionally runs its convolver through a fixed-block adapter that adds one block
(512 samples) of latency to both paths and removes it again; that latency cancels and does not
change the output, so it is not reproduced here.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.fft
from numpy.lib.stride_tricks import sliding_window_view

from layouts.model import Layout

FILTER_LENGTH = 512
"""Default decorrelation filter length in samples (BS.2127 clause 7.4)."""

DECORRELATOR_DELAY = (FILTER_LENGTH - 1) // 2
"""Delay of the direct path (samples) matching the filters' group delay: 255."""


def mt19937_words(seed: int, n: int) -> np.ndarray:
    """(n,) uint32: the first ``n`` raw outputs of MT19937 seeded by ``init_genrand(seed)``.

    numpy's legacy ``RandomState`` uses exactly this seeding for an integer seed, and a draw of
    full-range 32-bit integers returns the generator's words unmodified.
    """
    if not 0 <= seed < 2**32:
        raise ValueError(f"decorrelation filter seed {seed} is outside [0, 2**32)")
    state = np.random.RandomState(seed)
    return state.randint(0, 1 << 32, size=n, dtype=np.uint32)


def design_decorrelator(seed: int, length: int = FILTER_LENGTH) -> np.ndarray:
    """(length,) float64 random-phase all-pass FIR filter for one channel (BS.2127 clause 7.4).

    ``seed``: the channel's index in the sorted channel names. ``length``: even filter length
    in samples. The DFT of the result has magnitude exactly 1 (to rounding) at all bins.
    """
    if length < 4 or length % 2:
        raise ValueError(f"decorrelation filter length must be even and >= 4, got {length}")
    n_bins = length // 2 + 1
    uniform = mt19937_words(seed, n_bins - 2) / 2.0**32
    phase = np.zeros(n_bins)
    phase[1:-1] = 2.0 * np.pi * uniform
    spectrum = np.exp(1j * phase)
    return np.fft.irfft(spectrum, n=length)


def decorrelator_seeds(channel_names: Sequence[str]) -> list[int]:
    """Seed of each channel: the index of its name in the names sorted as Python strings.

    A repeated name gets the index of its first occurrence in the sorted list.
    """
    ordered = sorted(channel_names)
    first: dict[str, int] = {}
    for i, name in enumerate(ordered):
        first.setdefault(name, i)
    return [first[name] for name in channel_names]


def design_decorrelators(layout: Layout, length: int = FILTER_LENGTH) -> np.ndarray:
    """(length, n_channels) float64: one decorrelation filter per channel of ``layout``.

    Channels are in the layout's output order (LFE channels included, as the reference does;
    their diffuse gains are zero anyway). BS.2127 clause 7.4.
    """
    seeds = decorrelator_seeds(layout.channel_names)
    if not seeds:
        return np.zeros((length, 0))
    return np.stack([design_decorrelator(s, length) for s in seeds], axis=1)


def decorrelator_delay(length: int) -> int:
    """Delay in samples for the direct path for filters of ``length`` taps: ``(length-1)//2``."""
    return (length - 1) // 2


def _check_block(x: np.ndarray, n_channels: int, who: str) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim != 2 or x.shape[1] != n_channels:
        raise ValueError(f"{who}: expected a (frames, {n_channels}) array, got shape {x.shape}")
    return x


class StreamingConvolver:
    """Per-channel FIR convolution of a stream, one filter per channel, no added latency.

    ``filters``: (L, C) taps. ``process(x)`` takes (n, C) frames (any ``n``, including 0) and
    returns (n, C): ``y[t] = sum_k filters[k, c] x[t - k, c]`` over the whole stream, i.e. the
    first ``n`` samples of the full linear convolution of everything pushed so far. State (the
    last ``L - 1`` input frames) is kept between calls. FFT overlap-save with ``fft_size``-point
    transforms (rounded up to a power of two of at least ``2 L``; short calls use one
    power-of-two transform covering the call). Computation is
    in float32 for float32 input (relative error about 1e-6, the renderer's audio precision)
    and in float64 otherwise; the output has that dtype. ``workers``: threads for scipy.fft.
    """

    def __init__(self, filters: np.ndarray, fft_size: int = 8192, workers: int = 1) -> None:
        filters = np.asarray(filters, dtype=np.float64)
        if filters.ndim != 2 or filters.shape[0] < 1:
            raise ValueError(f"StreamingConvolver: filters must be (L, C), got {filters.shape}")
        self.filters = filters
        self.length, self.n_channels = filters.shape
        self.fft_size = 1 << max(2 * self.length - 1, int(fft_size) - 1).bit_length()
        self.workers = workers
        # (L - 1, C) the last input frames of the stream, oldest first
        self._history = np.zeros((self.length - 1, self.n_channels))
        self._spectra: dict[tuple[int, str], np.ndarray] = {}

    def reset(self) -> None:
        """Forget the stream's past (as if nothing had been processed)."""
        self._history[:] = 0.0

    def _spectrum(self, nfft: int, dtype: np.dtype) -> np.ndarray:
        """(C, nfft // 2 + 1) complex: the filters' DFTs, zero-padded to ``nfft``."""
        key = (nfft, dtype.str)
        if key not in self._spectra:
            taps = self.filters.T.astype(dtype)
            self._spectra[key] = scipy.fft.rfft(taps, n=nfft, axis=-1)
        return self._spectra[key]

    def process(self, x: np.ndarray) -> np.ndarray:
        """(n, C) -> (n, C): the next ``n`` samples of the filtered stream."""
        x = _check_block(x, self.n_channels, "StreamingConvolver.process")
        n, c = x.shape
        dtype = np.dtype(np.float32) if x.dtype == np.float32 else np.dtype(np.float64)
        keep = self.length - 1
        if n == 0:
            return np.zeros((0, c), dtype=dtype)
        if n + keep <= self.fft_size:
            # one transform; buf[j] is input frame j - keep of this call
            nfft = 1 << (n + keep - 1).bit_length()  # few distinct sizes: bounded cache
            buf = np.zeros((nfft, c), dtype=dtype)
            buf[:keep] = self._history
            buf[keep:keep + n] = x
            spec = scipy.fft.rfft(buf, axis=0, workers=self.workers)
            spec *= self._spectrum(nfft, dtype).T
            y = scipy.fft.irfft(spec, n=nfft, axis=0, workers=self.workers)[keep:keep + n]
            self._history = buf[n:n + keep].astype(np.float64)
            return np.ascontiguousarray(y, dtype=dtype)
        return self._overlap_save(x, dtype)

    def _overlap_save(self, x: np.ndarray, dtype: np.dtype) -> np.ndarray:
        """(n, C) -> (n, C) for a call longer than one transform, in batches of blocks."""
        n, c = x.shape
        keep = self.length - 1
        nfft = self.fft_size
        hop = nfft - keep
        h_spec = self._spectrum(nfft, dtype)
        out = np.empty((n, c), dtype=dtype)
        group = 4  # blocks per batch: keeps the working set in cache
        seg = np.empty(((group - 1) * hop + nfft, c), dtype=dtype)
        seg[:keep] = self._history
        pos = 0  # first output frame of the batch; seg[j] is input frame pos - keep + j
        while pos < n:
            n_blocks = min(group, -(-(n - pos) // hop))
            rows = (n_blocks - 1) * hop + nfft
            avail = min(n - pos, rows - keep)
            seg[keep:keep + avail] = x[pos:pos + avail]
            seg[keep + avail:rows] = 0.0
            # (blocks, C, nfft) view of the overlapping input windows
            windows = sliding_window_view(seg[:rows], nfft, axis=0)[::hop]
            spec = scipy.fft.rfft(windows, axis=-1, workers=self.workers)
            spec *= h_spec
            y = scipy.fft.irfft(spec, n=nfft, axis=-1, workers=self.workers)[:, :, keep:]
            m = min(n_blocks * hop, n - pos)
            if m == n_blocks * hop:
                out[pos:pos + m].reshape(n_blocks, hop, c)[:] = y.transpose(0, 2, 1)
            else:
                out[pos:pos + m] = y.transpose(0, 2, 1).reshape(n_blocks * hop, c)[:m]
            pos += m
            seg[:keep] = seg[m:m + keep]  # the last `keep` input frames seen so far
        self._history = seg[:keep].astype(np.float64)
        return out


class StreamingDelay:
    """Multi-channel integer delay line: ``y[t] = x[t - delay]`` (zeros before the start).

    ``process(x)`` takes (n, C) frames (any ``n``) and returns (n, C) of the same dtype.
    """

    def __init__(self, n_channels: int, delay: int) -> None:
        if delay < 0:
            raise ValueError(f"StreamingDelay: delay must be >= 0 samples, got {delay}")
        self.n_channels = int(n_channels)
        self.delay = int(delay)
        self._memory = np.zeros((self.delay, self.n_channels))

    def reset(self) -> None:
        """Clear the delay line."""
        self._memory[:] = 0.0

    def process(self, x: np.ndarray) -> np.ndarray:
        """(n, C) -> (n, C): the input delayed by ``delay`` samples."""
        x = _check_block(x, self.n_channels, "StreamingDelay.process")
        if self.delay == 0:
            return x.copy()
        joined = np.concatenate([self._memory.astype(x.dtype, copy=False), x], axis=0)
        self._memory = joined[len(x):].astype(np.float64)
        return joined[:len(x)].copy()


class DiffuseMixer:
    """Delayed direct plus decorrelated diffuse loudspeaker signals, streamed, time-aligned.

    ``filters``: (L, C) decorrelation filters (see :func:`design_decorrelators`). ``process``
    takes the direct and diffuse loudspeaker signals of the next ``n`` input frames, (n, C)
    each, and returns the frames of the aligned output that are now complete:
    ``out[t] = direct[t] + sum_k h[k] diffuse[t + D - k]`` with ``D = (L - 1) // 2``. The first
    ``D`` frames of the stream are held back, so the first calls may return fewer than ``n``
    frames; :meth:`finish` returns the last ``D`` frames (the tail flushed with zeros). Over a
    whole stream the output has exactly as many frames as the input.
    """

    def __init__(self, filters: np.ndarray) -> None:
        self.convolver = StreamingConvolver(filters)
        self.n_channels = self.convolver.n_channels
        self.delay = decorrelator_delay(self.convolver.length)
        self.direct_delay = StreamingDelay(self.n_channels, self.delay)
        self._to_drop = self.delay
        self._frames_in = 0
        self._dtype = np.dtype(np.float64)

    def _mix(self, direct: np.ndarray, diffuse: np.ndarray) -> np.ndarray:
        direct = _check_block(direct, self.n_channels, "DiffuseMixer.process (direct)")
        diffuse = _check_block(diffuse, self.n_channels, "DiffuseMixer.process (diffuse)")
        if direct.shape != diffuse.shape:
            raise ValueError(
                f"DiffuseMixer.process: direct {direct.shape} and diffuse {diffuse.shape} "
                "must have the same shape")
        mixed = self.direct_delay.process(direct) + self.convolver.process(diffuse)
        drop = min(self._to_drop, len(mixed))
        self._to_drop -= drop
        return mixed[drop:]

    def process(self, direct: np.ndarray, diffuse: np.ndarray) -> np.ndarray:
        """(n, C), (n, C) -> (m, C), m <= n: the next complete frames of the aligned output."""
        self._frames_in += len(direct)
        self._dtype = np.result_type(direct, diffuse)
        return self._mix(direct, diffuse)

    def finish(self) -> np.ndarray:
        """(m, C): the remaining output frames, so that the total equals the input length."""
        n_tail = min(self.delay, self._frames_in)
        zeros = np.zeros((self.delay, self.n_channels), dtype=self._dtype)
        return self._mix(zeros, zeros)[:n_tail]


def diffuse_render_reference(
    direct: np.ndarray, diffuse: np.ndarray, filters: np.ndarray
) -> np.ndarray:
    """(N, C) aligned object-renderer output of a whole file, as a file render produces it.

    ``direct``/``diffuse``: (N, C) loudspeaker signals of the direct and diffuse paths;
    ``filters``: (L, C). Returns ``out[t] = direct[t] + sum_k h[k] diffuse[t + D - k]``,
    ``D = (L - 1) // 2``: the direct path delayed by ``D``, the diffuse path convolved, the sum
    advanced by ``D`` with a tail of ``D`` zeros pushed through to flush it (see the module
    docstring). For tests and for checking a streaming engine against a one-shot result.
    """
    mixer = DiffuseMixer(filters)
    body = mixer.process(direct, diffuse)
    return np.concatenate([body, mixer.finish()], axis=0)
