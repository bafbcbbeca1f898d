#include "ref_graph.h"

#include <stdlib.h>
#include <string.h>

#include "model/spec.h"
#include "ref_layers.h"

static size_t size_of_(const int64_t *s, int rank) {
    size_t n = 1;
    for (int d = 0; d < rank; ++d) n *= (size_t)s[d];
    return n;
}

bool ref_graph_forward(const sp_model *m, const double *p, const double *x, int B, bool training,
                       double *y) {
    sp_layer_spec *L = NULL;
    int n = 0;
    if (sp_spec_parse(sp_model_spec(m), &L, &n) != SP_OK || n != sp_model_num_layers(m)) {
        free(L);
        return false;
    }
    double **out = calloc((size_t)n, sizeof *out);
    size_t widest = sp_model_input_size(m);
    for (int i = 0; i < n; ++i) {
        int64_t s[3];
        const int r = sp_model_layer_out_shape(m, i, s);
        out[i] = calloc((size_t)B * size_of_(s, r), sizeof(double));
        if (size_of_(s, r) > widest) widest = size_of_(s, r);
    }
    double *zeros = calloc(widest + 1, sizeof(double));
    const float *bufs = sp_model_buffers((sp_model *)m);
    bool ok = true;
    for (int i = 0; i < n && ok; ++i) {
        const sp_layer_spec *S = &L[i];
        int64_t is[3] = {0, 1, 1}, os[3];
        int ir;
        const double *a;
        if (S->in[0] == SP_SPEC_INPUT) {
            ir = sp_model_input_rank(m);
            memcpy(is, sp_model_input_shape(m), (size_t)ir * sizeof *is);
            a = x;
        } else {
            ir = sp_model_layer_out_shape(m, S->in[0], is);
            a = out[S->in[0]];
        }
        const int orank = sp_model_layer_out_shape(m, i, os);
        const size_t in_n = size_of_(is, ir), out_n = size_of_(os, orank);
        size_t w_off = 0, b_off = 0;
        int w_rank;
        int64_t w_shape[4], b_len = 0;
        const bool has = sp_model_layer_params(m, i, &w_off, &w_rank, w_shape, &b_off, &b_len);
        const int tie = sp_model_layer_tied(m, i); /* dense:V:tie: the embedding's weight */
        if (tie >= 0) sp_model_layer_params(m, tie, &w_off, &w_rank, w_shape, &b_off, &b_len);
        const double *w = has || tie >= 0 ? p + w_off : NULL;
        const double *b = has && b_len ? p + b_off : zeros;
        /* a sequence (T, D): dense and layer norm act on each of its T positions */
        const int rows = ir == 2 ? (int)is[0] : 1, feat = ir == 2 ? (int)is[1] : (int)in_n;
        const int C = (int)is[0], P = ir == 3 ? (int)(is[1] * is[2]) : 1;
        double *o = out[i];
        switch (S->kind) {
        case SP_LAYER_DENSE:
            ref_dense(o, a, w, b, B * rows, feat, (int)(out_n / (size_t)rows));
            break;
        case SP_LAYER_EMBEDDING:
            ref_embedding(o, a, w, (int64_t)B * (int64_t)in_n, S->units);
            break;
        case SP_LAYER_POS_EMBEDDING:
            ref_pos_embedding(o, a, w, B, (int)is[0], (int)is[1]);
            break;
        case SP_LAYER_ATTENTION:
            ref_attention(o, NULL, a, B, (int)is[0], (int)os[1], S->heads);
            break;
        case SP_LAYER_CONV2D:
            ref_conv2d(o, a, w, b, B, C, (int)is[1], (int)is[2], S->out_channels, S->kernel,
                       S->stride, S->pad);
            break;
        case SP_LAYER_MAXPOOL:
            ref_maxpool(o, a, B, C, (int)is[1], (int)is[2], S->kernel, S->stride);
            break;
        case SP_LAYER_AVGPOOL:
            ref_avgpool(o, a, B, C, (int)is[1], (int)is[2], S->kernel, S->stride);
            break;
        case SP_LAYER_FLATTEN:
        case SP_LAYER_DROPOUT:
            memcpy(o, a, (size_t)B * in_n * sizeof *o);
            break;
        case SP_LAYER_RELU:
        case SP_LAYER_LEAKY_RELU:
        case SP_LAYER_TANH:
        case SP_LAYER_SIGMOID:
        case SP_LAYER_GELU:
            ref_act(o, a, (int64_t)B * (int64_t)in_n,
                    S->kind == SP_LAYER_GELU && S->tanh ? 5 : (int)(S->kind - SP_LAYER_RELU),
                    S->slope);
            break;
        case SP_LAYER_BATCHNORM:
            if (training) {
                ref_batchnorm_train(o, NULL, NULL, a, w, b, B, C, P, S->eps);
            } else {
                size_t off, len;
                int64_t *t;
                sp_model_layer_buffers((sp_model *)m, i, &off, &len, &t);
                double *rm = calloc(len, sizeof *rm), *rv = calloc(len, sizeof *rv);
                for (size_t c = 0; c < len; ++c) rm[c] = bufs[off + c], rv[c] = bufs[off + len + c];
                ref_batchnorm_eval(o, a, rm, rv, w, b, B, C, P, S->eps);
                free(rm), free(rv);
            }
            break;
        case SP_LAYER_LAYERNORM:
            ref_layernorm(o, a, w, b, B * rows, feat, S->eps);
            break;
        case SP_LAYER_GAP:
            ref_gap(o, a, B, C, P);
            break;
        case SP_LAYER_UPSAMPLE:
            ref_upsample(o, a, B, C, (int)is[1], (int)is[2], S->scale);
            break;
        case SP_LAYER_ADD: {
            const double *c = S->in[1] == SP_SPEC_INPUT ? x : out[S->in[1]];
            for (size_t e = 0; e < (size_t)B * out_n; ++e) o[e] = a[e] + c[e];
            break;
        }
        case SP_LAYER_CONCAT: {
            const double *c = S->in[1] == SP_SPEC_INPUT ? x : out[S->in[1]];
            ref_concat(o, a, c, B, C, (int)os[0] - C, P);
            break;
        }
        default:
            ok = false;
        }
    }
    if (ok) {
        int64_t s[3];
        const int r = sp_model_layer_out_shape(m, n - 1, s);
        memcpy(y, out[n - 1], (size_t)B * size_of_(s, r) * sizeof *y);
    }
    for (int i = 0; i < n; ++i) free(out[i]);
    free(out);
    free(zeros);
    free(L);
    return ok;
}
