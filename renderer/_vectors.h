/* What the native parts (renderer/_mixkernel.c, renderer/_binaural.c) share about their
 * vector loops: whether the CPU has AVX2 and FMA (detect_vectors, at the module's import),
 * whether the AVX2 loops are used (the module function use_vectors: the plain loops for the
 * tests), and an 8 x 8 transpose. Included after Python.h. */
#ifndef DUBSTAGE_VECTORS_H
#define DUBSTAGE_VECTORS_H

static int have_avx2 = 0; /* the CPU has AVX2 and FMA */
static int use_avx2 = 0;  /* the AVX2 and FMA loops are used */

/* Set have_avx2 and use_avx2 from the CPU (x86-64 with GCC or clang; elsewhere both stay 0). */
static void detect_vectors(void)
{
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    __builtin_cpu_init();
    have_avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    use_avx2 = have_avx2;
#endif
}

/* use_vectors(flag): the AVX2 loops where the CPU has them (flag true, the default) or the
   plain ones (for tests); returns whether the AVX2 loops are used now. */
static PyObject *use_vectors(PyObject *self, PyObject *args)
{
    (void)self;
    int flag;
    if (!PyArg_ParseTuple(args, "p", &flag))
        return NULL;
    use_avx2 = flag && have_avx2;
    return PyBool_FromLong(use_avx2);
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>

/* An 8 x 8 transpose in registers: lane j of v[i] becomes lane i of v[j]. Pairs of rows
   interleaved, then groups of four rows within each 128-bit half, then the halves swapped. */
__attribute__((target("avx2,fma"), always_inline)) static inline void transpose8(__m256 *v)
{
    __m256 pairs[8], quads[8];
    for (int i = 0; i < 8; i += 2) {
        pairs[i] = _mm256_unpacklo_ps(v[i], v[i + 1]);
        pairs[i + 1] = _mm256_unpackhi_ps(v[i], v[i + 1]);
    }
    for (int i = 0; i < 8; i += 4) {
        quads[i] = _mm256_shuffle_ps(pairs[i], pairs[i + 2], 0x44);
        quads[i + 1] = _mm256_shuffle_ps(pairs[i], pairs[i + 2], 0xEE);
        quads[i + 2] = _mm256_shuffle_ps(pairs[i + 1], pairs[i + 3], 0x44);
        quads[i + 3] = _mm256_shuffle_ps(pairs[i + 1], pairs[i + 3], 0xEE);
    }
    for (int j = 0; j < 4; j++) {
        v[j] = _mm256_permute2f128_ps(quads[j], quads[4 + j], 0x20);
        v[4 + j] = _mm256_permute2f128_ps(quads[j], quads[4 + j], 0x31);
    }
}
#endif

#endif
