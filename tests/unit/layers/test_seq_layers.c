/*
 * The sequence layers (token and position embedding, causal attention) and GPT-2's tanh GELU
 * against the double-precision references of tests/lib/ref_layers.c, as test_layers.c does:
 *   forward: float output vs the double reference, relerr < FWD_TOL = 1e-5 (float rounding);
 *   backward: float gradients vs central finite differences of the double reference in double,
 *   h = 1e-5, relerr < GRAD_TOL = 1e-4, for L = sum(y .* r) with a fixed random r (dL/dy = r);
 *   relerr(a, b) = max|a - b| / max(max|b|, 1e-3).
 * Beyond the values: the scatter-add's order (bit for bit the float sum in position order, acc
 * true and false), sp_embedding_check on every kind of bad id, attention's causality (a NaN in
 * the last position leaves the earlier outputs and their dq bit for bit unchanged), its writes
 * staying inside y, lse, dqkv and the scratch it asked for, and the same bits for 1 and 2 threads
 * and for every ISA path the CPU has (attention and both embedding backwards).
 */
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/isa.h"
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
static int all_finite(const float *p, size_t n) {
    for (size_t i = 0; i < n; ++i)
        if (!isfinite(p[i])) return 0;
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

/* ---- attention ---- */

typedef struct {
    int B, T, C, H;
    size_t n3, n1, nl, ns;
} att_shape;

/* the worst errors seen, printed at the end: the margins to the tolerances */
static double worst_fwd_, worst_grad_;

static att_shape att_shape_of(int B, int T, int C, int H) {
    att_shape s = {B, T, C, H, 0, 0, 0, 0};
    s.n3 = (size_t)B * T * 3 * C, s.n1 = (size_t)B * T * C, s.nl = (size_t)B * H * T;
    s.ns = sp_attention_scratch_floats(B, T, C, H);
    return s;
}

/* forward then backward (dy = r) into fresh guarded buffers */
typedef struct {
    float *y, *lse, *dqkv, *ws;
} att_out;

static att_out att_run(const att_shape *s, const float *qkv, const float *r) {
    att_out o = {guarded(s->n1), guarded(s->nl), guarded(s->n3), guarded(s->ns)};
    sp_attention_forward(o.y, o.lse, o.ws, qkv, s->B, s->T, s->C, s->H);
    sp_attention_backward(o.dqkv, o.ws, r, qkv, o.y, o.lse, s->B, s->T, s->C, s->H);
    return o;
}
static void att_free(att_out *o) {
    free(o->y), free(o->lse), free(o->dqkv), free(o->ws);
}
static int att_same(const att_shape *s, const att_out *a, const att_out *b) {
    return memcmp(a->y, b->y, s->n1 * sizeof(float)) == 0 &&
           memcmp(a->lse, b->lse, s->nl * sizeof(float)) == 0 &&
           memcmp(a->dqkv, b->dqkv, s->n3 * sizeof(float)) == 0;
}

static void test_attention(int B, int T, int C, int H, double qscale) {
    char what[96];
    snprintf(what, sizeof what, "attention B=%d T=%d C=%d H=%d (hs=%d) scale %g", B, T, C, H, C / H,
             qscale);
    const att_shape s = att_shape_of(B, T, C, H);
    double *qkv = rand_d(s.n3, (uint64_t)(B * 1000 + T * 10 + C + H), -qscale, qscale);
    double *r = rand_d(s.n1, (uint64_t)(T * 7 + C), -1, 1);
    double *yr = dalloc(s.n1), *lr = dalloc(s.nl), *yp = dalloc(s.n1), *ym = dalloc(s.n1);
    float *qf = to_f(qkv, s.n3), *rf = to_f(r, s.n1);
    att_out o = att_run(&s, qf, rf);
    CHECK(guard_ok(o.y, s.n1) && guard_ok(o.lse, s.nl) && guard_ok(o.dqkv, s.n3) &&
              guard_ok(o.ws, s.ns),
          "%s: a write past y, lse, dqkv or the scratch", what);
    CHECK(all_finite(o.dqkv, s.n3), "%s: dqkv (NaN before) not all overwritten", what);
    ref_attention(yr, lr, qkv, B, T, C, H);
    double e = sp_test_relerr(o.y, yr, s.n1, 1e-3);
    CHECK(e < FWD_TOL, "%s forward y relerr %.3g", what, e);
    worst_fwd_ = fmax(worst_fwd_, e);
    e = sp_test_relerr(o.lse, lr, s.nl, 1e-3);
    CHECK(e < FWD_TOL, "%s forward lse relerr %.3g", what, e);
    worst_fwd_ = fmax(worst_fwd_, e);
    if (qscale <= 1) {
        /* FD of sum(ref(qkv) .* r) in every element of qkv (under valgrind, SHARDPROP_TEST_SMALL,
         * every 5th) */
        const size_t every = getenv("SHARDPROP_TEST_SMALL") ? 5 : 1,
                     ng = (s.n3 + every - 1) / every;
        double *g = dalloc(ng);
        float *got = falloc(ng);
        for (size_t k = 0; k < s.n3; k += every) {
            const double v = qkv[k];
            qkv[k] = v + FD_H;
            ref_attention(yp, NULL, qkv, B, T, C, H);
            qkv[k] = v - FD_H;
            ref_attention(ym, NULL, qkv, B, T, C, H);
            qkv[k] = v;
            g[k / every] = (dot(yp, r, s.n1) - dot(ym, r, s.n1)) / (2 * FD_H);
            got[k / every] = o.dqkv[k];
        }
        e = sp_test_relerr(got, g, ng, 1e-3);
        CHECK(e < GRAD_TOL, "%s dqkv relerr %.3g", what, e);
        worst_grad_ = fmax(worst_grad_, e);
        free(g), free(got);
    }
    /* causality: NaN in the last position's q, k, v changes nothing before it, nor those
     * rows' dq (which sees k and v of positions <= i only) */
    float *qn = to_f(qkv, s.n3);
    for (int b = 0; b < B; ++b)
        for (int c = 0; c < 3 * C; ++c) qn[((size_t)b * T + T - 1) * 3 * C + c] = NAN;
    att_out on = att_run(&s, qn, rf);
    int same = 1;
    for (int b = 0; b < B; ++b) {
        const size_t o1 = (size_t)b * T * C, o3 = (size_t)b * T * 3 * C;
        same &= memcmp(on.y + o1, o.y + o1, (size_t)(T - 1) * C * sizeof(float)) == 0;
        for (int h = 0; h < H; ++h)
            same &= memcmp(on.lse + ((size_t)b * H + h) * T, o.lse + ((size_t)b * H + h) * T,
                           (size_t)(T - 1) * sizeof(float)) == 0;
        for (int i = 0; i < T - 1; ++i)
            same &= memcmp(on.dqkv + o3 + (size_t)i * 3 * C, o.dqkv + o3 + (size_t)i * 3 * C,
                           (size_t)C * sizeof(float)) == 0;
    }
    CHECK(same, "%s: a NaN at the last position reached an earlier y, lse or dq", what);
    att_free(&on);
    free(qn);
    att_free(&o);
    free(qkv), free(r), free(yr), free(lr), free(yp), free(ym), free(qf), free(rf);
}

/* The same bits for 1 and 2 threads, and on every ISA path this CPU has. */
static void test_attention_invariance(int B, int T, int C, int H) {
    const att_shape s = att_shape_of(B, T, C, H);
    float *qkv = falloc(s.n3), *r = falloc(s.n1);
    sp_test_fill(qkv, s.n3, 31, -2, 2), sp_test_fill(r, s.n1, 32, -1, 1);
    const int saved = omp_get_max_threads();
    omp_set_num_threads(1);
    att_out one = att_run(&s, qkv, r);
    omp_set_num_threads(2);
    att_out two = att_run(&s, qkv, r);
    CHECK(att_same(&s, &one, &two), "attention B=%d T=%d C=%d H=%d: 1 vs 2 threads differ", B, T, C,
          H);
    const sp_isa best = sp_isa_active();
    for (int isa = 0; isa < 3; ++isa) {
        if (!sp_isa_set((sp_isa)isa)) {
            printf("attention: the CPU has no %s: that path not compared\n",
                   sp_isa_name((sp_isa)isa));
            continue;
        }
        att_out p = att_run(&s, qkv, r);
        CHECK(att_same(&s, &p, &one), "attention B=%d T=%d C=%d H=%d: %s differs from %s", B, T, C,
              H, sp_isa_name((sp_isa)isa), sp_isa_name(best));
        att_free(&p);
    }
    sp_isa_set(best);
    omp_set_num_threads(saved);
    att_free(&one), att_free(&two);
    free(qkv), free(r);
}

/* B = 0: nothing read or written; the scratch of B samples is B times that of one. */
static void test_attention_empty(void) {
    sp_attention_forward(NULL, NULL, NULL, NULL, 0, 8, 16, 2);
    sp_attention_backward(NULL, NULL, NULL, NULL, NULL, NULL, 0, 8, 16, 2);
    CHECK(sp_attention_scratch_floats(0, 8, 16, 2) == 0, "attention scratch of no samples");
    const size_t one = sp_attention_scratch_floats(1, 37, 24, 3);
    CHECK(one > 0 && sp_attention_scratch_floats(5, 37, 24, 3) == 5 * one,
          "attention scratch is not per sample: %zu for 1", one);
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
    /* attention: B, T, C, H. T = 1; H = 1; hs 4, 8, 10, 3, 24, 4 (24: more than one
     * 16-column tile); T = 37; T = 50 and 97, past one block of 48 query rows */
    test_attention(1, 1, 4, 1, 1);
    test_attention(2, 5, 12, 3, 1);
    test_attention(2, 9, 8, 1, 1);
    test_attention(1, 37, 20, 2, 1);
    test_attention(2, 16, 6, 2, 1);
    test_attention(1, 50, 24, 1, 1);
    test_attention(1, 97, 8, 2, 1);
    test_attention(2, 33, 16, 2, 8); /* qkv in [-8, 8]: rows nearly one-hot; forward only */
    test_attention_invariance(3, 50, 24, 3);
    test_attention_invariance(2, 130, 64, 2);
    test_attention_empty();
    printf("attention: worst relerr forward %.2g (tolerance %g), dqkv vs FD %.2g (%g)\n",
           worst_fwd_, FWD_TOL, worst_grad_, GRAD_TOL);
    return sp_test_summary("seq_layers");
}
