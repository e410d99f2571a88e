"""Binaural renders of files stream the Objects metadata (renderer.render with
renderer.binaural): the per-track sources' gain functions are spooled and swept forward in
time, the virtual path planned in batches. The output must be the one of the whole-document
render (every block parsed, all gain functions in memory), and the gains of a point source
through the streamed path must be the block gains and ramps worked out by hand (BS.2127
clause 7.2 block timing).
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
import soundfile as sf

import renderer.render as render_module
from adm.builder import AdmBuilder, ObjectsBlockSpec, write_adm_bwf
from adm.bw64 import Bw64Reader
from adm.items import select_items
from adm.model import CartesianPosition
from renderer.binaural import render_binaural_array
from renderer.engine import native_kernel_available
from renderer.hrtf import HrtfSet
from renderer.render import read_adm, render_file

SR = 48000
RNG = np.random.default_rng(11)


def _impulse_set() -> HrtfSet:
    """Unit impulses at sample 0 for both ears on a grid over the sphere: every direction's
    filter passes the input unchanged."""
    dirs = [(az, el) for el in (-60, -30, 0, 30, 60) for az in range(0, 360, 15)]
    dirs += [(0, -90), (0, 90)]
    hrirs = np.zeros((len(dirs), 2, 32), np.float32)
    hrirs[:, :, 0] = 1.0
    return HrtfSet(sample_rate=SR, directions=np.array(dirs, float), hrirs=hrirs,
                   name="impulse")


def _write(path, builder: AdmBuilder, audio: np.ndarray):
    doc, chna = builder.build()
    write_adm_bwf(path, audio, SR, doc, chna, bit_depth=32, sample_format="float")
    return path


def _scene(path, virtual: bool = True):
    """A 5.1 bed (with LFE), moving objects with jumps, ramps and silent gaps, an object that
    starts late, a cartesian one, and (``virtual``) objects with extent and diffuseness
    (virtual path); 2.5 s of noise on 11 tracks."""
    b = AdmBuilder("scene")
    b.add_direct_speakers("bed", [1, 2, 3, 4, 5, 6], pack_format_id="AP_00010003")
    f = Fraction
    b.add_object("mover", [
        ObjectsBlockSpec((0.0, 0.0), rtime=0, duration=f(1, 10)),
        ObjectsBlockSpec((80.0, 20.0), rtime=f(1, 10), duration=f(3, 10), gain=0.7),
        # silent from 0.4 s to 1.3 s, then a jump with a short interpolation
        ObjectsBlockSpec((-120.0, 0.0), rtime=f(13, 10), duration=f(2, 10)),
        ObjectsBlockSpec((150.0, -10.0), rtime=f(15, 10), duration=f(5, 10), jump=True,
                         interpolation_length=f(1, 20)),
        ObjectsBlockSpec((30.0, 40.0), rtime=f(2), duration=f(1, 2), jump=True,
                         interpolation_length=0),
    ], 7)
    b.add_object("late", [
        ObjectsBlockSpec((-45.0, 10.0), rtime=0, duration=f(3, 10)),
        ObjectsBlockSpec((-100.0, 30.0), rtime=f(3, 10), duration=f(4, 10), gain=1.5),
    ], 8, start=f(11, 10))
    b.add_object("cartesian", [
        ObjectsBlockSpec(CartesianPosition(-1.0, 1.0, 0.0), rtime=0, duration=f(1)),
        ObjectsBlockSpec(CartesianPosition(0.5, -0.8, 0.6), rtime=f(1), duration=f(3, 2)),
    ], 9)
    if not virtual:
        audio = (0.1 * RNG.standard_normal((int(2.5 * SR), 9))).astype(np.float32)
        return _write(path, b, audio)
    b.add_object("wide", [
        ObjectsBlockSpec((20.0, 0.0), rtime=0, duration=f(1), width=60.0),
        ObjectsBlockSpec((-70.0, 15.0), rtime=f(1), duration=f(3, 2), width=20.0, height=30.0),
    ], 10)
    b.add_object("diffuse", [
        ObjectsBlockSpec((100.0, 0.0), rtime=f(1, 2), duration=f(1), diffuse=0.6),
    ], 11)
    audio = (0.1 * RNG.standard_normal((int(2.5 * SR), 11))).astype(np.float32)
    return _write(path, b, audio)


@pytest.mark.parametrize("group_blocks", [2, 65536])
def test_streamed_render_equals_the_whole_document_render(tmp_path, monkeypatch, group_blocks):
    """render_file to "binaural" (Objects blocks read one channel at a time; with a group of
    2 blocks every channel is planned and spooled in its own batch) gives the output of
    render_binaural_array on the items of the fully parsed document, to float32 rounding."""
    monkeypatch.setattr(render_module, "OBJECT_GROUP_BLOCKS", group_blocks)
    _render_equals_whole_document_render(_scene(tmp_path / "scene.wav"), tmp_path)


def _render_equals_whole_document_render(scene, tmp_path) -> None:
    """render_file of ``scene`` to "binaural" is render_binaural_array's output on the items
    of the fully parsed document, to float32 rounding, and audible."""
    out = tmp_path / "binaural.wav"
    render_file(scene, out, "binaural", float_output=True)
    streamed, rate = sf.read(out, dtype="float32")
    with Bw64Reader(scene) as reader:
        items = select_items(read_adm(reader))
        audio = np.concatenate(list(reader.iter_blocks(1 << 16)))
    whole = render_binaural_array(items, audio, SR)
    assert rate == SR and streamed.shape == whole.shape == (len(audio), 2)
    assert np.abs(whole).max() > 0.05  # the scene is audible
    assert np.abs(streamed - whole).max() < 1e-6


def test_tracks_decoded_track_by_track_give_the_same_render(tmp_path, monkeypatch):
    """Without a virtual path (no mix) the render decodes the tracks track by track for the
    headphone stage (each track's frames contiguous): the output is render_binaural_array's
    on the tracks in frame order, to float32 rounding."""
    layouts = []
    decoded = render_module._decoded_from_the_file

    def recorded(reader, mixer, by_tracks=False):
        layouts.append(by_tracks)
        return decoded(reader, mixer, by_tracks)

    monkeypatch.setattr(render_module, "_decoded_from_the_file", recorded)
    _render_equals_whole_document_render(_scene(tmp_path / "points.wav", virtual=False),
                                         tmp_path)
    if native_kernel_available():  # (else the reader decodes, in frame order)
        assert layouts == [True]


def test_streamed_point_source_gains_follow_block_timing_by_hand(tmp_path, monkeypatch):
    """With unit-impulse HRTFs both ears carry the object's track times its gain. An object
    starting at 0.25 s: gain 1 for 0.25 s, silent for 0.25 s, 0.5 after the gap (no ramp
    across a gap), then a contiguous block ramping to 1 over its whole 0.5 s, and silence
    after its end. Channels are spooled one at a time (group of 1 block)."""
    monkeypatch.setattr(render_module, "OBJECT_GROUP_BLOCKS", 1)
    f = Fraction
    b = AdmBuilder("p")
    b.add_object("o", [
        ObjectsBlockSpec((40.0, 0.0), rtime=0, duration=f(1, 4)),
        ObjectsBlockSpec((-40.0, 20.0), rtime=f(1, 2), duration=f(1, 2), gain=0.5),
        ObjectsBlockSpec((120.0, -20.0), rtime=f(1), duration=f(1, 2), gain=1.0),
    ], 1, start=f(1, 4))
    n = 2 * SR
    x = (0.1 * RNG.standard_normal((n, 1))).astype(np.float32)
    scene = _write(tmp_path / "p.wav", b, x)
    out = tmp_path / "p_bin.wav"
    render_file(scene, out, "binaural", float_output=True, hrtf=_impulse_set())
    y, _ = sf.read(out, dtype="float32")
    t = np.arange(n)
    gain = np.zeros(n)
    gain[(t >= SR // 4) & (t < SR // 2)] = 1.0
    gain[(t >= 3 * SR // 4) & (t < 5 * SR // 4)] = 0.5
    ramp = (t >= 5 * SR // 4) & (t < 7 * SR // 4)
    gain[ramp] = 0.5 + 0.5 * (t[ramp] - 5 * SR // 4) / (SR // 2)
    expected = gain * x[:, 0]
    for ear in range(2):
        np.testing.assert_allclose(y[:, ear], expected, atol=2e-6)


@pytest.mark.parametrize("n_frames", [0, 5, 256, 700])
def test_scale_columns_multiplies_each_column_by_its_gain(n_frames: int) -> None:
    from renderer.binaural import _scale_columns

    x = np.arange(n_frames * 3, dtype=np.float32).reshape(n_frames, 3)
    expected = x * np.array([0.5, -2.0, 0.0], np.float32)  # hand-chosen: half, negated twice, 0
    _scale_columns(x, np.array([0.5, -2.0, 0.0]))
    assert np.array_equal(x, expected)
