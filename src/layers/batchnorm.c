/* Batch normalization, nn.BatchNorm1d (x (B, C), P = 1) and nn.BatchNorm2d (x (B, C, H, W),
 * P = H * W), in training over the whole global batch.
 *
 * A channel's statistics depend on every sample of every rank, so the layer does not compute
 * them itself: it hands the model per-sample terms (sums over the sample's P values), the model
 * adds them up over all samples of all ranks (sp_model_allsum), and the sums come back as the
 * batch mean and variance. The blame goes the same way: per-sample terms of dgamma and dbeta,
 * summed over the batch, and then dx, which needs those sums. Every term is a sum over p in
 * order, in double, owned by one thread: a sample's terms are the same bits for any number of
 * threads and wherever the sample sits in the batch. */
#include <math.h>

#include "layers/layers.h"

void sp_bn_stat_terms(double *t, const float *x, int B, int C, int P) {
    const size_t row = 2 * (size_t)C;
#pragma omp parallel for schedule(static)
    for (int nc = 0; nc < B * C; ++nc) {
        const int n = nc / C, c = nc % C;
        const float *xp = x + (size_t)nc * P;
        double s = 0.0, q = 0.0;
        for (int p = 0; p < P; ++p) {
            const double v = xp[p];
            s += v;
            q += v * v; /* exact: a float's square fits in a double */
        }
        t[(size_t)n * row + c] = s;
        t[(size_t)n * row + C + c] = q;
    }
}

void sp_bn_batch_stats(float *mean, float *inv_std, float *run_mean, float *run_var,
                       const double *s, double M, int C, float eps, float momentum) {
    const double m = momentum;
    for (int c = 0; c < C; ++c) {
        const double mu = s[c] / M;
        /* biased variance E[x^2] - mean^2: in double the cancellation costs a relative
         * 1e-16 mean^2 / var, and a variance rounded below zero is zero (NaN stays NaN) */
        double var = s[C + c] / M - mu * mu;
        if (var < 0.0) var = 0.0;
        mean[c] = (float)mu;
        inv_std[c] = (float)(1.0 / sqrt(var + (double)eps));
        /* PyTorch's running statistics: the variance unbiased, var M / (M - 1) */
        run_mean[c] = (float)((1.0 - m) * run_mean[c] + m * mu);
        run_var[c] = (float)((1.0 - m) * run_var[c] + m * var * (M / (M - 1.0)));
    }
}

void sp_bn_eval_stats(float *mean, float *inv_std, const float *run_mean, const float *run_var,
                      int C, float eps) {
    for (int c = 0; c < C; ++c) {
        mean[c] = run_mean[c];
        inv_std[c] = (float)(1.0 / sqrt((double)run_var[c] + (double)eps));
    }
}

/* Every function below computes xhat = (x - mean) inv_std by this same float arithmetic, so
 * that backward differentiates exactly the xhat that forward used. */
void sp_bn_forward(float *y, const float *x, const float *mean, const float *inv_std,
                   const float *gamma, const float *beta, int B, int C, int P) {
#pragma omp parallel for schedule(static)
    for (int nc = 0; nc < B * C; ++nc) {
        const int c = nc % C;
        const float mu = mean[c], is = inv_std[c], g = gamma[c], b = beta[c];
        const float *xp = x + (size_t)nc * P;
        float *yp = y + (size_t)nc * P;
        for (int p = 0; p < P; ++p) yp[p] = g * ((xp[p] - mu) * is) + b;
    }
}

void sp_bn_grad_terms(double *t, const float *dy, const float *x, const float *mean,
                      const float *inv_std, int B, int C, int P) {
    const size_t row = 2 * (size_t)C;
#pragma omp parallel for schedule(static)
    for (int nc = 0; nc < B * C; ++nc) {
        const int n = nc / C, c = nc % C;
        const float mu = mean[c], is = inv_std[c];
        const float *xp = x + (size_t)nc * P, *dp = dy + (size_t)nc * P;
        double sg = 0.0, sb = 0.0; /* this sample's share of dgamma and of dbeta */
        for (int p = 0; p < P; ++p) {
            const float xhat = (xp[p] - mu) * is;
            sg += (double)dp[p] * xhat; /* exact product of two floats */
            sb += dp[p];
        }
        t[(size_t)n * row + c] = sg;
        t[(size_t)n * row + C + c] = sb;
    }
}

void sp_bn_backward(float *dx, const float *dy, const float *x, const float *mean,
                    const float *inv_std, const float *gamma, const double *s, double M, int B,
                    int C, int P) {
#pragma omp parallel for schedule(static)
    for (int nc = 0; nc < B * C; ++nc) {
        const int c = nc % C;
        const float mu = mean[c], is = inv_std[c], k = gamma[c] * is;
        /* every value moved the batch mean (by 1/M) and the variance (by xhat/M): the blame
         * that reached the whole channel through them, s_beta / M and xhat s_gamma / M, is
         * taken back from each value's own share */
        const float mg = (float)(s[c] / M), mb = (float)(s[C + c] / M);
        const float *xp = x + (size_t)nc * P, *dp = dy + (size_t)nc * P;
        float *dxp = dx + (size_t)nc * P;
        for (int p = 0; p < P; ++p) {
            const float xhat = (xp[p] - mu) * is;
            dxp[p] = k * (dp[p] - mb - xhat * mg);
        }
    }
}

void sp_term_sums(float *g, const double *t, int B, int n, bool acc) {
    /* 32 columns at a time, each column's sum ((0 + t[0][j]) + t[1][j]) + ... in sample order
     * and in double, rounded once to float (acc: after adding the old g) */
    enum { W = 32 };
#pragma omp parallel for schedule(static)
    for (int j0 = 0; j0 < n; j0 += W) {
        const int nj = n - j0 < W ? n - j0 : W;
        double s[W] = {0};
        for (int i = 0; i < B; ++i) {
            const double *r = t + (size_t)i * n + j0;
            for (int j = 0; j < nj; ++j) s[j] += r[j];
        }
        for (int j = 0; j < nj; ++j)
            g[j0 + j] = acc ? (float)((double)g[j0 + j] + s[j]) : (float)s[j];
    }
}
