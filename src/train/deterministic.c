/*
 * --deterministic training: the same bits for every layout of ranks x threads.
 *
 * What depends on the layout in the default mode is only the order of the sums over samples:
 * the weight and bias gradients (the K loop of dW = dY^T X runs over a rank's samples, and
 * MPI_Allreduce adds the ranks' partial sums in an order of its choosing) and the loss. Every
 * per-sample quantity is already layout-free: the forward pass, the error signals dX = dY W
 * (sp_gemm gives every element of C by the same operations whatever M and its position,
 * gemm.h), the activations, pooling, dropout (masks keyed by (seed, step, sample id)) and the
 * per-sample loss and its gradient (scaled by 1 / global batch, the same on every rank).
 *
 * So a step here:
 *  1. The global batch is a fixed sequence of micro-batches of m samples (the last may be
 *     partial); each rank holds a contiguous block of whole micro-batches
 *     (sp_rank_slice_micro): which samples form micro-batch j never depends on P.
 *  2. Forward and the error back-propagation run over the rank's whole slice at once (per-sample
 *     values, so the same bits as any other grouping) - the GEMMs stay large.
 *  3. The weight and bias gradients are computed per micro-batch (sp_model_backward_wgrad hands
 *     them here): dW_j = dY_j^T X_j, a GEMM with K = the micro-batch's samples (conv: its
 *     pixels), into a float scratch, whose arithmetic depends only on micro-batch j. Each term is
 *     converted to fixed point (util/fixed.h: round(x * 2^40) in an int64) and added to a
 *     per-parameter int64 accumulator. Dense layers do this in blocks of rows that stay in the
 *     L2 cache across all of the rank's micro-batches, one block per thread at a time.
 *  4. One MPI_SUM allreduce of the int64 accumulators (and of the loss, the counts and an error
 *     count in the same buffer): integer addition is associative, so the result is exact and
 *     independent of the reduction order. Every rank converts back to float the same way.
 *  5. Clipping (sp_clip_grad_norm: a thread-invariant sum of the identical reduced gradient) and
 *     the optimizer (elementwise) are then the same on every rank and layout.
 *
 * The loss of each sample (a double) is summed exactly as well: floor(l) in one int64 and the
 * rest round((l - floor(l)) * 2^32) in another.
 *
 * Range and resolution: see util/fixed.h. Resolution 2^-40 (9.1e-13) per micro-batch term of
 * the mean-loss gradient; a term of magnitude 2^11 or more (or 2^(22 - ceil(log2 micro-batches
 * per global batch)) for very large batches), or a NaN/Inf, stops the run with an error at that
 * step (on every rank together) instead of a wrong sum.
 */
#include "train/deterministic.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/gemm.h"
#include "layers/layers.h"
#include "model/wgrad.h"
#include "shardprop/loss.h"
#include "util/fixed.h"
#include "util/mem.h"
#include "util/status.h"

/* Floats of a dense layer's row block (scratch; its int64 accumulators are twice the bytes):
 * ~192 KB of the two together, in L2 while all of a rank's micro-batches pass over it. */
#define SP_DET_BLOCK_FLOATS 16384

/* Tail of the int64 buffer after the parameters. */
enum { X_LOSS_HI, X_LOSS_LO, X_CORRECT, X_COUNT, X_BAD_GRAD, X_BAD_LOSS, X_N };

struct sp_det {
    sp_model *m;
    int64_t micro;
    bool xent;
    int outputs, max_batch, threads;
    size_t nparams;
    int64_t *acc;   /* (nparams + X_N) */
    float *scratch; /* (threads, scratch_per) */
    size_t scratch_per;
    float *dz;    /* (max_batch, outputs) */
    double *rows; /* (max_batch) */
    double limit; /* this step's largest allowed |term| */
    int64_t bad;  /* terms out of range in this step (local) */
};

static int min_(int a, int b) {
    return a < b ? a : b;
}

/* Rows of a dense layer's block: a multiple of 6 (the AVX2 micro-tile) when possible. */
static int dense_rows_(int in, int out) {
    int r = SP_DET_BLOCK_FLOATS / (in > 0 ? in : 1);
    if (r >= 12) r -= r % 6;
    if (r < 1) r = 1;
    return min_(r, out);
}

sp_status sp_det_create(sp_det **out, sp_model *m, int64_t micro, bool xent, int outputs) {
    *out = NULL;
    if (micro < 1) return SP_FAIL(SP_ERR_ARG, "--micro-batch must be >= 1");
    sp_det *d = calloc(1, sizeof *d);
    if (!d) return SP_FAIL(SP_ERR_NOMEM, "out of memory");
    d->m = m;
    d->micro = micro;
    d->xent = xent;
    d->outputs = outputs;
    d->max_batch = sp_model_max_batch(m);
    d->threads = omp_get_max_threads();
    d->nparams = sp_model_num_params(m);
    /* the scratch: a dense row block per thread, or a whole conv weight (one, threaded GEMM) */
    size_t per = 0, conv = 0;
    for (int i = 0; i < sp_model_num_layers(m); ++i) {
        size_t w_off, b_off;
        int w_rank;
        int64_t w_shape[4], b_len;
        if (!sp_model_layer_params(m, i, &w_off, &w_rank, w_shape, &b_off, &b_len)) continue;
        if (w_rank == 2) {
            const int in = (int)w_shape[1], o = (int)w_shape[0];
            const size_t s = (size_t)dense_rows_(in, o) * (size_t)in;
            if (s > per) per = s;
        } else {
            const size_t s = (size_t)(b_off - w_off);
            if (s > conv) conv = s;
        }
    }
    d->scratch_per = per;
    const size_t scratch = per * (size_t)d->threads > conv ? per * (size_t)d->threads : conv;
    size_t bytes = (d->nparams + X_N) * sizeof(int64_t) + scratch * sizeof(float) +
                   (size_t)d->max_batch * ((size_t)outputs * sizeof(float) + sizeof(double));
    sp_status st = sp_mem_check(bytes, "--deterministic", "fixed-point gradient accumulators");
    if (st != SP_OK) {
        free(d);
        return st;
    }
    d->acc = malloc((d->nparams + X_N) * sizeof(int64_t));
    d->scratch = aligned_alloc(64, ((scratch ? scratch : 1) * sizeof(float) + 63) & ~(size_t)63);
    d->dz = malloc((size_t)d->max_batch * (size_t)outputs * sizeof(float));
    d->rows = malloc((size_t)d->max_batch * sizeof(double));
    if (!d->acc || !d->scratch || !d->dz || !d->rows) {
        const size_t np = d->nparams;
        sp_det_free(d);
        return SP_FAIL(SP_ERR_NOMEM, "--deterministic: out of memory for %zu accumulators", np);
    }
    *out = d;
    return SP_OK;
}

void sp_det_free(sp_det *d) {
    if (!d) return;
    free(d->acc);
    free(d->scratch);
    free(d->dz);
    free(d->rows);
    free(d);
}

/* Dense: per micro-batch j, dW_j (out, in) = dy_j^T x_j and db_j = column sums of dy_j (in
 * sample order), into the accumulators. Threads own blocks of rows; each block stays in cache
 * while the micro-batches pass. */
static void dense_wgrad_(sp_det *d, const sp_wgrad_layer *L) {
    const int B = L->B, in = L->in, out = L->out, m = (int)d->micro;
    const int nmb = (B + m - 1) / m, R = dense_rows_(in, out), nblk = (out + R - 1) / R;
    int64_t *aw = d->acc + L->w_off, *ab = d->acc + L->b_off;
    const double lim = d->limit;
    int64_t bad = 0;
#pragma omp parallel for schedule(static) reduction(+ : bad)
    for (int blk = 0; blk < nblk; ++blk) {
        float *s = d->scratch + (size_t)omp_get_thread_num() * d->scratch_per;
        const int r0 = blk * R, r = min_(R, out - r0);
        for (int j = 0; j < nmb; ++j) {
            const int k = min_(m, B - j * m);
            sp_gemm(true, false, r, in, k, 1.0f, L->dy + (size_t)j * m * out + r0, out,
                    L->x + (size_t)j * m * in, in, 0.0f, s, in);
            bad += sp_fix_accumulate(aw + (size_t)r0 * in, s, (size_t)r * in, lim);
        }
    }
    enum { DB_BLOCK = 256 };
#pragma omp parallel for schedule(static) reduction(+ : bad)
    for (int j0 = 0; j0 < out; j0 += DB_BLOCK) {
        const int nj = min_(DB_BLOCK, out - j0);
        float s[DB_BLOCK];
        for (int j = 0; j < nmb; ++j) {
            for (int c = 0; c < nj; ++c) s[c] = 0.0f;
            for (int i = j * m; i < min_(B, (j + 1) * m); ++i) {
                const float *row = L->dy + (size_t)i * out + j0;
                for (int c = 0; c < nj; ++c) s[c] += row[c];
            }
            bad += sp_fix_accumulate(ab + j0, s, (size_t)nj, lim);
        }
    }
    d->bad += bad;
}

/* Conv: per micro-batch j, dW_j (oc, ckk) = dyp_j col_j^T over its samples' pixels (a threaded
 * GEMM, K = samples x pixels) and db_j (8 lanes of pixels, a fixed tree, as conv2d.c). */
static void conv_wgrad_(sp_det *d, const sp_wgrad_layer *L) {
    const sp_conv_geom *g = L->geom;
    const int B = L->B, m = (int)d->micro, nmb = (B + m - 1) / m;
    const int ckk = g->c * g->k * g->k, ohw = g->oh * g->ow, ncols = B * ohw;
    int64_t *aw = d->acc + L->w_off, *ab = d->acc + L->b_off;
    const double lim = d->limit;
    int64_t bad = 0;
    float *s = d->scratch;
    for (int j = 0; j < nmb; ++j) {
        const int k = min_(m, B - j * m);
        sp_gemm(false, true, g->oc, ckk, k * ohw, 1.0f, L->dy + (size_t)j * m * ohw, ncols,
                L->x + (size_t)j * m * ohw, ncols, 0.0f, s, ckk);
        const size_t n = L->w_len, chunk = 4096;
#pragma omp parallel for schedule(static) reduction(+ : bad) if (n > 2 * chunk)
        for (size_t c0 = 0; c0 < n; c0 += chunk)
            bad += sp_fix_accumulate(aw + c0, s + c0, n - c0 < chunk ? n - c0 : chunk, lim);
    }
#pragma omp parallel for schedule(static) reduction(+ : bad)
    for (int o = 0; o < g->oc; ++o) {
        for (int j = 0; j < nmb; ++j) {
            float lane[8] = {0, 0, 0, 0, 0, 0, 0, 0};
            for (int n = j * m; n < min_(B, (j + 1) * m); ++n) {
                const float *src = L->dy + (size_t)o * ncols + (size_t)n * ohw;
                int p = 0;
                for (; p + 8 <= ohw; p += 8)
                    for (int l = 0; l < 8; ++l) lane[l] += src[p + l];
                for (int l = 0; p + l < ohw; ++l) lane[l] += src[p + l];
            }
            const float sum = ((lane[0] + lane[1]) + (lane[2] + lane[3])) +
                              ((lane[4] + lane[5]) + (lane[6] + lane[7]));
            bad += sp_fix_accumulate(ab + o, &sum, 1, lim);
        }
    }
    d->bad += bad;
}

static void wgrad_(void *user, const sp_wgrad_layer *L) {
    sp_det *d = user;
    if (L->B <= 0) return;
    if (L->conv)
        conv_wgrad_(d, L);
    else
        dense_wgrad_(d, L);
}

/* The exact fixed-point form of the sum of n per-sample losses: hi += floor(l), lo +=
 * round((l - floor(l)) 2^32). Returns false if a loss is not finite or too large. */
static bool loss_fix_(const double *rows, int n, int64_t global, int64_t *hi, int64_t *lo) {
    /* |floor(l)| * samples and 2^32 * samples must stay below 2^62 */
    const double lim = ldexp(1.0, 62) / (double)(global > 0 ? global : 1);
    bool ok = true;
    for (int i = 0; i < n; ++i) {
        const double l = rows[i];
        if (!(fabs(l) < lim)) {
            ok = false;
            continue;
        }
        const double f = floor(l);
        *hi += (int64_t)f;
        *lo += (int64_t)nearbyint((l - f) * 0x1p32); /* l - f exact: the fraction of l */
    }
    return ok;
}

sp_status sp_det_step(sp_det *d, sp_comm *comm, const sp_batch *b, const sp_step_ctx *ctx,
                      double sums[3], double *compute_s) {
    const double t0 = sp_comm_wtime();
    const int B = (int)b->count;
    const int64_t nmb_global = (b->global_count + d->micro - 1) / d->micro;
    int64_t *tail = d->acc + d->nparams;
    memset(d->acc, 0, (d->nparams + X_N) * sizeof(int64_t));
    d->limit = sp_fix_limit(nmb_global);
    d->bad = 0;
    /* the mean over the global batch: every rank scales by the same global count */
    const float scale = d->xent ? 1.0f / (float)b->global_count
                                : 1.0f / ((float)b->global_count * (float)d->outputs);
    if (B > 0) {
        double loss_sum = 0;
        int64_t correct = 0;
        const float *z = sp_model_forward(d->m, b->x, B, ctx);
        if (d->xent)
            sp_xent_loss(&loss_sum, &correct, d->dz, d->rows, z, b->labels, B, d->outputs, scale);
        else
            sp_mse_loss(&loss_sum, d->dz, d->rows, z, b->targets, B, d->outputs, scale);
        if (!loss_fix_(d->rows, B, b->global_count, &tail[X_LOSS_HI], &tail[X_LOSS_LO]))
            tail[X_BAD_LOSS] = 1;
        tail[X_CORRECT] = correct;
        tail[X_COUNT] = B;
        sp_model_backward_wgrad(d->m, d->dz, B, wgrad_, d);
        tail[X_BAD_GRAD] = d->bad;
    }
    *compute_s += sp_comm_wtime() - t0;
    SP_CHECK(sp_comm_sum_int64(comm, d->acc, d->nparams + X_N));
    const double t1 = sp_comm_wtime();
    float *g = sp_model_grads(d->m);
    const int64_t *acc = d->acc;
    const size_t n = d->nparams;
#pragma omp parallel for schedule(static) if (n >= 32768)
    for (size_t i = 0; i < n; ++i) g[i] = sp_fix_to_float(acc[i]);
    sums[0] = tail[X_BAD_LOSS] ? NAN : (double)tail[X_LOSS_HI] + (double)tail[X_LOSS_LO] * 0x1p-32;
    sums[1] = (double)tail[X_CORRECT];
    sums[2] = (double)tail[X_COUNT];
    *compute_s += sp_comm_wtime() - t1;
    /* the counts are global now: every rank takes the same branch */
    if (tail[X_BAD_GRAD] && !tail[X_BAD_LOSS])
        return SP_FAIL(SP_ERR_NUMERIC,
                       "--deterministic: %lld gradient terms of step %lld are NaN, infinite or "
                       "outside the fixed-point range (|g| < %g per micro-batch): the run "
                       "diverges; lower --lr",
                       (long long)tail[X_BAD_GRAD], (long long)ctx->step + 1, d->limit);
    return SP_OK;
}
