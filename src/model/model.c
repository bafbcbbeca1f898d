/* The model: from the spec's nodes to a graph with shapes, slabs and buffers; initialization. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/model_impl.h"
#include "util/arith.h"
#include "util/mem.h"
#include "util/rng.h"
#include "util/shape.h"
#include "util/status.h"

/* The kernels index a batch of activations with int (B * C * H * W, GEMM dimensions), and the
 * geometry adds padding to H and W in int: every per-batch count stays below 2^31 and every
 * image side below 2^24 (as the input's). */
#define SP_MODEL_MAX_SIDE ((int64_t)1 << 24)
static bool batch_fits_(size_t per_sample, int max_batch) {
    return per_sample <= (size_t)INT32_MAX / (size_t)max_batch;
}

static void *alloc_bytes_(size_t bytes) {
    bytes = (bytes + 63) & ~(size_t)63;
    void *p = aligned_alloc(64, bytes ? bytes : 64);
    if (p) memset(p, 0, bytes ? bytes : 64);
    return p;
}
static void *alloc_floats_(size_t n) {
    return alloc_bytes_(n * sizeof(float));
}

/* "model spec: layer 3.f.0 'conv2d:8:3' (line 2, column 5): ..." (the parser's format) */
static sp_status bad_node_(const sp_node *L, const char *fmt, ...) {
    char what[384], at[48];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    if (L->spec.line > 1)
        snprintf(at, sizeof at, "line %d, column %d", L->spec.line, L->spec.column);
    else
        snprintf(at, sizeof at, "column %d", L->spec.column);
    return SP_FAIL(SP_ERR_SPEC, "model spec: layer %s '%s' (%s): %s", L->spec.path, L->spec.text,
                   at, what);
}

/* Values per sample of a shape: (F), (T, D) a sequence, or (C, H, W). */
static int64_t shape_size_(const int64_t *shape, int rank) {
    int64_t n = 1;
    for (int d = 0; d < rank; ++d) n *= shape[d];
    return n;
}

/* The shape of the value node L reads as input e. */
static void input_shape_(const sp_model *m, const sp_node *L, int e, int *rank, int64_t s[3]) {
    const int j = L->spec.in[e];
    const int64_t *src = j == SP_SPEC_INPUT ? m->input_shape : m->nodes[j].out_shape;
    *rank = j == SP_SPEC_INPUT ? m->input_rank : m->nodes[j].out_rank;
    memcpy(s, src, 3 * sizeof *s);
}

/* A join's second input against its first: add needs equal shapes, concat equal H, W. */
static sp_status join_shapes_(sp_model *m, sp_node *L, int64_t shape[3], int rank) {
    int r2;
    int64_t s2[3];
    input_shape_(m, L, 1, &r2, s2);
    char a[96], b[96];
    sp_shape_str(a, sizeof a, shape, rank);
    sp_shape_str(b, sizeof b, s2, r2);
    if (L->spec.kind == SP_LAYER_ADD) {
        if (r2 != rank || memcmp(s2, shape, (size_t)rank * sizeof *s2))
            return bad_node_(L,
                             "adds %s to %s: the shapes differ (a shortcut that changes the shape "
                             "needs a projection: residual(f | g))",
                             b, a);
        return SP_OK;
    }
    if (rank == 2)
        return bad_node_(L, "concatenates sequences %s and %s: not supported (use add)", b, a);
    if (r2 != rank || (rank == 3 && (s2[1] != shape[1] || s2[2] != shape[2])))
        return bad_node_(L, "concatenates %s to %s: needs the same height and width", b, a);
    L->C = (int)shape[0];
    L->P = rank == 3 ? (int)(shape[1] * shape[2]) : 1;
    shape[0] += s2[0];
    return SP_OK;
}

/* One node's output shape and parameter shapes from its input's. */
static sp_status infer_node_(sp_model *m, sp_node *L) {
    const sp_layer_spec *s = &L->spec;
    int rank;
    int64_t shape[3];
    input_shape_(m, L, 0, &rank, shape);
    char got[96];
    sp_shape_str(got, sizeof got, shape, rank);
    L->in_rank = rank;
    memcpy(L->in_shape, shape, sizeof shape);
    L->in_size = (size_t)shape_size_(shape, rank);
    L->rows = rank == 2 ? (int)shape[0] : 1;
    L->tie = -1;
    const int f = rank - 1; /* a sequence's features: the last dimension */
    switch (s->kind) {
    case SP_LAYER_DENSE: { /* on (F), or on every position of (T, D) */
        if (s->units_x && rank != 2)
            return bad_node_(L, "attention needs a sequence (T, C) but gets %s", got);
        if (rank == 3)
            return bad_node_(L, "needs a flat input (F) but gets %s; add 'flatten' before it", got);
        const int64_t units = s->units_x ? s->units_x * shape[f] : s->units;
        if (units > INT32_MAX) return bad_node_(L, "%lld units are too many", (long long)units);
        L->w_rank = 2;
        L->w_shape[0] = units, L->w_shape[1] = shape[f];
        L->w_len = s->tie ? 0 : (size_t)units * (size_t)shape[f]; /* tie: the embedding's */
        L->b_len = s->bias ? (size_t)units : 0;
        shape[f] = units;
        break;
    }
    case SP_LAYER_EMBEDDING:
        if (rank != 1) return bad_node_(L, "needs token ids (T) but gets %s", got);
        L->w_rank = 2;
        L->w_shape[0] = s->vocab, L->w_shape[1] = s->units;
        L->w_len = (size_t)s->vocab * (size_t)s->units;
        shape[1] = s->units;
        rank = 2;
        break;
    case SP_LAYER_POS_EMBEDDING:
        if (rank != 2)
            return bad_node_(L, "needs a sequence (T, D) (after an embedding) but gets %s", got);
        L->w_rank = 2;
        L->w_shape[0] = shape[0], L->w_shape[1] = shape[1];
        L->w_len = L->in_size;
        break;
    case SP_LAYER_ATTENTION:
        if ((shape[1] / 3) % s->heads) /* the input is P.qkv's: a sequence (T, 3C) */
            return bad_node_(L, "%d heads do not divide the width %lld", s->heads,
                             (long long)(shape[1] / 3));
        shape[1] /= 3;
        break;
    case SP_LAYER_CONV2D:
        if (rank != 3 || !sp_conv_geom_init(&L->conv, (int)shape[0], (int)shape[1], (int)shape[2],
                                            s->out_channels, s->kernel, s->stride, s->pad))
            return bad_node_(L,
                             "needs an image input (C, H, W) at least as large as the kernel, but "
                             "gets %s",
                             got);
        L->w_rank = 4;
        L->w_shape[0] = s->out_channels, L->w_shape[1] = shape[0];
        L->w_shape[2] = L->w_shape[3] = s->kernel;
        size_t ckk;
        if (!sp_size_mul((size_t)shape[0] * (size_t)s->kernel, (size_t)s->kernel, &ckk) ||
            ckk > (size_t)INT32_MAX || !sp_size_mul((size_t)s->out_channels, ckk, &L->w_len))
            return bad_node_(L, "%lld input channels x kernel %d x %d is too large",
                             (long long)shape[0], s->kernel, s->kernel);
        L->b_len = s->bias ? (size_t)s->out_channels : 0;
        shape[0] = s->out_channels, shape[1] = L->conv.oh, shape[2] = L->conv.ow;
        break;
    case SP_LAYER_MAXPOOL:
    case SP_LAYER_AVGPOOL:
        if (rank != 3 || !sp_pool_geom_init(&L->pool, (int)shape[0], (int)shape[1], (int)shape[2],
                                            s->kernel, s->stride))
            return bad_node_(L,
                             "needs an image input (C, H, W) at least as large as the window, but "
                             "gets %s",
                             got);
        shape[1] = L->pool.oh, shape[2] = L->pool.ow;
        break;
    case SP_LAYER_FLATTEN:
        shape[0] = shape_size_(shape, rank);
        rank = 1;
        break;
    case SP_LAYER_BATCHNORM: /* BatchNorm1d over (F), BatchNorm2d over (C, H, W) */
        if (rank == 2)
            return bad_node_(L,
                             "normalizes (F) or (C, H, W) but gets the sequence %s (use "
                             "layernorm)",
                             got);
        L->C = (int)shape[0];
        L->P = rank == 3 ? (int)(shape[1] * shape[2]) : 1;
        L->w_rank = 1;
        L->w_shape[0] = shape[0];
        L->w_len = L->b_len = L->s_len = (size_t)shape[0];
        break;
    case SP_LAYER_LAYERNORM: /* over the whole sample, or each position of a sequence (over D) */
        L->w_rank = rank == 2 ? 1 : rank;
        memcpy(L->w_shape, rank == 2 ? shape + 1 : shape, (size_t)L->w_rank * sizeof *shape);
        L->w_len = L->b_len = L->in_size / (size_t)L->rows;
        break;
    case SP_LAYER_GAP:
        if (rank != 3) return bad_node_(L, "needs an image input (C, H, W) but gets %s", got);
        L->C = (int)shape[0];
        L->P = (int)(shape[1] * shape[2]);
        rank = 1;
        break;
    case SP_LAYER_UPSAMPLE:
        if (rank != 3 || shape[1] * s->scale > SP_MODEL_MAX_SIDE ||
            shape[2] * s->scale > SP_MODEL_MAX_SIDE)
            return bad_node_(L,
                             "needs an image input (C, H, W) whose sides x %d stay below 2^24, "
                             "but gets %s",
                             s->scale, got);
        shape[1] *= s->scale, shape[2] *= s->scale;
        break;
    case SP_LAYER_ADD:
    case SP_LAYER_CONCAT:
        SP_CHECK(join_shapes_(m, L, shape, rank));
        break;
    default: /* elementwise: shape unchanged */
        break;
    }
    if (rank == 3 && (shape[1] > SP_MODEL_MAX_SIDE || shape[2] > SP_MODEL_MAX_SIDE))
        return bad_node_(L, "input %s has a side above 2^24 (%lld)", got,
                         (long long)SP_MODEL_MAX_SIDE);
    L->out_rank = rank;
    memcpy(L->out_shape, shape, sizeof shape);
    /* each factor is below 2^31 (int in the spec and the geometry, concat adds two): no int64
     * overflow */
    const int64_t out_size = shape_size_(shape, rank);
    if (!batch_fits_((size_t)out_size, m->max_batch)) {
        char o[96];
        sp_shape_str(o, sizeof o, shape, rank);
        return bad_node_(L,
                         "output %s x batch %d is more than 2^31 - 1 values (a smaller layer or "
                         "batch?)",
                         o, m->max_batch);
    }
    L->out_size = (size_t)out_size;
    return SP_OK;
}

/* dense:V:tie at node i: its weight is the (V, D) weight of the first embedding, which must be
 * before it and match its units and input features. */
static sp_status tie_(sp_model *m, int i) {
    sp_node *L = &m->nodes[i];
    for (int k = 0; k < i; ++k) {
        const sp_node *E = &m->nodes[k];
        if (E->spec.kind != SP_LAYER_EMBEDDING) continue;
        if (E->w_shape[0] != L->w_shape[0] || E->w_shape[1] != L->w_shape[1])
            return bad_node_(L,
                             "is tied to the embedding at layer %s of %lld x %lld, but its weight "
                             "would be %lld x %lld",
                             E->spec.path, (long long)E->w_shape[0], (long long)E->w_shape[1],
                             (long long)L->w_shape[0], (long long)L->w_shape[1]);
        L->tie = k;
        L->w_off = E->w_off; /* views of the embedding's weight and gradient (w_len stays 0) */
        m->tied = true;
        return SP_OK;
    }
    return bad_node_(L, "tie needs an embedding before it (embedding:VOCAB:DIM)");
}

/* Shapes, parameter and buffer offsets, and who consumes and who learns. */
static sp_status infer_shapes_(sp_model *m) {
    size_t off = 0, boff = 0;
    for (int i = 0; i < m->n; ++i) {
        sp_node *L = &m->nodes[i];
        SP_CHECK(infer_node_(m, L));
        if (L->w_len) {
            L->w_off = off;
            L->b_off = off + L->w_len;
            if (!sp_size_add(off, L->w_len, &off) || !sp_size_add(off, L->b_len, &off))
                return bad_node_(L, "parameter count overflows");
        }
        if (L->s_len) {
            L->s_off = boff;
            boff += 2 * L->s_len; /* C < 2^31 per layer, at most 4096 layers */
        }
        if (L->spec.tie) SP_CHECK(tie_(m, i));
        bool learns = L->w_len > 0 || L->tie >= 0;
        for (int e = 0; e < 2; ++e) {
            const int j = L->spec.in[e];
            if (j < 0) continue;
            m->nodes[j].consumers++;
            learns = learns || m->nodes[j].learns;
        }
        L->learns = learns;
    }
    m->nparams = off;
    m->nbuffers = boff;
    m->nodes[m->n - 1].consumers++; /* the loss */
    m->output_size = m->nodes[m->n - 1].out_size;
    return SP_OK;
}

/* conv -> relu [-> maxpool], each the only consumer of the one before: one fused kernel. */
static void plan_fusion_(sp_model *m) {
    for (int i = 0; i + 1 < m->n; ++i) {
        sp_node *L = &m->nodes[i], *R = &m->nodes[i + 1];
        L->fused_fwd = L->spec.kind == SP_LAYER_CONV2D && R->spec.kind == SP_LAYER_RELU &&
                       R->spec.in[0] == i && L->consumers == 1;
    }
}

/* Floats node L keeps besides its output: the im2col columns, masks, statistics. */
static size_t saved_floats_(const sp_node *L, size_t B, size_t *arg_n) {
    *arg_n = 0;
    switch (L->spec.kind) {
    case SP_LAYER_CONV2D: { /* products checked in layout_() */
        const sp_conv_geom *g = &L->conv;
        return (size_t)g->c * g->k * g->k * (size_t)g->oh * g->ow * B;
    }
    case SP_LAYER_DROPOUT:
        return L->out_size * B;
    case SP_LAYER_MAXPOOL:
        *arg_n = L->out_size * B; /* int32 fits in a float slot */
        return 0;
    case SP_LAYER_BATCHNORM:
        return 2 * (size_t)L->C;
    case SP_LAYER_LAYERNORM:
        return 2 * B * (size_t)L->rows;
    case SP_LAYER_ATTENTION:
        return B * (size_t)L->spec.heads * (size_t)L->in_shape[0];
    default:
        return 0;
    }
}

static size_t pad16_(size_t n) {
    return (n + 15) & ~(size_t)15;
}

/* Lay out the activation slab (outputs, saved values), the blame slots and the scratch for
 * max_batch samples; check it all against the memory limit; allocate. */
static sp_status alloc_buffers_(sp_model *m) {
    const size_t B = (size_t)m->max_batch;
    size_t act = 0, w1 = 0, w2 = 0, terms = 0, trows = 1, aw = 0;
    m->widest = m->input_size;
    size_t *offs = calloc((size_t)m->n * 3, sizeof *offs);
    if (!offs) return SP_FAIL(SP_ERR_NOMEM, "model: out of memory");
    sp_status st = SP_OK;
    for (int i = 0; i < m->n && st == SP_OK; ++i) {
        sp_node *L = &m->nodes[i];
        size_t out_n = 0, arg_n = 0;
        if (!sp_size_mul(L->out_size, B, &out_n)) {
            st = SP_FAIL(SP_ERR_NOMEM, "model: layer %s output too large", L->spec.path);
            break;
        }
        if (L->out_size > m->widest) m->widest = L->out_size;
        if (L->spec.kind == SP_LAYER_CONV2D) {
            const sp_conv_geom *g = &L->conv;
            size_t cols, col_n, ckk = (size_t)g->c * g->k * g->k, ohw = (size_t)g->oh * g->ow;
            if (!sp_size_mul(ohw, B, &cols) || !sp_size_mul(ckk, cols, &col_n)) {
                st = SP_FAIL(SP_ERR_NOMEM, "model: layer %s im2col buffer too large", L->spec.path);
                break;
            }
            if ((size_t)g->oc * cols > w1) w1 = (size_t)g->oc * cols; /* B * out_size < 2^31 */
            if (col_n > w2) w2 = col_n;
        }
        if (L->spec.kind == SP_LAYER_BATCHNORM && 2 * (size_t)L->C + 1 > terms)
            terms = 2 * (size_t)L->C + 1;
        if (L->spec.kind == SP_LAYER_LAYERNORM) {
            if (2 * L->w_len > terms) terms = 2 * L->w_len;
            if ((size_t)L->rows > trows) trows = (size_t)L->rows;
        }
        if (L->spec.kind == SP_LAYER_ATTENTION) {
            const size_t a = sp_attention_scratch_floats(m->max_batch, (int)L->in_shape[0],
                                                         (int)L->out_shape[1], L->spec.heads);
            if (a > aw) aw = a;
        }
        L->saved_floats = saved_floats_(L, B, &arg_n);
        if (L->spec.kind == SP_LAYER_FLATTEN) out_n = 0;
        offs[3 * i] = act;
        bool ok = sp_size_add(act, pad16_(out_n), &act);
        offs[3 * i + 1] = act;
        ok = ok && sp_size_add(act, pad16_(L->saved_floats), &act);
        offs[3 * i + 2] = act;
        ok = ok && sp_size_add(act, pad16_(arg_n), &act);
        if (!ok) st = SP_FAIL(SP_ERR_NOMEM, "model: activations too large");
    }
    size_t slot = 0, slots = 0, terms_n = 0, total = act, bytes = 0;
    if (st == SP_OK && (!sp_size_mul(m->widest, B, &slot) ||
                        !sp_size_mul(slot, (size_t)m->nslots + (m->need_scratch ? 1 : 0), &slots) ||
                        !sp_size_mul(terms, B * trows + 1, &terms_n)))
        st = SP_FAIL(SP_ERR_NOMEM, "model: activations too large");
    /* Everything the model will hold: activations, blame slots, conv scratch, normalization
     * terms (doubles), parameters, gradients and buffers, checked against the memory limit
     * before any of it is allocated. */
    if (st == SP_OK &&
        (!sp_size_add(total, slots, &total) || !sp_size_add(total, w1, &total) ||
         !sp_size_add(total, w2, &total) || !sp_size_add(total, 2 * terms_n, &total) ||
         !sp_size_add(total, aw, &total) || !sp_size_add(total, m->nparams, &total) ||
         !sp_size_add(total, m->nparams, &total) || !sp_size_add(total, m->nbuffers, &total) ||
         !sp_size_mul(total, sizeof(float), &bytes)))
        st = SP_FAIL(SP_ERR_NOMEM, "model \"%.200s\": size overflows size_t", m->spec);
    if (st != SP_OK) {
        free(offs);
        return st;
    }
    m->buffer_floats = act + slots + w1 + w2 + 2 * terms_n + aw;
    char who[320];
    snprintf(who, sizeof who, "model \"%.200s\" (batch %d)", m->spec, m->max_batch);
    st = sp_mem_check(bytes, who, "parameters, gradients and activations");
    if (st == SP_OK) {
        m->act = alloc_floats_(act);
        m->slots = alloc_floats_(slots);
        m->work1 = w1 ? alloc_floats_(w1) : NULL;
        m->work2 = w2 ? alloc_floats_(w2) : NULL;
        m->attn_work = aw ? alloc_floats_(aw) : NULL;
        m->terms = terms ? alloc_bytes_(terms * B * trows * sizeof(double)) : NULL;
        m->sums = terms ? alloc_bytes_(terms * sizeof(double)) : NULL;
        if (!m->act || !m->slots || (w1 && !m->work1) || (w2 && !m->work2) ||
            (aw && !m->attn_work) || (terms && (!m->terms || !m->sums)))
            st = SP_FAIL(SP_ERR_NOMEM,
                         "model: cannot allocate %.1f MB of activations for a batch of %d",
                         (double)m->buffer_floats * 4 / 1e6, m->max_batch);
    }
    for (int i = 0; i < m->n && st == SP_OK; ++i) {
        sp_node *L = &m->nodes[i];
        L->out = m->act + offs[3 * i];
        L->saved = m->act + offs[3 * i + 1];
        L->argmax = (int32_t *)(void *)(m->act + offs[3 * i + 2]);
    }
    free(offs);
    return st;
}

/* Running statistics as PyTorch starts them: mean 0, variance 1, no batches seen. */
static void init_buffers_(sp_model *m) {
    for (int i = 0; i < m->n; ++i) {
        sp_node *L = &m->nodes[i];
        if (!L->s_len) continue;
        memset(m->buffers + L->s_off, 0, L->s_len * sizeof(float));
        for (size_t c = 0; c < L->s_len; ++c) m->buffers[L->s_off + L->s_len + c] = 1.0f;
        L->tracked = 0;
    }
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
    m->nodes = calloc((size_t)n, sizeof *m->nodes);
    if (!m->spec || !m->nodes) {
        free(specs);
        sp_model_free(m);
        return SP_FAIL(SP_ERR_NOMEM, "model: out of memory");
    }
    for (int i = 0; i < n; ++i) m->nodes[i].spec = specs[i];
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
    if ((st = infer_shapes_(m)) != SP_OK) {
        sp_model_free(m);
        return st;
    }
    plan_fusion_(m);
    sp_model_plan_blame(m);
    if ((st = alloc_buffers_(m)) != SP_OK) {
        sp_model_free(m);
        return st;
    }
    m->params = alloc_floats_(m->nparams);
    m->grads = alloc_floats_(m->nparams);
    m->buffers = alloc_floats_(m->nbuffers);
    if (!m->params || !m->grads || !m->buffers) {
        const size_t np = m->nparams;
        sp_model_free(m);
        return SP_FAIL(SP_ERR_NOMEM, "model: cannot allocate %zu parameters", np);
    }
    init_buffers_(m);
    *out = m;
    return SP_OK;
}

void sp_model_free(sp_model *m) {
    if (!m) return;
    free(m->spec);
    free(m->nodes);
    free(m->params);
    free(m->grads);
    free(m->buffers);
    free(m->act);
    free(m->slots);
    free(m->work1);
    free(m->work2);
    free(m->attn_work);
    free(m->terms);
    free(m->sums);
    free(m);
}

/* The first node reading node i's output (-1: none, the model's output). */
static int first_consumer_(const sp_model *m, int i) {
    for (int j = i + 1; j < m->n; ++j)
        if (m->nodes[j].spec.in[0] == i || m->nodes[j].spec.in[1] == i) return j;
    return -1;
}

/* The gain^2 of the nonlinearity that node i's output feeds, through the layers that do not
 * change its scale much (dropout, flatten, pools, normalization, joins): 2 for relu and gelu,
 * 2 / (1 + a^2) for leaky_relu, 0 (Xavier) for anything else. */
static double init_gain2_(const sp_model *m, int i) {
    for (int j = first_consumer_(m, i); j >= 0; j = first_consumer_(m, j)) {
        const sp_layer_kind k = m->nodes[j].spec.kind;
        if (k == SP_LAYER_DROPOUT || k == SP_LAYER_FLATTEN || k == SP_LAYER_MAXPOOL ||
            k == SP_LAYER_AVGPOOL || k == SP_LAYER_BATCHNORM || k == SP_LAYER_ADD ||
            k == SP_LAYER_CONCAT || k == SP_LAYER_GAP || k == SP_LAYER_UPSAMPLE)
            continue;
        if (k == SP_LAYER_RELU || k == SP_LAYER_GELU) return 2.0;
        if (k == SP_LAYER_LEAKY_RELU) {
            const double a = m->nodes[j].spec.slope;
            return 2.0 / (1.0 + a * a);
        }
        return 0;
    }
    return 0;
}

void sp_model_init_params(sp_model *m, uint64_t seed) {
    for (int i = 0; i < m->n; ++i) {
        sp_node *L = &m->nodes[i];
        if (!L->w_len) continue;
        float *w = m->params + L->w_off;
        if (L->spec.kind == SP_LAYER_BATCHNORM || L->spec.kind == SP_LAYER_LAYERNORM) {
            for (size_t e = 0; e < L->w_len; ++e) w[e] = 1.0f; /* as PyTorch: scale 1, shift 0 */
            memset(m->params + L->b_off, 0, L->b_len * sizeof(float));
            continue;
        }
        const uint64_t stream = SP_STREAM_INIT + ((uint64_t)i << 8);
        if (L->spec.kind == SP_LAYER_EMBEDDING || L->spec.kind == SP_LAYER_POS_EMBEDDING) {
            /* GPT-2's scale, standard deviation 0.02: U(-b, b) with b = 0.02 sqrt(3) */
            const double b = 0.02 * sqrt(3.0);
            for (size_t e = 0; e < L->w_len; ++e)
                w[e] = (float)(b * (2.0 * (double)sp_rng_uniform(seed, stream, e) - 1.0));
            continue;
        }
        const double gain2 = init_gain2_(m, i);
        const size_t recept = L->w_rank == 4 ? (size_t)(L->w_shape[2] * L->w_shape[3]) : 1;
        const double fan_in = (double)L->w_shape[1] * (double)recept;
        const double fan_out = (double)L->w_shape[0] * (double)recept;
        /* He uniform: U(-b, b), b = gain sqrt(3 / fan_in); Xavier uniform: b = sqrt(6/(in+out)) */
        const double bound =
            gain2 > 0 ? sqrt(3.0 * gain2 / fan_in) : sqrt(6.0 / (fan_in + fan_out));
        for (size_t e = 0; e < L->w_len; ++e)
            w[e] = (float)(bound * (2.0 * (double)sp_rng_uniform(seed, stream, e) - 1.0));
        memset(m->params + L->b_off, 0, L->b_len * sizeof(float));
    }
    init_buffers_(m);
}

void sp_model_set_layer_hook(sp_model *m, sp_layer_hook_fn fn, void *user) {
    m->hook = fn;
    m->hook_user = fn ? user : NULL;
}

void sp_model_set_allsum(sp_model *m, sp_model_allsum_fn fn, void *user) {
    m->allsum = fn;
    m->allsum_user = fn ? user : NULL;
}

void sp_model_local_sums(const double *terms, int count, size_t n, double *sums) {
    for (size_t j = 0; j < n; ++j) sums[j] = 0;
    for (int s = 0; s < count; ++s) /* sample order: the same bits for any number of threads */
        for (size_t j = 0; j < n; ++j) sums[j] += terms[(size_t)s * n + j];
}

sp_status sp_model_sum_terms(sp_model *m, const double *terms, int count, size_t n, double *sums) {
    if (m->allsum) return m->allsum(m->allsum_user, terms, count, n, sums);
    sp_model_local_sums(terms, count, n, sums);
    return SP_OK;
}

sp_status sp_model_status(const sp_model *m) {
    return m->status;
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
size_t sp_model_num_buffers(const sp_model *m) {
    return m->nbuffers;
}
float *sp_model_buffers(sp_model *m) {
    return m->buffers;
}

const char *sp_model_layer_name(const sp_model *m, int i) {
    return sp_layer_kind_name(m->nodes[i].spec.kind);
}

const char *sp_model_layer_path(const sp_model *m, int i) {
    return m->nodes[i].spec.path;
}

int sp_model_layer_inputs(const sp_model *m, int i, int in[2]) {
    in[0] = m->nodes[i].spec.in[0];
    in[1] = m->nodes[i].spec.in[1];
    return in[1] == SP_SPEC_NONE ? 1 : 2;
}

int sp_model_layer_tied(const sp_model *m, int i) {
    return m->nodes[i].tie;
}

size_t sp_model_layer_saved_bytes(const sp_model *m, int i) {
    const sp_node *L = &m->nodes[i];
    size_t arg_n;
    const size_t out = L->spec.kind == SP_LAYER_FLATTEN ? 0 : L->out_size * (size_t)m->max_batch;
    return (out + saved_floats_(L, (size_t)m->max_batch, &arg_n) + arg_n) * sizeof(float);
}

bool sp_model_layer_params(const sp_model *m, int i, size_t *w_off, int *w_rank, int64_t w_shape[4],
                           size_t *b_off, int64_t *b_len) {
    const sp_node *L = &m->nodes[i];
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
    const sp_node *L = &m->nodes[i];
    if (!L->w_len) return false;
    *w_off = L->w_off, *w_len = L->w_len;
    *b_off = L->b_off, *b_len = L->b_len;
    return true;
}

bool sp_model_layer_buffers(sp_model *m, int i, size_t *off, size_t *len, int64_t **tracked) {
    sp_node *L = &m->nodes[i];
    if (!L->s_len) return false;
    *off = L->s_off, *len = L->s_len;
    *tracked = &L->tracked;
    return true;
}

int sp_model_layer_out_shape(const sp_model *m, int i, int64_t shape[3]) {
    const sp_node *L = &m->nodes[i];
    memcpy(shape, L->out_shape, sizeof L->out_shape);
    return L->out_rank;
}

double sp_model_flops_per_sample(const sp_model *m) {
    double f = 0;
    for (int i = 0; i < m->n; ++i) {
        const sp_node *L = &m->nodes[i];
        switch (L->spec.kind) {
        case SP_LAYER_DENSE: /* w_shape: tied weights too */
            f += 2.0 * (double)(L->w_shape[0] * L->w_shape[1]) * L->rows;
            break;
        case SP_LAYER_ATTENTION: { /* q k^T and P v over the causal half */
            const double T = (double)L->in_shape[0], C = (double)L->out_shape[1];
            f += 2.0 * 2.0 * C * T * (T + 1) / 2;
            break;
        }
        case SP_LAYER_CONV2D:
            f += 2.0 * (double)L->w_len * (double)L->conv.oh * (double)L->conv.ow;
            break;
        case SP_LAYER_MAXPOOL:
        case SP_LAYER_AVGPOOL:
            f += (double)L->out_size * (double)L->pool.k * (double)L->pool.k;
            break;
        case SP_LAYER_FLATTEN:
            break;
        case SP_LAYER_BATCHNORM:
        case SP_LAYER_LAYERNORM:
            f += 4.0 * (double)L->out_size; /* statistics, then scale and shift */
            break;
        default:
            f += (double)L->out_size;
            break;
        }
    }
    return f;
}

size_t sp_model_memory_bytes(const sp_model *m) {
    return (2 * m->nparams + m->nbuffers + m->buffer_floats) * sizeof(float);
}
