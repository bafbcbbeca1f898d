/*
 * sp_gemm throughput: GFLOP/s (median of 7 runs) per ISA path and thread count, for square
 * sizes and the products of an MLP layer (batch 256, 784 -> 1024), plus the FMA peak of one
 * core measured by a register-only FMA loop.
 *
 * Build and run (a CMake target, not a test):
 *   cmake -S . -B build && cmake --build build -j2 --target bench_gemm
 *   build/tests/bench_gemm [isa ...]        (isa: portable avx2 avx512; default: all the CPU has)
 *
 * Shapes mode (used by scripts/bench/run.sh), the best ISA, one JSON line per shape and count:
 *   build/tests/bench_gemm --json --threads "1 2" LABEL:TA,TB,M,N,K ...
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <omp.h>

#include "bench_util.h"
#include "kernels/gemm.h"
#include "kernels/isa.h"

#define RUNS 7

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>

/* 12 independent chains of 8-lane FMAs: enough to fill two FMA pipes of latency <= 6. */
__attribute__((target("avx2,fma"))) static double fma_peak_avx2_(long iters) {
    __m256 acc[12];
    for (int i = 0; i < 12; ++i) acc[i] = _mm256_set1_ps((float)i);
    const __m256 a = _mm256_set1_ps(0.999999f), b = _mm256_set1_ps(1e-7f);
    double t0 = bench_now();
    for (long it = 0; it < iters; ++it)
        for (int i = 0; i < 12; ++i) acc[i] = _mm256_fmadd_ps(acc[i], a, b);
    double dt = bench_now() - t0;
    float sink = 0;
    for (int i = 0; i < 12; ++i) sink += _mm256_cvtss_f32(acc[i]);
    if (sink == 12345.0f) printf(" ");
    return (double)iters * 12 * 8 * 2 / dt * 1e-9;
}
#endif

/* Median GFLOP/s of C (M, N) = op(A) op(B), one warm-up call first. */
static double bench_(bool ta, bool tb, int M, int N, int K) {
    float *A = malloc(sizeof(float) * (size_t)M * K), *B = malloc(sizeof(float) * (size_t)K * N),
          *C = malloc(sizeof(float) * (size_t)M * N);
    for (size_t i = 0; i < (size_t)M * K; ++i) A[i] = (float)(i % 7) * 0.25f - 0.75f;
    for (size_t i = 0; i < (size_t)K * N; ++i) B[i] = (float)(i % 5) * 0.25f - 0.5f;
    memset(C, 0, sizeof(float) * (size_t)M * N);
    const int lda = ta ? M : K, ldb = tb ? K : N;
    double g[RUNS];
    sp_gemm(ta, tb, M, N, K, 1.0f, A, lda, B, ldb, 0.0f, C, N);
    for (int r = 0; r < RUNS; ++r) {
        double t0 = bench_now();
        sp_gemm(ta, tb, M, N, K, 1.0f, A, lda, B, ldb, 0.0f, C, N);
        g[r] = 2.0 * M * N * K / (bench_now() - t0) * 1e-9;
    }
    qsort(g, RUNS, sizeof g[0], bench_cmp_double);
    free(A);
    free(B);
    free(C);
    return g[RUNS / 2];
}

/* --json --threads "T..." LABEL:TA,TB,M,N,K ... */
static int shapes_main_(int argc, char **argv) {
    int threads[16], nthreads = 0;
    for (int a = 1; a < argc; ++a) {
        if (strcmp(argv[a], "--json") == 0) continue;
        if (strcmp(argv[a], "--threads") == 0 && a + 1 < argc) {
            char *s = argv[++a], *end;
            while (nthreads < 16) {
                long t = strtol(s, &end, 10);
                if (end == s) break;
                if (t > 0) threads[nthreads++] = (int)t;
                s = end;
            }
            continue;
        }
        char label[128];
        int ta, tb, M, N, K;
        if (sscanf(argv[a], "%127[^:]:%d,%d,%d,%d,%d", label, &ta, &tb, &M, &N, &K) != 6) {
            fprintf(stderr, "bench_gemm: bad shape '%s' (want LABEL:TA,TB,M,N,K)\n", argv[a]);
            return 2;
        }
        if (nthreads == 0) threads[nthreads++] = 1;
        for (int t = 0; t < nthreads; ++t) {
            omp_set_num_threads(threads[t]);
            const double g = bench_(ta != 0, tb != 0, M, N, K);
            printf("{\"framework\": \"shardprop\", \"isa\": \"%s\", \"label\": \"%s\", "
                   "\"ta\": %d, \"tb\": %d, \"M\": %d, \"N\": %d, \"K\": %d, "
                   "\"threads\": %d, \"gflops\": %.2f}\n",
                   sp_isa_name(sp_isa_active()), label, ta, tb, M, N, K, threads[t], g);
            fflush(stdout);
        }
    }
    return 0;
}

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "--json") == 0) return shapes_main_(argc, argv);
    static const struct {
        const char *name;
        bool ta, tb;
        int M, N, K;
    } cases[] = {
        {"square 256", false, false, 256, 256, 256},
        {"square 512", false, false, 512, 512, 512},
        {"square 1024", false, false, 1024, 1024, 1024},
        {"mlp fwd  Y = X W^T   256x1024x784", false, true, 256, 1024, 784},
        {"mlp bwd dX = dY W    256x784x1024", false, false, 256, 784, 1024},
        {"mlp bwd dW = dY^T X 1024x784x256", true, false, 1024, 784, 256},
    };
#if defined(__x86_64__) && defined(__GNUC__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
        double p[RUNS];
        for (int r = 0; r < RUNS; ++r) p[r] = fma_peak_avx2_(20000000L);
        qsort(p, RUNS, sizeof p[0], bench_cmp_double);
        printf("AVX2 FMA peak, one core: %.1f GFLOP/s (median of %d)\n", p[RUNS / 2], RUNS);
    }
#endif
    for (int isa = SP_ISA_PORTABLE; isa <= SP_ISA_AVX512; ++isa) {
        const char *name = sp_isa_name((sp_isa)isa);
        bool wanted = argc < 2;
        for (int a = 1; a < argc; ++a) wanted |= strcmp(argv[a], name) == 0;
        if (!wanted) continue;
        if (!sp_isa_set((sp_isa)isa)) {
            printf("%s: SKIP (CPU lacks it)\n", name);
            continue;
        }
        printf("%-8s %-36s %10s %10s\n", name, "GFLOP/s (median)", "1 thread", "2 threads");
        for (size_t c = 0; c < sizeof cases / sizeof cases[0]; ++c) {
            double g[2];
            for (int nt = 1; nt <= 2; ++nt) {
                omp_set_num_threads(nt);
                g[nt - 1] = bench_(cases[c].ta, cases[c].tb, cases[c].M, cases[c].N, cases[c].K);
            }
            printf("%-8s %-36s %10.1f %10.1f\n", name, cases[c].name, g[0], g[1]);
            fflush(stdout);
        }
    }
    return 0;
}
