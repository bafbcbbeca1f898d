#include "optim/clip.h"

#include <math.h>

/* Chunk sums are computed this many chunks at a time (in parallel) into a stack array, then
 * added in chunk order: no allocation, and the order never depends on the thread count. */
#define SP_GRAD_NORM_BLOCK 64

/* Sum of squares of g[0..len) in double, in index order. Products of floats are exact in
 * double, so only the additions round. */
static double chunk_sumsq_(const float *g, size_t len) {
    double s = 0.0;
    for (size_t i = 0; i < len; ++i) {
        double x = (double)g[i];
        s += x * x;
    }
    return s;
}

double sp_grad_norm(const float *g, size_t n) {
    size_t nchunks = (n + SP_GRAD_NORM_CHUNK - 1) / SP_GRAD_NORM_CHUNK;
    double total = 0.0;
    double part[SP_GRAD_NORM_BLOCK];
    for (size_t c0 = 0; c0 < nchunks; c0 += SP_GRAD_NORM_BLOCK) {
        size_t nb = nchunks - c0 < SP_GRAD_NORM_BLOCK ? nchunks - c0 : SP_GRAD_NORM_BLOCK;
#pragma omp parallel for schedule(static) if (nb > 1)
        for (size_t k = 0; k < nb; ++k) {
            size_t first = (c0 + k) * SP_GRAD_NORM_CHUNK;
            size_t len = n - first < SP_GRAD_NORM_CHUNK ? n - first : SP_GRAD_NORM_CHUNK;
            part[k] = chunk_sumsq_(g + first, len);
        }
        for (size_t k = 0; k < nb; ++k) total += part[k];
    }
    return sqrt(total);
}

double sp_clip_grad_norm(float *g, size_t n, double max_norm) {
    double norm = sp_grad_norm(g, n);
    if (isfinite(norm) && norm > max_norm) {
        const float coef = (float)(max_norm / (norm + 1e-6));
#pragma omp parallel for schedule(static) if (n >= 32768)
        for (size_t i = 0; i < n; ++i) g[i] = g[i] * coef;
    }
    return norm;
}
