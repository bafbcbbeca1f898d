/* A data set as shard files, end to end through the executable: split --shards, inspect of the
 * set, training on the shards against training on the one file holding the same rows (bitwise,
 * 1 and 2 ranks, --deterministic across layouts), --shuffle shards the same for any layout and
 * with its window staging (no row cache) the same as with per-batch reads, an
 * HDF5 virtual dataset over the shards, eval and predict on the shards, and the errors. */
#include <hdf5.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "data/data.h"
#include "testutil.h"
#include "train_util.h"

static char dir[512];
static char *path_(const char *name) {
    static char buf[16][700];
    static int k = 0;
    k = (k + 1) % 16;
    snprintf(buf[k], sizeof buf[k], "%s/%s", dir, name);
    return buf[k];
}

enum { N = 203, K = 4 };
static const char *model_ = "flatten,dense:12,relu,dense:3";

static int run_(int np, int threads, char **out, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int run_(int np, int threads, char **out, const char *fmt, ...) {
    char args[6000];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    char *o = NULL;
    const int rc = sp_test_shardprop(np, threads, args, &o);
    if (out)
        *out = o;
    else
        free(o);
    return rc;
}

static int train_(int np, int threads, const char *data, const char *out, const char *extra) {
    char *o = NULL;
    const int rc = run_(np, threads, &o,
                        "train --data %s --model %s --epochs 2 --batch 16 --lr 0.05 --seed 3 "
                        "--quiet --out %s %s",
                        data, model_, out, extra);
    if (rc != 0) fprintf(stderr, "train %s: %s\n", data, o ? o : "");
    free(o);
    return rc;
}

/* The shards concatenated are the original rows (and labels), in order. */
static void test_split_(void) {
    char *o = NULL;
    CHECK(run_(0, 1, &o, "synth --kind blobs --n %d --features 6 --classes 3 --out %s", N,
               path_("full.h5")) == 0,
          "synth: %s", o);
    free(o);
    mkdir(path_("sh"), 0755);
    CHECK(run_(0, 1, &o, "split %s --shards %d --out %s", path_("full.h5"), K, path_("sh/part")) ==
                  0 &&
              strstr(o, "wrote 4 shards"),
          "split: %s", o);
    free(o);
    CHECK(run_(0, 1, &o, "split %s --shards %d --out-train %s --out %s", path_("full.h5"), K,
               path_("x.h5"), path_("sh/y")) == 2,
          "split --shards with --out-train: %s", o);
    free(o);
    sp_dataset *one = NULL, *many = NULL;
    CHECK(sp_dataset_open(&one, path_("full.h5"), NULL, NULL) == SP_OK, "%s", sp_last_error());
    CHECK(sp_dataset_open_items(&many, path_("sh/part-*-of-00004.h5"), NULL, NULL, NULL, 0) ==
              SP_OK,
          "%s", sp_last_error());
    if (one && many) {
        CHECK(sp_dataset_nfiles(many) == K, "files %d", sp_dataset_nfiles(many));
        int64_t lo = N, hi = 0;
        for (int i = 0; i < sp_dataset_nfiles(many); ++i) {
            const int64_t r = sp_dataset_file_rows(many, i);
            lo = r < lo ? r : lo;
            hi = r > hi ? r : hi;
        }
        CHECK(hi - lo <= 1 && hi == (N + K - 1) / K, "balanced: %lld..%lld", (long long)lo,
              (long long)hi);
        static int64_t ids[N];
        static float xa[N * 6], xb[N * 6];
        static int32_t la[N], lb[N];
        for (int i = 0; i < N; ++i) ids[i] = i;
        CHECK(sp_dataset_read(one, ids, N, xa, la, NULL) == SP_OK, "read one");
        CHECK(sp_dataset_read(many, ids, N, xb, lb, NULL) == SP_OK, "read shards");
        CHECK(!memcmp(xa, xb, sizeof xa) && !memcmp(la, lb, sizeof la), "round trip differs");
    }
    sp_dataset_close(one);
    sp_dataset_close(many);
    /* inspect of the set */
    CHECK(run_(0, 1, &o, "inspect '%s'", path_("sh/part-*.h5")) == 0 && strstr(o, "files: 4") &&
              strstr(o, "N: 203") && strstr(o, "-00003-of-00004.h5: N=50") &&
              strstr(o, "validation: OK"),
          "inspect: %s", o);
    free(o);
}

/* Training on the shards is training on the one file, bit for bit. */
static void test_train_(void) {
    char glob[800];
    snprintf(glob, sizeof glob, "'%s'", path_("sh/part-*.h5"));
    CHECK(train_(0, 1, path_("full.h5"), path_("m-full.h5"), "") == 0, "full");
    CHECK(train_(0, 1, glob, path_("m-glob.h5"), "") == 0, "glob");
    CHECK(sp_test_same_params(path_("m-full.h5"), path_("m-glob.h5")), "1 rank: shards differ");
    /* an unquoted list of files on the command line, and a directory */
    char list[3000];
    snprintf(list, sizeof list, "%s %s %s %s", path_("sh/part-00002-of-00004.h5"),
             path_("sh/part-00000-of-00004.h5"), path_("sh/part-00003-of-00004.h5"),
             path_("sh/part-00001-of-00004.h5"));
    CHECK(train_(0, 1, list, path_("m-list.h5"), "") == 0, "list");
    CHECK(sp_test_same_params(path_("m-full.h5"), path_("m-list.h5")), "list differs");
    CHECK(train_(2, 1, path_("full.h5"), path_("m-full2.h5"), "") == 0, "full 2 ranks");
    CHECK(train_(2, 1, path_("sh"), path_("m-dir2.h5"), "") == 0, "dir 2 ranks");
    CHECK(sp_test_same_params(path_("m-full2.h5"), path_("m-dir2.h5")), "2 ranks: shards differ");
    /* --deterministic: the shards on 2 ranks x 2 threads equal the file on 1 x 1 */
    CHECK(train_(0, 1, path_("full.h5"), path_("d-full.h5"), "--deterministic") == 0, "det");
    CHECK(train_(2, 2, glob, path_("d-glob.h5"), "--deterministic") == 0, "det 2x2");
    CHECK(sp_test_same_params(path_("d-full.h5"), path_("d-glob.h5")), "deterministic differs");
    /* the epoch records carry the bytes read: every row once per epoch without the cache */
    char extra[900];
    snprintf(extra, sizeof extra, "--data-cache-mb 0 --metrics %s --log-every 1000",
             path_("metrics.jsonl"));
    CHECK(train_(0, 1, glob, path_("m-met.h5"), extra) == 0, "metrics run");
    double mb[4] = {0}, rate[4] = {0};
    CHECK(sp_test_metric_values(path_("metrics.jsonl"), "epoch", "read_mb", mb, 4) == 2 &&
              sp_test_metric_values(path_("metrics.jsonl"), "epoch", "read_mb_per_s", rate, 4) == 2,
          "epoch records");
    const double want = N * 6 * 4 / 1048576.0;
    CHECK(fabs(mb[0] - want) < 1e-6 * want && fabs(mb[1] - want) < 1e-6 * want && rate[0] > 0,
          "read_mb %g %g (want %g), read_mb_per_s %g", mb[0], mb[1], want, rate[0]);
    /* --shuffle shards: the same for any layout */
    CHECK(train_(0, 1, glob, path_("s-1.h5"),
                 "--deterministic --shuffle shards --shuffle-window 2") == 0,
          "shards order 1x1");
    CHECK(train_(2, 1, glob, path_("s-2.h5"),
                 "--deterministic --shuffle shards --shuffle-window 2") == 0,
          "shards order 2x1");
    CHECK(sp_test_same_params(path_("s-1.h5"), path_("s-2.h5")),
          "--shuffle shards: layouts differ");
    CHECK(!sp_test_same_params(path_("s-1.h5"), path_("d-full.h5")),
          "--shuffle shards trained the global order");
    /* resume mid-epoch under --shuffle shards, on another layout: bitwise the uninterrupted run */
    char ck[900];
    snprintf(ck, sizeof ck,
             "--deterministic --shuffle shards --shuffle-window 2 --checkpoint-dir %s "
             "--checkpoint-every 5 --max-steps 7",
             path_("ck-s"));
    CHECK(train_(2, 1, glob, path_("s-stop.h5"), ck) == 0, "stopped run");
    snprintf(ck, sizeof ck,
             "--deterministic --shuffle shards --shuffle-window 2 --checkpoint-dir %s "
             "--resume auto",
             path_("ck-s"));
    CHECK(train_(0, 2, glob, path_("s-res.h5"), ck) == 0, "resumed run");
    CHECK(sp_test_same_params(path_("s-1.h5"), path_("s-res.h5")),
          "--shuffle shards: the resumed run differs");
    /* without the row cache the loader stages each window in one ascending read: the same
     * batches as the per-batch reads the cache-on runs above used, so the same model, on 1 and
     * 2 ranks, without prefetch, and resumed mid-epoch */
    CHECK(train_(0, 1, glob, path_("w-1.h5"),
                 "--deterministic --shuffle shards --shuffle-window 2 --data-cache-mb 0") == 0,
          "staged 1x1");
    CHECK(sp_test_same_params(path_("s-1.h5"), path_("w-1.h5")), "staged 1 rank differs");
    CHECK(train_(2, 1, glob, path_("w-2.h5"),
                 "--deterministic --shuffle shards --shuffle-window 2 --data-cache-mb 0 "
                 "--no-prefetch") == 0,
          "staged 2x1");
    CHECK(sp_test_same_params(path_("s-1.h5"), path_("w-2.h5")), "staged 2 ranks differ");
    CHECK(train_(2, 1, glob, path_("g-cache.h5"), "--shuffle shards --shuffle-window 1") == 0,
          "default mode, cached");
    CHECK(train_(2, 1, glob, path_("g-stage.h5"),
                 "--shuffle shards --shuffle-window 1 --data-cache-mb 0") == 0,
          "default mode, staged");
    CHECK(sp_test_same_params(path_("g-cache.h5"), path_("g-stage.h5")),
          "staged default mode differs");
    snprintf(ck, sizeof ck,
             "--deterministic --shuffle shards --shuffle-window 2 --data-cache-mb 0 "
             "--checkpoint-dir %s --checkpoint-every 5 --max-steps 7",
             path_("ck-w"));
    CHECK(train_(2, 1, glob, path_("w-stop.h5"), ck) == 0, "staged stopped run");
    snprintf(ck, sizeof ck,
             "--deterministic --shuffle shards --shuffle-window 2 --data-cache-mb 0 "
             "--checkpoint-dir %s --resume auto",
             path_("ck-w"));
    CHECK(train_(0, 2, glob, path_("w-res.h5"), ck) == 0, "staged resumed run");
    CHECK(sp_test_same_params(path_("s-1.h5"), path_("w-res.h5")),
          "staged: the resumed run differs");
    char *o = NULL;
    CHECK(run_(0, 1, &o, "train --data %s --model %s --no-shuffle --shuffle shards", glob,
               model_) == 2 &&
              strstr(o, "exclude each other"),
          "--no-shuffle --shuffle shards: %s", o);
    free(o);
    CHECK(run_(0, 1, &o, "train --data %s --model %s --shuffle rows", glob, model_) == 2 &&
              strstr(o, "global or shards"),
          "--shuffle rows: %s", o);
    free(o);
    /* a resume that changes the order is refused */
    CHECK(run_(0, 1, &o,
               "train --data %s --model %s --epochs 2 --batch 16 --quiet --shuffle shards "
               "--checkpoint-dir %s --checkpoint-every 5 --max-steps 6",
               glob, model_, path_("ck")) == 0,
          "checkpointed run: %s", o);
    free(o);
    CHECK(run_(0, 1, &o,
               "train --data %s --model %s --epochs 2 --batch 16 --quiet --checkpoint-dir %s "
               "--resume auto",
               glob, model_, path_("ck")) != 0 &&
              strstr(o, "shuffle = shards"),
          "resume with another order: %s", o);
    free(o);
}

/* A file whose X and y are virtual datasets over the shards trains as the one file. */
static int write_vds_(const char *out) {
    hid_t f = H5Fcreate(out, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    int rc = f < 0;
    const char *names[2] = {"X", "y"};
    for (int d = 0; d < 2 && !rc; ++d) {
        const int rank = d == 0 ? 2 : 1;
        hsize_t dims[2] = {N, 6};
        hid_t vs = H5Screate_simple(rank, dims, NULL);
        hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
        hsize_t first = 0;
        hid_t type = -1;
        for (int i = 0; i < K; ++i) {
            char src[64];
            snprintf(src, sizeof src, "sh/part-%05d-of-%05d.h5", i, K);
            hid_t sf = H5Fopen(path_(src), H5F_ACC_RDONLY, H5P_DEFAULT);
            hid_t sd = H5Dopen2(sf, names[d], H5P_DEFAULT);
            hid_t ss = H5Dget_space(sd);
            hsize_t sdims[2];
            H5Sget_simple_extent_dims(ss, sdims, NULL);
            if (type < 0) type = H5Dget_type(sd);
            hsize_t start[2] = {first, 0}, count[2] = {sdims[0], 6};
            H5Sselect_hyperslab(vs, H5S_SELECT_SET, start, NULL, count, NULL);
            rc |= H5Pset_virtual(dcpl, vs, path_(src), names[d], ss) < 0;
            first += sdims[0];
            H5Sclose(ss);
            H5Dclose(sd);
            H5Fclose(sf);
        }
        H5Sselect_all(vs);
        hid_t vd = H5Dcreate2(f, names[d], type, vs, H5P_DEFAULT, dcpl, H5P_DEFAULT);
        rc |= vd < 0 || first != N;
        if (d == 1 && vd >= 0) { /* the attribute is the file's own, not the sources' */
            hid_t as = H5Screate(H5S_SCALAR);
            hid_t a = H5Acreate2(vd, "classes", H5T_STD_I32LE, as, H5P_DEFAULT, H5P_DEFAULT);
            const int32_t c = 3;
            rc |= a < 0 || H5Awrite(a, H5T_NATIVE_INT32, &c) < 0;
            H5Aclose(a);
            H5Sclose(as);
        }
        if (vd >= 0) H5Dclose(vd);
        H5Tclose(type);
        H5Pclose(dcpl);
        H5Sclose(vs);
    }
    if (f >= 0) H5Fclose(f);
    return rc;
}

static void test_vds_(void) {
    CHECK(write_vds_(path_("vds.h5")) == 0, "write the virtual dataset");
    char *o = NULL;
    CHECK(run_(0, 1, &o, "inspect %s", path_("vds.h5")) == 0 && strstr(o, "N: 203") &&
              strstr(o, "validation: OK"),
          "inspect vds: %s", o);
    free(o);
    CHECK(train_(0, 1, path_("vds.h5"), path_("m-vds.h5"), "") == 0, "vds");
    CHECK(sp_test_same_params(path_("m-full.h5"), path_("m-vds.h5")), "vds differs from the file");
}

/* eval and predict read the set in its logical order. */
static void test_eval_predict_(void) {
    char *o = NULL, glob[800];
    snprintf(glob, sizeof glob, "'%s'", path_("sh/part-*.h5"));
    CHECK(run_(0, 1, &o, "predict --checkpoint %s --data %s --out %s", path_("m-full.h5"),
               path_("full.h5"), path_("p-full.h5")) == 0,
          "predict full: %s", o);
    free(o);
    CHECK(run_(2, 1, &o, "predict --checkpoint %s --data %s --out %s", path_("m-full.h5"), glob,
               path_("p-glob.h5")) == 0,
          "predict shards: %s", o);
    free(o);
    sp_test_tensor *a = NULL, *b = NULL;
    int na = 0, nb = 0;
    CHECK(sp_test_read_tensors(path_("p-full.h5"), "/", &a, &na) == 0 &&
              sp_test_read_tensors(path_("p-glob.h5"), "/", &b, &nb) == 0 && na == nb && na >= 2,
          "read predictions");
    int same = na == nb && na > 0;
    for (int i = 0; same && i < na; ++i)
        same = a[i].n == b[i].n &&
               !memcmp(a[i].data, b[i].data, a[i].n * (a[i].is_int ? 8 : sizeof(float)));
    CHECK(same, "predictions of the shards differ from the file's");
    sp_test_free_tensors(a, na);
    sp_test_free_tensors(b, nb);
    char *e1 = NULL, *e2 = NULL;
    CHECK(run_(0, 1, &e1, "eval --checkpoint %s --data %s", path_("m-full.h5"), path_("full.h5")) ==
              0,
          "eval full");
    CHECK(run_(0, 1, &e2, "eval --checkpoint %s --data %s", path_("m-full.h5"), glob) == 0,
          "eval shards");
    const char *l1 = e1 ? strstr(e1, "loss") : NULL, *l2 = e2 ? strstr(e2, "loss") : NULL;
    CHECK(l1 && l2 && !strncmp(l1, l2, 40), "eval: %s vs %s", e1, e2);
    free(e1);
    free(e2);
}

/* Bad sets: one line naming what is wrong, a non-zero exit, on every rank. */
static void test_errors_(void) {
    char *o = NULL;
    CHECK(run_(0, 1, &o, "synth --kind blobs --n 20 --features 5 --classes 3 --out %s",
               path_("sh/odd.h5")) == 0,
          "synth odd");
    free(o);
    char glob[800];
    snprintf(glob, sizeof glob, "'%s'", path_("sh/*.h5"));
    CHECK(run_(2, 1, &o, "train --data %s --model %s --quiet", glob, model_) != 0 &&
              strstr(o, "part-00000-of-00004.h5: dataset 'X': sample shape (6) differs from") &&
              strstr(o, "odd.h5's (5)"),
          "mismatch: %s", o);
    free(o);
    CHECK(run_(2, 1, &o, "train --data %s %s --model %s --quiet", path_("full.h5"),
               path_("sh/gone.h5"), model_) != 0 &&
              strstr(o, "gone.h5: no such file"),
          "missing: %s", o);
    free(o);
    CHECK(run_(0, 1, &o, "train --data '%s' --model %s --quiet", path_("sh/none-*.h5"), model_) !=
                  0 &&
              strstr(o, "none-*.h5: no file matches the pattern (--data)"),
          "empty glob: %s", o);
    free(o);
    CHECK(run_(0, 1, &o, "eval --checkpoint %s --data @%s", path_("m-full.h5"),
               path_("nolist.txt")) != 0 &&
              strstr(o, "nolist.txt: cannot read the list"),
          "missing list: %s", o);
    free(o);
    CHECK(run_(0, 1, &o, "inspect '%s'", path_("sh/*.h5")) == 1 &&
              strstr(o, "validation: FAILED") && strstr(o, "differs from"),
          "inspect mismatch: %s", o);
    free(o);
}

int main(void) {
    snprintf(dir, sizeof dir, "%s", sp_test_tmpdir("shards"));
    test_split_();
    test_train_();
    test_vds_();
    test_eval_predict_();
    test_errors_();
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "cannot remove %s\n", dir);
    return sp_test_summary("shards");
}
