/*
 * Every layer and loss against an independent double-precision reference (tests/lib/ref_layers.c):
 *   forward: our float output vs the double reference, relative error < 1e-5 (float rounding);
 *   backward: our float gradients (input and parameters) vs central finite differences of
 *   the double reference, h = 1e-5, relative error < 1e-4 (the FD error is ~1e-9; the rest is
 *   float rounding in our backward).
 * The scalar being differentiated is L = sum(y .* r) for a fixed random r, so dL/dy = r.
 * relerr(a, b) = max|a - b| / max(max|b|, 1e-3).
 * Layers that only move values (concat, upsample forward) must match the reference exactly
 * (relerr 0); a layer's per-sample gradient terms, summed, match its backward's parameter
 * gradients to TERM_TOL (float rounding). Batch norm runs as the model will run it in
 * training: terms, summed over the samples here, then the statistics, forward, backward.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "layers/layers.h"
#include "ref_layers.h"
#include "testutil.h"
#include "util/rng.h"

#define FWD_TOL  1e-5
#define GRAD_TOL 1e-4
#define FD_H     1e-5
#define TERM_TOL 1e-6
#define BN_EPS   1e-5
#define BN_MOM   0.1
#define LN_EPS   1e-5

static double *dalloc(size_t n) {
    return calloc(n ? n : 1, sizeof(double));
}
static float *falloc(size_t n) {
    return calloc(n ? n : 1, sizeof(float));
}
static float *to_f(const double *d, size_t n) {
    float *f = falloc(n);
    for (size_t i = 0; i < n; ++i) f[i] = (float)d[i];
    return f;
}
/* Round a double array to float precision, so the reference sees exactly our inputs. */
static void round_f(double *d, size_t n) {
    for (size_t i = 0; i < n; ++i) d[i] = (double)(float)d[i];
}

/* A layer under test: its reference forward, evaluated on the current double arrays. */
typedef struct lcase {
    void (*fwd)(struct lcase *c, double *y);
    double *x, *w, *b, *r; /* inputs, params, projection */
    size_t nx, nw, nb, ny;
    int B, c, h, wd, oc, k, stride, pad, in, out, act;
    int P, Ca, Cb, S; /* norms, gap: values per channel; concat: channels of a and b; upsample */
    double slope, eps;
} lcase;

static double proj_loss(lcase *c) {
    double *y = dalloc(c->ny);
    c->fwd(c, y);
    double s = 0;
    for (size_t i = 0; i < c->ny; ++i) s += y[i] * c->r[i];
    free(y);
    return s;
}

/* Central differences of the projected loss with respect to v (n). */
static void fd(double *g, double *v, size_t n, lcase *c) {
    for (size_t e = 0; e < n; ++e) {
        const double save = v[e];
        v[e] = save + FD_H;
        const double lp = proj_loss(c);
        v[e] = save - FD_H;
        const double lm = proj_loss(c);
        v[e] = save;
        g[e] = (lp - lm) / (2 * FD_H);
    }
}

static void fwd_dense(lcase *c, double *y) {
    ref_dense(y, c->x, c->w, c->b, c->B, c->in, c->out);
}
static void fwd_conv(lcase *c, double *y) {
    ref_conv2d(y, c->x, c->w, c->b, c->B, c->c, c->h, c->wd, c->oc, c->k, c->stride, c->pad);
}
static void fwd_maxpool(lcase *c, double *y) {
    ref_maxpool(y, c->x, c->B, c->c, c->h, c->wd, c->k, c->stride);
}
static void fwd_avgpool(lcase *c, double *y) {
    ref_avgpool(y, c->x, c->B, c->c, c->h, c->wd, c->k, c->stride);
}
static void fwd_act(lcase *c, double *y) {
    ref_act(y, c->x, (int64_t)c->nx, c->act, c->slope);
}

/* batch norm: w is gamma, b is beta; layer norm: in = D; concat: x is a, w is b */
static void fwd_bn_train(lcase *c, double *y) {
    ref_batchnorm_train(y, NULL, NULL, c->x, c->w, c->b, c->B, c->c, c->P, c->eps);
}
static void fwd_ln(lcase *c, double *y) {
    ref_layernorm(y, c->x, c->w, c->b, c->B, c->in, c->eps);
}
static void fwd_concat(lcase *c, double *y) {
    ref_concat(y, c->x, c->w, c->B, c->Ca, c->Cb, c->P);
}
static void fwd_gap(lcase *c, double *y) {
    ref_gap(y, c->x, c->B, c->c, c->P);
}
static void fwd_upsample(lcase *c, double *y) {
    ref_upsample(y, c->x, c->B, c->c, c->h, c->wd, c->S);
}

static void setup(lcase *c, uint64_t seed) {
    c->x = dalloc(c->nx), c->w = dalloc(c->nw), c->b = dalloc(c->nb), c->r = dalloc(c->ny);
    sp_test_fill_d(c->x, c->nx, seed, -1, 1);
    sp_test_fill_d(c->w, c->nw, seed + 1, -1, 1);
    sp_test_fill_d(c->b, c->nb, seed + 2, -1, 1);
    sp_test_fill_d(c->r, c->ny, seed + 3, -1, 1);
    round_f(c->x, c->nx), round_f(c->w, c->nw), round_f(c->b, c->nb), round_f(c->r, c->ny);
}
static void teardown(lcase *c) {
    free(c->x), free(c->w), free(c->b), free(c->r);
}

/* Compare forward y (float) and backward dx, dw, db (float, may be NULL) with the reference. */
static void compare(lcase *c, const char *what, const float *y, const float *dx, const float *dw,
                    const float *db) {
    double *yr = dalloc(c->ny), *g = dalloc(c->nx > c->nw ? c->nx : c->nw);
    c->fwd(c, yr);
    double e = sp_test_relerr(y, yr, c->ny, 1e-3);
    CHECK(e < FWD_TOL, "%s forward relerr %.3g", what, e);
    if (dx) {
        fd(g, c->x, c->nx, c);
        e = sp_test_relerr(dx, g, c->nx, 1e-3);
        CHECK(e < GRAD_TOL, "%s dx relerr %.3g", what, e);
    }
    if (dw) {
        fd(g, c->w, c->nw, c);
        e = sp_test_relerr(dw, g, c->nw, 1e-3);
        CHECK(e < GRAD_TOL, "%s dw relerr %.3g", what, e);
    }
    if (db) {
        fd(g, c->b, c->nb, c);
        e = sp_test_relerr(db, g, c->nb, 1e-3);
        CHECK(e < GRAD_TOL, "%s db relerr %.3g", what, e);
    }
    free(yr), free(g);
}

static void test_dense(int B, int in, int out) {
    lcase c = {.fwd = fwd_dense, .B = B, .in = in, .out = out};
    c.nx = (size_t)B * in, c.nw = (size_t)out * in, c.nb = (size_t)out, c.ny = (size_t)B * out;
    setup(&c, (uint64_t)(B * 1000 + in * 10 + out));
    float *x = to_f(c.x, c.nx), *w = to_f(c.w, c.nw), *b = to_f(c.b, c.nb), *r = to_f(c.r, c.ny);
    float *y = falloc(c.ny), *dx = falloc(c.nx), *dw = falloc(c.nw), *db = falloc(c.nb);
    /* gradients accumulate: start from a known value and subtract it after */
    for (size_t i = 0; i < c.nw; ++i) dw[i] = 0.5f;
    sp_dense_forward(y, x, w, b, B, in, out);
    sp_dense_backward(dx, dw, db, r, x, w, B, in, out, true);
    for (size_t i = 0; i < c.nw; ++i) dw[i] -= 0.5f;
    char what[64];
    snprintf(what, sizeof what, "dense B=%d in=%d out=%d", B, in, out);
    compare(&c, what, y, dx, dw, db);
    free(x), free(w), free(b), free(r), free(y), free(dx), free(dw), free(db);
    teardown(&c);
}

static void test_conv(int B, int ch, int h, int wd, int oc, int k, int stride, int pad) {
    sp_conv_geom g;
    CHECK(sp_conv_geom_init(&g, ch, h, wd, oc, k, stride, pad), "geom");
    lcase c = {.fwd = fwd_conv,
               .B = B,
               .c = ch,
               .h = h,
               .wd = wd,
               .oc = oc,
               .k = k,
               .stride = stride,
               .pad = pad};
    const size_t ohw = (size_t)g.oh * g.ow, ckk = (size_t)ch * k * k;
    c.nx = (size_t)B * ch * h * wd, c.nw = (size_t)oc * ckk, c.nb = (size_t)oc;
    c.ny = (size_t)B * oc * ohw;
    setup(&c, (uint64_t)(B * 7 + ch * 11 + h * 13 + oc * 17 + k * 19 + stride * 23 + pad));
    float *x = to_f(c.x, c.nx), *w = to_f(c.w, c.nw), *b = to_f(c.b, c.nb), *r = to_f(c.r, c.ny);
    float *y = falloc(c.ny), *dx = falloc(c.nx), *dw = falloc(c.nw), *db = falloc(c.nb);
    float *col = falloc(ckk * B * ohw), *tmp = falloc((size_t)oc * B * ohw),
          *dcol = falloc(ckk * B * ohw);
    sp_conv2d_forward(y, col, tmp, x, w, b, &g, B);
    sp_conv2d_backward(dx, dw, db, tmp, dcol, r, col, w, &g, B, true);
    char what[96];
    snprintf(what, sizeof what, "conv2d B=%d c=%d %dx%d oc=%d k=%d s=%d p=%d", B, ch, h, wd, oc, k,
             stride, pad);
    compare(&c, what, y, dx, dw, db);
    free(x), free(w), free(b), free(r), free(y), free(dx), free(dw), free(db);
    free(col), free(tmp), free(dcol);
    teardown(&c);
}

static void test_pool(int avg, int B, int ch, int h, int wd, int k, int stride) {
    sp_pool_geom g;
    CHECK(sp_pool_geom_init(&g, ch, h, wd, k, stride), "pool geom");
    lcase c = {.fwd = avg ? fwd_avgpool : fwd_maxpool,
               .B = B,
               .c = ch,
               .h = h,
               .wd = wd,
               .k = k,
               .stride = stride};
    c.nx = (size_t)B * ch * h * wd, c.ny = (size_t)B * ch * g.oh * g.ow;
    setup(&c, (uint64_t)(avg * 100 + B * 7 + h * 3 + k + stride * 5));
    float *x = to_f(c.x, c.nx), *r = to_f(c.r, c.ny), *y = falloc(c.ny), *dx = falloc(c.nx);
    int32_t *arg = calloc(c.ny, sizeof(int32_t));
    if (avg) {
        sp_avgpool_forward(y, x, &g, B);
        sp_avgpool_backward(dx, r, &g, B);
    } else {
        sp_maxpool_forward(y, arg, x, &g, B);
        sp_maxpool_backward(dx, r, arg, &g, B);
    }
    char what[96];
    snprintf(what, sizeof what, "%s B=%d c=%d %dx%d k=%d s=%d", avg ? "avgpool" : "maxpool", B, ch,
             h, wd, k, stride);
    compare(&c, what, y, dx, NULL, NULL);
    free(x), free(r), free(y), free(dx), free(arg);
    teardown(&c);
}

static void test_act(int act, double slope) {
    static const char *names[] = {"relu", "leaky_relu", "tanh", "sigmoid", "gelu"};
    lcase c = {.fwd = fwd_act, .act = act, .slope = slope};
    c.nx = c.ny = 37;
    setup(&c, (uint64_t)(500 + act));
    for (size_t i = 0; i < c.nx; ++i) {
        c.x[i] *= 3.0;                         /* cover the saturating ranges too */
        if (fabs(c.x[i]) < 1e-3) c.x[i] = 0.5; /* keep FD away from the kink of relu */
    }
    float *x = to_f(c.x, c.nx), *r = to_f(c.r, c.ny), *y = falloc(c.ny), *dx = falloc(c.nx);
    sp_act_forward(y, x, c.nx, (sp_act)act, (float)slope);
    sp_act_backward(dx, r, x, y, c.nx, (sp_act)act, (float)slope);
    compare(&c, names[act], y, dx, NULL, NULL);
    /* in place (dx aliasing dy), as the model may use it */
    float *dd = to_f(c.r, c.ny);
    sp_act_backward(dd, dd, x, y, c.nx, (sp_act)act, (float)slope);
    CHECK(memcmp(dd, dx, c.nx * sizeof(float)) == 0, "%s in-place backward", names[act]);
    free(x), free(r), free(y), free(dx), free(dd);
    teardown(&c);
}

static void test_dropout(void) {
    const int B = 64;
    const size_t size = 250, n = (size_t)B * size;
    const float p = 0.3f;
    float *x = falloc(n), *y = falloc(n), *mask = falloc(n), *y2 = falloc(n), *mask2 = falloc(n);
    int64_t ids[64], ids_rev[64];
    for (int i = 0; i < B; ++i) ids[i] = 1000 + i, ids_rev[i] = 1000 + (B - 1 - i);
    sp_test_fill(x, n, 3, -1, 1);
    sp_dropout_forward(y, mask, x, ids, B, size, p, 42, 7, 5);
    size_t zeros = 0;
    int ok = 1;
    for (size_t i = 0; i < n; ++i) {
        zeros += mask[i] == 0.0f;
        if (mask[i] != 0.0f && mask[i] != 1.0f / (1.0f - p)) ok = 0;
        if (y[i] != x[i] * mask[i]) ok = 0;
    }
    CHECK(ok, "dropout: mask values in {0, 1/(1-p)} and y = x * mask");
    const double frac = (double)zeros / (double)n;
    CHECK(fabs(frac - p) < 0.02, "dropout: dropped fraction %.4f vs p = %.2f", frac, (double)p);
    /* the mask follows the sample, not its row: reverse the rows, same masks per sample */
    float *xr = falloc(n);
    for (int i = 0; i < B; ++i)
        memcpy(xr + (size_t)i * size, x + (size_t)(B - 1 - i) * size, size * 4);
    sp_dropout_forward(y2, mask2, xr, ids_rev, B, size, p, 42, 7, 5);
    ok = 1;
    for (int i = 0; i < B; ++i)
        if (memcmp(mask2 + (size_t)i * size, mask + (size_t)(B - 1 - i) * size, size * 4)) ok = 0;
    CHECK(ok, "dropout: mask is a function of the sample id");
    sp_dropout_forward(y2, mask2, x, ids, B, size, p, 42, 7, 6);
    CHECK(memcmp(mask, mask2, n * 4) != 0, "dropout: a new step draws a new mask");
    /* backward: dx = dy * mask exactly */
    float *dx = falloc(n);
    sp_dropout_backward(dx, x, mask, B, size);
    ok = 1;
    for (size_t i = 0; i < n; ++i)
        if (dx[i] != x[i] * mask[i]) ok = 0;
    CHECK(ok, "dropout: backward dx = dy * mask");
    free(x), free(y), free(mask), free(y2), free(mask2), free(xr), free(dx);
}

/* Forward of a layer under test against its reference: relerr below tol (0: exactly). */
static void check_forward(lcase *c, const char *what, const float *y, double tol) {
    double *yr = dalloc(c->ny);
    c->fwd(c, yr);
    const double e = sp_test_relerr(y, yr, c->ny, 1e-3);
    CHECK(tol == 0 ? e == 0 : e < tol, "%s forward relerr %.3g", what, e);
    free(yr);
}

/* A float gradient against central differences of the reference in v (n values). */
static void check_grad(lcase *c, const char *what, const char *name, const float *got, double *v,
                       size_t n) {
    double *g = dalloc(n);
    fd(g, v, n, c);
    const double e = sp_test_relerr(got, g, n, 1e-3);
    CHECK(e < GRAD_TOL, "%s %s relerr %.3g", what, name, e);
    free(g);
}

/* What the model does with per-sample terms t (B, n): their sums over the samples, in order. */
static void sum_terms(double *s, const double *t, int B, int n) {
    for (int j = 0; j < n; ++j) s[j] = 0;
    for (int i = 0; i < B; ++i)
        for (int j = 0; j < n; ++j) s[j] += t[(size_t)i * n + j];
}

/* Batch norm in training, the whole chain: stat terms -> sums -> batch stats -> forward, and
 * grad terms -> sums -> backward (dx) and sp_term_sums (dgamma, dbeta); then the running
 * statistics against PyTorch's update and evaluation mode against its reference. */
static void test_bn(int B, int C, int P) {
    lcase c = {.fwd = fwd_bn_train, .B = B, .c = C, .P = P, .eps = BN_EPS};
    c.nx = c.ny = (size_t)B * C * P, c.nw = c.nb = (size_t)C;
    setup(&c, (uint64_t)(900 + B * 31 + C * 7 + P));
    for (size_t i = 0; i < c.nx; ++i) /* an offset and a spread that differ per channel */
        c.x[i] = 1.5 + (1.0 + (double)((i / (size_t)P) % (size_t)C)) * c.x[i];
    round_f(c.x, c.nx);
    const double M = (double)B * P;
    float *x = to_f(c.x, c.nx), *gamma = to_f(c.w, c.nw), *beta = to_f(c.b, c.nb);
    float *r = to_f(c.r, c.ny), *y = falloc(c.ny), *dx = falloc(c.nx);
    float *mean = falloc((size_t)C), *inv_std = falloc((size_t)C), *dgb = falloc(2 * (size_t)C);
    float *rm = falloc((size_t)C), *rv = falloc((size_t)C), *dgb_acc = falloc(2 * (size_t)C);
    double *rm0 = dalloc((size_t)C), *rv0 = dalloc((size_t)C);
    sp_test_fill_d(rm0, (size_t)C, 17, -1, 1), sp_test_fill_d(rv0, (size_t)C, 18, 0.5, 2);
    round_f(rm0, (size_t)C), round_f(rv0, (size_t)C);
    for (int i = 0; i < C; ++i) rm[i] = (float)rm0[i], rv[i] = (float)rv0[i];
    double *t = dalloc((size_t)B * 2 * C), *s = dalloc(2 * (size_t)C);
    sp_bn_stat_terms(t, x, B, C, P);
    sum_terms(s, t, B, 2 * C);
    sp_bn_batch_stats(mean, inv_std, rm, rv, s, M, C, (float)BN_EPS, (float)BN_MOM);
    sp_bn_forward(y, x, mean, inv_std, gamma, beta, B, C, P);
    sp_bn_grad_terms(t, r, x, mean, inv_std, B, C, P);
    sum_terms(s, t, B, 2 * C);
    sp_bn_backward(dx, r, x, mean, inv_std, gamma, s, M, B, C, P);
    sp_term_sums(dgb, t, B, 2 * C, false);
    char what[96];
    snprintf(what, sizeof what, "batchnorm train B=%d C=%d P=%d", B, C, P);
    compare(&c, what, y, dx, dgb, dgb + C);
    /* acc adds into the gradient */
    for (int i = 0; i < 2 * C; ++i) dgb_acc[i] = 0.5f;
    sp_term_sums(dgb_acc, t, B, 2 * C, true);
    for (int i = 0; i < 2 * C; ++i) dgb_acc[i] -= 0.5f;
    double e = sp_test_relerr_ff(dgb_acc, dgb, 2 * (size_t)C, 1e-3);
    CHECK(e < TERM_TOL, "%s sp_term_sums acc relerr %.3g", what, e);
    /* the statistics: batch mean, inv_std, and the running update (variance unbiased) */
    double *yr = dalloc(c.ny), *mr = dalloc((size_t)C), *vr = dalloc((size_t)C),
           *want = dalloc((size_t)C);
    ref_batchnorm_train(yr, mr, vr, c.x, c.w, c.b, B, C, P, BN_EPS);
    e = sp_test_relerr(mean, mr, (size_t)C, 1e-3);
    CHECK(e < FWD_TOL, "%s mean relerr %.3g", what, e);
    for (int i = 0; i < C; ++i) want[i] = 1 / sqrt(vr[i] + BN_EPS);
    e = sp_test_relerr(inv_std, want, (size_t)C, 1e-3);
    CHECK(e < FWD_TOL, "%s inv_std relerr %.3g", what, e);
    for (int i = 0; i < C; ++i) want[i] = (1 - BN_MOM) * rm0[i] + BN_MOM * mr[i];
    e = sp_test_relerr(rm, want, (size_t)C, 1e-3);
    CHECK(e < FWD_TOL, "%s running_mean relerr %.3g", what, e);
    for (int i = 0; i < C; ++i) want[i] = (1 - BN_MOM) * rv0[i] + BN_MOM * vr[i] * M / (M - 1);
    e = sp_test_relerr(rv, want, (size_t)C, 1e-3);
    CHECK(e < FWD_TOL, "%s running_var relerr %.3g", what, e);
    /* evaluation: the running statistics just computed normalize instead */
    double *rmd = dalloc((size_t)C), *rvd = dalloc((size_t)C);
    for (int i = 0; i < C; ++i) rmd[i] = rm[i], rvd[i] = rv[i];
    sp_bn_eval_stats(mean, inv_std, rm, rv, C, (float)BN_EPS);
    sp_bn_forward(y, x, mean, inv_std, gamma, beta, B, C, P);
    ref_batchnorm_eval(yr, c.x, rmd, rvd, c.w, c.b, B, C, P, BN_EPS);
    e = sp_test_relerr(y, yr, c.ny, 1e-3);
    CHECK(e < FWD_TOL, "batchnorm eval B=%d C=%d P=%d forward relerr %.3g", B, C, P, e);
    free(x), free(gamma), free(beta), free(r), free(y), free(dx), free(mean), free(inv_std);
    free(dgb), free(rm), free(rv), free(dgb_acc), free(rm0), free(rv0), free(t), free(s);
    free(yr), free(mr), free(vr), free(want), free(rmd), free(rvd);
    teardown(&c);
}

/* Layer norm: forward, dx, dgamma, dbeta (accumulated), and its per-sample terms summed over
 * the samples against backward's dgamma and dbeta; dx and the parameter gradients alone. */
static void test_ln(int B, int D) {
    lcase c = {.fwd = fwd_ln, .B = B, .in = D, .eps = LN_EPS};
    c.nx = c.ny = (size_t)B * D, c.nw = c.nb = (size_t)D;
    setup(&c, (uint64_t)(700 + B * 13 + D));
    for (size_t i = 0; i < c.nx; ++i) c.x[i] = 0.5 * (double)(i / (size_t)D) + 2 * c.x[i];
    round_f(c.x, c.nx);
    float *x = to_f(c.x, c.nx), *gamma = to_f(c.w, c.nw), *beta = to_f(c.b, c.nb);
    float *r = to_f(c.r, c.ny), *y = falloc(c.ny), *dx = falloc(c.nx), *dx2 = falloc(c.nx);
    float *mean = falloc((size_t)B), *inv_std = falloc((size_t)B);
    float *dg = falloc((size_t)D), *db = falloc((size_t)D), *dg2 = falloc((size_t)D),
          *db2 = falloc((size_t)D), *tg = falloc((size_t)D), *tb = falloc((size_t)D);
    sp_ln_forward(y, mean, inv_std, x, gamma, beta, B, D, (float)LN_EPS);
    for (int i = 0; i < D; ++i) dg[i] = db[i] = 0.5f;
    sp_ln_backward(dx, dg, db, r, x, mean, inv_std, gamma, B, D, true);
    for (int i = 0; i < D; ++i) dg[i] -= 0.5f, db[i] -= 0.5f;
    char what[64];
    snprintf(what, sizeof what, "layernorm B=%d D=%d", B, D);
    compare(&c, what, y, dx, dg, db);
    /* the terms, summed over the samples, are backward's dgamma and dbeta */
    double *t = dalloc((size_t)B * 2 * D), *s = dalloc(2 * (size_t)D);
    sp_ln_grad_terms(t, r, x, mean, inv_std, B, D);
    sum_terms(s, t, B, 2 * D);
    for (int i = 0; i < D; ++i) tg[i] = (float)s[i], tb[i] = (float)s[D + i];
    for (int i = 0; i < D; ++i) dg2[i] = db2[i] = NAN; /* overwritten, never read */
    sp_ln_backward(NULL, dg2, db2, r, x, mean, inv_std, gamma, B, D, false);
    double e = fmax(sp_test_relerr_ff(tg, dg2, (size_t)D, 1e-3),
                    sp_test_relerr_ff(tb, db2, (size_t)D, 1e-3));
    CHECK(e < TERM_TOL, "%s grad terms summed vs dgamma, dbeta relerr %.3g", what, e);
    /* dx alone is the same dx */
    sp_ln_backward(dx2, NULL, NULL, r, x, mean, inv_std, gamma, B, D, false);
    CHECK(memcmp(dx, dx2, c.nx * sizeof(float)) == 0, "%s dx without dgamma", what);
    free(x), free(gamma), free(beta), free(r), free(y), free(dx), free(dx2), free(mean);
    free(inv_std), free(dg), free(db), free(dg2), free(db2), free(tg), free(tb), free(t), free(s);
    teardown(&c);
}

/* Concat: forward exactly the reference; each input's blame against finite differences, and
 * exactly its slice (concatenating the two gives dy back); a NULL gradient is skipped. */
static void test_concat(int B, int Ca, int Cb, int P) {
    lcase c = {.fwd = fwd_concat, .B = B, .Ca = Ca, .Cb = Cb, .P = P};
    c.nx = (size_t)B * Ca * P, c.nw = (size_t)B * Cb * P, c.ny = c.nx + c.nw;
    setup(&c, (uint64_t)(600 + B + Ca * 3 + Cb * 5 + P * 7));
    float *a = to_f(c.x, c.nx), *b = to_f(c.w, c.nw), *r = to_f(c.r, c.ny), *y = falloc(c.ny);
    float *da = falloc(c.nx), *db = falloc(c.nw), *db2 = falloc(c.nw);
    sp_concat_forward(y, a, b, B, Ca, Cb, P);
    char what[64];
    snprintf(what, sizeof what, "concat B=%d Ca=%d Cb=%d P=%d", B, Ca, Cb, P);
    check_forward(&c, what, y, 0);
    sp_concat_backward(da, db, r, B, Ca, Cb, P);
    check_grad(&c, what, "da", da, c.x, c.nx);
    check_grad(&c, what, "db", db, c.w, c.nw);
    double *dad = dalloc(c.nx), *dbd = dalloc(c.nw), *back = dalloc(c.ny);
    for (size_t i = 0; i < c.nx; ++i) dad[i] = da[i];
    for (size_t i = 0; i < c.nw; ++i) dbd[i] = db[i];
    ref_concat(back, dad, dbd, B, Ca, Cb, P);
    CHECK(sp_test_relerr(r, back, c.ny, 1e-3) == 0, "%s: cat(da, db) is not dy", what);
    for (size_t i = 0; i < c.nw; ++i) db2[i] = NAN;
    sp_concat_backward(NULL, db2, r, B, Ca, Cb, P);
    CHECK(memcmp(db, db2, c.nw * sizeof(float)) == 0, "%s db with da NULL", what);
    free(a), free(b), free(r), free(y), free(da), free(db), free(db2), free(dad), free(dbd);
    free(back);
    teardown(&c);
}

static void test_gap(int B, int C, int P) {
    lcase c = {.fwd = fwd_gap, .B = B, .c = C, .P = P};
    c.nx = (size_t)B * C * P, c.ny = (size_t)B * C;
    setup(&c, (uint64_t)(400 + B + C * 3 + P));
    float *x = to_f(c.x, c.nx), *r = to_f(c.r, c.ny), *y = falloc(c.ny), *dx = falloc(c.nx);
    for (size_t i = 0; i < c.nx; ++i) dx[i] = NAN; /* overwritten */
    sp_gap_forward(y, x, B, C, P);
    sp_gap_backward(dx, r, B, C, P);
    char what[64];
    snprintf(what, sizeof what, "gap B=%d C=%d P=%d", B, C, P);
    compare(&c, what, y, dx, NULL, NULL);
    free(x), free(r), free(y), free(dx);
    teardown(&c);
}

static void test_upsample(int B, int C, int H, int W, int S) {
    lcase c = {.fwd = fwd_upsample, .B = B, .c = C, .h = H, .wd = W, .S = S};
    c.nx = (size_t)B * C * H * W, c.ny = c.nx * S * S;
    setup(&c, (uint64_t)(300 + B + C * 3 + H * 5 + W * 7 + S));
    float *x = to_f(c.x, c.nx), *r = to_f(c.r, c.ny), *y = falloc(c.ny), *dx = falloc(c.nx);
    for (size_t i = 0; i < c.nx; ++i) dx[i] = NAN; /* overwritten */
    sp_upsample_forward(y, x, B, C, H, W, S);
    sp_upsample_backward(dx, r, B, C, H, W, S);
    char what[64];
    snprintf(what, sizeof what, "upsample B=%d C=%d %dx%d S=%d", B, C, H, W, S);
    check_forward(&c, what, y, 0);
    check_grad(&c, what, "dx", dx, c.x, c.nx);
    free(x), free(r), free(y), free(dx);
    teardown(&c);
}

/* y = a + b is the float sum, element by element, also in place (y aliasing a). */
static void test_add(void) {
    enum { N = 103 };
    float a[N], b[N], y[N];
    sp_test_fill(a, N, 51, -1, 1), sp_test_fill(b, N, 52, -1, 1);
    sp_add_forward(y, a, b, N);
    int ok = 1;
    for (int i = 0; i < N; ++i) ok &= y[i] == (float)((double)a[i] + (double)b[i]);
    CHECK(ok, "add: y = a + b, rounded once");
    sp_add_forward(a, a, b, N);
    CHECK(memcmp(a, y, sizeof y) == 0, "add in place");
}

/* B = 0: nothing to read or write (NULL everywhere); the sums over no samples are zero. */
static void test_empty_batch(void) {
    float g[4] = {1, 2, 3, 4};
    sp_bn_stat_terms(NULL, NULL, 0, 4, 9);
    sp_bn_forward(NULL, NULL, NULL, NULL, NULL, NULL, 0, 4, 9);
    sp_bn_grad_terms(NULL, NULL, NULL, NULL, NULL, 0, 4, 9);
    sp_bn_backward(NULL, NULL, NULL, NULL, NULL, NULL, NULL, 1, 0, 4, 9);
    sp_ln_forward(NULL, NULL, NULL, NULL, NULL, NULL, 0, 4, 1e-5f);
    sp_ln_grad_terms(NULL, NULL, NULL, NULL, NULL, 0, 4);
    sp_add_forward(NULL, NULL, NULL, 0);
    sp_concat_forward(NULL, NULL, NULL, 0, 2, 3, 4);
    sp_concat_backward(NULL, NULL, NULL, 0, 2, 3, 4);
    sp_gap_forward(NULL, NULL, 0, 2, 4);
    sp_gap_backward(NULL, NULL, 0, 2, 4);
    sp_upsample_forward(NULL, NULL, 0, 2, 3, 3, 2);
    sp_upsample_backward(NULL, NULL, 0, 2, 3, 3, 2);
    sp_term_sums(g, NULL, 0, 4, true);
    CHECK(g[0] == 1 && g[1] == 2 && g[2] == 3 && g[3] == 4, "term sums of no samples, acc");
    sp_ln_backward(NULL, g, g, NULL, NULL, NULL, NULL, NULL, 0, 4, false);
    CHECK(g[0] == 0 && g[1] == 0 && g[2] == 0 && g[3] == 0, "layernorm dgamma of no samples");
}

/* Loss cases: L is the mean loss, differentiated in z (or o). */
typedef struct {
    int B, C;
    const int32_t *labels;
    const double *t;
} loss_ctx;

static void test_xent(int B, int C, double zscale) {
    double *z = dalloc((size_t)B * C), *g = dalloc((size_t)B * C);
    int32_t *lab = calloc((size_t)B, sizeof(int32_t));
    sp_test_fill_d(z, (size_t)B * C, (uint64_t)(B * 31 + C), -zscale, zscale);
    round_f(z, (size_t)B * C);
    for (int i = 0; i < B; ++i) lab[i] = (int32_t)sp_rng_below(5, 5, (uint64_t)i, (uint64_t)C);
    float *zf = to_f(z, (size_t)B * C), *dz = falloc((size_t)B * C);
    double *rows = dalloc((size_t)B), loss;
    int64_t correct;
    sp_xent_loss(&loss, &correct, dz, rows, zf, lab, B, C, 1.0f / (float)B);
    const double lref = ref_xent(z, lab, B, C);
    CHECK(isfinite(loss) && fabs(loss / B - lref) <= 1e-6 * fmax(1, fabs(lref)),
          "xent B=%d C=%d zscale=%g: loss %.9g vs %.9g", B, C, zscale, loss / B, lref);
    int64_t hits = 0;
    for (int i = 0; i < B; ++i) {
        int a = 0;
        for (int j = 1; j < C; ++j)
            if (zf[i * C + j] > zf[i * C + a]) a = j;
        hits += a == lab[i];
    }
    CHECK(correct == hits, "xent correct %lld vs %lld", (long long)correct, (long long)hits);
    if (zscale < 100) { /* FD of the reference, which itself overflows for huge logits */
        for (int e = 0; e < B * C; ++e) {
            const double s = z[e];
            z[e] = s + FD_H;
            const double lp = ref_xent(z, lab, B, C);
            z[e] = s - FD_H;
            const double lm = ref_xent(z, lab, B, C);
            z[e] = s;
            g[e] = (lp - lm) / (2 * FD_H);
        }
        const double e = sp_test_relerr(dz, g, (size_t)B * C, 1e-3);
        CHECK(e < GRAD_TOL, "xent B=%d C=%d dz relerr %.3g", B, C, e);
    } else {
        int finite = 1;
        for (int e = 0; e < B * C; ++e) finite &= isfinite(dz[e]);
        CHECK(finite, "xent with logits of magnitude %g stays finite", zscale);
    }
    free(z), free(g), free(lab), free(zf), free(dz), free(rows);
}

static void test_mse(int B, int T) {
    const size_t n = (size_t)B * T;
    double *o = dalloc(n), *t = dalloc(n), *g = dalloc(n);
    sp_test_fill_d(o, n, (uint64_t)(B + 77 * T), -2, 2);
    sp_test_fill_d(t, n, (uint64_t)(B + 78 * T), -2, 2);
    round_f(o, n), round_f(t, n);
    float *of = to_f(o, n), *tf = to_f(t, n), *d = falloc(n);
    double *rows = dalloc((size_t)B), loss;
    sp_mse_loss(&loss, d, rows, of, tf, B, T, 1.0f / (float)n);
    const double lref = ref_mse(o, t, B, T);
    CHECK(fabs(loss / (double)n - lref) <= 1e-9 * fmax(1, lref), "mse B=%d T=%d loss %.9g vs %.9g",
          B, T, loss / (double)n, lref);
    for (size_t e = 0; e < n; ++e) {
        const double s = o[e];
        o[e] = s + FD_H;
        const double lp = ref_mse(o, t, B, T);
        o[e] = s - FD_H;
        const double lm = ref_mse(o, t, B, T);
        o[e] = s;
        g[e] = (lp - lm) / (2 * FD_H);
    }
    const double e = sp_test_relerr(d, g, n, 1e-3);
    CHECK(e < GRAD_TOL, "mse B=%d T=%d relerr %.3g", B, T, e);
    free(o), free(t), free(g), free(of), free(tf), free(d), free(rows);
}

int main(void) {
    /* dense: sizes 1, odd, and wider than a SIMD vector */
    const int dshapes[][3] = {{1, 1, 1}, {3, 7, 5}, {17, 3, 1}, {4, 33, 17}, {1, 65, 3}, {2, 1, 9}};
    for (size_t i = 0; i < sizeof dshapes / sizeof dshapes[0]; ++i)
        test_dense(dshapes[i][0], dshapes[i][1], dshapes[i][2]);
    /* conv2d: B, c, h, w, oc, k, stride, pad */
    const int cshapes[][8] = {{1, 1, 5, 5, 1, 3, 1, 0},  {2, 3, 7, 6, 4, 3, 1, 1},
                              {3, 2, 9, 9, 3, 3, 2, 1},  {1, 2, 8, 7, 5, 1, 1, 0},
                              {2, 1, 6, 6, 2, 5, 2, 2},  {2, 3, 5, 5, 2, 2, 3, 0},
                              {1, 17, 3, 3, 7, 3, 1, 1}, {2, 1, 1, 1, 3, 1, 1, 0}};
    for (size_t i = 0; i < sizeof cshapes / sizeof cshapes[0]; ++i) {
        const int *s = cshapes[i];
        test_conv(s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7]);
    }
    /* pools: B, c, h, w, k, stride (overlapping windows, ragged edges, k = 1) */
    const int pshapes[][6] = {{2, 3, 6, 6, 2, 2}, {1, 2, 7, 5, 3, 1}, {2, 1, 9, 8, 3, 2},
                              {3, 2, 4, 4, 1, 1}, {1, 1, 7, 7, 7, 7}, {2, 2, 5, 9, 2, 3}};
    for (size_t i = 0; i < sizeof pshapes / sizeof pshapes[0]; ++i)
        for (int avg = 0; avg < 2; ++avg) {
            const int *s = pshapes[i];
            test_pool(avg, s[0], s[1], s[2], s[3], s[4], s[5]);
        }
    for (int a = 0; a < 5; ++a) test_act(a, a == 1 ? 0.1 : 0.0);
    test_dropout();
    /* batch norm: B, C, P; BatchNorm1d (P = 1, M = B) and 2d (P = H W, B = 1 too) */
    const int bshapes[][3] = {{5, 3, 1}, {16, 33, 1}, {7, 1, 1}, {2, 3, 20}, {3, 2, 49}, {1, 4, 9}};
    for (size_t i = 0; i < sizeof bshapes / sizeof bshapes[0]; ++i)
        test_bn(bshapes[i][0], bshapes[i][1], bshapes[i][2]);
    const int lshapes[][2] = {{1, 2}, {3, 7}, {5, 33}, {4, 100}, {2, 1}};
    for (size_t i = 0; i < sizeof lshapes / sizeof lshapes[0]; ++i)
        test_ln(lshapes[i][0], lshapes[i][1]);
    test_concat(2, 3, 2, 5), test_concat(3, 1, 4, 1), test_concat(1, 2, 2, 9);
    test_gap(2, 3, 1), test_gap(3, 4, 49), test_gap(1, 2, 1000);
    test_upsample(2, 3, 4, 5, 2), test_upsample(1, 2, 3, 3, 3), test_upsample(2, 1, 1, 1, 4);
    test_upsample(1, 1, 2, 3, 1);
    test_add();
    test_empty_batch();
    test_xent(1, 2, 3), test_xent(5, 3, 3), test_xent(7, 10, 5), test_xent(3, 17, 1);
    test_xent(4, 10, 1000); /* stability: huge logits */
    test_mse(1, 1), test_mse(5, 3), test_mse(17, 2);
    return sp_test_summary("layers");
}
