/*
 * Scaling plan: per-layer compute times measured on this machine, and the advice that
 * `shardprop train --dry-run --network NET` prints from them with the alpha-beta model of
 * scale/costmodel.h (docs/scaling.md). Nothing here is collective.
 */
#ifndef SP_SCALE_SCALEPLAN_H
#define SP_SCALE_SCALEPLAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "shardprop/model.h"
#include "shardprop/optim.h"
#include "shardprop/status.h"

typedef struct sp_layer_times {
    int nlayers, batch;
    double *fwd_s, *bwd_s; /* (nlayers) */
    long *w_off;           /* (nlayers) first parameter of the layer in the slab, -1: none */
    double update_s;       /* one optimizer step (oc), 0 without oc */
    size_t nparams;
} sp_layer_times;

/*
 * Time forward and backward of every layer of `spec` (sample shape `shape`, rank 1 or 3) at
 * batch B with the current OpenMP threads: layer i's time is that of the model made of layers
 * 0..i minus that of layers 0..i-1 (backward of a prefix does exactly the full model's work for
 * those layers), the best of `reps` runs each, negatives clamped to 0 and the layers rescaled so
 * that they add up to the whole model's time. oc (may be NULL): also time one optimizer step.
 * Free with sp_layer_times_free.
 */
sp_status sp_time_layers(const char *spec, const int64_t *shape, int rank, int B, int reps,
                         const sp_opt_config *oc, sp_layer_times *out);
void sp_layer_times_free(sp_layer_times *t);

/* The advice of --network: for P = 1, 2, 4, ... up to min(1024, global_batch) ranks at this
 * global batch (local batch ceil(batch / P), each timed here), the modelled step, efficiency and
 * bound with the current bucket size and with the best one, the largest P at >= 90 %
 * efficiency, and what Open MPI 4.1's default MPI_Iallreduce does to it. */
sp_status sp_scale_advice(FILE *f, const sp_model *m, const char *network, int64_t global_batch,
                          double bucket_mb, const sp_opt_config *oc);

/* --network NET is valid (scale/costmodel.h names) and goes with --dry-run. */
sp_status sp_train_check_network(const char *network, bool dry_run);

#endif
