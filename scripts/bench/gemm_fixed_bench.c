/*
 * sp_gemm_fixed (the fixed-point weight gradient of --deterministic) against the float sp_gemm of
 * the same shape (the default mode's weight gradient dW = dY^T X, beta 0), in the same run:
 * per shape, micro-batch size and thread count, the median time of each over REPS interleaved
 * repetitions (after one warm-up call each) and the median of the per-repetition ratios
 * fixed / float.
 *
 * Build and run (a CMake target, not a test):
 *   cmake --build build -j2 --target bench_gemm_fixed
 *   build/scripts/bench/bench_gemm_fixed [--reps R] [--threads "1 2"] [--m "16 32"] [--float]
 *                                        [M,N,K ...]
 *
 * --float: the fixed kernel writes the float of its sums (what one rank's training asks for)
 * instead of the int64 sums (what the allreduce of several ranks sums).
 *
 * Default shapes: the mlp-wide weight gradients (out x in, batch 256 on one rank, 128 on each of
 * two): 1024x784, 1024x1024, 10x1024 with K = 256 and 128.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <omp.h>

#include "bench_util.h"
#include "kernels/gemm.h"
#include "kernels/isa.h"
#include "kernels/gemm_fixed.h"
#include "kernels/fixed.h"

/* A deterministic fill in [lo, hi): a 64-bit LCG's top bits. */
static void fill_(float *p, size_t n, uint64_t seed, float lo, float hi) {
    uint64_t s = seed * 0x9E3779B97F4A7C15ULL + 1;
    for (size_t i = 0; i < n; ++i) {
        s = s * 6364136223846793005ULL + 1442695040888963407ULL;
        p[i] = lo + (hi - lo) * (float)(s >> 40) * 0x1p-24f;
    }
}

enum { REPS_MAX = 101 };

static void run_(int M, int N, int K, int m, int threads, int reps, bool float_out) {
    float *A = malloc(sizeof(float) * (size_t)K * M), *B = malloc(sizeof(float) * (size_t)K * N);
    float *C = malloc(sizeof(float) * (size_t)M * N), *G = malloc(sizeof(float) * (size_t)M * N);
    int64_t *q = malloc(sizeof(int64_t) * (size_t)M * N);
    float *work =
        aligned_alloc(64, (sp_gemm_fixed_workspace(M, N, K) * sizeof(float) + 63) & ~(size_t)63);
    if (!A || !B || !C || !G || !q || !work) {
        fprintf(stderr, "bench_gemm_fixed: out of memory\n");
        exit(1);
    }
    fill_(A, (size_t)K * M, 1, -1e-3f, 1e-3f); /* dY: small gradients */
    fill_(B, (size_t)K * N, 2, 0.0f, 1.0f);    /* X: activations */
    omp_set_num_threads(threads);
    const sp_gemm_fixed_args fa = {.M = M,
                                   .N = N,
                                   .K = K,
                                   .m = m,
                                   .A = A,
                                   .lda = M,
                                   .B = B,
                                   .ldb = N,
                                   .limit = sp_fix_limit((K + m - 1) / m),
                                   .q = float_out ? NULL : q,
                                   .g = float_out ? G : NULL,
                                   .ldq = N};
    sp_gemm(true, false, M, N, K, 1.0f, A, M, B, N, 0.0f, C, N);
    if (sp_gemm_fixed(&fa, work) != 0) {
        fprintf(stderr, "bench_gemm_fixed: sp_gemm_fixed declined or saw out-of-range terms\n");
        exit(1);
    }
    double tf[REPS_MAX], tx[REPS_MAX], ratio[REPS_MAX];
    for (int r = 0; r < reps; ++r) {
        double t0 = bench_now();
        sp_gemm(true, false, M, N, K, 1.0f, A, M, B, N, 0.0f, C, N);
        double t1 = bench_now();
        sp_gemm_fixed(&fa, work);
        double t2 = bench_now();
        tf[r] = t1 - t0;
        tx[r] = t2 - t1;
        ratio[r] = tx[r] / tf[r];
    }
    const double mf = bench_median(tf, reps), mx = bench_median(tx, reps),
                 mr = bench_median(ratio, reps);
    const double flops = 2.0 * M * N * K;
    printf("%5d %5d %4d %3d %2d | %9.1f %6.1f | %9.1f %6.1f | %6.3f\n", M, N, K, m, threads,
           mf * 1e6, flops / mf * 1e-9, mx * 1e6, flops / mx * 1e-9, mr);
    fflush(stdout);
    free(A), free(B), free(C), free(G), free(q), free(work);
}

/* A list of positive ints from "a b c" into v (at most nmax), or -1. */
static int ints_(const char *s, int *v, int nmax) {
    int n = 0;
    char *end;
    while (n < nmax) {
        long x = strtol(s, &end, 10);
        if (end == s) break;
        if (x <= 0) return -1;
        v[n++] = (int)x;
        s = end;
    }
    return n > 0 ? n : -1;
}

int main(int argc, char **argv) {
    int reps = 15, threads[8] = {1, 2}, nthreads = 2, ms[8] = {16, 32}, nm = 2;
    bool float_out = false;
    int shapes[64][3], nshapes = 0;
    for (int a = 1; a < argc; ++a) {
        if (strcmp(argv[a], "--reps") == 0 && a + 1 < argc) {
            reps = atoi(argv[++a]);
            if (reps < 1 || reps > REPS_MAX) {
                fprintf(stderr, "bench_gemm_fixed: --reps must be 1..%d\n", REPS_MAX);
                return 2;
            }
        } else if (strcmp(argv[a], "--float") == 0) {
            float_out = true;
        } else if (strcmp(argv[a], "--threads") == 0 && a + 1 < argc) {
            if ((nthreads = ints_(argv[++a], threads, 8)) < 0) goto bad;
        } else if (strcmp(argv[a], "--m") == 0 && a + 1 < argc) {
            if ((nm = ints_(argv[++a], ms, 8)) < 0) goto bad;
        } else if (nshapes < 64 &&
                   sscanf(argv[a], "%d,%d,%d", &shapes[nshapes][0], &shapes[nshapes][1],
                          &shapes[nshapes][2]) == 3 &&
                   shapes[nshapes][0] > 0 && shapes[nshapes][1] > 0 && shapes[nshapes][2] > 0) {
            ++nshapes;
        } else {
            goto bad;
        }
    }
    if (nshapes == 0) {
        static const int def[6][3] = {{1024, 784, 256}, {1024, 1024, 256}, {10, 1024, 256},
                                      {1024, 784, 128}, {1024, 1024, 128}, {10, 1024, 128}};
        memcpy(shapes, def, sizeof def);
        nshapes = 6;
    }
    printf("sp_gemm (trans_a, beta 0) vs sp_gemm_fixed (%s output), ISA %s, median of %d "
           "interleaved runs\n",
           float_out ? "float" : "int64", sp_isa_name(sp_isa_active()), reps);
    printf("%5s %5s %4s %3s %2s | %9s %6s | %9s %6s | %6s\n", "M", "N", "K", "m", "T", "float us",
           "GF/s", "fixed us", "GF/s", "ratio");
    for (int s = 0; s < nshapes; ++s)
        for (int i = 0; i < nm; ++i)
            for (int t = 0; t < nthreads; ++t)
                run_(shapes[s][0], shapes[s][1], shapes[s][2], ms[i], threads[t], reps, float_out);
    return 0;
bad:
    fprintf(stderr, "usage: bench_gemm_fixed [--reps R] [--threads \"1 2\"] [--m \"16 32\"] "
                    "[--float] [M,N,K ...]\n");
    return 2;
}
