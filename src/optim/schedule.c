#include "optim/schedule.h"

#include <math.h>
#include <string.h>

#include "util/status.h"

sp_status sp_sched_kind_parse(const char *name, sp_sched_kind *out) {
    if (name && !strcmp(name, "constant"))
        *out = SP_SCHED_CONSTANT;
    else if (name && !strcmp(name, "step"))
        *out = SP_SCHED_STEP;
    else if (name && !strcmp(name, "cosine"))
        *out = SP_SCHED_COSINE;
    else
        return SP_FAIL(SP_ERR_ARG,
                       "unknown learning-rate schedule '%s' (expected constant, step or cosine)",
                       name ? name : "(null)");
    return SP_OK;
}

const char *sp_sched_kind_name(sp_sched_kind kind) {
    switch (kind) {
    case SP_SCHED_CONSTANT:
        return "constant";
    case SP_SCHED_STEP:
        return "step";
    case SP_SCHED_COSINE:
        return "cosine";
    }
    return "unknown";
}

sp_status sp_schedule_check(const sp_schedule *s) {
    const char *name = sp_sched_kind_name(s->kind);
    if (s->kind != SP_SCHED_CONSTANT && s->kind != SP_SCHED_STEP && s->kind != SP_SCHED_COSINE)
        return SP_FAIL(SP_ERR_ARG, "schedule: unknown kind %d", (int)s->kind);
    if (!(s->base_lr > 0.0 && isfinite(s->base_lr)))
        return SP_FAIL(SP_ERR_ARG, "schedule %s: base_lr must be > 0 and finite, got %g", name,
                       s->base_lr);
    if (s->warmup_steps < 0)
        return SP_FAIL(SP_ERR_ARG, "schedule %s: warmup_steps must be >= 0, got %lld", name,
                       (long long)s->warmup_steps);
    if (s->kind == SP_SCHED_STEP) {
        if (s->step_every < 1)
            return SP_FAIL(SP_ERR_ARG, "schedule step: step_every must be >= 1, got %lld",
                           (long long)s->step_every);
        if (!(s->gamma > 0.0 && s->gamma <= 1.0))
            return SP_FAIL(SP_ERR_ARG, "schedule step: gamma must be in (0, 1], got %g", s->gamma);
    } else if (s->kind == SP_SCHED_COSINE) {
        if (s->total_steps <= s->warmup_steps)
            return SP_FAIL(SP_ERR_ARG,
                           "schedule cosine: total_steps (%lld) must be greater than "
                           "warmup_steps (%lld)",
                           (long long)s->total_steps, (long long)s->warmup_steps);
        if (!(s->min_lr >= 0.0 && s->min_lr <= s->base_lr))
            return SP_FAIL(SP_ERR_ARG,
                           "schedule cosine: min_lr must be in [0, base_lr = %g], got %g",
                           s->base_lr, s->min_lr);
    }
    return SP_OK;
}

double sp_schedule_lr(const sp_schedule *s, int64_t step) {
    if (step < 0) step = 0;
    if (step < s->warmup_steps) return s->base_lr * (double)(step + 1) / (double)s->warmup_steps;
    int64_t t = step - s->warmup_steps;
    switch (s->kind) {
    case SP_SCHED_CONSTANT:
        return s->base_lr;
    case SP_SCHED_STEP:
        return s->base_lr * pow(s->gamma, (double)(t / s->step_every));
    case SP_SCHED_COSINE: {
        int64_t span = s->total_steps - s->warmup_steps;
        if (t >= span) return s->min_lr;
        return s->min_lr +
               (s->base_lr - s->min_lr) * (1.0 + cos(M_PI * (double)t / (double)span)) / 2.0;
    }
    }
    return s->base_lr;
}
