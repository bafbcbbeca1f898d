/*
 * Test-only fault injection, read from the environment once when training starts
 * (docs/testing.md lists the variables). A run without them pays nothing: the trainer
 * installs no hook.
 *
 *   SHARDPROP_TEST_STALL_RANK=r, SHARDPROP_TEST_STALL_STEP=s  rank r sleeps for an hour inside
 *                                   step s (1-based): the collective-timeout watchdog's test
 *   SHARDPROP_TEST_STEP_DELAY_MS=ms every step takes ms longer (signals, time limits)
 *   SHARDPROP_TEST_NONFINITE=r:s    rank r puts a NaN into the reduced gradient of the last
 *                                   layer with parameters at step s, after the allreduce, so
 *                                   that only that rank sees it (--on-nonfinite)
 */
#ifndef SP_TRAIN_FAULTS_H
#define SP_TRAIN_FAULTS_H

#include <stdbool.h>
#include <stdint.h>

#include "shardprop/model.h"

typedef struct sp_faults {
    int rank;             /* this rank */
    int stall_rank;       /* -1: none */
    int64_t stall_step;   /* 1-based */
    int delay_ms;         /* 0: none */
    int nan_rank;         /* -1: none */
    int64_t nan_step;     /* 1-based */
    bool before, reduced; /* whether anything happens at each point */
} sp_faults;

/* Read the variables for this rank. */
void sp_faults_from_env(sp_faults *f, int rank);

/* Before step `step` (0-based): the stall and the delay. */
void sp_faults_before_step(const sp_faults *f, int64_t step);
/* After the gradients of step `step` (0-based) are reduced: the NaN. */
void sp_faults_after_reduce(const sp_faults *f, sp_model *m, int64_t step);

#endif
