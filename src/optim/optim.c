#include "optim/optim.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "util/mem.h"
#include "util/status.h"

/* Below this many elements an update runs on the calling thread (threads cost more than they
 * save). Only speed depends on it: each element's arithmetic is the same either way. */
#define SP_OPTIM_PAR_MIN 32768

struct sp_optimizer {
    sp_opt_config cfg;
    size_t n;
    int64_t steps;  /* updates done so far */
    int num_states; /* 0, 1 or 2 arrays of n floats in `state` */
    float *state;   /* (num_states, n), one allocation */
};

sp_status sp_opt_kind_parse(const char *name, sp_opt_kind *out) {
    if (name && !strcmp(name, "sgd"))
        *out = SP_OPT_SGD;
    else if (name && !strcmp(name, "adam"))
        *out = SP_OPT_ADAM;
    else if (name && !strcmp(name, "adamw"))
        *out = SP_OPT_ADAMW;
    else
        return SP_FAIL(SP_ERR_ARG, "unknown optimizer '%s' (expected sgd, adam or adamw)",
                       name ? name : "(null)");
    return SP_OK;
}

const char *sp_opt_kind_name(sp_opt_kind kind) {
    switch (kind) {
    case SP_OPT_SGD:
        return "sgd";
    case SP_OPT_ADAM:
        return "adam";
    case SP_OPT_ADAMW:
        return "adamw";
    }
    return "unknown";
}

sp_opt_config sp_opt_config_defaults(sp_opt_kind kind) {
    sp_opt_config c = {.kind = kind,
                       .momentum = 0.0f,
                       .nesterov = false,
                       .weight_decay = 0.0f,
                       .beta1 = 0.9f,
                       .beta2 = 0.999f,
                       .eps = 1e-8f};
    return c;
}

/* x in [0, 1); false for NaN. */
static bool in_unit_(float x) {
    return x >= 0.0f && x < 1.0f;
}

sp_status sp_opt_config_check(const sp_opt_config *cfg) {
    const char *name = sp_opt_kind_name(cfg->kind);
    if (cfg->kind != SP_OPT_SGD && cfg->kind != SP_OPT_ADAM && cfg->kind != SP_OPT_ADAMW)
        return SP_FAIL(SP_ERR_ARG, "optimizer: unknown kind %d", (int)cfg->kind);
    if (!(cfg->weight_decay >= 0.0f && isfinite(cfg->weight_decay)))
        return SP_FAIL(SP_ERR_ARG, "optimizer %s: weight_decay must be >= 0 and finite, got %g",
                       name, (double)cfg->weight_decay);
    if (cfg->kind == SP_OPT_SGD) {
        if (!in_unit_(cfg->momentum))
            return SP_FAIL(SP_ERR_ARG, "optimizer sgd: momentum must be in [0, 1), got %g",
                           (double)cfg->momentum);
        if (cfg->nesterov && !(cfg->momentum > 0.0f))
            return SP_FAIL(SP_ERR_ARG,
                           "optimizer sgd: nesterov needs momentum > 0 (got momentum %g)",
                           (double)cfg->momentum);
        return SP_OK;
    }
    if (!in_unit_(cfg->beta1))
        return SP_FAIL(SP_ERR_ARG, "optimizer %s: beta1 must be in [0, 1), got %g", name,
                       (double)cfg->beta1);
    if (!in_unit_(cfg->beta2))
        return SP_FAIL(SP_ERR_ARG, "optimizer %s: beta2 must be in [0, 1), got %g", name,
                       (double)cfg->beta2);
    if (!(cfg->eps > 0.0f && isfinite(cfg->eps)))
        return SP_FAIL(SP_ERR_ARG, "optimizer %s: eps must be > 0 and finite, got %g", name,
                       (double)cfg->eps);
    return SP_OK;
}

sp_status sp_optim_create(sp_optimizer **out, const sp_opt_config *cfg, size_t n) {
    *out = NULL;
    SP_CHECK(sp_opt_config_check(cfg));
    if (n == 0) return SP_FAIL(SP_ERR_ARG, "optimizer: parameter count must be >= 1");
    int ns = cfg->kind == SP_OPT_SGD ? (cfg->momentum > 0.0f ? 1 : 0) : 2;
    if (n > SIZE_MAX / sizeof(float) / 2)
        return SP_FAIL(SP_ERR_NOMEM, "optimizer: %zu parameters are too many for the state slab",
                       n);
    if (ns > 0)
        SP_CHECK(sp_mem_check_n((size_t)ns * n, sizeof(float), NULL,
                                cfg->kind == SP_OPT_SGD ? "optimizer sgd" : "optimizer adam",
                                "the state"));
    sp_optimizer *opt = calloc(1, sizeof *opt);
    if (!opt) return SP_FAIL(SP_ERR_NOMEM, "optimizer: out of memory");
    opt->cfg = *cfg;
    opt->n = n;
    opt->num_states = ns;
    if (ns > 0) {
        opt->state = calloc((size_t)ns * n, sizeof(float));
        if (!opt->state) {
            free(opt);
            return SP_FAIL(SP_ERR_NOMEM, "optimizer %s: cannot allocate %zu bytes of state",
                           sp_opt_kind_name(cfg->kind), (size_t)ns * n * sizeof(float));
        }
    }
    *out = opt;
    return SP_OK;
}

void sp_optim_free(sp_optimizer *opt) {
    if (!opt) return;
    free(opt->state);
    free(opt);
}

size_t sp_optim_size(const sp_optimizer *opt) {
    return opt->n;
}

static void sgd_step_(const sp_opt_config *c, size_t n, float *restrict p, const float *restrict g,
                      float *restrict buf, float lr) {
    const float wd = c->weight_decay, mom = c->momentum, neg_lr = -lr;
    const bool decay = wd > 0.0f, nesterov = c->nesterov;
    if (!buf) {
#pragma omp parallel for schedule(static) if (n >= SP_OPTIM_PAR_MIN)
        for (size_t i = 0; i < n; ++i) {
            float d = decay ? g[i] + wd * p[i] : g[i];
            p[i] = p[i] + neg_lr * d;
        }
        return;
    }
#pragma omp parallel for schedule(static) if (n >= SP_OPTIM_PAR_MIN)
    for (size_t i = 0; i < n; ++i) {
        float d = decay ? g[i] + wd * p[i] : g[i];
        float b = mom * buf[i] + d;
        buf[i] = b;
        d = nesterov ? d + mom * b : b;
        p[i] = p[i] + neg_lr * d;
    }
}

static void adam_step_(const sp_opt_config *c, size_t n, int64_t t, float *restrict p,
                       const float *restrict g, float *restrict m, float *restrict v, float lr) {
    const bool decoupled = c->kind == SP_OPT_ADAMW;
    const float wd = c->weight_decay, b1 = c->beta1, b2 = c->beta2, eps = c->eps;
    const bool decay = wd > 0.0f;
    /* Scalars as Python computes them for torch.optim: double, rounded to float when used. */
    const float one_m_b1 = (float)(1.0 - (double)b1);
    const float one_m_b2 = (float)(1.0 - (double)b2);
    const float decay_factor = (float)(1.0 - (double)lr * (double)wd);
    const double bc1 = 1.0 - pow((double)b1, (double)t);
    const double bc2 = 1.0 - pow((double)b2, (double)t);
    const float neg_step_size = (float)(-((double)lr / bc1));
    const float bc2_sqrt = (float)sqrt(bc2);
#pragma omp parallel for schedule(static) if (n >= SP_OPTIM_PAR_MIN)
    for (size_t i = 0; i < n; ++i) {
        float pi = p[i], d = g[i];
        if (decay) {
            if (decoupled)
                pi = pi * decay_factor;
            else
                d = d + wd * pi;
        }
        float mi = m[i] * b1 + one_m_b1 * d;
        float vi = v[i] * b2 + (one_m_b2 * d) * d;
        m[i] = mi;
        v[i] = vi;
        float denom = sqrtf(vi) / bc2_sqrt + eps;
        p[i] = pi + (neg_step_size * mi) / denom;
    }
}

void sp_optim_step(sp_optimizer *opt, float *params, const float *grads, float lr) {
    opt->steps += 1;
    switch (opt->cfg.kind) {
    case SP_OPT_SGD:
        sgd_step_(&opt->cfg, opt->n, params, grads, opt->num_states ? opt->state : NULL, lr);
        break;
    case SP_OPT_ADAM:
    case SP_OPT_ADAMW:
        adam_step_(&opt->cfg, opt->n, opt->steps, params, grads, opt->state, opt->state + opt->n,
                   lr);
        break;
    }
}

int64_t sp_optim_step_count(const sp_optimizer *opt) {
    return opt->steps;
}

void sp_optim_set_step_count(sp_optimizer *opt, int64_t steps) {
    opt->steps = steps < 0 ? 0 : steps;
}

int sp_optim_num_states(const sp_optimizer *opt) {
    return opt->num_states;
}

const char *sp_optim_state_name(const sp_optimizer *opt, int i) {
    if (i < 0 || i >= opt->num_states) return NULL;
    if (opt->cfg.kind == SP_OPT_SGD) return "momentum_buffer";
    return i == 0 ? "exp_avg" : "exp_avg_sq";
}

float *sp_optim_state(sp_optimizer *opt, int i) {
    if (i < 0 || i >= opt->num_states) return NULL;
    return opt->state + (size_t)i * opt->n;
}

const sp_opt_config *sp_optim_config(const sp_optimizer *opt) {
    return &opt->cfg;
}
