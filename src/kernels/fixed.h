/*
 * Fixed-point sums for --deterministic training (train/deterministic.c).
 *
 * A float x is represented by the int64 q = round(x * 2^40) (round to nearest, ties to even):
 * resolution 2^-40 (about 9.1e-13), and integer addition is associative, so a sum of such values
 * is the same whatever the grouping and order (over micro-batches, threads or MPI ranks).
 *
 * Range: a term must satisfy |x| < limit, limit <= 2^11 (so |x * 2^40| < 2^51, where the
 * conversion below is exact integer arithmetic); with N terms in a sum, limit <= 2^(22 -
 * ceil(log2 N)) keeps every partial sum below 2^62 in magnitude, so no grouping can overflow
 * (sp_fix_limit). A term outside the range, or NaN/Inf, is reported, never wrapped.
 */
#ifndef SP_KERNELS_FIXED_H
#define SP_KERNELS_FIXED_H

#include <math.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define SP_FIX_FRAC_BITS 40
#define SP_FIX_SCALE     0x1p40
#define SP_FIX_INV_SCALE 0x1p-40

/* The largest |term| allowed in a sum of n terms (a power of two; see above). */
static inline double sp_fix_limit(int64_t n) {
    int bits = 0;
    while (bits < 62 && ((int64_t)1 << bits) < n) ++bits; /* ceil(log2 n) */
    int e = 22 - bits;
    if (e > 11) e = 11;
    return ldexp(1.0, e);
}

/* round(d) for |d| < 2^51, as an integer: adding 1.5 * 2^52 leaves the rounded integer in the
 * low mantissa bits (one IEEE rounding, to nearest even). Vectorizes. */
static inline int64_t sp_fix_round_(double d) {
    const double y = d + 0x1.8p52;
    int64_t i;
    memcpy(&i, &y, sizeof i);
    return i - (int64_t)0x4338000000000000LL;
}

/* acc[i] += round(g[i] * 2^40) for i < n. Returns the number of terms with |g| >= limit or
 * non-finite (those are added as 0). The plain C reference; sp_fix_accumulate (fixed.c) is the
 * same integer arithmetic, vectorized with AVX2 when the kernels' ISA allows: the same results. */
static inline int64_t sp_fix_accumulate_ref(int64_t *restrict acc, const float *restrict g,
                                            size_t n, double limit) {
    int64_t bad = 0;
    for (size_t i = 0; i < n; ++i) {
        const double d = (double)g[i] * SP_FIX_SCALE;
        const bool ok = fabs(d) < limit * SP_FIX_SCALE; /* false for NaN */
        bad += !ok;
        acc[i] += sp_fix_round_(ok ? d : 0.0);
    }
    return bad;
}

int64_t sp_fix_accumulate(int64_t *restrict acc, const float *restrict g, size_t n, double limit);

/* A sum of doubles (per-sample losses) exact in any grouping: v adds floor(v) to *hi and
 * round(frac(v) 2^32) to *lo (v - floor(v) is exact), and the sum is *hi + *lo 2^-32. The caller
 * keeps |v| times the number of terms below 2^62 and the terms below 2^31 (then *lo cannot
 * overflow either). */
static inline void sp_fix_add_double(double v, int64_t *hi, int64_t *lo) {
    const double f = floor(v);
    *hi += (int64_t)f;
    *lo += (int64_t)nearbyint((v - f) * 0x1p32);
}

/* The double value of such a sum. */
static inline double sp_fix_double_value(int64_t hi, int64_t lo) {
    return (double)hi + (double)lo * 0x1p-32;
}

/* The float nearest to q * 2^-40 (via double: deterministic, within one float rounding). */
static inline float sp_fix_to_float(int64_t q) {
    return (float)((double)q * SP_FIX_INV_SCALE);
}

/* dst[i] = sp_fix_to_float(src[0][i] + ... + src[nsrc - 1][i]) for i < n: the exact int64 sum
 * (the caller keeps it below 2^63, sp_fix_limit), converted. The one array conversion (one
 * source: nsrc = 1, e.g. (const int64_t *const[]){q}); AVX2 when the kernels' ISA allows. */
void sp_fix_sum_to_float(float *restrict dst, const int64_t *const *src, int nsrc, size_t n);
/* The same in plain C: the path without AVX2, and the oracle of the tests. */
void sp_fix_sum_to_float_ref(float *restrict dst, const int64_t *const *src, int nsrc, size_t n);

#endif
