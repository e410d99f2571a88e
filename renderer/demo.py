"""The built-in demo scene: an Atmos-style ADM BWF master made from generated sounds.

A 7.1.2 bed (DirectSpeakers with Dolby's room-centric labels and cartesian positions) plus
moving cartesian objects, written as Dolby Atmos exports do: variable-length blocks,
jumpPosition set, interpolationLength 0 on the first block and 250 samples after. Nothing is
downloaded; the audio is synthesised chunk by chunk, so scenes of any length and track count
are written in bounded memory (the benchmark uses the same generator with 118 objects).
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from adm.builder import ATMOS_BED_7_1_2, AdmBuilder
from adm.bw64 import Bw64Writer
from adm.model import AdmDocument, CartesianPosition, ChnaEntry, JumpPosition, ObjectsBlock
from adm.xml_write import adm_to_xml

INTERPOLATION_SAMPLES = 250
DOLBY_INTERPOLATION_LENGTH = Fraction(5208, 1000000)  # 250 samples at 48 kHz, as written


@dataclass(frozen=True)
class SceneAudio:
    """Deterministic per-track synthesis parameters; :meth:`chunk` renders any frame range."""

    sample_rate: int
    kinds: np.ndarray        # (tracks,) 0 tone, 1 noise bursts, 2 chirp, 3 pulses
    frequencies: np.ndarray  # (tracks,) Hz
    rates: np.ndarray        # (tracks,) modulation rate, Hz
    levels: np.ndarray       # (tracks,) linear amplitude

    def chunk(self, start: int, frames: int) -> np.ndarray:
        """Audio for frames ``[start, start + frames)``: float32 (frames, tracks)."""
        t = (start + np.arange(frames)) / self.sample_rate
        out = np.empty((frames, len(self.kinds)), np.float32)
        rng = np.random.default_rng(start)
        for k, (kind, f, r, a) in enumerate(
                zip(self.kinds, self.frequencies, self.rates, self.levels)):
            if kind == 0:
                sig = np.sin(2 * np.pi * f * t) * (0.6 + 0.4 * np.sin(2 * np.pi * r * t))
            elif kind == 1:
                env = np.clip(np.sin(2 * np.pi * r * t), 0, None) ** 2
                sig = rng.standard_normal(frames) * 0.5 * env
            elif kind == 2:
                phase = 2 * np.pi * f * (t + 0.5 * np.sin(2 * np.pi * r * t) / (2 * np.pi * r))
                sig = np.sin(phase)
            else:
                env = np.exp(-((t * r) % 1.0) * 12.0)
                sig = np.sin(2 * np.pi * f * t) * env
            out[:, k] = a * sig
        return out


def _trajectory(k: int, t: np.ndarray) -> np.ndarray:
    """Cartesian positions (len(t), 3) for object ``k``: circles, fly-overs, figure eights."""
    phase = 0.7 * k
    speed = 0.05 + 0.02 * (k % 5)
    angle = 2 * np.pi * speed * t + phase
    shape = k % 4
    if shape == 0:  # circle at ear height
        x, y, z = np.sin(angle), np.cos(angle), np.zeros_like(t)
    elif shape == 1:  # front-to-back fly-over
        x, y = 0.3 * np.sin(angle * 0.5), np.cos(angle)
        z = np.abs(np.sin(angle))
    elif shape == 2:  # figure eight
        x, y = np.sin(angle), np.sin(2 * angle) * 0.8
        z = 0.5 + 0.5 * np.sin(angle * 0.3)
    else:  # slow side-to-side sweep overhead
        x, y, z = np.sin(angle), 0.2 * np.cos(angle * 0.7), 0.8 * np.ones_like(t)
    return np.clip(np.stack([x, y, z], axis=1), -1.0, 1.0)


def build_scene(
    n_objects: int = 12,
    duration: float = 20.0,
    sample_rate: int = 48000,
    seed: int = 7,
    mean_block_seconds: float = 0.1,
) -> tuple[AdmDocument, tuple[ChnaEntry, ...], SceneAudio]:
    """An Atmos-style scene: 7.1.2 bed on tracks 1-10, then ``n_objects`` moving objects.

    Three audioContents, as a feature's stems: "Music" (the bed), "Dialogue" (the first object,
    marked as dialogue) and "Effects" (the other objects).

    Block lengths vary at random around ``mean_block_seconds`` (a whole number of samples
    each), as metadata changes would make them.
    """
    rng = np.random.default_rng(seed)
    total = int(round(duration * sample_rate))
    builder = AdmBuilder("dubstage demo", content_name="Music")
    dialogue = builder.add_content("Dialogue", dialogue=1)
    effects = builder.add_content("Effects", dialogue=0)
    bed_tracks = list(range(1, len(ATMOS_BED_7_1_2) + 1))
    builder.add_direct_speakers("Bed 7.1.2", bed_tracks, channels=ATMOS_BED_7_1_2)
    for k in range(n_objects):
        lengths = []
        pos = 0
        mean = mean_block_seconds * sample_rate
        while pos < total:
            n = max(2 * INTERPOLATION_SAMPLES, int(rng.uniform(0.3, 1.7) * mean))
            if total - pos - n < 2 * INTERPOLATION_SAMPLES:
                n = total - pos  # no block shorter than its interpolation at the end
            lengths.append(n)
            pos += n
        # Block boundaries in seconds with 5 decimals and the 250-sample interpolation length
        # as 0.005208 s, as Dolby's exports write them (not whole samples: the renderer
        # handles fractional boundaries exactly).
        edges = [Fraction(round(e / sample_rate, 5)).limit_denominator(100000)
                 for e in np.cumsum([0] + lengths)]
        edges[-1] = Fraction(total, sample_rate)
        mids = np.array([float(a + b) / 2 for a, b in zip(edges[:-1], edges[1:])])
        positions = _trajectory(k, mids)
        blocks = []
        for i, (a, b, p) in enumerate(zip(edges[:-1], edges[1:], positions)):
            interp = Fraction(0) if i == 0 else DOLBY_INTERPOLATION_LENGTH
            blocks.append(ObjectsBlock(
                id="", position=CartesianPosition(*(round(float(v), 4) for v in p)),
                rtime=a, duration=b - a, cartesian=True,
                jump_position=JumpPosition(True, interp),
            ))
        builder.add_object(f"Object {k + 1}", blocks, track_index=len(bed_tracks) + k + 1,
                           content=dialogue if k == 0 else effects)
    doc, chna = builder.build(sample_rate=sample_rate, bit_depth=24)
    n_tracks = len(bed_tracks) + n_objects
    kinds = np.array([1] * 3 + [3] + [0] * 6 + [rng.integers(0, 4) for _ in range(n_objects)])
    if n_objects:
        kinds[len(bed_tracks)] = 1  # the dialogue object: bursts of noise, like syllables
    # Levels of a mix near -23 LUFS on 7.1.4 with headroom on every layout (about -20 LUFS
    # and below full scale on 2.0); the dialogue object 10 dB above the other objects.
    levels = np.full(n_tracks, 0.07 / np.sqrt(max(1.0, n_tracks / 8)))
    if n_objects:
        levels[len(bed_tracks)] *= 10 ** (10 / 20)
    audio = SceneAudio(
        sample_rate=sample_rate,
        kinds=kinds[:n_tracks],
        frequencies=rng.uniform(110, 880, n_tracks),
        rates=rng.uniform(0.2, 3.0, n_tracks),
        levels=levels,
    )
    return doc, chna, audio


def write_scene(path: Path, doc: AdmDocument, chna, audio: SceneAudio, duration: float,
                bit_depth: int = 24, chunk_frames: int = 48000) -> None:
    """Write the scene as an ADM BWF file, synthesising the audio chunk by chunk."""
    total = int(round(duration * audio.sample_rate))
    with Bw64Writer(path, audio.sample_rate, len(audio.kinds), bit_depth=bit_depth,
                    chna=tuple(chna), axml=adm_to_xml(doc)) as writer:
        for start in range(0, total, chunk_frames):
            writer.write(audio.chunk(start, min(chunk_frames, total - start)))


def run_demo(output_dir: Path, layout: str = "7.1.4", duration: float = 20.0) -> Path:
    """Build the demo scene in ``output_dir`` and render it to ``layout``; returns the render."""
    from renderer.render import render_file

    output_dir.mkdir(parents=True, exist_ok=True)
    scene_path = output_dir / "demo_scene.wav"
    doc, chna, audio = build_scene(duration=duration)
    write_scene(scene_path, doc, chna, audio, duration)
    print(f"wrote the demo scene {scene_path} (7.1.2 bed + 12 moving objects, "
          f"{duration:g} s, 22 tracks)")
    out_path = output_dir / f"demo_scene_{layout}.wav"
    report = render_file(scene_path, out_path, layout)
    for message in report.warnings:
        print(f"dubstage: warning: {message}")
    print(f"rendered to {report.layout.name} ({', '.join(report.layout.channel_names)}): "
          f"{out_path.resolve()}")
    return out_path
