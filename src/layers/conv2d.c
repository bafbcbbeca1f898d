/* 2-D convolution, nn.Conv2d (square kernel, zero padding), by im2col and GEMM.
 *
 * The batch is unrolled into one matrix col (c*k*k, B*oh*ow), saved for backward. Forward and
 * the input gradient run sample by sample (one GEMM each, on a slice that is still in cache,
 * writing the sample's NCHW planes in place), so a sample's output and input gradient are the
 * same bits in a batch of any size and at any position in it. The weight gradient is one GEMM
 * whose reduction (K dimension) runs over every pixel of every sample: large, well-shaped and
 * deterministic. */
#include <stddef.h>
#include <string.h>

#include <omp.h>

#include "kernels/gemm.h"
#include "layers/layers.h"
#include "layers/pool_simd.h"

bool sp_conv_geom_init(sp_conv_geom *g, int c, int h, int w, int oc, int k, int stride, int pad) {
    g->c = c, g->h = h, g->w = w, g->oc = oc, g->k = k, g->stride = stride, g->pad = pad;
    if (c < 1 || h < 1 || w < 1 || oc < 1 || k < 1 || stride < 1 || pad < 0) return false;
    if (h + 2 * pad < k || w + 2 * pad < k) return false;
    g->oh = (h + 2 * pad - k) / stride + 1;
    g->ow = (w + 2 * pad - k) / stride + 1;
    return true;
}

/* The output columns ox whose input column ix = ox * stride - pad + kj lies inside [0, w):
 * [*lo, *hi). Empty (lo == hi) when none does. */
static void valid_cols_(const sp_conv_geom *g, int kj, int *lo, int *hi) {
    const int s = g->stride, first = g->pad - kj; /* ix >= 0  <=>  ox * s >= first */
    int l = first <= 0 ? 0 : (first + s - 1) / s;
    /* ix <= w - 1  <=>  ox * s <= w - 1 + pad - kj */
    const int last = g->w - 1 + g->pad - kj;
    int h = last < 0 ? 0 : last / s + 1;
    if (h > g->ow) h = g->ow;
    if (l > h) l = h;
    *lo = l, *hi = h;
}

/* im2col of one sample: block (c*k*k, oh*ow) of col, row stride ld, from x (c, h, w). */
/* Stride 1 and an output the size of the input ("same" padding): row (c, ki, kj) of col is the
 * plane shifted by (di, dj) = (ki - pad, kj - pad), so it is one contiguous copy over the output
 * rows that see the image, then zeros for the other rows and for the columns that fall in the
 * padding (the copy put neighbouring-row pixels there). */
static bool same_size_(const sp_conv_geom *g) {
    return g->stride == 1 && g->oh == g->h && g->ow == g->w;
}

static void im2col_row_same_(float *d, const float *plane, const sp_conv_geom *g, int di, int dj) {
    const int w = g->w, oh = g->oh;
    const int oy0 = di < 0 ? -di : 0, oy1 = di > 0 ? oh - di : oh; /* rows that see the image */
    if (oy0 >= oy1) {
        memset(d, 0, sizeof(float) * (size_t)oh * w);
        return;
    }
    memset(d, 0, sizeof(float) * (size_t)oy0 * w);
    memset(d + (size_t)oy1 * w, 0, sizeof(float) * (size_t)(oh - oy1) * w);
    /* flattened: d[i] = plane[i + di w + dj] for i in [oy0 w, oy1 w), clipped so that the source
     * stays inside the plane (the clipped ends are padding columns, zeroed below) */
    const ptrdiff_t shift = (ptrdiff_t)di * w + dj;
    const ptrdiff_t i0 = (ptrdiff_t)oy0 * w + (dj < 0 ? -dj : 0);
    const ptrdiff_t i1 = (ptrdiff_t)oy1 * w - (dj > 0 ? dj : 0);
    if (i1 > i0) memcpy(d + i0, plane + i0 + shift, sizeof(float) * (size_t)(i1 - i0));
    if (dj == 0) return;
    int c0 = dj < 0 ? 0 : w - dj, c1 = dj < 0 ? -dj : w; /* padding columns [c0, c1) */
    c0 = c0 < 0 ? 0 : c0, c1 = c1 > w ? w : c1;
    for (int ox = c0; ox < c1; ++ox) /* column by column: a few floats per row */
        for (int oy = oy0; oy < oy1; ++oy) d[(size_t)oy * w + ox] = 0.0f;
}

static void im2col_sample_(float *col, size_t ld, const float *x, const sp_conv_geom *g) {
    const int k = g->k, s = g->stride;
    if (same_size_(g)) {
        for (int row = 0; row < g->c * k * k; ++row) {
            const int c = row / (k * k), ki = (row / k) % k, kj = row % k;
            im2col_row_same_(col + (size_t)row * ld, x + (size_t)c * g->h * g->w, g, ki - g->pad,
                             kj - g->pad);
        }
        return;
    }
    for (int row = 0; row < g->c * k * k; ++row) {
        const int c = row / (k * k), ki = (row / k) % k, kj = row % k;
        int lo, hi;
        valid_cols_(g, kj, &lo, &hi);
        const float *plane = x + (size_t)c * g->h * g->w;
        float *dst = col + (size_t)row * ld;
        for (int oy = 0; oy < g->oh; ++oy) {
            const int iy = oy * s - g->pad + ki;
            float *d = dst + (size_t)oy * g->ow;
            if (iy < 0 || iy >= g->h) {
                memset(d, 0, sizeof(float) * (size_t)g->ow);
                continue;
            }
            /* zeros in the padding, the input row in between (contiguous when s == 1) */
            const ptrdiff_t off = (ptrdiff_t)iy * g->w - g->pad + kj; /* of ox = 0 */
            for (int ox = 0; ox < lo; ++ox) d[ox] = 0.0f;
            if (s == 1)
                memcpy(d + lo, plane + off + lo, sizeof(float) * (size_t)(hi - lo));
            else
                for (int ox = lo; ox < hi; ++ox) d[ox] = plane[off + (ptrdiff_t)ox * s];
            for (int ox = hi; ox < g->ow; ++ox) d[ox] = 0.0f;
        }
    }
}

void sp_im2col(float *col, const float *x, const sp_conv_geom *g, int B) {
    const size_t ohw = (size_t)g->oh * g->ow, ncols = (size_t)B * ohw;
#pragma omp parallel for schedule(static)
    for (int n = 0; n < B; ++n)
        im2col_sample_(col + (size_t)n * ohw, ncols, x + (size_t)n * g->c * g->h * g->w, g);
}

/* col2im of one input plane: plane (h, w) = the sum of its entries in the k*k rows src (row
 * stride ld, each (oh, ow)) of its channel, added in a fixed order: (ki, kj), then output pixel. */
/* col2im_plane_ for a "same"-size stride-1 convolution, in the same order and with the same
 * bits: each (ki, kj) adds its row of src to the plane shifted by (di, dj) as one flattened run.
 * The run also adds, at the ends of the image rows, source entries that fall in the padding to
 * the pixels at the other edge of the neighbouring row; those pixels (the |dj| columns that
 * this (ki, kj) gives nothing to) are saved before and put back after, which undoes it exactly. */
#define SP_COL2IM_KEEP 2048
static void col2im_plane_same_(float *plane, const float *src, size_t ld, const sp_conv_geom *g) {
    const int k = g->k, w = g->w, h = g->h, oh = g->oh;
    float keep[SP_COL2IM_KEEP];
    memset(plane, 0, sizeof(float) * (size_t)h * w);
    for (int ki = 0; ki < k; ++ki)
        for (int kj = 0; kj < k; ++kj, src += ld) {
            const int di = ki - g->pad, dj = kj - g->pad;
            if (dj >= w || -dj >= w) continue; /* every column in the padding */
            const int oy0 = di < 0 ? -di : 0, oy1 = di > 0 ? oh - di : oh;
            const ptrdiff_t i0 = (ptrdiff_t)oy0 * w + (dj < 0 ? -dj : 0);
            const ptrdiff_t i1 = (ptrdiff_t)oy1 * w - (dj > 0 ? dj : 0);
            if (oy0 >= oy1 || i1 <= i0) continue;
            const int nd = dj < 0 ? -dj : dj, c0 = dj < 0 ? w + dj : 0;
            const int r0 = oy0 + di - 1 < 0 ? 0 : oy0 + di - 1;
            const int r1 = oy1 + di + 1 > h ? h : oy1 + di + 1;
            const int nr = r1 - r0; /* column by column: a few floats per row */
            for (int c = 0; c < nd; ++c)
                for (int r = 0; r < nr; ++r)
                    keep[c * nr + r] = plane[(size_t)(r0 + r) * w + c0 + c];
            float *t = plane + (ptrdiff_t)di * w + dj;
            for (ptrdiff_t i = i0; i < i1; ++i) t[i] += src[i];
            for (int c = 0; c < nd; ++c)
                for (int r = 0; r < nr; ++r)
                    plane[(size_t)(r0 + r) * w + c0 + c] = keep[c * nr + r];
        }
}

static void col2im_plane_(float *plane, const float *src, size_t ld, const sp_conv_geom *g) {
    const int k = g->k, s = g->stride;
    if (same_size_(g) && (size_t)(g->h + 2) * (size_t)g->pad <= SP_COL2IM_KEEP) {
        col2im_plane_same_(plane, src, ld, g);
        return;
    }
    memset(plane, 0, sizeof(float) * (size_t)g->h * g->w);
    for (int ki = 0; ki < k; ++ki)
        for (int kj = 0; kj < k; ++kj, src += ld) {
            int lo, hi;
            valid_cols_(g, kj, &lo, &hi);
            for (int oy = 0; oy < g->oh; ++oy) {
                const int iy = oy * s - g->pad + ki;
                if (iy < 0 || iy >= g->h) continue;
                const ptrdiff_t off = (ptrdiff_t)iy * g->w - g->pad + kj; /* of ox = 0 */
                const float *srow = src + (size_t)oy * g->ow;
                if (s == 1) {
                    float *prow = plane + off + lo; /* contiguous: vectorizes */
                    const float *sr = srow + lo;
                    for (int ox = 0; ox < hi - lo; ++ox) prow[ox] += sr[ox];
                } else {
                    for (int ox = lo; ox < hi; ++ox) plane[off + (ptrdiff_t)ox * s] += srow[ox];
                }
            }
        }
}

void sp_col2im(float *dx, const float *dcol, const sp_conv_geom *g, int B) {
    const int kk = g->k * g->k;
    const size_t ohw = (size_t)g->oh * g->ow, ncols = (size_t)B * ohw;
    /* each input plane (n, c) owned by one thread */
#pragma omp parallel for schedule(static)
    for (int nc = 0; nc < B * g->c; ++nc) {
        const int n = nc / g->c, c = nc % g->c;
        col2im_plane_(dx + (size_t)nc * g->h * g->w, dcol + (size_t)c * kk * ncols + n * ohw, ncols,
                      g);
    }
}

/* Threads for a loop over the samples of a batch: 1 inside a parallel region. The per-sample
 * loops below run one sample per thread when there are at least as many samples as threads,
 * else one sample at a time with sp_gemm threaded inside; the arithmetic of every value is the
 * same either way (sp_gemm's contract), and the same for a sample in any batch. */
static int sample_threads_(void) {
    return omp_in_parallel() ? 1 : omp_get_max_threads();
}

/* y_n (oc, ohw) = W (oc, ckk) * col_n (ckk, ohw) + b, for sample n: im2col of the sample into
 * its columns of col (kept for backward), then one GEMM that writes the sample's output planes
 * in place (NCHW), and the bias (if any) while they are in cache. */
/* What the fused forward also computes per sample: the relu above the conv (r), and the max pool
 * above that (py, parg); NULL: not fused. */
typedef struct {
    float *r;
    const sp_pool_geom *pg;
    float *py;
    int32_t *parg;
} conv_fused_;

static void conv_forward_sample_(float *y, const conv_fused_ *f, float *col, const float *x,
                                 const float *w, const float *b, const sp_conv_geom *g, int B,
                                 int n) {
    const int ckk = g->c * g->k * g->k, ohw = g->oh * g->ow;
    const int ncols = B * ohw;
    float *col_n = col + (size_t)n * ohw;
    float *y_n = y + (size_t)n * g->oc * ohw;
    im2col_sample_(col_n, (size_t)ncols, x + (size_t)n * g->c * g->h * g->w, g);
    sp_gemm(false, false, g->oc, ohw, ckk, 1.0f, w, ckk, col_n, ncols, 0.0f, y_n, ohw);
    float *r_n = f->r ? f->r + (size_t)n * g->oc * ohw : NULL;
    /* no bias (NULL): the GEMM's sums as they are, the same bits as adding a zero bias (they
     * start from +0, so none is -0) */
    for (int o = 0; o < g->oc; ++o) {
        float *row = y_n + (size_t)o * ohw;
        if (r_n) { /* and the relu above, as sp_act_forward computes it */
            float *rrow = r_n + (size_t)o * ohw;
            if (!b) {
                for (int p = 0; p < ohw; ++p) rrow[p] = row[p] > 0.0f ? row[p] : 0.0f;
                continue;
            }
            const float bo = b[o];
            for (int p = 0; p < ohw; ++p) {
                const float v = row[p] + bo;
                row[p] = v;
                rrow[p] = v > 0.0f ? v : 0.0f;
            }
        } else if (b) {
            const float bo = b[o];
            for (int p = 0; p < ohw; ++p) row[p] += bo;
        }
    }
    if (f->pg) { /* and the pool above, on the sample's planes while they are in cache */
        const size_t pohw = (size_t)f->pg->oh * f->pg->ow;
        sp_maxpool_planes(f->py + (size_t)n * g->oc * pohw, f->parg + (size_t)n * g->oc * pohw,
                          r_n ? r_n : y_n, f->pg, g->oc);
    }
}

static void conv_forward_(float *y, const conv_fused_ *f, float *col, const float *x,
                          const float *w, const float *b, const sp_conv_geom *g, int B) {
    if (B == 0) return;
    if (B >= sample_threads_()) {
#pragma omp parallel for schedule(static)
        for (int n = 0; n < B; ++n) conv_forward_sample_(y, f, col, x, w, b, g, B, n);
    } else {
        for (int n = 0; n < B; ++n) conv_forward_sample_(y, f, col, x, w, b, g, B, n);
    }
}

void sp_conv2d_relu_forward(float *y, float *r, float *col, float *tmp, const float *x,
                            const float *w, const float *b, const sp_conv_geom *g, int B) {
    (void)tmp;
    const conv_fused_ f = {r, NULL, NULL, NULL};
    conv_forward_(y, &f, col, x, w, b, g, B);
}

void sp_conv2d_relu_maxpool_forward(float *y, float *r, float *py, int32_t *parg, float *col,
                                    float *tmp, const float *x, const float *w, const float *b,
                                    const sp_conv_geom *g, const sp_pool_geom *pg, int B) {
    (void)tmp;
    const conv_fused_ f = {r, pg, py, parg};
    conv_forward_(y, &f, col, x, w, b, g, B);
}

void sp_conv2d_forward(float *y, float *col, float *tmp, const float *x, const float *w,
                       const float *b, const sp_conv_geom *g, int B) {
    (void)tmp;
    const conv_fused_ f = {NULL, NULL, NULL, NULL};
    conv_forward_(y, &f, col, x, w, b, g, B);
}

/* dx_n = col2im(W^T dy_n) for sample n: dcol_n (ckk, ohw) = W^T (ckk, oc) * dy_n (oc, ohw), in
 * scratch that stays in cache, then folded back to the sample's pixels. */
static void conv_dx_sample_(float *dx, float *dcol_n, const float *dy, const float *w,
                            const sp_conv_geom *g, int n) {
    const int ckk = g->c * g->k * g->k, ohw = g->oh * g->ow, kk = g->k * g->k;
    sp_gemm(true, false, ckk, ohw, g->oc, 1.0f, w, ckk, dy + (size_t)n * g->oc * ohw, ohw, 0.0f,
            dcol_n, ohw);
    float *dx_n = dx + (size_t)n * g->c * g->h * g->w;
    for (int c = 0; c < g->c; ++c)
        col2im_plane_(dx_n + (size_t)c * g->h * g->w, dcol_n + (size_t)c * kk * ohw, (size_t)ohw,
                      g);
}

void sp_conv2d_backward(float *dx, float *dw, float *db, float *dyp, float *dcol, const float *dy,
                        const float *col, const float *w, const sp_conv_geom *g, int B, bool acc) {
    if (B == 0) return;
    const int ckk = g->c * g->k * g->k, ohw = g->oh * g->ow;
    const int ncols = B * ohw;
    /* dyp (oc, B*ohw): the error signal laid out like the GEMM output; db in the same pass.
     * db's sum over samples and pixels runs in 8 lanes (pixel p goes to lane p mod 8 of every
     * sample's plane), added up in a fixed tree at the end: a vectorizable sum whose order
     * depends only on the geometry, and every channel's sum is owned by one thread. */
#pragma omp parallel for schedule(static)
    for (int o = 0; o < g->oc; ++o) {
        float lane[8] = {0, 0, 0, 0, 0, 0, 0, 0};
        for (int n = 0; n < B; ++n) {
            const float *src = dy + ((size_t)n * g->oc + o) * ohw;
            float *dst = dyp + (size_t)o * ncols + (size_t)n * ohw;
            memcpy(dst, src, sizeof(float) * (size_t)ohw);
            int p = 0;
            for (; p + 8 <= ohw; p += 8)
                for (int l = 0; l < 8; ++l) lane[l] += src[p + l];
            for (int l = 0; p + l < ohw; ++l) lane[l] += src[p + l];
        }
        if (db) {
            const float s = ((lane[0] + lane[1]) + (lane[2] + lane[3])) +
                            ((lane[4] + lane[5]) + (lane[6] + lane[7]));
            db[o] = acc ? db[o] + s : s;
        }
    }
    /* each filter weight's blame: dW (oc, ckk) (+)= dyp (oc, B*ohw) * col^T (B*ohw, ckk) */
    if (dw)
        sp_gemm(false, true, g->oc, ckk, ncols, 1.0f, dyp, ncols, col, ncols, acc ? 1.0f : 0.0f, dw,
                ckk);
    if (!dx) return;
    /* the rest flows down, sample by sample: dx_n = col2im(W^T dy_n), in one (ckk, ohw) slice
     * of dcol per thread */
    const size_t slice = (size_t)ckk * ohw;
    if (B >= sample_threads_()) {
#pragma omp parallel for schedule(static)
        for (int n = 0; n < B; ++n)
            conv_dx_sample_(dx, dcol + (size_t)omp_get_thread_num() * slice, dy, w, g, n);
    } else {
        for (int n = 0; n < B; ++n) conv_dx_sample_(dx, dcol, dy, w, g, n);
    }
}
