"""Objects blocks held as columns (adm.columns.ObjectsBlockColumns): the sequence of blocks
they stand for, and the renderer's array paths over them (timing checks, block timing,
gains) against the same blocks as a tuple and against hand-computed values."""

from __future__ import annotations

from dataclasses import replace
from fractions import Fraction

import numpy as np
import pytest

from adm.columns import NO_LENGTH, ObjectsBlockColumns
from adm.model import (
    AdmDocument,
    AudioChannelFormat,
    AudioObject,
    AudioPackFormat,
    CartesianPosition,
    JumpPosition,
    ObjectsBlock,
    PolarPosition,
    TypeDefinition,
)
from adm.timing_fixes import check_block_timing
from layouts.loader import get_layout
from renderer.objects import configure_objects, direct_diffuse_split, object_block_gains
from renderer.timing import block_timings


def _columns(rtime, duration, scale=1000, cartesian=False, position=None, lengths=None,
             jump=None, **values) -> ObjectsBlockColumns:
    n = len(rtime)
    position = np.zeros((n, 3)) if position is None else np.asarray(position, float)
    if not cartesian and position is not None and not position[:, 2].any():
        position[:, 2] = 1.0  # distance 1
    return ObjectsBlockColumns(
        ids=tuple(f"AB_00031001_{k + 1:08X}" for k in range(n)), position=position,
        cartesian=np.full(n, cartesian), time_scale=scale,
        rtime=np.asarray(rtime, np.int64), duration=np.asarray(duration, np.int64),
        jump=np.zeros(n, bool) if jump is None else np.asarray(jump, bool),
        interpolation_length=(np.full(n, NO_LENGTH) if lengths is None
                              else np.asarray(lengths, np.int64)),
        gain=np.asarray(values.get("gain", np.ones(n)), float),
        diffuse=np.asarray(values.get("diffuse", np.zeros(n)), float),
        width=np.zeros(n), height=np.zeros(n), depth=np.zeros(n),
        screen_ref=np.zeros(n, bool), importance=np.full(n, 10), head_locked=np.zeros(n, bool),
        channel_lock=np.zeros(n, bool), max_distance=np.full(n, np.nan),
        divergence=np.zeros(n), azimuth_range=np.full(n, np.nan),
        position_range=np.full(n, np.nan))


def test_a_sequence_of_the_blocks_it_stands_for() -> None:
    columns = _columns([0, 250, 500], [250, 250, 500], position=[[30, 0, 1], [-30, 10, 1],
                                                                  [110, 0, 0.5]],
                       lengths=[NO_LENGTH, 5, 0], jump=[False, True, True], gain=[1, 0.5, 2])
    second = ObjectsBlock("AB_00031001_00000002", PolarPosition(-30.0, 10.0, 1.0),
                          rtime=Fraction(1, 4), duration=Fraction(1, 4), gain=0.5,
                          jump_position=JumpPosition(True, Fraction(1, 200)))
    assert len(columns) == 3 and columns[1] == second and columns[-2] == second
    blocks = tuple(columns)
    assert blocks[2].jump_position == JumpPosition(True, Fraction(0))
    assert blocks[0].jump_position == JumpPosition()
    assert columns == blocks and blocks == columns and hash(columns) == hash(blocks)
    assert isinstance(columns[1:], ObjectsBlockColumns) and columns[1:] == blocks[1:]
    assert columns[::-1] == blocks[::-1] and columns.index(second) == 1
    with pytest.raises(IndexError):
        columns[3]
    with pytest.raises(ValueError):
        columns.rtime[0] = 1  # read-only


def test_concatenated_on_a_common_tick() -> None:
    a = _columns([0, 1], [1, 2], scale=4, lengths=[NO_LENGTH, 1], jump=[False, True])
    b = _columns([0], [3], scale=6)
    joined = ObjectsBlockColumns.concatenate([a, b])
    assert joined.time_scale == 12
    assert list(joined.rtime) == [0, 3, 0] and list(joined.duration) == [3, 6, 6]
    assert list(joined.interpolation_length) == [NO_LENGTH, 3, NO_LENGTH]
    assert tuple(joined) == tuple(a) + tuple(b)


def _doc(blocks, object_duration: Fraction | None = None) -> AdmDocument:
    channel = AudioChannelFormat("AC_00031001", "moving", TypeDefinition.Objects, blocks)
    pack = AudioPackFormat("AP_00031001", "moving", TypeDefinition.Objects,
                           channel_format_ids=(channel.id,))
    obj = AudioObject("AO_1001", "moving", pack_format_ids=(pack.id,),
                      duration=object_duration)
    return AdmDocument(objects=(obj,), pack_formats=(pack,), channel_formats=(channel,))


@pytest.mark.parametrize("fix", [False, True])
@pytest.mark.parametrize("case", ["clean", "gap", "long interpolation", "past the object"])
def test_timing_checks_as_for_the_blocks_themselves(case: str, fix: bool) -> None:
    rtime, duration, lengths = [0, 100, 200], [100, 100, 300], [NO_LENGTH, 20, 50]
    object_duration = Fraction(1, 2)
    if case == "gap":
        duration[0] = 90  # 0.09 s: a gap of 0.01 s before the second block
    elif case == "long interpolation":
        lengths[1] = 150
    elif case == "past the object":
        object_duration = Fraction(2, 5)  # the last block ends at 0.5 s
    columns = _columns(rtime, duration, lengths=lengths, jump=[False, True, True])
    doc = _doc(columns, object_duration)
    checked, messages = check_block_timing(doc, fix=fix)
    expected_doc, expected = check_block_timing(_doc(tuple(columns), object_duration), fix=fix)
    assert messages == expected
    assert checked.channel_formats[0].blocks == expected_doc.channel_formats[0].blocks
    if case == "clean":
        assert checked is doc and messages == ()
    elif case == "gap":
        assert "gap of 0.01 s" in messages[0]
    else:
        assert messages


def test_block_timing_of_columns() -> None:
    # 0.5 s blocks at 48 kHz; the second jumps with interpolationLength 0.005208 s (ticks of
    # 1 / 500000 s): its ramp covers [24000, ceil(24000 + 249.984)) = [24000, 24250)
    columns = _columns([0, 250_000, 500_000], [250_000] * 3, scale=500_000,
                       lengths=[NO_LENGTH, 2604, NO_LENGTH], jump=[False, True, False])
    timing = block_timings(columns, 48000, Fraction(1, 10), None, interpolate=True)
    assert list(timing.ramp_first) == [4800, 28800, 52800]
    assert list(timing.ramp_last) == [4800, 29050, 76800]  # the third ramps over its block
    assert list(timing.hold_last) == [28800, 52800, 76800]
    assert timing.ramp_step[1] == pytest.approx(1 / 249.984)
    as_tuple = block_timings(tuple(columns), 48000, Fraction(1, 10), None, interpolate=True)
    for name in ("ramp_first", "ramp_last", "ramp_p0", "ramp_step", "interpolates",
                 "hold_first", "hold_last"):
        assert np.array_equal(getattr(timing, name), getattr(as_tuple, name)), name


def test_gains_of_columns() -> None:
    layout = get_layout("7.1.4")
    panner = configure_objects(layout)
    cartesian = _columns([0, 1, 2], [1, 1, 1], cartesian=True,
                         position=[[0, 1, 0], [-1, 1, 0], [0.3, -0.2, 0.4]],
                         gain=[1.0, 0.5, 1.0], diffuse=[0.0, 0.0, 0.36])
    gains = object_block_gains(panner, cartesian)
    names = list(layout.channel_names)
    # a source on a loudspeaker: that loudspeaker alone (times the block gain)
    assert gains[0, names.index("M+000")] == pytest.approx(1.0)
    assert gains[1, names.index("M+030")] == pytest.approx(0.5)
    assert np.sum(gains[2] ** 2) == pytest.approx(1.0)
    direct, diffuse = direct_diffuse_split(gains, cartesian)
    assert np.allclose(direct[2], 0.8 * gains[2]) and np.allclose(diffuse[2], 0.6 * gains[2])
    assert np.array_equal(gains, object_block_gains(panner, list(cartesian)))
    polar = replace(cartesian, cartesian=np.zeros(3, bool),
                    position=np.array([[30.0, 0, 1], [-110, 0, 1], [0, 0, 0.5]]))
    assert np.array_equal(object_block_gains(panner, polar),
                          object_block_gains(panner, list(polar)))
    assert tuple(polar)[2].position == PolarPosition(0.0, 0.0, 0.5)
    assert tuple(cartesian)[0].position == CartesianPosition(0.0, 1.0, 0.0)


def test_channel_lock_and_divergence_take_the_whole_gain_calculation() -> None:
    layout = get_layout("7.1.4")
    panner = configure_objects(layout)
    blocks = replace(
        _columns([0, 1, 2], [1, 1, 1], cartesian=True,
                 position=[[0.1, 0.95, 0], [-0.9, 0.9, 0.1], [0.3, -0.2, 0.4]]),
        channel_lock=np.array([False, True, False]),
        max_distance=np.array([np.nan, 2.0, np.nan]),
        divergence=np.array([0.0, 0.0, 0.5]),
        position_range=np.array([np.nan, np.nan, 0.25]))
    assert list(blocks.needs_full_pipeline()) == [False, True, True]
    gains = object_block_gains(panner, blocks)
    assert np.array_equal(gains, object_block_gains(panner, list(blocks)))
    # channel lock with a distance reaching every loudspeaker: one loudspeaker, at full gain
    assert np.count_nonzero(gains[1]) == 1 and gains[1].max() == pytest.approx(1.0)
    assert np.sum(gains[2] ** 2) == pytest.approx(1.0)  # divergence keeps the power
