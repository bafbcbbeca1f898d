/*
 * Fuzz target: the model spec parser, shape inference and (for models cheap enough) one forward
 * and backward pass. The input is the spec text. Each parsed spec is built for an image input
 * (3, 8, 8) and a vector input (16), max batch 2, under a 64 MiB memory limit: a spec asking for
 * huge layers must be refused with SP_ERR_SPEC / SP_ERR_NOMEM, never allocated.
 */
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"
#include "model/spec.h"
#include "shardprop/model.h"

/* Rough multiply-adds of one forward pass over B samples; beyond a few 10^7 the pass is
 * skipped (libFuzzer's -timeout would fire long before a bug shows). */
static double cost_(const sp_model *m, const sp_layer_spec *L, int B) {
    double c = 0;
    for (int i = 0; i < sp_model_num_layers(m); ++i) {
        int64_t s[3];
        int r = sp_model_layer_out_shape(m, i, s);
        double out = (double)s[0] * (r == 3 ? (double)s[1] * (double)s[2] : 1.0);
        size_t w_off, b_off;
        int w_rank;
        int64_t w_shape[4], b_len;
        if (sp_model_layer_params(m, i, &w_off, &w_rank, w_shape, &b_off, &b_len))
            c += out * (double)w_shape[1] * (w_rank == 4 ? (double)w_shape[2] * w_shape[3] : 1);
        else if (L[i].kind == SP_LAYER_MAXPOOL || L[i].kind == SP_LAYER_AVGPOOL)
            c += out * (double)L[i].kernel * L[i].kernel;
        else
            c += out;
    }
    return c * B;
}

static void run_(const char *spec, const sp_layer_spec *L, const int64_t *shape, int rank) {
    enum { B = 2 };
    sp_model *m;
    if (sp_model_create(&m, spec, shape, rank, B) != SP_OK) return;
    if (cost_(m, L, B) < 2e7) {
        sp_model_init_params(m, 7);
        size_t in = sp_model_input_size(m), out = sp_model_output_size(m);
        float *x = malloc(B * in * sizeof(float)), *d = malloc(B * out * sizeof(float));
        if (!x || !d) abort();
        for (size_t i = 0; i < B * in; ++i) x[i] = (float)((int)(i % 7) - 3) * 0.25f;
        for (size_t i = 0; i < B * out; ++i) d[i] = (float)((int)(i % 5) - 2) * 0.5f;
        int64_t ids[B] = {3, 11};
        sp_step_ctx ctx = {.training = true, .seed = 1, .step = 0, .sample_ids = ids};
        sp_model_forward(m, x, B, &ctx);
        sp_model_zero_grads(m);
        sp_model_backward(m, d, B, NULL, NULL);
        free(x);
        free(d);
    }
    sp_model_free(m);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    sp_fuzz_setup();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size > 4096) return 0;
    char *spec = sp_fuzz_cstr(data, size);
    sp_layer_spec *L = NULL;
    int n = 0;
    if (sp_spec_parse(spec, &L, &n) == SP_OK) {
        if (n < 1 || !L) abort(); /* a successful parse has at least one layer */
        for (int i = 0; i < n; ++i)
            if (!memchr(L[i].text, '\0', sizeof L[i].text)) abort();
        const int64_t image[3] = {3, 8, 8}, vec[1] = {16};
        run_(spec, L, image, 3);
        run_(spec, L, vec, 1);
    }
    free(L);
    free(spec);
    return 0;
}
