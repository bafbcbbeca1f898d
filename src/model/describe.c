/* The model's graph as text (model/describe.h). */
#include "model/describe.h"

#include <string.h>

#include "util/shape.h"

void sp_model_inputs_str(const sp_model *m, int i, char *buf, size_t cap) {
    int in[2];
    const int n = sp_model_layer_inputs(m, i, in);
    char a[16], b[16];
    if (in[0] < 0)
        snprintf(a, sizeof a, "input");
    else
        snprintf(a, sizeof a, "%d", in[0]);
    if (n == 1) {
        snprintf(buf, cap, "%s", a);
        return;
    }
    if (in[1] < 0)
        snprintf(b, sizeof b, "input");
    else
        snprintf(b, sizeof b, "%d", in[1]);
    snprintf(buf, cap, "%s %s %s", a, strcmp(sp_model_layer_name(m, i), "concat") ? "+" : "|", b);
}

void sp_model_print_graph(const sp_model *m, FILE *f, const char *indent, bool saved) {
    for (int i = 0; i < sp_model_num_layers(m); ++i) {
        int64_t sh[3];
        const int r = sp_model_layer_out_shape(m, i, sh);
        char shape[64], inputs[40];
        sp_shape_str(shape, sizeof shape, sh, r);
        sp_model_inputs_str(m, i, inputs, sizeof inputs);
        fprintf(f, "%s%3d %-9s %-10s %-12s -> %-14s", indent, i, sp_model_layer_path(m, i),
                sp_model_layer_name(m, i), inputs, shape);
        size_t w_off, b_off;
        int w_rank;
        int64_t w_shape[4], b_len;
        if (sp_model_layer_params(m, i, &w_off, &w_rank, w_shape, &b_off, &b_len)) {
            int64_t wn = 1;
            for (int d = 0; d < w_rank; ++d) wn *= w_shape[d];
            char ws[64];
            sp_shape_str(ws, sizeof ws, w_shape, w_rank);
            fprintf(f, "  params/%s/weight %s", sp_model_layer_path(m, i), ws);
            if (b_len) fprintf(f, " bias (%lld,)", (long long)b_len);
            fprintf(f, ": %lld parameters", (long long)(wn + b_len));
            size_t off, len;
            int64_t *tracked;
            if (sp_model_layer_buffers((sp_model *)m, i, &off, &len, &tracked))
                fprintf(f, " + running_mean, running_var (%zu,)", len);
        }
        const int tie = sp_model_layer_tied(m, i);
        if (tie >= 0) fprintf(f, "  weight = params/%s/weight (tied)", sp_model_layer_path(m, tie));
        if (saved) fprintf(f, "  saved %.2f MB", (double)sp_model_layer_saved_bytes(m, i) / 1e6);
        fprintf(f, "\n");
    }
}
