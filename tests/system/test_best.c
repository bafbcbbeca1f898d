/*
 * --keep-best, --best-metric and --early-stop through the executable, on a run built to improve
 * then worsen: 64 training samples of three spirals, a wide MLP and Adam at a high rate overfit
 * within a few epochs, so the validation loss falls, reaches its minimum and rises again.
 *  - the epoch records decide: best.h5 holds the state of the epoch with the lowest val_loss
 *    (bitwise the step checkpoint taken at that epoch's last step), eval on it gives that loss,
 *    the run stops N epochs later with its log line and summary fields, and --resume auto of
 *    the stopped run has nothing left to do;
 *  - interrupted in the middle of an epoch, between epochs, or resumed from a step checkpoint
 *    taken before an epoch's validation: the same best.h5 bitwise and the same stop epoch;
 *  - 2 ranks take the same decisions as 1, and with --deterministic give the same best.h5;
 *  - --early-stop alone (no best.h5), --best-metric val_accuracy (higher is better, strictly);
 *  - a checkpoint without the new attributes (a run without the flags) resumes;
 *  - bad flag combinations and a changed --best-metric on resume: one-line errors.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <hdf5.h>

#include "testutil.h"
#include "train_util.h"

static char dir[256];

enum { BATCHES = 4, EPOCHS = 30, PATIENCE = 3 }; /* 64 samples / batch 16 */

static const char *base = "--model dense:64,relu,dense:64,relu,dense:3 --batch 16 --optimizer "
                          "adam --lr 0.03 --seed 5 --epochs 30 --log-every 1000";

/* `shardprop train` on the spirals with base and `extra`; output into *out (may be NULL). */
static int train(int np, const char *extra, char **out) {
    char args[4096];
    snprintf(args, sizeof args, "train --data %s/tr.h5 --val %s/va.h5 %s %s", dir, dir, base,
             extra);
    return sp_test_shardprop(np, 1, args, out);
}

static void train_ok(int np, const char *extra, const char *what, char **keep_out) {
    char *out = NULL;
    const int rc = train(np, extra, &out);
    CHECK(rc == 0, "%s: exit %d\n%s", what, rc, out ? out : "");
    if (keep_out)
        *keep_out = out;
    else
        free(out);
}

static char *path_(char *buf, size_t cap, const char *name) {
    snprintf(buf, cap, "%s/%s", dir, name);
    return buf;
}

/* What the rule predicts from the epoch records: the best epoch (1-based) and the epoch the run
 * stops after (EPOCHS when patience never runs out). */
typedef struct {
    int epochs, best_epoch, stop_epoch;
    double best;
} expected;

static expected predict_(const double *v, int n, int higher) {
    expected e = {.epochs = n, .best_epoch = 0, .stop_epoch = EPOCHS, .best = NAN};
    int since = 0;
    for (int i = 0; i < n; ++i) {
        if (e.best_epoch == 0 || (higher ? v[i] > e.best : v[i] < e.best)) {
            e.best = v[i], e.best_epoch = i + 1, since = 0;
        } else if (++since == PATIENCE) {
            e.stop_epoch = i + 1;
            break;
        }
    }
    return e;
}

/* A summary field of a metrics file's last summary record (NAN if absent). */
/* The best_value attribute of a checkpoint's /train group (NaN when it cannot be read). */
static double best_value_(const char *path) {
    double v = NAN;
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0) return v;
    if (H5Aexists_by_name(f, "/train", "best_value", H5P_DEFAULT) > 0) {
        hid_t a = H5Aopen_by_name(f, "/train", "best_value", H5P_DEFAULT, H5P_DEFAULT);
        if (a >= 0 && H5Aread(a, H5T_NATIVE_DOUBLE, &v) < 0) v = NAN;
        if (a >= 0) H5Aclose(a);
    }
    H5Fclose(f);
    return v;
}

static double summary_(const char *metrics, const char *key) {
    double v[8];
    const int n = sp_test_metric_values(metrics, "summary", key, v, 8);
    return n > 0 ? v[n - 1] : NAN;
}

static int epochs_recorded_(const char *metrics) {
    double v[64];
    return sp_test_metric_values(metrics, "epoch", "epoch", v, 64);
}

static int file_has_(const char *path, const char *s) {
    char *text = NULL, cmd[1024];
    snprintf(cmd, sizeof cmd, "cat '%s'", path);
    sp_test_run(cmd, &text);
    const int has = text && strstr(text, s) != NULL;
    free(text);
    return has;
}

/* The reference: uninterrupted, 1 rank. */
static expected ref;
static char ref_best[1024];

static void test_reference(void) {
    char ck[512], m[512], extra[2048], final[512];
    path_(ck, sizeof ck, "ref_ck");
    path_(m, sizeof m, "ref.jsonl");
    path_(final, sizeof final, "ref_final.h5");
    snprintf(extra, sizeof extra,
             "--keep-best --early-stop %d --checkpoint-dir %s --checkpoint-every %d --keep 0 "
             "--metrics %s --out %s",
             PATIENCE, ck, BATCHES, m, final);
    char *out = NULL;
    train_ok(0, extra, "reference", &out);
    double v[64];
    const int n = sp_test_metric_values(m, "epoch", "val_loss", v, 64);
    ref = predict_(v, n, 0);
    /* the data were built for this: an improvement after the first epoch, then worse epochs */
    CHECK(ref.best_epoch >= 2 && ref.stop_epoch == ref.best_epoch + PATIENCE &&
              ref.stop_epoch < EPOCHS,
          "val_loss improves then worsens: best epoch %d, stop after %d", ref.best_epoch,
          ref.stop_epoch);
    CHECK(n == ref.stop_epoch, "the run stops after epoch %d: %d epochs recorded", ref.stop_epoch,
          n);
    char line[1024];
    snprintf(line, sizeof line,
             "early stop: no improvement of val_loss for %d epochs (best %.4f at epoch %d)\n",
             PATIENCE, ref.best, ref.best_epoch);
    CHECK(out && strstr(out, line), "the log says why it stopped: '%s' in\n%s", line,
          out ? out : "");
    snprintf(line, sizeof line, "epoch %d: val_loss %.4f is the best so far: wrote %s/best.h5\n",
             ref.best_epoch, ref.best, ck);
    CHECK(out && strstr(out, line), "the log names the best epoch and the file: '%s'", line);
    snprintf(line, sizeof line, "epoch %d: val_loss", ref.best_epoch + 1);
    CHECK(out && !strstr(out, line), "no best.h5 line for the worse epoch %d", ref.best_epoch + 1);
    free(out);
    CHECK(file_has_(m, "\"early_stopped\": true"), "summary: early_stopped true");
    CHECK(summary_(m, "best_epoch") == ref.best_epoch, "summary: best_epoch %g, expected %d",
          summary_(m, "best_epoch"), ref.best_epoch);
    CHECK(fabs(summary_(m, "best_val_loss") - ref.best) <= 1e-8 * fabs(ref.best),
          "summary: best_val_loss %.9g, the lowest epoch record %.9g", summary_(m, "best_val_loss"),
          ref.best);
    CHECK(summary_(m, "epochs") == ref.stop_epoch &&
              summary_(m, "steps") == ref.stop_epoch * BATCHES,
          "summary: %g epochs, %g steps", summary_(m, "epochs"), summary_(m, "steps"));

    /* best.h5 is the state after the best epoch: the step checkpoint of its last step */
    char step_file[1024], why[512] = "";
    snprintf(ref_best, sizeof ref_best, "%s/best.h5", ck);
    snprintf(step_file, sizeof step_file, "%s/step_%08d.h5", ck, ref.best_epoch * BATCHES);
    CHECK(sp_test_same_model(ref_best, step_file, why, sizeof why),
          "best.h5 == step checkpoint of epoch %d, bitwise: %s", ref.best_epoch, why);
    CHECK(!sp_test_same_params(ref_best, final), "--out is the final model, not the best");
    char args[2048];
    snprintf(args, sizeof args, "inspect %s", ref_best);
    out = NULL;
    sp_test_shardprop(0, 1, args, &out);
    snprintf(line, sizeof line, "train state: step %d, epoch %d, epoch_batch 0",
             ref.best_epoch * BATCHES, ref.best_epoch);
    CHECK(out && strstr(out, line), "best.h5 is a training checkpoint after epoch %d:\n%s",
          ref.best_epoch, out ? out : "");
    free(out);
    /* usable by eval: it gives the best validation loss again */
    char em[512];
    path_(em, sizeof em, "eval_best.jsonl");
    snprintf(args, sizeof args, "eval --checkpoint %s --data %s/va.h5 --metrics %s", ref_best, dir,
             em);
    CHECK(sp_test_shardprop(0, 1, args, NULL) == 0, "eval on best.h5");
    double el = NAN;
    sp_test_metric_values(em, "eval", "loss", &el, 1);
    CHECK(fabs(el - ref.best) <= 1e-6 * fabs(ref.best), "eval best.h5: loss %.9g, best %.9g", el,
          ref.best);

    /* --resume auto of the stopped run: nothing left to do */
    snprintf(extra, sizeof extra,
             "--keep-best --early-stop %d --checkpoint-dir %s --checkpoint-every %d --keep 0 "
             "--resume auto --metrics %s",
             PATIENCE, ck, BATCHES, m);
    out = NULL;
    train_ok(0, extra, "resume of the stopped run", &out);
    snprintf(line, sizeof line, "step %d, epoch %d, batch 0", ref.stop_epoch * BATCHES,
             ref.stop_epoch + 1);
    CHECK(out && strstr(out, line) && strstr(out, "early stop: no improvement") &&
              !strstr(out, "is the best so far"),
          "resumed after the early stop: it stops again at once:\n%s", out ? out : "");
    free(out);
    CHECK(epochs_recorded_(m) == ref.stop_epoch, "no epoch trained after the early stop");
    CHECK(summary_(m, "steps") == ref.stop_epoch * BATCHES, "no step after the early stop");
}

/* The reference run, interrupted: the same best.h5, bitwise, and the same stop. */
static void check_same_as_ref_(const char *ck, const char *m, const char *what) {
    char best[1024], why[512] = "";
    snprintf(best, sizeof best, "%s/best.h5", ck);
    CHECK(sp_test_same_model(best, ref_best, why, sizeof why), "%s: best.h5 bitwise: %s", what,
          why);
    CHECK(summary_(m, "epochs") == ref.stop_epoch && summary_(m, "best_epoch") == ref.best_epoch &&
              file_has_(m, "\"early_stopped\": true"),
          "%s: stops after epoch %g (expected %d), best epoch %g (expected %d)", what,
          summary_(m, "epochs"), ref.stop_epoch, summary_(m, "best_epoch"), ref.best_epoch);
}

static void test_interrupted(void) {
    const char *flags = "--keep-best --early-stop 3 --checkpoint-every 4 --keep 0";
    /* mid-epoch before the best, at the end of the best epoch + 1, and one epoch later */
    const int stops[] = {6, (ref.best_epoch + 1) * BATCHES, (ref.best_epoch + 2) * BATCHES + 2};
    for (int i = 0; i < 3; ++i) {
        char ck[512], m[512], extra[2048], what[64];
        snprintf(ck, sizeof ck, "%s/int%d_ck", dir, i);
        snprintf(m, sizeof m, "%s/int%d.jsonl", dir, i);
        snprintf(what, sizeof what, "--max-steps %d then --resume auto", stops[i]);
        snprintf(extra, sizeof extra, "%s --checkpoint-dir %s --max-steps %d", flags, ck, stops[i]);
        train_ok(0, extra, what, NULL);
        snprintf(extra, sizeof extra, "%s --checkpoint-dir %s --resume auto --metrics %s", flags,
                 ck, m);
        train_ok(0, extra, what, NULL);
        check_same_as_ref_(ck, m, what);
    }
    /* the step checkpoint of the best epoch's last step was taken before that epoch's
     * validation: resumed from it, the validation runs and finds the best */
    char ck[512], m[512], extra[2048], from[512];
    snprintf(ck, sizeof ck, "%s/prevalid_ck", dir);
    snprintf(m, sizeof m, "%s/prevalid.jsonl", dir);
    snprintf(from, sizeof from, "%s/ref_ck/step_%08d.h5", dir, ref.best_epoch * BATCHES);
    snprintf(extra, sizeof extra, "%s --checkpoint-dir %s --resume %s --metrics %s", flags, ck,
             from, m);
    char *out = NULL;
    train_ok(0, extra, "resume from the best epoch's last step", &out);
    char line[128];
    snprintf(line, sizeof line, "epoch %d: val_loss %.4f is the best so far", ref.best_epoch,
             ref.best);
    CHECK(out && strstr(out, line), "the resumed run validates epoch %d first and keeps it:\n%s",
          ref.best_epoch, out ? out : "");
    free(out);
    check_same_as_ref_(ck, m, "resume from a pre-validation checkpoint");
}

/* 2 ranks take the same decisions as 1; with --deterministic, best.h5 is bitwise the same too
 * (in float mode, 16 Adam steps at this rate grow the rounding differences of the sums beyond
 * 1e-5, with or without these flags). */
static void test_two_ranks(void) {
    char ck[512], m[512], extra[2048];
    path_(ck, sizeof ck, "np2_ck");
    path_(m, sizeof m, "np2.jsonl");
    snprintf(extra, sizeof extra, "--keep-best --early-stop 3 --checkpoint-dir %s --metrics %s", ck,
             m);
    train_ok(2, extra, "2 ranks", NULL);
    CHECK(summary_(m, "epochs") == ref.stop_epoch && summary_(m, "best_epoch") == ref.best_epoch,
          "2 ranks: stop after %g, best %g; 1 rank: %d, %d", summary_(m, "epochs"),
          summary_(m, "best_epoch"), ref.stop_epoch, ref.best_epoch);
    char best[2][1024], *vhex[2];
    double stop[2], at[2];
    for (int np = 1; np <= 2; ++np) {
        snprintf(ck, sizeof ck, "%s/det%d_ck", dir, np);
        snprintf(m, sizeof m, "%s/det%d.jsonl", dir, np);
        snprintf(extra, sizeof extra,
                 "--deterministic --keep-best --early-stop 3 --checkpoint-dir %s --metrics %s", ck,
                 m);
        train_ok(np == 1 ? 0 : np, extra, "--deterministic", NULL);
        snprintf(best[np - 1], sizeof best[0], "%s/best.h5", ck);
        stop[np - 1] = summary_(m, "epochs");
        at[np - 1] = summary_(m, "best_epoch");
        vhex[np - 1] = sp_test_hex_trace(m, "val_loss_hex");
    }
    /* the validation loss is an exact sum: the same bits for every layout, so that the
     * decisions cannot part on the rounding of a sum's order */
    const double v1 = best_value_(best[0]), v2 = best_value_(best[1]);
    CHECK(v1 == v2 && isfinite(v1), "--deterministic: best_value of 1 and 2 ranks: %a and %a", v1,
          v2);
    CHECK(vhex[0] && vhex[1] && vhex[0][0] && !strcmp(vhex[0], vhex[1]),
          "--deterministic: val_loss_hex of 1 and 2 ranks differ:\n%s\n%s", vhex[0] ? vhex[0] : "",
          vhex[1] ? vhex[1] : "");
    free(vhex[0]);
    free(vhex[1]);
    char why[512] = "";
    CHECK(sp_test_same_model(best[0], best[1], why, sizeof why),
          "--deterministic: best.h5 of 1 and 2 ranks bitwise: %s", why);
    CHECK(stop[0] == stop[1] && at[0] == at[1] && at[0] >= 2 && stop[0] < EPOCHS,
          "--deterministic: 1 rank stops after %g (best %g), 2 ranks after %g (best %g)", stop[0],
          at[0], stop[1], at[1]);
}

static void test_variants(void) {
    /* --early-stop alone: the same stop, no best.h5 */
    char ck[512], m[512], extra[2048], best[1024];
    path_(ck, sizeof ck, "es_ck");
    path_(m, sizeof m, "es.jsonl");
    snprintf(extra, sizeof extra, "--early-stop 3 --checkpoint-dir %s --metrics %s", ck, m);
    train_ok(0, extra, "--early-stop alone", NULL);
    snprintf(best, sizeof best, "%s/best.h5", ck);
    CHECK(access(best, F_OK) != 0, "--early-stop without --keep-best writes no best.h5");
    CHECK(summary_(m, "epochs") == ref.stop_epoch && file_has_(m, "\"early_stopped\": true"),
          "--early-stop alone stops after epoch %d too", ref.stop_epoch);
    /* without a checkpoint directory too */
    path_(m, sizeof m, "es_nodir.jsonl");
    snprintf(extra, sizeof extra, "--early-stop 3 --metrics %s --quiet", m);
    train_ok(0, extra, "--early-stop without --checkpoint-dir", NULL);
    CHECK(summary_(m, "epochs") == ref.stop_epoch, "--early-stop without a directory");

    /* val_accuracy: higher is better, ties are no improvement */
    path_(ck, sizeof ck, "acc_ck");
    path_(m, sizeof m, "acc.jsonl");
    snprintf(extra, sizeof extra,
             "--keep-best --best-metric val_accuracy --early-stop 3 --checkpoint-dir %s "
             "--checkpoint-every 4 --keep 0 --metrics %s",
             ck, m);
    train_ok(0, extra, "--best-metric val_accuracy", NULL);
    double v[64];
    const int n = sp_test_metric_values(m, "epoch", "val_accuracy", v, 64);
    const expected acc = predict_(v, n, 1);
    CHECK(n == acc.stop_epoch && summary_(m, "epochs") == acc.stop_epoch &&
              summary_(m, "best_epoch") == acc.best_epoch,
          "val_accuracy: %d epochs, summary %g epochs best %g; expected stop %d best %d", n,
          summary_(m, "epochs"), summary_(m, "best_epoch"), acc.stop_epoch, acc.best_epoch);
    CHECK(fabs(summary_(m, "best_val_accuracy") - acc.best) < 1e-8,
          "summary: best_val_accuracy %g, expected %g", summary_(m, "best_val_accuracy"), acc.best);
    char step_file[1024], why[512] = "";
    snprintf(best, sizeof best, "%s/best.h5", ck);
    snprintf(step_file, sizeof step_file, "%s/step_%08d.h5", ck, acc.best_epoch * BATCHES);
    CHECK(sp_test_same_model(best, step_file, why, sizeof why),
          "val_accuracy: best.h5 == the step checkpoint of epoch %d: %s", acc.best_epoch, why);

    /* without the flags: the summary has no best fields */
    path_(m, sizeof m, "plain.jsonl");
    snprintf(extra, sizeof extra, "--epochs 2 --metrics %s --quiet", m);
    train_ok(0, extra, "no flags", NULL);
    CHECK(!file_has_(m, "early_stopped") && !file_has_(m, "best_"),
          "without the flags the summary is as before");
}

/* A checkpoint written without the flags has none of the new attributes; it resumes, and the
 * count starts there (here before any validation, so exactly as the reference). */
static void test_old_checkpoint(void) {
    char ck[512], m[512], extra[2048], args[1024];
    path_(ck, sizeof ck, "old_ck");
    path_(m, sizeof m, "old.jsonl");
    snprintf(extra, sizeof extra, "--checkpoint-dir %s --max-steps 2 --quiet", ck);
    train_ok(0, extra, "a run without the flags", NULL);
    snprintf(args, sizeof args, "inspect %s/step_00000002.h5", ck);
    char *out = NULL;
    sp_test_shardprop(0, 1, args, &out);
    CHECK(out && strstr(out, "train state:") && !strstr(out, "best so far") &&
              !strstr(out, "@best_"),
          "a checkpoint without the best attributes:\n%s", out ? out : "");
    free(out);
    snprintf(extra, sizeof extra,
             "--keep-best --early-stop 3 --checkpoint-dir %s --resume auto --metrics %s", ck, m);
    out = NULL;
    train_ok(0, extra, "resume it with --keep-best --early-stop", &out);
    CHECK(out && strstr(out, "resuming from"), "resumed:\n%s", out ? out : "");
    free(out);
    check_same_as_ref_(ck, m, "an old checkpoint resumed with the flags");
}

/* One line on stderr naming what is wrong, a non-zero exit. */
static void check_error_(int rc, const char *out, const char *want, const char *what) {
    int lines = 0;
    for (const char *p = out; p && *p; ++p) lines += *p == '\n';
    CHECK(rc != 0 && out && strstr(out, "error:") && strstr(out, want) && lines == 1,
          "%s: exit %d, one line with '%s':\n%s", what, rc, want, out ? out : "");
}

static void test_errors(void) {
    static const struct {
        const char *extra, *want;
    } bad[] = {
        {"--keep-best", "--keep-best writes DIR/best.h5: add --checkpoint-dir"},
        {"--early-stop 2 --best-metric loss", "--best-metric must be val_loss or val_accuracy"},
        {"--best-metric val_accuracy", "--best-metric goes with --keep-best or --early-stop"},
        {"--early-stop -1", "--early-stop"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; ++i) {
        char *out = NULL;
        const int rc = train(0, bad[i].extra, &out);
        check_error_(rc, out, bad[i].want, bad[i].extra);
        free(out);
    }
    /* no validation data */
    char args[2048], *out = NULL;
    snprintf(args, sizeof args, "train --data %s/tr.h5 %s --keep-best --checkpoint-dir %s/nv", dir,
             base, dir);
    int rc = sp_test_shardprop(0, 1, args, &out);
    check_error_(rc, out, "--keep-best compares validation results: add --val", "no --val");
    free(out);
    snprintf(args, sizeof args, "train --data %s/tr.h5 %s --early-stop 3", dir, base);
    out = NULL;
    rc = sp_test_shardprop(0, 1, args, &out);
    check_error_(rc, out, "--early-stop watches validation results: add --val", "no --val");
    free(out);
    /* val_accuracy of a regression */
    snprintf(args, sizeof args,
             "train --data %s/reg.h5 --val %s/reg.h5 --model dense:2 --early-stop 2 "
             "--best-metric val_accuracy --quiet",
             dir, dir);
    out = NULL;
    rc = sp_test_shardprop(0, 1, args, &out);
    check_error_(rc, out, "--best-metric val_accuracy needs classes", "regression");
    free(out);
    /* another metric on resume */
    char extra[2048];
    snprintf(extra, sizeof extra,
             "--keep-best --best-metric val_accuracy --checkpoint-dir %s/ref_ck --resume auto",
             dir);
    out = NULL;
    rc = train(0, extra, &out);
    check_error_(rc, out,
                 "the run kept the best val_loss, this one asks for --best-metric "
                 "val_accuracy",
                 "changed --best-metric on resume");
    free(out);
}

int main(void) {
    snprintf(dir, sizeof dir, "%s", sp_test_tmpdir("best"));
    char args[1024];
    snprintf(args, sizeof args, "synth --kind spirals --n 64 --classes 3 --seed 3 --out %s/tr.h5",
             dir);
    CHECK(sp_test_shardprop(0, 1, args, NULL) == 0, "synth train");
    snprintf(args, sizeof args, "synth --kind spirals --n 300 --classes 3 --seed 4 --out %s/va.h5",
             dir);
    CHECK(sp_test_shardprop(0, 1, args, NULL) == 0, "synth val");
    snprintf(args, sizeof args,
             "synth --kind regression --n 64 --features 3 --outputs 2 --seed 1 --out %s/reg.h5",
             dir);
    CHECK(sp_test_shardprop(0, 1, args, NULL) == 0, "synth regression");
    test_reference();
    test_interrupted();
    test_two_ranks();
    test_variants();
    test_old_checkpoint();
    test_errors();
    return sp_test_summary("best");
}
