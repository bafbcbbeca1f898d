/* Forward: values down the graph, node by node in execution order. */
#include <math.h>
#include <string.h>

#include "model/model_impl.h"
#include "util/status.h"
#include "util/rng.h"

/* Batch norm in training: each sample's per-channel terms, summed over the batch of every rank
 * (with the count of values per channel as a last column), give the batch mean and variance;
 * the running statistics move towards them. A rank without samples takes part with no terms. */
static sp_status bn_train_forward_(sp_model *m, sp_node *L, const float *x, int B) {
    const int C = L->C;
    const size_t nt = 2 * (size_t)C + 1;
    double *t = m->terms;               /* (B, 2C + 1) */
    sp_bn_stat_terms(t, x, B, C, L->P); /* (B, 2C), widened in place below, last row first */
    for (int n = B - 1; n >= 0; --n) {
        memmove(t + (size_t)n * nt, t + (size_t)n * (nt - 1), (nt - 1) * sizeof *t);
        t[(size_t)n * nt + nt - 1] = L->P;
    }
    SP_CHECK(sp_model_sum_terms(m, t, B, nt, m->sums));
    const double M = L->M = m->sums[nt - 1];
    float *mean = L->saved, *inv_std = L->saved + C;
    float *run_mean = m->buffers + L->s_off, *run_var = run_mean + L->s_len;
    L->tracked++; /* every training pass, on every rank, as PyTorch's num_batches_tracked */
    if (M >= 2) {
        sp_bn_batch_stats(mean, inv_std, run_mean, run_var, m->sums, M, C, L->spec.eps,
                          L->spec.momentum);
    } else if (m->allsum) { /* M is global: every rank stops here together */
        return SP_FAIL(SP_ERR_ARG,
                       "batchnorm layer %s: %g value per channel in a training batch (PyTorch "
                       "refuses it too): use a larger batch",
                       L->spec.path, M);
    } else if (M == 1) { /* --bn-stats local, one value here: normalized, no update */
        for (int c = 0; c < C; ++c)
            mean[c] = (float)m->sums[c], inv_std[c] = 1 / sqrtf(L->spec.eps);
    }
    if (B > 0)
        sp_bn_forward(L->out, x, mean, inv_std, m->params + L->w_off, m->params + L->b_off, B, C,
                      L->P);
    return SP_OK;
}

/* Node i (conv2d) with the relu after it, and the maxpool after that when the relu's output
 * feeds only it, in one kernel (the same values as the separate layers). Returns the last node
 * it ran. */
static int conv_fused_forward_(sp_model *m, int i, const float *x, int B) {
    sp_node *L = &m->nodes[i], *R = &m->nodes[i + 1];
    const float *w = m->params + L->w_off, *b = L->b_len ? m->params + L->b_off : NULL;
    if (i + 2 < m->n && m->nodes[i + 2].spec.kind == SP_LAYER_MAXPOOL &&
        m->nodes[i + 2].spec.in[0] == i + 1 && R->consumers == 1) {
        sp_node *P = &m->nodes[i + 2];
        sp_conv2d_relu_maxpool_forward(L->out, R->out, P->out, P->argmax, L->saved, m->work1, x, w,
                                       b, &L->conv, &P->pool, B);
        return i + 2;
    }
    sp_conv2d_relu_forward(L->out, R->out, L->saved, m->work1, x, w, b, &L->conv, B);
    return i + 1;
}

static void act_forward_(const sp_node *L, const float *x, size_t n) {
    switch (L->spec.kind) {
    case SP_LAYER_RELU:
        sp_act_forward(L->out, x, n, SP_ACT_RELU, 0);
        break;
    case SP_LAYER_LEAKY_RELU:
        sp_act_forward(L->out, x, n, SP_ACT_LEAKY_RELU, L->spec.slope);
        break;
    case SP_LAYER_TANH:
        sp_act_forward(L->out, x, n, SP_ACT_TANH, 0);
        break;
    case SP_LAYER_SIGMOID:
        sp_act_forward(L->out, x, n, SP_ACT_SIGMOID, 0);
        break;
    default: /* SP_LAYER_GELU */
        sp_act_forward(L->out, x, n, L->spec.tanh ? SP_ACT_GELU_TANH : SP_ACT_GELU, 0);
        break;
    }
}

/* Node i on B samples; returns the last node run (a fused conv runs the next ones too). */
static int node_forward_(sp_model *m, int i, int B, const sp_step_ctx *ctx) {
    sp_node *L = &m->nodes[i];
    const float *x = sp_node_input(m, L, 0);
    const float *w = m->params + L->w_off, *b = L->b_len ? m->params + L->b_off : NULL;
    const size_t n = (size_t)B * L->out_size;
    const bool training = ctx && ctx->training;
    switch (L->spec.kind) {
    case SP_LAYER_DENSE: /* every position of a sequence: B * rows rows */
        sp_dense_forward(L->out, x, m->params + L->w_off, b, B * L->rows, (int)L->w_shape[1],
                         (int)L->w_shape[0]);
        break;
    case SP_LAYER_EMBEDDING: {
        const size_t npos = (size_t)B * L->in_size;
        const int64_t bad = sp_embedding_check(x, npos, L->spec.vocab);
        if (bad >= 0) {
            m->status = SP_FAIL(SP_ERR_DATA,
                                "embedding layer %s: token id %g (sample %lld, position %lld) is "
                                "not an integer in [0, %d)",
                                L->spec.path, (double)x[bad], (long long)(bad / L->in_size),
                                (long long)(bad % L->in_size), L->spec.vocab);
            break;
        }
        sp_embedding_forward(L->out, x, w, npos, L->spec.units);
        break;
    }
    case SP_LAYER_POS_EMBEDDING:
        sp_pos_embedding_forward(L->out, x, w, B, (int)L->in_shape[0], (int)L->in_shape[1]);
        break;
    case SP_LAYER_ATTENTION:
        sp_attention_forward(L->out, L->saved, m->attn_work, x, B, (int)L->in_shape[0],
                             (int)L->out_shape[1], L->spec.heads);
        break;
    case SP_LAYER_CONV2D:
        if (L->fused_fwd) return conv_fused_forward_(m, i, x, B);
        sp_conv2d_forward(L->out, L->saved, m->work1, x, w, b, &L->conv, B);
        break;
    case SP_LAYER_MAXPOOL:
        sp_maxpool_forward(L->out, L->argmax, x, &L->pool, B);
        break;
    case SP_LAYER_AVGPOOL:
        sp_avgpool_forward(L->out, x, &L->pool, B);
        break;
    case SP_LAYER_FLATTEN:
        L->out = (float *)x; /* same memory, new shape */
        break;
    case SP_LAYER_DROPOUT:
        if (training && L->spec.p > 0) {
            sp_dropout_forward(L->out, L->saved, x, ctx->sample_ids, B, L->out_size, L->spec.p,
                               ctx->seed, SP_STREAM_DROPOUT + ((uint64_t)i << 8), ctx->step);
        } else {
            /* evaluation: identity, and a mask of ones so backward stays correct */
            memcpy(L->out, x, n * sizeof(float));
            for (size_t e = 0; e < n; ++e) L->saved[e] = 1.0f;
        }
        break;
    case SP_LAYER_BATCHNORM:
        if (training) {
            const sp_status st = bn_train_forward_(m, L, x, B);
            if (st != SP_OK) m->status = st;
        } else {
            sp_bn_eval_stats(L->saved, L->saved + L->C, m->buffers + L->s_off,
                             m->buffers + L->s_off + L->s_len, L->C, L->spec.eps);
            sp_bn_forward(L->out, x, L->saved, L->saved + L->C, w, m->params + L->b_off, B, L->C,
                          L->P);
        }
        break;
    case SP_LAYER_LAYERNORM:
        sp_ln_forward(L->out, L->saved, L->saved + (size_t)m->max_batch * L->rows, x, w,
                      m->params + L->b_off, B * L->rows, (int)L->w_len, L->spec.eps);
        break;
    case SP_LAYER_GAP:
        sp_gap_forward(L->out, x, B, L->C, L->P);
        break;
    case SP_LAYER_UPSAMPLE:
        sp_upsample_forward(L->out, x, B, (int)L->in_shape[0], (int)L->in_shape[1],
                            (int)L->in_shape[2], L->spec.scale);
        break;
    case SP_LAYER_ADD:
        sp_add_forward(L->out, x, sp_node_input(m, L, 1), n);
        break;
    case SP_LAYER_CONCAT:
        sp_concat_forward(L->out, x, sp_node_input(m, L, 1), B, L->C, (int)(L->out_shape[0] - L->C),
                          L->P);
        break;
    default:
        act_forward_(L, x, n);
        break;
    }
    return i;
}

const float *sp_model_forward(sp_model *m, const float *x, int B, const sp_step_ctx *ctx) {
    m->x = x;
    m->last_training = ctx && ctx->training;
    m->status = SP_OK;
    for (int i = 0; i < m->n && m->status == SP_OK; ++i) {
        sp_node *L = &m->nodes[i];
        /* no samples: only the collective part of training batch norm runs */
        if (B == 0 && !(m->last_training && L->spec.kind == SP_LAYER_BATCHNORM)) continue;
        if (m->hook) m->hook(m->hook_user, SP_HOOK_FORWARD_BEGIN, i, NULL, 0);
        const int last = node_forward_(m, i, B, ctx);
        if (m->hook) m->hook(m->hook_user, SP_HOOK_FORWARD_END, last, NULL, 0);
        i = last;
    }
    return m->nodes[m->n - 1].out;
}
