"""Tests of the allocentric extent panner (BS.2127 clause 7.3, cartesian objects with a size).

Expected values come from the standard's equations evaluated by hand for a stereo layout, from
the point-source law (size 0), and from energy and symmetry laws.
"""

from __future__ import annotations

from functools import cache

import jax
import numpy as np
import pytest

from layouts import get_layout
from renderer.allocentric import allocentric_exclusion, allocentric_gains
from renderer.allocentric_extent import (
    AllocentricExtentPanner,
    allocentric_extent_gains_batched,
    configure_allocentric_extent,
)

TOL = 2e-6  # float32
_CHUNK = 256  # one compiled shape per layout
_jit_point_gains = jax.jit(allocentric_gains)


@cache
def _panner(name: str) -> AllocentricExtentPanner:
    return configure_allocentric_extent(get_layout(name))


def _gains(name, positions, width, height, depth, excluded=None) -> np.ndarray:
    positions = np.asarray(positions, dtype=np.float64).reshape(-1, 3)
    n = len(positions)
    sizes = [np.broadcast_to(np.asarray(s, dtype=np.float64), (n,)) for s in (width, height, depth)]
    return allocentric_extent_gains_batched(_panner(name), positions, *sizes, excluded=excluded,
                                            chunk=_CHUNK)


def _random_cases(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(n, 3) positions (a third on a face of the cube) and (n, 3) sizes (half equal)."""
    rng = np.random.default_rng(seed)
    pos = rng.uniform(-1.0, 1.0, (n, 3))
    k = n // 3
    pos[np.arange(k), rng.integers(0, 3, k)] = rng.choice([-1.0, 1.0], k)
    size = rng.uniform(0.0, 1.0, (n, 3))
    equal = rng.random(n) < 0.5
    size[equal] = size[equal, :1]
    return pos, size


# layouts: stereo (a line), 5.0 (a plane), 7.1.4 (two planes), 22.2 (three planes)
LAYOUTS = ["0+2+0", "0+5+0", "4+7+0", "9+10+3"]


@pytest.mark.parametrize("name", LAYOUTS)
def test_size_zero_is_point_source(name):
    pos, size = _random_cases(200, 1)
    size[::2] = 0.0
    g = _gains(name, pos, size[:, 0], size[:, 1], size[:, 2])
    point = np.asarray(_jit_point_gains(_panner(name).point, np.asarray(pos, np.float32)))
    np.testing.assert_array_equal(g[::2], point[::2])  # exactly the point panner
    assert np.max(np.abs(g[1::2] - point[1::2])) > 0.1  # sized sources differ


@pytest.mark.parametrize("name", LAYOUTS)
def test_power_normalised(name):
    # BS.2127 normalises the final gain vector to unit power
    pos, size = _random_cases(200, 2)
    g = _gains(name, pos, size[:, 0], size[:, 1], size[:, 2])
    assert np.all(g >= 0.0)
    np.testing.assert_allclose(np.sum(g**2, axis=1), 1.0, atol=1e-5)


def _mirror_index(panner: AllocentricExtentPanner) -> np.ndarray:
    pos = np.asarray(panner.point.positions)
    mirrored = pos * [-1.0, 1.0, 1.0]
    return np.array([int(np.flatnonzero(np.all(pos == m, axis=1))[0]) for m in mirrored])


@pytest.mark.parametrize("name", LAYOUTS)
def test_mirror_symmetry(name):
    pos, size = _random_cases(128, 3)
    flipped = pos * [-1.0, 1.0, 1.0]
    g = _gains(name, np.concatenate([pos, flipped]), *np.concatenate([size, size]).T)
    mirror = _mirror_index(_panner(name))
    np.testing.assert_allclose(g[128:], g[:128][:, mirror], atol=TOL)


@pytest.mark.parametrize("name", LAYOUTS)
def test_full_size_at_centre(name):
    g = _gains(name, [[0.0, 0.0, 0.0]], 1.0, 1.0, 1.0)[0]
    assert np.all(g > 0.25 / np.sqrt(len(g)))  # every loudspeaker plays
    np.testing.assert_allclose(g, g[_mirror_index(_panner(name))], atol=TOL)
    assert np.sum(g**2) == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize(("name", "speaker"), [("4+7+0", "M+030"), ("0+5+0", "M-110"),
                                               ("9+10+3", "U+045")])
def test_growing_size_spreads(name, speaker):
    # a source on a loudspeaker: as the size grows, that loudspeaker's gain falls and the
    # energy spreads over more loudspeakers (participation ratio 1 / sum g^4 grows)
    panner = _panner(name)
    k = panner.names.index(speaker)
    sizes = np.linspace(0.0, 1.0, 41)
    at = np.tile(np.asarray(panner.point.positions)[k], (len(sizes), 1))
    g = _gains(name, at, sizes, sizes, sizes)
    assert g[0, k] == pytest.approx(1.0, abs=TOL)
    assert np.all(np.diff(g[:, k]) <= 1e-6)
    participation = 1.0 / np.sum(g**4, axis=1)
    assert np.all(np.diff(participation) >= -1e-4)
    assert participation[-1] > 4.0


def _scale(size: float) -> float:
    return float(np.interp(min(size, 1.0), [0, 0.2, 0.5, 0.75, 1.0], [0, 0.3, 1.0, 1.8, 2.8]))


def _stereo_by_hand(x, y, z, width, height, depth) -> np.ndarray:
    """BS.2127 allocentric extent for 0+2+0 (M+030 at X=-1, M-030 at X=1; Y=1, Z=0), written
    out for this layout: one row and one plane, so the Y and Z virtual gains are 1; fewer than
    three planes, so Z uses 20 virtual values in [0, 1]; a line, so s_eff = s_x and mu = h^3."""
    vx = np.linspace(-1.0, 1.0, 40)
    vz = np.linspace(0.0, 1.0, 20)
    z = max(z, 0.0)
    sx = max(_scale(width), 2 / 39)
    sy = max(_scale(height), 2 / 39)
    sz = max(_scale(depth), 2 / 19)
    s_eff = sx
    p = 6.0 if s_eff <= 0.5 else 6.0 - 4.0 * (s_eff - 0.5) / 2.3

    def weight(v, c, s):
        return 10.0 ** -np.minimum((1.5 * (v - c) / s) ** 4, 6.5)

    wx, wy = weight(vx, x, 2 * sx), weight(vx, y, 2 * sy)
    wz = weight(vz, z, sz) * np.cos(3 * np.pi * vz / 7)
    t = (vx + 1) / 2
    g_left, g_right = np.cos(t * np.pi / 2), np.sin(t * np.pi / 2)
    fx = np.array([np.sum((g_left * wx) ** p), np.sum((g_right * wx) ** p)])
    fy, fz = np.sum(wy**p), np.sum(wz**p)
    fx, fy, fz = (np.where(f < 10.0**-6.5, 0.0, f) for f in (fx, fy, fz))  # -130 dB floor
    inside = fx * fy * fz
    inside /= np.linalg.norm(inside)
    d = min(x + 1, 1 - x)
    if d >= 2 * sx and d >= 0.4:
        n = max(2 * sx, 0.4)
        h = (n**3 / (0.32 * sx)) ** (1 / 3)
    else:
        h = (d / 2 * (d / 0.4) ** 2) ** (1 / 3)
    mu = h**3
    b_x = np.array([wx[0] ** p, wx[-1] ** p])  # left face -> M+030, right face -> M-030
    bound = b_x * fy * fz + fx * (wy[0] ** p + wy[-1] ** p) * fz + fx * fy * (wz[0] ** p
                                                                              + wz[-1] ** p)
    g_size = (bound + mu * inside) ** (1 / p)
    g_size /= np.linalg.norm(g_size)
    if s_eff < 0.2:
        alpha, beta = np.cos(s_eff * np.pi / 0.4), np.sin(s_eff * np.pi / 0.4)
    else:
        alpha, beta = 0.0, 1.0
    tp = (x + 1) / 2
    total = alpha * np.array([np.cos(tp * np.pi / 2), np.sin(tp * np.pi / 2)]) + beta * g_size
    return total / np.linalg.norm(total)


@pytest.mark.parametrize("case", [
    (0.3, 0.5, 0.2, 0.4, 0.4, 0.4),  # Atmos-like equal sizes
    (-1.0, 0.0, 0.0, 0.1, 0.1, 0.1),  # on the left wall, small: cross-faded with the point
    (0.6, -0.7, -0.5, 0.9, 0.2, 0.6),  # large, unequal, below the floor
    (0.0, 1.0, 1.0, 1.0, 1.0, 1.0),  # maximal size
    (0.9, 0.0, 0.5, 0.05, 0.7, 0.0),  # near the wall: the other branch of h
])
def test_stereo_hand_computed(case):
    g = _gains("0+2+0", [case[:3]], *case[3:])[0]
    np.testing.assert_allclose(g, _stereo_by_hand(*case), atol=TOL)


def test_exclusion_pans_over_remaining():
    # 4+7+0 with its upper layer excluded pans like 0+7+0 (same allocentric positions)
    full, mid = _panner("4+7+0"), _panner("0+7+0")
    upper = np.array([n.startswith("U") for n in full.names])
    excluded = np.asarray(jax.jit(allocentric_exclusion)(full.point, upper))
    np.testing.assert_array_equal(excluded, upper)
    pos, size = _random_cases(200, 4)
    g = _gains("4+7+0", pos, *size.T, excluded=np.tile(excluded, (len(pos), 1)))
    assert np.all(g[:, upper] == 0.0)
    columns = [full.names.index(n) for n in mid.names]
    np.testing.assert_allclose(g[:, columns], _gains("0+7+0", pos, *size.T), atol=TOL)


def test_chunking_and_empty():
    pos, size = _random_cases(300, 5)  # more than one chunk, last one padded
    g = _gains("0+5+0", pos, *size.T)
    g_single = np.stack([_gains("0+5+0", pos[i:i + 1], *size[i])[0] for i in (0, 150, 299)])
    np.testing.assert_array_equal(g[[0, 150, 299]], g_single)
    assert _gains("0+5+0", np.zeros((0, 3)), [], [], []).shape == (0, 5)
