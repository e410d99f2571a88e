"""One read, many outputs: several layouts and stems rendered in one pass."""

from fractions import Fraction

import numpy as np
import pytest

from adm.builder import AdmBuilder, write_adm_bwf
from adm.bw64 import Bw64Reader
from adm.model import ObjectsBlock, PolarPosition
from renderer.render import (
    OutputRequest,
    RenderError,
    render_file,
    render_outputs,
    stem_file_name,
)

SR = 48000


def _scene(tmp_path):
    """Dialogue (an object at the front), music (a stereo bed) and effects (a moving object),
    each its own audioContent; 1 s of noise per track."""
    builder = AdmBuilder(None)
    builder.add_programme("Feature")
    dialogue = builder.add_content("Dialogue", dialogue=1)
    music = builder.add_content("Music")
    effects = builder.add_content("Effects")
    builder.add_object("Dialogue", [ObjectsBlock(id="", position=PolarPosition(0.0, 0.0))],
                       track_index=1, content=dialogue)
    builder.add_direct_speakers("Music bed", [2, 3], pack_format_id="AP_00010002",
                                content=music)
    blocks = [ObjectsBlock(id="", position=PolarPosition(float(a), 20.0),
                           rtime=Fraction(k, 4), duration=Fraction(1, 4))
              for k, a in enumerate((30, 90, 150, -150))]
    builder.add_object("Fly-by", blocks, track_index=4, content=effects)
    doc, chna = builder.build()
    rng = np.random.default_rng(7)
    audio = (0.1 * rng.standard_normal((SR, 4))).astype(np.float32)
    path = tmp_path / "feature.wav"
    write_adm_bwf(path, audio, SR, doc, chna, bit_depth=32, sample_format="float")
    return path


def _read(path):
    with Bw64Reader(path) as reader:
        return reader.read()


def test_several_layouts_in_one_pass_equal_separate_renders(tmp_path):
    scene = _scene(tmp_path)
    layouts = ("7.1.4", "5.1", "2.0")
    requests = [OutputRequest(tmp_path / f"multi_{name}.wav", name) for name in layouts]
    reports = render_outputs(scene, requests, float_output=True)
    assert [r.layout.n_channels for r in reports] == [12, 6, 2]
    for name, report in zip(layouts, reports):
        single = render_file(scene, tmp_path / f"single_{name}.wav", name, float_output=True)
        # equal up to float32 rounding: the mixing kernel's products over 20 output columns
        # and over 12 may sum in another order (and the gains' kernels compiled for another
        # batch size round differently), a few 1e-8 at most
        np.testing.assert_allclose(_read(report.output), _read(single.output), rtol=0,
                                   atol=1e-6)
        np.testing.assert_allclose(report.peak, single.peak, rtol=0, atol=1e-6)


def test_stems_add_up_to_the_full_mix(tmp_path):
    """Rendering is linear: dialogue + music + effects stems sum to the whole programme."""
    scene = _scene(tmp_path)
    names = ("Dialogue", "Music", "Effects")
    requests = [OutputRequest(tmp_path / "full.wav", "5.1")] + [
        OutputRequest(tmp_path / f"{n}.wav", "5.1", content_ids=(n,)) for n in names]
    reports = render_outputs(scene, requests, float_output=True)
    full = _read(reports[0].output)
    stems = [_read(r.output) for r in reports[1:]]
    np.testing.assert_allclose(sum(stems), full, atol=1e-6)
    # the dialogue object is at the front: only the centre (M+000, index 2) carries it
    dialogue = stems[0]
    assert np.abs(dialogue[:, 2]).max() > 0.1
    assert np.abs(np.delete(dialogue, 2, axis=1)).max() == 0.0
    # the music bed is stereo: only L and R
    assert np.abs(stems[1][:, 2:]).max() == 0.0


def test_stem_by_id_equals_stem_by_name(tmp_path):
    scene = _scene(tmp_path)
    a = render_file(scene, tmp_path / "a.wav", "2.0", content_ids=["ACO_1002"])
    b = render_file(scene, tmp_path / "b.wav", "2.0", content_ids=["Music"])
    np.testing.assert_array_equal(_read(a.output), _read(b.output))


def test_unknown_content_and_duplicate_outputs_are_refused(tmp_path):
    scene = _scene(tmp_path)
    with pytest.raises(RenderError, match="no audioContent 'Foley'"):
        render_file(scene, tmp_path / "x.wav", "2.0", content_ids=["Foley"])
    with pytest.raises(RenderError, match="same file"):
        render_outputs(scene, [OutputRequest(tmp_path / "y.wav", "2.0"),
                               OutputRequest(tmp_path / "y.wav", "5.1")])
    assert not list(tmp_path.glob("*.partial*"))
    assert not (tmp_path / "x.wav").exists() and not (tmp_path / "y.wav").exists()


def test_overload_in_one_output_leaves_no_file_at_all(tmp_path):
    scene = _scene(tmp_path)
    requests = [OutputRequest(tmp_path / "a.wav", "2.0"), OutputRequest(tmp_path / "b.wav", "5.1")]
    with pytest.raises(RenderError, match="overloaded"):
        render_outputs(scene, requests, output_gain_db=40.0, fail_on_overload=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["feature.wav"]


def test_stem_file_names(tmp_path):
    inp = tmp_path / "master.wav"
    assert stem_file_name(tmp_path, inp, "7.1.4", None) == tmp_path / "master_7.1.4.wav"
    assert stem_file_name(tmp_path, inp, "5.1", "Dialogue EN") == \
        tmp_path / "master_5.1_Dialogue_EN.wav"
    pattern = tmp_path / "mix_{layout}_{stem}.wav"
    assert stem_file_name(pattern, inp, "2.0", None) == tmp_path / "mix_2.0_mix.wav"


def test_loudness_of_rendered_mixes_agrees_with_pyloudnorm(tmp_path):
    """The loudness measured while rendering equals an independent BS.1770-4 implementation
    (pyloudnorm, exact "DeMan" K-weighting filter) on the written files within 0.1 LU; the
    dialogue loudness is that of the dialogue stem rendered alone."""
    import pyloudnorm

    scene = _scene(tmp_path)
    requests = [OutputRequest(tmp_path / "stereo.wav", "2.0"),
                OutputRequest(tmp_path / "surround.wav", "5.1"),
                OutputRequest(tmp_path / "dialogue.wav", "5.1", content_ids=("Dialogue",))]
    reports = render_outputs(scene, requests, float_output=True, measure_loudness=True)
    meter = pyloudnorm.Meter(SR, filter_class="DeMan")
    stereo = _read(reports[0].output).astype(np.float64)
    assert abs(reports[0].loudness.integrated_lufs - meter.integrated_loudness(stereo)) < 0.1
    # pyloudnorm weights five channels L R C Ls Rs as 1 1 1 1.41 1.41: drop the LFE column
    surround = np.delete(_read(reports[1].output).astype(np.float64), 3, axis=1)
    assert abs(reports[1].loudness.integrated_lufs - meter.integrated_loudness(surround)) < 0.1
    # the content marked dialogue="1", rendered alone to 5.1, measured like the others
    dialogue = np.delete(_read(reports[2].output).astype(np.float64), 3, axis=1)
    assert abs(reports[1].dialogue_loudness.integrated_lufs
               - meter.integrated_loudness(dialogue)) < 0.1
    assert reports[2].dialogue_loudness is None  # a stem has no separate dialogue figure


def test_loudness_of_a_room_follows_its_channel_routing(tmp_path):
    """With a speakers file, the file's channels are the room's, in its order: each is
    weighted as the layout channel feeding it (surrounds +1.5 dB, LFE excluded), so a room
    that is 5.1 with its channels shuffled measures as the 5.1 render does."""
    scene = _scene(tmp_path)
    room = tmp_path / "room.yaml"
    order = {"M+110": 0, "LFE1": 1, "M+000": 2, "M-110": 3, "M+030": 4, "M-030": 5}
    positions = {"M+030": 30, "M-030": -30, "M+000": 0, "M+110": 110, "M-110": -110,
                 "LFE1": 45}
    room.write_text("speakers:\n" + "".join(
        f"  - {{channel: {ch}, names: {name}, position: {{az: {positions[name]}, el: 0}}}}\n"
        for name, ch in order.items()))
    plain = render_file(scene, tmp_path / "plain.wav", "5.1", measure_loudness=True)
    shuffled = render_file(scene, tmp_path / "room.wav", "5.1", speakers_file=room,
                           measure_loudness=True)
    assert abs(shuffled.loudness.integrated_lufs - plain.loudness.integrated_lufs) < 0.01
    # and the room's file holds the same signals, moved
    np.testing.assert_allclose(_read(shuffled.output)[:, 3], _read(plain.output)[:, 5],
                               atol=1e-6)


def test_objects_read_channel_by_channel_render_as_from_the_whole_document(tmp_path):
    """Loudspeaker-only renders read each Objects channel's blocks from the file when they are
    planned; a render that also makes a binaural output reads the whole document first. The
    loudspeaker outputs of both are identical, with block-timing repairs, importance muting,
    diffuse, extent and cartesian objects."""
    from adm.model import CartesianPosition, JumpPosition

    builder = AdmBuilder("Mix")
    builder.add_direct_speakers("Bed", [1, 2], pack_format_id="AP_00010002")
    gap = [ObjectsBlock(id="", position=PolarPosition(float(a), 10.0), rtime=Fraction(k, 5),
                        duration=Fraction(1, 6), importance=10 - 3 * k)  # gaps: repaired
           for k, a in enumerate((20, 70, 120, 170, -150))]
    builder.add_object("Gappy", gap, track_index=3, start=Fraction(1, 20),
                       duration=Fraction(9, 10))  # the last block ends after it: repaired
    builder.add_object("Diffuse", [ObjectsBlock(id="", position=PolarPosition(-40.0, 0.0),
                                                diffuse=0.6, width=40.0)], track_index=4)
    fly = [ObjectsBlock(id="", position=CartesianPosition(x, 0.5, 0.2), cartesian=True,
                        rtime=Fraction(k, 4), duration=Fraction(1, 4),
                        jump_position=JumpPosition(True, Fraction(1, 100)))
           for k, x in enumerate((-1.0, -0.3, 0.4, 1.0))]
    builder.add_object("Fly", fly, track_index=5)
    doc, chna = builder.build()
    rng = np.random.default_rng(3)
    scene = tmp_path / "mix.wav"
    write_adm_bwf(scene, (0.1 * rng.standard_normal((SR, 5))).astype(np.float32), SR, doc,
                  chna, bit_depth=32, sample_format="float")
    options = dict(float_output=True, fix_block_timing=True, importance_threshold=5)
    alone = render_outputs(scene, [OutputRequest(tmp_path / "a.wav", "7.1.4")], **options)
    whole = render_outputs(scene, [OutputRequest(tmp_path / "b.wav", "7.1.4"),
                                   OutputRequest(tmp_path / "c.wav", "binaural")], **options)
    # equal up to float32 rounding (the mixing kernel's products over more output columns
    # with the binaural output's may sum in another order)
    np.testing.assert_allclose(_read(alone[0].output), _read(whole[0].output), rtol=0,
                               atol=1e-6)
    assert sorted(alone[0].warnings) == sorted(whole[0].warnings)
    assert any("AB_" in w for w in alone[0].warnings)  # the repairs are told
    assert any("end of audioObject" in w for w in alone[0].warnings)  # incl. the duration


@pytest.mark.parametrize("n_frames", [0, 1, 127, 128, 129, 1000])
def test_channel_peaks(n_frames: int) -> None:
    from renderer.render import channel_peaks

    frames = np.zeros((n_frames, 12), np.float32)
    expected = np.zeros(12, np.float32)
    for channel in range(12):  # one peak per channel, positive or negative, anywhere
        if n_frames:
            value = (channel + 1) / 16 * (-1) ** channel
            frames[(channel * 37) % n_frames, channel] = value
            expected[channel] = max(expected[channel], abs(value))
    assert np.array_equal(channel_peaks(frames), expected)


def test_background_writes_keep_their_order_and_report_errors():
    # the outputs' writes run in one thread, in the order submitted, at most AHEAD waiting;
    # a failed write is raised by the next submit or wait, and leaving waits for all
    import threading
    import time

    from renderer.render import _WritesInOrder

    written, threads = [], set()

    def write(k):
        time.sleep(0.002 * (k % 3))
        threads.add(threading.get_ident())
        written.append(k)

    with _WritesInOrder() as writes:
        for k in range(20):
            writes.submit(write, k)
            assert len(writes._pending) <= _WritesInOrder.AHEAD
        writes.wait()
        assert written == list(range(20)) and threading.get_ident() not in threads

    def fail(k):
        raise OSError(f"disk full at {k}")

    with _WritesInOrder() as writes:
        writes.submit(fail, 1)
        with pytest.raises(OSError, match="disk full at 1"):
            writes.wait()
    with _WritesInOrder() as writes:  # leaving waits (the error of the render itself wins)
        writes.submit(write, 99)
    assert written[-1] == 99
