/*
 * The fast layer kernels are bitwise the plain scalar loops they replaced (kept here as the
 * oracles): maxpool's first-max / NaN rule, im2col and col2im (the order of col2im's sums),
 * the relu select, and the dense bias gradient; for every geometry, including rows wider than
 * a chunk, strides, padding, ties and NaN. Dense and conv2d without a bias are bitwise the
 * same with a zero bias; the normalization, join and resampling layers give the same bits with
 * 1 and 3 threads.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <omp.h>

#include "kernels/gemm.h"
#include "kernels/isa.h"
#include "layers/gelu_tanh.h"
#include "layers/layers.h"
#include "testutil.h"

/* ---- the oracles: the original per-element loops ---- */

static void maxpool_oracle(float *y, int32_t *argmax, const float *x, const sp_pool_geom *g,
                           int B) {
    const int ohw = g->oh * g->ow;
    for (int nc = 0; nc < B * g->c; ++nc) {
        const float *plane = x + (size_t)nc * g->h * g->w;
        for (int oy = 0; oy < g->oh; ++oy)
            for (int ox = 0; ox < g->ow; ++ox) {
                const int y0 = oy * g->stride, x0 = ox * g->stride;
                int best = y0 * g->w + x0;
                for (int i = 0; i < g->k; ++i)
                    for (int j = 0; j < g->k; ++j) {
                        const int idx = (y0 + i) * g->w + x0 + j;
                        if (plane[idx] > plane[best] || plane[idx] != plane[idx]) best = idx;
                    }
                const size_t o = (size_t)nc * ohw + (size_t)oy * g->ow + ox;
                y[o] = plane[best];
                argmax[o] = best;
            }
    }
}

static void im2col_oracle(float *col, const float *x, const sp_conv_geom *g, int B) {
    const int k = g->k, ohw = g->oh * g->ow;
    const size_t ncols = (size_t)B * ohw;
    for (int row = 0; row < g->c * k * k; ++row) {
        const int c = row / (k * k), ki = (row / k) % k, kj = row % k;
        for (int n = 0; n < B; ++n)
            for (int oy = 0; oy < g->oh; ++oy)
                for (int ox = 0; ox < g->ow; ++ox) {
                    const int iy = oy * g->stride - g->pad + ki, ix = ox * g->stride - g->pad + kj;
                    const bool in = iy >= 0 && iy < g->h && ix >= 0 && ix < g->w;
                    col[(size_t)row * ncols + (size_t)n * ohw + (size_t)oy * g->ow + ox] =
                        in ? x[(((size_t)n * g->c + c) * g->h + iy) * g->w + ix] : 0.0f;
                }
    }
}

static void col2im_oracle(float *dx, const float *dcol, const sp_conv_geom *g, int B) {
    const int k = g->k, ohw = g->oh * g->ow;
    const size_t ncols = (size_t)B * ohw;
    memset(dx, 0, sizeof(float) * (size_t)B * g->c * g->h * g->w);
    for (int n = 0; n < B; ++n)
        for (int c = 0; c < g->c; ++c)
            for (int ki = 0; ki < k; ++ki)
                for (int kj = 0; kj < k; ++kj)
                    for (int oy = 0; oy < g->oh; ++oy)
                        for (int ox = 0; ox < g->ow; ++ox) {
                            const int iy = oy * g->stride - g->pad + ki;
                            const int ix = ox * g->stride - g->pad + kj;
                            if (iy < 0 || iy >= g->h || ix < 0 || ix >= g->w) continue;
                            dx[(((size_t)n * g->c + c) * g->h + iy) * g->w + ix] +=
                                dcol[((size_t)(c * k + ki) * k + kj) * ncols + (size_t)n * ohw +
                                     (size_t)oy * g->ow + ox];
                        }
}

static bool same_bits(const void *a, const void *b, size_t bytes) {
    return memcmp(a, b, bytes) == 0;
}

/* x with ties (values on a coarse grid) and, when nan, a few NaNs */
static void fill_ties(float *x, size_t n, uint64_t seed, bool nan) {
    sp_test_fill(x, n, seed, -2.0f, 2.0f);
    for (size_t i = 0; i < n; ++i) x[i] = roundf(x[i] * 2.0f) * 0.5f;
    if (nan)
        for (size_t i = 0; i < n; i += 7 + i % 5) x[i] = NAN;
}

static size_t ohw_(const sp_pool_geom *g) {
    return (size_t)g->oh * g->ow;
}

static void test_maxpool(int B, int c, int h, int w, int k, int s, bool nan) {
    sp_pool_geom g;
    CHECK(sp_pool_geom_init(&g, c, h, w, k, s), "pool geom");
    const size_t nx = (size_t)B * c * h * w, ny = (size_t)B * c * g.oh * g.ow;
    float *x = malloc(nx * sizeof *x), *y1 = malloc(ny * sizeof *y1), *y2 = malloc(ny * sizeof *y2);
    int32_t *a1 = malloc(ny * sizeof *a1), *a2 = malloc(ny * sizeof *a2);
    fill_ties(x, nx, (uint64_t)(h * 31 + w * 7 + k + s + nan), nan);
    sp_maxpool_forward(y1, a1, x, &g, B);
    maxpool_oracle(y2, a2, x, &g, B);
    CHECK(same_bits(y1, y2, ny * sizeof *y1) && same_bits(a1, a2, ny * sizeof *a1),
          "maxpool B=%d c=%d %dx%d k=%d s=%d nan=%d: not the oracle's bits", B, c, h, w, k, s, nan);
    /* backward: the scatter of dy (with -0, NaN) into a zeroed plane; dx starts as garbage */
    float *dy = malloc(ny * sizeof *dy), *d1 = malloc(nx * sizeof *d1),
          *d2 = calloc(nx, sizeof *d2);
    sp_test_fill(dy, ny, (uint64_t)(h + w + k), -1.0f, 1.0f);
    dy[0] = -0.0f;
    if (nan && ny > 1) dy[ny - 1] = NAN;
    for (size_t i = 0; i < nx; ++i) d1[i] = 1234.5f;
    sp_maxpool_backward(d1, dy, a2, &g, B);
    for (size_t o = 0; o < ny; ++o) d2[o / (ohw_(&g)) * h * w + (size_t)a2[o]] += dy[o];
    CHECK(same_bits(d1, d2, nx * sizeof *d1),
          "maxpool backward B=%d c=%d %dx%d k=%d s=%d nan=%d: not the oracle's bits", B, c, h, w, k,
          s, nan);
    free(dy), free(d1), free(d2);
    free(x), free(y1), free(y2), free(a1), free(a2);
}

static void test_im2col(int B, int c, int h, int w, int k, int s, int pad) {
    sp_conv_geom g;
    CHECK(sp_conv_geom_init(&g, c, h, w, 1, k, s, pad), "conv geom");
    const size_t nx = (size_t)B * c * h * w, ncol = (size_t)c * k * k * B * g.oh * g.ow;
    float *x = malloc(nx * sizeof *x), *c1 = malloc(ncol * sizeof *c1),
          *c2 = malloc(ncol * sizeof *c2), *d1 = malloc(nx * sizeof *d1),
          *d2 = malloc(nx * sizeof *d2);
    sp_test_fill(x, nx, (uint64_t)(h * 3 + w + k * 5 + s * 7 + pad), -1.0f, 1.0f);
    sp_im2col(c1, x, &g, B);
    im2col_oracle(c2, x, &g, B);
    CHECK(same_bits(c1, c2, ncol * sizeof *c1), "im2col c=%d %dx%d k=%d s=%d pad=%d", c, h, w, k, s,
          pad);
    sp_test_fill(c1, ncol, 99, -1.0f, 1.0f);
    sp_col2im(d1, c1, &g, B);
    col2im_oracle(d2, c1, &g, B);
    CHECK(same_bits(d1, d2, nx * sizeof *d1), "col2im c=%d %dx%d k=%d s=%d pad=%d", c, h, w, k, s,
          pad);
    free(x), free(c1), free(c2), free(d1), free(d2);
}

static void test_relu(void) {
    enum { N = 1001 };
    float x[N], dy[N], y[N], dx[N];
    fill_ties(x, N, 5, true);
    sp_test_fill(dy, N, 6, -1.0f, 1.0f);
    dy[3] = NAN, x[3] = 1.0f;
    sp_act_forward(y, x, N, SP_ACT_RELU, 0);
    sp_act_backward(dx, dy, x, y, N, SP_ACT_RELU, 0);
    for (int i = 0; i < N; ++i) {
        const float ye = x[i] > 0.0f ? x[i] : 0.0f, de = x[i] > 0.0f ? dy[i] : 0.0f;
        CHECK(same_bits(&y[i], &ye, 4) && same_bits(&dx[i], &de, 4), "relu element %d", i);
    }
    sp_act_backward(dy, dy, x, y, N, SP_ACT_LEAKY_RELU, 0.1f); /* in place */
    CHECK(isnan(dy[3]), "leaky relu in place keeps NaN");
}

/* GPT-2's GELU: every ISA path gives the scalar loop's bits (layers/gelu_tanh.h), over
 * arguments from the far tails (tanh saturated) through 0, NaN and the infinities, across
 * several chunks and a ragged tail; and 1 thread the same as 2. */
static void test_gelu_tanh(void) {
    enum { N = 3 * 4096 + 37 };
    float *x = malloc(N * sizeof *x), *dy = malloc(N * sizeof *dy), *y0 = malloc(N * sizeof *y0),
          *d0 = malloc(N * sizeof *d0), *y = malloc(N * sizeof *y), *d = malloc(N * sizeof *d);
    sp_test_fill(x, N, 7, -12.0f, 12.0f);
    sp_test_fill(dy, N, 8, -1.0f, 1.0f);
    x[0] = 0.0f, x[1] = -0.0f, x[2] = NAN, x[3] = INFINITY, x[4] = -INFINITY, x[5] = 1e-30f;
    x[6] = 60.0f, x[7] = -60.0f, x[8] = 3e38f;
    sp_gelu_tanh_forward_loop(y0, x, N);
    sp_gelu_tanh_backward_loop(d0, dy, x, N);
    const sp_isa isas[3] = {SP_ISA_PORTABLE, SP_ISA_AVX2, SP_ISA_AVX512};
    for (int is = 0; is < 3; ++is) {
        if (!sp_isa_set(isas[is])) {
            printf("gelu_tanh: %s path not on this CPU, not compared\n", sp_isa_name(isas[is]));
            continue;
        }
        for (int t = 1; t <= 2; ++t) {
            omp_set_num_threads(t);
            sp_act_forward(y, x, N, SP_ACT_GELU_TANH, 0);
            sp_act_backward(d, dy, x, y, N, SP_ACT_GELU_TANH, 0);
            CHECK(same_bits(y, y0, N * sizeof *y) && same_bits(d, d0, N * sizeof *d),
                  "gelu_tanh %s, %d threads: the scalar loop's bits", sp_isa_name(isas[is]), t);
        }
    }
    sp_isa_set(sp_isa_best());
    CHECK(y0[0] == 0.0f && isnan(y0[2]) && y0[3] == INFINITY && y0[6] == 60.0f && y0[7] == 0.0f,
          "gelu_tanh: 0, NaN, +inf and the saturated tails (%g %g %g %g %g)", y0[0], y0[2], y0[3],
          y0[6], y0[7]);
    /* against double: tanh within 2e-7 absolute (1 - e over 1 + e: no relative accuracy near
     * 0, as 1 + tanhf(u) in float has none near -1), so GELU within 1e-6 (1 + |x|) */
    double wt = 0, wg = 0;
    for (int i = 0; i < N; ++i) {
        const double u = -20.0 + 40.0 * i / N;
        wt = fmax(wt, fabs(sp_gelu_tanh_t((float)u) - tanh((double)(float)u)));
    }
    for (int i = 9; i < N; ++i) {
        const double v = x[i], u = (double)sp_gelu_tanh_u(x[i]);
        wg = fmax(wg, fabs(y0[i] - 0.5 * v * (1 + tanh(u))) / (1 + fabs(v)));
    }
    CHECK(wt < 2e-7 && wg < 1e-6, "gelu_tanh's tanh within 2e-7 of double (%.3g), GELU %.3g", wt,
          wg);
    free(x), free(dy), free(y0), free(d0), free(y), free(d);
}

static void test_dense_db(int B, int out) {
    float *dy = malloc(sizeof(float) * (size_t)B * out), *x = calloc((size_t)B, sizeof(float)),
          *w = calloc((size_t)out, sizeof(float)), *dw = calloc((size_t)out, sizeof(float)),
          *db = malloc(sizeof(float) * (size_t)out), *de = malloc(sizeof(float) * (size_t)out);
    sp_test_fill(dy, (size_t)B * out, (uint64_t)(B + out), -1.0f, 1.0f);
    for (int j = 0; j < out; ++j) db[j] = de[j] = 0.25f * (float)j;
    sp_dense_backward(NULL, dw, db, dy, x, w, B, 1, out, true);
    for (int j = 0; j < out; ++j) { /* the per-output sum in sample order, then added */
        float s = 0.0f;
        for (int i = 0; i < B; ++i) s += dy[(size_t)i * out + j];
        de[j] += s;
    }
    CHECK(same_bits(db, de, sizeof(float) * (size_t)out), "dense db B=%d out=%d", B, out);
    sp_dense_backward(NULL, dw, db, dy, x, w, B, 1, out, false); /* overwritten: the sums */
    bool same = true;
    for (int j = 0; j < out; ++j) {
        float s = 0.0f;
        for (int i = 0; i < B; ++i) s += dy[(size_t)i * out + j];
        same = same && same_bits(&db[j], &s, sizeof s);
    }
    CHECK(same, "dense db B=%d out=%d without acc", B, out);
    free(dy), free(x), free(w), free(dw), free(db), free(de);
}

/* A sample's conv2d output and input gradient are the same bits in a batch of 1 as at position
 * n of a batch of B (what --deterministic relies on), for 1 and 2 threads; and so are a dense
 * layer's. ckk > 256 takes two of sp_gemm's K blocks. */
static void test_batch_invariance(int B, int c, int h, int w, int oc, int k, int s, int pad) {
    sp_conv_geom g;
    CHECK(sp_conv_geom_init(&g, c, h, w, oc, k, s, pad), "conv geom");
    const size_t chw = (size_t)c * h * w, ohw = (size_t)g.oh * g.ow, ckk = (size_t)c * k * k;
    const size_t nx = (size_t)B * chw, ny = (size_t)B * oc * ohw, nw = (size_t)oc * ckk;
    float *x = malloc(nx * sizeof *x), *dy = malloc(ny * sizeof *dy), *wt = malloc(nw * 4),
          *b = malloc((size_t)oc * 4), *y = malloc(ny * 4), *dx = malloc(nx * 4),
          *col = malloc(ckk * B * ohw * 4), *tmp = malloc(ny * 4),
          *dcol = malloc(ckk * B * ohw * 4), *dw = calloc(nw, 4), *db = calloc((size_t)oc, 4),
          *y1 = malloc(oc * ohw * 4), *dx1 = malloc(chw * 4);
    sp_test_fill(x, nx, 1, -1.0f, 1.0f), sp_test_fill(dy, ny, 2, -1.0f, 1.0f);
    sp_test_fill(wt, nw, 3, -0.5f, 0.5f), sp_test_fill(b, (size_t)oc, 4, -0.5f, 0.5f);
    const int max_threads = omp_get_max_threads();
    for (int threads = 1; threads <= 2; ++threads) {
        omp_set_num_threads(threads);
        sp_conv2d_forward(y, col, tmp, x, wt, b, &g, B);
        sp_conv2d_backward(dx, dw, db, tmp, dcol, dy, col, wt, &g, B, true);
        for (int n = 0; n < B; ++n) {
            sp_conv2d_forward(y1, col, tmp, x + n * chw, wt, b, &g, 1);
            sp_conv2d_backward(dx1, dw, db, tmp, dcol, dy + n * oc * ohw, col, wt, &g, 1, true);
            CHECK(same_bits(y1, y + n * oc * ohw, oc * ohw * 4) &&
                      same_bits(dx1, dx + n * chw, chw * 4),
                  "conv2d c=%d %dx%d oc=%d k=%d: sample %d of %d differs from a batch of 1 "
                  "(%d threads)",
                  c, h, w, oc, k, n, B, threads);
        }
        /* dense: the same x and dy seen as (B, chw) -> (B, oc) */
        const int in = (int)ckk < (int)chw ? (int)ckk : (int)chw;
        sp_dense_forward(y, x, wt, b, B, in, oc);
        sp_dense_backward(dx, dw, db, dy, x, wt, B, in, oc, true);
        for (int n = 0; n < B; ++n) {
            sp_dense_forward(y1, x + (size_t)n * in, wt, b, 1, in, oc);
            sp_dense_backward(dx1, dw, db, dy + (size_t)n * oc, x + (size_t)n * in, wt, 1, in, oc,
                              true);
            CHECK(same_bits(y1, y + (size_t)n * oc, (size_t)oc * 4) &&
                      same_bits(dx1, dx + (size_t)n * in, (size_t)in * 4),
                  "dense %d -> %d: sample %d of %d differs from a batch of 1 (%d threads)", in, oc,
                  n, B, threads);
        }
    }
    omp_set_num_threads(max_threads);
    free(x), free(dy), free(wt), free(b), free(y), free(dx), free(col), free(tmp), free(dcol);
    free(dw), free(db), free(y1), free(dx1);
}

/* The fused relu steps are the same bits as the separate layers: conv2d + relu forward, and
 * maxpool + relu backward (x with ties, zeros, -0 and NaN; dy with -0 and NaN). */
static void test_fused_relu(int B, int c, int h, int w, int k, int s) {
    sp_pool_geom g;
    CHECK(sp_pool_geom_init(&g, c, h, w, k, s), "pool geom");
    const size_t nx = (size_t)B * c * h * w, ny = (size_t)B * c * g.oh * g.ow;
    float *x = malloc(nx * 4), *r = malloc(nx * 4), *y = malloc(ny * 4), *dy = malloc(ny * 4),
          *d = malloc(nx * 4), *d1 = malloc(nx * 4), *d2 = malloc(nx * 4);
    int32_t *arg = malloc(ny * 4);
    fill_ties(x, nx, (uint64_t)(h * 5 + w + k), true);
    x[0] = -0.0f;
    if (nx > 1) x[1] = 0.0f;
    sp_act_forward(r, x, nx, SP_ACT_RELU, 0);
    sp_maxpool_forward(y, arg, r, &g, B);
    sp_test_fill(dy, ny, (uint64_t)(k + s), -1.0f, 1.0f);
    dy[0] = -0.0f;
    if (ny > 2) dy[ny / 2] = NAN;
    sp_maxpool_backward(d, dy, arg, &g, B);
    sp_act_backward(d2, d, x, r, nx, SP_ACT_RELU, 0);
    for (size_t i = 0; i < nx; ++i) d1[i] = 1234.5f;
    sp_maxpool_relu_backward(d1, dy, arg, r, &g, B);
    CHECK(same_bits(d1, d2, nx * 4), "maxpool+relu backward B=%d c=%d %dx%d k=%d s=%d", B, c, h, w,
          k, s);
    free(x), free(r), free(y), free(dy), free(d), free(d1), free(d2), free(arg);

    /* conv2d + relu: c -> 4 channels, 3x3, pad 1 */
    sp_conv_geom cg;
    CHECK(sp_conv_geom_init(&cg, c, h, w, 4, 3, 1, 1), "conv geom");
    const size_t ncy = (size_t)B * 4 * cg.oh * cg.ow, ncol = (size_t)c * 9 * B * cg.oh * cg.ow;
    float *cx = malloc(nx * 4), *cw = malloc((size_t)4 * c * 9 * 4), *cb = malloc(4 * 4),
          *col = malloc(ncol * 4), *y1 = malloc(ncy * 4), *y2 = malloc(ncy * 4),
          *r1 = malloc(ncy * 4), *r2 = malloc(ncy * 4);
    sp_test_fill(cx, nx, 11, -1.0f, 1.0f), sp_test_fill(cw, (size_t)4 * c * 9, 12, -1.0f, 1.0f);
    sp_test_fill(cb, 4, 13, -0.5f, 0.5f);
    cx[0] = NAN;
    sp_conv2d_forward(y1, col, NULL, cx, cw, cb, &cg, B);
    sp_act_forward(r1, y1, ncy, SP_ACT_RELU, 0);
    sp_conv2d_relu_forward(y2, r2, col, NULL, cx, cw, cb, &cg, B);
    CHECK(same_bits(y1, y2, ncy * 4) && same_bits(r1, r2, ncy * 4),
          "conv2d+relu forward B=%d c=%d %dx%d", B, c, h, w);
    /* conv2d + relu + the pool of this case (on 4 channels) */
    sp_pool_geom pg;
    CHECK(sp_pool_geom_init(&pg, 4, cg.oh, cg.ow, k, s), "pool geom");
    const size_t npy = (size_t)B * 4 * pg.oh * pg.ow;
    float *py1 = malloc(npy * 4), *py2 = malloc(npy * 4);
    int32_t *pa1 = malloc(npy * 4), *pa2 = malloc(npy * 4);
    sp_maxpool_forward(py1, pa1, r1, &pg, B);
    sp_conv2d_relu_maxpool_forward(y2, r2, py2, pa2, col, NULL, cx, cw, cb, &cg, &pg, B);
    CHECK(same_bits(y1, y2, ncy * 4) && same_bits(r1, r2, ncy * 4) &&
              same_bits(py1, py2, npy * 4) && same_bits(pa1, pa2, npy * 4),
          "conv2d+relu+maxpool forward B=%d c=%d %dx%d k=%d s=%d", B, c, h, w, k, s);
    free(py1), free(py2), free(pa1), free(pa2);
    free(cx), free(cw), free(cb), free(col), free(y1), free(y2), free(r1), free(r2);
}

/* acc = false overwrites dw and db (filled with NaN first) with the values acc = true adds to
 * zeros: equal as numbers (a zero may differ in sign), for dense and conv2d, 1 and 2 threads. */
static void test_overwrite(int B, int c, int h, int w, int oc, int k) {
    sp_conv_geom g;
    CHECK(sp_conv_geom_init(&g, c, h, w, oc, k, 1, k / 2), "conv geom");
    const size_t chw = (size_t)c * h * w, ohw = (size_t)g.oh * g.ow, ckk = (size_t)c * k * k;
    const size_t nx = (size_t)B * chw, ny = (size_t)B * oc * ohw, nw = (size_t)oc * ckk;
    const size_t ndw = nw > (size_t)oc * chw ? nw : (size_t)oc * chw;
    float *x = malloc(nx * 4), *dy = malloc(ny * 4), *wt = malloc(ndw * 4), *b = calloc(oc, 4),
          *y = malloc(ny * 4), *dx = malloc(nx * 4), *col = malloc(ckk * B * ohw * 4),
          *tmp = malloc(ny * 4), *dcol = malloc(ckk * B * ohw * 4), *dw0 = malloc(ndw * 4),
          *db0 = malloc((size_t)oc * 4), *dw1 = malloc(ndw * 4), *db1 = malloc((size_t)oc * 4);
    sp_test_fill(x, nx, 11, -1.0f, 1.0f), sp_test_fill(dy, ny, 12, -1.0f, 1.0f);
    sp_test_fill(wt, ndw, 13, -0.5f, 0.5f);
    const int max_threads = omp_get_max_threads();
    for (int threads = 1; threads <= 2; ++threads) {
        omp_set_num_threads(threads);
        for (int layer = 0; layer < 2; ++layer) {
            const size_t n = layer ? (size_t)oc * chw : nw;
            memset(dw0, 0, ndw * 4), memset(db0, 0, (size_t)oc * 4);
            for (size_t i = 0; i < ndw; ++i) dw1[i] = NAN;
            for (int i = 0; i < oc; ++i) db1[i] = NAN;
            if (layer == 0) {
                sp_conv2d_forward(y, col, tmp, x, wt, b, &g, B);
                sp_conv2d_backward(dx, dw0, db0, tmp, dcol, dy, col, wt, &g, B, true);
                sp_conv2d_backward(dx, dw1, db1, tmp, dcol, dy, col, wt, &g, B, false);
            } else { /* dense (B, chw) -> (B, oc), dy's first B * oc values */
                sp_dense_backward(dx, dw0, db0, dy, x, wt, B, (int)chw, oc, true);
                sp_dense_backward(dx, dw1, db1, dy, x, wt, B, (int)chw, oc, false);
            }
            size_t bad = 0;
            for (size_t i = 0; i < n; ++i) bad += !(dw1[i] == dw0[i]);
            for (int i = 0; i < oc; ++i) bad += !(db1[i] == db0[i]);
            CHECK(bad == 0,
                  "%s backward with acc=false overwrites dW and db (%zu differ, %d threads)",
                  layer ? "dense" : "conv2d", bad, threads);
        }
    }
    omp_set_num_threads(max_threads);
    free(x), free(dy), free(wt), free(b), free(y), free(dx), free(col), free(tmp), free(dcol);
    free(dw0), free(db0), free(dw1), free(db1);
}

/* No bias (b == NULL) is bitwise a zero bias, for dense and the three conv2d forwards, on a
 * batch whose first sample is all zeros (its products are +-0: the no-bias output must not
 * keep a -0 that adding a +0 bias would have turned into +0). */
static void test_null_bias(int B, int c, int h, int w, int oc) {
    sp_conv_geom g;
    CHECK(sp_conv_geom_init(&g, c, h, w, oc, 3, 1, 1), "conv geom");
    sp_pool_geom pg;
    CHECK(sp_pool_geom_init(&pg, oc, g.oh, g.ow, 2, 2), "pool geom");
    const size_t chw = (size_t)c * h * w, nx = (size_t)B * chw, ohw = (size_t)g.oh * g.ow;
    const size_t ny = (size_t)B * oc * ohw, nw = (size_t)oc * c * 9, ncol = (size_t)c * 9 * B * ohw;
    const size_t npy = (size_t)B * oc * pg.oh * pg.ow, nwd = (size_t)oc * chw;
    float *x = malloc(nx * 4), *wt = malloc((nw > nwd ? nw : nwd) * 4), *zero = calloc(oc, 4),
          *col = malloc(ncol * 4), *y[2], *r[2], *py[2];
    int32_t *pa[2];
    for (int i = 0; i < 2; ++i) {
        y[i] = malloc(ny * 4), r[i] = malloc(ny * 4), py[i] = malloc(npy * 4);
        pa[i] = malloc(npy * 4);
    }
    sp_test_fill(x, nx, 31, -1.0f, 1.0f), sp_test_fill(wt, nw > nwd ? nw : nwd, 32, -1.0f, 1.0f);
    memset(x, 0, chw * 4);
    for (int i = 0; i < 2; ++i) sp_dense_forward(y[i], x, wt, i ? zero : NULL, B, (int)chw, oc);
    CHECK(same_bits(y[0], y[1], (size_t)B * oc * 4), "dense %zu -> %d: no bias is not zero bias",
          chw, oc);
    for (int i = 0; i < 2; ++i) sp_conv2d_forward(y[i], col, NULL, x, wt, i ? zero : NULL, &g, B);
    CHECK(same_bits(y[0], y[1], ny * 4), "conv2d c=%d %dx%d oc=%d: no bias is not zero bias", c, h,
          w, oc);
    for (int i = 0; i < 2; ++i)
        sp_conv2d_relu_forward(y[i], r[i], col, NULL, x, wt, i ? zero : NULL, &g, B);
    CHECK(same_bits(y[0], y[1], ny * 4) && same_bits(r[0], r[1], ny * 4),
          "conv2d+relu c=%d %dx%d oc=%d: no bias is not zero bias", c, h, w, oc);
    for (int i = 0; i < 2; ++i)
        sp_conv2d_relu_maxpool_forward(y[i], r[i], py[i], pa[i], col, NULL, x, wt, i ? zero : NULL,
                                       &g, &pg, B);
    CHECK(same_bits(y[0], y[1], ny * 4) && same_bits(r[0], r[1], ny * 4) &&
              same_bits(py[0], py[1], npy * 4) && same_bits(pa[0], pa[1], npy * 4),
          "conv2d+relu+maxpool c=%d %dx%d oc=%d: no bias is not zero bias", c, h, w, oc);
    for (int i = 0; i < 2; ++i) free(y[i]), free(r[i]), free(py[i]), free(pa[i]);
    free(x), free(wt), free(zero), free(col);
}

/* ---- thread invariance of the normalization, join and resampling layers: every output of
 * forward and backward the same bits with 1 and with 3 threads (3 really running, checked) ---- */

static void threads_(int threads) {
    omp_set_num_threads(threads);
    int team = 0;
#pragma omp parallel
#pragma omp single
    team = omp_get_num_threads();
    CHECK(team == threads, "asked for %d threads, a team has %d", threads, team);
}

static float *filled_(size_t n, uint64_t seed, float lo, float hi) {
    float *v = malloc((n ? n : 1) * sizeof *v);
    sp_test_fill(v, n, seed, lo, hi);
    return v;
}

/* The sums over the samples of per-sample terms t (B, n), in sample order, as the model will. */
static void sum_terms_(double *s, const double *t, int B, int n) {
    for (int j = 0; j < n; ++j) s[j] = 0.0;
    for (int i = 0; i < B; ++i)
        for (int j = 0; j < n; ++j) s[j] += t[(size_t)i * n + j];
}

/* Batch norm in training, the whole chain; per run: y, dx, dgamma|dbeta, mean, inv_std, the
 * running statistics, and both kinds of terms. */
static void test_threads_bn(int B, int C, int P) {
    const size_t n = (size_t)B * C * P, nt = (size_t)B * 2 * C;
    float *x = filled_(n, 61, -1.0f, 3.0f), *dy = filled_(n, 62, -1.0f, 1.0f);
    float *gamma = filled_((size_t)C, 63, 0.5f, 1.5f), *beta = filled_((size_t)C, 64, -1, 1);
    float *y[2], *dx[2], *g[2], *stats[2]; /* stats: mean, inv_std, running mean, running var */
    double *st[2], *gt[2], *s = malloc(2 * (size_t)C * sizeof *s);
    for (int run = 0; run < 2; ++run) {
        y[run] = malloc(n * 4), dx[run] = malloc(n * 4), g[run] = malloc(2 * (size_t)C * 4);
        stats[run] = malloc(4 * (size_t)C * 4);
        st[run] = malloc(nt * sizeof(double)), gt[run] = malloc(nt * sizeof(double));
        float *mean = stats[run], *inv_std = mean + C, *rm = inv_std + C, *rv = rm + C;
        for (int c = 0; c < C; ++c) rm[c] = 0.0f, rv[c] = 1.0f;
        threads_(run ? 3 : 1);
        sp_bn_stat_terms(st[run], x, B, C, P);
        sum_terms_(s, st[run], B, 2 * C);
        sp_bn_batch_stats(mean, inv_std, rm, rv, s, (double)B * P, C, 1e-5f, 0.1f);
        sp_bn_forward(y[run], x, mean, inv_std, gamma, beta, B, C, P);
        sp_bn_grad_terms(gt[run], dy, x, mean, inv_std, B, C, P);
        sum_terms_(s, gt[run], B, 2 * C);
        sp_bn_backward(dx[run], dy, x, mean, inv_std, gamma, s, (double)B * P, B, C, P);
        sp_term_sums(g[run], gt[run], B, 2 * C, false);
    }
    CHECK(same_bits(st[0], st[1], nt * 8) && same_bits(gt[0], gt[1], nt * 8) &&
              same_bits(stats[0], stats[1], 4 * (size_t)C * 4),
          "batchnorm B=%d C=%d P=%d: terms or statistics differ with 1 and 3 threads", B, C, P);
    CHECK(same_bits(y[0], y[1], n * 4) && same_bits(dx[0], dx[1], n * 4) &&
              same_bits(g[0], g[1], 2 * (size_t)C * 4),
          "batchnorm B=%d C=%d P=%d: y, dx or dgamma, dbeta differ with 1 and 3 threads", B, C, P);
    for (int run = 0; run < 2; ++run)
        free(y[run]), free(dx[run]), free(g[run]), free(stats[run]), free(st[run]), free(gt[run]);
    free(x), free(dy), free(gamma), free(beta), free(s);
}

static void test_threads_ln(int B, int D) {
    const size_t n = (size_t)B * D, nt = (size_t)B * 2 * D;
    float *x = filled_(n, 71, -1.0f, 3.0f), *dy = filled_(n, 72, -1.0f, 1.0f);
    float *gamma = filled_((size_t)D, 73, 0.5f, 1.5f), *beta = filled_((size_t)D, 74, -1, 1);
    float *y[2], *dx[2], *g[2], *stats[2]; /* g: dgamma, dbeta; stats: mean, inv_std */
    double *t[2];
    for (int run = 0; run < 2; ++run) {
        y[run] = malloc(n * 4), dx[run] = malloc(n * 4), g[run] = malloc(2 * (size_t)D * 4);
        stats[run] = malloc(2 * (size_t)B * 4), t[run] = malloc(nt * sizeof(double));
        threads_(run ? 3 : 1);
        sp_ln_forward(y[run], stats[run], stats[run] + B, x, gamma, beta, B, D, 1e-5f);
        sp_ln_backward(dx[run], g[run], g[run] + D, dy, x, stats[run], stats[run] + B, gamma, B, D,
                       false);
        sp_ln_grad_terms(t[run], dy, x, stats[run], stats[run] + B, B, D);
    }
    CHECK(same_bits(y[0], y[1], n * 4) && same_bits(stats[0], stats[1], 2 * (size_t)B * 4) &&
              same_bits(dx[0], dx[1], n * 4) && same_bits(g[0], g[1], 2 * (size_t)D * 4) &&
              same_bits(t[0], t[1], nt * 8),
          "layernorm B=%d D=%d: 1 and 3 threads differ", B, D);
    for (int run = 0; run < 2; ++run)
        free(y[run]), free(dx[run]), free(g[run]), free(stats[run]), free(t[run]);
    free(x), free(dy), free(gamma), free(beta);
}

/* add, concat, global average pooling and upsampling, forward and backward */
static void test_threads_join_resample(int B, int Ca, int Cb, int H, int W, int S) {
    const size_t P = (size_t)H * W, na = (size_t)B * Ca * P, nb = (size_t)B * Cb * P;
    const size_t nup = na * S * S;
    float *a = filled_(na, 81, -1, 1), *b = filled_(nb > na ? nb : na, 82, -1, 1);
    float *dy = filled_(nup > na + nb ? nup : na + nb, 83, -1, 1);
    float *out[2]; /* add y | concat y, da, db | gap y, dx | upsample y, dx */
    const size_t nout = na + (na + nb) * 2 + (size_t)B * Ca + na + nup + na;
    for (int run = 0; run < 2; ++run) {
        float *o = out[run] = malloc(nout * 4);
        threads_(run ? 3 : 1);
        sp_add_forward(o, a, b, na), o += na;
        sp_concat_forward(o, a, b, B, Ca, Cb, (int)P), o += na + nb;
        sp_concat_backward(o, o + na, dy, B, Ca, Cb, (int)P), o += na + nb;
        sp_gap_forward(o, a, B, Ca, (int)P), o += (size_t)B * Ca;
        sp_gap_backward(o, dy, B, Ca, (int)P), o += na;
        sp_upsample_forward(o, a, B, Ca, H, W, S), o += nup;
        sp_upsample_backward(o, dy, B, Ca, H, W, S);
    }
    CHECK(same_bits(out[0], out[1], nout * 4),
          "add, concat, gap, upsample B=%d C=%d+%d %dx%d S=%d: 1 and 3 threads differ", B, Ca, Cb,
          H, W, S);
    free(out[0]), free(out[1]), free(a), free(b), free(dy);
}

int main(void) {
    /* B, c, h, w, k, stride: the workloads' 2x2, odd and overlapping windows, rows > 64 */
    const int p[][6] = {{2, 3, 28, 28, 2, 2}, {1, 2, 7, 5, 3, 1},   {2, 1, 9, 8, 3, 2},
                        {1, 1, 5, 150, 2, 2}, {1, 2, 4, 131, 3, 1}, {2, 2, 5, 9, 2, 3},
                        {1, 1, 7, 7, 7, 7},   {3, 2, 4, 4, 1, 1}};
    /* maxpool: the portable loops and, where the CPU has it, the AVX2 2x2/2 kernel (output
     * rows of 1..7, exactly 8, and 8k + r wide; odd input sides) */
    const int p2[][6] = {{1, 2, 17, 17, 2, 2}, {2, 1, 3, 5, 2, 2},   {1, 3, 14, 14, 2, 2},
                         {1, 1, 2, 2, 2, 2},   {1, 1, 16, 33, 2, 2}, {1, 2, 9, 30, 2, 2}};
    const sp_isa isas[2] = {SP_ISA_PORTABLE, sp_isa_best()};
    for (int is = 0; is < 2; ++is) {
        CHECK(sp_isa_set(isas[is]), "set isa %s", sp_isa_name(isas[is]));
        test_overwrite(3, 2, 9, 9, 5, 3);
        test_overwrite(2, 3, 28, 28, 32, 3);
        for (int nan = 0; nan < 2; ++nan) {
            for (size_t i = 0; i < sizeof p / sizeof p[0]; ++i)
                test_maxpool(p[i][0], p[i][1], p[i][2], p[i][3], p[i][4], p[i][5], nan);
            for (size_t i = 0; i < sizeof p2 / sizeof p2[0]; ++i)
                test_maxpool(p2[i][0], p2[i][1], p2[i][2], p2[i][3], p2[i][4], p2[i][5], nan);
        }
        for (size_t i = 0; i < sizeof p2 / sizeof p2[0]; ++i)
            test_fused_relu(p2[i][0], p2[i][1], p2[i][2], p2[i][3], p2[i][4], p2[i][5]);
        test_fused_relu(2, 2, 7, 5, 3, 1); /* overlapping windows: the portable path */
        test_null_bias(3, 2, 9, 9, 5);
        test_null_bias(2, 32, 14, 14, 64);
    }
    /* B, c, h, w, k, stride, pad */
    const int q[][7] = {{2, 1, 28, 28, 3, 1, 1},
                        {1, 3, 14, 14, 3, 1, 1},
                        {2, 2, 9, 9, 3, 2, 1},
                        {1, 2, 8, 7, 1, 1, 0},
                        {2, 1, 6, 6, 5, 2, 2},
                        {2, 3, 5, 5, 2, 3, 0},
                        {1, 1, 3, 3, 3, 1, 2},
                        {1, 1, 4, 70, 5, 1, 3},
                        {1, 2, 6, 11, 3, 3, 4},
                        /* "same" size (stride 1, k = 2 pad + 1), also wider padding than input */
                        {2, 2, 2, 1, 5, 1, 2},
                        {2, 1, 5, 3, 5, 1, 2},
                        {1, 2, 1, 9, 3, 1, 1},
                        {1, 1, 6, 6, 7, 1, 3}};
    for (size_t i = 0; i < sizeof q / sizeof q[0]; ++i)
        test_im2col(q[i][0], q[i][1], q[i][2], q[i][3], q[i][4], q[i][5], q[i][6]);
    /* B, c, h, w, oc, k, stride, pad */
    test_batch_invariance(7, 3, 9, 9, 5, 3, 1, 1);
    test_batch_invariance(5, 32, 14, 14, 64, 3, 1, 1);
    test_batch_invariance(3, 2, 11, 10, 7, 5, 2, 2);
    test_relu();
    test_gelu_tanh();
    /* the new layers with 1 and 3 threads: 2d and 1d batch norm, layer norm over more columns
     * than one block, the joins and resampling */
    const int max_threads = omp_get_max_threads();
    test_threads_bn(6, 7, 99), test_threads_bn(37, 19, 1);
    test_threads_ln(37, 300), test_threads_ln(5, 1);
    test_threads_join_resample(6, 7, 3, 9, 11, 2), test_threads_join_resample(3, 2, 1, 1, 1, 3);
    omp_set_num_threads(max_threads);
    test_dense_db(1, 1), test_dense_db(7, 300), test_dense_db(256, 1024), test_dense_db(3, 17);
    return sp_test_summary("layer_kernels");
}
