/*
 * --augment through the executable, on a small CNN over synthetic (2, 9, 9) images:
 *  - with --deterministic, the layouts 1x1, 2x1, 1x2 (ranks x threads) and a run without prefetch
 *    (the transforms on the caller's thread instead of the reader's) end with bitwise-equal
 *    parameters, which differ from those of the same run without --augment;
 *  - without it: 2 and 3 ranks agree with 1 rank within 1e-5 relative, 1x2 equals 1x1 bitwise;
 *    --augment none is the run without the flag, bitwise;
 *  - resume: 2 ranks stopped mid-epoch and resumed equal the uninterrupted run bitwise; resuming
 *    with another list, or with none, is refused naming both; the same list spelled otherwise is
 *    accepted;
 *  - validation is not augmented: the last epoch's val_loss is what `shardprop eval` of the
 *    final model on the validation file gives;
 *  - the config-file form, shown by --dry-run (text, JSON) and at the start of a run;
 *  - errors on 2 ranks: vector data (naming the file and the dataset), a crop too large for the
 *    images, a bad spec on the command line and in a config file: one line, non-zero exit.
 */
#include <hdf5.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "h5_writer.h"
#include "testutil.h"
#include "train_util.h"

static char dir[256];

static const char *cnn = "--model conv2d:4:3:pad=1,relu,maxpool:2,conv2d:6:3,relu,flatten,"
                         "dropout:0.2,dense:3 --epochs 3 --batch 32 --optimizer adam --lr 0.01 "
                         "--seed 3 --log-every 1 --quiet";

/* N images (2, 9, 9) whose class is where the bright pixels are: shifts and flips keep it
 * learnable. */
static void write_images(const char *path, int N, uint64_t seed) {
    enum { C = 2, H = 9, W = 9 };
    float *x = malloc(sizeof(float) * (size_t)N * C * H * W);
    int32_t *y = malloc(sizeof(int32_t) * (size_t)N);
    sp_test_fill(x, (size_t)N * C * H * W, seed, 0.0f, 0.3f);
    for (int i = 0; i < N; ++i) {
        y[i] = i % 3;
        float *img = x + (size_t)i * C * H * W;
        for (int r = 2 * y[i]; r < 2 * y[i] + 3; ++r)
            for (int c = 2; c < 7; ++c) img[r * W + c] += 1.0f;
    }
    hid_t f = tw_create(path);
    const hsize_t dx[4] = {(hsize_t)N, C, H, W}, dy[1] = {(hsize_t)N};
    int rc = f < 0 || tw_dataset(f, "X", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 4, dx, x, TW_CHUNKED) ||
             tw_dataset(f, "y", H5T_STD_I32LE, H5T_NATIVE_INT32, 1, dy, y, TW_CONTIGUOUS) ||
             tw_attr(f, "y", "classes", H5T_STD_I64LE, 3);
    if (f >= 0) H5Fclose(f);
    free(x), free(y);
    CHECK(rc == 0, "write %s", path);
}

static int train(int np, int threads, const char *args, const char *extra, char **out) {
    char a[4096];
    snprintf(a, sizeof a, "train --data %s/img.h5 %s %s", dir, args, extra);
    return sp_test_shardprop(np, threads, a, out);
}

static void train_ok(int np, int threads, const char *args, const char *extra) {
    char *out = NULL;
    const int rc = train(np, threads, args, extra, &out);
    CHECK(rc == 0, "%d ranks x %d threads %s: exit %d\n%s", np ? np : 1, threads, extra, rc,
          out ? out : "");
    free(out);
}

/* The model file of `tag`, trained on np x threads with args + extra. */
static const char *model(const char *tag, int np, int threads, const char *args,
                         const char *extra) {
    static char paths[16][512];
    static int next;
    char *p = paths[next++ % 16], e[1600];
    snprintf(p, 512, "%s/%s.h5", dir, tag);
    snprintf(e, sizeof e, "%s --out %s", extra, p);
    train_ok(np, threads, args, e);
    return p;
}

static double relerr(const char *a, const char *b) {
    size_t na = 0, nb = 0;
    float *pa = sp_test_read_params(a, &na), *pb = sp_test_read_params(b, &nb);
    const double e = (pa && pb && na == nb && na) ? sp_test_relerr_ff(pa, pb, na, 1e-3) : 1e30;
    free(pa), free(pb);
    return e;
}

static void test_deterministic(void) {
    const char *aug = "--deterministic --micro-batch 5 --augment crop:2,flip,translate:1";
    const char *ref = model("det_1x1", 0, 1, cnn, aug);
    const char *plain = model("det_plain", 0, 1, cnn, "--deterministic --micro-batch 5");
    CHECK(!sp_test_same_params(ref, plain) && relerr(ref, plain) > 1e-3,
          "--augment changes what is learned (relerr %.3g to the run without)", relerr(ref, plain));
    const int layouts[][2] = {{2, 1}, {0, 2}};
    for (int i = 0; i < 2; ++i) {
        char tag[64];
        snprintf(tag, sizeof tag, "det_%dx%d", layouts[i][0] ? layouts[i][0] : 1, layouts[i][1]);
        const char *m = model(tag, layouts[i][0], layouts[i][1], cnn, aug);
        CHECK(sp_test_same_params(ref, m), "--deterministic --augment: %s equals 1x1 bitwise", tag);
    }
    char extra[600];
    snprintf(extra, sizeof extra, "%s --no-prefetch", aug);
    CHECK(sp_test_same_params(ref, model("det_sync", 2, 1, cnn, extra)),
          "--no-prefetch (augmented on the training thread) equals prefetch bitwise");
}

static void test_float(void) {
    const char *aug = "--augment crop:2,flip";
    const char *ref = model("f_1x1", 0, 1, cnn, aug);
    for (int np = 2; np <= 3; ++np) {
        char tag[64];
        snprintf(tag, sizeof tag, "f_%dx1", np);
        const double e = relerr(model(tag, np, 1, cnn, aug), ref);
        CHECK(e < 1e-5, "--augment: %d ranks vs 1 within 1e-5 (relerr %.3g)", np, e);
    }
    CHECK(sp_test_same_params(ref, model("f_1x2", 0, 2, cnn, aug)),
          "--augment: 2 threads equal 1 thread bitwise");
    CHECK(sp_test_same_params(model("f_none", 0, 1, cnn, "--augment none"),
                              model("f_noflag", 0, 1, cnn, "")),
          "--augment none is the run without the flag, bitwise");
}

static void test_resume(void) {
    const char *aug = "--augment crop:2,flip";
    char ck[512], extra[1600];
    snprintf(ck, sizeof ck, "%s/ck", dir);
    const char *full = model("r_full", 2, 1, cnn, aug);
    /* 150 samples, batch 32: 5 batches an epoch; step 7 is batch 2 of epoch 2 */
    snprintf(extra, sizeof extra, "%s --checkpoint-dir %s --checkpoint-every 3 --max-steps 7", aug,
             ck);
    train_ok(2, 1, cnn, extra);
    static const char *other[][2] = {{"--augment crop:1,flip", "augment = crop:2,flip, this one "
                                                               "crop:1,flip"},
                                     {"", "augment = crop:2,flip, this one none"}};
    for (int k = 0; k < 2; ++k) {
        char *out = NULL;
        snprintf(extra, sizeof extra, "%s --checkpoint-dir %s --resume auto", other[k][0], ck);
        const int rc = train(2, 1, cnn, extra, &out);
        CHECK(rc != 0 && out && strstr(out, other[k][1]) && strstr(out, "step_00000007.h5"),
              "resume with '%s' refused: %s", other[k][0], out ? out : "");
        free(out);
    }
    snprintf(extra, sizeof extra, "--augment ' crop:02 , flip' --checkpoint-dir %s --resume auto",
             ck);
    const char *res = model("r_resumed", 2, 1, cnn, extra);
    CHECK(sp_test_same_params(full, res),
          "--augment, 2 ranks: stopped mid-epoch + resumed == uninterrupted, bitwise");
    /* a run without the flag resumes a checkpoint of a run without it (older ones too) */
    snprintf(ck, sizeof ck, "%s/ck_plain", dir);
    snprintf(extra, sizeof extra, "--checkpoint-dir %s --max-steps 4", ck);
    train_ok(0, 1, cnn, extra);
    char *out = NULL;
    snprintf(extra, sizeof extra, "--augment flip --checkpoint-dir %s --resume auto", ck);
    int rc = train(0, 1, cnn, extra, &out);
    CHECK(rc != 0 && out && strstr(out, "augment = none, this one flip"),
          "--augment on a run that had none refused: %s", out ? out : "");
    free(out);
    snprintf(extra, sizeof extra, "--checkpoint-dir %s --resume auto", ck);
    train_ok(0, 1, cnn, extra);
}

/* The last epoch event's val_loss against `shardprop eval` of the final model on val.h5. */
static void test_validation(void) {
    char met[512], extra[1600], args[1600];
    snprintf(met, sizeof met, "%s/val.jsonl", dir);
    remove(met);
    snprintf(extra, sizeof extra, "--augment crop:3,flip --val %s/val.h5 --metrics %s", dir, met);
    const char *m = model("v", 2, 1, cnn, extra);
    double val[8];
    const int n = sp_test_metric_values(met, "epoch", "val_loss", val, 8);
    char *out = NULL;
    snprintf(args, sizeof args, "eval --checkpoint %s --data %s/val.h5", m, dir);
    const int rc = sp_test_shardprop(2, 1, args, &out);
    const char *p = out ? strstr(out, "\nloss ") : NULL; /* "loss L  accuracy A" */
    const double ev = p ? strtod(p + 6, NULL) : NAN;
    CHECK(rc == 0 && n == 3 && fabs(val[n - 1] - ev) <= 1e-5 * fabs(ev) + 1e-6,
          "the last val_loss %.6f is eval's %.6f on the file as it is (%d epochs)\n%s",
          n ? val[n - 1] : NAN, ev, n, out ? out : "");
    free(out);
}

/* The config-file form, in --dry-run's text and JSON (in canonical form), and at the start. */
static void test_shown(void) {
    char conf[512], args[1600], *out = NULL;
    snprintf(conf, sizeof conf, "%s/aug.conf", dir);
    FILE *f = fopen(conf, "w");
    if (f) {
        fprintf(f, "data = %s/img.h5\nmodel = flatten,dense:3\naugment = translate:1 , flip\n",
                dir);
        fclose(f);
    }
    snprintf(args, sizeof args, "train --config %s --dry-run", conf);
    int rc = sp_test_shardprop(0, 1, args, &out);
    CHECK(rc == 0 && out && strstr(out, "\naugment: translate:1,flip (training batches only"),
          "--dry-run names the list of the config file:\n%s", out ? out : "");
    free(out);
    out = NULL;
    snprintf(args, sizeof args, "train --config %s --dry-run --json", conf);
    rc = sp_test_shardprop(0, 1, args, &out);
    CHECK(rc == 0 && out && strstr(out, "\"augment\": \"translate:1,flip\""),
          "--dry-run --json: %s", out ? out : "");
    free(out);
    out = NULL;
    snprintf(args, sizeof args, "train --config %s --dry-run --json --augment none", conf);
    rc = sp_test_shardprop(0, 1, args, &out);
    CHECK(rc == 0 && out && strstr(out, "\"augment\": \"none\""),
          "--augment none overrides the file: %s", out ? out : "");
    free(out);
    out = NULL;
    snprintf(args, sizeof args, "train --config %s --max-steps 0", conf);
    rc = sp_test_shardprop(0, 1, args, &out);
    CHECK(rc == 0 && out && strstr(out, "augment: translate:1,flip (the training batches only)"),
          "the start of the run names the list:\n%s", out ? out : "");
    free(out);
}

static void test_errors(void) {
    char args[1600], *out = NULL;
    snprintf(args, sizeof args,
             "synth --kind blobs --n 60 --features 6 --classes 3 --seed 1 --out %s/vec.h5", dir);
    CHECK(sp_test_shardprop(0, 1, args, NULL) == 0, "synth");
    snprintf(args, sizeof args, "train --data %s/vec.h5 --model dense:3 --augment crop:1,flip",
             dir);
    int rc = sp_test_shardprop(2, 1, args, &out);
    CHECK(rc != 0 && out && strstr(out, "vec.h5: dataset 'X': augment 'crop:1,flip' needs images"),
          "vector data: %s", out ? out : "");
    free(out);
    static const char *bad[][2] = {{"crop:9", "crop:9 on 9x9 images"},
                                   {"flip,rotate:10", "--augment 'flip,rotate:10': unknown "
                                                      "transform 'rotate'"},
                                   {"translate", "translate needs its shift"}};
    for (int k = 0; k < 3; ++k) {
        char extra[256];
        snprintf(extra, sizeof extra, "--augment %s", bad[k][0]);
        out = NULL;
        rc = train(2, 1, cnn, extra, &out);
        int lines = 0;
        for (const char *q = out; q && (q = strstr(q, "error:")); ++q) ++lines;
        CHECK(rc != 0 && out && strstr(out, bad[k][1]) && lines >= 1 && lines <= 2,
              "--augment %s: one error line (rank 0) with '%s':\n%s", bad[k][0], bad[k][1],
              out ? out : "");
        free(out);
    }
    char conf[512];
    snprintf(conf, sizeof conf, "%s/bad.conf", dir);
    FILE *f = fopen(conf, "w");
    if (f) {
        fprintf(f, "data = %s/img.h5\nmodel = flatten,dense:3\naugment = crop:-2\n", dir);
        fclose(f);
    }
    snprintf(args, sizeof args, "train --config %s", conf);
    out = NULL;
    rc = sp_test_shardprop(0, 1, args, &out);
    CHECK(rc != 0 && out && strstr(out, "--augment 'crop:-2'") && strstr(out, "must be >= 0"),
          "augment = crop:-2 in a config file: %s", out ? out : "");
    free(out);
}

int main(void) {
    snprintf(dir, sizeof dir, "%s", sp_test_tmpdir("augment"));
    char path[512];
    snprintf(path, sizeof path, "%s/img.h5", dir);
    write_images(path, 150, 3);
    snprintf(path, sizeof path, "%s/val.h5", dir);
    write_images(path, 60, 4);
    test_deterministic();
    test_float();
    test_resume();
    test_validation();
    test_shown();
    test_errors();
    return sp_test_summary("augment");
}
