"""``dubstage info``: the ADM structure of a file as an indented tree.

Programmes -> contents -> objects (nested, with complementary groups) -> packs -> channels, with
each channel's type, track number (1-based, as in the chna chunk), block count and time span.
"""

from __future__ import annotations

import os
from fractions import Fraction

from adm.bw64 import Bw64Reader
from adm.model import (
    AdmDocument,
    AudioChannelFormat,
    AudioObject,
    AudioPackFormat,
    AudioTrackUID,
)
from adm.timecode import format_time


def _span(channel: AudioChannelFormat) -> str:
    times = [(b.rtime, b.duration) for b in channel.blocks if b.rtime is not None]
    if not times:
        return "whole object"
    start = min(r for r, _ in times)
    end = max(r + d for r, d in times)
    return f"{format_time(start)} - {format_time(end)}"


def _uid_channel(doc: AdmDocument, uid: AudioTrackUID) -> str | None:
    if uid.channel_format_id is not None:
        return uid.channel_format_id
    if uid.track_format_id is None:
        return None
    track_format = doc.get(uid.track_format_id)
    stream = doc.get(getattr(track_format, "stream_format_id", None) or "")
    return getattr(stream, "channel_format_id", None)


def _describe_object(doc: AdmDocument, obj: AudioObject, indent: str, lines: list[str]) -> None:
    extras = []
    if obj.start is not None:
        extras.append(f"start {format_time(obj.start)}")
    if obj.duration is not None:
        extras.append(f"duration {format_time(obj.duration)}")
    if obj.gain != 1.0:
        extras.append(f"gain {obj.gain:g}")
    if obj.mute:
        extras.append("muted")
    if obj.complementary_object_ids:
        extras.append("complementary: " + ", ".join(obj.complementary_object_ids))
    suffix = f" ({'; '.join(extras)})" if extras else ""
    lines.append(f"{indent}audioObject {obj.id} \"{obj.name}\"{suffix}")
    tracks: dict[str, int | None] = {}
    for uid_id in obj.track_uid_ids:
        uid = doc.get(uid_id)
        if isinstance(uid, AudioTrackUID):
            channel_id = _uid_channel(doc, uid)
            if channel_id is not None:
                tracks[channel_id] = uid.track_index
    for pack_id in obj.pack_format_ids:
        _describe_pack(doc, pack_id, indent + "  ", tracks, lines)
    for child_id in obj.object_ids:
        child = doc.get(child_id)
        if isinstance(child, AudioObject):
            _describe_object(doc, child, indent + "  ", lines)


def _describe_pack(doc: AdmDocument, pack_id: str, indent: str,
                   tracks: dict[str, int | None], lines: list[str]) -> None:
    pack = doc.get(pack_id)
    if not isinstance(pack, AudioPackFormat):
        lines.append(f"{indent}audioPackFormat {pack_id} (missing)")
        return
    common = " [common definition]" if pack.is_common_definition else ""
    lines.append(f"{indent}audioPackFormat {pack.id} \"{pack.name}\" {pack.type.name}{common}")
    for channel_id in pack.channel_format_ids:
        channel = doc.get(channel_id)
        if not isinstance(channel, AudioChannelFormat):
            continue
        track = tracks.get(channel_id)
        where = f"track {track}" if track is not None else "silent"
        labels = ""
        first = channel.blocks[0] if channel.blocks else None
        if first is not None and getattr(first, "speaker_labels", ()):
            labels = " [" + " ".join(first.speaker_labels) + "]"
        lines.append(f"{indent}  audioChannelFormat {channel.id} \"{channel.name}\"{labels}: "
                     f"{where}, {len(channel.blocks)} blocks, {_span(channel)}")
    for sub_id in pack.pack_format_ids:
        _describe_pack(doc, sub_id, indent + "  ", tracks, lines)


def describe_document(doc: AdmDocument) -> list[str]:
    """Lines of the ADM tree, from programmes down to channels."""
    lines: list[str] = []
    referenced = {child for o in doc.objects for child in o.object_ids}
    for programme in doc.programmes:
        span = ""
        if programme.start is not None or programme.end is not None:
            span = (f" ({format_time(programme.start or Fraction(0))} - "
                    f"{format_time(programme.end) if programme.end is not None else 'end'})")
        lines.append(f"audioProgramme {programme.id} \"{programme.name}\"{span}")
        for content_id in programme.content_ids:
            content = doc.get(content_id)
            if content is None:
                continue
            lines.append(f"  audioContent {content.id} \"{content.name}\"")
            for object_id in content.object_ids:
                obj = doc.get(object_id)
                if isinstance(obj, AudioObject) and obj.id not in referenced:
                    _describe_object(doc, obj, "    ", lines)
    if not doc.programmes:
        for obj in doc.objects:
            if obj.id not in referenced:
                _describe_object(doc, obj, "", lines)
    return lines


def describe_file(path: str | os.PathLike, strict: bool = False) -> str:
    """Header line (format, rate, tracks, duration, chunks) followed by the ADM tree."""
    from renderer.render import read_adm

    with Bw64Reader(path) as reader:
        seconds = reader.frames / reader.sample_rate
        fmt = f"{reader.bit_depth}-bit {'float' if reader.sample_format == 'float' else 'PCM'}"
        chunks = [name for name, _ in reader.extra_chunks]
        header = [
            f"{path}: {reader.container}, {reader.channels} tracks, {reader.sample_rate} Hz, "
            f"{fmt}, {reader.frames} frames ({seconds:.3f} s)",
            "chunks: " + ", ".join(
                ["chna"] * (reader.chna is not None) + ["axml"] * (reader.axml_region() is not None)
                + ["bext"] * (reader.bext is not None) + chunks),
        ]
        doc = read_adm(reader, strict=strict)
    return "\n".join(header + describe_document(doc))
