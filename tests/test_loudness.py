"""Loudness meter against EBU Tech 3341 / 3342 cases, BS.1770 figures and pyloudnorm."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.signal as ssig
import soundfile

from layouts import get_layout
from renderer.loudness import (
    LoudnessError,
    LoudnessMeter,
    channel_weights,
    k_weighting_sos,
    measure,
    measure_file,
    weights_for_channel_count,
)

FS = 48000
STEREO = np.ones(2)


def sine(dbfs: float, seconds: float, fs: int = FS, freq: float = 1000.0,
         phase_deg: float = 0.0) -> np.ndarray:
    """(frames,) sine of peak level ``dbfs``."""
    t = np.arange(round(seconds * fs)) / fs
    return 10 ** (dbfs / 20) * np.sin(2 * np.pi * freq * t + np.radians(phase_deg))


def faded(x: np.ndarray, fs: int = FS) -> np.ndarray:
    """``x`` with 50 ms raised-cosine fades: an abrupt start or end would ring (Gibbs) above
    the steady-state crest once interpolated."""
    fade = np.sin(np.linspace(0, np.pi / 2, fs // 20)) ** 2
    fade = fade.reshape((-1,) + (1,) * (x.ndim - 1))
    x = x.copy()
    x[:len(fade)] *= fade
    x[-len(fade):] *= fade[::-1]
    return x


def stereo_sequence(levels_dbfs, seconds, fs: int = FS) -> np.ndarray:
    """(frames, 2) float32: a 1 kHz sine at each level for each duration, in both channels."""
    x = np.concatenate([sine(lv, s, fs) for lv, s in zip(levels_dbfs, seconds, strict=True)])
    return np.stack([x, x], axis=1).astype(np.float32)


# ---------------------------------------------------------------------------- channel weights

def test_channel_weights_from_positions():
    # BS.1770-5 Table 3: 1.41 for |el| < 30 and 60 <= |az| <= 120; LFE 0; M+135 and heights 1
    np.testing.assert_array_equal(channel_weights(get_layout("5.1")),
                                  [1, 1, 1, 0, 1.41, 1.41])
    np.testing.assert_array_equal(channel_weights(get_layout("7.1.4")),
                                  [1, 1, 1, 0, 1.41, 1.41, 1, 1, 1, 1, 1, 1])
    w916 = channel_weights(get_layout("9.1.6"))
    layout = get_layout("9.1.6")
    for s, w in zip(layout.speakers, w916, strict=True):
        expected = {"LFE1": 0.0, "M+090": 1.41, "M-090": 1.41, "M+060": 1.41,
                    "M-060": 1.41}.get(s.name, 1.0)
        assert w == expected, s.name


def test_weights_for_channel_count():
    w, text = weights_for_channel_count(6)
    np.testing.assert_array_equal(w, [1, 1, 1, 0, 1.41, 1.41])
    assert "5.1" in text
    w, text = weights_for_channel_count(12)
    np.testing.assert_array_equal(w, [1, 1, 1, 0, 1.41, 1.41, 1, 1, 1, 1, 1, 1])
    assert "7.1.4" in text
    np.testing.assert_array_equal(weights_for_channel_count(1)[0], [1.0])
    np.testing.assert_array_equal(weights_for_channel_count(2)[0], [1.0, 1.0])
    w, text = weights_for_channel_count(3)
    np.testing.assert_array_equal(w, [1.0, 1.0, 1.0])
    assert "unknown" in text
    with pytest.raises(LoudnessError):
        weights_for_channel_count(0)


# ---------------------------------------------------------------------------- K-weighting

def test_k_weighting_48k_is_the_standards_filter():
    # BS.1770-4 Annex 1 Tables 1 and 2
    sos = k_weighting_sos(48000)
    np.testing.assert_allclose(sos[0], [1.53512485958697, -2.69169618940638, 1.19839281085285,
                                        1.0, -1.69065929318241, 0.73248077421585], atol=1e-12)
    np.testing.assert_allclose(sos[1], [1.0, -2.0, 1.0, 1.0, -1.99004745483398,
                                        0.99007225036621], atol=1e-12)


@pytest.mark.parametrize("fs", [44100, 96000])
def test_k_weighting_other_rates_match_48k_response(fs):
    # the same analogue filter: the responses agree where bilinear warping is small
    freqs = np.array([20.0, 50.0, 100.0, 500.0, 1000.0, 2000.0, 5000.0, 10000.0])
    _, h48 = ssig.sosfreqz(k_weighting_sos(48000), worN=freqs, fs=48000)
    _, h = ssig.sosfreqz(k_weighting_sos(fs), worN=freqs, fs=fs)
    diff_db = 20 * np.log10(np.abs(h) / np.abs(h48))
    assert np.all(np.abs(diff_db[freqs <= 5000]) < 0.02), diff_db
    assert np.all(np.abs(diff_db) < 0.1), diff_db


# ---------------------------------------------------------------------------- EBU Tech 3341

@pytest.mark.parametrize("fs", [48000, 44100, 96000])
def test_3341_case1_stereo_sine_minus_23(fs):
    r = measure(stereo_sequence([-23.0], [20.0], fs), fs, STEREO)
    assert r.integrated_lufs == pytest.approx(-23.0, abs=0.1)
    assert r.max_momentary_lufs == pytest.approx(-23.0, abs=0.1)
    assert r.max_short_term_lufs == pytest.approx(-23.0, abs=0.1)
    # a stationary tone: every momentary and short-term value is the same
    assert np.ptp(r.momentary) < 0.01 and np.ptp(r.short_term) < 0.01
    assert len(r.momentary) == 200 - 3 and len(r.short_term) == 200 - 29
    assert r.duration_s == pytest.approx(20.0)


def test_3341_case2_minus_33():
    r = measure(stereo_sequence([-33.0], [20.0]), FS, STEREO)
    assert r.integrated_lufs == pytest.approx(-33.0, abs=0.1)
    assert r.max_momentary_lufs == pytest.approx(-33.0, abs=0.1)
    assert r.max_short_term_lufs == pytest.approx(-33.0, abs=0.1)


@pytest.mark.parametrize("levels, seconds", [
    ([-36.0, -23.0, -36.0], [10.0, 60.0, 10.0]),                   # case 3: relative gate
    ([-72.0, -36.0, -23.0, -36.0, -72.0], [10, 10, 60, 10, 10]),   # case 4: absolute gate
    ([-26.0, -20.0, -26.0], [20.0, 20.1, 20.0]),                   # case 5
])
def test_3341_gated_sequences(levels, seconds):
    r = measure(stereo_sequence(levels, seconds), FS, STEREO)
    assert r.integrated_lufs == pytest.approx(-23.0, abs=0.1)


def test_3341_case6_five_channels_lfe_ignored():
    # L R -28, C -24, Ls Rs -30 dBFS: -23 LUFS with Ls/Rs weighted +1.5 dB (1.41); a loud LFE
    # tone changes nothing
    n = 20.0
    chans = [sine(-28, n), sine(-28, n), sine(-24, n), sine(-6, n, freq=60.0),
             sine(-30, n), sine(-30, n)]
    x = np.stack(chans, axis=1).astype(np.float32)
    r = measure(x, FS, channel_weights(get_layout("5.1")))
    assert r.integrated_lufs == pytest.approx(-23.0, abs=0.1)
    x[:, 3] = 0
    assert measure(x, FS, channel_weights(get_layout("5.1"))).integrated_lufs == \
        pytest.approx(r.integrated_lufs, abs=1e-9)
    # a surround channel alone reads 1.5 dB (10 log10 1.41) above the same tone on a front one
    only_ls = np.zeros_like(x)
    only_ls[:, 4] = sine(-20, n)
    only_l = np.zeros_like(x)
    only_l[:, 0] = sine(-20, n)
    w = channel_weights(get_layout("5.1"))
    diff = measure(only_ls, FS, w).integrated_lufs - measure(only_l, FS, w).integrated_lufs
    assert diff == pytest.approx(10 * math.log10(1.41), abs=1e-6)


def test_mono_tone():
    # mono, weight 1: power A^2 / 2 of a -23 dBFS sine is -26 dB, so -26 LUFS at 1 kHz
    r = measure(sine(-23.0, 10.0)[:, None], FS, np.ones(1))
    assert r.integrated_lufs == pytest.approx(-26.0, abs=0.1)


def test_momentary_and_short_term_maxima_of_bursts():
    # bursts exactly one window long, starting on a 100 ms boundary, inside silence: the
    # maximum of that window length reads the burst's level, the longer window reads less
    silence = np.zeros(FS * 2)
    burst = np.concatenate([silence, sine(-23.0, 0.4), silence])
    r = measure(np.stack([burst, burst], 1), FS, STEREO)
    assert r.max_momentary_lufs == pytest.approx(-23.0, abs=0.1)
    # 0.4 s of energy in a 3 s window: 10 log10(0.4 / 3) below
    assert r.max_short_term_lufs == pytest.approx(-23.0 + 10 * math.log10(0.4 / 3), abs=0.1)
    burst = np.concatenate([silence, sine(-23.0, 3.0), silence])
    r = measure(np.stack([burst, burst], 1), FS, STEREO)
    assert r.max_short_term_lufs == pytest.approx(-23.0, abs=0.1)
    assert r.max_momentary_lufs == pytest.approx(-23.0, abs=0.1)


def test_silence_and_short_input():
    r = measure(np.zeros((FS * 2, 2), np.float32), FS, STEREO)
    assert r.integrated_lufs == -math.inf
    assert r.true_peak_dbtp == -math.inf and r.sample_peak_dbfs == -math.inf
    assert r.loudness_range_lu == 0.0
    d = r.as_dict()
    assert d["integrated_lufs"] is None and d["true_peak_dbtp"] is None
    # shorter than one gating block: no loudness, but the peak is measured
    r = measure(np.full((1000, 2), 0.5, np.float32), FS, STEREO)
    assert r.integrated_lufs == -math.inf and r.max_momentary_lufs == -math.inf
    assert r.sample_peak_dbfs == pytest.approx(20 * math.log10(0.5))


# ---------------------------------------------------------------------------- true peak

@pytest.mark.parametrize("fs, divisor, phase", [
    (48000, 4, 45.0), (48000, 6, 60.0), (48000, 8, 67.5),   # EBU Tech 3341 cases 15-18 style
    (44100, 4, 45.0), (96000, 4, 45.0), (192000, 4, 0.0),
])
def test_true_peak_inter_sample(fs, divisor, phase):
    # a sine at fs/divisor whose samples miss the crests: true peak -6 dBTP, sample peak
    # 20 log10 sin(phase) lower; 3341 tolerance +0.2 / -0.4 dB (here 0.05, the interpolator
    # is flat to 20 kHz)
    x = faded(sine(-6.0, 2.0, fs, freq=fs / divisor, phase_deg=phase), fs)
    r = measure(np.stack([x, 0.5 * x], 1).astype(np.float32), fs, STEREO)
    expected_sample = -6.0 + 20 * math.log10(abs(math.sin(math.radians(phase))) or 1.0)
    if phase == 0.0:  # fs/4 from phase 0: samples 0, +A, 0, -A
        expected_sample = -6.0
    assert r.sample_peak_dbfs == pytest.approx(expected_sample, abs=0.01)
    assert -6.4 <= r.true_peak_dbtp <= -5.8
    assert r.true_peak_dbtp == pytest.approx(-6.0, abs=0.05)
    assert r.channel_true_peak_dbtp[1] == pytest.approx(-6.0 - 20 * math.log10(2), abs=0.05)


def test_true_peak_of_low_frequency_tone_is_the_sample_peak():
    x = faded(sine(-1.0, 1.0, freq=997.0))
    r = measure(np.stack([x, x], 1), FS, STEREO)
    assert r.true_peak_dbtp == pytest.approx(-1.0, abs=0.02)
    assert r.true_peak_dbtp >= r.sample_peak_dbfs


def test_true_peak_off():
    meter = LoudnessMeter(FS, STEREO, true_peak=False)
    meter.process(stereo_sequence([-20.0], [1.0]))
    r = meter.result()
    assert math.isnan(r.true_peak_dbtp)
    assert r.sample_peak_dbfs == pytest.approx(-20.0, abs=0.01)


# ---------------------------------------------------------------------------- EBU Tech 3342

@pytest.mark.parametrize("levels, expected", [
    ([-20.0, -30.0], 10.0),                       # case 1
    ([-20.0, -15.0], 5.0),                        # case 2
    ([-40.0, -20.0], 20.0),                       # case 3
    ([-50.0, -35.0, -20.0, -35.0, -50.0], 15.0),  # case 4
])
def test_3342_loudness_range(levels, expected):
    x = stereo_sequence(levels, [20.0] * len(levels))
    r = measure(x, FS, STEREO)
    assert r.loudness_range_lu == pytest.approx(expected, abs=1.0)


# ---------------------------------------------------------------------------- pyloudnorm

def _programme(frames: int, channels: int, fs: int, seed: int) -> np.ndarray:
    """Music-like test signal: pink-ish noise and tones under a slow envelope with quiet
    passages and a pause (so both gates act), different on every channel."""
    rng = np.random.default_rng(seed)
    t = np.arange(frames) / fs
    b, a = ssig.butter(1, 300 / (fs / 2))
    noise = ssig.lfilter(b, a, rng.standard_normal((frames, channels)), axis=0)
    noise += 0.1 * rng.standard_normal((frames, channels))
    tones = sum(np.sin(2 * np.pi * f * t + rng.uniform(0, 6.3, channels)[:, None]).T
                for f in (110.0, 440.0, 3000.0))
    env = 0.5 + 0.45 * np.sin(2 * np.pi * 0.13 * t)[:, None] ** 3
    x = (0.3 * noise + 0.05 * tones) * env * rng.uniform(0.3, 1.0, channels)
    x[int(0.3 * frames):int(0.4 * frames)] *= 1e-3                      # quiet passage
    x[int(0.6 * frames):int(0.65 * frames)] = 0.0                       # pause
    return (x * 0.5).astype(np.float32)


@pytest.mark.parametrize("fs", [48000, 44100])
@pytest.mark.parametrize("layout", ["2.0", "5.1"])
def test_agrees_with_pyloudnorm(fs, layout):
    pyln = pytest.importorskip("pyloudnorm")
    weights = channel_weights(get_layout(layout))
    x = _programme(fs * 12, len(weights), fs, seed=len(weights) + fs)
    ours = measure(x, fs, weights).integrated_lufs
    # pyloudnorm weights channels by position as L R C Ls Rs (1, 1, 1, 1.41, 1.41) and knows
    # no LFE: give it the non-LFE channels in that order
    theirs = pyln.Meter(fs).integrated_loudness(x[:, weights > 0].astype(np.float64))
    assert ours == pytest.approx(theirs, abs=0.1)
    # its "DeMan" filter is K-weighting from the published design equations at any rate (its
    # default is a cookbook approximation, about 0.04 LU off here): closer still
    exact = pyln.Meter(fs, filter_class="DeMan").integrated_loudness(
        x[:, weights > 0].astype(np.float64))
    assert ours == pytest.approx(exact, abs=0.01)


# ---------------------------------------------------------------------------- streaming

def test_result_does_not_depend_on_block_size():
    x = _programme(FS * 5, 6, FS, seed=3)
    w = channel_weights(get_layout("5.1"))
    whole = measure(x, FS, w)
    rng = np.random.default_rng(0)
    for sizes in ([480] * 600, list(rng.integers(1, 9000, 200)), [1] * 3000 + [10 ** 9]):
        meter = LoudnessMeter(FS, w)
        pos = 0
        for n in sizes:
            meter.process(x[pos:pos + n])
            pos += n
            if pos >= len(x):
                break
        meter.process(x[pos:])
        r = meter.result()
        assert r.integrated_lufs == pytest.approx(whole.integrated_lufs, abs=1e-9)
        assert r.loudness_range_lu == pytest.approx(whole.loudness_range_lu, abs=1e-9)
        assert r.true_peak_dbtp == pytest.approx(whole.true_peak_dbtp, abs=1e-6)
        np.testing.assert_allclose(r.momentary, whole.momentary, atol=1e-9)
        np.testing.assert_allclose(r.short_term, whole.short_term, atol=1e-9)


def test_result_mid_stream_and_buffer_reuse():
    x = _programme(FS * 4, 2, FS, seed=5)
    meter = LoudnessMeter(FS, STEREO)
    buf = np.empty((1000, 2), np.float32)
    for start in range(0, len(x), 1000):
        part = x[start:start + 1000]
        buf[:len(part)] = part
        meter.process(buf[:len(part)])      # the caller reuses its buffer
        if start == 2 * FS:
            half = meter.result()
    final = meter.result()
    assert half.duration_s == pytest.approx(2.0 + 1000 / FS)
    assert final.integrated_lufs == pytest.approx(measure(x, FS, STEREO).integrated_lufs,
                                                  abs=1e-9)


def test_gain_shifts_loudness_by_the_same_amount():
    x = _programme(FS * 6, 2, FS, seed=9)
    r = measure(x, FS, STEREO)
    r6 = measure(x * np.float32(10 ** (-6 / 20)), FS, STEREO)
    s = r.shifted(-6.0)
    for name in ("integrated_lufs", "max_momentary_lufs", "max_short_term_lufs",
                 "true_peak_dbtp", "sample_peak_dbfs", "loudness_range_lu"):
        assert getattr(r6, name) == pytest.approx(getattr(s, name), abs=1e-3), name


def test_bad_input():
    meter = LoudnessMeter(FS, STEREO)
    with pytest.raises(LoudnessError):
        meter.process(np.zeros((10, 3), np.float32))
    with pytest.raises(LoudnessError):
        meter.process(np.zeros((10, 2), np.int16))
    with pytest.raises(LoudnessError):
        LoudnessMeter(FS, np.array([1.0, -1.0]))
    with pytest.raises(LoudnessError):
        LoudnessMeter(0, STEREO)
    x = np.zeros((FS, 2), np.float32)
    x[100, 0] = np.nan
    with pytest.raises(LoudnessError):
        measure(x, FS, STEREO)


# ---------------------------------------------------------------------------- files

def test_measure_file(tmp_path):
    x = np.zeros((FS * 3, 6), np.float32)
    x[:, 0] = sine(-20.0, 3.0)
    x[:, 3] = sine(-3.0, 3.0, freq=50.0)     # LFE: ignored when the 5.1 weights are guessed
    path = tmp_path / "six.wav"
    soundfile.write(path, x, FS, subtype="FLOAT")
    r, text = measure_file(path)
    assert "5.1" in text
    # one front channel at -20 dBFS: power -23 dB, so -23 LUFS
    assert r.integrated_lufs == pytest.approx(-23.0, abs=0.1)
    assert r.true_peak_dbtp == pytest.approx(-3.0, abs=0.05)  # peaks include the LFE
    r2, text2 = measure_file(path, layout="5.1")
    assert r2.integrated_lufs == pytest.approx(r.integrated_lufs, abs=1e-9)
    with pytest.raises(LoudnessError, match="six.wav"):
        measure_file(path, layout="7.1.4")
    with pytest.raises(LoudnessError, match="missing.wav"):
        measure_file(tmp_path / "missing.wav")


def test_true_peak_agrees_with_independent_oversampling():
    # band-limited noise (below 15 kHz): any good 4x interpolator finds the same peaks;
    # scipy's resample_poly designs its own anti-imaging filter
    rng = np.random.default_rng(11)
    b, a = ssig.butter(8, 15000 / (FS / 2))
    x = ssig.lfilter(b, a, rng.standard_normal((FS * 2, 2)), axis=0) * 0.2
    x = faded(x)
    ref = np.abs(ssig.resample_poly(x, 4, 1, axis=0, window=("kaiser", 10.0))).max(axis=0)
    r = measure(x.astype(np.float32), FS, STEREO)
    np.testing.assert_allclose(r.channel_true_peak_dbtp, 20 * np.log10(ref), atol=0.05)
    assert r.true_peak_dbtp > r.sample_peak_dbfs


def test_measure_file_formats_and_truncation(tmp_path):
    """WAV through the BW64 reader, FLAC and 8-bit WAV through soundfile give the same
    figures (to their quantisation); a truncated WAV is refused, not measured in part."""
    x = np.zeros((FS * 3, 2), np.float32)
    x[:, 0] = x[:, 1] = sine(-23.0, 3.0)
    wav, flac, wav8 = tmp_path / "a.wav", tmp_path / "a.flac", tmp_path / "a8.wav"
    soundfile.write(wav, x, FS, subtype="PCM_24")
    soundfile.write(flac, x, FS, subtype="PCM_24")
    soundfile.write(wav8, x, FS, subtype="PCM_U8")
    for path, tolerance in ((wav, 0.01), (flac, 0.01), (wav8, 0.2)):
        assert measure_file(path)[0].integrated_lufs == pytest.approx(-23.0, abs=tolerance)
    data = wav.read_bytes()
    cut = tmp_path / "cut.wav"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(LoudnessError, match="cut.wav"):
        measure_file(cut)
