"""Segment runs in memory and spooled to a temporary file, and the mixer that takes them as
the mix reaches them: hand-computed gains, column placements, memory held by the mixer."""

import numpy as np
import pytest

from renderer.engine import Mixer
from renderer.segment_store import MemoryRun, SegmentSource, SegmentSpool
from renderer.timing import Segments


def _holds(track, firsts, lasts, gains):
    """Hold segments on one track: [first, last) with the gain rows given."""
    gains = np.asarray(gains, np.float32)
    n = len(firsts)
    return Segments(
        track=np.full(n, track, np.int32), first=np.asarray(firsts, np.int64),
        last=np.asarray(lasts, np.int64), ramp_start=np.zeros(n), ramp_step=np.zeros(n),
        gains_from=gains, gains_to=gains)


def _staircase(n_steps=40, length=7):
    """Track 0 held at gain (i + 1) on samples [i * length, (i + 1) * length), given out of
    order; the expected gain of every sample is known by hand."""
    firsts = np.arange(n_steps) * length
    order = np.random.default_rng(1).permutation(n_steps)
    return (_holds(0, firsts[order], firsts[order] + length, (order + 1.0)[:, None]),
            np.repeat(np.arange(1.0, n_steps + 1), length))


def _mix(source, n_frames, width, chunk=16, sub_blocks=2):
    mixer = Mixer(source, width, 1, chunk, sub_blocks)
    x = np.ones((n_frames, 1), np.float32)
    step = mixer.frames_per_call
    return np.concatenate([mixer.mix(x[i:i + step]) for i in range(0, n_frames, step)])


@pytest.mark.parametrize("chunk", [1, 3, 1000])
def test_spooled_run_mixes_the_hand_computed_gains(chunk):
    segments, expected = _staircase()
    with SegmentSpool() as spool:
        run = spool.add(segments, chunk=chunk)
        out = _mix(SegmentSource([(run, [(0, 0, 1)])], 1), len(expected), 1)
    np.testing.assert_array_equal(out[:, 0], expected)


def test_memory_and_spooled_runs_take_the_same_segments_in_time_order():
    segments, _ = _staircase()
    with SegmentSpool() as spool:
        spooled, memory = spool.add(segments, chunk=4), MemoryRun(segments)
        for end in (0, 1, 7, 8, 50, 51, 279, 280, 10_000):
            a, b = spooled.take(end), memory.take(end)
            np.testing.assert_array_equal(a.first, b.first)
            np.testing.assert_array_equal(a.gains_to, b.gains_to)
            assert np.all(a.first < end) and np.all(np.diff(a.first) >= 0)
        assert len(spooled.take(10**9).first) == 0  # everything was taken once


def test_placements_put_each_runs_columns_where_they_belong():
    # Run A has two columns (outputs 0 and 2 of the mixer), run B one column (output 1).
    a = _holds(0, [0], [64], [[2.0, 3.0]])
    b = _holds(0, [32], [64], [[5.0]])
    with SegmentSpool() as spool:
        source = SegmentSource([(MemoryRun(a), [(0, 0, 1), (1, 2, 1)]),
                                (spool.add(b), [(0, 1, 1)])], 4)
        out = _mix(source, 64, 4)
    np.testing.assert_array_equal(out[:, 0], 2.0)
    np.testing.assert_array_equal(out[:, 2], 3.0)
    np.testing.assert_array_equal(out[:, 1], np.where(np.arange(64) < 32, 0.0, 5.0))
    np.testing.assert_array_equal(out[:, 3], 0.0)  # a column no run fills


def test_mixer_holds_only_the_segments_playing():
    # 10,000 consecutive holds of 5 samples: the mixer never holds more than the few that
    # overlap its current batch (32 frames: at most 8 segments), however long the plan.
    n = 10_000
    firsts = np.arange(n) * 5
    segments = _holds(0, firsts, firsts + 5, np.ones((n, 1)))
    with SegmentSpool() as spool:
        mixer = Mixer(SegmentSource([(spool.add(segments, chunk=64), [(0, 0, 1)])], 1), 1, 1,
                      16, 2)
        most = 0
        x = np.ones((32, 1), np.float32)
        for _ in range(n * 5 // 32):
            np.testing.assert_array_equal(mixer.mix(x), 1.0)
            most = max(most, len(mixer._window.segments.first))
    assert most <= 8


def test_spool_file_is_removed_when_closed(tmp_path):
    spool = SegmentSpool(tmp_path)
    spool.add(_staircase()[0])
    assert spool.bytes_written > 0
    spool.close()
    assert list(tmp_path.iterdir()) == []  # unnamed: nothing ever visible in the folder
