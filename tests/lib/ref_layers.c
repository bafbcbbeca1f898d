#include "ref_layers.h"

#include <math.h>
#include <stdlib.h>

void ref_dense(double *y, const double *x, const double *w, const double *b, int B, int in,
               int out) {
    for (int n = 0; n < B; ++n)
        for (int o = 0; o < out; ++o) {
            double s = b[o];
            for (int i = 0; i < in; ++i) s += x[n * in + i] * w[o * in + i];
            y[n * out + o] = s;
        }
}

void ref_conv2d(double *y, const double *x, const double *w, const double *b, int B, int c, int h,
                int wd, int oc, int k, int stride, int pad) {
    const int oh = (h + 2 * pad - k) / stride + 1, ow = (wd + 2 * pad - k) / stride + 1;
    for (int n = 0; n < B; ++n)
        for (int o = 0; o < oc; ++o)
            for (int i = 0; i < oh; ++i)
                for (int j = 0; j < ow; ++j) {
                    double s = b[o];
                    for (int ci = 0; ci < c; ++ci)
                        for (int p = 0; p < k; ++p)
                            for (int q = 0; q < k; ++q) {
                                int yy = i * stride - pad + p, xx = j * stride - pad + q;
                                if (yy < 0 || yy >= h || xx < 0 || xx >= wd) continue;
                                s += w[((o * c + ci) * k + p) * k + q] *
                                     x[((n * c + ci) * h + yy) * wd + xx];
                            }
                    y[((n * oc + o) * oh + i) * ow + j] = s;
                }
}

static void ref_pool_(double *y, const double *x, int B, int c, int h, int w, int k, int stride,
                      int avg) {
    const int oh = (h - k) / stride + 1, ow = (w - k) / stride + 1;
    for (int nc = 0; nc < B * c; ++nc)
        for (int i = 0; i < oh; ++i)
            for (int j = 0; j < ow; ++j) {
                double m = -INFINITY, s = 0;
                for (int p = 0; p < k; ++p)
                    for (int q = 0; q < k; ++q) {
                        double v = x[(nc * h + i * stride + p) * w + j * stride + q];
                        m = v > m ? v : m;
                        s += v;
                    }
                y[(nc * oh + i) * ow + j] = avg ? s / (k * k) : m;
            }
}

void ref_maxpool(double *y, const double *x, int B, int c, int h, int w, int k, int stride) {
    ref_pool_(y, x, B, c, h, w, k, stride, 0);
}

void ref_avgpool(double *y, const double *x, int B, int c, int h, int w, int k, int stride) {
    ref_pool_(y, x, B, c, h, w, k, stride, 1);
}

void ref_act(double *y, const double *x, int64_t n, int act, double slope) {
    for (int64_t i = 0; i < n; ++i) {
        double v = x[i];
        switch (act) {
        case 0:
            y[i] = v > 0 ? v : 0;
            break;
        case 1:
            y[i] = v > 0 ? v : slope * v;
            break;
        case 2:
            y[i] = tanh(v);
            break;
        case 3:
            y[i] = 1 / (1 + exp(-v));
            break;
        case 4:
            y[i] = v * 0.5 * (1 + erf(v / sqrt(2.0)));
            break;
        case 5:
            y[i] = v * 0.5 * (1 + tanh(sqrt(2 / M_PI) * (v + 0.044715 * v * v * v)));
            break;
        default:
            y[i] = NAN;
            break;
        }
    }
}

double ref_xent(const double *z, const int32_t *labels, int B, int C) {
    double total = 0;
    for (int n = 0; n < B; ++n) {
        double se = 0;
        for (int j = 0; j < C; ++j) se += exp(z[n * C + j]);
        total += log(se) - z[n * C + labels[n]];
    }
    return total / B;
}

double ref_mse(const double *o, const double *t, int B, int T) {
    double s = 0;
    for (int i = 0; i < B * T; ++i) s += (o[i] - t[i]) * (o[i] - t[i]);
    return s / (B * T);
}

void ref_batchnorm_train(double *y, double *mean, double *var, const double *x, const double *gamma,
                         const double *beta, int B, int C, int P, double eps) {
    const double M = (double)B * P;
    for (int c = 0; c < C; ++c) {
        double mu = 0, v = 0;
        for (int n = 0; n < B; ++n)
            for (int p = 0; p < P; ++p) mu += x[(n * C + c) * P + p];
        mu /= M;
        for (int n = 0; n < B; ++n)
            for (int p = 0; p < P; ++p) {
                const double d = x[(n * C + c) * P + p] - mu;
                v += d * d;
            }
        v /= M;
        for (int n = 0; n < B; ++n)
            for (int p = 0; p < P; ++p) {
                const int i = (n * C + c) * P + p;
                y[i] = gamma[c] * (x[i] - mu) / sqrt(v + eps) + beta[c];
            }
        if (mean) mean[c] = mu;
        if (var) var[c] = v;
    }
}

void ref_batchnorm_eval(double *y, const double *x, const double *run_mean, const double *run_var,
                        const double *gamma, const double *beta, int B, int C, int P, double eps) {
    for (int n = 0; n < B; ++n)
        for (int c = 0; c < C; ++c)
            for (int p = 0; p < P; ++p) {
                const int i = (n * C + c) * P + p;
                y[i] = gamma[c] * (x[i] - run_mean[c]) / sqrt(run_var[c] + eps) + beta[c];
            }
}

void ref_layernorm(double *y, const double *x, const double *gamma, const double *beta, int B,
                   int D, double eps) {
    for (int n = 0; n < B; ++n) {
        double mu = 0, v = 0;
        for (int d = 0; d < D; ++d) mu += x[n * D + d];
        mu /= D;
        for (int d = 0; d < D; ++d) v += (x[n * D + d] - mu) * (x[n * D + d] - mu);
        v /= D;
        for (int d = 0; d < D; ++d)
            y[n * D + d] = gamma[d] * (x[n * D + d] - mu) / sqrt(v + eps) + beta[d];
    }
}

void ref_concat(double *y, const double *a, const double *b, int B, int Ca, int Cb, int P) {
    for (int n = 0; n < B; ++n)
        for (int c = 0; c < Ca + Cb; ++c)
            for (int p = 0; p < P; ++p)
                y[(n * (Ca + Cb) + c) * P + p] =
                    c < Ca ? a[(n * Ca + c) * P + p] : b[(n * Cb + c - Ca) * P + p];
}

void ref_gap(double *y, const double *x, int B, int C, int P) {
    for (int i = 0; i < B * C; ++i) {
        double s = 0;
        for (int p = 0; p < P; ++p) s += x[i * P + p];
        y[i] = s / P;
    }
}

void ref_upsample(double *y, const double *x, int B, int C, int H, int W, int S) {
    for (int i = 0; i < B * C; ++i)
        for (int r = 0; r < H * S; ++r)
            for (int q = 0; q < W * S; ++q)
                y[(i * H * S + r) * W * S + q] = x[(i * H + r / S) * W + q / S];
}

void ref_embedding(double *y, const double *ids, const double *w, int64_t n, int D) {
    for (int64_t i = 0; i < n; ++i)
        for (int d = 0; d < D; ++d) y[i * D + d] = w[(int64_t)ids[i] * D + d];
}

void ref_pos_embedding(double *y, const double *x, const double *p, int B, int T, int D) {
    for (int b = 0; b < B; ++b)
        for (int t = 0; t < T; ++t)
            for (int d = 0; d < D; ++d) {
                const int64_t i = ((int64_t)b * T + t) * D + d;
                y[i] = x[i] + p[(int64_t)t * D + d];
            }
}

void ref_attention(double *y, double *lse, const double *qkv, int B, int T, int C, int H) {
    const int hs = C / H;
    double *S = malloc((size_t)T * T * sizeof(double));
    for (int b = 0; b < B; ++b)
        for (int h = 0; h < H; ++h) {
            const double *q = qkv + (int64_t)b * T * 3 * C + h * hs, *k = q + C, *v = q + 2 * C;
            for (int i = 0; i < T; ++i)
                for (int j = 0; j < T; ++j) {
                    double s = 0;
                    for (int d = 0; d < hs; ++d) s += q[i * 3 * C + d] * k[j * 3 * C + d];
                    S[i * T + j] = j <= i ? s / sqrt((double)hs) : -INFINITY;
                }
            for (int i = 0; i < T; ++i) {
                double m = -INFINITY, l = 0;
                for (int j = 0; j < T; ++j) m = S[i * T + j] > m ? S[i * T + j] : m;
                for (int j = 0; j < T; ++j) l += exp(S[i * T + j] - m); /* exp(-inf) = 0 */
                for (int j = 0; j < T; ++j) S[i * T + j] = exp(S[i * T + j] - m) / l;
                if (lse) lse[((int64_t)b * H + h) * T + i] = m + log(l);
                for (int d = 0; d < hs; ++d) {
                    double o = 0;
                    for (int j = 0; j < T; ++j) o += S[i * T + j] * v[j * 3 * C + d];
                    y[((int64_t)b * T + i) * C + h * hs + d] = o;
                }
            }
        }
    free(S);
}
