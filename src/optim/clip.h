/*
 * Gradient norm and clipping on a gradient slab g (n floats).
 *
 * The norm is deterministic: g is cut into fixed chunks of SP_GRAD_NORM_CHUNK elements, each
 * chunk's sum of squares is accumulated in double in index order, and the chunk sums are added
 * in chunk order. Threads only decide who computes which chunk, so the result is bitwise
 * identical for any number of threads.
 */
#ifndef SP_OPTIM_CLIP_H
#define SP_OPTIM_CLIP_H

#include <stddef.h>

#define SP_GRAD_NORM_CHUNK 4096

/* Global L2 norm sqrt(sum g[i]^2) of g (n), in double (see above). 0 for n == 0; NaN or Inf if
 * any element is (or the sum overflows). */
double sp_grad_norm(const float *g, size_t n);

/*
 * torch.nn.utils.clip_grad_norm_ with one slab: norm = sp_grad_norm(g, n); if norm > max_norm,
 * g[i] *= (float)(max_norm / (norm + 1e-6)) (the factor in double, the product in float).
 * A norm that is not finite leaves g untouched (the caller decides: see the returned value).
 * max_norm must be > 0. Returns the norm before clipping.
 */
double sp_clip_grad_norm(float *g, size_t n, double max_norm);

#endif
