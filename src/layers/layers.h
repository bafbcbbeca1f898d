/*
 * Layers: backpropagation as assigning blame.
 *
 * Every layer is a pair. `_forward` computes the layer's output from its input. `_backward`
 * receives the error signal dy = dLoss/dy arriving from the layer above, takes the layer's
 * share of the blame — the gradient of its own parameters, ADDED (+=) into the gradient slab —
 * and passes the rest down as dx = dLoss/dx for the layer below (skipped when dx is NULL, as
 * for the first layer).
 *
 * Conventions: arguments come in the order outputs, saved values, inputs, parameters, sizes;
 * every pointer is commented with its shape; B is the number of samples in this batch (may
 * be 0). Layouts are PyTorch's: activations NCHW, Linear weight (out, in), conv weight
 * (out_c, in_c, kh, kw).
 *
 * Threads own outputs: every OpenMP loop here is split over output elements (rows, channels,
 * planes), never over a reduction, so each value is computed by the same arithmetic for any
 * number of threads — results are bitwise identical for 1, 2 or 64 threads.
 */
#ifndef SP_LAYERS_H
#define SP_LAYERS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- dense (nn.Linear): y = x W^T + b ---- */
void sp_dense_forward(float *y,       /* (B, out) */
                      const float *x, /* (B, in) */
                      const float *w, /* (out, in) */
                      const float *b, /* (out) or NULL: no bias */
                      int B, int in, int out);
/* dW (+)= dy^T x;  db (+)= sum_b dy;  dx = dy W. With acc the parameter gradients are added
 * to dw and db, else they overwrite them (no pass zeroing them first, no read of dw). */
void sp_dense_backward(float *dx,       /* (B, in) or NULL */
                       float *dw,       /* (out, in) or NULL: not computed */
                       float *db,       /* (out) or NULL: not computed */
                       const float *dy, /* (B, out) */
                       const float *x,  /* (B, in) */
                       const float *w,  /* (out, in) */
                       int B, int in, int out, bool acc);
/* s[j] = ((0 + x[0][j]) + x[1][j]) + ... + x[rows-1][j] for j < n: column sums of rows of x
 * (row stride ld), each in row order (the bias gradient's arithmetic, of a batch or of one
 * micro-batch), accumulated in registers over 32 columns at a time. One thread. */
void sp_col_sums(float *restrict s,       /* (n) */
                 const float *restrict x, /* (rows, ld) */
                 int rows, int n, size_t ld);

/* ---- conv2d (nn.Conv2d, square kernel, zero padding), by im2col + GEMM ---- */
typedef struct sp_conv_geom {
    int c, h, w;            /* input channels and size */
    int oc, k, stride, pad; /* output channels, kernel size, stride, zero padding */
    int oh, ow;             /* output size: (h + 2 pad - k) / stride + 1 */
} sp_conv_geom;
/* Fill in oh, ow; false if the kernel does not fit the padded input. */
bool sp_conv_geom_init(sp_conv_geom *g, int c, int h, int w, int oc, int k, int stride, int pad);

/* col[(c k k), (B oh ow)]: every receptive field unrolled as a column (zeros in the padding). */
void sp_im2col(float *col,     /* (c*k*k, B*oh*ow) */
               const float *x, /* (B, c, h, w) */
               const sp_conv_geom *g, int B);
/* The adjoint of im2col: dx = sum of the column entries each input pixel was copied into. */
void sp_col2im(float *dx,         /* (B, c, h, w), overwritten */
               const float *dcol, /* (c*k*k, B*oh*ow) */
               const sp_conv_geom *g, int B);

/* y = W * col + b, with col saved for backward. tmp: scratch, unused at present. */
void sp_conv2d_forward(float *y,       /* (B, oc, oh, ow) */
                       float *col,     /* saved: (c*k*k, B*oh*ow) */
                       float *tmp,     /* scratch: (oc, B*oh*ow) */
                       const float *x, /* (B, c, h, w) */
                       const float *w, /* (oc, c, k, k) */
                       const float *b, /* (oc) or NULL: no bias */
                       const sp_conv_geom *g, int B);
/* sp_conv2d_forward and then, fused, the relu above it: r = max(y, 0) exactly as
 * sp_act_forward(SP_ACT_RELU) computes it (y is still written: relu's backward is defined on it). */
void sp_conv2d_relu_forward(float *y,       /* (B, oc, oh, ow) */
                            float *r,       /* (B, oc, oh, ow) */
                            float *col,     /* saved: (c*k*k, B*oh*ow) */
                            float *tmp,     /* scratch: (oc, B*oh*ow), unused at present */
                            const float *x, /* (B, c, h, w) */
                            const float *w, /* (oc, c, k, k) */
                            const float *b, /* (oc) or NULL: no bias */
                            const sp_conv_geom *g, int B);
struct sp_pool_geom; /* below */
/* and with the max pool above the relu fused too: (py, parg) = sp_maxpool_forward(r), pg's
 * channels and size those of r */
void sp_conv2d_relu_maxpool_forward(float *y,       /* (B, oc, oh, ow) */
                                    float *r,       /* (B, oc, oh, ow) */
                                    float *py,      /* (B, oc, pg->oh, pg->ow) */
                                    int32_t *parg,  /* saved: (B, oc, pg->oh, pg->ow) */
                                    float *col,     /* saved: (c*k*k, B*oh*ow) */
                                    float *tmp,     /* scratch, unused at present */
                                    const float *x, /* (B, c, h, w) */
                                    const float *w, /* (oc, c, k, k) */
                                    const float *b, /* (oc) or NULL: no bias */
                                    const sp_conv_geom *g, const struct sp_pool_geom *pg, int B);
/* dW (+)= dy * col^T;  db (+)= sum over samples and pixels of dy;  dx = col2im(W^T dy); acc
 * as sp_dense_backward */
void sp_conv2d_backward(float *dx,        /* (B, c, h, w) or NULL */
                        float *dw,        /* (oc, c, k, k) or NULL: not computed */
                        float *db,        /* (oc) or NULL: not computed */
                        float *dyp,       /* scratch: (oc, B*oh*ow), dy re-laid out (always) */
                        float *dcol,      /* scratch: (c*k*k, B*oh*ow) */
                        const float *dy,  /* (B, oc, oh, ow) */
                        const float *col, /* saved by forward: (c*k*k, B*oh*ow) */
                        const float *w,   /* (oc, c, k, k) */
                        const sp_conv_geom *g, int B, bool acc);

/* ---- pooling (nn.MaxPool2d / nn.AvgPool2d, no padding, floor mode) ---- */
typedef struct sp_pool_geom {
    int c, h, w, k, stride, oh, ow;
} sp_pool_geom;
bool sp_pool_geom_init(sp_pool_geom *g, int c, int h, int w, int k, int stride);

void sp_maxpool_forward(float *y,        /* (B, c, oh, ow) */
                        int32_t *argmax, /* saved: (B, c, oh, ow) index into the input plane */
                        const float *x,  /* (B, c, h, w) */
                        const sp_pool_geom *g, int B);
/* the blame goes to the input that won the max */
void sp_maxpool_backward(float *dx,             /* (B, c, h, w), overwritten */
                         const float *dy,       /* (B, c, oh, ow) */
                         const int32_t *argmax, /* (B, c, oh, ow) */
                         const sp_pool_geom *g, int B);
/* sp_maxpool_backward and then, fused, the backward of the relu below the pool:
 * dx = r > 0 ? (the pool's dx) : 0, where r is the pool's input, i.e. the relu's output (r > 0
 * exactly where the relu's input is > 0): the same bits as the two steps. */
void sp_maxpool_relu_backward(float *dx,             /* (B, c, h, w), overwritten */
                              const float *dy,       /* (B, c, oh, ow) */
                              const int32_t *argmax, /* (B, c, oh, ow) */
                              const float *r,        /* (B, c, h, w) the pool's input */
                              const sp_pool_geom *g, int B);
void sp_avgpool_forward(float *y,       /* (B, c, oh, ow) */
                        const float *x, /* (B, c, h, w) */
                        const sp_pool_geom *g, int B);
/* the blame is shared equally by the k*k inputs of the window */
void sp_avgpool_backward(float *dx,       /* (B, c, h, w), overwritten */
                         const float *dy, /* (B, c, oh, ow) */
                         const sp_pool_geom *g, int B);

/* ---- elementwise activations, n = B * features; backward: dx = dy * f'(x) ---- */
typedef enum {
    SP_ACT_RELU,
    SP_ACT_LEAKY_RELU,
    SP_ACT_TANH,
    SP_ACT_SIGMOID,
    SP_ACT_GELU,
    SP_ACT_GELU_TANH
} sp_act;
/* relu max(0,x); leaky_relu x>0 ? x : slope x; tanh; sigmoid 1/(1+e^-x);
 * gelu x Phi(x) = x/2 (1 + erf(x/sqrt 2)) (exact, as nn.GELU());
 * gelu_tanh x/2 (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) (GPT-2's, nn.GELU(approximate='tanh')) */
void sp_act_forward(float *y,       /* (n) */
                    const float *x, /* (n) */
                    size_t n, sp_act act, float slope);
void sp_act_backward(float *dx,       /* (n), may alias dy */
                     const float *dy, /* (n) */
                     const float *x,  /* (n) the forward input */
                     const float *y,  /* (n) the forward output */
                     size_t n, sp_act act, float slope);

/* ---- dropout (nn.Dropout): y = x * mask, mask = 0 with probability p, else 1/(1-p) ----
 * The mask of element e of sample s is a pure function of (seed, stream, step, s, e): it does
 * not depend on ranks, threads or the position of the sample in the batch. */
void sp_dropout_forward(float *y,                  /* (B, size) */
                        float *mask,               /* saved: (B, size) */
                        const float *x,            /* (B, size) */
                        const int64_t *sample_ids, /* (B) global sample ids, or NULL: row index */
                        int B, size_t size, float p, uint64_t seed, uint64_t stream, int64_t step);
void sp_dropout_backward(float *dx,         /* (B, size), may alias dy */
                         const float *dy,   /* (B, size) */
                         const float *mask, /* (B, size) */
                         int B, size_t size);

/* ---- batch normalization: nn.BatchNorm1d over (B, C) (P = 1), nn.BatchNorm2d over (B, C, H, W)
 * (P = H * W). In training each channel is normalized with the mean and biased variance of the
 * whole batch, all ranks' samples: the layer hands the model per-sample terms, the model sums
 * them over every sample of every rank (sp_model_allsum), and the sums come back here. With
 * xhat = (x - mean) inv_std:   y = gamma xhat + beta.
 * Blame: dbeta = sum dy, dgamma = sum dy xhat, and (the batch statistics depend on every x)
 *        dx = gamma inv_std (dy - dbeta / M - xhat dgamma / M), M = values per channel. */

/* Per-sample terms of the forward statistics: t[n] = (sum_p x[n,c,p] for c < C, then
 * sum_p x[n,c,p]^2 for c < C), each a sum over p in order, in double. */
void sp_bn_stat_terms(double *t,      /* (B, 2C) */
                      const float *x, /* (B, C, P) */
                      int B, int C, int P);
/* From the sums s (2C) of those terms over M values per channel (M >= 2): the batch mean and
 * inv_std = 1 / sqrt(var + eps) (var biased), and the running statistics updated as PyTorch:
 * r = (1 - momentum) r + momentum v, with the unbiased variance var M / (M - 1). */
void sp_bn_batch_stats(float *mean,     /* (C) */
                       float *inv_std,  /* (C) */
                       float *run_mean, /* (C) updated */
                       float *run_var,  /* (C) updated */
                       const double *s, /* (2C) */
                       double M, int C, float eps, float momentum);
/* Evaluation: mean = run_mean, inv_std = 1 / sqrt(run_var + eps). */
void sp_bn_eval_stats(float *mean,           /* (C) */
                      float *inv_std,        /* (C) */
                      const float *run_mean, /* (C) */
                      const float *run_var,  /* (C) */
                      int C, float eps);
/* y = gamma (x - mean) inv_std + beta */
void sp_bn_forward(float *y,             /* (B, C, P) */
                   const float *x,       /* (B, C, P) */
                   const float *mean,    /* (C) */
                   const float *inv_std, /* (C) */
                   const float *gamma,   /* (C) */
                   const float *beta,    /* (C) */
                   int B, int C, int P);
/* Per-sample terms of the blame, in the parameters' order (weight gamma, then bias beta):
 * t[n] = (sum_p dy xhat for c < C, then sum_p dy for c < C), in double. Summed over the
 * samples they are dgamma and dbeta. */
void sp_bn_grad_terms(double *t,            /* (B, 2C) */
                      const float *dy,      /* (B, C, P) */
                      const float *x,       /* (B, C, P) the forward input */
                      const float *mean,    /* (C) */
                      const float *inv_std, /* (C) */
                      int B, int C, int P);
/* dx = gamma inv_std (dy - s_beta / M - xhat s_gamma / M), s (2C) = the sums of those terms
 * over the M values per channel of the batch (training; all ranks). */
void sp_bn_backward(float *dx,            /* (B, C, P), overwritten */
                    const float *dy,      /* (B, C, P) */
                    const float *x,       /* (B, C, P) the forward input */
                    const float *mean,    /* (C) */
                    const float *inv_std, /* (C) */
                    const float *gamma,   /* (C) */
                    const double *s,      /* (2C) */
                    double M, int B, int C, int P);
/* g[j] (+)= sum_n t[n][j] in sample order, for j < n: a layer's parameter gradients from its
 * per-sample terms (acc: add into g, else overwrite). */
void sp_term_sums(float *g,        /* (n) */
                  const double *t, /* (B, n) */
                  int B, int n, bool acc);

/* ---- layer normalization (nn.LayerNorm over the D trailing values of each sample, affine) ----
 * Per sample: xhat = (x - mean) inv_std (biased variance, inv_std = 1 / sqrt(var + eps)),
 * y = gamma xhat + beta.  Blame: dgamma = sum_n dy xhat, dbeta = sum_n dy,
 * dx = inv_std (g - mean(g) - xhat mean(g xhat)) with g = gamma dy. */
void sp_ln_forward(float *y,                              /* (B, D) */
                   float *mean,                           /* saved: (B) */
                   float *inv_std,                        /* saved: (B) */
                   const float *x,                        /* (B, D) */
                   const float *gamma, const float *beta, /* (D) */
                   int B, int D, float eps);
/* dx (overwritten; NULL: not computed) and, unless dgamma is NULL, dgamma and dbeta (acc as
 * sp_dense_backward; each a sum over samples in order). */
void sp_ln_backward(float *dx,            /* (B, D) or NULL */
                    float *dgamma,        /* (D) or NULL */
                    float *dbeta,         /* (D) or NULL */
                    const float *dy,      /* (B, D) */
                    const float *x,       /* (B, D) */
                    const float *mean,    /* (B) */
                    const float *inv_std, /* (B) */
                    const float *gamma,   /* (D) */
                    int B, int D, bool acc);
/* Per-sample terms of dgamma and dbeta: t[n] = (dy xhat for d < D, then dy for d < D). */
void sp_ln_grad_terms(double *t,            /* (B, 2D) */
                      const float *dy,      /* (B, D) */
                      const float *x,       /* (B, D) */
                      const float *mean,    /* (B) */
                      const float *inv_std, /* (B) */
                      int B, int D);

/* ---- sequences: (B, T, D) activations, T positions of D features per sample ----
 * Dense and layer norm act on every position (one GEMM over B*T rows); these are the layers
 * that only sequences have. */

/* Token embedding (nn.Embedding(V, D)): y[i] = W[ids[i]] for each of the n = B*T positions.
 * ids hold integer token ids in [0, V) as floats (exact below 2^24); check them first with
 * sp_embedding_check. */
void sp_embedding_forward(float *y,         /* (n, D) */
                          const float *ids, /* (n) */
                          const float *w,   /* (V, D) */
                          size_t n, int D);
/* The first position whose id is not an integer in [0, V), or -1 when all are. */
int64_t sp_embedding_check(const float *ids, /* (n) */
                           size_t n, int V);
/* Blame as a scatter-add: dW[ids[i]] (+)= dy[i], positions in order (a row used by several
 * positions takes the sum of their blame, always added in position order: threads own columns
 * of dW, so the bits do not depend on the thread count). acc false: dW is overwritten (rows no
 * position uses become 0). The ids take no blame. */
void sp_embedding_backward(float *dw,        /* (V, D) */
                           const float *dy,  /* (n, D) */
                           const float *ids, /* (n) */
                           size_t n, int V, int D, bool acc);

/* Learned position embedding (GPT-2's wpe): y[b, t] = x[b, t] + P[t]. */
void sp_pos_embedding_forward(float *y,       /* (B, T, D) */
                              const float *x, /* (B, T, D) */
                              const float *p, /* (T, D) */
                              int B, int T, int D);
/* dP (+)= sum over samples b of dy[b], in sample order (threads own columns); the blame of x is
 * dy itself (passed on unchanged, no copy). */
void sp_pos_embedding_backward(float *dp,       /* (T, D) */
                               const float *dy, /* (B, T, D) */
                               int B, int T, int D, bool acc);

/* Causal multi-head self-attention, the part between the q/k/v projection and the output
 * projection (GPT-2's attention without its two Linear layers, which are dense nodes):
 * qkv (B, T, 3C) holds for each position q in columns [0, C), k in [C, 2C), v in [2C, 3C);
 * head h is the hs = C / H columns [h hs, (h+1) hs) of each. Per sample and head:
 *   S = q k^T / sqrt(hs),  P = softmax over j <= i of S[i, j] (causal: 0 for j > i),  y = P v
 * y (B, T, C) has the heads side by side (PyTorch's y.transpose(1, 2).reshape(B, T, C)).
 * Saved for backward: lse (B, H, T), the log-sum-exp of each row of the masked S; backward
 * recomputes P from q, k and lse, so nothing of size T x T is kept between the passes.
 * Threads own (sample, head) pairs: bitwise identical for any thread count. */
void sp_attention_forward(float *y,         /* (B, T, C) */
                          float *lse,       /* saved: (B, H, T) */
                          float *scratch,   /* (sp_attention_scratch_floats(B, T, C, H)) */
                          const float *qkv, /* (B, T, 3C) */
                          int B, int T, int C, int H);
/* dS = P * (dP - rowsum(dy * y)), dq = dS k / sqrt(hs), dk = dS^T q / sqrt(hs), dv = P^T dy, per
 * sample and head, with dP = dy v^T. dqkv is overwritten. */
void sp_attention_backward(float *dqkv,      /* (B, T, 3C) */
                           float *scratch,   /* (sp_attention_scratch_floats(B, T, C, H)) */
                           const float *dy,  /* (B, T, C) */
                           const float *qkv, /* (B, T, 3C) the forward's input */
                           const float *y,   /* (B, T, C) the forward's output */
                           const float *lse, /* (B, H, T) saved by the forward */
                           int B, int T, int C, int H);
/* Floats of scratch that forward and backward need for B samples (a function of the sizes
 * only, never of the thread count). */
size_t sp_attention_scratch_floats(int B, int T, int C, int H);

/* ---- joins and resampling ---- */
/* y = a + b (a residual connection; the blame passes unchanged to both inputs) */
void sp_add_forward(float *y,       /* (n) */
                    const float *a, /* (n) */
                    const float *b, /* (n) */
                    size_t n);
/* torch.cat([a, b], dim=1): channels of a, then of b (P = 1 for flat features) */
void sp_concat_forward(float *y,       /* (B, Ca + Cb, P) */
                       const float *a, /* (B, Ca, P) */
                       const float *b, /* (B, Cb, P) */
                       int B, int Ca, int Cb, int P);
/* the blame split back: da = dy[:, :Ca], db = dy[:, Ca:] (each overwritten; NULL: skipped) */
void sp_concat_backward(float *da,       /* (B, Ca, P) or NULL */
                        float *db,       /* (B, Cb, P) or NULL */
                        const float *dy, /* (B, Ca + Cb, P) */
                        int B, int Ca, int Cb, int P);
/* Global average pooling (nn.AdaptiveAvgPool2d(1) + flatten): y[n, c] = mean_p x[n, c, p] */
void sp_gap_forward(float *y,       /* (B, C) */
                    const float *x, /* (B, C, P) */
                    int B, int C, int P);
/* the blame shared equally: dx[n, c, p] = dy[n, c] / P */
void sp_gap_backward(float *dx,       /* (B, C, P), overwritten */
                     const float *dy, /* (B, C) */
                     int B, int C, int P);
/* Nearest-neighbour upsampling by S (nn.Upsample(scale_factor=S)): y[., ., i, j] = x[., ., i/S, j/S] */
void sp_upsample_forward(float *y,       /* (B, C, H S, W S) */
                         const float *x, /* (B, C, H, W) */
                         int B, int C, int H, int W, int S);
/* each input pixel takes the sum of the blame of its S x S copies */
void sp_upsample_backward(float *dx,       /* (B, C, H, W), overwritten */
                          const float *dy, /* (B, C, H S, W S) */
                          int B, int C, int H, int W, int S);

/* ---- losses: return the SUM over the batch; the gradient is scaled by grad_scale ----
 * (grad_scale = 1 / samples in the global batch for cross-entropy, 1 / (samples * T) for MSE,
 * so that the gradient is that of the mean loss however the batch is split over ranks.) */

/* sp_xent_loss and sp_mse_loss: declared and documented in the public shardprop/loss.h. */
#include "shardprop/loss.h"

#endif
