/*
 * GPT-2's tanh GELU, y = x/2 (1 + tanh(u)), u = sqrt(2/pi) (x + 0.044715 x^3), and its
 * derivative, as loops the compiler vectorizes: activation.c runs them portable, and
 * gelu_avx2.c and gelu_avx512.c build the same source for wider vectors (no FMA, no
 * contraction: the same bits on every path), chosen by kernels/isa.h.
 */
#ifndef SP_LAYERS_GELU_TANH_H
#define SP_LAYERS_GELU_TANH_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>

/* sqrt(2/pi) and the cubic's coefficient; u, the argument of its tanh, by
 * the same arithmetic in forward and backward */
#define GELU_K0 ((float)(M_2_SQRTPI * M_SQRT1_2))
#define GELU_A  0.044715f
static inline float sp_gelu_tanh_u(float x) {
    return GELU_K0 * (x + GELU_A * (x * x) * x);
}

/* tanh(u) = sign(u) (1 - e) / (1 + e), e = exp(-2 |u|) in (0, 1], with exp by Cody-Waite range
 * reduction (2 |u| = n ln 2 + r, |r| <= ln 2 / 2) and a degree-6 Taylor polynomial (relative
 * error < 2e-7): plain multiplies, adds and bit operations, so the GELU loops vectorize, where
 * libm's tanhf is a call per element (it was 40 % of a GPT step). Its absolute error is a few
 * 1e-8, so GELU's, x (1 + tanh u) / 2, is relative. */
static inline float sp_gelu_tanh_t(float u) {
    /* e^-86 is still a normal float; a select, not fminf, so that the loops vectorize */
    const float m = fabsf(u), a = (m < 43.0f ? m : 43.0f) * -2.0f;
    const float n = (a * 1.44269504f + 12582912.0f) - 12582912.0f; /* round(a / ln 2) */
    const float r = (a - n * 0.693145752f) - n * 1.42860677e-6f;
    float p = 1.0f / 720;
    p = p * r + 1.0f / 120;
    p = p * r + 1.0f / 24;
    p = p * r + 1.0f / 6;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    const union {
        int32_t i;
        float f;
    } scale = {.i = ((int32_t)n + 127) * (1 << 23)}; /* 2^n */
    const float e = p * scale.f, t = (1.0f - e) / (1.0f + e);
    return u < 0 ? -t : t;
}

/* y = gelu_tanh(x) over n elements (one thread). */
static inline void sp_gelu_tanh_forward_loop(float *restrict y, const float *restrict x, size_t n) {
#pragma omp simd
    for (size_t i = 0; i < n; ++i) {
        const float v = x[i];
        y[i] = 0.5f * v * (1.0f + sp_gelu_tanh_t(sp_gelu_tanh_u(v)));
    }
}

/* dx = dy ((1 + t)/2 + x/2 (1 - t^2) u'), t = tanh(u), u' = k0 (1 + 3 a x^2); dx may be dy. */
static inline void sp_gelu_tanh_backward_loop(float *dx, const float *dy, const float *restrict x,
                                              size_t n) {
#pragma omp simd
    for (size_t i = 0; i < n; ++i) {
        const float v = x[i], t = sp_gelu_tanh_t(sp_gelu_tanh_u(v));
        const float du = GELU_K0 * (1.0f + 3.0f * GELU_A * (v * v));
        dx[i] = dy[i] * (0.5f * (1.0f + t) + 0.5f * v * (1.0f - t * t) * du);
    }
}

/* The whole pass, threaded (activation.c), and the loops built for AVX2 and AVX-512. */
void sp_gelu_tanh_forward(float *y, const float *x, size_t n);
void sp_gelu_tanh_backward(float *dx, const float *dy, const float *x, size_t n);
void sp_gelu_tanh_forward_avx2(float *y, const float *x, size_t n);
void sp_gelu_tanh_backward_avx2(float *dx, const float *dy, const float *x, size_t n);
void sp_gelu_tanh_forward_avx512(float *y, const float *x, size_t n);
void sp_gelu_tanh_backward_avx512(float *dx, const float *dy, const float *x, size_t n);

#endif
