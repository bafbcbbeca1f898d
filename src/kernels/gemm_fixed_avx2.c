/* The AVX2 + FMA micro-kernel of sp_gemm_fixed, 6 x 16 (gemm_fixed_ukernel.h). Built with -mavx2
 * -mfma and called only when the CPU has both. */
#include "kernels/gemm_fixed_ukernel.h"
#include "kernels/fixed_avx2.h"

#if defined(__x86_64__) && defined(__GNUC__)

#include <immintrin.h>
#include <stdbool.h>

enum { MR = SP_GEMM_FIXED_MR, NR = SP_GEMM_FIXED_NR };

/* q[0..8) += the bits of (double)c + 1.5 * 2^12, lane by lane; mx = max(mx, |c| bits). */
static inline __m256i flush8_(__m256 c, int64_t *q, __m256i mx, bool first) {
    const __m256i absmask = _mm256_set1_epi32(0x7fffffff);
    const __m256d magic = _mm256_set1_pd(0x1.8p12);
    mx = _mm256_max_epu32(mx, _mm256_and_si256(_mm256_castps_si256(c), absmask));
    const __m256d lo = _mm256_add_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(c)), magic);
    const __m256d hi = _mm256_add_pd(_mm256_cvtps_pd(_mm256_extractf128_ps(c, 1)), magic);
    __m256i *p = (__m256i *)(void *)q;
    if (first) { /* q starts here: no need to clear it */
        _mm256_store_si256(p, _mm256_castpd_si256(lo));
        _mm256_store_si256(p + 1, _mm256_castpd_si256(hi));
        return mx;
    }
    _mm256_store_si256(p, _mm256_add_epi64(_mm256_load_si256(p), _mm256_castpd_si256(lo)));
    _mm256_store_si256(p + 1, _mm256_add_epi64(_mm256_load_si256(p + 1), _mm256_castpd_si256(hi)));
    return mx;
}

uint32_t sp_gemm_fixed_ukernel_avx2(int K, int m, const float *ap, const float *bp, int64_t *q) {
    __m256i mx = _mm256_setzero_si256();
    for (int k0 = 0; k0 < K; k0 += m) {
        const bool first = k0 == 0;
        const int kc = K - k0 < m ? K - k0 : m;
        __m256 c00 = _mm256_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00,
               c30 = c00, c31 = c00, c40 = c00, c41 = c00, c50 = c00, c51 = c00;
#define SP_FIXED_STEP_                                                                             \
    do {                                                                                           \
        const __m256 b0 = _mm256_load_ps(bp), b1 = _mm256_load_ps(bp + 8);                         \
        __m256 a = _mm256_broadcast_ss(ap + 0);                                                    \
        c00 = _mm256_fmadd_ps(a, b0, c00);                                                         \
        c01 = _mm256_fmadd_ps(a, b1, c01);                                                         \
        a = _mm256_broadcast_ss(ap + 1);                                                           \
        c10 = _mm256_fmadd_ps(a, b0, c10);                                                         \
        c11 = _mm256_fmadd_ps(a, b1, c11);                                                         \
        a = _mm256_broadcast_ss(ap + 2);                                                           \
        c20 = _mm256_fmadd_ps(a, b0, c20);                                                         \
        c21 = _mm256_fmadd_ps(a, b1, c21);                                                         \
        a = _mm256_broadcast_ss(ap + 3);                                                           \
        c30 = _mm256_fmadd_ps(a, b0, c30);                                                         \
        c31 = _mm256_fmadd_ps(a, b1, c31);                                                         \
        a = _mm256_broadcast_ss(ap + 4);                                                           \
        c40 = _mm256_fmadd_ps(a, b0, c40);                                                         \
        c41 = _mm256_fmadd_ps(a, b1, c41);                                                         \
        a = _mm256_broadcast_ss(ap + 5);                                                           \
        c50 = _mm256_fmadd_ps(a, b0, c50);                                                         \
        c51 = _mm256_fmadd_ps(a, b1, c51);                                                         \
        ap += MR;                                                                                  \
        bp += NR;                                                                                  \
    } while (0)
        /* unrolled by 4 (the same steps in the same order): short micro-batches end in a
         * well-predicted branch */
        int k = 0;
        for (; k + 4 <= kc; k += 4) {
            SP_FIXED_STEP_;
            SP_FIXED_STEP_;
            SP_FIXED_STEP_;
            SP_FIXED_STEP_;
        }
        for (; k < kc; ++k) SP_FIXED_STEP_;
#undef SP_FIXED_STEP_
        mx = flush8_(c00, q + 0 * NR, mx, first);
        mx = flush8_(c01, q + 0 * NR + 8, mx, first);
        mx = flush8_(c10, q + 1 * NR, mx, first);
        mx = flush8_(c11, q + 1 * NR + 8, mx, first);
        mx = flush8_(c20, q + 2 * NR, mx, first);
        mx = flush8_(c21, q + 2 * NR + 8, mx, first);
        mx = flush8_(c30, q + 3 * NR, mx, first);
        mx = flush8_(c31, q + 3 * NR + 8, mx, first);
        mx = flush8_(c40, q + 4 * NR, mx, first);
        mx = flush8_(c41, q + 4 * NR + 8, mx, first);
        mx = flush8_(c50, q + 5 * NR, mx, first);
        mx = flush8_(c51, q + 5 * NR + 8, mx, first);
    }
    uint32_t lanes[8];
    _mm256_storeu_si256((__m256i *)(void *)lanes, mx);
    uint32_t r = 0;
    for (int l = 0; l < 8; ++l) r = lanes[l] > r ? lanes[l] : r;
    return r;
}

void sp_gemm_fixed_store_avx2(const int64_t *q, uint64_t off, int rm, int64_t *dq, float *dg,
                              size_t ldq, bool add) {
    const __m256i voff = _mm256_set1_epi64x((long long)off);
    for (int r = 0; r < rm; ++r, q += NR) {
        for (int j = 0; j < NR; j += 4) {
            const __m256i x =
                _mm256_sub_epi64(_mm256_load_si256((const __m256i *)(const void *)(q + j)), voff);
            __m256i *d = dq ? (__m256i *)(void *)(dq + (size_t)r * ldq + j) : NULL;
            if (dq && add)
                _mm256_storeu_si256(d, _mm256_add_epi64(_mm256_loadu_si256(d), x));
            else if (dq)
                _mm256_storeu_si256(d, x);
            else
                sp_fix_to_float4_avx2(dg + (size_t)r * ldq + j, x);
        }
    }
}

void sp_gemm_fixed_store_small_avx2(const int64_t *q, uint64_t off, int rm, float *dg, size_t ldq) {
    /* q - off + 0x4338000000000000 in one add: the bias of sp_fix_biased_to_float4_avx2 */
    const __m256i bias = _mm256_set1_epi64x((long long)(0x4338000000000000ULL - off));
    for (int r = 0; r < rm; ++r, q += NR)
        for (int j = 0; j < NR; j += 4)
            sp_fix_biased_to_float4_avx2(
                dg + (size_t)r * ldq + j,
                _mm256_add_epi64(_mm256_load_si256((const __m256i *)(const void *)(q + j)), bias));
}

#else
typedef int sp_gemm_fixed_avx2_unused_; /* ISO C wants a non-empty translation unit */
#endif
