"""Point source panner (ITU-R BS.2127-1 clause 6.1).

The panner is configured once per loudspeaker layout with numpy (:func:`configure_point_source`,
BS.2127 6.1.3) into a pytree of arrays (:class:`PointSourcePanner`). Gains are then a pure JAX
function of those arrays and of the source directions (:func:`point_source_gains`), evaluated
for any number of directions at once.

How the configured arrays are organised
---------------------------------------
The loudspeaker sphere is divided into *regions* (BS.2127 6.1.2): VBAP triangles (6.1.2.1),
quadrilaterals with bilinear panning (6.1.2.2) and virtual n-gons (6.1.2.3), which are a fan of
triangles around a virtual loudspeaker directly above or below the listener whose gain is spread
equally in power over the n-gon's loudspeakers. The layout is first extended with extra virtual
loudspeakers above/below the mid layer where a height layer is missing or narrow (6.1.3.1);
their gains are added to the mid-layer loudspeaker they copy.

Every region has up to four *slots* (its vertices). For a direction, each region computes its
slot gains; the first region in the standard's order whose gains are all non-negative (within a
small tolerance) is chosen, and its slot gains are mapped to the outputs by a per-region matrix
``region_matrix[r]`` (4, n_inner) that folds in the virtual-centre downmix and the extra-speaker
downmix. All the intermediate power normalisations of the standard are positive scalings, so a
single normalisation of the final vector gives the same result.

0+2+0 (6.1.2.4) pans over a nominal 0+5+0 layout and downmixes to stereo (``post_downmix``)
with a level that falls from 0 dB at the front to -3 dB at the back.

Precision: the gains are computed in JAX's default dtype. In float32 they agree with a float64
evaluation to about 1.5e-6 (ill-conditioned triangles amplify the rounding of the direction);
:func:`point_source_gains_x64` computes in float64 (agreement ~1e-15).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, field

import jax
import jax.numpy as jnp
import numpy as np

from layouts.model import Layout, LayoutError, polar_to_cartesian

__all__ = [
    "PointSourcePanner",
    "configure_point_source",
    "point_source_gains",
    "point_source_gains_batch",
    "point_source_gains_x64",
    "polar_direction",
]

# tolerances of the region tests (BS.2127 6.1.2; values as in the reference renderer)
_TRI_EPS_F64 = 1e-11
_QUAD_EPS_F64 = 1e-10
# float32 equivalents: the arithmetic noise of a float32 evaluation is ~1e-7
_TRI_EPS_F32 = 1e-6
_QUAD_EPS_F32 = 1e-6

_STEREO_INNER = (("M+030", 30.0), ("M-030", -30.0), ("M+000", 0.0), ("M+110", 110.0),
                 ("M-110", -110.0))


@jax.tree_util.register_dataclass
@dataclass(frozen=True)
class PointSourcePanner:
    """A point source panner configured for one layout (BS.2127 6.1.3), as a JAX pytree.

    Array fields (R = T + Q regions, T triangles, Q quads, n_inner inner outputs):

    - ``tri_basis`` (T, 3, 3): inverse of the matrix whose rows are the triangle's three
      (real) loudspeaker unit vectors; ``d @ tri_basis[t]`` are its unnormalised VBAP gains.
    - ``quad_poly_x``/``quad_poly_y`` (Q, 3, 3): rows are the vectors whose dot products with
      the direction give the coefficients (t^2, t, 1) of the quadratic whose root in [0, 1] is
      the quad's horizontal / vertical panning parameter.
    - ``quad_positions`` (Q, 4, 3): the quad's vertices in perimeter order (its slot order).
    - ``priority`` (R,) int: rank of each region (triangles first, then quads) in the
      standard's search order; the first valid region in that order is used.
    - ``region_matrix`` (R, 4, n_inner): maps a region's slot gains to the inner outputs.
    - ``post_downmix`` (n_out, n_inner): identity, except for 0+2+0 (0+5+0 -> stereo).
    - ``front_mask``/``back_mask`` (n_inner,): for the 0+2+0 front/back level; all ones /
      all zeros (no level change) for other layouts.

    Static field: ``channel_names``, the non-LFE output loudspeakers in layout order.
    The arrays are stored as float64 numpy arrays; JAX converts them to its default dtype
    (float32, or float64 with x64 enabled) when they enter a computation.
    """

    tri_basis: np.ndarray | jax.Array
    quad_poly_x: np.ndarray | jax.Array
    quad_poly_y: np.ndarray | jax.Array
    quad_positions: np.ndarray | jax.Array
    priority: np.ndarray | jax.Array
    region_matrix: np.ndarray | jax.Array
    post_downmix: np.ndarray | jax.Array
    front_mask: np.ndarray | jax.Array
    back_mask: np.ndarray | jax.Array
    channel_names: tuple[str, ...] = field(metadata=dict(static=True))

    @property
    def n_speakers(self) -> int:
        """Number of outputs (non-LFE loudspeakers of the layout)."""
        return len(self.channel_names)


# ---------------------------------------------------------------------------------------------
# configuration (numpy, once per layout)
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Vertex:
    """A loudspeaker of the extended layout: real, extra (downmixed to a real one) or virtual."""

    nominal: np.ndarray  # (3,)
    real: np.ndarray  # (3,) unit vector
    target: int | None  # output index it is mixed into; None for a virtual n-gon centre


def _unit(az: float, el: float) -> np.ndarray:
    return polar_to_cartesian(az, el, 1.0)


def _screen_nominal(name: str, az: float, el: float, nominal: tuple[float, float],
                    layout_name: str) -> tuple[float, float]:
    """Nominal position used for triangulation; special for screen loudspeakers (6.1.3)."""
    if name not in ("M+SC", "M-SC"):
        return nominal
    abs_az = abs(az)
    if not (5.0 <= abs_az <= 25.0 or 35.0 <= abs_az <= 60.0):
        raise LayoutError(
            f"layout {layout_name}: loudspeaker {name} has azimuth {az}, outside the allowed "
            "ranges 5 to 25 and 35 to 60 degrees (BS.2127 6.1.3)")
    return float(np.sign(az)) * (45.0 if abs_az > 30.0 else 15.0), 0.0


def _extended_vertices(names: Sequence[str], real_pol: np.ndarray, nominal_pol: np.ndarray
                       ) -> list[_Vertex]:
    """Real loudspeakers followed by the extra layer loudspeakers of BS.2127 6.1.3.1.

    ``real_pol``/``nominal_pol``: (n, 2) azimuth, elevation in degrees.
    """
    verts = [_Vertex(_unit(*nominal_pol[i]), _unit(*real_pol[i]), i) for i in range(len(names))]
    nom_az, nom_el = nominal_pol[:, 0], nominal_pol[:, 1]
    mid = np.flatnonzero((nom_el >= -10.0) & (nom_el <= 10.0))
    # (nominal elevation of the layer, lower bound, upper bound): below, then above
    for layer_el, lo, hi in ((-30.0, -70.0, -10.0), (30.0, 10.0, 70.0)):
        in_layer = (nom_el >= lo) & (nom_el <= hi)
        if np.any(in_layer):
            # copy only the mid loudspeakers outside the layer's azimuth range plus a margin
            az_limit = np.max(np.abs(nom_az[in_layer])) + 40.0
            real_el = float(np.mean(real_pol[in_layer, 1]))
        else:
            az_limit = 0.0
            real_el = layer_el
        for i in mid:
            if abs(nom_az[i]) >= az_limit - 1e-5:
                verts.append(_Vertex(_unit(nom_az[i], layer_el), _unit(real_pol[i, 0], real_el),
                                     int(i)))
    return verts


def _hull_facets(points: np.ndarray) -> list[set[int]]:
    """Convex hull facets, coplanar triangles merged (plane equations within 1e-5)."""
    import scipy.spatial  # noqa: PLC0415 - only needed when configuring; slow to import

    hull = scipy.spatial.ConvexHull(points)
    planes: list[np.ndarray] = []
    facets: list[set[int]] = []
    for simplex, plane in zip(hull.simplices, hull.equations, strict=True):
        for k, other in enumerate(planes):
            if np.linalg.norm(other - plane) < 1e-5:
                facets[k].update(int(v) for v in simplex)
                break
        else:
            planes.append(plane)
            facets.append({int(v) for v in simplex})
    return facets


def _perimeter_order(points: np.ndarray) -> np.ndarray:
    """Indices putting the vertices of a convex, roughly planar polygon in perimeter order.

    The vertices are projected onto two in-plane axes through their centroid (the first
    vertex's offset, and the other vertex offset most nearly perpendicular to it) and sorted
    by angle.
    """
    rel = points - points.mean(axis=0)
    u = rel[0]
    v = rel[1 + int(np.argmin(np.abs(rel[1:] @ u)))]
    return np.argsort(np.arctan2(rel @ u, rel @ v))


def _quad_poly(a: np.ndarray, b: np.ndarray, c: np.ndarray, d: np.ndarray) -> np.ndarray:
    """(3, 3) coefficient vectors of the quad panning equation (BS.2127 6.1.2.2).

    The panning parameter t places the direction on the plane through the origin and the line
    from a + t (b - a) to d + t (c - d); that plane contains the direction p when
    p . ((a + t (b - a)) x (d + t (c - d))) = 0, a quadratic in t with coefficients
    (rows . p) for t^2, t and 1.
    """
    return np.array([
        np.cross(b - a, c - d),
        np.cross(a, c - d) + np.cross(b - a, d),
        np.cross(a, d),
    ])


def _configure_regions(names: Sequence[str], real_pol: np.ndarray, nominal_pol: np.ndarray
                       ) -> dict[str, np.ndarray]:
    """Region arrays for a layout without LFE (BS.2127 6.1.3.1), numpy float64."""
    n_out = len(names)
    verts = _extended_vertices(names, real_pol, nominal_pol)
    # virtual loudspeakers below and (unless a loudspeaker may be overhead) above
    centres = [np.array([0.0, 0.0, -1.0])]
    if not ("T+000" in names or "UH+180" in names):
        centres.append(np.array([0.0, 0.0, 1.0]))
    n_ext = len(verts)
    verts += [_Vertex(c, c, None) for c in centres]
    nominal = np.array([v.nominal for v in verts])
    real = np.array([v.real for v in verts])
    virtual = set(range(n_ext, len(verts)))

    facets = _hull_facets(nominal)

    def slot_row(vert: int) -> np.ndarray:
        row = np.zeros(n_out)
        row[verts[vert].target] = 1.0
        return row

    # regions in search order: (kind, vertices in slot order, slot -> output matrix)
    regions: list[tuple[str, list[int], np.ndarray]] = []
    for centre in range(n_ext, len(verts)):
        around = [facet - {centre} for facet in facets if centre in facet]
        ring = around[0].union(*around[1:]) - {centre}
        if ring & virtual:
            raise LayoutError("point source panner: virtual loudspeakers are adjacent")
        ring_list = list(ring)
        order = [ring_list[k] for k in _perimeter_order(real[ring_list])]
        centre_row = sum(slot_row(v) for v in ring_list) / np.sqrt(len(ring_list))
        for k in range(len(order)):
            tri = [order[k], order[(k + 1) % len(order)]]
            matrix = np.array([slot_row(tri[0]), slot_row(tri[1]), centre_row, np.zeros(n_out)])
            regions.append(("tri", tri + [centre], matrix))
    for facet in facets:
        if facet & virtual:
            continue
        fv = list(facet)
        if len(fv) == 3:
            regions.append(("tri", fv, np.array([slot_row(v) for v in fv] + [np.zeros(n_out)])))
        elif len(fv) == 4:
            order = [fv[k] for k in _perimeter_order(real[fv])]
            regions.append(("quad", order, np.array([slot_row(v) for v in order])))
        else:
            raise LayoutError(
                f"point source panner: hull facet with {len(fv)} loudspeakers "
                f"({', '.join(names[verts[v].target] for v in fv)}) is not supported")

    tris = [r for r in regions if r[0] == "tri"]
    quads = [r for r in regions if r[0] == "quad"]
    rank = {id(r): k for k, r in enumerate(regions)}
    quad_pos = np.array([real[q[1]] for q in quads]).reshape(-1, 4, 3)
    return dict(
        tri_basis=np.array([np.linalg.inv(real[t[1]]) for t in tris]).reshape(-1, 3, 3),
        quad_poly_x=np.array([_quad_poly(*p) for p in quad_pos]).reshape(-1, 3, 3),
        quad_poly_y=np.array([_quad_poly(*p[[1, 2, 3, 0]]) for p in quad_pos]).reshape(-1, 3, 3),
        quad_positions=quad_pos,
        priority=np.array([rank[id(r)] for r in tris + quads], dtype=np.int32),
        region_matrix=np.array([r[2] for r in tris + quads]).reshape(-1, 4, n_out),
    )


def _is_stereo(layout: Layout) -> bool:
    return layout.name == "0+2+0"


def configure_point_source(layout: Layout) -> PointSourcePanner:
    """Configure the point source panner for ``layout`` (BS.2127 6.1.3).

    LFE channels are dropped: the panner's outputs are the layout's non-LFE loudspeakers in
    layout order. Triangulation uses the nominal positions (``Speaker.nominal``; for M+SC/M-SC
    15 or 45 degrees depending on the real azimuth); the gain calculations use the real
    positions (``Speaker.azimuth/elevation``). 0+2+0 uses the stereo downmix of 6.1.2.4.

    Raises LayoutError for layouts the panner cannot handle (screen loudspeakers out of range,
    hull facets with more than four loudspeakers).
    """
    speakers = [s for s in layout.speakers if not s.is_lfe]
    names = tuple(s.name for s in speakers)
    if _is_stereo(layout):
        if set(names) != {"M+030", "M-030"}:
            raise LayoutError(f"layout {layout.name}: expected loudspeakers M+030 and M-030, "
                              f"got {', '.join(names)}")
        inner_names = [n for n, _ in _STEREO_INNER]
        pol = np.array([[az, 0.0] for _, az in _STEREO_INNER])
        arrays = _configure_regions(inner_names, pol, pol)
        # BS.775-style downmix with the centre at 1/sqrt(3) (velocity preserving)
        post = np.zeros((len(names), len(inner_names)))
        c, s = np.sqrt(3.0) / 3.0, np.sqrt(0.5)
        post[names.index("M+030")] = [1.0, 0.0, c, s, 0.0]
        post[names.index("M-030")] = [0.0, 1.0, c, 0.0, s]
        front = np.array([1.0, 1.0, 1.0, 0.0, 0.0])
        back = 1.0 - front
    else:
        if len(speakers) < 3:
            raise LayoutError(f"layout {layout.name}: the point source panner needs at least "
                              f"three non-LFE loudspeakers, got {len(speakers)}")
        real_pol = np.array([[s.azimuth, s.elevation] for s in speakers])
        nominal_pol = np.array([
            _screen_nominal(s.name, s.azimuth, s.elevation, s.nominal, layout.name)
            for s in speakers])
        arrays = _configure_regions(names, real_pol, nominal_pol)
        post = np.eye(len(names))
        front = np.ones(len(names))
        back = np.zeros(len(names))
    # kept as float64 numpy arrays, so the same panner serves float32 and x64 evaluation
    return PointSourcePanner(
        **arrays,
        post_downmix=post,
        front_mask=front,
        back_mask=back,
        channel_names=names,
    )


# ---------------------------------------------------------------------------------------------
# gains (pure JAX)
# ---------------------------------------------------------------------------------------------


def polar_direction(azimuth_deg: jax.typing.ArrayLike, elevation_deg: jax.typing.ArrayLike
                    ) -> jax.Array:
    """(..., 3) unit vectors (X right, Y front, Z up) from azimuth/elevation in degrees.

    x = sin(-az) cos(el), y = cos(az) cos(el), z = sin(el) (BS.2127 / BS.2076 convention:
    azimuth anticlockwise from the front). Inputs broadcast against each other.
    """
    az = jnp.radians(jnp.asarray(azimuth_deg))
    el = jnp.radians(jnp.asarray(elevation_deg))
    az, el = jnp.broadcast_arrays(az, el)
    return jnp.stack([jnp.sin(-az) * jnp.cos(el), jnp.cos(az) * jnp.cos(el), jnp.sin(el)],
                     axis=-1)


def _dot3(vectors: jax.Array, d: jax.Array) -> jax.Array:
    """(R, 3) vectors . (3, N) directions -> (R, N), as fused elementwise arithmetic."""
    return vectors[:, 0:1] * d[0] + vectors[:, 1:2] * d[1] + vectors[:, 2:3] * d[2]


def _row_max(x: jax.Array) -> jax.Array:
    """(R, N) -> (N,) maximum over rows, unrolled (axis reductions of floats are slow on CPU)."""
    return functools.reduce(jnp.maximum, [x[i] for i in range(x.shape[0])])


def _row_sum(x: jax.Array) -> jax.Array:
    """(R, N) -> (N,) sum over rows, unrolled."""
    return functools.reduce(jnp.add, [x[i] for i in range(x.shape[0])])


def _quad_parameter(poly: jax.Array, d: jax.Array, eps: float) -> tuple[jax.Array, jax.Array]:
    """Root in [0, 1] of the quad panning quadratic, and its margin (>= -eps when valid).

    ``poly`` (Q, 3, 3), ``d`` (3, N) -> (Q, N) parameter (clipped to [0, 1]) and margin
    min(t, 1 - t) (-inf when there is no real root).
    """
    a, b, c = (_dot3(poly[:, k, :], d) for k in range(3))
    disc = b * b - 4.0 * a * c
    # real roots by the cancellation-free form; a ~ 0 (parallel quad edges) gives the
    # linear root c / q and an infinite one
    sq = jnp.sqrt(jnp.maximum(disc, 0.0))
    q = -0.5 * (b + jnp.where(b >= 0.0, sq, -sq))
    safe_a = jnp.where(a == 0.0, 1.0, a)
    safe_q = jnp.where(q == 0.0, 1.0, q)
    r1 = jnp.where(a == 0.0, jnp.inf, q / safe_a)
    r2 = jnp.where(q == 0.0, jnp.where(c == 0.0, 0.0, jnp.inf), c / safe_q)
    # complex pair: accepted when the imaginary part is negligible (as a double root)
    re = -b / (2.0 * safe_a)
    im = jnp.sqrt(jnp.maximum(-disc, 0.0)) / (2.0 * jnp.abs(safe_a))
    complex_ok = (a != 0.0) & (im < eps)
    r1 = jnp.where(disc >= 0.0, r1, jnp.where(complex_ok, re, jnp.inf))
    r2 = jnp.where(disc >= 0.0, r2, jnp.where(complex_ok, re, jnp.inf))
    m1 = jnp.minimum(r1, 1.0 - r1)
    m2 = jnp.minimum(r2, 1.0 - r2)
    m1 = jnp.where(jnp.isfinite(m1), m1, -jnp.inf)
    m2 = jnp.where(jnp.isfinite(m2), m2, -jnp.inf)
    use1 = m1 >= m2
    t = jnp.clip(jnp.where(use1, r1, r2), 0.0, 1.0)
    return t, jnp.where(use1, m1, m2)


def point_source_gains(panner: PointSourcePanner, directions: jax.typing.ArrayLike) -> jax.Array:
    """Point source panning gains (BS.2127 6.1.2) for source directions.

    ``directions`` (..., 3): cartesian directions (X right, Y front, Z up; need not be unit
    length, must not be zero: a zero vector gives NaN, as in the reference).
    Returns (..., n_speakers) gains for the non-LFE loudspeakers in layout order,
    normalised to unit power (for 0+2+0, -3 dB at the back as in 6.1.2.4).

    Pure and jit-compatible: every region is evaluated for every direction and the first valid
    region in the standard's order is selected, so a direction on a region boundary gets the
    same region as the reference. If rounding leaves no region valid, the region closest to
    valid is used. Computed in JAX's default float dtype (float32 unless x64 is enabled).
    """
    dtype = jnp.asarray(panner.tri_basis).dtype  # float64 only when x64 is enabled
    directions = jnp.asarray(directions, dtype=dtype)
    batch_shape = directions.shape[:-1]
    # internally directions are along the last (fast) axis: (3, N), per-region arrays (R, N)
    d = jnp.reshape(directions, (-1, 3)).T
    f64 = dtype == jnp.float64
    tri_eps = _TRI_EPS_F64 if f64 else _TRI_EPS_F32
    quad_eps = _QUAD_EPS_F64 if f64 else _QUAD_EPS_F32

    # triangles (VBAP, 6.1.2.1): 3 slot gains, each (T, N)
    basis = jnp.asarray(panner.tri_basis, dtype)
    tri = [_dot3(basis[:, :, k], d) for k in range(3)]
    tri_score = jnp.minimum(jnp.minimum(tri[0], tri[1]), tri[2])
    tri_valid = tri_score >= -tri_eps
    tri = [jnp.maximum(g, 0.0) for g in tri] + [jnp.zeros_like(tri[0])]

    # quads (bilinear, 6.1.2.2): 4 slot gains, each (Q, N)
    x, mx = _quad_parameter(jnp.asarray(panner.quad_poly_x, dtype), d, quad_eps)
    y, my = _quad_parameter(jnp.asarray(panner.quad_poly_y, dtype), d, quad_eps)
    quad = [(1 - x) * (1 - y), x * (1 - y), x * y, (1 - x) * y]
    # the panned position must be on the direction's side, not the opposite one
    corners = jnp.asarray(panner.quad_positions, dtype)
    facing = sum(g * _dot3(corners[:, k, :], d) for k, g in enumerate(quad)) > 0.0
    quad_score = jnp.where(facing, jnp.minimum(mx, my), -jnp.inf)
    quad_valid = facing & (mx >= -quad_eps) & (my >= -quad_eps)

    # region choice: the valid region first in the standard's order; if none is valid
    # (rounding), the one with the largest score
    valid = jnp.concatenate([tri_valid, quad_valid], axis=0)  # (R, N)
    score = jnp.concatenate([tri_score, quad_score], axis=0)
    # materialise the per-region arrays: fusing their arithmetic into the reductions below
    # defeats vectorisation on XLA:CPU
    valid, score, tri, quad = jax.lax.optimization_barrier((valid, score, tri, quad))
    priority = jnp.asarray(panner.priority)[:, None]  # (R, 1)
    n_regions = priority.shape[0]
    first = jnp.min(jnp.where(valid, priority, n_regions), axis=0)
    best = score == _row_max(score)
    fallback = jnp.min(jnp.where(best, priority, n_regions), axis=0)
    chosen = priority == jnp.where(first < n_regions, first, fallback)  # (R, N) one-hot

    # map the chosen region's slot gains to the inner outputs: one matmul per slot
    matrix = jnp.asarray(panner.region_matrix, dtype)  # (R, 4, n_inner)
    inner = sum(
        matrix[:, k, :].T @ jnp.where(chosen, jnp.concatenate([tri[k], quad[k]], axis=0), 0.0)
        for k in range(4))  # (n_inner, N)
    inner = inner / jnp.sqrt(_row_sum(inner * inner))

    out = jnp.asarray(panner.post_downmix, dtype) @ inner  # (n_out, N)
    out = out / jnp.sqrt(_row_sum(out * out))
    front = _row_max(inner * jnp.asarray(panner.front_mask, dtype)[:, None])
    back = _row_max(inner * jnp.asarray(panner.back_mask, dtype)[:, None])
    out = out * 0.5 ** (0.5 * back / (front + back))
    return jnp.reshape(out.T, batch_shape + (out.shape[0],))


point_source_gains_batch = jax.jit(point_source_gains)
"""``jax.jit(point_source_gains)``: call as ``point_source_gains_batch(panner, directions)``;
compiled once per layout (array shapes) and directions shape. Float32 unless x64 is enabled:
gains within ~1.5e-6 of the float64 reference."""


def point_source_gains_x64(panner: PointSourcePanner, directions: jax.typing.ArrayLike
                           ) -> jax.Array:
    """:func:`point_source_gains` evaluated in float64 (jitted, x64 enabled locally).

    ``directions`` (..., 3) -> (..., n_speakers) float64 gains, within ~1e-15 of a float64
    evaluation of the standard's equations. Pass float64 directions (numpy) for full accuracy.
    """
    with jax.enable_x64(True):
        return point_source_gains_batch(panner, np.asarray(directions, dtype=np.float64))


@functools.lru_cache(maxsize=16)
def cached_point_source(layout: Layout) -> PointSourcePanner:
    """:func:`configure_point_source`, configured once per layout and process."""
    return configure_point_source(layout)
