/* Test-only fault injection (train/faults.h). */
#include "train/faults.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

void sp_faults_from_env(sp_faults *f, int rank) {
    const char *r = getenv("SHARDPROP_TEST_STALL_RANK"), *s = getenv("SHARDPROP_TEST_STALL_STEP"),
               *d = getenv("SHARDPROP_TEST_STEP_DELAY_MS"), *n = getenv("SHARDPROP_TEST_NONFINITE");
    long long nan_step = -1;
    *f = (sp_faults){.rank = rank,
                     .stall_rank = r ? atoi(r) : -1,
                     .stall_step = s ? atoll(s) : -1,
                     .delay_ms = d ? atoi(d) : 0,
                     .nan_rank = -1};
    if (n && sscanf(n, "%d:%lld", &f->nan_rank, &nan_step) != 2) f->nan_rank = -1;
    f->nan_step = nan_step;
    f->before = f->stall_rank == rank || f->delay_ms > 0;
    f->reduced = f->nan_rank == rank;
}

void sp_faults_before_step(const sp_faults *f, int64_t step) {
    if (f->stall_rank == f->rank && f->stall_step == step + 1) {
        fprintf(stderr, "rank %d: test hook: stalling in step %lld\n", f->rank,
                (long long)step + 1);
        sleep(3600);
    }
    if (f->delay_ms > 0) {
        /* the whole delay, even when a signal interrupts it (as a long step would) */
        struct timespec ts = {f->delay_ms / 1000, (long)(f->delay_ms % 1000) * 1000000L};
        while (nanosleep(&ts, &ts) != 0) continue;
    }
}

void sp_faults_after_reduce(const sp_faults *f, sp_model *m, int64_t step) {
    if (f->nan_rank != f->rank || f->nan_step != step + 1) return;
    for (int i = sp_model_num_layers(m) - 1; i >= 0; --i) {
        size_t w_off, w_len, b_off, b_len;
        if (!sp_model_layer_ranges(m, i, &w_off, &w_len, &b_off, &b_len)) continue;
        sp_model_grads(m)[w_off] = NAN;
        fprintf(stderr, "rank %d: test hook: NaN in the gradient of layer %d at step %lld\n",
                f->rank, i, (long long)step + 1);
        return;
    }
}
