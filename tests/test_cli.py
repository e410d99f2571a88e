"""End-to-end tests of the ``dubstage`` command line (renderer/cli.py).

Most tests call :func:`renderer.cli.main` in-process and capture stdout/stderr; one runs the
module as a separate process. Input files are tiny ADM BWF files written with
:class:`adm.builder.AdmBuilder`; outputs are read back with ``soundfile`` (libsndfile), an
implementation independent of our BW64 code. Expected samples come from the standard itself:
an object exactly at a loudspeaker's position (BS.2127 point-source panner, clause 6.1.2.3)
feeds that loudspeaker alone with gain 1.
"""

from __future__ import annotations

import dataclasses
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from adm.builder import AdmBuilder, ObjectsBlockSpec, write_adm_bwf
from adm.bw64 import Bw64Writer
from renderer.cli import main

RATE = 48000
FRAMES = 4800  # 0.1 s
LSB24 = 2.0**-23
REPO = Path(__file__).resolve().parent.parent


# --------------------------------------------------------------------------------------------
# helpers


def _object_scene(*azimuths: float) -> tuple:
    """An ADM scene with one point object per azimuth (elevation 0) on tracks 1, 2, ..."""
    b = AdmBuilder("Programme")
    for k, az in enumerate(azimuths, 1):
        b.add_object(f"obj{k}", [ObjectsBlockSpec((az, 0.0))], track_index=k)
    return b.build()


def _signal(n_tracks: int, seed: int = 0, amplitude: float = 0.5) -> np.ndarray:
    """Deterministic noise, shape (FRAMES, n_tracks), within +-amplitude."""
    rng = np.random.default_rng(seed)
    return rng.uniform(-amplitude, amplitude, (FRAMES, n_tracks))


def _write_scene(path: Path, azimuths=(30.0,), audio: np.ndarray | None = None,
                 bit_depth: int = 24) -> Path:
    doc, chna = _object_scene(*azimuths)
    if audio is None:
        audio = _signal(len(azimuths))
    path.parent.mkdir(parents=True, exist_ok=True)
    write_adm_bwf(path, audio, RATE, doc, chna, bit_depth=bit_depth)
    return path


def _chunks(data: bytes) -> dict[str, tuple[int, int]]:
    """Chunk id -> (offset of the chunk header, body size) of a RIFF file's top level."""
    out: dict[str, tuple[int, int]] = {}
    pos = 12
    while pos + 8 <= len(data):
        cid, size = struct.unpack_from("<4sI", data, pos)
        out[cid.decode("latin-1")] = (pos, size)
        pos += 8 + size + (size & 1)
    return out


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    rc = main(list(argv))
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def _assert_one_line_error(rc: int, err: str, *needles: str) -> str:
    assert rc == 2, err
    assert "Traceback" not in err
    lines = err.strip("\n").split("\n")
    assert len(lines) == 1, err
    assert lines[0].startswith("dubstage: error: "), err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def _render_fails(capsys, input_path: Path, out_dir: Path, *needles: str,
                  extra: tuple[str, ...] = ()) -> str:
    """Render ``input_path`` into an empty ``out_dir``; expect a one-line error naming
    ``needles`` and an ``out_dir`` that is still empty (no output, no partial file)."""
    out_dir.mkdir(exist_ok=True)
    rc, out, err = _run(capsys, "render", "-s", "0+5+0", *extra, str(input_path),
                        str(out_dir / "out.wav"))
    line = _assert_one_line_error(rc, err, *needles)
    assert list(out_dir.iterdir()) == []
    assert "wrote" not in out
    return line


@pytest.fixture(scope="module")
def scene30(tmp_path_factory) -> Path:
    """One object at M+030 (azimuth 30, elevation 0) on track 1; 0.1 s of 24-bit noise."""
    return _write_scene(tmp_path_factory.mktemp("scene30") / "in.wav")


# --------------------------------------------------------------------------------------------
# malformed files: one-line error, exit status 2, nothing written


def test_truncated_in_data_chunk(scene30, tmp_path, capsys):
    data = scene30.read_bytes()
    offset, size = _chunks(data)["data"]
    bad = tmp_path / "cut_data.wav"
    bad.write_bytes(data[: offset + 8 + size // 2])
    line = _render_fails(capsys, bad, tmp_path / "out", str(bad), "truncated")
    assert "data" in line


def test_truncated_in_header(scene30, tmp_path, capsys):
    data = scene30.read_bytes()
    offset, size = _chunks(data)["chna"]
    bad = tmp_path / "cut_head.wav"
    bad.write_bytes(data[: offset + 8 + size // 2])  # inside the chna chunk, before data
    line = _render_fails(capsys, bad, tmp_path / "out", str(bad))
    assert "chna" in line


def test_truncated_to_a_few_bytes(scene30, tmp_path, capsys):
    bad = tmp_path / "stub.wav"
    bad.write_bytes(scene30.read_bytes()[:10])
    _render_fails(capsys, bad, tmp_path / "out", str(bad), "truncated")


def test_chunk_size_past_end_of_file(scene30, tmp_path, capsys):
    data = bytearray(scene30.read_bytes())
    offset, _ = _chunks(bytes(data))["chna"]
    struct.pack_into("<I", data, offset + 4, 0x00FFFFF0)
    bad = tmp_path / "big_chunk.wav"
    bad.write_bytes(bytes(data))
    line = _render_fails(capsys, bad, tmp_path / "out", str(bad), "chna", "past the end")
    assert str(0x00FFFFF0) in line


def test_data_chunk_size_past_end_of_file(scene30, tmp_path, capsys):
    data = bytearray(scene30.read_bytes())
    offset, size = _chunks(bytes(data))["data"]
    struct.pack_into("<I", data, offset + 4, size + 3 * 3 * 1000)  # 1000 frames too many
    bad = tmp_path / "big_data.wav"
    bad.write_bytes(bytes(data))
    _render_fails(capsys, bad, tmp_path / "out", str(bad), "data")


def _rebuild_with_axml(path: Path, axml: bytes, n_tracks: int = 1) -> Path:
    """A 1-object scene's audio and chna with the given axml body."""
    _, chna = _object_scene(*([30.0] * n_tracks))
    with Bw64Writer(path, RATE, n_tracks, bit_depth=24, chna=chna, axml=axml) as writer:
        writer.write(_signal(n_tracks))
    return path


def test_axml_broken_short(tmp_path, capsys):
    bad = _rebuild_with_axml(tmp_path / "broken.wav", b"<broken")
    line = _render_fails(capsys, bad, tmp_path / "out", str(bad))
    assert "XML" in line or "xml" in line


def test_axml_broken_same_length(scene30, tmp_path, capsys):
    data = bytearray(scene30.read_bytes())
    offset, size = _chunks(bytes(data))["axml"]
    body = bytes(data[offset + 8: offset + 8 + size])
    broken = body.replace(b"</audioFormatExtended>", b"</audioFormatExtendxx>")
    assert broken != body and len(broken) == len(body)
    data[offset + 8: offset + 8 + size] = broken
    bad = tmp_path / "broken_same.wav"
    bad.write_bytes(bytes(data))
    _render_fails(capsys, bad, tmp_path / "out", str(bad))


def test_reference_to_missing_pack(tmp_path, capsys):
    doc, chna = _object_scene(30.0)
    obj = doc.objects[0]
    doc = dataclasses.replace(
        doc, objects=(dataclasses.replace(obj, pack_format_ids=("AP_00031999",)),))
    bad = tmp_path / "dangling.wav"
    write_adm_bwf(bad, _signal(1), RATE, doc, chna)
    _render_fails(capsys, bad, tmp_path / "out", str(bad), "AP_00031999")


def test_chna_track_beyond_channel_count(scene30, tmp_path, capsys):
    data = bytearray(scene30.read_bytes())
    offset, _ = _chunks(bytes(data))["chna"]
    # chna body: numTracks, numUIDs (uint16 each), then entries starting with uint16 trackIndex
    assert struct.unpack_from("<H", data, offset + 12)[0] == 1
    struct.pack_into("<H", data, offset + 12, 5)
    bad = tmp_path / "chna5.wav"
    bad.write_bytes(bytes(data))
    _render_fails(capsys, bad, tmp_path / "out", str(bad), "chna", "5")


def test_unknown_layout(scene30, tmp_path, capsys):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    rc, _, err = _run(capsys, "render", "-s", "7.2.9", str(scene30), str(out_dir / "o.wav"))
    _assert_one_line_error(rc, err, "7.2.9")
    assert list(out_dir.iterdir()) == []


BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<ebuCoreMain><coreMetadata><format><audioFormatExtended>
<audioProgramme audioProgrammeID="APR_1001" audioProgrammeName="&lol9;"/>
</audioFormatExtended></format></coreMetadata></ebuCoreMain>
"""


def test_entity_expansion_refused(tmp_path, capsys):
    bad = _rebuild_with_axml(tmp_path / "laughs.wav", BILLION_LAUGHS)
    _render_fails(capsys, bad, tmp_path / "out", str(bad), "entit")


def test_external_entity_refused(tmp_path, capsys):
    secret = tmp_path / "secret.txt"
    secret.write_text("TOPSECRET")
    xml = (b'<?xml version="1.0"?>\n<!DOCTYPE x [<!ENTITY xxe SYSTEM "'
           + secret.as_uri().encode() + b'">]>\n'
           b'<ebuCoreMain><coreMetadata><format><audioFormatExtended>'
           b'<audioProgramme audioProgrammeID="APR_1001" audioProgrammeName="&xxe;"/>'
           b'</audioFormatExtended></format></coreMetadata></ebuCoreMain>')
    bad = _rebuild_with_axml(tmp_path / "xxe.wav", xml)
    line = _render_fails(capsys, bad, tmp_path / "out", str(bad), "entit")
    assert "TOPSECRET" not in line
    rc, out, err = _run(capsys, "info", str(bad))
    _assert_one_line_error(rc, err, str(bad), "entit")
    assert "TOPSECRET" not in out + err


@pytest.mark.parametrize("spelling", ["same", "dot"])
def test_output_is_input_refused(scene30, tmp_path, capsys, spelling):
    folder = tmp_path / "work"
    folder.mkdir()
    src = folder / "in.wav"
    original = scene30.read_bytes()
    src.write_bytes(original)
    out = str(src) if spelling == "same" else str(folder / "." / "in.wav")
    rc, stdout, err = _run(capsys, "render", "-s", "0+5+0", str(src), out)
    _assert_one_line_error(rc, err, "in.wav", "overwrite")
    assert src.read_bytes() == original
    assert [p.name for p in folder.iterdir()] == ["in.wav"]
    assert "wrote" not in stdout


def test_output_folder_missing(scene30, tmp_path, capsys):
    missing = tmp_path / "no" / "such" / "folder"
    rc, _, err = _run(capsys, "render", "-s", "0+5+0", str(scene30), str(missing / "o.wav"))
    line = _assert_one_line_error(rc, err, str(missing))
    assert ".partial" not in line
    assert not (tmp_path / "no").exists()


def test_missing_input_file(tmp_path, capsys):
    missing = tmp_path / "nope.wav"
    rc, _, err = _run(capsys, "render", "-s", "0+5+0", str(missing), str(tmp_path / "o.wav"))
    _assert_one_line_error(rc, err, str(missing))
    assert list(tmp_path.iterdir()) == []


def test_missing_programme(scene30, tmp_path, capsys):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    rc, _, err = _run(capsys, "render", "-s", "0+5+0", "--programme", "APR_1FFF", str(scene30),
                      str(out_dir / "o.wav"))
    _assert_one_line_error(rc, err, "APR_1FFF")
    assert list(out_dir.iterdir()) == []


def test_unknown_comp_object(scene30, tmp_path, capsys):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    rc, _, err = _run(capsys, "render", "-s", "0+5+0", "--comp-object", "AO_1FFF",
                      str(scene30), str(out_dir / "o.wav"))
    _assert_one_line_error(rc, err, str(scene30), "AO_1FFF")
    # an existing object that is in no complementary group cannot be selected either
    rc, _, err = _run(capsys, "render", "-s", "0+5+0", "--comp-object", "AO_1001",
                      str(scene30), str(out_dir / "o.wav"))
    _assert_one_line_error(rc, err, str(scene30), "AO_1001", "complementary")
    assert list(out_dir.iterdir()) == []


@pytest.mark.parametrize("gain", ["nan", "inf"])
def test_non_finite_gain(scene30, tmp_path, capsys, gain):
    rc, _, err = _run(capsys, "render", "-s", "0+5+0", "--output-gain-db", gain, str(scene30),
                      str(tmp_path / "o.wav"))
    _assert_one_line_error(rc, err, "--output-gain-db", gain)
    assert list(tmp_path.iterdir()) == []


def test_output_is_a_folder(scene30, tmp_path, capsys):
    rc, _, err = _run(capsys, "render", "-s", "0+5+0", str(scene30), str(tmp_path))
    _assert_one_line_error(rc, err, str(tmp_path), "folder")
    assert list(tmp_path.iterdir()) == []


def test_failed_render_keeps_existing_output(scene30, tmp_path, capsys):
    bad = tmp_path / "cut.wav"
    bad.write_bytes(scene30.read_bytes()[:300])
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    previous = out_dir / "o.wav"
    previous.write_bytes(b"previous render")
    rc, _, err = _run(capsys, "render", "-s", "0+5+0", str(bad), str(previous))
    _assert_one_line_error(rc, err, str(bad))
    assert previous.read_bytes() == b"previous render"
    assert [p.name for p in out_dir.iterdir()] == ["o.wav"]


def test_info_reports_bad_file(scene30, tmp_path, capsys):
    bad = tmp_path / "cut.wav"
    bad.write_bytes(scene30.read_bytes()[:300])
    rc, out, err = _run(capsys, "info", str(bad))
    _assert_one_line_error(rc, err, str(bad), "truncated")
    assert out == ""


# --------------------------------------------------------------------------------------------
# successful renders


def test_render_object_at_m030(scene30, tmp_path, capsys):
    out = tmp_path / "out.wav"
    rc, stdout, err = _run(capsys, "render", "-s", "0+5+0", str(scene30), str(out))
    assert rc == 0, err
    assert stdout.startswith(f"wrote {out}")
    assert "Traceback" not in err
    info = sf.info(str(out))
    assert (info.channels, info.samplerate, info.subtype, info.frames) == (
        6, RATE, "PCM_24", FRAMES)
    assert [p.name for p in tmp_path.iterdir()] == ["out.wav"]

    x, _ = sf.read(str(scene30), dtype="float64", always_2d=True)  # the 24-bit input samples
    y, _ = sf.read(str(out), dtype="float64", always_2d=True)
    # BS.2051 0+5+0 order: M+030 M-030 M+000 LFE1 M+110 M-110. An object on a loudspeaker
    # feeds it alone with gain 1 (BS.2127 clause 6.1.2.3), so channel 0 = the input.
    np.testing.assert_allclose(y[:, 0], x[:, 0], rtol=0, atol=LSB24)
    np.testing.assert_allclose(y[:, 1:], 0.0, rtol=0, atol=LSB24)
    assert np.abs(y[:, 0]).max() > 0.4


def test_render_float_output(scene30, tmp_path, capsys):
    out = tmp_path / "out.wav"
    rc, _, err = _run(capsys, "render", "-s", "5.1", "--float", str(scene30), str(out))
    assert rc == 0, err
    info = sf.info(str(out))
    assert (info.channels, info.samplerate, info.subtype) == (6, RATE, "FLOAT")
    x, _ = sf.read(str(scene30), dtype="float64", always_2d=True)
    y, _ = sf.read(str(out), dtype="float64", always_2d=True)
    np.testing.assert_allclose(y[:, 0], x[:, 0], rtol=0, atol=1e-6)


def test_render_16_bit_input_gives_16_bit_output(tmp_path, capsys):
    src = _write_scene(tmp_path / "in16.wav", bit_depth=16)
    out = tmp_path / "out16.wav"
    rc, _, err = _run(capsys, "render", "-s", "0+5+0", str(src), str(out))
    assert rc == 0, err
    assert sf.info(str(out)).subtype == "PCM_16"


def test_output_gain_halves(scene30, tmp_path, capsys):
    out = tmp_path / "half.wav"
    rc, _, err = _run(capsys, "render", "-s", "0+5+0", "--output-gain-db", "-6.0206",
                      str(scene30), str(out))
    assert rc == 0, err
    x, _ = sf.read(str(scene30), dtype="float64", always_2d=True)
    y, _ = sf.read(str(out), dtype="float64", always_2d=True)
    gain = 10.0 ** (-6.0206 / 20.0)  # amplitude gain of a level in dB
    assert abs(gain - 0.5) < 2e-6
    np.testing.assert_allclose(y[:, 0], gain * x[:, 0], rtol=0, atol=LSB24)
    np.testing.assert_allclose(y[:, 1:], 0.0, rtol=0, atol=LSB24)


def _overload_input(tmp_path: Path) -> tuple[Path, int]:
    """A scene whose track alternates 0.3, 0.8, -0.3, -0.8; with +6.02 dB every 0.8 sample
    (half of them) clips and no 0.3 sample does."""
    pattern = np.array([0.3, 0.8, -0.3, -0.8])
    audio = np.tile(pattern, FRAMES // 4)[:, None]
    src = _write_scene(tmp_path / "loud.wav", audio=audio)
    return src, FRAMES // 2


def test_fail_on_overload(tmp_path, capsys):
    src, _ = _overload_input(tmp_path)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    rc, _, err = _run(capsys, "render", "-s", "0+5+0", "--output-gain-db", "6.0206",
                      "--fail-on-overload", str(src), str(out_dir / "o.wav"))
    _assert_one_line_error(rc, err, "overload")
    assert list(out_dir.iterdir()) == []


def test_overload_warns_and_writes(tmp_path, capsys):
    src, n_clipped = _overload_input(tmp_path)
    out = tmp_path / "clipped.wav"
    rc, stdout, err = _run(capsys, "render", "-s", "0+5+0", "--output-gain-db", "6.0206",
                           str(src), str(out))
    assert rc == 0, err
    assert stdout.startswith("wrote ")
    warning_lines = [ln for ln in err.splitlines() if "overload" in ln]
    assert len(warning_lines) == 1
    assert warning_lines[0].startswith("dubstage: warning: ")
    assert f"{n_clipped} samples clipped" in warning_lines[0]
    assert "M+030" in warning_lines[0]
    y, _ = sf.read(str(out), dtype="float64", always_2d=True)
    full_pos, full_neg = 1.0 - LSB24, -1.0
    assert np.all(y[1::4, 0] == full_pos) and np.all(y[3::4, 0] == full_neg)
    gain = 10.0 ** (6.0206 / 20.0)
    x, _ = sf.read(str(src), dtype="float64", always_2d=True)
    np.testing.assert_allclose(y[0::2, 0], gain * x[0::2, 0], rtol=0, atol=LSB24)
    np.testing.assert_allclose(y[:, 1:], 0.0, rtol=0, atol=LSB24)


def test_complementary_objects(tmp_path, capsys):
    b = AdmBuilder("Programme")
    leader = b.add_object("english", [ObjectsBlockSpec((30.0, 0.0))], track_index=1)
    other = b.add_object("french", [ObjectsBlockSpec((-30.0, 0.0))], track_index=2)
    b.set_complementary(leader.object_id, [other.object_id])
    doc, chna = b.build()
    src = tmp_path / "comp.wav"
    write_adm_bwf(src, _signal(2, seed=3), RATE, doc, chna)
    x, _ = sf.read(str(src), dtype="float64", always_2d=True)

    default_out = tmp_path / "default.wav"
    rc, _, err = _run(capsys, "render", "-s", "0+5+0", str(src), str(default_out))
    assert rc == 0, err
    y, _ = sf.read(str(default_out), dtype="float64", always_2d=True)
    np.testing.assert_allclose(y[:, 0], x[:, 0], atol=LSB24)  # leader at M+030
    np.testing.assert_allclose(y[:, 1], 0.0, atol=LSB24)

    chosen_out = tmp_path / "french.wav"
    rc, _, err = _run(capsys, "render", "-s", "0+5+0", "--comp-object", other.object_id,
                      str(src), str(chosen_out))
    assert rc == 0, err
    y, _ = sf.read(str(chosen_out), dtype="float64", always_2d=True)
    np.testing.assert_allclose(y[:, 0], 0.0, atol=LSB24)
    np.testing.assert_allclose(y[:, 1], x[:, 1], atol=LSB24)  # alternative at M-030


def test_python_warnings_are_one_line(tmp_path, capsys):
    # A DirectSpeakers channel labelled with "LFE" but without an LFE label or frequency
    # element is not an LFE channel; the DirectSpeakers panner warns about it.
    b = AdmBuilder("Programme")
    b.add_direct_speakers("bed", [1], channels=[("MyLFE", 0.0, 0.0)])
    b.add_programme("Second")  # two programmes: item selection warns which one it renders
    doc, chna = b.build()
    src = tmp_path / "warn.wav"
    write_adm_bwf(src, _signal(1), RATE, doc, chna)
    out = tmp_path / "warn_out.wav"
    rc, stdout, err = _run(capsys, "render", "-s", "0+5+0", str(src), str(out))
    assert rc == 0, err
    assert stdout.startswith("wrote ")
    lines = err.splitlines()
    assert lines, "expected warnings"
    assert all(ln.startswith("dubstage: warning: ") for ln in lines), err
    assert "UserWarning" not in err and ".py:" not in err
    assert any("LFE" in ln for ln in lines)
    assert any("APR_1001" in ln and "audioProgrammes" in ln for ln in lines)
    # the bed channel at azimuth 0 goes to M+000 (channel 2)
    x, _ = sf.read(str(src), dtype="float64", always_2d=True)
    y, _ = sf.read(str(out), dtype="float64", always_2d=True)
    np.testing.assert_allclose(y[:, 2], x[:, 0], atol=LSB24)


# --------------------------------------------------------------------------------------------
# info and layouts


def test_info_tree(tmp_path, capsys):
    b = AdmBuilder("My Programme")
    b.add_direct_speakers("stereo bed", [1, 2], pack_format_id="AP_00010002")
    b.add_object("voice", [ObjectsBlockSpec((0.0, 10.0))], track_index=3)
    doc, chna = b.build()
    src = tmp_path / "scene.wav"
    write_adm_bwf(src, _signal(3), RATE, doc, chna)
    rc, out, err = _run(capsys, "info", str(src))
    assert rc == 0, err
    lines = out.splitlines()
    assert str(src) in lines[0] and "3 tracks" in lines[0] and "48000 Hz" in lines[0]

    def find(prefix: str) -> int:
        hits = [i for i, ln in enumerate(lines) if ln.lstrip().startswith(prefix)]
        assert len(hits) == 1, (prefix, out)
        return hits[0]

    def depth(i: int) -> int:
        return len(lines[i]) - len(lines[i].lstrip())

    prog = find('audioProgramme APR_1001 "My Programme"')
    bed = find('audioObject AO_1001 "stereo bed"')
    bed_pack = find("audioPackFormat AP_00010002")
    left = find("audioChannelFormat AC_00010001")
    right = find("audioChannelFormat AC_00010002")
    voice = find('audioObject AO_1002 "voice"')
    voice_channel = [i for i, ln in enumerate(lines)
                     if "audioChannelFormat AC_0003" in ln]
    assert prog < bed < bed_pack < left < right < voice < voice_channel[0]
    assert depth(prog) < depth(bed) < depth(bed_pack) < depth(left) == depth(right)
    assert depth(voice) == depth(bed)
    assert "track 1" in lines[left] and "track 2" in lines[right]
    assert "track 3" in lines[voice_channel[0]]
    assert "M+030" in lines[left] and "M-030" in lines[right]


def test_layouts_lists_4_7_0(capsys):
    rc, out, err = _run(capsys, "layouts")
    assert rc == 0, err
    line = next(ln for ln in out.splitlines() if ln.startswith("4+7+0"))
    assert "7.1.4" in line and "12 ch" in line
    # BS.2051 table 4+7+0 order, with the film names of design.md
    order = ["M+030", "M-030", "M+000", "LFE1", "M+090", "M-090", "M+135", "M-135",
             "U+045", "U-045", "U+135", "U-135"]
    film = ["L", "R", "C", "LFE", "Lss", "Rss", "Lrs", "Rrs", "Ltf", "Rtf", "Ltr", "Rtr"]
    tokens = line.split(":", 1)[1].split()
    assert tokens == [f"{a}/{b}" for a, b in zip(order, film)]
    for name, alias in [("0+2+0", "2.0"), ("0+5+0", "5.1"), ("0+7+0", "7.1"),
                        ("4+5+0", "5.1.4")]:
        assert any(ln.startswith(name) and alias in ln for ln in out.splitlines()), name


# --------------------------------------------------------------------------------------------
# the real process


def test_console_entry_point_subprocess(scene30, tmp_path):
    bad = tmp_path / "cut.wav"
    bad.write_bytes(scene30.read_bytes()[:200])
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    proc = subprocess.run(
        [sys.executable, "-m", "renderer.cli", "render", "-s", "0+5+0", str(bad),
         str(out_dir / "o.wav")],
        capture_output=True, text=True, cwd=REPO, timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    _assert_one_line_error(proc.returncode, proc.stderr, str(bad))
    assert proc.stdout == ""
    assert list(out_dir.iterdir()) == []
