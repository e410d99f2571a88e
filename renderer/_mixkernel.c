/* The mixing kernel of renderer.engine on the CPU: decoding and mixing in one pass.
 *
 * mix(raw, first_byte, n_frames, encoding, n_tracks, sub_block, base_gains, track,
 *     rel_first, rel_last, p_first, step, delta, counts, k0, k1, out)
 *
 * computes sub-blocks [k0, k1) of one batch exactly as renderer.engine._mix_batch does (see
 * its docstring for the formulation): for each frame m of sub-block k,
 *
 *   out[k, m, :] = x[m, :] @ base_gains[k] + sum_c x[m, track[k, c]] w[k, c](m) delta[k, c, :]
 *
 * with the weight w 0 before rel_first, p_first + (m - rel_first) * step before rel_last and 1
 * from it on, over the first counts[k] columns of sub-block k. The samples x are decoded from
 * the file's little-endian bytes as they are used (raw[first_byte + (frame * n_tracks + t) *
 * bytes]; encoding 0: 16-bit, 1: 24-bit, 2: 32-bit integer PCM scaled by 2**-(bits-1); 3:
 * 32-bit float), frames from n_frames on being silence; 24-bit samples are read as 32-bit
 * words from the byte before each sample, so raw must hold the byte before first_byte.
 *
 * Shapes (C order): base_gains float32 (K, T, O); track, rel_first, rel_last int32 (K, C);
 * p_first, step float32 (K, C); delta float32 (K, C, O); counts int64 (K,); out float32
 * (K * sub_block, O), O a multiple of 4 (at most 512). The Python interpreter's lock is
 * released while it runs, so several threads mix several ranges of sub-blocks at once.
 *
 * decode(raw, first_byte, n_frames, encoding, n_tracks, out) gives the decoded samples
 * themselves (float32 (n_frames, n_tracks): C order, or each track's frames contiguous, the
 * transpose of a (n_tracks, n) array, written TILE frames at a time); tables(...) makes the
 * tables above from the segments overlapping a batch and encode(...) the outputs' 16- and
 * 24-bit PCM (see their sections below); use_vectors(flag) turns the AVX2 path off and on
 * (for tests; renderer/_vectors.h).
 *
 * On x86-64 with AVX2 and FMA (checked when the module is loaded) the products use 8-float
 * vectors (and one of 4 floats); elsewhere the plain loops below, which the compiler
 * vectorises as it can.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "_vectors.h"

typedef struct {
    const uint8_t *raw;
    Py_ssize_t raw_len;
    Py_ssize_t first_byte;
    int64_t n_frames;
    int encoding;
    int n_tracks, n_out, sub_block, n_columns;
    const float *base_gains;
    const int32_t *track, *rel_first, *rel_last;
    const float *p_first, *step, *delta;
    const int64_t *counts;
    int k0, k1;
    float *out;
} Batch;

/* Bytes of one sample of an encoding (0: 16-bit, 1: 24-bit, 2: 32-bit, 3: float). */
static inline int sample_width(int encoding)
{
    return encoding == 0 ? 2 : encoding == 1 ? 3 : 4;
}

#define ROWS 4 /* frames mixed together (each gain row loaded once for them) */
#define MAX_OUT_VECTORS 64 /* outputs up to 512 */

/* Integer samples [t0, t1) of the frame whose samples start at p, decoded one by one into x
   (bytes: 2, 3 or 4). A 24-bit sample is read as the 32-bit word from the byte before it:
   the sample shifted left by 8 above the previous byte, which is cleared. */
static inline void decode_samples(const uint8_t *p, int bytes, int t0, int t1, float *x)
{
    for (int t = t0; t < t1; t++) {
        if (bytes == 2) {
            int16_t v;
            memcpy(&v, p + 2 * t, 2);
            x[t] = (float)v * (1.0f / 32768.0f);
        } else {
            int32_t v;
            memcpy(&v, bytes == 3 ? p + 3 * t - 1 : p + 4 * t, 4);
            x[t] = (float)(bytes == 3 ? v & (int32_t)0xFFFFFF00 : v) * (1.0f / 2147483648.0f);
        }
    }
}

/* The samples of frame f (n_tracks floats) into x. */
static void decode_frame(const Batch *b, int64_t f, float *x)
{
    const int t_count = b->n_tracks;
    if (f >= b->n_frames) {
        memset(x, 0, sizeof(float) * (size_t)t_count);
        return;
    }
    const int bytes = sample_width(b->encoding);
    const uint8_t *p = b->raw + b->first_byte + f * t_count * bytes;
    if (b->encoding == 3)
        memcpy(x, p, sizeof(float) * (size_t)t_count);
    else if (bytes == 2) /* one call per width: each loop compiled for its own */
        decode_samples(p, 2, 0, t_count, x);
    else if (bytes == 3)
        decode_samples(p, 3, 0, t_count, x);
    else
        decode_samples(p, 4, 0, t_count, x);
}

/* The weight of column i at frame m of its sub-block (0 before it starts). */
static inline float column_weight(const Batch *b, int64_t i, int m)
{
    int since = m - b->rel_first[i];
    if (since < 0)
        return 0.0f;
    return m < b->rel_last[i] ? b->p_first[i] + (float)since * b->step[i] : 1.0f;
}

static void mix_plain(const Batch *b, float *x)
{
    const int t_count = b->n_tracks, o_count = b->n_out, m_count = b->sub_block;
    float *acc = x + (size_t)ROWS * t_count;
    for (int k = b->k0; k < b->k1; k++) {
        const float *gains = b->base_gains + (int64_t)k * t_count * o_count;
        const int64_t count = b->counts[k];
        for (int m0 = 0; m0 < m_count; m0 += ROWS) {
            for (int r = 0; r < ROWS; r++)
                decode_frame(b, (int64_t)k * m_count + m0 + r, x + (size_t)r * t_count);
            memset(acc, 0, sizeof(float) * (size_t)ROWS * o_count);
            for (int t = 0; t < t_count; t++) {
                const float *g = gains + (int64_t)t * o_count;
                for (int r = 0; r < ROWS; r++) {
                    const float xt = x[(size_t)r * t_count + t];
                    float *a = acc + (size_t)r * o_count;
                    for (int o = 0; o < o_count; o++)
                        a[o] += xt * g[o];
                }
            }
            for (int64_t c = 0; c < count; c++) {
                const int64_t i = (int64_t)k * b->n_columns + c;
                const float *d = b->delta + i * o_count;
                for (int r = 0; r < ROWS; r++) {
                    const float w = column_weight(b, i, m0 + r);
                    if (w == 0.0f)
                        continue;
                    const float v = x[(size_t)r * t_count + b->track[i]] * w;
                    float *a = acc + (size_t)r * o_count;
                    for (int o = 0; o < o_count; o++)
                        a[o] += v * d[o];
                }
            }
            memcpy(b->out + ((int64_t)k * m_count + m0) * o_count, acc,
                   sizeof(float) * (size_t)ROWS * o_count);
        }
    }
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define HAVE_AVX2_PATH 1
#include <immintrin.h>

typedef float f8 __attribute__((vector_size(32), aligned(4)));
typedef float f4 __attribute__((vector_size(16), aligned(4)));

#define PREFETCH 4096 /* bytes ahead of the frame being decoded */

/* decode_frame, eight integer samples at a time: 16-bit ones widened, 24-bit ones moved by
   a byte shuffle into the upper three bytes of 32-bit lanes (each 128-bit half takes four
   samples, 12 of the 16 bytes it loads), 32-bit ones as they are; then converted and
   scaled. A group whose loads would pass the end of the buffer is decoded one by one. */
__attribute__((target("avx2,fma"))) static void decode_frame_avx2(const Batch *b, int64_t f,
                                                                   float *x)
{
    const int t_count = b->n_tracks;
    if (f >= b->n_frames || b->encoding == 3) {
        decode_frame(b, f, x);
        return;
    }
    const int bytes = sample_width(b->encoding);
    const Py_ssize_t start = b->first_byte + f * t_count * bytes;
    const uint8_t *p = b->raw + start;
    /* the frame PREFETCH bytes on asked for now: the file's pages, mapped, are read in order
       but their memory is not (the processor's own prefetching stops at each page's end) */
    for (int i = 0; i < t_count * bytes; i += 64)
        _mm_prefetch((const char *)p + PREFETCH + i, _MM_HINT_T0);
    /* the groups whose loads (16 bytes from 12 * j bytes on for 24-bit, 16 or 32 bytes for
       the others) stay in the buffer */
    const Py_ssize_t room = b->raw_len - start;
    const int load = bytes == 3 ? 28 : bytes * 8;
    int groups = t_count / 8;
    while (groups > 0 && (Py_ssize_t)(groups - 1) * 8 * bytes + load > room)
        groups--;
    int t = 0;
    if (b->encoding == 1) {
        const __m256i shuffle = _mm256_setr_epi8(
            -1, 0, 1, 2, -1, 3, 4, 5, -1, 6, 7, 8, -1, 9, 10, 11,
            -1, 0, 1, 2, -1, 3, 4, 5, -1, 6, 7, 8, -1, 9, 10, 11);
        const __m256 scale = _mm256_set1_ps(1.0f / 2147483648.0f);
        for (int g = 0; g < groups; g++, t += 8) {
            const uint8_t *q = p + 3 * t;
            __m256i v = _mm256_inserti128_si256(
                _mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)q)),
                _mm_loadu_si128((const __m128i *)(q + 12)), 1);
            v = _mm256_shuffle_epi8(v, shuffle);
            _mm256_storeu_ps(x + t, _mm256_mul_ps(_mm256_cvtepi32_ps(v), scale));
        }
    } else if (b->encoding == 0) {
        const __m256 scale = _mm256_set1_ps(1.0f / 32768.0f);
        for (int g = 0; g < groups; g++, t += 8) {
            __m256i v = _mm256_cvtepi16_epi32(_mm_loadu_si128((const __m128i *)(p + 2 * t)));
            _mm256_storeu_ps(x + t, _mm256_mul_ps(_mm256_cvtepi32_ps(v), scale));
        }
    } else {
        const __m256 scale = _mm256_set1_ps(1.0f / 2147483648.0f);
        for (int g = 0; g < groups; g++, t += 8) {
            __m256i v = _mm256_loadu_si256((const __m256i *)(p + 4 * t));
            _mm256_storeu_ps(x + t, _mm256_mul_ps(_mm256_cvtepi32_ps(v), scale));
        }
    }
    decode_samples(p, bytes, t, t_count, x); /* the rest one by one */
}

/* The outputs in vectors of 8 (v_count of them), and the last 4 in a vector of 4 where their
   count is 4 more than a multiple of 8 (tail). Inlined with the counts of the common layouts
   as constants (mix_avx2), so that the accumulators stay in registers. */
__attribute__((target("avx2,fma"), always_inline)) static inline void mix_avx2_outputs(
    const Batch *b, float *x, const int v_count, const int tail)
{
    const int t_count = b->n_tracks, m_count = b->sub_block, o_count = b->n_out;
    f8 acc[ROWS][MAX_OUT_VECTORS];
    f4 acc4[ROWS];
    for (int k = b->k0; k < b->k1; k++) {
        const float *gains = b->base_gains + (int64_t)k * t_count * o_count;
        const int64_t count = b->counts[k];
        for (int m0 = 0; m0 < m_count; m0 += ROWS) {
            for (int r = 0; r < ROWS; r++)
                decode_frame_avx2(b, (int64_t)k * m_count + m0 + r, x + (size_t)r * t_count);
            for (int r = 0; r < ROWS; r++) {
                for (int j = 0; j < v_count; j++)
                    acc[r][j] = (f8){0};
                acc4[r] = (f4){0};
            }
            for (int t = 0; t < t_count; t++) {
                const float *row = gains + (int64_t)t * o_count;
                const f8 *g = (const f8 *)row;
                const float x0 = x[t], x1 = x[t_count + t];
                const float x2 = x[2 * t_count + t], x3 = x[3 * t_count + t];
                for (int j = 0; j < v_count; j++) {
                    const f8 gj = g[j];
                    acc[0][j] += x0 * gj;
                    acc[1][j] += x1 * gj;
                    acc[2][j] += x2 * gj;
                    acc[3][j] += x3 * gj;
                }
                if (tail) {
                    const f4 g4 = *(const f4 *)(row + 8 * v_count);
                    acc4[0] += x0 * g4;
                    acc4[1] += x1 * g4;
                    acc4[2] += x2 * g4;
                    acc4[3] += x3 * g4;
                }
            }
            for (int64_t c = 0; c < count; c++) {
                const int64_t i = (int64_t)k * b->n_columns + c;
                const float *change = b->delta + i * o_count;
                const f8 *d = (const f8 *)change;
                for (int r = 0; r < ROWS; r++) {
                    const float w = column_weight(b, i, m0 + r);
                    if (w == 0.0f)
                        continue;
                    const float v = x[(size_t)r * t_count + b->track[i]] * w;
                    for (int j = 0; j < v_count; j++)
                        acc[r][j] += v * d[j];
                    if (tail)
                        acc4[r] += v * *(const f4 *)(change + 8 * v_count);
                }
            }
            for (int r = 0; r < ROWS; r++) {
                float *dst = b->out + ((int64_t)k * m_count + m0 + r) * o_count;
                memcpy(dst, acc[r], sizeof(float) * 8 * (size_t)v_count);
                if (tail)
                    memcpy(dst + 8 * v_count, &acc4[r], sizeof(float) * 4);
            }
        }
    }
}

__attribute__((target("avx2,fma"))) static void mix_avx2(const Batch *b, float *x)
{
    const int v_count = b->n_out / 8, tail = b->n_out % 8 != 0;
    switch (2 * v_count + tail) { /* up to 24 outputs */
    case 1: mix_avx2_outputs(b, x, 0, 1); break; /* 2.0 */
    case 2: mix_avx2_outputs(b, x, 1, 0); break; /* 5.1, 7.1 */
    case 3: mix_avx2_outputs(b, x, 1, 1); break; /* 5.1.4, 7.1.4 */
    case 4: mix_avx2_outputs(b, x, 2, 0); break; /* 9.1.6 */
    case 5: mix_avx2_outputs(b, x, 2, 1); break;
    case 6: mix_avx2_outputs(b, x, 3, 0); break; /* 9+10+3 */
    default: mix_avx2_outputs(b, x, v_count, tail);
    }
}
#endif

/* A C-contiguous buffer of at least `items` items of `itemsize` bytes, or an exception. */
static int get_buffer(PyObject *object, Py_buffer *view, int writable, Py_ssize_t itemsize,
                      Py_ssize_t items, const char *name)
{
    if (PyObject_GetBuffer(object, view, (writable ? PyBUF_WRITABLE : PyBUF_SIMPLE)) < 0)
        return -1;
    if (view->len < items * itemsize) {
        PyErr_Format(PyExc_ValueError, "%s: %zd bytes, need %zd", name, view->len,
                     items * itemsize);
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

static PyObject *mix(PyObject *self, PyObject *args)
{
    (void)self;
    PyObject *objects[10];
    Batch b;
    long long n_frames;
    Py_ssize_t first_byte;
    if (!PyArg_ParseTuple(args, "OnLiiiOOOOOOOOiiO", &objects[0], &first_byte, &n_frames,
                          &b.encoding, &b.n_tracks, &b.sub_block, &objects[1], &objects[2],
                          &objects[3], &objects[4], &objects[5], &objects[6], &objects[7],
                          &objects[8], &b.k0, &b.k1, &objects[9]))
        return NULL;
    b.n_frames = n_frames;
    b.first_byte = first_byte;
    Py_buffer views[10];
    int got = 0;
    PyObject *result = NULL;
    float *scratch = NULL;
    Py_ssize_t n_columns = 0, n_out = 0, k_count = 0;
    const int bytes = sample_width(b.encoding);
    if (b.encoding < 0 || b.encoding > 3 || b.n_tracks < 1 || b.sub_block < ROWS ||
        b.sub_block % ROWS || b.k0 < 0 || b.k1 < b.k0 || b.n_frames < 0 ||
        b.first_byte < (b.encoding == 1 ? 1 : 0)) {
        PyErr_SetString(PyExc_ValueError, "mix: bad sizes");
        return NULL;
    }
    /* the counts give K; track gives C; base_gains gives O */
    if (get_buffer(objects[8], &views[8], 0, 8, 0, "counts") < 0)
        goto done;
    got |= 1 << 8;
    k_count = views[8].len / 8;
    if (get_buffer(objects[2], &views[2], 0, 4, 0, "track") < 0)
        goto done;
    got |= 1 << 2;
    n_columns = k_count ? views[2].len / 4 / k_count : 0;
    if (get_buffer(objects[1], &views[1], 0, 4, 0, "base_gains") < 0)
        goto done;
    got |= 1 << 1;
    n_out = k_count ? views[1].len / 4 / k_count / b.n_tracks : 0;
    if (b.k1 > k_count || n_out < 4 || n_out % 4 || n_out > 8 * MAX_OUT_VECTORS) {
        PyErr_SetString(PyExc_ValueError, "mix: sub-block range or output count");
        goto done;
    }
    b.n_columns = (int)n_columns;
    b.n_out = (int)n_out;
    {
        const Py_ssize_t columns = k_count * n_columns;
        const Py_ssize_t frames_in = b.n_frames < (int64_t)b.k1 * b.sub_block
                                         ? b.n_frames : (int64_t)b.k1 * b.sub_block;
        struct { int index, writable; Py_ssize_t itemsize, items; const char *name; } rest[] = {
            {0, 0, 1, b.first_byte + frames_in * b.n_tracks * bytes, "raw"},
            {3, 0, 4, columns, "rel_first"}, {4, 0, 4, columns, "rel_last"},
            {5, 0, 4, columns, "p_first"}, {6, 0, 4, columns, "step"},
            {7, 0, 4, columns * n_out, "delta"},
            {9, 1, 4, k_count * b.sub_block * n_out, "out"},
        };
        for (size_t j = 0; j < sizeof(rest) / sizeof(rest[0]); j++) {
            if (get_buffer(objects[rest[j].index], &views[rest[j].index], rest[j].writable,
                           rest[j].itemsize, rest[j].items, rest[j].name) < 0)
                goto done;
            got |= 1 << rest[j].index;
        }
        if (views[1].len < k_count * b.n_tracks * n_out * 4) {
            PyErr_SetString(PyExc_ValueError, "mix: base_gains size");
            goto done;
        }
        for (Py_ssize_t i = 0; i < k_count; i++) {
            const int64_t count = ((const int64_t *)views[8].buf)[i];
            if (count < 0 || count > n_columns) {
                PyErr_SetString(PyExc_ValueError, "mix: column count");
                goto done;
            }
        }
        for (Py_ssize_t i = 0; i < columns; i++) {
            const int32_t t = ((const int32_t *)views[2].buf)[i];
            if (t < 0 || t >= b.n_tracks) {
                PyErr_SetString(PyExc_ValueError, "mix: column track");
                goto done;
            }
        }
    }
    b.raw = views[0].buf;
    b.raw_len = views[0].len;
    b.base_gains = views[1].buf;
    b.track = views[2].buf;
    b.rel_first = views[3].buf;
    b.rel_last = views[4].buf;
    b.p_first = views[5].buf;
    b.step = views[6].buf;
    b.delta = views[7].buf;
    b.counts = views[8].buf;
    b.out = views[9].buf;
    scratch = malloc(sizeof(float) * (size_t)ROWS * ((size_t)b.n_tracks + (size_t)n_out));
    if (scratch == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    Py_BEGIN_ALLOW_THREADS
#ifdef HAVE_AVX2_PATH
    if (use_avx2)
        mix_avx2(&b, scratch);
    else
#endif
        mix_plain(&b, scratch);
    Py_END_ALLOW_THREADS
    result = Py_None;
    Py_INCREF(result);
done:
    free(scratch);
    for (int j = 0; j < 10; j++)
        if (got & (1 << j))
            PyBuffer_Release(&views[j]);
    return result;
}

/* decode(raw, first_byte, n_frames, encoding, n_tracks, out): the samples of frames
   [0, n_frames) (raw, first_byte and encoding as for mix) into float32 out (n_frames,
   n_tracks), as the mix decodes them. */
#define TILE 32 /* frames decoded together before they are written track by track */

/* Tracks [t0, t_count) of frames [0, count) of a tile (count frames of t_count samples) into
   out[t * row + f], one by one. */
static void tile_by_tracks(const float *tile, int t_count, int count, int t0, float *out,
                           Py_ssize_t row)
{
    for (int t = t0; t < t_count; t++) {
        float *o = out + t * row;
        for (int r = 0; r < count; r++)
            o[r] = tile[(size_t)r * t_count + t];
    }
}

#ifdef HAVE_AVX2_PATH
/* tile_by_tracks of a whole tile (TILE frames), eight tracks of eight frames at a time turned
   by an 8 x 8 transpose in registers; returns the first track not written */
__attribute__((target("avx2,fma"))) static int tile_by_tracks_avx2(
    const float *tile, int t_count, float *out, Py_ssize_t row)
{
    int t0 = 0;
    for (; t0 + 8 <= t_count; t0 += 8) {
        for (int r0 = 0; r0 < TILE; r0 += 8) {
            __m256 v[8];
            for (int i = 0; i < 8; i++)
                v[i] = _mm256_loadu_ps(tile + (size_t)(r0 + i) * t_count + t0);
            transpose8(v); /* v[j]: track t0 + j of frames r0 .. r0 + 7 */
            for (int j = 0; j < 8; j++)
                _mm256_storeu_ps(out + (t0 + j) * row + r0, v[j]);
        }
    }
    return t0;
}
#endif

/* The frames of batch b decoded into out[t * row + f] (track by track), TILE frames at a time
   through `tile` (TILE * n_tracks floats), where they are decoded frame by frame. */
static void decode_by_tracks(const Batch *b, float *tile, float *out, Py_ssize_t row)
{
    const int t_count = b->n_tracks;
    for (int64_t f0 = 0; f0 < b->n_frames; f0 += TILE) {
        const int count = b->n_frames - f0 < TILE ? (int)(b->n_frames - f0) : TILE;
        int t0 = 0;
#ifdef HAVE_AVX2_PATH
        if (use_avx2) {
            for (int r = 0; r < count; r++)
                decode_frame_avx2(b, f0 + r, tile + (size_t)r * t_count);
            if (count == TILE)
                t0 = tile_by_tracks_avx2(tile, t_count, out + f0, row);
        } else
#endif
            for (int r = 0; r < count; r++)
                decode_frame(b, f0 + r, tile + (size_t)r * t_count);
        tile_by_tracks(tile, t_count, count, t0, out + f0, row);
    }
}

static PyObject *decode(PyObject *self, PyObject *args)
{
    (void)self;
    PyObject *raw_object, *out_object;
    Batch b;
    memset(&b, 0, sizeof(b));
    long long n_frames;
    if (!PyArg_ParseTuple(args, "OnLiiO", &raw_object, &b.first_byte, &n_frames, &b.encoding,
                          &b.n_tracks, &out_object))
        return NULL;
    b.n_frames = n_frames;
    const int bytes = sample_width(b.encoding);
    if (b.encoding < 0 || b.encoding > 3 || b.n_tracks < 1 || b.n_frames < 0 ||
        b.first_byte < (b.encoding == 1 ? 1 : 0)) {
        PyErr_SetString(PyExc_ValueError, "decode: bad sizes");
        return NULL;
    }
    Py_buffer raw, out;
    if (PyObject_GetBuffer(raw_object, &raw, PyBUF_SIMPLE) < 0)
        return NULL;
    if (PyObject_GetBuffer(out_object, &out, PyBUF_STRIDES | PyBUF_WRITABLE) < 0) {
        PyBuffer_Release(&raw);
        return NULL;
    }
    PyObject *result = NULL;
    /* out: C-contiguous, frame after frame; or (n_frames, n_tracks) track by track, the
       transpose of a C-order (n_tracks, row) array */
    const int by_tracks = !PyBuffer_IsContiguous(&out, 'C');
    const Py_ssize_t row = by_tracks && out.ndim == 2 ? out.strides[1] / 4 : 0;
    float *tile = NULL;
    if (raw.len < b.first_byte + b.n_frames * b.n_tracks * bytes) {
        PyErr_SetString(PyExc_ValueError, "decode: buffer sizes");
    } else if (!by_tracks && out.len < b.n_frames * b.n_tracks * 4) {
        PyErr_SetString(PyExc_ValueError, "decode: buffer sizes");
    } else if (by_tracks && (out.ndim != 2 || out.itemsize != 4 || out.shape[0] != b.n_frames ||
                             out.shape[1] != b.n_tracks || out.strides[0] != 4 ||
                             out.strides[1] % 4 != 0 || row < b.n_frames)) {
        PyErr_SetString(PyExc_ValueError, "decode: out must be contiguous, or (frames, tracks) "
                        "with each track's frames contiguous");
    } else if (by_tracks &&
               (tile = malloc(sizeof(float) * TILE * (size_t)b.n_tracks)) == NULL) {
        PyErr_NoMemory();
    } else {
        b.raw = raw.buf;
        b.raw_len = raw.len;
        float *x = out.buf;
        Py_BEGIN_ALLOW_THREADS
        if (by_tracks)
            decode_by_tracks(&b, tile, x, row);
        else
            for (int64_t f = 0; f < b.n_frames; f++) {
#ifdef HAVE_AVX2_PATH
                if (use_avx2)
                    decode_frame_avx2(&b, f, x + f * b.n_tracks);
                else
#endif
                    decode_frame(&b, f, x + f * b.n_tracks);
            }
        Py_END_ALLOW_THREADS
        result = Py_None;
        Py_INCREF(result);
    }
    free(tile);
    PyBuffer_Release(&raw);
    PyBuffer_Release(&out);
    return result;
}

/* ---- tables ---------------------------------------------------------------------------
 *
 * tables(track, first, last, ramp_start, ramp_step, gains_from, gains_to, start, sub_block,
 *        n_tracks, width, base_gains, column_track, rel_first, rel_last, p_first, step,
 *        delta, counts) -> the width needed
 *
 * The tables of one batch of K sub-blocks from frame `start` on, as renderer.engine's
 * Mixer._tables_numpy makes them from the segments overlapping it (S of them: track int32,
 * first, last int64, ramp_start, ramp_step float64 (S,); gains_from, gains_to float32
 * (S, O)): the gains at each sub-block's start (of the segments covering it: a ramp's
 * from-gains; summed in double over a difference array where two segments of a track share
 * one); the steps inside sub-blocks (each segment's first gains where it starts and its last
 * gains taken away where it ends, those of a track at one frame summed in double, zero sums
 * left out), ordered by track and frame; the ramps as a column in each sub-block they touch;
 * in each sub-block the steps first, then the ramps in the segments' order. Empty segments
 * add nothing.
 *
 * The width needed is the columns of the fullest sub-block rounded up to a power of two (at
 * least 16). Where it is not `width`, only counts is written: call again with arrays of
 * that width. Arrays written (C order): base_gains float32 (K, T, P); column_track, rel_first,
 * rel_last int32 (K, width); p_first, step float32 (K, width); delta float32 (K, width, P);
 * counts int64 (K,); P >= O outputs, those past O zero (the kernel's padding).
 */

typedef struct {
    int64_t key; /* track * frames + frame */
    const float *gains;
    float sign;
} StepEntry;

#define DIGIT_BITS 11 /* the radix sort's digit */

/* Sort the n entries by key, keeping the order of equal keys (they are made in the order of
   their `order`), keys in [0, 2^key_bits): a least-significant-digit radix sort through
   `spare` (room for n entries); returns the array holding the result (entries or spare). */
static StepEntry *sort_steps(StepEntry *entries, StepEntry *spare, int64_t n, int key_bits)
{
    int64_t count[1 << DIGIT_BITS];
    for (int shift = 0; shift < key_bits; shift += DIGIT_BITS) {
        memset(count, 0, sizeof(count));
        for (int64_t e = 0; e < n; e++)
            count[(entries[e].key >> shift) & ((1 << DIGIT_BITS) - 1)]++;
        int64_t total = 0;
        for (int d = 0; d < (1 << DIGIT_BITS); d++) {
            const int64_t c = count[d];
            count[d] = total;
            total += c;
        }
        for (int64_t e = 0; e < n; e++)
            spare[count[(entries[e].key >> shift) & ((1 << DIGIT_BITS) - 1)]++] = entries[e];
        StepEntry *swap = entries;
        entries = spare;
        spare = swap;
    }
    return entries;
}

static inline int64_t floor_div(int64_t a, int64_t m)
{
    return a >= 0 ? a / m : -((-a + m - 1) / m);
}

static inline int64_t clip64(int64_t v, int64_t lo, int64_t hi)
{
    return v < lo ? lo : v > hi ? hi : v;
}

/* Whether the segment [f, l) (frames from the batch's start) is a ramp with a column in the
   batch's K sub-blocks of m frames, and then the first and last of them in lo and hi. */
static inline int ramp_columns(int64_t f, int64_t l, double ramp_step, int64_t m, int64_t k_count,
                               int64_t *lo, int64_t *hi)
{
    if (l <= f || ramp_step == 0.0 || f >= k_count * m || l <= 0)
        return 0;
    *lo = clip64(floor_div(f, m), 0, k_count - 1);
    *hi = clip64(floor_div(l - 1, m), 0, k_count - 1);
    return 1;
}

static PyObject *tables(PyObject *self, PyObject *args)
{
    (void)self;
    enum { TRACK, FIRST, LAST, RAMP_START, RAMP_STEP, FROM, TO, BASE, C_TRACK, REL_FIRST,
           REL_LAST, P_FIRST, STEP, DELTA, COUNTS, N_ARRAYS };
    PyObject *objects[N_ARRAYS];
    long long start_ll;
    int m, t_count, width;
    if (!PyArg_ParseTuple(args, "OOOOOOOLiiiOOOOOOOO", &objects[TRACK], &objects[FIRST],
                          &objects[LAST], &objects[RAMP_START], &objects[RAMP_STEP],
                          &objects[FROM], &objects[TO], &start_ll, &m, &t_count, &width,
                          &objects[BASE], &objects[C_TRACK], &objects[REL_FIRST],
                          &objects[REL_LAST], &objects[P_FIRST], &objects[STEP],
                          &objects[DELTA], &objects[COUNTS]))
        return NULL;
    Py_buffer views[N_ARRAYS];
    int got = 0;
    PyObject *result = NULL;
    StepEntry *entries = NULL;
    double *sums = NULL;
    int *cells = NULL;
    int64_t *step_key = NULL;
    static const Py_ssize_t item[N_ARRAYS] = {4, 8, 8, 8, 8, 4, 4, 4, 4, 4, 4, 4, 4, 4, 8};
    for (int j = 0; j < N_ARRAYS; j++) {
        if (PyObject_GetBuffer(objects[j], &views[j],
                               PyBUF_C_CONTIGUOUS | (j >= BASE ? PyBUF_WRITABLE : 0)) < 0)
            goto done;
        got |= 1 << j;
        if (views[j].len % item[j]) {
            PyErr_SetString(PyExc_ValueError, "tables: an array of the wrong type");
            goto done;
        }
    }
    const int64_t s_count = views[TRACK].len / 4;
    const int64_t k_count = views[COUNTS].len / 8;
    const int64_t o_count = s_count ? views[FROM].len / 4 / s_count : 0;
    const int64_t p_count = k_count && t_count > 0 ? views[BASE].len / 4 / (k_count * t_count)
                                                   : 0;
    if (m < 1 || k_count < 1 || t_count < 1 || width < 1 || o_count > p_count ||
        views[FIRST].len != 8 * s_count || views[LAST].len != 8 * s_count ||
        views[RAMP_START].len != 8 * s_count || views[RAMP_STEP].len != 8 * s_count ||
        views[TO].len != views[FROM].len || (s_count && views[FROM].len != 4 * s_count * o_count) ||
        views[BASE].len != 4 * k_count * t_count * p_count ||
        views[C_TRACK].len != 4 * k_count * width || views[REL_FIRST].len != views[C_TRACK].len ||
        views[REL_LAST].len != views[C_TRACK].len || views[P_FIRST].len != views[C_TRACK].len ||
        views[STEP].len != views[C_TRACK].len ||
        views[DELTA].len != 4 * k_count * width * p_count) {
        PyErr_SetString(PyExc_ValueError, "tables: sizes");
        goto done;
    }
    const int32_t *track = views[TRACK].buf;
    for (int64_t i = 0; i < s_count; i++) {
        if (track[i] < 0 || track[i] >= t_count) {
            PyErr_SetString(PyExc_ValueError, "tables: a track out of range");
            goto done;
        }
    }
    const int64_t *first = views[FIRST].buf, *last = views[LAST].buf;
    const double *ramp_start = views[RAMP_START].buf, *ramp_step = views[RAMP_STEP].buf;
    const float *from = views[FROM].buf, *to = views[TO].buf;
    const int64_t start = start_ll, frames = k_count * m;
    entries = malloc(sizeof(StepEntry) * (size_t)(4 * s_count) + 1); /* and the sort's room */
    /* the steps' sums (at most 2 S rows), then the base gains' difference array */
    const int64_t sum_rows = 2 * s_count > (k_count + 1) * t_count ? 2 * s_count
                                                                    : (k_count + 1) * t_count;
    sums = malloc(sizeof(double) * (size_t)(sum_rows * o_count) + 1);
    cells = calloc((size_t)(k_count * t_count) + 1, sizeof(int));
    step_key = malloc(sizeof(int64_t) * (size_t)(2 * s_count) + 1);
    if (!entries || !sums || !cells || !step_key) {
        PyErr_NoMemory();
        goto done;
    }
    int64_t needed = 0;
    Py_BEGIN_ALLOW_THREADS
    float *base = views[BASE].buf;
    int64_t *counts = views[COUNTS].buf;
    /* the steps: entries inside sub-blocks, made in the order of the segments' starts, then
       their ends, and sorted by track and frame keeping that order among equal ones */
    int64_t n_entries = 0;
    for (int half = 0; half < 2; half++) {
        for (int64_t i = 0; i < s_count; i++) {
            if (last[i] <= first[i])
                continue;
            const int64_t at = (half ? last[i] : first[i]) - start;
            if (at <= 0 || at >= frames || at % m == 0)
                continue;
            const int ramp = ramp_step[i] != 0.0;
            entries[n_entries].key = (int64_t)track[i] * frames + at;
            entries[n_entries].gains = (half || !ramp ? to : from) + i * o_count;
            entries[n_entries].sign = half ? -1.0f : 1.0f;
            n_entries++;
        }
    }
    int key_bits = 1;
    while (key_bits < 62 && ((int64_t)1 << key_bits) < (int64_t)t_count * frames)
        key_bits++;
    StepEntry *sorted = sort_steps(entries, entries + 2 * s_count, n_entries, key_bits);
    /* their sums per (track, frame), kept where not all zero: in `sums` (n_steps, O) */
    int64_t n_steps = 0;
    for (int64_t e = 0; e < n_entries;) {
        double *row = sums + n_steps * o_count;
        for (int64_t o = 0; o < o_count; o++)
            row[o] = 0.0;
        const int64_t key = sorted[e].key;
        for (; e < n_entries && sorted[e].key == key; e++)
            for (int64_t o = 0; o < o_count; o++)
                row[o] += (double)(sorted[e].sign * sorted[e].gains[o]);
        int any = 0;
        for (int64_t o = 0; o < o_count && !any; o++)
            any = row[o] != 0.0;
        if (any)
            step_key[n_steps++] = key;
    }
    /* the ramps: a column in each sub-block [lo, hi] they touch, in the segments' order */
    for (int64_t k = 0; k < k_count; k++)
        counts[k] = 0;
    for (int64_t j = 0; j < n_steps; j++)
        counts[(step_key[j] % frames) / m]++;
    for (int64_t i = 0; i < s_count; i++) {
        int64_t lo, hi;
        if (ramp_columns(first[i] - start, last[i] - start, ramp_step[i], m, k_count, &lo, &hi))
            for (int64_t k = lo; k <= hi; k++)
                counts[k]++;
    }
    int64_t fullest = 0;
    for (int64_t k = 0; k < k_count; k++)
        fullest = counts[k] > fullest ? counts[k] : fullest;
    needed = 16;
    while (needed < fullest)
        needed *= 2;
    if (needed == width) {
        /* the columns: zeros, then the steps and the ramps in their sub-blocks' slots */
        int32_t *c_track = views[C_TRACK].buf, *rel_first = views[REL_FIRST].buf;
        int32_t *rel_last = views[REL_LAST].buf;
        float *p_first = views[P_FIRST].buf, *step = views[STEP].buf, *delta = views[DELTA].buf;
        memset(c_track, 0, (size_t)views[C_TRACK].len);
        memset(rel_first, 0, (size_t)views[REL_FIRST].len);
        memset(rel_last, 0, (size_t)views[REL_LAST].len);
        memset(p_first, 0, (size_t)views[P_FIRST].len);
        memset(step, 0, (size_t)views[STEP].len);
        memset(delta, 0, (size_t)views[DELTA].len);
        for (int64_t k = 0; k < k_count; k++)
            counts[k] = 0; /* counted again as the slots fill */
        for (int64_t j = 0; j < n_steps; j++) {
            const int64_t at = step_key[j] % frames, k = at / m;
            const int64_t c = k * width + counts[k]++;
            c_track[c] = (int32_t)(step_key[j] / frames);
            rel_first[c] = rel_last[c] = (int32_t)(at % m);
            p_first[c] = 1.0f;
            for (int64_t o = 0; o < o_count; o++)
                delta[c * p_count + o] = (float)sums[j * o_count + o];
        }
        for (int64_t i = 0; i < s_count; i++) {
            const int64_t f = first[i] - start, l = last[i] - start;
            int64_t lo, hi;
            if (!ramp_columns(f, l, ramp_step[i], m, k_count, &lo, &hi))
                continue;
            for (int64_t k = lo; k <= hi; k++) {
                const int64_t c = k * width + counts[k]++;
                const int64_t r_first = clip64(f - k * m, 0, m);
                c_track[c] = track[i];
                rel_first[c] = (int32_t)r_first;
                rel_last[c] = (int32_t)clip64(l - k * m, 0, m);
                p_first[c] = (float)(ramp_start[i] +
                                     (double)(k * m + r_first - f) * ramp_step[i]);
                step[c] = (float)ramp_step[i];
                for (int64_t o = 0; o < o_count; o++)
                    delta[c * p_count + o] = to[i * o_count + o] - from[i * o_count + o];
            }
        }
        /* the gains at each sub-block's start */
        memset(base, 0, (size_t)views[BASE].len);
        int shared = 0;
        for (int64_t i = 0; i < s_count && !shared; i++) {
            if (last[i] <= first[i])
                continue;
            const int64_t lo = clip64(-floor_div(start - first[i], m), 0, k_count);
            const int64_t hi = clip64(-floor_div(start - last[i], m), 0, k_count);
            for (int64_t k = lo; k < hi; k++)
                if (++cells[k * t_count + track[i]] > 1)
                    shared = 1;
        }
        if (shared)
            memset(sums, 0, sizeof(double) * (size_t)((k_count + 1) * t_count * o_count));
        for (int64_t i = 0; i < s_count; i++) { /* each segment's gains, placed or summed */
            if (last[i] <= first[i])
                continue;
            const int64_t lo = clip64(-floor_div(start - first[i], m), 0, k_count);
            const int64_t hi = clip64(-floor_div(start - last[i], m), 0, k_count);
            const float *begin = (ramp_step[i] != 0.0 ? from : to) + i * o_count;
            if (!shared) {
                for (int64_t k = lo; k < hi; k++)
                    memcpy(base + (k * t_count + track[i]) * p_count, begin,
                           sizeof(float) * (size_t)o_count);
            } else if (hi > lo) {
                double *row = sums + (lo * t_count + track[i]) * o_count;
                for (int64_t o = 0; o < o_count; o++)
                    row[o] += (double)begin[o];
            }
        }
        if (shared) { /* every start added first, then every end taken away, as numpy sums */
            for (int64_t i = 0; i < s_count; i++) {
                if (last[i] <= first[i])
                    continue;
                const int64_t lo = clip64(-floor_div(start - first[i], m), 0, k_count);
                const int64_t hi = clip64(-floor_div(start - last[i], m), 0, k_count);
                if (hi <= lo)
                    continue;
                const float *begin = (ramp_step[i] != 0.0 ? from : to) + i * o_count;
                double *row = sums + (hi * t_count + track[i]) * o_count;
                for (int64_t o = 0; o < o_count; o++)
                    row[o] -= (double)begin[o];
            }
            for (int64_t k = 1; k < k_count; k++) /* the running sums over sub-blocks */
                for (int64_t j = 0; j < t_count * o_count; j++)
                    sums[k * t_count * o_count + j] += sums[(k - 1) * t_count * o_count + j];
            for (int64_t k = 0; k < k_count; k++)
                for (int64_t t = 0; t < t_count; t++)
                    for (int64_t o = 0; o < o_count; o++)
                        base[(k * t_count + t) * p_count + o] =
                            (float)sums[(k * t_count + t) * o_count + o];
        }
    }
    Py_END_ALLOW_THREADS
    result = PyLong_FromLongLong(needed);
done:
    free(entries);
    free(sums);
    free(cells);
    free(step_key);
    for (int j = 0; j < N_ARRAYS; j++)
        if (got & (1 << j))
            PyBuffer_Release(&views[j]);
    return result;
}


/* ---- encode ----------------------------------------------------------------------------
 *
 * encode(frames, bits, out, peaks) -> samples clipped, or -1
 *
 * The float32 frames (n, C) (C order) as little-endian integer PCM of `bits` (16 or 24) into
 * out (n * C * bits / 8 bytes), as adm.bw64.Bw64Writer.write encodes them: each value times
 * 2**(bits-1) in float32, rounded to nearest (ties to even), clipped to [-2**(bits-1),
 * 2**(bits-1) - 1] (counted); and each channel's largest absolute value into peaks (float32
 * (C,), where it is larger). -1 (nothing meant) where a value is not finite.
 */

static int64_t encode_plain(const float *x, int64_t count, int bits, uint8_t *out)
{
    const float scale = bits == 16 ? 32768.0f : 8388608.0f;
    const float lo = -scale, hi = scale - 1.0f;
    int64_t clipped = 0;
    for (int64_t i = 0; i < count; i++) {
        float y = rintf(x[i] * scale);
        if (y < lo || y > hi) {
            clipped++;
            y = y < lo ? lo : hi;
        }
        const int32_t v = (int32_t)y;
        out[0] = (uint8_t)v;
        out[1] = (uint8_t)(v >> 8);
        if (bits == 24)
            out[2] = (uint8_t)(v >> 16);
        out += bits / 8;
    }
    return clipped;
}

#ifdef HAVE_AVX2_PATH
/* encode_plain eight values at a time (24-bit: the low three bytes of each 32-bit lane
   gathered by a byte shuffle, twelve bytes a 128-bit half); the rest one by one. Writes up
   to four bytes past a group's own (the next group's place, or the slack the caller left). */
__attribute__((target("avx2,fma"))) static int64_t encode_avx2(const float *x, int64_t count,
                                                               int bits, uint8_t *out)
{
    const float scale_value = bits == 16 ? 32768.0f : 8388608.0f;
    const __m256 scale = _mm256_set1_ps(scale_value);
    const __m256 lo = _mm256_set1_ps(-scale_value), hi = _mm256_set1_ps(scale_value - 1.0f);
    const __m128i three = _mm_setr_epi8(0, 1, 2, 4, 5, 6, 8, 9, 10, 12, 13, 14, -1, -1, -1, -1);
    int64_t clipped = 0, i = 0;
    const int width = bits / 8;
    for (; i + 8 <= count - (bits == 24 ? 2 : 0); i += 8) {
        __m256 y = _mm256_round_ps(_mm256_mul_ps(_mm256_loadu_ps(x + i), scale),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        const int outside = _mm256_movemask_ps(_mm256_or_ps(
            _mm256_cmp_ps(y, lo, _CMP_LT_OQ), _mm256_cmp_ps(y, hi, _CMP_GT_OQ)));
        clipped += __builtin_popcount((unsigned)outside);
        y = _mm256_min_ps(_mm256_max_ps(y, lo), hi);
        const __m256i v = _mm256_cvtps_epi32(y);
        uint8_t *o = out + i * width;
        if (bits == 16) {
            const __m128i packed = _mm_packs_epi32(_mm256_castsi256_si128(v),
                                                   _mm256_extracti128_si256(v, 1));
            _mm_storeu_si128((__m128i *)o, packed);
        } else {
            _mm_storeu_si128((__m128i *)o, _mm_shuffle_epi8(_mm256_castsi256_si128(v), three));
            _mm_storeu_si128((__m128i *)(o + 12),
                             _mm_shuffle_epi8(_mm256_extracti128_si256(v, 1), three));
        }
    }
    return clipped + encode_plain(x + i, count - i, bits, out + i * width);
}
#endif


/* Each channel's largest absolute value (of values [first, first + count) of the frames'
   flat sequence, `channels` a frame) into peaks where larger; whether all are finite. */
static int peaks_plain(const float *x, int64_t count, int64_t channels, int64_t first,
                       float *peaks)
{
    int finite = 1;
    for (int64_t i = first; i < first + count; i++) {
        const float a = fabsf(x[i]);
        finite &= a <= 3.402823466e38f; /* false for NaN and infinities */
        const int64_t c = i % channels;
        peaks[c] = a > peaks[c] ? a : peaks[c];
    }
    return finite;
}

#ifdef HAVE_AVX2_PATH
#define PEAK_VECTORS 16 /* runs of up to 128 values: a whole number of frames */

/* peaks_plain in runs of L = lcm(channels, 8) values (at most PEAK_VECTORS vectors): lane j
   of a run is always channel j mod channels. */
__attribute__((target("avx2,fma"))) static int peaks_avx2(const float *x, int64_t n,
                                                          int64_t channels, float *peaks)
{
    int64_t run = channels;
    while (run % 8)
        run += channels;
    const int64_t count = n * channels;
    if (run > 8 * PEAK_VECTORS)
        return peaks_plain(x, count, channels, 0, peaks);
    const int vectors = (int)(run / 8);
    __m256 most[PEAK_VECTORS];
    for (int v = 0; v < vectors; v++)
        most[v] = _mm256_setzero_ps();
    const __m256 sign = _mm256_set1_ps(-0.0f), largest = _mm256_set1_ps(3.402823466e38f);
    __m256 bad = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + run <= count; i += run)
        for (int v = 0; v < vectors; v++) {
            const __m256 a = _mm256_andnot_ps(sign, _mm256_loadu_ps(x + i + 8 * v));
            bad = _mm256_or_ps(bad, _mm256_cmp_ps(a, largest, _CMP_NLE_UQ));
            most[v] = _mm256_max_ps(most[v], a);
        }
    float lanes[8 * PEAK_VECTORS];
    for (int v = 0; v < vectors; v++)
        _mm256_storeu_ps(lanes + 8 * v, most[v]);
    for (int64_t j = 0; j < run; j++)
        peaks[j % channels] = lanes[j] > peaks[j % channels] ? lanes[j] : peaks[j % channels];
    const int finite = peaks_plain(x, count - i, channels, i, peaks);
    return finite && !_mm256_movemask_ps(bad);
}
#endif

static PyObject *encode(PyObject *self, PyObject *args)
{
    (void)self;
    PyObject *frames_object, *out_object, *peaks_object;
    int bits;
    if (!PyArg_ParseTuple(args, "OiOO", &frames_object, &bits, &out_object, &peaks_object))
        return NULL;
    if (bits != 16 && bits != 24) {
        PyErr_SetString(PyExc_ValueError, "encode: 16 or 24 bits");
        return NULL;
    }
    Py_buffer views[3];
    PyObject *objects[3] = {frames_object, out_object, peaks_object};
    int got = 0;
    PyObject *result = NULL;
    for (int j = 0; j < 3; j++) {
        const int flags = j == 0 ? PyBUF_C_CONTIGUOUS | PyBUF_FORMAT
                                 : PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | PyBUF_WRITABLE;
        if (PyObject_GetBuffer(objects[j], &views[j], flags) < 0)
            goto done;
        got |= 1 << j;
    }
    if (views[0].ndim != 2 || views[0].itemsize != 4 || strcmp(views[0].format, "f") != 0 ||
        views[2].itemsize != 4 || strcmp(views[2].format, "f") != 0 ||
        views[2].len != views[0].shape[1] * 4 ||
        views[1].len != views[0].len / 4 * (bits / 8)) {
        PyErr_SetString(PyExc_ValueError, "encode: frames float32 (n, C), out of n * C * "
                        "bits / 8 bytes and peaks float32 (C,) expected");
        goto done;
    }
    const float *x = views[0].buf;
    const int64_t n = views[0].shape[0], channels = views[0].shape[1];
    float *peaks = views[2].buf;
    uint8_t *out = views[1].buf;
    int64_t clipped = 0;
    int finite = 1;
    Py_BEGIN_ALLOW_THREADS
#ifdef HAVE_AVX2_PATH
    if (use_avx2)
        finite = peaks_avx2(x, n, channels, peaks);
    else
#endif
        finite = peaks_plain(x, n * channels, channels, 0, peaks);
    if (finite) {
#ifdef HAVE_AVX2_PATH
        if (use_avx2)
            clipped = encode_avx2(x, n * channels, bits, out);
        else
#endif
            clipped = encode_plain(x, n * channels, bits, out);
    }
    Py_END_ALLOW_THREADS
    result = PyLong_FromLongLong(finite ? clipped : -1);
done:
    for (int j = 0; j < 3; j++)
        if (got & (1 << j))
            PyBuffer_Release(&views[j]);
    return result;
}

static PyObject *vectorised(PyObject *self, PyObject *unused)
{
    (void)self;
    (void)unused;
    return PyBool_FromLong(use_avx2);
}

static PyMethodDef methods[] = {
    {"mix", mix, METH_VARARGS, "Decode and mix sub-blocks of one batch (see the module)."},
    {"decode", decode, METH_VARARGS, "Decode frames to float32 as the mix does."},
    {"tables", tables, METH_VARARGS, "The tables of one batch's segments (see the module)."},
    {"encode", encode, METH_VARARGS, "Float frames as 16- or 24-bit PCM bytes, with peaks."},
    {"vectorised", vectorised, METH_NOARGS, "Whether the AVX2 and FMA products are used."},
    {"use_vectors", use_vectors, METH_VARARGS,
     "Use the AVX2 path where the CPU has it, or not (for tests); returns whether it is."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_mixkernel",
    "The mixing kernel of renderer.engine on the CPU (see renderer/_mixkernel.c).", -1,
    methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__mixkernel(void)
{
    detect_vectors();
    return PyModule_Create(&module);
}
