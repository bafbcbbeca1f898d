/* Losses: where the blame starts. */
#include <math.h>

#include "layers/layers.h"

void sp_xent_loss(double *loss_sum, int64_t *correct, float *dz, double *row_loss, const float *z,
                  const int32_t *labels, int B, int C, float grad_scale) {
    int64_t hits = 0;
#pragma omp parallel for schedule(static) reduction(+ : hits)
    for (int i = 0; i < B; ++i) {
        const float *zi = z + (size_t)i * C;
        int arg = 0;
        for (int j = 1; j < C; ++j)
            if (zi[j] > zi[arg]) arg = j;
        const float m = zi[arg];
        /* log-sum-exp around the max: exp never overflows */
        double se = 0.0;
        for (int j = 0; j < C; ++j) se += exp((double)(zi[j] - m));
        const double lse = (double)m + log(se);
        row_loss[i] = lse - (double)zi[labels[i]];
        hits += (arg == labels[i]);
        if (dz) {
            /* d loss_i / d z_ij = softmax_ij - [j == y_i]: the output's error, to be passed back */
            float *di = dz + (size_t)i * C;
            for (int j = 0; j < C; ++j)
                di[j] =
                    (float)(exp((double)zi[j] - lse) - (j == labels[i] ? 1.0 : 0.0)) * grad_scale;
        }
    }
    /* the batch sum in row order: independent of the thread count */
    double s = 0.0;
    for (int i = 0; i < B; ++i) s += row_loss[i];
    *loss_sum = s;
    *correct = hits;
}

void sp_xent_seq_loss(double *loss_sum, int64_t *correct, float *dz, double *row_loss,
                      const float *z, const int32_t *labels, int B, int T, int C,
                      float grad_scale) {
    sp_xent_loss(loss_sum, correct, dz, row_loss, z, labels, B * T, C, grad_scale);
    for (int b = 0; b < B; ++b) { /* b's sum reads rows [b T, b T + T), all >= b: in place */
        double s = 0.0;
        for (int t = 0; t < T; ++t) s += row_loss[(size_t)b * T + t];
        row_loss[b] = s;
    }
}

void sp_mse_loss(double *loss_sum, float *dout, double *row_loss, const float *out,
                 const float *target, int B, int T, float grad_scale) {
#pragma omp parallel for schedule(static)
    for (int i = 0; i < B; ++i) {
        double s = 0.0;
        for (int t = 0; t < T; ++t) {
            const size_t o = (size_t)i * T + t;
            const float d = out[o] - target[o];
            s += (double)d * d;
            if (dout) dout[o] = 2.0f * d * grad_scale;
        }
        row_loss[i] = s;
    }
    double s = 0.0;
    for (int i = 0; i < B; ++i) s += row_loss[i];
    *loss_sum = s;
}
