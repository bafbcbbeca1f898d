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
 * failure with SHARDPROP_KILL_SEED=<seed> (the timing still varies a little). A run that hangs
 * is reported with its processes' stacks and ends the test (guarded_).
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

/* Two guards on every launch.
 * - Its own Open MPI session directory (orte_tmpdir_base, ignored by other MPIs): a SIGKILLed
 *   mpiexec leaves its session directory behind, named by its PID, and in a CI run long enough
 *   for PIDs to wrap a later mpiexec can get that PID and find the stale PMIx files there.
 * - A run still going after GUARD_S seconds (they take a few; the ASan build about 3x) is
 *   reported with the kernel wait channel and the gdb stacks (when gdb is installed) of each of
 *   its processes, then killed: the repetition fails with a diagnosis instead of the whole test
 *   running into ctest's timeout.
 * guarded_ writes into buf a shell command that runs launch (a command line starting with
 * mpiexec, whose shardprop processes use checkpoint directory ck) in the background as $mp;
 * then `then`, e.g. a delay and a kill; then waits for $mp under the guard. */
#define GUARD_S 150
static void guarded_(char *buf, size_t cap, const char *ck, const char *launch, const char *then) {
    snprintf(
        buf, cap,
        "mkdir -p %s.ompi; OMPI_MCA_orte_tmpdir_base=%s.ompi %s & mp=$!; %s; "
        "for i in $(seq %d); do kill -0 $mp 2>/dev/null || break; sleep 0.1; done; "
        "if kill -0 $mp 2>/dev/null; then "
        "  echo \"HANG: the run with --checkpoint-dir %s has not ended after %d s\"; "
        "  ps -o pid,stat,etime,args -p $(echo $mp $(pgrep -f '^%s train .*--checkpoint-dir %s "
        "') | tr ' ' ',') | cut -c1-160; "
        "  for p in $(pgrep -f '^%s train .*--checkpoint-dir %s '); do "
        "    echo \"== pid $p, waiting in $(cat /proc/$p/wchan 2>/dev/null):\"; "
        "    command -v gdb >/dev/null && gdb -p $p -batch -ex 'thread apply all bt' 2>/dev/null "
        "      | grep -E '^#|^Thread' | cut -c1-200; "
        "  done; "
        "  pkill -9 -f '^%s train .*--checkpoint-dir %s '; kill -9 $mp; "
        "fi; wait $mp; echo rc=$?; rm -rf %s.ompi",
        ck, ck, launch, then, GUARD_S * 10, ck, GUARD_S, sp_test_bin(), ck, sp_test_bin(), ck,
        sp_test_bin(), ck, ck);
}

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
    char launch[4096], then[4096], cmd[16384];
    snprintf(launch, sizeof launch,
             ASAN_ENV "SHARDPROP_TEST_STEP_DELAY_MS=20 SHARDPROP_TEST_CKPT_SLOW_MS=60 "
                      "OMP_NUM_THREADS=1 %s -n 2 --bind-to none %s %s train --data %s/d.h5 %s "
                      "--checkpoint-dir %s --resume auto > %s.log 2>&1",
             mpi_(), pre_(), sp_test_bin(), dir, args, ck, ck);
    snprintf(then, sizeof then,
             "sleep %d.%03d; "
             "ranks=$(pgrep -f '^%s train .*--checkpoint-dir %s --resume'); "
             "if [ -z \"$ranks\" ]; then echo 'no rank running at the kill'; "
             "elif [ %d = 0 ]; then v=$(echo $ranks | tr ' ' '\\n' | sed -n '%dp'); "
             "  [ -n \"$v\" ] || v=$(echo $ranks | cut -d' ' -f1); kill -9 $v && echo killed rank; "
             "else kill -9 $mp $ranks && echo killed all; fi",
             delay_ms / 1000, delay_ms % 1000, sp_test_bin(), ck, mode, victim + 1);
    int n = snprintf(cmd, sizeof cmd, "cd %s; ", dir);
    guarded_(cmd + n, sizeof cmd - (size_t)n, ck, launch, then);
    n = (int)strlen(cmd);
    snprintf(cmd + n, sizeof cmd - (size_t)n,
             "; for i in $(seq 100); do pgrep -f '^%s train .*--checkpoint-dir %s --resume' "
             ">/dev/null || break; sleep 0.1; done; "
             "echo left=$(pgrep -f '^%s train .*--checkpoint-dir %s --resume' | wc -l); "
             "echo files: $(ls -a %s 2>/dev/null | grep -v '^\\.*$' | tr '\\n' ' '); "
             "echo latest=$(cat %s/latest 2>/dev/null)",
             sp_test_bin(), ck, sp_test_bin(), ck, ck, ck);
    char *out = NULL;
    sp_test_run(cmd, &out);
    return out;
}

/* A run to the end (the reference, or the resume after the kills), under the guards. */
static int full_run_(const char *ck, const char *launch, char **out) {
    char cmd[16384];
    guarded_(cmd, sizeof cmd, ck, launch, "true");
    const int rc = sp_test_run(cmd, out);
    if (rc != 0) return rc;
    const char *r = *out ? strstr(*out, "rc=") : NULL; /* the last line: the run's own status */
    while (r && strstr(r + 1, "rc=")) r = strstr(r + 1, "rc=");
    return r ? atoi(r + 3) : -1;
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
    int rc = full_run_(ck, cmd, &out);
    const double span = seconds_() - t0;
    CHECK(rc == 0, "uninterrupted run: exit %d\n%s", rc, out ? out : "");
    free(out);
    if (rc != 0) return sp_test_summary("kill_resume"); /* nothing to compare with */
    printf("uninterrupted run: %.2f s (27 steps, a checkpoint every 3)\n", span);
    fflush(stdout);

    int mid_write = 0, fresh = 0, finished_first = 0, bitwise = 0;
    bool hung = false;
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
            hung = strstr(text, "HANG:") != NULL;
            CHECK(!hung, "rep %d kill %d: the run hung (its stacks are above)", rep, k + 1);
            free(kout);
            if (hung) break;
        }
        if (hung) break; /* one diagnosis is enough; the next hang would outlast ctest */
        char res[512];
        snprintf(res, sizeof res, "%s/res_%02d.h5", dir, rep);
        snprintf(cmd, sizeof cmd,
                 ASAN_ENV "OMP_NUM_THREADS=1 %s -n 2 --bind-to none %s %s train --data %s/d.h5 %s "
                          "--checkpoint-dir %s --resume auto --out %s 2>&1",
                 mpi_(), pre_(), sp_test_bin(), dir, args, ck, res);
        out = NULL;
        rc = full_run_(ck, cmd, &out);
        CHECK(rc == 0, "rep %d: --resume auto after the kill: exit %d\n%s", rep, rc,
              out ? out : "");
        const bool same = rc == 0 && sp_test_same_params(res, ref);
        bitwise += same;
        CHECK(same, "rep %d: killed + resumed == uninterrupted, bitwise (seed %llu)\n%s", rep,
              (unsigned long long)seed, out ? out : "");
        hung = out && strstr(out, "HANG:");
        free(out);
        if (hung) break;
    }
    printf("kill_resume: %d of %d resumed runs bitwise equal to the uninterrupted one; %d killed "
           "during a checkpoint write, %d before the first checkpoint, %d finished before a "
           "kill\n",
           bitwise, REPS, mid_write, fresh, finished_first);
    CHECK(bitwise == REPS, "every repetition bitwise");
    return sp_test_summary("kill_resume");
}
