/* The binaural renderer's hot loops in C: the filter construction
 * (renderer.binaural._FilterBank.filters) and the per-bin products of the convolution
 * (renderer.binaural._NumpyOps.matmul).
 *
 * filters(index, weights, factors, spectra, n_coarse, fine, out)
 *
 * For each direction q and ear e, and the bins k = fine * c + f < B (out's last axis):
 * out[q, e, k] = (sum_i weights[q, i] spectra[index[q, i], e, k]) * factors[q, e, c]
 * * factors[q, e, n_coarse + f], in that order, as numpy computes it there (the factors are
 * the delay's phase factors of fine * c and of f, computed there).
 *
 * Shapes (C order): index int64 (Q, 3); weights float32 (Q, 3); factors complex64 (Q, 2,
 * n_coarse + fine); spectra complex64 (D, 2, n_coarse * fine) (zero past bin B); out
 * complex64 (Q, 2, B), B <= n_coarse * fine.
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
#include <stdint.h>
#include <string.h>

static PyObject *filters(PyObject *self, PyObject *args)
{
    (void)self;
    PyObject *objects[5];
    Py_ssize_t n_coarse, fine;
    if (!PyArg_ParseTuple(args, "OOOOnnO", &objects[0], &objects[1], &objects[2], &objects[3],
                          &n_coarse, &fine, &objects[4]))
        return NULL;
    Py_buffer views[5];
    int got = 0;
    PyObject *result = NULL;
    for (int j = 0; j < 5; j++) {
        if (PyObject_GetBuffer(objects[j], &views[j], j == 4 ? PyBUF_WRITABLE : PyBUF_SIMPLE) < 0)
            goto done;
        got |= 1 << j;
    }
    const Py_ssize_t q_count = views[0].len / (3 * 8);
    const Py_ssize_t row = n_coarse * fine; /* complex values of one ear of one direction */
    const Py_ssize_t d_count = row > 0 ? views[3].len / (2 * row * 8) : 0;
    const Py_ssize_t bins = q_count > 0 ? views[4].len / (q_count * 2 * 8) : 0;
    const Py_ssize_t n_factors = n_coarse + fine;
    if (fine < 1 || n_coarse < 1 || bins > row || views[1].len < q_count * 3 * 4 ||
        views[2].len < q_count * 2 * n_factors * 8 || views[4].len < q_count * 2 * bins * 8) {
        PyErr_SetString(PyExc_ValueError, "filters: sizes");
        goto done;
    }
    const int64_t *index = views[0].buf;
    for (Py_ssize_t i = 0; i < q_count * 3; i++) {
        if (index[i] < 0 || index[i] >= d_count) {
            PyErr_SetString(PyExc_ValueError, "filters: direction index");
            goto done;
        }
    }
    const float *weights = views[1].buf;
    const float *factors = views[2].buf; /* re, im interleaved */
    const float *spectra = views[3].buf;
    float *out = views[4].buf;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t q = 0; q < q_count; q++) {
        const float w0 = weights[q * 3], w1 = weights[q * 3 + 1], w2 = weights[q * 3 + 2];
        for (int e = 0; e < 2; e++) {
            const float *a0 = spectra + 2 * (index[q * 3] * 2 + e) * row;
            const float *a1 = spectra + 2 * (index[q * 3 + 1] * 2 + e) * row;
            const float *a2 = spectra + 2 * (index[q * 3 + 2] * 2 + e) * row;
            const float *coarse = factors + 2 * (q * 2 + e) * n_factors;
            const float *fine_factor = coarse + 2 * n_coarse;
            float *h = out + 2 * (q * 2 + e) * bins;
            for (Py_ssize_t c = 0; c < n_coarse; c++) {
                const float cr = coarse[2 * c], ci = coarse[2 * c + 1];
                const Py_ssize_t k0 = c * fine;
                const Py_ssize_t k1 = k0 + fine < bins ? k0 + fine : bins;
                for (Py_ssize_t k = k0; k < k1; k++) {
                    /* the weighted sum, in the order of the sparse product by rows */
                    float re = w0 * a0[2 * k];
                    float im = w0 * a0[2 * k + 1];
                    re += w1 * a1[2 * k];
                    im += w1 * a1[2 * k + 1];
                    re += w2 * a2[2 * k];
                    im += w2 * a2[2 * k + 1];
                    const float r1 = re * cr - im * ci, i1 = re * ci + im * cr;
                    const float fr = fine_factor[2 * (k - k0)];
                    const float fi = fine_factor[2 * (k - k0) + 1];
                    h[2 * k] = r1 * fr - i1 * fi;
                    h[2 * k + 1] = r1 * fi + i1 * fr;
                }
            }
        }
    }
    Py_END_ALLOW_THREADS
    result = Py_None;
    Py_INCREF(result);
done:
    for (int j = 0; j < 5; j++)
        if (got & (1 << j))
            PyBuffer_Release(&views[j]);
    return result;
}

/* ---- products ---------------------------------------------------------------------- */

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

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define HAVE_AVX2_PATH 1
#include <immintrin.h>

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

static int have_avx2 = 0;
static int use_avx2 = 0;

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
    {"filters", filters, METH_VARARGS, "Interpolated HRTF filters (see the module)."},
    {"products", products, METH_VARARGS, "Per-bin products summed over rows (see the module)."},
    {"use_vectors", use_vectors, METH_VARARGS,
     "Use the AVX2 products where the CPU has them (True) or plain loops (False); returns "
     "whether the vectors are used."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_binaural",
    "The binaural renderer's filter construction and convolution products (see "
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
