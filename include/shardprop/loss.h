/*
 * shardprop/loss.h — the losses: the error signal that backpropagation starts from.
 *
 *   const float *z = sp_model_forward(m, b.x, (int)b.count, &ctx);         // (B, C) logits
 *   double loss_sum; int64_t correct;
 *   sp_xent_loss(&loss_sum, &correct, dz, row_loss, z, b.labels, (int)b.count, C,
 *                1.0f / (float)b.global_count);                            // dz: d mean loss
 *   sp_model_zero_grads(m);
 *   sp_model_backward(m, dz, (int)b.count, NULL, NULL);
 *
 * Both losses return the SUM of the per-sample losses over the B rows they see in *loss_sum and
 * write the gradient scaled by grad_scale. Use grad_scale = 1 / (samples in the global batch)
 * for cross-entropy and 1 / (samples * T) for MSE, so that the gradient is that of the mean
 * loss however the batch is split over ranks. Every buffer is the caller's; nothing is
 * allocated. Not collective (summing the loss over ranks is the caller's business).
 * B may be 0 (then *loss_sum = 0). Deterministic: bitwise identical for any thread count.
 */
#ifndef SHARDPROP_LOSS_H
#define SHARDPROP_LOSS_H

#include <stdint.h>

/* Softmax cross-entropy on integer labels, fused and stable: loss_i = logsumexp(z_i) - z_i[y_i];
 * dz = (softmax(z) - onehot(y)) * grad_scale. *correct counts argmax(z) == y (first max wins).
 * dz may be NULL (evaluation: loss and accuracy only). row_loss is scratch of B doubles. */
void sp_xent_loss(double *loss_sum, int64_t *correct, float *dz, /* (B, C) or NULL */
                  double *row_loss,                              /* scratch: (B) */
                  const float *z,                                /* (B, C) logits */
                  const int32_t *labels,                         /* (B) in [0, C) */
                  int B, int C, float grad_scale);

/* Cross-entropy at every position of B sequences of T positions (a language model: the next
 * token's label at each): sp_xent_loss over the B T rows of z (B, T, C) and labels (B, T), with
 * grad_scale = 1 / (tokens in the global batch). *loss_sum sums all B T losses and *correct
 * counts tokens; row_loss is scratch of B T doubles and ends holding each sequence's loss
 * (the sum over its positions, in order) in row_loss[0, B). */
void sp_xent_seq_loss(double *loss_sum, int64_t *correct, float *dz, /* (B, T, C) or NULL */
                      double *row_loss,                              /* scratch: (B, T) */
                      const float *z,                                /* (B, T, C) logits */
                      const int32_t *labels,                         /* (B, T) in [0, C) */
                      int B, int T, int C, float grad_scale);

/* Squared error for regression: loss_sum = sum over rows and targets of (o - t)^2;
 * dout = 2 (o - t) * grad_scale. dout may be NULL. row_loss is scratch of B doubles. */
void sp_mse_loss(double *loss_sum, float *dout, /* (B, T) or NULL */
                 double *row_loss,              /* scratch: (B) */
                 const float *out,              /* (B, T) */
                 const float *target,           /* (B, T) */
                 int B, int T, float grad_scale);

#endif
