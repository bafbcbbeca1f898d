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

/* The 8 x 8 transpose of r[0..7] (row i = 8 floats), in place. */
static inline void transpose8_(__m256 r[8]) {
    const __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
    const __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
    const __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
    const __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
    const __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
    const __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
    const __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE);
    const __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
    r[0] = _mm256_permute2f128_ps(u0, u4, 0x20);
    r[1] = _mm256_permute2f128_ps(u1, u5, 0x20);
    r[2] = _mm256_permute2f128_ps(u2, u6, 0x20);
    r[3] = _mm256_permute2f128_ps(u3, u7, 0x20);
    r[4] = _mm256_permute2f128_ps(u0, u4, 0x31);
    r[5] = _mm256_permute2f128_ps(u1, u5, 0x31);
    r[6] = _mm256_permute2f128_ps(u2, u6, 0x31);
    r[7] = _mm256_permute2f128_ps(u3, u7, 0x31);
}

void sp_gemm_pack_cols_avx2(const float *src, size_t ld, int kc, int n, int w, float *p) {
    /* 8 x 8 tiles: 8 k from each of 8 vectors (zeros past n), transposed into 8 panel rows */
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    int k = 0;
    for (; k + 8 <= kc; k += 8)
        for (int j0 = 0; j0 < w; j0 += 8) {
            if ((k & 15) == 0) /* the n streams come from memory (e.g. im2col columns): ahead */
                for (int i = 0; i < 8 && j0 + i < n; ++i)
                    _mm_prefetch((const char *)(src + (size_t)(j0 + i) * ld + k + 64), _MM_HINT_T0);
            __m256 r[8];
            for (int i = 0; i < 8; ++i)
                r[i] = j0 + i < n ? _mm256_loadu_ps(src + (size_t)(j0 + i) * ld + k)
                                  : _mm256_setzero_ps();
            transpose8_(r);
            float *d = p + (size_t)k * w + j0;
            if (j0 + 8 <= w) {
                for (int t = 0; t < 8; ++t) _mm256_storeu_ps(d + (size_t)t * w, r[t]);
            } else if (j0 == 0) {
                /* a panel narrower than 8 (MR = 6): whole stores in increasing order, each
                 * spilling into the start of the next panel row, which the next store (or a
                 * later tile) overwrites; the last one writes up to 8 - w floats past the
                 * panel (the caller's slack, see SP_GEMM_PACK_SLACK) */
                for (int t = 0; t < 8; ++t) _mm256_storeu_ps(d + (size_t)t * w, r[t]);
            } else { /* the last columns of a panel that is not a multiple of 8 wide (MR = 12) */
                const __m256i mask = _mm256_cmpgt_epi32(_mm256_set1_epi32(w - j0), lane);
                for (int t = 0; t < 8; ++t) _mm256_maskstore_ps(d + (size_t)t * w, mask, r[t]);
            }
        }
    for (; k < kc; ++k) { /* the last kc % 8 */
        float *d = p + (size_t)k * w;
        for (int j = 0; j < n; ++j) d[j] = src[(size_t)j * ld + k];
        for (int j = n; j < w; ++j) d[j] = 0.0f;
    }
}

void sp_gemm_pack_rows_avx2(const float *src, size_t ld, int kc, int nc, int nr, float *bp) {
    const int full = nc / nr * nr;
    for (int k = 0; k < kc; ++k, src += ld) {
        float *d = bp + (size_t)k * nr;
        int j = 0;
        if (nr == 16)
            for (; j < full; j += 16, d += (size_t)kc * 16) {
                _mm256_storeu_ps(d, _mm256_loadu_ps(src + j));
                _mm256_storeu_ps(d + 8, _mm256_loadu_ps(src + j + 8));
            }
        else if (nr == 6 && k + 1 < kc) /* A panels (MR = 6): 8-float moves whose last 2 floats
                                          * land in the panel's next row, written at k + 1 */
            for (; j + 8 <= nc && j + 6 <= full; j += 6, d += (size_t)kc * 6)
                _mm256_storeu_ps(d, _mm256_loadu_ps(src + j));
        for (; j < nc; j += nr, d += (size_t)kc * nr) { /* other widths, the last panel */
            const int n = nc - j < nr ? nc - j : nr;
            for (int t = 0; t < n; ++t) d[t] = src[j + t];
            for (int t = n; t < nr; ++t) d[t] = 0.0f;
        }
    }
}

#else
typedef int sp_gemm_avx2_unused_; /* ISO C wants a non-empty translation unit */
#endif
