"""Build ``renderer/data/mit_kemar.sofa``, the HRTF set that dubstage ships.

Run once, by hand, with the ``slab`` and ``netCDF4`` packages installed (the renderer itself needs
neither)::

    python scripts/make_kemar_sofa.py [output.sofa]

Source data
-----------
The MIT KEMAR measurements (Gardner, W. G. and Martin, K. D. (1995), "HRTF measurements of a
KEMAR", J. Acoust. Soc. Am. 97(6), 3907-3908; MIT Media Lab, 1994), "normal pinna" set as shipped
by slab (``slab/data/mit_kemar_normal_pinna.bz2``: a bz2-compressed pickle of a ``slab.HRTF``;
this script unpickles it directly, which keeps the float64 source positions that
``slab.HRTF.kemar()`` would round to float16). 44.1 kHz, 512-tap IRs, source distance 1.4 m,
ear 0 = left (checked: at azimuth +90 receiver 0 is louder and earlier). The data are free to use
provided the measurements are cited.

Measured directions (710), equally spaced in azimuth from 0 on each elevation ring:

=========  ====  ======  =========  ====  ======
elevation  ring  step    elevation  ring  step
=========  ====  ======  =========  ====  ======
-40        56    6.43    30         60    6
-30        60    6       40         56    6.43
-20..20    72    5       50         45    8
(5 rings)                60         36    10
                         70         24    15
                         80         12    30
                         90          1    -
=========  ====  ======  =========  ====  ======

Filling the cap below -40 degrees
---------------------------------
Nothing was measured below -40 degrees. So that every direction is interpolated from nearby data,
118 synthesised directions are appended after the 710 measured ones: rings at -50, -60, -70 and
-80 degrees with 45, 36, 24 and 12 equally spaced azimuths (mirroring the rings at +50..+80)
and a pole at -90. Each is made from the -40 degree ring only:

1. every -40 degree HRIR is split into an onset delay (``renderer.hrtf.onset_delays``: where the
   Hann-smoothed, 8x upsampled response first reaches -20 dB of its peak) and the response
   advanced by that delay (circularly, in the frequency domain at 2048 points);
2. at azimuth ``az`` and elevation ``e``, with ``g = cos(e) / cos(40 deg)`` (1 at -40, 0 at the
   pole), the advanced response is ``g * ring(az) + (1 - g) * mean(ring)`` and the delay of each
   ear is ``mean(ring) + g * (ring(az) - mean(ring))``, where ``ring(az)`` interpolates the -40
   degree ring linearly in azimuth. The ITD and ILD thus shrink like the lateral component of
   the direction and vanish at the pole;
3. the response is delayed by that delay (fractional, frequency domain), truncated to 512 taps
   and attenuated by 1 dB per 10 degrees below -40 (-5 dB at the pole) for the torso's shadow.

The output is a SOFA (AES69-2020) SimpleFreeFieldHRIR 1.0 netCDF-4 file with float32 IRs
(zlib-compressed, byte-shuffled), Data.Delay all zero; its Comment attribute repeats the above.
"""

from __future__ import annotations

import bz2
import datetime
import pickle
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from renderer.hrtf import onset_delays  # noqa: E402

OUTPUT = ROOT / "renderer" / "data" / "mit_kemar.sofa"
FILL_RINGS = ((-50.0, 45), (-60.0, 36), (-70.0, 24), (-80.0, 12), (-90.0, 1))
ATTENUATION_DB_PER_10_DEG = 1.0
WORK_FFT = 2048

COMMENT = (
    "Measured: 710 directions at elevations -40..90 degrees (MIT KEMAR, normal pinna, 44.1 kHz, "
    "1.4 m). Synthesised: the last 118 directions, rings at -50/-60/-70/-80 degrees (45/36/24/12 "
    "azimuths) and a pole at -90, made from the -40 degree ring: onset-aligned responses blended "
    "from the ring (interpolated in azimuth) towards the ring's mean with weight "
    "g = cos(el)/cos(40 deg), onset delays mean + g * (ring - mean), attenuated 1 dB per 10 "
    "degrees below -40. Made with dubstage scripts/make_kemar_sofa.py from slab's "
    "mit_kemar_normal_pinna data."
)
REFERENCES = (
    'Gardner, W. G. and Martin, K. D. (1995), "HRTF measurements of a KEMAR", '
    "J. Acoust. Soc. Am. 97(6), 3907-3908; MIT Media Lab Perceptual Computing Technical "
    "Report #280 (1994)."
)
LICENSE = (
    "MIT Media Lab KEMAR measurements (1994): free to use, for research or commercial purposes, "
    "on condition that Gardner and Martin (1995) are cited."
)


def load_slab_kemar() -> tuple[np.ndarray, np.ndarray, float]:
    """Source positions (710, 3) [az deg, el deg, m], IRs (710, 2, 512) float64, sample rate."""
    sys.modules.setdefault("sounddevice", None)  # slab imports it for playback; not needed here
    import slab

    path = Path(slab.__file__).resolve().parent / "data" / "mit_kemar_normal_pinna.bz2"
    with bz2.BZ2File(path, "r") as fh:
        hrtf = pickle.load(fh)  # noqa: S301 - the file ships with slab
    sources = np.asarray(hrtf.sources, dtype=np.float64)
    irs = np.stack([np.asarray(f.data, dtype=np.float64).T for f in hrtf.data])
    return sources, irs, float(hrtf.samplerate)


def _advance(h: np.ndarray, delay: np.ndarray, sign: float) -> np.ndarray:
    """Circular fractional shift of (..., L) responses at WORK_FFT points by sign * delay."""
    k = np.arange(WORK_FFT // 2 + 1)
    phase = np.exp(-2j * np.pi * sign * np.mod(k * delay[..., None], WORK_FFT) / WORK_FFT)
    return np.fft.irfft(np.fft.rfft(h, WORK_FFT) * phase, WORK_FFT)


def fill_cap(sources: np.ndarray, irs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Synthesised positions (118, 3) and IRs (118, 2, L) below -40 degrees (module docstring)."""
    n_taps = irs.shape[-1]
    ring = np.flatnonzero(np.isclose(sources[:, 1], -40.0))
    ring = ring[np.argsort(sources[ring, 0])]
    step = 360.0 / ring.size
    ring_ir = irs[ring]
    ring_delay = onset_delays(ring_ir)                      # (56, 2)
    ring_aligned = _advance(ring_ir, ring_delay, -1.0)      # (56, 2, WORK_FFT)
    mean_aligned = ring_aligned.mean(axis=0)
    mean_delay = ring_delay.mean(axis=0)
    distance = float(np.median(sources[:, 2]))

    positions, responses = [], []
    for elevation, count in FILL_RINGS:
        g = np.cos(np.radians(elevation)) / np.cos(np.radians(40.0))
        g = max(g, 0.0) if count > 1 else 0.0
        gain = 10.0 ** (-ATTENUATION_DB_PER_10_DEG * (-40.0 - elevation) / 10.0 / 20.0)
        for i in range(count):
            azimuth = 360.0 * i / count
            x = azimuth / step
            i0 = int(np.floor(x)) % ring.size
            i1 = (i0 + 1) % ring.size
            t = x - np.floor(x)
            aligned = (1 - t) * ring_aligned[i0] + t * ring_aligned[i1]
            delay = (1 - t) * ring_delay[i0] + t * ring_delay[i1]
            aligned = g * aligned + (1 - g) * mean_aligned
            delay = mean_delay + g * (delay - mean_delay)
            h = _advance(aligned, delay, 1.0)[..., :n_taps] * gain
            positions.append((azimuth, elevation, distance))
            responses.append(h)
    return np.array(positions), np.stack(responses)


def write_sofa(path: Path, sources: np.ndarray, irs: np.ndarray, sample_rate: float) -> None:
    """Write a SimpleFreeFieldHRIR 1.0 (AES69-2020) netCDF-4 file."""
    import netCDF4

    n_meas, n_rec, n_taps = irs.shape
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M:%S")
    with netCDF4.Dataset(path, "w", format="NETCDF4") as ds:
        ds.setncatts({
            "Conventions": "SOFA",
            "Version": "2.0",
            "SOFAConventions": "SimpleFreeFieldHRIR",
            "SOFAConventionsVersion": "1.0",
            "APIName": "dubstage scripts/make_kemar_sofa.py (netCDF4-python)",
            "APIVersion": "0.1.0",
            "DataType": "FIR",
            "RoomType": "free field",
            "Title": "MIT KEMAR HRTFs, normal pinna, full sphere",
            "DatabaseName": "MIT KEMAR",
            "ListenerShortName": "KEMAR",
            "ListenerDescription": "Knowles Electronics Manikin for Acoustic Research, "
                                   "normal (small) pinna (DB-061) on both sides",
            "AuthorContact": "Bill Gardner and Keith Martin, MIT Media Lab (measurements)",
            "Organization": "MIT Media Lab (measurements, 1994)",
            "License": LICENSE,
            "References": REFERENCES,
            "Origin": "slab (Python package) data file mit_kemar_normal_pinna.bz2",
            "Comment": COMMENT,
            "History": f"{now}: converted with scripts/make_kemar_sofa.py",
            "DateCreated": now,
            "DateModified": now,
        })
        for name, size in (("I", 1), ("C", 3), ("R", n_rec), ("E", 1), ("N", n_taps),
                           ("M", n_meas)):
            ds.createDimension(name, size)

        def position(name: str, dims: tuple[str, ...], value: np.ndarray, kind: str,
                     units: str) -> None:
            var = ds.createVariable(name, "f8", dims)
            var.Type = kind
            var.Units = units
            var[:] = value

        position("ListenerPosition", ("I", "C"), np.zeros((1, 3)), "cartesian", "metre")
        position("ListenerUp", ("I", "C"), np.array([[0.0, 0.0, 1.0]]), "cartesian", "metre")
        position("ListenerView", ("I", "C"), np.array([[1.0, 0.0, 0.0]]), "cartesian", "metre")
        position("ReceiverPosition", ("R", "C", "I"),
                 np.array([[[0.0], [0.09], [0.0]], [[0.0], [-0.09], [0.0]]]), "cartesian",
                 "metre")
        position("EmitterPosition", ("E", "C", "I"), np.zeros((1, 3, 1)), "cartesian", "metre")
        position("SourcePosition", ("M", "C"), sources, "spherical", "degree, degree, metre")

        ir = ds.createVariable("Data.IR", "f4", ("M", "R", "N"), zlib=True, complevel=9,
                               shuffle=True, chunksizes=(n_meas, n_rec, n_taps))
        ir.ChannelOrdering = "receiver 0 = left ear, receiver 1 = right ear"
        ir[:] = irs.astype(np.float32)
        rate = ds.createVariable("Data.SamplingRate", "f8", ("I",))
        rate.Units = "hertz"
        rate[:] = [sample_rate]
        delay = ds.createVariable("Data.Delay", "f8", ("I", "R"))
        delay[:] = np.zeros((1, n_rec))


def main(argv: list[str]) -> None:
    out = Path(argv[1]) if len(argv) > 1 else OUTPUT
    sources, irs, sample_rate = load_slab_kemar()
    if sources.shape[0] != 710 or sample_rate != 44100.0:
        raise SystemExit(f"unexpected KEMAR data: {sources.shape[0]} directions "
                         f"at {sample_rate} Hz")
    fill_positions, fill_irs = fill_cap(sources, irs)
    write_sofa(out, np.concatenate([sources, fill_positions]),
               np.concatenate([irs, fill_irs]), sample_rate)

    from renderer.hrtf import load_sofa

    check = load_sofa(out)
    print(f"{out}: {out.stat().st_size} bytes, {check.directions.shape[0]} directions, "
          f"{check.hrirs.shape[-1]} taps at {check.sample_rate} Hz")


if __name__ == "__main__":
    main(sys.argv)
