/*
 * Thread invariance: a few training steps (forward, cross-entropy, backward, Adam) of a conv
 * model with dropout, of an MLP, of a ResNet-like graph with batch norm (a projection shortcut)
 * and of a layer-norm graph (a pre-norm residual block, batch norm on a branch, concat) give
 * bitwise-identical parameters and running statistics with 1, 2 and 3 OpenMP threads. Sizes are
 * chosen so that the GEMMs really run threaded (checked).
 */
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/gemm.h"
#include "layers/layers.h"
#include "optim/optim.h"
#include "shardprop/model.h"
#include "testutil.h"
#include "util/rng.h"

/* The parameters after 4 steps, then the model's buffers (running statistics): *nparams floats. */
static float *train(const char *spec, int rank, const int64_t *shape, int B, int classes,
                    int threads, size_t *nparams) {
    omp_set_num_threads(threads);
    sp_model *m = NULL;
    if (sp_model_create(&m, spec, shape, rank, B) != SP_OK) return NULL;
    sp_model_init_params(m, 5);
    sp_optimizer *opt = NULL;
    sp_opt_config oc = sp_opt_config_defaults(SP_OPT_ADAM);
    oc.weight_decay = 0.01f;
    if (sp_optim_create(&opt, &oc, sp_model_num_params(m)) != SP_OK) return NULL;
    const size_t in = sp_model_input_size(m);
    float *x = malloc(sizeof(float) * in * (size_t)B),
          *dz = malloc(sizeof(float) * (size_t)B * classes);
    int32_t *y = malloc(sizeof(int32_t) * (size_t)B);
    double *rows = malloc(sizeof(double) * (size_t)B);
    int64_t *ids = malloc(sizeof(int64_t) * (size_t)B);
    for (int step = 0; step < 4; ++step) {
        sp_test_fill(x, in * (size_t)B, (uint64_t)(100 + step), -1, 1);
        for (int i = 0; i < B; ++i) {
            y[i] = (int32_t)sp_rng_below(7, 7, (uint64_t)(step * B + i), (uint64_t)classes);
            ids[i] = step * B + i;
        }
        sp_step_ctx ctx = {.training = true, .seed = 3, .step = step, .sample_ids = ids};
        const float *z = sp_model_forward(m, x, B, &ctx);
        double loss;
        int64_t correct;
        sp_xent_loss(&loss, &correct, dz, rows, z, y, B, classes, 1.0f / (float)B);
        sp_model_zero_grads(m);
        sp_model_backward(m, dz, B, NULL, NULL);
        sp_optim_step(opt, sp_model_params(m), sp_model_grads(m), 1e-3f);
    }
    const size_t np = sp_model_num_params(m), nb = sp_model_num_buffers(m);
    *nparams = np + nb;
    float *out = malloc(sizeof(float) * *nparams);
    memcpy(out, sp_model_params(m), sizeof(float) * np);
    if (nb) memcpy(out + np, sp_model_buffers(m), sizeof(float) * nb);
    free(x), free(dz), free(y), free(rows), free(ids);
    sp_optim_free(opt);
    sp_model_free(m);
    return out;
}

static void check_model(const char *spec, int rank, const int64_t *shape, int B, int classes) {
    size_t n1 = 0, n = 0;
    float *p1 = train(spec, rank, shape, B, classes, 1, &n1);
    CHECK(p1 != NULL, "%s trains", spec);
    if (!p1) return;
    for (int t = 2; t <= 3; ++t) {
        float *pt = train(spec, rank, shape, B, classes, t, &n);
        CHECK(pt && n == n1 && memcmp(p1, pt, n * sizeof(float)) == 0,
              "%s: parameters and buffers after 4 steps with %d threads are bitwise those of 1 "
              "thread",
              spec, t);
        free(pt);
    }
    free(p1);
}

int main(void) {
    omp_set_num_threads(3);
    CHECK(sp_gemm_plan_threads(64, 256, 128) > 1, "the MLP's GEMMs run threaded");
    CHECK(sp_gemm_plan_threads(16, 32 * 256, 9) > 1, "the conv's GEMMs run threaded");
    CHECK(sp_gemm_plan_threads(8, 16 * 144, 72) > 1, "the ResNet block's GEMMs run threaded");
    const int64_t img[3] = {1, 16, 16}, vec[1] = {128}, rgb[3] = {3, 12, 12};
    check_model("conv2d:16:3:pad=1,relu,maxpool:2,conv2d:8:3:stride=2,gelu,avgpool:2,flatten,"
                "dropout:0.3,dense:10",
                3, img, 32, 10);
    check_model("dense:256,relu,dense:64,tanh,dense:10", 1, vec, 64, 10);
    check_model(
        "conv2d:8:3:pad=1:bias=0,batchnorm,relu,"
        "residual(conv2d:8:3:pad=1:bias=0,batchnorm,relu,conv2d:8:3:pad=1:bias=0,batchnorm),"
        "relu,residual(conv2d:16:3:stride=2:pad=1:bias=0,batchnorm | "
        "conv2d:16:1:stride=2:bias=0,batchnorm),relu,gap,dense:10",
        3, rgb, 16, 10);
    check_model("dense:128,save:x,residual(layernorm,dense:256,gelu,dense:128),layernorm,"
                "residual(dense:64:bias=0,batchnorm,relu | dense:64),concat:x,dense:10",
                1, vec, 64, 10);
    return sp_test_summary("threads");
}
