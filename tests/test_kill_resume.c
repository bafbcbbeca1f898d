/*
 * kill -9 at random moments, 20 times: a 2-rank run with a checkpoint every 3 steps is killed
 * with SIGKILL (one rank, or mpiexec and every rank at once, as a scheduler does) after a random
 * delay, sometimes twice in a row; then `--resume auto` runs to the end, and the final parameters
 * must equal those of an uninterrupted run bitwise, every time.
 *
 * The steps are slowed (SHARDPROP_TEST_STEP_DELAY_MS) and every checkpoint write sleeps half-way
 * through its data (SHARDPROP_TEST_CKPT_SLOW_MS), so kills land before the first checkpoint
 * (resume starts fresh), between checkpoints, and in the middle of a write (the previous
 * checkpoint must be intact). The delays come from a seeded RNG printed at the start; rerun a
 * failure with SHARDPROP_KILL_SEED=<seed> (the timing still varies a little).
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "testutil.h"
#include "train_util.h"

#define REPS 20

static char dir[256];
static const char *args = "--model dense:24,relu,dropout:0.25,dense:4 --epochs 3 --batch 48 "
                          "--seed 7 --optimizer sgd --lr 0.05 --momentum 0.9 --checkpoint-every 3 "
                          "--keep 2 --quiet";

static uint64_t rng_state;
static uint64_t next_(void) { /* splitmix64 */
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static double seconds_(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* Sanitizer builds: no LeakSanitizer and fast unwinding in these runs (5x faster under ASan;
 * a killed process has nothing to report anyway). ASan still checks every access; leaks of the
 * same resume paths are checked by test_resume. Ignored by other builds. */
#define ASAN_ENV "ASAN_OPTIONS=detect_leaks=0:fast_unwind_on_malloc=1 "

static const char *mpi_(void) {
    return getenv("MPIEXEC") ? getenv("MPIEXEC") : "mpiexec";
}
static const char *pre_(void) {
    return getenv("MPIEXEC_PREFLAGS") ? getenv("MPIEXEC_PREFLAGS") : "";
}

/* One run of `train ... --resume auto` in checkpoint directory ck, killed with SIGKILL after
 * delay_ms: mode 0 kills one rank (the launcher then ends the other), mode 1 kills mpiexec and
 * both ranks at once. Prints what happened; returns the output (malloc'd). */
static char *killed_run_(const char *ck, int delay_ms, int mode, int victim) {
    char cmd[8192];
    snprintf(cmd, sizeof cmd,
             "cd %s; " ASAN_ENV "SHARDPROP_TEST_STEP_DELAY_MS=20 SHARDPROP_TEST_CKPT_SLOW_MS=60 "
             "OMP_NUM_THREADS=1 %s -n 2 --bind-to none %s %s train --data %s/d.h5 %s "
             "--checkpoint-dir %s --resume auto > %s.log 2>&1 & mp=$!; "
             "sleep %d.%03d; "
             "ranks=$(pgrep -f '^%s train .*--checkpoint-dir %s --resume'); "
             "if [ -z \"$ranks\" ]; then echo 'no rank running at the kill'; "
             "elif [ %d = 0 ]; then v=$(echo $ranks | tr ' ' '\\n' | sed -n '%dp'); "
             "  [ -n \"$v\" ] || v=$(echo $ranks | cut -d' ' -f1); kill -9 $v && echo killed rank; "
             "else kill -9 $mp $ranks && echo killed all; fi; "
             "wait $mp; echo rc=$?; "
             "for i in $(seq 100); do pgrep -f '^%s train .*--checkpoint-dir %s --resume' "
             ">/dev/null || break; sleep 0.1; done; "
             "echo left=$(pgrep -f '^%s train .*--checkpoint-dir %s --resume' | wc -l); "
             "echo files: $(ls -a %s 2>/dev/null | grep -v '^\\.*$' | tr '\\n' ' '); "
             "echo latest=$(cat %s/latest 2>/dev/null)",
             dir, mpi_(), pre_(), sp_test_bin(), dir, args, ck, ck, delay_ms / 1000,
             delay_ms % 1000, sp_test_bin(), ck, mode, victim + 1, sp_test_bin(), ck, sp_test_bin(),
             ck, ck, ck);
    char *out = NULL;
    sp_test_run(cmd, &out);
    return out;
}

int main(void) {
    snprintf(dir, sizeof dir, "%s", sp_test_tmpdir("kill_resume"));
    const char *env_seed = getenv("SHARDPROP_KILL_SEED");
    const uint64_t seed =
        env_seed ? strtoull(env_seed, NULL, 10) : (uint64_t)time(NULL) ^ (uint64_t)clock();
    rng_state = seed;
    printf("kill_resume: SHARDPROP_KILL_SEED=%llu (set it to repeat these kill points)\n",
           (unsigned long long)seed);
    char cmd[8192];
    snprintf(cmd, sizeof cmd,
             "synth --kind blobs --n 420 --features 12 --classes 4 --seed 2 --out %s/d.h5", dir);
    CHECK(sp_test_shardprop(0, 1, cmd, NULL) == 0, "synth");

    /* the uninterrupted run, slowed like the killed ones: its length sets the kill window */
    char ref[512], ck[512];
    snprintf(ref, sizeof ref, "%s/ref.h5", dir);
    snprintf(ck, sizeof ck, "%s/ref_ck", dir);
    snprintf(cmd, sizeof cmd,
             ASAN_ENV
             "SHARDPROP_TEST_STEP_DELAY_MS=20 SHARDPROP_TEST_CKPT_SLOW_MS=60 "
             "OMP_NUM_THREADS=1 "
             "%s -n 2 --bind-to none %s %s train --data %s/d.h5 %s --checkpoint-dir %s --out %s "
             "2>&1",
             mpi_(), pre_(), sp_test_bin(), dir, args, ck, ref);
    const double t0 = seconds_();
    char *out = NULL;
    int rc = sp_test_run(cmd, &out);
    const double span = seconds_() - t0;
    CHECK(rc == 0, "uninterrupted run: exit %d\n%s", rc, out ? out : "");
    free(out);
    printf("uninterrupted run: %.2f s (27 steps, a checkpoint every 3)\n", span);
    fflush(stdout);

    int mid_write = 0, fresh = 0, finished_first = 0, bitwise = 0;
    for (int rep = 0; rep < REPS; ++rep) {
        snprintf(ck, sizeof ck, "%s/ck_%02d", dir, rep);
        const int kills = 1 + (int)(next_() % 3 == 0); /* a third of the runs: killed twice */
        for (int k = 0; k < kills; ++k) {
            /* from the launch to 3/4 of an uninterrupted run (a resumed run ends sooner) */
            const int delay_ms = (int)(next_() % (uint64_t)(span * 750.0 + 1));
            const int mode = (int)(next_() % 2), victim = (int)(next_() % 2);
            char *kout = killed_run_(ck, delay_ms, mode, victim);
            const char *text = kout ? kout : "(no output)\n";
            const char *files = strstr(text, "files:");
            mid_write += files && strstr(files, ".tmp-");
            fresh += files && !strstr(files, "step_") && k == 0;
            finished_first += files && strstr(files, "COMPLETE");
            const char *l = strstr(text, "left=");
            const int left = l ? atoi(l + 5) : -1;
            printf("rep %2d kill %d: after %4d ms, %s\n%s", rep, k + 1, delay_ms,
                   mode     ? "mpiexec and every rank"
                   : victim ? "rank 2 (if there)"
                            : "rank 1",
                   text);
            fflush(stdout);
            CHECK(left == 0, "rep %d: no process left after the kill (left=%d)", rep, left);
            free(kout);
        }
        char res[512];
        snprintf(res, sizeof res, "%s/res_%02d.h5", dir, rep);
        snprintf(cmd, sizeof cmd,
                 ASAN_ENV "OMP_NUM_THREADS=1 %s -n 2 --bind-to none %s %s train --data %s/d.h5 %s "
                          "--checkpoint-dir %s --resume auto --out %s 2>&1",
                 mpi_(), pre_(), sp_test_bin(), dir, args, ck, res);
        out = NULL;
        rc = sp_test_run(cmd, &out);
        CHECK(rc == 0, "rep %d: --resume auto after the kill: exit %d\n%s", rep, rc,
              out ? out : "");
        const bool same = rc == 0 && sp_test_same_params(res, ref);
        bitwise += same;
        CHECK(same, "rep %d: killed + resumed == uninterrupted, bitwise (seed %llu)\n%s", rep,
              (unsigned long long)seed, out ? out : "");
        free(out);
    }
    printf("kill_resume: %d of %d resumed runs bitwise equal to the uninterrupted one; %d killed "
           "during a checkpoint write, %d before the first checkpoint, %d finished before a "
           "kill\n",
           bitwise, REPS, mid_write, fresh, finished_first);
    CHECK(bitwise == REPS, "every repetition bitwise");
    return sp_test_summary("kill_resume");
}
