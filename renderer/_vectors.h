/* Helpers shared by the native parts (renderer/_mixkernel.c, renderer/_binaural.c). */
#ifndef DUBSTAGE_VECTORS_H
#define DUBSTAGE_VECTORS_H

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
