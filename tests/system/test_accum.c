/*
 * Gradient accumulation (--accum-steps K), through the executable:
 *  - --batch 64 --accum-steps 4 (and 8) ends within 1e-5 relative of --batch 64, on 1 and 2
 *    ranks, over epochs whose last batch is partial (437 samples: 53 in the last step, whose
 *    micro-steps are fewer with K = 8); an MLP with dropout and Adam;
 *  - under --deterministic the same is bitwise, model, optimizer state and logged losses, for the
 *    layouts 1x1, 2x1 and 1x2 (ranks x threads) against --batch 64 on 1x1, and a run stopped in
 *    the second epoch with K = 4 on 2 ranks and resumed with K = 2 on 1 rank;
 *  - a run with accumulation stopped mid-epoch and resumed is bitwise equal to the uninterrupted
 *    one (2 ranks);
 *  - SIGTERM to one rank during a run with accumulation: the checkpoint is taken at an optimizer
 *    step boundary (its step counts optimizer steps: epoch and batch agree with it), and the run
 *    resumed from it ends bitwise equal to the uninterrupted one;
 *  - K not dividing the batch, K = 0, and a --micro-batch not dividing B / K under
 *    --deterministic are refused with one line;
 *  - --dry-run shows the micro-steps, the smaller per-rank batch, and less activation memory.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"
#include "train_util.h"

static char dir[256];
static const char *mlp = "--model dense:24,relu,dropout:0.25,dense:4 --epochs 2 --batch 64 "
                         "--seed 7 --optimizer adam --lr 0.01 --quiet";

static int train(int np, int threads, const char *args, const char *extra, char **out) {
    char a[4096];
    snprintf(a, sizeof a, "train --data %s/d.h5 %s %s", dir, args, extra);
    return sp_test_shardprop(np, threads, a, out);
}

static void train_ok(int np, int threads, const char *args, const char *extra) {
    char *out = NULL;
    const int rc = train(np, threads, args, extra, &out);
    CHECK(rc == 0, "train %dx%d %s %s: exit %d\n%s", np ? np : 1, threads, args, extra, rc,
          out ? out : "");
    free(out);
}

/* A model file of the run `args extra` on np ranks x threads, named after tag. */
static const char *model_(const char *tag, int np, int threads, const char *args, const char *extra,
                          char *path, size_t cap) {
    char e[2048];
    snprintf(path, cap, "%s/%s.h5", dir, tag);
    snprintf(e, sizeof e, "%s --out %s", extra, path);
    train_ok(np, threads, args, e);
    return path;
}

static void test_float(void) {
    char ref[512], got[512];
    model_("float_ref", 0, 1, mlp, "", ref, sizeof ref);
    const struct { int np, k; } runs[] = {{0, 4}, {2, 4}, {0, 8}, {2, 8}};
    for (size_t i = 0; i < sizeof runs / sizeof runs[0]; ++i) {
        char tag[64], extra[64];
        snprintf(tag, sizeof tag, "float_k%d_np%d", runs[i].k, runs[i].np);
        snprintf(extra, sizeof extra, "--accum-steps %d", runs[i].k);
        model_(tag, runs[i].np, 1, mlp, extra, got, sizeof got);
        const sp_test_model_diff d = sp_test_diff_models(got, ref);
        CHECK(d.ok && d.params < 1e-5,
              "--accum-steps %d on %d rank(s) vs --batch 64: relerr %.3g (want < 1e-5)", runs[i].k,
              runs[i].np ? runs[i].np : 1, d.params);
        CHECK(d.ok && d.params > 0,
              "--accum-steps %d on %d rank(s): another order of the sums (relerr %.3g), so "
              "the test sees a difference if there is one",
              runs[i].k, runs[i].np ? runs[i].np : 1, d.params);
    }
}

static void test_deterministic(void) {
    const char *det = "--deterministic --micro-batch 8";
    char args[1024], ref[512], ref_m[512], got[512], met[512], extra[1024], why[512];
    snprintf(args, sizeof args, "%s %s", mlp, det);
    snprintf(ref_m, sizeof ref_m, "%s/det_ref.jsonl", dir);
    snprintf(extra, sizeof extra, "--metrics %s --log-every 1", ref_m);
    model_("det_ref", 0, 1, args, extra, ref, sizeof ref);
    char *want = sp_test_loss_trace(ref_m);
    const int layouts[][2] = {{0, 1}, {2, 1}, {0, 2}};
    for (int i = 0; i < 3; ++i) {
        const int np = layouts[i][0], th = layouts[i][1];
        char tag[64];
        snprintf(tag, sizeof tag, "det_k4_%dx%d", np ? np : 1, th);
        snprintf(met, sizeof met, "%s/%s.jsonl", dir, tag);
        snprintf(extra, sizeof extra, "--accum-steps 4 --metrics %s --log-every 1", met);
        model_(tag, np, th, args, extra, got, sizeof got);
        CHECK(sp_test_same_model(got, ref, why, sizeof why),
              "--deterministic --accum-steps 4 on %dx%d == --batch 64 on 1x1, bitwise: %s",
              np ? np : 1, th, why);
        char *trace = sp_test_loss_trace(met);
        CHECK(want && trace && want[0] && !strcmp(trace, want),
              "%dx%d: the same exact losses, step by step", np ? np : 1, th);
        free(trace);
    }
    free(want);
    /* positions count optimizer steps: stopped with K = 4 on 2 ranks, resumed with K = 2 on 1 */
    char ck[512], res[512];
    snprintf(ck, sizeof ck, "%s/det_ck", dir);
    snprintf(extra, sizeof extra, "--accum-steps 4 --checkpoint-dir %s --max-steps 9", ck);
    train_ok(2, 1, args, extra);
    snprintf(extra, sizeof extra, "--accum-steps 2 --checkpoint-dir %s --resume auto", ck);
    model_("det_resumed", 0, 1, args, extra, res, sizeof res);
    CHECK(sp_test_same_model(res, ref, why, sizeof why),
          "--deterministic: stopped at step 9 with K = 4 on 2 ranks, resumed with K = 2 on 1: "
          "bitwise the uninterrupted --batch 64 run: %s",
          why);
}

static void test_resume(void) {
    char full[512], res[512], ck[512], extra[2048], why[512];
    const char *args = mlp;
    char *out = NULL;
    model_("resume_full", 2, 1, args, "--accum-steps 4", full, sizeof full);
    snprintf(ck, sizeof ck, "%s/resume_ck", dir);
    snprintf(res, sizeof res, "%s/resume_res.h5", dir);
    /* 437 samples / 64: 7 steps an epoch; stop after step 4 of the first */
    snprintf(extra, sizeof extra, "--accum-steps 4 --checkpoint-dir %s --max-steps 4", ck);
    train_ok(2, 1, args, extra);
    snprintf(extra, sizeof extra, "--accum-steps 4 --checkpoint-dir %s --resume auto --out %s", ck,
             res);
    const int rc = train(2, 1, args, extra, &out);
    CHECK(rc == 0 && out && strstr(out, "step 4, epoch 1, batch 4 of the epoch"),
          "resumes at optimizer step 4 (batch 4 of the epoch): exit %d\n%s", rc, out ? out : "");
    free(out);
    CHECK(sp_test_same_model(res, full, why, sizeof why),
          "accumulation: interrupted + resumed == uninterrupted, bitwise: %s", why);
}

static void test_signal(void) {
    char cmd[4096], ck[512], res[512], full[512], extra[2048], why[512];
    snprintf(ck, sizeof ck, "%s/sig_ck", dir);
    snprintf(res, sizeof res, "%s/sig_res.h5", dir);
    snprintf(full, sizeof full, "%s/resume_full.h5", dir); /* test_resume's 2-rank run */
    /* 2 ranks slowed to 60 ms a step (the delay falls after the step's first micro-batch is
     * fetched); once the first checkpoint exists, TERM goes to ONE rank */
    snprintf(cmd, sizeof cmd,
             "cd %s; (OMP_NUM_THREADS=1 SHARDPROP_TEST_STEP_DELAY_MS=60 %s -n 2 --bind-to none "
             "%s %s train --data %s/d.h5 %s --accum-steps 4 --checkpoint-dir %s "
             "--checkpoint-every 2 > sig.log 2>&1; echo $? > sig.rc) & "
             "for i in $(seq 200); do [ -e %s/latest ] && break; sleep 0.05; done; "
             "pid=$(pgrep -f '^%s train .*checkpoint-dir %s --checkpoint-every' | tail -n 1); "
             "kill -TERM $pid; wait; cat sig.log; exit $(cat sig.rc)",
             dir, getenv("MPIEXEC") ? getenv("MPIEXEC") : "mpiexec",
             getenv("MPIEXEC_PREFLAGS") ? getenv("MPIEXEC_PREFLAGS") : "", sp_test_bin(), dir, mlp,
             ck, ck, sp_test_bin(), ck);
    char *out = NULL;
    int rc = sp_test_run(cmd, &out);
    long long step = -1, epoch = -1, batch = -1;
    const char *at = out ? strstr(out, "checkpointed at step") : NULL;
    if (at) sscanf(at, "checkpointed at step %lld (epoch %lld, batch %lld)", &step, &epoch, &batch);
    CHECK(rc == 0 && at && !strstr(out, "done:"),
          "TERM to one rank: checkpoint, exit 0, before the end (exit %d):\n%s", rc,
          out ? out : "");
    CHECK(step > 0 && epoch >= 1 && batch >= 0 && batch <= 7 && step == (epoch - 1) * 7 + batch,
          "the checkpoint counts optimizer steps: step %lld = 7 per epoch x (epoch %lld - 1) + "
          "batch %lld",
          step, epoch, batch);
    free(out);
    snprintf(extra, sizeof extra, "--accum-steps 4 --checkpoint-dir %s --resume auto --out %s", ck,
             res);
    train_ok(2, 1, mlp, extra);
    CHECK(sp_test_same_model(res, full, why, sizeof why),
          "TERM + resume == uninterrupted 2-rank run with accumulation, bitwise: %s", why);
}

/* A refused configuration: a non-zero exit and one line naming what is wrong. */
static void refused(const char *extra, const char *want) {
    char *out = NULL;
    const int rc = train(0, 1, mlp, extra, &out);
    int lines = 0;
    for (const char *p = out; p && *p; ++p) lines += *p == '\n';
    CHECK(rc != 0 && out && strstr(out, want) && lines == 1,
          "%s: refused in one line naming '%s' (exit %d, %d lines):\n%s", extra, want, rc, lines,
          out ? out : "");
    free(out);
}

static void test_bad_values(void) {
    refused("--accum-steps 3", "--accum-steps 3 must be >= 1 and divide --batch 64");
    refused("--accum-steps 0", "accum-steps");
    refused("--deterministic --micro-batch 16 --accum-steps 8",
            "--micro-batch 16 must divide the micro-step's batch 64 / 8 = 8");
}

/* A number after `key` in a JSON line (-1 when absent). */
static double json_number_(const char *json, const char *key) {
    const char *p = json ? strstr(json, key) : NULL;
    return p ? atof(p + strlen(key)) : -1;
}

static void test_dry_run(void) {
    char *text = NULL, *plain = NULL, *acc = NULL;
    int rc = train(2, 1, mlp, "--accum-steps 4 --dry-run", &text);
    CHECK(rc == 0 && text &&
              strstr(text, "each step's batch of 64 in 4 micro-steps of 16 (at most 8 samples "
                           "per rank each)") &&
              strstr(text, "buffers for 8 samples") && strstr(text, "accum-steps = 4"),
          "--dry-run on 2 ranks shows the micro-steps and 8 samples per rank:\n%s",
          text ? text : "");
    rc = train(2, 1, mlp, "--dry-run --json", &plain);
    const int rc2 = train(2, 1, mlp, "--accum-steps 4 --dry-run --json", &acc);
    const double a0 = json_number_(plain, "\"activations\": "),
                 a4 = json_number_(acc, "\"activations\": ");
    CHECK(rc == 0 && rc2 == 0 && json_number_(acc, "\"accum_steps\": ") == 4 &&
              json_number_(acc, "\"micro_step_batch\": ") == 16 &&
              json_number_(acc, "\"rank_batch\": ") == 8 &&
              json_number_(plain, "\"rank_batch\": ") == 32,
          "--dry-run --json: accum_steps 4, micro_step_batch 16, rank_batch 8 (32 without):\n%s",
          acc ? acc : "");
    CHECK(a4 > 0 && a0 > 3.5 * a4,
          "the activation memory is that of 8 samples per rank, not 32: %.0f vs %.0f bytes", a4,
          a0);
    free(text), free(plain), free(acc);
}

int main(void) {
    snprintf(dir, sizeof dir, "%s", sp_test_tmpdir("accum"));
    char args[1024];
    snprintf(args, sizeof args,
             "synth --kind blobs --n 437 --features 12 --classes 4 --seed 2 --out %s/d.h5", dir);
    CHECK(sp_test_shardprop(0, 1, args, NULL) == 0, "synth");
    test_bad_values();
    test_dry_run();
    test_float();
    test_deterministic();
    test_resume();
    test_signal();
    return sp_test_summary("accum");
}
