/* Resampling: global average pooling (nn.AdaptiveAvgPool2d(1) + flatten) and nearest-neighbour
 * upsampling (nn.Upsample(scale_factor=S)). Each plane (n, c) is owned by one thread. */
#include <string.h>

#include "layers/layers.h"

void sp_gap_forward(float *y, const float *x, int B, int C, int P) {
#pragma omp parallel for schedule(static)
    for (int nc = 0; nc < B * C; ++nc) {
        /* in double, in order: a plane can have thousands of pixels, and the mean is rounded
         * once */
        const float *xp = x + (size_t)nc * P;
        double s = 0.0;
        for (int p = 0; p < P; ++p) s += xp[p];
        y[nc] = (float)(s / P);
    }
}

void sp_gap_backward(float *dx, const float *dy, int B, int C, int P) {
#pragma omp parallel for schedule(static)
    for (int nc = 0; nc < B * C; ++nc) { /* every pixel had weight 1/P in the mean */
        const float share = dy[nc] / (float)P;
        float *dxp = dx + (size_t)nc * P;
        for (int p = 0; p < P; ++p) dxp[p] = share;
    }
}

void sp_upsample_forward(float *y, const float *x, int B, int C, int H, int W, int S) {
    const size_t OW = (size_t)W * S, hw = (size_t)H * W, ohw = hw * S * S;
#pragma omp parallel for schedule(static)
    for (int nc = 0; nc < B * C; ++nc) {
        const float *xp = x + (size_t)nc * hw;
        float *yp = y + (size_t)nc * ohw;
        for (int i = 0; i < H; ++i) {
            /* input row i, each pixel S times, becomes output rows i S .. i S + S - 1 */
            float *row = yp + (size_t)i * S * OW;
            for (size_t j = 0; j < OW; ++j) row[j] = xp[(size_t)i * W + j / S];
            for (int r = 1; r < S; ++r) memcpy(row + r * OW, row, sizeof(float) * OW);
        }
    }
}

void sp_upsample_backward(float *dx, const float *dy, int B, int C, int H, int W, int S) {
    const size_t OW = (size_t)W * S, hw = (size_t)H * W, ohw = hw * S * S;
#pragma omp parallel for schedule(static)
    for (int nc = 0; nc < B * C; ++nc) {
        const float *dyp = dy + (size_t)nc * ohw;
        float *dxp = dx + (size_t)nc * hw;
        for (int i = 0; i < H; ++i) {
            /* pixel (i, j) sums its copies (i S + a, j S + b) in the order (a, b) */
            float *drow = dxp + (size_t)i * W;
            for (int j = 0; j < W; ++j) drow[j] = 0.0f;
            for (int a = 0; a < S; ++a) {
                const float *src = dyp + ((size_t)i * S + a) * OW;
                for (int j = 0; j < W; ++j)
                    for (int b = 0; b < S; ++b) drow[j] += src[(size_t)j * S + b];
            }
        }
    }
}
