"""Tests of the allocentric panner (BS.2127 clause 7.3, cartesian objects).

Expected values are computed here from the standard's one-dimensional law: between grid values
a < b, t = (v - a) / (b - a), gains cos(t pi/2) and sin(t pi/2); clamped at the ends; the
loudspeaker gain is the product of its plane (Z), row (Y) and column (X) gains.
"""

from __future__ import annotations

from dataclasses import replace
from functools import cache

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from layouts import LayoutError, get_layout
from renderer.allocentric import (
    AllocentricPanner,
    allocentric_exclusion,
    allocentric_gains,
    configure_allocentric,
)

LAYOUTS = ["0+2+0", "0+5+0", "2+5+0", "4+5+0", "4+5+1", "3+7+0", "4+9+0", "9+10+3", "0+7+0",
           "4+7+0", "5.1.2", "7.1.2", "9.1.6"]
TOL = 2e-6  # float32
_BATCH = 512  # positions are padded to this many so that each layout compiles once
_jit_gains = jax.jit(allocentric_gains)


@cache
def _panner(layout_name: str) -> AllocentricPanner:
    return configure_allocentric(get_layout(layout_name))


def _gains(layout_name: str, positions, excluded=None) -> tuple[AllocentricPanner, np.ndarray]:
    """(panner, (n, N) gains) for (n, 3) positions, n <= _BATCH."""
    panner = _panner(layout_name)
    pos = np.asarray(positions, dtype=np.float32).reshape(-1, 3)
    n = len(pos)
    padded = np.zeros((_BATCH, 3), dtype=np.float32)
    padded[:n] = pos
    if excluded is None:  # nothing excluded (always passing a mask saves compilations)
        excluded = np.zeros(panner.n_speakers, dtype=bool)
    excl = np.broadcast_to(np.asarray(excluded, dtype=bool), (_BATCH, panner.n_speakers))
    g = _jit_gains(panner, padded, excl)
    return panner, np.asarray(g)[:n]


def _pan(v: float, a: float, b: float) -> tuple[float, float]:
    """Hand evaluation of the one-dimensional law between a and b."""
    t = (min(max(v, a), b) - a) / (b - a)
    return np.cos(t * np.pi / 2), np.sin(t * np.pi / 2)


def _by_name(panner: AllocentricPanner, gains: np.ndarray) -> dict[str, float]:
    return {n: float(g) for n, g in zip(panner.names, gains, strict=True)}


@pytest.mark.parametrize("name", LAYOUTS)
def test_at_speaker_positions(name):
    layout = get_layout(name)
    allo = dict(layout.allocentric_positions)
    names = [s.name for s in layout.speakers if not s.is_lfe]
    panner, g = _gains(name, [allo[n] for n in names])
    assert panner.names == tuple(names)
    np.testing.assert_allclose(g, np.eye(len(names)), atol=TOL)


def test_stereo_front_centre():
    # 0+2+0: one plane, one row, X grid (-1, 1); X=0 is halfway: t = 1/2
    _, g = _gains("0+2+0", [[0.0, 1.0, 0.0], [0.5, 1.0, 0.0], [0.5, -0.3, 0.7]])
    s = np.sqrt(0.5)
    np.testing.assert_allclose(g[0], [s, s], atol=TOL)
    # X=0.5: t = 3/4, M+030 (X=-1) gets cos(3 pi/8), M-030 (X=1) sin(3 pi/8); Y and Z do not
    # matter with a single row and plane
    expected = [np.cos(3 * np.pi / 8), np.sin(3 * np.pi / 8)]
    np.testing.assert_allclose(g[1], expected, atol=TOL)
    np.testing.assert_allclose(g[2], expected, atol=TOL)


def test_hand_case_4_7_0():
    x, y, z = -0.25, 0.5, 0.3
    panner, g = _gains("4+7+0", [[x, y, z]])
    got = _by_name(panner, g[0])
    mid, top = _pan(z, 0.0, 1.0)
    # middle plane rows Y = -1 (M+135 M-135), 0 (M+090 M-090), 1 (M+030 M+000 M-030)
    side_row, front_row = _pan(y, 0.0, 1.0)
    l30, c = _pan(x, -1.0, 0.0)
    l90, r90 = _pan(x, -1.0, 1.0)
    # top plane rows Y = -1 (U+135 U-135), 1 (U+045 U-045)
    rear_top, front_top = _pan(y, -1.0, 1.0)
    lu, ru = _pan(x, -1.0, 1.0)
    expected = {
        "M+030": mid * front_row * l30, "M+000": mid * front_row * c, "M-030": 0.0,
        "M+090": mid * side_row * l90, "M-090": mid * side_row * r90,
        "M+135": 0.0, "M-135": 0.0,
        "U+045": top * front_top * lu, "U-045": top * front_top * ru,
        "U+135": top * rear_top * lu, "U-135": top * rear_top * ru,
    }
    assert got == pytest.approx(expected, abs=TOL)


def test_hand_case_9_1_6_wides():
    # between the wide row (Y = tan 22.5 deg) and the front row (Y = 1), on the left wall
    yw = 0.414214
    panner, g = _gains("9.1.6", [[-1.0, 0.7, 0.0]])
    got = _by_name(panner, g[0])
    lw, left = _pan(0.7, yw, 1.0)
    assert got["M+060"] == pytest.approx(lw, abs=TOL)
    assert got["M+030"] == pytest.approx(left, abs=TOL)
    assert sum(v for k, v in got.items() if k not in ("M+060", "M+030")) == pytest.approx(0.0)


def test_clamped_outside_extent():
    # beyond the cube or below the lowest plane: same as the nearest edge
    _, g = _gains("4+7+0", [[1.5, -2.0, -1.0], [1.0, -1.0, 0.0], [0.2, 0.3, 5.0],
                            [0.2, 0.3, 1.0]])
    np.testing.assert_allclose(g[0], g[1], atol=TOL)
    np.testing.assert_allclose(g[2], g[3], atol=TOL)


@pytest.mark.parametrize("name", LAYOUTS)
def test_power_normalised(name):
    pts = np.random.default_rng(1).uniform(-1.2, 1.2, size=(400, 3))
    _, g = _gains(name, pts)
    assert np.all(g >= 0.0)
    np.testing.assert_allclose(np.sum(g**2, axis=-1), 1.0, atol=1e-5)


def _mirror(name: str) -> str:
    if name[-3:] in ("000", "180"):
        return name
    return name.replace("+", "#").replace("-", "+").replace("#", "-")


@pytest.mark.parametrize("name", LAYOUTS)
def test_mirror_symmetry(name):
    pts = np.random.default_rng(2).uniform(-1.0, 1.0, size=(200, 3))
    panner, g = _gains(name, pts)
    _, gm = _gains(name, pts * [-1.0, 1.0, 1.0])
    perm = [panner.names.index(_mirror(n)) for n in panner.names]
    np.testing.assert_allclose(gm[:, perm], g, atol=TOL)


def test_monotonic_along_axes():
    xs = np.linspace(-1.0, 1.0, 101)
    panner, g = _gains("4+7+0", np.stack([xs, np.full_like(xs, 0.8), np.full_like(xs, 0.4)], -1))
    left = g[:, panner.names.index("M+030")]
    right = g[:, panner.names.index("M-030")]
    assert np.all(np.diff(left) <= 1e-7) and np.all(np.diff(right) >= -1e-7)
    assert left[0] > 0 and left[-1] == 0.0
    zs = np.linspace(-0.2, 1.2, 57)
    panner, g = _gains("9+10+3", np.stack([np.full_like(zs, 0.1), np.full_like(zs, 0.2), zs], -1))
    top = np.array([n[0] in "UT" for n in panner.names])
    top_power = np.sum(g[:, top] ** 2, axis=-1)
    assert np.all(np.diff(top_power) >= -1e-6)
    np.testing.assert_allclose(top_power[zs >= 1.0], 1.0, atol=TOL)
    np.testing.assert_allclose(top_power[zs <= 0.0], 0.0, atol=TOL)


def test_batch_shape_and_jit():
    panner = _panner("7.1.2")
    # any leading batch shape (traced only: no compilation needed to check shapes)
    out = jax.eval_shape(allocentric_gains, panner, jax.ShapeDtypeStruct((2, 5, 3), jnp.float32))
    assert out.shape == (2, 5, 9)
    out = jax.eval_shape(allocentric_gains, panner, jax.ShapeDtypeStruct((3,), jnp.float32))
    assert out.shape == (9,)
    # None and an all-False mask are the same panner
    _, g = _gains("7.1.2", [[0.0, 1.0, 0.0], [0.3, 0.2, 0.1]])
    g_none = _jit_gains(panner, jnp.asarray([[0.0, 1.0, 0.0], [0.3, 0.2, 0.1]] * 256))[:2]
    np.testing.assert_allclose(g_none, g, atol=1e-7)
    np.testing.assert_allclose(g[0, panner.names.index("M+000")], 1.0, atol=TOL)
    # the panner is a pytree of arrays: it goes through jit as an argument
    leaves = jax.tree_util.tree_leaves(panner)
    assert all(isinstance(leaf, jax.Array) for leaf in leaves)


def test_exclusion_row_rule():
    panner = _panner("4+7+0")
    n = panner.n_speakers
    excl = np.zeros(n, dtype=bool)
    excl[panner.names.index("M+090")] = True
    got = np.asarray(allocentric_exclusion(panner, excl))
    # a side loudspeaker that is not in a corner takes its whole row with it
    assert {panner.names[i] for i in np.flatnonzero(got)} == {"M+090", "M-090"}
    excl = np.zeros(n, dtype=bool)
    excl[panner.names.index("M+030")] = True  # corner: no widening
    assert np.array_equal(np.asarray(allocentric_exclusion(panner, excl)), excl)
    # excluding everything excludes nothing
    assert not np.any(np.asarray(allocentric_exclusion(panner, np.ones(n, dtype=bool))))


def test_exclusion_gains():
    # 0+5+0 without M+000: the front row is (M+030, M-030), so X=0 is halfway between them
    panner = _panner("0+5+0")
    excl = np.array([n == "M+000" for n in panner.names])
    _, g = _gains("0+5+0", [0.0, 1.0, 0.0], excl)
    got = _by_name(panner, g[0])
    s = np.sqrt(0.5)
    assert got == pytest.approx({"M+030": s, "M-030": s, "M+000": 0.0, "M+110": 0.0,
                                 "M-110": 0.0}, abs=TOL)
    # 4+7+0 without the top layer: Z is clamped to the middle plane
    panner = _panner("4+7+0")
    excl = np.array([n.startswith("U") for n in panner.names])
    _, g_ex = _gains("4+7+0", [0.3, -0.2, 0.9], excl)
    _, g_mid = _gains("4+7+0", [0.3, -0.2, 0.0])
    np.testing.assert_allclose(g_ex, g_mid, atol=TOL)


def test_missing_allocentric_position():
    layout = replace(get_layout("0+5+0"), name="custom", allocentric_positions=())
    with pytest.raises(LayoutError, match="custom.*no allocentric position"):
        configure_allocentric(layout)
