/*
 * Overflow-checked size arithmetic and small integer helpers: pure, header-only, usable from
 * every layer. A size that comes from outside (a file's shape, a spec, a flag) is combined only
 * through these, so an overflow is an error message, never a wrapped allocation.
 */
#ifndef SP_UTIL_ARITH_H
#define SP_UTIL_ARITH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* *out = a * b; false (and *out unspecified) when the product overflows size_t. */
static inline bool sp_size_mul(size_t a, size_t b, size_t *out) {
#if defined(__GNUC__)
    return !__builtin_mul_overflow(a, b, out);
#else
    if (a && b > SIZE_MAX / a) return false;
    *out = a * b;
    return true;
#endif
}

/* *out = a + b; false (and *out unspecified) when the sum overflows size_t. */
static inline bool sp_size_add(size_t a, size_t b, size_t *out) {
#if defined(__GNUC__)
    return !__builtin_add_overflow(a, b, out);
#else
    if (b > SIZE_MAX - a) return false;
    *out = a + b;
    return true;
#endif
}

static inline int sp_min_int(int a, int b) {
    return a < b ? a : b;
}

/* The last index i of a[0..n) (ascending, n >= 1, a[0] <= x) with a[i] <= x: the segment that
 * holds x when a lists the segments' first elements, or x's own index in a sorted list of
 * distinct values that holds it. Binary search. */
static inline int64_t sp_last_le_i64(const int64_t *a, int64_t n, int64_t x) {
    int64_t lo = 0, hi = n - 1;
    while (lo < hi) {
        const int64_t mid = lo + (hi - lo + 1) / 2;
        if (a[mid] <= x)
            lo = mid;
        else
            hi = mid - 1;
    }
    return lo;
}

#endif
