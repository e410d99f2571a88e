"""Gains for render items with typeDefinition == HOA (ITU-R BS.2127 clause 9, scene-based
rendering).

An HOA pack is decoded to the loudspeakers with a fixed matrix, designed by the AllRAD method
(Zotter & Frank, "All-round ambisonic panning and decoding", JAES 60(10), 2012), as BS.2127
clause 9 does:

1. ``K = 5200`` virtual loudspeakers are placed on the points of a spherical t-design of degree
   100 (Graef & Potts, "On the computation of spherical designs by a new optimization approach
   based on fast spherical Fourier transforms", Numer. Math. 119, 2011; the point set
   "Design_5200_100_random" that the BS.2127 reference renderer uses, stored as (phi, theta)
   radians in ``renderer/data/tdesign_5200_100.dat``);
2. each virtual loudspeaker is panned to the real (non-LFE) loudspeakers with the point-source
   panner of BS.2127 clause 6.1.2: ``G`` (L, K);
3. the sound field is sampled at the virtual loudspeakers with the real N3D spherical
   harmonics ``Y`` (C, K) (mode-matching on a t-design: ``Y.T / K``), giving ``D0 = G Y.T / K``
   (L, C) for N3D input;
4. each column is rescaled from N3D to the item's normalisation (``N3D(n, |m|) / norm(n, |m|)``)
   and the whole matrix is scaled so that a plane wave encoded in the item's normalisation gives
   unit loudspeaker power on average over the t-design directions.

No max-rE weighting is applied and no near-field compensation (nfcRefDist) filter is used:
the reference renderer does neither by default (see :func:`hoa_warnings`). The decode matrix
holds over the item's time span; HOA metadata is a single block per channel and gains never
interpolate (BS.2127 clause 9; the reference applies a fixed matrix between the block's start
and end samples, rounded up as for every block).

Spherical harmonics here are real, without the Condon-Shortley phase (the ambisonic
convention, ACN = n^2 + n + m): ``Y_n^m(az, el) = norm(n, |m|) P_n^|m|(sin el) * t_m(az)``
with ``t_m = sqrt(2) cos(m az)`` for m > 0, 1 for m = 0, ``sqrt(2) sin(|m| az)`` for m < 0;
azimuth anticlockwise from the front, elevation up, in radians.
"""

from __future__ import annotations

import functools
import math
from dataclasses import replace
from pathlib import Path

import numpy as np

from adm.items import HoaRenderItem
from adm.model import AdmError
from layouts.model import Layout
from renderer.point_source import cached_point_source, point_source_gains_x64
from renderer.timing import Segments, block_timings, segments_for_track

__all__ = [
    "MAX_ORDER",
    "NORMALIZATIONS",
    "hoa_decode_matrix",
    "hoa_segments",
    "hoa_warnings",
    "normalization_factors",
    "real_spherical_harmonics",
    "virtual_speaker_directions",
]

MAX_ORDER = 50
"""Highest supported order: the degree-100 t-design integrates products of two spherical
harmonics exactly up to order 50 each."""

MAX_FUMA_ORDER = 3
"""FuMa (Furse-Malham) weights are defined up to third order."""

NORMALIZATIONS = ("SN3D", "N3D", "FuMa")

_DESIGN_FILE = Path(__file__).parent / "data" / "tdesign_5200_100.dat"

# FuMa weight relative to SN3D for (order, |degree|): W is -3 dB, the higher orders are scaled
# so that the maximum of each harmonic over the sphere is 1 (Malham's MaxN, except W).
_FUMA_OVER_SN3D = {
    (0, 0): 1.0 / math.sqrt(2.0),
    (1, 0): 1.0,
    (1, 1): 1.0,
    (2, 0): 1.0,
    (2, 1): 2.0 / math.sqrt(3.0),
    (2, 2): 2.0 / math.sqrt(3.0),
    (3, 0): 1.0,
    (3, 1): math.sqrt(45.0 / 32.0),
    (3, 2): 3.0 / math.sqrt(5.0),
    (3, 3): math.sqrt(8.0 / 5.0),
}


# --------------------------------------------------------------------------------------------
# Spherical harmonics
# --------------------------------------------------------------------------------------------


def normalization_factors(orders, degrees, normalization: str) -> np.ndarray:
    """(C,) float64 normalisation factor ``norm(n, |m|)`` of each channel.

    SN3D: ``sqrt((n-|m|)! / (n+|m|)!)``; N3D: ``sqrt(2n+1)`` times SN3D; FuMa: SN3D times the
    FuMa weights (orders <= 3). Raises :class:`AdmError` for an unknown normalisation or a
    FuMa order above 3.
    """
    n = np.asarray(orders, dtype=np.int64).reshape(-1)
    m = np.abs(np.asarray(degrees, dtype=np.int64).reshape(-1))
    sn3d = np.array([math.sqrt(math.factorial(a - b) / math.factorial(a + b))
                     for a, b in zip(n.tolist(), m.tolist())], dtype=np.float64)
    if normalization == "SN3D":
        return sn3d
    if normalization == "N3D":
        return np.sqrt(2.0 * n + 1.0) * sn3d
    if normalization == "FuMa":
        if len(n) and n.max() > MAX_FUMA_ORDER:
            raise AdmError(f"FuMa normalization is defined up to order {MAX_FUMA_ORDER}, "
                           f"not {int(n.max())}")
        return sn3d * np.array([_FUMA_OVER_SN3D[(a, b)] for a, b in zip(n.tolist(), m.tolist())],
                               dtype=np.float64)
    raise AdmError(f"unsupported HOA normalization {normalization!r} "
                   f"(supported: {', '.join(NORMALIZATIONS)})")


def real_spherical_harmonics(orders, degrees, azimuth, elevation,
                             normalization: str = "SN3D") -> np.ndarray:
    """Real spherical harmonics, shape (C, K) float64, for C channels and K directions.

    ``orders``/``degrees`` (C,) ints; ``azimuth``/``elevation`` (K,) radians (azimuth
    anticlockwise from the front, elevation up). No Condon-Shortley phase (ambisonic convention).
    """
    n = np.asarray(orders, dtype=np.int64).reshape(-1, 1)
    m = np.asarray(degrees, dtype=np.int64).reshape(-1, 1)
    az = np.asarray(azimuth, dtype=np.float64).reshape(1, -1)
    el = np.asarray(elevation, dtype=np.float64).reshape(1, -1)
    abs_m = np.abs(m)
    import scipy.special  # imported here: only HOA renders need it (0.15 s at start-up)

    # scipy's lpmv includes the Condon-Shortley phase (-1)^m: remove it
    legendre = (-1.0) ** abs_m * scipy.special.lpmv(abs_m, n, np.sin(el))
    azimuthal = np.where(m > 0, math.sqrt(2.0) * np.cos(abs_m * az),
                         np.where(m < 0, math.sqrt(2.0) * np.sin(abs_m * az), 1.0))
    norm = normalization_factors(n[:, 0], m[:, 0], normalization)[:, None]
    return norm * legendre * azimuthal


# --------------------------------------------------------------------------------------------
# Decoder design
# --------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def virtual_speaker_directions() -> np.ndarray:
    """(5200, 3) float64 unit vectors (X right, Y front, Z up) of the virtual loudspeakers.

    The stored design gives (phi, theta) per point: phi from the X axis towards Y, theta from
    the Z axis (the usual mathematical spherical coordinates).
    """
    phi, theta = np.loadtxt(_DESIGN_FILE).T
    points = np.stack([np.sin(theta) * np.cos(phi), np.sin(theta) * np.sin(phi), np.cos(theta)],
                      axis=1)
    points.setflags(write=False)
    return points


def _directions_az_el(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Azimuth (anticlockwise from front) and elevation, radians, of (K, 3) cartesian points."""
    azimuth = np.arctan2(-points[:, 0], points[:, 1])
    elevation = np.arctan2(points[:, 2], np.hypot(points[:, 0], points[:, 1]))
    return azimuth, elevation


@functools.lru_cache(maxsize=16)
def _virtual_speaker_gains(layout: Layout) -> np.ndarray:
    """(L, K) float64 point-source gains of the K virtual speakers on the L non-LFE speakers."""
    panner = cached_point_source(layout)
    gains = np.asarray(point_source_gains_x64(panner, virtual_speaker_directions()),
                       dtype=np.float64).T
    gains.setflags(write=False)
    return gains


def _check_channels(orders, degrees) -> tuple[np.ndarray, np.ndarray]:
    n = np.asarray(orders, dtype=np.int64).reshape(-1)
    m = np.asarray(degrees, dtype=np.int64).reshape(-1)
    if n.shape != m.shape:
        raise AdmError(f"HOA: {len(n)} orders but {len(m)} degrees")
    if len(n) == 0:
        raise AdmError("HOA: no channels to decode")
    bad = np.flatnonzero((n < 0) | (np.abs(m) > n))
    if len(bad):
        i = int(bad[0])
        raise AdmError(f"HOA: invalid order {int(n[i])} / degree {int(m[i])} (need order >= 0 "
                       "and |degree| <= order)")
    if n.max() > MAX_ORDER:
        raise AdmError(f"HOA: order {int(n.max())} is not supported (maximum {MAX_ORDER})")
    return n, m


def hoa_decode_matrix(layout: Layout, orders, degrees, normalization: str) -> np.ndarray:
    """AllRAD decode matrix for HOA channels on ``layout`` (BS.2127 clause 9).

    ``orders``/``degrees`` (C,): order n and degree m of each input channel (any order of
    channels, e.g. ACN). ``normalization``: "SN3D", "N3D" or "FuMa" (orders <= 3).
    Returns (layout.n_channels, C) float64 linear gains in layout order; LFE rows are zero.
    The matrix is scaled so that a plane wave encoded with ``normalization`` yields unit total
    loudspeaker power on average over all directions of the t-design (for the given channel
    set: the scale depends on all channels, so decode a pack as a whole).
    Raises :class:`AdmError` for an unknown normalisation, FuMa above order 3, an order above
    :data:`MAX_ORDER` or an invalid order/degree pair.
    """
    n, m = _check_channels(orders, degrees)
    target_norm = normalization_factors(n, m, normalization)
    n3d_norm = normalization_factors(n, m, "N3D")

    out = np.zeros((layout.n_channels, len(n)), dtype=np.float64)
    speakers = ~layout.is_lfe
    if not speakers.any():
        return out
    points = virtual_speaker_directions()
    azimuth, elevation = _directions_az_el(points)
    y_n3d = real_spherical_harmonics(n, m, azimuth, elevation, "N3D")  # (C, K)
    g_virtual = _virtual_speaker_gains(layout.without_lfe)  # (L, K)
    # sampling decoder on the t-design, then amplitude panning of the virtual speakers
    decoder = g_virtual @ y_n3d.T / points.shape[0]  # (L, C), for N3D signals
    # mean loudspeaker power of plane waves from the design directions (normalisation-free:
    # a plane wave's N3D signals are exactly y_n3d)
    mean_power = np.mean(np.sum((decoder @ y_n3d) ** 2, axis=0))
    decoder = decoder * (n3d_norm / target_norm)[None, :] / np.sqrt(mean_power)
    out[speakers] = decoder
    return out


@functools.lru_cache(maxsize=64)
def _cached_decode_matrix(layout: Layout, orders: tuple[int, ...], degrees: tuple[int, ...],
                          normalization: str) -> np.ndarray:
    decoder = hoa_decode_matrix(layout, orders, degrees, normalization)
    decoder.setflags(write=False)
    return decoder


# --------------------------------------------------------------------------------------------
# Render items
# --------------------------------------------------------------------------------------------


def _item_scale(item: HoaRenderItem) -> float:
    context = item.context
    return 0.0 if context.object_mute else float(context.object_gain)


def hoa_segments(item: HoaRenderItem, layout: Layout, sample_rate: int,
                 where: str = "") -> Segments:
    """Gain segments of an HOA render item: one hold segment per (non-silent) input track.

    Track ``track_indices[i]`` gets ``hoa_decode_matrix(...)[:, i]`` (n_out = layout.n_channels)
    times the audioObject gain (0 when muted) and the channel's block gain, held from the
    item's start to its end (``rtime``/``duration`` relative to the object start, or the
    object's span, or open-ended), with sample boundaries rounded up; no interpolation.
    ``where`` prefixes error messages (e.g. "file.wav: "). Raises :class:`AdmError` as
    :func:`hoa_decode_matrix` and :func:`renderer.timing.block_timings` do.
    """
    n_out = layout.n_channels
    if not item.channel_formats or all(t is None for t in item.track_indices):
        return Segments.concatenate([], n_out)
    pack = item.context.pack_format_ids[-1] if item.context.pack_format_ids else None
    label = f"{where}audioPackFormat {pack}: " if pack else where
    try:
        decoder = _cached_decode_matrix(layout, tuple(item.orders), tuple(item.degrees),
                                        item.normalization)
    except AdmError as e:
        raise AdmError(f"{label}{e}") from None
    first = item.channel_formats[0]
    # all channels of the pack share one timing (checked when the item was built)
    block = replace(first.blocks[0], rtime=item.rtime, duration=item.duration)
    timing = block_timings([block], sample_rate, item.context.object_start,
                           item.context.object_duration, interpolate=False,
                           where=f"{where}audioChannelFormat {first.id}: ")
    scale = _item_scale(item)
    parts = []
    for i, track in enumerate(item.track_indices):
        if track is None:
            continue
        block_gain = float(getattr(item.channel_formats[i].blocks[0], "gain", 1.0))
        gains = (decoder[:, i] * (scale * block_gain))[None, :]
        parts.append(segments_for_track(track, timing, gains))
    return Segments.concatenate(parts, n_out)


def hoa_warnings(item: HoaRenderItem) -> list[str]:
    """Notes for the user about parameters of an HOA item that are not rendered.

    The BS.2127 reference renderer (ear 2.1.0) reads nfcRefDist but never applies near-field
    compensation (it decodes as if nfcRefDist were not given, silently), warns that screenRef
    is not implemented for HOA and ignores it, and does not read an HOA block's gain; we
    decode the same way but apply block gains.
    """
    pack = item.context.pack_format_ids[-1] if item.context.pack_format_ids else "(no pack)"
    notes = []
    if item.nfc_ref_dist is not None and item.nfc_ref_dist != 0.0:
        notes.append(f"audioPackFormat {pack}: nfcRefDist={item.nfc_ref_dist:g} m is not "
                     "applied: decoded without near-field compensation, as the BS.2127 "
                     "reference renderer does")
    if item.screen_ref:
        notes.append(f"audioPackFormat {pack}: screenRef for HOA is not implemented (nor in the "
                     "BS.2127 reference renderer); ignored")
    gains = sorted({float(getattr(cf.blocks[0], "gain", 1.0)) for cf in item.channel_formats
                    if cf.blocks})
    if any(g != 1.0 for g in gains):
        shown = ", ".join(f"{g:g}" for g in gains)
        notes.append(f"audioPackFormat {pack}: HOA block gain(s) {shown} applied (the BS.2127 "
                     "reference renderer ear 2.1.0 ignores them)")
    if any(getattr(cf.blocks[0], "head_locked", False) for cf in item.channel_formats
           if cf.blocks):
        notes.append(f"audioPackFormat {pack}: headLocked has no effect on loudspeakers")
    return notes
