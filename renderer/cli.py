"""``dubstage`` command line: a thin layer over :mod:`renderer.render` and friends.

Errors in the input or the options print one line, ``dubstage: error: ...``, and exit with
status 2; no traceback (``--debug`` shows one), and no output file is left behind. Python
warnings raised while a command runs print one line each, ``dubstage: warning: ...``.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path

EXIT_BAD_INPUT = 2
EXIT_INTERNAL = 3
MAX_WARNINGS_SHOWN = 20


def _add_render_parser(sub) -> None:
    p = sub.add_parser("render", help="render an ADM BWF file to a loudspeaker layout",
                       description="Render an ADM BWF file to loudspeaker feeds (ITU-R BS.2127).")
    p.add_argument("-s", "--system", required=True, metavar="LAYOUT",
                   help="target layout: a BS.2051 name (4+7+0) or alias (7.1.4); "
                        "see `dubstage layouts`")
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
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("input", help="ADM BWF input file (BW64/RF64/WAV with chna and axml)")
    p.add_argument("output", help="output BW64 file")


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


def cmd_render(args) -> int:
    from renderer.render import render_file

    start = time.perf_counter()
    show_progress = not args.no_progress and sys.stderr.isatty()
    report = render_file(
        args.input, args.output, args.system,
        output_gain_db=args.output_gain_db, programme_id=args.programme,
        complementary_object_ids=args.comp_object, fail_on_overload=args.fail_on_overload,
        strict=args.strict, float_output=args.float_output,
        fix_block_timing=args.enable_block_duration_fix,
        progress=_progress_printer(show_progress),
        speakers_file=args.speakers_file, importance_threshold=args.importance,
    )
    shown = report.warnings[:MAX_WARNINGS_SHOWN]
    for message in shown:
        print(f"dubstage: warning: {message}", file=sys.stderr)
    if len(report.warnings) > len(shown):
        print(f"dubstage: warning: ... and {len(report.warnings) - len(shown)} more",
              file=sys.stderr)
    elapsed = time.perf_counter() - start
    seconds = report.frames / report.sample_rate
    print(f"wrote {report.output} ({report.layout.name}, {len(report.peak)} channels, "
          f"{seconds:.2f} s) in {elapsed:.2f} s")
    if report.overloaded_channels:
        peak_db = 20 * __import__("math").log10(float(report.peak.max()))
        print(f"dubstage: warning: output overloaded (peak {peak_db:+.2f} dBFS) on "
              f"{', '.join(report.overloaded_channels)}; {report.clipped_samples} samples clipped",
              file=sys.stderr)
    return 0


def cmd_info(args) -> int:
    from renderer.info import describe_file

    print(describe_file(args.input, strict=args.strict))
    return 0


def cmd_layouts(args) -> int:
    from layouts import describe_layouts

    print(describe_layouts())
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


def main(argv: Sequence[str] | None = None) -> int:
    parser = make_parser()
    args = parser.parse_args(argv)
    handlers = {"render": cmd_render, "info": cmd_info, "layouts": cmd_layouts,
                "demo": cmd_demo}
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
        if args.debug:
            raise
        message = str(error) or type(error).__name__
        if isinstance(error, OSError) and error.filename is not None:
            message = f"{error.filename}: {error.strerror or message}"
        print(f"dubstage: error: {message.splitlines()[0] if message else message}",
              file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("dubstage: interrupted; no output written", file=sys.stderr)
        return 130
    except Exception as error:  # noqa: BLE001 - last resort: one line, no traceback
        if args.debug:
            raise
        print(f"dubstage: internal error: {type(error).__name__}: {error} "
              "(run with --debug for details)", file=sys.stderr)
        return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
