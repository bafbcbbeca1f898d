/*
 * One training step: backpropagation on this rank's slice of a global batch, as the story goes.
 *
 *   forward   each layer computes its output from the one below;
 *   loss      the error at the output, and its gradient dz (the mean over the global batch);
 *   backward  the blame flows down: each layer adds its share to the gradients and passes the
 *             rest on, while the buckets of final gradients are summed over the ranks
 *             (train/exchange.h: the float allreduce, or --deterministic's fixed point);
 *   verdict   a non-finite loss or gradient on any rank is agreed on, and then no rank updates;
 *   update    clipping and the optimizer, the same bits on every rank.
 *
 * With gradient accumulation (--accum-steps K) the global batch comes as K micro-batches, one
 * after the other: forward, loss and backward for each, the gradients adding up on the rank, and
 * the buckets cross the ranks during the last backward only. The loss is the mean over the
 * whole step's global batch throughout, so the gradient is that of one step of the whole batch.
 *
 * The step does nothing else: logging, tracing, statistics and checkpoints observe it from the
 * trainer (what it returns, and the one observer point `on_reduced`).
 */
#ifndef SP_TRAIN_STEP_H
#define SP_TRAIN_STEP_H

#include <stdbool.h>
#include <stdint.h>

#include "data/data.h"
#include "optim/optim.h"
#include "shardprop/model.h"
#include "shardprop/status.h"
#include "train/exchange.h"
#include "train/nonfinite.h"

/* When each phase of a step began (sp_comm_wtime seconds). */
typedef struct sp_step_times {
    double start;    /* forward (of the first micro-batch) */
    double backward; /* the last micro-batch's backward, with the exchange of buckets */
    double wait;     /* waiting for the last buckets (this rank's compute is done) */
    double reduced;  /* the gradients are global: the verdict */
    double update;   /* clipping and the optimizer */
    double end;
} sp_step_times;

/* What a step gives back. */
typedef struct sp_step_result {
    double loss_sum;        /* summed per-sample loss of the global batch (NaN if not finite) */
    double correct;         /* correct predictions over the global batch (cross-entropy) */
    double samples;         /* samples of the global batch */
    bool nonfinite;         /* agreed: a non-finite loss or gradient somewhere; no update */
    bool bad_grad;          /* of which: a rank's reduced gradient held a NaN or an Inf */
    sp_nonfinite_scan scan; /* what this rank's reduced gradient held, for the message */
    sp_step_times t;
} sp_step_result;

typedef struct sp_step_config {
    bool xent;        /* cross-entropy over `outputs` classes, else MSE over `outputs` targets */
    int outputs;      /* classes or targets per position: floats per sample out of the model */
    int positions;    /* positions per sample: T of a language model, whose output (T, outputs)
                         has a label at every position and whose loss is the mean over all the
                         tokens of the global batch; 1 (or 0) for one label per sample */
    double clip_norm; /* clip the global gradient norm to this (0: off) */
    uint64_t seed;    /* dropout masks are functions of (seed, step, sample) */
    /* Called after the gradients are global, before the verdict and the update (NULL: none):
     * the observers that need the reduced, unclipped gradient. */
    void (*on_reduced)(void *user, sp_model *m, int64_t step);
    void *user;
} sp_step_config;

typedef struct sp_step sp_step;

/* A step for model m (its max batch: this rank's largest slice), updated by opt, its
 * gradients crossing ranks through x (borrowed, all three). */
sp_status sp_step_create(sp_step **out, sp_model *m, sp_optimizer *opt, sp_exchange *x,
                         const sp_step_config *cfg);
void sp_step_free(sp_step *s);
/* Bytes of the step's own buffers (the error signal and the per-sample losses). */
size_t sp_step_memory_bytes(const sp_step *s);

/* The global batch of one step, as this rank sees it: its slice of each micro-batch. */
typedef struct sp_step_batches {
    const sp_batch *first; /* the first micro-batch (the whole batch without accumulation) */
    int count;             /* micro-batches: K, fewer in an epoch's partial last step, or 1 */
    int64_t global_count;  /* samples of the step's global batch, all micro-batches together */
    /* the next micro-batch of this rank, agreed with every rank (collective; valid until the
     * next call) */
    sp_status (*next)(void *user, sp_batch *b);
    void *user;
} sp_step_batches;

/* Step number `step` (0-based) on this rank's slices of the global batch in, at learning rate
 * lr. (collective: every rank, every global batch and micro-batch, with no samples included) */
sp_status sp_step_run(sp_step *s, const sp_step_batches *in, int64_t step, double lr,
                      sp_step_result *r);

#endif
