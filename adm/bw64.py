"""BW64 / RF64 / RIFF-WAVE reading and writing (EBU Tech 3285, ITU-R BS.2088, EBU Tech 3306).

Reading parses the chunk list once (``fmt``, ``data``, ``ds64``, ``chna``, ``axml``, ``bext``
and any other chunk, kept as raw bytes) and then streams audio frames on demand with file
seeks; the file is never loaded whole. Samples come back as float32 arrays of shape
``(frames, channels)`` in [-1, 1): integer PCM of ``b`` bits is divided by ``2**(b-1)``;
IEEE float data is returned as is (cast to float32).

Writing goes to a temporary file next to the destination and is renamed onto it only when the
writer closes without error, so a failed or interrupted write never leaves a half-written file.
Files are written as ``RIFF``/``WAVE`` with a 28-byte ``JUNK`` chunk reserved right after the
``WAVE`` id; if the RIFF or data size exceeds :data:`RF64_THRESHOLD` the header is rewritten as
``BW64`` and the ``JUNK`` chunk becomes the ``ds64`` chunk (BS.2088 clause 4 / Tech 3306).

Chunk layouts used here (all little-endian):

* ``ds64``: uint64 riffSize, uint64 dataSize, uint64 dummy (sampleCount), uint32 tableLength,
  then ``tableLength`` entries of (char[4] chunkId, uint64 chunkSize).
* ``fmt ``: uint16 formatTag, uint16 channels, uint32 sampleRate, uint32 bytesPerSecond,
  uint16 blockAlign, uint16 bitsPerSample, [uint16 cbSize, uint16 validBits, uint32 channelMask,
  GUID subFormat] -- the bracketed part only for WAVE_FORMAT_EXTENSIBLE (0xFFFE).
* ``chna`` (BS.2088 clause 8): uint16 numTracks, uint16 numUIDs, then 40-byte entries of
  uint16 trackIndex, char[12] UID, char[14] trackRef, char[11] packRef, 1 pad byte.
"""

from __future__ import annotations

import mmap
import os
import struct
import tempfile
import threading
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import BinaryIO, Literal

import numpy as np

from adm.model import ChnaEntry

__all__ = [
    "DECODE_THREADS",
    "RF64_THRESHOLD",
    "Bw64Error",
    "Bw64Reader",
    "Bw64Writer",
    "aligned_empty",
    "encode_chna",
    "decode_chna",
    "open_bw64",
]

#: RIFF or data sizes above this many bytes make the writer switch to a ``BW64`` header with a
#: ``ds64`` chunk. Module-level so tests can lower it.
RF64_THRESHOLD: int = 0xFFFFFFFF

#: Worker threads for decoding large reads (None: min(8, CPU count)); 1 decodes in the caller.
DECODE_THREADS: int | None = None

WAVE_FORMAT_PCM = 0x0001
WAVE_FORMAT_IEEE_FLOAT = 0x0003
WAVE_FORMAT_EXTENSIBLE = 0xFFFE

_SIZE32_MAX = 0xFFFFFFFF
_JUNK_RESERVED = 28  # the size of a ds64 chunk body with an empty table
_CHNA_ENTRY = struct.Struct("<H12s14s11sx")
_DS64_HEAD = struct.Struct("<QQQI")
_DS64_ENTRY = struct.Struct("<4sQ")
_SUPPORTED = {WAVE_FORMAT_PCM: (16, 24, 32), WAVE_FORMAT_IEEE_FLOAT: (32, 64)}
# Chunks that describe the file structure itself and are not carried as extra chunks.
_STRUCTURAL = {"fmt ", "data", "ds64", "chna", "axml", "bext", "fact", "JUNK", "junk", "PAD "}
_CONTAINERS = {b"RIFF": "RIFF", b"RF64": "RF64", b"BW64": "BW64"}
# Conversion works through the audio in pieces of this many samples (all channels), so the
# scratch buffers stay in cache whatever the size of the request.
_CONVERT_SAMPLES = 1 << 16
FLUSH_BYTES = 1 << 24
"""A writer has the data it has written so far sent to the disk in the background every
this many bytes (16 MiB), so that the flush before the file is renamed has little left."""
_HAVE_PREADV = hasattr(os, "preadv")

SampleFormat = Literal["int", "float"]


class Bw64Error(ValueError):
    """A BW64/RF64/WAV file is malformed or unsupported, or a write request is invalid.

    The message starts with the file path and names the problem.
    """


# --------------------------------------------------------------------------------------------
# chna


def encode_chna(entries: Iterable[ChnaEntry]) -> bytes:
    """Encode ``chna`` chunk contents (BS.2088 clause 8), without the 8-byte chunk header.

    numTracks is the number of distinct track indices, numUIDs the number of entries.
    Raises :class:`Bw64Error` for a track index outside 1..65535 or an ID that is not ASCII or
    is longer than its field (UID 12, trackRef 14, packRef 11 characters).
    """
    entries = tuple(entries)
    out = bytearray(struct.pack("<HH", len({e.track_index for e in entries}), len(entries)))
    for e in entries:
        if not 1 <= e.track_index <= 0xFFFF:
            raise Bw64Error(f"chna: track index {e.track_index} of {e.track_uid} out of range")
        fields = []
        for name, value, width in (
            ("UID", e.track_uid, 12),
            ("trackRef", e.track_format_id, 14),
            ("packRef", e.pack_format_id or "", 11),
        ):
            try:
                raw = value.encode("ascii")
            except UnicodeEncodeError:
                raise Bw64Error(f"chna: {name} {value!r} is not ASCII") from None
            if len(raw) > width:
                raise Bw64Error(f"chna: {name} {value!r} longer than {width} characters")
            fields.append(raw)
        out += _CHNA_ENTRY.pack(e.track_index, *fields)
    return bytes(out)


def decode_chna(body: bytes, where: str = "chna") -> tuple[ChnaEntry, ...]:
    """Decode ``chna`` chunk contents into entries, in file order.

    NUL padding is stripped; all-empty entries (track index 0 and no UID) are skipped; an empty
    packRef gives ``pack_format_id=None``. Entries are read up to the end of the chunk (some
    writers reserve more slots than numUIDs says). ``where`` prefixes error messages.
    """
    if len(body) < 4:
        raise Bw64Error(f"{where}: chna chunk too short ({len(body)} bytes)")
    entries = []
    for off in range(4, len(body) - _CHNA_ENTRY.size + 1, _CHNA_ENTRY.size):
        index, uid, track_ref, pack_ref = _CHNA_ENTRY.unpack_from(body, off)
        try:
            uid_s, track_s, pack_s = (
                f.rstrip(b"\0").decode("ascii") for f in (uid, track_ref, pack_ref)
            )
        except UnicodeDecodeError:
            raise Bw64Error(f"{where}: chna entry at byte {off} is not ASCII") from None
        if index == 0 and not uid_s and not track_s and not pack_s:
            continue
        entries.append(ChnaEntry(index, uid_s, track_s, pack_s or None))
    return tuple(entries)


# --------------------------------------------------------------------------------------------
# reading


class _Scratch(threading.local):
    """Per-thread conversion buffers: raw bytes (24-bit samples are read from byte 1 on,
    after a pad byte) and the 24-bit int32 assembly area."""

    def __init__(self) -> None:
        self.raw = bytearray(_CONVERT_SAMPLES * 8 + 1)
        self.tmp24 = np.zeros(_CONVERT_SAMPLES, dtype=np.int32)


def aligned_empty(shape: tuple[int, ...], dtype: np.dtype | type | str,
                  alignment: int = 64) -> np.ndarray:
    """An uninitialised C-contiguous array whose data starts on an ``alignment``-byte
    boundary (numpy's own arrays are 16-byte aligned). A 64-byte aligned float32 array is
    used by JAX on the CPU without a copy (a copy of a 16 MB block of frames costs 5 ms)."""
    size = int(np.prod(shape)) * np.dtype(dtype).itemsize
    buffer = np.empty(size + alignment, np.uint8)
    skip = (-buffer.ctypes.data) % alignment
    return buffer[skip:skip + size].view(dtype).reshape(shape)


def _default_threads() -> int:
    return max(1, min(8, os.cpu_count() or 1))


class Bw64Reader:
    """Reader for RIFF/WAVE, RF64 and BW64 files; streams frames as float32.

    Open with ``Bw64Reader(path)`` (or :func:`open_bw64`) and use as a context manager. The
    header is parsed and validated on opening; :class:`Bw64Error` names the problem.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self._path = Path(path)
        self._f: BinaryIO | None = open(self._path, "rb", buffering=0)  # noqa: SIM115
        try:
            self._parse()
        except BaseException:
            self._f.close()
            self._f = None
            raise
        self._scratch = _Scratch()
        self._lock = threading.Lock()  # guards seek+readinto where os.preadv is missing
        self._pool: ThreadPoolExecutor | None = None
        self._pool_size = 0

    # -- header parsing --------------------------------------------------------------------

    def _err(self, msg: str) -> Bw64Error:
        return Bw64Error(f"{self._path}: {msg}")

    def _parse(self) -> None:
        f = self._f
        assert f is not None
        file_size = os.fstat(f.fileno()).st_size
        head = f.read(12)
        if len(head) >= 4 and head[:4] not in _CONTAINERS:
            raise self._err(f"not a RIFF/RF64/BW64 file (starts with {head[:4]!r})")
        if len(head) < 12:
            raise self._err(f"truncated header ({file_size} bytes, need at least 12)")
        if head[8:12] != b"WAVE":
            raise self._err(f"not a WAVE file (form type {head[8:12]!r})")
        self._container = _CONTAINERS[head[:4]]
        large = self._container != "RIFF"

        ds64_data: int | None = None
        ds64_table: dict[str, list[int]] = {}
        fmt: bytes | None = None
        data: tuple[int, int] | None = None  # (offset, size in bytes)
        chna_body: bytes | None = None
        axml_span: tuple[int, int] | None = None
        bext: bytes | None = None
        extra: list[tuple[str, bytes]] = []

        pos = 12
        first = True
        while pos < file_size:
            if file_size - pos < 8:
                f.seek(pos)
                rest = f.read()
                if rest.strip(b"\0"):
                    raise self._err(f"truncated chunk header at byte {pos}")
                break
            f.seek(pos)
            cid_raw, size32 = struct.unpack("<4sI", f.read(8))
            cid = cid_raw.decode("latin-1")
            body_pos = pos + 8
            size = size32
            if large and size32 == _SIZE32_MAX:
                if cid == "data":
                    if ds64_data is None:
                        raise self._err("data chunk size is 0xFFFFFFFF but there is no ds64")
                    size = ds64_data
                elif ds64_table.get(cid):
                    size = ds64_table[cid].pop(0)
                else:
                    raise self._err(f"chunk {cid!r} has size 0xFFFFFFFF and no ds64 table entry")
            if large and first:
                if cid != "ds64":
                    raise self._err(f"{self._container} file without a ds64 first chunk")
                if size < _DS64_HEAD.size or body_pos + size > file_size:
                    raise self._err(f"truncated ds64 chunk ({size} bytes)")
                body = f.read(size)
                _riff64, ds64_data, _dummy, n_table = _DS64_HEAD.unpack_from(body)
                if _DS64_HEAD.size + n_table * _DS64_ENTRY.size > size:
                    raise self._err(f"ds64 table of {n_table} entries runs past the ds64 chunk")
                for k in range(n_table):
                    tid, tsize = _DS64_ENTRY.unpack_from(body, _DS64_HEAD.size + 12 * k)
                    ds64_table.setdefault(tid.decode("latin-1"), []).append(tsize)
                pos = body_pos + size + (size & 1)
                first = False
                continue
            first = False

            if cid == "data":
                if data is not None:
                    raise self._err("more than one data chunk")
                if not large and size32 == _SIZE32_MAX:
                    raise self._err(
                        "data chunk size is 0xFFFFFFFF in a plain RIFF file "
                        "(unfinished recording or an RF64 file without ds64)"
                    )
                if not large and size32 == 0 and file_size - body_pos > 1:
                    raise self._err(
                        f"data chunk size is 0 but {file_size - body_pos} bytes follow it "
                        "(header never finalised)"
                    )
                data = (body_pos, size)
                if body_pos + size > file_size:
                    break  # reported below once fmt is known (needs the frame size)
                pos = body_pos + size + (size & 1)
                continue

            if body_pos + size > file_size:
                raise self._err(
                    f"chunk {cid!r} at byte {pos} has size {size}, which runs past the end "
                    f"of the file ({file_size} bytes)"
                )
            if cid == "ds64":
                pass  # stray ds64 in a plain RIFF file, or a second one: ignore
            elif cid in ("JUNK", "junk", "PAD ", "fact"):
                pass
            elif cid == "axml":
                axml_span = (body_pos, size)  # read when asked for: it can be large
            else:
                body = f.read(size)
                if cid == "fmt ":
                    if fmt is not None:
                        raise self._err("more than one fmt chunk")
                    fmt = body
                elif cid == "chna":
                    chna_body = body
                elif cid == "bext":
                    bext = body
                else:
                    extra.append((cid, body))
            # pad byte after an odd-sized chunk; a missing pad at the very end is tolerated
            pos = body_pos + size + (size & 1)

        if fmt is None:
            raise self._err("missing fmt chunk")
        self._parse_fmt(fmt)
        if data is None:
            raise self._err("missing data chunk")
        self._data_offset, data_size = data
        self._frames = data_size // self._block_align
        available = max(0, min(data_size, file_size - self._data_offset))
        if available < data_size:
            raise self._err(
                f"data chunk truncated: its size says {self._frames} frames "
                f"({data_size} bytes) but the file holds {available // self._block_align} "
                f"frames ({available} bytes)"
            )
        self._chna = None
        if chna_body is not None:
            self._chna = decode_chna(chna_body, str(self._path))
            for e in self._chna:
                if not 1 <= e.track_index <= self._channels:
                    raise self._err(
                        f"chna entry {e.track_uid!r} has track index {e.track_index}, "
                        f"outside 1..{self._channels} (the channel count)"
                    )
        self._axml_span = axml_span
        self._bext = bext
        self._extra = tuple(extra)

    def _parse_fmt(self, body: bytes) -> None:
        if len(body) < 16:
            raise self._err(f"fmt chunk too short ({len(body)} bytes, need 16)")
        tag, channels, rate, _byte_rate, block_align, bits = struct.unpack_from("<HHIIHH", body)
        if tag == WAVE_FORMAT_EXTENSIBLE:
            if len(body) < 40:
                raise self._err(f"WAVE_FORMAT_EXTENSIBLE fmt chunk too short ({len(body)} bytes)")
            (tag,) = struct.unpack_from("<H", body, 24)  # first two bytes of the subformat GUID
        if tag not in _SUPPORTED:
            raise self._err(f"unsupported format tag 0x{tag:04X} (need PCM 1 or IEEE float 3)")
        if bits not in _SUPPORTED[tag]:
            kind = "PCM" if tag == WAVE_FORMAT_PCM else "IEEE float"
            raise self._err(f"unsupported bit depth {bits} for {kind}")
        if channels < 1:
            raise self._err("fmt chunk says 0 channels")
        if rate < 1:
            raise self._err("fmt chunk says a sample rate of 0")
        if block_align != channels * bits // 8:
            raise self._err(
                f"fmt block align {block_align} does not match {channels} channels x {bits} bits"
            )
        self._format_tag = tag
        self._channels = channels
        self._sample_rate = rate
        self._bits = bits
        self._block_align = block_align

    # -- properties ------------------------------------------------------------------------

    @property
    def path(self) -> Path:
        """The file path."""
        return self._path

    @property
    def container(self) -> Literal["RIFF", "RF64", "BW64"]:
        """The outer chunk id: ``'RIFF'``, ``'RF64'`` or ``'BW64'``."""
        return self._container  # type: ignore[return-value]

    @property
    def sample_rate(self) -> int:
        """Sample rate in Hz."""
        return self._sample_rate

    @property
    def channels(self) -> int:
        """Number of channels (tracks)."""
        return self._channels

    @property
    def bit_depth(self) -> int:
        """Bits per sample: 16, 24, 32 (int) or 32, 64 (float)."""
        return self._bits

    @property
    def sample_format(self) -> SampleFormat:
        """``'int'`` for PCM, ``'float'`` for IEEE float."""
        return "int" if self._format_tag == WAVE_FORMAT_PCM else "float"

    @property
    def frames(self) -> int:
        """Number of sample frames in the data chunk."""
        return self._frames

    @property
    def chna(self) -> tuple[ChnaEntry, ...] | None:
        """The ``chna`` entries in file order, or None without a chna chunk."""
        return self._chna

    @property
    def axml(self) -> bytes | None:
        """The raw ``axml`` chunk body, or None (read from the file at each access: it can be
        large, about 0.4 KB per ADM block; see :meth:`axml_region`)."""
        if self._axml_span is None:
            return None
        offset, size = self._axml_span
        data = bytearray(size)
        self._read_at(self._require_open(), memoryview(data), offset)
        return bytes(data)

    def axml_region(self):
        """The ``axml`` chunk as an :class:`adm.xml.FileRegion` of this open file (parsed in
        pieces, never held whole), or None without an axml chunk."""
        if self._axml_span is None:
            return None
        from adm.xml import FileRegion

        offset, size = self._axml_span
        return FileRegion(self._require_open().fileno(), offset, size)

    @property
    def bext(self) -> bytes | None:
        """The raw ``bext`` chunk body, or None."""
        return self._bext

    @property
    def extra_chunks(self) -> tuple[tuple[str, bytes], ...]:
        """Every other chunk (e.g. ``dbmd``, ``LIST``) as (id, raw body), in file order.

        Not included: ``fmt``, ``data``, ``ds64``, ``chna``, ``axml``, ``bext``, ``fact`` and the
        padding chunks ``JUNK``/``junk``/``PAD``.
        """
        return self._extra

    @property
    def data_offset(self) -> int:
        """Byte offset of the first sample in the file."""
        return self._data_offset

    # -- frames ----------------------------------------------------------------------------

    def read(
        self, start_frame: int = 0, n_frames: int | None = None, out: np.ndarray | None = None
    ) -> np.ndarray:
        """Read frames ``[start_frame, start_frame + n_frames)`` as float32 ``(n, channels)``.

        ``n_frames=None`` reads to the end; a request past the end is shortened. Integer PCM
        of ``b`` bits is scaled by ``2**-(b-1)`` into [-1, 1); float data is returned as is.
        ``out``, if given, is a C-contiguous float32 array of shape ``(n, channels)`` that is
        filled and returned (``n`` being the shortened count).
        """
        f = self._require_open()
        n = self._frames_from(start_frame, n_frames)
        ch = self._channels
        if out is None:
            out = aligned_empty((n, ch), np.float32)
        elif out.shape != (n, ch) or out.dtype != np.float32 or not out.flags.c_contiguous:
            raise ValueError(
                f"out must be a C-contiguous float32 array of shape {(n, ch)}, got "
                f"{out.dtype} {out.shape}"
            )
        flat = out.reshape(-1)
        total = n * ch
        offset = self._data_offset + start_frame * self._block_align
        width = self._bits // 8
        threads = DECODE_THREADS if DECODE_THREADS is not None else _default_threads()
        pieces = -(-total // _CONVERT_SAMPLES)
        if threads > 1 and pieces >= 4:
            # contiguous spans of whole pieces, one per worker; numpy and preadv release the GIL
            per = -(-pieces // min(threads, pieces)) * _CONVERT_SAMPLES
            if self._pool is None or self._pool_size != threads:
                if self._pool is not None:
                    self._pool.shutdown()
                self._pool = ThreadPoolExecutor(threads, thread_name_prefix="bw64")
                self._pool_size = threads
            futures = [
                self._pool.submit(self._decode_span, f, offset + i * width, flat[i : i + per])
                for i in range(0, total, per)
            ]
            for fut in futures:
                fut.result()
        else:
            self._decode_span(f, offset, flat)
        return out

    def _frames_from(self, start_frame: int, n_frames: int | None) -> int:
        """The frames of a request for ``n_frames`` (None: to the end) from ``start_frame``,
        shortened at the end of the data; a start outside the data is an error."""
        if start_frame < 0 or start_frame > self._frames:
            raise self._err(f"start frame {start_frame} outside 0..{self._frames}")
        avail = self._frames - start_frame
        return avail if n_frames is None else max(0, min(int(n_frames), avail))

    def _read_at(self, f: BinaryIO, view: memoryview, offset: int) -> None:
        """Fill ``view`` with file bytes from ``offset``; error if the file ends first."""
        got = 0
        total = len(view)
        while got < total:
            if _HAVE_PREADV:
                n = os.preadv(f.fileno(), [view[got:]], offset + got)
            else:
                with self._lock:
                    f.seek(offset + got)
                    n = f.readinto(view[got:])
            if not n:
                raise self._err("data ended early (was the file changed while open?)")
            got += n

    def _decode_span(self, f: BinaryIO, offset: int, dest: np.ndarray) -> None:
        """Decode ``dest.size`` samples starting at byte ``offset`` into 1-D float32 ``dest``."""
        scratch = self._scratch
        width = self._bits // 8
        raw = memoryview(scratch.raw)
        done = 0
        total = dest.size
        first = 1 if width == 3 else 0  # 24-bit: a pad byte before the samples
        while done < total:
            m = min(_CONVERT_SAMPLES, total - done)
            self._read_at(f, raw[first : first + m * width], offset + done * width)
            self._convert(scratch, m, dest[done : done + m])
            done += m

    def _convert(self, scratch: _Scratch, m: int, dest: np.ndarray) -> None:
        """Decode ``m`` samples from the start of ``scratch.raw`` into float32 ``dest`` (1-D)."""
        raw = scratch.raw
        bits = self._bits
        if self._format_tag == WAVE_FORMAT_IEEE_FLOAT:
            dtype = "<f4" if bits == 32 else "<f8"
            dest[...] = np.frombuffer(raw, dtype=dtype, count=m)
        elif bits == 16:
            np.multiply(
                np.frombuffer(raw, "<i2", count=m),
                np.float32(2.0**-15),
                out=dest,
                dtype=np.float32,
            )
        elif bits == 32:
            np.multiply(
                np.frombuffer(raw, "<i4", count=m),
                np.float32(2.0**-31),
                out=dest,
                dtype=np.float32,
            )
        else:
            # 24 bit (samples from byte 1): the little-endian int32 read 3 bytes apart from
            # byte 0 holds sample i in its bytes 1..3, under the previous sample's last byte;
            # cleared, that is the sample shifted left by 8, which is scaled by 2**-31.
            words = np.ndarray((m,), dtype="<i4", buffer=raw, strides=(3,))
            tmp = scratch.tmp24[:m]
            np.bitwise_and(words, np.int32(-256), out=tmp)
            np.multiply(tmp, np.float32(2.0**-31), out=dest, dtype=np.float32)

    @property
    def raw_encoding(self) -> str | None:
        """How :meth:`read_raw` bytes decode: "pcm16", "pcm24", "pcm32" (little-endian
        integers) or "float32"; None for 64-bit float, which only :meth:`read` returns."""
        if self._format_tag == WAVE_FORMAT_IEEE_FLOAT:
            return "float32" if self._bits == 32 else None
        return f"pcm{self._bits}"

    def read_raw(self, start_frame: int, n_frames: int) -> np.ndarray:
        """The undecoded sample bytes of frames ``[start_frame, start_frame + n_frames)``:
        uint8 ``(n, channels * bytes_per_sample)`` (shortened at the end of the data).

        For decoding elsewhere (e.g. fused into the renderer's JAX kernel); see
        :attr:`raw_encoding`.
        """
        f = self._require_open()
        n = self._frames_from(start_frame, n_frames)
        out = aligned_empty((n, self._block_align), np.uint8)
        if n:
            self._read_at(f, memoryview(out.reshape(-1)),
                          self._data_offset + start_frame * self._block_align)
        return out

    def sample_bytes(self, start_frame: int, n_frames: int):
        """The file's bytes of frames ``[start_frame, start_frame + n_frames)`` (shortened at
        the end of the data), without copying them where the system allows it (a memory
        mapping of the file): ``(data, first_byte, release)``, the samples starting at
        ``data[first_byte]`` with the byte before them there too (24-bit samples are read as
        words from the byte before them); ``release()`` unmaps them once they are no longer
        read (no buffer of them may be held then). For decoding elsewhere (the renderer's
        native kernel); see :attr:`raw_encoding`."""
        f = self._require_open()
        n = self._frames_from(start_frame, n_frames)
        begin = self._data_offset + start_frame * self._block_align
        end = begin + n * self._block_align
        # a mapped page past the file's end stops the process when read (SIGBUS): a file cut
        # short since it was opened is reported here instead
        if end > os.fstat(f.fileno()).st_size:
            raise self._err("data ended early (was the file changed while open?)")
        base = (begin - 1) - (begin - 1) % mmap.ALLOCATIONGRANULARITY
        try:
            mapped = mmap.mmap(f.fileno(), end - base, access=mmap.ACCESS_READ, offset=base)
        except (OSError, ValueError, OverflowError):  # no mapping here: the bytes are read
            data = np.zeros(1 + n * self._block_align, np.uint8)
            if n:
                self._read_at(f, memoryview(data)[1:], begin)
            return data, 1, lambda: None
        return mapped, begin - base, mapped.close

    def iter_raw_blocks(self, block_frames: int) -> Iterator[np.ndarray]:
        """Consecutive :meth:`read_raw` blocks of ``block_frames`` frames (last one shorter)."""
        if block_frames < 1:
            raise ValueError(f"block_frames must be >= 1, got {block_frames}")
        for pos in range(0, self._frames, block_frames):
            yield self.read_raw(pos, block_frames)

    def iter_blocks(
        self, block_frames: int, start_frame: int = 0, end_frame: int | None = None
    ) -> Iterator[np.ndarray]:
        """Yield consecutive float32 blocks ``(block_frames, channels)`` from start to end.

        The last block is shorter when the range is not a multiple of ``block_frames``.
        """
        if block_frames < 1:
            raise ValueError(f"block_frames must be >= 1, got {block_frames}")
        end = self._frames if end_frame is None else min(end_frame, self._frames)
        pos = start_frame
        while pos < end:
            n = min(block_frames, end - pos)
            yield self.read(pos, n)
            pos += n

    # -- lifetime --------------------------------------------------------------------------

    def _require_open(self) -> BinaryIO:
        if self._f is None:
            raise self._err("reader is closed")
        return self._f

    def close(self) -> None:
        """Close the file (idempotent)."""
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None
        if self._f is not None:
            self._f.close()
            self._f = None

    def __enter__(self) -> Bw64Reader:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"Bw64Reader({str(self._path)!r}, {self._container}, {self._sample_rate} Hz, "
            f"{self._channels} ch, {self._bits}-bit {self.sample_format}, {self._frames} frames)"
        )


def open_bw64(path: str | os.PathLike[str]) -> Bw64Reader:
    """Open a RIFF/RF64/BW64 file for reading; same as ``Bw64Reader(path)``."""
    return Bw64Reader(path)


# --------------------------------------------------------------------------------------------
# writing


def _chunk(cid: str, body: bytes) -> bytes:
    """A chunk with its 8-byte header and the pad byte after an odd-sized body."""
    return struct.pack("<4sI", cid.encode("latin-1"), len(body)) + body + b"\0" * (len(body) & 1)


def give_new_file_permissions(path: str | os.PathLike[str]) -> None:
    """Give a temporary file (``tempfile.mkstemp`` makes them 0600) the permissions a newly
    created file gets (0666 less the umask), before it is renamed onto its final name."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)


class Bw64Writer:
    """Writes a RIFF/WAVE file, switching to BW64 with ds64 when it outgrows 32-bit sizes.

    Args:
        path: destination. Written to ``.{name}.partial-XXXX`` in the same directory and
            renamed onto ``path`` by :meth:`close`.
        sample_rate: Hz.
        channels: number of tracks.
        bit_depth: 16, 24, 32 for ``sample_format='int'``; 32, 64 for ``'float'``.
        sample_format: ``'int'`` (PCM, tag 1) or ``'float'`` (IEEE float, tag 3).
        chna, axml, bext: chunk contents; ``chna`` and ``bext`` go before ``data``, ``axml``
            after it.
        extra_chunks: (id, raw body) pairs written before ``data`` in the given order.
        forbid_paths: paths that must not be overwritten (e.g. the inputs being read).

    Use as a context manager: leaving the block with an exception (or calling :meth:`abort`)
    deletes the temporary file and leaves ``path`` untouched.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        sample_rate: int,
        channels: int,
        bit_depth: int = 24,
        sample_format: SampleFormat = "int",
        chna: Sequence[ChnaEntry] | None = None,
        axml: bytes | None = None,
        bext: bytes | None = None,
        extra_chunks: Iterable[tuple[str, bytes]] = (),
        forbid_paths: Iterable[str | os.PathLike[str]] = (),
    ) -> None:
        self._path = Path(path)
        err = self._err
        if sample_format not in ("int", "float"):
            raise err(f"sample_format must be 'int' or 'float', got {sample_format!r}")
        tag = WAVE_FORMAT_PCM if sample_format == "int" else WAVE_FORMAT_IEEE_FLOAT
        if bit_depth not in _SUPPORTED[tag]:
            raise err(f"unsupported bit depth {bit_depth} for sample_format {sample_format!r}")
        if not 1 <= channels <= 0xFFFF:
            raise err(f"channel count {channels} outside 1..65535")
        if not 1 <= sample_rate <= _SIZE32_MAX:
            raise err(f"sample rate {sample_rate} out of range")
        for other in forbid_paths:
            if self._same_file(self._path, Path(other)):
                raise err(f"refusing to overwrite {other} (it is an input of this operation)")
        self._sample_rate = int(sample_rate)
        self._channels = int(channels)
        self._bits = int(bit_depth)
        self._tag = tag
        self._sample_format = sample_format
        self._block_align = channels * bit_depth // 8

        head_chunks = []
        if bext is not None:
            head_chunks.append(_chunk("bext", bytes(bext)))
        if chna is not None:
            for e in chna:
                if not 1 <= e.track_index <= channels:
                    raise err(
                        f"chna entry {e.track_uid!r} has track index {e.track_index}, "
                        f"outside 1..{channels}"
                    )
            try:
                head_chunks.append(_chunk("chna", encode_chna(chna)))
            except Bw64Error as exc:
                raise err(str(exc)) from None
        for cid, body in extra_chunks:
            if len(cid) != 4 or not cid.isascii():
                raise err(f"chunk id {cid!r} is not 4 ASCII characters")
            if cid in _STRUCTURAL:
                raise err(f"chunk id {cid!r} is written by the writer itself; not an extra chunk")
            head_chunks.append(_chunk(cid, bytes(body)))
        self._axml = None if axml is None else bytes(axml)

        fmt = struct.pack(
            "<HHIIHH",
            tag,
            channels,
            sample_rate,
            sample_rate * self._block_align,
            self._block_align,
            bit_depth,
        )
        header = bytearray(struct.pack("<4sI4s", b"RIFF", 0, b"WAVE"))
        self._junk_offset = len(header)
        header += _chunk("JUNK", b"\0" * _JUNK_RESERVED)
        header += _chunk("fmt ", fmt)
        for c in head_chunks:
            header += c
        self._data_size_offset = len(header) + 4
        header += struct.pack("<4sI", b"data", 0)
        self._data_offset = len(header)

        self._unflushed = 0  # bytes written since the last background flush began
        self._flushing: threading.Thread | None = None
        directory = self._path.parent
        fd, tmp = tempfile.mkstemp(prefix=f".{self._path.name}.partial-", dir=directory)
        self._tmp_path = Path(tmp)
        self._f: BinaryIO | None = os.fdopen(fd, "w+b")
        try:
            self._f.write(header)
        except BaseException:
            self.abort()
            raise
        self._frames = 0
        self._clipped = 0
        self._closed = False

    @staticmethod
    def _same_file(a: Path, b: Path) -> bool:
        try:
            if a.exists() and b.exists():
                return os.path.samefile(a, b)
        except OSError:
            pass
        return os.path.realpath(a) == os.path.realpath(b)

    def _err(self, msg: str) -> Bw64Error:
        return Bw64Error(f"{self._path}: {msg}")

    @property
    def path(self) -> Path:
        """The destination path (exists only after a successful :meth:`close`)."""
        return self._path

    @property
    def frames(self) -> int:
        """Frames written so far."""
        return self._frames

    @property
    def clipped_samples(self) -> int:
        """Number of samples (not frames) clipped to the integer range so far."""
        return self._clipped

    def write(self, frames: np.ndarray) -> None:
        """Append float samples of shape ``(n, channels)`` (or ``(n,)`` for one channel).

        For integer output, values are multiplied by ``2**(bits-1)``, rounded to nearest (ties
        to even) and clipped to ``[-2**(bits-1), 2**(bits-1) - 1]``; clipped samples are
        counted in :attr:`clipped_samples`. Non-finite values are an error for integer output.
        Float output stores the values as float32/float64 unchanged.
        """
        if self._f is None:
            raise self._err("writer is closed")
        x = np.asarray(frames)
        if x.ndim == 1 and self._channels == 1:
            x = x[:, None]
        if x.ndim != 2 or x.shape[1] != self._channels:
            raise self._err(f"frames must have shape (n, {self._channels}), got {x.shape}")
        if not np.issubdtype(x.dtype, np.floating):
            raise self._err(f"frames must be floating point, got {x.dtype}")
        # min and max are NaN where any value is, and infinite where any value is: two
        # reductions, no temporary array
        if self._tag == WAVE_FORMAT_PCM and x.size and not (
                np.isfinite(x.min()) and np.isfinite(x.max())):
            raise self._err("non-finite sample value (NaN or inf) cannot be written as PCM")
        step = max(1, (1 << 18) // self._channels)  # convert ~256k samples at a time
        for i in range(0, x.shape[0], step):
            self._f.write(self._encode(x[i : i + step]))
        self._written(x.shape[0])

    @property
    def pcm_bits(self) -> int | None:
        """The bits of an integer PCM file's samples; None for float samples."""
        return self._bits if self._tag == WAVE_FORMAT_PCM else None

    def write_encoded(self, data, n_frames: int, clipped: int = 0) -> None:
        """Append ``n_frames`` frames already encoded as :meth:`write` encodes them (the file's
        little-endian samples: ``data`` a bytes-like object of ``n_frames`` times the frame's
        bytes), of which ``clipped`` samples were clipped (added to
        :attr:`clipped_samples`). For a faster encoder of the same format."""
        if self._f is None:
            raise self._err("writer is closed")
        size = memoryview(data).nbytes
        if n_frames < 0 or size != n_frames * self._block_align:
            raise self._err(f"{size} bytes are not {n_frames} frames of "
                            f"{self._block_align} bytes")
        self._f.write(data)
        self._clipped += int(clipped)
        self._written(n_frames)

    def _written(self, n_frames: int) -> None:
        """Count ``n_frames`` frames just written; start a background flush every
        :data:`FLUSH_BYTES`."""
        self._frames += n_frames
        self._unflushed += n_frames * self._block_align
        if self._unflushed >= FLUSH_BYTES:
            self._flush_in_background()

    def _flush_in_background(self) -> None:
        """Start sending the data written so far to the disk in another thread (one flush
        at a time; errors are left to the flush of :meth:`close`, which reports them)."""
        if self._flushing is not None and self._flushing.is_alive():
            return
        self._f.flush()
        self._unflushed = 0
        sync = getattr(os, "fdatasync", os.fsync)
        fd = self._f.fileno()

        def flush() -> None:
            try:
                sync(fd)
            except OSError:
                pass

        self._flushing = threading.Thread(target=flush, name="bw64-flush", daemon=True)
        self._flushing.start()

    def _wait_for_flush(self) -> None:
        if self._flushing is not None:
            self._flushing.join()
            self._flushing = None

    def _encode(self, x: np.ndarray) -> bytes | memoryview:
        if self._tag == WAVE_FORMAT_IEEE_FLOAT:
            return np.ascontiguousarray(x, dtype="<f4" if self._bits == 32 else "<f8").tobytes()
        full = 2.0 ** (self._bits - 1)
        # float32 holds every 16- and 24-bit code exactly (scaling by a power of two is exact)
        work = np.float64 if self._bits == 32 else np.float32
        y = np.multiply(x, work(full), dtype=work)
        np.rint(y, out=y)
        lo, hi = -full, full - 1
        # two reductions tell whether anything is out of range; only then are values counted
        if not (y.min(initial=lo) >= lo and y.max(initial=hi) <= hi):
            clipped = int(np.count_nonzero((y < lo) | (y > hi)))
            np.clip(y, lo, hi, out=y)
            self._clipped += clipped
        if self._bits == 16:
            return y.astype("<i2").tobytes()
        ints = y.astype("<i4")
        if self._bits == 32:
            return ints.tobytes()
        # the low 3 bytes of each little-endian int32: three byte-strided copies (much faster
        # in numpy than one copy of 3-byte rows)
        four = ints.reshape(-1).view(np.uint8).reshape(-1, 4)
        three = np.empty((len(four), 3), np.uint8)
        three[:, 0] = four[:, 0]
        three[:, 1] = four[:, 1]
        three[:, 2] = four[:, 2]
        return three.data

    def close(self) -> None:
        """Finish the file (sizes, ds64 if needed, axml) and rename it onto :attr:`path`."""
        if self._closed:
            return
        f = self._f
        assert f is not None
        try:
            data_size = self._frames * self._block_align
            if data_size & 1:
                f.write(b"\0")
            if self._axml is not None:
                f.write(_chunk("axml", self._axml))
            riff_size = f.tell() - 8
            threshold = RF64_THRESHOLD
            if riff_size > threshold or data_size > threshold:
                if self._axml is not None and len(self._axml) > _SIZE32_MAX:
                    raise self._err("axml chunk over 4 GiB is not supported")
                f.seek(0)
                f.write(struct.pack("<4sI4s", b"BW64", _SIZE32_MAX, b"WAVE"))
                f.seek(self._junk_offset)
                f.write(struct.pack("<4sI", b"ds64", _JUNK_RESERVED))
                f.write(_DS64_HEAD.pack(riff_size, data_size, 0, 0))
                f.seek(self._data_size_offset)
                f.write(struct.pack("<I", _SIZE32_MAX))
            else:
                f.seek(4)
                f.write(struct.pack("<I", riff_size))
                f.seek(self._data_size_offset)
                f.write(struct.pack("<I", data_size))
            f.flush()
            self._wait_for_flush()
            os.fsync(f.fileno())
            f.close()
            self._f = None
            give_new_file_permissions(self._tmp_path)
            os.replace(self._tmp_path, self._path)
        except BaseException:
            self.abort()
            raise
        self._closed = True

    def abort(self) -> None:
        """Discard everything written: close and delete the temporary file (idempotent)."""
        self._wait_for_flush()  # its file descriptor is not closed under it
        if self._f is not None:
            try:
                self._f.close()
            finally:
                self._f = None
        try:
            self._tmp_path.unlink()
        except FileNotFoundError:
            pass
        self._closed = True

    def __enter__(self) -> Bw64Writer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()
