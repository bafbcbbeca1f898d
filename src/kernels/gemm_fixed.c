/*
 * sp_gemm_fixed: the fixed-point weight-gradient GEMM (see gemm_fixed.h for the contract).
 *
 * Both operands are packed once per call, whole: A into MR-wide panels (K, MR), B into NR-wide
 * panels (K, NR). Threads take blocks of MCB x NCB panels of C; within a block, for each B panel
 * (in L1) the micro-kernel runs over the block's A panels (in L2), each over all K samples with
 * its int64 tile in L1, flushing the float register tile at every micro-batch boundary.
 * The tile's rows of the output are prefetched (for writing) before that pass and written after
 * it, full-width tiles by sp_gemm_fixed_store_avx2 (the int64 sums, or their floats with the
 * exact conversion of sp_fix_to_float), or, for floats, by sp_gemm_fixed_store_small_avx2 when
 * the tile's largest term bounds every sum below 2^51 (no range test per vector).
 *
 * The cost over sp_gemm is the flush: per micro-batch, 12 register vectors are converted and
 * added into the int64 tile (stores, not the restart of the FMA chains, are what it costs).
 * The variants measured against this one are in scripts/bench/README.md.
 */
#include "kernels/gemm_fixed.h"

#include <math.h>
#include <omp.h>
#include <string.h>

#include "kernels/gemm.h"
#include "kernels/isa.h"
#include "kernels/gemm_fixed_ukernel.h"
#include "kernels/gemm_ukernel.h"
#include "kernels/fixed.h"
#include "util/arith.h"

enum { MR = SP_GEMM_FIXED_MR, NR = SP_GEMM_FIXED_NR, MCB = 16, NCB = 16 };

/* One element of C, by the definition: the plain loops. */
static int64_t elem_ref_(const sp_gemm_fixed_args *a, int i, int j, int64_t *bad) {
    int64_t q = 0;
    for (int k0 = 0; k0 < a->K; k0 += a->m) {
        float v = 0.0f;
        for (int k = k0; k < sp_min_int(k0 + a->m, a->K); ++k)
            v = fmaf(a->A[(size_t)k * a->lda + i], a->B[(size_t)k * a->ldb + j], v);
        *bad += sp_fix_accumulate_ref(&q, &v, 1, a->limit);
    }
    return q;
}

static void store_(const sp_gemm_fixed_args *a, int i, int j, int64_t q) {
    const size_t o = (size_t)i * a->ldq + j;
    if (a->q)
        a->q[o] = a->add ? a->q[o] + q : q;
    else
        a->g[o] = sp_fix_to_float(q);
}

int64_t sp_gemm_fixed_ref(const sp_gemm_fixed_args *a) {
    int64_t bad = 0;
    for (int i = 0; i < a->M; ++i)
        for (int j = 0; j < a->N; ++j) store_(a, i, j, elem_ref_(a, i, j, &bad));
    return bad;
}

/* The packed A panels, rounded up to whole 64-byte lines (the B panels follow, aligned). */
static size_t a_floats_(int M, int K) {
    return ((size_t)(M + MR - 1) / MR * MR * (size_t)K + 15) & ~(size_t)15;
}

size_t sp_gemm_fixed_workspace(int M, int N, int K) {
    if (M <= 0 || N <= 0 || K <= 0) return 0;
    const size_t np = (size_t)(N + NR - 1) / NR;
    return a_floats_(M, K) + np * NR * (size_t)K;
}

#if defined(__x86_64__) && defined(__GNUC__)

/* Panel (K, w) <- n floats of each of the K rows src + k * ld, zero-padded to w. */
static void pack_(const float *src, int ld, int K, int n, int w, float *p) {
    if (n == MR && w == MR) {
        for (int k = 0; k < K; ++k, src += ld, p += MR) memcpy(p, src, MR * sizeof *p);
        return;
    }
    if (n == NR && w == NR) {
        for (int k = 0; k < K; ++k, src += ld, p += NR) memcpy(p, src, NR * sizeof *p);
        return;
    }
    for (int k = 0; k < K; ++k, src += ld, p += w) {
        memcpy(p, src, (size_t)n * sizeof *p);
        for (int j = n; j < w; ++j) p[j] = 0.0f;
    }
}

/* The tile of panels (pi, pj): the micro-kernel, then the range check and the stores. */
static int64_t tile_(const sp_gemm_fixed_args *a, const float *ap, const float *bp, int pi, int pj,
                     uint32_t lim_bits, int nmb) {
    const int K = a->K, i0 = pi * MR, j0 = pj * NR;
    const int rm = sp_min_int(MR, a->M - i0), rn = sp_min_int(NR, a->N - j0);
    _Alignas(32) int64_t q[MR * NR];
    /* The tile's rows of the output are written after the K pass: fetch them (for writing)
     * meanwhile, so that those stores do not wait on misses (the output is larger than L2; a
     * store buffer full of missing stores stalls the next tile's micro-kernel). */
    for (int r = 0; r < rm; ++r) {
        const size_t o = (size_t)(i0 + r) * a->ldq + j0;
        if (a->q) {
            __builtin_prefetch(a->q + o, 1, 3);
            if (rn > 8) __builtin_prefetch(a->q + o + 8, 1, 3); /* 128 bytes: 2 or 3 lines */
            __builtin_prefetch(a->q + o + rn - 1, 1, 3);
        } else {
            __builtin_prefetch(a->g + o, 1, 3);
            __builtin_prefetch(a->g + o + rn - 1, 1, 3);
        }
    }
    const uint32_t mx =
        sp_gemm_fixed_ukernel_avx2(K, a->m, ap + (size_t)pi * MR * K, bp + (size_t)pj * NR * K, q);
    int64_t bad = 0;
    if (mx >= lim_bits) {
        /* a term out of range or NaN (perhaps only in the padding): count it by the definition,
         * which also gives the accumulators their defined values (out-of-range terms add 0) */
        for (int r = 0; r < rm; ++r)
            for (int j = 0; j < rn; ++j)
                store_(a, i0 + r, j0 + j, elem_ref_(a, i0 + r, j0 + j, &bad));
        return bad;
    }
    const uint64_t off = (uint64_t)nmb * SP_GEMM_FIXED_MAGIC_BITS;
    if (rn == NR) {
        const size_t o = (size_t)i0 * a->ldq + j0;
        float mxf;
        memcpy(&mxf, &mx, sizeof mxf);
        /* every |sum| <= nmb (max|v| 2^40 + 1/2) < 2^51: the conversion needs no range test */
        if (!a->q && (double)nmb * mxf < 0x1p10) {
            sp_gemm_fixed_store_small_avx2(q, off, rm, a->g + o, (size_t)a->ldq);
            return 0;
        }
        sp_gemm_fixed_store_avx2(q, off, rm, a->q ? a->q + o : NULL, a->q ? NULL : a->g + o,
                                 (size_t)a->ldq, a->add);
        return 0;
    }
    for (int r = 0; r < rm; ++r) { /* a tile narrower than NR: element by element */
        const uint64_t *src = (const uint64_t *)q + r * NR;
        for (int j = 0; j < rn; ++j) store_(a, i0 + r, j0 + j, (int64_t)(src[j] - off));
    }
    return 0;
}

int64_t sp_gemm_fixed(const sp_gemm_fixed_args *a, float *work) {
    if (a->m < 1 || a->m > SP_GEMM_KC || sp_isa_active() == SP_ISA_PORTABLE) return -1;
    const int M = a->M, N = a->N, K = a->K;
    if (M <= 0 || N <= 0) return 0;
    if (K <= 0) {
        for (int i = 0; i < M; ++i)
            for (int j = 0; j < N; ++j) store_(a, i, j, 0);
        return 0;
    }
    const float flim = (float)a->limit;
    uint32_t lim_bits;
    memcpy(&lim_bits, &flim, sizeof lim_bits);
    const int mp = (M + MR - 1) / MR, np = (N + NR - 1) / NR, nmb = (K + a->m - 1) / a->m;
    const int rb = (mp + MCB - 1) / MCB, cb = (np + NCB - 1) / NCB;
    float *ap = work, *bp = work + a_floats_(M, K);
    int64_t bad = 0;
    const bool par = !omp_in_parallel() && (double)M * N * K >= (double)(1 << 19);
#pragma omp parallel if (par) reduction(+ : bad)
    {
#pragma omp for schedule(static) nowait
        for (int p = 0; p < mp; ++p)
            pack_(a->A + (size_t)p * MR, a->lda, K, sp_min_int(MR, M - p * MR), MR,
                  ap + (size_t)p * MR * K);
#pragma omp for schedule(static)
        for (int p = 0; p < np; ++p)
            pack_(a->B + (size_t)p * NR, a->ldb, K, sp_min_int(NR, N - p * NR), NR,
                  bp + (size_t)p * NR * K);
#pragma omp for schedule(dynamic, 1)
        for (int t = 0; t < rb * cb; ++t) {
            const int bi = t / cb, bj = t % cb;
            for (int pj = bj * NCB; pj < sp_min_int(np, (bj + 1) * NCB); ++pj)
                for (int pi = bi * MCB; pi < sp_min_int(mp, (bi + 1) * MCB); ++pi)
                    bad += tile_(a, ap, bp, pi, pj, lim_bits, nmb);
        }
    }
    return bad;
}

#else
int64_t sp_gemm_fixed(const sp_gemm_fixed_args *a, float *work) {
    (void)a, (void)work;
    return -1;
}
#endif
