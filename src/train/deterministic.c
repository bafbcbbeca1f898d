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
 *     pixels), whose arithmetic depends only on micro-batch j. Each term is converted to fixed
 *     point (kernels/fixed.h: round(x * 2^40) in an int64) and added to a per-parameter int64
 *     accumulator. Dense layers do it in one pass of the fixed-point GEMM (kernels/gemm_fixed.h:
 *     the operands packed once per step, the K loop over all the rank's samples, the register
 *     tile converted into int64 at every micro-batch boundary: the same float operations as one
 *     sp_gemm per micro-batch); without AVX2 (or m > SP_GEMM_KC) in tiles of dW, one sp_gemm per
 *     micro-batch into a float scratch (dense_tiles_), which gives the same integers. Conv
 *     layers: one threaded sp_gemm per micro-batch into a scratch. Threads own tiles of dW:
 *     thread invariance as everywhere else.
 *  4. An exact MPI_SUM of the int64 accumulators over ranks: integer addition is associative,
 *     so the sums are exact and independent of the reduction order. It runs in --bucket-mb
 *     buckets (sp_reducer_create_fixed), each started during backward as soon as its layers are
 *     done (last layer first): each rank receives the other ranks' int64 terms of its share of
 *     the bucket (point to point), adds them exactly to its own and converts the sums to float
 *     (kernels/fixed.h, the same conversion whichever rank does it), and a float allgather gives
 *     every rank all of them. Then the head (the loss, the counts and the count of bad terms)
 *     is summed as integers too.
 *  5. Clipping (sp_clip_grad_norm: a thread-invariant sum of the identical reduced gradient) and
 *     the optimizer (elementwise) are then the same on every rank and layout.
 *
 * With gradient accumulation (--accum-steps K, m dividing B / K) the step's K micro-steps each
 * run 2-3 on their slice and add their terms into the same accumulators (dense tiles add instead
 * of storing); only the last one runs 4. Micro-batch j of the step is then micro-batch j of the
 * whole batch, so the integers, and the bits, are those of one step of B.
 *
 * The loss of each sample (a double) is summed exactly as well: floor(l) in one int64 and the
 * rest round((l - floor(l)) * 2^32) in another.
 *
 * Range and resolution: see kernels/fixed.h. Resolution 2^-40 (9.1e-13) per micro-batch term of
 * the mean-loss gradient; a term of magnitude 2^11 or more (or 2^(22 - ceil(log2 micro-batches
 * per global batch)) for very large batches), or a NaN/Inf, stops the run with an error at that
 * step (on every rank together) instead of a wrong sum.
 */
#include "train/exchange.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/gemm.h"
#include "kernels/gemm_fixed.h"
#include "layers/layers.h"
#include "model/wgrad.h"
#include "kernels/fixed.h"
#include "util/mem.h"
#include "util/status.h"
#include "util/arith.h"

/* Floats of a dense layer's tile (scratch; its int64 accumulators are twice the bytes):
 * 384 KB of the two together, in L2 while all of a rank's micro-batches pass over it. */
#define SP_DET_BLOCK_FLOATS 32768

/* Head of the int64 buffer, before the parameters' accumulators: summed over ranks after the
 * gradients, when the count of bad terms is known. */
enum { X_LOSS_HI, X_LOSS_LO, X_CORRECT, X_COUNT, X_BAD_GRAD, X_BAD_LOSS, X_N };

typedef struct sp_det {
    sp_exchange base; /* first: the interface (train/exchange.h) */
    sp_model *m;
    sp_comm *comm;
    int64_t micro;
    int max_batch, threads;
    size_t nparams;
    int64_t *buf;      /* (X_N + nparams): the head (X_*), then acc */
    int64_t *acc;      /* buf + X_N: one accumulator per parameter */
    sp_reducer *red;   /* the exact integer sums over ranks, per bucket during backward */
    sp_reducer *plan;  /* one rank: the same buckets, for --dry-run only (no communicator) */
    float *scratch;    /* (threads, scratch_per) */
    int64_t *tile_acc; /* (threads, scratch_per): a dense tile's accumulators */
    size_t scratch_per;
    double limit;     /* this step's largest allowed |term| of a micro-batch sum */
    double row_limit; /* and of one position's blame (embeddings: one term per position) */
    int64_t bad;      /* terms out of range in this step (local) */
    bool single;      /* one rank: dense tiles convert to the float gradients directly */
    bool adding;      /* the step comes in micro-steps (--accum-steps): every term adds into the
                         accumulators, which hold the step's sums so far */
    bool last;        /* the step's last micro-step: the buckets go */
    int nz;           /* ranges [zoff, zoff + zlen) of the slab not written whole by dense tiles */
    size_t *zoff, *zlen;
    float *work;        /* sp_gemm_fixed's packed operands, or NULL */
    sp_step_sums total; /* the last step's sums over ranks (from the head) */
} sp_det;

/* A dense layer's tile of dW: rows x cols, near square (the packing of the two GEMM operands is
 * redone per tile, rows + cols per sample, against rows x cols multiply-adds), rows a multiple of
 * 6 (the AVX2 micro-tile) and cols of 16 when the layer is larger. */
static void dense_tile_(int in, int out, int *rows, int *cols) {
    int r = out < 180 ? out : 180;
    int c = SP_DET_BLOCK_FLOATS / r;
    if (c >= 32) c -= c % 16;
    if (c > in) c = in;
    if (c < 1) c = 1;
    *rows = r, *cols = c;
}

/* The ranges of the slab that accumulate from 0 (zoff, zlen: dense biases, conv weights and
 * biases) and the scratch sizes in floats: a dense tile per thread (per), a whole conv weight
 * (conv, one threaded GEMM), sp_gemm_fixed's packed operands (work). */
static void plan_layers_(sp_det *d, size_t *per, size_t *conv, size_t *work) {
    *per = *conv = *work = 0;
    for (int i = 0; i < sp_model_num_layers(d->m); ++i) {
        sp_wgrad_info L;
        if (!sp_model_wgrad_info(d->m, i, &L)) continue;
        const bool dense = L.kind == SP_WGRAD_DENSE;
        /* dense: the bias (a tied one has none: the embedding's rows zero its weight); the
         * others: weight and bias (they are adjacent) */
        if (!L.tied) {
            d->zoff[d->nz] = dense ? L.b_off : L.w_off;
            d->zlen[d->nz] = L.b_off + L.b_len - d->zoff[d->nz];
            d->nz++;
        }
        if (dense) {
            int r, cc;
            dense_tile_(L.in, L.out, &r, &cc);
            const size_t s = (size_t)r * (size_t)cc;
            if (s > *per) *per = s;
            const size_t w = sp_gemm_fixed_workspace(L.out, L.in, d->max_batch * L.rows);
            if (w > *work) *work = w;
        } else if (L.kind != SP_WGRAD_ROWS) { /* conv: a whole weight; normalization: a float
                                                 per parameter */
            const size_t s = L.b_off + L.b_len - L.w_off;
            if (s > *conv) *conv = s;
        }
    }
}

static sp_status backward_(sp_exchange *x, const sp_local_batch *lb);
static sp_status sums_(sp_exchange *x, const sp_local_batch *lb, bool bad, sp_step_sums *out,
                       bool *any_bad);
static sp_status allsum_(sp_exchange *x, const double *terms, int count, size_t n, double *sums);
static void det_free_(sp_exchange *x);

sp_status sp_exchange_fixed_create(sp_exchange **out, sp_model *m, sp_comm *comm, int64_t micro,
                                   size_t bucket_bytes) {
    *out = NULL;
    if (micro < 1) return SP_FAIL(SP_ERR_ARG, "--micro-batch must be >= 1");
    sp_det *d = calloc(1, sizeof *d);
    if (!d) return SP_FAIL(SP_ERR_NOMEM, "out of memory");
    d->base = (sp_exchange){.backward = backward_,
                            .sums = sums_,
                            .allsum = allsum_,
                            .free = det_free_,
                            .elem_bytes = sizeof(int64_t),
                            .bucket_kind = "int64 sums",
                            .memory_kind = "fixed-point sums and exchange buffers"};
    d->m = m;
    d->comm = comm;
    d->micro = micro;
    d->max_batch = sp_model_max_batch(m);
    d->threads = omp_get_max_threads();
    d->nparams = sp_model_num_params(m);
    d->single = sp_comm_size(comm) == 1;
    const int nl = sp_model_num_layers(m);
    d->zoff = calloc((size_t)nl + 1, sizeof(size_t));
    d->zlen = calloc((size_t)nl + 1, sizeof(size_t));
    if (!d->zoff || !d->zlen) {
        det_free_(&d->base);
        return SP_FAIL(SP_ERR_NOMEM, "out of memory");
    }
    size_t per, conv, work;
    plan_layers_(d, &per, &conv, &work);
    d->scratch_per = per;
    const size_t scratch = per * (size_t)d->threads > conv ? per * (size_t)d->threads : conv;
    const size_t bytes = (d->nparams + X_N) * sizeof(int64_t) + scratch * sizeof(float) +
                         per * (size_t)d->threads * sizeof(int64_t) + work * sizeof(float);
    sp_status st = sp_mem_check(bytes, "--deterministic", "fixed-point gradient accumulators");
    if (st != SP_OK) {
        det_free_(&d->base);
        return st;
    }
    d->buf = malloc((d->nparams + X_N) * sizeof(int64_t));
    d->acc = d->buf ? d->buf + X_N : NULL;
    d->scratch = aligned_alloc(64, ((scratch ? scratch : 1) * sizeof(float) + 63) & ~(size_t)63);
    d->tile_acc = aligned_alloc(64, ((per ? per : 1) * (size_t)d->threads * sizeof(int64_t) + 63) &
                                        ~(size_t)63);
    if (work) d->work = aligned_alloc(64, (work * sizeof(float) + 63) & ~(size_t)63);
    if (!d->acc || !d->scratch || !d->tile_acc || (work && !d->work)) {
        const size_t np = d->nparams;
        det_free_(&d->base);
        return SP_FAIL(SP_ERR_NOMEM, "--deterministic: out of memory for %zu accumulators", np);
    }
    st = d->single ? sp_reducer_create_fixed(&d->plan, NULL, d->acc, sp_model_grads(m), d->nparams,
                                             bucket_bytes)
                   : sp_reducer_create_fixed(&d->red, comm, d->acc, sp_model_grads(m), d->nparams,
                                             bucket_bytes);
    if (st != SP_OK) {
        det_free_(&d->base);
        return st;
    }
    d->base.reducer = d->red;
    d->base.plan = d->red ? d->red : d->plan;
    d->base.memory_bytes = bytes + (d->red ? sp_reducer_memory_bytes(d->red) : 0);
    *out = &d->base;
    return SP_OK;
}

static void det_free_(sp_exchange *x) {
    sp_det *d = (sp_det *)x;
    sp_reducer_free(d->red);
    sp_reducer_free(d->plan);
    free(d->buf);
    free(d->scratch);
    free(d->tile_acc);
    free(d->work);
    free(d->zoff);
    free(d->zlen);
    free(d);
}

/* Dense, the portable path (no AVX2 or m > SP_GEMM_KC): per micro-batch j, dW_j (out, in) =
 * dy_j^T x_j by sp_gemm into a float scratch, then into the accumulators. Threads own tiles of
 * dW; a tile's accumulators stay in cache while all the micro-batches of the rank pass over it.
 * The same integers as sp_gemm_fixed (tests/unit/kernels/test_gemm_fixed.c). */
static int64_t dense_tiles_(sp_det *d, const sp_wgrad_layer *L) {
    const int B = L->B, in = L->in, out = L->out, m = (int)d->micro * L->rows;
    int R, C;
    dense_tile_(in, out, &R, &C);
    const int nmb = (B + m - 1) / m, nr = (out + R - 1) / R, nc = (in + C - 1) / C;
    int64_t *aw = d->acc + L->w_off;
    float *gw = sp_model_grads(d->m) + L->w_off;
    const double lim = d->limit;
    int64_t bad = 0;
#pragma omp parallel for schedule(static) reduction(+ : bad)
    for (int t = 0; t < nr * nc; ++t) {
        const int th = omp_get_thread_num();
        float *s = d->scratch + (size_t)th * d->scratch_per;
        int64_t *a = d->tile_acc + (size_t)th * d->scratch_per; /* (r, c), contiguous */
        const int r0 = t / nc * R, c0 = t % nc * C, r = sp_min_int(R, out - r0),
                  c = sp_min_int(C, in - c0);
        const size_t rc = (size_t)r * (size_t)c;
        memset(a, 0, rc * sizeof *a);
        for (int j = 0; j < nmb; ++j) {
            const int k = sp_min_int(m, B - j * m);
            sp_gemm(true, false, r, c, k, 1.0f, L->dy + (size_t)j * m * out + r0, out,
                    L->x + (size_t)j * m * in + c0, in, 0.0f, s, c);
            bad += sp_fix_accumulate(a, s, rc, lim);
        }
        /* the tile is complete: its gradient (one rank), or its share for the allreduce */
        for (int i = 0; i < r; ++i) {
            const size_t o = (size_t)(r0 + i) * in + c0;
            const int64_t *src = a + (size_t)i * c;
            if (d->single && !L->tied && !d->adding) /* tied: the embedding's rows are to come */
                sp_fix_sum_to_float(gw + o, (const int64_t *const[]){src}, 1, (size_t)c);
            else if (d->adding)
                for (int k = 0; k < c; ++k) aw[o + (size_t)k] += src[k];
            else
                memcpy(aw + o, src, (size_t)c * sizeof *src);
        }
    }
    return bad;
}

/* Dense: dW = sum over micro-batches j of round(dy_j^T x_j * 2^40) in one pass of the
 * fixed-point GEMM (kernels/gemm_fixed.h: operands packed once, the register tile flushed into
 * int64 at each micro-batch boundary), or dense_tiles_; db_j = column sums of dy_j (in sample
 * order), into the accumulators. */
static void dense_wgrad_(sp_det *d, const sp_wgrad_layer *L) {
    const int B = L->B, out = L->out, m = (int)d->micro * L->rows;
    /* tied: the embedding's rows are to come; adding: the step's other micro-steps */
    const bool to_float = d->single && !L->tied && !d->adding;
    const int nmb = (B + m - 1) / m;
    int64_t *ab = d->acc + L->b_off;
    const double lim = d->limit;
    const sp_gemm_fixed_args fa = {.M = out,
                                   .N = L->in,
                                   .K = B,
                                   .m = m,
                                   .A = L->dy,
                                   .lda = out,
                                   .B = L->x,
                                   .ldb = L->in,
                                   .limit = lim,
                                   .q = to_float ? NULL : d->acc + L->w_off,
                                   .g = to_float ? sp_model_grads(d->m) + L->w_off : NULL,
                                   .ldq = L->in,
                                   .add = d->adding};
    int64_t bad = d->work ? sp_gemm_fixed(&fa, d->work) : -1;
    if (bad < 0) bad = dense_tiles_(d, L);
    enum { DB_BLOCK = 256 };
    const int nb = L->b_len ? out : 0; /* bias=0: nothing (b_off is the next layer's) */
#pragma omp parallel for schedule(static) reduction(+ : bad)
    for (int j0 = 0; j0 < nb; j0 += DB_BLOCK) {
        const int nj = sp_min_int(DB_BLOCK, out - j0);
        float s[DB_BLOCK];
        for (int j = 0; j < nmb; ++j) {
            sp_col_sums(s, L->dy + (size_t)j * m * out + j0, sp_min_int(m, B - j * m), nj,
                        (size_t)out);
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
        const int k = sp_min_int(m, B - j * m);
        sp_gemm(false, true, g->oc, ckk, k * ohw, 1.0f, L->dy + (size_t)j * m * ohw, ncols,
                L->x + (size_t)j * m * ohw, ncols, 0.0f, s, ckk);
        const size_t n = L->w_len, chunk = 4096;
#pragma omp parallel for schedule(static) reduction(+ : bad) if (n > 2 * chunk)
        for (size_t c0 = 0; c0 < n; c0 += chunk)
            bad += sp_fix_accumulate(aw + c0, s + c0, n - c0 < chunk ? n - c0 : chunk, lim);
    }
    const int nb = L->b_len ? g->oc : 0; /* bias=0: nothing (b_off is the next layer's) */
#pragma omp parallel for schedule(static) reduction(+ : bad)
    for (int o = 0; o < nb; ++o) {
        for (int j = 0; j < nmb; ++j) {
            float lane[8] = {0, 0, 0, 0, 0, 0, 0, 0};
            for (int n = j * m; n < sp_min_int(B, (j + 1) * m); ++n) {
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

/* Normalization: per micro-batch j, the sum of its samples' terms (in sample order, in double),
 * rounded to float, into the accumulators: the same arithmetic whatever the layout. */
static void terms_wgrad_(sp_det *d, const sp_wgrad_layer *L) {
    const int B = L->B, m = (int)d->micro * L->rows, nmb = (B + m - 1) / m;
    const size_t n = L->w_len + L->b_len;
    int64_t *a = d->acc + L->w_off;
    const double lim = d->limit;
    int64_t bad = 0;
#pragma omp parallel for schedule(static) reduction(+ : bad) if (n > 1024)
    for (size_t c = 0; c < n; ++c) {
        for (int j = 0; j < nmb; ++j) {
            double s = 0;
            for (int k = j * m; k < sp_min_int(B, (j + 1) * m); ++k)
                s += L->terms[(size_t)k * n + c];
            const float f = (float)s;
            bad += sp_fix_accumulate(a + c, &f, 1, lim);
        }
    }
    d->bad += bad;
}

/* Embeddings: every position's blame row added, in fixed point, into the row of dW it belongs
 * to (its token's, or its position's). Each term is exact in the integers, so no grouping of
 * the positions into micro-batches is needed: the sums are the same in any order. Threads own
 * column blocks, so no two write the same accumulator. */
static void rows_wgrad_(sp_det *d, const sp_wgrad_layer *L) {
    enum { COLS = 64 };
    const int n = L->B, D = L->out;
    int64_t *a = d->acc + L->w_off;
    const double lim = d->row_limit;
    int64_t bad = 0;
#pragma omp parallel for schedule(static) reduction(+ : bad)
    for (int c0 = 0; c0 < D; c0 += COLS) {
        const int nc = sp_min_int(COLS, D - c0);
        for (int i = 0; i < n; ++i) {
            const size_t row = L->x ? (size_t)L->x[i] : (size_t)(i % L->rows);
            bad += sp_fix_accumulate(a + row * (size_t)D + c0, L->dy + (size_t)i * D + c0,
                                     (size_t)nc, lim);
        }
    }
    d->bad += bad;
}

static void wgrad_(void *user, const sp_wgrad_layer *L) {
    sp_det *d = user;
    if (L->B <= 0) return;
    if (L->kind == SP_WGRAD_CONV)
        conv_wgrad_(d, L);
    else if (L->kind == SP_WGRAD_TERMS)
        terms_wgrad_(d, L);
    else if (L->kind == SP_WGRAD_ROWS)
        rows_wgrad_(d, L);
    else
        dense_wgrad_(d, L);
    /* this layer's accumulators are final, and those of the layers after it (higher offsets):
     * their buckets start their allreduce now, overlapped with the rest of backward (a tied
     * projection's are not: the embedding adds to them); in the step's last micro-step only */
    if (d->red && !L->tied && d->last) sp_reducer_ready(d->red, L->w_off);
}

/* The exact fixed-point form of the sum of n per-sample losses (sp_fix_add_double). Returns
 * false if a loss is not finite or too large. */
static bool loss_fix_(const double *rows, int n, int64_t global, int64_t *hi, int64_t *lo) {
    /* |floor(l)| * samples and 2^32 * samples must stay below 2^62 */
    const double lim = ldexp(1.0, 62) / (double)(global > 0 ? global : 1);
    bool ok = true;
    for (int i = 0; i < n; ++i) {
        if (fabs(rows[i]) < lim)
            sp_fix_add_double(rows[i], hi, lo);
        else
            ok = false;
    }
    return ok;
}

/* The sums over every sample of every rank for the model's layers (batch-norm statistics),
 * exact in the same fixed point as the loss: each sample's term as floor(v) and
 * round(frac(v) 2^32) in int64, summed as integers over samples and ranks, so the same bits for
 * any grouping of the samples. In chunks on the stack: no allocation inside a step. */
static sp_status allsum_(sp_exchange *x, const double *terms, int count, size_t n, double *sums) {
    enum { CHUNK = 256 };
    sp_det *d = (sp_det *)x;
    /* the same limit on every layout; up to 2^22 terms per sum keep hi and lo within int64 */
    const double lim = 0x1p40;
    for (size_t k0 = 0; k0 < n; k0 += CHUNK) {
        const size_t len = n - k0 < CHUNK ? n - k0 : CHUNK;
        int64_t q[2 * CHUNK + 1] = {0}; /* (hi, lo) per value, then the count of bad terms */
        for (int s = 0; s < count; ++s)
            for (size_t i = 0; i < len; ++i) {
                const double v = terms[(size_t)s * n + k0 + i];
                if (fabs(v) < lim)
                    sp_fix_add_double(v, &q[2 * i], &q[2 * i + 1]);
                else
                    q[2 * len]++;
            }
        SP_CHECK(sp_comm_sum_int64(d->comm, q, 2 * len + 1));
        if (q[2 * len]) /* the counts are global: every rank fails together */
            return SP_FAIL(SP_ERR_NUMERIC,
                           "--deterministic: %lld terms of a sum over ranks are NaN, infinite "
                           "or beyond %g",
                           (long long)q[2 * len], lim);
        for (size_t i = 0; i < len; ++i) sums[k0 + i] = sp_fix_double_value(q[2 * i], q[2 * i + 1]);
    }
    return SP_OK;
}

/* Backward with the weight gradients summed per micro-batch in fixed point, then over ranks (the
 * buckets start as their layers finish); the head (the exact loss, the counts, the bad terms)
 * after them. A step in micro-steps adds each one's terms to the accumulators: the integer sums
 * are those of the whole step at once, and only the last micro-step crosses the ranks. */
static sp_status backward_(sp_exchange *x, const sp_local_batch *lb) {
    sp_det *d = (sp_det *)x;
    const int B = lb->count;
    const bool first = lb->micro == 0;
    /* the step's micro-batches: the range of a sum is shared over all of them */
    const int64_t nmb_global = (lb->global_count + d->micro - 1) / d->micro;
    int64_t *head = d->buf;
    d->adding = lb->micros > 1;
    d->last = lb->micro + 1 >= lb->micros;
    if (first && (B == 0 || d->adding)) { /* every accumulator from 0 */
        memset(d->buf, 0, (d->nparams + X_N) * sizeof(int64_t));
    } else if (first) { /* dense weights are stored whole by their tiles; the rest from 0 */
        for (int i = 0; i < d->nz; ++i)
            memset(d->acc + d->zoff[i], 0, d->zlen[i] * sizeof(int64_t));
        memset(head, 0, X_N * sizeof(int64_t));
    }
    d->limit = sp_fix_limit(nmb_global);
    d->row_limit = sp_fix_limit(lb->global_count * lb->positions);
    d->bad = 0;
    if (B > 0) {
        if (!loss_fix_(lb->rows, B, lb->global_count, &head[X_LOSS_HI], &head[X_LOSS_LO]))
            head[X_BAD_LOSS] = 1;
        head[X_CORRECT] += lb->correct;
        head[X_COUNT] += B;
    }
    if (d->red && d->last) sp_reducer_begin(d->red);
    /* with no samples too: the model's sums over ranks are the same on every rank */
    sp_model_backward_wgrad(d->m, lb->dz, B, wgrad_, d);
    head[X_BAD_GRAD] += d->bad;
    if (!d->last) return sp_model_status(d->m);
    x->t_wait[0] = sp_comm_wtime();
    if (d->red) { /* the gradients, as floats; then the head, now that it is complete */
        SP_CHECK(sp_reducer_finish(d->red));
        SP_CHECK(sp_comm_sum_int64(d->comm, head, X_N));
    }
    SP_CHECK(sp_model_status(d->m)); /* a failed sum over ranks: the same verdict everywhere */
    if (d->single && d->adding) {    /* every accumulator holds the step's sum */
        sp_fix_sum_to_float(sp_model_grads(d->m), (const int64_t *const[]){d->acc}, 1, d->nparams);
    } else if (d->single) { /* the dense weights are done */
        float *g = sp_model_grads(d->m);
        for (int r = 0; r < d->nz; ++r)
            sp_fix_sum_to_float(g + d->zoff[r], (const int64_t *const[]){d->acc + d->zoff[r]}, 1,
                                d->zlen[r]);
    }
    x->t_wait[1] = sp_comm_wtime();
    d->total.loss = head[X_BAD_LOSS] ? NAN : sp_fix_double_value(head[X_LOSS_HI], head[X_LOSS_LO]);
    d->total.correct = (double)head[X_CORRECT];
    d->total.samples = (double)head[X_COUNT];
    /* the counts are global now: every rank takes the same branch */
    if (head[X_BAD_GRAD] && !head[X_BAD_LOSS])
        return SP_FAIL(SP_ERR_NUMERIC,
                       "--deterministic: %lld gradient terms of step %lld are NaN, infinite or "
                       "outside the fixed-point range (|g| < %g per micro-batch): the run "
                       "diverges; lower --lr",
                       (long long)head[X_BAD_GRAD], (long long)lb->step + 1, d->limit);
    return SP_OK;
}

/* The sums are global already (exact, in the head); only the verdict on the gradient crosses. */
static sp_status sums_(sp_exchange *x, const sp_local_batch *lb, bool bad, sp_step_sums *out,
                       bool *any_bad) {
    sp_det *d = (sp_det *)x;
    (void)lb;
    double v = bad;
    SP_CHECK(sp_comm_sum_doubles(d->comm, &v, 1));
    *out = d->total;
    *any_bad = v > 0;
    return SP_OK;
}
