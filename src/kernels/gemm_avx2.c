/* The AVX2 + FMA micro-kernel, 6 x 16: arithmetic as in gemm_ukernel.h. Built with -mavx2 -mfma
 * and called only when the CPU has both. */
#include "kernels/gemm_ukernel.h"

#if defined(__x86_64__) && defined(__GNUC__)

#include <immintrin.h>

enum { MR = SP_GEMM_AVX2_MR, NR = SP_GEMM_AVX2_NR };

/* c (8 floats) = the update rule of gemm_ukernel.h applied to acc. */
static inline void update8_(float *c, __m256 acc, __m256 alpha, float beta) {
    if (beta == 0.0f)
        _mm256_storeu_ps(c, _mm256_mul_ps(alpha, acc));
    else if (beta == 1.0f)
        _mm256_storeu_ps(c, _mm256_fmadd_ps(alpha, acc, _mm256_loadu_ps(c)));
    else
        _mm256_storeu_ps(
            c,
            _mm256_fmadd_ps(alpha, acc, _mm256_mul_ps(_mm256_set1_ps(beta), _mm256_loadu_ps(c))));
}

void sp_gemm_ukernel_avx2(int kc, const float *ap, const float *bp, float *c, int ldc, int m, int n,
                          float alpha, float beta) {
    for (int r = 0; r < m; ++r) { /* C is needed after the k loop: fetch it meanwhile */
        _mm_prefetch((const char *)(c + (size_t)r * ldc), _MM_HINT_T0);
        _mm_prefetch((const char *)(c + (size_t)r * ldc + n - 1), _MM_HINT_T0);
    }
    __m256 c00 = _mm256_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00,
           c30 = c00, c31 = c00, c40 = c00, c41 = c00, c50 = c00, c51 = c00;
    for (int k = 0; k < kc; ++k) {
        const __m256 b0 = _mm256_load_ps(bp), b1 = _mm256_load_ps(bp + 8);
        __m256 a = _mm256_broadcast_ss(ap + 0);
        c00 = _mm256_fmadd_ps(a, b0, c00);
        c01 = _mm256_fmadd_ps(a, b1, c01);
        a = _mm256_broadcast_ss(ap + 1);
        c10 = _mm256_fmadd_ps(a, b0, c10);
        c11 = _mm256_fmadd_ps(a, b1, c11);
        a = _mm256_broadcast_ss(ap + 2);
        c20 = _mm256_fmadd_ps(a, b0, c20);
        c21 = _mm256_fmadd_ps(a, b1, c21);
        a = _mm256_broadcast_ss(ap + 3);
        c30 = _mm256_fmadd_ps(a, b0, c30);
        c31 = _mm256_fmadd_ps(a, b1, c31);
        a = _mm256_broadcast_ss(ap + 4);
        c40 = _mm256_fmadd_ps(a, b0, c40);
        c41 = _mm256_fmadd_ps(a, b1, c41);
        a = _mm256_broadcast_ss(ap + 5);
        c50 = _mm256_fmadd_ps(a, b0, c50);
        c51 = _mm256_fmadd_ps(a, b1, c51);
        ap += MR;
        bp += NR;
    }
    const __m256 acc[MR][2] = {{c00, c01}, {c10, c11}, {c20, c21},
                               {c30, c31}, {c40, c41}, {c50, c51}};
    if (m == MR && n == NR) {
        const __m256 va = _mm256_set1_ps(alpha);
        for (int r = 0; r < MR; ++r) {
            update8_(c + (size_t)r * ldc, acc[r][0], va, beta);
            update8_(c + (size_t)r * ldc + 8, acc[r][1], va, beta);
        }
        return;
    }
    /* Edge tile: spill the accumulators, update only the valid part. */
    _Alignas(32) float t[MR * NR];
    for (int r = 0; r < MR; ++r) {
        _mm256_store_ps(t + r * NR, acc[r][0]);
        _mm256_store_ps(t + r * NR + 8, acc[r][1]);
    }
    for (int r = 0; r < m; ++r)
        for (int j = 0; j < n; ++j)
            c[(size_t)r * ldc + j] =
                sp_gemm_update_(t[r * NR + j], c[(size_t)r * ldc + j], alpha, beta);
}

#else
typedef int sp_gemm_avx2_unused_; /* ISO C wants a non-empty translation unit */
#endif
