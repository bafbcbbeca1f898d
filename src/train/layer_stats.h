/*
 * --layer-stats: per layer with parameters, on logging steps, how large the error signal
 * arriving at the layer is, how large its gradients are, and how much the step moved its
 * weights — written as "layer_stats" records to the metrics file (docs/observability.md).
 *
 * A logging step must be chosen identically on every rank (a function of the step number):
 * sp_layer_stats_after_update makes one small allreduce on armed steps. On other steps, and
 * without --layer-stats (no object, no hook), nothing is computed.
 *
 * Per step:  sp_layer_stats_arm(ls, logging)  before forward;
 *            sp_layer_stats_error_signal       from the model's layer hook during backward;
 *            sp_layer_stats_before_update      after the gradient allreduce, before clipping;
 *            sp_layer_stats_after_update       after the optimizer step (collective if armed).
 */
#ifndef SP_TRAIN_LAYER_STATS_H
#define SP_TRAIN_LAYER_STATS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "comm/comm.h"
#include "shardprop/model.h"
#include "shardprop/status.h"

typedef struct sp_layer_stats sp_layer_stats;

/* root: this rank writes the records (keeps a copy of the parameters on logging steps). */
sp_status sp_layer_stats_create(sp_layer_stats **out, const sp_model *m, bool root);
void sp_layer_stats_free(sp_layer_stats *ls);

void sp_layer_stats_arm(sp_layer_stats *ls, bool on);
bool sp_layer_stats_armed(const sp_layer_stats *ls);

/* dy: the n floats of the error signal arriving at `layer` on this rank (its local batch). */
void sp_layer_stats_error_signal(sp_layer_stats *ls, int layer, const float *dy, size_t n);

/* The gradient slab holds the reduced (global) gradient; the parameters are before the step. */
void sp_layer_stats_before_update(sp_layer_stats *ls, sp_model *m);

/* After the step: sums the error signals over ranks and (root) writes one record per layer
 * with parameters to metrics (may be NULL). Collective when armed; disarms. */
sp_status sp_layer_stats_after_update(sp_layer_stats *ls, sp_model *m, sp_comm *c, FILE *metrics,
                                      int64_t step, int64_t epoch, double lr);

#endif
