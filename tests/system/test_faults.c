/*
 * Injected faults, end to end through the executable (2 ranks unless said):
 *  - NaN/Inf: a learning rate that makes training diverge stops the run (default
 *    --on-nonfinite stop) with one error naming the step and the layer; a NaN that only one rank
 *    sees (test hook, after the allreduce) stops every rank at that step; with skip the step is
 *    dropped on every rank: the parameters and the optimizer state equal those of a run one step
 *    shorter, bitwise, and the drop is counted (log and metrics);
 *  - the data file truncated, or replaced by another file, while training reads it (no cache):
 *    one error naming the file and the dataset, a non-zero exit, no hang;
 *  - the checkpoint directory fills up mid-run (a small tmpfs; where mounting is not permitted,
 *    a file-size limit put on the writing rank mid-run with prlimit: EFBIG), and becomes
 *    read-only mid-run (tmpfs remounted ro; with the fallback a directory made unwritable is
 *    not possible as root, so that case needs the mount): one error naming the checkpoint file,
 *    a non-zero exit, no temporary file left, the previous checkpoint intact and loadable, and a
 *    resume from it ends bitwise equal to an uninterrupted run; with --checkpoint-errors warn
 *    the run warns and completes, and --out is still written.
 * Which mechanism ran is printed; neither is skipped.
 */
#include <hdf5.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "testutil.h"
#include "train_util.h"

static char dir[256];
static const char *base = "--epochs 3 --batch 48 --seed 7 --quiet";
#define SMALL "--model dense:24,relu,dense:4 "

static const char *mpi_(void) {
    return getenv("MPIEXEC") ? getenv("MPIEXEC") : "mpiexec";
}
static const char *pre_(void) {
    return getenv("MPIEXEC_PREFLAGS") ? getenv("MPIEXEC_PREFLAGS") : "";
}

static double seconds_(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int count_(const char *s, const char *needle) {
    int n = 0;
    for (const char *p = s ? strstr(s, needle) : NULL; p; p = strstr(p + 1, needle)) ++n;
    return n;
}

/* Print the first line of out holding key ("error:", "warning:"), for the log. */
static void show_(const char *what, const char *out, const char *key) {
    const char *p = out ? strstr(out, key) : NULL;
    if (!p) return;
    while (p > out && p[-1] != '\n') --p;
    const char *e = strchr(p, '\n');
    printf("%s: %.*s\n", what, (int)(e ? e - p : (long)strlen(p)), p);
    fflush(stdout);
}

/* `train --data DIR/d.h5 BASE EXTRA` on np ranks (env: extra environment assignments). */
static int train_(int np, const char *env, const char *data, const char *extra, char **out) {
    char cmd[8192];
    snprintf(cmd, sizeof cmd,
             "OMP_NUM_THREADS=1 %s %s -n %d --bind-to none %s %s train --data %s %s %s 2>&1", env,
             mpi_(), np, pre_(), sp_test_bin(), data, base, extra);
    return sp_test_run(cmd, out);
}

static int all_finite_(const char *a) {
    size_t n = 0;
    float *p = sp_test_read_params(a, &n);
    int ok = p && n;
    for (size_t i = 0; ok && i < n; ++i) ok = isfinite(p[i]);
    free(p);
    return ok;
}

/* Read dataset name of f as floats (malloc'd; NULL if absent). */
static float *read_floats_(hid_t f, const char *name, hssize_t *n) {
    *n = -1;
    if (H5Lexists(f, name, H5P_DEFAULT) <= 0) return NULL;
    hid_t d = H5Dopen2(f, name, H5P_DEFAULT);
    if (d < 0) return NULL;
    hid_t sp = H5Dget_space(d);
    *n = H5Sget_simple_extent_npoints(sp);
    H5Sclose(sp);
    float *x = *n > 0 ? malloc(sizeof(float) * (size_t)*n) : NULL;
    if (x) H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, x);
    H5Dclose(d);
    return x;
}

static int64_t opt_step_(hid_t f) {
    int64_t s = -1;
    hid_t g = H5Gopen2(f, "/optimizer", H5P_DEFAULT);
    hid_t at = g >= 0 ? H5Aopen(g, "step", H5P_DEFAULT) : -1;
    if (at >= 0) H5Aread(at, H5T_NATIVE_INT64, &s), H5Aclose(at);
    if (g >= 0) H5Gclose(g);
    return s;
}

/* The optimizer state datasets of a and b (/optimizer/state/<i>/{weight,bias}/<name>) and
 * /optimizer@step equal, bitwise; *count = datasets compared, *step = a's optimizer step. */
static bool same_optimizer_(const char *pa, const char *pb, int *count, int64_t *step) {
    static const char *names[] = {"exp_avg", "exp_avg_sq", "momentum_buffer"};
    hid_t a = H5Fopen(pa, H5F_ACC_RDONLY, H5P_DEFAULT),
          b = H5Fopen(pb, H5F_ACC_RDONLY, H5P_DEFAULT);
    bool ok = a >= 0 && b >= 0;
    *count = 0;
    *step = -1;
    for (int i = 0; ok && i < 8; ++i) {
        char g[64];
        snprintf(g, sizeof g, "/optimizer/state/%d", i);
        if (H5Lexists(a, "/optimizer", H5P_DEFAULT) <= 0 ||
            H5Lexists(a, "/optimizer/state", H5P_DEFAULT) <= 0 || H5Lexists(a, g, H5P_DEFAULT) <= 0)
            continue;
        for (int wb = 0; wb < 2; ++wb)
            for (int k = 0; k < 3; ++k) {
                char name[128];
                snprintf(name, sizeof name, "%s/%s/%s", g, wb ? "bias" : "weight", names[k]);
                hssize_t na, nb;
                float *x = read_floats_(a, name, &na), *y = read_floats_(b, name, &nb);
                if (x || y) {
                    ok = ok && x && y && na == nb && !memcmp(x, y, sizeof(float) * (size_t)na);
                    ++*count;
                }
                free(x), free(y);
            }
    }
    if (ok) *step = opt_step_(a);
    ok = ok && *count > 0 && *step == opt_step_(b);
    if (a >= 0) H5Fclose(a);
    if (b >= 0) H5Fclose(b);
    return ok;
}

static void test_nonfinite(void) {
    char data[1024], extra[1024], a[1024], b[1024], metrics[1024];
    snprintf(data, sizeof data, "%s/d.h5", dir);
    char *out = NULL;
    /* a diverging learning rate: stop (the default), naming the step and the layer */
    int rc = train_(2, "", data, SMALL "--lr 10", &out);
    CHECK(rc != 0 && count_(out, "error:") == 1 && strstr(out, "non-finite gradient at step ") &&
              strstr(out, "first in layer 2 (dense) in backward order") && !strstr(out, "done:"),
          "--lr 10: one error naming the step and the layer, exit %d:\n%s", rc, out ? out : "");
    show_("lr 10", out, "error:");
    free(out);
    /* only rank 1 sees a NaN (after the allreduce): every rank stops at step 5 */
    out = NULL;
    rc = train_(2, "SHARDPROP_TEST_NONFINITE=1:5", data, SMALL, &out);
    CHECK(rc != 0 && count_(out, "error:") == 1 &&
              strstr(out, "non-finite gradient at step 5 on another rank") && !strstr(out, "done:"),
          "NaN on rank 1 only: every rank stops at step 5, exit %d:\n%s", rc, out ? out : "");
    show_("NaN on rank 1 only", out, "error:");
    free(out);
    /* skip: step 5 dropped on every rank == a run of 4 steps, parameters and Adam state */
    snprintf(a, sizeof a, "%s/four.h5", dir);
    snprintf(b, sizeof b, "%s/skip5.h5", dir);
    snprintf(metrics, sizeof metrics, "%s/skip.jsonl", dir);
    snprintf(extra, sizeof extra, SMALL "--optimizer adam --lr 0.01 --max-steps 4 --out %s", a);
    out = NULL;
    rc = train_(2, "", data, extra, &out);
    CHECK(rc == 0, "4 steps: exit %d\n%s", rc, out ? out : "");
    free(out);
    snprintf(extra, sizeof extra,
             SMALL "--optimizer adam --lr 0.01 --max-steps 5 --on-nonfinite skip --metrics %s "
                   "--out %s",
             metrics, b);
    out = NULL;
    rc = train_(2, "SHARDPROP_TEST_NONFINITE=1:5", data, extra, &out);
    CHECK(rc == 0 && strstr(out, "warning: non-finite gradient at step 5") &&
              strstr(out, "step skipped on every rank") && strstr(out, "1 steps skipped"),
          "--on-nonfinite skip: warns, counts, completes (exit %d):\n%s", rc, out ? out : "");
    show_("skip", out, "warning:");
    free(out);
    int nds = 0;
    int64_t ostep = -1;
    CHECK(sp_test_same_params(a, b), "skipped step 5 == 4 steps: parameters bitwise");
    CHECK(same_optimizer_(a, b, &nds, &ostep) && nds == 8 && ostep == 4,
          "skipped step 5 == 4 steps: Adam state (%d datasets) and optimizer step (%lld) bitwise",
          nds, (long long)ostep);
    snprintf(extra, sizeof extra, "grep -c '\"nonfinite_skipped\": 1' %s", metrics);
    out = NULL;
    sp_test_run(extra, &out);
    CHECK(out && atoi(out) == 1, "the summary event counts the skipped step: %s", out ? out : "");
    free(out);
    /* skip with the diverging rate: the run completes, its parameters finite, drops counted */
    snprintf(b, sizeof b, "%s/diverge_skip.h5", dir);
    snprintf(extra, sizeof extra, SMALL "--lr 10 --on-nonfinite skip --out %s", b);
    out = NULL;
    rc = train_(2, "", data, extra, &out);
    CHECK(rc == 0 && strstr(out, "steps skipped (non-finite)") && all_finite_(b),
          "--lr 10 --on-nonfinite skip: completes, finite parameters (exit %d):\n%s", rc,
          out ? out : "");
    free(out);
}

/* The data file truncated, or replaced, while a slowed 2-rank run reads it with no cache. */
static void test_data_changed(void) {
    const char *expect[] = {"the file was truncated while training read it",
                            "the file was replaced by another file while training read it"};
    const char *flags[] = {"", "--no-prefetch"};
    for (int k = 0; k < 2; ++k) {
        char cmd[8192], change[1024];
        snprintf(cmd, sizeof cmd,
                 "synth --kind blobs --n 2000 --features 12 --classes 4 --seed 3 --out %s/t.h5",
                 dir);
        CHECK(sp_test_shardprop(0, 1, cmd, NULL) == 0, "synth t.h5");
        if (k == 0)
            snprintf(change, sizeof change, "truncate -s 20000 %s/t.h5", dir);
        else /* another file renamed over it (the reader still holds the old one open) */
            snprintf(change, sizeof change, "cp %s/d.h5 %s/t2.h5 && mv %s/t2.h5 %s/t.h5", dir, dir,
                     dir, dir);
        snprintf(cmd, sizeof cmd,
                 "cd %s; OMP_NUM_THREADS=1 SHARDPROP_TEST_STEP_DELAY_MS=30 %s -n 2 --bind-to none "
                 "%s %s train --data %s/t.h5 --model dense:24,relu,dense:4 --epochs 50 --batch 48 "
                 "--data-cache-mb 0 --log-every 1 %s > tr.log 2>&1 & mp=$!; "
                 "for i in $(seq 300); do grep -q '^step 3/' tr.log && break; sleep 0.05; done; "
                 "%s; wait $mp; echo rc=$?; cat tr.log",
                 dir, mpi_(), pre_(), sp_test_bin(), dir, flags[k], change);
        const double t0 = seconds_();
        char *out = NULL;
        sp_test_run(cmd, &out);
        const double secs = seconds_() - t0;
        char named[1024];
        snprintf(named, sizeof named, "%s/t.h5: dataset 'X': ", dir);
        CHECK(out && !strstr(out, "rc=0\n") && count_(out, "error:") == 1 && strstr(out, named) &&
                  strstr(out, expect[k]) && !strstr(out, "done:"),
              "data file changed (%s): one error naming file and dataset, non-zero exit:\n%s",
              change, out ? out : "");
        CHECK(secs < 60, "data file changed: ended in %.0f s", secs);
        show_("data file changed", out, "error:");
        free(out);
    }
}

/* ---- the checkpoint directory fills up / turns read-only ------------------------------------ */

static bool mounted_ = false;
static char mnt_[512];

static bool try_mount_(size_t bytes) {
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "mkdir -p %s && mount -t tmpfs -o size=%zu,mode=0755 tmpfs %s 2>&1",
             mnt_, bytes, mnt_);
    char *out = NULL;
    const int rc = sp_test_run(cmd, &out);
    free(out);
    mounted_ = rc == 0;
    return mounted_;
}

static void umount_(void) {
    if (!mounted_) return;
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "umount %s 2>&1 || umount -l %s 2>&1", mnt_, mnt_);
    sp_test_run(cmd, NULL);
    mounted_ = false;
}

static long file_size_(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0 ? (long)sb.st_size : -1;
}

/* After a failed run in checkpoint directory ck: no temporary file, latest names a checkpoint
 * that `inspect` validates, and a resume from a copy ends bitwise equal to ref. */
static void check_previous_intact_(const char *ck, const char *ref, const char *opt,
                                   const char *what) {
    char cmd[4096];
    char *out = NULL;
    snprintf(cmd, sizeof cmd, "ls -a %s | grep -c 'tmp-'; cat %s/latest", ck, ck);
    sp_test_run(cmd, &out);
    CHECK(out && atoi(out) == 0 && strstr(out, "step_"),
          "%s: no temporary file left, latest names a checkpoint:\n%s", what, out ? out : "");
    char latest[256] = "";
    const char *l = out ? strstr(out, "step_") : NULL;
    if (l) sscanf(l, "%255s", latest);
    free(out);
    out = NULL;
    snprintf(cmd, sizeof cmd, "inspect %s/%s", ck, latest);
    int rc = sp_test_shardprop(0, 1, cmd, &out);
    CHECK(rc == 0 && out && strstr(out, "validation: OK"),
          "%s: the previous checkpoint %s is intact and loads:\n%s", what, latest, out ? out : "");
    free(out);
    char copy[1024], res[1024], extra[1024];
    snprintf(copy, sizeof copy, "%s/copy_%d", dir, (int)(seconds_() * 1000) % 100000);
    snprintf(res, sizeof res, "%s.h5", copy);
    snprintf(cmd, sizeof cmd, "cp -a %s %s", ck, copy);
    sp_test_run(cmd, NULL);
    snprintf(extra, sizeof extra,
             "%s --checkpoint-dir %s --checkpoint-every 3 --keep 0 --resume auto --out %s", opt,
             copy, res);
    char data[1024];
    snprintf(data, sizeof data, "%s/d.h5", dir);
    out = NULL;
    rc = train_(2, "", data, extra, &out);
    CHECK(rc == 0 && strstr(out, "resuming from") && sp_test_same_params(res, ref),
          "%s: resumed from the previous checkpoint == uninterrupted, bitwise (exit %d):\n%s", what,
          rc, out ? out : "");
    free(out);
}

static void test_checkpoint_dir_faults(void) {
    char data[1024], ref[1024], refck[1024], extra[4096];
    snprintf(data, sizeof data, "%s/d.h5", dir);
    snprintf(ref, sizeof ref, "%s/ref.h5", dir);
    snprintf(refck, sizeof refck, "%s/ref_ck", dir);
    snprintf(mnt_, sizeof mnt_, "%s/mnt", dir);
    const char *opt = "--optimizer sgd --lr 0.05 --momentum 0.9 --model dense:256,relu,dense:4";
    /* the uninterrupted run (its checkpoints give the file size) */
    snprintf(extra, sizeof extra, "%s --checkpoint-dir %s --checkpoint-every 3 --keep 0 --out %s",
             opt, refck, ref);
    char *out = NULL;
    int rc = train_(2, "", data, extra, &out);
    CHECK(rc == 0, "uninterrupted: exit %d\n%s", rc, out ? out : "");
    free(out);
    char p3[1024];
    snprintf(p3, sizeof p3, "%s/step_00000003.h5", refck);
    const long fsize = file_size_(p3);
    CHECK(fsize > 0, "checkpoint size");
    const size_t page = 4096, fpages = ((size_t)fsize + page - 1) / page;

    /* SHARDPROP_TEST_NO_MOUNT=1 runs the fallback where mounting works (to check it) */
    const bool no_mount =
        getenv("SHARDPROP_TEST_NO_MOUNT") && atoi(getenv("SHARDPROP_TEST_NO_MOUNT"));
    if (!no_mount && try_mount_((3 * fpages + 3) * page)) {
        printf("checkpoint directory faults: tmpfs (mount -t tmpfs) of %zu bytes; checkpoints of "
               "%ld bytes\n",
               (3 * fpages + 3) * page, fsize);
        fflush(stdout);
        /* full: room for three checkpoints (--keep 0), the fourth (step 12) fails */
        snprintf(extra, sizeof extra, "%s --checkpoint-dir %s --checkpoint-every 3 --keep 0", opt,
                 mnt_);
        out = NULL;
        rc = train_(2, "", data, extra, &out);
        CHECK(rc != 0 && count_(out, "error:") == 1 && strstr(out, "/mnt/step_000000") &&
                  strstr(out, "No space left on device") && !strstr(out, "done:"),
              "tmpfs full: one error naming the checkpoint file, exit %d:\n%s", rc, out ? out : "");
        show_("tmpfs full", out, "error:");
        free(out);
        check_previous_intact_(mnt_, ref, opt, "tmpfs full");
        /* --checkpoint-errors warn: warns, completes, --out written */
        char wout[1024];
        snprintf(wout, sizeof wout, "%s/warn.h5", dir);
        snprintf(extra, sizeof extra,
                 "%s --checkpoint-dir %s --checkpoint-every 3 --keep 0 --checkpoint-errors warn "
                 "--out %s",
                 opt, mnt_, wout);
        out = NULL;
        rc = train_(2, "", data, extra, &out);
        CHECK(rc == 0 && strstr(out, "warning: checkpoint at step") &&
                  strstr(out, "No space left on device") && sp_test_same_params(wout, ref),
              "tmpfs full, --checkpoint-errors warn: warns, completes, --out == uninterrupted "
              "(exit %d):\n%s",
              rc, out ? out : "");
        show_("tmpfs full, warn", out, "warning:");
        free(out);
        umount_();
        /* read-only mid-run: remounted ro once the first checkpoint is there */
        CHECK(try_mount_((size_t)64 << 20), "mount again");
        char cmd[8192];
        snprintf(cmd, sizeof cmd,
                 "cd %s; OMP_NUM_THREADS=1 SHARDPROP_TEST_STEP_DELAY_MS=40 %s -n 2 --bind-to none "
                 "%s %s train --data %s %s %s --checkpoint-dir %s --checkpoint-every 3 --keep 0 > "
                 "ro.log 2>&1 & mp=$!; "
                 "for i in $(seq 400); do [ -e %s/latest ] && break; sleep 0.02; done; "
                 "mount -o remount,ro %s; wait $mp; echo rc=$?; cat ro.log",
                 dir, mpi_(), pre_(), sp_test_bin(), data, base, opt, mnt_, mnt_, mnt_);
        out = NULL;
        sp_test_run(cmd, &out);
        CHECK(out && !strstr(out, "rc=0\n") && count_(out, "error:") == 1 &&
                  strstr(out, "/mnt/step_000000") && strstr(out, "Read-only file system"),
              "read-only mid-run: one error naming the checkpoint file, non-zero exit:\n%s",
              out ? out : "");
        show_("read-only", out, "error:");
        free(out);
        check_previous_intact_(mnt_, ref, opt, "read-only");
        umount_();
    } else {
        /* no mount here: a file-size limit on the writing rank (rank 0), set mid-run once the
         * first checkpoint exists; shardprop ignores SIGXFSZ, so write(2) fails with EFBIG */
        printf("checkpoint directory faults: mount not permitted, using a file-size limit "
               "(prlimit --fsize on rank 0 mid-run); checkpoints of %ld bytes\n",
               fsize);
        fflush(stdout);
        char ck[1024], cmd[8192];
        snprintf(ck, sizeof ck, "%s/fsize_ck", dir);
        snprintf(cmd, sizeof cmd,
                 "cd %s; OMP_NUM_THREADS=1 SHARDPROP_TEST_STEP_DELAY_MS=40 %s -n 2 --bind-to none "
                 "%s %s train --data %s %s %s --checkpoint-dir %s --checkpoint-every 3 --keep 0 > "
                 "fs.log 2>&1 & mp=$!; "
                 "for i in $(seq 400); do [ -e %s/latest ] && break; sleep 0.02; done; "
                 "for p in $(pgrep -f '^%s train .*--checkpoint-dir %s '); do "
                 "grep -q '^OMPI_COMM_WORLD_RANK=0$' <(tr '\\0' '\\n' < /proc/$p/environ) && "
                 "prlimit --pid $p --fsize=%ld; done; "
                 "wait $mp; echo rc=$?; cat fs.log",
                 dir, mpi_(), pre_(), sp_test_bin(), data, base, opt, ck, ck, sp_test_bin(), ck,
                 fsize / 2);
        out = NULL;
        char script[1024];
        snprintf(script, sizeof script, "%s/fsize.sh", dir); /* bash: <(...) */
        FILE *f = fopen(script, "w");
        if (f) fputs(cmd, f), fclose(f);
        snprintf(cmd, sizeof cmd, "bash %s", script);
        sp_test_run(cmd, &out);
        CHECK(out && !strstr(out, "rc=0\n") && count_(out, "error:") == 1 &&
                  strstr(out, "/fsize_ck/step_000000") && strstr(out, "File too large"),
              "file-size limit mid-run: one error naming the checkpoint file, non-zero exit:\n%s",
              out ? out : "");
        show_("file-size limit", out, "error:");
        free(out);
        check_previous_intact_(ck, ref, opt, "file-size limit");
    }
}

int main(void) {
    snprintf(dir, sizeof dir, "%s", sp_test_tmpdir("faults"));
    char args[1024];
    snprintf(args, sizeof args,
             "synth --kind blobs --n 420 --features 12 --classes 4 --seed 2 --out %s/d.h5", dir);
    CHECK(sp_test_shardprop(0, 1, args, NULL) == 0, "synth");
    test_nonfinite();
    test_data_changed();
    test_checkpoint_dir_faults();
    umount_();
    return sp_test_summary("faults");
}
