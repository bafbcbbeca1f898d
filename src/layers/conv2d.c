/* 2-D convolution, nn.Conv2d (square kernel, zero padding), by im2col and GEMM.
 *
 * The batch is unrolled into one matrix col (c*k*k, B*oh*ow) so that forward is one GEMM
 * W (oc, ckk) * col, and the weight gradient is one GEMM whose reduction (K dimension) runs
 * over every pixel of every sample: large, well-shaped GEMMs, and deterministic ones. */
#include <stddef.h>
#include <string.h>

#include "kernels/gemm.h"
#include "layers/layers.h"

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

void sp_im2col(float *col, const float *x, const sp_conv_geom *g, int B) {
    const int k = g->k, s = g->stride, ohw = g->oh * g->ow;
    const size_t ncols = (size_t)B * ohw;
    /* one row of col per (channel, ki, kj): each row owned by one thread */
#pragma omp parallel for schedule(static)
    for (int row = 0; row < g->c * k * k; ++row) {
        const int c = row / (k * k), ki = (row / k) % k, kj = row % k;
        int lo, hi;
        valid_cols_(g, kj, &lo, &hi);
        float *dst = col + (size_t)row * ncols;
        for (int n = 0; n < B; ++n) {
            const float *plane = x + ((size_t)n * g->c + c) * g->h * g->w;
            for (int oy = 0; oy < g->oh; ++oy) {
                const int iy = oy * s - g->pad + ki;
                float *d = dst + (size_t)n * ohw + (size_t)oy * g->ow;
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
}

void sp_col2im(float *dx, const float *dcol, const sp_conv_geom *g, int B) {
    const int k = g->k, s = g->stride, ohw = g->oh * g->ow;
    const size_t ncols = (size_t)B * ohw;
    /* each input plane (n, c) owned by one thread; contributions added in a fixed order:
     * (ki, kj), then output pixel, whatever the thread count */
#pragma omp parallel for schedule(static)
    for (int nc = 0; nc < B * g->c; ++nc) {
        const int n = nc / g->c, c = nc % g->c;
        float *plane = dx + (size_t)nc * g->h * g->w;
        memset(plane, 0, sizeof(float) * (size_t)g->h * g->w);
        for (int ki = 0; ki < k; ++ki)
            for (int kj = 0; kj < k; ++kj) {
                int lo, hi;
                valid_cols_(g, kj, &lo, &hi);
                const float *src = dcol + ((size_t)(c * k + ki) * k + kj) * ncols + (size_t)n * ohw;
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
}

void sp_conv2d_forward(float *y, float *col, float *tmp, const float *x, const float *w,
                       const float *b, const sp_conv_geom *g, int B) {
    if (B == 0) return;
    const int ckk = g->c * g->k * g->k, ohw = g->oh * g->ow;
    const int ncols = B * ohw;
    sp_im2col(col, x, g, B);
    /* tmp (oc, B*ohw) = W (oc, ckk) * col (ckk, B*ohw) */
    sp_gemm(false, false, g->oc, ncols, ckk, 1.0f, w, ckk, col, ncols, 0.0f, tmp, ncols);
    /* y[n][o][p] = tmp[o][n*ohw + p] + b[o]: back to NCHW */
#pragma omp parallel for schedule(static)
    for (int no = 0; no < B * g->oc; ++no) {
        const int n = no / g->oc, o = no % g->oc;
        const float *src = tmp + (size_t)o * ncols + (size_t)n * ohw;
        float *dst = y + (size_t)no * ohw;
        for (int p = 0; p < ohw; ++p) dst[p] = src[p] + b[o];
    }
}

void sp_conv2d_backward(float *dx, float *dw, float *db, float *dyp, float *dcol, const float *dy,
                        const float *col, const float *w, const sp_conv_geom *g, int B) {
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
        if (db)
            db[o] += ((lane[0] + lane[1]) + (lane[2] + lane[3])) +
                     ((lane[4] + lane[5]) + (lane[6] + lane[7]));
    }
    /* each filter weight's blame: dW (oc, ckk) += dyp (oc, B*ohw) * col^T (B*ohw, ckk) */
    if (dw) sp_gemm(false, true, g->oc, ckk, ncols, 1.0f, dyp, ncols, col, ncols, 1.0f, dw, ckk);
    if (!dx) return;
    /* the rest flows down: dcol (ckk, B*ohw) = W^T (ckk, oc) * dyp, then folded back to pixels */
    sp_gemm(true, false, ckk, ncols, g->oc, 1.0f, w, ckk, dyp, ncols, 0.0f, dcol, ncols);
    sp_col2im(dx, dcol, g, B);
}
