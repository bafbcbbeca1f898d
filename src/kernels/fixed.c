/* The fixed-point conversions of kernels/fixed.h: the plain C references and their AVX2 forms,
 * chosen by the kernels' ISA (kernels/isa.h). Both directions are integer arithmetic after one
 * exact scaling and one rounding, so every path gives the same bits (tests: deterministic). */
#include "kernels/fixed.h"

#include "kernels/isa.h"

void sp_fix_sum_to_float_ref(float *restrict dst, const int64_t *const *src, int nsrc, size_t n) {
    for (size_t k = 0; k < n; ++k) {
        int64_t q = src[0][k];
        for (int j = 1; j < nsrc; ++j) q += src[j][k];
        dst[k] = sp_fix_to_float(q);
    }
}

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>

#include "kernels/fixed_avx2.h"

/* Per 8 terms: the range check on the floats (|g| < limit; false for NaN), then each float
 * widened to double (exact) plus 1.5 * 2^12: the sum lies in [2^12, 2^13), where the ulp is
 * 2^-40, so its low mantissa bits are round(g * 2^40) (to nearest even, the reference's
 * rounding), recovered by an integer subtraction. Out-of-range lanes are counted and add 0. */
__attribute__((target("avx2"))) static int64_t
accumulate_avx2_(int64_t *restrict acc, const float *restrict g, size_t n, double limit) {
    const __m256 lim = _mm256_set1_ps((float)limit);
    const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    const __m256d magic = _mm256_set1_pd(0x1.8p12);
    const __m256i magic_bits = _mm256_set1_epi64x(0x40b8000000000000LL);
    __m256i bad = _mm256_setzero_si256();
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 f = _mm256_loadu_ps(g + i);
        const __m256 ok = _mm256_cmp_ps(_mm256_and_ps(f, absmask), lim, _CMP_LT_OQ);
        f = _mm256_and_ps(f, ok);
        /* ok lanes are all ones (-1 as int32): bad -= ok, in 32-bit lanes (< 2^31 per call) */
        bad = _mm256_sub_epi32(bad, _mm256_castps_si256(ok));
        const __m256d d0 = _mm256_add_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(f)), magic);
        const __m256d d1 = _mm256_add_pd(_mm256_cvtps_pd(_mm256_extractf128_ps(f, 1)), magic);
        const __m256i q0 = _mm256_sub_epi64(_mm256_castpd_si256(d0), magic_bits);
        const __m256i q1 = _mm256_sub_epi64(_mm256_castpd_si256(d1), magic_bits);
        __m256i *a = (__m256i *)(void *)(acc + i);
        _mm256_storeu_si256(a, _mm256_add_epi64(_mm256_loadu_si256(a), q0));
        _mm256_storeu_si256(a + 1, _mm256_add_epi64(_mm256_loadu_si256(a + 1), q1));
    }
    int32_t lanes[8];
    _mm256_storeu_si256((__m256i *)(void *)lanes, bad);
    /* bad counted the ok lanes: the bad ones are i minus that */
    int64_t nok = 0;
    for (int l = 0; l < 8; ++l) nok += lanes[l];
    return (int64_t)i - nok + sp_fix_accumulate_ref(acc + i, g + i, n - i, limit);
}

/* sp_fix_sum_to_float_ref in AVX2: per 4 elements the sum over the sources, converted by
 * sp_fix_to_float4_avx2 (which checks the fast range itself). */
__attribute__((target("avx2"))) static void
sum_to_float_avx2_(float *restrict dst, const int64_t *const *src, int nsrc, size_t n) {
    size_t k = 0;
    for (; k + 4 <= n; k += 4) {
        __m256i q = _mm256_loadu_si256((const __m256i *)(const void *)(src[0] + k));
        for (int j = 1; j < nsrc; ++j)
            q = _mm256_add_epi64(q,
                                 _mm256_loadu_si256((const __m256i *)(const void *)(src[j] + k)));
        sp_fix_to_float4_avx2(dst + k, q);
    }
    for (; k < n; ++k) {
        int64_t q = src[0][k];
        for (int j = 1; j < nsrc; ++j) q += src[j][k];
        dst[k] = sp_fix_to_float(q);
    }
}

int64_t sp_fix_accumulate(int64_t *restrict acc, const float *restrict g, size_t n, double limit) {
    return sp_isa_active() >= SP_ISA_AVX2 ? accumulate_avx2_(acc, g, n, limit)
                                          : sp_fix_accumulate_ref(acc, g, n, limit);
}

void sp_fix_sum_to_float(float *restrict dst, const int64_t *const *src, int nsrc, size_t n) {
    if (sp_isa_active() >= SP_ISA_AVX2)
        sum_to_float_avx2_(dst, src, nsrc, n);
    else
        sp_fix_sum_to_float_ref(dst, src, nsrc, n);
}
#else
int64_t sp_fix_accumulate(int64_t *restrict acc, const float *restrict g, size_t n, double limit) {
    return sp_fix_accumulate_ref(acc, g, n, limit);
}

void sp_fix_sum_to_float(float *restrict dst, const int64_t *const *src, int nsrc, size_t n) {
    sp_fix_sum_to_float_ref(dst, src, nsrc, n);
}
#endif
