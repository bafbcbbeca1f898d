/*
 * Every layer and loss against an independent double-precision reference (tests/lib/ref_layers.c):
 *   forward: our float output vs the double reference, relative error < 1e-5 (float rounding);
 *   backward: our float gradients (input and parameters) vs central finite differences of
 *   the double reference, h = 1e-5, relative error < 1e-4 (the FD error is ~1e-9; the rest is
 *   float rounding in our backward).
 * The scalar being differentiated is L = sum(y .* r) for a fixed random r, so dL/dy = r.
 * relerr(a, b) = max|a - b| / max(max|b|, 1e-3).
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
    double slope;
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
    test_xent(1, 2, 3), test_xent(5, 3, 3), test_xent(7, 10, 5), test_xent(3, 17, 1);
    test_xent(4, 10, 1000); /* stability: huge logits */
    test_mse(1, 1), test_mse(5, 3), test_mse(17, 2);
    return sp_test_summary("layers");
}
