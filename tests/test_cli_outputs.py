"""Command line: several outputs in one pass, stems, loudness and compliance, plots."""

from __future__ import annotations

import json

import numpy as np
import soundfile as sf
from test_render_outputs import _scene

from renderer.cli import main


def test_several_layouts_with_a_name_pattern(tmp_path, capsys):
    scene = _scene(tmp_path)
    pattern = tmp_path / "mix_{layout}.wav"
    assert main(["render", "--no-progress", "-s", "7.1.4", "-s", "5.1", "-s", "2.0",
                 str(scene), str(pattern)]) == 0
    shapes = {name: sf.read(tmp_path / f"mix_{name}.wav")[0].shape
              for name in ("7.1.4", "5.1", "2.0")}
    assert shapes == {"7.1.4": (48000, 12), "5.1": (48000, 6), "2.0": (48000, 2)}
    assert "rendered 3 outputs" in capsys.readouterr().out


def test_stems_into_a_folder_named_after_contents(tmp_path):
    scene = _scene(tmp_path)
    out = tmp_path / "deliver"
    out.mkdir()
    assert main(["render", "--no-progress", "-s", "5.1", "--stems", str(scene), str(out)]) == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == ["feature_5.1.wav", "feature_5.1_Dialogue.wav", "feature_5.1_Effects.wav",
                     "feature_5.1_Music.wav"]
    mix = sf.read(out / "feature_5.1.wav")[0]
    stems = sum(sf.read(out / n)[0] for n in names[1:])
    np.testing.assert_allclose(stems, mix, atol=3 * 2.0 ** -23)  # 3 x 24-bit rounding


def test_several_outputs_need_a_folder_or_pattern(tmp_path, capsys):
    scene = _scene(tmp_path)
    assert main(["render", "-s", "5.1", "-s", "2.0", str(scene), str(tmp_path / "x.wav")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("dubstage: error:") and "{layout}" in err
    assert not (tmp_path / "x.wav").exists()


def test_binaural_options_only_with_binaural(tmp_path, capsys):
    scene = _scene(tmp_path)
    assert main(["render", "-s", "5.1", "--yaw", "30", str(scene),
                 str(tmp_path / "x.wav")]) == 2
    assert "binaural" in capsys.readouterr().err


def test_bad_hrtf_file_is_a_one_line_error(tmp_path, capsys):
    scene = _scene(tmp_path)
    bogus = tmp_path / "set.sofa"
    bogus.write_bytes(b"not a sofa file")
    assert main(["render", "-s", "binaural", "--hrtf", str(bogus), str(scene),
                 str(tmp_path / "b.wav")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(bogus) in err
    assert not (tmp_path / "b.wav").exists()


def test_loudness_report_and_normalisation(tmp_path, capsys):
    """--normalize-to r128 brings the output to -23 LUFS (measured again independently by
    the loudness command on the written file) and the JSON holds the figures."""
    scene = _scene(tmp_path)
    out = tmp_path / "n.wav"
    report = tmp_path / "report.json"
    assert main(["render", "--no-progress", "-s", "5.1", "--normalize-to", "r128",
                 "--report", str(report), str(scene), str(out)]) == 0
    text = capsys.readouterr().out
    assert "normalized" in text and "EBU R128" in text
    data = json.loads(report.read_text())
    assert abs(data["outputs"]["n.wav"]["integrated_lufs"] + 23.0) < 0.05
    assert main(["loudness", "-s", "5.1", "--spec", "r128", "--report",
                 str(tmp_path / "again.json"), str(out)]) == 0
    again = json.loads((tmp_path / "again.json").read_text())
    assert abs(again["outputs"]["n.wav"]["integrated_lufs"] + 23.0) < 0.05


def test_unknown_spec_is_a_one_line_error(tmp_path, capsys):
    scene = _scene(tmp_path)
    assert main(["render", "-s", "2.0", "--spec", "bogus", str(scene),
                 str(tmp_path / "x.wav")]) == 2
    assert "bogus" in capsys.readouterr().err
    assert main(["loudness", str(tmp_path / "missing.wav")]) == 2


def test_plot_command_writes_and_lists_images(tmp_path, capsys):
    scene = _scene(tmp_path)
    out = tmp_path / "plots"
    out.mkdir()
    assert main(["plot", "-s", "5.1", "-o", str(out), str(scene)]) == 0
    written = sorted(p.name for p in out.iterdir())
    assert "trajectories.png" in written and any(n.startswith("gains_") for n in written)
    listed = capsys.readouterr().out
    assert all(name in listed for name in written)


def test_plot_command_in_a_fresh_process(tmp_path):
    """As a user runs it (a fresh process: the scene pictures are drawn by a forked child
    while the gain plan is computed): every file is written, readable by others (a new
    file's usual permissions), and listed."""
    import os
    import subprocess
    import sys

    scene = _scene(tmp_path)
    out = tmp_path / "plots"
    result = subprocess.run([sys.executable, "-m", "renderer.cli", "plot", "-s", "5.1", "-o",
                             str(out), str(scene)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    names = sorted(p.name for p in out.iterdir())
    assert names == ["gains_5.1.png", "layout.png", "paths.png", "scene3d.png",
                     "trajectories.png"]
    umask = os.umask(0)
    os.umask(umask)
    for name in names:
        assert f"wrote {out / name}" in result.stdout
        assert (out / name).stat().st_mode & 0o777 == 0o666 & ~umask
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_loudness_table_shows_the_dialogue_loudness(tmp_path, capsys):
    """--loudness alone: the table's dialogue column holds the loudness of the dialogue
    content rendered alone (measured here as a stem of its own)."""
    from renderer.render import render_file

    scene = _scene(tmp_path)
    assert main(["render", "--no-progress", "-s", "5.1", "--loudness", str(scene),
                 str(tmp_path / "mix.wav")]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines()
               if line.startswith("mix.wav"))
    stem = render_file(scene, tmp_path / "d.wav", "5.1", content_ids=["Dialogue"],
                       measure_loudness=True)
    assert row.split()[-1] == f"{stem.loudness.integrated_lufs:.1f}"
