"""Decorrelation filters (BS.2127 clause 7.4) and the streaming FIR / delay of the diffuse path."""

from __future__ import annotations

import numpy as np
import pytest

from layouts.loader import get_layout
from layouts.model import Layout, Speaker
from renderer.decorrelation import (
    DECORRELATOR_DELAY,
    FILTER_LENGTH,
    DiffuseMixer,
    StreamingConvolver,
    StreamingDelay,
    decorrelator_seeds,
    design_decorrelator,
    design_decorrelators,
    diffuse_render_reference,
    mt19937_words,
)


def _layout(names: list[str]) -> Layout:
    return Layout(name="test", speakers=tuple(Speaker(n, 0.0, 0.0) for n in names))


def _split_sizes(rng: np.random.Generator, n: int, big: int = 9000) -> list[int]:
    sizes, done = [], 0
    while done < n:
        choices = [0, 1, 2, 17, 511, 512, 513, 825, 826, 3585, 3586, big]
        s = int(rng.choice(choices + [int(rng.integers(1, 5000))]))
        s = min(s, n - done)
        sizes.append(s)
        done += s
    return sizes


# --- random numbers and seeds -------------------------------------------------------------

def test_mt19937_words_match_the_standard_generator() -> None:
    # MT19937 with init_genrand(5489): first output 3499211612 (Matsumoto & Nishimura's
    # reference output), 10000th output 4123659995 (required by the C++ standard for std::mt19937)
    w = mt19937_words(5489, 10000)
    assert w.dtype == np.uint32
    assert int(w[0]) == 3499211612
    assert int(w[-1]) == 4123659995


def test_seeds_are_indices_in_sorted_channel_names() -> None:
    # 0+5+0 in BS.2051 order; sorted: LFE1, M+000, M+030, M+110, M-030, M-110 ('+' < '-')
    names = ["M+030", "M-030", "M+000", "LFE1", "M+110", "M-110"]
    assert decorrelator_seeds(names) == [2, 4, 1, 0, 3, 5]
    assert decorrelator_seeds(["b", "a", "a"]) == [2, 0, 0]


def test_filters_follow_channel_names_not_positions() -> None:
    names = ["M+030", "M-030", "M+000", "LFE1", "M+110", "M-110"]
    h = design_decorrelators(_layout(names))
    perm = [4, 0, 5, 2, 1, 3]
    h_perm = design_decorrelators(_layout([names[i] for i in perm]))
    np.testing.assert_array_equal(h_perm, h[:, perm])
    # seed 0 (LFE1 here, the first name of a 2-channel layout elsewhere) is the same filter
    np.testing.assert_array_equal(h[:, 3], design_decorrelators(_layout(["A", "B"]))[:, 0])


# --- filter properties ---------------------------------------------------------------------

def test_filter_spectrum_is_unit_magnitude_with_the_specified_phases() -> None:
    seed = 7
    h = design_decorrelator(seed)
    assert h.shape == (FILTER_LENGTH,) and h.dtype == np.float64
    spec = np.fft.rfft(h)
    np.testing.assert_allclose(np.abs(spec), 1.0, atol=1e-12)
    # phase 0 at DC and Nyquist, 2 pi w / 2**32 at bins 1 .. L/2 - 1
    np.testing.assert_allclose(spec[[0, -1]], 1.0, atol=1e-12)
    u = mt19937_words(seed, FILTER_LENGTH // 2 - 1).astype(np.float64) / 2.0**32
    np.testing.assert_allclose(spec[1:-1], np.exp(2j * np.pi * u), atol=1e-12)


def test_filters_are_all_pass_on_a_fine_grid_and_have_unit_energy() -> None:
    h = design_decorrelators(get_layout("4+7+0"))
    assert h.shape == (FILTER_LENGTH, 12)
    # Parseval: sum h^2 = mean |H|^2 over the L-point DFT = 1
    np.testing.assert_allclose(np.sum(h**2, axis=0), 1.0, atol=1e-12)
    # at the L design frequencies |H| = 1 exactly (previous test); on an 8x finer grid the
    # power wanders between them, but averaged over bands 16 design bins wide (1.5 kHz at
    # 48 kHz) it stays within 1.5 dB of 0 dB everywhere from DC to Nyquist
    fine = np.abs(np.fft.rfft(h, n=8 * FILTER_LENGTH, axis=0)) ** 2
    bands = fine[: 4 * FILTER_LENGTH].reshape(FILTER_LENGTH // 32, 128, -1).mean(axis=1)
    assert np.abs(10 * np.log10(bands)).max() < 1.5


def test_filters_are_mutually_decorrelated() -> None:
    h = design_decorrelators(get_layout("9+10+3"))
    c = h.shape[1]
    worst_zero_lag = worst_any_lag = 0.0
    for i in range(c):
        for j in range(i + 1, c):
            xc = np.correlate(h[:, i], h[:, j], mode="full")  # energies are 1: normalised
            worst_zero_lag = max(worst_zero_lag, abs(xc[FILTER_LENGTH - 1]))
            worst_any_lag = max(worst_any_lag, np.abs(xc).max())
    # independent random phases: cross-correlation ~ N(0, 1/L), sd 0.044
    assert worst_zero_lag < 0.2
    assert worst_any_lag < 0.3
    # versus the autocorrelation peak of 1 at lag 0
    np.testing.assert_allclose(np.correlate(h[:, 0], h[:, 0])[0], 1.0, atol=1e-12)


def test_design_is_deterministic() -> None:
    lay = get_layout("4+5+0")
    a, b = design_decorrelators(lay), design_decorrelators(lay)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a[:, 0], a[:, 1])


def test_design_rejects_odd_length() -> None:
    with pytest.raises(ValueError, match="even"):
        design_decorrelator(0, 511)


def test_delay_constant() -> None:
    assert DECORRELATOR_DELAY == 255


# --- streaming convolution and delay -------------------------------------------------------

@pytest.mark.parametrize("dtype,tol", [(np.float64, 1e-11), (np.float32, 2e-5)])
def test_streaming_convolver_equals_whole_signal_convolution(dtype, tol) -> None:
    rng = np.random.default_rng(3)
    n, c = 30000, 3
    h = rng.standard_normal((200, c)) / 10
    x = rng.standard_normal((n, c))
    expected = np.stack([np.convolve(x[:, k], h[:, k])[:n] for k in range(c)], axis=1)
    conv = StreamingConvolver(h, fft_size=1024)
    outs, pos = [], 0
    for s in _split_sizes(rng, n):
        y = conv.process(x[pos:pos + s].astype(dtype))
        assert y.shape == (s, c) and y.dtype == dtype
        outs.append(y)
        pos += s
    np.testing.assert_allclose(np.concatenate(outs), expected, atol=tol)


def test_streaming_convolver_single_call_and_impulse() -> None:
    h = design_decorrelators(get_layout("0+5+0"))
    x = np.zeros((20000, 6))
    x[1234, :] = 1.0
    x[15000, 2] = -2.0
    y = StreamingConvolver(h).process(x)
    expected = np.zeros_like(x)
    expected[1234:1234 + FILTER_LENGTH] += h
    expected[15000:15000 + FILTER_LENGTH, 2] -= 2 * h[:, 2]
    np.testing.assert_allclose(y, expected, atol=1e-13)


def test_streaming_convolver_rejects_wrong_channels() -> None:
    conv = StreamingConvolver(np.ones((4, 2)))
    with pytest.raises(ValueError, match="frames, 2"):
        conv.process(np.zeros((10, 3)))


def test_streaming_delay_is_exact() -> None:
    rng = np.random.default_rng(5)
    x = rng.standard_normal((3000, 4)).astype(np.float32)
    for delay in (0, 1, 255, 700):
        line = StreamingDelay(4, delay)
        outs, pos = [], 0
        for s in _split_sizes(rng, len(x), big=1000):
            outs.append(line.process(x[pos:pos + s]))
            pos += s
        y = np.concatenate(outs)
        assert y.dtype == np.float32
        expected = np.concatenate([np.zeros((delay, 4), np.float32), x])[:len(x)]
        np.testing.assert_array_equal(y, expected)
    with pytest.raises(ValueError):
        StreamingDelay(2, -1)


# --- the alignment contract ----------------------------------------------------------------

def test_reference_render_formula_by_hand() -> None:
    # one diffuse impulse at t0 and one direct impulse at t1: the output holds the direct
    # impulse at t1 (no delay) and the filter starting at t0 - D (advanced by D, head cut)
    h = design_decorrelators(get_layout("0+2+0"))
    n, d = 2000, DECORRELATOR_DELAY
    direct, diffuse = np.zeros((n, 2)), np.zeros((n, 2))
    t0, t1 = 100, 1500
    diffuse[t0, 1] = 1.0
    direct[t1, 0] = 0.5
    out = diffuse_render_reference(direct, diffuse, h)
    assert out.shape == (n, 2)
    expected = np.zeros((n, 2))
    expected[t1, 0] = 0.5
    expected[: t0 - d + FILTER_LENGTH, 1] = h[d - t0:, 1]
    np.testing.assert_allclose(out, expected, atol=1e-13)


def test_reference_render_equals_formula_and_flushes_tail() -> None:
    rng = np.random.default_rng(9)
    h = design_decorrelators(get_layout("2+5+0"))
    for n in (100, 3000):  # shorter and longer than the delay + filter
        direct, diffuse = rng.standard_normal((n, 8)), rng.standard_normal((n, 8))
        full = np.stack([np.convolve(diffuse[:, k], h[:, k]) for k in range(8)], axis=1)
        expected = direct + full[DECORRELATOR_DELAY:DECORRELATOR_DELAY + n]
        np.testing.assert_allclose(diffuse_render_reference(direct, diffuse, h), expected,
                                   atol=1e-12)


def test_diffuse_mixer_streams_to_the_same_aligned_output() -> None:
    rng = np.random.default_rng(11)
    h = design_decorrelators(get_layout("0+5+0"))
    n = 12000
    direct, diffuse = rng.standard_normal((n, 6)), rng.standard_normal((n, 6))
    expected = diffuse_render_reference(direct, diffuse, h)
    mixer = DiffuseMixer(h)
    outs, pos = [], 0
    for s in _split_sizes(rng, n):
        outs.append(mixer.process(direct[pos:pos + s], diffuse[pos:pos + s]))
        pos += s
    outs.append(mixer.finish())
    y = np.concatenate(outs)
    assert y.shape == (n, 6)
    np.testing.assert_allclose(y, expected, atol=1e-12)
