"""Where a render's time goes: one ``dubstage render`` run in this process, with the main
stages timed (wall time and the CPU time of the thread that ran them) and the CPU time of
every thread and of the forked children printed at the end.

    python benchmarks/profile_render.py -s 7.1.4 /tmp/dubstage-bench/atmos_128tracks_60s.wav out.wav
    python benchmarks/profile_render.py -s binaural master.wav out.wav

Thread CPU time is steadier than wall time on a shared machine whose speed changes from one
minute to the next, and it tells what the cores did while the stages overlapped (the decoding
threads and JAX's threads run beside the main thread during the mix). The stages' times
include what they call; a stage run in a forked child (the metadata read ahead, the other
half of the planning) is not seen here, only the children's total.
"""

from __future__ import annotations

import collections
import importlib
import inspect
import os
import resource
import sys
import threading
import time

START = time.perf_counter()

STAGES = [  # (module, attribute path): what is timed when it exists
    ("renderer.render", "take_read_ahead"),
    ("renderer.render", "check_block_timing"),
    ("renderer.render", "select_items"),
    ("renderer.render", "build_gain_plan"),
    ("renderer.engine", "Mixer.dispatch"),
    ("renderer.engine", "Mixer.dispatch_bytes"),
    ("renderer.engine", "Mixer.start_decoding"),
    ("renderer.engine", "Mixer._tables"),
    ("renderer._mixkernel", "mix"),
    ("renderer.engine", "PendingMix.__array__"),
    ("renderer.engine", "Mixer._base_gains"),
    ("adm.bw64", "Bw64Reader.read"),
    ("adm.bw64", "Bw64Reader._decode_span"),
    ("adm.bw64", "Bw64Reader.sample_bytes"),
    ("adm.bw64", "Bw64Writer.write"),
    ("adm.bw64", "Bw64Writer.write_encoded"),
    ("renderer.render", "_encoded"),
    ("renderer.render", "channel_peaks"),
    ("renderer.binaural", "BinauralStage._sources"),
    ("renderer.binaural", "BinauralStage._call"),
    ("renderer.binaural", "BinauralStage.process"),
    ("renderer.binaural", "BinauralStage._directions"),
    ("renderer.binaural", "BinauralStage._extend"),
    ("renderer.binaural", "BinauralStage._in_groups"),
    ("renderer.binaural", "BinauralStage._convolve_rows"),
    ("renderer.binaural", "_FilterBank.filters"),
    ("renderer.binaural", "_FilterBank.weights"),
    ("renderer.binaural", "_NumpyOps.spectra"),
    ("renderer.binaural", "_NumpyOps.matmul"),
    ("renderer.binaural", "_FilterBank.place"),
    ("renderer.binaural", "_NumpyOps.irfft"),
]

totals: dict[str, list[float]] = collections.defaultdict(lambda: [0.0, 0.0, 0])
marks: list[tuple[str, float]] = []


def timed(label: str, function):
    def wrapper(*args, **kwargs):
        wall, cpu = time.perf_counter(), time.thread_time()
        try:
            return function(*args, **kwargs)
        finally:
            entry = totals[label]
            entry[0] += time.perf_counter() - wall
            entry[1] += time.thread_time() - cpu
            entry[2] += 1

    return wrapper


def wrap_stages() -> None:
    for module_name, path in STAGES:
        try:
            owner = importlib.import_module(module_name)
        except ImportError:
            continue
        *parents, name = path.split(".")
        for parent in parents:
            owner = getattr(owner, parent, None)
        if owner is not None and callable(getattr(owner, name, None)):
            wrapped = timed(path, getattr(owner, name))
            if isinstance(inspect.getattr_static(owner, name), staticmethod):
                wrapped = staticmethod(wrapped)
            setattr(owner, name, wrapped)


def thread_cpu() -> dict[str, float]:
    """CPU seconds of the live threads of this process (Linux), by name."""
    names = {t.native_id: t.name for t in threading.enumerate()}
    tick = os.sysconf("SC_CLK_TCK")
    found: dict[str, float] = collections.defaultdict(float)
    for task in os.listdir(f"/proc/{os.getpid()}/task"):
        with open(f"/proc/{os.getpid()}/task/{task}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        with open(f"/proc/{os.getpid()}/task/{task}/comm") as f:
            comm = f.read().strip()
        label = names.get(int(task), f"native thread ({comm})")  # JAX's, OpenBLAS's
        found[label] += (int(fields[11]) + int(fields[12])) / tick
    return found


def main(argv: list[str]) -> int:
    import renderer.cli as cli

    command = cli.cmd_render

    def render(args):
        marks.append(("imports done", time.perf_counter() - START))
        wrap_stages()
        try:
            return command(args)
        finally:
            marks.append(("render done", time.perf_counter() - START))

    cli.cmd_render = render
    code = cli.main(["render", "--no-progress", *argv])
    print(f"\n{'stage':34s} {'wall s':>8s} {'thread CPU s':>13s} {'calls':>6s}")
    for label, (wall, cpu, calls) in totals.items():
        print(f"{label:34s} {wall:8.3f} {cpu:13.3f} {calls:6d}")
    print()
    for label, at in marks:
        print(f"{label:34s} at {at:6.3f} s")
    if sys.platform.startswith("linux"):
        print("\nCPU seconds by thread (threads still alive):")
        for label, seconds in sorted(thread_cpu().items(), key=lambda kv: -kv[1]):
            if seconds >= 0.01:
                print(f"  {label:32s} {seconds:6.2f}")
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    own = resource.getrusage(resource.RUSAGE_SELF)
    print(f"CPU seconds: this process {own.ru_utime + own.ru_stime:.2f}, forked children "
          f"{children.ru_utime + children.ru_stime:.2f}")
    return code


if __name__ == "__main__":
    status = main(sys.argv[1:])
    sys.stdout.flush()
    os._exit(status)  # as the command line does: no interpreter teardown
