/*
 * shardprop/optim.h — SGD, Adam and AdamW on a model's parameter and gradient slabs.
 *
 *   sp_opt_config oc = sp_opt_config_defaults(SP_OPT_ADAM);  // torch.optim defaults
 *   oc.weight_decay = 1e-4f;
 *   sp_optimizer *opt;
 *   if (sp_optim_create(&opt, &oc, sp_model_num_params(m)) != SP_OK) { ...sp_last_error()... }
 *   ... forward, loss, sp_model_zero_grads, backward ...
 *   sp_optim_step(opt, sp_model_params(m), sp_model_grads(m), 1e-3f);
 *   sp_optim_free(opt);
 *
 * Semantics are those of torch.optim (1.13, single-tensor path, float32); the full per-element
 * formulas are documented in the source (src/optim/optim.h). The optimizer owns one contiguous
 * state slab (SGD with momentum: 1 x n floats; Adam, AdamW: 2 x n) and knows nothing of layers,
 * MPI or HDF5: nothing here is collective. In a data-parallel run every rank hands it the same
 * averaged gradients and so keeps identical parameters. The update is elementwise and
 * OpenMP-threaded: bitwise identical for any thread count. Nothing is allocated during a step.
 */
#ifndef SHARDPROP_OPTIM_H
#define SHARDPROP_OPTIM_H

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

/* Parse "sgd" | "adam" | "adamw" (exact, lower case) into *out. SP_ERR_ARG naming the choices
 * otherwise. */
sp_status sp_opt_kind_parse(const char *name, sp_opt_kind *out);

/* "sgd" | "adam" | "adamw" (static string; "unknown" for an out-of-range value). */
const char *sp_opt_kind_name(sp_opt_kind kind);

/* The defaults of torch.optim for `kind`: momentum 0, no nesterov, weight_decay 0,
 * betas (0.9, 0.999), eps 1e-8. The learning rate is not part of the config: it is passed to
 * every sp_optim_step. */
sp_opt_config sp_opt_config_defaults(sp_opt_kind kind);

/* Validate the fields that `kind` uses (others are ignored): momentum in [0, 1), nesterov only
 * with momentum > 0, weight_decay >= 0 and finite, beta1 and beta2 in [0, 1), eps > 0 and finite.
 * SP_ERR_ARG with a message naming the field and its value otherwise. */
sp_status sp_opt_config_check(const sp_opt_config *cfg);

/* The optimizer (opaque): a copy of the config, the step count and one state slab. */
typedef struct sp_optimizer sp_optimizer;

/* Create an optimizer for n >= 1 parameters: checks cfg (copied), allocates the zeroed state
 * slab; step count 0. *out is owned by the caller and released with sp_optim_free. On failure
 * *out = NULL. */
sp_status sp_optim_create(sp_optimizer **out, const sp_opt_config *cfg, size_t n);

/* Release the optimizer and its state slab (NULL is a no-op). */
void sp_optim_free(sp_optimizer *opt);

/* Number of parameters n the optimizer was created for. */
size_t sp_optim_size(const sp_optimizer *opt);

/*
 * One update of params (n) from grads (n) with this step's learning rate lr (> 0); increments
 * the step count first (Adam's bias correction uses the incremented count t = 1, 2, ...).
 * params (e.g. sp_model_params) is updated in place; grads (e.g. sp_model_grads) is only read.
 * params and grads must not overlap each other or the state slab. Not collective.
 */
void sp_optim_step(sp_optimizer *opt, float *params, const float *grads, float lr);

/* Number of updates done so far (0 after create). */
int64_t sp_optim_step_count(const sp_optimizer *opt);

#endif
