/* The AVX-512F micro-kernel, 12 x 32: arithmetic as in gemm_ukernel.h. Built with -mavx512f
 * -mavx512vl -mfma -mavx2 and called only when the CPU (and OS) support AVX-512F and VL. */
#include "kernels/gemm_ukernel.h"

#if defined(__x86_64__) && defined(__GNUC__)

#include <immintrin.h>

enum { MR = SP_GEMM_AVX512_MR, NR = SP_GEMM_AVX512_NR };

/* c (16 floats) = the update rule of gemm_ukernel.h applied to acc. */
static inline void update16_(float *c, __m512 acc, __m512 alpha, float beta) {
    if (beta == 0.0f)
        _mm512_storeu_ps(c, _mm512_mul_ps(alpha, acc));
    else if (beta == 1.0f)
        _mm512_storeu_ps(c, _mm512_fmadd_ps(alpha, acc, _mm512_loadu_ps(c)));
    else
        _mm512_storeu_ps(
            c,
            _mm512_fmadd_ps(alpha, acc, _mm512_mul_ps(_mm512_set1_ps(beta), _mm512_loadu_ps(c))));
}

/* One k step for row r: broadcast ap[r], two FMAs into the row's accumulators. */
#define SP_ROW_(r)                                                                                 \
    do {                                                                                           \
        const __m512 a_ = _mm512_set1_ps(ap[r]);                                                   \
        acc##r##0 = _mm512_fmadd_ps(a_, b0, acc##r##0);                                            \
        acc##r##1 = _mm512_fmadd_ps(a_, b1, acc##r##1);                                            \
    } while (0)

void sp_gemm_ukernel_avx512(int kc, const float *ap, const float *bp, float *c, int ldc, int m,
                            int n, float alpha, float beta) {
    for (int r = 0; r < m; ++r) { /* C is needed after the k loop: fetch it meanwhile */
        _mm_prefetch((const char *)(c + (size_t)r * ldc), _MM_HINT_T0);
        _mm_prefetch((const char *)(c + (size_t)r * ldc + n - 1), _MM_HINT_T0);
    }
    const __m512 z = _mm512_setzero_ps();
    __m512 acc00 = z, acc01 = z, acc10 = z, acc11 = z, acc20 = z, acc21 = z, acc30 = z, acc31 = z,
           acc40 = z, acc41 = z, acc50 = z, acc51 = z, acc60 = z, acc61 = z, acc70 = z, acc71 = z,
           acc80 = z, acc81 = z, acc90 = z, acc91 = z, acc100 = z, acc101 = z, acc110 = z,
           acc111 = z;
    for (int k = 0; k < kc; ++k) {
        const __m512 b0 = _mm512_load_ps(bp), b1 = _mm512_load_ps(bp + 16);
        SP_ROW_(0);
        SP_ROW_(1);
        SP_ROW_(2);
        SP_ROW_(3);
        SP_ROW_(4);
        SP_ROW_(5);
        SP_ROW_(6);
        SP_ROW_(7);
        SP_ROW_(8);
        SP_ROW_(9);
        SP_ROW_(10);
        SP_ROW_(11);
        ap += MR;
        bp += NR;
    }
    const __m512 acc[MR][2] = {{acc00, acc01}, {acc10, acc11}, {acc20, acc21},   {acc30, acc31},
                               {acc40, acc41}, {acc50, acc51}, {acc60, acc61},   {acc70, acc71},
                               {acc80, acc81}, {acc90, acc91}, {acc100, acc101}, {acc110, acc111}};
    if (m == MR && n == NR) {
        const __m512 va = _mm512_set1_ps(alpha);
        for (int r = 0; r < MR; ++r) {
            update16_(c + (size_t)r * ldc, acc[r][0], va, beta);
            update16_(c + (size_t)r * ldc + 16, acc[r][1], va, beta);
        }
        return;
    }
    /* Edge tile: spill the accumulators, update only the valid part. */
    _Alignas(64) float t[MR * NR];
    for (int r = 0; r < MR; ++r) {
        _mm512_store_ps(t + r * NR, acc[r][0]);
        _mm512_store_ps(t + r * NR + 16, acc[r][1]);
    }
    for (int r = 0; r < m; ++r)
        for (int j = 0; j < n; ++j)
            c[(size_t)r * ldc + j] =
                sp_gemm_update_(t[r * NR + j], c[(size_t)r * ldc + j], alpha, beta);
}

#else
typedef int sp_gemm_avx512_unused_; /* ISO C wants a non-empty translation unit */
#endif
