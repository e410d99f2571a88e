"""Conformance against the ITU-R BS.2127 reference renderer (EBU ``ear``).

Builds a set of ADM BWF test scenes with :mod:`adm.builder`, renders each to every BS.2051
layout with dubstage and with the reference renderer's ``ear-render`` command, and prints the
difference: rms(dubstage - reference) / rms(reference) in dB over all channels. The reference
is not a dependency of dubstage: install it in its own environment and pass its command, e.g.

    python3 -m venv /tmp/earvenv && /tmp/earvenv/bin/pip install ear
    python benchmarks/conformance.py --ear /tmp/earvenv/bin/ear-render

Exit status 1 if any case is worse than ``--limit-db`` (default -60).
"""

from __future__ import annotations

import argparse
import dataclasses
import subprocess
import sys
import tempfile
from fractions import Fraction
from pathlib import Path

import numpy as np

from adm.builder import AdmBuilder, write_adm_bwf
from adm.bw64 import Bw64Reader
from adm.model import (
    CartesianPosition,
    CartesianZone,
    ChannelLock,
    JumpPosition,
    ObjectDivergence,
    ObjectsBlock,
    PolarPosition,
    PolarZone,
    ScreenEdgeLock,
)
from renderer.demo import build_scene, write_scene
from renderer.render import render_file

BS2051 = ["0+2+0", "0+5+0", "2+5+0", "4+5+0", "4+5+1", "3+7+0", "4+9+0", "9+10+3", "0+7+0",
          "4+7+0"]
SR = 48000
# Both renders are attenuated so that the reference, which writes integer PCM, never clips.
GAIN_DB = -20.0


def _noise(frames: int, tracks: int, seed: int) -> np.ndarray:
    return (0.25 * np.random.default_rng(seed).standard_normal((frames, tracks))).astype(
        np.float32)


def scene_polar_objects(path: Path) -> None:
    """Static and moving polar objects, all interpolation modes, object start offsets."""
    rng = np.random.default_rng(3)
    b = AdmBuilder("polar objects")
    n = 16
    for k in range(n):
        times = [Fraction(0)] + sorted(Fraction(int(x), 100000) for x in
                                       rng.integers(1000, 190000, 6)) + [Fraction(2)]
        blocks = []
        for _i, (t0, t1) in enumerate(zip(times[:-1], times[1:])):
            if t1 <= t0:
                continue
            jump = JumpPosition()
            if k % 3 == 1:
                jump = JumpPosition(True, min(t1 - t0, Fraction(1, 100)))
            elif k % 3 == 2:
                jump = JumpPosition(True, None)
            blocks.append(ObjectsBlock(
                id="", rtime=t0, duration=t1 - t0, jump_position=jump,
                position=PolarPosition(float(rng.uniform(-180, 180)),
                                       float(rng.choice([0, 0, rng.uniform(-30, 90)])),
                                       float(rng.uniform(1.0, 1.5))),
                gain=float(rng.uniform(0.5, 1.0)),
            ))
        start = Fraction(int(rng.integers(0, 30000)), 100000) if k % 4 == 0 else None
        b.add_object(f"polar {k}", blocks, track_index=k + 1, start=start,
                     duration=Fraction(2) if start is not None else None)
    doc, chna = b.build()
    frames = int(2.4 * SR)
    write_adm_bwf(path, _noise(frames, n, 1), SR, doc, chna)


def scene_cartesian_objects(path: Path) -> None:
    """Cartesian objects on a grid including the cube's edges and outside it (clipped)."""
    rng = np.random.default_rng(5)
    b = AdmBuilder("cartesian objects")
    n = 12
    for k in range(n):
        times = [Fraction(i, 4) for i in range(9)]
        blocks = [ObjectsBlock(
            id="", rtime=t0, duration=t1 - t0, cartesian=True,
            position=CartesianPosition(*(float(v) for v in rng.choice(
                [-1.2, -1, -0.5, 0, 0.3, 0.5, 1, 1.1], 3))),
            jump_position=JumpPosition(bool(k % 2), Fraction(1, 200) if k % 2 else None),
        ) for t0, t1 in zip(times[:-1], times[1:])]
        b.add_object(f"cart {k}", blocks, track_index=k + 1)
    doc, chna = b.build()
    write_adm_bwf(path, _noise(2 * SR, n, 2), SR, doc, chna)


def scene_diffuse(path: Path) -> None:
    """Polar and cartesian objects with diffuse values changing between blocks, and a bed."""
    rng = np.random.default_rng(9)
    b = AdmBuilder("diffuse")
    b.add_direct_speakers("stereo", [1, 2], pack_format_id="AP_00010002")
    for k in range(6):
        times = [Fraction(i, 5) for i in range(6)]
        blocks = [ObjectsBlock(
            id="", rtime=t0, duration=t1 - t0, diffuse=float(rng.choice([0, 0.3, 0.5, 1])),
            cartesian=bool(k % 2),
            position=(CartesianPosition(*(float(v) for v in rng.uniform(-1, 1, 3))) if k % 2
                      else PolarPosition(float(rng.uniform(-180, 180)), 0.0, 1.0)),
        ) for t0, t1 in zip(times[:-1], times[1:])]
        b.add_object(f"diffuse {k}", blocks, track_index=k + 3)
    doc, chna = b.build()
    write_adm_bwf(path, _noise(SR + 1000, 8, 4), SR, doc, chna)


def scene_hoa(path: Path) -> None:
    """HOA packs of orders 1 to 3 in SN3D, N3D and FuMa, one starting late, plus an object."""
    b = AdmBuilder("hoa")
    b.add_hoa("order 3 SN3D", 3, list(range(1, 17)))
    b.add_hoa("order 2 N3D", 2, list(range(17, 26)), normalization="N3D",
              start=Fraction(1, 10), duration=Fraction(1, 2))
    b.add_hoa("order 1 FuMa", 1, list(range(26, 30)), normalization="FuMa")
    b.add_object("object", [ObjectsBlock(id="", position=PolarPosition(45.0, 20.0))], 30)
    doc, chna = b.build()
    write_adm_bwf(path, _noise(SR, 30, 6), SR, doc, chna)


def scene_features(path: Path) -> None:
    """Extent (polar, allocentric and distance < 1), divergence, channel lock, zone exclusion,
    screenRef and screenEdgeLock, changing from block to block."""
    rng = np.random.default_rng(12)
    b = AdmBuilder("features")
    zones = (PolarZone(-10.0, 10.0, 20.0, 40.0), CartesianZone(-1.0, 1.0, -1.0, -0.5, -1, 1))
    n = 12
    for k in range(n):
        cart = bool(k % 2)
        times = [Fraction(i, 8) for i in range(9)]
        blocks = []
        for t0, t1 in zip(times[:-1], times[1:]):
            size = float(rng.choice([0, 0.1, 0.5, 1.0])) if cart else 0.0
            blocks.append(ObjectsBlock(
                id="", rtime=t0, duration=t1 - t0, cartesian=cart,
                position=(CartesianPosition(*(float(v) for v in rng.uniform(-1, 1, 3))) if cart
                          else PolarPosition(float(rng.uniform(-180, 180)),
                                             float(rng.uniform(-20, 60)),
                                             float(rng.choice([1.0, 0.5, 0.0, 1.3])))),
                width=size if cart else float(rng.choice([0, 20, 90, 360])),
                height=size if cart else float(rng.choice([0, 10, 45])),
                depth=size if cart else float(rng.choice([0, 0, 0.3])),
                object_divergence=ObjectDivergence(
                    float(rng.choice([0, 0, 0.5, 1])), azimuth_range=30.0 if not cart else None,
                    position_range=0.4 if cart else None),
                channel_lock=ChannelLock(bool(rng.random() < 0.3),
                                         float(rng.choice([0.2, 1.0])) if rng.random() < 0.5
                                         else None),
                zone_exclusion=(zones[1],) if cart and rng.random() < 0.3 else
                ((zones[0],) if not cart and rng.random() < 0.3 else ()),
                screen_ref=bool(rng.random() < 0.3),
                screen_edge_lock=ScreenEdgeLock("left" if rng.random() < 0.2 else None, None),
            ))
        b.add_object(f"features {k}", blocks, track_index=k + 1)
    doc, chna = b.build()
    write_adm_bwf(path, _noise(SR, n, 8), SR, doc, chna)


def scene_beds(path: Path) -> None:
    """Common-definition DirectSpeakers beds: stereo, 5.1, 7.1.4 and 22.2 (9+10+3)."""
    b = AdmBuilder("beds")
    track = 1
    for pack, count in (("AP_00010002", 2), ("AP_00010003", 6), ("AP_00010017", 12),
                        ("AP_00010009", 24)):
        b.add_direct_speakers(pack, list(range(track, track + count)), pack_format_id=pack)
        track += count
    doc, chna = b.build()
    write_adm_bwf(path, _noise(SR // 2, track - 1, 3), SR, doc, chna)


def scene_atmos(path: Path) -> None:
    doc, chna, audio = build_scene(n_objects=12, duration=4.0)
    # the demo mixes near -23 LUFS; near full scale here, so that the comparison measures
    # the renderers rather than the reference's 24-bit output quantisation
    audio = dataclasses.replace(audio, levels=audio.levels * np.float32(10 ** (17 / 20)))
    write_scene(path, doc, chna, audio, 4.0)


SCENES = {
    "polar-objects": scene_polar_objects,
    "cartesian-objects": scene_cartesian_objects,
    "beds": scene_beds,
    "diffuse": scene_diffuse,
    "hoa": scene_hoa,
    "features": scene_features,
    "atmos-style": scene_atmos,
}


def _read(path: Path) -> np.ndarray:
    with Bw64Reader(path) as r:
        return r.read(0, r.frames).astype(np.float64)


def compare(a: np.ndarray, ref: np.ndarray) -> float:
    """rms(a - ref) / rms(ref) in dB over all channels (-inf if identical)."""
    if a.shape != ref.shape:
        return float("inf")
    err = np.sqrt(np.mean((a - ref) ** 2))
    level = np.sqrt(np.mean(ref ** 2))
    if err == 0:
        return float("-inf")
    return float(20 * np.log10(err / level))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ear", required=True, help="the reference renderer's ear-render")
    parser.add_argument("--limit-db", type=float, default=-60.0)
    parser.add_argument("--layouts", nargs="*", default=BS2051)
    parser.add_argument("--scenes", nargs="*", default=list(SCENES))
    args = parser.parse_args()
    worst = -np.inf
    with tempfile.TemporaryDirectory() as tmp:
        tmpdir = Path(tmp)
        print(f"{'scene':<20} {'layout':<8} {'error dB':>9}")
        for name in args.scenes:
            scene = tmpdir / f"{name}.wav"
            SCENES[name](scene)
            for layout in args.layouts:
                ours, ref = tmpdir / "ours.wav", tmpdir / "ref.wav"
                render_file(scene, ours, layout, float_output=True, output_gain_db=GAIN_DB)
                result = subprocess.run([args.ear, "-s", layout, "--output-gain-db", str(GAIN_DB),
                                         str(scene), str(ref)],
                                        capture_output=True, text=True)
                if result.returncode != 0:
                    print(f"{name:<20} {layout:<8} reference failed: "
                          f"{result.stderr.strip().splitlines()[-1]}")
                    continue
                db = compare(_read(ours), _read(ref))
                worst = max(worst, db)
                print(f"{name:<20} {layout:<8} {db:9.1f}", flush=True)
    print(f"worst: {worst:.1f} dB (limit {args.limit_db} dB)")
    return 0 if worst <= args.limit_db else 1


if __name__ == "__main__":
    sys.exit(main())
