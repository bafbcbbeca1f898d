/*
 * The model's private state, shared by its three files: model.c (building the graph: shapes,
 * the slabs, the buffers, initialization), forward.c (values down the graph) and backward.c
 * (blame up the graph, summed at every node from all its consumers).
 */
#ifndef SP_MODEL_IMPL_H
#define SP_MODEL_IMPL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "layers/layers.h"
#include "model/layer_hook.h"
#include "model/spec.h"
#include "model/wgrad.h"
#include "shardprop/model.h"

/* How the blame for one input of a node arrives (backward.c plans it once, at create time):
 * written into a fresh slot, added into the slot that already holds earlier blame (into a copy
 * when that slot is shared), or, for nodes that pass their blame on unchanged (add, flatten),
 * the node's own slot handed on without a copy. */
typedef enum { SP_BLAME_NONE, SP_BLAME_WRITE, SP_BLAME_ADD, SP_BLAME_ALIAS } sp_blame_how;

typedef struct sp_blame_route {
    int dy;              /* slot holding dL/d(this node's output); -1: no blame is needed here */
    sp_blame_how how[2]; /* per input */
    int to[2];           /* slot the input's blame ends in */
    int from[2];         /* SP_BLAME_ADD: the slot holding the earlier blame (== to unless it
                            was shared and is copied) */
    bool fused;          /* maxpool: the relu below is fused in; `to` is the relu's input's */
} sp_blame_route;

typedef struct sp_node {
    sp_layer_spec spec; /* kind, arguments, inputs, module path */
    int in_rank, out_rank;
    int64_t in_shape[3], out_shape[3]; /* of in[0]; of the output (rank 1: F; rank 3: C, H, W) */
    size_t in_size, out_size;          /* floats per sample */
    size_t w_off, w_len, b_off, b_len; /* views into the parameter and gradient slabs */
    int w_rank;
    int64_t w_shape[4];
    size_t s_off, s_len; /* batchnorm: running mean at s_off, running var at s_off + s_len */
    int64_t tracked;     /* batchnorm: num_batches_tracked */
    double M;            /* batchnorm: values per channel in the last training batch (all ranks) */
    int C, P;            /* batchnorm: channels, values per channel and sample; concat: Ca, P */
    int rows;            /* positions per sample a dense or layer norm acts on: T of a sequence
                            input (T, D), else 1 */
    int tie;             /* dense:V:tie: the embedding node whose weight it uses, else -1 */
    sp_conv_geom conv;
    sp_pool_geom pool;
    float *out;          /* (max_batch, out_size); flatten aliases its input */
    float *saved;        /* conv: col (c*k*k, max_batch*oh*ow); dropout: mask (max_batch, size);
                        batchnorm: mean, inv_std (C each); layernorm: mean, inv_std (max_batch
                        * rows each); attention: lse (max_batch, heads, T) */
    int32_t *argmax;     /* maxpool: (max_batch, out_size) */
    size_t saved_floats; /* what this node keeps for backward besides its output */
    int consumers;       /* nodes reading the output (the last node's also feeds the loss) */
    bool learns;         /* this node or one upstream of it has parameters */
    bool fused_fwd;      /* conv: the relu (and maxpool) after it run inside its kernel */
    sp_blame_route route;
} sp_node;

struct sp_model {
    char *spec;
    int n;
    sp_node *nodes; /* execution order: every input before its consumers */
    int input_rank;
    int64_t input_shape[3];
    size_t input_size, output_size;
    int max_batch;
    size_t nparams, nbuffers;
    float *params;        /* (nparams) every node's weight then bias, in node order */
    float *grads;         /* (nparams) same layout */
    float *buffers;       /* (nbuffers) batch norm's running means and variances */
    float *act;           /* slab of node outputs and saved values */
    size_t widest;        /* floats per sample of the widest value (a blame slot's width) */
    int nslots;           /* blame slots (backward.c's plan) */
    bool need_scratch;    /* some blame is added to earlier blame: one more slot, the scratch */
    float *slots;         /* (nslots [+ 1], max_batch, widest): the last one the scratch */
    float *work1, *work2; /* conv scratch: (oc, B*oh*ow) and (c*k*k, B*oh*ow), widest conv */
    float *attn_work;     /* attention scratch (sp_attention_scratch_floats), widest attention */
    bool tied;            /* a dense shares the embedding's weight (tie): their gradients add */
    double *terms;        /* (max_batch * rows, widest terms): normalization's per-sample (per
                             position) terms */
    double *sums;         /* (widest terms) their sums */
    size_t buffer_floats; /* activations, saved values, blame slots and scratch */
    const float *x;       /* input of the last forward (caller-owned) */
    bool last_training;
    sp_status status;      /* of the last forward or backward (a failed sum over ranks) */
    sp_layer_hook_fn hook; /* observer (--trace, --layer-stats), usually NULL */
    void *hook_user;
    sp_model_allsum_fn allsum; /* sums over the ranks (sp_model_set_allsum), or NULL */
    void *allsum_user;
};

/* The value node k reads as input e: a node's output or the model's input. */
static inline const float *sp_node_input(const sp_model *m, const sp_node *L, int e) {
    const int j = L->spec.in[e];
    return j == SP_SPEC_INPUT ? m->x : m->nodes[j].out;
}

/* Plan the blame slots (backward.c): fills every node's route and m->nslots. */
void sp_model_plan_blame(sp_model *m);

/* Sums of per-sample terms over the batch of every rank (the allsum, or locally). */
sp_status sp_model_sum_terms(sp_model *m, const double *terms, int count, size_t n, double *sums);

#endif
