/* Independent double-precision reference layers for the tests: direct loops written from the
 * definitions (direct convolution, not im2col), used as the oracle for forward values and, by
 * central finite differences, for gradients. */
#ifndef SP_TEST_REF_LAYERS_H
#define SP_TEST_REF_LAYERS_H

#include <stdint.h>

void ref_dense(double *y, const double *x, const double *w, const double *b, int B, int in,
               int out);
void ref_conv2d(double *y, const double *x, const double *w, const double *b, int B, int c, int h,
                int wd, int oc, int k, int stride, int pad);
void ref_maxpool(double *y, const double *x, int B, int c, int h, int w, int k, int stride);
void ref_avgpool(double *y, const double *x, int B, int c, int h, int w, int k, int stride);
/* act: the values of sp_act: 0 relu, 1 leaky_relu, 2 tanh, 3 sigmoid, 4 gelu (erf), 5 gelu_tanh
 * (GPT-2's); any other value gives NaN */
void ref_act(double *y, const double *x, int64_t n, int act, double slope);
/* batch norm in training (nn.BatchNorm1d/2d, x (B, C, P)): each channel normalized with the
 * mean and biased variance of its B*P values, then gamma xhat + beta; mean and var (C) are
 * returned when not NULL */
void ref_batchnorm_train(double *y, double *mean, double *var, const double *x, const double *gamma,
                         const double *beta, int B, int C, int P, double eps);
/* batch norm in evaluation: the running statistics in place of the batch's */
void ref_batchnorm_eval(double *y, const double *x, const double *run_mean, const double *run_var,
                        const double *gamma, const double *beta, int B, int C, int P, double eps);
/* layer norm over the D values of each sample (biased variance), then gamma xhat + beta */
void ref_layernorm(double *y, const double *x, const double *gamma, const double *beta, int B,
                   int D, double eps);
/* token embedding: y (n, D) = the rows ids[i] (integers in [0, V), held as doubles) of w (V, D) */
void ref_embedding(double *y, const double *ids, const double *w, int64_t n, int D);
/* position embedding: y (B, T, D) = x (B, T, D) + p (T, D) broadcast over the samples */
void ref_pos_embedding(double *y, const double *x, const double *p, int B, int T, int D);
/* causal multi-head self-attention core, naively: per sample and head h (columns
 * [h hs, (h+1) hs) of q, k, v in qkv (B, T, 3C), hs = C / H), the full S = q k^T / sqrt(hs),
 * -inf above the diagonal, a softmax over each row, y = P v with the heads side by side
 * (y (B, T, C)); lse (B, H, T), the log-sum-exp of each masked row, when not NULL */
void ref_attention(double *y, double *lse, const double *qkv, int B, int T, int C, int H);
/* torch.cat([a, b], dim=1) of a (B, Ca, P) and b (B, Cb, P) */
void ref_concat(double *y, const double *a, const double *b, int B, int Ca, int Cb, int P);
/* global average pooling: y (B, C) = the mean of each plane of x (B, C, P) */
void ref_gap(double *y, const double *x, int B, int C, int P);
/* nearest-neighbour upsampling by S: y (B, C, H S, W S) */
void ref_upsample(double *y, const double *x, int B, int C, int H, int W, int S);
/* mean losses over the batch, as PyTorch's defaults */
double ref_xent(const double *z, const int32_t *labels, int B, int C);
double ref_mse(const double *o, const double *t, int B, int T);

#endif
