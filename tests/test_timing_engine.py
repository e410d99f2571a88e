"""Block timing (BS.2127 7.2) and the streaming mix, checked against hand-computed gains."""

from fractions import Fraction

import numpy as np
import pytest

from adm.model import AdmError, JumpPosition, ObjectsBlock, PolarPosition
from renderer import engine, timing
from renderer.engine import Mixer
from renderer.timing import Segments, block_timings, segments_for_track

_VECTORISED = timing._block_timings_vectorised


@pytest.fixture(params=["vectorised", "exact"], autouse=True)
def timing_path(request, monkeypatch):
    """Run every test with both implementations of block_timings."""
    if request.param == "exact":
        monkeypatch.setattr(timing, "_block_timings_vectorised", lambda *args: None)
    return request.param


@pytest.fixture(params=["native", "native-plain", "jax"], autouse=True)
def mixing_kernel(request, monkeypatch):
    """Run every test with both mixing kernels (the native one where it is built, with its
    AVX2 path where the CPU has it and with its plain loops)."""
    if request.param.startswith("native") and not engine.native_kernel_available():
        pytest.skip("the native mixing kernel is not built")
    monkeypatch.setattr(engine, "NATIVE_KERNEL", request.param.startswith("native"))
    if request.param == "native-plain":
        from renderer import _mixkernel

        _mixkernel.use_vectors(False)
        request.addfinalizer(lambda: _mixkernel.use_vectors(True))
    return request.param


def _block(i, rtime, duration, jump=None):
    return ObjectsBlock(
        id=f"AB_00031001_{i:08d}", position=PolarPosition(0.0), rtime=rtime, duration=duration,
        jump_position=JumpPosition(True, jump) if jump is not None else JumpPosition(),
    )


def _render(segments, n_frames, x, chunk, sub_blocks=2):
    """Mix in sub-blocks of ``chunk`` frames, ``sub_blocks`` per call."""
    mixer = Mixer(segments, segments.gains_to.shape[1], x.shape[1], chunk, sub_blocks)
    step = mixer.frames_per_call
    return np.concatenate([mixer.mix(x[i:i + step]) for i in range(0, n_frames, step)])


def test_whole_block_interpolation_ramps_linearly():
    # Two contiguous blocks of 10 samples at 10 Hz; the second interpolates over its whole
    # duration: gains go from g0 at sample 10 linearly to g1 at sample 20.
    blocks = [_block(1, Fraction(0), Fraction(1)), _block(2, Fraction(1), Fraction(1))]
    timings = block_timings(blocks, 10, None, None, interpolate=True)
    assert list(timings.interpolates) == [False, True]
    assert (timings.ramp_first[1], timings.ramp_last[1]) == (10, 20)
    assert list(timings.hold_first) == [0, 20] and list(timings.hold_last) == [10, 20]
    assert timings.ramp_p0[1] == 0.0 and timings.ramp_step[1] == pytest.approx(0.1)
    gains = np.array([[1.0, 0.0], [0.0, 1.0]])
    seg = segments_for_track(0, timings, gains)
    out = _render(seg, 20, np.ones((20, 1), np.float32), chunk=8)
    s = np.arange(20)
    p = np.clip((s - 10) / 10, 0, 1)
    expected = np.stack([np.where(s < 10, 1.0, 1 - p), np.where(s < 10, 0.0, p)], axis=1)
    np.testing.assert_allclose(out, expected, atol=1e-6)


def test_jump_position_interpolation_length():
    # jumpPosition with interpolationLength 0.25 s at 8 Hz = 2 samples of ramp, then hold.
    blocks = [_block(1, Fraction(0), Fraction(1)),
              _block(2, Fraction(1), Fraction(1), jump=Fraction(1, 4))]
    timings = block_timings(blocks, 8, None, None, interpolate=True)
    assert (timings.ramp_first[1], timings.ramp_last[1], timings.hold_last[1]) == (8, 10, 16)
    seg = segments_for_track(0, timings, np.array([[2.0], [4.0]]))
    out = _render(seg, 16, np.ones((16, 1), np.float32), chunk=5)[:, 0]
    np.testing.assert_allclose(out, [2] * 8 + [2.0, 3.0] + [4] * 6, atol=1e-6)


def test_jump_without_length_switches_at_block_start():
    blocks = [_block(1, Fraction(0), Fraction(1)),
              _block(2, Fraction(1), Fraction(1), jump=None)]
    blocks[1] = ObjectsBlock(id="AB_00031001_00000002", position=PolarPosition(0.0),
                             rtime=Fraction(1), duration=Fraction(1),
                             jump_position=JumpPosition(True, None))
    timings = block_timings(blocks, 4, None, None, interpolate=True)
    seg = segments_for_track(0, timings, np.array([[1.0], [3.0]]))
    out = _render(seg, 8, np.ones((8, 1), np.float32), chunk=3)[:, 0]
    np.testing.assert_allclose(out, [1, 1, 1, 1, 3, 3, 3, 3])


def test_fractional_sample_boundaries():
    # At 10 Hz a block boundary at 0.15 s is sample 1.5: samples >= 2 take the new block.
    # The ramp from 1.5 to 3.5 (0.2 s) gives p(2) = 0.25, p(3) = 0.75.
    blocks = [_block(1, Fraction(0), Fraction(15, 100)),
              _block(2, Fraction(15, 100), Fraction(20, 100))]
    timings = block_timings(blocks, 10, None, None, interpolate=True)
    seg = segments_for_track(0, timings, np.array([[0.0], [1.0]]))
    out = _render(seg, 5, np.ones((5, 1), np.float32), chunk=4)[:, 0]
    np.testing.assert_allclose(out, [0, 0, 0.25, 0.75, 0], atol=1e-6)


def test_gap_between_blocks_is_silent_and_next_block_does_not_interpolate():
    blocks = [_block(1, Fraction(0), Fraction(1)), _block(2, Fraction(2), Fraction(1))]
    timings = block_timings(blocks, 4, None, None, interpolate=True)
    assert not timings.interpolates[1]
    seg = segments_for_track(0, timings, np.array([[1.0], [2.0]]))
    out = _render(seg, 12, np.ones((12, 1), np.float32), chunk=5)[:, 0]
    np.testing.assert_allclose(out, [1] * 4 + [0] * 4 + [2] * 4)


def test_object_start_offsets_blocks():
    blocks = [_block(1, Fraction(0), Fraction(1))]
    timings = block_timings(blocks, 4, Fraction(1, 2), None, interpolate=True)
    assert (timings.hold_first[0], timings.hold_last[0]) == (2, 6)


def test_chunk_size_does_not_change_the_mix():
    rng = np.random.default_rng(1)
    n, tracks = 1000, 3
    x = rng.standard_normal((n, tracks)).astype(np.float32)
    parts = []
    for t in range(tracks):
        edges = np.sort(rng.choice(np.arange(1, 200), 5, replace=False))
        times = [Fraction(0)] + [Fraction(int(e), 200) for e in edges] + [Fraction(1)]
        blocks = [_block(i, a, b - a, jump=Fraction(1, 100) if i % 2 else None)
                  for i, (a, b) in enumerate(zip(times[:-1], times[1:]))]
        timings = block_timings(blocks, n, None, None, interpolate=True)
        parts.append(segments_for_track(t, timings, rng.random((len(blocks), 4))))
    seg = Segments.concatenate(parts, 4)
    a = _render(seg, n, x, chunk=64, sub_blocks=4)
    b = _render(seg, n, x, chunk=333, sub_blocks=1)
    np.testing.assert_allclose(a, b, atol=1e-5)
    # Energy check against a direct per-sample evaluation of the gain functions.
    direct = np.zeros((n, 4))
    for i in range(len(seg.track)):
        s = np.arange(seg.first[i], min(seg.last[i], n))
        p = seg.ramp_start[i] + (s - seg.first[i]) * seg.ramp_step[i]
        g = (1 - p)[:, None] * seg.gains_from[i] + p[:, None] * seg.gains_to[i]
        direct[s] += x[s, seg.track[i]][:, None] * g
    np.testing.assert_allclose(a, direct, atol=1e-4)


def test_overlapping_blocks_are_an_error():
    blocks = [_block(1, Fraction(0), Fraction(1)), _block(2, Fraction(1, 2), Fraction(1))]
    with pytest.raises(AdmError, match="overlaps"):
        block_timings(blocks, 48000, None, None, interpolate=True)


def test_interpolation_longer_than_block_is_an_error():
    blocks = [_block(1, Fraction(0), Fraction(1)),
              _block(2, Fraction(1), Fraction(1, 10), jump=Fraction(1, 2))]
    with pytest.raises(AdmError, match="interpolationLength"):
        block_timings(blocks, 48000, None, None, interpolate=True)


def test_block_past_object_end_is_an_error():
    blocks = [_block(1, Fraction(0), Fraction(2))]
    with pytest.raises(AdmError, match="ends after"):
        block_timings(blocks, 48000, None, Fraction(1), interpolate=True)


def test_untimed_block_holds_to_the_end_of_the_file():
    blocks = [ObjectsBlock(id="AB_00031001_00000001", position=PolarPosition(0.0))]
    timings = block_timings(blocks, 48000, None, None, interpolate=True)
    seg = segments_for_track(0, timings, np.array([[0.5]]))
    out = _render(seg, 10, np.ones((10, 1), np.float32), chunk=4)[:, 0]
    np.testing.assert_allclose(out, 0.5)


def test_direct_speakers_blocks_switch_without_ramp():
    blocks = [_block(1, Fraction(0), Fraction(1)), _block(2, Fraction(1), Fraction(1))]
    timings = block_timings(blocks, 4, None, None, interpolate=False)
    seg = segments_for_track(0, timings, np.array([[1.0], [3.0]]))
    out = _render(seg, 8, np.ones((8, 1), np.float32), chunk=3)[:, 0]
    np.testing.assert_allclose(out, [1, 1, 1, 1, 3, 3, 3, 3])


def test_two_items_on_one_track_add_up():
    # The same track used by two render items: outputs are the sum of both gain functions.
    blocks = [_block(1, Fraction(0), Fraction(1)), _block(2, Fraction(1), Fraction(1))]
    timings = block_timings(blocks, 50, None, None, interpolate=True)
    a = segments_for_track(0, timings, np.array([[1.0, 0.0], [0.0, 1.0]]))
    b = segments_for_track(0, timings, np.array([[0.5, 0.5], [0.5, 0.5]]))
    out = _render(Segments.concatenate([a, b], 2), 100, np.ones((100, 1), np.float32), chunk=16)
    s = np.arange(100)
    p = np.clip((s - 50) / 50, 0, 1)
    expected = np.stack([np.where(s < 50, 1.0, 1 - p), np.where(s < 50, 0.0, p)], axis=1)
    np.testing.assert_allclose(out, expected + 0.5, atol=1e-6)


def test_vectorised_and_exact_timing_agree_on_random_channels():
    rng = np.random.default_rng(4)
    for trial in range(20):
        edges = np.cumsum(rng.integers(1, 5000, 30))
        times = [Fraction(int(e), 100000) for e in edges]
        blocks = [_block(i, a, b - a, jump=Fraction(int(rng.integers(0, 300)), 48000)
                         if rng.random() < 0.5 else None)
                  for i, (a, b) in enumerate(zip(times[:-1], times[1:]))
                  if (b - a) > Fraction(300, 48000)]
        start = Fraction(int(rng.integers(0, 1000)), 44100) if trial % 2 else None
        args = (blocks, 48000, start, None, True)
        fast = _VECTORISED(*args, "")
        exact = timing._block_timings_exact(*args)
        assert fast is not None
        for name in ("ramp_first", "ramp_last", "interpolates", "hold_first", "hold_last"):
            np.testing.assert_array_equal(getattr(fast, name), getattr(exact, name))
        np.testing.assert_allclose(fast.ramp_p0, exact.ramp_p0, rtol=0, atol=1e-12)
        np.testing.assert_allclose(fast.ramp_step, exact.ramp_step, rtol=0, atol=1e-12)


@pytest.mark.parametrize("bits", [16, 24, 32])
def test_mixing_from_pcm_bytes_decodes_like_the_reader(tmp_path, bits):
    # A hold of gain 1 on one track: the output is the decoded input, so the kernel's decoding
    # of the file's bytes must equal the reader's float32 samples exactly.
    from adm.bw64 import Bw64Reader, Bw64Writer

    x = np.random.default_rng(bits).uniform(-1, 1, (300, 3)).astype(np.float32)
    path = tmp_path / "x.wav"
    with Bw64Writer(path, 48000, 3, bit_depth=bits) as w:
        w.write(x)
    blocks = [ObjectsBlock(id="AB_00031001_00000001", position=PolarPosition(0.0))]
    timings = block_timings(blocks, 48000, None, None, interpolate=True)
    seg = segments_for_track(1, timings, np.array([[1.0]]))
    with Bw64Reader(path) as r:
        expected = r.read(0, 300)[:, 1:2]
        mixer = Mixer(seg, 1, 3, 64, 2)
        out = np.concatenate([mixer.mix(b, r.raw_encoding) for b in r.iter_raw_blocks(128)])
    np.testing.assert_array_equal(out, expected)


def test_evaluate_segments_hand_computed():
    """A hold of 0.5 on [0, 10), then a ramp to 1.0 over [10, 20) from p = 0 in steps of 0.1,
    on track 1 of 2: sampled values follow the hand-computed line; track 0 stays silent."""
    from renderer.timing import Segments, evaluate_segments

    segments = Segments(
        track=np.array([1, 1], np.int32), first=np.array([0, 10]), last=np.array([10, 20]),
        ramp_start=np.array([0.0, 0.0]), ramp_step=np.array([0.0, 0.1]),
        gains_from=np.array([[0.5], [0.5]], np.float32),
        gains_to=np.array([[0.5], [1.0]], np.float32))
    samples = np.array([0, 9, 10, 15, 19, 20])
    got = evaluate_segments(segments, 2, samples)
    assert got.shape == (6, 2, 1)
    np.testing.assert_allclose(got[:, 1, 0], [0.5, 0.5, 0.5, 0.75, 0.95, 0.0], atol=1e-6)
    assert not got[:, 0].any()


@pytest.mark.parametrize("chunk,sub_blocks", [(16, 4), (64, 2), (7, 3)])
def test_mix_of_random_segments_equals_their_definition(chunk, sub_blocks):
    """Holds and ramps with gaps, chains of ramps and holds, two chains on one track,
    segments starting on and between sub-block starts: the mix equals the sum over segments
    of x[s, track] * (from + p(s) * (to - from)) on [first, last), computed here directly."""
    rng = np.random.default_rng(11)
    n_frames, n_tracks, n_out = 300, 3, 2
    parts = []
    for track in (0, 1, 2, 2):  # track 2 plays two chains
        at = int(rng.integers(0, 20))
        while at < n_frames - 10:
            length = int(rng.integers(1, 40))
            gains = rng.uniform(-1, 1, (2, n_out)).astype(np.float32)
            is_ramp = rng.random() < 0.5
            if is_ramp:
                step = 1.0 / (length + rng.uniform(0, 1))
                if rng.random() < 0.5:  # often the ramp's target is then held
                    hold = int(rng.integers(1, 30))
                    parts.append((track, at + length, at + length + hold, 0.0, 0.0,
                                  gains[1], gains[1]))
            parts.append((track, at, at + length, rng.uniform(0, 0.2) if is_ramp else 0.0,
                          step if is_ramp else 0.0, gains[0], gains[1] if is_ramp else gains[0]))
            at = max(p[2] for p in parts if p[0] == track) + int(rng.integers(0, 3)) * 8
    segments = Segments(
        track=np.array([p[0] for p in parts], np.int32),
        first=np.array([p[1] for p in parts]), last=np.array([p[2] for p in parts]),
        ramp_start=np.array([p[3] for p in parts]), ramp_step=np.array([p[4] for p in parts]),
        gains_from=np.array([p[5] for p in parts]), gains_to=np.array([p[6] for p in parts]))
    x = rng.uniform(-1, 1, (n_frames, n_tracks)).astype(np.float32)
    expected = np.zeros((n_frames, n_out))
    for track, first, last, p0, step, g_from, g_to in parts:
        for s in range(first, min(last, n_frames)):
            p = p0 + (s - first) * step
            expected[s] += x[s, track] * (g_from + p * (g_to - g_from))
    got = _render(segments, n_frames, x, chunk, sub_blocks)[:n_frames]
    np.testing.assert_allclose(got, expected, atol=2e-5)


def test_an_empty_segment_adds_nothing():
    # a ramp and a hold of no frames (first == last) between two holds: no step is left
    segments = Segments(
        track=np.zeros(4, np.int32), first=np.array([0, 20, 20, 20]),
        last=np.array([20, 20, 20, 60]), ramp_start=np.array([0.0, 0.0, 0.0, 0.0]),
        ramp_step=np.array([0.0, 0.5, 0.0, 0.0]),
        gains_from=np.array([[1.0], [0.0], [3.0], [2.0]], np.float32),
        gains_to=np.array([[1.0], [5.0], [3.0], [2.0]], np.float32))
    out = _render(segments, 60, np.ones((60, 1), np.float32), chunk=16)[:60, 0]
    np.testing.assert_allclose(out, np.where(np.arange(60) < 20, 1.0, 2.0), atol=1e-6)
