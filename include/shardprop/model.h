/*
 * shardprop/model.h — a sequential neural network built from a spec string.
 *
 *   int64_t shape[] = {1, 28, 28};                     // one sample: (C, H, W) or (F)
 *   sp_model *m;
 *   sp_status st = sp_model_create(&m, "conv2d:32:3:pad=1,relu,maxpool:2,flatten,dense:10",
 *                                  shape, 3, 128);       // up to 128 samples per call
 *   sp_model_init_params(m, 42);                        // depends only on seed and spec
 *   sp_model_forward(m, x, B, &ctx);                    // x (B, 1, 28, 28) -> output (B, 10)
 *   ... loss gives d_out (B, 10) ...
 *   sp_model_zero_grads(m);
 *   sp_model_backward(m, d_out, B, NULL, NULL);         // gradients accumulate in the slab
 *
 * Spec grammar (README "The model language"): comma-separated items, each a layer
 * `name[:arg...]` (positional args first, then `key=value`), residual(f [| g]) or
 * repeat:N(...); save:NAME, add:NAME and concat:NAME join named values. Layers:
 *   dense:UNITS[:bias=0]                          nn.Linear(in, UNITS)
 *   conv2d:OUT_CHANNELS:KERNEL[:stride=S][:pad=P][:bias=0]  nn.Conv2d(in_c, OUT, K, S, P)
 *   maxpool:K[:stride=S]  avgpool:K[:stride=S]    nn.MaxPool2d / nn.AvgPool2d (stride = K)
 *   batchnorm[:eps=E][:momentum=M]  layernorm[:eps=E]  gap  upsample:S
 *   flatten  relu  leaky_relu[:SLOPE]  tanh  sigmoid  gelu[:tanh]  dropout:P
 * Sequences (T, D), a language model's (input (T) token ids):
 *   embedding:VOCAB:DIM  pos_embedding  attention:heads=H[:bias=0]  dense:UNITS[:tie]
 *   (dense and layernorm act on every position)
 * The model is a graph of layers ("nodes", index i in execution order; a straight stack's
 * node i is item i of the spec, as in nn.Sequential).
 *
 * Memory: the model owns one contiguous slab each of parameters and gradients (layer i's
 * weight then bias, layers in node order; PyTorch layouts), one of buffers (batch norm's
 * running statistics), and the activation buffers for
 * up to max_batch samples. Nothing is allocated during forward or backward.
 * Threading: forward and backward are OpenMP-parallel and bitwise identical for any number of
 * threads. The model knows nothing of MPI: a layer that needs a sum over the ranks (the
 * statistics of a normalization over the global batch) calls the allsum its caller supplied.
 */
#ifndef SHARDPROP_MODEL_H
#define SHARDPROP_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "shardprop/status.h"

typedef struct sp_model sp_model;

/* What one forward pass needs to know beyond its input. */
typedef struct sp_step_ctx {
    bool training;             /* dropout active, batch norm on batch statistics (and updating
                                  its running statistics) */
    uint64_t seed;             /* run seed: dropout masks are functions of (seed, step, sample) */
    int64_t step;              /* optimizer step this pass belongs to */
    const int64_t *sample_ids; /* (B) global sample ids, or NULL: the row index */
} sp_step_ctx;

/* Build a model for samples of shape input_shape[0..input_rank) (rank 1 or 3; e.g. a dataset's
 * info->sample_shape and sample_rank) taking up to max_batch >= 1 samples per call. The spec
 * and shape are copied. Parameters are zero until sp_model_init_params (or written through
 * sp_model_params). *out is the caller's, released with sp_model_free; on failure *out = NULL
 * and SP_ERR_SPEC names the offending spec item (SP_ERR_NOMEM if the buffers do not fit). */
sp_status sp_model_create(sp_model **out, const char *spec, const int64_t *input_shape,
                          int input_rank, int max_batch);
/* Free the model and every buffer it owns (the slabs and the forward output die with it).
 * NULL is fine. */
void sp_model_free(sp_model *m);

/* He-uniform (layers followed by relu / leaky_relu / gelu) or Xavier-uniform weights, zero
 * biases, from the counter-based RNG keyed by (seed, layer index, element). */
void sp_model_init_params(sp_model *m, uint64_t seed);

/* Getters: the spec as given (owned by the model), layer count, max_batch, parameter count,
 * floats per sample in and out, the input shape (owned by the model; input_rank entries), and
 * the parameter and gradient slabs (owned by the model, writable, valid until sp_model_free). */
const char *sp_model_spec(const sp_model *m);
int sp_model_num_layers(const sp_model *m);
int sp_model_max_batch(const sp_model *m);
size_t sp_model_num_params(const sp_model *m);
size_t sp_model_input_size(const sp_model *m);  /* floats per sample in */
size_t sp_model_output_size(const sp_model *m); /* floats per sample out */
int sp_model_input_rank(const sp_model *m);
const int64_t *sp_model_input_shape(const sp_model *m);
float *sp_model_params(sp_model *m); /* (num_params) */
float *sp_model_grads(sp_model *m);  /* (num_params) */

/* Layer i's parameters: name ("dense", "conv2d", ...), and for layers with parameters the
 * offset and PyTorch shape of the weight and bias in the slabs. Returns false for a layer
 * without parameters (then the offsets are untouched). */
const char *sp_model_layer_name(const sp_model *m, int i);
bool sp_model_layer_params(const sp_model *m, int i, size_t *w_off, int *w_rank, int64_t w_shape[4],
                           size_t *b_off, int64_t *b_len);
/* The same as flat ranges of the slabs: weights [w_off, w_off + w_len), bias [b_off, b_off +
 * b_len). Returns false for a layer without parameters (outputs untouched). */
bool sp_model_layer_ranges(const sp_model *m, int i, size_t *w_off, size_t *w_len, size_t *b_off,
                           size_t *b_len);

/* Forward floating-point operations for one sample (a multiply-add counts 2; GEMM layers
 * dominate; backward costs about twice this for layers with parameters). */
double sp_model_flops_per_sample(const sp_model *m);

/* Bytes the model holds: parameters, gradients and the buffers for max_batch samples (not the
 * optimizer state, which the optimizer owns). */
size_t sp_model_memory_bytes(const sp_model *m);

/* Layer i's output shape for one sample (rank 1 or 3, into shape[0..rank)); returns the rank. */
int sp_model_layer_out_shape(const sp_model *m, int i, int64_t shape[3]);

/* Forward B <= max_batch samples x (B, input_size); returns the output (B, output_size),
 * valid until the next forward. */
const float *sp_model_forward(sp_model *m, const float *x, int B, const sp_step_ctx *ctx);

/* Called during backward when the gradients of every parameter at offsets >= grad_begin are
 * complete (backward runs last layer first; parameters are laid out first layer first). */
typedef void (*sp_grad_ready_fn)(void *user, size_t grad_begin);

/* Backward from d_out (B, output_size) = dLoss/d_output of the last forward; ADDS parameter
 * gradients into the gradient slab. on_ready may be NULL. */
void sp_model_backward(sp_model *m, const float *d_out, int B, sp_grad_ready_fn on_ready,
                       void *user);
void sp_model_zero_grads(sp_model *m);
/* As sp_model_backward, but the gradient slab is OVERWRITTEN with this batch's gradients (every
 * parameter's; all zero for B = 0): no sp_model_zero_grads before it, and one pass less over the
 * slab (the weight-gradient GEMMs write instead of read-add-write). The values are those of
 * sp_model_zero_grads + sp_model_backward, except that a gradient of exactly zero may be -0. */
void sp_model_backward_fresh(sp_model *m, const float *d_out, int B, sp_grad_ready_fn on_ready,
                             void *user);

/*
 * Sums over the ranks that train together, for layers whose forward or backward needs
 * statistics of the global batch (batch norm). The caller (the trainer, or an application with
 * its own communicator) supplies fn: it sets sums[0, n) to the sum of terms[s][0, n) over every
 * sample s of every rank (terms: (count, n), this rank's samples; count may be 0). It is
 * collective: every rank's model calls it at the same points of forward and backward, in the
 * same order and with the same n, including a rank without samples of the batch. The caller
 * chooses how to sum (doubles, or exactly in fixed point for --deterministic). Without one (the
 * default) the sums are over this process's samples only. A failed sum is reported by
 * sp_model_status.
 */
typedef sp_status (*sp_model_allsum_fn)(void *user, const double *terms, int count, size_t n,
                                        double *sums);
void sp_model_set_allsum(sp_model *m, sp_model_allsum_fn fn, void *user);
/* sums[0, n) = the sum of terms (count, n) over this process's samples, in sample order (what
 * the model does without an allsum; an allsum over doubles starts from it). */
void sp_model_local_sums(const double *terms, int count, size_t n, double *sums);

/* SP_OK, or why the last forward or backward failed (a sum over ranks that failed, or a batch
 * norm given one value per channel in training); the outputs are then meaningless. Every rank
 * gets the same verdict when the failure is in the sums' values. */
sp_status sp_model_status(const sp_model *m);

/* ---- the graph ---- */
/* Layer i's module path in the equivalent PyTorch module ("3", "3.f.0"; model/spec.h), and its
 * inputs: in[0..count) are layer indices, -1 for the model's input. Returns the count (1 or 2;
 * add and concat take two). */
const char *sp_model_layer_path(const sp_model *m, int i);
int sp_model_layer_inputs(const sp_model *m, int i, int in[2]);
/* The embedding layer whose weight layer i uses (dense:V:tie), or -1: its own or none. */
int sp_model_layer_tied(const sp_model *m, int i);
/* Bytes layer i keeps for backward for max_batch samples: its output (unless it aliases its
 * input) and what it saves besides (im2col columns, masks, indices, statistics). */
size_t sp_model_layer_saved_bytes(const sp_model *m, int i);

/* ---- buffers: state that is not learned (batch norm's running statistics) ----
 * One slab of nbuffers floats; layer i's running mean is [off, off + len) and its running
 * variance [off + len, off + 2 len). *tracked points at its num_batches_tracked (writable).
 * Returns false for a layer without buffers. Initialized (mean 0, variance 1, count 0) by
 * sp_model_create; training updates them, evaluation reads them. */
size_t sp_model_num_buffers(const sp_model *m);
float *sp_model_buffers(sp_model *m); /* (nbuffers) */
bool sp_model_layer_buffers(sp_model *m, int i, size_t *off, size_t *len, int64_t **tracked);

#endif
