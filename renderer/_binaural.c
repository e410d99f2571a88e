/* The binaural renderer's filter construction (renderer.binaural._FilterBank.filters) in one
 * pass over each filter.
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
 * complex64 (Q, 2, B), B <= n_coarse * fine. The interpreter's lock is released while it
 * runs.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>

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

static PyMethodDef methods[] = {
    {"filters", filters, METH_VARARGS, "Interpolated HRTF filters (see the module)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_binaural",
    "The binaural renderer's filter construction in one pass (see renderer/_binaural.c).", -1,
    methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__binaural(void)
{
    return PyModule_Create(&module);
}
