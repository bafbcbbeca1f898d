/* Max pooling 2x2, stride 2, with AVX2: the same values and argmax indices as maxpool_chunk_ in
 * pool.c (window visited in row-major order, strict > keeps the first maximum, a NaN wins and the
 * last NaN stays), 8 outputs of a row at a time. Built with -mavx2 -mfma; called only when the
 * CPU has them. */
#include "layers/pool_simd.h"

#if defined(__x86_64__) && defined(__GNUC__)

#include <immintrin.h>

/* The even and odd floats of the 16 at p (lanes valid per mlo, mhi: zeros elsewhere). */
static inline void deinterleave_(__m256 lo, __m256 hi, __m256 *even, __m256 *odd) {
    /* shuffle within 128-bit lanes: [l0 l2 h0 h2 | l4 l6 h4 h6], then put the 64-bit pairs in
     * order: [l0 l2 l4 l6 h0 h2 h4 h6] */
    *even = _mm256_castpd_ps(
        _mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(lo, hi, 0x88)), 0xD8));
    *odd = _mm256_castpd_ps(
        _mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(lo, hi, 0xDD)), 0xD8));
}

/* take = v > best || v != v; best, arg = take ? v, idx : best, arg */
static inline void step_(__m256 v, __m256i idx, __m256 *best, __m256i *arg) {
    const __m256 take =
        _mm256_or_ps(_mm256_cmp_ps(v, *best, _CMP_GT_OQ), _mm256_cmp_ps(v, v, _CMP_UNORD_Q));
    *best = _mm256_blendv_ps(*best, v, take);
    *arg = _mm256_castps_si256(
        _mm256_blendv_ps(_mm256_castsi256_ps(*arg), _mm256_castsi256_ps(idx), take));
}

/* Outputs ox0 .. ox0+7 of output row oy: the two input rows r0, r1 = r0 + w start at plane
 * index base = 2 oy w. n < 8: only the first n are stored (the loads are masked). */
static inline void chunk8_(float *y, int32_t *arg_out, const float *r0, int base, int w, int n) {
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    __m256 lo0, hi0, lo1, hi1;
    if (n == 8) {
        lo0 = _mm256_loadu_ps(r0), hi0 = _mm256_loadu_ps(r0 + 8);
        lo1 = _mm256_loadu_ps(r0 + w), hi1 = _mm256_loadu_ps(r0 + w + 8);
    } else {
        const __m256i mlo = _mm256_cmpgt_epi32(_mm256_set1_epi32(2 * n), lane);
        const __m256i mhi = _mm256_cmpgt_epi32(_mm256_set1_epi32(2 * n - 8), lane);
        lo0 = _mm256_maskload_ps(r0, mlo), hi0 = _mm256_maskload_ps(r0 + 8, mhi);
        lo1 = _mm256_maskload_ps(r0 + w, mlo), hi1 = _mm256_maskload_ps(r0 + w + 8, mhi);
    }
    __m256 v00, v01, v10, v11;
    deinterleave_(lo0, hi0, &v00, &v01);
    deinterleave_(lo1, hi1, &v10, &v11);
    const __m256i i00 = _mm256_add_epi32(_mm256_set1_epi32(base), _mm256_add_epi32(lane, lane));
    __m256 best = v00;
    __m256i arg = i00;
    step_(v01, _mm256_add_epi32(i00, _mm256_set1_epi32(1)), &best, &arg);
    step_(v10, _mm256_add_epi32(i00, _mm256_set1_epi32(w)), &best, &arg);
    step_(v11, _mm256_add_epi32(i00, _mm256_set1_epi32(w + 1)), &best, &arg);
    if (n == 8) {
        _mm256_storeu_ps(y, best);
        _mm256_storeu_si256((__m256i *)(void *)arg_out, arg);
    } else {
        _Alignas(32) float tb[8];
        _Alignas(32) int32_t ta[8];
        _mm256_store_ps(tb, best);
        _mm256_store_si256((__m256i *)(void *)ta, arg);
        for (int o = 0; o < n; ++o) y[o] = tb[o], arg_out[o] = ta[o];
    }
}

void sp_maxpool2x2_plane_avx2(float *y, int32_t *argmax, const float *plane, int w, int oh,
                              int ow) {
    for (int oy = 0; oy < oh; ++oy, y += ow, argmax += ow) {
        const int base = 2 * oy * w;
        const float *r0 = plane + base;
        if (ow < 8) {
            chunk8_(y, argmax, r0, base, w, ow);
            continue;
        }
        /* whole chunks of 8; the last one overlaps the one before (same values again) */
        for (int ox0 = 0;; ox0 += 8) {
            if (ox0 > ow - 8) ox0 = ow - 8;
            chunk8_(y + ox0, argmax + ox0, r0 + 2 * ox0, base + 2 * ox0, w, 8);
            if (ox0 == ow - 8) break;
        }
    }
}

/* dx of outputs ox0 .. ox0+7 of output row oy into input rows r0 and r0 + w: each of the 4
 * window positions gets 0 + dy where it is the argmax, else 0 (as the scalar scatter into a
 * zeroed plane: windows do not overlap). n < 8: only the first n windows are written. */
static inline void back8_(float *r0, const float *dy, const int32_t *arg, const float *q0, int base,
                          int w, int n) {
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    __m256 d;
    __m256i a;
    if (n == 8) {
        d = _mm256_loadu_ps(dy);
        a = _mm256_loadu_si256((const __m256i *)(const void *)arg);
    } else {
        const __m256i m = _mm256_cmpgt_epi32(_mm256_set1_epi32(n), lane);
        d = _mm256_maskload_ps(dy, m);
        a = _mm256_maskload_epi32(arg, m);
    }
    d = _mm256_add_ps(_mm256_setzero_ps(), d); /* 0 + dy: -0 becomes +0, as in the scatter */
    const __m256i i00 = _mm256_add_epi32(_mm256_set1_epi32(base), _mm256_add_epi32(lane, lane));
    const __m256 v00 = _mm256_and_ps(_mm256_castsi256_ps(_mm256_cmpeq_epi32(a, i00)), d);
    const __m256 v01 = _mm256_and_ps(
        _mm256_castsi256_ps(_mm256_cmpeq_epi32(a, _mm256_add_epi32(i00, _mm256_set1_epi32(1)))), d);
    const __m256 v10 = _mm256_and_ps(
        _mm256_castsi256_ps(_mm256_cmpeq_epi32(a, _mm256_add_epi32(i00, _mm256_set1_epi32(w)))), d);
    const __m256 v11 = _mm256_and_ps(
        _mm256_castsi256_ps(_mm256_cmpeq_epi32(a, _mm256_add_epi32(i00, _mm256_set1_epi32(w + 1)))),
        d);
    /* interleave (v00, v01) into row 0 and (v10, v11) into row 1: [x0 y0 x1 y1 ...] */
    const __m256 l0 = _mm256_unpacklo_ps(v00, v01), h0 = _mm256_unpackhi_ps(v00, v01);
    const __m256 l1 = _mm256_unpacklo_ps(v10, v11), h1 = _mm256_unpackhi_ps(v10, v11);
    __m256 a0 = _mm256_permute2f128_ps(l0, h0, 0x20), b0 = _mm256_permute2f128_ps(l0, h0, 0x31);
    __m256 a1 = _mm256_permute2f128_ps(l1, h1, 0x20), b1 = _mm256_permute2f128_ps(l1, h1, 0x31);
    if (q0) { /* the relu below: keep where its output q > 0 (q: the same rows of the input) */
        __m256 qa0, qb0, qa1, qb1;
        if (n == 8) {
            qa0 = _mm256_loadu_ps(q0), qb0 = _mm256_loadu_ps(q0 + 8);
            qa1 = _mm256_loadu_ps(q0 + w), qb1 = _mm256_loadu_ps(q0 + w + 8);
        } else {
            const __m256i mlo = _mm256_cmpgt_epi32(_mm256_set1_epi32(2 * n), lane);
            const __m256i mhi = _mm256_cmpgt_epi32(_mm256_set1_epi32(2 * n - 8), lane);
            qa0 = _mm256_maskload_ps(q0, mlo), qb0 = _mm256_maskload_ps(q0 + 8, mhi);
            qa1 = _mm256_maskload_ps(q0 + w, mlo), qb1 = _mm256_maskload_ps(q0 + w + 8, mhi);
        }
        const __m256 z = _mm256_setzero_ps();
        a0 = _mm256_and_ps(_mm256_cmp_ps(qa0, z, _CMP_GT_OQ), a0);
        b0 = _mm256_and_ps(_mm256_cmp_ps(qb0, z, _CMP_GT_OQ), b0);
        a1 = _mm256_and_ps(_mm256_cmp_ps(qa1, z, _CMP_GT_OQ), a1);
        b1 = _mm256_and_ps(_mm256_cmp_ps(qb1, z, _CMP_GT_OQ), b1);
    }
    if (n == 8) {
        _mm256_storeu_ps(r0, a0), _mm256_storeu_ps(r0 + 8, b0);
        _mm256_storeu_ps(r0 + w, a1), _mm256_storeu_ps(r0 + w + 8, b1);
    } else {
        _Alignas(32) float t[32];
        _mm256_store_ps(t, a0), _mm256_store_ps(t + 8, b0);
        _mm256_store_ps(t + 16, a1), _mm256_store_ps(t + 24, b1);
        for (int j = 0; j < 2 * n; ++j) r0[j] = t[j], r0[w + j] = t[16 + j];
    }
}

void sp_maxpool2x2_back_plane_avx2(float *dx, const float *dy, const int32_t *argmax,
                                   const float *r, int h, int w, int oh, int ow) {
    for (int oy = 0; oy < oh; ++oy, dy += ow, argmax += ow) {
        const int base = 2 * oy * w;
        float *r0 = dx + base;
        const float *q0 = r ? r + base : NULL;
        if (ow < 8) {
            back8_(r0, dy, argmax, q0, base, w, ow);
        } else { /* whole chunks; the last one overlaps the one before (same values again) */
            for (int ox0 = 0;; ox0 += 8) {
                if (ox0 > ow - 8) ox0 = ow - 8;
                back8_(r0 + 2 * ox0, dy + ox0, argmax + ox0, q0 ? q0 + 2 * ox0 : NULL,
                       base + 2 * ox0, w, 8);
                if (ox0 == ow - 8) break;
            }
        }
        for (int x = 2 * ow; x < w; ++x) r0[x] = r0[w + x] = 0.0f; /* a column no window covers */
    }
    for (int y = 2 * oh; y < h; ++y) /* a row no window covers */
        for (int x = 0; x < w; ++x) dx[(size_t)y * w + x] = 0.0f;
}

#else
typedef int sp_pool_avx2_unused_; /* ISO C wants a non-empty translation unit */
#endif
