/*
 * sp_gemm_fixed (the fixed-point weight-gradient GEMM of --deterministic) against its oracle
 * sp_gemm_fixed_ref, and against the definition it replaces: one sp_gemm per micro-batch then
 * sp_fix_accumulate_ref. Bitwise (the int64 sums and their floats), for edge shapes (M, N not
 * multiples of the 6 x 16 tile, K not a multiple of m, K < m, m = 1 and m = SP_GEMM_KC), padded
 * leading dimensions, 1-3 threads and inside a parallel region, values whose products round
 * (scales down to 2^-30, so round(v 2^40) rounds, ties included), terms out of range or NaN
 * (counted, adding 0, exactly as the oracle), and sums of 2^11 and more (|q| >= 2^51, whose float
 * output cannot take the vector int64 -> double conversion).
 */
#include "testutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <omp.h>

#include "kernels/gemm.h"
#include "kernels/isa.h"
#include "kernels/gemm_fixed.h"
#include "kernels/gemm_ukernel.h"
#include "kernels/fixed.h"

/* (rows, cols) with row stride ld, values in [-1, 1) times 2^-s with s cycling over 0..30 per
 * column; padding NaN (never read). */
static float *matrix_(int rows, int cols, int ld, uint64_t seed, bool scaled) {
    float *m = malloc(sizeof(float) * ((size_t)rows * ld + 1));
    for (int i = 0; i < rows; ++i) {
        sp_test_fill(m + (size_t)i * ld, (size_t)cols, seed * 1000003u + (uint64_t)i, -1.0f, 1.0f);
        for (int j = 0; j < cols; ++j)
            if (scaled) m[(size_t)i * ld + j] = ldexpf(m[(size_t)i * ld + j], -(j * 7 % 31));
        for (int j = cols; j < ld; ++j) m[(size_t)i * ld + j] = NAN;
    }
    return m;
}

/* The per-micro-batch definition of train/deterministic.c before sp_gemm_fixed. */
static int64_t old_(const sp_gemm_fixed_args *a, int64_t *q) {
    float *s = malloc(sizeof(float) * (size_t)a->M * a->N);
    memset(q, 0, sizeof(int64_t) * (size_t)a->M * a->N);
    int64_t bad = 0;
    for (int k0 = 0; k0 < a->K; k0 += a->m) {
        const int k = a->K - k0 < a->m ? a->K - k0 : a->m;
        sp_gemm(true, false, a->M, a->N, k, 1.0f, a->A + (size_t)k0 * a->lda, a->lda,
                a->B + (size_t)k0 * a->ldb, a->ldb, 0.0f, s, a->N);
        bad += sp_fix_accumulate_ref(q, s, (size_t)a->M * a->N, a->limit);
    }
    free(s);
    return bad;
}

static int ncase = 0;

static void check_case(int M, int N, int K, int m, int pad, bool scaled, int poison) {
    ++ncase;
    const int lda = M + pad, ldb = N + pad;
    float *A = matrix_(K, M, lda, (uint64_t)ncase * 2 + 1, scaled);
    float *B = matrix_(K, N, ldb, (uint64_t)ncase * 2 + 2, scaled);
    if (poison == 1) A[(size_t)(K / 2) * lda + M / 2] = 1e30f; /* a term out of range */
    if (poison == 2) B[(size_t)(K - 1) * ldb + N - 1] = NAN;
    if (poison == 4) /* sums near 2^9 (below the bound of the float store without range test) */
        for (int k = 0; k < K; ++k) {
            for (int i = 0; i < M; ++i) A[(size_t)k * lda + i] = 3.9f;
            for (int j = 0; j < N; ++j) B[(size_t)k * ldb + j] = fabsf(B[(size_t)k * ldb + j]);
        }
    if (poison == 3) /* sums of 2^11 and more in every other row of C */
        for (int k = 0; k < K; ++k) {
            for (int i = 0; i < M; i += 2) A[(size_t)k * lda + i] = 30.0f;
            for (int j = 0; j < N; ++j)
                B[(size_t)k * ldb + j] = fabsf(B[(size_t)k * ldb + j]) + (j % 3 ? 0.5f : 0.0f);
        }
    const size_t mn = (size_t)M * N;
    int64_t *qr = malloc(sizeof(int64_t) * mn), *qf = malloc(sizeof(int64_t) * mn),
            *qo = malloc(sizeof(int64_t) * mn);
    float *gr = malloc(sizeof(float) * mn), *gf = malloc(sizeof(float) * mn);
    float *work =
        aligned_alloc(64, (sp_gemm_fixed_workspace(M, N, K) * sizeof(float) + 64) & ~(size_t)63);
    sp_gemm_fixed_args a = {.M = M,
                            .N = N,
                            .K = K,
                            .m = m,
                            .A = A,
                            .lda = lda,
                            .B = B,
                            .ldb = ldb,
                            .limit = sp_fix_limit(64),
                            .q = qr,
                            .ldq = N};
    const int64_t bad_ref = sp_gemm_fixed_ref(&a);
    const int64_t bad_old = old_(&a, qo);
    CHECK(bad_ref == bad_old && memcmp(qr, qo, sizeof(int64_t) * mn) == 0,
          "case %d (%dx%dx%d m=%d): the oracle equals one sp_gemm per micro-batch", ncase, M, N, K,
          m);
    if (poison == 3) { /* the float outputs of such sums take another conversion */
        int64_t big = 0;
        for (size_t i = 0; i < mn; ++i) big = llabs(qr[i]) > big ? llabs(qr[i]) : big;
        CHECK(big >= (int64_t)1 << 51, "case %d: some |sum| >= 2^11 (%g)", ncase,
              (double)big * 0x1p-40);
    }
    if (poison == 4) {
        int64_t big = 0;
        for (size_t i = 0; i < mn; ++i) big = llabs(qr[i]) > big ? llabs(qr[i]) : big;
        CHECK(big >= (int64_t)1 << 48, "case %d: some |sum| >= 2^8 (%g)", ncase,
              (double)big * 0x1p-40);
    }
    CHECK((poison == 1 || poison == 2) == (bad_ref > 0),
          "case %d: out-of-range terms counted (%lld)", ncase, (long long)bad_ref);
    for (int t = 1; t <= 3; ++t) {
        omp_set_num_threads(t);
        memset(qf, 0x5a, sizeof(int64_t) * mn);
        a.q = qf;
        const int64_t bad = sp_gemm_fixed(&a, work);
        CHECK(bad == bad_ref && memcmp(qf, qr, sizeof(int64_t) * mn) == 0,
              "case %d (%dx%dx%d m=%d pad=%d scaled=%d poison=%d) %d threads: int64 sums equal "
              "the oracle (bad %lld vs %lld)",
              ncase, M, N, K, m, pad, scaled, poison, t, (long long)bad, (long long)bad_ref);
    }
    /* add: the sums go on top of what q holds (gradient accumulation over micro-steps) */
    for (int ref = 0; ref < 2; ++ref) {
        for (size_t i = 0; i < mn; ++i) qf[i] = (int64_t)(i * 7919) - 100000;
        a.q = qf, a.add = true;
        const int64_t bad = ref ? sp_gemm_fixed_ref(&a) : sp_gemm_fixed(&a, work);
        a.add = false;
        size_t wrong = 0;
        for (size_t i = 0; i < mn; ++i) wrong += qf[i] != qr[i] + (int64_t)(i * 7919) - 100000;
        CHECK(bad == bad_ref && wrong == 0, "case %d: %s with add adds the sums (%zu wrong)", ncase,
              ref ? "sp_gemm_fixed_ref" : "sp_gemm_fixed", wrong);
    }
    omp_set_num_threads(2);
    int64_t bad_in = -2;
#pragma omp parallel num_threads(2)
    {
#pragma omp single
        bad_in = sp_gemm_fixed(&a, work);
    }
    CHECK(bad_in == bad_ref && memcmp(qf, qr, sizeof(int64_t) * mn) == 0,
          "case %d: inside a parallel region", ncase);
    a.q = NULL, a.g = gr;
    sp_gemm_fixed_ref(&a);
    a.g = gf;
    sp_gemm_fixed(&a, work);
    CHECK(memcmp(gf, gr, sizeof(float) * mn) == 0, "case %d: float outputs equal", ncase);
    free(A), free(B), free(qr), free(qf), free(qo), free(gr), free(gf), free(work);
}

int main(void) {
    if (sp_isa_best() == SP_ISA_PORTABLE) {
        /* the kernel declines (the caller then uses the per-micro-batch path) */
        sp_gemm_fixed_args a = {.M = 1, .N = 1, .K = 1, .m = 1};
        CHECK(sp_gemm_fixed(&a, NULL) == -1, "no AVX2: sp_gemm_fixed declines");
        return sp_test_summary("gemm_fixed");
    }
    check_case(6, 16, 16, 16, 0, false, 0);
    check_case(7, 17, 33, 16, 3, false, 0);
    check_case(100, 70, 256, 16, 0, true, 0);
    check_case(130, 300, 100, 7, 5, true, 0);
    check_case(5, 9, 3, 16, 0, true, 0);   /* K < m */
    check_case(13, 40, 50, 1, 1, true, 0); /* m = 1 */
    check_case(20, 33, 300, SP_GEMM_KC, 0, true, 0);
    check_case(97, 250, 64, 8, 0, false, 1);  /* a term out of range */
    check_case(12, 32, 40, 16, 2, false, 2);  /* NaN */
    check_case(200, 520, 48, 16, 0, true, 0); /* several blocks of panels per thread */
    check_case(13, 50, 128, 16, 1, false, 3); /* sums of 2^11 and more (their float output) */
    check_case(12, 48, 256, 16, 0, false, 4); /* sums near 2^9: the store without range test */
    /* ties: products of powers of two that land exactly on half of 2^-40 */
    {
        ++ncase;
        const int M = 6, N = 16, K = 4;
        float A[4 * 6], B[4 * 16];
        for (int i = 0; i < 4 * 6; ++i) A[i] = ldexpf(1.0f, -20 - i % 3);
        for (int i = 0; i < 4 * 16; ++i) B[i] = ldexpf(i % 2 ? 1.0f : 3.0f, -21 - i % 5);
        int64_t qr[96], qf[96];
        float *work = aligned_alloc(64, (sp_gemm_fixed_workspace(M, N, K) * 4 + 64) & ~(size_t)63);
        sp_gemm_fixed_args a = {.M = M,
                                .N = N,
                                .K = K,
                                .m = 1,
                                .A = A,
                                .lda = M,
                                .B = B,
                                .ldb = N,
                                .limit = 2048,
                                .q = qr,
                                .ldq = N};
        sp_gemm_fixed_ref(&a);
        a.q = qf;
        sp_gemm_fixed(&a, work);
        CHECK(memcmp(qf, qr, sizeof qr) == 0, "ties round to even as the oracle");
        free(work);
    }
    {
        sp_gemm_fixed_args a = {.M = 1, .N = 1, .K = 1, .m = SP_GEMM_KC + 1};
        CHECK(sp_gemm_fixed(&a, NULL) == -1, "m > SP_GEMM_KC: sp_gemm_fixed declines");
        CHECK(sp_isa_set(SP_ISA_PORTABLE), "portable ISA");
        a.m = 16;
        CHECK(sp_gemm_fixed(&a, NULL) == -1, "SHARDPROP_GEMM_ISA=portable: sp_gemm_fixed declines");
        sp_isa_set(sp_isa_best());
    }
    return sp_test_summary("gemm_fixed");
}
