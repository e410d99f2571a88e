"""HRTF sets for binaural rendering: SOFA reading, resampling and direction interpolation.

Reading (:func:`load_sofa`)
---------------------------
AES69-2020 (SOFA) files of convention ``SimpleFreeFieldHRIR`` are netCDF-4 files, that is HDF5
files, and are read here with h5py. The variables used are ``Data.IR`` (M, R=2, N),
``Data.SamplingRate`` ((I,) or (M,), all equal), ``Data.Delay`` ((I, R) or (M, R), broadband
delays in samples that are added to the IRs), ``SourcePosition`` (M, C) with its ``Type``
attribute (``spherical``: azimuth in degrees anticlockwise from the front, elevation in degrees,
distance in metres; ``cartesian``: x front, y left, z up) and, when present,
``ReceiverPosition`` (R, C[, I|M]) to decide which receiver is the left ear (the one with the
larger y). SOFA's spherical coordinates are dubstage's polar convention (0 front, +90 left,
elevation up), so azimuths and elevations are taken as they are (azimuth wrapped to
(-180, 180]). Duplicate directions (equal unit vectors, e.g. azimuths 0 and 360, or several
azimuths at a pole) keep their first occurrence. Source positions are taken in the listener's
frame (``ListenerView`` is not applied: SimpleFreeFieldHRIR fixes it to the front).

Interpolation model (:func:`prepare_hrtf`)
------------------------------------------
Each HRIR h (one ear, one direction) is split into an onset delay ``d`` (fractional samples,
:func:`onset_delays`) and an *aligned* spectrum ``A[k] = H[k] exp(+2 pi j k d / n_fft)``: the
HRIR advanced by its delay, circularly, at the model's FFT size. For a direction between
measurements the spectrum is

    S[k] = (sum_i w_i A_i[k]) * exp(-2 pi j k D / n_fft),   D = sum_i w_i d_i   (per ear)

with barycentric weights w_i over the three vertices of the enclosing triangle of the convex hull
of the measured directions (VBAP-style, non-negative, normalised to sum 1). The ITD is thus
interpolated as a delay (it varies smoothly with direction) and only the onset-aligned responses
are mixed, which avoids the comb filtering of mixing misaligned HRIRs. At a measured direction
the weights are one-hot and ``irfft(S)`` is that HRIR exactly (to float32 rounding).

Where the measured directions leave a cap around a pole uncovered (no measurement within 5
degrees of elevation +-90, e.g. MIT KEMAR has nothing below -40 degrees), a virtual direction is
added at that pole; its aligned spectrum and delay are the means of those of its neighbours on
the convex hull (the lowest/highest ring), so the cap is a fan of triangles rather than one flat
face and every direction is interpolated from nearby data. Virtual directions follow the
measured ones in ``HrtfModel.unit_vectors``.

Units: directions in degrees; delays in samples at the model's rate; lengths in samples.
"""

from __future__ import annotations

import functools
import hashlib
import math
import os
import threading
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import jax.numpy as jnp
import numpy as np

from layouts.model import polar_to_cartesian
from renderer.cache import cache_dir

if TYPE_CHECKING:  # imported where used: a prepared set from the cache needs neither
    import h5py
    from scipy.spatial import ConvexHull

__all__ = [
    "HrtfError",
    "HrtfModel",
    "HrtfSet",
    "default_hrtf",
    "hrtf_spectra",
    "hrtf_spectra_jax",
    "interpolation_weights",
    "load_sofa",
    "onset_delays",
    "prepare_hrtf",
    "resample_hrtf",
]

DEFAULT_SOFA = Path(__file__).resolve().parent / "data" / "mit_kemar.sofa"

_CONVENTION = "SimpleFreeFieldHRIR"
_ONSET_UPSAMPLE = 8
_ONSET_THRESHOLD_DB = -20.0
_POLE_GAP_DEG = 5.0          # add a virtual pole when no measurement is closer than this
_MEASURED_DOT = 1.0 - 1e-12  # cos of the angle (~1.4e-6 rad) under which a direction is "measured"
_CHUNK = 1024                # directions per vectorised chunk (bounds temporary memory)


class HrtfError(ValueError):
    """Invalid HRTF data; the message reads ``"<file>: <problem>"`` on one line."""


@dataclass(frozen=True, eq=False)
class HrtfSet:
    """A set of head-related impulse responses on a grid of directions.

    - ``sample_rate``: Hz.
    - ``directions`` (N, 2) float64: azimuth, elevation in degrees (anticlockwise, 0 front,
      +90 left; elevation up).
    - ``hrirs`` (N, 2, L) float32: impulse responses; ear 0 = left, ear 1 = right.
    - ``name``: the file's Title (or its name).
    - ``distance``: source distance in metres when the file gives one (median over directions).

    Equality and hashing are by identity (so a set can key a cache).
    """

    sample_rate: int
    directions: np.ndarray
    hrirs: np.ndarray
    name: str = ""
    distance: float | None = None


@dataclass(frozen=True, eq=False)
class HrtfModel:
    """An :class:`HrtfSet` prepared for interpolation at one sample rate and FFT size.

    With M directions (the N measured ones first, then any virtual ones), T triangles and
    B = fft_size // 2 + 1 bins:

    - ``unit_vectors`` (M, 3) float64: X right, Y front, Z up.
    - ``delays`` (M, 2) float64: onset of each ear's HRIR in samples (values representable in
      float32, so float32 and float64 evaluations use the same delays).
    - ``aligned_spectra`` (M, 2, B) complex64: rfft at ``fft_size`` of each HRIR advanced
      (circularly) by its delay.
    - ``triangles`` (T, 3) int32: the convex hull of ``unit_vectors``, covering the sphere.
    - ``inverses`` (T, 3, 3) float64: ``v @ inverses[t]`` are the (unnormalised) barycentric
      coordinates of direction ``v`` in triangle ``t`` (inverse of the matrix whose rows are the
      triangle's vertices).
    - ``filter_length``: samples that an interpolated response occupies: the HRIR length plus
      the largest spread of delays within a triangle (the convolver's filter length). Only the
      first ``filter_length - L`` samples of an HRIR, which precede its onset, can be moved to
      negative (circularly wrapped) times by interpolation.
    """

    sample_rate: int
    fft_size: int
    unit_vectors: np.ndarray
    delays: np.ndarray
    aligned_spectra: np.ndarray
    triangles: np.ndarray
    inverses: np.ndarray
    filter_length: int


# --------------------------------------------------------------------------------------------
# SOFA reading


def _text(value: object) -> str:
    """An HDF5/netCDF attribute value (str, bytes, fixed-length char array) as a str."""
    if isinstance(value, np.ndarray):
        if value.dtype.kind in "SU" and value.ndim == 1 and value.itemsize == 1:
            value = b"".join(value.tolist()) if value.dtype.kind == "S" else "".join(value)
        elif value.size == 1:
            value = value.reshape(-1)[0]
        else:
            return " ".join(_text(v) for v in value.reshape(-1))
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    return str(value).rstrip("\x00").strip()


def _variable(f: h5py.File, name: str, where: str) -> np.ndarray:
    import h5py

    if name not in f or not isinstance(f[name], h5py.Dataset):
        raise HrtfError(f"{where}: missing variable {name}")
    try:
        data = np.asarray(f[name][()], dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise HrtfError(f"{where}: variable {name} is not numeric ({exc})") from None
    if not np.all(np.isfinite(data)):
        raise HrtfError(f"{where}: variable {name} contains NaN or infinite values")
    return data


def _position_type(f: h5py.File, name: str, where: str) -> str:
    kind = _text(f[name].attrs.get("Type", "")).lower()
    if kind not in ("spherical", "cartesian"):
        shown = kind or "missing"
        raise HrtfError(f"{where}: {name} Type attribute is {shown!r}, "
                        "expected 'spherical' or 'cartesian'")
    return kind


def _sofa_to_polar(pos: np.ndarray, kind: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """SOFA positions (..., 3) -> azimuth, elevation (degrees), distance."""
    if kind == "spherical":
        return pos[..., 0], pos[..., 1], pos[..., 2]
    x, y, z = pos[..., 0], pos[..., 1], pos[..., 2]  # SOFA cartesian: x front, y left, z up
    dist = np.sqrt(x * x + y * y + z * z)
    return np.degrees(np.arctan2(y, x)), np.degrees(np.arctan2(z, np.hypot(x, y))), dist


def _left_receiver_first(f: h5py.File, where: str) -> bool:
    """True unless ReceiverPosition puts receiver 1 on the left (larger y)."""
    if "ReceiverPosition" not in f:
        return True
    pos = _variable(f, "ReceiverPosition", where)
    if pos.ndim == 3:
        pos = pos[:, :, 0]
    if pos.ndim != 2 or pos.shape != (2, 3):
        raise HrtfError(f"{where}: ReceiverPosition has shape {f['ReceiverPosition'].shape}, "
                        "expected (2, 3) or (2, 3, I|M)")
    az, el, dist = _sofa_to_polar(pos, _position_type(f, "ReceiverPosition", where))
    y = dist * np.cos(np.radians(el)) * np.sin(np.radians(az))
    return not y[1] > y[0]


def _apply_delays(ir: np.ndarray, delay: np.ndarray) -> np.ndarray:
    """Add SOFA broadband delays (M, 2) samples to IRs (M, 2, N) by lengthening them."""
    extra = int(math.ceil(float(delay.max())))
    out_len = ir.shape[-1] + extra
    if np.all(delay == np.round(delay)):
        out = np.zeros(ir.shape[:-1] + (out_len,))
        for m, r in np.ndindex(*delay.shape):
            start = int(delay[m, r])
            out[m, r, start:start + ir.shape[-1]] = ir[m, r]
        return out
    n_fft = 1 << int(math.ceil(math.log2(2 * out_len)))
    k = np.arange(n_fft // 2 + 1)
    phase = np.exp(-2j * np.pi * np.mod(k * delay[..., None], n_fft) / n_fft)
    return np.fft.irfft(np.fft.rfft(ir, n_fft) * phase, n_fft)[..., :out_len]


def load_sofa(path: str | os.PathLike) -> HrtfSet:
    """Read an AES69 (SOFA) file of convention SimpleFreeFieldHRIR.

    Returns an :class:`HrtfSet` with ``directions`` (N, 2) degrees and ``hrirs`` (N, 2, L)
    float32 (ear 0 left). ``Data.Delay`` is added to the IRs. Raises :class:`HrtfError`
    (``"<file>: <problem>"``) for a missing or non-HDF5 file, another convention, missing
    variables, wrong shapes, NaNs, a receiver count other than 2, or fewer than 4 distinct
    directions.
    """
    path = Path(path)
    where = str(path)
    if not path.is_file():
        raise HrtfError(f"{where}: not a file")
    import h5py  # (its import runs `uname -p`: only when a SOFA file is read)

    try:
        f = h5py.File(path, "r")
    except OSError:
        raise HrtfError(f"{where}: not an HDF5 (SOFA) file") from None
    with f:
        return _read_sofa(f, where, path.stem)


def _read_sofa(f: h5py.File, where: str, stem: str) -> HrtfSet:
    if "SOFAConventions" not in f.attrs:
        raise HrtfError(f"{where}: missing global attribute SOFAConventions (not a SOFA file)")
    convention = _text(f.attrs["SOFAConventions"])
    if convention != _CONVENTION:
        raise HrtfError(f"{where}: SOFA convention {convention!r} is not supported "
                        f"(expected {_CONVENTION!r})")

    ir = _variable(f, "Data.IR", where)
    if ir.ndim != 3:
        raise HrtfError(f"{where}: Data.IR has shape {ir.shape}, expected (M, R, N)")
    n_meas, n_rec, n_taps = ir.shape
    if n_rec != 2:
        raise HrtfError(f"{where}: Data.IR has {n_rec} receivers, expected 2 (left and right ear)")
    if n_meas == 0 or n_taps == 0:
        raise HrtfError(f"{where}: Data.IR has shape {ir.shape}, which is empty")

    rate = _variable(f, "Data.SamplingRate", where).reshape(-1)
    if rate.size not in (1, n_meas):
        raise HrtfError(f"{where}: Data.SamplingRate has {rate.size} values, "
                        f"expected 1 or {n_meas}")
    if np.any(rate != rate[0]):
        raise HrtfError(f"{where}: Data.SamplingRate varies between measurements")
    if not (rate[0] > 0 and rate[0] == round(rate[0])):
        raise HrtfError(f"{where}: Data.SamplingRate {rate[0]} is not a positive whole "
                        "number of Hz")

    pos = _variable(f, "SourcePosition", where)
    if pos.ndim != 2 or pos.shape[1] != 3 or pos.shape[0] not in (1, n_meas) or (
            pos.shape[0] == 1 and n_meas != 1):
        raise HrtfError(f"{where}: SourcePosition has shape {pos.shape}, expected ({n_meas}, 3)")
    az, el, dist = _sofa_to_polar(pos, _position_type(f, "SourcePosition", where))
    if np.any(np.abs(el) > 90.0 + 1e-6):
        raise HrtfError(f"{where}: SourcePosition has elevations outside [-90, 90] degrees")

    if "Data.Delay" in f:
        delay = _variable(f, "Data.Delay", where)
        if delay.ndim != 2 or delay.shape[1] != 2 or delay.shape[0] not in (1, n_meas):
            raise HrtfError(f"{where}: Data.Delay has shape {delay.shape}, "
                            f"expected (1, 2) or ({n_meas}, 2)")
        if np.any(delay < 0):
            raise HrtfError(f"{where}: Data.Delay has negative delays")
        if np.any(delay > 0):
            ir = _apply_delays(ir, np.broadcast_to(delay, (n_meas, 2)))

    if not _left_receiver_first(f, where):
        ir = ir[:, ::-1]

    unit = polar_to_cartesian(az, el)
    _, first = np.unique(np.round(unit, 9) + 0.0, axis=0, return_index=True)
    keep = np.sort(first)
    if keep.size < 4:
        raise HrtfError(f"{where}: only {keep.size} distinct directions, at least 4 are needed")

    azimuth = np.mod(az[keep] + 180.0, 360.0) - 180.0
    azimuth[azimuth == -180.0] = 180.0
    directions = np.stack([azimuth, el[keep]], axis=-1)
    med = float(np.median(dist[keep]))
    title = _text(f.attrs.get("Title", ""))
    return HrtfSet(sample_rate=int(rate[0]),
                   directions=np.ascontiguousarray(directions, dtype=np.float64),
                   hrirs=np.ascontiguousarray(ir[keep], dtype=np.float32),
                   name=title or stem,
                   distance=med if np.isfinite(med) and med > 0 else None)


@functools.cache
def default_hrtf() -> HrtfSet:
    """The packaged MIT KEMAR set (normal pinna, 44.1 kHz, 1.4 m; see scripts/make_kemar_sofa.py).

    Measured directions: elevations -40..90 degrees (710 directions, Gardner and Martin 1995);
    the cap below -40 degrees is filled with synthesised directions described in the file's
    Comment attribute.
    """
    return load_sofa(DEFAULT_SOFA)


_RESAMPLE_HALF_WIDTH = 32  # zero crossings of the interpolation kernel on each side
_RESAMPLE_KAISER_BETA = 9.0  # its window: sidelobes near -90 dB


def resampling_matrix(n_in: int, rate_in: int, rate_out: int) -> np.ndarray:
    """(n_out, n_in) band-limited interpolation from ``n_in`` samples at ``rate_in`` Hz to
    ``n_out = ceil(n_in * rate_out / rate_in)`` samples at ``rate_out`` Hz, starting at the
    same instant.

    Output sample m lies at input time t = m * rate_in / rate_out (samples); its value is
    ``sum_n x[n] * c * sinc(c * (t - n)) * w(t - n)`` with the cutoff ``c = min(1, rate_out /
    rate_in)`` (the lower Nyquist frequency: no aliasing when going down) and a Kaiser window
    ``w`` over ``_RESAMPLE_HALF_WIDTH / c`` input samples on each side. Samples before the
    start and after the end count as zeros.
    """
    n_out = -(-n_in * rate_out // rate_in)
    cutoff = min(1.0, rate_out / rate_in)
    half = _RESAMPLE_HALF_WIDTH / cutoff
    t = np.arange(n_out, dtype=np.float64)[:, None] * (rate_in / rate_out)
    tau = t - np.arange(n_in, dtype=np.float64)[None, :]
    inside = np.abs(tau) < half
    ratio = np.where(inside, tau / half, 0.0)
    window = np.i0(_RESAMPLE_KAISER_BETA * np.sqrt(1.0 - ratio ** 2)) / np.i0(
        _RESAMPLE_KAISER_BETA)
    return np.where(inside, cutoff * np.sinc(cutoff * tau) * window, 0.0)


def resample_hrtf(hrtf: HrtfSet, sample_rate: int) -> HrtfSet:
    """The set at another sample rate (band-limited interpolation: :func:`resampling_matrix`).

    Delays scale with the rate (d samples become d * new / old); the IRs are scaled by
    old / new so that the frequency responses keep their level. New length
    ceil(L * new / old).
    """
    sample_rate = int(sample_rate)
    if sample_rate <= 0:
        raise HrtfError(f"{hrtf.name or 'HRTF set'}: sample rate {sample_rate} is not positive")
    if sample_rate == hrtf.sample_rate:
        return hrtf
    hrirs = np.asarray(hrtf.hrirs, np.float64)
    matrix = resampling_matrix(hrirs.shape[-1], int(hrtf.sample_rate), sample_rate)
    out = (hrirs @ matrix.T) * (hrtf.sample_rate / sample_rate)
    return HrtfSet(sample_rate=sample_rate, directions=hrtf.directions,
                   hrirs=np.ascontiguousarray(out, dtype=np.float32), name=hrtf.name,
                   distance=hrtf.distance)


# --------------------------------------------------------------------------------------------
# onsets, preparation


def onset_delays(hrirs: np.ndarray) -> np.ndarray:
    """Onset of each impulse response (..., L) in fractional samples, shape (...).

    The response is smoothed by a raised-cosine (Hann) taper of its spectrum, falling from 1 at
    0 Hz to 0 at the Nyquist frequency, and upsampled 8 times by zero-padding that spectrum (so
    the result is exactly shift-invariant); the onset is the first time its magnitude reaches
    -20 dB of its peak, interpolated linearly between the upsampled samples. The taper's kernel
    has its first sidelobe at -32 dB, so the crossing always lies on the leading edge of the main
    lobe and moves continuously with the response (a band-limited impulse at time t has its
    onset at t - 1.75 samples). An all-zero response has onset 0.
    """
    h = np.asarray(hrirs, dtype=np.float64)
    lead, n = h.shape[:-1], h.shape[-1]
    rows = h.reshape(-1, n)
    n_fft = max(64, 1 << int(math.ceil(math.log2(2 * n))))
    taper = np.cos(np.pi * np.arange(n_fft // 2 + 1) / n_fft) ** 2
    level = 10.0 ** (_ONSET_THRESHOLD_DB / 20.0)
    out = np.zeros(rows.shape[0])
    span = n * _ONSET_UPSAMPLE
    for s in range(0, rows.shape[0], 256):
        spec = np.fft.rfft(rows[s:s + 256], n_fft) * taper
        a = np.abs(np.fft.irfft(spec, n_fft * _ONSET_UPSAMPLE)[:, :span])
        thr = a.max(axis=-1) * level
        j = np.argmax(a >= thr[:, None], axis=-1)
        jm = np.maximum(j - 1, 0)
        a0 = np.take_along_axis(a, jm[:, None], -1)[:, 0]
        a1 = np.take_along_axis(a, j[:, None], -1)[:, 0]
        frac = np.where(a1 > a0, (thr - a0) / np.where(a1 > a0, a1 - a0, 1.0), 0.0)
        out[s:s + 256] = np.where(j > 0, jm + np.clip(frac, 0.0, 1.0), 0.0) / _ONSET_UPSAMPLE
    return out.reshape(lead)


def _hull(unit: np.ndarray, where: str) -> ConvexHull:
    from scipy.spatial import ConvexHull, QhullError

    try:
        hull = ConvexHull(unit)
    except QhullError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else "qhull failed"
        raise HrtfError(f"{where}: cannot triangulate the directions ({first})") from None
    if hull.equations[:, 3].max() > -1e-6:
        raise HrtfError(f"{where}: the directions do not surround the listener "
                        "(their convex hull does not contain the centre)")
    return hull


def _shift_phase(n_bins: int, fft_size: int, delays: np.ndarray) -> np.ndarray:
    """exp(-2 pi j k d / fft_size), shape delays.shape + (n_bins,), in float64."""
    k = np.arange(n_bins, dtype=np.float64)
    return np.exp(-2j * np.pi * np.mod(k * delays[..., None], fft_size) / fft_size)


def prepare_hrtf(hrtf: HrtfSet, sample_rate: int, fft_size: int | None = None) -> HrtfModel:
    """Prepare ``hrtf`` for interpolation at ``sample_rate`` (resampled if needed).

    ``fft_size`` None gives the smallest power of two >= 2 * filter_length, at least 512; a
    given size must be even and >= filter_length. Results are cached per (set, rate, size).
    """
    return _prepare_cached(hrtf, int(sample_rate), None if fft_size is None else int(fft_size))


@functools.lru_cache(maxsize=8)
def _prepare_cached(hrtf: HrtfSet, sample_rate: int, fft_size: int | None) -> HrtfModel:
    """The prepared model from the disk cache (:mod:`renderer.cache`, folder ``hrtf``) where
    it holds one for this set, rate, size and version of this module; else prepared (about
    0.5 s of CPU for the packaged set at 48 kHz) and stored there."""
    folder = cache_dir("hrtf")
    if folder is None:
        return _prepare(hrtf, sample_rate, fft_size)
    path = folder / f"{_model_key(hrtf, sample_rate, fft_size)}.npz"
    model = _read_model(path, sample_rate)
    if model is None:
        model = _prepare(hrtf, sample_rate, fft_size)
        _write_model(path, model)
    return model


_MODEL_ARRAYS = ("unit_vectors", "delays", "aligned_spectra", "triangles", "inverses")


def _model_key(hrtf: HrtfSet, sample_rate: int, fft_size: int | None) -> str:
    """A digest of everything a prepared model depends on: the set's data, the rate and size
    asked for, the source of this module and of the coordinate conversion, and the numpy and
    scipy versions (FFTs, convex hull), so that a change of the preparation is never served
    an old result."""
    import scipy

    from layouts import model as layout_model

    digest = hashlib.blake2b(digest_size=20)
    for source in (__file__, layout_model.__file__):
        digest.update(Path(source).read_bytes())
    digest.update(repr((np.__version__, scipy.__version__, int(hrtf.sample_rate),
                        hrtf.distance, sample_rate, fft_size)).encode())
    for values in (hrtf.directions, hrtf.hrirs):
        values = np.ascontiguousarray(values)
        digest.update(repr((values.dtype.str, values.shape)).encode())
        digest.update(values.data)
    return digest.hexdigest()


def _file_model_path(path: str | os.PathLike, sample_rate: int,
                     depends_on: Sequence[str | os.PathLike]) -> Path | None:
    """Where the disk cache keeps the model prepared from the SOFA file ``path`` at
    ``sample_rate``: named by a digest of the file's bytes, the rate, the sources of this
    module, of the coordinate conversion and of ``depends_on`` (the code choosing the model's
    size), and the numpy and scipy versions. None without a cache or a readable file."""
    import scipy

    from layouts import model as layout_model

    folder = cache_dir("hrtf")
    if folder is None:
        return None
    digest = hashlib.blake2b(digest_size=20)
    try:
        digest.update(Path(path).read_bytes())
        for source in (__file__, layout_model.__file__, *depends_on):
            digest.update(Path(source).read_bytes())
    except OSError:
        return None
    digest.update(repr((np.__version__, scipy.__version__, int(sample_rate))).encode())
    return folder / f"file-{digest.hexdigest()}.npz"


def model_of_file(path: str | os.PathLike, sample_rate: int,
                  depends_on: Sequence[str | os.PathLike] = ()) -> HrtfModel | None:
    """The model prepared from the SOFA file ``path`` at ``sample_rate`` and stored with
    :func:`keep_model_of_file`, from the disk cache; None if it holds none. The file is not
    read as SOFA (no HDF5 library is loaded): its bytes name the model."""
    where = _file_model_path(path, sample_rate, depends_on)
    return None if where is None else _read_model(where, int(sample_rate))


def keep_model_of_file(path: str | os.PathLike, sample_rate: int, model: HrtfModel,
                       depends_on: Sequence[str | os.PathLike] = ()) -> None:
    """Store ``model``, prepared from the SOFA file ``path``, for :func:`model_of_file`."""
    where = _file_model_path(path, sample_rate, depends_on)
    if where is not None:
        _write_model(where, model)


def _read_model(path: Path, sample_rate: int) -> HrtfModel | None:
    """The model stored at ``path``, or None if there is none or it is unreadable or
    inconsistent (it is then prepared again and rewritten)."""
    try:
        with np.load(path, allow_pickle=False) as stored:
            arrays = {name: np.ascontiguousarray(stored[name]) for name in _MODEL_ARRAYS}
            fft_size, filter_length = (int(v) for v in stored["sizes"])
    except (OSError, KeyError, ValueError, TypeError, EOFError, zipfile.BadZipFile):
        return None
    m = len(arrays["unit_vectors"])
    shapes_ok = (
        all(arrays[name].dtype == np.float64 for name in ("unit_vectors", "delays", "inverses"))
        and arrays["unit_vectors"].shape == (m, 3) and arrays["delays"].shape == (m, 2)
        and arrays["aligned_spectra"].shape == (m, 2, fft_size // 2 + 1)
        and arrays["aligned_spectra"].dtype == np.complex64
        and arrays["triangles"].ndim == 2 and arrays["triangles"].shape[1] == 3
        and arrays["triangles"].dtype == np.int32
        and arrays["inverses"].shape == (len(arrays["triangles"]), 3, 3)
        and 0 < filter_length <= fft_size)
    if not shapes_ok or not np.all((arrays["triangles"] >= 0) & (arrays["triangles"] < m)):
        return None
    for a in arrays.values():
        a.flags.writeable = False
    return HrtfModel(sample_rate=sample_rate, fft_size=fft_size, filter_length=filter_length,
                     **arrays)


def _write_model(path: Path, model: HrtfModel) -> None:
    """Store ``model`` at ``path`` (written to a temporary file and renamed, so a reader never
    sees half a file); a cache that cannot be written is left alone."""
    temporary = path.with_name(f".{path.stem}.{os.getpid()}.{threading.get_ident()}.tmp.npz")
    try:
        with open(temporary, "wb") as f:
            np.savez(f, sizes=np.array([model.fft_size, model.filter_length]),
                     **{name: getattr(model, name) for name in _MODEL_ARRAYS})
        os.replace(temporary, path)
    except OSError:
        temporary.unlink(missing_ok=True)


def _prepare(hrtf: HrtfSet, sample_rate: int, fft_size: int | None) -> HrtfModel:
    where = hrtf.name or "HRTF set"
    directions = np.asarray(hrtf.directions, dtype=np.float64)
    hrirs = np.asarray(hrtf.hrirs)
    if directions.ndim != 2 or directions.shape[1] != 2 or hrirs.ndim != 3 or \
            hrirs.shape[:2] != (directions.shape[0], 2):
        raise HrtfError(f"{where}: directions {directions.shape} and hrirs {hrirs.shape} "
                        "do not have shapes (N, 2) and (N, 2, L)")
    hrtf = resample_hrtf(hrtf, sample_rate)
    h = np.asarray(hrtf.hrirs, dtype=np.float64)
    n_meas, _, n_taps = h.shape
    delays = onset_delays(h).astype(np.float32).astype(np.float64)
    unit = polar_to_cartesian(directions[:, 0], directions[:, 1])

    # virtual poles where a cap is uncovered
    poles = []
    for z in (-1.0, 1.0):
        pole = np.array([0.0, 0.0, z])
        if np.degrees(np.arccos(np.clip((unit @ pole).max(), -1.0, 1.0))) > _POLE_GAP_DEG:
            poles.append(pole)
    if poles:
        unit = np.concatenate([unit, np.array(poles)])
    hull = _hull(unit, where)
    triangles = hull.simplices.astype(np.int32)
    neighbours = []
    for p in range(n_meas, unit.shape[0]):
        near = np.unique(triangles[np.any(triangles == p, axis=1)])
        near = near[near < n_meas]
        if near.size == 0:
            raise HrtfError(f"{where}: a virtual pole has no measured neighbours")
        neighbours.append(near)
        delays = np.concatenate([delays, delays[near].mean(axis=0, keepdims=True)])
    delays = delays.astype(np.float32).astype(np.float64)

    mats = unit[triangles]                                   # (T, 3 vertices, 3 coords)
    usable = np.abs(np.linalg.det(mats)) > 1e-12
    triangles, mats = triangles[usable], mats[usable]
    inverses = np.linalg.inv(mats)
    spread = np.ptp(delays[triangles], axis=1).max()
    filter_length = n_taps + int(math.ceil(spread - 1e-9))

    if fft_size is None:
        fft_size = max(512, 1 << int(math.ceil(math.log2(2 * filter_length))))
    elif fft_size % 2 or fft_size < filter_length:
        raise HrtfError(f"{where}: fft_size {fft_size} must be even and at least the filter "
                        f"length {filter_length}")
    elif fft_size & (fft_size - 1) and fft_size > 46340:
        raise HrtfError(f"{where}: fft_size {fft_size} above 46340 must be a power of two")
    n_bins = fft_size // 2 + 1
    aligned = np.fft.rfft(h, fft_size) * np.conj(_shift_phase(n_bins, fft_size, delays[:n_meas]))
    extra = [aligned[near].mean(axis=0) for near in neighbours]
    if extra:
        aligned = np.concatenate([aligned, np.stack(extra)])

    arrays = dict(unit_vectors=np.ascontiguousarray(unit),
                  delays=np.ascontiguousarray(delays),
                  aligned_spectra=np.ascontiguousarray(aligned, dtype=np.complex64),
                  triangles=np.ascontiguousarray(triangles, dtype=np.int32),
                  inverses=np.ascontiguousarray(inverses))
    for a in arrays.values():
        a.flags.writeable = False
    return HrtfModel(sample_rate=sample_rate, fft_size=fft_size, filter_length=filter_length,
                     **arrays)


# --------------------------------------------------------------------------------------------
# interpolation


def barycentric_columns(model: HrtfModel) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The model's per-triangle inverse matrices as three (3, T) arrays, one per barycentric
    coordinate, for :func:`containing_triangles`."""
    return tuple(np.ascontiguousarray(model.inverses[:, :, j].T) for j in range(3))


def containing_triangles(columns: Sequence[np.ndarray], v: np.ndarray) -> np.ndarray:
    """Index (Q,) of a triangle containing each unit vector of ``v`` (Q, 3): the one whose
    smallest barycentric coordinate is largest (brute force over all T triangles);
    ``columns`` from :func:`barycentric_columns`."""
    smallest = v @ columns[0]                                     # (Q, T) coordinates
    np.minimum(smallest, v @ columns[1], out=smallest)
    np.minimum(smallest, v @ columns[2], out=smallest)
    return np.argmax(smallest, axis=1)


def interpolation_weights(model: HrtfModel,
                          unit_vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Barycentric interpolation over the model's triangulation.

    ``unit_vectors`` (..., 3) directions (X right, Y front, Z up; need not be normalised; a
    zero vector counts as the front). Returns ``indices`` (..., 3) int32 into the model's
    directions and ``weights`` (..., 3) float32, non-negative and summing to 1. The triangle
    used is the one whose smallest barycentric coordinate is largest (i.e. one containing the
    direction). At a measured (or virtual) direction the weights are exactly one-hot.
    """
    v = np.asarray(unit_vectors, dtype=np.float64)
    if v.shape[-1:] != (3,):
        raise ValueError(f"interpolation_weights: directions have shape {v.shape}, "
                         "expected (..., 3)")
    lead = v.shape[:-1]
    v = v.reshape(-1, 3)
    norm = np.linalg.norm(v, axis=-1, keepdims=True)
    v = np.where(norm > 1e-12, v / np.where(norm > 1e-12, norm, 1.0), [0.0, 1.0, 0.0])
    columns = barycentric_columns(model)
    indices = np.empty((v.shape[0], 3), dtype=np.int32)
    weights = np.empty((v.shape[0], 3), dtype=np.float64)
    for s in range(0, v.shape[0], _CHUNK):
        vc = v[s:s + _CHUNK]
        rows = np.arange(vc.shape[0])
        tri = containing_triangles(columns, vc)
        gb = np.maximum(np.einsum("pi,pij->pj", vc, model.inverses[tri]), 0.0)
        total = gb.sum(axis=-1, keepdims=True)
        w = gb / np.where(total > 0, total, 1.0)
        idx = model.triangles[tri].copy()
        dots = vc @ model.unit_vectors.T
        nearest = np.argmax(dots, axis=1)
        measured = dots[rows, nearest] >= _MEASURED_DOT
        hit = idx == nearest[:, None]
        inside = measured & hit.any(axis=1)
        w[inside] = hit[inside]
        outside = measured & ~hit.any(axis=1)
        idx[outside, 0] = nearest[outside]
        w[outside] = [1.0, 0.0, 0.0]
        indices[s:s + _CHUNK] = idx
        weights[s:s + _CHUNK] = w
    return indices.reshape(lead + (3,)), weights.astype(np.float32).reshape(lead + (3,))


def _spectra_math(xp, aligned, delays, indices, weights, fft_size: int):
    """sum_i w_i A_i * exp(-2 pi j k D / fft_size), D = sum_i w_i d_i; xp is numpy or jax.numpy.

    The delay is split into an integer part n, whose phase k n mod fft_size is exact integer
    arithmetic (int32 wrap-around is harmless for power-of-two sizes), and a fraction in [0, 1),
    so float32 keeps the phase accurate to ~1e-6 rad at every bin.
    """
    n_bins = fft_size // 2 + 1
    w = weights.astype(xp.float32)
    gathered = aligned[indices]                                     # (..., 3, 2, B)
    spec = xp.sum(w[..., :, None, None].astype(xp.complex64) * gathered, axis=-3)
    d = xp.sum(w[..., :, None] * delays.astype(xp.float32)[indices], axis=-2)   # (..., 2)
    whole = xp.floor(d)
    frac = d - whole
    k = xp.arange(n_bins, dtype=xp.int32)
    n = whole.astype(xp.int32)[..., None]
    if fft_size & (fft_size - 1) == 0:
        kn = (k * n) & (fft_size - 1)
    else:
        kn = (k * (n % fft_size)) % fft_size
    turns = (kn.astype(xp.float32) * xp.float32(1.0 / fft_size)
             + k.astype(xp.float32) * (frac[..., None] * xp.float32(1.0 / fft_size)))
    angle = (turns - xp.round(turns)) * xp.float32(2.0 * np.pi)   # in [-pi, pi]
    rot = (xp.cos(angle) - 1j * xp.sin(angle)).astype(xp.complex64)
    return (spec * rot).astype(xp.complex64)


def hrtf_spectra_jax(aligned, delays, indices, weights, fft_size: int):
    """JAX version of :func:`hrtf_spectra` for use inside ``jax.jit``.

    ``aligned`` (M, 2, B) complex64, ``delays`` (M, 2) samples, ``indices`` (..., 3) int,
    ``weights`` (..., 3) float; ``fft_size`` a Python int (static under jit),
    B = fft_size // 2 + 1. Returns (..., 2, B) complex64.
    """
    return _spectra_math(jnp, jnp.asarray(aligned), jnp.asarray(delays), jnp.asarray(indices),
                         jnp.asarray(weights), int(fft_size))


def hrtf_spectra(model: HrtfModel, unit_vectors: np.ndarray) -> np.ndarray:
    """Interpolated HRTFs for directions (..., 3): (..., 2, fft_size // 2 + 1) complex64.

    ``irfft(..., model.fft_size)`` gives the impulse responses; at a measured direction it is
    that HRIR exactly (to float32 rounding), zero-padded.
    """
    indices, weights = interpolation_weights(model, unit_vectors)
    lead = indices.shape[:-1]
    indices, weights = indices.reshape(-1, 3), weights.reshape(-1, 3)
    n_bins = model.fft_size // 2 + 1
    out = np.empty((indices.shape[0], 2, n_bins), dtype=np.complex64)
    step = max(1, (1 << 22) // (6 * n_bins))
    for s in range(0, indices.shape[0], step):
        out[s:s + step] = _spectra_math(np, model.aligned_spectra, model.delays,
                                        indices[s:s + step], weights[s:s + step], model.fft_size)
    return out.reshape(lead + (2, n_bins))
