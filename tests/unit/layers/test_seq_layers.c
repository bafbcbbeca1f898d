/*
 * The sequence layers (token and position embedding) and GPT-2's tanh GELU against the
 * double-precision references of tests/lib/ref_layers.c, as test_layers.c does:
 *   forward: float output vs the double reference, relerr < FWD_TOL = 1e-5 (float rounding);
 *   backward: float gradients vs central finite differences of the double reference in double,
 *   h = 1e-5, relerr < GRAD_TOL = 1e-4, for L = sum(y .* r) with a fixed random r (dL/dy = r);
 *   relerr(a, b) = max|a - b| / max(max|b|, 1e-3).
 * Beyond the values: the scatter-add's order (bit for bit the float sum in position order, acc
 * true and false), sp_embedding_check on every kind of bad id, writes staying inside the
 * outputs, and the same bits for 1 and 2 threads (both embedding backwards).
 */
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "layers/layers.h"
#include "ref_layers.h"
#include "testutil.h"
#include "util/rng.h"

#define FWD_TOL  1e-5
#define GRAD_TOL 1e-4
#define FD_H     1e-5
#define GUARD    64 /* floats past the end of an output, which must stay untouched */

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
/* Random doubles that are floats, so the reference sees exactly our inputs. */
static double *rand_d(size_t n, uint64_t seed, double lo, double hi) {
    double *d = dalloc(n);
    sp_test_fill_d(d, n, seed, lo, hi);
    for (size_t i = 0; i < n; ++i) d[i] = (double)(float)d[i];
    return d;
}
static double dot(const double *a, const double *b, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; ++i) s += a[i] * b[i];
    return s;
}
/* An output buffer of n floats followed by GUARD sentinels; guard_ok says they are intact. */
static float *guarded(size_t n) {
    float *p = malloc((n + GUARD) * sizeof(float));
    for (size_t i = 0; i < n + GUARD; ++i) p[i] = i < n ? NAN : -7.25f;
    return p;
}
static int guard_ok(const float *p, size_t n) {
    for (size_t i = n; i < n + GUARD; ++i)
        if (p[i] != -7.25f) return 0;
    return 1;
}
/* ---- GELU, tanh form ---- */

static void test_gelu_tanh(void) {
    enum { N = 61 };
    double *x = rand_d(N, 800, -4, 4), *r = rand_d(N, 801, -1, 1), *yr = dalloc(N), *ye = dalloc(N),
           *g = dalloc(N);
    x[0] = 0, x[1] = 1, x[2] = -1, x[3] = 9, x[4] = -9; /* 0, the knee, saturation */
    float *xf = to_f(x, N), *rf = to_f(r, N), *y = falloc(N), *dx = falloc(N);
    sp_act_forward(y, xf, N, SP_ACT_GELU_TANH, 0);
    sp_act_backward(dx, rf, xf, y, N, SP_ACT_GELU_TANH, 0);
    ref_act(yr, x, N, 5, 0);
    double e = sp_test_relerr(y, yr, N, 1e-3);
    CHECK(e < FWD_TOL, "gelu_tanh forward relerr %.3g", e);
    CHECK(y[0] == 0.0f && fabs(y[1] - 0.8411919906) < 1e-6, "gelu_tanh(0) = %g, (1) = %.9g",
          (double)y[0], (double)y[1]);
    /* the tolerance tells the two GELUs apart: the erf form is 1.5e-4 away at x = 1 */
    ref_act(ye, x, N, 4, 0);
    e = sp_test_relerr(y, ye, N, 1e-3);
    CHECK(e > FWD_TOL, "gelu_tanh vs the erf gelu relerr %.3g: not distinguishable", e);
    for (int i = 0; i < N; ++i) { /* central differences of sum(ref(x) .* r) */
        const double s = x[i];
        double yp, ym;
        x[i] = s + FD_H;
        ref_act(&yp, &x[i], 1, 5, 0);
        x[i] = s - FD_H;
        ref_act(&ym, &x[i], 1, 5, 0);
        x[i] = s;
        g[i] = r[i] * (yp - ym) / (2 * FD_H);
    }
    e = sp_test_relerr(dx, g, N, 1e-3);
    CHECK(e < GRAD_TOL, "gelu_tanh dx relerr %.3g", e);
    float *dd = to_f(r, N); /* in place, dx aliasing dy */
    sp_act_backward(dd, dd, xf, y, N, SP_ACT_GELU_TANH, 0);
    CHECK(memcmp(dd, dx, sizeof(float) * N) == 0, "gelu_tanh in-place backward");
    free(x), free(r), free(yr), free(ye), free(g), free(xf), free(rf), free(y), free(dx), free(dd);
}

/* ---- token embedding ---- */

/* ids in [0, V - 1): row V - 1 is never used; n > V, so rows repeat */
static float *make_ids(size_t n, int V, uint64_t seed) {
    float *ids = falloc(n);
    for (size_t i = 0; i < n; ++i) ids[i] = (float)sp_rng_below(seed, 3, i, (uint64_t)(V - 1));
    return ids;
}

static void test_embedding(size_t n, int V, int D) {
    char what[64];
    snprintf(what, sizeof what, "embedding n=%zu V=%d D=%d", n, V, D);
    const size_t nw = (size_t)V * D, ny = n * D;
    float *ids = make_ids(n, V, 900 + n);
    double *w = rand_d(nw, 901, -1, 1), *r = rand_d(ny, 902, -1, 1), *yr = dalloc(ny);
    double *idd = dalloc(n), *g = dalloc(nw), *yp = dalloc(ny), *ym = dalloc(ny);
    for (size_t i = 0; i < n; ++i) idd[i] = ids[i];
    float *wf = to_f(w, nw), *rf = to_f(r, ny), *y = guarded(ny);
    CHECK(sp_embedding_check(ids, n, V) == -1, "%s: valid ids rejected", what);
    sp_embedding_forward(y, ids, wf, n, D);
    ref_embedding(yr, idd, w, (int64_t)n, D);
    CHECK(sp_test_relerr(y, yr, ny, 1e-3) == 0 && guard_ok(y, ny), "%s forward: not the rows",
          what);
    /* blame: acc false overwrites dW (NaN before), unused rows become 0 */
    float *dw = guarded(nw);
    sp_embedding_backward(dw, rf, ids, n, V, D, false);
    CHECK(guard_ok(dw, nw), "%s backward wrote past dW", what);
    int zero = 1;
    for (int d = 0; d < D; ++d) zero &= dw[(size_t)(V - 1) * D + d] == 0.0f;
    CHECK(zero, "%s: an unused row of dW is not 0", what);
    for (size_t e = 0; e < nw; ++e) { /* FD of sum(ref(W) .* r) in W */
        const double s = w[e];
        w[e] = s + FD_H;
        ref_embedding(yp, idd, w, (int64_t)n, D);
        w[e] = s - FD_H;
        ref_embedding(ym, idd, w, (int64_t)n, D);
        w[e] = s;
        g[e] = (dot(yp, r, ny) - dot(ym, r, ny)) / (2 * FD_H);
    }
    double e = sp_test_relerr(dw, g, nw, 1e-3);
    CHECK(e < GRAD_TOL, "%s dW relerr %.3g", what, e);
    /* the order: each element is the float sum, in position order, from 0 or from dW */
    float *want = falloc(nw), *old = falloc(nw), *dwa = falloc(nw);
    sp_test_fill(old, nw, 903, -1, 1);
    for (int pass = 0; pass < 2; ++pass) {
        const bool acc = pass == 1;
        for (size_t k = 0; k < nw; ++k) want[k] = acc ? old[k] : 0.0f, dwa[k] = old[k];
        for (size_t i = 0; i < n; ++i)
            for (int d = 0; d < D; ++d) want[(size_t)ids[i] * D + d] += rf[i * D + d];
        sp_embedding_backward(dwa, rf, ids, n, V, D, acc);
        CHECK(memcmp(dwa, want, nw * sizeof(float)) == 0,
              "%s acc=%d: not the sum in position order", what, (int)acc);
    }
    free(ids), free(w), free(r), free(yr), free(idd), free(g), free(yp), free(ym), free(wf);
    free(rf), free(y), free(dw), free(want), free(old), free(dwa);
}

static void test_embedding_check(void) {
    enum { N = 8, V = 5 };
    float ids[N] = {0, 1, 4, 2, 3, 0, 4, 1};
    CHECK(sp_embedding_check(ids, N, V) == -1, "valid ids (0 and V - 1 included)");
    CHECK(sp_embedding_check(ids, 0, V) == -1, "no ids");
    ids[2] = -0.0f;
    CHECK(sp_embedding_check(ids, N, V) == -1, "-0 is id 0");
    const float bad[] = {-1.0f, (float)V, 5.5f,     2.5f,      0.25f,
                         -0.5f, NAN,      INFINITY, -INFINITY, 1e30f};
    for (size_t b = 0; b < sizeof bad / sizeof bad[0]; ++b) {
        ids[5] = bad[b];
        const int64_t at = sp_embedding_check(ids, N, V);
        CHECK(at == 5, "bad id %g found at %lld, not 5", (double)bad[b], (long long)at);
        ids[6] = bad[b]; /* the first bad one */
        CHECK(sp_embedding_check(ids, N, V) == 5, "bad id %g twice: not the first", (double)bad[b]);
        ids[5] = 0, ids[6] = 4;
    }
    ids[N - 1] = NAN;
    CHECK(sp_embedding_check(ids, N, V) == N - 1, "a NaN last");
    float big[2] = {16777215.0f, 3.0f}; /* 2^24 - 1: still an exact integer */
    CHECK(sp_embedding_check(big, 2, 16777216) == -1, "id 2^24 - 1 with V = 2^24");
}

/* ---- position embedding ---- */

static void test_pos_embedding(int B, int T, int D) {
    char what[64];
    snprintf(what, sizeof what, "pos_embedding B=%d T=%d D=%d", B, T, D);
    const size_t nx = (size_t)B * T * D, np = (size_t)T * D;
    double *x = rand_d(nx, 700, -1, 1), *p = rand_d(np, 701, -1, 1), *r = rand_d(nx, 702, -1, 1);
    double *yr = dalloc(nx), *yp = dalloc(nx), *ym = dalloc(nx), *g = dalloc(np);
    float *xf = to_f(x, nx), *pf = to_f(p, np), *rf = to_f(r, nx), *y = guarded(nx);
    sp_pos_embedding_forward(y, xf, pf, B, T, D);
    ref_pos_embedding(yr, x, p, B, T, D);
    double e = sp_test_relerr(y, yr, nx, 1e-3);
    CHECK(e < FWD_TOL && guard_ok(y, nx), "%s forward relerr %.3g", what, e);
    float *dp = guarded(np);
    sp_pos_embedding_backward(dp, rf, B, T, D, false);
    CHECK(guard_ok(dp, np), "%s backward wrote past dP", what);
    for (size_t k = 0; k < np; ++k) {
        const double s = p[k];
        p[k] = s + FD_H;
        ref_pos_embedding(yp, x, p, B, T, D);
        p[k] = s - FD_H;
        ref_pos_embedding(ym, x, p, B, T, D);
        p[k] = s;
        g[k] = (dot(yp, r, nx) - dot(ym, r, nx)) / (2 * FD_H);
    }
    e = sp_test_relerr(dp, g, np, 1e-3);
    CHECK(e < GRAD_TOL, "%s dP relerr %.3g", what, e);
    /* acc adds the same sum to the old value */
    float *old = falloc(np), *dpa = falloc(np);
    sp_test_fill(old, np, 703, -1, 1);
    memcpy(dpa, old, np * sizeof(float));
    sp_pos_embedding_backward(dpa, rf, B, T, D, true);
    int ok = 1;
    for (size_t k = 0; k < np; ++k) ok &= dpa[k] == old[k] + dp[k];
    CHECK(ok, "%s acc: not old + the sum", what);
    free(x), free(p), free(r), free(yr), free(yp), free(ym), free(g), free(xf), free(pf);
    free(rf), free(y), free(dp), free(old), free(dpa);
}

/* The scatter-add and the position sum: the same bits for 1 and 2 threads. */
static void test_embedding_threads(void) {
    const size_t n = 3000;
    const int V = 50, D = 70, B = 5, T = 40; /* D: five 16-column strips, the last partial */
    float *ids = make_ids(n, V, 77), *dy = falloc(n * D);
    float *w1 = falloc((size_t)V * D), *w2 = falloc((size_t)V * D), *p1 = falloc((size_t)T * D),
          *p2 = falloc((size_t)T * D);
    sp_test_fill(dy, n * D, 78, -1, 1);
    const int saved = omp_get_max_threads();
    for (int pass = 0; pass < 2; ++pass) {
        const bool acc = pass == 1;
        sp_test_fill(w1, (size_t)V * D, 79, -1, 1), sp_test_fill(w2, (size_t)V * D, 79, -1, 1);
        sp_test_fill(p1, (size_t)T * D, 80, -1, 1), sp_test_fill(p2, (size_t)T * D, 80, -1, 1);
        omp_set_num_threads(1);
        sp_embedding_backward(w1, dy, ids, n, V, D, acc);
        sp_pos_embedding_backward(p1, dy, B, T, D, acc);
        omp_set_num_threads(2);
        sp_embedding_backward(w2, dy, ids, n, V, D, acc);
        sp_pos_embedding_backward(p2, dy, B, T, D, acc);
        CHECK(memcmp(w1, w2, (size_t)V * D * sizeof(float)) == 0,
              "embedding backward acc=%d: 1 vs 2 threads differ", (int)acc);
        CHECK(memcmp(p1, p2, (size_t)T * D * sizeof(float)) == 0,
              "pos_embedding backward acc=%d: 1 vs 2 threads differ", (int)acc);
    }
    omp_set_num_threads(saved);
    free(ids), free(dy), free(w1), free(w2), free(p1), free(p2);
}

/* B = 0: nothing read or written; the position sum of no samples is zero. */
static void test_embedding_empty(void) {
    sp_pos_embedding_forward(NULL, NULL, NULL, 0, 8, 16);
    sp_embedding_forward(NULL, NULL, NULL, 0, 16);
    sp_embedding_backward(NULL, NULL, NULL, 0, 0, 16, true);
    float dp[4] = {1, 2, 3, 4};
    sp_pos_embedding_backward(dp, NULL, 0, 2, 2, true);
    CHECK(dp[0] == 1 && dp[3] == 4, "pos_embedding dP of no samples, acc");
    sp_pos_embedding_backward(dp, NULL, 0, 2, 2, false);
    CHECK(dp[0] == 0 && dp[3] == 0, "pos_embedding dP of no samples");
}

int main(void) {
    test_gelu_tanh();
    test_embedding_check();
    test_embedding(20, 7, 3);  /* repeats; one column strip */
    test_embedding(13, 4, 37); /* three strips, the last partial */
    test_embedding(1, 2, 1);   /* one position */
    test_pos_embedding(3, 5, 7);
    test_pos_embedding(1, 1, 70); /* one sample: dP = dy */
    test_pos_embedding(4, 9, 1);
    test_embedding_threads();
    test_embedding_empty();
    return sp_test_summary("seq_layers");
}
