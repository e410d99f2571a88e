"""The native mixing kernel (renderer/_mixkernel.c): the same renders as the JAX kernel, its
arguments checked, and the file's bytes it mixes from (Bw64Reader.sample_bytes)."""

from fractions import Fraction

import numpy as np
import pytest

from adm import bw64
from adm.builder import AdmBuilder, write_adm_bwf
from adm.bw64 import Bw64Error, Bw64Reader, Bw64Writer
from adm.model import CartesianPosition, JumpPosition, ObjectsBlock, PolarPosition
from renderer import engine
from renderer.render import OutputRequest, render_outputs
from renderer.timing import Segments

native = pytest.mark.skipif(not engine.native_kernel_available(),
                            reason="the native mixing kernel is not built")
SR = 48000


@pytest.fixture(params=["vectors", "plain"], autouse=True)
def kernel_path(request):
    """Every test with the kernel's AVX2 path (where the CPU has it) and its plain loops."""
    if not engine.native_kernel_available():
        yield request.param
        return
    from renderer import _mixkernel

    if request.param == "vectors" and not _mixkernel.use_vectors(True):
        pytest.skip("this CPU has no AVX2 and FMA")
    _mixkernel.use_vectors(request.param == "vectors")
    try:
        yield request.param
    finally:
        _mixkernel.use_vectors(True)


def _scene(tmp_path, bits, sample_format="int"):
    builder = AdmBuilder("Mix")
    builder.add_direct_speakers("Bed", [1, 2], pack_format_id="AP_00010002")
    moving = [ObjectsBlock(id="", position=PolarPosition(float(a), 15.0),
                           rtime=Fraction(k, 8), duration=Fraction(1, 8),
                           jump_position=JumpPosition(True, Fraction(1, 200)))
              for k, a in enumerate(range(-150, 180, 45))]
    builder.add_object("Moving", moving, track_index=3)
    fly = [ObjectsBlock(id="", position=CartesianPosition(x, 0.5, 0.2), cartesian=True,
                        rtime=Fraction(k, 4), duration=Fraction(1, 4))  # whole-block ramps
           for k, x in enumerate((-1.0, -0.3, 0.4, 1.0))]
    builder.add_object("Fly", fly, track_index=4)
    doc, chna = builder.build()
    audio = (0.2 * np.random.default_rng(bits).standard_normal((SR + 123, 4))).astype(np.float32)
    path = tmp_path / f"scene{bits}.wav"
    write_adm_bwf(path, audio, SR, doc, chna, bit_depth=bits, sample_format=sample_format)
    return path


def _read(path):
    with Bw64Reader(path) as reader:
        return reader.read()


@native
@pytest.mark.parametrize("bits, sample_format", [(16, "int"), (24, "int"), (32, "int"),
                                                 (32, "float")])
def test_native_and_jax_kernels_render_alike(tmp_path, monkeypatch, bits, sample_format):
    """A render mixed by the native kernel from the file's bytes equals the JAX kernel's
    (up to float32 rounding: the products are summed in another order), loudspeakers and
    headphones."""
    scene = _scene(tmp_path, bits, sample_format)
    outputs = {}
    for kernel in (True, False):
        monkeypatch.setattr(engine, "NATIVE_KERNEL", kernel)
        requests = [OutputRequest(tmp_path / f"{kernel}_714.wav", "7.1.4"),
                    OutputRequest(tmp_path / f"{kernel}_bin.wav", "binaural")]
        reports = render_outputs(scene, requests, float_output=True)
        outputs[kernel] = [_read(r.output) for r in reports]
    for with_native, with_jax in zip(outputs[True], outputs[False], strict=True):
        assert np.abs(with_jax).max() > 0.05
        np.testing.assert_allclose(with_native, with_jax, rtol=0, atol=2e-6)


def _tables(k_count=2, t_count=3, n_out=8, columns=2):
    base = np.zeros((k_count, t_count, n_out), np.float32)
    base[:, 1, 0] = 1.0  # track 1 to output 0
    track = np.zeros((k_count, columns), np.int32)
    rel = np.zeros((k_count, columns), np.int32)
    weights = np.zeros((k_count, columns), np.float32)
    delta = np.zeros((k_count, columns, n_out), np.float32)
    counts = np.zeros(k_count, np.int64)
    return [base, track, rel, rel.copy(), weights, weights.copy(), delta, counts]


@native
@pytest.mark.parametrize("n_out", [4, 8, 12, 16, 20, 24, 28])
def test_kernel_mixes_a_hand_computed_case(n_out):
    """Track 1 to output 0 at gain 1 and track 2 to a middle output at 0.75; in sub-block 1 a
    step of +0.5 to output 3 for track 2 from frame 2, and a ramp on track 0 to the last
    output from frame 1 (weight 0.25, +0.25 per frame) up to frame 3, weight 1 after it.
    Outputs in vectors of 8 and of 4."""
    from renderer import _mixkernel

    k_count, m, t_count = 2, 4, 3
    last = n_out - 1
    base, track, rel_first, rel_last, p_first, step, delta, counts = _tables(k_count, t_count,
                                                                             n_out)
    middle = n_out // 2 + 1
    base[:, 2, middle] = 0.75
    counts[1] = 2
    track[1] = [2, 0]
    rel_first[1] = [2, 1]
    rel_last[1] = [2, 3]
    p_first[1] = [1.0, 0.25]
    step[1] = [0.0, 0.25]
    delta[1, 0, 3] = 0.5
    delta[1, 1, last] = 1.0
    x = np.arange(k_count * m * t_count, dtype=np.float32).reshape(k_count * m, t_count)
    out = np.full((k_count * m, n_out), np.nan, np.float32)
    _mixkernel.mix(x, 0, len(x), 3, t_count, m, base, track, rel_first, rel_last, p_first,
                   step, delta, counts, 0, k_count, out)
    expected = np.zeros((k_count * m, n_out), np.float32)
    expected[:, 0] = x[:, 1]
    expected[:, middle] = 0.75 * x[:, 2]
    expected[m + 2:, 3] += 0.5 * x[m + 2:, 2]
    expected[m:, last] += np.array([0.0, 0.25, 0.5, 1.0]) * x[m:, 0]
    np.testing.assert_array_equal(out, expected)
    # frames past n_frames are silence
    _mixkernel.mix(x, 0, 5, 3, t_count, m, base, track, rel_first, rel_last, p_first,
                   step, delta, counts, 0, k_count, out)
    np.testing.assert_array_equal(out[:5], expected[:5])
    np.testing.assert_array_equal(out[5:], 0.0)


@native
@pytest.mark.parametrize("problem", ["out", "track", "counts", "range", "width", "raw",
                                     "encoding", "lead"])
def test_kernel_arguments_are_checked(problem):
    """Sizes that do not fit are a ValueError, not a read or write outside the arrays."""
    from renderer import _mixkernel

    k_count, m, t_count = 2, 4, 3
    tables = _tables(k_count, t_count)
    x = np.zeros((k_count * m, t_count), np.float32)
    out = np.zeros((k_count * m, 8), np.float32)
    encoding, first_byte, k1 = 3, 0, k_count
    if problem == "out":
        out = np.zeros((k_count * m - 1, 8), np.float32)
    elif problem == "track":
        tables[1][0, 0], tables[7][0] = t_count, 1
    elif problem == "counts":
        tables[7][1] = 3
    elif problem == "range":
        k1 = k_count + 1
    elif problem == "width":
        tables[0] = np.zeros((k_count, t_count, 6), np.float32)
    elif problem == "raw":
        x = x[:-1]
    elif problem == "encoding":
        encoding = 7
    elif problem == "lead":
        encoding = 1  # 24-bit samples need the byte before the first one
    with pytest.raises(ValueError):
        _mixkernel.mix(x, first_byte, k_count * m, encoding, t_count, m, *tables, 0, k1, out)


def test_sample_bytes_are_the_file_bytes(tmp_path, monkeypatch):
    """The bytes of a span of frames, mapped or (where mapping fails) read, with the byte
    before the first sample; a file cut short after opening is an error."""
    x = np.random.default_rng(5).uniform(-1, 1, (5000, 3))
    path = tmp_path / "x.wav"
    with Bw64Writer(path, SR, 3, bit_depth=24) as w:
        w.write(x)
    raw_file = path.read_bytes()
    with Bw64Reader(path) as reader:
        expected = reader.read_raw(1234, 3000).reshape(-1).tobytes()
        start = reader.data_offset + 1234 * 9
        data, first, release = reader.sample_bytes(1234, 3000)
        view = memoryview(data)
        assert bytes(view[first:first + len(expected)]) == expected
        assert view[first - 1] == raw_file[start - 1]
        view.release()
        release()
        data, first, release = reader.sample_bytes(4000, 3000)  # shortened at the end
        assert len(data) - first == 1000 * 9
        release()

        class NoMapping:
            ALLOCATIONGRANULARITY = bw64.mmap.ALLOCATIONGRANULARITY
            ACCESS_READ = bw64.mmap.ACCESS_READ

            @staticmethod
            def mmap(*args, **kwargs):
                raise OSError("no mapping")

        monkeypatch.setattr(bw64, "mmap", NoMapping)
        data, first, release = reader.sample_bytes(1234, 3000)
        assert first == 1 and bytes(memoryview(data)[first:]) == expected
        release()
        with open(path, "r+b") as f:
            f.truncate(len(raw_file) - 5000)
        with pytest.raises(Bw64Error, match="ended early"):
            reader.sample_bytes(4000, 1000)


@native
@pytest.mark.parametrize("t_count", [8, 19])
@pytest.mark.parametrize("bits, sample_format", [(16, "int"), (24, "int"), (32, "int"),
                                                 (32, "float")])
def test_kernel_decodes_like_the_reader(tmp_path, bits, sample_format, t_count):
    """With unit gains from each track to its own output, the kernel's output is the
    reader's float32 samples exactly: eight samples at a time (the vector path), the rest
    one by one, and the buffer's last frame without reading past its end (8 tracks of 24
    bits: the last group's 16-byte loads would pass it)."""
    from renderer import _mixkernel

    m, k_count = 8, 3
    x = np.random.default_rng(bits).uniform(-1, 1, (m * k_count - 5, t_count))
    path = tmp_path / "tracks.wav"
    with Bw64Writer(path, SR, t_count, bit_depth=bits, sample_format=sample_format) as w:
        w.write(x)
    with Bw64Reader(path) as reader:
        expected = reader.read()
        data, first, release = reader.sample_bytes(0, reader.frames)
        raw = np.frombuffer(data, np.uint8).copy()  # exactly the frames, and the byte before
        del data
        release()
    n_out = 24
    base = np.zeros((k_count, t_count, n_out), np.float32)
    base[:, np.arange(t_count), np.arange(t_count)] = 1.0
    tables = _tables(k_count, t_count, n_out)
    tables[0] = base
    out = np.full((k_count * m, n_out), np.nan, np.float32)
    encoding = {16: 0, 24: 1}.get(bits, 2 if sample_format == "int" else 3)
    _mixkernel.mix(raw, first, len(expected), encoding, t_count, m, *tables, 0, k_count, out)
    np.testing.assert_array_equal(out[:len(expected), :t_count], expected)
    np.testing.assert_array_equal(out[len(expected):], 0.0)
    np.testing.assert_array_equal(out[:, t_count:], 0.0)


@native
@pytest.mark.parametrize("bits, sample_format", [(16, "int"), (24, "int"), (32, "int"),
                                                 (32, "float")])
def test_kernel_decoding_of_tracks_equals_the_readers(tmp_path, bits, sample_format):
    """The tracks decoded by the kernel's decoding (for binaural outputs and Matrix delays),
    in the mixer's threads, are the reader's float32 samples exactly."""
    x = np.random.default_rng(bits).uniform(-1, 1, (3001, 21))
    path = tmp_path / "tracks.wav"
    with Bw64Writer(path, SR, 21, bit_depth=bits, sample_format=sample_format) as w:
        w.write(x)
    mixer = engine.Mixer(_no_segments(), 1, 21, native=True)
    with Bw64Reader(path) as reader:
        expected = reader.read()
        data, first, release = reader.sample_bytes(0, reader.frames)
        out = np.full(expected.shape, np.nan, np.float32)
        for part in mixer.start_decoding(data, first, reader.frames, reader.raw_encoding,
                                         out):
            part.result()
        release()
    mixer.close()
    np.testing.assert_array_equal(out, expected)


@native
@pytest.mark.parametrize("bits, sample_format", [(16, "int"), (24, "int"), (32, "int"),
                                                 (32, "float")])
def test_kernel_decoding_track_by_track_equals_the_readers(tmp_path, bits, sample_format):
    """Tracks decoded track by track (into the transpose of a (tracks, row) array, rows
    longer than the frames) are the reader's samples exactly (both kernel paths, by the
    fixture): frames not a multiple of the tiles, tracks not a multiple of the eight turned
    together; the rows' padding is left alone."""
    from renderer import _mixkernel

    x = np.random.default_rng(bits).uniform(-1, 1, (3001, 21))
    path = tmp_path / "tracks.wav"
    with Bw64Writer(path, SR, 21, bit_depth=bits, sample_format=sample_format) as w:
        w.write(x)
    code = {16: 0, 24: 1}.get(bits, 2 if sample_format == "int" else 3)
    mixer = engine.Mixer(_no_segments(), 1, 21, native=True)
    try:
        with Bw64Reader(path) as reader:
            expected = reader.read()
            data, first, release = reader.sample_bytes(0, reader.frames)
            rows = np.full((21, 3001 + 13), np.nan, np.float32)
            out = rows[:, :3001].T
            for part in mixer.start_decoding(data, first, reader.frames,
                                             reader.raw_encoding, out):
                part.result()
            with pytest.raises(ValueError):  # a track's frames not contiguous
                _mixkernel.decode(data, first, 8, code, 21, rows[:, :16:2].T)
            release()
    finally:
        mixer.close()
    np.testing.assert_array_equal(out, expected)
    assert np.isnan(rows[:, 3001:]).all()


def _no_segments():
    from renderer.timing import Segments

    return Segments(track=np.zeros(0, np.int32), first=np.zeros(0, np.int64),
                    last=np.zeros(0, np.int64), ramp_start=np.zeros(0), ramp_step=np.zeros(0),
                    gains_from=np.zeros((0, 1), np.float32), gains_to=np.zeros((0, 1), np.float32))


def _random_segments(rng, n_tracks, n_out, count, span, overlapping=True):
    """``count`` segments of random tracks over frames [-span/4, span): holds and ramps,
    some empty, some starting or ending on a sub-block's edge, in no particular order;
    ``overlapping``: some overlap others of their track (so that two share a sub-block's
    start), else each track's segments follow each other (as a plan's do)."""
    from renderer.timing import Segments

    first = rng.integers(-span // 4, span, count)
    first[::7] -= first[::7] % 8  # on an edge of the sub-blocks of 8 frames
    length = rng.integers(0, span // 3, count)
    length[::11] = 0  # empty
    track = rng.integers(0, n_tracks, count).astype(np.int32)
    if not overlapping:  # each track's segments end where its next one starts
        for t in range(n_tracks):
            mine = np.flatnonzero(track == t)
            first[mine] = np.sort(first[mine])
            length[mine] = np.diff(np.append(first[mine], span))
    ramp = rng.random(count) < 0.5
    gains_from = rng.standard_normal((count, n_out)).astype(np.float32)
    gains_to = np.where(ramp[:, None], rng.standard_normal((count, n_out)),
                        gains_from).astype(np.float32)
    gains_to[::5, 1] = 0.0
    step = np.where(ramp, 1.0 / np.maximum(length, 1), 0.0)
    return Segments(track=track, first=first.astype(np.int64),
                    last=(first + length).astype(np.int64),
                    ramp_start=np.where(ramp, rng.random(count) * 0.5, 0.0),
                    ramp_step=step, gains_from=gains_from, gains_to=gains_to)


@native
@pytest.mark.parametrize("overlapping", [True, False])
@pytest.mark.parametrize("seed", range(6))
def test_native_tables_are_the_numpy_tables(seed, overlapping):
    """The mixing tables made in C equal those made with numpy, value for value, for
    segments with every case the tables handle (ramps over several sub-blocks, steps inside
    them, two segments of a track at one sub-block start or not, empty ones, ones outside
    the batch); the gain columns padded with zeros to the kernel's width."""
    rng = np.random.default_rng(seed)
    n_tracks, n_out, m, k_count = 3, 5 if seed % 2 else 8, 8, 6
    segments = _random_segments(rng, n_tracks, n_out, 40 if seed < 3 else 400, k_count * m,
                                overlapping)
    mixer = engine.Mixer(segments, n_out, n_tracks, m, k_count, native=True)
    for start in (0, 5, -16):
        width = -(-n_out // 4) * 4
        numpy_tables = mixer._tables_numpy(segments, start)
        native_tables = mixer._tables_native(segments, start, width)
        pad = ((0, 0), (0, 0), (0, width - n_out))
        for name in engine.MixTables._fields:
            expected = getattr(numpy_tables, name)
            if name in ("base_gains", "delta"):
                expected = np.pad(expected, pad)
            got = getattr(native_tables, name)
            assert got.shape == expected.shape, name
            np.testing.assert_array_equal(got, expected, err_msg=name)


@native
def test_native_tables_check_their_arguments():
    from renderer import _mixkernel

    segments = _random_segments(np.random.default_rng(0), 3, 4, 10, 48, overlapping=False)
    fields = [segments.track, segments.first, segments.last, segments.ramp_start,
              segments.ramp_step, segments.gains_from, segments.gains_to]

    def tables(fields=fields, n_tracks=3, width=16, outputs=4):
        columns = [np.empty((6, width), d) for d in (np.int32,) * 3 + (np.float32,) * 2]
        return _mixkernel.tables(*fields, 0, 8, n_tracks, width,
                                 np.empty((6, n_tracks, outputs), np.float32), *columns,
                                 np.empty((6, width, outputs), np.float32),
                                 np.empty(6, np.int64))

    assert tables() == 16
    assert tables(width=32) == 16  # the width needed, nothing written
    with pytest.raises(ValueError):  # a track past the tracks mixed
        tables(n_tracks=2)
    with pytest.raises(ValueError):  # fewer gain columns than the segments have
        tables(outputs=3)
    with pytest.raises(ValueError):  # ends for other segments
        tables(fields[:2] + [fields[2][:-1]] + fields[3:])


@native
@pytest.mark.parametrize("bits", [16, 24])
@pytest.mark.parametrize("channels", [1, 2, 12, 22, 40])
def test_native_encoding_is_the_writers(tmp_path, bits, channels):
    """The outputs' PCM encoding in C: the bytes the writer's numpy encoding gives (values
    scaled by 2**(bits-1), rounded half to even, clipped and counted), for lengths that end
    inside a vector, with ties, full scale and overloads; each channel's peak; -1 for a value
    that is not finite."""
    from renderer import _mixkernel

    rng = np.random.default_rng(channels)
    scale = 2.0 ** (bits - 1)
    for n in (0, 1, 3, 7, 1001):
        x = (0.7 * rng.standard_normal((n, channels))).astype(np.float32)
        special = [1.5, -1.2, 0.5 / scale, 2.5 / scale, -1.0, (scale - 0.5) / scale]
        x.flat[:min(len(special), x.size)] = special[:x.size]
        writer = Bw64Writer(tmp_path / f"o{n}.wav", SR, channels, bit_depth=bits)
        expected = bytes(writer._encode(x))
        writer.abort()
        y = np.rint(x.astype(np.float64) * scale)
        out = np.empty(x.size * bits // 8, np.uint8)
        peaks = np.zeros(channels, np.float32)
        clipped = _mixkernel.encode(x, bits, out, peaks)
        assert out.tobytes() == expected
        assert clipped == np.count_nonzero((y < -scale) | (y > scale - 1))
        np.testing.assert_array_equal(peaks, np.abs(x).max(axis=0) if n else 0.0)
    for bad in (np.nan, np.inf):
        x = np.zeros((50, channels), np.float32)
        x[37, channels - 1] = bad
        assert _mixkernel.encode(x, bits, np.empty(x.size * bits // 8, np.uint8),
                                 np.zeros(channels, np.float32)) == -1
    with pytest.raises(ValueError):  # a buffer of another size
        _mixkernel.encode(np.zeros((4, channels), np.float32), bits,
                          np.empty(4 * channels * bits // 8 + 1, np.uint8),
                          np.zeros(channels, np.float32))


@native
def test_outputs_encoded_in_c_are_the_writers(tmp_path, monkeypatch):
    """A 24-bit render (its output encoded by the kernel) is the render whose writer encodes
    the samples, byte for byte, with the same peaks and clipped samples (the output gain
    overloads it)."""
    import renderer.render as render

    scene = _scene(tmp_path, 24)
    reports = {}
    for native_encoding in (True, False):
        if not native_encoding:
            monkeypatch.setattr(render, "_mixkernel", None)
        out = tmp_path / f"{native_encoding}.wav"
        reports[native_encoding] = render.render_outputs(
            scene, [OutputRequest(out, "5.1")], output_gain_db=24.0)[0]
    a, b = reports[True], reports[False]
    assert (tmp_path / "True.wav").read_bytes() == (tmp_path / "False.wav").read_bytes()
    np.testing.assert_array_equal(a.peak, b.peak)
    assert a.clipped_samples == b.clipped_samples > 0


@native
def test_encoded_frames_are_appended_as_given(tmp_path):
    writer = Bw64Writer(tmp_path / "e.wav", SR, 2, bit_depth=16)
    writer.write_encoded(np.arange(8, dtype="<i2").tobytes(), 4, clipped=3)
    with pytest.raises(Bw64Error):  # not a whole number of frames
        writer.write_encoded(b"\0" * 6, 2)
    writer.write(np.array([[0.5, -0.5]], np.float32))
    assert writer.clipped_samples == 3 and writer.pcm_bits == 16
    writer.close()
    with Bw64Reader(tmp_path / "e.wav") as reader:
        np.testing.assert_array_equal(reader.read_raw(0, 4).view("<i2").reshape(-1),
                                      np.arange(8))
        np.testing.assert_array_equal(reader.read(4, 1), [[0.5, -0.5]])


@native
def test_tracks_decoded_ahead_are_the_files_and_released_when_stopped(tmp_path):
    """The binaural path's decoded batches (each decoded while the one before it is used)
    are the file's samples in order; a caller that stops early leaves nothing mapped."""
    from renderer.render import _decoded_from_the_file

    scene = _scene(tmp_path, 24)
    with Bw64Reader(scene) as reader:
        expected = reader.read()
        mixer = engine.Mixer(Segments.concatenate([], 2), 2, reader.channels, 64, 8)
        try:
            batches = list(_decoded_from_the_file(reader, mixer))
            np.testing.assert_array_equal(np.concatenate(batches), expected)
            by_tracks = list(_decoded_from_the_file(reader, mixer, by_tracks=True))
            assert all(b.strides[0] == 4 for b in by_tracks)  # each track's frames together
            np.testing.assert_array_equal(np.concatenate(by_tracks), expected)
            assert len(batches) == -(-reader.frames // mixer.frames_per_call) > 2
            released = []
            original = reader.sample_bytes

            def counted(*args):
                data, first, release = original(*args)
                return data, first, lambda: (released.append(1), release())

            reader.sample_bytes = counted
            stopped = _decoded_from_the_file(reader, mixer)
            next(stopped)
            stopped.close()  # the batch decoded ahead is waited for and released
            assert len(released) == 2
        finally:
            mixer.close()
