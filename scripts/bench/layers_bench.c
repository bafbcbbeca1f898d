/*
 * Per-layer times of the cnn workload's training step (forward and backward of every layer, batch
 * 128, 1x28x28 input), calling the layer kernels directly: where a step's time goes, without a
 * profiler. Process CPU time, the minimum and the median over the repetitions (the minimum is the
 * least disturbed by other processes on a shared machine), in microseconds per call and per
 * sample.
 *
 * Then the causal attention core (sp_attention_forward / _backward) at two GPT-like shapes,
 * B=8 T=128 C=128 H=4 and B=4 T=256 C=256 H=8: median times and GFLOP/s, counting the forward
 * as 4 B H (T (T+1) / 2) hs flops (q k^T and P v over the causal half) and the backward as 2.5
 * times that (S recomputed, dP = dy v^T, dq, dk, dv: five products to the forward's two).
 *
 *   cmake --build build -j2 --target bench_layers
 *   build/tests/bench_layers [reps] [batch]        (default 15, 128; run with OMP_NUM_THREADS)
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench_util.h"
#include "layers/layers.h"

/* CPU time of the process (all its threads): time spent descheduled by other processes on a
 * shared machine does not count; with several threads it includes their spin-waiting. */
static float *fill_(size_t n, unsigned seed) {
    float *p = aligned_alloc(64, ((n * sizeof(float)) + 63) & ~(size_t)63);
    if (!p) {
        fprintf(stderr, "bench_layers: out of memory\n");
        exit(1);
    }
    uint32_t s = seed * 2654435761u + 1;
    for (size_t i = 0; i < n; ++i) {
        s = s * 1664525u + 1013904223u;
        p[i] = (float)((double)(s >> 8) / (double)(1u << 24) - 0.5);
    }
    return p;
}

enum { NSTAGE = 12, MAXREP = 101 };
static const char *names_[NSTAGE] = {
    "conv1+relu+pool fwd", "conv2+relu+pool fwd", "dense1 fwd",     "relu3 fwd",
    "dense2 fwd",          "dense2 bwd",          "relu3 bwd",      "dense1 bwd",
    "pool2+relu bwd",      "conv2 bwd",           "pool1+relu bwd", "conv1 bwd (no dx)"};

/* Median times of the attention core's forward and backward over reps calls (two warm-up). */
static void bench_attention_(int reps) {
    static const int shapes[][4] = {{8, 128, 128, 4}, {4, 256, 256, 8}};
    printf("\n%-22s %12s %8s %12s %8s %10s\n", "attention B,T,C,H", "fwd med us", "GFLOP/s",
           "bwd med us", "GFLOP/s", "fwd+bwd");
    for (size_t c = 0; c < sizeof shapes / sizeof shapes[0]; ++c) {
        const int B = shapes[c][0], T = shapes[c][1], C = shapes[c][2], H = shapes[c][3];
        const size_t n3 = (size_t)B * T * 3 * C, n1 = (size_t)B * T * C;
        float *qkv = fill_(n3, 20), *dy = fill_(n1, 21), *y = fill_(n1, 0), *dqkv = fill_(n3, 0);
        float *lse = fill_((size_t)B * H * T, 0);
        float *ws = fill_(sp_attention_scratch_floats(B, T, C, H), 0);
        double tf[MAXREP], tb[MAXREP];
        for (int r = -2; r < reps; ++r) {
            const double t0 = bench_now();
            sp_attention_forward(y, lse, ws, qkv, B, T, C, H);
            const double t1 = bench_now();
            sp_attention_backward(dqkv, ws, dy, qkv, y, lse, B, T, C, H);
            const double t2 = bench_now();
            if (r >= 0) tf[r] = t1 - t0, tb[r] = t2 - t1;
        }
        const double flop = 4.0 * B * H * (T * (T + 1) / 2.0) * (C / H);
        const double mf = bench_median(tf, reps), mb = bench_median(tb, reps);
        char name[32];
        snprintf(name, sizeof name, "%d,%d,%d,%d", B, T, C, H);
        printf("%-22s %12.0f %8.1f %12.0f %8.1f %10.1f\n", name, mf * 1e6, flop / mf * 1e-9,
               mb * 1e6, 2.5 * flop / mb * 1e-9, 3.5 * flop / (mf + mb) * 1e-9);
        free(qkv), free(dy), free(y), free(dqkv), free(lse), free(ws);
    }
}

int main(int argc, char **argv) {
    const int reps = argc > 1 ? atoi(argv[1]) : 15, B = argc > 2 ? atoi(argv[2]) : 128;
    if (reps < 1 || reps > MAXREP || B < 1) {
        fprintf(stderr, "usage: bench_layers [reps 1..%d] [batch]\n", MAXREP);
        return 2;
    }
    sp_conv_geom g1, g2;
    sp_pool_geom p1, p2;
    sp_conv_geom_init(&g1, 1, 28, 28, 32, 3, 1, 1);
    sp_pool_geom_init(&p1, 32, 28, 28, 2, 2);
    sp_conv_geom_init(&g2, 32, 14, 14, 64, 3, 1, 1);
    sp_pool_geom_init(&p2, 64, 14, 14, 2, 2);
    const size_t n0 = (size_t)B * 784, n1 = (size_t)B * 32 * 784, n2 = (size_t)B * 32 * 196,
                 n3 = (size_t)B * 64 * 196, n4 = (size_t)B * 64 * 49, n5 = (size_t)B * 128,
                 n6 = (size_t)B * 10;
    float *x = fill_(n0, 1), *w1 = fill_(32 * 9, 2), *b1 = fill_(32, 3), *w2 = fill_(64 * 288, 4),
          *b2 = fill_(64, 5), *w3 = fill_(128 * 3136, 6), *b3 = fill_(128, 7),
          *w4 = fill_(10 * 128, 8), *b4 = fill_(10, 9);
    float *dw1 = fill_(32 * 9, 0), *db1 = fill_(32, 0), *dw2 = fill_(64 * 288, 0),
          *db2 = fill_(64, 0), *dw3 = fill_(128 * 3136, 0), *db3 = fill_(128, 0),
          *dw4 = fill_(10 * 128, 0), *db4 = fill_(10, 0);
    float *c1 = fill_(n1, 0), *r1 = fill_(n1, 0), *q1 = fill_(n2, 0), *c2 = fill_(n3, 0),
          *r2 = fill_(n3, 0), *q2 = fill_(n4, 0), *d1 = fill_(n5, 0), *r3 = fill_(n5, 0),
          *d2 = fill_(n6, 0);
    float *col1 = fill_((size_t)9 * n1 / 32, 0), *col2 = fill_((size_t)288 * n3 / 64, 0);
    float *work1 = fill_(n1, 0), *work2 = fill_((size_t)288 * n3 / 64, 0);
    int32_t *a1 = (int32_t *)(void *)fill_(n2, 0), *a2 = (int32_t *)(void *)fill_(n4, 0);
    float *g_a = fill_(n1, 10), *g_b = fill_(n1, 11); /* error signals, ping-pong */
    double t[NSTAGE][MAXREP];
    for (int r = -2; r < reps; ++r) { /* two warm-up steps */
        double t0 = bench_now(), t1;
        int s = 0;
#define STAGE(call)                                                                                \
    do {                                                                                           \
        call;                                                                                      \
        t1 = bench_now();                                                                          \
        if (r >= 0) t[s][r] = t1 - t0;                                                             \
        ++s;                                                                                       \
        t0 = t1;                                                                                   \
    } while (0)
        /* as sp_model_forward / sp_model_backward run them (relu fused where they fuse it) */
        STAGE(sp_conv2d_relu_maxpool_forward(c1, r1, q1, a1, col1, work1, x, w1, b1, &g1, &p1, B));
        STAGE(sp_conv2d_relu_maxpool_forward(c2, r2, q2, a2, col2, work1, q1, w2, b2, &g2, &p2, B));
        STAGE(sp_dense_forward(d1, q2, w3, b3, B, 3136, 128));
        STAGE(sp_act_forward(r3, d1, n5, SP_ACT_RELU, 0));
        STAGE(sp_dense_forward(d2, r3, w4, b4, B, 128, 10));
        STAGE(sp_dense_backward(g_a, dw4, db4, d2, r3, w4, B, 128, 10,
                                false)); /* d2 as a stand-in dy */
        STAGE(sp_act_backward(g_b, g_a, d1, r3, n5, SP_ACT_RELU, 0));
        STAGE(sp_dense_backward(g_a, dw3, db3, g_b, q2, w3, B, 3136, 128, false));
        STAGE(sp_maxpool_relu_backward(g_b, g_a, a2, r2, &p2, B));
        STAGE(sp_conv2d_backward(g_a, dw2, db2, work1, work2, g_b, col2, w2, &g2, B, false));
        STAGE(sp_maxpool_relu_backward(g_b, g_a, a1, r1, &p1, B));
        STAGE(sp_conv2d_backward(NULL, dw1, db1, work1, work2, g_b, col1, w1, &g1, B, false));
#undef STAGE
    }
    double tot_min = 0, tot_med = 0;
    printf("%-20s %10s %10s %10s\n", "stage (batch)", "min us", "median us", "min us/smp");
    for (int s = 0; s < NSTAGE; ++s) {
        qsort(t[s], (size_t)reps, sizeof(double), bench_cmp_double);
        const double mn = t[s][0] * 1e6, md = t[s][reps / 2] * 1e6;
        tot_min += mn, tot_med += md;
        printf("%-20s %10.0f %10.0f %10.2f\n", names_[s], mn, md, mn / B);
    }
    printf("%-20s %10.0f %10.0f %10.2f\n", "total", tot_min, tot_med, tot_min / B);
    bench_attention_(reps);
    return 0;
}
