/*
 * The model: spec parsing (valid specs and the error messages of invalid ones), shape
 * inference and parameter layout against PyTorch's numbers, initialization, and a whole-model
 * gradient check (float backward through the real model vs central differences of a
 * double-precision composition of the reference layers; relative error < 1e-4).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "layers/layers.h"
#include "model/spec.h"
#include "ref_layers.h"
#include "shardprop/model.h"
#include "testutil.h"
#include "util/status.h"

static void spec_ok(const char *spec, int n_expected) {
    sp_layer_spec *L = NULL;
    int n = 0;
    sp_status st = sp_spec_parse(spec, &L, &n);
    CHECK(st == SP_OK && n == n_expected, "'%s' parses to %d layers (st %d, %s)", spec, n_expected,
          (int)st, sp_last_error());
    free(L);
}

/* An invalid spec is refused, and the message contains every fragment given. */
static void spec_bad(const char *spec, const char *frag1, const char *frag2) {
    sp_layer_spec *L = NULL;
    int n = 0;
    sp_status st = sp_spec_parse(spec, &L, &n);
    CHECK(st == SP_ERR_SPEC, "'%s' is refused", spec);
    const char *msg = sp_last_error();
    CHECK(strstr(msg, frag1) != NULL, "'%s': message '%s' mentions '%s'", spec, msg, frag1);
    if (frag2)
        CHECK(strstr(msg, frag2) != NULL, "'%s': message '%s' mentions '%s'", spec, msg, frag2);
    CHECK(L == NULL && n == 0, "no output on error");
}

static void test_spec(void) {
    spec_ok("dense:1024,relu,dense:10", 3);
    spec_ok("conv2d:32:3:pad=1,relu,maxpool:2,conv2d:64:3:pad=1,relu,maxpool:2,flatten,dense:128,"
            "relu,dropout:0.25,dense:10",
            11);
    spec_ok(" dense : 8 , tanh ,sigmoid,gelu,leaky_relu,leaky_relu:0.2,leaky_relu:slope=0.3", 7);
    spec_ok("conv2d:4:3:stride=2:pad=0,avgpool:2:stride=1,maxpool:kernel=2", 3);
    spec_ok("conv2d:out_channels=4:kernel=3", 1);

    sp_layer_spec *L = NULL;
    int n = 0;
    CHECK(sp_spec_parse("conv2d:16:5:pad=2:stride=3,maxpool:3,leaky_relu:0.2,dropout:0.5", &L,
                        &n) == SP_OK,
          "parse");
    if (L) {
        CHECK(L[0].kind == SP_LAYER_CONV2D && L[0].out_channels == 16 && L[0].kernel == 5 &&
                  L[0].pad == 2 && L[0].stride == 3,
              "conv2d args");
        CHECK(L[1].kind == SP_LAYER_MAXPOOL && L[1].kernel == 3 && L[1].stride == 3,
              "maxpool stride defaults to the kernel");
        CHECK(L[2].slope == 0.2f && fabsf(L[3].p - 0.5f) < 1e-7f, "slope and p");
        free(L);
    }

    spec_bad("", "empty", NULL);
    spec_bad("dense:10,,relu", "layer 1", "empty layer");
    spec_bad("dense:10,relu,", "layer 2", "empty layer");
    spec_bad("dense", "layer 0 'dense'", "missing units (expected dense:UNITS");
    spec_bad("dense:0", "units must be an integer >= 1", "dense:UNITS");
    spec_bad("dense:abc", "units must be an integer", "got 'abc'");
    spec_bad("relu,conv2d:32", "layer 1 'conv2d:32'",
             "missing kernel (expected conv2d:OUT_CHANNELS:KERNEL[:stride=S][:pad=P]");
    spec_bad("conv2d:8:3:pad=-1", "pad must be an integer >= 0", NULL);
    spec_bad("conv2d:8:3:padding=1", "unknown argument 'padding'", "conv2d:OUT_CHANNELS:KERNEL");
    spec_bad("conv2d:8:3:stride=1:stride=2", "given twice", NULL);
    spec_bad("conv2d:8:kernel=3:2", "positional argument after a key=value", NULL);
    spec_bad("dropout:1.5", "dropout probability must be in [0, 1)", NULL);
    spec_bad("dropout", "missing p", "dropout:P");
    spec_bad("relu:3", "too many arguments", "expected relu");
    spec_bad("dense:10,softmaxx", "layer 1 'softmaxx'", "unknown layer 'softmaxx'");
    spec_bad("leaky_relu:nan", "slope must be a number", NULL);
}

/* The graph grammar: blocks, names, paths, inputs, and the errors with their positions. */
static void test_graph_spec(void) {
    spec_ok("dense:8,residual(dense:8,relu,dense:8),relu", 6); /* 3 in f, the join, relu */
    spec_ok("dense:8,residual(dense:8 | dense:8),repeat:3(relu,dropout:0.1)", 10);
    spec_ok("save:in,dense:4,save:a,tanh,add:a,concat:in", 4); /* saves are aliases, no node */
    spec_ok("# a comment\n conv2d:4:3:bias=0 , # more\n batchnorm:eps=0.001:momentum=0.5,\n gap",
            3);
    sp_layer_spec *L = NULL;
    int n = 0;
    CHECK(sp_spec_parse("dense:8,save:a,residual(dense:8,relu | dense:8),add:a,repeat:2(relu)", &L,
                        &n) == SP_OK &&
              n == 8,
          "parse (%s)", sp_last_error());
    if (L && n == 8) {
        static const char *paths[8] = {"0", "2.f.0", "2.f.1", "2.g.0", "2", "3", "4.0.0", "4.1.0"};
        int bad = 0;
        for (int i = 0; i < 8; ++i) bad += strcmp(L[i].path, paths[i]) != 0;
        CHECK(bad == 0, "module paths: %s %s %s %s %s %s %s %s", L[0].path, L[1].path, L[2].path,
              L[3].path, L[4].path, L[5].path, L[6].path, L[7].path);
        CHECK(L[0].in[0] == SP_SPEC_INPUT && L[1].in[0] == 0 && L[3].in[0] == 0 &&
                  L[4].kind == SP_LAYER_ADD && L[4].in[0] == 2 && L[4].in[1] == 3,
              "the residual's branches read its input; the join adds f and g");
        CHECK(L[5].kind == SP_LAYER_ADD && L[5].in[0] == 4 && L[5].in[1] == 0,
              "add:a reads the value saved as a (layer 0's output)");
        CHECK(L[6].in[0] == 5 && L[7].in[0] == 6, "a repeat chains its copies");
        CHECK(L[0].bias && L[1].eps == 1e-5f && L[1].momentum == 0.1f, "defaults");
    }
    free(L);
    CHECK(sp_spec_same("dense:8,residual(relu)", " dense:8 , residual( relu ) # c"),
          "spacing and comments do not change a spec");
    CHECK(!sp_spec_same("dense:8,residual(relu)", "dense:8,relu"), "a residual is not a chain");

    spec_bad("dense:8,residual(relu", "expected ')' or '|'", "column 22 (near the end");
    spec_bad("dense:8)", "a ')' without its '('", "column 8");
    spec_bad("dense:8|relu", "a '|' outside a residual", NULL);
    spec_bad("dense:8,residual()", "layer 1.f.0", "empty layer");
    spec_bad("dense:8,resdual(relu)", "only residual(...) and repeat:N(...) take a block", NULL);
    spec_bad("repeat:0(relu)", "repeat count must be an integer in [1, 4096]", NULL);
    spec_bad("repeat:5000(relu)", "repeat count must be an integer in [1, 4096]", NULL);
    spec_bad("repeat:2000(relu,tanh,relu)", "more than 4096 layers", NULL);
    spec_bad("repeat:3", "'repeat' needs a block", NULL);
    spec_bad("dense:8,add:b", "no value saved as 'b'", "save:b");
    spec_bad("dense:8,save:1x", "'1x' is not a name", NULL);
    spec_bad("dense:10:0", "'bias' is given as bias=VALUE", "dense:UNITS[:bias=0]");
    spec_bad("dense:10:bias=2", "bias must be 0 or 1", NULL);
    spec_bad("upsample:scale=2", "'scale' is given by position only", NULL);
    spec_bad("batchnorm:eps=0", "eps must be in (0, 1)", NULL);
    spec_bad("dense:8,\n  relu,\n  residual(dense:8, softmaxx)", "layer 2.f.1 'softmaxx'",
             "line 3, column 21");
    spec_bad("residual(residual(residual(residual(residual(residual(residual(residual(residual("
             "residual(residual(residual(residual(residual(residual(residual(residual(relu)))))))))"
             "))))))))",
             "nested more than 8 deep", NULL);
}

/* The sequence layers: embeddings, attention as its three nodes, gelu:tanh, the tie flag. */
static void test_seq_spec(void) {
    spec_ok("embedding:256:64,pos_embedding,attention:heads=4,attention:2,gelu:tanh,"
            "gelu:approximate=none,dense:256:tie",
            11);
    sp_layer_spec *L = NULL;
    int n = 0;
    CHECK(sp_spec_parse("embedding:50:8,residual(layernorm,attention:heads=2:bias=0),gelu:tanh,"
                        "dense:50:tie=1",
                        &L, &n) == SP_OK &&
              n == 8,
          "parse (%s)", sp_last_error());
    if (L && n == 8) {
        static const char *paths[8] = {"0",          "1.f.0", "1.f.1.qkv", "1.f.1",
                                       "1.f.1.proj", "1",     "2",         "3"};
        int bad = 0;
        for (int i = 0; i < 8; ++i) bad += strcmp(L[i].path, paths[i]) != 0;
        CHECK(bad == 0, "paths: %s %s %s %s %s %s %s %s", L[0].path, L[1].path, L[2].path,
              L[3].path, L[4].path, L[5].path, L[6].path, L[7].path);
        CHECK(L[0].kind == SP_LAYER_EMBEDDING && L[0].vocab == 50 && L[0].units == 8,
              "embedding:VOCAB:DIM");
        CHECK(L[2].kind == SP_LAYER_DENSE && L[2].units_x == 3 && !L[2].bias &&
                  L[3].kind == SP_LAYER_ATTENTION && L[3].heads == 2 && L[3].in[0] == 2 &&
                  L[4].kind == SP_LAYER_DENSE && L[4].units_x == 1 && L[4].in[0] == 3 &&
                  L[5].in[0] == 4,
              "attention: qkv dense (3C, no bias with bias=0), the core, the projection, chained");
        CHECK(L[6].kind == SP_LAYER_GELU && L[6].tanh, "gelu:tanh");
        CHECK(L[7].tie && !L[7].bias, "dense:V:tie=1 has no bias");
    }
    free(L);
    CHECK(sp_spec_same("dense:8:tie", "dense:8:tie=1:bias=0"), "tie implies bias=0");
    CHECK(!sp_spec_same("gelu", "gelu:tanh"), "gelu:tanh is not gelu");
    spec_bad("embedding:10", "missing dim", "embedding:VOCAB:DIM");
    spec_bad("attention", "missing heads", "attention:heads=H");
    spec_bad("attention:heads=0", "heads must be an integer >= 1", NULL);
    spec_bad("gelu:fast", "approximate must be tanh or none, got 'fast'", "gelu[:tanh]");
    spec_bad("dense:8:tie:bias=1", "a tied projection has no bias", NULL);
    spec_bad("dense:8:tie=2", "tie must be 0 or 1", NULL);
    spec_bad("pos_embedding:4", "too many arguments", NULL);
}

/* Sequence shapes: dense and layer norm per position, the tie's checks, attention's width. */
static void test_seq_shapes(void) {
    const int64_t T = 6;
    sp_model *m = NULL;
    CHECK(sp_model_create(&m,
                          "embedding:20:8,pos_embedding,residual(layernorm,attention:heads=2),"
                          "layernorm,dense:12,gelu:tanh,flatten,dense:3",
                          &T, 1, 4) == SP_OK,
          "create: %s", sp_last_error());
    if (m) {
        int64_t s[3];
        CHECK(sp_model_layer_out_shape(m, 0, s) == 2 && s[0] == 6 && s[1] == 8,
              "embedding: (T) -> (T, 8)");
        CHECK(sp_model_layer_out_shape(m, 3, s) == 2 && s[0] == 6 && s[1] == 24, "qkv: (T, 3C)");
        CHECK(sp_model_layer_out_shape(m, 4, s) == 2 && s[1] == 8, "the attention core: (T, C)");
        size_t wo, bo;
        int wr;
        int64_t ws[4], bl;
        CHECK(sp_model_layer_params(m, 1, &wo, &wr, ws, &bo, &bl) && wr == 2 && ws[0] == 6 &&
                  ws[1] == 8 && bl == 0,
              "pos_embedding: weight (T, D), no bias");
        CHECK(sp_model_layer_params(m, 7, &wo, &wr, ws, &bo, &bl) && wr == 1 && ws[0] == 8 &&
                  bl == 8,
              "layernorm on (T, D): weight and bias (D)");
        CHECK(sp_model_layer_params(m, 8, &wo, &wr, ws, &bo, &bl) && ws[0] == 12 && ws[1] == 8,
              "dense on (T, D): weight (12, D), per position");
        CHECK(sp_model_output_size(m) == 3, "flatten (T * 12) then dense:3");
        /* 20*8 + 6*8 + 2*8 + (24*8+24) + (8*8+8) + 2*8 + (12*8+12) + (3*72+3) */
        CHECK(sp_model_num_params(m) == 160 + 48 + 16 + 216 + 72 + 16 + 108 + 219,
              "parameter count (%zu)", sp_model_num_params(m));
        sp_model_free(m);
    }
    m = NULL;
    CHECK(sp_model_create(&m, "embedding:20:8,layernorm,dense:20:tie", &T, 1, 4) == SP_OK,
          "tied: %s", sp_last_error());
    if (m) {
        size_t wo, bo;
        int wr;
        int64_t ws[4], bl;
        CHECK(!sp_model_layer_params(m, 2, &wo, &wr, ws, &bo, &bl) &&
                  sp_model_layer_tied(m, 2) == 0 && sp_model_layer_tied(m, 1) == -1,
              "the tied dense owns no parameters and names the embedding");
        CHECK(sp_model_num_params(m) == 160 + 16, "the weight is counted once");
        sp_model_free(m);
    }
    static const struct {
        const char *spec, *frag;
    } bad[] = {
        {"embedding:20:8,attention:heads=3", "3 heads do not divide the width 8"},
        {"dense:4,attention:heads=2", "attention needs a sequence (T, C) but gets (4,)"},
        {"embedding:20:8,dense:21:tie", "is tied to the embedding at layer 0 of 20 x 8"},
        {"dense:20:tie", "tie needs an embedding before it"},
        {"embedding:20:8,embedding:20:8", "needs token ids (T) but gets (6, 8)"},
        {"pos_embedding", "needs a sequence (T, D)"},
        {"embedding:20:8,batchnorm", "use layernorm"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; ++i) {
        m = NULL;
        const sp_status st = sp_model_create(&m, bad[i].spec, &T, 1, 4);
        CHECK(st == SP_ERR_SPEC && strstr(sp_last_error(), bad[i].frag),
              "'%s' is refused: '%s' (got '%s')", bad[i].spec, bad[i].frag, sp_last_error());
        sp_model_free(m);
    }
}

static sp_model *make(const char *spec, int rank, int64_t a, int64_t b, int64_t c, int max_batch) {
    const int64_t shape[3] = {a, b, c};
    sp_model *m = NULL;
    sp_status st = sp_model_create(&m, spec, shape, rank, max_batch);
    CHECK(st == SP_OK, "create '%s': %s", spec, sp_last_error());
    return m;
}

static void test_shapes(void) {
    /* parameter counts as torch's sum(p.numel()) for the same nn.Sequential */
    sp_model *m = make("conv2d:32:3:pad=1,relu,maxpool:2,conv2d:64:3:pad=1,relu,maxpool:2,flatten,"
                       "dense:128,relu,dense:10",
                       3, 1, 28, 28, 4);
    if (m) {
        CHECK(sp_model_num_params(m) == 320 + 18496 + 401536 + 1290, "cnn params %zu",
              sp_model_num_params(m));
        CHECK(sp_model_output_size(m) == 10, "cnn output");
        size_t w_off, b_off;
        int w_rank;
        int64_t w_shape[4], b_len;
        CHECK(sp_model_layer_params(m, 3, &w_off, &w_rank, w_shape, &b_off, &b_len) &&
                  w_rank == 4 && w_shape[0] == 64 && w_shape[1] == 32 && w_shape[2] == 3 &&
                  w_shape[3] == 3 && w_off == 320 && b_off == 320 + 18432 && b_len == 64,
              "layer 3 = conv2d (64, 32, 3, 3) at offset 320");
        CHECK(sp_model_layer_params(m, 7, &w_off, &w_rank, w_shape, &b_off, &b_len) &&
                  w_shape[0] == 128 && w_shape[1] == 3136,
              "layer 7 = dense (128, 3136)");
        CHECK(!sp_model_layer_params(m, 1, &w_off, &w_rank, w_shape, &b_off, &b_len),
              "relu has no parameters");
        CHECK(!strcmp(sp_model_layer_name(m, 2), "maxpool"), "layer name");
        sp_model_free(m);
    }
    m = make("dense:1024,relu,dense:1024,relu,dense:10", 1, 784, 1, 1, 8);
    if (m) {
        CHECK(sp_model_num_params(m) == 785 * 1024 + 1025 * 1024 + 1025 * 10, "mlp params");
        sp_model_free(m);
    }
    /* shape errors name the layer and the shapes */
    const int64_t img[3] = {1, 28, 28}, vec[1] = {10}, tiny[3] = {1, 2, 2};
    sp_model *bad = NULL;
    CHECK(sp_model_create(&bad, "dense:10", img, 3, 4) == SP_ERR_SPEC &&
              strstr(sp_last_error(), "layer 0 'dense:10'") &&
              strstr(sp_last_error(), "(1, 28, 28)") && strstr(sp_last_error(), "add 'flatten'"),
          "dense on an image: %s", sp_last_error());
    CHECK(sp_model_create(&bad, "conv2d:4:3", vec, 1, 4) == SP_ERR_SPEC &&
              strstr(sp_last_error(), "needs an image input"),
          "conv on a vector: %s", sp_last_error());
    CHECK(sp_model_create(&bad, "conv2d:4:5", tiny, 3, 4) == SP_ERR_SPEC &&
              strstr(sp_last_error(), "(1, 2, 2)"),
          "kernel larger than the input: %s", sp_last_error());
    CHECK(sp_model_create(&bad, "relu,maxpool:3", tiny, 3, 4) == SP_ERR_SPEC &&
              strstr(sp_last_error(), "layer 1 'maxpool:3'"),
          "pool larger than the input: %s", sp_last_error());
    CHECK(bad == NULL, "no model on error");
}

static void test_init(void) {
    sp_model *a = make("dense:300,relu,dense:50,tanh,dense:7", 1, 200, 1, 1, 2);
    sp_model *b = make("dense:300,relu,dense:50,tanh,dense:7", 1, 200, 1, 1, 16);
    if (!a || !b) return;
    sp_model_init_params(a, 123);
    sp_model_init_params(b, 123);
    const size_t n = sp_model_num_params(a);
    CHECK(memcmp(sp_model_params(a), sp_model_params(b), n * 4) == 0,
          "init depends only on seed and spec (not on the batch size)");
    sp_model_init_params(b, 124);
    CHECK(memcmp(sp_model_params(a), sp_model_params(b), n * 4) != 0, "another seed differs");
    /* layer 0 feeds relu: He uniform, bound sqrt(6/200); layer 2 feeds tanh: Xavier
     * sqrt(6/(300+50)); biases zero. Check max |w| and the variance bound^2/3. */
    const float *p = sp_model_params(a);
    const double bounds[2] = {sqrt(6.0 / 200), sqrt(6.0 / 350)};
    const size_t offs[2][2] = {{0, 60000}, {60300, 60300 + 15000}};
    for (int l = 0; l < 2; ++l) {
        double mx = 0, var = 0;
        for (size_t e = offs[l][0]; e < offs[l][1]; ++e) {
            mx = fmax(mx, fabs(p[e]));
            var += (double)p[e] * p[e];
        }
        var /= (double)(offs[l][1] - offs[l][0]);
        const double want = bounds[l] * bounds[l] / 3;
        CHECK(mx <= bounds[l] && mx > 0.98 * bounds[l], "layer %d max |w| %.4f bound %.4f", l, mx,
              bounds[l]);
        CHECK(fabs(var / want - 1) < 0.05, "layer %d variance %.5f vs %.5f", l, var, want);
    }
    double bsum = 0;
    for (size_t e = 60000; e < 60300; ++e) bsum += fabs(p[e]);
    CHECK(bsum == 0, "biases start at zero");
    sp_model_free(a);
    sp_model_free(b);
}

/* ---- whole-model gradient check ---- */
typedef struct {
    double *p; /* parameters, double copy of the slab */
    const double *x;
    const int32_t *lab;
    int B;
} net_ctx;

/* conv2d:3:3:pad=1,relu,maxpool:2,conv2d:2:2:stride=2,tanh,flatten,dense:5,gelu,dropout:0.5,dense:3
 * on (2, 6, 6), composed from the reference layers (dropout is the identity in evaluation). */
static double cnn_loss(net_ctx *c) {
    const int B = c->B;
    double a1[64 * 3 * 36], a2[64 * 3 * 9], a3[64 * 2], a4[64 * 5], a5[64 * 3];
    const double *p = c->p;
    ref_conv2d(a1, c->x, p, p + 54, B, 2, 6, 6, 3, 3, 1, 1);
    ref_act(a1, a1, B * 3 * 36, 0, 0);
    ref_maxpool(a2, a1, B, 3, 6, 6, 2, 2);
    ref_conv2d(a3, a2, p + 57, p + 81, B, 3, 3, 3, 2, 2, 2, 0);
    ref_act(a3, a3, B * 2, 2, 0);
    ref_dense(a4, a3, p + 83, p + 93, B, 2, 5);
    ref_act(a4, a4, B * 5, 4, 0);
    ref_dense(a5, a4, p + 98, p + 113, B, 5, 3);
    return ref_xent(a5, c->lab, B, 3);
}

/* dense:7,leaky_relu:0.1,dense:4,sigmoid,dense:3 on (5) */
static double mlp_loss(net_ctx *c) {
    const int B = c->B;
    double a1[64 * 7], a2[64 * 4], a3[64 * 3];
    const double *p = c->p;
    ref_dense(a1, c->x, p, p + 35, B, 5, 7);
    ref_act(a1, a1, B * 7, 1, 0.1);
    ref_dense(a2, a1, p + 42, p + 70, B, 7, 4);
    ref_act(a2, a2, B * 4, 3, 0);
    ref_dense(a3, a2, p + 74, p + 86, B, 4, 3);
    return ref_xent(a3, c->lab, B, 3);
}

static void test_model_grad(const char *spec, int rank, const int64_t *shape, size_t nparams,
                            double (*loss)(net_ctx *)) {
    const int B = 5;
    sp_model *m = NULL;
    CHECK(sp_model_create(&m, spec, shape, rank, 8) == SP_OK, "create %s: %s", spec,
          sp_last_error());
    if (!m) return;
    CHECK(sp_model_num_params(m) == nparams, "%s: %zu params", spec, sp_model_num_params(m));
    sp_model_init_params(m, 9);
    /* non-zero biases, so that their gradients are exercised away from zero */
    float *pf = sp_model_params(m);
    for (size_t e = 0; e < nparams; ++e) pf[e] += 0.05f * (float)((int)(e % 7) - 3);
    const size_t in = sp_model_input_size(m);
    double *x = calloc((size_t)B * in, sizeof(double)), *p = calloc(nparams, sizeof(double));
    float *xf = calloc((size_t)B * in, sizeof(float));
    sp_test_fill_d(x, (size_t)B * in, 77, -1, 1);
    for (size_t i = 0; i < (size_t)B * in; ++i) xf[i] = (float)x[i], x[i] = xf[i];
    for (size_t e = 0; e < nparams; ++e) p[e] = pf[e];
    int32_t lab[5] = {0, 2, 1, 1, 2};
    net_ctx c = {p, x, lab, B};

    sp_step_ctx ctx = {.training = false};
    const float *z = sp_model_forward(m, xf, B, &ctx);
    float dz[5 * 3];
    double rows[5], lsum;
    int64_t correct;
    sp_xent_loss(&lsum, &correct, dz, rows, z, lab, B, 3, 1.0f / B);
    const double lref = loss(&c);
    CHECK(fabs(lsum / B - lref) < 1e-5 * fmax(1, fabs(lref)), "%s: loss %.8g vs reference %.8g",
          spec, lsum / B, lref);
    sp_model_zero_grads(m);
    sp_model_backward(m, dz, B, NULL, NULL);
    double *g = calloc(nparams, sizeof(double));
    for (size_t e = 0; e < nparams; ++e) {
        const double s = p[e];
        p[e] = s + 1e-5;
        const double lp = loss(&c);
        p[e] = s - 1e-5;
        const double lm = loss(&c);
        p[e] = s;
        g[e] = (lp - lm) / 2e-5;
    }
    const double e = sp_test_relerr(sp_model_grads(m), g, nparams, 1e-3);
    CHECK(e < 1e-4, "%s: parameter gradients vs finite differences relerr %.3g", spec, e);
    /* the overwriting backward (what training uses) on a slab full of NaN: the same values */
    float *acc = malloc(nparams * sizeof(float));
    memcpy(acc, sp_model_grads(m), nparams * sizeof(float));
    for (size_t i = 0; i < nparams; ++i) sp_model_grads(m)[i] = NAN;
    sp_model_backward_fresh(m, dz, B, NULL, NULL);
    size_t differ = 0;
    for (size_t i = 0; i < nparams; ++i) differ += !(sp_model_grads(m)[i] == acc[i]);
    CHECK(differ == 0, "%s: sp_model_backward_fresh overwrites every gradient (%zu differ)", spec,
          differ);
    for (size_t i = 0; i < nparams; ++i) sp_model_grads(m)[i] = NAN;
    sp_model_backward_fresh(m, dz, 0, NULL, NULL);
    differ = 0;
    for (size_t i = 0; i < nparams; ++i) differ += sp_model_grads(m)[i] != 0.0f;
    CHECK(differ == 0, "%s: sp_model_backward_fresh with no samples zeroes the gradients", spec);
    free(acc);
    free(x), free(p), free(xf), free(g);
    sp_model_free(m);
}

static size_t ready_calls[16];
static int nready;
static void on_ready(void *user, size_t begin) {
    (void)user;
    if (nready < 16) ready_calls[nready++] = begin;
}

static void test_ready_order(void) {
    sp_model *m = make("dense:6,relu,dense:4,relu,dense:3", 1, 5, 1, 1, 4);
    if (!m) return;
    sp_model_init_params(m, 1);
    float x[4 * 5] = {0}, d[4 * 3] = {0};
    sp_test_fill(x, 20, 3, -1, 1);
    sp_test_fill(d, 12, 4, -1, 1);
    sp_step_ctx ctx = {.training = true, .seed = 1};
    sp_model_forward(m, x, 4, &ctx);
    nready = 0;
    sp_model_backward(m, d, 4, on_ready, NULL);
    CHECK(nready == 3 && ready_calls[0] == 36 + 28 && ready_calls[1] == 36 && ready_calls[2] == 0,
          "grad-ready callbacks last layer first: %d calls, %zu %zu %zu", nready, ready_calls[0],
          ready_calls[1], ready_calls[2]);
    sp_model_free(m);
}

int main(void) {
    test_spec();
    test_graph_spec();
    test_seq_spec();
    test_seq_shapes();
    test_shapes();
    test_init();
    const int64_t img[3] = {2, 6, 6}, vec[1] = {5};
    test_model_grad("conv2d:3:3:pad=1,relu,maxpool:2,conv2d:2:2:stride=2,tanh,flatten,dense:5,"
                    "gelu,dropout:0.5,dense:3",
                    3, img, 116, cnn_loss);
    test_model_grad("dense:7,leaky_relu:0.1,dense:4,sigmoid,dense:3", 1, vec, 89, mlp_loss);
    test_ready_order();
    return sp_test_summary("model");
}
