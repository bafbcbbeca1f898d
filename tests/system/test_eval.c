/*
 * Using a trained model: `shardprop eval`, `shardprop predict`, `shardprop inspect MODEL.h5`,
 * driven through the executable (alone and under mpiexec), and the unlabeled data sets that
 * predict accepts (data/: SP_DATASET_Y_OPTIONAL).
 *  - eval on the validation file gives training's final val_loss / val_accuracy (1e-6 relative);
 *    under 2 and 3 ranks (uneven slices, empty ones) the same loss (1e-6 relative) and exactly
 *    the same counts and confusion matrix; the JSON line parses, per-class figures agree with the
 *    confusion matrix; regression gives mse (= loss) and mae;
 *  - predict: shapes, input order (against the model applied here, row by row), probabilities
 *    sum to 1, argmax = label, the accuracy of `label` = eval's; the same bits under 2 ranks and
 *    another batch size; regression `outputs`; unlabeled input; no output left after a failure;
 *  - errors: missing checkpoint, wrong sample shape, regression data for a classification model:
 *    one line, non-zero exit, printed once with 2 ranks;
 *  - inspect: the spec, parameter shapes and "validation: OK"; a checkpoint with a deleted
 *    parameter dataset: FAILED and a non-zero exit.
 */
#include <hdf5.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "data/data.h"
#include "shardprop/model.h"
#include "testutil.h"
#include "train/eval.h"
#include "train_util.h"

static char dir[256];

static int count_of(const char *s, const char *needle) {
    int n = 0;
    for (const char *p = s; (p = strstr(p, needle)); ++p) ++n;
    return n;
}

/* `shardprop ARGS` alone (np == 0) or under mpiexec -n np, one thread; output (stdout+stderr). */
static char *run(int np, const char *args, int *rc) {
    char *out = NULL;
    *rc = sp_test_shardprop(np, 1, args, &out);
    return out ? out : calloc(1, 1);
}

static void run_ok(int np, const char *args, const char *what) {
    int rc;
    char *out = run(np, args, &rc);
    CHECK(rc == 0, "%s: exit %d\n%s", what, rc, out);
    free(out);
}

/* The number after "key": in the last line of `path` that contains `event`. */
static double json_num(const char *path, const char *event, const char *key) {
    FILE *f = fopen(path, "r");
    if (!f) return NAN;
    char line[1 << 16], last[1 << 16] = "";
    while (fgets(line, sizeof line, f))
        if (strstr(line, event)) memcpy(last, line, sizeof line);
    fclose(f);
    char pat[128];
    snprintf(pat, sizeof pat, "\"%s\": ", key);
    const char *p = strstr(last, pat);
    return p ? strtod(p + strlen(pat), NULL) : NAN;
}

/* The last eval line of `path`, from "\"n\"" on (counts, confusion matrix: must match exactly)
 * up to "\"ranks\"" (which differs). */
static char *eval_counts(const char *path) {
    FILE *f = fopen(path, "r");
    char line[1 << 16], last[1 << 16] = "";
    while (f && fgets(line, sizeof line, f))
        if (strstr(line, "\"event\": \"eval\"")) memcpy(last, line, sizeof line);
    if (f) fclose(f);
    char *a = strstr(last, "\"n\": "), *b = strstr(last, "\"ranks\"");
    if (!a || !b || b < a) return strdup("<none>");
    *b = '\0';
    return strdup(a);
}

/* tmpl with every "%s" replaced by the test directory (templates from tables: no
 * non-literal printf formats). */
static void expand(char *out, size_t cap, const char *tmpl) {
    size_t k = 0, dl = strlen(dir);
    for (const char *p = tmpl; *p && k + 1 < cap; ++p) {
        if (p[0] == '%' && p[1] == 's' && k + dl < cap) {
            memcpy(out + k, dir, dl);
            k += dl;
            ++p;
        } else {
            out[k++] = *p;
        }
    }
    out[k] = '\0';
}

static double rel(double a, double b) {
    return fabs(a - b) / fmax(fabs(b), 1e-300);
}

/* ----------------------------------------------------------------------------- HDF5 reading */

/* A whole dataset as float or int32 (mem_type), its dims into dims[0..*rank). malloc'd. */
static void *read_all(const char *path, const char *name, hid_t mem_type, int *rank,
                      hsize_t *dims) {
    *rank = 0;
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0) return NULL;
    void *buf = NULL;
    hid_t d = H5Dopen2(f, name, H5P_DEFAULT);
    if (d >= 0) {
        hid_t s = H5Dget_space(d);
        *rank = H5Sget_simple_extent_ndims(s);
        H5Sget_simple_extent_dims(s, dims, NULL);
        size_t n = (size_t)H5Sget_simple_extent_npoints(s);
        buf = malloc(n * H5Tget_size(mem_type) + 1);
        if (H5Dread(d, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0) {
            free(buf);
            buf = NULL;
        }
        H5Sclose(s);
        H5Dclose(d);
    }
    H5Fclose(f);
    return buf;
}

static bool has_dataset(const char *path, const char *name) {
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0) return false;
    bool yes = H5Lexists(f, name, H5P_DEFAULT) > 0;
    H5Fclose(f);
    return yes;
}

/* A copy of `src`'s X (float32 (N, F)) alone, as an unlabeled file. */
static void write_unlabeled(const char *src, const char *dst) {
    int r;
    hsize_t dims[4];
    float *x = read_all(src, "X", H5T_NATIVE_FLOAT, &r, dims);
    hid_t f = H5Fcreate(dst, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    hid_t s = H5Screate_simple(r, dims, NULL);
    hid_t d = H5Dcreate2(f, "X", H5T_IEEE_F32LE, s, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    H5Dwrite(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, x);
    H5Dclose(d), H5Sclose(s), H5Fclose(f);
    free(x);
}

/* ---------------------------------------------------------------------------- the reference */

/* The model of `ckpt` applied here to every row of `data`, one sample at a time:
 * (N, K) raw outputs. */
static float *reference_outputs(const char *ckpt, const char *data, int64_t *n, int *k) {
    sp_model *m = NULL;
    bool xent;
    sp_dataset *ds = NULL;
    float *out = NULL;
    if (sp_eval_load_model(ckpt, 1, &m, &xent) != SP_OK ||
        sp_dataset_open_ex(&ds, data, NULL, NULL, SP_DATASET_Y_OPTIONAL) != SP_OK) {
        fprintf(stderr, "reference: %s\n", sp_last_error());
        goto done;
    }
    const sp_dataset_info *in = sp_dataset_get_info(ds);
    *n = in->n;
    *k = (int)sp_model_output_size(m);
    out = malloc(sizeof(float) * (size_t)*n * (size_t)*k);
    float *x = malloc(sizeof(float) * in->sample_size);
    for (int64_t i = 0; i < *n; ++i) {
        sp_dataset_read(ds, &i, 1, x, NULL, NULL);
        const sp_step_ctx ctx = {.training = false};
        memcpy(out + (size_t)i * *k, sp_model_forward(m, x, 1, &ctx), sizeof(float) * (size_t)*k);
    }
    free(x);
done:
    sp_dataset_close(ds);
    sp_model_free(m);
    return out;
}

/* ------------------------------------------------------------------------------------ tests */

static void test_eval_matches_training(void) {
    char args[2048], em[600], tm[600];
    snprintf(tm, sizeof tm, "%s/train.jsonl", dir);
    snprintf(em, sizeof em, "%s/eval1.jsonl", dir);
    snprintf(args, sizeof args,
             "eval --checkpoint %s/model.h5 --data %s/va.h5 --metrics %s --batch 64", dir, dir, em);
    int rc;
    char *out = run(0, args, &rc);
    CHECK(rc == 0, "eval: exit %d\n%s", rc, out);
    CHECK(strstr(out, "loss ") && strstr(out, "accuracy ") && strstr(out, "per-class accuracy") &&
              strstr(out, "confusion matrix"),
          "eval prints loss, accuracy, per-class accuracy and the confusion matrix:\n%s", out);
    free(out);
    const double vl = json_num(tm, "\"event\": \"summary\"", "val_loss");
    const double va = json_num(tm, "\"event\": \"summary\"", "val_accuracy");
    const double l1 = json_num(em, "\"event\": \"eval\"", "loss");
    const double a1 = json_num(em, "\"event\": \"eval\"", "accuracy");
    const double n1 = json_num(em, "\"event\": \"eval\"", "n");
    printf("training: val_loss %.9g val_accuracy %.9g; eval: loss %.9g accuracy %.9g n %.0f\n", vl,
           va, l1, a1, n1);
    CHECK(rel(l1, vl) <= 1e-6, "eval loss %.9g vs training's val_loss %.9g", l1, vl);
    CHECK(rel(a1, va) <= 1e-6, "eval accuracy %.9g vs training's val_accuracy %.9g", a1, va);
    CHECK(n1 == 300, "n = %g", n1);
    CHECK(a1 > 0.8, "the model learned something: accuracy %g", a1);

    /* 2 and 3 ranks, batch sizes with uneven (and, for 3 ranks and batch 4, empty) slices, and
     * a batch far larger than the file (the model is sized by the file) */
    char *c1 = eval_counts(em);
    const struct {
        int np;
        int batch;
    } lay[] = {{2, 64}, {3, 7}, {3, 4}, {2, 1 << 24}};
    for (size_t i = 0; i < sizeof lay / sizeof lay[0]; ++i) {
        char emn[600];
        snprintf(emn, sizeof emn, "%s/eval_%zu.jsonl", dir, i);
        snprintf(args, sizeof args,
                 "eval --checkpoint %s/model.h5 --data %s/va.h5 --metrics %s --batch %d", dir, dir,
                 emn, lay[i].batch);
        out = run(lay[i].np, args, &rc);
        CHECK(rc == 0, "eval %d ranks: exit %d\n%s", lay[i].np, rc, out);
        CHECK(count_of(out, "per-class accuracy") == 1, "rank 0 prints, once:\n%s", out);
        free(out);
        const double l = json_num(emn, "\"event\": \"eval\"", "loss");
        CHECK(rel(l, l1) <= 1e-6, "%d ranks batch %d: loss %.12g vs %.12g", lay[i].np, lay[i].batch,
              l, l1);
        char *c = eval_counts(emn);
        CHECK(!strcmp(c, c1), "%d ranks batch %d: counts and confusion matrix equal:\n%s\nvs\n%s",
              lay[i].np, lay[i].batch, c, c1);
        free(c);
    }
    free(c1);

    /* the JSON line parses, has its fields, and the per-class figures agree with the matrix */
    char cmd[4096];
    snprintf(cmd, sizeof cmd,
             "python3 - '%s' <<'EOF'\n"
             "import json, sys\n"
             "d = [json.loads(l) for l in open(sys.argv[1])][-1]\n"
             "assert d['event'] == 'eval'\n"
             "for k in ('loss', 'accuracy', 'n', 'correct', 'classes', 'class_accuracy',\n"
             "          'class_total', 'class_correct', 'confusion'):\n"
             "    assert k in d, k\n"
             "C, M = d['classes'], d['confusion']\n"
             "assert len(M) == C and all(len(r) == C for r in M)\n"
             "assert sum(map(sum, M)) == d['n']\n"
             "for c in range(C):\n"
             "    assert sum(M[c]) == d['class_total'][c], c\n"
             "    assert M[c][c] == d['class_correct'][c], c\n"
             "    t = d['class_total'][c]\n"
             "    assert t == 0 or abs(d['class_accuracy'][c] - M[c][c] / t) < 1e-8, c\n"
             "assert sum(M[c][c] for c in range(C)) == d['correct']\n"
             "assert abs(d['accuracy'] - d['correct'] / d['n']) < 1e-8\n"
             "print('eval json ok:', d['n'], 'samples,', d['correct'], 'correct')\n"
             "EOF",
             em);
    out = NULL;
    rc = sp_test_run(cmd, &out);
    CHECK(rc == 0, "eval JSON line parses and is consistent:\n%s", out ? out : "");
    if (out) printf("%s", out);
    free(out);
}

static void test_eval_regression(void) {
    char args[2048], em[600], tm[600];
    snprintf(tm, sizeof tm, "%s/reg_train.jsonl", dir);
    snprintf(em, sizeof em, "%s/reg_eval.jsonl", dir);
    snprintf(args, sizeof args, "eval --checkpoint %s/reg.h5 --data %s/reg_va.h5 --metrics %s", dir,
             dir, em);
    int rc;
    char *out = run(0, args, &rc);
    CHECK(rc == 0 && strstr(out, "mse ") && strstr(out, "mae ") && strstr(out, "per target"),
          "regression eval: exit %d, prints mse, mae and per target:\n%s", rc, out);
    free(out);
    const double vl = json_num(tm, "\"event\": \"summary\"", "val_loss");
    const double l = json_num(em, "\"event\": \"eval\"", "loss");
    const double mse = json_num(em, "\"event\": \"eval\"", "mse");
    const double mae = json_num(em, "\"event\": \"eval\"", "mae");
    CHECK(rel(l, vl) <= 1e-6, "regression: eval loss %.9g vs training's val_loss %.9g", l, vl);
    CHECK(l == mse && mae > 0 && mae * mae <= mse * (1 + 1e-9), "mse %g = loss %g, mae %g", mse, l,
          mae);
    snprintf(em, sizeof em, "%s/reg_eval2.jsonl", dir);
    snprintf(args, sizeof args,
             "eval --checkpoint %s/reg.h5 --data %s/reg_va.h5 --metrics %s --batch 5", dir, dir,
             em);
    run_ok(2, args, "regression eval, 2 ranks");
    const double l2 = json_num(em, "\"event\": \"eval\"", "loss");
    const double mae2 = json_num(em, "\"event\": \"eval\"", "mae");
    CHECK(rel(l2, l) <= 1e-6 && rel(mae2, mae) <= 1e-6, "2 ranks: loss %.12g mae %.12g", l2, mae2);
}

static void test_predict(void) {
    char args[2048], p1[600], p2[600], pu[600], un[600], va[600], ck[600];
    snprintf(va, sizeof va, "%s/va.h5", dir);
    snprintf(ck, sizeof ck, "%s/model.h5", dir);
    snprintf(p1, sizeof p1, "%s/pred1.h5", dir);
    snprintf(p2, sizeof p2, "%s/pred2.h5", dir);
    snprintf(pu, sizeof pu, "%s/pred_unlabeled.h5", dir);
    snprintf(un, sizeof un, "%s/unlabeled.h5", dir);
    snprintf(args, sizeof args, "predict --checkpoint %s --data %s --out %s --batch 64", ck, va,
             p1);
    run_ok(0, args, "predict");
    int rp, rl, ry;
    hsize_t dp[4], dl[4], dy[4];
    float *probs = read_all(p1, "probs", H5T_NATIVE_FLOAT, &rp, dp);
    int32_t *label = read_all(p1, "label", H5T_NATIVE_INT32, &rl, dl);
    int32_t *y = read_all(va, "y", H5T_NATIVE_INT32, &ry, dy);
    CHECK(probs && label && y, "read probs, label, y");
    if (!probs || !label || !y) return;
    CHECK(rp == 2 && dp[0] == 300 && dp[1] == 4, "probs (N, C) = (300, 4): rank %d (%llu, %llu)",
          rp, (unsigned long long)dp[0], (unsigned long long)dp[1]);
    CHECK(rl == 1 && dl[0] == 300, "label (N,) = (300,)");
    CHECK(!has_dataset(p1, "outputs"), "no outputs dataset for a classifier");
    /* input order: row i is the model applied to sample i (computed here one row at a time) */
    int64_t n = 0;
    int k = 0;
    float *z = reference_outputs(ck, va, &n, &k);
    CHECK(z && n == 300 && k == 4, "reference outputs");
    int64_t correct = 0, bad_sum = 0, bad_arg = 0, bad_ref = 0;
    double max_err = 0;
    for (int64_t i = 0; z && i < n; ++i) {
        const float *pi = probs + i * k, *zi = z + i * k;
        double s = 0, se = 0;
        int am = 0, zm = 0;
        for (int j = 0; j < k; ++j) {
            s += pi[j];
            if (pi[j] > pi[am]) am = j;
            if (zi[j] > zi[zm]) zm = j;
        }
        for (int j = 0; j < k; ++j) se += exp((double)zi[j] - zi[zm]);
        for (int j = 0; j < k; ++j)
            max_err = fmax(max_err, fabs(pi[j] - exp((double)zi[j] - zi[zm]) / se));
        bad_sum += fabs(s - 1) > 1e-5;
        bad_arg += pi[label[i]] != pi[am]; /* argmax (up to ties in float) */
        bad_ref += label[i] != zm;
        correct += label[i] == y[i];
    }
    CHECK(bad_sum == 0, "%lld rows whose probabilities do not sum to 1", (long long)bad_sum);
    CHECK(bad_arg == 0, "%lld rows whose label is not the argmax of probs", (long long)bad_arg);
    CHECK(bad_ref == 0 && max_err < 1e-6,
          "rows in input order: %lld labels differ from the model applied here, max prob error "
          "%.3g",
          (long long)bad_ref, max_err);
    char em[600];
    snprintf(em, sizeof em, "%s/eval1.jsonl", dir);
    const double ecorrect = json_num(em, "\"event\": \"eval\"", "correct");
    CHECK((double)correct == ecorrect, "accuracy of label: %lld correct, eval says %g",
          (long long)correct, ecorrect);
    free(z);

    /* 2 ranks and another batch size (uneven slices): the same bits */
    snprintf(args, sizeof args, "predict --checkpoint %s --data %s --out %s --batch 7", ck, va, p2);
    run_ok(2, args, "predict, 2 ranks");
    float *probs2 = read_all(p2, "probs", H5T_NATIVE_FLOAT, &rp, dp);
    int32_t *label2 = read_all(p2, "label", H5T_NATIVE_INT32, &rl, dl);
    CHECK(probs2 && label2 && !memcmp(probs, probs2, sizeof(float) * 300 * 4) &&
              !memcmp(label, label2, sizeof(int32_t) * 300),
          "predict under 2 ranks with batch 7 == 1 rank, bitwise");
    free(probs2), free(label2);

    /* unlabeled input: X only */
    write_unlabeled(va, un);
    snprintf(args, sizeof args, "predict --checkpoint %s --data %s --out %s", ck, un, pu);
    run_ok(2, args, "predict on unlabeled data");
    probs2 = read_all(pu, "probs", H5T_NATIVE_FLOAT, &rp, dp);
    CHECK(probs2 && !memcmp(probs, probs2, sizeof(float) * 300 * 4),
          "unlabeled input: the same probabilities");
    free(probs2);
    free(probs), free(label), free(y);

    /* no partial output after a failure; eval refuses unlabeled data with a hint */
    snprintf(args, sizeof args, "predict --checkpoint %s --data %s --out %s/no/such/dir/p.h5", ck,
             va, dir);
    int rc;
    char *out = run(2, args, &rc);
    CHECK(rc != 0 && count_of(out, "error:") == 1, "unwritable output: one error, exit %d:\n%s", rc,
          out);
    free(out);
    snprintf(args, sizeof args, "eval --checkpoint %s --data %s", ck, un);
    out = run(0, args, &rc);
    CHECK(rc != 0 && strstr(out, "predict"), "eval on unlabeled data: error with a hint:\n%s", out);
    free(out);

    /* regression: outputs (N, T) in input order */
    char rp1[600], rck[600], rva[600];
    snprintf(rck, sizeof rck, "%s/reg.h5", dir);
    snprintf(rva, sizeof rva, "%s/reg_va.h5", dir);
    snprintf(rp1, sizeof rp1, "%s/reg_pred.h5", dir);
    snprintf(args, sizeof args, "predict --checkpoint %s --data %s --out %s --batch 9", rck, rva,
             rp1);
    run_ok(2, args, "regression predict, 2 ranks");
    float *o = read_all(rp1, "outputs", H5T_NATIVE_FLOAT, &rp, dp);
    CHECK(o && rp == 2 && dp[1] == 3 && !has_dataset(rp1, "probs") && !has_dataset(rp1, "label"),
          "regression: outputs (N, 3) only");
    z = reference_outputs(rck, rva, &n, &k);
    CHECK(o && z && dp[0] == (hsize_t)n && sp_test_relerr_ff(o, z, (size_t)(n * k), 1.0) < 1e-6,
          "regression outputs in input order");
    free(o), free(z);
}

static void test_errors(void) {
    char args[2048];
    const struct {
        const char *args, *needle, *what;
        bool two_ranks; /* also under mpiexec -n 2: printed once, every rank exits */
    } cases[] = {
        {"eval --checkpoint %s/missing.h5 --data %s/va.h5", "missing.h5", "missing checkpoint",
         true},
        {"predict --checkpoint %s/missing.h5 --data %s/va.h5 --out x.h5", "missing.h5",
         "predict: missing checkpoint", false},
        {"eval --checkpoint %s/model.h5 --data %s/f5.h5", "sample shape", "shape mismatch", true},
        {"predict --checkpoint %s/model.h5 --data %s/f5.h5 --out x.h5", "sample shape",
         "predict: shape mismatch", true},
        {"eval --checkpoint %s/model.h5 --data %s/reg6.h5", "regression",
         "regression data for a classifier", true},
        {"eval --checkpoint %s/reg.h5 --data %s/va5.h5", "class labels",
         "class labels for a regression model", false},
        {"eval --checkpoint %s/model.h5 --data %s/c9.h5", "9 classes", "more classes than outputs",
         false},
        {"eval --checkpoint %s/va.h5 --data %s/va.h5", "not a shardprop checkpoint",
         "a data file as the checkpoint", false},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; ++i)
        for (int np = 0; np <= (cases[i].two_ranks ? 2 : 0); np += 2) {
            expand(args, sizeof args, cases[i].args);
            int rc;
            char *out = run(np, args, &rc);
            /* alone: exactly one line; under mpiexec its own notice follows ours */
            CHECK(rc != 0 && strstr(out, cases[i].needle) && count_of(out, "error:") == 1 &&
                      (np > 0 || count_of(out, "\n") == 1),
                  "%s (%d ranks): one line naming it, non-zero exit (%d):\n%s", cases[i].what,
                  np ? np : 1, rc, out);
            free(out);
        }
    int rc;
    char *out = run(2, "eval --checkpoint a.h5", &rc);
    CHECK(rc == 2 && count_of(out, "error:") == 1 && strstr(out, "--data"),
          "a missing flag: exit 2, printed once:\n%s", out);
    free(out);
    for (int i = 0; i < 2; ++i) {
        out = run(0, i ? "predict --help" : "eval --help", &rc);
        CHECK(rc == 0 && strstr(out, "--checkpoint") && strstr(out, "--data") &&
                  strstr(out, "--batch") && strstr(out, "--x") && strstr(out, "--threads") &&
                  strstr(out, i ? "--out" : "--metrics"),
              "--help documents the flags:\n%s", out);
        free(out);
    }
}

static void test_inspect(void) {
    char args[2048], bad[600];
    snprintf(args, sizeof args, "inspect %s/model.h5", dir);
    int rc;
    char *out = run(0, args, &rc);
    CHECK(rc == 0 && strstr(out, "spec: dense:16,relu,dense:4") &&
              strstr(out, "input shape: (6,)") && strstr(out, "loss: xent") &&
              strstr(out, "params/0/weight (16, 6) bias (16,): 112 parameters") &&
              strstr(out, "params/2/weight (4, 16)") && strstr(out, "optimizer: adam, step") &&
              strstr(out, "train state: step") && strstr(out, "epochs = 3") &&
              strstr(out, "validation: OK"),
          "inspect describes the checkpoint (exit %d):\n%s", rc, out);
    free(out);
    /* delete a parameter dataset */
    snprintf(bad, sizeof bad, "%s/corrupt.h5", dir);
    snprintf(args, sizeof args, "cp %s/model.h5 %s", dir, bad);
    CHECK(sp_test_run(args, NULL) == 0, "copy");
    hid_t f = H5Fopen(bad, H5F_ACC_RDWR, H5P_DEFAULT);
    CHECK(f >= 0 && H5Ldelete(f, "/model/params/2/bias", H5P_DEFAULT) >= 0, "delete a dataset");
    H5Fclose(f);
    snprintf(args, sizeof args, "inspect %s", bad);
    out = run(0, args, &rc);
    CHECK(rc != 0 && strstr(out, "validation: FAILED") && strstr(out, "/model/params/2/bias"),
          "inspect of a damaged checkpoint: FAILED naming the dataset, exit %d:\n%s", rc, out);
    free(out);
    /* the same damaged file refused by eval */
    snprintf(args, sizeof args, "eval --checkpoint %s --data %s/va.h5", bad, dir);
    out = run(2, args, &rc);
    CHECK(rc != 0 && count_of(out, "error:") == 1 && strstr(out, "params/2/bias"),
          "eval of a damaged checkpoint: one error:\n%s", out);
    free(out);
}

/* data/: SP_DATASET_Y_OPTIONAL */
static void test_unlabeled_dataset(void) {
    char va[600], un[600];
    snprintf(va, sizeof va, "%s/va.h5", dir);
    snprintf(un, sizeof un, "%s/unlabeled.h5", dir);
    sp_dataset *ds = NULL;
    CHECK(sp_dataset_open(&ds, un, NULL, NULL) == SP_ERR_DATA && strstr(sp_last_error(), "'y'"),
          "without the flag y is required: %s", sp_last_error());
    CHECK(sp_dataset_open_ex(&ds, un, NULL, NULL, SP_DATASET_Y_OPTIONAL) == SP_OK, "%s",
          sp_last_error());
    if (!ds) return;
    const sp_dataset_info *in = sp_dataset_get_info(ds);
    CHECK(!in->labeled && !in->regression && in->classes == 0 && in->n == 300, "unlabeled info");
    float x[6];
    int32_t l;
    int64_t id = 5;
    CHECK(sp_dataset_read(ds, &id, 1, x, &l, NULL) == SP_ERR_ARG, "labels of unlabeled data");
    char line[512];
    sp_dataset_describe(ds, line, sizeof line);
    CHECK(strstr(line, "unlabeled") != NULL, "%s", line);
    sp_loader *ld = NULL;
    sp_loader_config lc = {.batch = 64, .rank = 1, .nranks = 2, .prefetch = true};
    CHECK(sp_loader_create(&ld, ds, &lc) == SP_OK, "%s", sp_last_error());
    sp_dataset *dl = NULL;
    CHECK(sp_dataset_open_ex(&dl, va, NULL, NULL, SP_DATASET_Y_OPTIONAL) == SP_OK &&
              sp_dataset_get_info(dl)->labeled,
          "a labeled file opens labeled with the flag");
    int64_t rows = 0, same = 0;
    float xr[6];
    if (ld && sp_loader_start_epoch(ld, 0, 0) == SP_OK) {
        sp_batch b;
        bool done = false;
        while (sp_loader_next(ld, &b, &done) == SP_OK && !done) {
            CHECK(!b.labels && !b.targets, "no labels in an unlabeled batch");
            for (int64_t i = 0; i < b.count; ++i) {
                sp_dataset_read(dl, &b.ids[i], 1, xr, NULL, NULL);
                same += !memcmp(xr, b.x + i * 6, sizeof xr);
            }
            rows += b.count;
        }
    }
    CHECK(rows == 150 && same == rows, "rank 1 of 2 reads its 150 rows: %lld, %lld equal",
          (long long)rows, (long long)same);
    sp_loader_free(ld);
    sp_dataset_close(dl);
    sp_dataset_close(ds);
}

int main(void) {
    snprintf(dir, sizeof dir, "%s", sp_test_tmpdir("eval"));
    char args[4096];
    const char *steps[] = {
        "synth --kind blobs --n 1000 --features 6 --classes 4 --seed 3 --out %s/all.h5",
        "split %s/all.h5 --val-fraction 0.3 --seed 1 --out-train %s/tr.h5 --out-val %s/va.h5",
        "train --data %s/tr.h5 --val %s/va.h5 --model dense:16,relu,dense:4 --epochs 3 --batch "
        "32 --optimizer adam --lr 0.01 --quiet --out %s/model.h5 --metrics %s/train.jsonl",
        "synth --kind regression --n 400 --features 5 --outputs 3 --seed 4 --out %s/reg_all.h5",
        "split %s/reg_all.h5 --val-fraction 0.25 --seed 2 --out-train %s/reg_tr.h5 --out-val "
        "%s/reg_va.h5",
        "train --data %s/reg_tr.h5 --val %s/reg_va.h5 --model dense:8,tanh,dense:3 --epochs 3 "
        "--batch 16 --optimizer adam --lr 0.01 --quiet --out %s/reg.h5 --metrics "
        "%s/reg_train.jsonl",
        /* files that do not fit model.h5 / reg.h5 */
        "synth --kind blobs --n 50 --features 5 --classes 4 --out %s/f5.h5",
        "synth --kind regression --n 50 --features 6 --outputs 1 --out %s/reg6.h5",
        "synth --kind blobs --n 50 --features 5 --classes 3 --out %s/va5.h5",
        "synth --kind blobs --n 50 --features 6 --classes 9 --out %s/c9.h5",
    };
    for (size_t i = 0; i < sizeof steps / sizeof steps[0]; ++i) {
        expand(args, sizeof args, steps[i]);
        int rc;
        char *out = run(0, args, &rc);
        CHECK(rc == 0, "setup: %s: exit %d\n%s", args, rc, out);
        free(out);
    }
    test_eval_matches_training();
    test_eval_regression();
    test_predict();
    test_errors();
    test_inspect();
    test_unlabeled_dataset();
    return sp_test_summary("eval");
}
