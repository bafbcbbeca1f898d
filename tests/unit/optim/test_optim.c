/* Optimizers, schedules and clipping (src/optim/).
 *
 * Expected values are written out here in double, independently of the implementation (paper
 * formulas, not the implementation's operation order), and compared at 1e-6 relative (float32
 * rounding over a few steps). Thread invariance is checked bitwise (memcmp).
 *
 * `test_optim --dump key=value...` prints a trajectory for tests/torch/optim_vs_torch.py
 * instead. */
#include <math.h>
#include <omp.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "optim/clip.h"
#include "optim/optim.h"
#include "optim/schedule.h"
#include "testutil.h"
#include "util/status.h"

#define TOL 1e-6

static bool close_(double a, double b, double rel) {
    return fabs(a - b) <= rel * fmax(fabs(b), 1e-30);
}

/* Run `steps` updates with a constant lr, gradient of step k = grads + k * n. */
static void run_(const sp_opt_config *cfg, float *p, const float *grads, size_t n, int steps,
                 float lr) {
    sp_optimizer *opt = NULL;
    sp_status st = sp_optim_create(&opt, cfg, n);
    CHECK(st == SP_OK, "create: %s", sp_last_error());
    if (st != SP_OK) return;
    for (int k = 0; k < steps; ++k) sp_optim_step(opt, p, grads + (size_t)k * n, lr);
    CHECK(sp_optim_step_count(opt) == steps, "count %lld", (long long)sp_optim_step_count(opt));
    sp_optim_free(opt);
}

/* ---- literal hand values ----------------------------------------------------------------- */

static void test_sgd_literal(void) {
    /* p = (1, -2), g = (0.5, 0.25) twice, lr 0.1, momentum 0.9.
     * step 1: buf = g            -> p = (1 - 0.05, -2 - 0.025)       = (0.95, -2.025)
     * step 2: buf = 0.9 g + g    -> p = (0.95 - 0.095, -2.025 - 0.0475) = (0.855, -2.0725) */
    sp_opt_config c = sp_opt_config_defaults(SP_OPT_SGD);
    c.momentum = 0.9f;
    float g[4] = {0.5f, 0.25f, 0.5f, 0.25f};
    float p[2] = {1.0f, -2.0f};
    run_(&c, p, g, 2, 2, 0.1f);
    CHECK(close_(p[0], 0.855, TOL) && close_(p[1], -2.0725, TOL), "sgd momentum %.9g %.9g",
          (double)p[0], (double)p[1]);

    /* Nesterov: step 1: buf = 0.5, d = 0.5 + 0.9*0.5 = 0.95   -> p = 1 - 0.095 = 0.905
     *           step 2: buf = 0.95, d = 0.5 + 0.9*0.95 = 1.355 -> p = 0.905 - 0.1355 = 0.7695 */
    c.nesterov = true;
    p[0] = 1.0f, p[1] = -2.0f;
    run_(&c, p, g, 2, 2, 0.1f);
    CHECK(close_(p[0], 0.7695, TOL), "sgd nesterov %.9g", (double)p[0]);

    /* Weight decay 0.1, no momentum: step 1: d = 0.5 + 0.1*1 = 0.6 -> p = 0.94
     *                                step 2: d = 0.5 + 0.094 = 0.594 -> p = 0.94 - 0.0594 = 0.8806 */
    c = sp_opt_config_defaults(SP_OPT_SGD);
    c.weight_decay = 0.1f;
    p[0] = 1.0f, p[1] = -2.0f;
    run_(&c, p, g, 2, 2, 0.1f);
    CHECK(close_(p[0], 0.8806, TOL), "sgd wd %.9g", (double)p[0]);
}

static void test_adam_literal(void) {
    /* First Adam step: m = 0.1 g, v = 0.001 g^2, bias corrections 0.1 and 0.001, so
     * m_hat = g, v_hat = g^2 and p -= lr * g / (|g| + eps). p = 1, g = 0.5, lr = 0.01:
     *   Adam:  p = 1 - 0.01 * 0.5 / (0.5 + 1e-8)                  = 0.9900000002
     *   Adam, wd 0.1 (L2): d = 0.5 + 0.1 = 0.6, p = 1 - 0.01 * 0.6 / (0.6 + 1e-8) = 0.99000000017
     *   AdamW, wd 0.1:     p = 1 * (1 - 0.01*0.1) = 0.999, then - 0.01 * 0.5/(0.5+1e-8) = 0.9890000002
     * Second step with the same g (no decay): m = 0.19 g, v = 0.001999 g^2, bc1 = 0.19,
     *   bc2 = 0.001999: p = 0.9900000002 - 0.01 * 0.5 / (0.5 + 1e-8) = 0.9800000004 */
    float g[2] = {0.5f, 0.5f};
    sp_opt_config c = sp_opt_config_defaults(SP_OPT_ADAM);
    float p = 1.0f;
    run_(&c, &p, g, 1, 1, 0.01f);
    CHECK(close_(p, 0.9900000002, TOL), "adam %.9g", (double)p);
    p = 1.0f;
    run_(&c, &p, g, 1, 2, 0.01f);
    CHECK(close_(p, 0.9800000004, TOL), "adam 2 steps %.9g", (double)p);
    c.weight_decay = 0.1f;
    p = 1.0f;
    run_(&c, &p, g, 1, 1, 0.01f);
    CHECK(close_(p, 0.99000000017, TOL), "adam wd %.9g", (double)p);
    c.kind = SP_OPT_ADAMW;
    p = 1.0f;
    run_(&c, &p, g, 1, 1, 0.01f);
    CHECK(close_(p, 0.9890000002, TOL), "adamw wd %.9g", (double)p);
}

/* ---- double-precision references, straight from the papers / torch docs ------------------- */

enum { RN = 6, RSTEPS = 5 };

static void ref_sgd_(const sp_opt_config *c, double *p, const float *grads, double lr) {
    double buf[RN] = {0};
    double mu = c->momentum, wd = c->weight_decay;
    for (int k = 0; k < RSTEPS; ++k) {
        for (int i = 0; i < RN; ++i) {
            double g = grads[k * RN + i] + wd * p[i];
            if (mu > 0) {
                buf[i] = k == 0 ? g : mu * buf[i] + g;
                g = c->nesterov ? g + mu * buf[i] : buf[i];
            }
            p[i] -= lr * g;
        }
    }
}

static void ref_adam_(const sp_opt_config *c, double *p, const float *grads, double lr) {
    double m[RN] = {0}, v[RN] = {0};
    double b1 = c->beta1, b2 = c->beta2, eps = c->eps, wd = c->weight_decay;
    bool decoupled = c->kind == SP_OPT_ADAMW;
    for (int k = 0; k < RSTEPS; ++k) {
        int t = k + 1;
        for (int i = 0; i < RN; ++i) {
            double g = grads[k * RN + i];
            if (decoupled)
                p[i] -= lr * wd * p[i];
            else
                g += wd * p[i];
            m[i] = b1 * m[i] + (1 - b1) * g;
            v[i] = b2 * v[i] + (1 - b2) * g * g;
            double mhat = m[i] / (1 - pow(b1, t)), vhat = v[i] / (1 - pow(b2, t));
            p[i] -= lr * mhat / (sqrt(vhat) + eps);
        }
    }
}

static void check_vs_ref_(const char *what, const sp_opt_config *c, float lr) {
    float grads[RSTEPS * RN], p[RN];
    double ref[RN];
    sp_test_fill(grads, RSTEPS * RN, 11, -1.0f, 1.0f);
    sp_test_fill(p, RN, 12, -2.0f, 2.0f);
    for (int i = 0; i < RN; ++i) ref[i] = p[i];
    run_(c, p, grads, RN, RSTEPS, lr);
    if (c->kind == SP_OPT_SGD)
        ref_sgd_(c, ref, grads, lr);
    else
        ref_adam_(c, ref, grads, lr);
    double err = sp_test_relerr(p, ref, RN, 1e-3);
    CHECK(err <= TOL, "%s: relerr %g vs double reference", what, err);
}

static void test_vs_reference(void) {
    sp_opt_config c = sp_opt_config_defaults(SP_OPT_SGD);
    check_vs_ref_("sgd", &c, 0.1f);
    c.momentum = 0.9f;
    check_vs_ref_("sgd momentum", &c, 0.1f);
    c.weight_decay = 0.05f;
    check_vs_ref_("sgd momentum wd", &c, 0.1f);
    c.nesterov = true;
    check_vs_ref_("sgd nesterov wd", &c, 0.1f);

    c = sp_opt_config_defaults(SP_OPT_ADAM);
    check_vs_ref_("adam", &c, 0.01f);
    c.weight_decay = 0.1f;
    c.beta1 = 0.8f, c.beta2 = 0.99f, c.eps = 1e-6f;
    check_vs_ref_("adam wd", &c, 0.01f);
    c.kind = SP_OPT_ADAMW;
    check_vs_ref_("adamw wd", &c, 0.01f);

    /* Decoupled decay is not L2: the same config gives different parameters. */
    float g[RSTEPS * RN], pa[RN], pw[RN];
    sp_test_fill(g, RSTEPS * RN, 11, -1.0f, 1.0f);
    sp_test_fill(pa, RN, 12, -2.0f, 2.0f);
    memcpy(pw, pa, sizeof pa);
    c.kind = SP_OPT_ADAM;
    run_(&c, pa, g, RN, RSTEPS, 0.01f);
    c.kind = SP_OPT_ADAMW;
    run_(&c, pw, g, RN, RSTEPS, 0.01f);
    double diff = 0;
    for (int i = 0; i < RN; ++i) diff = fmax(diff, fabs((double)pa[i] - pw[i]));
    CHECK(diff > 1e-4, "adam vs adamw differ by only %g", diff);
}

/* ---- states, step count, resume ---------------------------------------------------------- */

static void test_states_and_resume(void) {
    sp_optimizer *opt = NULL;
    sp_opt_config c = sp_opt_config_defaults(SP_OPT_SGD);
    CHECK(sp_optim_create(&opt, &c, 10) == SP_OK, "create");
    CHECK(sp_optim_num_states(opt) == 0, "plain sgd has no state");
    CHECK(sp_optim_state(opt, 0) == NULL, "no state 0");
    sp_optim_free(opt);
    c.momentum = 0.5f;
    CHECK(sp_optim_create(&opt, &c, 10) == SP_OK, "create");
    CHECK(sp_optim_num_states(opt) == 1, "sgd momentum: 1 state");
    CHECK(!strcmp(sp_optim_state_name(opt, 0), "momentum_buffer"), "name");
    CHECK(sp_optim_config(opt)->momentum == 0.5f, "config copy");
    CHECK(sp_optim_size(opt) == 10, "size");
    sp_optim_free(opt);
    sp_optim_free(NULL);

    const size_t n = 100;
    float g[5 * 100], p1[100], p2[100];
    sp_test_fill(g, 5 * n, 21, -1.0f, 1.0f);
    c = sp_opt_config_defaults(SP_OPT_ADAMW);
    c.weight_decay = 0.01f;
    sp_optimizer *a = NULL, *b = NULL, *r = NULL;
    CHECK(sp_optim_create(&a, &c, n) == SP_OK, "create");
    CHECK(sp_optim_num_states(a) == 2, "adamw: 2 states");
    CHECK(!strcmp(sp_optim_state_name(a, 0), "exp_avg") &&
              !strcmp(sp_optim_state_name(a, 1), "exp_avg_sq"),
          "adam names");
    CHECK(sp_optim_state(a, 1) == sp_optim_state(a, 0) + n, "one contiguous slab");
    CHECK(sp_optim_state_name(a, 2) == NULL, "out of range");
    /* 5 steps straight through vs 3 steps, checkpoint (states + count) into a fresh one, 2 more. */
    sp_test_fill(p1, n, 22, -1.0f, 1.0f);
    memcpy(p2, p1, sizeof p1);
    for (int k = 0; k < 5; ++k) sp_optim_step(a, p1, g + k * n, 1e-3f);
    CHECK(sp_optim_create(&b, &c, n) == SP_OK, "create");
    CHECK(sp_optim_create(&r, &c, n) == SP_OK, "create");
    for (int k = 0; k < 3; ++k) sp_optim_step(b, p2, g + k * n, 1e-3f);
    for (int s = 0; s < 2; ++s) memcpy(sp_optim_state(r, s), sp_optim_state(b, s), n * 4);
    sp_optim_set_step_count(r, sp_optim_step_count(b));
    for (int k = 3; k < 5; ++k) sp_optim_step(r, p2, g + k * n, 1e-3f);
    CHECK(sp_optim_step_count(r) == 5, "count %lld", (long long)sp_optim_step_count(r));
    CHECK(!memcmp(p1, p2, sizeof p1), "resumed params identical");
    CHECK(!memcmp(sp_optim_state(a, 0), sp_optim_state(r, 0), 2 * n * 4), "resumed states");
    sp_optim_free(a);
    sp_optim_free(b);
    sp_optim_free(r);
}

/* ---- configuration errors ---------------------------------------------------------------- */

static void expect_opt_error_(const sp_opt_config *c, const char *word) {
    sp_error_clear();
    sp_optimizer *opt = (sp_optimizer *)1;
    sp_status st = sp_optim_create(&opt, c, 10);
    CHECK(st == SP_ERR_ARG && opt == NULL, "bad config accepted (%s)", word);
    CHECK(strstr(sp_last_error(), word) != NULL, "message '%s' lacks '%s'", sp_last_error(), word);
}

static void test_opt_config_errors(void) {
    sp_opt_kind k;
    CHECK(sp_opt_kind_parse("adamw", &k) == SP_OK && k == SP_OPT_ADAMW, "parse adamw");
    CHECK(sp_opt_kind_parse("sgd", &k) == SP_OK && k == SP_OPT_SGD, "parse sgd");
    CHECK(sp_opt_kind_parse("adam", &k) == SP_OK && k == SP_OPT_ADAM, "parse adam");
    CHECK(!strcmp(sp_opt_kind_name(SP_OPT_ADAMW), "adamw"), "name");
    CHECK(sp_opt_kind_parse("rmsprop", &k) == SP_ERR_ARG, "parse rmsprop");
    CHECK(strstr(sp_last_error(), "'rmsprop'") && strstr(sp_last_error(), "adamw"), "msg '%s'",
          sp_last_error());

    sp_opt_config c = sp_opt_config_defaults(SP_OPT_SGD);
    CHECK(sp_opt_config_check(&c) == SP_OK, "defaults ok");
    c.momentum = 1.0f;
    expect_opt_error_(&c, "momentum");
    c.momentum = NAN;
    expect_opt_error_(&c, "momentum");
    c.momentum = 0.0f;
    c.nesterov = true;
    expect_opt_error_(&c, "nesterov");
    c = sp_opt_config_defaults(SP_OPT_ADAM);
    CHECK(sp_opt_config_check(&c) == SP_OK, "defaults ok");
    c.weight_decay = -0.1f;
    expect_opt_error_(&c, "weight_decay");
    c = sp_opt_config_defaults(SP_OPT_ADAMW);
    c.beta1 = 1.0f;
    expect_opt_error_(&c, "beta1");
    c = sp_opt_config_defaults(SP_OPT_ADAM);
    c.beta2 = -0.5f;
    expect_opt_error_(&c, "beta2");
    c = sp_opt_config_defaults(SP_OPT_ADAM);
    c.eps = 0.0f;
    expect_opt_error_(&c, "eps");
    c = sp_opt_config_defaults(SP_OPT_ADAM);
    sp_optimizer *opt = NULL;
    CHECK(sp_optim_create(&opt, &c, 0) == SP_ERR_ARG && opt == NULL, "n = 0 rejected");
}

/* ---- thread invariance ------------------------------------------------------------------- */

static void test_thread_invariance(void) {
    const size_t n = 1000007;
    float *g = malloc(3 * n * sizeof(float));
    float *p0 = malloc(n * sizeof(float)), *p = malloc(n * sizeof(float));
    float *ref = malloc(3 * n * sizeof(float)); /* params, then up to 2 states */
    if (!g || !p0 || !p || !ref) {
        CHECK(0, "out of memory");
        goto done;
    }
    sp_test_fill(g, 3 * n, 31, -1.0f, 1.0f);
    sp_test_fill(p0, n, 32, -1.0f, 1.0f);
    sp_opt_config cfgs[3] = {sp_opt_config_defaults(SP_OPT_SGD),
                             sp_opt_config_defaults(SP_OPT_ADAM),
                             sp_opt_config_defaults(SP_OPT_ADAMW)};
    cfgs[0].momentum = 0.9f, cfgs[0].nesterov = true;
    for (int j = 0; j < 3; ++j) cfgs[j].weight_decay = 0.01f;
    for (int j = 0; j < 3; ++j) {
        for (int threads = 1; threads <= 3; ++threads) {
            omp_set_num_threads(threads);
            sp_optimizer *opt = NULL;
            if (sp_optim_create(&opt, &cfgs[j], n) != SP_OK) {
                CHECK(0, "create: %s", sp_last_error());
                break;
            }
            memcpy(p, p0, n * sizeof(float));
            for (int k = 0; k < 3; ++k) sp_optim_step(opt, p, g + k * n, 0.01f);
            int ns = sp_optim_num_states(opt);
            if (threads == 1) {
                memcpy(ref, p, n * sizeof(float));
                for (int s = 0; s < ns; ++s)
                    memcpy(ref + (s + 1) * n, sp_optim_state(opt, s), n * sizeof(float));
            } else {
                CHECK(!memcmp(ref, p, n * sizeof(float)), "%s: params differ with %d threads",
                      sp_opt_kind_name(cfgs[j].kind), threads);
                for (int s = 0; s < ns; ++s)
                    CHECK(!memcmp(ref + (s + 1) * n, sp_optim_state(opt, s), n * sizeof(float)),
                          "%s: state %d differs with %d threads", sp_opt_kind_name(cfgs[j].kind), s,
                          threads);
            }
            sp_optim_free(opt);
        }
    }
    /* The norm, and clipping. */
    double norm1 = 0;
    for (int threads = 1; threads <= 3; ++threads) {
        omp_set_num_threads(threads);
        double norm = sp_grad_norm(g, n);
        if (threads == 1)
            norm1 = norm;
        else
            CHECK(!memcmp(&norm, &norm1, sizeof norm), "norm differs with %d threads: %.17g %.17g",
                  threads, norm, norm1);
        memcpy(p, g, n * sizeof(float));
        sp_clip_grad_norm(p, n, 1.0);
        if (threads == 1)
            memcpy(ref, p, n * sizeof(float));
        else
            CHECK(!memcmp(ref, p, n * sizeof(float)), "clipped grads differ with %d threads",
                  threads);
    }
    omp_set_num_threads(1);
    long double s = 0; /* an independent, more precise reference */
    for (size_t i = 0; i < n; ++i) s += (long double)g[i] * g[i];
    CHECK(close_(norm1, (double)sqrtl(s), 1e-12), "norm %.17g vs %.17g", norm1, (double)sqrtl(s));
done:
    free(g);
    free(p0);
    free(p);
    free(ref);
}

/* ---- clipping ---------------------------------------------------------------------------- */

static void test_clip(void) {
    float g[2] = {3.0f, 4.0f};
    CHECK(sp_grad_norm(g, 2) == 5.0, "norm 5");
    CHECK(sp_grad_norm(g, 0) == 0.0, "empty norm 0");
    double r = sp_clip_grad_norm(g, 2, 10.0);
    CHECK(r == 5.0 && g[0] == 3.0f && g[1] == 4.0f, "below max: untouched");
    r = sp_clip_grad_norm(g, 2, 5.0);
    CHECK(r == 5.0 && g[0] == 3.0f && g[1] == 4.0f, "equal to max: untouched");
    r = sp_clip_grad_norm(g, 2, 1.0);
    /* factor 1 / (5 + 1e-6) = 0.19999996000000800; g = (0.59999988, 0.79999984) */
    CHECK(r == 5.0, "returns the norm before clipping: %g", r);
    CHECK(close_(g[0], 0.599999880000024, TOL) && close_(g[1], 0.799999840000032, TOL),
          "clipped %.9g %.9g", (double)g[0], (double)g[1]);
    CHECK(close_(sp_grad_norm(g, 2), 1.0, 1e-6), "norm after clipping");

    /* Lengths around the chunk size vs a long double reference. */
    size_t lens[] = {1, 4095, 4096, 4097, 3 * 4096 + 5};
    for (size_t j = 0; j < sizeof lens / sizeof *lens; ++j) {
        size_t n = lens[j];
        float *x = malloc(n * sizeof(float));
        if (!x) continue;
        sp_test_fill(x, n, 40 + j, -3.0f, 3.0f);
        long double s = 0;
        for (size_t i = 0; i < n; ++i) s += (long double)x[i] * x[i];
        double norm = sp_grad_norm(x, n);
        CHECK(close_(norm, (double)sqrtl(s), 1e-13), "n %zu: %.17g vs %.17g", n, norm,
              (double)sqrtl(s));
        free(x);
    }
    float bad[2] = {NAN, 1.0f};
    r = sp_clip_grad_norm(bad, 2, 1.0);
    CHECK(isnan(r) && bad[1] == 1.0f, "NaN norm returned, gradient untouched");
}

/* ---- schedules --------------------------------------------------------------------------- */

static void expect_sched_error_(const sp_schedule *s, const char *word) {
    sp_error_clear();
    CHECK(sp_schedule_check(s) == SP_ERR_ARG, "bad schedule accepted (%s)", word);
    CHECK(strstr(sp_last_error(), word) != NULL, "message '%s' lacks '%s'", sp_last_error(), word);
}

static void test_schedules(void) {
    /* base 0.1, warmup 4: lr = 0.1 * (step + 1) / 4 for steps 0..3 */
    sp_schedule s = {.kind = SP_SCHED_STEP,
                     .base_lr = 0.1,
                     .warmup_steps = 4,
                     .step_every = 3,
                     .gamma = 0.5,
                     .total_steps = 14,
                     .min_lr = 0.001};
    CHECK(sp_schedule_check(&s) == SP_OK, "%s", sp_last_error());
    struct {
        sp_sched_kind kind;
        int64_t step;
        double lr;
    } want[] = {
        {SP_SCHED_CONSTANT, 0, 0.025},
        {SP_SCHED_CONSTANT, 3, 0.1},
        {SP_SCHED_CONSTANT, 4, 0.1},
        {SP_SCHED_CONSTANT, 1000, 0.1},
        {SP_SCHED_STEP, 0, 0.025},
        {SP_SCHED_STEP, 1, 0.05},
        {SP_SCHED_STEP, 3, 0.1},
        {SP_SCHED_STEP, 4, 0.1},     /* s = 0 */
        {SP_SCHED_STEP, 6, 0.1},     /* s = 2 */
        {SP_SCHED_STEP, 7, 0.05},    /* s = 3: one decay */
        {SP_SCHED_STEP, 13, 0.0125}, /* s = 9: three */
        {SP_SCHED_COSINE, 0, 0.025},
        {SP_SCHED_COSINE, 3, 0.1},
        {SP_SCHED_COSINE, 4, 0.1}, /* s = 0 of T = 10 */
        /* s = 2: 0.001 + 0.099 * (1 + cos(0.2 pi)) / 2, cos(0.2 pi) = 0.80901699437494742 */
        {SP_SCHED_COSINE, 6, 0.0905463412215599},
        {SP_SCHED_COSINE, 9, 0.0505}, /* s = 5: the middle, (base + min) / 2 */
        /* s = 9: 0.001 + 0.099 * (1 + cos(0.9 pi)) / 2, cos(0.9 pi) = -0.95105651629515357 */
        {SP_SCHED_COSINE, 13, 0.0034227024433899004},
        {SP_SCHED_COSINE, 14, 0.001}, /* total: min_lr */
        {SP_SCHED_COSINE, 15, 0.001},
        {SP_SCHED_COSINE, 100000, 0.001},
    };
    for (size_t i = 0; i < sizeof want / sizeof *want; ++i) {
        s.kind = want[i].kind;
        double lr = sp_schedule_lr(&s, want[i].step);
        CHECK(close_(lr, want[i].lr, 1e-12), "%s step %lld: %.17g, want %.17g",
              sp_sched_kind_name(s.kind), (long long)want[i].step, lr, want[i].lr);
    }
    s.kind = SP_SCHED_COSINE;
    s.warmup_steps = 0;
    CHECK(sp_schedule_lr(&s, 0) == 0.1, "no warmup: base at step 0");
    CHECK(sp_schedule_lr(&s, -5) == 0.1, "negative step as 0");

    sp_sched_kind k;
    CHECK(sp_sched_kind_parse("cosine", &k) == SP_OK && k == SP_SCHED_COSINE, "parse cosine");
    CHECK(sp_sched_kind_parse("constant", &k) == SP_OK && k == SP_SCHED_CONSTANT, "parse");
    CHECK(sp_sched_kind_parse("step", &k) == SP_OK && k == SP_SCHED_STEP, "parse step");
    CHECK(sp_sched_kind_parse("linear", &k) == SP_ERR_ARG, "parse linear");
    CHECK(strstr(sp_last_error(), "'linear'") && strstr(sp_last_error(), "cosine"), "msg '%s'",
          sp_last_error());

    sp_schedule good = {.kind = SP_SCHED_COSINE,
                        .base_lr = 0.1,
                        .warmup_steps = 2,
                        .step_every = 1,
                        .gamma = 0.5,
                        .total_steps = 10,
                        .min_lr = 0.0};
    s = good;
    s.base_lr = 0.0;
    expect_sched_error_(&s, "base_lr");
    s = good;
    s.warmup_steps = -1;
    expect_sched_error_(&s, "warmup_steps");
    s = good;
    s.total_steps = 2;
    expect_sched_error_(&s, "total_steps");
    s = good;
    s.min_lr = 0.2;
    expect_sched_error_(&s, "min_lr");
    s = good;
    s.kind = SP_SCHED_STEP;
    CHECK(sp_schedule_check(&s) == SP_OK, "%s", sp_last_error());
    s.step_every = 0;
    expect_sched_error_(&s, "step_every");
    s.step_every = 1;
    s.gamma = 1.5;
    expect_sched_error_(&s, "gamma");
    s.gamma = 0.0;
    expect_sched_error_(&s, "gamma");
}

/* ---- --dump: trajectories for optim_vs_torch.py ------------------------------------------ */

static int dump_(int argc, char **argv) {
    sp_opt_config c = sp_opt_config_defaults(SP_OPT_SGD);
    sp_schedule s = {.kind = SP_SCHED_CONSTANT, .base_lr = 0.01, .step_every = 1, .gamma = 1};
    long steps = 20, n = 7, seed = 1;
    double max_norm = 0;
    for (int i = 2; i < argc; ++i) {
        char key[32];
        const char *eq = strchr(argv[i], '=');
        if (!eq || eq - argv[i] >= (long)sizeof key) {
            fprintf(stderr, "bad argument '%s' (expected key=value)\n", argv[i]);
            return 2;
        }
        memcpy(key, argv[i], (size_t)(eq - argv[i]));
        key[eq - argv[i]] = '\0';
        const char *v = eq + 1;
        sp_status st = SP_OK;
        if (!strcmp(key, "opt"))
            st = sp_opt_kind_parse(v, &c.kind);
        else if (!strcmp(key, "sched"))
            st = sp_sched_kind_parse(v, &s.kind);
        else if (!strcmp(key, "momentum"))
            c.momentum = strtof(v, NULL);
        else if (!strcmp(key, "nesterov"))
            c.nesterov = atoi(v) != 0;
        else if (!strcmp(key, "wd"))
            c.weight_decay = strtof(v, NULL);
        else if (!strcmp(key, "beta1"))
            c.beta1 = strtof(v, NULL);
        else if (!strcmp(key, "beta2"))
            c.beta2 = strtof(v, NULL);
        else if (!strcmp(key, "eps"))
            c.eps = strtof(v, NULL);
        else if (!strcmp(key, "base_lr"))
            s.base_lr = strtod(v, NULL);
        else if (!strcmp(key, "warmup"))
            s.warmup_steps = atol(v);
        else if (!strcmp(key, "step_every"))
            s.step_every = atol(v);
        else if (!strcmp(key, "gamma"))
            s.gamma = strtod(v, NULL);
        else if (!strcmp(key, "total"))
            s.total_steps = atol(v);
        else if (!strcmp(key, "min_lr"))
            s.min_lr = strtod(v, NULL);
        else if (!strcmp(key, "steps"))
            steps = atol(v);
        else if (!strcmp(key, "n"))
            n = atol(v);
        else if (!strcmp(key, "seed"))
            seed = atol(v);
        else if (!strcmp(key, "max_norm"))
            max_norm = strtod(v, NULL);
        else {
            fprintf(stderr, "unknown key '%s'\n", key);
            return 2;
        }
        if (st != SP_OK) {
            fprintf(stderr, "%s\n", sp_last_error());
            return 2;
        }
    }
    sp_optimizer *opt = NULL;
    if (sp_schedule_check(&s) != SP_OK || n < 1 || steps < 0 ||
        sp_optim_create(&opt, &c, (size_t)n) != SP_OK) {
        fprintf(stderr, "bad configuration: %s\n", sp_last_error());
        return 2;
    }
    float *p = malloc((size_t)n * sizeof(float)), *g = malloc((size_t)n * sizeof(float));
    if (!p || !g) return 2;
    sp_test_fill(p, (size_t)n, (uint64_t)seed, -1.0f, 1.0f);
    printf("init");
    for (long i = 0; i < n; ++i) printf(" %.9g", (double)p[i]);
    printf("\n");
    for (long k = 0; k < steps; ++k) {
        sp_test_fill(g, (size_t)n, (uint64_t)(seed * 1000 + k + 1), -1.0f, 1.0f);
        printf("grad");
        for (long i = 0; i < n; ++i) printf(" %.9g", (double)g[i]);
        printf("\n");
        double norm = max_norm > 0 ? sp_clip_grad_norm(g, (size_t)n, max_norm) : 0.0;
        double lr = sp_schedule_lr(&s, k);
        printf("lr %.17g %.9g %.17g\n", lr, (double)(float)lr, norm);
        sp_optim_step(opt, p, g, (float)lr);
        printf("param");
        for (long i = 0; i < n; ++i) printf(" %.9g", (double)p[i]);
        printf("\n");
    }
    for (int st = 0; st < sp_optim_num_states(opt); ++st) {
        printf("state %s", sp_optim_state_name(opt, st));
        for (long i = 0; i < n; ++i) printf(" %.9g", (double)sp_optim_state(opt, st)[i]);
        printf("\n");
    }
    printf("count %lld\n", (long long)sp_optim_step_count(opt));
    free(p);
    free(g);
    sp_optim_free(opt);
    return 0;
}

int main(int argc, char **argv) {
    if (argc > 1 && !strcmp(argv[1], "--dump")) return dump_(argc, argv);
    test_sgd_literal();
    test_adam_literal();
    test_vs_reference();
    test_states_and_resume();
    test_opt_config_errors();
    test_clip();
    test_schedules();
    test_thread_invariance();
    return sp_test_summary("optim");
}
