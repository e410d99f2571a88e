"""File-to-file rendering: the Python API under ``dubstage render``.

Data flows one way: BW64 bytes -> ADM model -> render items -> gain plan -> streamed audio.
One read of the input feeds any number of outputs (loudspeaker layouts, binaural, stems of
chosen audioContents): their gain plans are mixed side by side by one :class:`Mixer`, and each
output's frames go through its own post-processing (diffuse decorrelation, head-related
filters), gain, peak and loudness meters and writer.
"""

from __future__ import annotations

import itertools
import math
import os
import re
import warnings
from collections import deque
from collections.abc import Callable, Collection, Iterable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import jax
import numpy as np

from adm.bw64 import Bw64Reader, Bw64Writer, aligned_empty
from adm.importance import filter_by_importance
from adm.items import ObjectRenderItem, select_items
from adm.model import DEFAULT_SCREEN, AdmDocument, AdmError, AudioChannelFormat, Screen
from adm.timing_fixes import check_block_timing, object_channel_formats
from adm.xml import gc_paused, read_adm  # noqa: F401  (read_adm: this module's API too)
from layouts import get_layout
from layouts.model import Layout, Speaker
from layouts.speakers_file import apply_real_layout, load_speakers_file
from renderer.engine import Mixer
from renderer.jax_setup import configure_jax
from renderer.matrix import TrackDelayer
from renderer.plan import OBJECT_GROUP_BLOCKS, GainPlan, build_gain_plan
from renderer.segment_store import MemoryRun, SegmentSource, SegmentSpool, SpooledRun
from renderer.timing import Segments
from renderer.workers import (
    SPLIT_MIN_AXML_BYTES,
    WorkerLost,
    fork_call,
    forking_allowed,
    take_read_ahead,
)

try:  # the output encoding in C, where the package was built with it
    from renderer import _mixkernel
except ImportError:  # pragma: no cover - a build without a C compiler
    _mixkernel = None

BINAURAL = "binaural"
"""Layout name of the two-channel headphone render (:mod:`renderer.binaural`)."""

BINAURAL_LAYOUT = Layout(
    name=BINAURAL,
    speakers=(Speaker("left ear", 30.0, 0.0), Speaker("right ear", -30.0, 0.0)),
    description="binaural (headphones): left and right ear",
)
"""Pseudo-layout naming the two ear signals of a binaural render (for reports and meters)."""


class RenderError(ValueError):
    """A render that cannot go ahead (bad option, overload with --fail-on-overload, ...)."""


@dataclass(frozen=True)
class OutputRequest:
    """One file to write from the input.

    ``layout``: a layout name ("7.1.4", "4+7+0", ...), ``"binaural"``, or a :class:`Layout`.
    ``content_ids``: render only these audioContents (IDs or names), a *stem*; None renders
    the whole programme. ``path`` None: measured only (loudness), nothing written.
    """

    path: Path | None
    layout: str | Layout
    content_ids: tuple[str, ...] | None = None
    name: str = ""


@dataclass
class RenderReport:
    """What a render did for one output: path and shape, peaks per channel, clipped samples,
    loudness (when measured), notes."""

    output: Path | None
    layout: Layout
    frames: int
    sample_rate: int
    peak: np.ndarray = field(default_factory=lambda: np.zeros(0))
    clipped_samples: int = 0
    warnings: list[str] = field(default_factory=list)
    channel_names: tuple[str, ...] = ()  # output channel names when not the layout's (-l)
    name: str = ""
    content_ids: tuple[str, ...] | None = None
    loudness: Any = None           # renderer.loudness.LoudnessResult when measured
    dialogue_loudness: Any = None  # the same for the dialogue content rendered alone

    @property
    def overloaded_channels(self) -> list[str]:
        """Names of output channels whose peak exceeds full scale."""
        names = self.channel_names or self.layout.channel_names
        return [name for name, p in zip(names, self.peak) if p > 1.0]


def stream_object_channels(reader: Bw64Reader, doc: AdmDocument, items, *,
                           strict: bool = False, fix_block_timing: bool = False,
                           importance_threshold: int | None = None,
                           channel_ids: Collection[str] | None = None,
                           read_already: dict[str, AudioChannelFormat] | None = None):
    """The Objects render items of a document read with ``defer_objects``, with their blocks,
    one audioChannelFormat at a time: yields ``(indices, filled items, timing notes)`` where
    ``indices`` are the positions in ``items`` of the items that play that channel. The
    blocks are read again from the file (:func:`adm.xml.iter_channel_formats`), checked (and
    with ``fix_block_timing`` repaired) as :func:`adm.timing_fixes.check_block_timing` does,
    and muted by importance; each channel's blocks can be dropped once its items are used.
    ``channel_ids``: read only these audioChannelFormats (default: every one played).
    ``read_already``: channels read ahead (:func:`renderer.workers.read_ahead`): those it
    holds are taken from it (first, in document order), the others read here."""
    from adm.xml import iter_channel_formats

    by_channel: dict[str, list[int]] = {}
    for index, item in enumerate(items):
        if isinstance(item, ObjectRenderItem):
            by_channel.setdefault(item.channel_format.id, []).append(index)
    if channel_ids is not None:
        by_channel = {cid: found for cid, found in by_channel.items() if cid in channel_ids}
    if not by_channel:
        return
    # the timing checks of a channel look at the audioObjects with a duration that play it
    timed: dict[str, list] = {}
    for obj in doc.objects:
        if obj.duration is not None:
            for played in object_channel_formats(doc, obj):
                timed.setdefault(played.id, []).append(obj)
    region = reader.axml_region()
    ahead = read_already or {}
    missing = {cid for cid in by_channel if cid not in ahead}
    channels: Iterable[AudioChannelFormat] = itertools.chain(
        [ahead[c.id] for c in doc.channel_formats if c.id in by_channel and c.id in ahead],
        iter_channel_formats(region, missing, source=str(reader.path), strict=strict)
        if missing else ())
    for channel in channels:
        indices = by_channel.pop(channel.id, None)
        if indices is None:
            continue  # read already (an ID in a second audioFormatExtended is not ours)
        one = replace(doc, objects=tuple(timed.get(channel.id, ())), channel_formats=tuple(
            channel if c.id == channel.id else c for c in doc.channel_formats))
        checked, notes = check_block_timing(one, fix=fix_block_timing,
                                            channel_ids=(channel.id,))
        channel = checked.get(channel.id)
        filled = [replace(items[i], channel_format=channel) for i in indices]
        if importance_threshold is not None:
            filled = list(filter_by_importance(filled, importance_threshold))
        yield indices, filled, notes
    if by_channel:  # never for a document that parsed: its channels are all read again
        raise AdmError(f"{reader.path}: audioChannelFormat {next(iter(by_channel))} could not "
                       "be read again from the file")


def _check_output_path(output_path: Path) -> None:
    """Refuse an output whose folder is missing, or that is a folder, before any work."""
    folder = output_path.parent
    if not folder.is_dir():
        problem = "is not a folder" if folder.exists() else "does not exist"
        raise RenderError(f"{output_path}: output folder {folder} {problem}")
    if output_path.is_dir():
        raise RenderError(f"{output_path}: output path is a folder")


def _check_output_paths(input_path: Path, outputs: Sequence[OutputRequest]) -> None:
    paths = [o.path for o in outputs if o.path is not None]
    for path in paths:
        _check_output_path(Path(path))
    if len({os.path.realpath(p) for p in paths}) != len(paths):
        raise RenderError(f"{input_path}: two outputs would be written to the same file")


def is_binaural(layout: str | Layout) -> bool:
    """True for the headphone output's layout name ``"binaural"``."""
    return isinstance(layout, str) and layout.strip().lower() == BINAURAL


def content_object_ids(doc: AdmDocument, content_ids: Sequence[str], source: str = ""
                       ) -> dict[str, tuple[str, ...]]:
    """audioContent ID -> its audioObject IDs, for contents named by ID or by name.

    Raises :class:`RenderError` naming the file for a content that is not in the document.
    """
    by_key = {}
    for content in doc.contents:
        by_key.setdefault(content.id, content)
        by_key.setdefault(content.name, content)
    found = {}
    for key in content_ids:
        content = by_key.get(key)
        if content is None:
            known = ", ".join(f"{c.id} ({c.name})" for c in doc.contents) or "none"
            raise RenderError(f"{source}: no audioContent {key!r} (contents: {known})")
        found[content.id] = content.object_ids
    return found


def programme_contents(doc: AdmDocument, programme_id: str | None = None):
    """The audioContents of the programme a render uses (the given one, else the only one,
    else the lowest ID, as item selection chooses); every content when there is no
    programme."""
    if not doc.programmes:
        return doc.contents
    if programme_id is not None:
        chosen = [p for p in doc.programmes if p.id == programme_id]
        if not chosen:
            raise RenderError(f"{doc.source}: no audioProgramme {programme_id!r}")
        programme = chosen[0]
    else:
        programme = min(doc.programmes, key=lambda p: p.id)
    by_id = {c.id: c for c in doc.contents}
    return tuple(by_id[i] for i in programme.content_ids if i in by_id)


def dialogue_content_ids(doc: AdmDocument) -> tuple[str, ...]:
    """IDs of the audioContents marked as dialogue (BS.2076 ``dialogue`` = 1)."""
    return tuple(c.id for c in doc.contents if c.dialogue == 1)


def _items_of_contents(items, object_ids: set[str]):
    """The render items whose outermost audioObject is one of ``object_ids``."""
    return tuple(i for i in items if i.context.object_ids and i.context.object_ids[0] in object_ids)


def stem_file_name(pattern_or_folder: Path, input_path: Path, layout_name: str,
                   stem_name: str | None) -> Path:
    """File name of one output of a multi-output render.

    ``pattern_or_folder``: a folder (files ``<input>_<layout>[_<stem>].wav`` are written in
    it) or a path whose name contains ``{layout}`` and/or ``{stem}`` placeholders.
    """
    safe_layout = re.sub(r"[^A-Za-z0-9+.-]+", "_", layout_name)
    safe_stem = re.sub(r"[^A-Za-z0-9+.-]+", "_", stem_name) if stem_name else ""
    text = str(pattern_or_folder)
    if "{layout}" in text or "{stem}" in text:
        name = text.replace("{layout}", safe_layout).replace("{stem}", safe_stem or "mix")
        return Path(name)
    base = f"{input_path.stem}_{safe_layout}" + (f"_{safe_stem}" if safe_stem else "")
    return pattern_or_folder / f"{base}.wav"


class _SpeakerStage:
    """Loudspeaker output: direct (+ decorrelated diffuse) signals of one plan's columns."""

    def __init__(self, plan: GainPlan, layout: Layout) -> None:
        self.n = plan.n_outputs
        self.diffuse = None
        if plan.diffuse:
            from renderer.decorrelation import DiffuseMixer, design_decorrelators  # scipy.fft

            self.diffuse = DiffuseMixer(design_decorrelators(layout))

    def process(self, mixed: np.ndarray, tracks: np.ndarray) -> np.ndarray:
        if self.diffuse is None:
            return mixed
        return self.diffuse.process(mixed[:, :self.n], mixed[:, self.n:]).astype(np.float32)

    def finish(self) -> np.ndarray:
        if self.diffuse is None:
            return np.zeros((0, self.n), np.float32)
        return self.diffuse.finish().astype(np.float32)


@dataclass
class _Output:
    """One output's configuration and running state during a render."""

    request: OutputRequest
    layout: Layout
    plan: GainPlan
    stage: Any  # _SpeakerStage or renderer.binaural.BinauralStage, made once planned
    report: RenderReport
    upmix: np.ndarray | None = None
    writer: Bw64Writer | None = None
    meter: Any = None
    object_items: set = field(default_factory=set)  # positions of its streamed Objects items
    column: int | None = 0  # first column of this output's plan in the shared mix (None:
    #                         its plan is silent and is not mixed)
    measure_of: int | None = None  # dialogue measurement: index of the output it belongs to
    binaural: Any = None  # a binaural output's renderer.binaural.BinauralBuilder
    point_runs: list = field(default_factory=list)  # its point sources' runs of segments

    @property
    def width(self) -> int:
        return self.plan.segments.gains_to.shape[1]


def _shape_only(plan: GainPlan) -> GainPlan:
    """``plan`` without its segments (held by the mixer's runs), with as many gain columns as
    its outputs take: twice the channels with a diffuse path."""
    n = plan.n_outputs
    return replace(plan, segments=Segments.concatenate([], 2 * n if plan.diffuse else n))


_TIMING_FIELDS = ("track", "first", "last", "ramp_start", "ramp_step")


def _side_by_side(pieces: Sequence[tuple[int, Segments]]
                  ) -> list[tuple[Segments, list[tuple[int, int, int]]]]:
    """Runs of the segments of several outputs: ``pieces`` are (output index, its segments).

    Outputs whose segments have the same timing (the same items rendered to different layouts)
    share one run, their gains side by side, so the mixer's work per segment is done once.
    Returns (segments, [(output index, first column in the run, columns)]) per run.
    """
    groups: list[tuple[Segments, list[tuple[int, Segments]]]] = []
    for k, seg in pieces:
        if len(seg.track) == 0:
            continue
        for first, members in groups:
            if all(np.array_equal(getattr(first, f), getattr(seg, f)) for f in _TIMING_FIELDS):
                members.append((k, seg))
                break
        else:
            groups.append((seg, [(k, seg)]))
    runs = []
    for first, members in groups:
        if len(members) == 1:
            runs.append((first, [(members[0][0], 0, first.gains_to.shape[1])]))
            continue
        places, column = [], 0
        for k, seg in members:
            places.append((k, column, seg.gains_to.shape[1]))
            column += seg.gains_to.shape[1]
        gains_from = np.concatenate([seg.gains_from for _, seg in members], axis=1)
        gains_to = np.concatenate([seg.gains_to for _, seg in members], axis=1)
        runs.append((replace(first, gains_from=gains_from, gains_to=gains_to), places))
    return runs


def channel_peaks(frames: np.ndarray, rows: int = 128) -> np.ndarray:
    """The largest absolute value of each channel of ``frames`` (N, C): (C,).

    numpy reduces the C columns of an (N, C) array along its first axis row by row, with an
    inner loop of C values (slow for a dozen channels); the frames are reduced instead as
    (N / rows, rows * C) rows, whose columns are ``rows`` copies of the channels."""
    n_channels = frames.shape[1]
    if not len(frames):
        return np.zeros(n_channels, frames.dtype)
    whole = len(frames) - len(frames) % rows
    wide = frames[:whole].reshape(-1, rows * n_channels)
    parts = [frames[whole:]] if whole < len(frames) else []
    if len(wide):
        parts += [wide.max(axis=0).reshape(rows, n_channels),
                  wide.min(axis=0).reshape(rows, n_channels)]
    stacked = np.concatenate(parts)
    return np.maximum(stacked.max(axis=0), -stacked.min(axis=0))


def _encoded(frames: np.ndarray, writer: Bw64Writer):
    """(peaks (C,), the file's bytes, samples clipped) of ``frames`` (n, C) float32 for a 16-
    or 24-bit ``writer``, encoded as :meth:`Bw64Writer.write` encodes them, by the native
    kernel in one pass (``_mixkernel.encode``); None where it cannot (no kernel, another
    format, a value that is not finite: :meth:`Bw64Writer.write` then reports it)."""
    bits = writer.pcm_bits
    if _mixkernel is None or bits not in (16, 24) or frames.dtype != np.float32:
        return None
    frames = np.ascontiguousarray(frames)
    peaks = np.zeros(frames.shape[1], np.float32)
    data = np.empty(frames.size * (bits // 8), np.uint8)
    clipped = _mixkernel.encode(frames, bits, data, peaks)
    return None if clipped < 0 else (peaks, data, clipped)


SPLIT_PLANNING_MIN_BYTES = SPLIT_MIN_AXML_BYTES
"""axml size from which the Objects channels are read and planned by two processes."""


MIX_AHEAD = 2
"""Batches the mix may be ahead of the outputs being written."""


def _file_batches(reader: Bw64Reader, frames: int):
    """(frames n, data, first_byte, release) of each batch of ``frames`` frames of the file:
    its bytes as :meth:`Bw64Reader.sample_bytes` gives them."""
    for start in range(0, reader.frames, frames):
        n = min(frames, reader.frames - start)
        yield (n, *reader.sample_bytes(start, n))


def _mixed_from_the_file(reader: Bw64Reader, mixer: Mixer):
    """(result being mixed, a placeholder (frames, 0) for its tracks) of each batch of the
    file, mixed by ``mixer``'s native kernel from the file's bytes."""
    for n, data, first_byte, release in _file_batches(reader, mixer.frames_per_call):
        yield (mixer.dispatch_bytes(data, first_byte, n, reader.raw_encoding, release),
               np.empty((n, 0), np.float32))


class _WritesInOrder:
    """The outputs' encoded bytes appended to their files by one thread, in the order given,
    while the render goes on (the copy into the page cache is a tenth of a 7.1.4 render's
    time); at most :attr:`AHEAD` writes wait. A write's error is raised by the next
    :meth:`submit` or :meth:`wait`; leaving the context waits for every write."""

    AHEAD = 4

    def __init__(self) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self._pool = ThreadPoolExecutor(1, thread_name_prefix="write")
        self._pending: deque = deque()

    def submit(self, write: Callable[..., None], *args) -> None:
        while self._pending and (self._pending[0].done() or len(self._pending) >= self.AHEAD):
            self._pending.popleft().result()
        self._pending.append(self._pool.submit(write, *args))

    def wait(self) -> None:
        while self._pending:
            self._pending.popleft().result()

    def __enter__(self) -> _WritesInOrder:
        return self

    def __exit__(self, *exc) -> None:
        try:
            for future in self._pending:
                future.exception()  # waited for; the error that stopped the render wins
        finally:
            self._pool.shutdown()


def _decoded_from_the_file(reader: Bw64Reader, mixer: Mixer, by_tracks: bool = False):
    """Each batch of the file's frames as float32 (frames, channels), decoded by ``mixer``'s
    native kernel from the file's bytes; the next batch is decoded while the caller uses
    one. ``by_tracks``: each channel's frames contiguous (the transpose of a C-order
    (channels, frames) array), as the headphone stage takes its source rows; its rows are
    padded so that they do not start a whole number of pages apart (128 rows that do share
    the cache's sets)."""
    pending: deque = deque()  # (tracks, parts being decoded, release)

    def finished():
        tracks, parts, release = pending.popleft()
        try:
            for part in parts:
                part.result()
        finally:
            release()
        return tracks

    try:
        for n, data, first_byte, release in _file_batches(reader, mixer.frames_per_call):
            if by_tracks:
                row = -(-n // 16) * 16 + 16  # floats
                tracks = aligned_empty((reader.channels, row), np.float32)[:, :n].T
            else:
                tracks = aligned_empty((n, reader.channels), np.float32)
            try:
                parts = mixer.start_decoding(data, first_byte, n, reader.raw_encoding, tracks)
            except BaseException:
                release()
                raise
            pending.append((tracks, parts, release))
            if len(pending) > 1:
                yield finished()
        while pending:
            yield finished()
    finally:
        while pending:  # stopped early: the parts still running are waited for
            try:
                finished()
            except Exception:  # noqa: BLE001 - the error that stopped the caller is reported
                pass


def _split_planning(reader: Bw64Reader) -> bool:
    """Whether to share the reading and planning of the Objects channels with a forked
    process: a large axml, another core, JAX not started yet in this process (its threads do
    not survive a fork), and not turned off with the environment variable
    ``DUBSTAGE_WORKERS=1``."""
    region = reader.axml_region()
    if region is None or region.size < SPLIT_PLANNING_MIN_BYTES:
        return False
    if not forking_allowed():
        return False
    try:
        from jax._src import xla_bridge

        return not xla_bridge._backends
    except (ImportError, AttributeError):  # cannot tell: do not fork
        return False


def render_outputs(
    input_path: str | os.PathLike,
    outputs: Sequence[OutputRequest],
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
    hrtf: Any = None,
    head_orientation: Any = None,
    measure_loudness: bool = False,
    measure_dialogue: bool | None = None,
    stems_of: Callable[[OutputRequest, str, str], Path] | None = None,
) -> list[RenderReport]:
    """Render an ADM BWF file to several outputs in one read of the input.

    Each :class:`OutputRequest` names a file, a layout (or ``"binaural"``) and optionally
    the audioContents to render (a stem). All outputs share the input reading and decoding and
    one mixing pass. Returns one :class:`RenderReport` per request, in order.

    ``speakers_file`` (a real room, ``-l``) applies to the loudspeaker outputs; ``hrtf`` (an
    :class:`renderer.hrtf.HrtfSet` or a SOFA path; default the packaged set) and
    ``head_orientation`` (:class:`renderer.binaural.HeadOrientation`) to binaural ones.
    ``measure_loudness``: meter every output (ITU-R BS.1770: integrated, range, maxima, true
    peak); ``measure_dialogue`` (default: with loudness) also renders the audioContents marked
    as dialogue alone to each output's layout and measures them (no file is written for it).
    ``stems_of(request, content_id, content_name) -> path``: also render, for every request
    of the whole programme, each audioContent of the programme on its own (a stem) to the
    path it returns (reports follow the requests' ones, request by request, in content order).
    See :func:`render_file` for the other options. Outputs are written to temporary files and
    renamed when all are complete; on any error nothing is left behind.
    """
    configure_jax()
    input_path = Path(input_path)
    if not outputs:
        raise RenderError(f"{input_path}: no outputs requested")
    gain = 10.0 ** (output_gain_db / 20.0)
    if not math.isfinite(gain):
        raise RenderError(f"--output-gain-db {output_gain_db} is not a finite gain")
    _check_output_paths(input_path, outputs)
    if measure_dialogue is None:
        measure_dialogue = measure_loudness
    room = load_speakers_file(speakers_file) if speakers_file is not None else None
    screen: Screen | None = DEFAULT_SCREEN if room is None else room.screen

    ahead = take_read_ahead(input_path, strict)  # the structure read by the command line
    with Bw64Reader(input_path) as reader, SegmentSpool() as spool, ExitStack() as spools:
        if ahead is not None:
            spools.callback(ahead.cancel)  # a child not waited for is stopped
        planning = spools.enter_context(ExitStack())  # closed when the audio pass starts
        planning.enter_context(gc_paused())  # metadata objects die by their reference counts
        source = str(input_path)
        # The Objects blocks are read one channel at a time, straight into the outputs' plans
        # and binaural point sources (memory: the plans, not the document).
        for attempt in (True, False):
            doc, read_already = None, None
            if attempt and ahead is not None:
                try:
                    doc, read_already = ahead.result()
                except WorkerLost:  # the reading ahead was lost: read here
                    pass
            if doc is None:
                doc = read_adm(reader, strict=strict, defer_objects=attempt)
            doc, timing_notes = check_block_timing(doc, fix=fix_block_timing)
            all_items = select_items(doc, programme_id=programme_id,
                                     complementary_object_ids=complementary_object_ids,
                                     source=source)
            if importance_threshold is not None:
                all_items = filter_by_importance(all_items, importance_threshold)
            streamed = attempt and not any(  # Matrix-fed Objects: delays numbered per plan
                isinstance(i, ObjectRenderItem) and i.track_mix is not None for i in all_items)
            if streamed or not attempt:
                break
        position = {id(item): k for k, item in enumerate(all_items)}
        dialogue_ids = dialogue_content_ids(doc) if measure_dialogue else ()
        dialogue_objects = set()
        for ids in content_object_ids(doc, dialogue_ids, source).values():
            dialogue_objects.update(ids)
        common_notes = [f"{input_path}: {note}" for note in timing_notes]
        sr, n_file_tracks = reader.sample_rate, reader.channels

        seen_warnings: set[str] = set()

        def fresh_warnings(notes) -> list[str]:
            """The notes not reported yet (each warning goes to the first output it concerns)."""
            fresh = [n for n in dict.fromkeys(notes) if n not in seen_warnings]
            seen_warnings.update(fresh)
            return fresh

        def configure(request: OutputRequest, items, measure_of: int | None,
                      others: bool = True) -> _Output:
            """An output, with the plan of its items other than streamed Objects (of none
            but those with ``others`` false)."""
            objects: set[int] = set()  # positions of the Objects items planned channel by channel
            if streamed:  # their Objects items are routed and planned channel by channel below
                objects = {position[id(i)] for i in items if isinstance(i, ObjectRenderItem)}
                items = [i for i in items if not isinstance(i, ObjectRenderItem)] if others \
                    else []
            binaural, point_runs = None, []
            if is_binaural(request.layout):
                from renderer.binaural import BinauralBuilder, HeadOrientation

                binaural = BinauralBuilder(
                    sr, n_file_tracks, hrtf=hrtf,
                    orientation=head_orientation or HeadOrientation(), source=source)
                points, virtual = binaural.add(items)
                point_runs.append(MemoryRun(points))
                plan = build_gain_plan(virtual, binaural.layout, sr, source=source,
                                       n_tracks=n_file_tracks)
                layout, upmix = BINAURAL_LAYOUT, None
                notes = list(binaural.notes) + list(plan.warnings)
            else:
                layout = (get_layout(request.layout) if isinstance(request.layout, str)
                          else request.layout)
                upmix, notes = None, []
                if room is not None:
                    layout, upmix, notes = apply_real_layout(layout, room)
                    upmix = upmix.T.astype(np.float32)  # (n_layout, n_file)
                plan = build_gain_plan(items, layout, sr, source=source, screen=screen,
                                       n_tracks=n_file_tracks)
                notes += list(plan.warnings)
            n_out = layout.n_channels if upmix is None else upmix.shape[1]
            report = RenderReport(
                output=request.path, layout=layout, frames=reader.frames, sample_rate=sr,
                peak=np.zeros(n_out), warnings=fresh_warnings(notes), name=request.name,
                content_ids=request.content_ids)
            if upmix is not None:
                report.channel_names = tuple(f"channel {i}" for i in range(n_out))
            return _Output(request, layout, plan, None, report, upmix=upmix,
                           object_items=objects, measure_of=measure_of, binaural=binaural,
                           point_runs=point_runs)

        if stems_of is not None:
            contents = programme_contents(doc, programme_id)
            outputs = list(outputs) + [
                OutputRequest(stems_of(r, c.id, c.name), r.layout, (c.id,),
                              f"{r.name or r.layout} {c.name}".strip())
                for r in outputs if r.content_ids is None and r.path is not None
                for c in contents]
            _check_output_paths(input_path, outputs)

        def configure_outputs(others: bool = True) -> list[_Output]:
            """Every output (and dialogue measurement) configured, Objects items aside when
            streamed (they are planned by :func:`plan_object_channels`); with ``others``
            false, without planning the other items either (for the forked half)."""
            built: list[_Output] = []
            for request in outputs:
                items = all_items
                if request.content_ids is not None:
                    wanted = content_object_ids(doc, request.content_ids, source)
                    items = _items_of_contents(all_items,
                                               {o for ids in wanted.values() for o in ids})
                built.append(configure(request, items, None, others))
            if dialogue_objects:
                dialogue_items = _items_of_contents(all_items, dialogue_objects)
                for index, request in enumerate(outputs):
                    if request.content_ids is None:
                        dialogue = replace(request, path=None, content_ids=dialogue_ids,
                                           name=f"{request.name} dialogue")
                        built.append(configure(dialogue, dialogue_items, index, others))
            return built

        def plan_object_channels(built: list[_Output], channel_ids: set[str] | None,
                                 spool: SegmentSpool, read: dict | None = None,
                                 ) -> tuple[list, list[str]]:
            """Read the Objects channels ``channel_ids`` (None: all) and plan them into the
            outputs ``built`` in batches spooled to ``spool``: returns the runs (with their
            placements in output columns) and the blocks' timing notes."""
            runs: list[tuple[Any, list[tuple[int, int, int]]]] = []
            timing: list[str] = []
            waiting: dict[int, list] = {k: [] for k in range(len(built))}
            n_waiting = 0

            def plan_waiting() -> None:
                """Plan the channels read so far, in one batch per output, and spool them."""
                nonlocal n_waiting
                pieces = []
                for k, out in enumerate(built):
                    if not waiting[k]:
                        continue
                    batch, waiting[k] = waiting[k], []
                    layout, options = out.layout, {"screen": screen}
                    if out.binaural is not None:  # point sources spooled, the rest planned
                        points, batch = out.binaural.add(batch)
                        if len(points.first):
                            out.point_runs.append(spool.add(points))
                        layout, options = out.binaural.layout, {}  # default screen
                    if batch:
                        part = build_gain_plan(batch, layout, sr, source=source,
                                               n_tracks=n_file_tracks, **options)
                        out.plan = replace(
                            out.plan, diffuse=out.plan.diffuse or part.diffuse,
                            warnings=tuple(dict.fromkeys(out.plan.warnings + part.warnings)))
                        pieces.append((k, part.segments))
                for seg, places in _side_by_side(pieces):
                    runs.append((spool.add(seg), places))
                n_waiting = 0

            for indices, filled, notes in stream_object_channels(
                    reader, doc, all_items, strict=strict, fix_block_timing=fix_block_timing,
                    importance_threshold=importance_threshold, channel_ids=channel_ids,
                    read_already=read):
                timing += [f"{input_path}: {note}" for note in notes]
                for k, out in enumerate(built):
                    waiting[k] += [item for i, item in zip(indices, filled)
                                   if i in out.object_items]
                n_waiting += len(filled[0].channel_format.blocks) if filled else 0
                if n_waiting >= OBJECT_GROUP_BLOCKS:
                    plan_waiting()
            plan_waiting()
            return runs, timing

        # A large master's Objects channels are read and planned half here, half by a forked
        # copy of this process on the other core (see renderer.workers); its runs are in its
        # own spool, its binaural sources numbered after ours
        worker, own_channels, their_spool = None, None, None
        played = {i.channel_format.id for i in all_items if isinstance(i, ObjectRenderItem)}
        if streamed and len(played) > 1 and _split_planning(reader):
            order = [c.id for c in doc.channel_formats if c.id in played]
            own_channels = set(order[0::2])
            their_channels = set(order) - own_channels
            ahead_share = {cid for cid in order if cid in (read_already or ())}
            if 3 * len(ahead_share) >= len(order) and len(ahead_share) < len(order):
                # the channels read ahead are planned there (no XML to read), and a third
                # of the rest, whose XML it reads while this process configures the outputs
                # (the planning of the beds starts JAX here too); the rest here
                rest = [cid for cid in order if cid not in ahead_share]
                their_channels = ahead_share | set(rest[2::3])
                own_channels = set(order) - their_channels
            their_spool = spools.enter_context(SegmentSpool())

            def their_half():
                with warnings.catch_warnings():  # the configuration's are issued here already
                    warnings.simplefilter("ignore")
                    theirs = configure_outputs(others=False)  # planned here already
                configured = [len(o.binaural.point_tracks) if o.binaural else 0 for o in theirs]
                runs, timing = plan_object_channels(theirs, their_channels, their_spool,
                                                    read_already)
                outputs_done = []
                for out, first in zip(theirs, configured, strict=True):
                    sources = None  # a binaural output's per-track sources found here
                    if out.binaural is not None:
                        sources = (first, out.binaural.point_tracks[first:],
                                   out.binaural.notes, out.binaural.uses_virtual,
                                   [(r.offset, r.count) for r in out.point_runs
                                    if isinstance(r, SpooledRun)])
                    outputs_done.append((out.plan.diffuse, out.plan.warnings, sources))
                return ([(run.offset, run.count, run.width, places) for run, places in runs],
                        timing, outputs_done)

            worker = fork_call(their_half)
            spools.callback(worker.cancel)
        built = configure_outputs()
        if worker is not None:  # the HRTF sets prepared beside this half's planning
            for out in built:
                if out.binaural is not None:
                    out.binaural.prepare_in_background()
        # Runs of segments for the mixer: the plans made now in memory; with streamed Objects
        # metadata, each batch of channels' plans (and binaural point sources' gain functions)
        # spooled to a temporary file, read back as the mix (the binaural stage) reaches them
        # (memory does not grow with the number of blocks).
        runs: list[tuple[Any, list[tuple[int, int, int]]]] = [
            (MemoryRun(seg), places) for seg, places in _side_by_side(
                [(k, out.plan.segments) for k, out in enumerate(built)])]
        for out in built:  # the runs hold the segments now: keep only the plans' shapes
            out.plan = _shape_only(out.plan)
        if streamed:
            own_runs, timing = plan_object_channels(built, own_channels, spool)
            runs += own_runs
            common_notes += timing
            if worker is not None:
                for out in built:  # a bad HRTF set is reported without waiting for the child
                    if out.binaural is not None:
                        out.binaural.prepare()
                try:
                    described, timing, plans = worker.result()
                except WorkerLost:  # the other half is planned here
                    more_runs, timing = plan_object_channels(built, their_channels, spool)
                    runs += more_runs
                    described, plans = [], [(False, (), None)] * len(built)
                runs += [(SpooledRun(their_spool, offset, count, width), places)
                         for offset, count, width, places in described]
                common_notes += timing
                for out, (diffuse, notes, sources) in zip(built, plans, strict=True):
                    out.plan = replace(out.plan, diffuse=out.plan.diffuse or diffuse,
                                       warnings=tuple(dict.fromkeys(out.plan.warnings + notes)))
                    if sources is not None:  # their sources numbered after ours
                        first, tracks, notes, virtual, spooled = sources
                        builder = out.binaural
                        shift = len(builder.point_tracks) - first
                        builder.point_tracks += tracks
                        builder.notes[:] = list(dict.fromkeys(builder.notes + notes))
                        builder.uses_virtual = builder.uses_virtual or virtual
                        out.point_runs += [SpooledRun(their_spool, offset, count, 4,
                                                      track_offset=shift)
                                           for offset, count in spooled]
        for out in built:  # every output's plan is complete: its processing stage
            out.plan = _shape_only(out.plan)  # the diffuse path may have come with a batch
            if out.binaural is not None:
                points = SegmentSource([(run, [(0, 0, 4)]) for run in out.point_runs], 4)
                out.stage = out.binaural.setup(out.plan, points).stage()
                out.point_runs = []
            else:
                out.stage = _SpeakerStage(out.plan, out.layout)
            out.report.warnings.extend(fresh_warnings(out.plan.warnings))
        if built:
            built[0].report.warnings[:0] = common_notes
        doc = all_items = read_already = None  # the runs hold what the audio pass needs

        # One mixer over every output's columns; Matrix delays are the same for all plans
        if len({p.plan.delayed_tracks for p in built if p.plan.delayed_tracks}) > 1:
            raise RenderError(f"{input_path}: Matrix delays differ between outputs; render "
                              "them separately")
        delayed_tracks = next((p.plan.delayed_tracks for p in built if p.plan.delayed_tracks), ())
        mixed_outputs = {k for _, places in runs for k, _, _ in places}
        total = 0
        for k, out in enumerate(built):
            out.column = total if k in mixed_outputs else None  # None: silent, not mixed
            total += out.width if k in mixed_outputs else 0
        planning.close()
        source_of_segments = SegmentSource(
            [(run, [(run_column, built[k].column, count) for k, run_column, count in places])
             for run, places in runs], total)
        delayer = TrackDelayer(list(delayed_tracks), n_file_tracks)
        mixer = Mixer(source_of_segments, total, n_file_tracks + len(delayed_tracks))
        spools.callback(mixer.close)

        if measure_loudness or any(o.measure_of is not None for o in built):
            from renderer.loudness import LoudnessMeter, channel_weights

            for out in built:
                weights = channel_weights(out.layout)
                if out.upmix is not None:  # a room's channels: the weight of what feeds each
                    feeds = np.abs(out.upmix)  # (n_layout, n_file)
                    weights = np.where(feeds.max(axis=0) > 0, weights[feeds.argmax(axis=0)], 0.0)
                out.meter = LoudnessMeter(sr, weights)

        if float_output:
            bit_depth, sample_format = 32, "float"
        else:
            bit_depth, sample_format = reader.bit_depth, reader.sample_format
        with ExitStack() as stack:
            for out in built:
                if out.request.path is not None:
                    out.writer = stack.enter_context(Bw64Writer(
                        out.request.path, sr, len(out.report.peak), bit_depth=bit_depth,
                        sample_format=sample_format, bext=reader.bext,
                        forbid_paths=(input_path,)))
            done = 0
            writes = stack.enter_context(_WritesInOrder())

            def emit(out: _Output, frames: np.ndarray) -> None:
                if len(frames) == 0:
                    return
                if gain != 1.0:
                    frames = frames * np.float32(gain)
                if out.upmix is not None:
                    frames = frames @ out.upmix
                report = out.report
                encoded = _encoded(frames, out.writer) if out.writer is not None else None
                if encoded is not None:  # its peaks taken as it was encoded
                    peaks, data, clipped = encoded
                else:
                    peaks = channel_peaks(frames)
                np.maximum(report.peak, peaks, out=report.peak)
                if out.writer is not None and fail_on_overload and np.any(report.peak > 1.0):
                    raise RenderError(
                        f"{out.request.path}: output overloaded on "
                        f"{', '.join(report.overloaded_channels)} (--fail-on-overload)")
                if out.meter is not None:
                    out.meter.process(frames)
                if encoded is not None:
                    writes.submit(out.writer.write_encoded, data, len(frames), clipped)
                elif out.writer is not None:
                    writes.wait()
                    out.writer.write(frames)

            def finish(result, block: np.ndarray) -> None:
                nonlocal done
                mixed = np.asarray(result)[:len(block)] if result is not None else None
                for out in built:
                    if out.column is None:
                        columns = np.zeros((len(block), out.width), np.float32)
                    else:
                        columns = mixed[:, out.column:out.column + out.width]
                    emit(out, out.stage.process(columns, block))
                done += len(block)
                if progress is not None:
                    progress(done, reader.frames)

            # The native kernel (on the CPU) mixes the file's bytes where they lie (a memory
            # mapping); on an accelerator they go to the device and are decoded in the JAX
            # kernel. Binaural outputs and Matrix delays need the decoded tracks on the host.
            encoding = reader.raw_encoding
            host_tracks = delayed_tracks or any(is_binaural(o.request.layout) for o in built)
            if mixer.native and encoding is not None:
                if total and not host_tracks:
                    blocks, encoding = _mixed_from_the_file(reader, mixer), "native"
                else:  # the tracks decoded by the kernel's decoding; track by track where
                    # only the headphone stages take them (they read each track's frames)
                    blocks, encoding = _decoded_from_the_file(
                        reader, mixer, by_tracks=not total and not delayed_tracks), "float"
            elif encoding is None or mixer.native or jax.default_backend() == "cpu" \
                    or host_tracks:
                blocks, encoding = reader.iter_blocks(mixer.frames_per_call), "float"
            else:
                blocks = reader.iter_raw_blocks(mixer.frames_per_call)
            # (result being computed, its input): the mix runs up to MIX_AHEAD batches ahead
            # of the outputs, so its threads are not left waiting while one is written
            waiting: deque = deque()
            for block in blocks:
                if encoding == "native":
                    result, block = block
                else:
                    if encoding == "float":
                        block = delayer.process(block)
                    result = mixer.dispatch(block, encoding) if total else None
                waiting.append((result, block))
                if len(waiting) > MIX_AHEAD:
                    finish(*waiting.popleft())
            while waiting:
                finish(*waiting.popleft())
            for out in built:
                emit(out, out.stage.finish())
            writes.wait()
            for out in built:
                if out.writer is not None:
                    out.writer.close()
                    out.report.clipped_samples = out.writer.clipped_samples
                if out.meter is not None:
                    out.report.loudness = out.meter.result()
            stack.pop_all()

    reports = [out.report for out in built if out.measure_of is None]
    for out in built:
        if out.measure_of is not None:
            reports[out.measure_of].dialogue_loudness = out.report.loudness
    return reports


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
    content_ids: Sequence[str] | None = None,
    hrtf: Any = None,
    head_orientation: Any = None,
    measure_loudness: bool = False,
) -> RenderReport:
    """Render an ADM BWF file to loudspeaker feeds for ``layout`` (or ``"binaural"``).

    ``layout``: a layout name ("7.1.4", "4+7+0", ...), ``"binaural"``, or a :class:`Layout`.
    Output: BW64 with the layout's channels in its order, the input's sample rate and bit
    depth (32-bit float with ``float_output``). ``fix_block_timing`` repairs block durations
    that do not meet the next block, interpolation lengths longer than their block and blocks
    that end after their audioObject, as the reference renderer's
    ``--enable-block-duration-fix`` does; without it such problems are reported as warnings
    (and overlaps are errors). The output is written to a temporary file and renamed when
    complete; on any error nothing is left behind. ``progress(done_frames, total_frames)`` is
    called after each chunk.

    ``speakers_file``: a real room (``-l speakers.yaml``, see :mod:`layouts.speakers_file`):
    the layout is rendered with the room's loudspeaker positions and each layout channel is
    routed, with its gain, to the file channel the room gives it (the output then has the
    room's channel count; out-of-range positions and routing problems become warnings).
    ``importance_threshold``: drop audioObjects and audioPackFormats less important than it
    and mute Objects blocks less important than it (:func:`adm.importance.filter_by_importance`).
    ``content_ids``: render only these audioContents (IDs or names): a stem.
    ``hrtf``/``head_orientation``: for ``"binaural"`` (see :func:`render_outputs`).
    """
    request = OutputRequest(Path(output_path), layout,
                            tuple(content_ids) if content_ids is not None else None)
    return render_outputs(
        input_path, [request], output_gain_db=output_gain_db, programme_id=programme_id,
        complementary_object_ids=complementary_object_ids, fail_on_overload=fail_on_overload,
        strict=strict, float_output=float_output, fix_block_timing=fix_block_timing,
        progress=progress, speakers_file=speakers_file,
        importance_threshold=importance_threshold, hrtf=hrtf,
        head_orientation=head_orientation, measure_loudness=measure_loudness)[0]


def apply_gain_to_file(path: str | os.PathLike, gain_db: float, report: RenderReport) -> None:
    """Scale a rendered file by ``gain_db`` in place (streamed, written to a temporary file and
    renamed), updating ``report``'s peaks, clip count and loudness (which shift by exactly
    ``gain_db``, loudness being linear in level). Used by ``--normalize-to``, never silently."""
    path = Path(path)
    factor = np.float32(10.0 ** (gain_db / 20.0))
    with Bw64Reader(path) as reader, Bw64Writer(
            path, reader.sample_rate, reader.channels, bit_depth=reader.bit_depth,
            sample_format=reader.sample_format, bext=reader.bext) as writer:
        for block in reader.iter_blocks(1 << 16):
            writer.write(block * factor)
        writer.close()
    report.peak = report.peak * float(factor)
    report.clipped_samples = writer.clipped_samples
    for name in ("loudness", "dialogue_loudness"):
        result = getattr(report, name)
        if result is not None and hasattr(result, "shifted"):
            setattr(report, name, result.shifted(gain_db))
