/*
 * Backward: the blame goes up the graph, node by node in reverse execution order. Each node
 * receives dy = dLoss/d(its output), takes its share (its parameters' gradients) and passes the
 * rest to its inputs. A value read by several nodes (the x of y = x + f(x)) gets the blame of
 * every consumer: the first writes it, each later one adds to it, once.
 *
 * The blame lives in slots of (max_batch, widest value) floats. Which slot holds what is a
 * function of the graph alone, so it is planned once, at create time (sp_model_plan_blame):
 * a node whose blame passes unchanged (add: both inputs; flatten) hands its slot on instead of
 * copying it, and a slot that two values share is copied before one of them is added to
 * (copy on write). A straight stack needs two slots and never adds, as before graphs.
 */
#include <string.h>

#include "model/model_impl.h"
#include "util/status.h"

/* ---- the plan ---- */

enum { SLOT_DOUT = 0 }; /* the caller's d_out: read-only, never reused */

typedef struct blame_plan {
    int *grad; /* (n) the slot holding node k's blame so far, or -1 */
    int *refs; /* (n + 2) holders per slot */
    int nslots;
} blame_plan;

static int take_slot_(blame_plan *p) {
    for (int s = 1; s <= p->nslots; ++s)
        if (p->refs[s] == 0) {
            p->refs[s] = 1;
            return s;
        }
    p->refs[++p->nslots] = 1;
    return p->nslots;
}

/* maxpool k fed by a relu that feeds only it: the relu's backward is fused into the pool's. */
static int fused_relu_(const sp_model *m, int k) {
    const sp_node *L = &m->nodes[k];
    const int r = L->spec.in[0];
    if (L->spec.kind != SP_LAYER_MAXPOOL || r < 0) return -1;
    const sp_node *R = &m->nodes[r];
    return R->spec.kind == SP_LAYER_RELU && R->consumers == 1 ? r : -1;
}

void sp_model_plan_blame(sp_model *m) {
    int grad[4096], refs[4096 + 2] = {0}; /* spec.c: at most 4096 nodes */
    blame_plan p = {.grad = grad, .refs = refs};
    for (int k = 0; k < m->n; ++k) grad[k] = -1;
    sp_node *last = &m->nodes[m->n - 1];
    if (last->learns) grad[m->n - 1] = SLOT_DOUT, refs[SLOT_DOUT] = 2; /* + 1: never written */
    m->need_scratch = false;
    for (int k = m->n - 1; k >= 0; --k) {
        sp_node *L = &m->nodes[k];
        sp_blame_route *R = &L->route;
        memset(R, 0, sizeof *R);
        R->dy = grad[k];
        if (R->dy < 0) continue;
        int in[2] = {L->spec.in[0], L->spec.in[1]};
        const int relu = fused_relu_(m, k);
        if (relu >= 0) R->fused = true, in[0] = m->nodes[relu].spec.in[0];
        const bool pass = L->spec.kind == SP_LAYER_ADD || L->spec.kind == SP_LAYER_FLATTEN ||
                          L->spec.kind == SP_LAYER_POS_EMBEDDING;
        bool later[2] = {false, false};
        for (int e = 0; e < 2; ++e) { /* fresh blame: a new slot, or this node's handed on */
            const int j = in[e];
            if (j < 0 || !m->nodes[j].learns) continue;
            if (grad[j] >= 0) {
                later[e] = true;
                continue;
            }
            if (pass) {
                R->how[e] = SP_BLAME_ALIAS;
                grad[j] = R->to[e] = R->dy;
                refs[R->dy]++;
            } else {
                R->how[e] = SP_BLAME_WRITE;
                grad[j] = R->to[e] = take_slot_(&p);
            }
        }
        refs[R->dy]--;                /* this node's blame is read before any of it is added to */
        for (int e = 0; e < 2; ++e) { /* added to earlier blame: in place, or into a copy */
            if (!later[e]) continue;
            const int j = in[e], from = grad[j];
            R->how[e] = SP_BLAME_ADD;
            R->from[e] = from;
            if (refs[from] > 1) {
                refs[from]--;
                grad[j] = take_slot_(&p);
            }
            R->to[e] = grad[j];
            if (!pass) m->need_scratch = true;
        }
    }
    m->nslots = p.nslots;
}

/* ---- running it ---- */

static float *slot_(sp_model *m, int s, const float *d_out) {
    if (s == SLOT_DOUT) return (float *)d_out;
    return m->slots + (size_t)(s - 1) * m->widest * (size_t)m->max_batch;
}

static float *scratch_(sp_model *m) {
    return m->slots + (size_t)m->nslots * m->widest * (size_t)m->max_batch;
}

/* to = from + src over n floats (to may be from, src or both). */
static void add_blame_(float *to, const float *from, const float *src, size_t n) {
#pragma omp parallel for simd schedule(static) if (n > 32768)
    for (size_t i = 0; i < n; ++i) to[i] = from[i] + src[i];
}

/* Where node L writes the blame of input e: its slot, the scratch (to be added), or NULL. */
static float *dst_(sp_model *m, const sp_node *L, int e, const float *d_out) {
    switch (L->route.how[e]) {
    case SP_BLAME_WRITE:
        return slot_(m, L->route.to[e], d_out);
    case SP_BLAME_ADD:
        return scratch_(m);
    default:
        return NULL;
    }
}

/* Floats per sample of the value node L reads as input e. */
static size_t in_size_(const sp_model *m, const sp_node *L, int e) {
    const int j = L->route.fused && e == 0 ? m->nodes[L->spec.in[0]].spec.in[0] : L->spec.in[e];
    return j == SP_SPEC_INPUT ? m->input_size : m->nodes[j].out_size;
}

/* The earlier blame of input e plus src (the scratch, or dy for a node that passes it on). */
static void finish_add_(sp_model *m, const sp_node *L, int e, const float *src, int B,
                        const float *d_out) {
    if (L->route.how[e] != SP_BLAME_ADD) return;
    add_blame_(slot_(m, L->route.to[e], d_out), slot_(m, L->route.from[e], d_out), src,
               (size_t)B * in_size_(m, L, e));
}

static const sp_act act_of_[] = {
    [SP_LAYER_RELU] = SP_ACT_RELU, [SP_LAYER_LEAKY_RELU] = SP_ACT_LEAKY_RELU,
    [SP_LAYER_TANH] = SP_ACT_TANH, [SP_LAYER_SIGMOID] = SP_ACT_SIGMOID,
    [SP_LAYER_GELU] = SP_ACT_GELU,
};

static sp_act act_(const sp_node *L) {
    return L->spec.kind == SP_LAYER_GELU && L->spec.tanh ? SP_ACT_GELU_TANH : act_of_[L->spec.kind];
}

typedef struct bwd {
    sp_wgrad_fn wfn; /* --deterministic: the parameter gradients handed out, or NULL */
    void *wuser;
    bool acc; /* add the parameter gradients into the slab, else overwrite them */
} bwd;

/* A normalization's parameter gradients as per-sample terms (B, w_len + b_len), handed to
 * --deterministic's accumulator. */
static void hand_out_terms_(sp_model *m, const sp_node *L, const double *terms, int B,
                            const bwd *o) {
    const sp_wgrad_layer wl = {.index = (int)(L - m->nodes),
                               .kind = SP_WGRAD_TERMS,
                               .w_off = L->w_off,
                               .w_len = L->w_len,
                               .b_off = L->b_off,
                               .b_len = L->b_len,
                               .B = B * L->rows,
                               .rows = L->rows,
                               .terms = terms};
    o->wfn(o->wuser, &wl);
}

/* An embedding's weight gradient as rows of blame added into rows of the weight (the token's
 * row, or the position's), handed to --deterministic's accumulator. */
static void hand_out_rows_(sp_model *m, const sp_node *L, const float *dy, const float *ids, int B,
                           const bwd *o) {
    const bool tokens = L->spec.kind == SP_LAYER_EMBEDDING;
    const sp_wgrad_layer wl = {.index = (int)(L - m->nodes),
                               .kind = SP_WGRAD_ROWS,
                               .w_off = L->w_off,
                               .w_len = L->w_len,
                               .B = B * (int)L->out_shape[0],
                               .rows = (int)L->out_shape[0],
                               .dy = dy,
                               .x = tokens ? ids : NULL,
                               .in = (int)L->w_shape[0],
                               .out = (int)L->w_shape[1]};
    o->wfn(o->wuser, &wl);
}

/* Batch norm: dgamma, dbeta from the per-sample terms; dx with the terms summed over every
 * rank (training), or through the fixed running statistics (evaluation). */
static sp_status bn_backward_(sp_model *m, sp_node *L, float *dx, const float *dy, const float *x,
                              int B, const bwd *o) {
    const int C = L->C;
    double *t = m->terms;
    const float *mean = L->saved, *inv_std = L->saved + C, *gamma = m->params + L->w_off;
    if (B > 0) {
        sp_bn_grad_terms(t, dy, x, mean, inv_std, B, C, L->P);
        if (o->wfn) {
            hand_out_terms_(m, L, t, B, o);
        } else {
            sp_term_sums(m->grads + L->w_off, t, B, 2 * C, o->acc);
        }
    }
    if (!dx) return SP_OK; /* the input takes no blame: no sums either, on any rank */
    double *s = m->sums;
    double M = 1;
    if (m->last_training) {
        SP_CHECK(sp_model_sum_terms(m, t, B, 2 * (size_t)C, s));
        M = L->M;
    } else {
        memset(s, 0, 2 * (size_t)C * sizeof *s); /* fixed statistics: dx = gamma inv_std dy */
    }
    if (B > 0) sp_bn_backward(dx, dy, x, mean, inv_std, gamma, s, M, B, C, L->P);
    return SP_OK;
}

/* The weight gradients of a dense or conv node handed to --deterministic's accumulator. */
static void hand_out_(sp_model *m, const sp_node *L, const float *dy, const float *x, int B,
                      const bwd *o) {
    const bool conv = L->spec.kind == SP_LAYER_CONV2D;
    const sp_wgrad_layer wl = {.index = (int)(L - m->nodes),
                               .kind = conv ? SP_WGRAD_CONV : SP_WGRAD_DENSE,
                               .w_off = L->w_off,
                               .w_len = L->w_len,
                               .b_off = L->b_off,
                               .b_len = L->b_len,
                               .B = B * L->rows,
                               .rows = L->rows,
                               .dy = conv ? m->work1 : dy, /* conv: dyp, see wgrad.h */
                               .x = conv ? L->saved : x,
                               .in = conv ? (int)L->in_size : (int)L->w_shape[1],
                               .out = conv ? (int)L->out_size : (int)L->w_shape[0],
                               .geom = conv ? &L->conv : NULL,
                               .tied = L->tie >= 0};
    o->wfn(o->wuser, &wl);
}

/* Node k's backward: its parameters' gradients and its inputs' blame. */
static sp_status node_backward_(sp_model *m, int k, const float *d_out, int B, const bwd *o) {
    sp_node *L = &m->nodes[k];
    const float *dy = slot_(m, L->route.dy, d_out);
    const float *x = sp_node_input(m, L, 0);
    float *dx = dst_(m, L, 0, d_out);
    float *dw = o->wfn ? NULL : m->grads + L->w_off;
    float *db = o->wfn || !L->b_len ? NULL : m->grads + L->b_off;
    const float *w = m->params + L->w_off;
    const size_t n = (size_t)B * L->out_size;
    switch (L->spec.kind) {
    case SP_LAYER_DENSE: /* every position of a sequence: B * rows rows */
        sp_dense_backward(dx, dw, db, dy, x, w, B * L->rows, (int)L->w_shape[1], (int)L->w_shape[0],
                          o->acc);
        if (o->wfn) hand_out_(m, L, dy, x, B, o);
        break;
    case SP_LAYER_EMBEDDING: /* a tied projection (later, so earlier in backward) wrote first */
        if (dw)
            sp_embedding_backward(dw, dy, x, (size_t)B * L->in_size, L->spec.vocab, L->spec.units,
                                  o->acc || m->tied);
        else
            hand_out_rows_(m, L, dy, x, B, o);
        break;
    case SP_LAYER_POS_EMBEDDING: /* dP from dy; the blame passes to x unchanged */
        if (dw)
            sp_pos_embedding_backward(dw, dy, B, (int)L->in_shape[0], (int)L->in_shape[1], o->acc);
        else
            hand_out_rows_(m, L, dy, NULL, B, o);
        finish_add_(m, L, 0, dy, B, d_out);
        return SP_OK;
    case SP_LAYER_ATTENTION:
        if (dx)
            sp_attention_backward(dx, m->attn_work, dy, x, L->out, L->saved, B, (int)L->in_shape[0],
                                  (int)L->out_shape[1], L->spec.heads);
        break;
    case SP_LAYER_CONV2D:
        sp_conv2d_backward(dx, dw, db, m->work1, m->work2, dy, L->saved, w, &L->conv, B, o->acc);
        if (o->wfn) hand_out_(m, L, dy, x, B, o);
        break;
    case SP_LAYER_MAXPOOL:
        if (L->route.fused) /* and the relu below: x, the pool's input, is the relu's output */
            sp_maxpool_relu_backward(dx, dy, L->argmax, x, &L->pool, B);
        else
            sp_maxpool_backward(dx, dy, L->argmax, &L->pool, B);
        break;
    case SP_LAYER_AVGPOOL:
        sp_avgpool_backward(dx, dy, &L->pool, B);
        break;
    case SP_LAYER_DROPOUT:
        sp_dropout_backward(dx, dy, L->saved, B, L->out_size);
        break;
    case SP_LAYER_BATCHNORM:
        SP_CHECK(bn_backward_(m, L, dx, dy, x, B, o));
        break;
    case SP_LAYER_LAYERNORM: {
        const int D = (int)L->w_len, R = B * L->rows; /* each position of a sequence */
        const float *mean = L->saved, *inv_std = L->saved + (size_t)m->max_batch * L->rows;
        sp_ln_backward(dx, dw, dw ? m->grads + L->b_off : NULL, dy, x, mean, inv_std, w, R, D,
                       o->acc);
        if (o->wfn) {
            sp_ln_grad_terms(m->terms, dy, x, mean, inv_std, R, D);
            hand_out_terms_(m, L, m->terms, B, o);
        }
        break;
    }
    case SP_LAYER_GAP:
        sp_gap_backward(dx, dy, B, L->C, L->P);
        break;
    case SP_LAYER_UPSAMPLE:
        sp_upsample_backward(dx, dy, B, (int)L->in_shape[0], (int)L->in_shape[1],
                             (int)L->in_shape[2], L->spec.scale);
        break;
    case SP_LAYER_CONCAT: { /* one part at a time: the scratch holds one */
        const int Ca = L->C, Cb = (int)(L->out_shape[0] - Ca);
        if (dx) sp_concat_backward(dx, NULL, dy, B, Ca, Cb, L->P);
        finish_add_(m, L, 0, dx, B, d_out);
        float *d1 = dst_(m, L, 1, d_out);
        if (d1) sp_concat_backward(NULL, d1, dy, B, Ca, Cb, L->P);
        finish_add_(m, L, 1, d1, B, d_out);
        return SP_OK;
    }
    case SP_LAYER_ADD: /* the blame passes to both inputs unchanged */
    case SP_LAYER_FLATTEN:
        finish_add_(m, L, 0, dy, B, d_out);
        finish_add_(m, L, 1, dy, B, d_out);
        return SP_OK;
    default: /* elementwise activations */
        if (dx) sp_act_backward(dx, dy, x, L->out, n, act_(L), L->spec.slope);
        break;
    }
    finish_add_(m, L, 0, dx, B, d_out);
    return SP_OK;
}

/* Node k's part when this rank has no samples of the batch: only what is collective, a training
 * batch norm whose input takes blame joining the sums over ranks with no terms. */
static sp_status empty_node_backward_(sp_model *m, const sp_node *L) {
    if (!m->last_training || L->spec.kind != SP_LAYER_BATCHNORM || !L->route.how[0]) return SP_OK;
    return sp_model_sum_terms(m, m->terms, 0, 2 * (size_t)L->C, m->sums);
}

/* One walk for every rank, with samples or without (then the gradients are zero): the
 * collective calls (batch norm's sums, on_ready starting gradient buckets) come in the same
 * order on every rank, as MPI matches collectives by order. */
static void backward_(sp_model *m, const float *d_out, int B, sp_grad_ready_fn on_ready, void *user,
                      const bwd *o) {
    m->status = SP_OK;
    if (B <= 0 && !o->acc && !o->wfn) sp_model_zero_grads(m);
    for (int k = m->n - 1; k >= 0 && m->status == SP_OK; --k) {
        sp_node *L = &m->nodes[k];
        if (L->route.dy < 0) continue; /* no blame needed here or below */
        if (B <= 0) {
            m->status = empty_node_backward_(m, L);
            if (L->w_len && on_ready) on_ready(user, L->w_off);
            continue;
        }
        if (m->hook)
            m->hook(m->hook_user, SP_HOOK_BACKWARD_BEGIN, k, slot_(m, L->route.dy, d_out),
                    (size_t)B * L->out_size);
        m->status = node_backward_(m, k, d_out, B, o);
        if (L->w_len && on_ready) on_ready(user, L->w_off);
        if (m->hook)
            m->hook(m->hook_user, SP_HOOK_BACKWARD_END, L->route.fused ? L->spec.in[0] : k, NULL,
                    0);
    }
}

void sp_model_backward(sp_model *m, const float *d_out, int B, sp_grad_ready_fn on_ready,
                       void *user) {
    backward_(m, d_out, B, on_ready, user, &(bwd){.acc = true});
}

void sp_model_backward_fresh(sp_model *m, const float *d_out, int B, sp_grad_ready_fn on_ready,
                             void *user) {
    backward_(m, d_out, B, on_ready, user, &(bwd){.acc = false});
}

void sp_model_backward_wgrad(sp_model *m, const float *d_out, int B, sp_wgrad_fn fn, void *user) {
    backward_(m, d_out, B, NULL, NULL, &(bwd){.wfn = fn, .wuser = user, .acc = true});
}

bool sp_model_wgrad_info(const sp_model *m, int i, sp_wgrad_info *info) {
    const sp_node *L = &m->nodes[i];
    const bool tied = L->tie >= 0;
    if (!L->w_len && !tied) return false;
    const sp_layer_kind k = L->spec.kind;
    const bool rows = k == SP_LAYER_EMBEDDING || k == SP_LAYER_POS_EMBEDDING;
    *info = (sp_wgrad_info){.kind = k == SP_LAYER_DENSE    ? SP_WGRAD_DENSE
                                    : k == SP_LAYER_CONV2D ? SP_WGRAD_CONV
                                    : rows                 ? SP_WGRAD_ROWS
                                                           : SP_WGRAD_TERMS,
                            .w_off = L->w_off,
                            .w_len = tied ? m->nodes[L->tie].w_len : L->w_len,
                            .b_off = L->b_off,
                            .b_len = L->b_len,
                            .in = k == SP_LAYER_DENSE ? (int)L->w_shape[1]
                                  : rows              ? (int)L->w_shape[0]
                                                      : (int)L->in_size,
                            .out = k == SP_LAYER_DENSE ? (int)L->w_shape[0]
                                   : rows              ? (int)L->w_shape[1]
                                                       : (int)L->out_size,
                            .rows = rows ? (int)L->out_shape[0] : L->rows,
                            .tied = tied};
    return true;
}
