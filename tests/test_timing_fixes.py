"""Tests for adm.timing_fixes (audioBlockFormat timing checks and fix-ups, BS.2076-2 5.4.3).

Every expected duration / interpolationLength below is worked out by hand from the block
times of the hand-made document (end of a block = rtime + duration; it must equal the next
block's rtime and not pass the audioObject's duration).
"""

from __future__ import annotations

from fractions import Fraction

import pytest

from adm.builder import AdmBuilder, ObjectsBlockSpec
from adm.model import (
    AdmDocument,
    AdmError,
    AudioChannelFormat,
    AudioObject,
    AudioPackFormat,
    BoundedValue,
    DirectSpeakersBlock,
    DirectSpeakersPolarPosition,
    JumpPosition,
    ObjectsBlock,
    PolarPosition,
    TypeDefinition,
)
from adm.timing_fixes import check_block_timing, format_seconds, object_channel_formats

F = Fraction


def spec(rtime, duration, il=None) -> ObjectsBlockSpec:
    return ObjectsBlockSpec((0.0, 0.0), rtime=rtime, duration=duration,
                            jump=il is not None, interpolation_length=il)


def one_object(blocks, duration=None, start=None) -> tuple[AdmDocument, str, str]:
    b = AdmBuilder("t")
    ids = b.add_object("obj", blocks, track_index=1, duration=duration, start=start)
    doc, _ = b.build()
    return doc, ids.object_id, ids.channel_format_id


def blocks_of(doc: AdmDocument, channel_id: str) -> tuple:
    channel = doc.get(channel_id)
    assert isinstance(channel, AudioChannelFormat)
    return channel.blocks


def durations(doc: AdmDocument, channel_id: str) -> list:
    return [b.duration for b in blocks_of(doc, channel_id)]


def interps(doc: AdmDocument, channel_id: str) -> list:
    return [b.jump_position.interpolation_length for b in blocks_of(doc, channel_id)]


# ------------------------------------------------------------------------------------------
# 1. durations vs the next block's rtime
# ------------------------------------------------------------------------------------------


def test_gap_extends_duration():
    doc, _, cid = one_object([spec(0, 1), spec(2, 1)])
    first = blocks_of(doc, cid)[0].id
    fixed, msgs = check_block_timing(doc, fix=True)
    # block 0 runs 0..1 but block 1 starts at 2: duration 2 - 0 = 2
    assert durations(fixed, cid) == [F(2), F(1)]
    assert len(msgs) == 1
    assert first in msgs[0] and "extended" in msgs[0]
    assert "gap of 1 s" in msgs[0] and "was 1 s, now 2 s" in msgs[0]
    # the other fields are unchanged
    assert blocks_of(fixed, cid)[0].rtime == 0
    assert blocks_of(fixed, cid)[1] == blocks_of(doc, cid)[1]


def test_overlap_contracts_duration_and_interpolation_length():
    # block 0: 0..1.5 with interpolationLength 1.2; block 1 starts at 1
    doc, _, cid = one_object([spec(0, "1.5", il="1.2"), spec(1, 1, il="0.25")])
    fixed, msgs = check_block_timing(doc, fix=True)
    assert durations(fixed, cid) == [F(1), F(1)]
    # 1.2 fitted the old duration 1.5 but not the new one 1 -> shortened to 1, same message
    assert interps(fixed, cid) == [F(1), F(1, 4)]
    assert len(msgs) == 1
    assert "contracted" in msgs[0] and "overlap of 0.5 s" in msgs[0]
    assert "was 1.5 s, now 1 s" in msgs[0]
    assert "interpolationLength" in msgs[0] and "was 1.2 s, now 1 s" in msgs[0]
    assert blocks_of(fixed, cid)[0].jump_position.flag is True


def test_overlap_keeps_interpolation_length_that_still_fits():
    doc, _, cid = one_object([spec(0, "1.5", il="0.25"), spec(1, 1)])
    fixed, msgs = check_block_timing(doc, fix=True)
    assert durations(fixed, cid) == [F(1), F(1)]
    assert interps(fixed, cid) == [F(1, 4), None]
    assert len(msgs) == 1 and "interpolationLength" not in msgs[0]


def test_interpolation_already_too_long_is_left_to_second_check():
    # il 1.5 > old duration 1: the duration fix leaves it; the interpolation check cuts it
    doc, _, cid = one_object([spec(0, 1, il="1.5"), spec("0.5", 1)])
    b0 = blocks_of(doc, cid)[0].id
    fixed, msgs = check_block_timing(doc, fix=True)
    assert durations(fixed, cid) == [F(1, 2), F(1)]
    assert interps(fixed, cid) == [F(1, 2), None]
    assert len(msgs) == 2
    assert "contracted duration" in msgs[0] and "interpolationLength" not in msgs[0]
    assert b0 in msgs[1] and "interpolationLength" in msgs[1]
    assert "was 1.5 s, now 0.5 s" in msgs[1]


def test_non_increasing_rtime_cannot_be_fixed():
    doc, _, _ = one_object([spec(1, 1), spec(1, 1)])
    _, msgs = check_block_timing(doc, fix=False)
    assert len(msgs) == 1 and "overlap of 1 s" in msgs[0]
    with pytest.raises(AdmError, match="does not start after"):
        check_block_timing(doc, fix=True)


# ------------------------------------------------------------------------------------------
# 2. interpolationLength vs duration
# ------------------------------------------------------------------------------------------


def test_interpolation_longer_than_block_is_cut():
    doc, _, cid = one_object([spec(0, "0.5", il="0.75"), spec("0.5", "0.5", il="0.5")])
    b0 = blocks_of(doc, cid)[0].id
    fixed, msgs = check_block_timing(doc, fix=True)
    assert durations(fixed, cid) == [F(1, 2), F(1, 2)]
    assert interps(fixed, cid) == [F(1, 2), F(1, 2)]  # 0.5 == duration: not too long
    assert len(msgs) == 1 and b0 in msgs[0]
    assert "was 0.75 s, now 0.5 s" in msgs[0]


def test_interpolation_without_jump_flag_is_ignored():
    block = ObjectsBlock(id="AB_00031001_00000001", position=PolarPosition(0.0),
                         rtime=F(0), duration=F(1),
                         jump_position=JumpPosition(False, F(2)))
    doc, _, cid = one_object([block])
    fixed, msgs = check_block_timing(doc, fix=True)
    assert msgs == () and fixed is doc


# ------------------------------------------------------------------------------------------
# 3. blocks vs the end of their audioObject
# ------------------------------------------------------------------------------------------


def test_block_past_object_end_is_advanced():
    # object lasts 1.5 s; block 1 runs 1..2 -> ends 0.5 s late -> duration 1 - 0.5 = 0.5,
    # its interpolationLength 0.75 > 0.5 is cut to 0.5 (second message)
    doc, oid, cid = one_object([spec(0, 1), spec(1, 1, il="0.75")], duration="1.5", start=3)
    b1 = blocks_of(doc, cid)[1].id
    fixed, msgs = check_block_timing(doc, fix=True)
    assert durations(fixed, cid) == [F(1), F(1, 2)]
    assert interps(fixed, cid) == [None, F(1, 2)]
    assert len(msgs) == 2
    assert b1 in msgs[0] and oid in msgs[0] and "by 0.5 s" in msgs[0]
    assert "was 1 s, now 0.5 s" in msgs[0]
    assert b1 in msgs[1] and "interpolationLength" in msgs[1]
    assert "was 0.75 s, now 0.5 s" in msgs[1]


def test_duration_fix_then_object_end():
    # gap: block 0 (0..1) extended to 2; then block 1 (2..3) ends after the object (2.5)
    doc, _, cid = one_object([spec(0, 1), spec(2, 1)], duration="2.5")
    fixed, msgs = check_block_timing(doc, fix=True)
    assert durations(fixed, cid) == [F(2), F(1, 2)]
    assert len(msgs) == 2 and "extended" in msgs[0] and "advanced" in msgs[1]


def test_advancing_before_block_start_is_an_error():
    # object lasts 1 s; block 1 starts at 1: shift 1 >= duration 1
    doc, oid, cid = one_object([spec(0, 1), spec(1, 1)], duration=1)
    b1 = blocks_of(doc, cid)[1].id
    with pytest.raises(AdmError, match=f"{b1}.*{oid}"):
        check_block_timing(doc, fix=True)
    out, msgs = check_block_timing(doc, fix=False)
    assert out is doc
    assert len(msgs) == 1 and b1 in msgs[0] and oid in msgs[0] and "after the end" in msgs[0]


def test_untimed_block_interpolation_clamped_to_object_duration():
    doc, oid, cid = one_object([spec(None, None, il=2)], duration="1.25")
    fixed, msgs = check_block_timing(doc, fix=True)
    assert interps(fixed, cid) == [F(5, 4)]
    assert durations(fixed, cid) == [None]
    assert len(msgs) == 1 and oid in msgs[0] and "was 2 s, now 1.25 s" in msgs[0]


def test_object_without_duration_not_checked_against():
    doc, _, _ = one_object([spec(None, None, il=2)])
    fixed, msgs = check_block_timing(doc, fix=True)
    assert fixed is doc and msgs == ()


def test_only_one_of_rtime_duration_is_an_error_when_checked_against_object():
    block = ObjectsBlock(id="AB_00031001_00000001", position=PolarPosition(0.0),
                         rtime=F(0), duration=None)
    ch = AudioChannelFormat("AC_00031001", "c", TypeDefinition.Objects, blocks=(block,))
    pack = AudioPackFormat("AP_00031001", "p", TypeDefinition.Objects,
                           channel_format_ids=(ch.id,))
    obj = AudioObject("AO_1001", "o", duration=F(1), pack_format_ids=(pack.id,))
    doc = AdmDocument(objects=(obj,), pack_formats=(pack,), channel_formats=(ch,))
    with pytest.raises(AdmError, match="AB_00031001_00000001.*only one of rtime"):
        check_block_timing(doc)
    # without an object duration the block is skipped
    doc2 = AdmDocument(objects=(AudioObject("AO_1001", "o", pack_format_ids=(pack.id,)),),
                       pack_formats=(pack,), channel_formats=(ch,))
    assert check_block_timing(doc2, fix=True) == (doc2, ())


# ------------------------------------------------------------------------------------------
# report-only mode, untimed channels, nesting
# ------------------------------------------------------------------------------------------


def test_fix_false_reports_but_leaves_document_unchanged():
    doc, oid, cid = one_object(
        [spec(0, 1), spec(2, "0.5", il=1), spec("2.5", 1)], duration=3)
    before = blocks_of(doc, cid)
    out, msgs = check_block_timing(doc, fix=False)
    assert out is doc and blocks_of(out, cid) == before
    # gap after block 0 (ends 1, next at 2); il 1 > duration 0.5 on block 1;
    # block 2 ends 3.5 > 3
    assert len(msgs) == 3
    assert before[0].id in msgs[0] and "gap of 1 s" in msgs[0]
    assert before[1].id in msgs[1] and "interpolationLength 1 s" in msgs[1]
    assert before[2].id in msgs[2] and oid in msgs[2] and "ends at 3.5 s" in msgs[2]
    # and fixing gives the hand-computed values
    fixed, fixed_msgs = check_block_timing(doc, fix=True)
    assert durations(fixed, cid) == [F(2), F(1, 2), F(1, 2)]
    assert interps(fixed, cid) == [None, F(1, 2), None]
    assert len(fixed_msgs) == 3


def test_channels_without_timing_untouched():
    b = AdmBuilder("t")
    b.add_direct_speakers("bed", [1, 2], pack_format_id="AP_00010002", duration=1)
    ids = b.add_object("still", [spec(None, None)], track_index=3, duration=1)
    doc, _ = b.build()
    fixed, msgs = check_block_timing(doc, fix=True)
    assert fixed is doc and msgs == ()
    assert blocks_of(doc, ids.channel_format_id)[0].rtime is None


def test_contiguous_blocks_give_no_messages():
    doc, _, _ = one_object([spec(0, F(1, 3)), spec(F(1, 3), F(2, 3))], duration=1)
    assert check_block_timing(doc, fix=True) == (doc, ())


def test_exact_fraction_times_in_messages():
    # sample-based times at 48 kHz: block 0 ends 1 sample before block 1
    doc, _, cid = one_object([spec(0, F(47999, 48000)), spec(1, 1)])
    fixed, msgs = check_block_timing(doc, fix=True)
    assert durations(fixed, cid) == [F(1), F(1)]
    assert "gap of 1/48000 s" in msgs[0] and "was 47999/48000 s, now 1 s" in msgs[0]


def test_nested_packs_and_shared_channel():
    # pack P1 contains channel C1 and sub-pack P2 (channel C2); object A (duration 2) uses P1,
    # object B (duration 1.5) uses P2 -> C2 is clamped first to 2 then to 1.5
    def blk(cid, n, rtime, duration):
        return ObjectsBlock(id=f"AB_{cid[3:]}_{n:08X}", position=PolarPosition(0.0),
                            rtime=F(rtime), duration=F(duration))

    c1 = AudioChannelFormat("AC_00031001", "c1", TypeDefinition.Objects,
                            blocks=(blk("AC_00031001", 1, 0, 3),))
    c2 = AudioChannelFormat("AC_00031002", "c2", TypeDefinition.Objects,
                            blocks=(blk("AC_00031002", 1, 1, 2),))
    p2 = AudioPackFormat("AP_00031002", "p2", TypeDefinition.Objects,
                         channel_format_ids=(c2.id,))
    p1 = AudioPackFormat("AP_00031001", "p1", TypeDefinition.Objects,
                         channel_format_ids=(c1.id,), pack_format_ids=(p2.id,))
    a = AudioObject("AO_1001", "a", duration=F(2), pack_format_ids=(p1.id,))
    b = AudioObject("AO_1002", "b", duration=F(3, 2), pack_format_ids=(p2.id,))
    doc = AdmDocument(objects=(a, b), pack_formats=(p1, p2), channel_formats=(c1, c2))

    assert [c.id for c in object_channel_formats(doc, a)] == [c1.id, c2.id]
    assert [c.id for c in object_channel_formats(doc, b)] == [c2.id]

    fixed, msgs = check_block_timing(doc, fix=True)
    assert durations(fixed, c1.id) == [F(2)]  # 0..3 -> 0..2
    assert durations(fixed, c2.id) == [F(1, 2)]  # 1..3 -> 1..2 -> 1..1.5
    assert len(msgs) == 3
    assert "AO_1001" in msgs[0] and "AB_00031001_00000001" in msgs[0]
    assert "AO_1001" in msgs[1] and "was 2 s, now 1 s" in msgs[1]
    assert "AO_1002" in msgs[2] and "was 1 s, now 0.5 s" in msgs[2]


def test_common_definition_channels_skipped():
    # a (pathological) common-definition channel with timing is not touched
    block = DirectSpeakersBlock(
        id="AB_00010001_00000001",
        position=DirectSpeakersPolarPosition(BoundedValue(30.0)),
        rtime=F(0), duration=F(5))
    ch = AudioChannelFormat("AC_00010001", "L", TypeDefinition.DirectSpeakers,
                            blocks=(block, block), is_common_definition=True)
    pack = AudioPackFormat("AP_00010001", "mono", TypeDefinition.DirectSpeakers,
                           channel_format_ids=(ch.id,), is_common_definition=True)
    obj = AudioObject("AO_1001", "o", duration=F(1), pack_format_ids=(pack.id,))
    doc = AdmDocument(objects=(obj,), pack_formats=(pack,), channel_formats=(ch,))
    assert check_block_timing(doc, fix=True) == (doc, ())


def test_missing_pack_reference_is_an_error():
    doc = AdmDocument(objects=(AudioObject("AO_1001", "o", duration=F(1),
                                           pack_format_ids=("AP_00031009",)),))
    with pytest.raises(AdmError, match="AP_00031009"):
        check_block_timing(doc)


def test_format_seconds():
    assert format_seconds(F(1, 50)) == "0.02 s"
    assert format_seconds(F(2)) == "2 s"
    assert format_seconds(F(-1, 4)) == "-0.25 s"
    assert format_seconds(F(1, 3)) == "1/3 s"
    assert format_seconds(F(12345, 100000)) == "0.12345 s"


def test_100k_blocks():
    # 100k blocks of 10 ms, every other one 1 ms short (50k gaps to fix)
    n = 100_000
    blocks = tuple(
        ObjectsBlock(id=f"AB_00031001_{k + 1:08X}", position=PolarPosition(0.0),
                     rtime=F(k, 100), duration=F(9, 1000) if k % 2 else F(1, 100),
                     jump_position=JumpPosition(True, F(1, 200)))
        for k in range(n)
    )
    ch = AudioChannelFormat("AC_00031001", "c", TypeDefinition.Objects, blocks=blocks)
    pack = AudioPackFormat("AP_00031001", "p", TypeDefinition.Objects,
                           channel_format_ids=(ch.id,))
    obj = AudioObject("AO_1001", "o", duration=F(n, 100), pack_format_ids=(pack.id,))
    doc = AdmDocument(objects=(obj,), pack_formats=(pack,), channel_formats=(ch,))
    fixed, msgs = check_block_timing(doc, fix=True)
    # the last block (k odd) is short but has no next block: 49_999 gaps
    assert len(msgs) == n // 2 - 1
    new_blocks = fixed.channel_formats[0].blocks
    assert all(b.duration == F(1, 100) for b in new_blocks[:-1])
    assert new_blocks[-1].duration == F(9, 1000)
    assert new_blocks[1].jump_position == JumpPosition(True, F(1, 200))
