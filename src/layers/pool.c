/* Max and average pooling (nn.MaxPool2d, nn.AvgPool2d): no padding, floor mode. */
#include <string.h>

#include "kernels/gemm.h"
#include "kernels/isa.h"
#include "layers/layers.h"
#include "layers/pool_simd.h"

bool sp_pool_geom_init(sp_pool_geom *g, int c, int h, int w, int k, int stride) {
    g->c = c, g->h = h, g->w = w, g->k = k, g->stride = stride;
    if (c < 1 || h < 1 || w < 1 || k < 1 || stride < 1 || k > h || k > w) return false;
    g->oh = (h - k) / stride + 1;
    g->ow = (w - k) / stride + 1;
    return true;
}

/* Chunk of one output row processed at a time (the running max and its index live on the
 * stack). */
#define SP_POOL_CHUNK 64

/* One chunk of n <= SP_POOL_CHUNK outputs of a row, whose first window starts at plane[base0].
 * Every output visits its window in row-major order, as one scalar loop would: strict > keeps
 * the first maximum; a NaN wins (and the last NaN stays), so that NaN propagates as in
 * PyTorch. Written as selects over the outputs of the row with the window position outermost,
 * so that the comparisons vectorize; inlined with constant k and s for the common 2x2/2. */
static inline __attribute__((always_inline)) void maxpool_chunk_(float *y, int32_t *arg_out,
                                                                 const float *plane, int base0,
                                                                 int n, int w, int k, int s) {
    float best[SP_POOL_CHUNK];
    int32_t arg[SP_POOL_CHUNK];
    for (int o = 0; o < n; ++o) {
        best[o] = plane[base0 + o * s];
        arg[o] = base0 + o * s;
    }
    for (int i = 0; i < k; ++i)
        for (int j = 0; j < k; ++j) {
            if (i == 0 && j == 0) continue; /* the start value: v > v is false */
            const int base = base0 + i * w + j;
            for (int o = 0; o < n; ++o) {
                const float v = plane[base + o * s];
                const bool take = v > best[o] || v != v;
                best[o] = take ? v : best[o];
                arg[o] = take ? base + o * s : arg[o];
            }
        }
    for (int o = 0; o < n; ++o) {
        y[o] = best[o];
        arg_out[o] = arg[o];
    }
}

/* One plane (h, w) -> (oh, ow). */
static void maxpool_plane_(float *yrow, int32_t *arow, const float *plane, const sp_pool_geom *g,
                           bool simd) {
    const int k = g->k, s = g->stride, w = g->w;
#if defined(__x86_64__) && defined(__GNUC__)
    if (simd) {
        sp_maxpool2x2_plane_avx2(yrow, arow, plane, w, g->oh, g->ow);
        return;
    }
#else
    (void)simd;
#endif
    for (int oy = 0; oy < g->oh; ++oy, yrow += g->ow, arow += g->ow)
        for (int ox0 = 0; ox0 < g->ow; ox0 += SP_POOL_CHUNK) {
            const int n = g->ow - ox0 < SP_POOL_CHUNK ? g->ow - ox0 : SP_POOL_CHUNK;
            const int base0 = oy * s * w + ox0 * s;
            if (k == 2 && s == 2)
                maxpool_chunk_(yrow + ox0, arow + ox0, plane, base0, n, w, 2, 2);
            else
                maxpool_chunk_(yrow + ox0, arow + ox0, plane, base0, n, w, k, s);
        }
}

/* 2x2/2 (the common case) with AVX2 when the GEMM may use it (same bits) */
static bool maxpool_simd_(const sp_pool_geom *g) {
#if defined(__x86_64__) && defined(__GNUC__)
    return g->k == 2 && g->stride == 2 && sp_isa_active() >= SP_ISA_AVX2;
#else
    (void)g;
    return false;
#endif
}

void sp_maxpool_planes(float *y, int32_t *argmax, const float *x, const sp_pool_geom *g,
                       int nplanes) {
    const bool simd = maxpool_simd_(g);
    const size_t ohw = (size_t)g->oh * g->ow, hw = (size_t)g->h * g->w;
    for (int p = 0; p < nplanes; ++p)
        maxpool_plane_(y + p * ohw, argmax + p * ohw, x + p * hw, g, simd);
}

void sp_maxpool_forward(float *y, int32_t *argmax, const float *x, const sp_pool_geom *g, int B) {
    const bool simd = maxpool_simd_(g);
    const size_t ohw = (size_t)g->oh * g->ow, hw = (size_t)g->h * g->w;
#pragma omp parallel for schedule(static)
    for (int nc = 0; nc < B * g->c; ++nc)
        maxpool_plane_(y + nc * ohw, argmax + nc * ohw, x + nc * hw, g, simd);
}

void sp_maxpool_relu_backward(float *dx, const float *dy, const int32_t *argmax, const float *r,
                              const sp_pool_geom *g, int B) {
    const int ohw = g->oh * g->ow;
    const size_t hw = (size_t)g->h * g->w;
#if defined(__x86_64__) && defined(__GNUC__)
    const bool simd = g->k == 2 && g->stride == 2 && sp_isa_active() >= SP_ISA_AVX2;
#endif
#pragma omp parallel for schedule(static)
    for (int nc = 0; nc < B * g->c; ++nc) {
        float *plane = dx + (size_t)nc * hw;
        const float *rp = r ? r + (size_t)nc * hw : NULL;
#if defined(__x86_64__) && defined(__GNUC__)
        if (simd) { /* written densely, no zeroing pass (same bits) */
            sp_maxpool2x2_back_plane_avx2(plane, dy + (size_t)nc * ohw, argmax + (size_t)nc * ohw,
                                          rp, g->h, g->w, g->oh, g->ow);
            continue;
        }
#endif
        memset(plane, 0, sizeof(float) * hw);
        for (int p = 0; p < ohw; ++p)
            plane[argmax[(size_t)nc * ohw + p]] += dy[(size_t)nc * ohw + p];
        if (rp) /* the relu's backward, as sp_act_backward computes it */
            for (size_t i = 0; i < hw; ++i) plane[i] = rp[i] > 0.0f ? plane[i] : 0.0f;
    }
}

void sp_maxpool_backward(float *dx, const float *dy, const int32_t *argmax, const sp_pool_geom *g,
                         int B) {
    sp_maxpool_relu_backward(dx, dy, argmax, NULL, g, B);
}

void sp_avgpool_forward(float *y, const float *x, const sp_pool_geom *g, int B) {
    const int ohw = g->oh * g->ow;
    const float inv = 1.0f / (float)(g->k * g->k);
#pragma omp parallel for schedule(static)
    for (int nc = 0; nc < B * g->c; ++nc) {
        const float *plane = x + (size_t)nc * g->h * g->w;
        for (int oy = 0; oy < g->oh; ++oy)
            for (int ox = 0; ox < g->ow; ++ox) {
                float s = 0.0f;
                for (int i = 0; i < g->k; ++i)
                    for (int j = 0; j < g->k; ++j)
                        s += plane[(oy * g->stride + i) * g->w + ox * g->stride + j];
                y[(size_t)nc * ohw + (size_t)oy * g->ow + ox] = s * inv;
            }
    }
}

void sp_avgpool_backward(float *dx, const float *dy, const sp_pool_geom *g, int B) {
    const int ohw = g->oh * g->ow;
    const float inv = 1.0f / (float)(g->k * g->k);
#pragma omp parallel for schedule(static)
    for (int nc = 0; nc < B * g->c; ++nc) {
        float *plane = dx + (size_t)nc * g->h * g->w;
        memset(plane, 0, sizeof(float) * (size_t)g->h * g->w);
        for (int oy = 0; oy < g->oh; ++oy)
            for (int ox = 0; ox < g->ow; ++ox) {
                const float share = dy[(size_t)nc * ohw + (size_t)oy * g->ow + ox] * inv;
                for (int i = 0; i < g->k; ++i)
                    for (int j = 0; j < g->k; ++j)
                        plane[(oy * g->stride + i) * g->w + ox * g->stride + j] += share;
            }
    }
}
