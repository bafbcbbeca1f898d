/* Token and learned position embeddings (nn.Embedding, GPT-2's wte and wpe).
 *
 * The token embedding's blame is a scatter-add: a row of W used by several positions takes the
 * sum of their blame. Threads own 16-column strips of dW (one cache line of floats) and each
 * walks all the positions in order, so every element of dW is the same chain of additions in
 * position order for any number of threads. The position embedding's blame is a sum over the
 * samples, split over its elements. */
#include <math.h>
#include <string.h>

#include "layers/layers.h"

enum { STRIP = 16 };

void sp_embedding_forward(float *y, const float *ids, const float *w, size_t n, int D) {
    const size_t d = (size_t)D;
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; ++i) memcpy(y + i * d, w + (size_t)ids[i] * d, d * sizeof(float));
}

int64_t sp_embedding_check(const float *ids, size_t n, int V) {
    for (size_t i = 0; i < n; ++i) {
        const float t = ids[i];
        /* false for NaN too */
        if (!(t >= 0.0f && t < (float)V && t == floorf(t))) return (int64_t)i;
    }
    return -1;
}

void sp_embedding_backward(float *dw, const float *dy, const float *ids, size_t n, int V, int D,
                           bool acc) {
    const size_t d = (size_t)D;
    if (!acc) {
#pragma omp parallel for schedule(static)
        for (int v = 0; v < V; ++v) memset(dw + (size_t)v * d, 0, d * sizeof(float));
    }
    const int nstrip = (D + STRIP - 1) / STRIP;
#pragma omp parallel for schedule(static)
    for (int s = 0; s < nstrip; ++s) {
        const size_t c0 = (size_t)s * STRIP, nc = d - c0 < STRIP ? d - c0 : STRIP;
        for (size_t i = 0; i < n; ++i) {
            float *restrict g = dw + (size_t)ids[i] * d + c0;
            const float *restrict e = dy + i * d + c0;
            for (size_t c = 0; c < nc; ++c) g[c] += e[c];
        }
    }
}

void sp_pos_embedding_forward(float *y, const float *x, const float *p, int B, int T, int D) {
    const size_t d = (size_t)D, rows = (size_t)B * (size_t)T;
#pragma omp parallel for schedule(static)
    for (size_t r = 0; r < rows; ++r) {
        const float *pr = p + (r % (size_t)T) * d, *xr = x + r * d;
        float *yr = y + r * d;
        for (size_t c = 0; c < d; ++c) yr[c] = xr[c] + pr[c];
    }
}

/* dp[e] = (acc ? dp[e] : 0) + s, s = ((0 + dy[0][e]) + dy[1][e]) + ... + dy[B-1][e]: the sum of
 * the samples' blame first, so that acc only adds it (as sp_col_sums does for a bias) */
void sp_pos_embedding_backward(float *dp, const float *dy, int B, int T, int D, bool acc) {
    enum { W = 64 };
    const size_t td = (size_t)T * (size_t)D;
    const size_t nb = (td + W - 1) / W;
#pragma omp parallel for schedule(static)
    for (size_t blk = 0; blk < nb; ++blk) {
        const size_t e0 = blk * W, ne = td - e0 < W ? td - e0 : W;
        float s[W] = {0};
        for (int b = 0; b < B; ++b) {
            const float *restrict r = dy + (size_t)b * td + e0;
            for (size_t e = 0; e < ne; ++e) s[e] += r[e];
        }
        float *o = dp + e0;
        for (size_t e = 0; e < ne; ++e) o[e] = acc ? o[e] + s[e] : s[e];
    }
}
