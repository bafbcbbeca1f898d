/* --layer-stats: per-layer error-signal, gradient, weight and update norms (layer_stats.h). */
#include "train/layer_stats.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "util/json.h"
#include "util/status.h"

typedef struct layer_acc {
    double err_sq;       /* sum of squares of the arriving error signal (this rank, then all) */
    double gw_sq, gb_sq; /* reduced gradient of the weight / bias */
    double w_sq, b_sq;   /* weight / bias before the step */
} layer_acc;

struct sp_layer_stats {
    bool root, armed;
    int nl;
    layer_acc *acc;
    double *err;   /* (nl) packed for the allreduce */
    float *before; /* (num_params) root: the parameters before the step */
};

sp_status sp_layer_stats_create(sp_layer_stats **out, const sp_model *m, bool root) {
    *out = NULL;
    sp_layer_stats *ls = calloc(1, sizeof *ls);
    if (!ls) return SP_FAIL(SP_ERR_NOMEM, "out of memory");
    ls->root = root;
    ls->nl = sp_model_num_layers(m);
    ls->acc = calloc((size_t)ls->nl, sizeof *ls->acc);
    ls->err = calloc((size_t)ls->nl, sizeof *ls->err);
    const size_t np = sp_model_num_params(m);
    if (root) ls->before = malloc((np ? np : 1) * sizeof(float));
    if (!ls->acc || !ls->err || (root && !ls->before)) {
        sp_layer_stats_free(ls);
        return SP_FAIL(SP_ERR_NOMEM, "--layer-stats: out of memory");
    }
    *out = ls;
    return SP_OK;
}

void sp_layer_stats_free(sp_layer_stats *ls) {
    if (!ls) return;
    free(ls->acc);
    free(ls->err);
    free(ls->before);
    free(ls);
}

void sp_layer_stats_arm(sp_layer_stats *ls, bool on) {
    ls->armed = on;
    if (on) memset(ls->acc, 0, (size_t)ls->nl * sizeof *ls->acc);
}

bool sp_layer_stats_armed(const sp_layer_stats *ls) {
    return ls->armed;
}

static double sum_sq_(const float *x, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; ++i) s += (double)x[i] * (double)x[i];
    return s;
}

void sp_layer_stats_error_signal(sp_layer_stats *ls, int layer, const float *dy, size_t n) {
    if (!ls->armed || layer < 0 || layer >= ls->nl || !dy) return;
    ls->acc[layer].err_sq += sum_sq_(dy, n);
}

/* Layer i's weight and bias ranges in the slabs; false for a layer without parameters. */
void sp_layer_stats_before_update(sp_layer_stats *ls, sp_model *m) {
    if (!ls->armed || !ls->root) return;
    const float *p = sp_model_params(m), *g = sp_model_grads(m);
    for (int i = 0; i < ls->nl; ++i) {
        size_t wo, wl, bo, bl;
        if (!sp_model_layer_ranges(m, i, &wo, &wl, &bo, &bl)) continue;
        layer_acc *a = &ls->acc[i];
        a->gw_sq = sum_sq_(g + wo, wl);
        a->gb_sq = sum_sq_(g + bo, bl);
        a->w_sq = sum_sq_(p + wo, wl);
        a->b_sq = sum_sq_(p + bo, bl);
    }
    memcpy(ls->before, p, sp_model_num_params(m) * sizeof(float));
}

static double diff_sq_(const float *a, const float *b, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; ++i) {
        const double d = (double)a[i] - (double)b[i];
        s += d * d;
    }
    return s;
}

sp_status sp_layer_stats_after_update(sp_layer_stats *ls, sp_model *m, sp_comm *c, FILE *metrics,
                                      int64_t step, int64_t epoch, double lr) {
    if (!ls->armed) return SP_OK;
    ls->armed = false;
    for (int i = 0; i < ls->nl; ++i) ls->err[i] = ls->acc[i].err_sq;
    /* the error signal of the global batch: sums of squares over ranks */
    SP_CHECK(sp_comm_sum_doubles(c, ls->err, ls->nl));
    if (!ls->root || !metrics) return SP_OK;
    const float *p = sp_model_params(m);
    for (int i = 0; i < ls->nl; ++i) {
        size_t wo, wl, bo, bl;
        if (!sp_model_layer_ranges(m, i, &wo, &wl, &bo, &bl)) continue;
        const layer_acc *a = &ls->acc[i];
        const double w = sqrt(a->w_sq), dw = sqrt(diff_sq_(p + wo, ls->before + wo, wl));
        sp_json j;
        sp_json_begin(&j, metrics);
        sp_json_str(&j, "event", "layer_stats");
        sp_json_int(&j, "step", step);
        sp_json_int(&j, "epoch", epoch);
        sp_json_int(&j, "layer", i);
        sp_json_str(&j, "kind", sp_model_layer_name(m, i));
        sp_json_int(&j, "params", (int64_t)(wl + bl));
        sp_json_num(&j, "error_norm", sqrt(ls->err[i]));
        sp_json_num(&j, "weight_grad_norm", sqrt(a->gw_sq));
        sp_json_num(&j, "bias_grad_norm", sqrt(a->gb_sq));
        sp_json_num(&j, "weight_norm", w);
        sp_json_num(&j, "bias_norm", sqrt(a->b_sq));
        sp_json_num(&j, "update_norm", dw);
        sp_json_num(&j, "update_ratio", w > 0 ? dw / w : NAN);
        sp_json_num(&j, "lr", lr);
        sp_json_end(&j);
    }
    return SP_OK;
}
