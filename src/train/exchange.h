/*
 * How one training step's gradients and sums cross the ranks: the interface the step calls
 * (train/step.c), with two implementations chosen once at setup.
 *
 *   float  (exchange_float.c, the default): backward writes the gradient slab and each bucket
 *          of final gradients starts its MPI_Iallreduce while backward goes on; the loss,
 *          correct count and samples are summed as doubles. Fast; the order of the sums is MPI's.
 *   fixed  (deterministic.c, --deterministic): the weight gradients are formed per micro-batch,
 *          converted to fixed point and summed exactly in int64 over micro-batches, threads and
 *          ranks (the buckets start during backward all the same); the loss is summed exactly
 *          too. The same bits for every layout of ranks x threads.
 *
 * Both leave the model's gradient slab holding the gradient of the mean loss over the global
 * batch, identical on every rank. Every call is collective: every rank makes it for every
 * global batch, with no samples of it included.
 *
 * Gradient accumulation (--accum-steps K): an optimizer step's global batch comes as K
 * micro-steps, each a backward call. The first starts the gradients from zero, the others add
 * to them, and only the last one's buckets cross the ranks; the earlier ones stay on the rank
 * (a model with batch norm still sums its statistics over ranks in each of them).
 */
#ifndef SP_TRAIN_EXCHANGE_H
#define SP_TRAIN_EXCHANGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "comm/comm.h"
#include "comm/reducer.h"
#include "shardprop/model.h"
#include "shardprop/status.h"

/* What forward and the loss made of this rank's slice of the global batch. */
typedef struct sp_local_batch {
    int count;            /* samples of this rank (may be 0) */
    int64_t global_count; /* samples of the step's global batch, over all ranks and micro-steps */
    int64_t step;         /* the optimizer step (0-based, as sp_step_ctx) */
    int micro, micros;    /* micro-step `micro` (0-based) of the step's `micros` (0 or 1: one) */
    const float *dz;      /* (count, outputs): dLoss/dz at the output, mean over the global batch */
    const double *rows;   /* (count): each sample's loss (a sequence's: summed over positions) */
    int positions;        /* positions per sample with a loss: T of a sequence model, else 1 */
    double loss_sum;      /* the sum of rows (in the order of the samples) */
    int64_t correct;      /* cross-entropy: predictions equal to the label */
} sp_local_batch;

/* A step's sums over the global batch. */
typedef struct sp_step_sums {
    double loss;    /* the summed per-sample loss; NaN when one was not finite */
    double correct; /* correct predictions (cross-entropy) */
    double samples;
} sp_step_sums;

typedef struct sp_exchange sp_exchange;
struct sp_exchange {
    /* Backward of this rank's slice from lb->dz, the gradients summed over ranks as backward
     * completes them; on return the gradient slab holds the global mean gradient. Of a step in
     * micro-steps: the gradients add up on the rank, and the last micro-step sums them over
     * ranks. (collective: every micro-step) */
    sp_status (*backward)(sp_exchange *x, const sp_local_batch *lb);
    /* The step's sums over ranks (lb: this rank's over all its micro-steps) with this rank's verdict on the reduced gradient (bad: a
     * non-finite element here): *out global, *any_bad true when any rank found one. (collective) */
    sp_status (*sums)(sp_exchange *x, const sp_local_batch *lb, bool bad, sp_step_sums *out,
                      bool *any_bad);
    /* sums[0, n) = the sum of terms (count, n) over every sample of every rank, for the
     * model's layers (sp_model_allsum_fn): doubles in MPI's order (float), or exactly in fixed
     * point (fixed). (collective) */
    sp_status (*allsum)(sp_exchange *x, const double *terms, int count, size_t n, double *sums);
    void (*free)(sp_exchange *x);

    /* What the trainer reports about it. */
    sp_reducer *reducer;     /* the buckets of the gradients in flight, NULL with one rank */
    sp_reducer *plan;        /* the buckets for --dry-run: reducer, or (one rank) those that more
                                ranks would run */
    size_t elem_bytes;       /* bytes per element of a bucket: 4 (floats) or 8 (int64 terms) */
    const char *bucket_kind; /* "floats" or "int64 sums" */
    const char *memory_kind; /* what memory_bytes holds, for the --dry-run plan */
    size_t memory_bytes;     /* bytes held besides the model (receive and exchange buffers) */
    double t_wait[2]; /* the last backward's wait for the reduced gradients: start, end (wtime) */
};

/* The default exchange for model m: float buckets of bucket_bytes (0: one blocking allreduce
 * after backward) on comm. */
sp_status sp_exchange_float_create(sp_exchange **out, sp_model *m, sp_comm *comm,
                                   size_t bucket_bytes);

/* --deterministic's exchange (deterministic.c): micro-batches of `micro` samples, buckets of
 * bucket_bytes of int64 terms. */
sp_status sp_exchange_fixed_create(sp_exchange **out, sp_model *m, sp_comm *comm, int64_t micro,
                                   size_t bucket_bytes);

/* x->allsum as the model's sp_model_allsum_fn (user: the exchange). */
static inline sp_status sp_exchange_allsum(void *user, const double *terms, int count, size_t n,
                                           double *sums) {
    sp_exchange *x = user;
    return x->allsum(x, terms, count, n, sums);
}

static inline void sp_exchange_free(sp_exchange *x) {
    if (x) x->free(x);
}

#endif
