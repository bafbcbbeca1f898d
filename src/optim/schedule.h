/*
 * Learning-rate schedules: a pure function of the update index (step 0 = the first update).
 *
 * Warmup (warmup_steps = W >= 0) is linear and reaches base_lr on its last step:
 *     lr(step) = base_lr * (step + 1) / W                    for step < W
 * then the schedule proper runs on s = step - W:
 *     constant  lr = base_lr
 *     step      lr = base_lr * gamma^floor(s / step_every)     (torch StepLR)
 *     cosine    lr = min_lr + (base_lr - min_lr) * (1 + cos(pi * s / T)) / 2,  T = total - W,
 *               and min_lr for s >= T, i.e. from step total_steps on   (torch CosineAnnealingLR,
 *               clamped instead of rising again)
 * All in double; the optimizer takes the value rounded to float.
 */
#ifndef SP_OPTIM_SCHEDULE_H
#define SP_OPTIM_SCHEDULE_H

#include <stdint.h>

#include "shardprop/status.h"

typedef enum { SP_SCHED_CONSTANT, SP_SCHED_STEP, SP_SCHED_COSINE } sp_sched_kind;

typedef struct sp_schedule {
    sp_sched_kind kind;
    double base_lr;       /* > 0 */
    int64_t warmup_steps; /* >= 0; 0 = no warmup */
    int64_t step_every;   /* step: >= 1 */
    double gamma;         /* step: in (0, 1]; lr *= gamma every step_every steps after warmup */
    int64_t total_steps;  /* cosine: > warmup_steps; the step at which lr reaches min_lr */
    double min_lr;        /* cosine: in [0, base_lr] */
} sp_schedule;

/* Parse "constant" | "step" | "cosine". SP_ERR_ARG naming the choices otherwise. */
sp_status sp_sched_kind_parse(const char *name, sp_sched_kind *out);

/* "constant" | "step" | "cosine" ("unknown" for an out-of-range value). */
const char *sp_sched_kind_name(sp_sched_kind kind);

/* Validate the fields the kind uses (the others are ignored); SP_ERR_ARG with a message naming
 * the field and its value otherwise. */
sp_status sp_schedule_check(const sp_schedule *s);

/* The learning rate of update `step` (0-based; a negative step is treated as 0). The schedule
 * must have passed sp_schedule_check. */
double sp_schedule_lr(const sp_schedule *s, int64_t step);

#endif
