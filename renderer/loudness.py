"""Loudness and true-peak metering: ITU-R BS.1770-4/5, EBU Tech 3341 and EBU Tech 3342.

The meter streams: :class:`LoudnessMeter` takes blocks of any size, shape (frames, channels),
and keeps only filter states, a few frames of history and one float per 100 ms of audio, so
its memory does not depend on the programme's length beyond that.

Signal path (BS.1770-4 Annex 1):

* K-weighting: the two biquads of BS.1770 (a high-shelf "pre-filter" and the RLB high-pass).
  The standard gives their coefficients at 48 kHz. For other rates each biquad is mapped back
  through the bilinear transform to its analogue prototype (natural frequency, damping and
  numerator shape) and transformed again at the new rate with the frequency prewarped at the
  prototype's natural frequency, so 44.1, 88.2 and 96 kHz get the same response.
* Mean square of each channel per 100 ms hop, weighted by the channel weights ``G_i`` and
  summed over channels; 400 ms gating blocks (75 % overlap) and 3 s short-term windows are
  sums of consecutive hops.
* Integrated loudness: absolute gate -70 LUFS, relative gate -10 LU (BS.1770-4 eq. 5-7).
* Loudness range: EBU Tech 3342 (short-term values, absolute gate -70 LUFS, relative gate
  -20 LU, 95th minus 10th percentile).
* True peak: BS.1770-4 Annex 2, oversampling by 4 below 88.2 kHz, by 2 below 176.4 kHz, none
  above, with a linear-phase Kaiser-windowed sinc interpolator of 32 taps per phase (flat
  within 0.002 dB to 20 kHz at 48 kHz, to 18 kHz at 44.1 kHz), evaluated blockwise as two
  matrix products per chunk for all channels.

Levels: ``L = -0.691 + 10 log10(sum_i G_i z_i)`` LUFS, ``z_i`` the mean square of the
K-weighted channel ``i`` (BS.1770-4 eq. 2). A trailing part of the programme shorter than
100 ms is not part of any gating block (as in BS.1770, which uses complete blocks only), but it
is part of the sample and true peaks.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import scipy.signal as ssig

from layouts import Layout, LayoutError, get_layout

__all__ = [
    "LoudnessError",
    "LoudnessMeter",
    "LoudnessResult",
    "channel_weights",
    "integrated_from_blocks",
    "k_weighting_sos",
    "loudness_range",
    "measure",
    "measure_file",
    "true_peak_oversampling",
    "weights_for_channel_count",
]


class LoudnessError(ValueError):
    """Invalid meter input (shape, sample rate, weights) or unreadable file; says which."""


# --------------------------------------------------------------------------------------------
# Channel weights (BS.1770-5 Table 3)

SURROUND_WEIGHT = 1.41  # +1.5 dB, BS.1770 Table 3


def channel_weights(layout: Layout) -> np.ndarray:
    """(n_channels,) float64 BS.1770 channel weights ``G_i`` of ``layout``'s channels.

    From each speaker's real position (BS.1770-5 Table 3): 1.41 (+1.5 dB) where
    |elevation| < 30 degrees and 60 <= |azimuth| <= 120 degrees, 1.0 elsewhere (front,
    rear such as M+135, and height channels), 0 for LFE channels (excluded from the
    measurement).
    """
    weights = np.ones(layout.n_channels, dtype=np.float64)
    for i, s in enumerate(layout.speakers):
        if s.is_lfe:
            weights[i] = 0.0
            continue
        az = abs((float(s.azimuth) + 180.0) % 360.0 - 180.0)
        if abs(float(s.elevation)) < 30.0 and 60.0 <= az <= 120.0:
            weights[i] = SURROUND_WEIGHT
    return weights


# channel count -> layout name assumed for a file that carries no layout information
_LAYOUT_FOR_COUNT = {2: "2.0", 6: "5.1", 8: "7.1", 10: "5.1.4", 12: "7.1.4", 16: "9.1.6"}


def weights_for_channel_count(n: int) -> tuple[np.ndarray, str]:
    """BS.1770 weights for ``n`` channels of unknown layout, and the assumption made.

    1: mono; 2: stereo; 6: 5.1 (L R C LFE Ls Rs); 8: 7.1; 10: 5.1.4 (7.1.2 in film order
    has the same weights); 12: 7.1.4 (L R C LFE Lss Rss Lrs Rrs Ltf Rtf Ltr Rtr); 16: 9.1.6;
    any other count: every channel weighted 1.0, none taken as LFE. Returns ((n,) float64
    weights, a one-line description).
    """
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 1:
        raise LoudnessError(f"channel count must be a positive integer, got {n!r}")
    n = int(n)
    if n == 1:
        return np.ones(1), "1 channel: mono, weight 1.0"
    name = _LAYOUT_FOR_COUNT.get(n)
    if name is None:
        return (np.ones(n),
                f"{n} channels: layout unknown, every channel weighted 1.0 (no LFE assumed)")
    layout = get_layout(name)
    weights = channel_weights(layout)
    labels = " ".join(f"{s.name}={w:g}" for s, w in zip(layout.speakers, weights, strict=True))
    extra = " (7.1.2 has the same weights)" if name == "5.1.4" else ""
    return weights, f"{n} channels: assumed {name} ({layout.name}){extra}, weights {labels}"


# --------------------------------------------------------------------------------------------
# K-weighting (BS.1770-4 Annex 1)

_REFERENCE_RATE = 48000
# BS.1770-4 Table 1 (pre-filter) and Table 2 (RLB weighting), at 48 kHz: (b0, b1, b2), (a1, a2)
_PRE_FILTER_48K = ((1.53512485958697, -2.69169618940638, 1.19839281085285),
                   (-1.69065929318241, 0.73248077421585))
_RLB_FILTER_48K = ((1.0, -2.0, 1.0), (-1.99004745483398, 0.99007225036621))


def _to_analogue(b: tuple[float, ...], a: tuple[float, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Polynomials (s^2, s, 1) of the analogue biquad whose bilinear transform
    (s = (1 - 1/z) / (1 + 1/z), unit frequency scale) is the digital biquad ``b``/``a``."""
    out = []
    for c0, c1, c2 in (b, (1.0, *a)):
        out.append(np.array([(c0 - c1 + c2) / 4.0, (c0 - c2) / 2.0, (c0 + c1 + c2) / 4.0]))
    return out[0], out[1]


def _biquad_at_rate(b: tuple[float, ...], a: tuple[float, ...], rate: float) -> np.ndarray:
    """(6,) second-order section (b0 b1 b2 1 a1 a2) of the 48 kHz biquad ``b``/``a`` redesigned
    at ``rate`` Hz from its analogue prototype.

    The denominator d0 s^2 + d1 s + d2 of the bilinear prototype has natural (prewarped)
    frequency ``w = sqrt(d2/d0) = tan(pi f0 / 48000)``; expressed in ``p = s / w`` the
    prototype is independent of the rate, and at the new rate ``s = w' p`` with
    ``w' = tan(pi f0 / rate)``.
    """
    num, den = _to_analogue(b, a)
    w_ref = math.sqrt(den[2] / den[0])
    f0 = _REFERENCE_RATE * math.atan(w_ref) / math.pi
    w_new = math.tan(math.pi * f0 / rate)
    scale = np.array([1.0, w_new / w_ref, (w_new / w_ref) ** 2])
    num, den = num * scale, den * scale
    # bilinear transform: (n0 s^2 + n1 s + n2) -> (n0+n1+n2) + 2(n2-n0) z^-1 + (n0-n1+n2) z^-2
    def digital(p: np.ndarray) -> np.ndarray:
        return np.array([p[0] + p[1] + p[2], 2.0 * (p[2] - p[0]), p[0] - p[1] + p[2]])

    bd, ad = digital(num), digital(den)
    return np.concatenate([bd / ad[0], ad / ad[0]])


def k_weighting_sos(sample_rate: float) -> np.ndarray:
    """(2, 6) second-order sections of the BS.1770 K-weighting filter at ``sample_rate`` Hz.

    Equal to the coefficients of BS.1770-4 Tables 1 and 2 at 48 kHz (to rounding); other
    rates are derived from the same analogue prototypes (see the module docstring).
    """
    if not (sample_rate > 0 and math.isfinite(sample_rate)):
        raise LoudnessError(f"sample rate must be positive, got {sample_rate!r}")
    if sample_rate < 2 * 1682.0 * 1.05:  # the pre-filter's corner must lie below Nyquist
        raise LoudnessError(f"sample rate {sample_rate} Hz is too low for K-weighting")
    return np.stack([_biquad_at_rate(*_PRE_FILTER_48K, sample_rate),
                     _biquad_at_rate(*_RLB_FILTER_48K, sample_rate)])


# --------------------------------------------------------------------------------------------
# True-peak interpolator (BS.1770-4 Annex 2)

_TP_TAPS_PER_PHASE = 32     # even: the interpolator's centre tap falls on an input sample
_TP_KAISER_BETA = 8.0       # stop band about -80 dB; pass band flat to 20 kHz at 48 kHz
_TP_BLOCK = 32              # frames per block of the blockwise interpolation (>= taps)
_CHUNK = 8192               # frames metered per internal step (a multiple of _TP_BLOCK)


def true_peak_oversampling(sample_rate: float) -> int:
    """Oversampling factor for the true peak: 4 below 88.2 kHz, 2 below 176.4 kHz, else 1
    (BS.1770-4 Annex 2 asks for at least 192 kHz after oversampling)."""
    if sample_rate < 88200:
        return 4
    if sample_rate < 176400:
        return 2
    return 1


def _interpolator_phases(factor: int) -> np.ndarray:
    """(factor - 1, taps) sub-filters ``g_p[k] = h[k * factor + p]`` for phases p = 1..factor-1
    of a windowed-sinc interpolator ``h`` with cut-off at the input's Nyquist frequency.

    ``h`` has ``factor * taps + 1`` taps centred on a multiple of ``factor``, so phase 0 is the
    input itself (the sinc is zero at the other input instants) and is not computed. Each phase
    is scaled to unit DC gain.
    """
    taps = _TP_TAPS_PER_PHASE
    length = factor * taps + 1
    j = np.arange(length)
    centre = factor * taps // 2
    h = np.sinc((j - centre) / factor) * np.kaiser(length, _TP_KAISER_BETA)
    phases = np.stack([h[p::factor][:taps] for p in range(1, factor)])
    return phases / phases.sum(axis=1, keepdims=True)


def _interpolation_matrices(factor: int) -> tuple[np.ndarray, np.ndarray]:
    """Two (B, (factor - 1) * B) float32 matrices ``W0``, ``W1`` (B = _TP_BLOCK) such that
    ``u_prev @ W0 + u @ W1``, with ``u`` a block of B input samples and ``u_prev`` the block
    before it, gives the block's interpolated samples of every phase: column ``p * B + i`` is
    phase p + 1 at block sample i, ``sum_k g_p[k] x[i - k]`` (taps <= B). Two matrix products
    then evaluate the polyphase filter for all blocks of all channels."""
    g = _interpolator_phases(factor)
    n_phases, taps = g.shape
    b = _TP_BLOCK
    w = np.zeros((2 * b, n_phases, b))          # (input sample in the two blocks, phase, i)
    i = np.arange(b)[:, None]
    k = np.arange(taps)[None, :]
    for p in range(n_phases):
        w[b + i - k, p, i] = g[p][None, :]
    w = w.reshape(2 * b, n_phases * b).astype(np.float32)
    return np.ascontiguousarray(w[:b]), np.ascontiguousarray(w[b:])


# --------------------------------------------------------------------------------------------
# Results


def _lufs(power: np.ndarray | float) -> np.ndarray:
    """-0.691 + 10 log10(power); -inf where power is 0."""
    with np.errstate(divide="ignore"):
        return -0.691 + 10.0 * np.log10(np.asarray(power, dtype=np.float64))


def _db(amplitude: np.ndarray | float) -> np.ndarray:
    with np.errstate(divide="ignore"):
        return 20.0 * np.log10(np.asarray(amplitude, dtype=np.float64))


def _json_float(v: float, digits: int = 3) -> float | None:
    v = float(v)
    return round(v, digits) if math.isfinite(v) else None


@dataclass(frozen=True)
class LoudnessResult:
    """Loudness figures of one programme (ITU-R BS.1770-4, EBU Tech 3341/3342).

    Levels in LUFS, ranges in LU, peaks in dBTP (true peak) or dBFS (sample peak); -inf where
    the programme is silent or too short (no complete block). True peaks are nan when the
    meter ran with ``true_peak=False``. ``momentary``/``short_term``: (n,) float64 LUFS of the
    400 ms / 3 s windows ending every 100 ms (the first ends at 0.4 s / 3 s).
    """

    integrated_lufs: float
    loudness_range_lu: float
    max_momentary_lufs: float
    max_short_term_lufs: float
    true_peak_dbtp: float
    sample_peak_dbfs: float
    channel_true_peak_dbtp: tuple[float, ...]
    momentary: np.ndarray = field(repr=False)
    short_term: np.ndarray = field(repr=False)
    duration_s: float

    def as_dict(self, series: bool = True) -> dict[str, Any]:
        """JSON-friendly dict (-inf and nan -> None); ``series``: include the momentary and
        short-term values (lists, LUFS every 100 ms)."""
        d: dict[str, Any] = {
            "integrated_lufs": _json_float(self.integrated_lufs),
            "loudness_range_lu": _json_float(self.loudness_range_lu),
            "max_momentary_lufs": _json_float(self.max_momentary_lufs),
            "max_short_term_lufs": _json_float(self.max_short_term_lufs),
            "true_peak_dbtp": _json_float(self.true_peak_dbtp),
            "sample_peak_dbfs": _json_float(self.sample_peak_dbfs),
            "channel_true_peak_dbtp": [_json_float(v) for v in self.channel_true_peak_dbtp],
            "duration_s": _json_float(self.duration_s, 6),
        }
        if series:
            d["series_interval_s"] = 0.1
            d["momentary"] = [_json_float(v) for v in self.momentary]
            d["short_term"] = [_json_float(v) for v in self.short_term]
        return d

    def shifted(self, gain_db: float) -> LoudnessResult:
        """The figures of the same programme scaled by ``gain_db`` dB (loudness and peaks move
        by exactly ``gain_db``; the loudness range does not change)."""
        g = float(gain_db)
        return replace(
            self,
            integrated_lufs=self.integrated_lufs + g,
            max_momentary_lufs=self.max_momentary_lufs + g,
            max_short_term_lufs=self.max_short_term_lufs + g,
            true_peak_dbtp=self.true_peak_dbtp + g,
            sample_peak_dbfs=self.sample_peak_dbfs + g,
            channel_true_peak_dbtp=tuple(v + g for v in self.channel_true_peak_dbtp),
            momentary=self.momentary + g,
            short_term=self.short_term + g,
        )


def integrated_from_blocks(block_power: np.ndarray) -> float:
    """Gated integrated loudness (LUFS) from (n,) weighted block powers ``sum_i G_i z_ij`` of
    the 400 ms gating blocks: absolute gate -70 LUFS, relative gate -10 LU (BS.1770-4 eq. 5-7)."""
    level = _lufs(block_power)
    above_abs = level > -70.0
    if not above_abs.any():
        return float("-inf")
    relative_gate = float(_lufs(block_power[above_abs].mean())) - 10.0
    gated = above_abs & (level > relative_gate)
    return float(_lufs(block_power[gated].mean()))


def loudness_range(short_term_lufs: np.ndarray) -> float:
    """EBU Tech 3342 loudness range (LU) of (n,) short-term loudness values (3 s windows every
    100 ms): values above -70 LUFS, then those at or above (power mean of those) - 20 LU;
    95th minus 10th percentile (linear interpolation between ranks). 0 when none remain."""
    st = np.asarray(short_term_lufs, dtype=np.float64)
    st = st[st > -70.0]
    if st.size == 0:
        return 0.0
    gate = 10.0 * np.log10(np.mean(10.0 ** (st / 10.0))) - 20.0
    st = st[st >= gate]
    low, high = np.percentile(st, [10.0, 95.0])
    return float(high - low)


# --------------------------------------------------------------------------------------------
# Streaming meter


@dataclass
class _State:
    """Everything the meter carries from one chunk to the next."""

    zi: np.ndarray                  # (2, n_channels, 2) K-weighting filter state
    history: np.ndarray             # (n_channels, B + r) float32: the last block of input
                                    # samples and r < B samples not yet interpolated
    hop_sums: list[np.ndarray]      # completed 100 ms weighted energy sums, in order
    partial_sum: float              # weighted energy of the hop being filled
    partial_frames: int             # frames in the hop being filled
    frames: int                     # frames measured
    sample_peak: np.ndarray         # (n_channels,) max |x|
    true_peak: np.ndarray           # (n_channels,) max |interpolated x|

    def copy(self) -> _State:
        return _State(self.zi.copy(), self.history.copy(), list(self.hop_sums),
                      self.partial_sum, self.partial_frames, self.frames,
                      self.sample_peak.copy(), self.true_peak.copy())


class LoudnessMeter:
    """Streaming BS.1770 / EBU R128 meter.

    ``sample_rate`` in Hz; ``weights`` the (n_channels,) channel weights ``G_i``
    (:func:`channel_weights`, :func:`weights_for_channel_count`); ``true_peak``: also measure
    the true peak (the sample peak is always measured). Feed (frames, n_channels) blocks of any
    size to :meth:`process`; :meth:`result` may be called at any time, and the figures do not
    depend on how the audio was split into blocks: it is re-chunked internally into chunks of
    8192 frames (at most one chunk is buffered). float64 input is filtered and peak-measured
    in float64, anything else as float32; the K-weighting always runs in float64.
    """

    def __init__(self, sample_rate: int, weights: np.ndarray, *, true_peak: bool = True) -> None:
        if isinstance(sample_rate, bool) or not isinstance(sample_rate, int | np.integer):
            raise LoudnessError(f"sample rate must be an integer number of Hz, "
                                f"got {sample_rate!r}")
        self.sample_rate = int(sample_rate)
        self._sos = k_weighting_sos(self.sample_rate)
        w = np.asarray(weights, dtype=np.float64)
        if w.ndim != 1 or w.size == 0 or not np.all(np.isfinite(w)) or np.any(w < 0):
            raise LoudnessError(f"channel weights must be a non-empty 1-D array of finite "
                                f"non-negative values, got {weights!r}")
        self.weights = w
        self.n_channels = w.size
        self.hop = max(1, round(self.sample_rate / 10))  # 100 ms in frames
        self.true_peak = bool(true_peak)
        self.oversampling = true_peak_oversampling(self.sample_rate) if true_peak else 1
        self._interp = _interpolation_matrices(self.oversampling) if self.oversampling > 1 \
            else None
        self._chunk = _CHUNK
        self._state = _State(
            zi=np.zeros((2, self.n_channels, 2)),
            history=np.zeros((self.n_channels, _TP_BLOCK), dtype=np.float32),
            hop_sums=[], partial_sum=0.0, partial_frames=0, frames=0,
            sample_peak=np.zeros(self.n_channels), true_peak=np.zeros(self.n_channels))
        self._pending: list[np.ndarray] = []
        self._work: dict[str, np.ndarray] = {}
        self._pending_frames = 0

    # -- input -----------------------------------------------------------------------------

    def process(self, block: np.ndarray) -> None:
        """Meter the next ``block``: (frames, n_channels) float32/float64 samples (full scale
        1.0); a 1-D block is accepted for a single channel. The block is not kept."""
        x = np.asarray(block)
        if x.ndim == 1 and self.n_channels == 1:
            x = x[:, None]
        if x.ndim != 2 or x.shape[1] != self.n_channels:
            raise LoudnessError(f"loudness meter: block of shape {x.shape}, expected "
                                f"(frames, {self.n_channels})")
        if not np.issubdtype(x.dtype, np.floating):
            raise LoudnessError(f"loudness meter: samples must be floating point, got {x.dtype}")
        if x.dtype != np.float64:
            x = x.astype(np.float32, copy=False)
        if len(x) == 0:
            return
        total = self._pending_frames + len(x)
        if total < self._chunk:
            self._pending.append(x.copy())
            self._pending_frames = total
            return
        data = np.concatenate([*self._pending, x]) if self._pending else x
        n_full = (total // self._chunk) * self._chunk
        for start in range(0, n_full, self._chunk):
            self._consume(self._state, data[start:start + self._chunk])
        rest = data[n_full:]
        self._pending = [np.array(rest)] if len(rest) else []
        self._pending_frames = len(rest)

    def _scratch(self, name: str, shape: tuple[int, ...], dtype: type) -> np.ndarray:
        """A work array kept between chunks (allocating fresh large arrays for every chunk
        costs more than the arithmetic); reallocated when the shape changes."""
        a = self._work.get(name)
        if a is None or a.shape != shape or a.dtype != dtype:
            a = self._work[name] = np.empty(shape, dtype=dtype)
        return a

    def _consume(self, st: _State, x: np.ndarray) -> None:
        """Meter a chunk ``x`` (frames <= chunk, n_channels) into ``st``."""
        n = len(x)
        if self._interp is not None:
            # (channels, history + frames) float32: the true-peak interpolator's input
            h = st.history.shape[1]
            buf = self._scratch("tp_input", (self.n_channels, h + n), np.float32)
            buf[:, :h] = st.history
            xt = buf[:, h:]
            np.copyto(xt, x.T, casting="same_kind")
        else:
            xt = self._scratch("input", (self.n_channels, n), np.float32)
            np.copyto(xt, x.T, casting="same_kind")
        exact = xt if x.dtype == np.float32 else x.T                # (channels, frames)
        peak = np.maximum(exact.max(axis=1), -exact.min(axis=1))
        if np.isnan(peak).any():
            raise LoudnessError("loudness meter: samples contain NaN")
        np.maximum(st.sample_peak, peak, out=st.sample_peak)
        y, st.zi = ssig.sosfilt(self._sos, exact, axis=-1, zi=st.zi)
        power = self.weights @ np.square(y, out=y)                  # (frames,)
        self._add_power(st, power)
        st.frames += n
        if self.true_peak:
            np.maximum(st.true_peak, peak, out=st.true_peak)        # phase 0: the samples
            if self._interp is not None:
                self._true_peak(st, buf)

    def _add_power(self, st: _State, power: np.ndarray) -> None:
        """Add per-frame weighted powers to the 100 ms hop sums (vectorised per chunk)."""
        hop = self.hop
        first = min(hop - st.partial_frames, len(power))
        st.partial_sum += float(power[:first].sum())
        st.partial_frames += first
        if st.partial_frames < hop:
            return
        st.hop_sums.append(np.array([st.partial_sum]))
        rest = power[first:]
        n_full = len(rest) // hop
        if n_full:
            st.hop_sums.append(rest[:n_full * hop].reshape(n_full, hop).sum(axis=1))
        tail = rest[n_full * hop:]
        st.partial_sum = float(tail.sum())
        st.partial_frames = len(tail)

    def _true_peak(self, st: _State, buf: np.ndarray) -> None:
        """Interpolated (between-sample) peaks of ``buf`` (channels, frames) float32: the
        history carried in ``st`` then the new samples. Whole blocks of _TP_BLOCK frames are
        interpolated; the last block and any incomplete one become the new history."""
        b = _TP_BLOCK
        n_blocks = (buf.shape[1] - b) // b
        if n_blocks:
            blocks = buf[:, :(n_blocks + 1) * b].reshape(len(buf), n_blocks + 1, b)
            w_prev, w_cur = self._interp
            shape = (len(buf), n_blocks, w_prev.shape[1])           # (channels, blocks, P * B)
            y = np.matmul(blocks[:, :-1], w_prev, out=self._scratch("tp_0", shape, np.float32))
            y2 = np.matmul(blocks[:, 1:], w_cur, out=self._scratch("tp_1", shape, np.float32))
            y += y2
            peak = np.maximum(y.max(axis=(1, 2)), -y.min(axis=(1, 2)))
            np.maximum(st.true_peak, peak, out=st.true_peak)
        st.history = buf[:, n_blocks * b:].copy()

    # -- output ----------------------------------------------------------------------------

    def result(self) -> LoudnessResult:
        """The figures of everything processed so far (the meter can go on afterwards)."""
        st = self._state.copy()
        if self._pending_frames:
            self._consume(st, np.concatenate(self._pending))
        if self.true_peak and self._interp is not None:
            # let the interpolator ring out past the last sample (the signal ends in silence)
            tail = np.zeros((self.n_channels, _TP_TAPS_PER_PHASE + _TP_BLOCK), np.float32)
            self._true_peak(st, np.concatenate([st.history, tail], axis=1))
        hop_sums = (np.concatenate(st.hop_sums) if st.hop_sums else np.zeros(0))
        momentary_power = _window_sums(hop_sums, 4) / (4 * self.hop)
        short_power = _window_sums(hop_sums, 30) / (30 * self.hop)
        momentary = _lufs(momentary_power)
        short_term = _lufs(short_power)
        if self.true_peak:
            channel_tp = _db(st.true_peak)
        else:
            channel_tp = np.full(self.n_channels, np.nan)
        return LoudnessResult(
            integrated_lufs=integrated_from_blocks(momentary_power),
            loudness_range_lu=loudness_range(short_term),
            max_momentary_lufs=float(momentary.max()) if momentary.size else float("-inf"),
            max_short_term_lufs=float(short_term.max()) if short_term.size else float("-inf"),
            true_peak_dbtp=float(channel_tp.max()),
            sample_peak_dbfs=float(_db(st.sample_peak.max())),
            channel_true_peak_dbtp=tuple(float(v) for v in channel_tp),
            momentary=momentary,
            short_term=short_term,
            duration_s=st.frames / self.sample_rate,
        )


def _window_sums(values: np.ndarray, width: int) -> np.ndarray:
    """(n - width + 1,) sums of ``width`` consecutive values (empty if n < width)."""
    if len(values) < width:
        return np.zeros(0)
    return np.lib.stride_tricks.sliding_window_view(values, width).sum(axis=1)


# --------------------------------------------------------------------------------------------
# Convenience


def measure(audio: np.ndarray, sample_rate: int, weights: np.ndarray) -> LoudnessResult:
    """Loudness figures of a whole (frames, n_channels) programme at ``sample_rate`` Hz."""
    meter = LoudnessMeter(sample_rate, weights)
    meter.process(audio)
    return meter.result()


_FILE_BLOCK = 1 << 16


def _open_audio(path: str | os.PathLike):
    """(channels, sample rate, iterator of float32 (frames, channels) blocks, closer) of an
    audio file. RIFF/WAVE, RF64 and BW64 files go through :class:`adm.bw64.Bw64Reader` (which
    reads the BW64 files past 4 GiB that dubstage writes, and refuses truncated ones rather
    than measure part of them); other formats, and WAVE codecs it does not decode (8-bit,
    ADPCM, ...), through soundfile."""
    from adm.bw64 import Bw64Error, Bw64Reader

    try:
        with open(path, "rb") as f:
            magic = f.read(4)
    except OSError as e:
        raise LoudnessError(f"{path}: cannot read audio: {e.strerror or e}") from e
    if magic in (b"RIFF", b"RF64", b"BW64"):
        try:
            reader = Bw64Reader(path)
        except Bw64Error as e:
            if "unsupported" not in str(e):
                raise LoudnessError(str(e)) from e  # names the file already
        else:
            def bw64_blocks():
                try:
                    yield from reader.iter_blocks(_FILE_BLOCK)
                except Bw64Error as e:
                    raise LoudnessError(str(e)) from e

            return reader.channels, int(reader.sample_rate), bw64_blocks(), reader.close
    import soundfile

    try:
        sf = soundfile.SoundFile(os.fspath(path))
    except (RuntimeError, OSError, soundfile.LibsndfileError) as e:
        raise LoudnessError(f"{path}: cannot read audio: {e}") from e

    def sf_blocks():
        try:
            yield from sf.blocks(blocksize=_FILE_BLOCK, dtype="float32", always_2d=True)
        except (RuntimeError, soundfile.LibsndfileError) as e:
            raise LoudnessError(f"{path}: cannot read audio: {e}") from e

    return sf.channels, int(sf.samplerate), sf_blocks(), sf.close


def measure_file(path: str | os.PathLike, layout: str | None = None
                 ) -> tuple[LoudnessResult, str]:
    """Measure an audio file (WAV/BW64/RF64, FLAC, ... anything soundfile reads), streamed in
    blocks of 65536 frames.

    ``layout``: a layout name (``dubstage layouts``) giving the channel weights; its channel
    count must match the file's. Without it the weights follow the channel count
    (:func:`weights_for_channel_count`). Returns (result, description of the weights used).
    """
    n, rate, blocks, close = _open_audio(path)
    try:
        if layout is not None:
            try:
                lay = get_layout(layout)
            except LayoutError as e:
                raise LoudnessError(f"{path}: {e}") from e
            if lay.n_channels != n:
                raise LoudnessError(f"{path}: layout {layout} has {lay.n_channels} channels, "
                                    f"the file has {n}")
            weights = channel_weights(lay)
            labels = " ".join(f"{s.name}={w:g}"
                              for s, w in zip(lay.speakers, weights, strict=True))
            description = f"{n} channels: layout {layout} ({lay.name}), weights {labels}"
        else:
            weights, description = weights_for_channel_count(n)
        meter = LoudnessMeter(rate, weights)
        for block in blocks:
            meter.process(block)
    finally:
        close()
    return meter.result(), description
