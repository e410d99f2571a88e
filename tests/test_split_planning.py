"""Objects channels read and planned by two processes (renderer.render with renderer.workers):
the render equals the one-process render, and a problem found by the other process is
reported as the one-process render reports it. Each render runs in a fresh interpreter (the
split is only made before JAX starts)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from adm.bw64 import Bw64Reader

pytestmark = pytest.mark.skipif(not hasattr(os, "fork") or sys.platform == "darwin",
                                reason="needs fork")

_RENDER = """
import json, sys
import renderer.render as render
import renderer.workers as workers
render.SPLIT_PLANNING_MIN_BYTES = 0
forks = []
fork_call = render.fork_call
def counted(function):
    forks.append(1)
    return fork_call(function)
render.fork_call = counted
workers.can_fork = render.can_fork = lambda: True
try:
    report = render.render_file(sys.argv[1], sys.argv[2], sys.argv[3])
    print(json.dumps({"forks": len(forks), "warnings": report.warnings}))
except Exception as exc:
    print(json.dumps({"forks": len(forks), "error": type(exc).__name__ + ": " + str(exc)}))
"""


def _render(master: Path, out: Path, layout: str, split: bool) -> dict:
    env = dict(os.environ, DUBSTAGE_WORKERS="" if split else "1")
    done = subprocess.run([sys.executable, "-c", _RENDER, str(master), str(out), layout],
                          env=env, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def master(tmp_path_factory) -> Path:
    from renderer.demo import build_scene, write_scene

    path = tmp_path_factory.mktemp("split") / "scene.wav"
    doc, chna, audio = build_scene(n_objects=9, duration=1.5, seed=3)
    write_scene(path, doc, chna, audio, 1.5)
    return path


def _read(path: Path) -> np.ndarray:
    with Bw64Reader(path) as reader:
        return reader.read()


def test_two_processes_render_what_one_does(master, tmp_path):
    one = _render(master, tmp_path / "one.wav", "5.1.4", split=False)
    two = _render(master, tmp_path / "two.wav", "5.1.4", split=True)
    assert (one["forks"], two["forks"]) == (0, 1)
    a, b = _read(tmp_path / "one.wav"), _read(tmp_path / "two.wav")
    assert a.shape == b.shape and np.abs(a).max() > 0.01
    # the same gains, summed in another order: equal to float32 rounding of the 24-bit file
    assert np.abs(a - b).max() <= 2.0 ** -23
    assert sorted(one["warnings"]) == sorted(two["warnings"])


def test_two_processes_render_binaural_as_one_does(master, tmp_path):
    # the other process's per-track sources are numbered after this one's
    one = _render(master, tmp_path / "one.wav", "binaural", split=False)
    two = _render(master, tmp_path / "two.wav", "binaural", split=True)
    assert (one["forks"], two["forks"]) == (0, 1)
    a, b = _read(tmp_path / "one.wav"), _read(tmp_path / "two.wav")
    assert a.shape == b.shape == (a.shape[0], 2) and np.abs(a).max() > 0.01
    assert np.abs(a - b).max() <= 2.0 ** -22
    assert sorted(one["warnings"]) == sorted(two["warnings"])


def test_a_bad_block_read_by_the_other_process_is_reported(master, tmp_path):
    # Break the rtime of the first block of the second Objects channel (document order),
    # which the forked process reads.
    data = bytearray(master.read_bytes())
    starts, cursor = [], 0
    while len(starts) < 2:
        cursor = data.index(b"<audioChannelFormat ", cursor + 1)
        if b'typeDefinition="Objects"' in data[cursor:data.index(b">", cursor)]:
            starts.append(cursor)
    rtime = data.index(b'rtime="', starts[1]) + len(b'rtime="')
    data[rtime:rtime + 2] = b"xx"
    broken = tmp_path / "broken.wav"
    broken.write_bytes(bytes(data))
    one = _render(broken, tmp_path / "one.wav", "5.1", split=False)
    two = _render(broken, tmp_path / "two.wav", "5.1", split=True)
    assert two["forks"] == 1
    assert "bad ADM time" in one["error"] and one["error"] == two["error"]
    assert not (tmp_path / "two.wav").exists()


_CLI = """
import sys
import renderer.workers as workers
workers.SPLIT_MIN_AXML_BYTES = 0
workers.can_fork = lambda: True
started = []
fork_call = workers.fork_call
def counted(function):
    started.append(1)
    return fork_call(function)
workers.fork_call = counted
import renderer.cli as cli
code = cli.main(["render", "--no-progress", "-s", sys.argv[3], sys.argv[1], sys.argv[2]])
print("read ahead", len(started), "code", code)  # forks: reading ahead, split planning
"""


def _cli(master: Path, out: Path, layout: str, ahead: bool) -> subprocess.CompletedProcess:
    env = dict(os.environ, DUBSTAGE_WORKERS="" if ahead else "1")
    return subprocess.run([sys.executable, "-c", _CLI, str(master), str(out), layout],
                          env=env, capture_output=True, text=True)


def test_the_structure_read_ahead_renders_what_one_process_does(master, tmp_path):
    one = _cli(master, tmp_path / "one.wav", "7.1.4", ahead=False)
    two = _cli(master, tmp_path / "two.wav", "7.1.4", ahead=True)
    assert "read ahead 0 code 0" in one.stdout
    assert "read ahead 2 code 0" in two.stdout  # the structure, then the planning's half
    a, b = _read(tmp_path / "one.wav"), _read(tmp_path / "two.wav")
    assert a.shape == b.shape and np.abs(a).max() > 0.01
    assert np.abs(a - b).max() <= 2.0 ** -23  # the halves' gains summed in another order


def test_an_error_found_reading_ahead_is_reported_as_one_process_reports_it(master, tmp_path):
    data = bytearray(master.read_bytes())
    at = data.index(b"<audioProgramme ")
    data[at:at + 16] = b"<audioProgramme<"  # not well-formed
    broken = tmp_path / "broken.wav"
    broken.write_bytes(bytes(data))
    one = _cli(broken, tmp_path / "one.wav", "5.1", ahead=False)
    two = _cli(broken, tmp_path / "two.wav", "5.1", ahead=True)
    assert "read ahead 1 code 2" in two.stdout and "code 2" in one.stdout
    assert two.stderr == one.stderr and "line " in one.stderr
    assert not (tmp_path / "two.wav").exists()


_AHEAD = """
import os, sys
import renderer.workers as workers
from adm.bw64 import Bw64Reader
from adm.xml import read_adm
workers.SPLIT_MIN_AXML_BYTES = 0
workers.can_fork = lambda: True
path = sys.argv[1]
workers.read_ahead(path)
with Bw64Reader(path) as reader:
    expected = read_adm(reader, defer_objects=True)
assert workers.take_read_ahead(path, strict=True) is None  # read for strict=False
doc, channels = workers.take_read_ahead(path).result()
assert doc == expected and len(channels) == 6  # two in three of the 9 objects' channels
assert workers.take_read_ahead(path) is None  # taken once
workers.read_ahead(path)
os.utime(path, ns=(0, 0))  # changed since: not this file's reading any more
assert workers.take_read_ahead(path) is None
print("checked")
"""


def test_a_reading_ahead_is_taken_once_and_not_for_a_changed_file(master, tmp_path):
    # in a fresh interpreter: the reading is forked before JAX starts, as the command does
    copy = tmp_path / "copy.wav"
    copy.write_bytes(master.read_bytes())
    env = dict(os.environ, DUBSTAGE_WORKERS="")
    done = subprocess.run([sys.executable, "-c", _AHEAD, str(copy)], env=env,
                          capture_output=True, text=True)
    assert done.stdout.strip() == "checked", done.stderr


_LOST = """
import os, sys
import renderer.workers as workers
workers.SPLIT_MIN_AXML_BYTES = 0
workers.can_fork = lambda: True
read_ahead = workers.read_ahead
fork_call = workers.fork_call
def dying(function):  # the reading ahead's child dies without an answer
    return fork_call(lambda: os._exit(9))
workers.fork_call = dying
read_ahead(sys.argv[1])
workers.fork_call = fork_call
import renderer.render as render
report = render.render_file(sys.argv[1], sys.argv[2], "5.1")
print("rendered", report.frames)
"""


def test_a_reading_ahead_lost_is_done_again_here(master, tmp_path):
    env = dict(os.environ, DUBSTAGE_WORKERS="")
    done = subprocess.run([sys.executable, "-c", _LOST, str(master), str(tmp_path / "o.wav")],
                          env=env, capture_output=True, text=True)
    assert done.stdout.startswith("rendered 72000"), done.stderr  # 1.5 s at 48 kHz
    assert _read(tmp_path / "o.wav").shape == (72000, 6)


_PLANNER_LOST = """
import os, sys
import renderer.render as render
render.SPLIT_PLANNING_MIN_BYTES = 0
render.forking_allowed = lambda: True
fork_call = render.fork_call
render.fork_call = lambda function: fork_call(lambda: os._exit(9))  # dies without an answer
report = render.render_file(sys.argv[1], sys.argv[2], sys.argv[3])
print("warnings", len(report.warnings))
"""


@pytest.mark.parametrize("layout", ["5.1", "binaural"])
def test_a_planning_half_lost_is_planned_here(master, tmp_path, layout):
    one = _render(master, tmp_path / "one.wav", layout, split=False)
    env = dict(os.environ, DUBSTAGE_WORKERS="")
    done = subprocess.run([sys.executable, "-c", _PLANNER_LOST, str(master),
                           str(tmp_path / "lost.wav"), layout],
                          env=env, capture_output=True, text=True)
    assert done.stdout.startswith("warnings"), done.stderr
    a, b = _read(tmp_path / "one.wav"), _read(tmp_path / "lost.wav")
    assert a.shape == b.shape and np.abs(a).max() > 0.01
    assert np.abs(a - b).max() <= 2.0 ** -22  # every channel planned, in another order
    assert int(done.stdout.split()[1]) == len(one["warnings"])
