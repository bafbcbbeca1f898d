/* The sequential model: shape inference, the slabs, forward down the stack, backward up it. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "layers/layers.h"
#include "model/layer_hook.h"
#include "model/spec.h"
#include "model/wgrad.h"
#include "shardprop/model.h"
#include "util/arith.h"
#include "util/mem.h"
#include "util/shape.h"
#include "util/rng.h"
#include "util/status.h"

typedef struct sp_layer {
    sp_layer_spec spec;
    int in_rank, out_rank;
    int64_t in_shape[3], out_shape[3];
    size_t in_size, out_size;          /* floats per sample */
    size_t w_off, w_len, b_off, b_len; /* views into the parameter and gradient slabs */
    int w_rank;
    int64_t w_shape[4];
    sp_conv_geom conv;
    sp_pool_geom pool;
    float *out;      /* (max_batch, out_size) this layer's output; flatten aliases its input */
    float *saved;    /* conv: col (c*k*k, max_batch*oh*ow); dropout: mask (max_batch, size) */
    int32_t *argmax; /* maxpool: (max_batch, out_size) */
} sp_layer;

struct sp_model {
    char *spec;
    int n;
    sp_layer *layers;
    int input_rank;
    int64_t input_shape[3];
    size_t input_size, output_size;
    int max_batch;
    size_t nparams;
    float *params;        /* (nparams) every layer's weight then bias, in spec order */
    float *grads;         /* (nparams) same layout */
    float *act;           /* slab of layer outputs and saved values */
    float *dbuf[2];       /* (max_batch, widest layer) error-signal ping-pong */
    float *work1, *work2; /* conv scratch: (oc, B*oh*ow) and (c*k*k, B*oh*ow), widest conv */
    size_t buffer_floats; /* activations, saved values, error signals and scratch */
    const float *x;       /* input of the last forward (caller-owned) */
    int last_B;
    sp_layer_hook_fn hook; /* observer (--trace, --layer-stats), usually NULL */
    void *hook_user;
    sp_model_allsum_fn allsum; /* sums over the ranks (sp_model_set_allsum), or NULL */
    void *allsum_user;
};

/* The kernels index a batch of activations with int (B * C * H * W, GEMM dimensions), and the
 * geometry adds padding to H and W in int: every per-batch count stays below 2^31 and every
 * image side below 2^24 (as the input's). */
#define SP_MODEL_MAX_SIDE ((int64_t)1 << 24)
static bool batch_fits_(size_t per_sample, int max_batch) {
    return per_sample <= (size_t)INT32_MAX / (size_t)max_batch;
}

static void *alloc_floats_(size_t n) {
    size_t bytes = (n * sizeof(float) + 63) & ~(size_t)63;
    void *p = aligned_alloc(64, bytes ? bytes : 64);
    if (p) memset(p, 0, bytes ? bytes : 64);
    return p;
}

/* Infer each layer's output shape and parameter shapes from its input. */
static sp_status infer_shapes_(sp_model *m) {
    int rank = m->input_rank;
    int64_t shape[3] = {m->input_shape[0], m->input_shape[1], m->input_shape[2]};
    size_t off = 0;
    for (int i = 0; i < m->n; ++i) {
        sp_layer *L = &m->layers[i];
        const sp_layer_spec *s = &L->spec;
        char got[96];
        sp_shape_str(got, sizeof got, shape, rank);
        L->in_rank = rank;
        memcpy(L->in_shape, shape, sizeof shape);
        L->in_size = (size_t)shape[0] * (size_t)(rank == 3 ? shape[1] * shape[2] : 1);
        if (rank == 3 && (shape[1] > SP_MODEL_MAX_SIDE || shape[2] > SP_MODEL_MAX_SIDE))
            return SP_FAIL(SP_ERR_SPEC,
                           "model spec: layer %d '%s': input %s has a side above 2^24 (%lld)", i,
                           s->text, got, (long long)SP_MODEL_MAX_SIDE);
        switch (s->kind) {
        case SP_LAYER_DENSE:
            if (rank != 1)
                return SP_FAIL(SP_ERR_SPEC,
                               "model spec: layer %d '%s': needs a flat input (F) but gets %s; "
                               "add 'flatten' before it",
                               i, s->text, got);
            L->w_rank = 2;
            L->w_shape[0] = s->units, L->w_shape[1] = shape[0];
            L->w_len = (size_t)s->units * (size_t)shape[0];
            L->b_len = (size_t)s->units;
            shape[0] = s->units;
            break;
        case SP_LAYER_CONV2D:
            if (rank != 3 ||
                !sp_conv_geom_init(&L->conv, (int)shape[0], (int)shape[1], (int)shape[2],
                                   s->out_channels, s->kernel, s->stride, s->pad))
                return SP_FAIL(SP_ERR_SPEC,
                               "model spec: layer %d '%s': needs an image input (C, H, W) at "
                               "least as large as the kernel, but gets %s",
                               i, s->text, got);
            L->w_rank = 4;
            L->w_shape[0] = s->out_channels, L->w_shape[1] = shape[0];
            L->w_shape[2] = L->w_shape[3] = s->kernel;
            size_t ckk;
            if (!sp_size_mul((size_t)shape[0] * (size_t)s->kernel, (size_t)s->kernel, &ckk) ||
                ckk > (size_t)INT32_MAX || !sp_size_mul((size_t)s->out_channels, ckk, &L->w_len))
                return SP_FAIL(SP_ERR_SPEC,
                               "model spec: layer %d '%s': %lld input channels x kernel %d x %d "
                               "is too large",
                               i, s->text, (long long)shape[0], s->kernel, s->kernel);
            L->b_len = (size_t)s->out_channels;
            shape[0] = s->out_channels, shape[1] = L->conv.oh, shape[2] = L->conv.ow;
            break;
        case SP_LAYER_MAXPOOL:
        case SP_LAYER_AVGPOOL:
            if (rank != 3 || !sp_pool_geom_init(&L->pool, (int)shape[0], (int)shape[1],
                                                (int)shape[2], s->kernel, s->stride))
                return SP_FAIL(SP_ERR_SPEC,
                               "model spec: layer %d '%s': needs an image input (C, H, W) at "
                               "least as large as the window, but gets %s",
                               i, s->text, got);
            shape[1] = L->pool.oh, shape[2] = L->pool.ow;
            break;
        case SP_LAYER_FLATTEN:
            if (rank == 3) shape[0] = shape[0] * shape[1] * shape[2];
            rank = 1;
            break;
        default: /* elementwise: shape unchanged */
            break;
        }
        L->out_rank = rank;
        memcpy(L->out_shape, shape, sizeof shape);
        /* each factor is below 2^31 (int in the spec and the geometry): no int64 overflow */
        const int64_t out_size = shape[0] * (rank == 3 ? shape[1] * shape[2] : 1);
        if (!batch_fits_((size_t)out_size, m->max_batch)) {
            char o[96];
            sp_shape_str(o, sizeof o, shape, rank);
            return SP_FAIL(SP_ERR_SPEC,
                           "model spec: layer %d '%s': output %s x batch %d is more than 2^31 - 1 "
                           "values (a smaller layer or batch?)",
                           i, s->text, o, m->max_batch);
        }
        L->out_size = (size_t)out_size;
        if (L->w_len) {
            L->w_off = off;
            L->b_off = off + L->w_len;
            if (!sp_size_add(off, L->w_len, &off) || !sp_size_add(off, L->b_len, &off))
                return SP_FAIL(SP_ERR_SPEC, "model spec: layer %d '%s': parameter count overflows",
                               i, s->text);
        }
    }
    m->nparams = off;
    m->output_size = m->n ? m->layers[m->n - 1].out_size : m->input_size;
    return SP_OK;
}

/* Lay out the activation slab: outputs, saved values and scratch for max_batch samples. */
static sp_status alloc_buffers_(sp_model *m) {
    const size_t B = (size_t)m->max_batch;
    size_t act = 0, widest = m->input_size, w1 = 0, w2 = 0;
    size_t offs[3 * 4096];
    for (int i = 0; i < m->n; ++i) {
        sp_layer *L = &m->layers[i];
        size_t out_n = 0, saved_n = 0, arg_n = 0;
        if (!sp_size_mul(L->out_size, B, &out_n))
            return SP_FAIL(SP_ERR_NOMEM, "model: layer %d output too large", i);
        if (L->out_size > widest) widest = L->out_size;
        if (L->spec.kind == SP_LAYER_CONV2D) {
            const sp_conv_geom *g = &L->conv;
            size_t cols, ckk = (size_t)g->c * g->k * g->k, ohw = (size_t)g->oh * g->ow;
            if (!sp_size_mul(ohw, B, &cols) || !sp_size_mul(ckk, cols, &saved_n))
                return SP_FAIL(SP_ERR_NOMEM, "model: layer %d im2col buffer too large", i);
            if ((size_t)g->oc * cols > w1) w1 = (size_t)g->oc * cols; /* B * out_size < 2^31 */
            if (saved_n > w2) w2 = saved_n;
        } else if (L->spec.kind == SP_LAYER_DROPOUT) {
            saved_n = out_n;
        } else if (L->spec.kind == SP_LAYER_MAXPOOL) {
            arg_n = out_n;
        }
        if (L->spec.kind == SP_LAYER_FLATTEN) out_n = 0;
        offs[3 * i] = act;
        bool ok = sp_size_add(act, (out_n + 15) & ~(size_t)15, &act);
        offs[3 * i + 1] = act;
        ok = ok && sp_size_add(act, (saved_n + 15) & ~(size_t)15, &act);
        offs[3 * i + 2] = act;
        ok = ok &&
             sp_size_add(act, (arg_n + 15) & ~(size_t)15, &act); /* int32 fits in a float slot */
        if (!ok) return SP_FAIL(SP_ERR_NOMEM, "model: activations too large");
    }
    size_t dlen, total = act, bytes;
    if (!sp_size_mul(widest, B, &dlen))
        return SP_FAIL(SP_ERR_NOMEM, "model: activations too large");
    m->buffer_floats = act + 2 * dlen + w1 + w2;
    /* Everything the model will hold: activations, error signals, conv scratch, parameters and
     * gradients, checked against the memory limit before any of it is allocated. */
    if (!sp_size_add(total, dlen, &total) || !sp_size_add(total, dlen, &total) ||
        !sp_size_add(total, w1, &total) || !sp_size_add(total, w2, &total) ||
        !sp_size_add(total, m->nparams, &total) || !sp_size_add(total, m->nparams, &total) ||
        !sp_size_mul(total, sizeof(float), &bytes))
        return SP_FAIL(SP_ERR_NOMEM, "model \"%.200s\": size overflows size_t", m->spec);
    char who[320];
    snprintf(who, sizeof who, "model \"%.200s\" (batch %d)", m->spec, m->max_batch);
    SP_CHECK(sp_mem_check(bytes, who, "parameters, gradients and activations"));
    m->act = alloc_floats_(act);
    m->dbuf[0] = alloc_floats_(dlen);
    m->dbuf[1] = alloc_floats_(dlen);
    m->work1 = w1 ? alloc_floats_(w1) : NULL;
    m->work2 = w2 ? alloc_floats_(w2) : NULL;
    if (!m->act || !m->dbuf[0] || !m->dbuf[1] || (w1 && !m->work1) || (w2 && !m->work2))
        return SP_FAIL(SP_ERR_NOMEM,
                       "model: cannot allocate %.1f MB of activations for a batch of %d",
                       (double)(act + 2 * dlen + w1 + w2) * 4 / 1e6, m->max_batch);
    for (int i = 0; i < m->n; ++i) {
        sp_layer *L = &m->layers[i];
        L->out = m->act + offs[3 * i];
        L->saved = m->act + offs[3 * i + 1];
        L->argmax = (int32_t *)(void *)(m->act + offs[3 * i + 2]);
    }
    return SP_OK;
}

sp_status sp_model_create(sp_model **out, const char *spec, const int64_t *input_shape,
                          int input_rank, int max_batch) {
    *out = NULL;
    if (input_rank != 1 && input_rank != 3)
        return SP_FAIL(SP_ERR_SPEC, "model: input must be (F) or (C, H, W), got rank %d",
                       input_rank);
    for (int d = 0; d < input_rank; ++d)
        if (input_shape[d] < 1 || input_shape[d] > (1 << 24))
            return SP_FAIL(SP_ERR_SPEC, "model: input dimension %d is %lld", d,
                           (long long)input_shape[d]);
    if (max_batch < 1) return SP_FAIL(SP_ERR_ARG, "model: batch size must be >= 1");
    sp_model *m = calloc(1, sizeof *m);
    if (!m) return SP_FAIL(SP_ERR_NOMEM, "model: out of memory");
    sp_layer_spec *specs = NULL;
    int n = 0;
    sp_status st = sp_spec_parse(spec, &specs, &n);
    if (st != SP_OK) {
        free(m);
        return st;
    }
    m->spec = strdup(spec);
    m->n = n;
    m->layers = calloc((size_t)n, sizeof *m->layers);
    if (!m->spec || !m->layers) {
        free(specs);
        sp_model_free(m);
        return SP_FAIL(SP_ERR_NOMEM, "model: out of memory");
    }
    for (int i = 0; i < n; ++i) m->layers[i].spec = specs[i];
    free(specs);
    m->input_rank = input_rank;
    m->input_shape[0] = input_shape[0];
    m->input_shape[1] = input_rank == 3 ? input_shape[1] : 1;
    m->input_shape[2] = input_rank == 3 ? input_shape[2] : 1;
    m->max_batch = max_batch;
    /* each side <= 2^24: the product of two fits int64, the third is checked */
    size_t in_size;
    if (!sp_size_mul((size_t)(m->input_shape[0] * m->input_shape[1]), (size_t)m->input_shape[2],
                     &in_size) ||
        !batch_fits_(in_size, max_batch)) {
        const int64_t h = m->input_shape[1], w = m->input_shape[2];
        sp_model_free(m);
        return SP_FAIL(SP_ERR_SPEC,
                       "model: input of %lld x %lld x %lld values x batch %d is more than 2^31 - 1 "
                       "values",
                       (long long)input_shape[0], (long long)h, (long long)w, max_batch);
    }
    m->input_size = in_size;
    if ((st = infer_shapes_(m)) != SP_OK || (st = alloc_buffers_(m)) != SP_OK) {
        sp_model_free(m);
        return st;
    }
    m->params = alloc_floats_(m->nparams);
    m->grads = alloc_floats_(m->nparams);
    if (!m->params || !m->grads) {
        const size_t np = m->nparams;
        sp_model_free(m);
        return SP_FAIL(SP_ERR_NOMEM, "model: cannot allocate %zu parameters", np);
    }
    *out = m;
    return SP_OK;
}

void sp_model_free(sp_model *m) {
    if (!m) return;
    free(m->spec);
    free(m->layers);
    free(m->params);
    free(m->grads);
    free(m->act);
    free(m->dbuf[0]);
    free(m->dbuf[1]);
    free(m->work1);
    free(m->work2);
    free(m);
}

void sp_model_init_params(sp_model *m, uint64_t seed) {
    for (int i = 0; i < m->n; ++i) {
        sp_layer *L = &m->layers[i];
        if (!L->w_len) continue;
        /* the nonlinearity this layer feeds decides the gain */
        double gain2 = 0; /* 0: Xavier */
        for (int j = i + 1; j < m->n; ++j) {
            sp_layer_kind k = m->layers[j].spec.kind;
            if (k == SP_LAYER_DROPOUT || k == SP_LAYER_FLATTEN || k == SP_LAYER_MAXPOOL ||
                k == SP_LAYER_AVGPOOL)
                continue;
            if (k == SP_LAYER_RELU || k == SP_LAYER_GELU) gain2 = 2.0;
            if (k == SP_LAYER_LEAKY_RELU) {
                const double a = m->layers[j].spec.slope;
                gain2 = 2.0 / (1.0 + a * a);
            }
            break;
        }
        const size_t recept = L->w_rank == 4 ? (size_t)(L->w_shape[2] * L->w_shape[3]) : 1;
        const double fan_in = (double)L->w_shape[1] * (double)recept;
        const double fan_out = (double)L->w_shape[0] * (double)recept;
        /* He uniform: U(-b, b), b = gain sqrt(3 / fan_in); Xavier uniform: b = sqrt(6/(in+out)) */
        const double bound =
            gain2 > 0 ? sqrt(3.0 * gain2 / fan_in) : sqrt(6.0 / (fan_in + fan_out));
        float *w = m->params + L->w_off;
        const uint64_t stream = SP_STREAM_INIT + ((uint64_t)i << 8);
        for (size_t e = 0; e < L->w_len; ++e)
            w[e] = (float)(bound * (2.0 * (double)sp_rng_uniform(seed, stream, e) - 1.0));
        memset(m->params + L->b_off, 0, L->b_len * sizeof(float));
    }
}

const float *sp_model_forward(sp_model *m, const float *x, int B, const sp_step_ctx *ctx) {
    m->x = x;
    m->last_B = B;
    const float *in = x;
    for (int i = 0; i < m->n; ++i) {
        sp_layer *L = &m->layers[i];
        const float *w = m->params + L->w_off, *b = m->params + L->b_off;
        const size_t n = (size_t)B * L->out_size;
        if (m->hook) m->hook(m->hook_user, SP_HOOK_FORWARD_BEGIN, i, NULL, 0);
        switch (L->spec.kind) {
        case SP_LAYER_DENSE:
            sp_dense_forward(L->out, in, w, b, B, (int)L->in_size, (int)L->out_size);
            break;
        case SP_LAYER_CONV2D:
            if (i + 2 < m->n && m->layers[i + 1].spec.kind == SP_LAYER_RELU &&
                m->layers[i + 2].spec.kind == SP_LAYER_MAXPOOL) {
                /* the relu and the max pool above, fused into the conv's per-sample pass (the
                 * same values) */
                sp_layer *R = &m->layers[i + 1], *P = &m->layers[i + 2];
                sp_conv2d_relu_maxpool_forward(L->out, R->out, P->out, P->argmax, L->saved,
                                               m->work1, in, w, b, &L->conv, &P->pool, B);
                L = P, i += 2;
            } else if (i + 1 < m->n && m->layers[i + 1].spec.kind == SP_LAYER_RELU) {
                /* the relu above, fused into the conv's last pass (the same values) */
                sp_layer *R = &m->layers[i + 1];
                sp_conv2d_relu_forward(L->out, R->out, L->saved, m->work1, in, w, b, &L->conv, B);
                L = R, ++i;
            } else {
                sp_conv2d_forward(L->out, L->saved, m->work1, in, w, b, &L->conv, B);
            }
            break;
        case SP_LAYER_MAXPOOL:
            sp_maxpool_forward(L->out, L->argmax, in, &L->pool, B);
            break;
        case SP_LAYER_AVGPOOL:
            sp_avgpool_forward(L->out, in, &L->pool, B);
            break;
        case SP_LAYER_FLATTEN:
            L->out = (float *)in;
            break; /* same memory, new shape */
        case SP_LAYER_RELU:
            sp_act_forward(L->out, in, n, SP_ACT_RELU, 0);
            break;
        case SP_LAYER_LEAKY_RELU:
            sp_act_forward(L->out, in, n, SP_ACT_LEAKY_RELU, L->spec.slope);
            break;
        case SP_LAYER_TANH:
            sp_act_forward(L->out, in, n, SP_ACT_TANH, 0);
            break;
        case SP_LAYER_SIGMOID:
            sp_act_forward(L->out, in, n, SP_ACT_SIGMOID, 0);
            break;
        case SP_LAYER_GELU:
            sp_act_forward(L->out, in, n, SP_ACT_GELU, 0);
            break;
        case SP_LAYER_DROPOUT:
            if (ctx && ctx->training && L->spec.p > 0) {
                sp_dropout_forward(L->out, L->saved, in, ctx->sample_ids, B, L->out_size, L->spec.p,
                                   ctx->seed, SP_STREAM_DROPOUT + ((uint64_t)i << 8), ctx->step);
            } else {
                /* evaluation: identity, and a mask of ones so backward stays correct */
                memcpy(L->out, in, n * sizeof(float));
                for (size_t e = 0; e < n; ++e) L->saved[e] = 1.0f;
            }
            break;
        }
        if (m->hook) m->hook(m->hook_user, SP_HOOK_FORWARD_END, i, NULL, 0);
        in = L->out;
    }
    return in;
}

/* Backward; with wfn, the layers skip their own dW/db and hand them to wfn (model/wgrad.h).
 * acc: add the parameter gradients into the slab, else overwrite them. */
static void backward_(sp_model *m, const float *d_out, int B, sp_grad_ready_fn on_ready, void *user,
                      sp_wgrad_fn wfn, void *wuser, bool acc) {
    const float *dy = d_out;
    for (int i = m->n - 1; i >= 0; --i) {
        sp_layer *L = &m->layers[i];
        const float *x = i ? m->layers[i - 1].out : m->x;
        /* the layer below needs the error signal only if something below has parameters */
        bool need_dx = false;
        for (int j = 0; j < i && !need_dx; ++j) need_dx = m->layers[j].w_len > 0;
        float *dx = need_dx ? (dy == m->dbuf[0] ? m->dbuf[1] : m->dbuf[0]) : NULL;
        float *dw = wfn ? NULL : m->grads + L->w_off, *db = wfn ? NULL : m->grads + L->b_off;
        const float *w = m->params + L->w_off;
        const size_t n = (size_t)B * L->out_size;
        if (m->hook) m->hook(m->hook_user, SP_HOOK_BACKWARD_BEGIN, i, dy, n);
        switch (L->spec.kind) {
        case SP_LAYER_DENSE:
            sp_dense_backward(dx, dw, db, dy, x, w, B, (int)L->in_size, (int)L->out_size, acc);
            break;
        case SP_LAYER_CONV2D:
            sp_conv2d_backward(dx, dw, db, m->work1, m->work2, dy, L->saved, w, &L->conv, B, acc);
            break;
        case SP_LAYER_FLATTEN:
            dx = dx ? (float *)dy : NULL;
            break;
        default:
            if (!dx) break;
            switch (L->spec.kind) {
            case SP_LAYER_MAXPOOL:
                if (i >= 1 && m->layers[i - 1].spec.kind == SP_LAYER_RELU) {
                    /* and the relu below, fused: dx is the relu's input gradient (x, the pool's
                     * input, is the relu's output) */
                    sp_maxpool_relu_backward(dx, dy, L->argmax, x, &L->pool, B);
                    --i;
                } else {
                    sp_maxpool_backward(dx, dy, L->argmax, &L->pool, B);
                }
                break;
            case SP_LAYER_AVGPOOL:
                sp_avgpool_backward(dx, dy, &L->pool, B);
                break;
            case SP_LAYER_RELU:
                sp_act_backward(dx, dy, x, L->out, n, SP_ACT_RELU, 0);
                break;
            case SP_LAYER_LEAKY_RELU:
                sp_act_backward(dx, dy, x, L->out, n, SP_ACT_LEAKY_RELU, L->spec.slope);
                break;
            case SP_LAYER_TANH:
                sp_act_backward(dx, dy, x, L->out, n, SP_ACT_TANH, 0);
                break;
            case SP_LAYER_SIGMOID:
                sp_act_backward(dx, dy, x, L->out, n, SP_ACT_SIGMOID, 0);
                break;
            case SP_LAYER_GELU:
                sp_act_backward(dx, dy, x, L->out, n, SP_ACT_GELU, 0);
                break;
            case SP_LAYER_DROPOUT:
                sp_dropout_backward(dx, dy, L->saved, B, L->out_size);
                break;
            default:
                break;
            }
        }
        if (L->w_len && wfn) {
            const bool conv = L->spec.kind == SP_LAYER_CONV2D;
            const sp_wgrad_layer wl = {.index = i,
                                       .conv = conv,
                                       .w_off = L->w_off,
                                       .w_len = L->w_len,
                                       .b_off = L->b_off,
                                       .b_len = L->b_len,
                                       .B = B,
                                       .dy = conv ? m->work1 : dy, /* conv: dyp, see wgrad.h */
                                       .x = conv ? L->saved : x,
                                       .in = (int)L->in_size,
                                       .out = (int)L->out_size,
                                       .geom = conv ? &L->conv : NULL};
            wfn(wuser, &wl);
        }
        if (L->w_len && on_ready) on_ready(user, L->w_off);
        if (m->hook) m->hook(m->hook_user, SP_HOOK_BACKWARD_END, i, NULL, 0);
        if (!dx) break;
        dy = dx;
    }
}

void sp_model_set_layer_hook(sp_model *m, sp_layer_hook_fn fn, void *user) {
    m->hook = fn;
    m->hook_user = fn ? user : NULL;
}

void sp_model_set_allsum(sp_model *m, sp_model_allsum_fn fn, void *user) {
    m->allsum = fn;
    m->allsum_user = fn ? user : NULL;
}

sp_status sp_model_allsum(sp_model *m, double *v, size_t n) {
    return m->allsum ? m->allsum(m->allsum_user, v, n) : SP_OK;
}

void sp_model_backward(sp_model *m, const float *d_out, int B, sp_grad_ready_fn on_ready,
                       void *user) {
    backward_(m, d_out, B, on_ready, user, NULL, NULL, true);
}

void sp_model_backward_fresh(sp_model *m, const float *d_out, int B, sp_grad_ready_fn on_ready,
                             void *user) {
    if (B <= 0) { /* no layer runs: this batch's gradient is zero */
        sp_model_zero_grads(m);
        return;
    }
    backward_(m, d_out, B, on_ready, user, NULL, NULL, false);
}

void sp_model_backward_wgrad(sp_model *m, const float *d_out, int B, sp_wgrad_fn fn, void *user) {
    backward_(m, d_out, B, NULL, NULL, fn, user, true);
}

void sp_model_zero_grads(sp_model *m) {
    memset(m->grads, 0, m->nparams * sizeof(float));
}

const char *sp_model_spec(const sp_model *m) {
    return m->spec;
}
int sp_model_num_layers(const sp_model *m) {
    return m->n;
}
int sp_model_max_batch(const sp_model *m) {
    return m->max_batch;
}
size_t sp_model_num_params(const sp_model *m) {
    return m->nparams;
}
size_t sp_model_input_size(const sp_model *m) {
    return m->input_size;
}
size_t sp_model_output_size(const sp_model *m) {
    return m->output_size;
}
int sp_model_input_rank(const sp_model *m) {
    return m->input_rank;
}
const int64_t *sp_model_input_shape(const sp_model *m) {
    return m->input_shape;
}
float *sp_model_params(sp_model *m) {
    return m->params;
}
float *sp_model_grads(sp_model *m) {
    return m->grads;
}

const char *sp_model_layer_name(const sp_model *m, int i) {
    return sp_layer_kind_name(m->layers[i].spec.kind);
}

bool sp_model_layer_params(const sp_model *m, int i, size_t *w_off, int *w_rank, int64_t w_shape[4],
                           size_t *b_off, int64_t *b_len) {
    const sp_layer *L = &m->layers[i];
    if (!L->w_len) return false;
    *w_off = L->w_off;
    *w_rank = L->w_rank;
    memcpy(w_shape, L->w_shape, sizeof L->w_shape);
    *b_off = L->b_off;
    *b_len = (int64_t)L->b_len;
    return true;
}

bool sp_model_layer_ranges(const sp_model *m, int i, size_t *w_off, size_t *w_len, size_t *b_off,
                           size_t *b_len) {
    const sp_layer *L = &m->layers[i];
    if (!L->w_len) return false;
    *w_off = L->w_off, *w_len = L->w_len;
    *b_off = L->b_off, *b_len = L->b_len;
    return true;
}

int sp_model_layer_out_shape(const sp_model *m, int i, int64_t shape[3]) {
    const sp_layer *L = &m->layers[i];
    memcpy(shape, L->out_shape, sizeof L->out_shape);
    return L->out_rank;
}

double sp_model_flops_per_sample(const sp_model *m) {
    double f = 0;
    for (int i = 0; i < m->n; ++i) {
        const sp_layer *L = &m->layers[i];
        switch (L->spec.kind) {
        case SP_LAYER_DENSE:
            f += 2.0 * (double)L->w_len;
            break;
        case SP_LAYER_CONV2D:
            f += 2.0 * (double)L->w_len * (double)L->conv.oh * (double)L->conv.ow;
            break;
        case SP_LAYER_MAXPOOL:
        case SP_LAYER_AVGPOOL:
            f += (double)L->out_size * (double)L->pool.k * (double)L->pool.k;
            break;
        case SP_LAYER_FLATTEN:
            break;
        default:
            f += (double)L->out_size;
            break;
        }
    }
    return f;
}

size_t sp_model_memory_bytes(const sp_model *m) {
    return (2 * m->nparams + m->buffer_floats) * sizeof(float);
}
