/*
 * Non-finite gradients (--on-nonfinite stop|skip). After the gradient allreduce every rank holds
 * the same reduced gradient; the trainer scans it (one pass over the slab), sums the verdict over
 * ranks together with the loss (so every rank takes the same decision even if the reductions
 * differed), and then either stops with a message naming the step and the layer, or drops the
 * step: no parameter update, optimizer state untouched, the batch consumed, the drop counted.
 *
 * "The first layer" is the first in backward order: the parameter layer closest to the output
 * whose gradient holds a NaN or an Inf. Backward computes the blame from the loss downwards, so
 * that is where the non-finite values entered the gradient (every layer below inherits them).
 */
#ifndef SP_TRAIN_NONFINITE_H
#define SP_TRAIN_NONFINITE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "shardprop/model.h"
#include "shardprop/status.h"

/* What the scan found on this rank. */
typedef struct sp_nonfinite_scan {
    int first_layer; /* spec index of the first parameter layer in backward order with a
                        non-finite gradient element, -1 when all are finite */
    int bad_layers;  /* parameter layers with a non-finite gradient element */
    int param_layers;
} sp_nonfinite_scan;

/* --on-nonfinite: "stop" (default) or "skip". */
sp_status sp_nonfinite_parse(const char *mode, bool *skip);

/* Scan the gradient slab of m, layer by layer from the output down. */
void sp_nonfinite_scan_grads(sp_model *m, sp_nonfinite_scan *out);

/* The error for --on-nonfinite stop (step is 1-based, as the logs count), or the one-line
 * warning text for skip (into buf). loss is the global loss sum of the step; reported_by_other:
 * this rank's gradient was finite but another rank's was not. */
sp_status sp_nonfinite_error(sp_model *m, const sp_nonfinite_scan *s, int64_t step, double loss,
                             bool reported_by_other);
void sp_nonfinite_describe(sp_model *m, const sp_nonfinite_scan *s, int64_t step, double loss,
                           bool reported_by_other, char *buf, size_t cap);

/* The agreed decision for a step whose global loss sum (loss) or reduced gradient (on some rank:
 * any_bad) is non-finite: with skip false the error above; with skip true, count it in *skipped,
 * warn (when talk, the first 10 times and then at powers of ten) and return SP_OK: the caller
 * drops the update. step is 1-based. */
sp_status sp_nonfinite_handle(sp_model *m, bool skip, int64_t step, double loss, bool any_bad,
                              const sp_nonfinite_scan *s, int64_t *skipped, bool talk);

#endif
