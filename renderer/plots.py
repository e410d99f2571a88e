"""Pictures of a mix: loudspeaker layouts, object trajectories, gains over time, an animation.

Everything here draws what the renderer itself computes: object positions are placed in time
with the renderer's block timing (:func:`renderer.timing.block_timings`, ITU-R BS.2127 clause
7.2: jumpPosition, interpolationLength, ramps and holds in samples), and the gain pictures
sample the renderer's own gain plan (:func:`renderer.plan.build_gain_plan` evaluated with
:func:`renderer.timing.evaluate_segments`).

Conventions (see the package design notes): azimuth in degrees, anticlockwise, 0 = front,
+90 = left; elevation up; cartesian X right, Y front, Z up. Times are seconds, levels dB.

Figures are made with :class:`matplotlib.figure.Figure` (no pyplot state): in a notebook,
``display(fig)`` or ending a cell with ``fig`` shows them; :func:`plot_file` writes PNGs with
the Agg canvas and needs no display.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.collections import LineCollection
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from adm.bw64 import give_new_file_permissions
from adm.items import ObjectRenderItem, select_items
from adm.model import (
    DEFAULT_SCREEN,
    AdmDocument,
    AdmError,
    CartesianPosition,
    CartesianScreen,
    PolarPosition,
    Screen,
)
from layouts.model import Layout, polar_to_cartesian
from renderer.timing import OPEN_END, block_timings, evaluate_segments

__all__ = [
    "Trajectory",
    "animate_scene",
    "object_trajectories",
    "plan_gains_over_time",
    "plot_file",
    "plot_gain_heatmap",
    "plot_interaural_level",
    "plot_layout",
    "plot_loudness_over_time",
    "plot_paths",
    "plot_scene_3d",
    "plot_trajectories",
]

MAX_LEGEND_ENTRIES = 20
"""Legends list at most this many objects, then say how many more there are."""

JUMP_BREAK = 0.05
"""Path pictures break at an instantaneous jump longer than this (X, Y, Z units); shorter
ones (a ramp starting between two samples) are drawn as part of the path."""

_POLAR_LABELS = ("azimuth (°)", "elevation (°)", "distance")
_CARTESIAN_LABELS = ("X (right, +1 = right wall)", "Y (front, +1 = front wall)",
                     "Z (up, +1 = ceiling)")


# --------------------------------------------------------------------------------------------
# Trajectories: object positions placed in time as the renderer places the gains
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Trajectory:
    """One Objects channel's position over time, as the renderer applies its blocks.

    ``times``: float64 (P,) seconds, non-decreasing; two equal times are a jump.
    ``coords``: float64 (P, 3): azimuth, elevation (degrees) and distance for a polar channel,
    X, Y, Z for a cartesian one (``cartesian``). A row of NaN coordinates marks a gap where no
    block covers the time (the object is silent there).
    """

    name: str
    channel_id: str
    cartesian: bool
    times: np.ndarray
    coords: np.ndarray

    def cartesian_coords(self) -> np.ndarray:
        """(P, 3) X, Y, Z: the coordinates themselves, or polar ones converted to X, Y, Z."""
        if self.cartesian:
            return self.coords
        return polar_to_cartesian(self.coords[:, 0], self.coords[:, 1], self.coords[:, 2])

    def at(self, times_s: np.ndarray) -> np.ndarray:
        """(T, 3) coordinates at ``times_s`` (seconds), linear between points; NaN outside the
        trajectory and in its gaps. At a jump the position after it is given."""
        times_s = np.asarray(times_s, float)
        out = np.full((len(times_s), 3), np.nan)
        if len(self.times) == 0:
            return out
        # the last of equal times is the position after a jump
        index = np.searchsorted(self.times, times_s, side="right")
        inside = (index > 0) & (times_s <= self.times[-1])
        lo = np.clip(index - 1, 0, len(self.times) - 1)
        hi = np.clip(index, 0, len(self.times) - 1)
        t0, t1 = self.times[lo], self.times[hi]
        span = np.where(t1 > t0, t1 - t0, 1.0)
        f = np.clip((times_s - t0) / span, 0.0, 1.0)[:, None]
        values = self.coords[lo] + f * (self.coords[hi] - self.coords[lo])
        values = np.where((hi == lo)[:, None] | (t1 <= t0)[:, None], self.coords[lo], values)
        out[inside] = values[inside]
        return out


def _block_coords(blocks, cartesian: bool) -> np.ndarray:
    """(B, 3) block positions in the channel's coordinate kind (the first block's kind).

    A block of the other kind is converted with the plain spherical relation (polar to X, Y, Z
    on the sphere, or X, Y, Z to azimuth, elevation, distance).
    """
    out = np.empty((len(blocks), 3))
    for i, block in enumerate(blocks):
        p = block.position
        if isinstance(p, CartesianPosition):
            xyz = (p.x, p.y, p.z)
            if cartesian:
                out[i] = xyz
            else:
                x, y, z = xyz
                out[i] = (np.degrees(np.arctan2(-x, y)),
                          np.degrees(np.arctan2(z, np.hypot(x, y))), np.sqrt(x * x + y * y + z * z))
        elif isinstance(p, PolarPosition):
            out[i] = (polar_to_cartesian(p.azimuth, p.elevation, p.distance) if cartesian
                      else (p.azimuth, p.elevation, p.distance))
        else:  # pragma: no cover - the model only has these two
            raise AdmError(f"audioBlockFormat {block.id}: unknown position {p!r}")
    return out


def _channel_points(timing, coords: np.ndarray, end_sample: int) -> tuple[np.ndarray, np.ndarray]:
    """Point times (samples, float) and coordinates of one channel, from its block timing.

    Per block, in order: where it interpolates, the ramp start (sample ``ramp_first``, at the
    interpolation factor ``ramp_p0`` between the previous and this block's position); the
    hold start (``hold_first``, this block's position: the ramp ends there); the hold end
    (``hold_last``) when the hold is not empty. A NaN row separates blocks that do not meet.
    """
    n = len(coords)
    hold_last = np.where(timing.hold_last >= OPEN_END, np.maximum(end_sample, timing.hold_first),
                         timing.hold_last)
    previous = np.concatenate([coords[:1], coords[:-1]])
    ramp_value = previous + timing.ramp_p0[:, None] * (coords - previous)
    block_start = np.where(timing.interpolates, timing.ramp_first, timing.hold_first)
    gap = np.zeros(n, bool)
    gap[1:] = block_start[1:] > hold_last[:-1]
    # four slots per block: gap marker, ramp start, hold start, hold end
    times = np.empty((n, 4))
    values = np.empty((n, 4, 3))
    keep = np.empty((n, 4), bool)
    times[:, 0] = hold_last[np.maximum(np.arange(n) - 1, 0)]
    values[:, 0] = np.nan
    keep[:, 0] = gap
    times[:, 1], values[:, 1], keep[:, 1] = timing.ramp_first, ramp_value, timing.interpolates
    times[:, 2], values[:, 2], keep[:, 2] = timing.hold_first, coords, True
    times[:, 3], values[:, 3] = hold_last, coords
    keep[:, 3] = hold_last > timing.hold_first
    times, values = times[keep], values[keep]
    # a point equal in time and place to the one before it adds nothing
    same = np.zeros(len(times), bool)
    same[1:] = (times[1:] == times[:-1]) & np.all(values[1:] == values[:-1], axis=1)
    return times[~same], values[~same]


def object_trajectories(
    doc_or_items: AdmDocument | Sequence,
    sample_rate: int,
    duration_s: float | None = None,
    *,
    doc: AdmDocument | None = None,
    programme_id: str | None = None,
) -> list[Trajectory]:
    """The position of every Objects channel over time, as the renderer applies it.

    ``doc_or_items``: an :class:`AdmDocument` (its items are selected with
    :func:`adm.items.select_items`, ``programme_id`` choosing the programme) or the render items
    themselves (non-Objects items are skipped; pass ``doc`` to name them by their audioObject,
    else the audioChannelFormat name is used). ``sample_rate``: Hz, which fixes the sample at
    which each block boundary takes effect (BS.2127 clause 7.2). ``duration_s``: where blocks
    without an end stop (default: the latest block end, or 1 s after the start).

    Per block (:func:`renderer.timing.block_timings`): a ramp from sample ``a`` to ``b`` goes
    linearly from the previous block's position to this block's (starting at the interpolation
    factor of sample ``a``, 0 when the block starts on a sample); a hold is flat; a jump (no
    interpolation) is two points at the same time. The coordinates are interpolated linearly
    here, while the renderer interpolates the gains: the picture shows where the metadata
    puts the object, sample-accurately in time.
    """
    if isinstance(doc_or_items, AdmDocument):
        doc = doc_or_items if doc is None else doc
        items = select_items(doc_or_items, programme_id=programme_id)
    else:
        items = doc_or_items
    object_items = [i for i in items if isinstance(i, ObjectRenderItem)]
    channels_per_object: dict[str, int] = {}
    for item in object_items:
        key = item.context.object_ids[-1] if item.context.object_ids else ""
        channels_per_object[key] = channels_per_object.get(key, 0) + 1
    timings = []
    for item in object_items:
        channel = item.channel_format
        where = f"{doc.source}: " if doc is not None else ""
        timings.append(block_timings(channel.blocks, sample_rate, item.context.object_start,
                                     item.context.object_duration, interpolate=True,
                                     where=f"{where}audioChannelFormat {channel.id}: "))
    if duration_s is not None:
        end_sample = int(round(duration_s * sample_rate))
    else:
        finite = [t.hold_last[t.hold_last < OPEN_END] for t in timings]
        ends = np.concatenate(finite) if finite else np.zeros(0, np.int64)
        starts = np.concatenate([t.hold_first for t in timings]) if timings else np.zeros(1)
        end_sample = int(ends.max()) if len(ends) else int(starts.max()) + sample_rate
    out = []
    for item, timing in zip(object_items, timings):
        channel = item.channel_format
        blocks = channel.blocks
        cartesian = bool(blocks) and isinstance(blocks[0].position, CartesianPosition)
        coords = _block_coords(blocks, cartesian)
        samples, values = _channel_points(timing, coords, end_sample)
        object_id = item.context.object_ids[-1] if item.context.object_ids else ""
        name = channel.name
        if doc is not None and object_id:
            element = doc.get(object_id)
            if element is not None:
                name = element.name
                if channels_per_object.get(object_id, 1) > 1:
                    name = f"{name} ({channel.name})"
        out.append(Trajectory(name=name, channel_id=channel.id, cartesian=cartesian,
                              times=samples / float(sample_rate), coords=values))
    return out


# --------------------------------------------------------------------------------------------
# Layout drawing
# --------------------------------------------------------------------------------------------


def _new_figure(width: float, height: float) -> Figure:
    return Figure(figsize=(width, height), layout="constrained")


def _screen_segments(screen: Screen) -> tuple[np.ndarray, np.ndarray]:
    """The screen's horizontal and vertical centre lines as two (2, 3) X, Y, Z point pairs."""
    if isinstance(screen, CartesianScreen):
        c = np.array([screen.centre_x, screen.centre_y, screen.centre_z])
        half_w = screen.width_x / 2
        half_h = half_w / screen.aspect_ratio
        right, up = np.array([1.0, 0, 0]), np.array([0, 0, 1.0])
    else:
        c = polar_to_cartesian(screen.centre_azimuth, screen.centre_elevation,
                               screen.centre_distance)
        half_w = screen.centre_distance * np.tan(np.radians(screen.width_azimuth / 2))
        half_h = half_w / screen.aspect_ratio
        az = np.radians(screen.centre_azimuth)
        right = np.array([np.cos(az), np.sin(az), 0.0])
        normal = c / np.linalg.norm(c)
        up = np.cross(right, normal)
    return (np.stack([c - half_w * right, c + half_w * right]),
            np.stack([c - half_h * up, c + half_h * up]))


def _draw_layout(ax, layout: Layout | None, view: str, screen: Screen | None,
                 labels: bool = True, cube: bool = False) -> None:
    """Draw the reference circle, the listener, speakers (LFE: hollow square) and the screen
    on ``ax`` for ``view`` "top" (X, Y) or "side" (Y, Z)."""
    dims = (0, 1) if view == "top" else (1, 2)
    angle = np.linspace(0, 2 * np.pi, 181)
    ax.plot(np.cos(angle), np.sin(angle), color="0.8", lw=0.8, zorder=0)
    if cube:
        ax.plot([-1, 1, 1, -1, -1], [-1, -1, 1, 1, -1], color="0.8", lw=0.8, ls=":", zorder=0)
    ax.plot([0], [0], marker="+", color="0.4", ms=8, zorder=1)
    if screen is not None:
        horizontal, vertical = _screen_segments(screen)
        segment = horizontal if view == "top" else vertical
        ax.plot(segment[:, dims[0]], segment[:, dims[1]], color="tab:gray", lw=4, alpha=0.6,
                solid_capstyle="butt", label="screen", zorder=1)
    if layout is not None and layout.speakers:
        xyz = layout.positions
        lfe = layout.is_lfe
        p = xyz[:, dims]
        ax.scatter(p[~lfe, 0], p[~lfe, 1], s=60, marker="o", color="black", zorder=3,
                   label="loudspeaker")
        if lfe.any():
            ax.scatter(p[lfe, 0], p[lfe, 1], s=70, marker="s", facecolors="none",
                       edgecolors="tab:purple", linewidths=1.5, zorder=3, label="LFE")
        if labels:
            groups: dict[tuple[float, float], list[str]] = {}
            for name, point in zip(layout.channel_names, p):
                groups.setdefault((round(point[0], 3), round(point[1], 3)), []).append(name)
            for (x, y), names in groups.items():
                r = np.hypot(x, y)
                dx, dy = (0.1 * x / r, 0.1 * y / r) if r > 1e-6 else (0.0, 0.1)
                ax.text(x + dx, y + dy, "/".join(names), fontsize=7, ha="center",
                        va="center", zorder=4)
    ax.set_aspect("equal")
    lim = 1.35
    ax.set_xlim(-lim, lim)
    ax.set_ylim(-lim if view == "top" else -0.75, lim)
    if view == "top":
        ax.set_xlabel("X (right)")
        ax.set_ylabel("Y (front)")
    else:
        ax.set_xlabel("Y (front)")
        ax.set_ylabel("Z (up)")


def plot_layout(
    layout: Layout,
    ax_top=None,
    ax_side=None,
    screen: Screen | None = DEFAULT_SCREEN,
) -> Figure:
    """Top view (X right, Y front) and side view (Y front, Z up) of a loudspeaker layout.

    Speakers are drawn at their real positions on the unit sphere (the circle), projected:
    top view ``(X, Y) = (-sin az cos el, cos az cos el)``, side view
    ``(Y, Z) = (cos az cos el, sin el)``, labelled with their names; LFE channels as hollow
    squares; the reproduction ``screen`` (BS.2076 referenceScreen; None: no screen) as a grey
    bar. Draws on ``ax_top``/``ax_side`` when given (only on those given), else makes a figure.
    """
    if ax_top is None and ax_side is None:
        fig = _new_figure(10, 5)
        ax_top, ax_side = fig.subplots(1, 2)
    fig = (ax_top if ax_top is not None else ax_side).figure
    for ax, view in ((ax_top, "top"), (ax_side, "side")):
        if ax is None:
            continue
        _draw_layout(ax, layout, view, screen)
        ax.set_title(f"{layout.name}: {view} view")
    (ax_top if ax_top is not None else ax_side).legend(loc="lower left", fontsize=7)
    return fig


# --------------------------------------------------------------------------------------------
# Trajectory pictures
# --------------------------------------------------------------------------------------------


def _colours(n: int) -> np.ndarray:
    """(n, 4) RGBA: tab10 for a few objects, a perceptual colour map for many."""
    from matplotlib import colormaps

    if n <= 10:
        return colormaps["tab10"](np.arange(n))
    if n <= 20:
        return colormaps["tab20"](np.arange(n))
    return colormaps["turbo"](np.linspace(0.05, 0.95, n))


def _legend(fig_or_ax, handles: Sequence, labels: Sequence[str], **kwargs) -> None:
    """A legend of at most :data:`MAX_LEGEND_ENTRIES` names, then "+ N more"."""
    handles, labels = list(handles), list(labels)
    if len(labels) > MAX_LEGEND_ENTRIES:
        more = len(labels) - MAX_LEGEND_ENTRIES + 1
        handles = handles[:MAX_LEGEND_ENTRIES - 1] + [Line2D([], [], lw=0)]
        labels = labels[:MAX_LEGEND_ENTRIES - 1] + [f"+ {more} more objects"]
    fontsize = "small" if len(labels) <= 10 else "x-small"
    fig_or_ax.legend(handles, labels, fontsize=fontsize, **kwargs)


def plot_trajectories(trajectories: Sequence[Trajectory], fig: Figure | None = None) -> Figure:
    """Object positions over time: three stacked panels per coordinate kind (azimuth,
    elevation in degrees and distance for polar objects; X, Y, Z for cartesian ones), one line
    per object, with the object names in a legend. Jumps are vertical steps, interpolation
    ramps; gaps (no block) are breaks in the line."""
    trajectories = list(trajectories)
    kinds = [k for k in (False, True) if any(t.cartesian == k for t in trajectories)] or [False]
    if fig is None:
        fig = _new_figure(11 if len(kinds) == 1 else 15, 7)
    axes = fig.subplots(3, len(kinds), sharex=True, squeeze=False)
    colours = _colours(len(trajectories))
    handles: dict[int, Line2D] = {}
    end = max((t.times[-1] for t in trajectories if len(t.times)), default=1.0)
    for column, cartesian in enumerate(kinds):
        labels = _CARTESIAN_LABELS if cartesian else _POLAR_LABELS
        for row in range(3):
            ax = axes[row, column]
            for k, t in enumerate(trajectories):
                if t.cartesian != cartesian:
                    continue
                (line,) = ax.plot(t.times, t.coords[:, row], color=colours[k], lw=1.0,
                                  label=t.name)
                handles.setdefault(k, line)
            ax.set_ylabel(labels[row])
            ax.grid(True, lw=0.3)
            ax.set_xlim(0, end)
        axes[0, column].set_title("cartesian objects" if cartesian else "polar objects")
        axes[-1, column].set_xlabel("time (s)")
        if not cartesian:
            axes[0, column].set_ylim(-185, 185)
            axes[0, column].set_yticks(np.arange(-180, 181, 90))
            axes[1, column].set_ylim(-95, 95)
    if not trajectories:
        axes[0, 0].text(0.5, 0.5, "no Objects in this programme", ha="center",
                        transform=axes[0, 0].transAxes)
    fig.suptitle("Object positions over time")
    order = sorted(handles)
    if order:
        _legend(fig, [handles[k] for k in order], [trajectories[k].name for k in order],
                loc="outside right upper")
    return fig


def _path_pieces(trajectory: Trajectory, piece_s: float
                 ) -> tuple[list[np.ndarray], np.ndarray]:
    """A trajectory's path as polylines of X, Y, Z points (each (N, 3), N >= 2) spanning at
    most about ``piece_s`` seconds each, consecutive ones sharing their end point, with their
    mean times (seconds). Gaps and instantaneous jumps break the path; points that do not move
    (holds) are dropped."""
    xyz = trajectory.cartesian_coords()
    t = trajectory.times
    finite = np.all(np.isfinite(xyz), axis=1)
    xyz, t = xyz[finite], t[finite]
    if len(t) < 2:
        return [], np.zeros(0)
    gap_before = np.zeros(len(t), bool)
    removed = np.cumsum(~finite)[finite]  # NaN rows dropped before each point
    gap_before[1:] = removed[1:] > removed[:-1]
    moved = np.ones(len(t), bool)
    moved[1:] = np.any(xyz[1:] != xyz[:-1], axis=1)
    jump_before = np.zeros(len(t), bool)
    jump_before[1:] = ((t[1:] == t[:-1])
                       & (np.linalg.norm(xyz[1:] - xyz[:-1], axis=1) > JUMP_BREAK))
    keep = moved | gap_before
    xyz, t = xyz[keep], t[keep]
    run = np.cumsum((gap_before | jump_before)[keep])
    piece = run * (int(t[-1] / piece_s) + 2) + np.floor(t / piece_s).astype(np.int64)
    starts = np.flatnonzero(np.diff(piece)) + 1
    first = np.concatenate([[0], starts])
    last = np.concatenate([starts, [len(t)]])
    # join each piece to the first point of the next piece of the same run
    joined = (last < len(t)) & (run[np.minimum(last, len(t) - 1)] == run[first])
    last = last + joined
    long_enough = last - first >= 2
    first, last = first[long_enough], last[long_enough]
    polylines = [xyz[a:b] for a, b in zip(first.tolist(), last.tolist())]
    sums = np.concatenate([[0.0], np.cumsum(t)])
    mids = (sums[last] - sums[first]) / (last - first)
    return polylines, mids


def _all_path_pieces(trajectories, pieces_per_object: int = 40
                     ) -> tuple[list[np.ndarray], np.ndarray]:
    end = max((t.times[-1] for t in trajectories if len(t.times)), default=1.0)
    piece_s = max(end, 1e-6) / pieces_per_object
    polylines: list[np.ndarray] = []
    mids = []
    for t in trajectories:
        p, m = _path_pieces(t, piece_s)
        polylines.extend(p)
        mids.append(m)
    return polylines, np.concatenate(mids) if mids else np.zeros(0)


def _start_points(trajectories) -> np.ndarray:
    """(N, 3) X, Y, Z of each trajectory's first defined position (NaN if none)."""
    out = np.full((len(trajectories), 3), np.nan)
    for k, t in enumerate(trajectories):
        xyz = t.cartesian_coords()
        finite = np.flatnonzero(np.all(np.isfinite(xyz), axis=1))
        if len(finite):
            out[k] = xyz[finite[0]]
    return out


def plot_paths(trajectories: Sequence[Trajectory], layout: Layout | None = None,
               screen: Screen | None = DEFAULT_SCREEN) -> Figure:
    """Where the objects go: top view (X, Y) and side view (Y, Z) of their paths over the
    layout, coloured by time (colour bar in seconds; each path is drawn in about 40 pieces
    of one colour). Polar positions are drawn on the sphere (``polar_to_cartesian``),
    cartesian ones in the unit cube (dotted square). Each path starts at a small dot, named
    when there are few objects; a jump further than :data:`JUMP_BREAK` breaks the path."""
    trajectories = list(trajectories)
    fig = _new_figure(12, 5.5)
    ax_top, ax_side = fig.subplots(1, 2)
    polylines, mids = _all_path_pieces(trajectories)
    end = max((t.times[-1] for t in trajectories if len(t.times)), default=1.0)
    norm = Normalize(0.0, max(end, 1e-9))
    cube = any(t.cartesian for t in trajectories)
    starts = _start_points(trajectories)
    collection = None
    for ax, view, dims in ((ax_top, "top", [0, 1]), (ax_side, "side", [1, 2])):
        _draw_layout(ax, layout, view, screen, labels=True, cube=cube)
        collection = LineCollection([p[:, dims] for p in polylines], array=mids,
                                    cmap="viridis", norm=norm, linewidths=1.2, rasterized=True,
                                    zorder=2)
        ax.add_collection(collection, autolim=False)
        ax.scatter(starts[:, dims[0]], starts[:, dims[1]], s=12, color="tab:red", zorder=5)
        if len(trajectories) <= 16:
            for name, point in zip((t.name for t in trajectories), starts[:, dims]):
                if np.all(np.isfinite(point)):
                    ax.annotate(name, point, xytext=(3, 3), textcoords="offset points",
                                fontsize=6, color="tab:red")
        ax.set_title(f"{view} view")
    fig.colorbar(collection, ax=[ax_top, ax_side], label="time (s)", shrink=0.8)
    title = "Object paths"
    if layout is not None:
        title += f" over {layout.name}"
    fig.suptitle(f"{title} (red dot: start)")
    return fig


def plot_scene_3d(trajectories: Sequence[Trajectory], layout: Layout | None = None,
                  pieces: int = 25) -> Figure:
    """A 3D view of the paths (X right, Y front, Z up), coloured by time (colour bar in
    seconds), over the speakers. Each path is drawn in about ``pieces`` polylines, one colour
    each."""
    from mpl_toolkits.mplot3d.art3d import Line3DCollection

    trajectories = list(trajectories)
    fig = _new_figure(8, 7)
    ax = fig.add_subplot(projection="3d")
    segments, mids = _all_path_pieces(trajectories, pieces)
    end = max((t.times[-1] for t in trajectories if len(t.times)), default=1.0)
    collection = Line3DCollection(segments, array=mids, cmap="viridis",
                                  norm=Normalize(0, max(end, 1e-9)), linewidths=1.0)
    ax.add_collection3d(collection)
    if layout is not None:
        xyz, lfe = layout.positions, layout.is_lfe
        ax.scatter(*xyz[~lfe].T, s=40, color="black", depthshade=False, label="loudspeaker")
        if lfe.any():
            ax.scatter(*xyz[lfe].T, s=40, marker="s", facecolors="none",
                       edgecolors="tab:purple", depthshade=False, label="LFE")
        for name, p in zip(layout.channel_names, xyz):
            ax.text(*(p * 1.12), name, fontsize=6)
        ax.legend(loc="upper left", fontsize=7)
    ax.set_xlim(-1.1, 1.1)
    ax.set_ylim(-1.1, 1.1)
    ax.set_zlim(-0.6, 1.1)
    ax.set_xlabel("X (right)")
    ax.set_ylabel("Y (front)")
    ax.set_zlabel("Z (up)")
    ax.set_box_aspect((2.2, 2.2, 1.7))
    fig.colorbar(collection, ax=ax, label="time (s)", shrink=0.6)
    title = "Object paths in 3D"
    fig.suptitle(title + (f" over {layout.name}" if layout is not None else ""))
    return fig


# --------------------------------------------------------------------------------------------
# Gains
# --------------------------------------------------------------------------------------------


def plan_gains_over_time(
    items: Sequence,
    layout: Layout,
    sample_rate: int,
    times_s: Sequence[float] | np.ndarray,
    *,
    screen: Screen | None = DEFAULT_SCREEN,
    n_tracks: int | None = None,
    source: str = "",
) -> np.ndarray:
    """The renderer's gains at given times: float32 (T, n_tracks, n_out).

    ``times_s`` (T,) seconds are rounded to samples; the gains are those the engine applies to
    each input track (0-based, the file's track order) for each output channel of ``layout``
    at those samples, from :func:`renderer.plan.build_gain_plan` and
    :func:`renderer.timing.evaluate_segments` (BS.2127 clauses 6 to 8). Where the plan has a
    diffuse part (BS.2127 clause 7.4), it is combined with the direct part in power
    (``sqrt(direct^2 + diffuse^2)``), as decorrelated signals add. ``n_tracks``: default the
    highest track any item uses, plus one.
    """
    from renderer.plan import build_gain_plan

    plan = build_gain_plan(items, layout, sample_rate, source=source, screen=screen,
                           n_tracks=n_tracks)
    return _plan_gains(plan, sample_rate, times_s, _track_count(items, plan, n_tracks))


def _track_count(items, plan, n_tracks: int | None) -> int:
    used = [int(plan.segments.track.max()) + 1] if len(plan.segments.track) else [0]
    for item in items:
        index = getattr(item, "track_index", None)
        if index is not None:
            used.append(index + 1)
        for index in getattr(item, "track_indices", ()) or ():
            if index is not None:
                used.append(index + 1)
    return max(used + ([n_tracks] if n_tracks is not None else []))


def _plan_gains(plan, sample_rate: int, times_s, n_tracks: int) -> np.ndarray:
    times = np.asarray(times_s, float).reshape(-1)
    samples = np.round(times * sample_rate).astype(np.int64)
    order = np.argsort(samples, kind="stable")
    gains = evaluate_segments(plan.segments, n_tracks, samples[order])
    if plan.diffuse:
        n = plan.n_outputs
        gains = np.sqrt(gains[..., :n] ** 2 + gains[..., n:] ** 2)
    out = np.empty_like(gains)
    out[order] = gains
    return out


def _db(power: np.ndarray, floor_db: float = -120.0) -> np.ndarray:
    return 10.0 * np.log10(np.maximum(power, 10.0 ** (floor_db / 10.0)))


def plot_gain_heatmap(
    items: Sequence,
    layout: Layout,
    sample_rate: int,
    duration_s: float,
    resolution_s: float = 0.05,
    track_names: Sequence[str] | Mapping[int, str] | None = None,
    *,
    tracks: Sequence[int] = (),
    screen: Screen | None = DEFAULT_SCREEN,
    n_tracks: int | None = None,
    vmin_db: float = -60.0,
    plan=None,
) -> Figure:
    """Per-loudspeaker gain over time as a dB colour map, one row per output channel of
    ``layout`` (named, in its order).

    The top panel is the whole mix: per speaker, the power sum over all input tracks of the
    renderer's gains, ``10 log10(sum_tracks g^2)`` dB (0 dB: one track at full gain). Column
    ``k`` is the gain at time ``(k + 0.5) * resolution_s`` seconds; the image data are the dB
    values (floored at -120 dB), the colour scale runs from ``vmin_db``. ``tracks``: 0-based
    input tracks to show in panels of their own (``20 log10 |g|``), titled with
    ``track_names`` (a sequence or mapping by track; default the items' channel names).
    ``plan``: a ready :class:`renderer.plan.GainPlan` for these items and layout, to skip
    building it again.
    """
    from renderer.plan import build_gain_plan

    if resolution_s <= 0 or duration_s <= 0:
        raise ValueError(f"plot_gain_heatmap: duration {duration_s} s and resolution "
                         f"{resolution_s} s must be positive")
    if plan is None:
        plan = build_gain_plan(items, layout, sample_rate, screen=screen, n_tracks=n_tracks)
    count = _track_count(items, plan, n_tracks)
    n_cols = max(1, int(np.ceil(duration_s / resolution_s - 1e-9)))
    times = (np.arange(n_cols) + 0.5) * resolution_s
    gains = _plan_gains(plan, sample_rate, times, count)  # (T, tracks, out)
    names = dict(enumerate(track_names)) if isinstance(track_names, Sequence) else dict(
        track_names or {})
    for item in items:
        index = getattr(item, "track_index", None)
        channel = getattr(item, "channel_format", None)
        if index is not None and channel is not None:
            names.setdefault(index, channel.name)
    panels = [("whole mix: power sum over tracks of the gains", _db(np.sum(gains ** 2, axis=1)))]
    for track in tracks:
        if not 0 <= track < count:
            raise ValueError(f"plot_gain_heatmap: no track {track} (0..{count - 1})")
        panels.append((f"track {track}: {names.get(track, '')}", _db(gains[:, track] ** 2)))
    n_out = layout.n_channels
    fig = _new_figure(11, 1.0 + (0.28 * n_out + 0.6) * len(panels))
    axes = fig.subplots(len(panels), 1, sharex=True, squeeze=False)[:, 0]
    vmax = max(0.0, float(np.ceil(max(p[1].max() for p in panels) / 3.0) * 3.0))
    image = None
    for ax, (title, db) in zip(axes, panels):
        image = ax.imshow(db.T, aspect="auto", origin="upper", interpolation="nearest",
                          extent=(0.0, n_cols * resolution_s, n_out - 0.5, -0.5),
                          cmap="magma", vmin=vmin_db, vmax=vmax)
        ax.set_yticks(np.arange(n_out), layout.channel_names, fontsize=7)
        ax.set_title(title, fontsize=9)
        ax.set_ylabel("output channel")
    axes[-1].set_xlabel("time (s)")
    fig.colorbar(image, ax=list(axes), label="gain (dB)", shrink=0.9)
    fig.suptitle(f"Loudspeaker gains on {layout.name} ({resolution_s * 1000:g} ms steps)")
    return fig


# --------------------------------------------------------------------------------------------
# Levels
# --------------------------------------------------------------------------------------------


def _window_levels(x: np.ndarray, frames: int) -> np.ndarray:
    n = len(x) // frames
    if n == 0:
        return np.zeros((0, x.shape[1]))
    blocks = x[: n * frames].astype(np.float64).reshape(n, frames, x.shape[1])
    return _db(np.mean(blocks ** 2, axis=1))


def plot_interaural_level(binaural: np.ndarray, sample_rate: int, window_s: float = 0.05
                          ) -> Figure:
    """Per-ear level and interaural level difference of a binaural signal over time.

    ``binaural``: (frames, 2) left and right ear signals. Per window of ``window_s`` seconds:
    the RMS level of each ear in dBFS (0 dBFS: a full-scale square wave, floored at -120) and
    ILD = level(L) - level(R) in dB (positive: louder on the left), left out where both ears
    are below -100 dBFS.
    """
    x = np.asarray(binaural)
    if x.ndim != 2 or x.shape[1] != 2:
        raise ValueError(f"plot_interaural_level: expected (frames, 2), got {x.shape}")
    frames = max(1, int(round(window_s * sample_rate)))
    levels = _window_levels(x, frames)
    times = (np.arange(len(levels)) + 0.5) * frames / sample_rate
    ild = levels[:, 0] - levels[:, 1]
    ild[np.all(levels < -100.0, axis=1)] = np.nan
    fig = _new_figure(10, 5.5)
    ax_level, ax_ild = fig.subplots(2, 1, sharex=True)
    ax_level.plot(times, levels[:, 0], color="tab:blue", label="left ear")
    ax_level.plot(times, levels[:, 1], color="tab:red", label="right ear")
    ax_level.set_ylabel("level (dBFS)")
    ax_level.legend(fontsize="small", loc="upper right")
    ax_level.grid(True, lw=0.3)
    ax_ild.plot(times, ild, color="black", label="ILD (L - R)")
    ax_ild.axhline(0.0, color="0.6", lw=0.8)
    ax_ild.set_ylabel("ILD, L - R (dB)")
    ax_ild.set_xlabel("time (s)")
    ax_ild.grid(True, lw=0.3)
    fig.suptitle(f"Interaural level difference ({window_s * 1000:g} ms windows; "
                 "positive = louder on the left)")
    return fig


def plot_loudness_over_time(
    series: Mapping[str, tuple[np.ndarray, np.ndarray]],
    targets: Mapping[str, float] | float | None = None,
    *,
    kind: str = "momentary",
    ax=None,
) -> Figure:
    """Loudness curves over time, one line per output (e.g. "7.1.4", "binaural").

    ``series``: name -> (times in seconds (T,), loudness in LUFS (T,)), e.g. BS.1770 momentary
    (400 ms) or short-term (3 s) loudness; non-finite values (silence) are left out.
    ``targets``: a target loudness in LUFS for all, or per name, drawn as dashed lines in the
    series' colour (grey for a common target). ``kind`` goes in the title.
    """
    if ax is None:
        fig = _new_figure(10, 4.5)
        ax = fig.subplots()
    fig = ax.figure
    colours = {}
    for name, (times, lufs) in series.items():
        lufs = np.asarray(lufs, float)
        (line,) = ax.plot(np.asarray(times, float), np.where(np.isfinite(lufs), lufs, np.nan),
                          label=name)
        colours[name] = line.get_color()
    if isinstance(targets, (int, float)):
        ax.axhline(float(targets), ls="--", color="0.4", label=f"target {targets:g} LUFS")
    elif targets:
        for name, value in targets.items():
            ax.axhline(float(value), ls="--", color=colours.get(name, "0.4"),
                       label=f"{name} target {value:g} LUFS")
    ax.set_xlabel("time (s)")
    ax.set_ylabel("loudness (LUFS)")
    ax.grid(True, lw=0.3)
    ax.legend(fontsize="small", loc="best")
    ax.set_title(f"{kind.capitalize()} loudness over time")
    return fig


# --------------------------------------------------------------------------------------------
# Animation
# --------------------------------------------------------------------------------------------


def _temporary_path(path: Path) -> Path:
    """A new empty file beside ``path``, with the permissions a new file gets (umask)."""
    handle, name = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=path.suffix, dir=path.parent)
    os.close(handle)
    give_new_file_permissions(name)
    return Path(name)


def _blitting_pillow_writer(fps: float):
    """matplotlib's PillowWriter taking each frame from the canvas as it stands, so that a
    frame costs only the redraw of the moving artists (blitting), not a whole figure draw."""
    from matplotlib import animation
    from PIL import Image

    class BlittingPillowWriter(animation.PillowWriter):
        def setup(self, fig, outfile, dpi=None):
            super().setup(fig, outfile, dpi=dpi)
            self._frames = []

        def grab_frame(self, **savefig_kwargs):
            rgba = np.asarray(self.fig.canvas.buffer_rgba())
            frame = Image.fromarray(rgba[..., :3].copy(), "RGB")
            # a fast palette per frame (GIF has 256 colours): 10 times quicker than the
            # adaptive palette Pillow would otherwise make when saving
            self._frames.append(frame.quantize(256, method=Image.Quantize.FASTOCTREE,
                                               dither=Image.Dither.NONE))

    return BlittingPillowWriter(fps=fps)


def animate_scene(
    trajectories: Sequence[Trajectory],
    layout: Layout | None,
    path: str | os.PathLike,
    fps: float = 10,
    duration_s: float | None = None,
    screen: Screen | None = DEFAULT_SCREEN,
    dpi: int = 80,
) -> Path:
    """The objects moving over the loudspeaker layout (top and side view), saved as a GIF
    (matplotlib's PillowWriter, no ffmpeg needed) or, for a ``.mp4`` path, an MP4
    (FFMpegWriter; ffmpeg needed).

    Frame ``k`` shows the positions at ``k / fps`` seconds, for
    ``k = 0 .. ceil(duration_s * fps) - 1`` (``duration_s`` default: the end of the latest
    trajectory), with the time in the title. Objects in a gap between blocks are hidden.
    Written to a temporary file and renamed. Returns the path. Raises
    :class:`renderer.render.RenderError` for an unknown extension or a missing ffmpeg.
    """
    from matplotlib import animation
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from renderer.render import RenderError

    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".mp4":
        if not animation.writers.is_available("ffmpeg") or shutil.which("ffmpeg") is None:
            raise RenderError(f"{path}: MP4 needs ffmpeg, which was not found; write a .gif")
        writer = animation.FFMpegWriter(fps=fps)
    elif suffix == ".gif":
        writer = _blitting_pillow_writer(fps)
    else:
        raise RenderError(f"{path}: unsupported animation format {path.suffix!r} "
                          "(use .gif, or .mp4 with ffmpeg)")
    if not path.parent.is_dir():
        raise RenderError(f"{path}: output folder {path.parent} does not exist")
    if fps <= 0:
        raise RenderError(f"{path}: frame rate {fps} is not positive")
    trajectories = list(trajectories)
    if duration_s is None:
        duration_s = max((t.times[-1] for t in trajectories if len(t.times)), default=0.0)
    n_frames = max(1, int(np.ceil(duration_s * fps - 1e-9)))
    frame_times = np.arange(n_frames) / fps
    # (frames, objects, 3) X, Y, Z positions
    positions = np.full((n_frames, len(trajectories), 3), np.nan)
    for k, t in enumerate(trajectories):
        coords = t.at(frame_times)
        positions[:, k] = coords if t.cartesian else polar_to_cartesian(
            coords[:, 0], coords[:, 1], coords[:, 2])
    colours = _colours(len(trajectories))
    fig = _new_figure(10, 5.2)
    canvas = FigureCanvasAgg(fig)
    axes = fig.subplots(1, 2)
    cube = any(t.cartesian for t in trajectories)
    blit = suffix == ".gif"
    dots = []
    for ax, view, dims in ((axes[0], "top", [0, 1]), (axes[1], "side", [1, 2])):
        _draw_layout(ax, layout, view, screen, labels=True, cube=cube)
        dots.append((ax.scatter(positions[0, :, dims[0]], positions[0, :, dims[1]], s=36,
                                c=colours, edgecolors="black", linewidths=0.4, zorder=6,
                                animated=blit), dims))
        ax.set_title(f"{view} view")
    fig.suptitle("Objects over " + (layout.name if layout is not None else "the room"))
    clock = axes[0].text(0.02, 0.97, "", transform=axes[0].transAxes, va="top",
                         fontsize=10, animated=blit)
    names = [t.name for t in trajectories]
    if 0 < len(names) <= MAX_LEGEND_ENTRIES:
        handles = [Line2D([], [], ls="", marker="o", color=c) for c in colours]
        _legend(fig, handles, names, loc="outside right upper")
    canvas.draw()  # lays the figure out once; the moving artists are drawn per frame
    fig.set_layout_engine("none")
    background = canvas.copy_from_bbox(fig.bbox) if blit else None
    temporary = _temporary_path(path)
    try:
        with writer.saving(fig, str(temporary), dpi=fig.dpi if blit else dpi):
            for frame in range(n_frames):
                for collection, dims in dots:
                    collection.set_offsets(positions[frame][:, dims])
                clock.set_text(f"t = {frame_times[frame]:.2f} s")
                if blit:
                    canvas.restore_region(background)
                    for collection, _ in dots:
                        fig.draw_artist(collection)
                    fig.draw_artist(clock)
                writer.grab_frame()
        os.replace(temporary, path)
    finally:
        if temporary.exists():
            temporary.unlink()
    return path


# --------------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------------


def _save_png(fig: Figure, path: Path, dpi: int = 100) -> Path:
    """Write ``fig`` as a PNG through a temporary file in the same folder, then rename."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    temporary = _temporary_path(path)
    try:
        # fast zlib level: these PNGs are written for a look, not for archiving
        fig.savefig(temporary, dpi=dpi, format="png", pil_kwargs={"compress_level": 1})
        os.replace(temporary, path)
    finally:
        if temporary.exists():
            temporary.unlink()
    return path


def _fork_drawing(pictures) -> tuple[int, int] | None:
    """Draw and save ``pictures`` ((make figure, path) pairs) in a forked child process;
    returns (pid, read end of a pipe carrying its error message), or None where fork is not
    available (the caller then draws them itself). Only on Linux, before any accelerator
    runtime has started in this process, so the fork is safe."""
    if not sys.platform.startswith("linux") or not _jax_backend_idle():
        return None
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: draw, report, leave without running the parent's cleanup
        os.close(read_end)
        code = 0
        try:
            for make, path in pictures:
                _save_png(make(), path)
        except BaseException as error:  # noqa: BLE001 - reported to the parent
            os.write(write_end, f"{type(error).__name__}: {error}".encode()[:4000])
            code = 1
        finally:
            os.close(write_end)
            os._exit(code)
    os.close(write_end)
    return pid, read_end


def _jax_backend_idle() -> bool:
    """True if JAX has not started a backend (runtime threads) in this process yet."""
    module = sys.modules.get("jax._src.xla_bridge")
    backends = getattr(module, "_backends", None) if module is not None else None
    return not backends


def _wait_for_drawing(child: tuple[int, int], output_dir: Path) -> None:
    from renderer.render import RenderError

    pid, read_end = child
    with os.fdopen(read_end, "rb") as pipe:
        message = pipe.read().decode(errors="replace")
    _, status = os.waitpid(pid, 0)
    if status != 0 or message:
        raise RenderError(f"{output_dir}: drawing the scene failed: "
                          f"{message or f'status {status}'}")


def plot_file(
    input_path: str | os.PathLike,
    output_dir: str | os.PathLike,
    layout: str | None = None,
    animate: bool = False,
    programme_id: str | None = None,
) -> list[Path]:
    """Pictures of an ADM BWF file's scene, written as PNGs into ``output_dir``.

    Always: ``trajectories.png`` (:func:`plot_trajectories`), ``paths.png``
    (:func:`plot_paths`), ``scene3d.png`` (:func:`plot_scene_3d`). With ``layout`` (a layout
    name, e.g. "7.1.4"): ``layout.png`` (:func:`plot_layout`) and ``gains_<layout>.png``
    (:func:`plot_gain_heatmap`, the renderer's gains on that layout, 50 ms steps). With
    ``animate``: ``scene.gif`` (:func:`animate_scene`, 10 frames per second). Files are
    written through temporary files and renamed. Returns the paths written, in that order.

    Raises :class:`renderer.render.RenderError` for a missing input or an output folder that
    cannot be made, and the ADM/BW64 errors (which name the file) for bad content.
    """
    from adm.bw64 import Bw64Reader
    from layouts import get_layout
    from renderer.render import RenderError, read_adm

    input_path, output_dir = Path(input_path), Path(output_dir)
    if not input_path.is_file():
        problem = "is not a file" if input_path.exists() else "does not exist"
        raise RenderError(f"{input_path}: input {problem}")
    target = get_layout(layout) if layout is not None else None
    if output_dir.exists() and not output_dir.is_dir():
        raise RenderError(f"{output_dir}: output path is not a folder")
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RenderError(f"{output_dir}: cannot make the output folder: {exc}") from None
    with Bw64Reader(input_path) as reader:
        doc = read_adm(reader)
        sample_rate, frames, n_file_tracks = reader.sample_rate, reader.frames, reader.channels
    items = select_items(doc, programme_id=programme_id, source=str(input_path))
    duration = frames / sample_rate
    trajectories = object_trajectories(items, sample_rate, duration if frames else None, doc=doc)
    del doc
    pictures = []
    if target is not None:
        pictures.append((lambda: plot_layout(target), output_dir / "layout.png"))
    pictures += [(lambda: plot_trajectories(trajectories), output_dir / "trajectories.png"),
                 (lambda: plot_paths(trajectories, target), output_dir / "paths.png"),
                 (lambda: plot_scene_3d(trajectories, target), output_dir / "scene3d.png")]
    # the scene pictures are drawn by a child process while this one computes the gain plan
    # (both take seconds on a long file); sequentially where processes cannot be forked
    child = _fork_drawing(pictures) if target is not None else None
    if child is None:
        for make, path in pictures:
            _save_png(make(), path)
    written: list[Path] = [path for _, path in pictures]
    if target is not None:
        from renderer.jax_setup import configure_jax
        from renderer.plan import build_gain_plan

        configure_jax()
        plan = build_gain_plan(items, target, sample_rate, source=str(input_path),
                               n_tracks=n_file_tracks)
        fig = plot_gain_heatmap(items, target, sample_rate, max(duration, 1.0 / sample_rate),
                                n_tracks=n_file_tracks, plan=plan)
        safe = "".join(c if c.isalnum() or c in "+-._" else "_" for c in layout)
        written.append(_save_png(fig, output_dir / f"gains_{safe}.png"))
    if child is not None:
        _wait_for_drawing(child, output_dir)
    if animate:
        written.append(animate_scene(trajectories, target, output_dir / "scene.gif", fps=10,
                                     duration_s=duration if frames else None))
    return written
