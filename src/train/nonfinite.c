#include "train/nonfinite.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/status.h"

sp_status sp_nonfinite_parse(const char *mode, bool *skip) {
    if (!strcmp(mode, "stop")) {
        *skip = false;
        return SP_OK;
    }
    if (!strcmp(mode, "skip")) {
        *skip = true;
        return SP_OK;
    }
    return SP_FAIL(SP_ERR_ARG, "--on-nonfinite must be stop or skip, got '%s'", mode);
}

/* Whether g[0..n) holds a NaN or an Inf: a float is one iff its exponent bits are all ones, i.e.
 * iff (bits & 0x7f800000) + 0x00800000 carries into the sign bit. An OR over integers: no
 * floating-point reordering, vectorized by the compiler, threaded over the team for big layers
 * (the scan reads the whole gradient once per step). */
static bool has_nonfinite_(const float *g, size_t n) {
    uint32_t any = 0;
#pragma omp parallel for schedule(static) reduction(| : any) if (n >= ((size_t)1 << 16))
    for (size_t i = 0; i < n; ++i) {
        uint32_t b;
        memcpy(&b, &g[i], sizeof b);
        any |= (b & 0x7f800000u) + 0x00800000u;
    }
    return (any & 0x80000000u) != 0;
}

void sp_nonfinite_scan_grads(sp_model *m, sp_nonfinite_scan *out) {
    const float *g = sp_model_grads(m);
    out->first_layer = -1;
    out->bad_layers = out->param_layers = 0;
    for (int i = sp_model_num_layers(m) - 1; i >= 0; --i) {
        size_t w_off, w_len, b_off, b_len;
        if (!sp_model_layer_ranges(m, i, &w_off, &w_len, &b_off, &b_len)) continue;
        ++out->param_layers;
        if (has_nonfinite_(g + w_off, w_len) || has_nonfinite_(g + b_off, b_len)) {
            ++out->bad_layers;
            if (out->first_layer < 0) out->first_layer = i;
        }
    }
}

void sp_nonfinite_describe(sp_model *m, const sp_nonfinite_scan *s, int64_t step, double loss,
                           bool reported_by_other, char *buf, size_t cap) {
    const char *lv = isnan(loss) ? "NaN" : isinf(loss) ? "infinite" : "finite";
    if (s->first_layer >= 0)
        snprintf(buf, cap,
                 "non-finite gradient at step %lld: first in layer %d (%s) in backward order, %d "
                 "of %d parameter layers affected; the loss is %s",
                 (long long)step, s->first_layer, sp_model_layer_name(m, s->first_layer),
                 s->bad_layers, s->param_layers, lv);
    else if (reported_by_other)
        snprintf(buf, cap,
                 "non-finite gradient at step %lld on another rank (this rank's reduced gradient "
                 "is finite); the loss is %s",
                 (long long)step, lv);
    else
        snprintf(buf, cap, "non-finite loss at step %lld (the loss is %s, the gradient finite)",
                 (long long)step, lv);
}

sp_status sp_nonfinite_error(sp_model *m, const sp_nonfinite_scan *s, int64_t step, double loss,
                             bool reported_by_other) {
    char what[512];
    sp_nonfinite_describe(m, s, step, loss, reported_by_other, what, sizeof what);
    return SP_FAIL(SP_ERR_NUMERIC,
                   "%s: the run diverged; lower --lr, use --clip-norm, or --on-nonfinite skip to "
                   "drop such steps",
                   what);
}

sp_status sp_nonfinite_handle(sp_model *m, bool skip, int64_t step, double loss, bool any_bad,
                              const sp_nonfinite_scan *s, int64_t *skipped, bool talk) {
    const bool other = any_bad && s->first_layer < 0;
    if (!skip) return sp_nonfinite_error(m, s, step, loss, other);
    const int64_t n = ++*skipped;
    bool power10 = false;
    for (int64_t p = 10; p > 0 && p <= n; p *= 10) power10 = power10 || p == n;
    if (talk && (n <= 10 || power10)) {
        char what[512];
        sp_nonfinite_describe(m, s, step, loss, other, what, sizeof what);
        fprintf(stderr,
                "shardprop train: warning: %s: step skipped on every rank (no update; %lld "
                "skipped so far)\n",
                what, (long long)n);
    }
    return SP_OK;
}
