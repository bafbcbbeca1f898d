/* Joins of two branches: the residual add and the channel concatenation (torch.cat, dim=1).
 * Both only move or add values; their backward hands each input its part of the blame. */
#include <string.h>

#include "layers/layers.h"

void sp_add_forward(float *y, const float *a, const float *b, size_t n) {
    /* y may alias a or b: each element is read before it is written */
#pragma omp parallel for simd schedule(static)
    for (size_t i = 0; i < n; ++i) y[i] = a[i] + b[i];
}

void sp_concat_forward(float *y, const float *a, const float *b, int B, int Ca, int Cb, int P) {
    const size_t na = (size_t)Ca * P, nb = (size_t)Cb * P;
#pragma omp parallel for schedule(static)
    for (int n = 0; n < B; ++n) { /* a sample's channels of a, then its channels of b */
        float *yn = y + (size_t)n * (na + nb);
        memcpy(yn, a + (size_t)n * na, sizeof(float) * na);
        memcpy(yn + na, b + (size_t)n * nb, sizeof(float) * nb);
    }
}

void sp_concat_backward(float *da, float *db, const float *dy, int B, int Ca, int Cb, int P) {
    const size_t na = (size_t)Ca * P, nb = (size_t)Cb * P;
#pragma omp parallel for schedule(static)
    for (int n = 0; n < B; ++n) {
        const float *dyn = dy + (size_t)n * (na + nb);
        if (da) memcpy(da + (size_t)n * na, dyn, sizeof(float) * na);
        if (db) memcpy(db + (size_t)n * nb, dyn + na, sizeof(float) * nb);
    }
}
