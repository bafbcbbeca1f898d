/*
 * Synthetic data sets generated in memory from a seed (for the demo, tests and benchmarks).
 * Every value is a pure function of (seed, sample index), so any subset can be generated
 * independently and the same set comes out on every rank.
 *
 *   blobs       C Gaussian clusters in F dimensions, centres uniform in [-4, 4]^F, unit spread.
 *   spirals     C interleaved spiral arms in 2-D (F must be 2); the classic two-spirals task at C=2.
 *   regression  targets y = tanh(x W) + 0.05 noise with x ~ U[-1, 1]^F and a fixed random
 *               W (F, T): a smooth nonlinear regression task with T outputs.
 */
#ifndef SP_DATA_SYNTH_H
#define SP_DATA_SYNTH_H

#include <stdint.h>

#include "shardprop/status.h"

typedef enum { SP_SYNTH_BLOBS, SP_SYNTH_SPIRALS, SP_SYNTH_REGRESSION } sp_synth_kind;

/* Parse "blobs" | "spirals" | "regression". */
sp_status sp_synth_kind_parse(const char *name, sp_synth_kind *out);

/*
 * Generate samples [first, first + n) of the set.
 *   x       (n, features) float32
 *   labels  (n) class index, for blobs and spirals (NULL for regression)
 *   targets (n, outputs) float32, for regression (NULL otherwise)
 * `classes` is the number of classes (blobs, spirals) and `outputs` the number of regression
 * targets.
 */
sp_status sp_synth_generate(sp_synth_kind kind, int64_t first, int64_t n, int features, int classes,
                            int outputs, uint64_t seed, float *x, int32_t *labels, float *targets);

#endif
