"""Matrix packs (BS.2127 clause 5.2, BS.2076-2 clause 5.3.4): direct, decode, encode-then-decode
and pre-applied use, checked against hand-computed M/S routing on a stereo loudspeaker pair."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from adm.builder import write_adm_bwf
from adm.items import DirectSpeakersRenderItem, select_items
from adm.model import (
    AdmDocument,
    AdmError,
    AudioChannelFormat,
    AudioContent,
    AudioObject,
    AudioPackFormat,
    AudioProgramme,
    AudioStreamFormat,
    AudioTrackFormat,
    AudioTrackUID,
    BoundedValue,
    ChnaEntry,
    DirectSpeakersBlock,
    DirectSpeakersPolarPosition,
    MatrixBlock,
    MatrixCoefficient,
    TypeDefinition,
)
from adm.xml import merge_common_definitions
from layouts import get_layout
from renderer.plan import build_gain_plan

DS, MATRIX = TypeDefinition.DirectSpeakers, TypeDefinition.Matrix
STEREO, LEFT, RIGHT = "AP_00010002", "AC_00010001", "AC_00010002"
MS_PACK, MID, SIDE = "AP_00011001", "AC_00011001", "AC_00011002"
DIRECT = "AP_00021001"  # direct matrix: M/S input -> stereo output
ENCODE = "AP_00021002"  # encode matrix: stereo input -> M/S (matrix channels)
DECODE = "AP_00021003"  # decode matrix: encode channels -> stereo output
E_MID, E_SIDE = "AC_00021003", "AC_00021004"
D_LEFT, D_RIGHT = "AC_00021005", "AC_00021006"


def coefficient(channel: str, gain: float, **extra) -> MatrixCoefficient:
    return MatrixCoefficient(input_channel_format_id=channel, gain=gain, **extra)


def matrix_channel(cid: str, coefficients, output: str | None) -> AudioChannelFormat:
    block = MatrixBlock(id=f"AB_{cid[3:]}_00000001", coefficients=tuple(coefficients),
                        output_channel_format_id=output)
    return AudioChannelFormat(id=cid, name=cid, type=MATRIX, blocks=(block,))


def ds_channel(cid: str, label: str, azimuth: float) -> AudioChannelFormat:
    block = DirectSpeakersBlock(id=f"AB_{cid[3:]}_00000001",
                                position=DirectSpeakersPolarPosition(BoundedValue(azimuth)),
                                speaker_labels=(label,))
    return AudioChannelFormat(id=cid, name=label, type=DS, blocks=(block,))


def track_format_of(cid: str) -> str:
    return f"AT_{cid[3:]}_01"


def ms_document(usage: str, side_gain: float = 1.0, delay: float | None = None,
                silent_side: bool = False) -> tuple[AdmDocument, tuple[ChnaEntry, ...]]:
    """A two-track document using Matrix packs one of four ways.

    ``direct``: tracks M, S; the object refers to the direct pack (L = M + gS, R = M - gS).
    ``decode``: tracks carry the encode pack's channels (M, S), object -> decode pack.
    ``encode_decode``: tracks L, R (refer to the encode pack), object -> decode pack:
    M = (L + R)/2, S = (L - R)/2, then L' = M + gS, R' = M - gS.
    ``pre_applied``: tracks carry the decode pack's own channels, object -> decode pack.
    """
    g = side_gain
    extra = {} if delay is None else {"delay": delay}
    channels = [
        ds_channel(MID, "M+000", 0.0), ds_channel(SIDE, "M+090", 90.0),
        matrix_channel("AC_00021001", [coefficient(MID, 1.0, **extra), coefficient(SIDE, g)],
                       LEFT),
        matrix_channel("AC_00021002", [coefficient(MID, 1.0), coefficient(SIDE, -g)], RIGHT),
        matrix_channel(E_MID, [coefficient(LEFT, 0.5), coefficient(RIGHT, 0.5)], None),
        matrix_channel(E_SIDE, [coefficient(LEFT, 0.5), coefficient(RIGHT, -0.5)], None),
        matrix_channel(D_LEFT, [coefficient(E_MID, 1.0, **extra), coefficient(E_SIDE, g)],
                       LEFT),
        matrix_channel(D_RIGHT, [coefficient(E_MID, 1.0), coefficient(E_SIDE, -g)], RIGHT),
    ]
    packs = [
        AudioPackFormat(MS_PACK, "MS", DS, channel_format_ids=(MID, SIDE)),
        AudioPackFormat(DIRECT, "direct", MATRIX, channel_format_ids=("AC_00021001",
                                                                      "AC_00021002"),
                        input_pack_format_id=MS_PACK, output_pack_format_id=STEREO),
        AudioPackFormat(ENCODE, "encode", MATRIX, channel_format_ids=(E_MID, E_SIDE),
                        input_pack_format_id=STEREO),
        AudioPackFormat(DECODE, "decode", MATRIX, channel_format_ids=(D_LEFT, D_RIGHT),
                        output_pack_format_id=STEREO, encode_pack_format_ids=(ENCODE,)),
    ]
    track_channels, track_pack, object_pack = {
        "direct": ((MID, SIDE), DIRECT, DIRECT),
        "decode": ((E_MID, E_SIDE), DECODE, DECODE),
        "encode_decode": ((LEFT, RIGHT), ENCODE, DECODE),
        "pre_applied": ((D_LEFT, D_RIGHT), DECODE, DECODE),
    }[usage]
    own = [c.id for c in channels]
    streams = [AudioStreamFormat(f"AS_{c[3:]}", c, channel_format_id=c,
                                 track_format_ids=(track_format_of(c),)) for c in own]
    tracks = [AudioTrackFormat(track_format_of(c), c, stream_format_id=f"AS_{c[3:]}")
              for c in own]
    uids = [AudioTrackUID(f"ATU_0000000{i + 1}", track_index=i + 1,
                          track_format_id=track_format_of(c), pack_format_id=track_pack)
            for i, c in enumerate(track_channels)]
    uid_ids = [u.id for u in uids]
    if silent_side:
        uids, uid_ids = uids[:1], [uid_ids[0], "ATU_00000000"]
    doc = AdmDocument(
        programmes=(AudioProgramme("APR_1001", "p", content_ids=("ACO_1001",)),),
        contents=(AudioContent("ACO_1001", "c", object_ids=("AO_1001",)),),
        objects=(AudioObject("AO_1001", "ms", pack_format_ids=(object_pack,),
                             track_uid_ids=tuple(uid_ids)),),
        pack_formats=tuple(packs), channel_formats=tuple(channels),
        stream_formats=tuple(streams), track_formats=tuple(tracks), track_uids=tuple(uids),
        source="ms.wav",
    )
    chna = tuple(ChnaEntry(u.track_index, u.id, u.track_format_id, u.pack_format_id)
                 for u in uids)
    return merge_common_definitions(doc), chna


def stereo_items(doc: AdmDocument) -> dict[str, DirectSpeakersRenderItem]:
    items = select_items(doc)
    assert all(isinstance(i, DirectSpeakersRenderItem) for i in items)
    assert all(i.context.pack_format_ids == (STEREO,) for i in items)
    assert all(i.pack_is_common_definition for i in items)
    return {i.channel_format.id: i for i in items}  # type: ignore[misc]


# --------------------------------------------------------------------------------------------
# Item selection
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("usage", ["direct", "decode"])
def test_ms_decode_items(usage):
    doc, _ = ms_document(usage, side_gain=0.7)
    items = stereo_items(doc)
    assert set(items) == {LEFT, RIGHT}
    # tracks 0 (M) and 1 (S): L = M + 0.7 S, R = M - 0.7 S
    assert items[LEFT].track_index is None
    assert items[LEFT].track_mix == ((0, 1.0, 0.0), (1, 0.7, 0.0))
    assert items[RIGHT].track_mix == ((0, 1.0, 0.0), (1, -0.7, 0.0))
    assert items[LEFT].context.object_ids == ("AO_1001",)


def test_encode_then_decode_multiplies_and_merges_coefficients():
    doc, _ = ms_document("encode_decode", side_gain=2.0)
    items = stereo_items(doc)
    # L' = (L + R)/2 + 2 (L - R)/2 = 1.5 L - 0.5 R;  R' = -0.5 L + 1.5 R
    assert items[LEFT].track_mix == ((0, 1.5, 0.0), (1, -0.5, 0.0))
    assert items[RIGHT].track_mix == ((0, -0.5, 0.0), (1, 1.5, 0.0))
    # with unit side gain the chain is the identity: plain tracks, no mix
    items = stereo_items(ms_document("encode_decode")[0])
    assert (items[LEFT].track_index, items[LEFT].track_mix) == (0, None)
    assert (items[RIGHT].track_index, items[RIGHT].track_mix) == (1, None)


def test_pre_applied_matrix_uses_tracks_directly():
    items = stereo_items(ms_document("pre_applied", side_gain=0.7)[0])
    assert (items[LEFT].track_index, items[LEFT].track_mix) == (0, None)
    assert (items[RIGHT].track_index, items[RIGHT].track_mix) == (1, None)


def test_silent_input_track_drops_out_of_the_mix():
    items = stereo_items(ms_document("direct", side_gain=0.7, silent_side=True)[0])
    assert (items[LEFT].track_index, items[LEFT].track_mix) == (0, None)  # L = M
    assert (items[RIGHT].track_index, items[RIGHT].track_mix) == (0, None)  # R = M


# --------------------------------------------------------------------------------------------
# Gain plan and rendering
# --------------------------------------------------------------------------------------------


def test_plan_scales_gains_per_contributing_track():
    doc, _ = ms_document("direct", side_gain=0.7)
    plan = build_gain_plan(select_items(doc), get_layout("0+2+0"), 48000)
    gains = np.zeros((2, 2))  # (track, output) from the hold segments
    for track, g in zip(plan.segments.track, plan.segments.gains_to, strict=True):
        gains[track] += g
    np.testing.assert_allclose(gains, [[1.0, 1.0], [0.7, -0.7]], atol=1e-6)


@pytest.mark.parametrize("usage, side_gain, expected", [
    ("direct", 1.0, [[1.0, 1.0], [1.0, -1.0]]),  # L = M + S, R = M - S
    ("decode", 0.5, [[1.0, 1.0], [0.5, -0.5]]),
    ("encode_decode", 2.0, [[1.5, -0.5], [-0.5, 1.5]]),
    ("pre_applied", 0.5, [[1.0, 0.0], [0.0, 1.0]]),
])
def test_render_file_matrix(tmp_path, usage, side_gain, expected):
    import soundfile as sf

    from renderer.render import render_file

    doc, chna = ms_document(usage, side_gain=side_gain)
    sr, n = 48000, 2400
    audio = np.random.default_rng(3).uniform(-0.4, 0.4, (n, 2))
    source = tmp_path / "ms.wav"
    write_adm_bwf(source, audio, sr, doc, chna, bit_depth=32, sample_format="float")
    out = tmp_path / "out.wav"
    render_file(source, out, "0+2+0")
    rendered, _ = sf.read(out, dtype="float64")
    np.testing.assert_allclose(rendered, audio @ np.array(expected), atol=1e-6)


# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------


def test_delays(tmp_path):
    import soundfile as sf

    from renderer.render import render_file

    layout = get_layout("0+2+0")
    doc, chna = ms_document("direct", delay=1.0)
    items = select_items(doc)
    assert stereo_items(doc)[LEFT].track_mix == ((0, 1.0, 1.0), (1, 1.0, 0.0))
    # without the file's track count there is nowhere to put a delayed copy of a track
    with pytest.raises(AdmError, match="Matrix delays are not supported here"):
        build_gain_plan(items, layout, 48000)
    plan = build_gain_plan(items, layout, 48000, n_tracks=2)
    assert plan.delayed_tracks == ((0, 48),)  # 1 ms at 48 kHz, on track 0 (M)
    # a delay below half a sample rounds to no delay
    doc2, _ = ms_document("decode", delay=0.01)
    assert build_gain_plan(select_items(doc2), layout, 48000).segments.track.size == 4

    # rendered: L = M delayed by 48 samples + S, R = M - S (BS.2076-2 coefficient delay)
    sr, n = 48000, 3000
    audio = np.random.default_rng(5).uniform(-0.4, 0.4, (n, 2))
    source = tmp_path / "ms.wav"
    write_adm_bwf(source, audio, sr, doc, chna, bit_depth=32, sample_format="float")
    out = tmp_path / "out.wav"
    render_file(source, out, "0+2+0")
    rendered, _ = sf.read(out, dtype="float64")
    m, side = audio[:, 0], audio[:, 1]
    m_delayed = np.concatenate([np.zeros(48), m[:-48]])
    np.testing.assert_allclose(rendered[:, 0], m_delayed + side, atol=1e-6)
    np.testing.assert_allclose(rendered[:, 1], m - side, atol=1e-6)


@pytest.mark.parametrize("attr, name", [("gain_var", "gainVar"), ("phase_var", "phaseVar"),
                                        ("delay_var", "delayVar"), ("phase", "phase")])
def test_variable_coefficients_are_not_supported(attr, name):
    doc, _ = ms_document("direct")
    value = 90.0 if attr == "phase" else "x"
    channels = tuple(
        dataclasses.replace(c, blocks=(dataclasses.replace(c.blocks[0], coefficients=(
            dataclasses.replace(c.blocks[0].coefficients[0], **{attr: value}),)),))
        if c.id == "AC_00021001" else c
        for c in doc.channel_formats)
    with pytest.raises(AdmError, match=f"AB_00021001_00000001.*uses {name}, which is not "
                                       "supported"):
        select_items(dataclasses.replace(doc, channel_formats=channels))


def replace_channel(doc: AdmDocument, cid: str, **changes) -> AdmDocument:
    return dataclasses.replace(doc, channel_formats=tuple(
        dataclasses.replace(c, **changes) if c.id == cid else c for c in doc.channel_formats))


def test_structure_errors():
    doc, _ = ms_document("direct")
    bad = replace_channel(doc, "AC_00021002", blocks=(MatrixBlock(
        "AB_00021002_00000001", (coefficient(MID, 1.0),), output_channel_format_id=None),))
    with pytest.raises(AdmError, match="AB_00021002_00000001 has no outputChannelFormatIDRef"):
        select_items(bad)
    bad = replace_channel(doc, "AC_00021002", blocks=(MatrixBlock(
        "AB_00021002_00000001", (coefficient(LEFT, 1.0),), output_channel_format_id=RIGHT),))
    with pytest.raises(AdmError, match="coefficient for AC_00010001, which is not in its input"):
        select_items(bad)
    bad = replace_channel(doc, "AC_00021002", blocks=(MatrixBlock(
        "AB_00021002_00000001", (coefficient(MID, 1.0),), output_channel_format_id=LEFT),))
    with pytest.raises(AdmError, match="more than one of its channels outputs to "
                                       "audioChannelFormat AC_00010001"):
        select_items(bad)
    packs = tuple(dataclasses.replace(p, encode_pack_format_ids=(DIRECT,)) if p.id == DECODE
                  else p for p in doc.pack_formats)
    with pytest.raises(AdmError, match="encodePackFormat AP_00021001 is not an encode"):
        select_items(dataclasses.replace(doc, pack_formats=packs))


def test_track_delayer_across_blocks():
    from renderer.matrix import TrackDelayer

    x = np.random.default_rng(2).standard_normal((1000, 3)).astype(np.float32)
    delayer = TrackDelayer([(2, 7), (0, 300)], 3)
    sizes = [1, 5, 250, 3, 400, 341]
    out, start = [], 0
    for size in sizes:
        out.append(delayer.process(x[start:start + size]))
        start += size
    y = np.concatenate(out)
    np.testing.assert_array_equal(y[:, :3], x)
    np.testing.assert_array_equal(y[:, 3], np.concatenate([np.zeros(7), x[:-7, 2]]))
    np.testing.assert_array_equal(y[:, 4], np.concatenate([np.zeros(300), x[:-300, 0]]))
