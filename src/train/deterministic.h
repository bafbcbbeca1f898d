/*
 * --deterministic: a training step whose result is bitwise the same for every layout of ranks x
 * threads (see deterministic.c for the design and README "Deterministic training").
 */
#ifndef SP_TRAIN_DETERMINISTIC_H
#define SP_TRAIN_DETERMINISTIC_H

#include <stdbool.h>
#include <stdint.h>

#include "data/data.h"
#include "comm/comm.h"
#include "comm/reducer.h"
#include "shardprop/model.h"
#include "shardprop/status.h"

typedef struct sp_det sp_det;

/* For model m (max batch = this rank's largest slice), micro-batches of `micro` samples,
 * `outputs` classes (xent) or targets (mse), on comm (one rank: no allreduce at all). The int64
 * allreduce runs in buckets of bucket_bytes (--bucket-mb; 0: one blocking call after backward),
 * each started during backward as soon as its layers' accumulators are final. */
sp_status sp_det_create(sp_det **out, sp_model *m, int64_t micro, bool xent, int outputs,
                        sp_comm *comm, size_t bucket_bytes);
void sp_det_free(sp_det *d);

/*
 * One training step of this rank's slice b (whole micro-batches, sp_rank_slice_micro), summed
 * exactly over all ranks (collective; every rank calls it for every global batch, count 0
 * included): on return the model's gradient slab holds the gradient of the mean loss over the
 * global batch, identical on every rank and for every layout, and sums = {loss sum, correct,
 * samples} over the global batch (loss NaN if any sample's loss was not finite). A gradient term
 * out of the fixed-point range, or not finite, is an error (the same on every rank).
 * *compute_s gets the local compute time added.
 */
sp_status sp_det_step(sp_det *d, sp_comm *comm, const sp_batch *b, const sp_step_ctx *ctx,
                      double sums[3], double *compute_s);

/* The integer reducer (its statistics and bucket times), or NULL with one rank. */
sp_reducer *sp_det_reducer(sp_det *d);
/* Its buckets for the --dry-run plan: the reducer's, or with one rank those it would have (a
 * plan without a communicator, never run). */
sp_reducer *sp_det_buckets(sp_det *d);
/* Bytes held: the int64 sums, the scratch and packing buffers, and the reducer's exchange
 * buffers (the --dry-run memory plan). */
size_t sp_det_memory_bytes(const sp_det *d);

/* When the last sp_det_step's wait for its integer allreduce started and ended (sp_comm_wtime; equal when
 * there is one rank): for the straggler statistics and the --trace timeline. */
void sp_det_reduce_times(const sp_det *d, double *start, double *end);

#endif
