/* The binaural renderer's hot loops in C: the filter updates
 * (renderer.binaural._FilterBank.place), the per-bin products of the convolution
 * (renderer.binaural._NumpyOps.matmul), its source rows (BinauralStage._sources) and the
 * windows' spectra (renderer.binaural._NumpyOps.spectra).
 *
 * place(v, hint, inverses, triangles, neighbours, delays, spectra, fft_size, n_coarse, fine,
 *       dest, rows, tri)
 *
 * The interpolated HRTF filter of each direction q (unit vector v[q]) written into row
 * rows[q] of the convolution's filters dest[rows[q], e, k], as _FilterBank.filters computes
 * it with numpy:
 * - the barycentric weights w = v[q] @ inverses[t] in the triangle t = hint[q], or, where one
 *   of them is below -1e-9, in the triangle reached by walking across the edge opposite the
 *   most negative weight (neighbours[t, j]: the triangle across the edge opposite vertex j,
 *   -1 for none) until all are at least -1e-9, or, where WALK_STEPS steps do not reach one,
 *   in the triangle whose smallest weight is largest (all searched);
 *   clipped at 0, divided by their sum; one-hot where the largest is within 1e-6 of 1 (at a
 *   measured direction); t goes to tri[q];
 * - the delay of each ear, d = sum_i w_i delays[triangles[t, i], e] (samples), as phase
 *   factors exp(-j 2 pi k d / fft_size) of the bins k = fine * c + f: the product of the
 *   factors of fine * c and of f, two tables each made by a recurrence in double from its
 *   step (its phase in turns reduced to [-1/2, 1/2], then its sine and cosine), then
 *   rounded to float;
 * - dest[rows[q], e, k] = (sum_i w_i spectra[triangles[t, i], e, k]) * factor(fine * c)
 *   * factor(f), for the bins k < B (dest's last axis).
 *
 * Shapes (C order): v float64 (Q, 3); hint, rows, tri int64 (Q,); inverses float64 (T, 3, 3);
 * triangles, neighbours int64 (T, 3); delays float64 (D, 2); spectra float32 (D, 2 * 2 * n_coarse * fine):
 * each ear's delay-free spectrum, re and im interleaved, zero past bin B; dest complex64
 * (R, 2, B), B <= n_coarse * fine: each filter is one contiguous row, written four bins at a
 * time with AVX2 and FMA.
 *
 * products(spectra, filters, out)
 *
 * out[k, e, b] = sum_r spectra[r, k, b] * filters[r, e, b]: every hop's output spectrum,
 * bin by bin, summed over the rows r (sources) of the convolution. complex64 arrays of
 * shapes (R, K, B), (R, 2, B) and (K, 2, B) (written), any strides on their first two axes,
 * their bins contiguous. The sums are taken CHUNK bins at a time over every row (they stay in
 * the cache); where the CPU has AVX2 and FMA, four bins of up to three hops at a time in
 * registers (use_vectors(False) turns this off, for the tests).
 *
 * rows(tracks, columns, gains, out)
 *
 * out[p, f] = tracks[f, columns[p]] * gains[p]: the source signals of the convolution, rows of
 * the decoded tracks' columns (float32 (n, T), any strides; columns int64 (P,); gains float32
 * (P,); out float32 (P, n), its frames contiguous). Tracks in C order (a frame's samples
 * together) are read FRAMES frames at a time; tracks laid out track by track (the transpose
 * of a C-order (T, n) array, as the decoding writes them for headphone outputs) a row at a
 * time.
 *
 * spectra(signals, hops, hop, twiddles, post, out)
 *
 * out[r, k, :] = the real FFT (unnormalised, bins 0 .. M) of signals[r, k hop : k hop + N],
 * N = 2 M, M a power of two: the overlap-save windows' spectra. Eight windows at a time, one
 * per lane of AVX2 vectors: their samples turned into lanes (8 x 8 transposes), z[m] =
 * x[2m] + i x[2m + 1] transformed by an M-point decimation-in-frequency FFT (radix-4 passes,
 * one radix-2 pass first where M is not a power of 4; large transforms split depth first so
 * that the parts fit in the cache), then X[k] = E[k] + exp(-2 pi i k / N) O[k] with E and O
 * the spectra of the even and odd samples, from Z[k] and Z[M - k], read in bit-reversed
 * order, and turned back into each window's bins. twiddles: exp(-2 pi i t / M), post:
 * exp(-2 pi i t / N), t < M, complex64; signals float32 (R, frames), frames contiguous;
 * out complex64 (R, hops, M + 1), its bins contiguous. Without AVX2 (or with use_vectors
 * off) it raises RuntimeError and the caller uses scipy's FFT.
 *
 * The interpreter's lock is released while they run.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#ifndef M_PI
#define M_PI 3.14159265358979323846
#endif

#include "_vectors.h"

/* ---- place ---- */

typedef struct {
    const double *v, *inverses, *delays;
    const int64_t *hint, *triangles, *neighbours, *rows;
    const float *spectra;
    int64_t *tri;
    float *dest;
    Py_ssize_t q_count, t_count, bins, n_coarse, fine;
    double fft_size;
} Place;

/* the barycentric weights of direction v in triangle t */
static void barycentric(const double *v, const double *inverse, double *w)
{
    for (int j = 0; j < 3; j++)
        w[j] = v[0] * inverse[j] + v[1] * inverse[3 + j] + v[2] * inverse[6 + j];
}

static double smallest(const double *w)
{
    return w[0] < w[1] ? (w[0] < w[2] ? w[0] : w[2]) : (w[1] < w[2] ? w[1] : w[2]);
}

#define WALK_STEPS 32 /* triangles walked through before all are searched */

/* weights (3), direction indices (3) and phase factors (2 ears x (n_coarse + fine) complex)
   of direction q */
static void direction_terms(const Place *p, Py_ssize_t q, float *weights, int64_t *index,
                            float *factors)
{
    const double *v = p->v + 3 * q;
    int64_t t = p->hint[q];
    double w[3];
    barycentric(v, p->inverses + 9 * t, w);
    /* walk from the hint across the edge of the most negative weight (a direction moves
       little from one update to the next), then, where that does not end in a triangle
       holding the direction, search them all */
    for (int step = 0; step < WALK_STEPS && smallest(w) < -1e-9; step++) {
        const int j = w[0] <= w[1] ? (w[0] <= w[2] ? 0 : 2) : (w[1] <= w[2] ? 1 : 2);
        const int64_t next = p->neighbours[3 * t + j];
        if (next < 0)
            break;
        t = next;
        barycentric(v, p->inverses + 9 * t, w);
    }
    if (smallest(w) < -1e-9) {
        double best = -INFINITY;
        for (Py_ssize_t u = 0; u < p->t_count; u++) {
            double trial[3];
            barycentric(v, p->inverses + 9 * u, trial);
            const double m = smallest(trial);
            if (m > best)
                best = m, t = u;
        }
        barycentric(v, p->inverses + 9 * t, w);
    }
    p->tri[q] = t;
    double total = 0.0, largest = 0.0;
    for (int j = 0; j < 3; j++) {
        w[j] = w[j] > 0.0 ? w[j] : 0.0;
        total += w[j];
    }
    total = total > 1e-12 ? total : 1e-12;
    for (int j = 0; j < 3; j++) {
        w[j] /= total;
        largest = w[j] > largest ? w[j] : largest;
    }
    if (largest >= 1.0 - 1e-6)
        for (int j = 0; j < 3; j++)
            w[j] = w[j] == largest ? 1.0 : 0.0;
    for (int j = 0; j < 3; j++) {
        index[j] = p->triangles[3 * t + j];
        weights[j] = (float)w[j];
    }
    /* the factors exp(-j 2 pi k d / N) of k = 0 .. fine - 1 and of k = fine * c, each
       table by a recurrence in double from one step taken with sin and cos in double */
    const Py_ssize_t n_factors = p->n_coarse + p->fine;
    for (int e = 0; e < 2; e++) {
        double delay = 0.0;
        for (int j = 0; j < 3; j++)
            delay += w[j] * p->delays[2 * index[j] + e];
        const double per_bin = -delay / p->fft_size; /* turns */
        float *factor = factors + 2 * e * n_factors;
        for (int table = 0; table < 2; table++) {
            double turns = per_bin * (double)(table == 0 ? p->fine : 1);
            turns -= rint(turns);
            const double step_re = cos(2.0 * M_PI * turns), step_im = sin(2.0 * M_PI * turns);
            double re = 1.0, im = 0.0;
            const Py_ssize_t count = table == 0 ? p->n_coarse : p->fine;
            float *out = table == 0 ? factor : factor + 2 * p->n_coarse;
            for (Py_ssize_t c = 0; c < count; c++) {
                out[2 * c] = (float)re;
                out[2 * c + 1] = (float)im;
                const double next = re * step_re - im * step_im;
                im = re * step_im + im * step_re;
                re = next;
            }
        }
    }
}

/* Bin k of one ear's filter into h[k]: the weights w (3) of the spectra a0, a1, a2, times the
   coarse and the fine phase factors (complex: re, im). */
static inline void filter_bin(const float *a0, const float *a1, const float *a2,
                              const float *w, const float *coarse, const float *fine,
                              Py_ssize_t k, float *h)
{
    float re = w[0] * a0[2 * k];
    float im = w[0] * a0[2 * k + 1];
    re += w[1] * a1[2 * k];
    im += w[1] * a1[2 * k + 1];
    re += w[2] * a2[2 * k];
    im += w[2] * a2[2 * k + 1];
    const float r1 = re * coarse[0] - im * coarse[1], i1 = re * coarse[1] + im * coarse[0];
    h[2 * k] = r1 * fine[0] - i1 * fine[1];
    h[2 * k + 1] = r1 * fine[1] + i1 * fine[0];
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define HAVE_AVX2_PATH 1
#include <immintrin.h>

/* complex products of four bins at once: x * y, re and im interleaved */
__attribute__((target("avx2,fma"))) static inline __m256 complex_times(__m256 x, __m256 y)
{
    const __m256 swapped = _mm256_permute_ps(x, 0xB1); /* (im, re) */
    return _mm256_fmaddsub_ps(x, _mm256_moveldup_ps(y),
                              _mm256_mul_ps(swapped, _mm256_movehdup_ps(y)));
}

/* filter_bin of bins [k0, k1) four at a time, as far as whole vectors go; returns the bin
   reached */
__attribute__((target("avx2,fma"))) static Py_ssize_t filter_bins_avx2(
    const float *a0, const float *a1, const float *a2, const float *w, const float *coarse,
    const float *fine, Py_ssize_t k0, Py_ssize_t k1, float *h)
{
    const __m256 w0 = _mm256_set1_ps(w[0]), w1 = _mm256_set1_ps(w[1]);
    const __m256 w2 = _mm256_set1_ps(w[2]);
    const __m256 factor = _mm256_castpd_ps(_mm256_broadcast_sd((const double *)coarse));
    Py_ssize_t k = k0;
    for (; k + 4 <= k1; k += 4) {
        __m256 sum = _mm256_mul_ps(w0, _mm256_loadu_ps(a0 + 2 * k));
        sum = _mm256_fmadd_ps(w1, _mm256_loadu_ps(a1 + 2 * k), sum);
        sum = _mm256_fmadd_ps(w2, _mm256_loadu_ps(a2 + 2 * k), sum);
        _mm256_storeu_ps(h + 2 * k, complex_times(complex_times(sum, factor),
                                                  _mm256_loadu_ps(fine + 2 * (k - k0))));
    }
    return k;
}
#endif

/* The filters of the directions: row rows[q] of dest (R, 2, B), one ear after the other, in
   runs of `fine` bins (one coarse phase factor each); with AVX2 (`vectors`), four bins at a
   time. */
static void place_filters(const Place *p, const float *weights, const int64_t *index,
                          const float *factors, int vectors)
{
    (void)vectors;
    const Py_ssize_t row = p->n_coarse * p->fine; /* complex values of one ear's spectrum */
    const Py_ssize_t n_factors = p->n_coarse + p->fine;
    for (Py_ssize_t q = 0; q < p->q_count; q++) {
        const float *w = weights + 3 * q;
        for (int e = 0; e < 2; e++) {
            const float *a0 = p->spectra + 2 * (index[3 * q] * 2 + e) * row;
            const float *a1 = p->spectra + 2 * (index[3 * q + 1] * 2 + e) * row;
            const float *a2 = p->spectra + 2 * (index[3 * q + 2] * 2 + e) * row;
            const float *coarse = factors + 2 * (q * 2 + e) * n_factors;
            const float *fine_factor = coarse + 2 * p->n_coarse;
            float *h = p->dest + 2 * (p->rows[q] * 2 + e) * p->bins;
            for (Py_ssize_t c = 0; c < p->n_coarse; c++) {
                const Py_ssize_t k0 = c * p->fine;
                const Py_ssize_t k1 = k0 + p->fine < p->bins ? k0 + p->fine : p->bins;
                Py_ssize_t k = k0;
#ifdef HAVE_AVX2_PATH
                if (vectors)
                    k = filter_bins_avx2(a0, a1, a2, w, coarse + 2 * c, fine_factor, k0, k1,
                                         h);
#endif
                for (; k < k1; k++)
                    filter_bin(a0, a1, a2, w, coarse + 2 * c, fine_factor + 2 * (k - k0), k, h);
            }
        }
    }
}

static PyObject *place(PyObject *self, PyObject *args)
{
    (void)self;
    enum { V, HINT, INVERSES, TRIANGLES, NEIGHBOURS, DELAYS, SPECTRA, DEST, ROWS, TRI,
           N_ARRAYS };
    PyObject *objects[N_ARRAYS];
    double fft_size;
    Py_ssize_t n_coarse, fine;
    if (!PyArg_ParseTuple(args, "OOOOOOOdnnOOO", &objects[V], &objects[HINT],
                          &objects[INVERSES], &objects[TRIANGLES], &objects[NEIGHBOURS],
                          &objects[DELAYS],
                          &objects[SPECTRA], &fft_size, &n_coarse, &fine, &objects[DEST],
                          &objects[ROWS], &objects[TRI]))
        return NULL;
    /* item size and, for dest, the shape's checks below; C-contiguous buffers throughout */
    static const Py_ssize_t item[N_ARRAYS] = {8, 8, 8, 8, 8, 8, 4, 8, 8, 8};
    Py_buffer views[N_ARRAYS];
    int got = 0;
    PyObject *result = NULL;
    float *scratch = NULL;
    for (int j = 0; j < N_ARRAYS; j++) {
        const int flags = PyBUF_C_CONTIGUOUS | PyBUF_FORMAT |
                          (j == DEST || j == TRI ? PyBUF_WRITABLE : 0);
        if (PyObject_GetBuffer(objects[j], &views[j], flags) < 0)
            goto done;
        got |= 1 << j;
        if (views[j].itemsize != item[j]) {
            PyErr_SetString(PyExc_ValueError, "place: an array of the wrong type");
            goto done;
        }
    }
    const Py_ssize_t q_count = views[V].len / 24;
    const Py_ssize_t t_count = views[INVERSES].len / 72;
    const Py_ssize_t d_count = views[DELAYS].len / 16;
    const Py_ssize_t row = n_coarse * fine;
    if (fine < 1 || n_coarse < 1 || views[DEST].ndim != 3 || views[DEST].shape[1] != 2 ||
        views[DEST].shape[2] > row || views[HINT].len != q_count * 8 ||
        views[ROWS].len != q_count * 8 || views[TRI].len != q_count * 8 ||
        views[TRIANGLES].len != t_count * 24 || views[NEIGHBOURS].len != t_count * 24 ||
        views[SPECTRA].len != d_count * 2 * 2 * row * 4 || !(fft_size > 0)) {
        PyErr_SetString(PyExc_ValueError, "place: sizes");
        goto done;
    }
    const Py_ssize_t r_count = views[DEST].shape[0];
    const int64_t *hint = views[HINT].buf, *triangles = views[TRIANGLES].buf;
    const int64_t *rows = views[ROWS].buf;
    for (Py_ssize_t q = 0; q < q_count; q++) {
        if (hint[q] < 0 || hint[q] >= t_count || rows[q] < 0 || rows[q] >= r_count) {
            PyErr_SetString(PyExc_ValueError, "place: a triangle or row out of range");
            goto done;
        }
    }
    const int64_t *neighbours = views[NEIGHBOURS].buf;
    for (Py_ssize_t i = 0; i < t_count * 3; i++) {
        if (triangles[i] < 0 || triangles[i] >= d_count) {
            PyErr_SetString(PyExc_ValueError, "place: a direction index out of range");
            goto done;
        }
        if (neighbours[i] < -1 || neighbours[i] >= t_count) {
            PyErr_SetString(PyExc_ValueError, "place: a neighbour out of range");
            goto done;
        }
    }
    const Py_ssize_t n_factors = n_coarse + fine;
    scratch = malloc(sizeof(float) * (size_t)(q_count * (3 + 6 + 4 * n_factors)) + 1);
    if (scratch == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    Place p = {
        .v = views[V].buf, .inverses = views[INVERSES].buf, .delays = views[DELAYS].buf,
        .hint = hint, .triangles = triangles, .neighbours = neighbours, .rows = rows,
        .spectra = views[SPECTRA].buf,
        .tri = views[TRI].buf, .dest = views[DEST].buf, .q_count = q_count,
        .t_count = t_count, .bins = views[DEST].shape[2],
        .n_coarse = n_coarse, .fine = fine, .fft_size = fft_size,
    };
    int64_t *index = (int64_t *)scratch; /* 3 per direction, 6 floats' room */
    float *weights = scratch + 6 * q_count;
    float *factors = scratch + 9 * q_count;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t q = 0; q < q_count; q++)
        direction_terms(&p, q, weights + 3 * q, index + 3 * q, factors + 4 * q * n_factors);
    place_filters(&p, weights, index, factors, use_avx2);
    Py_END_ALLOW_THREADS
    result = Py_None;
    Py_INCREF(result);
done:
    free(scratch);
    for (int j = 0; j < N_ARRAYS; j++)
        if (got & (1 << j))
            PyBuffer_Release(&views[j]);
    return result;
}

/* ---- products ---- */

typedef struct {
    const float *x, *h; /* spectra, filters: re, im interleaved */
    float *out;
    Py_ssize_t rows, hops, bins;
    Py_ssize_t x_row, x_hop, h_row, h_ear, out_hop, out_ear; /* strides, in floats */
} Products;

#define CHUNK 64 /* bins summed over every row at a time: the sums stay in the cache */

static void products_plain(const Products *p)
{
    for (Py_ssize_t k = 0; k < p->hops; k++)
        for (int e = 0; e < 2; e++)
            memset(p->out + k * p->out_hop + e * p->out_ear, 0, sizeof(float) * 2 * p->bins);
    for (Py_ssize_t b0 = 0; b0 < p->bins; b0 += CHUNK) {
        const Py_ssize_t b1 = b0 + CHUNK < p->bins ? b0 + CHUNK : p->bins;
        for (Py_ssize_t r = 0; r < p->rows; r++) {
            for (Py_ssize_t k = 0; k < p->hops; k++) {
                const float *x = p->x + r * p->x_row + k * p->x_hop;
                for (int e = 0; e < 2; e++) {
                    const float *h = p->h + r * p->h_row + e * p->h_ear;
                    float *o = p->out + k * p->out_hop + e * p->out_ear;
                    for (Py_ssize_t b = b0; b < b1; b++) {
                        const float xr = x[2 * b], xi = x[2 * b + 1];
                        const float hr = h[2 * b], hi = h[2 * b + 1];
                        o[2 * b] += xr * hr - xi * hi;
                        o[2 * b + 1] += xr * hi + xi * hr;
                    }
                }
            }
        }
    }
}

#ifdef HAVE_AVX2_PATH
/* Hops [k0, k0 + hops) of products_plain, four bins at a time summed over every row in
   registers (hops at most 3: with both ears, six sums); each filter's re and im spread once
   for the hops. Inlined with hops constant. */
__attribute__((target("avx2,fma"), always_inline)) static inline void products_hops_avx2(
    const Products *p, Py_ssize_t k0, const int hops, Py_ssize_t whole)
{
    for (Py_ssize_t b = 0; b < whole; b += 4) {
        __m256 sums[3][2];
        for (int k = 0; k < hops; k++)
            sums[k][0] = sums[k][1] = _mm256_setzero_ps();
        const float *x = p->x + k0 * p->x_hop + 2 * b;
        const float *h = p->h + 2 * b;
        for (Py_ssize_t r = 0; r < p->rows; r++) {
            const __m256 left = _mm256_loadu_ps(h + r * p->h_row);
            const __m256 right = _mm256_loadu_ps(h + r * p->h_row + p->h_ear);
            const __m256 left_re = _mm256_moveldup_ps(left);
            const __m256 left_im = _mm256_movehdup_ps(left);
            const __m256 right_re = _mm256_moveldup_ps(right);
            const __m256 right_im = _mm256_movehdup_ps(right);
            for (int k = 0; k < hops; k++) {
                const __m256 v = _mm256_loadu_ps(x + r * p->x_row + k * p->x_hop);
                const __m256 swapped = _mm256_permute_ps(v, 0xB1); /* (im, re) */
                /* re = re x re h - im x im h, im = im x re h + re x im h */
                sums[k][0] = _mm256_add_ps(sums[k][0], _mm256_fmaddsub_ps(
                    v, left_re, _mm256_mul_ps(swapped, left_im)));
                sums[k][1] = _mm256_add_ps(sums[k][1], _mm256_fmaddsub_ps(
                    v, right_re, _mm256_mul_ps(swapped, right_im)));
            }
        }
        for (int k = 0; k < hops; k++) {
            float *o = p->out + (k0 + k) * p->out_hop + 2 * b;
            _mm256_storeu_ps(o, sums[k][0]);
            _mm256_storeu_ps(o + p->out_ear, sums[k][1]);
        }
    }
}

/* products_plain with AVX2: the whole vectors of bins by products_hops_avx2, three hops at a
   time, the last bins one by one */
__attribute__((target("avx2,fma"))) static void products_avx2(const Products *p)
{
    const Py_ssize_t whole = p->bins & ~(Py_ssize_t)3;
    for (Py_ssize_t k0 = 0; k0 < p->hops; k0 += 3) {
        const Py_ssize_t left = p->hops - k0;
        if (left >= 3)
            products_hops_avx2(p, k0, 3, whole);
        else if (left == 2)
            products_hops_avx2(p, k0, 2, whole);
        else
            products_hops_avx2(p, k0, 1, whole);
    }
    for (Py_ssize_t k = 0; k < p->hops; k++)
        for (int e = 0; e < 2; e++) {
            float *o = p->out + k * p->out_hop + e * p->out_ear;
            for (Py_ssize_t b = whole; b < p->bins; b++)
                o[2 * b] = o[2 * b + 1] = 0.0f;
            for (Py_ssize_t r = 0; r < p->rows; r++) {
                const float *x = p->x + r * p->x_row + k * p->x_hop;
                const float *h = p->h + r * p->h_row + e * p->h_ear;
                for (Py_ssize_t b = whole; b < p->bins; b++) {
                    o[2 * b] += x[2 * b] * h[2 * b] - x[2 * b + 1] * h[2 * b + 1];
                    o[2 * b + 1] += x[2 * b] * h[2 * b + 1] + x[2 * b + 1] * h[2 * b];
                }
            }
        }
}
#endif

/* A complex64 array of three axes: its shape and strides (in floats) into `shape` and
 * `strides`; the last axis contiguous (and, with `pair`, the middle one of two values). */
static int complex_axes(Py_buffer *view, const char *name, Py_ssize_t *shape,
                        Py_ssize_t *strides)
{
    if (view->ndim != 3 || view->itemsize != 8 || view->format == NULL ||
        strcmp(view->format, "Zf") != 0) {
        PyErr_Format(PyExc_ValueError, "products: %s must be a complex64 array of 3 axes",
                     name);
        return -1;
    }
    for (int j = 0; j < 3; j++) {
        if (view->strides[j] % 4 != 0) {
            PyErr_Format(PyExc_ValueError, "products: %s is not aligned", name);
            return -1;
        }
        shape[j] = view->shape[j];
        strides[j] = view->strides[j] / 4;
    }
    if (strides[2] != 2) {
        PyErr_Format(PyExc_ValueError, "products: the last axis of %s must be contiguous",
                     name);
        return -1;
    }
    return 0;
}

static PyObject *products(PyObject *self, PyObject *args)
{
    (void)self;
    PyObject *objects[3];
    if (!PyArg_ParseTuple(args, "OOO", &objects[0], &objects[1], &objects[2]))
        return NULL;
    static const char *names[3] = {"spectra", "filters", "out"};
    Py_buffer views[3];
    Py_ssize_t shape[3][3], strides[3][3];
    int got = 0;
    PyObject *result = NULL;
    for (int j = 0; j < 3; j++) {
        const int flags = PyBUF_STRIDES | PyBUF_FORMAT | (j == 2 ? PyBUF_WRITABLE : 0);
        if (PyObject_GetBuffer(objects[j], &views[j], flags) < 0)
            goto done;
        got |= 1 << j;
        if (complex_axes(&views[j], names[j], shape[j], strides[j]) < 0)
            goto done;
    }
    if (shape[1][0] != shape[0][0] || shape[1][1] != 2 || shape[1][2] != shape[0][2] ||
        shape[2][0] != shape[0][1] || shape[2][1] != 2 || shape[2][2] != shape[0][2]) {
        PyErr_SetString(PyExc_ValueError, "products: shapes (R, K, B), (R, 2, B) and "
                        "(K, 2, B) expected");
        goto done;
    }
    Products p = {
        .x = views[0].buf, .h = views[1].buf, .out = views[2].buf,
        .rows = shape[0][0], .hops = shape[0][1], .bins = shape[0][2],
        .x_row = strides[0][0], .x_hop = strides[0][1], .h_row = strides[1][0],
        .h_ear = strides[1][1], .out_hop = strides[2][0], .out_ear = strides[2][1],
    };
    Py_BEGIN_ALLOW_THREADS
#ifdef HAVE_AVX2_PATH
    if (use_avx2)
        products_avx2(&p);
    else
#endif
        products_plain(&p);
    Py_END_ALLOW_THREADS
    result = Py_None;
    Py_INCREF(result);
done:
    for (int j = 0; j < 3; j++)
        if (got & (1 << j))
            PyBuffer_Release(&views[j]);
    return result;
}


/* ---- rows ---- */

#define FRAMES 64 /* frames of the tracks read together (they stay in the cache) */

/* rows(tracks, columns, gains, out): out[p, f] = tracks[f, columns[p]] * gains[p] */
static PyObject *rows(PyObject *self, PyObject *args)
{
    (void)self;
    PyObject *objects[4];
    if (!PyArg_ParseTuple(args, "OOOO", &objects[0], &objects[1], &objects[2], &objects[3]))
        return NULL;
    Py_buffer views[4];
    int got = 0;
    PyObject *result = NULL;
    for (int j = 0; j < 4; j++) {
        const int flags = j == 3   ? PyBUF_STRIDES | PyBUF_FORMAT | PyBUF_WRITABLE
                          : j == 0 ? PyBUF_STRIDES | PyBUF_FORMAT
                                   : PyBUF_C_CONTIGUOUS | PyBUF_FORMAT;
        if (PyObject_GetBuffer(objects[j], &views[j], flags) < 0)
            goto done;
        got |= 1 << j;
    }
    for (int j = 0; j < 4; j++) {
        const char *format = views[j].format;
        if (format != NULL && (format[0] == '<' || format[0] == '=' || format[0] == '@'))
            format++;
        const int as_wanted = format != NULL && format[0] != '\0' && format[1] == '\0' &&
                              (j == 1 ? (format[0] == 'l' || format[0] == 'q') &&
                                            views[j].itemsize == 8
                                      : format[0] == 'f');
        if (!as_wanted || views[j].ndim != (j == 0 || j == 3 ? 2 : 1)) {
            PyErr_SetString(PyExc_ValueError, "rows: tracks float32 (n, T), columns int64 "
                            "(P,), gains float32 (P,), out float32 (P, n) expected");
            goto done;
        }
    }
    const Py_ssize_t n = views[0].shape[0], t_count = views[0].shape[1];
    const Py_ssize_t p_count = views[1].shape[0];
    if (views[2].shape[0] != p_count || views[3].shape[0] != p_count ||
        views[3].shape[1] != n || views[3].strides[1] != 4 || views[3].strides[0] % 4 ||
        views[0].strides[0] % 4 || views[0].strides[1] % 4) {
        PyErr_SetString(PyExc_ValueError, "rows: sizes");
        goto done;
    }
    const int64_t *columns = views[1].buf;
    for (Py_ssize_t p = 0; p < p_count; p++) {
        if (columns[p] < 0 || columns[p] >= t_count) {
            PyErr_SetString(PyExc_ValueError, "rows: a column out of range");
            goto done;
        }
    }
    const float *tracks = views[0].buf, *gains = views[2].buf;
    float *out = views[3].buf;
    const Py_ssize_t out_row = views[3].strides[0] / 4;
    /* strides of the tracks, in floats: from one frame to the next, one track to the next */
    const Py_ssize_t frame = views[0].strides[0] / 4, track = views[0].strides[1] / 4;
    Py_BEGIN_ALLOW_THREADS
    if (frame == 1) { /* track by track: each row is read in one contiguous run */
        for (Py_ssize_t p = 0; p < p_count; p++) {
            const float *x = tracks + columns[p] * track;
            const float g = gains[p];
            float *o = out + p * out_row;
            for (Py_ssize_t f = 0; f < n; f++)
                o[f] = x[f] * g;
        }
    } else {
        for (Py_ssize_t f0 = 0; f0 < n; f0 += FRAMES) {
            const Py_ssize_t f1 = f0 + FRAMES < n ? f0 + FRAMES : n;
            for (Py_ssize_t p = 0; p < p_count; p++) {
                const float *x = tracks + columns[p] * track;
                const float g = gains[p];
                float *o = out + p * out_row;
                for (Py_ssize_t f = f0; f < f1; f++)
                    o[f] = x[f * frame] * g;
            }
        }
    }
    Py_END_ALLOW_THREADS
    result = Py_None;
    Py_INCREF(result);
done:
    for (int j = 0; j < 4; j++)
        if (got & (1 << j))
            PyBuffer_Release(&views[j]);
    return result;
}

/* ---- spectra ---- */

#ifdef HAVE_AVX2_PATH
typedef float v8f __attribute__((vector_size(32)));

#define DIF_BASE 256 /* sub-transforms up to this size done pass by pass (in the cache) */

/* x * (wr + i wi) of eight lanes */
#define TIMES_RE(xr, xi, wr, wi) ((xr) * (wr) - (xi) * (wi))
#define TIMES_IM(xr, xi, wr, wi) ((xr) * (wi) + (xi) * (wr))

/* One radix-4 decimation-in-frequency pass (two radix-2 passes fused) over the blocks of
   `span` points of re, im [0, len): for j < q = span / 4, with x0..x3 the points j + k q,
   A = x0 - x2 and B = -i (x1 - x3):
     x0 + x2 + x1 + x3,  (x0 + x2 - x1 - x3) w^2j,  (A + B) w^j,  (A - B) w^3j
   (w^t = exp(-2 pi i t / span), the table's entry t * step), which leaves each block's
   points in the order of two radix-2 passes (bit-reversed over the whole transform). */
__attribute__((target("avx2,fma"))) static void radix4_pass(v8f *re, v8f *im, Py_ssize_t len,
                                                             Py_ssize_t span, Py_ssize_t step,
                                                             const float *twr,
                                                             const float *twi)
{
    const Py_ssize_t q = span / 4;
    for (Py_ssize_t start = 0; start < len; start += span) {
        v8f *r = re + start, *i = im + start;
        for (Py_ssize_t j = 0; j < q; j++) {
            const v8f x0r = r[j], x0i = i[j], x1r = r[j + q], x1i = i[j + q];
            const v8f x2r = r[j + 2 * q], x2i = i[j + 2 * q];
            const v8f x3r = r[j + 3 * q], x3i = i[j + 3 * q];
            const v8f sr = x0r + x2r, si = x0i + x2i, tr = x1r + x3r, ti = x1i + x3i;
            const v8f ar = x0r - x2r, ai = x0i - x2i;
            const v8f br = x1i - x3i, bi = x3r - x1r; /* -i (x1 - x3) */
            r[j] = sr + tr;
            i[j] = si + ti;
            const Py_ssize_t t = j * step;
            const v8f dr = sr - tr, di = si - ti;
            r[j + q] = TIMES_RE(dr, di, twr[2 * t], twi[2 * t]);
            i[j + q] = TIMES_IM(dr, di, twr[2 * t], twi[2 * t]);
            const v8f pr = ar + br, pi = ai + bi, mr = ar - br, mi = ai - bi;
            r[j + 2 * q] = TIMES_RE(pr, pi, twr[t], twi[t]);
            i[j + 2 * q] = TIMES_IM(pr, pi, twr[t], twi[t]);
            r[j + 3 * q] = TIMES_RE(mr, mi, twr[3 * t], twi[3 * t]);
            i[j + 3 * q] = TIMES_IM(mr, mi, twr[3 * t], twi[3 * t]);
        }
    }
}

/* The last radix-4 pass (blocks of four points: every twiddle is 1) */
__attribute__((target("avx2,fma"))) static void radix4_last(v8f *re, v8f *im, Py_ssize_t len)
{
    for (Py_ssize_t start = 0; start < len; start += 4) {
        v8f *r = re + start, *i = im + start;
        const v8f sr = r[0] + r[2], si = i[0] + i[2], tr = r[1] + r[3], ti = i[1] + i[3];
        const v8f ar = r[0] - r[2], ai = i[0] - i[2], br = i[1] - i[3], bi = r[3] - r[1];
        r[0] = sr + tr;
        i[0] = si + ti;
        r[1] = sr - tr;
        i[1] = si - ti;
        r[2] = ar + br;
        i[2] = ai + bi;
        r[3] = ar - br;
        i[3] = ai - bi;
    }
}

/* The FFT of `len` (a power of 4) complex points in place, result in bit-reversed order:
   radix-4 passes; above DIF_BASE points, one pass and then each quarter depth first (it
   fits in the cache). Twiddles of this size: the table's entries t * step, t < len. */
__attribute__((target("avx2,fma"))) static void dif4(v8f *re, v8f *im, Py_ssize_t len,
                                                     Py_ssize_t step, const float *twr,
                                                     const float *twi)
{
    if (len > DIF_BASE) {
        radix4_pass(re, im, len, len, step, twr, twi);
        for (int k = 0; k < 4; k++)
            dif4(re + k * (len / 4), im + k * (len / 4), len / 4, 4 * step, twr, twi);
        return;
    }
    for (Py_ssize_t span = len; span > 4; span /= 4)
        radix4_pass(re, im, len, span, step * (len / span), twr, twi);
    radix4_last(re, im, len);
}

/* The radix-2 decimation-in-frequency FFT of `len` (a power of two, at least 4) complex
   points (re, im: eight transforms side by side, one per lane), in place, leaving the result
   in bit-reversed order; twiddles exp(-2 pi i t / len) in twr, twi (t < len). Where len is
   not a power of 4, one radix-2 pass first, then radix-4 on each half. */
__attribute__((target("avx2,fma"))) static void dif(v8f *re, v8f *im, Py_ssize_t len,
                                                     const float *twr, const float *twi)
{
    int log2 = 0;
    while (((Py_ssize_t)1 << log2) < len)
        log2++;
    if (log2 % 2 == 0) {
        dif4(re, im, len, 1, twr, twi);
        return;
    }
    const Py_ssize_t half = len / 2;
    for (Py_ssize_t j = 0; j < half; j++) {
        const v8f ar = re[j], ai = im[j], br = re[j + half], bi = im[j + half];
        re[j] = ar + br;
        im[j] = ai + bi;
        const v8f dr = ar - br, di = ai - bi;
        re[j + half] = TIMES_RE(dr, di, twr[j], twi[j]);
        im[j + half] = TIMES_IM(dr, di, twr[j], twi[j]);
    }
    dif4(re, im, half, 2, twr, twi);
    dif4(re + half, im + half, half, 2, twr, twi);
}

typedef struct {
    const float *signals;
    Py_ssize_t rows, row_stride, hops, hop, n_fft;
    const float *twr, *twi, *pr, *pi; /* exp(-2 pi i t / M) and exp(-2 pi i t / N), t < M */
    const int32_t *reversed;          /* bit-reversed order of 0 .. M - 1 */
    float *out;
    Py_ssize_t out_row, out_hop; /* in floats */
} Spectra;

/* The spectra of windows [w0, w0 + count) (count <= 8; window w: row w / hops, hop w % hops)
   through the work arrays re, im (M vectors each). */
__attribute__((target("avx2,fma"))) static void spectra_lanes(const Spectra *s, Py_ssize_t w0,
                                                               int count, v8f *re, v8f *im)
{
    const Py_ssize_t m_count = s->n_fft / 2;
    const float *window[8];
    float *dest[8];
    for (int l = 0; l < 8; l++) {
        const Py_ssize_t w = w0 + (l < count ? l : 0); /* spare lanes repeat a window */
        const Py_ssize_t row = w / s->hops, k = w % s->hops;
        window[l] = s->signals + row * s->row_stride + k * s->hop;
        dest[l] = s->out + row * s->out_row + k * s->out_hop;
    }
    /* z[m] = x[2m] + i x[2m + 1]: eight samples of each window, turned into lanes */
    for (Py_ssize_t m0 = 0; m0 < m_count; m0 += 4) {
        __m256 v[8];
        for (int l = 0; l < 8; l++)
            v[l] = _mm256_loadu_ps(window[l] + 2 * m0);
        transpose8(v);
        for (int j = 0; j < 4; j++) {
            re[m0 + j] = (v8f)v[2 * j];
            im[m0 + j] = (v8f)v[2 * j + 1];
        }
    }
    dif(re, im, m_count, s->twr, s->twi);
    /* X[k] = E[k] + exp(-2 pi i k / N) O[k], E and O from Z[k] and Z[M - k] (bit-reversed
       places), four bins of every lane turned back into each window's bins */
    const int32_t *rev = s->reversed;
    for (Py_ssize_t k0 = 0; k0 < m_count; k0 += 4) {
        __m256 v[8];
        for (int j = 0; j < 4; j++) {
            const Py_ssize_t k = k0 + j, mirror = k == 0 ? 0 : m_count - k;
            const v8f ar = re[rev[k]], ai = im[rev[k]];
            const v8f br = re[rev[mirror]], bi = im[rev[mirror]];
            const v8f er = (ar + br) * 0.5f, ei = (ai - bi) * 0.5f;
            const v8f or = (ai + bi) * 0.5f, oi = (br - ar) * 0.5f;
            const float c = s->pr[k], d = s->pi[k];
            v[2 * j] = (__m256)(er + or * c - oi * d);
            v[2 * j + 1] = (__m256)(ei + oi * c + or * d);
        }
        transpose8(v);
        for (int l = 0; l < count; l++)
            _mm256_storeu_ps(dest[l] + 2 * k0, v[l]);
    }
    /* X[M] = Re Z[0] - Im Z[0] */
    const v8f last = re[0] - im[0];
    for (int l = 0; l < count; l++) {
        dest[l][2 * m_count] = last[l];
        dest[l][2 * m_count + 1] = 0.0f;
    }
}
#endif

/* spectra(signals, hops, hop, twiddles, post, out) */
static PyObject *spectra(PyObject *self, PyObject *args)
{
    (void)self;
    PyObject *objects[4];
    Py_ssize_t hops, hop;
    if (!PyArg_ParseTuple(args, "OnnOOO", &objects[0], &hops, &hop, &objects[1], &objects[2],
                          &objects[3]))
        return NULL;
    Py_buffer views[4];
    int got = 0;
    PyObject *result = NULL;
    void *work = NULL;
    for (int j = 0; j < 4; j++) {
        const int flags = PyBUF_STRIDES | PyBUF_FORMAT | (j == 3 ? PyBUF_WRITABLE : 0);
        if (PyObject_GetBuffer(objects[j], &views[j], flags) < 0)
            goto done;
        got |= 1 << j;
    }
#ifdef HAVE_AVX2_PATH
    if (!use_avx2) {
        PyErr_SetString(PyExc_RuntimeError, "spectra: needs AVX2 and FMA");
        goto done;
    }
    const Py_buffer *x = &views[0], *tw = &views[1], *post = &views[2], *o = &views[3];
    const Py_ssize_t m_count = tw->ndim == 1 ? tw->shape[0] : 0;
    const Py_ssize_t n_fft = 2 * m_count;
    int power = m_count >= 8;
    for (Py_ssize_t m = m_count; m > 1; m /= 2)
        power &= m % 2 == 0;
    if (x->ndim != 2 || x->itemsize != 4 || x->strides[1] != 4 || x->strides[0] % 4 ||
        tw->itemsize != 8 || tw->strides[0] != 8 || post->ndim != 1 ||
        post->itemsize != 8 || post->strides[0] != 8 || post->shape[0] != m_count ||
        o->ndim != 3 || o->itemsize != 8 || o->strides[2] != 8 || o->strides[0] % 4 ||
        o->strides[1] % 4 || !power || hops < 1 || hop < 1) {
        PyErr_SetString(PyExc_ValueError, "spectra: signals float32 (R, frames), twiddles and "
                        "post complex64 (M,) with M a power of two, out complex64 "
                        "(R, hops, M + 1) expected");
        goto done;
    }
    if (o->shape[0] != x->shape[0] || o->shape[1] != hops || o->shape[2] != m_count + 1 ||
        x->shape[1] < (hops - 1) * hop + n_fft) {
        PyErr_SetString(PyExc_ValueError, "spectra: sizes");
        goto done;
    }
    /* twiddles split into re and im, the bit-reversed order, the work arrays */
    const size_t floats = (size_t)(4 * m_count + 16 * m_count + 8);
    work = malloc(sizeof(float) * floats + sizeof(int32_t) * (size_t)m_count);
    if (work == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    float *split = work;
    v8f *lanes = (v8f *)(((uintptr_t)(split + 4 * m_count) + 31) & ~(uintptr_t)31);
    int32_t *reversed = (int32_t *)(split + floats);
    const float *twc = tw->buf, *pc = post->buf;
    for (Py_ssize_t t = 0; t < m_count; t++) {
        split[t] = twc[2 * t];
        split[m_count + t] = twc[2 * t + 1];
        split[2 * m_count + t] = pc[2 * t];
        split[3 * m_count + t] = pc[2 * t + 1];
    }
    int bits = 0;
    while (((Py_ssize_t)1 << bits) < m_count)
        bits++;
    for (Py_ssize_t t = 0; t < m_count; t++) {
        int32_t r = 0;
        for (int b = 0; b < bits; b++)
            r |= (int32_t)((t >> b) & 1) << (bits - 1 - b);
        reversed[t] = r;
    }
    Spectra sp = {
        .signals = x->buf, .rows = x->shape[0], .row_stride = x->strides[0] / 4,
        .hops = hops, .hop = hop, .n_fft = n_fft,
        .twr = split, .twi = split + m_count,
        .pr = split + 2 * m_count, .pi = split + 3 * m_count, .reversed = reversed,
        .out = o->buf, .out_row = o->strides[0] / 4, .out_hop = o->strides[1] / 4,
    };
    const Py_ssize_t windows = sp.rows * hops;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t w0 = 0; w0 < windows; w0 += 8)
        spectra_lanes(&sp, w0, windows - w0 < 8 ? (int)(windows - w0) : 8, lanes,
                      lanes + m_count);
    Py_END_ALLOW_THREADS
    result = Py_None;
    Py_INCREF(result);
#else
    PyErr_SetString(PyExc_RuntimeError, "spectra: needs AVX2 and FMA");
#endif
done:
    free(work);
    for (int j = 0; j < 4; j++)
        if (got & (1 << j))
            PyBuffer_Release(&views[j]);
    return result;
}

static PyMethodDef methods[] = {
    {"place", place, METH_VARARGS, "Interpolated HRTF filters into rows (see the module)."},
    {"products", products, METH_VARARGS, "Per-bin products summed over rows (see the module)."},
    {"rows", rows, METH_VARARGS, "Columns of the tracks, scaled, as rows (see the module)."},
    {"spectra", spectra, METH_VARARGS,
     "Real FFTs of overlap-save windows, eight at a time (see the module)."},
    {"use_vectors", use_vectors, METH_VARARGS,
     "Use the AVX2 products where the CPU has them (True) or plain loops (False); returns "
     "whether the vectors are used."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_binaural",
    "The binaural renderer's filter updates, convolution products and source rows (see "
    "renderer/_binaural.c).", -1,
    methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__binaural(void)
{
    detect_vectors();
    return PyModule_Create(&module);
}
