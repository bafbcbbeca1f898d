/*
 * sp_gemm against sp_gemm_ref, on every ISA path this CPU has, and the determinism contract.
 *
 * Accuracy: inputs uniform in [-1, 1); the reference accumulates in double. For each element,
 *   |c - c_ref| <= (2 sqrt(K) + 5) u S,   u = 2^-24,   S = |alpha| sum_k |a_ik b_kj| + |beta c_old|
 * (the float error of K fused multiply-adds grows like sqrt(K) u S for random signs; the
 * worst-case bound is (K + 2) u S; the +5 covers the alpha/beta roundings and the rounding of
 * c_ref to float). A wrong, missing or doubled term is of order |a b| ~ 0.25, far above this.
 * Also: old C ignored when beta == 0 (C filled with NaN), A/B padding columns (NaN) never read,
 * C padding columns (sentinel) never written.
 *
 * Bitwise: every ISA path gives the same bits as the portable one (same K blocks, one fused
 * multiply-add per step: see src/kernels/gemm.c); C does not depend on the thread count (1-4),
 * on being called inside a parallel region, or on the position of a sub-block (small path).
 */
#include "testutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <omp.h>

#include "kernels/gemm.h"
#include "kernels/isa.h"

#define SENTINEL 12345.0f

/* A (rows, cols) matrix with leading dimension ld: values in [-1, 1), padding columns NaN. */
static float *matrix_(int rows, int cols, int ld, uint64_t seed) {
    float *m = malloc(sizeof(float) * (size_t)rows * ld + sizeof(float));
    for (int i = 0; i < rows; ++i) {
        sp_test_fill(m + (size_t)i * ld, (size_t)cols, seed * 1000003u + (uint64_t)i, -1.0f, 1.0f);
        for (int j = cols; j < ld; ++j) m[(size_t)i * ld + j] = NAN;
    }
    return m;
}

typedef struct {
    bool ta, tb;
    int M, N, K, pad;
    float alpha, beta;
    float *A, *B, *C0; /* C0: the C before the call, padding = SENTINEL */
    int lda, ldb, ldc;
} case_;

static void case_init_(case_ *t, bool ta, bool tb, int M, int N, int K, int pad, float alpha,
                       float beta, uint64_t seed) {
    *t = (case_){ta, tb, M, N, K, pad, alpha, beta, NULL, NULL, NULL, 0, 0, 0};
    t->lda = (ta ? M : K) + pad;
    t->ldb = (tb ? K : N) + pad;
    t->ldc = N + pad;
    t->A = matrix_(ta ? K : M, ta ? M : K, t->lda, seed);
    t->B = matrix_(tb ? N : K, tb ? K : N, t->ldb, seed + 1);
    t->C0 = matrix_(M, N, t->ldc, seed + 2);
    for (int i = 0; i < M; ++i)
        for (int j = 0; j < t->ldc; ++j)
            if (j >= N || beta == 0.0f) t->C0[(size_t)i * t->ldc + j] = j >= N ? SENTINEL : NAN;
}

static void case_free_(case_ *t) {
    free(t->A);
    free(t->B);
    free(t->C0);
}

static float *c_copy_(const case_ *t) {
    size_t n = (size_t)t->M * t->ldc;
    float *c = malloc(sizeof(float) * n);
    memcpy(c, t->C0, sizeof(float) * n);
    return c;
}

static float *run_(const case_ *t) {
    float *c = c_copy_(t);
    sp_gemm(t->ta, t->tb, t->M, t->N, t->K, t->alpha, t->A, t->lda, t->B, t->ldb, t->beta, c,
            t->ldc);
    return c;
}

static float op_a_(const case_ *t, int i, int k) {
    return t->ta ? t->A[(size_t)k * t->lda + i] : t->A[(size_t)i * t->lda + k];
}

static float op_b_(const case_ *t, int k, int j) {
    return t->tb ? t->B[(size_t)j * t->ldb + k] : t->B[(size_t)k * t->ldb + j];
}

/* The worst |c - c_ref| / (u S) over the case; NAN (a failure) if any element breaks the
 * tolerance, is not finite, or a padding column changed. */
static double check_accuracy_(const case_ *t, const float *c, const float *cref) {
    const double u = 0x1p-24, tol = 2.0 * sqrt((double)t->K) + 5.0;
    double worst = 0.0;
    for (int i = 0; i < t->M; ++i) {
        for (int j = 0; j < t->ldc; ++j) {
            size_t x = (size_t)i * t->ldc + j;
            if (j >= t->N) {
                if (c[x] != SENTINEL) return NAN;
                continue;
            }
            double s = t->beta == 0.0f ? 0.0 : fabs((double)t->beta * t->C0[x]);
            for (int k = 0; k < t->K; ++k)
                s += fabs((double)t->alpha * op_a_(t, i, k) * op_b_(t, k, j));
            double ratio = fabs((double)c[x] - cref[x]) / (u * fmax(s, 1e-30));
            if (!isfinite(c[x]) || !(ratio <= tol)) return NAN;
            if (ratio > worst) worst = ratio;
        }
    }
    return worst;
}

static bool available_[3];
/* SHARDPROP_TEST_SMALL=1 (scripts/valgrind.sh): the same edge shapes, the large ones left out */
static bool small_;

/* Every shape, trans combination and beta, on every ISA: vs the reference, and bitwise vs the
 * portable path. */
static void test_accuracy_(void) {
    static const int shapes[][3] = {{1, 1, 1},      {1, 1, 7},     {1, 33, 17},    {17, 1, 33},
                                    {3, 7, 1},      {7, 3, 65},    {6, 16, 256},   {12, 32, 256},
                                    {13, 17, 257},  {31, 33, 31},  {33, 65, 7},    {65, 31, 513},
                                    {17, 31, 3000}, {1, 65, 3000}, {100, 67, 300}, {129, 130, 64}};
    static const float betas[] = {0.0f, 1.0f, 0.5f}, alphas[] = {1.0f, -0.75f, 1.5f};
    const int nshapes = (int)(sizeof shapes / sizeof shapes[0]);
    double worst[3] = {0, 0, 0};
    int n = 0;
    for (int s = 0; s < nshapes; ++s) {
        if (small_ && (long)shapes[s][0] * shapes[s][1] * shapes[s][2] > 300000) continue;
        for (int tr = 0; tr < 4; ++tr) {
            for (int b = 0; b < 3; ++b, ++n) {
                case_ t;
                case_init_(&t, tr & 1, tr & 2, shapes[s][0], shapes[s][1], shapes[s][2],
                           n % 2 ? 0 : 3 + n % 5, alphas[(b + tr) % 3], betas[b], (uint64_t)n);
                float *cref = c_copy_(&t);
                sp_gemm_ref(t.ta, t.tb, t.M, t.N, t.K, t.alpha, t.A, t.lda, t.B, t.ldb, t.beta,
                            cref, t.ldc);
                float *c0 = NULL;
                for (int isa = 0; isa < 3; ++isa) {
                    if (!available_[isa]) continue;
                    sp_isa_set((sp_isa)isa);
                    float *c = run_(&t);
                    double w = check_accuracy_(&t, c, cref);
                    CHECK(!isnan(w), "%s ta=%d tb=%d M=%d N=%d K=%d alpha=%g beta=%g pad=%d",
                          sp_isa_name((sp_isa)isa), t.ta, t.tb, t.M, t.N, t.K, t.alpha, t.beta,
                          t.pad);
                    if (w > worst[isa]) worst[isa] = w;
                    if (!c0) {
                        c0 = c;
                        continue;
                    }
                    CHECK(memcmp(c, c0, sizeof(float) * (size_t)t.M * t.ldc) == 0,
                          "%s != portable bitwise: ta=%d tb=%d M=%d N=%d K=%d beta=%g",
                          sp_isa_name((sp_isa)isa), t.ta, t.tb, t.M, t.N, t.K, t.beta);
                    free(c);
                }
                free(c0);
                free(cref);
                case_free_(&t);
            }
        }
    }
    for (int isa = 0; isa < 3; ++isa)
        if (available_[isa])
            printf("gemm: %s: %d cases, worst |c - ref| / (u S) = %.2f\n", sp_isa_name((sp_isa)isa),
                   n, worst[isa]);
}

/* alpha == 0 or K == 0: C = beta C, A and B not read (NaN here). */
static void test_degenerate_(void) {
    float nan_ab[4] = {NAN, NAN, NAN, NAN};
    for (int isa = 0; isa < 3; ++isa) {
        if (!available_[isa]) continue;
        sp_isa_set((sp_isa)isa);
        float c[4] = {1.0f, -2.0f, 3.0f, NAN};
        sp_gemm(false, false, 2, 2, 2, 0.0f, nan_ab, 2, nan_ab, 2, 0.5f, c, 2);
        CHECK(c[0] == 0.5f && c[1] == -1.0f && c[2] == 1.5f && isnan(c[3]), "%s alpha=0",
              sp_isa_name((sp_isa)isa));
        sp_gemm(false, false, 2, 2, 0, 1.0f, nan_ab, 1, nan_ab, 2, 0.0f, c, 2);
        CHECK(c[0] == 0.0f && c[1] == 0.0f && c[2] == 0.0f && c[3] == 0.0f, "%s K=0 beta=0",
              sp_isa_name((sp_isa)isa));
    }
}

/* Same bits for 1..4 threads, inside a parallel region, and for a sub-block computed alone
 * (the small single-thread path, at a tile offset that is no multiple of MR or NR). */
static void test_determinism_(void) {
    static const int shapes[][3] = {
        {131, 67, 300}, {67, 259, 517}, {200, 45, 1000}, {45, 300, 600}};
    const int saved = omp_get_max_threads();
    for (int isa = 0; isa < 3; ++isa) {
        if (!available_[isa]) continue;
        sp_isa_set((sp_isa)isa);
        const char *name = sp_isa_name((sp_isa)isa);
        for (int s = 0; s < (small_ ? 2 : 4); ++s) {
            case_ t;
            case_init_(&t, s & 1, s & 2, shapes[s][0], shapes[s][1], shapes[s][2], s + 1, 0.75f,
                       s % 2 ? 0.0f : 0.5f, 100u + (uint64_t)s);
            const size_t bytes = sizeof(float) * (size_t)t.M * t.ldc;
            omp_set_num_threads(1);
            float *c1 = run_(&t);
            for (int nt = 2; nt <= (small_ ? 2 : 4); ++nt) {
                omp_set_num_threads(nt);
                CHECK(sp_gemm_plan_threads(t.M, t.N, t.K) > 1, "%s M=%d N=%d K=%d not threaded",
                      name, t.M, t.N, t.K);
                float *c = run_(&t);
                CHECK(memcmp(c, c1, bytes) == 0, "%s M=%d N=%d K=%d: %d threads != 1 thread", name,
                      t.M, t.N, t.K, nt);
                free(c);
            }
            omp_set_num_threads(2);
            float *cin[2] = {c_copy_(&t), c_copy_(&t)};
            int planned[2] = {0, 0};
#pragma omp parallel num_threads(2)
            {
                int me = omp_get_thread_num();
                planned[me] = sp_gemm_plan_threads(t.M, t.N, t.K);
                sp_gemm(t.ta, t.tb, t.M, t.N, t.K, t.alpha, t.A, t.lda, t.B, t.ldb, t.beta, cin[me],
                        t.ldc);
            }
            for (int me = 0; me < 2; ++me) {
                CHECK(planned[me] == 1, "%s: %d threads planned inside a parallel region", name,
                      planned[me]);
                CHECK(memcmp(cin[me], c1, bytes) == 0, "%s M=%d N=%d K=%d: inside parallel differs",
                      name, t.M, t.N, t.K);
                free(cin[me]);
            }
            /* Rows r0.., columns j0.. alone: a small problem (one thread) at an odd offset. */
            const int r0 = 5, m = 9, j0 = 3, n = 21;
            CHECK(sp_gemm_plan_threads(m, n, t.K) == 1, "sub-block should take the small path");
            float *cs = c_copy_(&t);
            const float *As = t.ta ? t.A + r0 : t.A + (size_t)r0 * t.lda;
            const float *Bs = t.tb ? t.B + (size_t)j0 * t.ldb : t.B + j0;
            sp_gemm(t.ta, t.tb, m, n, t.K, t.alpha, As, t.lda, Bs, t.ldb, t.beta,
                    cs + (size_t)r0 * t.ldc + j0, t.ldc);
            bool same = true;
            for (int i = r0; i < r0 + m; ++i)
                same &= memcmp(cs + (size_t)i * t.ldc + j0, c1 + (size_t)i * t.ldc + j0,
                               sizeof(float) * (size_t)n) == 0;
            CHECK(same, "%s M=%d N=%d K=%d: sub-block alone differs", name, t.M, t.N, t.K);
            free(cs);
            free(c1);
            case_free_(&t);
        }
    }
    omp_set_num_threads(saved);
}

int main(void) {
    small_ = getenv("SHARDPROP_TEST_SMALL") && atoi(getenv("SHARDPROP_TEST_SMALL"));
    const sp_isa start = sp_isa_active();
    printf("gemm: best ISA %s, in use %s\n", sp_isa_name(sp_isa_best()), sp_isa_name(start));
    for (int isa = 0; isa < 3; ++isa) {
        const sp_isa before = sp_isa_active();
        available_[isa] = sp_isa_set((sp_isa)isa);
        if (!available_[isa]) {
            printf("gemm: SKIP %s (CPU lacks it)\n", sp_isa_name((sp_isa)isa));
            CHECK(sp_isa_active() == before, "a refused set_isa changed the ISA");
        }
    }
    CHECK(available_[SP_ISA_PORTABLE], "portable must always be available");
    test_accuracy_();
    test_degenerate_();
    test_determinism_();
    return sp_test_summary("gemm");
}
