"""Tests for adm.bw64: RIFF/RF64/BW64 reading and writing (EBU Tech 3285, BS.2088, Tech 3306)."""

from __future__ import annotations

import os
import struct
from pathlib import Path

import numpy as np
import pytest
import soundfile

from adm import bw64
from adm.bw64 import Bw64Error, Bw64Reader, Bw64Writer, decode_chna, encode_chna, open_bw64
from adm.model import ChnaEntry

# Values whose integer codes are known by hand: x * 2**(bits-1).
VALUES = np.array([[0.0, 0.5], [-0.5, 0.25], [-1.0, 0.125]])


def chunk(cid: bytes, body: bytes) -> bytes:
    return struct.pack("<4sI", cid, len(body)) + body + b"\0" * (len(body) & 1)


def riff(*chunks: bytes, form: bytes = b"RIFF") -> bytes:
    body = b"WAVE" + b"".join(chunks)
    return struct.pack("<4sI", form, len(body)) + body


def fmt_body(tag: int, channels: int, rate: int, bits: int) -> bytes:
    align = channels * bits // 8
    return struct.pack("<HHIIHH", tag, channels, rate, rate * align, align, bits)


def write_bytes(tmp_path: Path, data: bytes, name: str = "f.wav") -> Path:
    p = tmp_path / name
    p.write_bytes(data)
    return p


def listing(d: Path) -> list[str]:
    return sorted(os.listdir(d))


# ---------------------------------------------------------------------------------------------
# round trips


@pytest.mark.parametrize(
    ("bits", "fmt", "codes_dtype", "expected_codes"),
    [
        (16, "int", "<i2", [[0, 0x4000], [-0x4000, 0x2000], [-0x8000, 0x1000]]),
        (24, "int", None, [[0, 0x400000], [-0x400000, 0x200000], [-0x800000, 0x100000]]),
        (
            32,
            "int",
            "<i4",
            [[0, 0x40000000], [-0x40000000, 0x20000000], [-0x80000000, 0x10000000]],
        ),
        (32, "float", "<f4", VALUES.tolist()),
        (64, "float", "<f8", VALUES.tolist()),
    ],
)
def test_round_trip_formats(tmp_path, bits, fmt, codes_dtype, expected_codes):
    p = tmp_path / "out.wav"
    with Bw64Writer(p, 48000, 2, bit_depth=bits, sample_format=fmt) as w:
        w.write(VALUES)
    raw = p.read_bytes()
    # header: RIFF, JUNK(28), fmt(16), data -> data starts at 12 + 36 + 24 + 8 = 80
    assert raw[:4] == b"RIFF" and raw[8:12] == b"WAVE" and raw[12:16] == b"JUNK"
    assert struct.unpack_from("<I", raw, 4)[0] == len(raw) - 8
    assert raw[72:76] == b"data"
    assert struct.unpack_from("<I", raw, 76)[0] == 6 * bits // 8
    data = raw[80:]
    if codes_dtype is None:  # 24 bit: decode by hand from 3 little-endian bytes
        codes = [int.from_bytes(data[i : i + 3], "little", signed=True) for i in range(0, 18, 3)]
        assert codes == np.ravel(expected_codes).tolist()
    else:
        np.testing.assert_array_equal(np.frombuffer(data, codes_dtype), np.ravel(expected_codes))
    with open_bw64(p) as r:
        assert r.container == "RIFF"
        assert (r.sample_rate, r.channels, r.bit_depth, r.sample_format, r.frames) == (
            48000,
            2,
            bits,
            fmt,
            3,
        )
        got = r.read()
        assert got.dtype == np.float32 and got.shape == (3, 2)
        np.testing.assert_array_equal(got, VALUES.astype(np.float32))
        assert r.chna is None and r.axml is None and r.bext is None and r.extra_chunks == ()


@pytest.mark.parametrize(("bits", "subtype"), [(16, "PCM_16"), (24, "PCM_24"), (32, "PCM_32")])
def test_plain_wav_matches_soundfile(tmp_path, bits, subtype):
    rng = np.random.default_rng(1)
    x = rng.uniform(-1, 1, size=(1000, 3))
    p = tmp_path / "sf.wav"
    soundfile.write(p, x, 44100, subtype=subtype, format="WAV")
    ref, _ = soundfile.read(p, dtype="float32", always_2d=True)
    with Bw64Reader(p) as r:
        assert (r.sample_rate, r.channels, r.bit_depth, r.frames) == (44100, 3, bits, 1000)
        np.testing.assert_array_equal(r.read(), ref)


def test_written_file_readable_by_soundfile(tmp_path):
    p = tmp_path / "w.wav"
    with Bw64Writer(p, 48000, 2, bit_depth=24) as w:
        w.write(VALUES)
    ref, rate = soundfile.read(p, dtype="float64", always_2d=True)
    assert rate == 48000
    np.testing.assert_array_equal(ref, VALUES)


def test_24bit_extremes_and_rounding(tmp_path):
    lsb = 2.0**-23
    x = np.array([[1.0], [1 - lsb], [-1.0], [0.4 * lsb], [0.6 * lsb], [-0.6 * lsb]])
    p = tmp_path / "a.wav"
    with Bw64Writer(p, 48000, 1) as w:
        w.write(x)
    assert w.clipped_samples == 1  # only +1.0 is outside [-2**23, 2**23 - 1]
    data = p.read_bytes()[80:98]
    codes = [int.from_bytes(data[i : i + 3], "little", signed=True) for i in range(0, 18, 3)]
    assert codes == [0x7FFFFF, 0x7FFFFF, -0x800000, 0, 1, -1]
    with Bw64Reader(p) as r:
        np.testing.assert_array_equal(
            r.read()[:, 0], np.array([1 - lsb, 1 - lsb, -1, 0, lsb, -lsb], np.float32)
        )


def test_clipping_count(tmp_path):
    x = np.array([[1.5, -2.0], [0.99, -1.0], [1.0, 0.0]])
    p = tmp_path / "c.wav"
    with Bw64Writer(p, 48000, 2, bit_depth=16) as w:
        w.write(x)
        w.write(x)
    assert w.clipped_samples == 6  # 1.5, -2.0 and 1.0 (32768 > 32767) in each write
    with Bw64Reader(p) as r:
        got = r.read()
    top = 32767 / 32768
    np.testing.assert_array_equal(
        got[:3], np.array([[top, -1], [round(0.99 * 32768) / 32768, -1], [top, 0]], np.float32)
    )


def test_float_output_not_clipped(tmp_path):
    x = np.array([[1.5], [-3.0]])
    p = tmp_path / "f.wav"
    with Bw64Writer(p, 48000, 1, bit_depth=32, sample_format="float") as w:
        w.write(x)
    assert w.clipped_samples == 0
    with Bw64Reader(p) as r:
        np.testing.assert_array_equal(r.read()[:, 0], [1.5, -3.0])


# ---------------------------------------------------------------------------------------------
# chunks


CHNA = (
    ChnaEntry(1, "ATU_00000001", "AT_00010001_01", "AP_00010002"),
    ChnaEntry(2, "ATU_00000002", "AT_00010002_01", "AP_00010002"),
    ChnaEntry(2, "ATU_00000003", "AT_00031001_01", None),
)


def test_encode_chna_layout():
    b = encode_chna(CHNA)
    assert len(b) == 4 + 3 * 40
    assert struct.unpack_from("<HH", b) == (2, 3)  # two distinct tracks, three UIDs
    assert struct.unpack_from("<H", b, 4)[0] == 1
    assert b[6:18] == b"ATU_00000001"
    assert b[18:32] == b"AT_00010001_01"
    assert b[32:43] == b"AP_00010002"
    assert b[43] == 0
    assert b[84 + 28 : 84 + 40] == b"\0" * 12  # packRef None -> NUL, then pad
    assert decode_chna(b) == CHNA


def test_decode_chna_skips_empty_and_strips_nul():
    body = struct.pack("<HH", 1, 1)
    body += struct.pack("<H12s14s11sx", 0, b"", b"", b"")  # reserved empty slot
    body += struct.pack("<H12s14s11sx", 1, b"ATU_00000001", b"AT_00010001_01", b"AP_0001")
    assert decode_chna(body) == (ChnaEntry(1, "ATU_00000001", "AT_00010001_01", "AP_0001"),)


def test_encode_chna_rejects_long_id():
    with pytest.raises(Bw64Error, match="UID"):
        encode_chna([ChnaEntry(1, "ATU_000000001", "AT_00010001_01")])


def test_chunks_round_trip(tmp_path):
    axml = b"<?xml version='1.0'?><ebuCoreMain>odd</ebuCoreMain>"  # odd length
    bext = bytes(range(256)) * 2 + b"\x01"  # 513 bytes, odd
    dbmd = b"\x07\x00\x01\x02\x03"
    extra = (("dbmd", dbmd), ("LIST", b"INFOISFT\x04\x00\x00\x00abc\x00"), ("zzz1", b"\x00\xff"))
    p = tmp_path / "adm.wav"
    with Bw64Writer(p, 48000, 2, chna=CHNA, axml=axml, bext=bext, extra_chunks=extra) as w:
        w.write(VALUES)
    with Bw64Reader(p) as r:
        assert r.chna == CHNA
        assert r.axml == axml
        assert r.bext == bext
        assert r.extra_chunks == extra
        np.testing.assert_array_equal(r.read(), VALUES.astype(np.float32))
    # order on disk: fmt, bext, chna, extras, data, axml
    raw = p.read_bytes()
    order = [raw.find(c) for c in (b"fmt ", b"bext", b"chna", b"dbmd", b"data", b"axml")]
    assert order == sorted(order) and -1 not in order
    assert raw.endswith(axml + b"\0")  # pad byte after odd-sized final chunk


def test_unknown_chunk_kept_byte_for_byte_and_padding(tmp_path):
    odd = bytes([0x55, 0xAA, 0x00])  # 3 bytes: pad byte follows
    pcm = struct.pack("<3h", 100, -200, 300)
    data = riff(
        chunk(b"fmt ", fmt_body(1, 1, 8000, 16)),
        chunk(b"odd!", odd),
        chunk(b"JUNK", b"\0" * 5),
        chunk(b"data", pcm),
        chunk(b"tail", b"x"),
    )
    p = write_bytes(tmp_path, data)
    with Bw64Reader(p) as r:
        assert r.extra_chunks == (("odd!", odd), ("tail", b"x"))
        np.testing.assert_array_equal(r.read()[:, 0], np.array([100, -200, 300]) / 32768)


def test_odd_sized_data_chunk_padding(tmp_path):
    # 24-bit mono, 3 frames -> 9 data bytes, pad byte, then axml must still be found
    p = tmp_path / "o.wav"
    with Bw64Writer(p, 48000, 1, axml=b"<a/>") as w:
        w.write(np.array([0.5, -0.5, 0.25]))
    raw = p.read_bytes()
    assert struct.unpack_from("<I", raw, 76)[0] == 9
    assert raw[80 + 9] == 0 and raw[90:94] == b"axml"
    with Bw64Reader(p) as r:
        assert r.axml == b"<a/>"
        np.testing.assert_array_equal(r.read()[:, 0], [0.5, -0.5, 0.25])


def test_missing_final_pad_byte_tolerated(tmp_path):
    data = riff(chunk(b"fmt ", fmt_body(1, 1, 8000, 16)), chunk(b"data", b"\x00\x40"))
    data += struct.pack("<4sI", b"tail", 3) + b"abc"  # no pad byte at end of file
    p = write_bytes(tmp_path, data)
    with Bw64Reader(p) as r:
        assert r.extra_chunks == (("tail", b"abc"),)


def test_wave_format_extensible(tmp_path):
    guid_float = struct.pack("<H", 3) + bytes.fromhex("000000001000800000aa00389b71")
    guid_pcm = struct.pack("<H", 1) + bytes.fromhex("000000001000800000aa00389b71")
    for guid, bits, payload, expected in (
        (
            guid_pcm,
            24,
            b"\x00\x00\x40" + b"\x00\x00\xc0" + b"\x00\x00\x20" + b"\x01\x00\x00",
            [[0.5, -0.5], [0.25, 2.0**-23]],
        ),
        (guid_float, 32, struct.pack("<4f", 0.75, -0.125, 1.5, 0.0), [[0.75, -0.125], [1.5, 0.0]]),
    ):
        base = fmt_body(0xFFFE, 2, 48000, bits)
        ext = struct.pack("<HHI", 22, bits, 0x3) + guid
        p = write_bytes(tmp_path, riff(chunk(b"fmt ", base + ext), chunk(b"data", payload)))
        with Bw64Reader(p) as r:
            assert r.sample_format == ("float" if guid is guid_float else "int")
            assert r.bit_depth == bits and r.channels == 2 and r.frames == 2
            np.testing.assert_array_equal(r.read(), np.array(expected, np.float32))


@pytest.mark.parametrize("form", [b"BW64", b"RF64"])
def test_hand_built_bw64_with_ds64_table(tmp_path, form):
    # BW64 with ds64 giving the data size and a table entry for a chunk marked 0xFFFFFFFF
    pcm = struct.pack("<4h", 1, 2, 3, 4)
    big = b"hello"
    ds64 = struct.pack("<QQQI", 0, len(pcm), 0, 1) + struct.pack("<4sQ", b"blob", len(big))
    body = (
        b"WAVE"
        + chunk(b"ds64", ds64)
        + chunk(b"fmt ", fmt_body(1, 2, 48000, 16))
        + struct.pack("<4sI", b"data", 0xFFFFFFFF)
        + pcm
        + struct.pack("<4sI", b"blob", 0xFFFFFFFF)
        + big
        + b"\0"
    )
    p = write_bytes(tmp_path, struct.pack("<4sI", form, 0xFFFFFFFF) + body)
    with Bw64Reader(p) as r:
        assert r.container == form.decode() and r.frames == 2
        assert r.extra_chunks == (("blob", big),)
        np.testing.assert_array_equal(r.read() * 32768, [[1, 2], [3, 4]])


def test_rf64_switch(tmp_path, monkeypatch):
    monkeypatch.setattr(bw64, "RF64_THRESHOLD", 1000)
    x = (np.arange(400) - 200).reshape(200, 2) / 256  # exact in 24 bit; 1200 bytes > 1000
    p = tmp_path / "big.wav"
    with Bw64Writer(p, 48000, 2, chna=CHNA[:2], axml=b"<x/>") as w:
        w.write(x)
    raw = p.read_bytes()
    assert raw[:4] == b"BW64" and struct.unpack_from("<I", raw, 4)[0] == 0xFFFFFFFF
    assert raw[12:16] == b"ds64" and struct.unpack_from("<I", raw, 16)[0] == 28
    riff64, data64, _dummy, table = struct.unpack_from("<QQQI", raw, 20)
    assert (riff64, data64, table) == (len(raw) - 8, 1200, 0)
    data_at = raw.find(b"data")
    assert struct.unpack_from("<I", raw, data_at + 4)[0] == 0xFFFFFFFF
    with Bw64Reader(p) as r:
        assert r.container == "BW64" and r.frames == 200
        assert r.chna == CHNA[:2] and r.axml == b"<x/>"
        np.testing.assert_array_equal(r.read(), x.astype(np.float32))


def test_small_file_stays_riff(tmp_path, monkeypatch):
    monkeypatch.setattr(bw64, "RF64_THRESHOLD", 10_000)
    p = tmp_path / "s.wav"
    with Bw64Writer(p, 48000, 2) as w:
        w.write(np.zeros((10, 2)))
    assert p.read_bytes()[:4] == b"RIFF" and p.read_bytes()[12:16] == b"JUNK"


def test_written_data_flushed_in_background_before_the_final_flush(tmp_path, monkeypatch):
    """Past FLUSH_BYTES of data, the writer has the file flushed to the disk in another thread
    (so closing has little left to flush); closing waits for that flush, flushes the rest and
    renames; what was written is read back exactly."""
    import threading

    monkeypatch.setattr(bw64, "FLUSH_BYTES", 600)  # 100 frames of 2 channels at 24 bits
    release = threading.Event()
    calls = []

    def slow_datasync(fd):
        calls.append(("background", threading.current_thread().name))
        assert release.wait(10)

    def final_sync(fd):
        calls.append(("close", threading.current_thread().name))

    monkeypatch.setattr(bw64.os, "fdatasync", slow_datasync, raising=False)
    monkeypatch.setattr(bw64.os, "fsync", final_sync)
    x = (np.arange(1000) - 500).reshape(500, 2) / 1024
    p = tmp_path / "flushed.wav"
    w = Bw64Writer(p, 48000, 2)
    for start in range(0, 500, 50):
        w.write(x[start:start + 50])
    # one flush at a time: later writes past the threshold found it still running
    assert calls == [("background", "bw64-flush")]
    assert not p.exists()
    threading.Timer(0.05, release.set).start()
    w.close()
    assert calls == [("background", "bw64-flush"), ("close", "MainThread")]
    with Bw64Reader(p) as r:
        np.testing.assert_array_equal(r.read(), x.astype(np.float32))


def test_abort_waits_for_the_background_flush(tmp_path, monkeypatch):
    import threading
    import time

    monkeypatch.setattr(bw64, "FLUSH_BYTES", 1)
    done = threading.Event()

    def datasync(fd):
        time.sleep(0.05)  # still flushing when the writer is aborted
        os.fstat(fd)  # the descriptor is still open
        done.set()

    monkeypatch.setattr(bw64.os, "fdatasync", datasync, raising=False)
    p = tmp_path / "aborted.wav"
    with pytest.raises(RuntimeError), Bw64Writer(p, 48000, 1) as w:
        w.write(np.zeros(10))
        raise RuntimeError("render failed")
    assert done.is_set()
    assert not p.exists() and list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------------------------
# streaming


def test_blocks_equal_full_read(tmp_path):
    rng = np.random.default_rng(7)
    x = rng.uniform(-1, 1, size=(70001, 5))  # > one conversion piece, odd length
    p = tmp_path / "b.wav"
    with Bw64Writer(p, 48000, 5) as w:
        w.write(x)
    with Bw64Reader(p) as r:
        full = r.read()
        blocks = list(r.iter_blocks(4096))
        assert [b.shape[0] for b in blocks[-2:]] == [4096, 70001 - 17 * 4096]
        np.testing.assert_array_equal(np.concatenate(blocks), full)
        np.testing.assert_array_equal(r.read(1000, 123), full[1000:1123])
        assert r.read(69990, 100).shape == (11, 5)  # shortened at the end
        np.testing.assert_allclose(full, x, atol=2.0**-24)
        out = np.empty((10, 5), np.float32)
        assert r.read(5, 10, out=out) is out
        np.testing.assert_array_equal(out, full[5:15])


# ---------------------------------------------------------------------------------------------
# bad input


def good_file() -> bytes:
    return riff(chunk(b"fmt ", fmt_body(1, 2, 48000, 16)), chunk(b"data", b"\x01\x00" * 8))


def test_error_not_riff(tmp_path):
    p = write_bytes(tmp_path, b"OggS" + b"\0" * 40)
    with pytest.raises(Bw64Error, match=r"f\.wav: not a RIFF/RF64/BW64 file"):
        Bw64Reader(p)


def test_error_truncated_header(tmp_path):
    p = write_bytes(tmp_path, b"RIFF\x10\x00")
    with pytest.raises(Bw64Error, match="truncated header") as e:
        Bw64Reader(p)
    assert str(e.value).startswith(str(p))


def test_error_data_truncated(tmp_path):
    p = write_bytes(tmp_path, good_file()[:-6])  # 4 frames declared, 2.5 present
    with pytest.raises(Bw64Error, match="data chunk truncated.*4 frames.*2 frames"):
        Bw64Reader(p)


def test_error_chunk_past_end(tmp_path):
    data = riff(chunk(b"fmt ", fmt_body(1, 2, 48000, 16)), chunk(b"data", b"\0" * 4))
    data += struct.pack("<4sI", b"dbmd", 100) + b"\0" * 10
    p = write_bytes(tmp_path, data)
    with pytest.raises(Bw64Error, match="chunk 'dbmd'.*runs past the end"):
        Bw64Reader(p)


def test_error_missing_fmt(tmp_path):
    p = write_bytes(tmp_path, riff(chunk(b"data", b"\0" * 4)))
    with pytest.raises(Bw64Error, match="missing fmt chunk"):
        Bw64Reader(p)


def test_error_missing_data(tmp_path):
    p = write_bytes(tmp_path, riff(chunk(b"fmt ", fmt_body(1, 2, 48000, 16))))
    with pytest.raises(Bw64Error, match="missing data chunk"):
        Bw64Reader(p)


@pytest.mark.parametrize(
    ("tag", "bits", "what"),
    [(2, 16, "format tag 0x0002"), (1, 8, "bit depth 8"), (3, 16, "bit depth 16")],
)
def test_error_unsupported_format(tmp_path, tag, bits, what):
    p = write_bytes(
        tmp_path, riff(chunk(b"fmt ", fmt_body(tag, 1, 48000, bits)), chunk(b"data", b"\0" * 8))
    )
    with pytest.raises(Bw64Error, match=f"unsupported {what}"):
        Bw64Reader(p)


@pytest.mark.parametrize("size", [0xFFFFFFFF, 0])
def test_error_unfinalised_riff_data_size(tmp_path, size):
    data = riff(chunk(b"fmt ", fmt_body(1, 1, 48000, 16))) + struct.pack("<4sI", b"data", size)
    p = write_bytes(tmp_path, data + b"\0" * 100)
    with pytest.raises(Bw64Error, match="data chunk size is"):
        Bw64Reader(p)


def test_empty_data_chunk_is_zero_frames(tmp_path):
    p = tmp_path / "e.wav"
    with Bw64Writer(p, 48000, 2):
        pass
    with Bw64Reader(p) as r:
        assert r.frames == 0 and r.read().shape == (0, 2)


def test_error_rf64_without_ds64(tmp_path):
    p = write_bytes(tmp_path, b"RF64" + good_file()[4:])
    with pytest.raises(Bw64Error, match="without a ds64"):
        Bw64Reader(p)


@pytest.mark.parametrize("index", [0, 3])
def test_error_bad_chna_index(tmp_path, index):
    body = struct.pack("<HH", 1, 1) + struct.pack(
        "<H12s14s11sx", index, b"ATU_00000001", b"AT_00010001_01", b""
    )
    p = write_bytes(
        tmp_path,
        riff(
            chunk(b"fmt ", fmt_body(1, 2, 48000, 16)),
            chunk(b"chna", body),
            chunk(b"data", b"\0" * 4),
        ),
    )
    with pytest.raises(Bw64Error, match=f"track index {index}, outside 1..2"):
        Bw64Reader(p)


def test_writer_rejects_bad_chna_index(tmp_path):
    with pytest.raises(Bw64Error, match="track index 3"):
        Bw64Writer(tmp_path / "x.wav", 48000, 2, chna=[ChnaEntry(3, "ATU_00000001", "AT_1")])
    assert listing(tmp_path) == []


# ---------------------------------------------------------------------------------------------
# atomic writing


def test_atomic_write_exception_leaves_nothing(tmp_path):
    p = tmp_path / "out.wav"
    with pytest.raises(RuntimeError, match="boom"), Bw64Writer(p, 48000, 2) as w:
        w.write(np.zeros((100, 2)))
        assert any(n.startswith(".out.wav.partial-") for n in listing(tmp_path))
        assert not p.exists()
        raise RuntimeError("boom")
    assert listing(tmp_path) == []


def test_atomic_write_keeps_previous_file_on_failure(tmp_path):
    p = tmp_path / "out.wav"
    p.write_bytes(b"previous")
    w = Bw64Writer(p, 48000, 1)
    w.write(np.zeros(10))
    w.abort()
    assert p.read_bytes() == b"previous" and listing(tmp_path) == ["out.wav"]


def test_write_shape_error(tmp_path):
    with Bw64Writer(tmp_path / "x.wav", 48000, 2) as w, pytest.raises(Bw64Error, match="shape"):
        w.write(np.zeros((4, 3)))


def test_refuse_to_overwrite_input(tmp_path):
    src = tmp_path / "in.wav"
    src.write_bytes(good_file())
    link = tmp_path / "sub"
    link.mkdir()
    alias = link / ".." / "in.wav"
    with Bw64Reader(src) as r:
        with pytest.raises(Bw64Error, match="refusing to overwrite"):
            Bw64Writer(alias, 48000, 2, forbid_paths=[r.path])
        assert r.read().shape == (4, 2)
    assert src.read_bytes() == good_file()
    assert listing(tmp_path) == ["in.wav", "sub"]


@pytest.mark.parametrize("threads", [1, 3])
def test_24bit_decode_exact_for_random_codes(tmp_path, monkeypatch, threads):
    monkeypatch.setattr(bw64, "DECODE_THREADS", threads)
    rng = np.random.default_rng(3)
    n_frames, ch = 40000, 7  # 280k samples: several conversion pieces, split over threads
    payload = rng.integers(0, 256, n_frames * ch * 3, dtype=np.uint8).tobytes()
    p = write_bytes(
        tmp_path, riff(chunk(b"fmt ", fmt_body(1, ch, 48000, 24)), chunk(b"data", payload))
    )
    b = np.frombuffer(payload, np.uint8).reshape(-1, 3).astype(np.int64)
    codes = b[:, 0] + 256 * b[:, 1] + 65536 * b[:, 2]
    codes = np.where(codes >= 2**23, codes - 2**24, codes)  # two's complement, 24 bit
    expected = (codes / 2.0**23).reshape(n_frames, ch)
    with Bw64Reader(p) as r:
        got = r.read()
        np.testing.assert_array_equal(got.astype(np.float64), expected)
        np.testing.assert_array_equal(r.read(12345, 20000), got[12345:32345])


def test_nan_rejected_for_pcm(tmp_path):
    p = tmp_path / "n.wav"
    with Bw64Writer(p, 48000, 1) as w:
        w.write(np.zeros(4))
        with pytest.raises(Bw64Error, match="non-finite"):
            w.write(np.array([0.1, np.nan]))
    with Bw64Reader(p) as r:
        assert r.frames == 4  # the rejected block was not written


def test_read_blocks_are_64_byte_aligned(tmp_path):
    # frames and raw bytes start on a 64-byte boundary (JAX on the CPU then uses them without
    # a copy) and hold the same samples as ever
    x = np.random.default_rng(3).uniform(-1, 1, (1000, 5)).astype(np.float32)
    path = tmp_path / "a.wav"
    with Bw64Writer(path, 48000, 5, bit_depth=24) as w:
        w.write(x)
    with Bw64Reader(path) as r:
        for start, n in [(0, 1000), (1, 333), (7, 64)]:
            frames, raw = r.read(start, n), r.read_raw(start, n)
            assert frames.ctypes.data % 64 == 0 and raw.ctypes.data % 64 == 0
            assert frames.flags.c_contiguous and frames.shape == (n, 5)
            np.testing.assert_allclose(frames, x[start:start + n], atol=2.0 ** -23)
            assert raw.shape == (n, 15)
    for shape, dtype in [((3, 7), np.float32), ((0,), np.uint8), ((5, 2, 3), np.int16)]:
        a = bw64.aligned_empty(shape, dtype)
        assert a.shape == shape and a.dtype == dtype and a.flags.c_contiguous
        assert a.size == 0 or a.ctypes.data % 64 == 0


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_in_a_later_piece_writes_nothing(tmp_path, bad):
    # a write converted in several pieces is refused whole: nothing of it reaches the file
    p = tmp_path / "n.wav"
    x = np.full(((1 << 18) + 10, 1), 0.25)
    x[-1, 0] = bad
    with Bw64Writer(p, 48000, 1) as w:
        w.write(np.zeros(4))
        with pytest.raises(Bw64Error, match="non-finite"):
            w.write(x)
        w.write(np.full(3, 2.0))  # clipped: 3 samples
        assert w.clipped_samples == 3
    with Bw64Reader(p) as r:
        assert r.frames == 7
        full_scale = 1 - 2.0 ** -23  # 24-bit
        np.testing.assert_array_equal(r.read()[:, 0], [0, 0, 0, 0] + [full_scale] * 3)
