/*
 * The machine's FP32 FMA peak, measured: every thread runs independent chains of vector FMAs
 * on registers only (no memory traffic), so the rate is bounded by the FMA pipes alone.
 *
 *   bench_fma_peak [THREADS...]     (default: 1 and every core count up to the online CPUs)
 *
 * Prints one JSON object per line: {"isa": "avx2", "threads": T, "gflops": G, "gflops_median": M}:
 * G the best and M the median of 7 runs of about 0.2 s each. The best is the peak: on a shared
 * machine other processes can only slow the loop down. The widest ISA the CPU has is used (AVX-512F, else AVX2+FMA).
 * "% of peak" in scripts/bench/run.sh is against these numbers.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <omp.h>

#include "bench_util.h"

#define RUNS   7
#define CHAINS 12 /* >= latency (4-6 cycles) x FMA pipes (2): every pipe busy every cycle */

static volatile float sink_;

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>

/* flops done by one thread: iters x CHAINS x 8 lanes x 2 */
__attribute__((target("avx2,fma"))) static double loop_avx2_(long iters) {
    __m256 acc[CHAINS];
    for (int i = 0; i < CHAINS; ++i) acc[i] = _mm256_set1_ps((float)i);
    const __m256 a = _mm256_set1_ps(0.999999f), b = _mm256_set1_ps(1e-7f);
    for (long it = 0; it < iters; ++it)
        for (int i = 0; i < CHAINS; ++i) acc[i] = _mm256_fmadd_ps(acc[i], a, b);
    float s = 0;
    for (int i = 0; i < CHAINS; ++i) s += _mm256_cvtss_f32(acc[i]);
    sink_ = s;
    return (double)iters * CHAINS * 8 * 2;
}

__attribute__((target("avx512f"))) static double loop_avx512_(long iters) {
    __m512 acc[CHAINS];
    for (int i = 0; i < CHAINS; ++i) acc[i] = _mm512_set1_ps((float)i);
    const __m512 a = _mm512_set1_ps(0.999999f), b = _mm512_set1_ps(1e-7f);
    for (long it = 0; it < iters; ++it)
        for (int i = 0; i < CHAINS; ++i) acc[i] = _mm512_fmadd_ps(acc[i], a, b);
    float s = 0;
    for (int i = 0; i < CHAINS; ++i) s += _mm512_cvtss_f32(acc[i]);
    sink_ = s;
    return (double)iters * CHAINS * 16 * 2;
}
#endif

/* Aggregate GFLOP/s of nt threads running the loop at once (wall time of the slowest). */
static double run_(const char *isa, int nt, long iters) {
    double flops = 0;
    const double t0 = bench_now();
#pragma omp parallel num_threads(nt) reduction(+ : flops)
    {
#if defined(__x86_64__) && defined(__GNUC__)
        flops += strcmp(isa, "avx512") == 0 ? loop_avx512_(iters) : loop_avx2_(iters);
#else
        (void)isa;
        (void)iters;
#endif
    }
    return flops / (bench_now() - t0) * 1e-9;
}

int main(int argc, char **argv) {
    const char *isa = "none";
#if defined(__x86_64__) && defined(__GNUC__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f"))
        isa = "avx512";
    else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        isa = "avx2";
#endif
    if (strcmp(isa, "none") == 0) {
        fprintf(stderr, "bench_fma_peak: no AVX2+FMA or AVX-512 on this CPU\n");
        return 1;
    }
    int counts[64], n = 0;
    for (int a = 1; a < argc && n < 64; ++a) counts[n++] = atoi(argv[a]);
    if (n == 0) {
        long cpus = sysconf(_SC_NPROCESSORS_ONLN);
        for (int t = 1; t <= cpus && n < 64; ++t) counts[n++] = t;
    }
    /* calibrate: about 0.2 s per run on one thread */
    long iters = 1000000;
    for (;;) {
        const double t0 = bench_now();
        run_(isa, 1, iters);
        const double dt = bench_now() - t0;
        if (dt > 0.05) {
            iters = (long)((double)iters * 0.2 / dt);
            break;
        }
        iters *= 4;
    }
    for (int c = 0; c < n; ++c) {
        if (counts[c] < 1) continue;
        double g[RUNS];
        for (int r = 0; r < RUNS; ++r) g[r] = run_(isa, counts[c], iters);
        qsort(g, RUNS, sizeof g[0], bench_cmp_double);
        printf("{\"isa\": \"%s\", \"threads\": %d, \"gflops\": %.2f, \"gflops_median\": %.2f}\n",
               isa, counts[c], g[RUNS - 1], g[RUNS / 2]);
        fflush(stdout);
    }
    return 0;
}
