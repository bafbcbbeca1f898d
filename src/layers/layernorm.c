/* Layer normalization, nn.LayerNorm over the D values of each sample (elementwise affine).
 *
 * Each sample is normalized by its own mean and biased variance, so, unlike batch norm, a
 * sample's output and input gradient depend on that sample alone. The statistics are sums over
 * the sample in order, in double; gamma's and beta's blame are sums over the samples in order,
 * in double, column blocks owned by one thread: the same bits for any thread count. */
#include <math.h>

#include "layers/layers.h"

void sp_ln_forward(float *y, float *mean, float *inv_std, const float *x, const float *gamma,
                   const float *beta, int B, int D, float eps) {
#pragma omp parallel for schedule(static)
    for (int n = 0; n < B; ++n) {
        const float *xn = x + (size_t)n * D;
        float *yn = y + (size_t)n * D;
        double s = 0.0;
        for (int d = 0; d < D; ++d) s += xn[d];
        const double mu = s / D;
        double q = 0.0; /* a second pass around the mean: no cancellation */
        for (int d = 0; d < D; ++d) q += (xn[d] - mu) * (xn[d] - mu);
        const float m = (float)mu, is = (float)(1.0 / sqrt(q / D + (double)eps));
        mean[n] = m, inv_std[n] = is;
        /* xhat = (x - mean) inv_std by this float arithmetic here and in backward */
        for (int d = 0; d < D; ++d) yn[d] = gamma[d] * ((xn[d] - m) * is) + beta[d];
    }
}

void sp_ln_backward(float *dx, float *dgamma, float *dbeta, const float *dy, const float *x,
                    const float *mean, const float *inv_std, const float *gamma, int B, int D,
                    bool acc) {
    if (dx) {
        /* g = gamma dy is the blame on xhat; the sample's mean and variance carry part of it
         * away from each value: dx = inv_std (g - mean(g) - xhat mean(g xhat)) */
#pragma omp parallel for schedule(static)
        for (int n = 0; n < B; ++n) {
            const float m = mean[n], is = inv_std[n];
            const float *xn = x + (size_t)n * D, *dn = dy + (size_t)n * D;
            float *dxn = dx + (size_t)n * D;
            double sg = 0.0, sgx = 0.0;
            for (int d = 0; d < D; ++d) {
                const float xhat = (xn[d] - m) * is, g = gamma[d] * dn[d];
                sg += g;
                sgx += (double)g * xhat;
            }
            const float mg = (float)(sg / D), mgx = (float)(sgx / D);
            for (int d = 0; d < D; ++d) {
                const float xhat = (xn[d] - m) * is, g = gamma[d] * dn[d];
                dxn[d] = is * (g - mg - xhat * mgx);
            }
        }
    }
    if (!dgamma) return;
    /* dgamma = sum_n dy xhat, dbeta = sum_n dy: 32 columns at a time, each sum in sample order
     * in double, rounded once (acc: after adding the old value). The arithmetic of
     * sp_term_sums on sp_ln_grad_terms, so both give the same bits. */
    enum { W = 32 };
#pragma omp parallel for schedule(static)
    for (int d0 = 0; d0 < D; d0 += W) {
        const int nd = D - d0 < W ? D - d0 : W;
        double sg[W] = {0}, sb[W] = {0};
        for (int n = 0; n < B; ++n) {
            const float m = mean[n], is = inv_std[n];
            const float *xn = x + (size_t)n * D + d0, *dn = dy + (size_t)n * D + d0;
            for (int j = 0; j < nd; ++j) {
                const float xhat = (xn[j] - m) * is;
                sg[j] += (double)dn[j] * xhat;
                sb[j] += dn[j];
            }
        }
        for (int j = 0; j < nd; ++j) {
            dgamma[d0 + j] = acc ? (float)((double)dgamma[d0 + j] + sg[j]) : (float)sg[j];
            dbeta[d0 + j] = acc ? (float)((double)dbeta[d0 + j] + sb[j]) : (float)sb[j];
        }
    }
}

void sp_ln_grad_terms(double *t, const float *dy, const float *x, const float *mean,
                      const float *inv_std, int B, int D) {
#pragma omp parallel for schedule(static)
    for (int n = 0; n < B; ++n) {
        const float m = mean[n], is = inv_std[n];
        const float *xn = x + (size_t)n * D, *dn = dy + (size_t)n * D;
        double *tg = t + (size_t)n * 2 * D, *tb = tg + D;
        for (int d = 0; d < D; ++d) {
            tg[d] = (double)dn[d] * ((xn[d] - m) * is);
            tb[d] = dn[d];
        }
    }
}
