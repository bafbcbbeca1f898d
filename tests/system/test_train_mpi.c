/*
 * `shardprop train` over MPI, driven through the executable:
 *  - equivalence: 1 rank vs 2, 3, 4 ranks and the 1x2 / 2x1 layouts, SGD with momentum and Adam
 *    (with dropout), shuffled, several epochs, a partial last batch (N = 203, B = 40: the last
 *    batch has 3 samples, so with 4 ranks one rank has none). Parameters must agree with the
 *    1-rank run within a relative tolerance of 1e-5 (max |a - b| / max |b|), and the epoch
 *    losses within 1e-5 relative;
 *  - the bucketed, overlapped allreduce equals one blocking allreduce (bitwise with 2 ranks,
 *    where a + b == b + a; within 1e-6 with 3);
 *  - bad data (a NaN that only one rank reads, a missing file) stops every rank with one clear
 *    error and a non-zero exit, within seconds;
 *  - the metrics JSON lines parse and carry their fields;
 *  - learning: blobs reach a validation accuracy of at least 0.95.
 */
#include <hdf5.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "testutil.h"
#include "train_util.h"

static char dir[256];

static double params_relerr(const char *a, const char *b) {
    size_t na = 0, nb = 0;
    float *pa = sp_test_read_params(a, &na), *pb = sp_test_read_params(b, &nb);
    double e = INFINITY;
    if (pa && pb && na == nb && na > 0) e = sp_test_relerr_ff(pa, pb, na, 1e-3);
    free(pa), free(pb);
    return e;
}

static int params_identical(const char *a, const char *b) {
    size_t na = 0, nb = 0;
    float *pa = sp_test_read_params(a, &na), *pb = sp_test_read_params(b, &nb);
    int same = pa && pb && na == nb && na > 0 && memcmp(pa, pb, na * sizeof(float)) == 0;
    free(pa), free(pb);
    return same;
}

/* The "loss" of each epoch event of a metrics file, in order. */
static int epoch_losses(const char *path, double *out, int cap) {
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    char line[4096];
    int n = 0;
    while (fgets(line, sizeof line, f) && n < cap) {
        if (!strstr(line, "\"event\": \"epoch\"")) continue;
        const char *p = strstr(line, "\"loss\": ");
        if (p) out[n++] = strtod(p + 8, NULL);
    }
    fclose(f);
    return n;
}

static void run_ok(int np, int threads, const char *args, const char *what) {
    char *out = NULL;
    int rc = sp_test_shardprop(np, threads, args, &out);
    CHECK(rc == 0, "%s: exit %d\n%s", what, rc, out ? out : "");
    free(out);
}

static void test_equivalence(const char *opt, const char *tag) {
    char args[2048], ref[600], refm[600];
    snprintf(ref, sizeof ref, "%s/%s_ref.h5", dir, tag);
    snprintf(refm, sizeof refm, "%s/%s_ref.jsonl", dir, tag);
    const char *common = "--model dense:16,relu,dropout:0.2,dense:3 --epochs 3 --batch 40 --seed 5 "
                         "--quiet --check-every 1";
    snprintf(args, sizeof args, "train --data %s/train.h5 %s %s --out %s --metrics %s", dir, common,
             opt, ref, refm);
    run_ok(0, 1, args, "1 rank x 1 thread");
    double lref[8];
    const int nref = epoch_losses(refm, lref, 8);
    CHECK(nref == 3, "%s: 3 epoch events, got %d", tag, nref);
    /* ranks x threads layouts */
    const int layouts[][2] = {{2, 1}, {3, 1}, {4, 1}, {0, 2}, {2, 2}};
    for (size_t i = 0; i < sizeof layouts / sizeof layouts[0]; ++i) {
        const int np = layouts[i][0], th = layouts[i][1];
        char outp[600], met[600], what[64];
        snprintf(outp, sizeof outp, "%s/%s_%dx%d.h5", dir, tag, np, th);
        snprintf(met, sizeof met, "%s/%s_%dx%d.jsonl", dir, tag, np, th);
        snprintf(args, sizeof args, "train --data %s/train.h5 %s %s --out %s --metrics %s", dir,
                 common, opt, outp, met);
        snprintf(what, sizeof what, "%s %d ranks x %d threads", tag, np ? np : 1, th);
        run_ok(np, th, args, what);
        const double e = params_relerr(outp, ref);
        CHECK(e < 1e-5, "%s: parameters vs 1 rank: relerr %.3g", what, e);
        double l[8];
        const int n = epoch_losses(met, l, 8);
        CHECK(n == nref, "%s: %d epoch events", what, n);
        for (int k = 0; k < n && k < nref; ++k)
            CHECK(fabs(l[k] - lref[k]) <= 1e-5 * fabs(lref[k]), "%s: epoch %d loss %.9g vs %.9g",
                  what, k + 1, l[k], lref[k]);
    }
}

static void test_buckets(void) {
    for (int np = 2; np <= 3; ++np) {
        char args[2048], a[600], b[600];
        snprintf(a, sizeof a, "%s/blocking_%d.h5", dir, np);
        snprintf(b, sizeof b, "%s/buckets_%d.h5", dir, np);
        const char *common = "--model dense:16,relu,dense:3 --epochs 2 --batch 40 --seed 5 --quiet "
                             "--optimizer adam --lr 0.01";
        snprintf(args, sizeof args, "train --data %s/train.h5 %s --bucket-mb 0 --out %s", dir,
                 common, a);
        run_ok(np, 1, args, "one blocking allreduce");
        /* 0.0002 MB = 52 floats: the 163 parameters go in 4 buckets */
        snprintf(args, sizeof args,
                 "train --data %s/train.h5 %s --bucket-mb 0.0002 --out %s --dry-run", dir, common,
                 b);
        char *out = NULL;
        sp_test_shardprop(np, 1, args, &out);
        CHECK(out && strstr(out, "gradient buckets (4,"), "4 buckets planned:\n%s", out ? out : "");
        free(out);
        /* the memory plan: 163 parameters, their gradients, Adam's two moments, the out-of-place
         * allreduce's receive buffer (more than one rank), and a total that adds up */
        snprintf(args, sizeof args, "train --data %s/train.h5 %s --dry-run --json", dir, common);
        out = NULL;
        sp_test_shardprop(np, 1, args, &out);
        const char *mem = out ? strstr(out, "\"memory\": {") : NULL;
        size_t v[8] = {0};
        CHECK(mem && sscanf(mem,
                            "\"memory\": {\"params\": %zu, \"grads\": %zu, \"activations\": %zu, "
                            "\"optimizer\": %zu, \"allreduce\": %zu, \"data_cache\": %zu, "
                            "\"data_buffers\": %zu, \"total\": %zu}",
                            &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &v[6], &v[7]) == 8,
              "--dry-run --json has the memory plan:\n%s", out ? out : "");
        CHECK(v[0] == 163 * 4 && v[1] == 163 * 4 && v[3] == 2 * 163 * 4 && v[4] == 163 * 4 &&
                  v[2] > 0 && v[5] > 0 && v[6] > 0 &&
                  v[7] == v[0] + v[1] + v[2] + v[3] + v[4] + v[5] + v[6],
              "memory plan %zu %zu %zu %zu %zu %zu %zu total %zu", v[0], v[1], v[2], v[3], v[4],
              v[5], v[6], v[7]);
        free(out);
        /* --deterministic: its int64 sums (8 bytes per parameter) and receive slots for the
         * other ranks' terms (8 (P - 1) / P), not the float receive buffer it does not use */
        snprintf(args, sizeof args, "train --data %s/train.h5 %s --dry-run --json --deterministic",
                 dir, common);
        out = NULL;
        sp_test_shardprop(np, 1, args, &out);
        mem = out ? strstr(out, "\"allreduce\": ") : NULL;
        size_t det = 0;
        CHECK(mem && sscanf(mem, "\"allreduce\": %zu", &det) == 1 &&
                  det >= 163 * 8 + 163 * 8 * (size_t)(np - 1) / (size_t)np && det < 163 * 4 * 1000,
              "--deterministic's memory plan: %zu bytes for 163 parameters\n%s", det,
              out ? out : "");
        free(out);
        snprintf(args, sizeof args, "train --data %s/train.h5 %s --bucket-mb 0.0002 --out %s", dir,
                 common, b);
        run_ok(np, 1, args, "bucketed overlapped allreduce");
        if (np == 2)
            CHECK(params_identical(a, b), "2 ranks: buckets == one blocking allreduce, bitwise");
        else
            CHECK(params_relerr(b, a) < 1e-6, "3 ranks: buckets vs blocking relerr %.3g",
                  params_relerr(b, a));
    }
}

/* X float32 (203, 6) with a NaN at row 150 (read by rank 1 of 2 in the first epoch or so). */
static void write_nan_file(const char *path) {
    float x[203 * 6];
    int32_t y[203];
    for (int i = 0; i < 203 * 6; ++i) x[i] = (float)(i % 13) * 0.1f;
    for (int i = 0; i < 203; ++i) y[i] = i % 3;
    x[150 * 6 + 2] = NAN;
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    hsize_t dx[2] = {203, 6}, dy[1] = {203};
    hid_t s = H5Screate_simple(2, dx, NULL);
    hid_t d = H5Dcreate2(f, "X", H5T_IEEE_F32LE, s, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    H5Dwrite(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, x);
    H5Dclose(d), H5Sclose(s);
    s = H5Screate_simple(1, dy, NULL);
    d = H5Dcreate2(f, "y", H5T_STD_I32LE, s, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    H5Dwrite(d, H5T_NATIVE_INT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, y);
    H5Dclose(d), H5Sclose(s), H5Fclose(f);
}

static int count_of(const char *s, const char *needle) {
    int n = 0;
    for (const char *p = s; (p = strstr(p, needle)); ++p) ++n;
    return n;
}

static void test_bad_data(void) {
    char path[600], args[2048];
    snprintf(path, sizeof path, "%s/nan.h5", dir);
    write_nan_file(path);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    snprintf(args, sizeof args,
             "train --data %s --model dense:8,relu,dense:3 --epochs 2 --batch 40 --quiet", path);
    char *out = NULL;
    int rc = sp_test_shardprop(2, 1, args, &out);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    const double secs = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
    CHECK(rc != 0, "NaN in X: non-zero exit");
    CHECK(out && strstr(out, "nan.h5") && strstr(out, "'X'") && strstr(out, "150"),
          "NaN: message names the file, the dataset and the row:\n%s", out ? out : "");
    CHECK(out && count_of(out, "error:") == 1, "NaN: the error is printed once:\n%s",
          out ? out : "");
    CHECK(secs < 20, "NaN: all ranks stopped in %.1f s", secs);
    free(out);

    snprintf(args, sizeof args, "train --data %s/missing.h5 --model dense:3 --quiet", dir);
    out = NULL;
    rc = sp_test_shardprop(2, 1, args, &out);
    CHECK(rc != 0 && out && strstr(out, "missing.h5") && count_of(out, "error:") == 1,
          "missing file: one error naming it, exit %d:\n%s", rc, out ? out : "");
    free(out);
    snprintf(args, sizeof args, "train --data %s/train.h5 --model dense:8,relu,dense:5 --quiet",
             dir);
    out = NULL;
    rc = sp_test_shardprop(2, 1, args, &out);
    CHECK(rc != 0 && out && strstr(out, "dense:3") && count_of(out, "error:") == 1,
          "model output does not match the classes: one error suggesting dense:3:\n%s",
          out ? out : "");
    free(out);
}

static void test_metrics_and_learning(void) {
    char args[2048], met[600];
    snprintf(met, sizeof met, "%s/learn.jsonl", dir);
    snprintf(args, sizeof args,
             "train --data %s/blobs_train.h5 --val %s/blobs_val.h5 --model dense:32,relu,dense:4 "
             "--epochs 4 --batch 32 --optimizer adam --lr 0.01 --log-every 10 --metrics %s",
             dir, dir, met);
    char *out = NULL;
    int rc = sp_test_shardprop(2, 1, args, &out);
    CHECK(rc == 0, "blobs training: exit %d\n%s", rc, out ? out : "");
    free(out);
    /* every line is JSON with the fields of its event (checked by Python's json module) */
    char cmd[4096];
    snprintf(cmd, sizeof cmd,
             "python3 - '%s' <<'EOF'\n"
             "import json, sys\n"
             "need = {'step': ['step', 'epoch', 'loss', 'accuracy', 'lr', 'samples_per_s'],\n"
             "        'epoch': ['epoch', 'step', 'loss', 'accuracy', 'val_loss', 'val_accuracy',\n"
             "                  'time_s', 'samples_per_s', 'compute_s', 'comm_s',\n"
             "                  'comm_hidden_fraction', 'io_wait_s'],\n"
             "        'summary': ['steps'],\n"
             "        'straggler': ['rank', 'compute_ms_per_step', 'median_ms_per_step',\n"
             "                      'slower_than_median_pct', 'fastest_rank',\n"
             "                      'fastest_ms_per_step']}\n"
             "seen = {}\n"
             "for line in open(sys.argv[1]):\n"
             "    d = json.loads(line)\n"
             "    ev = d['event']; seen[ev] = d\n"
             "    for k in need[ev]:\n"
             "        assert k in d, (ev, k)\n"
             "        assert d[k] is None or isinstance(d[k], (int, float)), (ev, k)\n"
             "assert set(seen) == set(need), seen.keys()\n"
             "acc = seen['epoch']['val_accuracy']\n"
             "print('val_accuracy', acc)\n"
             "assert acc >= 0.95, acc\n"
             "assert 0 <= seen['epoch']['comm_hidden_fraction'] <= 1\n"
             "EOF",
             met);
    out = NULL;
    rc = sp_test_run(cmd, &out);
    CHECK(rc == 0, "metrics parse, have their fields, val_accuracy >= 0.95:\n%s", out ? out : "");
    if (out) printf("%s", out);
    free(out);
}

int main(void) {
    snprintf(dir, sizeof dir, "%s", sp_test_tmpdir("train_mpi"));
    char args[4096];
    snprintf(args, sizeof args,
             "synth --kind blobs --n 203 --features 6 --classes 3 --seed 11 --out %s/train.h5",
             dir);
    CHECK(sp_test_shardprop(0, 1, args, NULL) == 0, "synth");
    snprintf(args, sizeof args,
             "synth --kind blobs --n 2000 --features 10 --classes 4 --seed 3 --out %s/blobs.h5",
             dir);
    CHECK(sp_test_shardprop(0, 1, args, NULL) == 0, "synth blobs");
    snprintf(args, sizeof args,
             "split %s/blobs.h5 --val-fraction 0.2 --seed 1 --out-train %s/blobs_train.h5 "
             "--out-val %s/blobs_val.h5",
             dir, dir, dir);
    CHECK(sp_test_shardprop(0, 1, args, NULL) == 0, "split");
    test_equivalence("--optimizer sgd --lr 0.05 --momentum 0.9 --nesterov", "sgd");
    test_equivalence("--optimizer adam --lr 0.01 --weight-decay 0.001", "adam");
    test_buckets();
    test_bad_data();
    test_metrics_and_learning();
    return sp_test_summary("train_mpi");
}
