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

#include "shardprop/status.h"

typedef enum { SP_OPT_SGD, SP_OPT_ADAM, SP_OPT_ADAMW } sp_opt_kind;

typedef struct sp_opt_config {
    sp_opt_kind kind;
    float momentum;          /* SGD: in [0, 1); 0 = plain SGD, no state */
    bool nesterov;           /* SGD: Nesterov momentum, needs momentum > 0 */
    float weight_decay;      /* >= 0. SGD/Adam: L2 added to the gradient; AdamW: decoupled */
    float beta1, beta2, eps; /* Adam(W): betas in [0, 1), eps > 0; defaults 0.9, 0.999, 1e-8 */
} sp_opt_config;

/* Parse "sgd" | "adam" | "adamw" (exact, lower case). SP_ERR_ARG naming the choices otherwise. */
sp_status sp_opt_kind_parse(const char *name, sp_opt_kind *out);

/* "sgd" | "adam" | "adamw" (static string; "unknown" for an out-of-range value). */
const char *sp_opt_kind_name(sp_opt_kind kind);

/* The defaults of torch.optim for `kind`: momentum 0, no nesterov, weight_decay 0,
 * betas (0.9, 0.999), eps 1e-8. The learning rate is not part of the config (see schedule.h). */
sp_opt_config sp_opt_config_defaults(sp_opt_kind kind);

/* Validate the fields that `kind` uses (others are ignored): momentum in [0, 1), nesterov only
 * with momentum > 0, weight_decay >= 0 and finite, beta1 and beta2 in [0, 1), eps > 0 and finite.
 * SP_ERR_ARG with a message naming the field and its value otherwise. */
sp_status sp_opt_config_check(const sp_opt_config *cfg);

/*
 * The optimizer: a copy of the config, the step count and ONE contiguous state slab:
 *   SGD, momentum > 0:  momentum_buffer (n)
 *   SGD, momentum == 0: no state
 *   Adam, AdamW:        exp_avg (n), then exp_avg_sq (n)
 */
typedef struct sp_optimizer sp_optimizer;

/* Create an optimizer for n >= 1 parameters: checks cfg, allocates the zeroed state slab; step
 * count 0. *out is owned by the caller and released with sp_optim_free. On failure *out = NULL. */
sp_status sp_optim_create(sp_optimizer **out, const sp_opt_config *cfg, size_t n);

/* Release the optimizer and its state slab (NULL is a no-op). */
void sp_optim_free(sp_optimizer *opt);

/* Number of parameters n the optimizer was created for. */
size_t sp_optim_size(const sp_optimizer *opt);

/*
 * One synchronized update of params (n) from grads (n) with this step's learning rate lr
 * (> 0, from sp_schedule_lr rounded to float); increments the step count first (Adam's bias
 * correction uses the incremented count t = 1, 2, ...). params is updated in place; grads is
 * only read. params and grads must not overlap each other or the state slab.
 */
void sp_optim_step(sp_optimizer *opt, float *params, const float *grads, float lr);

/* Number of updates done so far (0 after create). */
int64_t sp_optim_step_count(const sp_optimizer *opt);

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
