/* Max and average pooling (nn.MaxPool2d, nn.AvgPool2d): no padding, floor mode. */
#include <string.h>

#include "layers/layers.h"

bool sp_pool_geom_init(sp_pool_geom *g, int c, int h, int w, int k, int stride) {
    g->c = c, g->h = h, g->w = w, g->k = k, g->stride = stride;
    if (c < 1 || h < 1 || w < 1 || k < 1 || stride < 1 || k > h || k > w) return false;
    g->oh = (h - k) / stride + 1;
    g->ow = (w - k) / stride + 1;
    return true;
}

void sp_maxpool_forward(float *y, int32_t *argmax, const float *x, const sp_pool_geom *g, int B) {
    const int ohw = g->oh * g->ow;
#pragma omp parallel for schedule(static)
    for (int nc = 0; nc < B * g->c; ++nc) {
        const float *plane = x + (size_t)nc * g->h * g->w;
        for (int oy = 0; oy < g->oh; ++oy)
            for (int ox = 0; ox < g->ow; ++ox) {
                const int y0 = oy * g->stride, x0 = ox * g->stride;
                int best = y0 * g->w + x0;
                for (int i = 0; i < g->k; ++i)
                    for (int j = 0; j < g->k; ++j) {
                        const int idx = (y0 + i) * g->w + x0 + j;
                        /* strict >: the first maximum wins; a NaN input wins too, so that it
                         * propagates as in PyTorch */
                        if (plane[idx] > plane[best] || plane[idx] != plane[idx]) best = idx;
                    }
                const size_t o = (size_t)nc * ohw + (size_t)oy * g->ow + ox;
                y[o] = plane[best];
                argmax[o] = best;
            }
    }
}

void sp_maxpool_backward(float *dx, const float *dy, const int32_t *argmax, const sp_pool_geom *g,
                         int B) {
    const int ohw = g->oh * g->ow;
#pragma omp parallel for schedule(static)
    for (int nc = 0; nc < B * g->c; ++nc) {
        float *plane = dx + (size_t)nc * g->h * g->w;
        memset(plane, 0, sizeof(float) * (size_t)g->h * g->w);
        for (int p = 0; p < ohw; ++p)
            plane[argmax[(size_t)nc * ohw + p]] += dy[(size_t)nc * ohw + p];
    }
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
