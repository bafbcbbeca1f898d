/*
 * The non-finite gradient scan (src/train/nonfinite.c) on a model's gradient slab: finite values
 * of every magnitude (subnormals, the largest float, negative zero) pass; a single NaN or Inf in
 * any weight or bias is found, and the first layer in backward order (closest to the output) is
 * the one named; the count of affected layers is right.
 */
#include <float.h>
#include <math.h>
#include <string.h>

#include "shardprop/model.h"
#include "testutil.h"
#include "train/nonfinite.h"

int main(void) {
    const int64_t in[1] = {5};
    sp_model *m = NULL;
    CHECK(sp_model_create(&m, "dense:7,relu,dense:6,tanh,dense:3", in, 1, 4) == SP_OK, "model");
    if (!m) return sp_test_summary("nonfinite");
    const size_t n = sp_model_num_params(m);
    float *g = sp_model_grads(m);
    const float finite[] = {0.0f,    -0.0f,  1.0f,   -1.0f, FLT_MAX, -FLT_MAX,
                            FLT_MIN, 1e-45f, -3e38f, 0.5f,  1e30f,   -7.25f};
    for (size_t i = 0; i < n; ++i) g[i] = finite[i % (sizeof finite / sizeof finite[0])];
    sp_nonfinite_scan s;
    sp_nonfinite_scan_grads(m, &s);
    CHECK(s.first_layer == -1 && s.bad_layers == 0 && s.param_layers == 3,
          "finite gradient: first %d, bad %d, param layers %d", s.first_layer, s.bad_layers,
          s.param_layers);
    const float bad[] = {NAN, -NAN, INFINITY, -INFINITY};
    int checked = 0;
    for (int layer = 0; layer < sp_model_num_layers(m); ++layer) {
        size_t w_off = 0, b_off = 0;
        int w_rank = 0;
        int64_t w_shape[4] = {0}, b_len = 0;
        if (!sp_model_layer_params(m, layer, &w_off, &w_rank, w_shape, &b_off, &b_len)) continue;
        const size_t wn = (size_t)w_shape[0] * (size_t)w_shape[1];
        /* first, middle and last weight, first and last bias */
        const size_t at[] = {w_off, w_off + wn / 2, w_off + wn - 1, b_off,
                             b_off + (size_t)b_len - 1};
        for (size_t k = 0; k < sizeof at / sizeof at[0]; ++k) {
            for (size_t v = 0; v < sizeof bad / sizeof bad[0]; ++v) {
                const float saved = g[at[k]];
                g[at[k]] = bad[v];
                sp_nonfinite_scan_grads(m, &s);
                CHECK(s.first_layer == layer && s.bad_layers == 1,
                      "%g at slab offset %zu (layer %d): found in layer %d, %d bad", bad[v], at[k],
                      layer, s.first_layer, s.bad_layers);
                g[at[k]] = saved;
                ++checked;
            }
        }
    }
    CHECK(checked == 60, "%d placements", checked);
    /* two layers bad: the one closest to the output is named, both counted */
    g[0] = NAN;
    g[n - 1] = INFINITY;
    sp_nonfinite_scan_grads(m, &s);
    CHECK(s.first_layer == 4 && s.bad_layers == 2, "layers 0 and 4 bad: first %d, bad %d",
          s.first_layer, s.bad_layers);
    char line[512];
    sp_nonfinite_describe(m, &s, 12, NAN, false, line, sizeof line);
    CHECK(strstr(line, "step 12") && strstr(line, "layer 4 (dense) in backward order") &&
              strstr(line, "2 of 3") && strstr(line, "NaN"),
          "message: %s", line);
    bool skip = true;
    CHECK(sp_nonfinite_parse("stop", &skip) == SP_OK && !skip, "stop");
    CHECK(sp_nonfinite_parse("skip", &skip) == SP_OK && skip, "skip");
    CHECK(sp_nonfinite_parse("ignore", &skip) == SP_ERR_ARG, "ignore is refused");
    sp_model_free(m);
    return sp_test_summary("nonfinite");
}
