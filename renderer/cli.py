"""``dubstage`` command line: a thin layer over :mod:`renderer.render` and friends.

Errors in the input or the options print one line, ``dubstage: error: ...``, and exit with
status 2; no traceback (``--debug`` shows one), and no output file is left behind. Python
warnings raised while a command runs print one line each, ``dubstage: warning: ...``.
"""

from __future__ import annotations

import argparse
import gc
import math
import os
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path

# A render allocates large arrays that live briefly (a batch of decoded tracks, the headphone
# stage's buffers). On Linux numpy asks for transparent huge pages for such arrays; where the
# kernel takes that request by compacting memory at the first touch of each page (THP defrag
# "madvise", a common default), that costs more than the huge pages save (the first touch of a
# fresh 68 MB array: 0.16 against 0.03 s; the benchmark master's 7.1.4 render, alternating
# runs: paired medians -0.05 and -0.09 s; benchmarks/README.md). Set before numpy is
# imported; an explicit setting in the environment wins.
os.environ.setdefault("NUMPY_MADVISE_HUGEPAGE", "0")

EXIT_BAD_INPUT = 2
EXIT_INTERNAL = 3
MAX_WARNINGS_SHOWN = 20


def _add_render_parser(sub) -> None:
    p = sub.add_parser("render", help="render an ADM BWF file to a loudspeaker layout",
                       description="Render an ADM BWF file to loudspeaker feeds (ITU-R BS.2127).")
    p.add_argument("-s", "--system", required=True, metavar="LAYOUT", action="append",
                   help="target layout: a BS.2051 name (4+7+0), an alias (7.1.4) or "
                        "'binaural'; see `dubstage layouts`. Repeat to render several "
                        "layouts in one pass (OUTPUT is then a folder or a name pattern)")
    p.add_argument("-l", "--layout", metavar="FILE", dest="speakers_file",
                   help="speakers file of the real room (ear-render's format): loudspeaker "
                        "positions, output channels and gains")
    p.add_argument("--output-gain-db", type=float, default=0.0, metavar="DB",
                   help="output gain in dB (default 0)")
    p.add_argument("--programme", metavar="ID", help="audioProgramme to render (default: first)")
    p.add_argument("--comp-object", metavar="ID", action="append", default=[],
                   help="audioObject to select from a complementary group (repeatable)")
    p.add_argument("--importance", type=int, metavar="N",
                   help="render only audioObjects and audioPackFormats of importance N or "
                        "more, muting Objects blocks of lower importance (0..10)")
    p.add_argument("-c", "--fail-on-overload", action="store_true",
                   help="fail (and write nothing) if any output sample exceeds full scale")
    p.add_argument("--strict", action="store_true",
                   help="treat unknown ADM elements and attributes as errors")
    p.add_argument("--enable-block-duration-fix", action="store_true",
                   help="repair block durations and interpolation lengths that do not fit "
                        "(common in exported files), reporting each change")
    p.add_argument("--float", dest="float_output", action="store_true",
                   help="write 32-bit float samples (default: the input's format)")
    g = p.add_argument_group("stems")
    g.add_argument("--stems", action="store_true",
                   help="also render each audioContent of the programme (dialogue, music, "
                        "effects, ...) to its own file, named after the content")
    g.add_argument("--stem", metavar="CONTENT", action="append", default=None,
                   help="render only this audioContent (ID or name); repeatable: the "
                        "contents are rendered together")
    g = p.add_argument_group("binaural")
    g.add_argument("--hrtf", metavar="FILE.sofa",
                   help="HRTF set for -s binaural (AES69 SimpleFreeFieldHRIR; default: the "
                        "built-in MIT KEMAR set)")
    g.add_argument("--yaw", type=float, default=0.0, metavar="DEG",
                   help="head yaw in degrees, positive turning left (default 0)")
    g.add_argument("--pitch", type=float, default=0.0, metavar="DEG",
                   help="head pitch in degrees, positive looking up (default 0)")
    g.add_argument("--roll", type=float, default=0.0, metavar="DEG",
                   help="head roll in degrees, positive tilting the right ear down (default 0)")
    g = p.add_argument_group("loudness and compliance")
    g.add_argument("--loudness", action="store_true",
                   help="measure every output (ITU-R BS.1770: integrated, range, maxima, "
                        "true peak; dialogue loudness from the dialogue content) and print a "
                        "table")
    g.add_argument("--spec", metavar="SPEC", action="append", default=[],
                   help="check every output against a delivery spec: r128, a85, streaming "
                        "(repeatable; implies --loudness)")
    g.add_argument("--report", metavar="FILE.json",
                   help="write the loudness and compliance figures as JSON (implies "
                        "--loudness)")
    g.add_argument("--normalize-to", metavar="SPEC",
                   help="after rendering, scale each output to the spec's target loudness "
                        "(limited by its true-peak ceiling) and report the gain applied")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("input", help="ADM BWF input file (BW64/RF64/WAV with chna and axml)")
    p.add_argument("output", help="output BW64 file; with several layouts or --stems, a folder "
                                  "or a name with {layout} and {stem} placeholders")


def _progress_printer(enabled: bool):
    state = {"last": 0.0}

    def show(done: int, total: int) -> None:
        now = time.monotonic()
        if done < total and now - state["last"] < 0.2:
            return
        state["last"] = now
        width = 30
        frac = done / total if total else 1.0
        bar = "#" * int(frac * width)
        sys.stderr.write(f"\rrendering [{bar:<{width}}] {100 * frac:5.1f}%")
        if done >= total:
            sys.stderr.write("\n")
        sys.stderr.flush()

    return show if enabled else None


def _print_warnings(warnings_: Sequence[str]) -> None:
    shown = list(warnings_)[:MAX_WARNINGS_SHOWN]
    for message in shown:
        print(f"dubstage: warning: {message}", file=sys.stderr)
    if len(warnings_) > len(shown):
        print(f"dubstage: warning: ... and {len(warnings_) - len(shown)} more",
              file=sys.stderr)


def _output_requests(args):
    """The OutputRequests of a render command and the stem-naming function (or None)."""
    from renderer.render import OutputRequest, RenderError, stem_file_name

    layouts = list(dict.fromkeys(args.system))
    target = Path(args.output)
    stems = args.stem if args.stem else None
    several = len(layouts) > 1 or args.stems
    if not several:
        return [OutputRequest(target, layouts[0], tuple(stems) if stems else None)], None
    if not (target.is_dir() or "{layout}" in str(target) or "{stem}" in str(target)):
        raise RenderError(f"{target}: with several outputs, OUTPUT must be an existing folder "
                          "or a name with {layout} / {stem} placeholders")
    if len(layouts) > 1 and not target.is_dir() and "{layout}" not in str(target):
        raise RenderError(f"{target}: several layouts need {{layout}} in the output name")
    source = Path(args.input)
    stem_name = "_".join(stems) if stems else None
    requests = [OutputRequest(stem_file_name(target, source, name, stem_name), name,
                              tuple(stems) if stems else None, name) for name in layouts]

    def stems_of(request, content_id: str, content_name: str) -> Path:
        return stem_file_name(target, source, str(request.layout), content_name or content_id)

    return requests, (stems_of if args.stems else None)


def cmd_render(args) -> int:
    from renderer.render import RenderError, render_outputs

    start = time.perf_counter()
    show_progress = not args.no_progress and sys.stderr.isatty()
    specs = []
    if args.spec or args.normalize_to:
        from renderer.compliance import get_spec

        specs = [get_spec(name) for name in args.spec]
        normalize = get_spec(args.normalize_to) if args.normalize_to else None
    else:
        normalize = None
    measure = bool(args.loudness or specs or args.report or normalize)
    orientation = None
    if "binaural" in [s.strip().lower() for s in args.system]:
        from renderer.binaural import HeadOrientation

        orientation = HeadOrientation(yaw=args.yaw, pitch=args.pitch, roll=args.roll)
    elif args.hrtf or args.yaw or args.pitch or args.roll:
        raise RenderError("--hrtf, --yaw, --pitch and --roll apply to -s binaural only")
    requests, stems_of = _output_requests(args)
    # this short-lived process's modules never become garbage: the collector skips them
    gc.freeze()
    reports = render_outputs(
        args.input, requests,
        output_gain_db=args.output_gain_db, programme_id=args.programme,
        complementary_object_ids=args.comp_object, fail_on_overload=args.fail_on_overload,
        strict=args.strict, float_output=args.float_output,
        fix_block_timing=args.enable_block_duration_fix,
        progress=_progress_printer(show_progress),
        speakers_file=args.speakers_file, importance_threshold=args.importance,
        hrtf=args.hrtf, head_orientation=orientation, measure_loudness=measure,
        stems_of=stems_of,
    )
    _print_warnings([w for r in reports for w in r.warnings])
    if normalize is not None:
        from renderer.compliance import normalization_gain_db
        from renderer.render import apply_gain_to_file

        for report in reports:
            gain_db = normalization_gain_db(report.loudness, normalize, report.dialogue_loudness)
            apply_gain_to_file(report.output, gain_db, report)
            print(f"normalized {report.output} to {normalize.name}: {gain_db:+.2f} dB")
    elapsed = time.perf_counter() - start
    took = f" in {elapsed:.2f} s" if len(reports) == 1 else ""
    for report in reports:
        seconds = report.frames / report.sample_rate
        print(f"wrote {report.output} ({report.layout.name}, {len(report.peak)} channels, "
              f"{seconds:.2f} s){took}")
        if report.overloaded_channels:
            peak_db = 20 * math.log10(float(report.peak.max()))
            print(f"dubstage: warning: {report.output}: output overloaded (peak "
                  f"{peak_db:+.2f} dBFS) on {', '.join(report.overloaded_channels)}; "
                  f"{report.clipped_samples} samples clipped", file=sys.stderr)
    if len(reports) > 1:
        print(f"rendered {len(reports)} outputs in {elapsed:.2f} s")
    if measure:
        _loudness_summary(
            {str(r.output.name): (r.loudness, r.dialogue_loudness) for r in reports},
            specs or ([normalize] if normalize else []), args.report)
    return 0


def _loudness_summary(results, specs, json_path) -> None:
    """Print the loudness/compliance table of ``results`` {name: (result, dialogue)}; write
    the JSON report to ``json_path`` if given (atomically)."""
    from renderer.compliance import check, format_table, report_json

    checks = [check(name, result, spec, dialogue)
              for name, (result, dialogue) in results.items() if result is not None
              for spec in specs]
    plain = {name: result for name, (result, _) in results.items() if result is not None}
    speech = {name: dialogue for name, (_, dialogue) in results.items()}
    print(format_table(checks, plain, speech))
    if json_path:
        import json
        import tempfile

        from adm.bw64 import give_new_file_permissions

        target = Path(json_path)
        data = report_json(checks, plain)
        for name, (_, dialogue) in results.items():
            if dialogue is not None:
                data.setdefault("dialogue", {})[name] = dialogue.as_dict()
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.partial-", dir=target.parent or ".")
        give_new_file_permissions(tmp)
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=2)
        os.replace(tmp, target)
        print(f"wrote {target}")


def cmd_loudness(args) -> int:
    from renderer.compliance import get_spec
    from renderer.loudness import measure_file

    specs = [get_spec(name) for name in args.spec]
    results = {}
    for path in args.input:
        result, assumption = measure_file(path, layout=args.system)
        print(f"{path}: {assumption}")
        results[Path(path).name] = (result, None)
    _loudness_summary(results, specs, args.report)
    return 0


def cmd_plot(args) -> int:
    import matplotlib

    matplotlib.use("Agg")
    from renderer.plots import plot_file

    start = time.perf_counter()
    written = plot_file(args.input, Path(args.output_dir), layout=args.system,
                        animate=args.animate, programme_id=args.programme)
    for path in written:
        print(f"wrote {path}")
    print(f"{len(written)} files in {time.perf_counter() - start:.2f} s")
    return 0


def cmd_info(args) -> int:
    from renderer.info import describe_file

    print(describe_file(args.input, strict=args.strict))
    return 0


def cmd_layouts(args) -> int:
    from layouts import describe_layouts

    print(describe_layouts())
    print(f"{'binaural':<20} {2:>2} ch: left right (headphones; HRTF set: --hrtf, default "
          "MIT KEMAR)")
    return 0


def cmd_demo(args) -> int:
    from renderer.demo import run_demo

    run_demo(Path(args.output_dir), args.system, duration=args.duration)
    return 0


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dubstage", description="Object-based immersive audio renderer (ADM BWF, BS.2127).")
    parser.add_argument("-d", "--debug", action="store_true",
                        help="show a traceback when an error occurs")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_render_parser(sub)
    p = sub.add_parser("info", help="print the ADM structure of a file")
    p.add_argument("--strict", action="store_true", help="unknown ADM attributes are errors")
    p.add_argument("input")
    sub.add_parser("layouts", help="list the loudspeaker layouts and their channel order")
    p = sub.add_parser("loudness", help="measure loudness (BS.1770) and check delivery specs",
                       description="Measure files: integrated loudness, loudness range, "
                                   "maximum momentary and short-term loudness, true peak.")
    p.add_argument("-s", "--system", metavar="LAYOUT",
                   help="the files' layout, for the channel weights (default: guessed from "
                        "the channel count)")
    p.add_argument("--spec", metavar="SPEC", action="append", default=[],
                   help="delivery spec to check: r128, a85, streaming (repeatable)")
    p.add_argument("--report", metavar="FILE.json", help="write the figures as JSON")
    p.add_argument("input", nargs="+", help="audio file(s) (WAV/BW64/RF64, FLAC, ...)")
    p = sub.add_parser("plot", help="plot an ADM file: layout, trajectories, paths, gains",
                       description="Write PNG plots (and a GIF animation) of an ADM BWF file.")
    p.add_argument("-o", "--output-dir", required=True, help="folder for the images")
    p.add_argument("-s", "--system", metavar="LAYOUT",
                   help="layout to draw the scene over and to show the speaker gains of")
    p.add_argument("--animate", action="store_true", help="also write scene.gif")
    p.add_argument("--programme", metavar="ID", help="audioProgramme (default: first)")
    p.add_argument("input", help="ADM BWF file")
    p = sub.add_parser("demo", help="build the demo scene (7.1.2 bed + moving objects) and "
                                    "render it")
    p.add_argument("-o", "--output-dir", default="dubstage-demo",
                   help="folder for demo_scene.wav and the render (default ./dubstage-demo)")
    p.add_argument("-s", "--system", default="7.1.4", metavar="LAYOUT",
                   help="layout to render the demo to (default 7.1.4)")
    p.add_argument("--duration", type=float, default=20.0, help="seconds (default 20)")
    return parser


def _warning_printer(debug: bool):
    """A ``warnings.showwarning`` replacement: one line ``dubstage: warning: ...`` per warning
    on stderr (with ``--debug`` the category and source location are added)."""

    def show(message, category, filename, lineno, file=None, line=None) -> None:
        text = " ".join(str(message).split())
        if debug:
            text += f" ({category.__name__} at {filename}:{lineno})"
        print(f"dubstage: warning: {text}", file=sys.stderr)

    return show


_INPUT_ERROR_MODULES = ("renderer.hrtf", "renderer.loudness", "renderer.compliance")
"""Modules imported only by some commands whose ValueErrors report bad input or options."""


def _report_input_error(error: BaseException, debug: bool) -> int:
    if debug:
        raise error
    message = str(error) or type(error).__name__
    if isinstance(error, OSError) and error.filename is not None:
        message = f"{error.filename}: {error.strerror or message}"
    print(f"dubstage: error: {message.splitlines()[0] if message else message}",
          file=sys.stderr)
    return EXIT_BAD_INPUT


def _report_internal_error(error: BaseException, debug: bool) -> int:
    if debug:
        raise error
    print(f"dubstage: internal error: {type(error).__name__}: {error} "
          "(run with --debug for details)", file=sys.stderr)
    return EXIT_INTERNAL


def main(argv: Sequence[str] | None = None) -> int:
    parser = make_parser()
    args = parser.parse_args(argv)
    handlers = {"render": cmd_render, "info": cmd_info, "layouts": cmd_layouts,
                "demo": cmd_demo, "loudness": cmd_loudness, "plot": cmd_plot}
    if args.command == "render":  # a large master's structure is read while JAX imports
        from renderer.workers import read_ahead

        read_ahead(args.input, args.strict)
    from adm.bw64 import Bw64Error
    from adm.model import AdmError
    from layouts.model import LayoutError
    from renderer.render import RenderError

    expected = (Bw64Error, AdmError, LayoutError, RenderError, OSError)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("default")
            warnings.showwarning = _warning_printer(args.debug)
            return handlers[args.command](args)
    except expected as error:
        return _report_input_error(error, args.debug)
    except ValueError as error:
        if type(error).__module__ in _INPUT_ERROR_MODULES:
            return _report_input_error(error, args.debug)
        return _report_internal_error(error, args.debug)
    except KeyboardInterrupt:
        print("dubstage: interrupted; no output written", file=sys.stderr)
        return 130
    except Exception as error:  # noqa: BLE001 - last resort: one line, no traceback
        return _report_internal_error(error, args.debug)


def run() -> None:
    """The ``dubstage`` console script: :func:`main`, then a quick exit.

    Everything has been written, closed and flushed when :func:`main` returns, so the
    interpreter's teardown (freeing a large parsed document object by object, stopping the
    JAX runtime) is skipped: it can take a second after a long file.
    """
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    run()
