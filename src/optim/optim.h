/*
 * Optimizers on slabs: one contiguous float buffer of all parameters (n) and one of all
 * gradients (n). The optimizer owns one contiguous state slab and knows nothing of layers,
 * MPI or HDF5; the trainer hands it the (already averaged, possibly clipped) gradient slab.
 *
 * Semantics are those of torch.optim (1.13, single-tensor path, float32), per element i:
 *
 *   SGD     d = g + wd*p                               (only if wd > 0)
 *           buf = momentum*buf + d                     (only if momentum > 0; dampening 0)
 *           d = nesterov ? d + momentum*buf : buf      (only if momentum > 0)
 *           p = p + (-lr)*d
 *   Adam    d = g + wd*p                               (L2 on the gradient, only if wd > 0)
 *   AdamW   p = p * (1 - lr*wd)                        (decoupled decay, factor in double)
 *   Adam(W) m = m*b1 + (1-b1)*d                        (AdamW: d = g)
 *           v = v*b2 + ((1-b2)*d)*d
 *           t = step count after increment (1 on the first update)
 *           step_size = lr / (1 - b1^t)                (double, then rounded to float)
 *           denom = sqrt(v) / (float)sqrt(1 - b2^t) + eps
 *           p = p + ((-step_size)*m) / denom
 *
 * All element arithmetic is float32 in exactly the order written above (the build has no FMA
 * contraction); scalar coefficients (1-b1, 1-b2, 1-lr*wd, the bias corrections and the step
 * size) are computed in double from the float hyperparameters, as Python does, and rounded to
 * float once. torch's SGD starts the momentum buffer as a copy of d; here the buffer starts at
 * zero and momentum*0 + d == d, so the first step is identical.
 *
 * The update is elementwise and OpenMP-threaded over elements: results are bitwise identical
 * for any thread count. Nothing is allocated during a step.
 */
#ifndef SP_OPTIM_OPTIM_H
#define SP_OPTIM_OPTIM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The public part: kinds, config, create/free/step (one declaration per function). */
#include "shardprop/optim.h"
#include "shardprop/status.h"

/* Set the step count when resuming from a checkpoint (>= 0), together with the state arrays. */
void sp_optim_set_step_count(sp_optimizer *opt, int64_t steps);

/* Checkpointing: the number of state arrays (0, 1 or 2), each of n floats, their names
 * ("momentum_buffer" | "exp_avg" | "exp_avg_sq", as in torch's state_dict) and pointers into the
 * optimizer's slab (owned by the optimizer; valid until sp_optim_free; readable and writable).
 * i outside [0, sp_optim_num_states) gives NULL. */
int sp_optim_num_states(const sp_optimizer *opt);
const char *sp_optim_state_name(const sp_optimizer *opt, int i);
float *sp_optim_state(sp_optimizer *opt, int i);

/* The optimizer's own copy of its config (owned by the optimizer). */
const sp_opt_config *sp_optim_config(const sp_optimizer *opt);

#endif
