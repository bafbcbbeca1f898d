/*
 * Private to kernels/fixed.c and kernels/gemm_fixed_avx2.c: kernels/fixed.h's conversion of int64
 * fixed-point values back to float, four lanes at a time with AVX2 (callers are AVX2 code).
 */
#ifndef SP_KERNELS_FIXED_AVX2_H
#define SP_KERNELS_FIXED_AVX2_H

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#include <stdint.h>

/* d[l] = sp_fix_to_float(x[l]) for 4 lanes with |x[l]| < 2^51, given b = x + 0x4338000000000000,
 * the bits of the double 1.5 * 2^52 + x: in (2^52, 2^53) the ulp is 1, so those are the bits of
 * 1.5 * 2^52 plus x as an integer, and subtracting 1.5 * 2^52 as a double is exact (AVX2 has no
 * int64 -> double conversion). The double is then x itself, scaled exactly by 2^-40 and rounded
 * once to float. A caller that subtracts a constant from x folds it into the bias. */
__attribute__((target("avx2"), always_inline)) static inline void
sp_fix_biased_to_float4_avx2(float *d, __m256i b) {
    const __m256d v = _mm256_sub_pd(_mm256_castsi256_pd(b), _mm256_set1_pd(0x1.8p52));
    _mm_storeu_ps(d, _mm256_cvtpd_ps(_mm256_mul_pd(v, _mm256_set1_pd(0x1p-40))));
}

/* d[l] = sp_fix_to_float(x[l]) for the 4 lanes, bit for bit: the above when every |x| < 2^51,
 * else cvtsi2sd, the conversion of sp_fix_to_float. */
__attribute__((target("avx2"), always_inline)) static inline void sp_fix_to_float4_avx2(float *d,
                                                                                        __m256i x) {
    /* all |x| < 2^51 <=> x + 2^51 in [0, 2^52) as unsigned */
    if (__builtin_expect(_mm256_testz_si256(_mm256_add_epi64(x, _mm256_set1_epi64x(1LL << 51)),
                                            _mm256_set1_epi64x(~((1LL << 52) - 1))),
                         1)) {
        sp_fix_biased_to_float4_avx2(d,
                                     _mm256_add_epi64(x, _mm256_set1_epi64x(0x4338000000000000LL)));
        return;
    }
    int64_t t[4];
    _mm256_storeu_si256((__m256i *)(void *)t, x);
    for (int l = 0; l < 4; ++l) d[l] = (float)((double)t[l] * 0x1p-40);
}
#endif

#endif
