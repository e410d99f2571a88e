"""File-to-file rendering: the Python API under ``dubstage render``.

Data flows one way: BW64 bytes -> ADM model -> render items -> gain plan -> streamed audio.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import jax
import numpy as np

from adm.bw64 import Bw64Reader, Bw64Writer
from adm.importance import filter_by_importance
from adm.items import select_items
from adm.model import DEFAULT_SCREEN, AdmDocument, AdmError, Screen
from adm.timing_fixes import check_block_timing
from adm.xml import apply_chna, parse_adm_xml
from layouts import get_layout
from layouts.model import Layout
from layouts.speakers_file import apply_real_layout, load_speakers_file
from renderer.engine import Mixer
from renderer.jax_setup import configure_jax
from renderer.matrix import TrackDelayer
from renderer.plan import build_gain_plan


class RenderError(ValueError):
    """A render that cannot go ahead (bad option, overload with --fail-on-overload, ...)."""


@dataclass
class RenderReport:
    """What a render did: output path and shape, peaks per channel, clipped samples, notes."""

    output: Path
    layout: Layout
    frames: int
    sample_rate: int
    peak: np.ndarray = field(default_factory=lambda: np.zeros(0))
    clipped_samples: int = 0
    warnings: list[str] = field(default_factory=list)
    channel_names: tuple[str, ...] = ()  # output channel names when not the layout's (-l)

    @property
    def overloaded_channels(self) -> list[str]:
        """Names of output channels whose peak exceeds full scale."""
        names = self.channel_names or self.layout.channel_names
        return [name for name, p in zip(names, self.peak) if p > 1.0]


def read_adm(reader: Bw64Reader, strict: bool = False) -> AdmDocument:
    """The ADM of an open file: its axml parsed and merged with the chna chunk."""
    source = str(reader.path)
    if reader.chna is None:
        raise AdmError(f"{source}: no chna chunk: this is not an ADM BWF file")
    if reader.axml is None:
        doc = AdmDocument(source=source)
    else:
        doc = parse_adm_xml(reader.axml, source=source, strict=strict)
    return apply_chna(doc, reader.chna, reader.channels, source=source)


def _check_output_path(output_path: Path) -> None:
    """Refuse an output whose folder is missing, or that is a folder, before any work."""
    folder = output_path.parent
    if not folder.is_dir():
        problem = "is not a folder" if folder.exists() else "does not exist"
        raise RenderError(f"{output_path}: output folder {folder} {problem}")
    if output_path.is_dir():
        raise RenderError(f"{output_path}: output path is a folder")


def render_file(
    input_path: str | os.PathLike,
    output_path: str | os.PathLike,
    layout: str | Layout,
    *,
    output_gain_db: float = 0.0,
    programme_id: str | None = None,
    complementary_object_ids: Sequence[str] = (),
    fail_on_overload: bool = False,
    strict: bool = False,
    float_output: bool = False,
    fix_block_timing: bool = False,
    progress: Callable[[int, int], None] | None = None,
    speakers_file: str | os.PathLike | None = None,
    importance_threshold: int | None = None,
) -> RenderReport:
    """Render an ADM BWF file to loudspeaker feeds for ``layout``.

    ``layout``: a layout name ("7.1.4", "4+7+0", ...) or a :class:`Layout`. Output: BW64 with
    the layout's channels in its order, the input's sample rate and bit depth (32-bit float
    with ``float_output``). ``fix_block_timing`` repairs block durations that do not meet the
    next block, interpolation lengths longer than their block and blocks that end after their
    audioObject, as the reference renderer's ``--enable-block-duration-fix`` does; without it
    such problems are reported as warnings (and overlaps are errors). The output is written
    to a temporary file and renamed when complete; on any error nothing is left behind.
    ``progress(done_frames, total_frames)`` is called after each chunk.

    ``speakers_file``: a real room (``-l speakers.yaml``, see :mod:`layouts.speakers_file`):
    the layout is rendered with the room's loudspeaker positions and each layout channel is
    routed, with its gain, to the file channel the room gives it (the output then has the
    room's channel count; out-of-range positions and routing problems become warnings).
    ``importance_threshold``: drop audioObjects and audioPackFormats less important than it
    and mute Objects blocks less important than it (:func:`adm.importance.filter_by_importance`).
    """
    configure_jax()
    input_path, output_path = Path(input_path), Path(output_path)
    target = get_layout(layout) if isinstance(layout, str) else layout
    gain = 10.0 ** (output_gain_db / 20.0)
    if not math.isfinite(gain):
        raise RenderError(f"--output-gain-db {output_gain_db} is not a finite gain")
    _check_output_path(output_path)
    upmix, room_notes = None, []
    screen: Screen | None = DEFAULT_SCREEN  # the reproduction screen (BS.2051 layouts: default)
    if speakers_file is not None:  # real room: real positions, routing and gains (BS.2127)
        room = load_speakers_file(speakers_file)
        screen = room.screen
        target, upmix, room_notes = apply_real_layout(target, room)
        upmix = upmix.T.astype(np.float32)  # (n_layout, n_file): out = rendered @ upmix
    n_file = target.n_channels if upmix is None else upmix.shape[1]

    with Bw64Reader(input_path) as reader:
        doc = read_adm(reader, strict=strict)
        doc, timing_notes = check_block_timing(doc, fix=fix_block_timing)
        items = select_items(doc, programme_id=programme_id,
                             complementary_object_ids=complementary_object_ids,
                             source=str(input_path))
        if importance_threshold is not None:
            items = filter_by_importance(items, importance_threshold)
        plan = build_gain_plan(items, target, reader.sample_rate, source=str(input_path),
                               screen=screen, n_tracks=reader.channels)
        width = 2 * plan.n_outputs if plan.diffuse else plan.n_outputs
        # Matrix coefficient delays: delayed copies of tracks follow the file's tracks
        delayer = TrackDelayer(list(plan.delayed_tracks), reader.channels)
        mixer = Mixer(plan.segments, width, reader.channels + len(plan.delayed_tracks))
        # BS.2127 diffuse path: decorrelate the diffuse signals and add them to the direct
        # ones, aligned so that the output starts at time 0 and has the input's length.
        diffuse = None
        if plan.diffuse:
            from renderer.decorrelation import DiffuseMixer, design_decorrelators  # scipy.fft

            diffuse = DiffuseMixer(design_decorrelators(target))
        report = RenderReport(output=output_path, layout=target, frames=reader.frames,
                              sample_rate=reader.sample_rate,
                              peak=np.zeros(n_file),
                              warnings=[f"{input_path}: {note}" for note in timing_notes]
                              + list(plan.warnings) + room_notes)
        if upmix is not None:
            report.channel_names = tuple(f"channel {i}" for i in range(n_file))
        if float_output:
            bit_depth, sample_format = 32, "float"
        else:
            bit_depth, sample_format = reader.bit_depth, reader.sample_format
        with Bw64Writer(output_path, reader.sample_rate, n_file, bit_depth=bit_depth,
                        sample_format=sample_format, bext=reader.bext,
                        forbid_paths=(input_path,)) as writer:
            done = 0
            pending = None  # (result being computed, frames): overlaps compute and reading

            def finish(result, frames: int) -> None:
                out = np.asarray(result)[:frames]
                if diffuse is not None:
                    n = plan.n_outputs
                    out = diffuse.process(out[:, :n], out[:, n:]).astype(np.float32)
                emit(out)

            def emit(out: np.ndarray) -> None:
                nonlocal done
                frames = len(out)
                if frames == 0:
                    return
                if gain != 1.0:
                    out = out * np.float32(gain)
                if upmix is not None:
                    out = out @ upmix
                np.maximum(report.peak, np.abs(out).max(axis=0), out=report.peak)
                if fail_on_overload and np.any(report.peak > 1.0):
                    raise RenderError(
                        f"{output_path}: output overloaded on "
                        f"{', '.join(report.overloaded_channels)} (--fail-on-overload)")
                writer.write(out)
                done += frames
                if progress is not None:
                    progress(done, reader.frames)

            # On an accelerator the file's sample bytes go to the device and are decoded in the
            # mixing kernel (fewer bytes to copy, no host decoding); on the CPU the reader's
            # threaded numpy decoding is faster (benchmarks/README.md).
            encoding = reader.raw_encoding
            if encoding is None or jax.default_backend() == "cpu" or plan.delayed_tracks:
                blocks, encoding = reader.iter_blocks(mixer.frames_per_call), "float"
            else:
                blocks = reader.iter_raw_blocks(mixer.frames_per_call)
            for block in blocks:
                if encoding == "float":
                    block = delayer.process(block)
                result = mixer.dispatch(block, encoding)
                if pending is not None:
                    finish(*pending)
                pending = (result, len(block))
            if pending is not None:
                finish(*pending)
            if diffuse is not None:
                emit(diffuse.finish().astype(np.float32))
        report.clipped_samples = writer.clipped_samples
    return report
