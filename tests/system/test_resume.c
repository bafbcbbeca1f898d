/*
 * Checkpoints that never lose a run, through the executable:
 *  - resume is bitwise: training stopped in the middle of the first epoch (--max-steps) and
 *    resumed with --resume auto ends with parameters bitwise equal to an uninterrupted run, with
 *    1 rank and with 2 ranks, for SGD with momentum and for Adam, on a model with dropout;
 *  - resuming on another world size (2 -> 1, 1 -> 3) agrees within 1e-5 relative;
 *  - a SIGUSR1 sent to one rank of a 2-rank run mid-epoch: checkpoint, exit 0, resume completes
 *    bitwise;
 *  - kill -9 while a checkpoint is being written (test hook pausing mid-write): latest still
 *    names a complete checkpoint, and the run resumes and completes bitwise;
 *  - an unwritable checkpoint directory: one clear error (or a warning with
 *    --checkpoint-errors warn); --init-from; a different model spec is refused;
 *  - the watchdog: a rank stalled inside a step makes the job abort within the timeout with a
 *    message naming the rank, the operation and the step; a rank killed with SIGKILL ends the job
 *    with a non-zero status and no process left behind.
 */
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "testutil.h"
#include "train_util.h"

static char dir[256];

/* Prefix of a command that runs `shardprop train` as an MPI singleton: LeakSanitizer's tracer
 * crashes in Open MPI singletons (its helper threads), as in train_util.c; the same code's leaks
 * are checked in the runs under mpiexec. */
#define SINGLETON "ASAN_OPTIONS=detect_leaks=0 "
static const char *base = "--model dense:24,relu,dropout:0.25,dense:4 --epochs 3 --batch 48 "
                          "--seed 7 --quiet";

static double relerr(const char *a, const char *b) {
    size_t na = 0, nb = 0;
    float *pa = sp_test_read_params(a, &na), *pb = sp_test_read_params(b, &nb);
    double e = (pa && pb && na == nb && na) ? sp_test_relerr_ff(pa, pb, na, 1e-3) : 1e30;
    free(pa), free(pb);
    return e;
}

static int run(int np, const char *fmt_args, const char *opt, const char *extra, char **out) {
    char args[4096];
    snprintf(args, sizeof args, "train --data %s/d.h5 %s %s %s", dir, fmt_args, opt, extra);
    return sp_test_shardprop(np, 1, args, out);
}

/* Run (as run()) and check the exit status; the output is shown on failure and freed. */
static void run_ok(int np, const char *fmt_args, const char *opt, const char *extra,
                   const char *what) {
    char *out = NULL;
    const int rc = run(np, fmt_args, opt, extra, &out);
    CHECK(rc == 0, "%s: exit %d\n%s", what, rc, out ? out : "");
    free(out);
}

static void test_bitwise_resume(int np, const char *opt, const char *tag) {
    char full[512], res[512], ck[512], extra[2048];
    char *out = NULL;
    const int ranks = np ? np : 1;
    snprintf(full, sizeof full, "%s/%s_%d_full.h5", dir, tag, ranks);
    snprintf(res, sizeof res, "%s/%s_%d_resumed.h5", dir, tag, ranks);
    snprintf(ck, sizeof ck, "%s/%s_%d_ck", dir, tag, ranks);
    snprintf(extra, sizeof extra, "--out %s", full);
    run_ok(np, base, opt, extra, "uninterrupted");
    /* 420 samples / 48 = 9 batches an epoch: stop after step 4, in the middle of epoch 1 */
    snprintf(extra, sizeof extra, "--checkpoint-dir %s --checkpoint-every 3 --max-steps 4", ck);
    run_ok(np, base, opt, extra, "first part");
    snprintf(extra, sizeof extra, "--checkpoint-dir %s --checkpoint-every 3 --resume auto --out %s",
             ck, res);
    int rc = run(np, base, opt, extra, &out);
    CHECK(rc == 0 && out && strstr(out, "resuming from") && strstr(out, "step_00000004.h5") &&
              strstr(out, "step 4, epoch 1, batch 4 of the epoch"),
          "%s %d ranks: says where it resumes from: %s", tag, np, out ? out : "");
    free(out);
    CHECK(sp_test_same_params(full, res),
          "%s, %d rank(s): interrupted + resumed == uninterrupted, bitwise", tag, np);
}

static void test_world_size_change(void) {
    const char *opt = "--optimizer adam --lr 0.01";
    const int pairs[][2] = {{2, 0}, {0, 3}};
    for (int i = 0; i < 2; ++i) {
        char full[512], res[512], ck[512], extra[2048];
        snprintf(full, sizeof full, "%s/adam_%d_full.h5", dir, pairs[i][1] ? pairs[i][1] : 1);
        snprintf(ck, sizeof ck, "%s/ws_%d_ck", dir, i);
        snprintf(res, sizeof res, "%s/ws_%d.h5", dir, i);
        if (access(full, R_OK) != 0) {
            snprintf(extra, sizeof extra, "--out %s", full);
            run_ok(pairs[i][1], base, opt, extra, "reference");
        }
        snprintf(extra, sizeof extra, "--checkpoint-dir %s --max-steps 13", ck);
        run_ok(pairs[i][0], base, opt, extra, "first part");
        snprintf(extra, sizeof extra, "--checkpoint-dir %s --resume auto --out %s", ck, res);
        run_ok(pairs[i][1], base, opt, extra, "resumed on another size");
        const double e = relerr(res, full);
        CHECK(e < 1e-5, "resume %d -> %d ranks: relerr %.3g vs an uninterrupted run",
              pairs[i][0] ? pairs[i][0] : 1, pairs[i][1] ? pairs[i][1] : 1, e);
    }
}

static void test_signal(void) {
    char cmd[4096], ck[512], res[512], full[512];
    snprintf(ck, sizeof ck, "%s/sig_ck", dir);
    snprintf(res, sizeof res, "%s/sig_res.h5", dir);
    snprintf(full, sizeof full, "%s/adam_2_full.h5", dir);
    /* 2 ranks, slowed to 60 ms a step; once the first checkpoint exists, USR1 goes to ONE rank */
    snprintf(cmd, sizeof cmd,
             "cd %s; (OMP_NUM_THREADS=1 SHARDPROP_TEST_STEP_DELAY_MS=60 %s -n 2 --bind-to none "
             "%s %s train --data %s/d.h5 %s --optimizer adam --lr 0.01 --checkpoint-dir %s "
             "--checkpoint-every 2 > sig.log 2>&1; echo $? > sig.rc) & "
             "for i in $(seq 200); do [ -e %s/latest ] && break; sleep 0.05; done; "
             "pid=$(pgrep -f '^%s train .*checkpoint-dir %s --checkpoint-every' | tail -n 1); "
             "kill -USR1 $pid; wait; cat sig.log; exit $(cat sig.rc)",
             dir, getenv("MPIEXEC") ? getenv("MPIEXEC") : "mpiexec",
             getenv("MPIEXEC_PREFLAGS") ? getenv("MPIEXEC_PREFLAGS") : "", sp_test_bin(), dir, base,
             ck, ck, sp_test_bin(), ck);
    char *out = NULL;
    int rc = sp_test_run(cmd, &out);
    CHECK(rc == 0 && out && strstr(out, "checkpointed at step") && strstr(out, "--resume auto"),
          "USR1 to one rank: checkpoint, exit 0, how to resume (exit %d):\n%s", rc, out ? out : "");
    CHECK(out && !strstr(out, "done:"), "the run stopped before its end:\n%s", out ? out : "");
    free(out);
    char extra[2048];
    snprintf(extra, sizeof extra, "--checkpoint-dir %s --resume auto --out %s", ck, res);
    run_ok(2, base, "--optimizer adam --lr 0.01", extra, "resume after signal");
    CHECK(sp_test_same_params(res, full), "signal + resume == uninterrupted 2-rank run, bitwise");
}

static void test_kill_during_checkpoint(void) {
    char cmd[4096], ck[512], res[512], full[512];
    snprintf(ck, sizeof ck, "%s/kill_ck", dir);
    snprintf(res, sizeof res, "%s/kill_res.h5", dir);
    snprintf(full, sizeof full, "%s/sgd_1_full.h5", dir);
    /* steps 1-3 and the step-3 checkpoint; then a resumed run whose writer stops itself
     * half-way through the step-6 file (test hook), where we kill -9 it */
    char extra0[2048];
    snprintf(extra0, sizeof extra0, "--checkpoint-dir %s --checkpoint-every 3 --max-steps 3", ck);
    run_ok(0, base, "--optimizer sgd --lr 0.05 --momentum 0.9", extra0, "steps 1-3");
    snprintf(cmd, sizeof cmd,
             "cd %s; OMP_NUM_THREADS=1 %s train --data %s/d.h5 %s --optimizer "
             "sgd --lr 0.05 --momentum 0.9 --checkpoint-dir %s --checkpoint-every 3 "
             "--resume auto > kill.log 2>&1 & pid=$!; "
             "for i in $(seq 400); do ls -a %s | grep -q 'step_00000006.h5.tmp' && "
             "grep -q 'T (stopped)' /proc/$pid/status 2>/dev/null && break; "
             "sleep 0.05; done; kill -9 $pid; wait $pid; ls -a %s; echo LATEST=$(cat %s/latest)",
             dir, sp_test_bin(), dir, base, ck, ck, ck, ck);
    char *envcmd = malloc(strlen(cmd) + 64);
    snprintf(envcmd, strlen(cmd) + 64, "export SHARDPROP_TEST_CKPT_PAUSE=data; %s", cmd);
    char *out = NULL;
    sp_test_run(envcmd, &out);
    free(envcmd);
    CHECK(out && strstr(out, "step_00000006.h5.tmp-") && strstr(out, "LATEST=step_00000003.h5\n"),
          "killed while writing step 6 (its temporary file is there): latest still names step "
          "3:\n%s",
          out ? out : "");
    free(out);
    char extra[2048];
    out = NULL;
    snprintf(extra, sizeof extra, "--checkpoint-dir %s --resume auto --out %s", ck, res);
    run_ok(0, base, "--optimizer sgd --lr 0.05 --momentum 0.9", extra, "resume after kill -9");
    CHECK(sp_test_same_params(res, full),
          "kill -9 mid-write + resume == uninterrupted run, bitwise");
}

static void test_errors(void) {
    char extra[2048], blocker[512];
    snprintf(blocker, sizeof blocker, "%s/not_a_dir", dir);
    FILE *f = fopen(blocker, "w");
    if (f) fclose(f);
    char *out = NULL;
    snprintf(extra, sizeof extra, "--checkpoint-dir %s/sub --checkpoint-every 2 --max-steps 5",
             blocker);
    int rc = run(2, base, "", extra, &out);
    CHECK(rc != 0 && out && strstr(out, "not_a_dir") && strstr(out, "error:"),
          "unwritable checkpoint directory: clear error, exit %d:\n%s", rc, out ? out : "");
    free(out);
    out = NULL;
    snprintf(extra, sizeof extra,
             "--checkpoint-dir %s/sub --checkpoint-every 2 --max-steps 5 --checkpoint-errors warn",
             blocker);
    rc = run(2, base, "", extra, &out);
    CHECK(rc != 0 || (out && strstr(out, "warning: checkpoint at step 2 failed")),
          "--checkpoint-errors warn: warns and goes on:\n%s", out ? out : "");
    free(out);
    /* --init-from: parameters from a checkpoint, a new run from step 0 */
    char src[512];
    snprintf(src, sizeof src, "%s/sgd_1_full.h5", dir);
    snprintf(extra, sizeof extra, "--init-from %s --max-steps 0 --out %s/init.h5", src, dir);
    out = NULL;
    rc = run(0, base, "", extra, &out);
    char init[512];
    snprintf(init, sizeof init, "%s/init.h5", dir);
    CHECK(rc == 0 && sp_test_same_params(init, src),
          "--init-from loads the parameters: exit %d\n%s", rc, out ? out : "");
    free(out);
    out = NULL;
    snprintf(extra, sizeof extra, "--init-from %s --max-steps 1", src);
    char other[4096];
    snprintf(other, sizeof other, "train --data %s/d.h5 --model dense:16,relu,dense:4 %s", dir,
             extra);
    rc = sp_test_shardprop(0, 1, other, &out);
    CHECK(rc != 0 && out && strstr(out, "dense:16") && strstr(out, "dense:24"),
          "a checkpoint of another model is refused, naming both specs:\n%s", out ? out : "");
    free(out);
}

/* Time-based checkpoints, --max-time, SLURM_JOB_END_TIME, and the second Ctrl-C. */
static void test_time_limits(void) {
    char cmd[4096], ck[512];
    /* every 0.0005 min = 30 ms of wall time, with 40 ms steps: a checkpoint at almost every step */
    snprintf(ck, sizeof ck, "%s/minutes_ck", dir);
    snprintf(cmd, sizeof cmd,
             SINGLETON
             "SHARDPROP_TEST_STEP_DELAY_MS=40 OMP_NUM_THREADS=1 %s train --data %s/d.h5 %s "
             "--checkpoint-dir %s --checkpoint-every-minutes 0.0005 --keep 0 --max-steps 8 "
             "2>&1; ls %s | grep -c '^step_'",
             sp_test_bin(), dir, base, ck, ck);
    char *out = NULL;
    sp_test_run(cmd, &out);
    const char *last = out ? strrchr(out, '\n') : NULL;
    while (last && last > out && last[-1] != '\n') --last; /* start of the last line */
    const int files = out ? atoi(out + (last ? last - out : 0)) : 0;
    CHECK(files >= 4, "--checkpoint-every-minutes: %d checkpoints in 8 steps of 40 ms:\n%s", files,
          out ? out : "");
    free(out);
    /* --max-time 0.04 min = 2.4 s with 100 ms steps (27 in all): stops early, cleanly */
    snprintf(ck, sizeof ck, "%s/maxtime_ck", dir);
    snprintf(cmd, sizeof cmd,
             SINGLETON
             "SHARDPROP_TEST_STEP_DELAY_MS=100 OMP_NUM_THREADS=1 %s train --data %s/d.h5 %s "
             "--checkpoint-dir %s --max-time 0.04 2>&1",
             sp_test_bin(), dir, base, ck);
    out = NULL;
    int rc = sp_test_run(cmd, &out);
    CHECK(rc == 0 && out && strstr(out, "stopped by the time limit: checkpointed at step"),
          "--max-time: checkpoint and a clean stop (exit %d):\n%s", rc, out ? out : "");
    free(out);
    /* SLURM_JOB_END_TIME 33 s from now, less the 30 s shutdown margin: the same */
    snprintf(ck, sizeof ck, "%s/slurmtime_ck", dir);
    snprintf(cmd, sizeof cmd,
             SINGLETON
             "SLURM_JOB_END_TIME=$(( $(date +%%s) + 33 )) SHARDPROP_TEST_STEP_DELAY_MS=100 "
             "OMP_NUM_THREADS=1 %s train --data %s/d.h5 %s --checkpoint-dir %s 2>&1",
             sp_test_bin(), dir, base, ck);
    out = NULL;
    rc = sp_test_run(cmd, &out);
    CHECK(rc == 0 && out && strstr(out, "stopped by the time limit: checkpointed at step"),
          "SLURM_JOB_END_TIME: checkpoint and a clean stop (exit %d):\n%s", rc, out ? out : "");
    free(out);
    char extra[1024];
    snprintf(extra, sizeof extra, "--checkpoint-dir %s --resume auto --out %s/slurmtime.h5", ck,
             dir);
    run_ok(0, base, "", extra, "resume after the time limit");
    /* Ctrl-C twice: the first asks for a checkpoint, the second aborts at once (exit 130) */
    snprintf(cmd, sizeof cmd,
             "cd %s; " SINGLETON "SHARDPROP_TEST_STEP_DELAY_MS=2000 OMP_NUM_THREADS=1 %s train "
             "--data d.h5 "
             "--model dense:24,relu,dense:4 --epochs 3 --batch 48 > int.log 2>&1 & pid=$!; "
             "for i in $(seq 600); do grep -q '^layout' int.log && break; sleep 0.05; done; "
             "sleep 0.3; kill -INT $pid; sleep 0.2; kill -INT $pid; wait $pid; echo rc=$?",
             dir, sp_test_bin());
    out = NULL;
    sp_test_run(cmd, &out);
    CHECK(out && strstr(out, "rc=130"), "a second SIGINT aborts at once: %s", out ? out : "");
    free(out);
    /* resuming on data of another shape is refused */
    char other[1024];
    snprintf(other, sizeof other,
             "synth --kind blobs --n 100 --features 5 --classes 4 --seed 2 --out %s/other.h5", dir);
    sp_test_shardprop(0, 1, other, NULL);
    snprintf(cmd, sizeof cmd,
             "train --data %s/other.h5 --model dense:24,relu,dropout:0.25,dense:4 --seed 7 "
             "--batch 48 --checkpoint-dir %s --resume auto",
             dir, ck);
    out = NULL;
    rc = sp_test_shardprop(0, 1, cmd, &out);
    CHECK(rc != 0 && out && strstr(out, "(5,)") && strstr(out, "(12,)"),
          "resume on data of another shape: refused naming both shapes:\n%s", out ? out : "");
    free(out);
}

static void test_watchdog(void) {
    char cmd[4096];
    const char *mpi = getenv("MPIEXEC") ? getenv("MPIEXEC") : "mpiexec";
    const char *pre = getenv("MPIEXEC_PREFLAGS") ? getenv("MPIEXEC_PREFLAGS") : "";
    struct timespec t0, t1;
    for (int np = 2; np <= 4; np += 2) {
        snprintf(cmd, sizeof cmd,
                 "OMP_NUM_THREADS=1 SHARDPROP_TEST_STALL_RANK=1 SHARDPROP_TEST_STALL_STEP=3 %s -n "
                 "%d --bind-to none %s %s train --data %s/d.h5 %s --collective-timeout 2 2>&1",
                 mpi, np, pre, sp_test_bin(), dir, base);
        clock_gettime(CLOCK_MONOTONIC, &t0);
        char *out = NULL;
        int rc = sp_test_run(cmd, &out);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        double secs = (double)(t1.tv_sec - t0.tv_sec);
        CHECK(rc != 0 && out && strstr(out, "waited more than 2 s in") && strstr(out, "at step 3"),
              "%d ranks, rank 1 stalled: abort naming rank, operation and step (exit %d):\n%s", np,
              rc, out ? out : "");
        CHECK(secs < 30, "%d ranks: stalled job ended in %.0f s", np, secs);
        free(out);
        /* a rank killed with SIGKILL mid-run: the job ends non-zero, nothing left behind */
        snprintf(
            cmd, sizeof cmd,
            "OMP_NUM_THREADS=1 SHARDPROP_TEST_STEP_DELAY_MS=50 %s -n %d --bind-to none %s %s "
            "train --data %s/d.h5 %s --epochs 50 --seed 99 > /dev/null 2>&1 & mp=$!; "
            "sleep 1.5; kill -9 $(pgrep -f '^%s train --data %s/d.h5 .* --seed 99' | tail -n 1); "
            "wait $mp; rc=$?; sleep 0.5; "
            "left=$(pgrep -f '^%s train --data %s/d.h5 .* --seed 99' | wc -l); "
            "echo \"rc=$rc left=$left\"",
            mpi, np, pre, sp_test_bin(), dir, base, sp_test_bin(), dir, sp_test_bin(), dir);
        clock_gettime(CLOCK_MONOTONIC, &t0);
        out = NULL;
        sp_test_run(cmd, &out);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        secs = (double)(t1.tv_sec - t0.tv_sec);
        CHECK(out && !strstr(out, "rc=0 ") && strstr(out, "left=0"),
              "%d ranks, one killed: non-zero exit, no process left: %s", np, out ? out : "");
        CHECK(secs < 30, "%d ranks, one killed: ended in %.0f s", np, secs);
        free(out);
    }
}

int main(void) {
    snprintf(dir, sizeof dir, "%s", sp_test_tmpdir("resume"));
    char args[1024];
    snprintf(args, sizeof args,
             "synth --kind blobs --n 420 --features 12 --classes 4 --seed 2 --out %s/d.h5", dir);
    CHECK(sp_test_shardprop(0, 1, args, NULL) == 0, "synth");
    const char *sgd = "--optimizer sgd --lr 0.05 --momentum 0.9";
    const char *adam = "--optimizer adam --lr 0.01";
    test_bitwise_resume(0, sgd, "sgd");
    test_bitwise_resume(0, adam, "adam");
    test_bitwise_resume(2, sgd, "sgd");
    test_bitwise_resume(2, adam, "adam");
    test_world_size_change();
    test_signal();
    test_kill_during_checkpoint();
    test_errors();
    test_time_limits();
    test_watchdog();
    return sp_test_summary("resume");
}
