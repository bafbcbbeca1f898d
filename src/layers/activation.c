/* Elementwise activations and dropout. */
#include <math.h>

#include "kernels/isa.h"
#include "layers/gelu_tanh.h"
#include "layers/layers.h"
#include "util/rng.h"

void sp_act_forward(float *y, const float *x, size_t n, sp_act act, float slope) {
    switch (act) {
    /* relu and leaky_relu: a select on values loaded unconditionally, so that the loops
     * vectorize (compare + blend); the same bits as the branchy form. */
    case SP_ACT_RELU:
#pragma omp parallel for simd schedule(static)
        for (size_t i = 0; i < n; ++i) {
            const float v = x[i];
            y[i] = v > 0.0f ? v : 0.0f;
        }
        break;
    case SP_ACT_LEAKY_RELU:
#pragma omp parallel for simd schedule(static)
        for (size_t i = 0; i < n; ++i) {
            const float v = x[i];
            y[i] = v > 0.0f ? v : slope * v;
        }
        break;
    case SP_ACT_TANH:
#pragma omp parallel for schedule(static)
        for (size_t i = 0; i < n; ++i) y[i] = tanhf(x[i]);
        break;
    case SP_ACT_SIGMOID:
#pragma omp parallel for schedule(static)
        for (size_t i = 0; i < n; ++i) y[i] = 1.0f / (1.0f + expf(-x[i]));
        break;
    case SP_ACT_GELU:
#pragma omp parallel for schedule(static)
        for (size_t i = 0; i < n; ++i) y[i] = 0.5f * x[i] * (1.0f + erff(x[i] * (float)M_SQRT1_2));
        break;
    case SP_ACT_GELU_TANH: /* x/2 (1 + tanh(u)), u = sqrt(2/pi) (x + 0.044715 x^3) */
        sp_gelu_tanh_forward(y, x, n);
        break;
    }
}

void sp_act_backward(float *dx, const float *dy, const float *x, const float *y, size_t n,
                     sp_act act, float slope) {
    switch (act) {
    case SP_ACT_RELU: /* blame passes only through the units that fired */
#pragma omp parallel for simd schedule(static)
        for (size_t i = 0; i < n; ++i) {
            const float d = dy[i]; /* loaded unconditionally: the select vectorizes */
            dx[i] = x[i] > 0.0f ? d : 0.0f;
        }
        break;
    case SP_ACT_LEAKY_RELU:
#pragma omp parallel for simd schedule(static)
        for (size_t i = 0; i < n; ++i) {
            const float d = dy[i];
            dx[i] = x[i] > 0.0f ? d : slope * d;
        }
        break;
    case SP_ACT_TANH: /* tanh' = 1 - tanh^2 */
#pragma omp parallel for schedule(static)
        for (size_t i = 0; i < n; ++i) dx[i] = dy[i] * (1.0f - y[i] * y[i]);
        break;
    case SP_ACT_SIGMOID: /* s' = s (1 - s) */
#pragma omp parallel for schedule(static)
        for (size_t i = 0; i < n; ++i) dx[i] = dy[i] * y[i] * (1.0f - y[i]);
        break;
    case SP_ACT_GELU: /* (x Phi(x))' = Phi(x) + x phi(x) */
#pragma omp parallel for schedule(static)
        for (size_t i = 0; i < n; ++i) {
            const float cdf = 0.5f * (1.0f + erff(x[i] * (float)M_SQRT1_2));
            const float pdf = expf(-0.5f * x[i] * x[i]) * (float)(0.5 * M_2_SQRTPI * M_SQRT1_2);
            dx[i] = dy[i] * (cdf + x[i] * pdf);
        }
        break;
    case SP_ACT_GELU_TANH: /* (1 + t)/2 + x/2 (1 - t^2) u', t = tanh(u), u' = k0 (1 + 3 a x^2) */
        sp_gelu_tanh_backward(dx, dy, x, n);
        break;
    }
}

void sp_dropout_forward(float *y, float *mask, const float *x, const int64_t *sample_ids, int B,
                        size_t size, float p, uint64_t seed, uint64_t stream, int64_t step) {
    const float keep_scale = p < 1.0f ? 1.0f / (1.0f - p) : 0.0f;
    /* the step is folded into the seed, the sample id and the element into the counter */
    const uint64_t key = sp_mix64(seed ^ sp_mix64((uint64_t)step + 0x632be59bd9b4e019ULL));
#pragma omp parallel for schedule(static)
    for (int i = 0; i < B; ++i) {
        const uint64_t id = sample_ids ? (uint64_t)sample_ids[i] : (uint64_t)i;
        for (size_t e = 0; e < size; ++e) {
            const size_t o = (size_t)i * size + e;
            mask[o] = sp_rng_uniform(key, stream, id * (uint64_t)size + e) < p ? 0.0f : keep_scale;
            y[o] = x[o] * mask[o];
        }
    }
}

void sp_dropout_backward(float *dx, const float *dy, const float *mask, int B, size_t size) {
    const size_t n = (size_t)B * size;
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; ++i) dx[i] = dy[i] * mask[i];
}

/* GPT-2's GELU in chunks over the threads, each chunk by the widest vectors the CPU has (the
 * same arithmetic, element by element, in every build: the same bits). */
enum { GELU_CHUNK = 4096 };

void sp_gelu_tanh_forward(float *y, const float *x, size_t n) {
    const sp_isa isa = sp_isa_active();
#pragma omp parallel for schedule(static)
    for (size_t i0 = 0; i0 < n; i0 += GELU_CHUNK) {
        const size_t m = n - i0 < GELU_CHUNK ? n - i0 : GELU_CHUNK;
        if (isa == SP_ISA_AVX512)
            sp_gelu_tanh_forward_avx512(y + i0, x + i0, m);
        else if (isa == SP_ISA_AVX2)
            sp_gelu_tanh_forward_avx2(y + i0, x + i0, m);
        else
            sp_gelu_tanh_forward_loop(y + i0, x + i0, m);
    }
}

void sp_gelu_tanh_backward(float *dx, const float *dy, const float *x, size_t n) {
    const sp_isa isa = sp_isa_active();
#pragma omp parallel for schedule(static)
    for (size_t i0 = 0; i0 < n; i0 += GELU_CHUNK) {
        const size_t m = n - i0 < GELU_CHUNK ? n - i0 : GELU_CHUNK;
        if (isa == SP_ISA_AVX512)
            sp_gelu_tanh_backward_avx512(dx + i0, dy + i0, x + i0, m);
        else if (isa == SP_ISA_AVX2)
            sp_gelu_tanh_backward_avx2(dx + i0, dy + i0, x + i0, m);
        else
            sp_gelu_tanh_backward_loop(dx + i0, dy + i0, x + i0, m);
    }
}
