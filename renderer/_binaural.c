/* The binaural renderer's hot loops in C: the filter updates
 * (renderer.binaural._FilterBank.place) and the per-bin products of the convolution
 * (renderer.binaural._NumpyOps.matmul).
 *
 * place(v, hint, inverses, triangles, delays, spectra, fft_size, n_coarse, fine, dest, rows,
 *       tri)
 *
 * The interpolated HRTF filter of each direction q (unit vector v[q]) written into row
 * rows[q] of the convolution's filters dest[k, rows[q], e], as _FilterBank.filters computes
 * it with numpy:
 * - the barycentric weights w = v[q] @ inverses[t] in the triangle t = hint[q], or, where one
 *   of them is below -1e-9, in the triangle whose smallest weight is largest (all searched);
 *   clipped at 0, divided by their sum; one-hot where the largest is within 1e-6 of 1 (at a
 *   measured direction); t goes to tri[q];
 * - the delay of each ear, d = sum_i w_i delays[triangles[t, i], e] (samples), as phase
 *   factors exp(-j 2 pi k d / fft_size) of the bins k = fine * c + f: the product of the
 *   factors of fine * c and of f, two tables each made by a recurrence in double from its
 *   step (its phase in turns reduced to [-1/2, 1/2], then its sine and cosine), then
 *   rounded to float;
 * - dest[k, rows[q], e] = (sum_i w_i spectra[triangles[t, i], e, k]) * factor(fine * c)
 *   * factor(f), for the bins k < B (dest's first axis).
 *
 * Shapes (C order): v float64 (Q, 3); hint, rows, tri int64 (Q,); inverses float64 (T, 3, 3);
 * triangles int64 (T, 3); delays float64 (D, 2); spectra float32 (D, 2 * 2 * n_coarse * fine):
 * each ear's delay-free spectrum, re and im interleaved, zero past bin B; dest complex64
 * (B, R, 2), B <= n_coarse * fine. The filters are written fine bins at a time for all
 * directions, so that rows next to each other fill the same cache lines; with AVX2 and FMA,
 * four bins of both ears at a time.
 *
 * products(spectra, filters, out)
 *
 * out[b, k, e] = sum_r spectra[b, k, r] * filters[b, r, e]: every hop's output spectrum, per
 * bin b, summed over the rows r (sources) of the convolution. complex64 arrays of shapes
 * (B, K, R), (B, R, 2) and (B, K, 2), any strides on their first axes, the rows of a
 * spectrum and the (rows, ears) of a filter contiguous. Where the CPU has AVX2 and FMA, four
 * rows at a time in 256-bit vectors (use_vectors(False) turns this off, for the tests).
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

static int have_avx2 = 0;
static int use_avx2 = 0; /* the AVX2 and FMA loops (where the CPU has them) */

/* ---- place ---- */

typedef struct {
    const double *v, *inverses, *delays;
    const int64_t *hint, *triangles, *rows;
    const float *spectra;
    int64_t *tri;
    float *dest;
    Py_ssize_t q_count, t_count, bins, r_count, n_coarse, fine;
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

/* weights (3), direction indices (3) and phase factors (2 ears x (n_coarse + fine) complex)
   of direction q */
static void direction_terms(const Place *p, Py_ssize_t q, float *weights, int64_t *index,
                            float *factors)
{
    const double *v = p->v + 3 * q;
    int64_t t = p->hint[q];
    double w[3];
    barycentric(v, p->inverses + 9 * t, w);
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

static void place_filters_plain(const Place *p, const float *weights, const int64_t *index,
                          const float *factors)
{
    const Py_ssize_t row = p->n_coarse * p->fine; /* complex values of one ear's spectrum */
    const Py_ssize_t n_factors = p->n_coarse + p->fine;
    for (Py_ssize_t c = 0; c < p->n_coarse; c++) {
        const Py_ssize_t k0 = c * p->fine;
        const Py_ssize_t k1 = k0 + p->fine < p->bins ? k0 + p->fine : p->bins;
        for (Py_ssize_t q = 0; q < p->q_count; q++) {
            const float w0 = weights[3 * q], w1 = weights[3 * q + 1], w2 = weights[3 * q + 2];
            float *out = p->dest + 4 * p->rows[q];
            for (int e = 0; e < 2; e++) {
                const float *a0 = p->spectra + 2 * (index[3 * q] * 2 + e) * row;
                const float *a1 = p->spectra + 2 * (index[3 * q + 1] * 2 + e) * row;
                const float *a2 = p->spectra + 2 * (index[3 * q + 2] * 2 + e) * row;
                const float *coarse = factors + 2 * (q * 2 + e) * n_factors;
                const float *fine_factor = coarse + 2 * p->n_coarse;
                const float cr = coarse[2 * c], ci = coarse[2 * c + 1];
                for (Py_ssize_t k = k0; k < k1; k++) {
                    float re = w0 * a0[2 * k];
                    float im = w0 * a0[2 * k + 1];
                    re += w1 * a1[2 * k];
                    im += w1 * a1[2 * k + 1];
                    re += w2 * a2[2 * k];
                    im += w2 * a2[2 * k + 1];
                    const float r1 = re * cr - im * ci, i1 = re * ci + im * cr;
                    const float fr = fine_factor[2 * (k - k0)];
                    const float fi = fine_factor[2 * (k - k0) + 1];
                    float *h = out + 4 * k * p->r_count + 2 * e;
                    h[0] = r1 * fr - i1 * fi;
                    h[1] = r1 * fi + i1 * fr;
                }
            }
        }
    }
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

/* place_filters_plain four bins at a time: both ears of a bin stored together (16 bytes) */
__attribute__((target("avx2,fma"))) static void place_filters_avx2(
    const Place *p, const float *weights, const int64_t *index, const float *factors)
{
    const Py_ssize_t row = p->n_coarse * p->fine;
    const Py_ssize_t n_factors = p->n_coarse + p->fine;
    const Py_ssize_t bin_stride = 4 * p->r_count; /* floats from one bin's row to the next */
    for (Py_ssize_t c = 0; c < p->n_coarse; c++) {
        const Py_ssize_t k0 = c * p->fine;
        const Py_ssize_t k1 = k0 + p->fine < p->bins ? k0 + p->fine : p->bins;
        for (Py_ssize_t q = 0; q < p->q_count; q++) {
            const __m256 w0 = _mm256_set1_ps(weights[3 * q]);
            const __m256 w1 = _mm256_set1_ps(weights[3 * q + 1]);
            const __m256 w2 = _mm256_set1_ps(weights[3 * q + 2]);
            const float *a[2][3], *fine_factor[2];
            __m256 coarse[2];
            for (int e = 0; e < 2; e++) {
                for (int i = 0; i < 3; i++)
                    a[e][i] = p->spectra + 2 * (index[3 * q + i] * 2 + e) * row;
                const float *ear = factors + 2 * (q * 2 + e) * n_factors;
                coarse[e] = _mm256_castpd_ps(_mm256_broadcast_sd((const double *)(ear + 2 * c)));
                fine_factor[e] = ear + 2 * p->n_coarse - 2 * k0;
            }
            float *out = p->dest + 4 * p->rows[q];
            Py_ssize_t k = k0;
            for (; k + 4 <= k1; k += 4) {
                __m256 ear[2];
                for (int e = 0; e < 2; e++) {
                    __m256 sum = _mm256_mul_ps(w0, _mm256_loadu_ps(a[e][0] + 2 * k));
                    sum = _mm256_fmadd_ps(w1, _mm256_loadu_ps(a[e][1] + 2 * k), sum);
                    sum = _mm256_fmadd_ps(w2, _mm256_loadu_ps(a[e][2] + 2 * k), sum);
                    ear[e] = complex_times(complex_times(sum, coarse[e]),
                                           _mm256_loadu_ps(fine_factor[e] + 2 * k));
                }
                /* (left k, right k, left k + 2, right k + 2), then k + 1 and k + 3 */
                const __m256d even = _mm256_unpacklo_pd(_mm256_castps_pd(ear[0]),
                                                        _mm256_castps_pd(ear[1]));
                const __m256d odd = _mm256_unpackhi_pd(_mm256_castps_pd(ear[0]),
                                                       _mm256_castps_pd(ear[1]));
                float *h = out + k * bin_stride;
                _mm_storeu_ps(h, _mm256_castps256_ps128(_mm256_castpd_ps(even)));
                _mm_storeu_ps(h + bin_stride, _mm256_castps256_ps128(_mm256_castpd_ps(odd)));
                _mm_storeu_ps(h + 2 * bin_stride, _mm256_extractf128_ps(_mm256_castpd_ps(even), 1));
                _mm_storeu_ps(h + 3 * bin_stride, _mm256_extractf128_ps(_mm256_castpd_ps(odd), 1));
            }
            for (; k < k1; k++) {
                for (int e = 0; e < 2; e++) {
                    const float *w = weights + 3 * q;
                    float re = w[0] * a[e][0][2 * k], im = w[0] * a[e][0][2 * k + 1];
                    re += w[1] * a[e][1][2 * k];
                    im += w[1] * a[e][1][2 * k + 1];
                    re += w[2] * a[e][2][2 * k];
                    im += w[2] * a[e][2][2 * k + 1];
                    const float *cf = factors + 2 * (q * 2 + e) * n_factors + 2 * c;
                    const float r1 = re * cf[0] - im * cf[1], i1 = re * cf[1] + im * cf[0];
                    const float fr = fine_factor[e][2 * k], fi = fine_factor[e][2 * k + 1];
                    float *h = out + k * bin_stride + 2 * e;
                    h[0] = r1 * fr - i1 * fi;
                    h[1] = r1 * fi + i1 * fr;
                }
            }
        }
    }
}
#endif

static PyObject *place(PyObject *self, PyObject *args)
{
    (void)self;
    enum { V, HINT, INVERSES, TRIANGLES, DELAYS, SPECTRA, DEST, ROWS, TRI, N_ARRAYS };
    PyObject *objects[N_ARRAYS];
    double fft_size;
    Py_ssize_t n_coarse, fine;
    if (!PyArg_ParseTuple(args, "OOOOOOdnnOOO", &objects[V], &objects[HINT],
                          &objects[INVERSES], &objects[TRIANGLES], &objects[DELAYS],
                          &objects[SPECTRA], &fft_size, &n_coarse, &fine, &objects[DEST],
                          &objects[ROWS], &objects[TRI]))
        return NULL;
    /* item size and, for dest, the shape's checks below; C-contiguous buffers throughout */
    static const Py_ssize_t item[N_ARRAYS] = {8, 8, 8, 8, 8, 4, 8, 8, 8};
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
    if (fine < 1 || n_coarse < 1 || views[DEST].ndim != 3 || views[DEST].shape[2] != 2 ||
        views[DEST].shape[0] > row || views[HINT].len != q_count * 8 ||
        views[ROWS].len != q_count * 8 || views[TRI].len != q_count * 8 ||
        views[TRIANGLES].len != t_count * 24 ||
        views[SPECTRA].len != d_count * 2 * 2 * row * 4 || !(fft_size > 0)) {
        PyErr_SetString(PyExc_ValueError, "place: sizes");
        goto done;
    }
    const Py_ssize_t r_count = views[DEST].shape[1];
    const int64_t *hint = views[HINT].buf, *triangles = views[TRIANGLES].buf;
    const int64_t *rows = views[ROWS].buf;
    for (Py_ssize_t q = 0; q < q_count; q++) {
        if (hint[q] < 0 || hint[q] >= t_count || rows[q] < 0 || rows[q] >= r_count) {
            PyErr_SetString(PyExc_ValueError, "place: a triangle or row out of range");
            goto done;
        }
    }
    for (Py_ssize_t i = 0; i < t_count * 3; i++) {
        if (triangles[i] < 0 || triangles[i] >= d_count) {
            PyErr_SetString(PyExc_ValueError, "place: a direction index out of range");
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
        .hint = hint, .triangles = triangles, .rows = rows, .spectra = views[SPECTRA].buf,
        .tri = views[TRI].buf, .dest = views[DEST].buf, .q_count = q_count,
        .t_count = t_count, .bins = views[DEST].shape[0], .r_count = r_count,
        .n_coarse = n_coarse, .fine = fine, .fft_size = fft_size,
    };
    int64_t *index = (int64_t *)scratch; /* 3 per direction, 6 floats' room */
    float *weights = scratch + 6 * q_count;
    float *factors = scratch + 9 * q_count;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t q = 0; q < q_count; q++)
        direction_terms(&p, q, weights + 3 * q, index + 3 * q, factors + 4 * q * n_factors);
#ifdef HAVE_AVX2_PATH
    if (use_avx2)
        place_filters_avx2(&p, weights, index, factors);
    else
#endif
        place_filters_plain(&p, weights, index, factors);
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
    Py_ssize_t bins, hops, rows;
    Py_ssize_t x_bin, x_hop, h_bin, out_bin, out_hop; /* strides, in floats */
} Products;

static void products_plain(const Products *p)
{
    for (Py_ssize_t b = 0; b < p->bins; b++) {
        const float *h = p->h + b * p->h_bin;
        for (Py_ssize_t k = 0; k < p->hops; k++) {
            const float *x = p->x + b * p->x_bin + k * p->x_hop;
            float l_re = 0.0f, l_im = 0.0f, r_re = 0.0f, r_im = 0.0f;
            for (Py_ssize_t r = 0; r < p->rows; r++) {
                const float xr = x[2 * r], xi = x[2 * r + 1];
                const float *hr = h + 4 * r; /* left re, im, right re, im */
                l_re += xr * hr[0] - xi * hr[1];
                l_im += xr * hr[1] + xi * hr[0];
                r_re += xr * hr[2] - xi * hr[3];
                r_im += xr * hr[3] + xi * hr[2];
            }
            float *o = p->out + b * p->out_bin + k * p->out_hop;
            o[0] = l_re, o[1] = l_im, o[2] = r_re, o[3] = r_im;
        }
    }
}

#ifdef HAVE_AVX2_PATH
__attribute__((target("avx2,fma"))) static void products_avx2(const Products *p)
{
    const Py_ssize_t whole = p->rows & ~(Py_ssize_t)3;
    for (Py_ssize_t b = 0; b < p->bins; b++) {
        const float *h = p->h + b * p->h_bin;
        for (Py_ssize_t k = 0; k < p->hops; k++) {
            const float *x = p->x + b * p->x_bin + k * p->x_hop;
            /* lanes: (row 2i: left, right), (row 2i + 1: left, right) as complex pairs;
             * "real" the sums of x * re(h), "swapped" of (im x, re x) * im(h) */
            __m256 real_a = _mm256_setzero_ps(), swapped_a = _mm256_setzero_ps();
            __m256 real_b = _mm256_setzero_ps(), swapped_b = _mm256_setzero_ps();
            for (Py_ssize_t r = 0; r < whole; r += 4) {
                const __m256d four = _mm256_castps_pd(_mm256_loadu_ps(x + 2 * r));
                const __m256 x01 = _mm256_castpd_ps(_mm256_permute4x64_pd(four, 0x50));
                const __m256 x23 = _mm256_castpd_ps(_mm256_permute4x64_pd(four, 0xFA));
                const __m256 h01 = _mm256_loadu_ps(h + 4 * r);
                const __m256 h23 = _mm256_loadu_ps(h + 4 * r + 8);
                real_a = _mm256_fmadd_ps(x01, _mm256_moveldup_ps(h01), real_a);
                swapped_a = _mm256_fmadd_ps(_mm256_permute_ps(x01, 0xB1),
                                            _mm256_movehdup_ps(h01), swapped_a);
                real_b = _mm256_fmadd_ps(x23, _mm256_moveldup_ps(h23), real_b);
                swapped_b = _mm256_fmadd_ps(_mm256_permute_ps(x23, 0xB1),
                                            _mm256_movehdup_ps(h23), swapped_b);
            }
            /* re = re x re h - im x im h, im = im x re h + re x im h */
            const __m256 sum = _mm256_addsub_ps(_mm256_add_ps(real_a, real_b),
                                                _mm256_add_ps(swapped_a, swapped_b));
            float lanes[4];
            _mm_storeu_ps(lanes, _mm_add_ps(_mm256_castps256_ps128(sum),
                                            _mm256_extractf128_ps(sum, 1)));
            for (Py_ssize_t r = whole; r < p->rows; r++) {
                const float xr = x[2 * r], xi = x[2 * r + 1];
                const float *hr = h + 4 * r;
                lanes[0] += xr * hr[0] - xi * hr[1];
                lanes[1] += xr * hr[1] + xi * hr[0];
                lanes[2] += xr * hr[2] - xi * hr[3];
                lanes[3] += xr * hr[3] + xi * hr[2];
            }
            float *o = p->out + b * p->out_bin + k * p->out_hop;
            o[0] = lanes[0], o[1] = lanes[1], o[2] = lanes[2], o[3] = lanes[3];
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
    if (shape[1][0] != shape[0][0] || shape[2][0] != shape[0][0] ||
        shape[1][1] != shape[0][2] || shape[2][1] != shape[0][1] || shape[1][2] != 2 ||
        shape[2][2] != 2 || strides[1][1] != 4) {
        PyErr_SetString(PyExc_ValueError, "products: shapes (B, K, R), (B, R, 2) and "
                        "(B, K, 2) expected, the filters' rows and ears contiguous");
        goto done;
    }
    Products p = {
        .x = views[0].buf, .h = views[1].buf, .out = views[2].buf,
        .bins = shape[0][0], .hops = shape[0][1], .rows = shape[0][2],
        .x_bin = strides[0][0], .x_hop = strides[0][1], .h_bin = strides[1][0],
        .out_bin = strides[2][0], .out_hop = strides[2][1],
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

/* use_vectors(flag): the AVX2 products where the CPU has them (flag true, the default) or
   the plain loops (for tests); returns whether the AVX2 products are used now. */
static PyObject *use_vectors(PyObject *self, PyObject *args)
{
    (void)self;
    int flag;
    if (!PyArg_ParseTuple(args, "p", &flag))
        return NULL;
    use_avx2 = flag && have_avx2;
    return PyBool_FromLong(use_avx2);
}

static PyMethodDef methods[] = {
    {"place", place, METH_VARARGS, "Interpolated HRTF filters into rows (see the module)."},
    {"products", products, METH_VARARGS, "Per-bin products summed over rows (see the module)."},
    {"use_vectors", use_vectors, METH_VARARGS,
     "Use the AVX2 products where the CPU has them (True) or plain loops (False); returns "
     "whether the vectors are used."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_binaural",
    "The binaural renderer's filter updates and convolution products (see "
    "renderer/_binaural.c).", -1,
    methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__binaural(void)
{
#ifdef HAVE_AVX2_PATH
    __builtin_cpu_init();
    have_avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    use_avx2 = have_avx2;
#endif
    return PyModule_Create(&module);
}
