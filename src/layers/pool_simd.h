/* Private to src/layers/: SIMD kernels behind sp_maxpool_forward (see pool.c for the rule they
 * follow bit for bit). */
#ifndef SP_LAYERS_POOL_SIMD_H
#define SP_LAYERS_POOL_SIMD_H

#include <stdint.h>

#include "layers/layers.h"

/* sp_maxpool_forward of nplanes consecutive planes on the calling thread (no OpenMP): for the
 * fused conv2d + relu + maxpool forward. */
void sp_maxpool_planes(float *y, int32_t *argmax, const float *x, const sp_pool_geom *g,
                       int nplanes);

#if defined(__x86_64__) && defined(__GNUC__)
/* One plane (h, w) of a 2x2 stride-2 max pool: y and argmax (oh, ow), argmax indexing the
 * plane. AVX2; call only when the CPU has it. */
void sp_maxpool2x2_plane_avx2(float *y, int32_t *argmax, const float *plane, int w, int oh, int ow);
/* Its backward: dx (h, w) of one plane, overwritten, from dy and argmax (oh, ow); with r (h, w)
 * not NULL, then masked by r > 0 (the relu below: sp_maxpool_relu_backward). */
void sp_maxpool2x2_back_plane_avx2(float *dx, const float *dy, const int32_t *argmax,
                                   const float *r, int h, int w, int oh, int ow);
#endif

#endif
