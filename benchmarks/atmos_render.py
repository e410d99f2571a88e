"""Benchmark: render an Atmos-sized ADM BWF master with ``dubstage render -s 7.1.4``.

The master: a 7.1.2 bed (10 DirectSpeakers tracks) plus 118 moving cartesian objects = 128
tracks, 48 kHz, 24-bit, blocks of 30-170 ms with jumpPosition and 250-sample interpolation (as
Dolby Atmos exports write them). It is made once with the demo scene generator and kept in
``--workdir``. Each render runs the whole ``dubstage`` process in a fresh subprocess; we report
wall time and the real-time factor (audio seconds / wall seconds) of each, then the peak memory
of one more render, measured on its own (the sampling takes CPU). "cold" is the first render
with an empty cache (compiled JAX kernels, prepared HRTF sets), "warm" the renders after it.

    python benchmarks/atmos_render.py                  # 60 s master
    python benchmarks/atmos_render.py --seconds 240    # memory must not grow with length
    python benchmarks/atmos_render.py --layout binaural --heard 15   # objects mostly silent
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

_MEASURE = """
import os, resource, subprocess, sys, time

def tree(pid):
    found = [pid]
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                for child in f.read().split():
                    found += tree(int(child))
    except OSError:
        pass
    return found

def pss_kib(pid):
    # proportional set size: pages a forked child shares with its parent are counted once
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0

t = time.perf_counter()
process = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL)
summed = 0
while process.poll() is None:  # the process and its children together, every 20 ms
    summed = max(summed, sum(pss_kib(pid) for pid in tree(process.pid)))
    time.sleep(0.02)
wall = time.perf_counter() - t
peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print(process.returncode, wall, max(peak_kib, summed))
"""


def timed(command: list[str], env: dict[str, str]) -> float:
    """Wall seconds of ``command`` run in a fresh process, with nothing else watching it."""
    start = time.perf_counter()
    done = subprocess.run(command, env=env, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"render failed with status {done.returncode}: {' '.join(command)}"
                         f"\n{done.stderr}")
    return wall


def measure(command: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall seconds, peak memory MiB) of ``command`` run in a fresh process. The memory is
    the largest of the peak resident size of any one process and the proportional set sizes
    of the process and its children added up (sampled every 20 ms on Linux; shared pages
    counted once): a render may fork a child to read the metadata on the other core. The
    sampling takes CPU from the render (about 0.5 s of a 4.5 s render on two cores): time
    with :func:`timed`."""
    out = subprocess.run([sys.executable, "-c", _MEASURE, *command], env=env,
                         capture_output=True, text=True, check=True).stdout.split()
    rc, wall, peak = int(out[0]), float(out[1]), int(out[2]) / 1024
    if rc != 0:
        raise SystemExit(f"render failed with status {rc}: {' '.join(command)}")
    return wall, peak


def make_master(path: Path, seconds: float, heard: float | None = None) -> None:
    """The benchmark master; ``heard``: each object is heard for only that many seconds
    (its blocks outside a window get gain 0; the windows start 7 s apart, modulo the rest),
    as objects of a film mix are silent much of the time."""
    import dataclasses
    from fractions import Fraction

    from adm.model import ObjectsBlock
    from renderer.demo import build_scene, write_scene

    start = time.perf_counter()
    doc, chna, audio = build_scene(n_objects=118, duration=seconds, seed=11)
    if heard is not None:
        channels, k = [], 0
        span = Fraction(max(seconds - heard, 0.0)).limit_denominator(1000)
        for channel in doc.channel_formats:
            if not channel.is_common_definition and channel.blocks \
                    and isinstance(channel.blocks[0], ObjectsBlock):
                first = (Fraction(7 * k) % span) if span else Fraction(0)
                last = first + Fraction(heard).limit_denominator(1000)
                channel = dataclasses.replace(channel, blocks=tuple(
                    b if first <= b.rtime < last else dataclasses.replace(b, gain=0.0)
                    for b in channel.blocks))
                k += 1
            channels.append(channel)
        doc = dataclasses.replace(doc, channel_formats=tuple(channels))
    write_scene(path, doc, chna, audio, seconds)
    n_blocks = sum(len(c.blocks) for c in doc.channel_formats if not c.is_common_definition)
    print(f"made {path} ({path.stat().st_size / 2**20:.0f} MiB, {n_blocks} blocks) "
          f"in {time.perf_counter() - start:.1f} s")


def compile_bytecode() -> None:
    """Compile dubstage's modules to bytecode (``__pycache__``), as installing a wheel does:
    an editable install under ``PYTHONDONTWRITEBYTECODE=1`` (set on some machines) would
    otherwise compile some forty modules from source in every timed run (about 0.15 s)."""
    import compileall
    import importlib.util

    for package in ("adm", "layouts", "renderer"):
        spec = importlib.util.find_spec(package)
        if spec is not None and spec.submodule_search_locations:
            for folder in spec.submodule_search_locations:
                compileall.compile_dir(folder, quiet=1)


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} logical CPUs, Python {platform.python_version()}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--layout", default="7.1.4",
                        help="layout, or several separated by commas (rendered in one "
                             "command), e.g. 7.1.4,5.1,2.0; 'binaural' for headphones")
    parser.add_argument("--runs", type=int, default=3, help="warm runs (default 3)")
    parser.add_argument("--heard", type=float, default=None,
                        help="each object heard for only this many seconds (silent blocks "
                             "elsewhere), as in a film mix")
    parser.add_argument("--workdir", default=os.path.join(tempfile.gettempdir(),
                                                          "dubstage-bench"))
    args = parser.parse_args()
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    heard = f"_heard{args.heard:g}s" if args.heard is not None else ""
    master = work / f"atmos_128tracks_{args.seconds:g}s{heard}.wav"
    if not master.exists():
        make_master(master, args.seconds, args.heard)
    layouts = [name for name in args.layout.split(",") if name]
    out = work / ("render.wav" if len(layouts) == 1 else "render_{layout}.wav")
    cache = work / "cache"  # compiled JAX kernels and prepared HRTF sets: empty for "cold"
    shutil.rmtree(cache, ignore_errors=True)
    env = dict(os.environ, DUBSTAGE_CACHE_DIR=str(cache))
    command = [sys.executable, "-m", "renderer.cli", "render", "--no-progress",
               *[a for name in layouts for a in ("-s", name)], str(master), str(out)]

    compile_bytecode()
    print(f"machine: {machine()}")
    print(f"input: 128 tracks, 48 kHz, 24-bit, {args.seconds:g} s"
          + (f", each object heard for {args.heard:g} s" if args.heard is not None else "")
          + f"; layout(s) {', '.join(layouts)}")
    walls = []
    for run in range(args.runs + 1):
        label = "cold" if run == 0 else f"warm {run}"
        wall = timed(command, env)
        walls.append(wall)
        print(f"{label:>7}: {wall:6.2f} s wall, {args.seconds / wall:6.1f}x real time",
              flush=True)
    best = min(walls[1:]) if len(walls) > 1 else walls[0]
    print(f"best warm: {best:.2f} s = {args.seconds / best:.1f}x real time")
    _, peak = measure(command, env)  # memory in a run of its own: sampling costs CPU
    print(f"peak memory (one more warm run, sampled every 20 ms): {peak:.0f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
