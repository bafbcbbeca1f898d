/* sp_fix_accumulate: kernels/fixed.h's conversion and sum, AVX2 when the CPU has it. Integer
 * arithmetic after one exact scaling and one rounding (to nearest even, as the reference), so
 * both paths give the same accumulators bit for bit (tests/test_deterministic.c checks it). And
 * sp_fix_sum_to_float_n, the exact sum of int64 arrays converted back to float (the reducer's
 * shares; sp_fix_to_float_n is its one-array case), AVX2 as well, against a plain C path. */
#include "kernels/fixed.h"

#include <stdatomic.h>

/* The plain C conversion back (the AVX2 one: kernels/fixed_avx2.h). For |q| < 2^51 the double of
 * q is formed by adding q to the bits of 1.5 * 2^52 and subtracting that number (exact there, and
 * it vectorizes, where a conversion of int64 to double does not without AVX-512); else by the
 * conversion of sp_fix_to_float. Either way the double is q itself, scaled exactly and rounded
 * once to float: sp_fix_to_float's bits. Elements go in blocks: the sums of a block (nsrc > 1)
 * stay in L1 between the sum and the conversion. */
enum { FIX_BLOCK = 512 };

/* 0 when every |q| of the block is below 2^51 (q + 2^51 in [0, 2^52)), else not */
static uint64_t fix_out_of_fast_range_(const int64_t *q, size_t n) {
    uint64_t hi = 0;
    for (size_t k = 0; k < n; ++k) hi |= ((uint64_t)q[k] + ((uint64_t)1 << 51)) >> 52;
    return hi;
}

static void fix_block_to_float_(float *restrict dst, const int64_t *restrict q, size_t n) {
    if (fix_out_of_fast_range_(q, n)) {
        for (size_t k = 0; k < n; ++k) dst[k] = sp_fix_to_float(q[k]);
        return;
    }
    for (size_t k = 0; k < n; ++k) {
        const uint64_t bits = (uint64_t)q[k] + 0x4338000000000000ULL;
        double d;
        memcpy(&d, &bits, sizeof d);
        dst[k] = (float)((d - 0x1.8p52) * SP_FIX_INV_SCALE);
    }
}

void sp_fix_sum_to_float_ref(float *restrict dst, const int64_t *const *src, int nsrc, size_t n) {
    int64_t sum[FIX_BLOCK];
    for (size_t k0 = 0; k0 < n; k0 += FIX_BLOCK) {
        const size_t len = n - k0 < FIX_BLOCK ? n - k0 : FIX_BLOCK;
        const int64_t *q = src[0] + k0;
        if (nsrc > 1) {
            for (size_t k = 0; k < len; ++k) sum[k] = q[k];
            for (int j = 1; j < nsrc; ++j)
                for (size_t k = 0; k < len; ++k) sum[k] += src[j][k0 + k];
            q = sum;
        }
        fix_block_to_float_(dst + k0, q, len);
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

static atomic_int use_avx2_ = -1;

static bool avx2_(void) {
    int u = atomic_load_explicit(&use_avx2_, memory_order_relaxed);
    if (u < 0) {
        __builtin_cpu_init();
        u = __builtin_cpu_supports("avx2") ? 1 : 0;
        atomic_store_explicit(&use_avx2_, u, memory_order_relaxed);
    }
    return u;
}

int64_t sp_fix_accumulate(int64_t *restrict acc, const float *restrict g, size_t n, double limit) {
    return avx2_() ? accumulate_avx2_(acc, g, n, limit) : sp_fix_accumulate_ref(acc, g, n, limit);
}

void sp_fix_sum_to_float_n(float *restrict dst, const int64_t *const *src, int nsrc, size_t n) {
    if (avx2_())
        sum_to_float_avx2_(dst, src, nsrc, n);
    else
        sp_fix_sum_to_float_ref(dst, src, nsrc, n);
}
#else
int64_t sp_fix_accumulate(int64_t *restrict acc, const float *restrict g, size_t n, double limit) {
    return sp_fix_accumulate_ref(acc, g, n, limit);
}

void sp_fix_sum_to_float_n(float *restrict dst, const int64_t *const *src, int nsrc, size_t n) {
    sp_fix_sum_to_float_ref(dst, src, nsrc, n);
}
#endif

void sp_fix_to_float_n(float *restrict dst, const int64_t *restrict src, size_t n) {
    const int64_t *one = src;
    sp_fix_sum_to_float_n(dst, &one, 1, n);
}
