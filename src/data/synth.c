#include "data/synth.h"

#include <math.h>
#include <string.h>

#include "util/rng.h"
#include "util/status.h"

sp_status sp_synth_kind_parse(const char *name, sp_synth_kind *out) {
    if (!strcmp(name, "blobs"))
        *out = SP_SYNTH_BLOBS;
    else if (!strcmp(name, "spirals"))
        *out = SP_SYNTH_SPIRALS;
    else if (!strcmp(name, "regression"))
        *out = SP_SYNTH_REGRESSION;
    else
        return SP_FAIL(SP_ERR_ARG,
                       "unknown synthetic set '%s' (expected blobs, spirals or regression)", name);
    return SP_OK;
}

/* A standard normal draw from two uniforms (Box-Muller), keyed by (seed, stream, counter). */
static double normal_(uint64_t seed, uint64_t stream, uint64_t counter) {
    double u1 = ((double)(sp_rng_u64(seed, stream, 2 * counter) >> 11) + 0.5) * 0x1p-53;
    double u2 = (double)(sp_rng_u64(seed, stream, 2 * counter + 1) >> 11) * 0x1p-53;
    return sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
}

sp_status sp_synth_generate(sp_synth_kind kind, int64_t first, int64_t n, int features, int classes,
                            int outputs, uint64_t seed, float *x, int32_t *labels, float *targets) {
    if (features < 1 || n < 0 || first < 0)
        return SP_FAIL(SP_ERR_ARG, "synthetic set: features must be >= 1 and n >= 0");
    const uint64_t s_center = SP_STREAM_SYNTH << 8, s_sample = (SP_STREAM_SYNTH << 8) + 1,
                   s_noise = (SP_STREAM_SYNTH << 8) + 2;
    switch (kind) {
    case SP_SYNTH_BLOBS:
        if (classes < 2) return SP_FAIL(SP_ERR_ARG, "synthetic blobs: need at least 2 classes");
        for (int64_t i = 0; i < n; ++i) {
            uint64_t id = (uint64_t)(first + i);
            int c = (int)sp_rng_below(seed, s_sample, id, (uint64_t)classes);
            labels[i] = c;
            for (int f = 0; f < features; ++f) {
                double centre =
                    -4.0 + 8.0 * sp_rng_uniform(seed, s_center, (uint64_t)c * features + f);
                x[i * features + f] =
                    (float)(centre + normal_(seed, s_noise, id * (uint64_t)features + f));
            }
        }
        return SP_OK;
    case SP_SYNTH_SPIRALS:
        if (features != 2) return SP_FAIL(SP_ERR_ARG, "synthetic spirals: features must be 2");
        if (classes < 2) return SP_FAIL(SP_ERR_ARG, "synthetic spirals: need at least 2 classes");
        for (int64_t i = 0; i < n; ++i) {
            uint64_t id = (uint64_t)(first + i);
            int c = (int)(id % (uint64_t)classes);
            /* radius grows with the angle; arms are rotated copies, 1.75 turns each */
            double t = sp_rng_uniform(seed, s_sample, id);
            double r = 0.1 + 0.9 * t;
            double a = 1.75 * 2.0 * M_PI * t + 2.0 * M_PI * c / classes;
            labels[i] = c;
            x[2 * i] = (float)(r * cos(a) + 0.02 * normal_(seed, s_noise, 2 * id));
            x[2 * i + 1] = (float)(r * sin(a) + 0.02 * normal_(seed, s_noise, 2 * id + 1));
        }
        return SP_OK;
    case SP_SYNTH_REGRESSION:
        if (outputs < 1) return SP_FAIL(SP_ERR_ARG, "synthetic regression: need >= 1 output");
        for (int64_t i = 0; i < n; ++i) {
            uint64_t id = (uint64_t)(first + i);
            for (int f = 0; f < features; ++f)
                x[i * features + f] =
                    -1.0f + 2.0f * sp_rng_uniform(seed, s_sample, id * (uint64_t)features + f);
            for (int t = 0; t < outputs; ++t) {
                double acc = 0;
                for (int f = 0; f < features; ++f)
                    acc += x[i * features + f] *
                           normal_(seed, s_center, (uint64_t)f * outputs + t) / sqrt(features);
                targets[i * outputs + t] =
                    (float)(tanh(acc) + 0.05 * normal_(seed, s_noise, id * outputs + t));
            }
        }
        return SP_OK;
    }
    return SP_FAIL(SP_ERR_INTERNAL, "synthetic set: unknown kind");
}
