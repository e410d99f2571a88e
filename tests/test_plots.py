"""renderer.plots: the data drawn in the figures equals hand-derived positions, timings and
gains (BS.2127 block timing and point-source panning), read back from the artists."""

import math

import matplotlib
import numpy as np
import pytest
from matplotlib.collections import LineCollection, PathCollection

matplotlib.use("Agg")

from adm.builder import AdmBuilder, ObjectsBlockSpec, write_adm_bwf  # noqa: E402
from adm.items import select_items  # noqa: E402
from adm.model import AdmError, CartesianPosition  # noqa: E402
from layouts import get_layout  # noqa: E402
from renderer import plots  # noqa: E402
from renderer.render import RenderError  # noqa: E402

SR = 1000  # 1 ms per sample: block times in seconds map to whole samples

# Hand-derived (BS.2127 clause 7.2) times and azimuths of the polar object "fly":
# block 1 holds 0 deg for [0, 1) s; block 2 has no jumpPosition: it ramps from 0 to 60 deg over
# its whole second; block 3 jumps with a 0.25 s interpolation: ramp 60 -> -30 deg over
# [2, 2.25) s, then holds; block 4 jumps with interpolationLength 0: a step at 3 s.
FLY_TIMES = [0.0, 1.0, 2.0, 2.25, 3.0, 3.0, 4.0]
FLY_AZIMUTHS = [0.0, 0.0, 60.0, -30.0, -30.0, 90.0, 90.0]
FLY_ELEVATIONS = [0.0, 0.0, 0.0, 30.0, 30.0, 0.0, 0.0]


def scene():
    b = AdmBuilder("Plots")
    b.add_object("fly", [
        ObjectsBlockSpec((0.0, 0.0), rtime=0, duration=1),
        ObjectsBlockSpec((60.0, 0.0), rtime=1, duration=1),
        ObjectsBlockSpec((-30.0, 30.0), rtime=2, duration=1, jump=True,
                         interpolation_length="0.25"),
        ObjectsBlockSpec((90.0, 0.0), rtime=3, duration=1, jump=True, interpolation_length=0),
    ], track_index=1)
    # cartesian, with a gap between 1 s and 2 s (no block: silent, a break in the line)
    b.add_object("box", [
        ObjectsBlockSpec(CartesianPosition(0.0, 1.0, 0.0), rtime=0, duration=1),
        ObjectsBlockSpec(CartesianPosition(1.0, 0.0, 0.5), rtime=2, duration=1),
    ], track_index=2)
    return b.build()


@pytest.fixture(scope="module")
def trajectories():
    doc, _ = scene()
    return plots.object_trajectories(doc, SR)


def test_object_trajectories_follow_block_timing(trajectories):
    fly, box = trajectories
    assert (fly.name, fly.cartesian, box.name, box.cartesian) == ("fly", False, "box", True)
    np.testing.assert_allclose(fly.times, FLY_TIMES)
    np.testing.assert_allclose(fly.coords[:, 0], FLY_AZIMUTHS)
    np.testing.assert_allclose(fly.coords[:, 1], FLY_ELEVATIONS)
    np.testing.assert_allclose(fly.coords[:, 2], 1.0)
    # the gap is a NaN row; the second block does not ramp (it does not meet the first)
    assert np.isnan(box.coords[2]).all()
    finite = ~np.isnan(box.coords[:, 0])
    np.testing.assert_allclose(box.times[finite], [0.0, 1.0, 2.0, 3.0])
    np.testing.assert_allclose(box.coords[finite], [[0, 1, 0], [0, 1, 0], [1, 0, 0.5],
                                                    [1, 0, 0.5]])
    # positions between points: halfway through block 2's ramp is 30 deg
    np.testing.assert_allclose(fly.at(np.array([1.5, 2.125, 3.5]))[:, 0], [30.0, 15.0, 90.0])
    assert np.isnan(box.at(np.array([1.5]))).all()


def test_ramp_starting_between_samples():
    # at 48 kHz, a block starting at 1/3 s + 0.1 ms starts between samples: the ramp starts at
    # the next sample with the interpolation factor of that sample
    b = AdmBuilder("Fractional")
    b.add_object("o", [ObjectsBlockSpec((0.0, 0.0), rtime=0, duration="1/3"),
                       ObjectsBlockSpec((90.0, 0.0), rtime="1/3", duration="2/3")],
                 track_index=1)
    doc, _ = b.build()
    (t,) = plots.object_trajectories(doc, 3000)
    # samples: block 2 spans [1000, 3000); ramp from 0 to 90 deg over it, then the hold end
    np.testing.assert_allclose(t.times, [0.0, 1000 / 3000, 1.0])
    np.testing.assert_allclose(t.coords[:, 0], [0.0, 0.0, 90.0])


def _lines_by_ylabel(fig, name):
    return {ax.get_ylabel(): line for ax in fig.axes for line in ax.get_lines()
            if line.get_label() == name}


def test_plot_trajectories_draws_the_block_positions(trajectories):
    fig = plots.plot_trajectories(trajectories)
    fly = _lines_by_ylabel(fig, "fly")
    az = fly["azimuth (°)"]
    np.testing.assert_allclose(az.get_xdata(), FLY_TIMES)
    np.testing.assert_allclose(az.get_ydata(), FLY_AZIMUTHS)
    np.testing.assert_allclose(fly["elevation (°)"].get_ydata(), FLY_ELEVATIONS)
    # the jump at 3 s: two points at the same time, -30 then 90 deg
    x, y = np.asarray(az.get_xdata()), np.asarray(az.get_ydata())
    step = np.flatnonzero(np.diff(x) == 0)
    assert len(step) == 1 and x[step[0]] == 3.0 and (y[step[0]], y[step[0] + 1]) == (-30, 90)
    # the 0.25 s ramp ends at 2.25 s on the target
    assert (x[3], y[3]) == (2.25, -30.0)
    box = _lines_by_ylabel(fig, "box")
    assert set(box) == set(plots._CARTESIAN_LABELS)
    np.testing.assert_allclose(box[plots._CARTESIAN_LABELS[2]].get_ydata(),
                               [0, 0, np.nan, 0.5, 0.5])
    legend_texts = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend_texts == ["fly", "box"]
    assert any("time (s)" == ax.get_xlabel() for ax in fig.axes)


def test_legend_stays_short_with_many_objects():
    times = np.array([0.0, 1.0])
    many = [plots.Trajectory(f"obj {k}", f"AC_{k}", True, times, np.zeros((2, 3)))
            for k in range(128)]
    fig = plots.plot_trajectories(many)
    texts = [t.get_text() for t in fig.legends[0].get_texts()]
    assert len(texts) == plots.MAX_LEGEND_ENTRIES
    assert texts[-1] == f"+ {128 - plots.MAX_LEGEND_ENTRIES + 1} more objects"


def _project(az, el):
    a, e = math.radians(az), math.radians(el)
    return (-math.sin(a) * math.cos(e), math.cos(a) * math.cos(e), math.sin(e))


def test_plot_layout_speaker_positions():
    layout = get_layout("7.1.4")
    fig = plots.plot_layout(layout)
    ax_top, ax_side = fig.axes[:2]
    expected = np.array([_project(s.azimuth, s.elevation) for s in layout.speakers])
    lfe = np.array([s.is_lfe for s in layout.speakers])
    for ax, dims in ((ax_top, [0, 1]), (ax_side, [1, 2])):
        speakers, lfes = [c for c in ax.collections if isinstance(c, PathCollection)]
        np.testing.assert_allclose(speakers.get_offsets(), expected[~lfe][:, dims], atol=1e-12)
        np.testing.assert_allclose(lfes.get_offsets(), expected[lfe][:, dims], atol=1e-12)
        assert len(lfes.get_facecolors()) == 0 or lfes.get_facecolors()[0][3] == 0  # hollow
    labels = {t.get_text() for t in ax_top.texts}
    assert {"M+000", "LFE1", "U+045", "M-135"} <= set("/".join(labels).split("/"))
    # the default screen (58 deg wide at distance 1) spans X = +-tan(29 deg) at Y = 1
    screen = [line for line in ax_top.get_lines() if line.get_label() == "screen"][0]
    np.testing.assert_allclose(sorted(screen.get_xdata()), [-math.tan(math.radians(29)),
                                                            math.tan(math.radians(29))])
    np.testing.assert_allclose(screen.get_ydata(), [1.0, 1.0])
    fig_no_screen = plots.plot_layout(layout, screen=None)
    assert not [ln for ln in fig_no_screen.axes[0].get_lines() if ln.get_label() == "screen"]


def test_plot_paths_vertices_are_the_positions(trajectories):
    layout = get_layout("0+5+0")
    fig = plots.plot_paths(trajectories, layout)
    ax_top, ax_side = fig.axes[:2]
    (paths,) = [c for c in ax_top.collections if isinstance(c, LineCollection)]
    points = np.concatenate(paths.get_segments())
    # the moving parts of "fly": 0 -> 60 deg, then 60 -> -30 deg (elevation 30); the jump to
    # 90 deg (1 unit away) breaks the path. "box" does not move within a block.
    expected = np.array([_project(0, 0), _project(60, 0), _project(-30, 30)])[:, :2]
    for p in expected:
        assert np.min(np.linalg.norm(points - p, axis=1)) < 1e-12
    assert np.min(np.linalg.norm(points - np.array(_project(90, 0)[:2]), axis=1)) > 0.5
    times = paths.get_array()
    assert times.min() >= 1.0 and times.max() <= 2.25  # ramps happen in [1, 2.25] s
    assert np.all(np.diff(times) > 0)
    assert fig.axes[-1].get_ylabel() == "time (s)"  # the colour bar


def test_plot_scene_3d(trajectories):
    fig = plots.plot_scene_3d(trajectories, get_layout("7.1.4"))
    ax = fig.axes[0]
    (paths,) = [c for c in ax.collections if isinstance(c, LineCollection)]
    points = np.concatenate(paths._segments3d)
    assert np.min(np.linalg.norm(points - np.array(_project(-30, 30)), axis=1)) < 1e-12


def gain_scene():
    b = AdmBuilder("Gains")
    b.add_object("mover", [
        ObjectsBlockSpec((30.0, 0.0), rtime=0, duration=1),   # on M+030
        ObjectsBlockSpec((15.0, 0.0), rtime=1, duration=1, jump=True, interpolation_length=0),
        ObjectsBlockSpec((-110.0, 0.0), rtime=2, duration=1, jump=True, interpolation_length=0),
    ], track_index=1)
    b.add_object("centre", [ObjectsBlockSpec((0.0, 0.0), rtime=0, duration=3)], track_index=2)
    return b.build()


def test_gains_over_time_and_heatmap():
    doc, _ = gain_scene()
    items = select_items(doc)
    layout = get_layout("0+5+0")  # M+030 M-030 M+000 LFE1 M+110 M-110
    g = plots.plan_gains_over_time(items, layout, 8000, [0.5, 1.5, 2.5])
    assert g.shape == (3, 2, 6)
    half = 1 / math.sqrt(2)  # midway between two loudspeakers: equal gains, power 1
    np.testing.assert_allclose(g[:, 0], [[1, 0, 0, 0, 0, 0], [half, 0, half, 0, 0, 0],
                                         [0, 0, 0, 0, 0, 1]], atol=1e-5)
    np.testing.assert_allclose(g[:, 1], [[0, 0, 1, 0, 0, 0]] * 3, atol=1e-5)

    fig = plots.plot_gain_heatmap(items, layout, 8000, 3.0, resolution_s=0.1, tracks=[0])
    images = [im for ax in fig.axes for im in ax.get_images()]
    assert len(images) == 2
    mix, mover = (np.asarray(im.get_array()) for im in images)
    assert mix.shape == (6, 30)
    assert tuple(t.get_text() for t in fig.axes[0].get_yticklabels()) == layout.channel_names
    col = {0.55: 5, 1.55: 15, 2.55: 25}  # column k: time (k + 0.5) * 0.1 s
    # whole mix = 10 log10(sum over tracks of g^2)
    three_db = 10 * math.log10(0.5)
    np.testing.assert_allclose(mix[:, col[0.55]][[0, 2]], [0.0, 0.0], atol=1e-4)
    np.testing.assert_allclose(mix[0, col[1.55]], three_db, atol=1e-4)
    np.testing.assert_allclose(mix[2, col[1.55]], 10 * math.log10(1.5), atol=1e-4)
    np.testing.assert_allclose(mix[5, col[2.55]], 0.0, atol=1e-4)
    assert mix[3].max() < -60 and mix[1, col[0.55]] < -60
    np.testing.assert_allclose(mover[[0, 2], col[1.55]], [three_db, three_db], atol=1e-4)
    assert mover[2, col[0.55]] < -60  # the centre object is not in the per-track panel
    assert "power sum" in fig.axes[0].get_title()
    assert "mover" in fig.axes[1].get_title()
    assert any(ax.get_ylabel() == "gain (dB)" for ax in fig.axes)


def test_interaural_level():
    sr = 8000
    t = np.arange(sr) / sr
    sine = np.sin(2 * np.pi * 500 * t)
    fig = plots.plot_interaural_level(np.stack([sine, 0.5 * sine], axis=1), sr, window_s=0.05)
    ax_level, ax_ild = fig.axes[:2]
    left, right = ax_level.get_lines()[:2]
    assert len(left.get_xdata()) == 20
    np.testing.assert_allclose(left.get_ydata(), 10 * math.log10(0.5), atol=1e-6)
    np.testing.assert_allclose(right.get_ydata(), 10 * math.log10(0.125), atol=1e-6)
    np.testing.assert_allclose(ax_ild.get_lines()[0].get_ydata(), 20 * math.log10(2), atol=1e-6)
    np.testing.assert_allclose(ax_ild.get_lines()[0].get_xdata()[:2], [0.025, 0.075])


def test_loudness_over_time():
    times = np.array([0.4, 0.5, 0.6])
    lufs = np.array([-np.inf, -24.0, -22.5])
    fig = plots.plot_loudness_over_time({"7.1.4": (times, lufs)}, targets={"7.1.4": -23.0})
    ax = fig.axes[0]
    curve = [ln for ln in ax.get_lines() if ln.get_label() == "7.1.4"][0]
    np.testing.assert_allclose(curve.get_ydata(), [np.nan, -24.0, -22.5])
    target = [ln for ln in ax.get_lines() if "target" in ln.get_label()][0]
    assert target.get_linestyle() == "--" and tuple(target.get_ydata()) == (-23.0, -23.0)
    assert ax.get_ylabel() == "loudness (LUFS)"


def test_animate_scene_gif(tmp_path, trajectories):
    from PIL import Image

    path = plots.animate_scene(trajectories, get_layout("0+5+0"), tmp_path / "scene.gif",
                               fps=5, duration_s=2.0)
    with Image.open(path) as gif:
        assert gif.n_frames == 10  # frames at 0, 0.2, ..., 1.8 s
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scene.gif"]
    with pytest.raises(RenderError, match="unsupported animation format"):
        plots.animate_scene(trajectories, None, tmp_path / "scene.avi")


def write_scene(path):
    doc, chna = scene()
    write_adm_bwf(path, np.zeros((4 * 8000, 2), np.float32), 8000, doc, chna)


def test_plot_file(tmp_path):
    from PIL import Image

    src = tmp_path / "scene.wav"
    write_scene(src)
    out = tmp_path / "plots"
    written = plots.plot_file(src, out, layout="5.1", animate=True)
    names = [p.name for p in written]
    assert names == ["layout.png", "trajectories.png", "paths.png", "scene3d.png",
                     "gains_5.1.png", "scene.gif"]
    assert sorted(p.name for p in out.iterdir()) == sorted(names)  # no temporary files left
    for p in written[:-1]:
        with Image.open(p) as im:
            assert im.format == "PNG" and im.size[0] > 400
    with Image.open(written[-1]) as gif:
        assert gif.n_frames == 40  # 4 s at 10 frames per second
    assert [p.name for p in plots.plot_file(src, tmp_path / "bare")] == [
        "trajectories.png", "paths.png", "scene3d.png"]


def test_plot_file_errors(tmp_path):
    with pytest.raises(RenderError, match="missing.wav.*does not exist"):
        plots.plot_file(tmp_path / "missing.wav", tmp_path / "out")
    plain = tmp_path / "plain.wav"
    from adm.bw64 import Bw64Writer

    with Bw64Writer(plain, 8000, 1) as w:
        w.write(np.zeros((100, 1), np.float32))
    with pytest.raises(AdmError, match="plain.wav.*no chna"):
        plots.plot_file(plain, tmp_path / "out")
    src = tmp_path / "scene.wav"
    write_scene(src)
    (tmp_path / "file").write_text("x")
    with pytest.raises(RenderError, match="not a folder"):
        plots.plot_file(src, tmp_path / "file")
