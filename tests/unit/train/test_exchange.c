/*
 * The model's sums of per-sample terms over ranks (sp_model_sum_terms), through the two gradient
 * exchanges the trainer supplies (train/exchange.h), on 1 to 3 ranks: the float exchange sums
 * doubles over samples and ranks; --deterministic's sums exactly in fixed point, so its result
 * is the exact sum of the terms rounded to 2^-32, whatever the order, where a double sum would
 * lose the small terms. A model without an allsum sums this process's samples; a rank without
 * samples takes part; a NaN on one rank fails every rank. And the gradients the two exchanges
 * give for layers without a bias (whose b_off is the next layer's parameters): the same within
 * 1e-5 (float rounding against exact sums). And a step in micro-steps (gradient accumulation)
 * against one backward call: within 1e-5 (float), bit for bit (fixed), a rank idle in some.
 */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "comm/comm.h"
#include "model/model_impl.h"
#include "shardprop/model.h"
#include "testutil.h"
#include "train/exchange.h"

enum { N = 300 }; /* more than one chunk of the fixed-point sum */

/* Rank r's value i: every third value is 2^39 on rank 0 and -2^39 on rank 1 (the limit is 2^40), which cancel,
 * and small on the others (a double sum that adds a small one to 2^52 first drops it); the
 * rest small everywhere. */
static double value_(int r, int i) {
    if (i % 3 == 0 && r < 2) return r == 0 ? 0x1p39 : -0x1p39;
    return 0.001 * (i + 1) * (r + 1) + (i == 7 ? 0x1p-20 * r : 0.0);
}

/* The definition: each value as floor(v) and round(frac(v) 2^32), summed as integers. */
static double exact_sum_(int P, int i) {
    int64_t hi = 0, lo = 0;
    for (int r = 0; r < P; ++r) {
        const double v = value_(r, i), f = floor(v);
        hi += (int64_t)f;
        lo += (int64_t)nearbyint((v - f) * 0x1p32);
    }
    return (double)hi + (double)lo * 0x1p-32;
}

/* The global gradient of model `spec` on 3 samples per rank (their values keyed by rank) through
 * exchange x, into g (nparams). */
static void grads_(sp_model *m, sp_exchange *x, int me, int P, float *g) {
    enum { S = 3 };
    const size_t in = sp_model_input_size(m), out = sp_model_output_size(m);
    float xs[S * 64], dz[S * 8];
    double rows[S] = {0};
    for (size_t i = 0; i < S * in; ++i) xs[i] = (float)sin(0.7 * (double)(i + 31 * me));
    for (size_t i = 0; i < S * out; ++i) dz[i] = (float)cos(0.3 * (double)(i + 17 * me)) / (S * P);
    const sp_step_ctx ctx = {.training = true};
    sp_model_forward(m, xs, S, &ctx);
    const sp_local_batch lb = {
        .count = S, .global_count = S * P, .dz = dz, .rows = rows, .positions = 1};
    CHECK(x->backward(x, &lb) == SP_OK, "backward: %s", sp_last_error());
    memcpy(g, sp_model_grads(m), sp_model_num_params(m) * sizeof *g);
}

static void test_no_bias(sp_comm *c, int me, int P) {
    static const struct {
        const char *spec;
        int rank;
        int64_t shape[3];
    } cases[] = {{"dense:6:bias=0,tanh,dense:3", 1, {4, 1, 1}},
                 {"conv2d:2:3:bias=0,tanh,flatten,dense:3", 3, {1, 4, 4}}};
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; ++k) {
        sp_model *m = NULL;
        CHECK(sp_model_create(&m, cases[k].spec, cases[k].shape, cases[k].rank, 3) == SP_OK,
              "%s: %s", cases[k].spec, sp_last_error());
        if (!m) continue;
        sp_model_init_params(m, 3);
        const size_t n = sp_model_num_params(m);
        float gf[256], gx[256];
        sp_exchange *x = NULL;
        CHECK(n <= 256 && sp_exchange_float_create(&x, m, c, 0) == SP_OK, "float exchange");
        grads_(m, x, me, P, gf);
        sp_exchange_free(x);
        CHECK(sp_exchange_fixed_create(&x, m, c, 2, 0) == SP_OK, "fixed exchange");
        grads_(m, x, me, P, gx);
        sp_exchange_free(x);
        double d = 0, mx = 1e-3;
        for (size_t i = 0; i < n; ++i) d = fmax(d, fabs(gf[i] - gx[i])), mx = fmax(mx, fabs(gf[i]));
        CHECK(d / mx < 1e-5, "%s on %d ranks: the fixed-point gradient is the float one (%.3g)",
              cases[k].spec, P, d / mx);
        sp_model_free(m);
    }
}

/* The global gradient of 4 samples per rank (2 on the last of several ranks) fed to exchange x
 * in micro-steps of `per` samples (4: one call), into g; every rank makes the same number of
 * calls, with no samples in some. Returns the samples the exchange summed (fixed: exact). */
static double grads_micro_(sp_model *m, sp_exchange *x, int me, int P, int per, float *g) {
    enum { S = 4 };
    const size_t in = sp_model_input_size(m), out = sp_model_output_size(m);
    const int n = P > 1 && me == P - 1 ? 2 : S;
    const int64_t global = (int64_t)S * (P - 1) + (P > 1 ? 2 : S);
    float xs[S * 64], dz[S * 8];
    double rows[S] = {0};
    for (size_t i = 0; i < S * in; ++i) xs[i] = (float)sin(0.7 * (double)(i + 31 * me));
    for (size_t i = 0; i < S * out; ++i)
        dz[i] = (float)cos(0.3 * (double)(i + 17 * me)) / (float)global;
    const sp_step_ctx ctx = {.training = true};
    const int micros = (S + per - 1) / per;
    sp_local_batch lb = {0};
    for (int j = 0; j < micros; ++j) {
        const int b0 = j * per, k = n - b0 < per ? (n - b0 > 0 ? n - b0 : 0) : per;
        sp_model_forward(m, xs + (size_t)b0 * in, k, &ctx);
        lb = (sp_local_batch){.count = k,
                              .global_count = global,
                              .micro = j,
                              .micros = micros,
                              .dz = dz + (size_t)b0 * out,
                              .rows = rows + b0,
                              .positions = 1};
        CHECK(x->backward(x, &lb) == SP_OK, "micro-step %d of %d: %s", j, micros, sp_last_error());
    }
    memcpy(g, sp_model_grads(m), sp_model_num_params(m) * sizeof *g);
    sp_step_sums sums = {0};
    bool any_bad = false;
    lb.count = n;
    CHECK(x->sums(x, &lb, false, &sums, &any_bad) == SP_OK && !any_bad, "sums: %s",
          sp_last_error());
    return sums.samples;
}

/* Gradient accumulation (--accum-steps): micro-steps give the gradient of one call, within
 * 1e-5 through the float exchange and bit for bit through the fixed one when the micro-steps
 * hold whole micro-batches; the fixed exchange counts the samples of all of them. */
static void test_micro_steps(sp_comm *c, int me, int P) {
    static const struct {
        const char *spec;
        int rank;
        int64_t shape[3];
    } cases[] = {{"dense:6,tanh,dense:3", 1, {4, 1, 1}},
                 {"conv2d:2:3,tanh,flatten,dense:3", 3, {1, 4, 4}}};
    const int64_t global = 4 * (P - 1) + (P > 1 ? 2 : 4);
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; ++k) {
        sp_model *m = NULL;
        CHECK(sp_model_create(&m, cases[k].spec, cases[k].shape, cases[k].rank, 4) == SP_OK,
              "%s: %s", cases[k].spec, sp_last_error());
        if (!m) continue;
        sp_model_init_params(m, 5);
        const size_t n = sp_model_num_params(m);
        float one[256], acc[256];
        sp_exchange *x = NULL;
        CHECK(n <= 256 && sp_exchange_float_create(&x, m, c, 0) == SP_OK, "float exchange");
        grads_micro_(m, x, me, P, 4, one);
        for (int per = 1; per <= 2; ++per) {
            grads_micro_(m, x, me, P, per, acc);
            double d = 0, mx = 1e-3;
            for (size_t i = 0; i < n; ++i)
                d = fmax(d, fabs(acc[i] - one[i])), mx = fmax(mx, fabs(one[i]));
            CHECK(d / mx < 1e-5 && d > 0,
                  "%s on %d ranks, float: micro-steps of %d samples give the gradient of one "
                  "call (relerr %.3g, not 0: the sums really run in another order)",
                  cases[k].spec, P, per, d / mx);
        }
        sp_exchange_free(x);
        for (int micro = 1; micro <= 2; ++micro) {
            CHECK(sp_exchange_fixed_create(&x, m, c, micro, 0) == SP_OK, "fixed exchange");
            const double s1 = grads_micro_(m, x, me, P, 4, one);
            const double s2 = grads_micro_(m, x, me, P, micro, acc);
            CHECK(!memcmp(one, acc, n * sizeof *one) && s1 == (double)global && s2 == s1,
                  "%s on %d ranks, fixed, micro-batch %d: micro-steps of %d samples are bitwise "
                  "one call, and count %g of %lld samples",
                  cases[k].spec, P, micro, micro, s2, (long long)global);
            sp_exchange_free(x);
        }
        sp_model_free(m);
    }
}

int main(int argc, char **argv) {
    sp_comm *c = NULL;
    if (sp_comm_init(&c, &argc, &argv) != SP_OK) return 1;
    const int P = sp_comm_size(c), me = sp_comm_rank(c);
    const int64_t shape[1] = {4};
    sp_model *m = NULL;
    CHECK(sp_model_create(&m, "dense:3", shape, 1, 8) == SP_OK, "model: %s", sp_last_error());
    double v[N], t[3 * N];

    /* no allsum: this process's samples, in order */
    t[0] = 2.5, t[1] = 1.0;
    CHECK(sp_model_sum_terms(m, t, 2, 1, v) == SP_OK && v[0] == 3.5, "no allsum: %g", v[0]);

    /* the float exchange: integers sum exactly in any order; the last rank has no samples */
    sp_exchange *x = NULL;
    CHECK(sp_exchange_float_create(&x, m, c, 0) == SP_OK, "float exchange");
    sp_model_set_allsum(m, sp_exchange_allsum, x);
    const int count = P > 1 && me == P - 1 ? 0 : 2;
    for (int s = 0; s < count; ++s) t[3 * s] = me + 1, t[3 * s + 1] = 0.5, t[3 * s + 2] = -2.0 * me;
    const int full = P > 1 ? P - 1 : 1; /* ranks with samples */
    CHECK(sp_model_sum_terms(m, t, count, 3, v) == SP_OK && v[0] == full * (full + 1) &&
              v[1] == full && v[2] == -2.0 * full * (full - 1),
          "float sums %g %g %g on %d ranks", v[0], v[1], v[2], P);
    sp_exchange_free(x);

    /* the fixed-point exchange: the exact sum, bit for bit, on every rank */
    CHECK(sp_exchange_fixed_create(&x, m, c, 4, 0) == SP_OK, "fixed exchange");
    sp_model_set_allsum(m, sp_exchange_allsum, x);
    for (int i = 0; i < N; ++i) t[i] = value_(me, i);
    CHECK(sp_model_sum_terms(m, t, 1, N, v) == SP_OK, "fixed allsum: %s", sp_last_error());
    int bad = 0;
    for (int i = 0; i < N; ++i) bad += memcmp(&v[i], &(double){exact_sum_(P, i)}, sizeof v[i]) != 0;
    CHECK(bad == 0, "%d of %d fixed-point sums differ from the exact sum on rank %d", bad, N, me);
    /* where the large terms cancel, the small ones of the other ranks survive */
    const double want0 = P == 1 ? 0x1p39 : P == 2 ? 0.0 : 0.003;
    CHECK(fabs(v[0] - want0) < 1e-9, "sum 0 on %d ranks: %.17g, not %g", P, v[0], want0);
    /* a NaN on the last rank only: every rank fails */
    for (int i = 0; i < 4; ++i) t[i] = me == P - 1 && i == 2 ? NAN : 1.0;
    const sp_status st = sp_model_sum_terms(m, t, 1, 4, v);
    CHECK(st == SP_ERR_NUMERIC && strstr(sp_last_error(), "1 terms of a sum over ranks"),
          "NaN on rank %d: %d %s", P - 1, (int)st, sp_last_error());
    sp_exchange_free(x);

    sp_model_free(m);
    test_no_bias(c, me, P);
    test_micro_steps(c, me, P);
    const int rc = sp_test_summary("exchange");
    sp_comm_finalize(c);
    return rc;
}
