/*
 * Graphs: residual blocks with projection shortcuts, repeats, named values joined by add and
 * concat, batch norm in training and evaluation, layer norm. For each graph the float model
 * against the double-precision evaluator of tests/lib/ref_graph.c (the same graph through the
 * reference layers): the forward values in training and in evaluation, and every parameter's
 * gradient against central finite differences of the reference (relative error < 1e-4). Then
 * the same bits for 1 and 3 threads, sp_model_backward_fresh equal to zero + backward, and the
 * blame plan: a straight stack needs two slots, the identity shortcut copies nothing. The
 * sequence graphs take token ids and check the embeddings' scatter-add (repeated ids), the tied
 * output (its gradient the sum of both uses), attention and per-position dense and layer norm;
 * and attention is causal.
 */
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "model/model_impl.h"
#include "ref_graph.h"
#include "shardprop/model.h"
#include "testutil.h"
#include "util/status.h"

enum { B = 5 };

typedef struct graph_case {
    const char *name, *spec;
    int rank;
    int64_t shape[3];
    int vocab; /* > 0: the input is token ids in [0, vocab) */
} graph_case;

static const graph_case cases_[] = {
    {"resnet (projection shortcut, batch norm, repeat)",
     "conv2d:4:3:pad=1:bias=0,batchnorm,relu,"
     "residual(conv2d:6:3:stride=2:pad=1:bias=0,batchnorm,relu,conv2d:6:3:pad=1:bias=0,batchnorm"
     " | conv2d:6:1:stride=2:bias=0,batchnorm),relu,"
     "repeat:2(residual(conv2d:6:3:pad=1,batchnorm,relu,conv2d:6:3:pad=1:bias=0,batchnorm),relu),"
     "gap,dense:3",
     3,
     {2, 6, 6},
     0},
    {"pre-norm blocks (layer norm)",
     "dense:8,repeat:2(residual(layernorm,dense:12,gelu,dense:8)),layernorm,dense:3",
     1,
     {5, 1, 1},
     0},
    {"u-net (two levels, concat of the skips)",
     "conv2d:3:3:pad=1,relu,save:s1,maxpool:2,conv2d:4:3:pad=1,relu,save:s2,maxpool:2,"
     "conv2d:5:3:pad=1,relu,upsample:2,concat:s2,conv2d:4:3:pad=1,relu,upsample:2,concat:s1,"
     "conv2d:3:3:pad=1,relu,conv2d:1:1,flatten,dense:3",
     3,
     {1, 8, 8},
     0},
    {"one value, many consumers (x + x, concat of itself)",
     "dense:6,save:a,tanh,add:a,add:a,save:b,concat:b,batchnorm,sigmoid,dense:3",
     1,
     {4, 1, 1},
     0},
    {"one-layer branch and a two-sided residual",
     "dense:6,residual(tanh),residual(dense:6 | dense:6,leaky_relu:0.2),dense:3",
     1,
     {4, 1, 1},
     0},
    {"batch norm on the input (takes no blame) and before relu",
     "batchnorm,dense:4,batchnorm:momentum=0.3,relu,dense:3",
     1,
     {5, 1, 1},
     0},
    {"fused conv-relu-maxpool whose output two layers read",
     "conv2d:3:3:pad=1,relu,maxpool:2,save:p,conv2d:3:3:pad=1,add:p,avgpool:3,flatten,dense:3",
     3,
     {2, 6, 6},
     0},
    {"a GPT (token and position embeddings, causal attention, tied output)",
     "embedding:11:8,pos_embedding,repeat:2(residual(layernorm,attention:heads=2),"
     "residual(layernorm,dense:12,gelu:tanh,dense:8)),layernorm,dense:11:tie",
     1,
     {6, 1, 1},
     11},
    {"sequences: untied output, attention without biases, one head, flatten",
     "embedding:7:6,residual(attention:heads=1:bias=0),layernorm,dense:5,gelu,flatten,dense:3",
     1,
     {5, 1, 1},
     7},
};

/* L = sum(r * out): the blame arriving at the output is r. */
static double ref_loss_(const sp_model *m, const double *p, const double *x, const double *r,
                        double *y) {
    ref_graph_forward(m, p, x, B, true, y);
    double l = 0;
    for (size_t e = 0; e < (size_t)B * sp_model_output_size(m); ++e) l += r[e] * y[e];
    return l;
}

static double max_rel_(const float *a, const double *b, size_t n) {
    double d = 0, s = 1e-3;
    for (size_t i = 0; i < n; ++i) d = fmax(d, fabs(a[i] - b[i])), s = fmax(s, fabs(b[i]));
    return d / s;
}

/* Forward and backward with t threads; the output and gradients copied out. */
static void run_threads_(sp_model *m, int t, const float *xf, const float *rf, float *out,
                         float *grads) {
    omp_set_num_threads(t);
    const sp_step_ctx ctx = {.training = true, .seed = 3};
    const float *z = sp_model_forward(m, xf, B, &ctx);
    memcpy(out, z, (size_t)B * sp_model_output_size(m) * sizeof *out);
    sp_model_backward_fresh(m, rf, B, NULL, NULL);
    memcpy(grads, sp_model_grads(m), sp_model_num_params(m) * sizeof *grads);
}

static void check_case_(const graph_case *c) {
    sp_model *m = NULL;
    CHECK(sp_model_create(&m, c->spec, c->shape, c->rank, 8) == SP_OK, "%s: %s", c->name,
          sp_last_error());
    if (!m) return;
    sp_model_init_params(m, 5);
    const size_t np = sp_model_num_params(m), in = sp_model_input_size(m),
                 out = sp_model_output_size(m);
    float *pf = sp_model_params(m);
    for (size_t e = 0; e < np; ++e) pf[e] += 0.05f * (float)((int)(e % 7) - 3); /* off 0 and 1 */
    double *p = malloc(np * sizeof *p), *x = malloc(B * in * sizeof *x),
           *r = malloc(B * out * sizeof *r), *y = malloc(B * out * sizeof *y),
           *g = malloc(np * sizeof *g);
    float *xf = malloc(B * in * sizeof *xf), *rf = malloc(B * out * sizeof *rf);
    sp_test_fill_d(x, B * in, 11, -1, 1);
    for (size_t i = 0; c->vocab && i < B * in; ++i) /* token ids, some repeated in a sample */
        x[i] = floor((x[i] + 1) / 2 * c->vocab * 0.999);
    sp_test_fill_d(r, B * out, 12, -1, 1);
    for (size_t i = 0; i < B * in; ++i) xf[i] = (float)x[i], x[i] = xf[i];
    for (size_t i = 0; i < B * out; ++i) rf[i] = (float)r[i], r[i] = rf[i];
    for (size_t e = 0; e < np; ++e) p[e] = pf[e];

    /* training: the values, then the blame */
    const sp_step_ctx train = {.training = true, .seed = 3};
    const float *z = sp_model_forward(m, xf, B, &train);
    CHECK(sp_model_status(m) == SP_OK, "%s: forward: %s", c->name, sp_last_error());
    CHECK(ref_graph_forward(m, p, x, B, true, y), "%s: the reference knows every layer", c->name);
    double e = max_rel_(z, y, B * out);
    CHECK(e < 1e-5, "%s: training forward vs reference relerr %.3g", c->name, e);
    sp_model_zero_grads(m);
    sp_model_backward(m, rf, B, NULL, NULL);
    /* under valgrind (SHARDPROP_TEST_SMALL) every 5th parameter, else all of them */
    const size_t every = getenv("SHARDPROP_TEST_SMALL") ? 5 : 1;
    float *gm = malloc(np * sizeof *gm);
    size_t nc = 0;
    for (size_t k = 0; k < np; k += every) {
        const double s = p[k], h = 1e-5;
        p[k] = s + h;
        const double lp = ref_loss_(m, p, x, r, y);
        p[k] = s - h;
        const double lm = ref_loss_(m, p, x, r, y);
        p[k] = s;
        g[nc] = (lp - lm) / (2 * h);
        gm[nc++] = sp_model_grads(m)[k];
    }
    e = sp_test_relerr(gm, g, nc, 1e-3);
    free(gm);
    CHECK(e < 1e-4, "%s: %zu parameter gradients vs finite differences relerr %.3g", c->name, nc,
          e);

    /* backward_fresh overwrites every gradient with the same values */
    float *acc = malloc(np * sizeof *acc);
    memcpy(acc, sp_model_grads(m), np * sizeof *acc);
    for (size_t k = 0; k < np; ++k) sp_model_grads(m)[k] = NAN;
    sp_model_backward_fresh(m, rf, B, NULL, NULL);
    size_t differ = 0;
    for (size_t k = 0; k < np; ++k) differ += !(sp_model_grads(m)[k] == acc[k]);
    CHECK(differ == 0, "%s: backward_fresh: %zu gradients differ", c->name, differ);

    /* evaluation: the running statistics the training passes left */
    const sp_step_ctx eval = {.training = false};
    z = sp_model_forward(m, xf, B, &eval);
    ref_graph_forward(m, p, x, B, false, y);
    e = max_rel_(z, y, B * out);
    CHECK(e < 1e-5, "%s: evaluation forward vs reference relerr %.3g", c->name, e);

    /* threads own outputs: the same bits for 1 and 3 threads */
    float *o1 = malloc(B * out * sizeof *o1), *o3 = malloc(B * out * sizeof *o3);
    float *g1 = malloc(np * sizeof *g1), *g3 = malloc(np * sizeof *g3);
    const int threads = omp_get_max_threads();
    run_threads_(m, 1, xf, rf, o1, g1);
    run_threads_(m, 3, xf, rf, o3, g3);
    omp_set_num_threads(threads);
    CHECK(!memcmp(o1, o3, B * out * sizeof *o1) && !memcmp(g1, g3, np * sizeof *g1),
          "%s: 1 and 3 threads give the same bits", c->name);

    free(o1), free(o3), free(g1), free(g3), free(acc);
    free(p), free(x), free(r), free(y), free(g), free(xf), free(rf);
    sp_model_free(m);
}

/* The blame plan: slots and copies. */
static void test_plan(void) {
    const int64_t s[1] = {4};
    sp_model *m = NULL;
    CHECK(sp_model_create(&m, "dense:8,relu,dense:8,tanh,dense:3", s, 1, 4) == SP_OK, "chain");
    if (m) {
        CHECK(m->nslots == 2 && !m->need_scratch, "a straight stack: 2 slots (got %d), no adds",
              m->nslots);
        sp_model_free(m);
    }
    CHECK(sp_model_create(&m, "dense:8,residual(dense:8,relu,dense:8),dense:3", s, 1, 4) == SP_OK,
          "residual");
    if (m) {
        /* the join hands its blame to both branches; the branch's first layer adds into it */
        const sp_node *J = &m->nodes[4];
        CHECK(J->spec.kind == SP_LAYER_ADD && J->route.how[0] == SP_BLAME_ALIAS &&
                  J->route.how[1] == SP_BLAME_ALIAS,
              "the identity shortcut aliases the blame (no copy)");
        const sp_node *F0 = &m->nodes[1];
        CHECK(F0->route.how[0] == SP_BLAME_ADD && F0->route.to[0] == F0->route.from[0],
              "the branch adds its blame in place");
        CHECK(m->nslots <= 3, "3 slots at most (got %d)", m->nslots);
        sp_model_free(m);
    }
}

/* Causal: the logits at positions before t do not depend on the token at t (the same bits),
 * those at t and after do. */
static void test_causal(void) {
    const int64_t T = 6;
    sp_model *m = NULL;
    CHECK(sp_model_create(&m, cases_[7].spec, &T, 1, 2) == SP_OK, "gpt: %s", sp_last_error());
    if (!m) return;
    sp_model_init_params(m, 9);
    const float x[12] = {1, 4, 2, 9, 3, 0, 1, 4, 2, 5, 3, 0}; /* sample 1: token 3 changed */
    const sp_step_ctx ctx = {.training = false};
    const float *z = sp_model_forward(m, x, 2, &ctx);
    const size_t V = 11;
    CHECK(!memcmp(z, z + T * V, 3 * V * sizeof *z), "positions 0-2 do not see token 3");
    int after = 1;
    for (int t = 3; t < T; ++t) after &= memcmp(z + t * V, z + (T + t) * V, V * sizeof *z) != 0;
    CHECK(after, "positions 3-5 do");
    sp_model_free(m);
}

int main(void) {
    for (size_t i = 0; i < sizeof cases_ / sizeof cases_[0]; ++i) check_case_(&cases_[i]);
    test_plan();
    test_causal();
    return sp_test_summary("graph");
}
