/* GPT-2's GELU (layers/gelu_tanh.h) built for AVX-512: the same source as the portable loops,
 * wider vectors, no FMA. Called only when the CPU has it. */
#include "layers/gelu_tanh.h"

void sp_gelu_tanh_forward_avx512(float *y, const float *x, size_t n) {
    sp_gelu_tanh_forward_loop(y, x, n);
}

void sp_gelu_tanh_backward_avx512(float *dx, const float *dy, const float *x, size_t n) {
    sp_gelu_tanh_backward_loop(dx, dy, x, n);
}
