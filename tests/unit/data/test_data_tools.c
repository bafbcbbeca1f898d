/* Importers and tools: IDX (gzipped and plain) round trip and errors, CSV import and its errors
 * with line numbers, no partial outputs; then `shardprop` end to end: synth, inspect, split,
 * flag errors, and the real Fashion-MNIST files when installed. */
#include <dirent.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "data/data.h"
#include "data/tools.h"
#include "h5_writer.h"
#include "testutil.h"

static char dir[512];
static char *path_(const char *name) {
    static char buf[8][600];
    static int k = 0;
    k = (k + 1) % 8;
    snprintf(buf[k], sizeof buf[k], "%s/%s", dir, name);
    return buf[k];
}

static bool exists_(const char *p) {
    return access(p, F_OK) == 0;
}

/* No file of the directory is a leftover temporary (the atomic writer's ".NAME.tmp-XXXXXXXXXXXX",
 * or an older writer's "NAME.tmp.PID"). */
static int temp_files_(void) {
    DIR *d = opendir(dir);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (strstr(e->d_name, ".tmp.") || strstr(e->d_name, ".tmp-")) ++n;
    closedir(d);
    return n;
}

static void put_be32_(unsigned char *p, uint32_t v) {
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

/* IDX images (n, rows, cols) with pixel = (i*31 + j) % 256, labels i % 7; optionally gzipped,
 * with a corruption: 1 bad magic, 2 truncated images, 3 label count mismatch, 4 trailing byte. */
static void write_idx_(const char *img, const char *lab, uint32_t n, uint32_t rows, uint32_t cols,
                       bool gz, int corrupt) {
    size_t np = (size_t)n * rows * cols;
    unsigned char *ib = malloc(16 + np + 1), *lb = malloc(8 + n + 1);
    ib[0] = ib[1] = 0;
    ib[2] = 8;
    ib[3] = 3;
    put_be32_(ib + 4, n);
    put_be32_(ib + 8, rows);
    put_be32_(ib + 12, cols);
    for (size_t i = 0; i < np; ++i)
        ib[16 + i] = (unsigned char)((i / (rows * cols) * 31 + i % (rows * cols)) % 256);
    lb[0] = lb[1] = 0;
    lb[2] = 8;
    lb[3] = 1;
    put_be32_(lb + 4, corrupt == 3 ? n + 1 : n);
    for (uint32_t i = 0; i <= n; ++i) lb[8 + i] = (unsigned char)(i % 7);
    size_t ilen = 16 + np, llen = 8 + n + (corrupt == 3);
    if (corrupt == 1) ib[2] = 0x0d;
    if (corrupt == 2) ilen -= 5;
    if (corrupt == 4) ib[ilen++] = 0;
    if (gz) {
        gzFile g = gzopen(img, "wb");
        gzwrite(g, ib, (unsigned)ilen);
        gzclose(g);
        g = gzopen(lab, "wb");
        gzwrite(g, lb, (unsigned)llen);
        gzclose(g);
    } else {
        FILE *f = fopen(img, "wb");
        fwrite(ib, 1, ilen, f);
        fclose(f);
        f = fopen(lab, "wb");
        fwrite(lb, 1, llen, f);
        fclose(f);
    }
    free(ib);
    free(lb);
}

static void test_idx_(void) {
    for (int gz = 0; gz < 2; ++gz) {
        const char *img = path_(gz ? "i.gz" : "i.idx"), *lab = path_(gz ? "l.gz" : "l.idx");
        const char *out = path_("idx.h5");
        write_idx_(img, lab, 23, 5, 4, gz, 0);
        int64_t n = 0;
        CHECK(sp_import_idx(img, lab, out, &n) == SP_OK && n == 23, "import: %s", sp_last_error());
        sp_dataset *ds;
        CHECK(sp_dataset_open(&ds, out, NULL, NULL) == SP_OK, "%s", sp_last_error());
        const sp_dataset_info *in = sp_dataset_get_info(ds);
        CHECK(in->n == 23 && in->sample_rank == 3 && in->sample_shape[0] == 1 &&
                  in->sample_shape[1] == 5 && in->sample_shape[2] == 4 &&
                  in->x_dtype == SP_DTYPE_U8,
              "shape");
        CHECK(in->classes == 7 && !strcmp(in->y_dtype, "uint8"), "classes %lld",
              (long long)in->classes);
        int64_t ids[3] = {22, 0, 9};
        float x[60];
        int32_t l[3];
        CHECK(sp_dataset_read(ds, ids, 3, x, l, NULL) == SP_OK, "read");
        int bad = 0;
        for (int k = 0; k < 3; ++k) {
            if (l[k] != ids[k] % 7) ++bad;
            for (int j = 0; j < 20; ++j)
                if (x[k * 20 + j] != (float)((double)((ids[k] * 31 + j) % 256) * (1.0 / 255.0)))
                    ++bad;
        }
        CHECK(bad == 0, "values round trip (%d bad)", bad);
        sp_dataset_close(ds);
    }
    const char *why[5] = {NULL, "bad IDX magic", "truncated", "23 images but 24 labels",
                          "trailing"};
    for (int c = 1; c <= 4; ++c) {
        const char *img = path_("bi.gz"), *lab = path_("bl.gz"), *out = path_("bad_idx.h5");
        write_idx_(img, lab, 23, 5, 4, c % 2, c);
        sp_status st = sp_import_idx(img, lab, out, NULL);
        CHECK(st == SP_ERR_DATA && strstr(sp_last_error(), why[c]) &&
                  strstr(sp_last_error(), c == 3 ? lab : img),
              "corruption %d: %s", c, sp_last_error());
        CHECK(!exists_(out) && temp_files_() == 0, "no partial output");
    }
    CHECK(sp_import_idx(path_("none.gz"), path_("l.gz"), path_("x.h5"), NULL) == SP_ERR_IO,
          "missing file");
}

static void write_text_(const char *p, const char *text) {
    FILE *f = fopen(p, "w");
    fputs(text, f);
    fclose(f);
}

static void test_csv_(void) {
    const char *in = path_("a.csv"), *out = path_("csv.h5");
    write_text_(in, "f1, f2,label,f3\r\n1.5,2,1,3\n\n-4,5e-1,0,6\n7,8,2,\"9\"\n");
    int64_t n = 0, F = 0;
    CHECK(sp_import_csv(in, "label", false, out, &n, &F) == SP_OK && n == 3 && F == 3, "%s",
          sp_last_error());
    sp_dataset *ds;
    CHECK(sp_dataset_open(&ds, out, NULL, NULL) == SP_OK, "%s", sp_last_error());
    const sp_dataset_info *info = sp_dataset_get_info(ds);
    CHECK(info->classes == 3 && info->sample_size == 3, "classes");
    int64_t ids[3] = {0, 1, 2};
    float x[9];
    int32_t l[3];
    CHECK(sp_dataset_read(ds, ids, 3, x, l, NULL) == SP_OK, "read");
    CHECK(x[0] == 1.5f && x[1] == 2 && x[2] == 3 && x[3] == -4 && x[4] == 0.5f && x[8] == 9 &&
              l[0] == 1 && l[1] == 0 && l[2] == 2,
          "values");
    sp_dataset_close(ds);
    /* No header, label by index, regression. */
    write_text_(in, "0.5,1,2\n1.5,3,4\n");
    CHECK(sp_import_csv(in, "0", true, out, &n, &F) == SP_OK && n == 2 && F == 2, "%s",
          sp_last_error());
    CHECK(sp_dataset_open(&ds, out, NULL, NULL) == SP_OK, "%s", sp_last_error());
    float t[2];
    CHECK(sp_dataset_get_info(ds)->regression && sp_dataset_read(ds, ids, 2, x, NULL, t) == SP_OK &&
              t[0] == 0.5f && t[1] == 1.5f && x[0] == 1 && x[3] == 4,
          "regression");
    sp_dataset_close(ds);
    remove(out);
    struct {
        const char *text, *label, *want;
    } bad[] = {
        {"a,b,c\n1,2,3\n4,5\n", "c", "line 3: expected 3 fields, found 2"},
        {"1,2,3\n4,x5,1\n", "2", "line 2: column 1: 'x5' is not a number"},
        {"a,b,c\n1,2,3\n4,,1\n", "c", "line 3: column 1 ('b'): empty field"},
        {"a,b,c\n1,2,3\n\n4,5,-1\n", "c",
         "line 4: column 2 ('c'): label '-1' is not a non-negative"},
        {"a,b,c\n1,2,3\n4,5,1.5\n", "c", "line 3: column 2 ('c'): label '1.5'"},
        {"a,b,c\n1,2,3\n", "d", "label column 'd' is not a column name"},
        {"1,2,3\n", "label", "no header line"},
        {"1,2,3\n", "3", "out of range [0, 3)"},
        {"a,b,c\n1,nan,3\n", "c", "line 2: column 1 ('b'): 'nan' is not a finite"},
        {"a,b,c\n", "c", "no data rows"},
        {"", "c", "the file is empty"},
    };
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; ++k) {
        write_text_(in, bad[k].text);
        sp_status st = sp_import_csv(in, bad[k].label, false, out, NULL, NULL);
        CHECK(st != SP_OK && strstr(sp_last_error(), bad[k].want) && strstr(sp_last_error(), in),
              "case %zu: '%s' lacks '%s'", k, sp_last_error(), bad[k].want);
        CHECK(!exists_(out) && temp_files_() == 0, "no partial output (case %zu)", k);
    }
}

static char *bin_;

/* Run `shardprop ARGS` (stderr joined to stdout); returns the exit status, output in *out. */
static int run_(char **out, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int run_(char **out, const char *fmt, ...) {
    char args[2048], cmd[2600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    snprintf(cmd, sizeof cmd, "'%s' %s 2>&1", bin_, args);
    return sp_test_run(cmd, out);
}

static void test_cli_(void) {
    char *o = NULL;
    const char *b = path_("blobs.h5"), *tr = path_("train.h5"), *va = path_("val.h5");
    CHECK(run_(&o, "synth --kind blobs --n 500 --features 3 --classes 4 --seed 9 --out %s", b) == 0,
          "synth: %s", o);
    free(o);
    CHECK(run_(&o, "inspect %s", b) == 0 && strstr(o, "N: 500") && strstr(o, "classes: 4") &&
              strstr(o, "validation: OK") && strstr(o, "/X  dataset float32 (500,3)") &&
              strstr(o, "class histogram"),
          "inspect: %s", o);
    free(o);
    CHECK(run_(&o, "split %s --val-fraction=0.2 --seed 4 --out-train %s --out-val %s --stratify", b,
               tr, va) == 0,
          "split: %s", o);
    free(o);
    /* The two parts partition the samples, in file order, with the same rows and labels. */
    sp_dataset *ds, *dt, *dv;
    CHECK(sp_dataset_open(&ds, b, NULL, NULL) == SP_OK &&
              sp_dataset_open(&dt, tr, NULL, NULL) == SP_OK &&
              sp_dataset_open(&dv, va, NULL, NULL) == SP_OK,
          "open split outputs: %s", sp_last_error());
    int64_t nt = sp_dataset_get_info(dt)->n, nv = sp_dataset_get_info(dv)->n;
    CHECK(nt + nv == 500 && nv == 100, "sizes %lld + %lld", (long long)nt, (long long)nv);
    CHECK(sp_dataset_get_info(dv)->classes == 4 &&
              !strcmp(sp_dataset_get_info(dv)->y_dtype, "int32"),
          "attributes and dtypes kept");
    float x[1500], xp[1500];
    int32_t l[500], lp[500];
    int64_t ids[500];
    for (int i = 0; i < 500; ++i) ids[i] = i;
    sp_dataset_read(ds, ids, 500, x, l, NULL);
    sp_dataset_read(dt, ids, nt, xp, lp, NULL);
    sp_dataset_read(dv, ids, nv, xp + nt * 3, lp + nt, NULL);
    /* Merge back by matching rows in order: each original row is in exactly one part. */
    int64_t it = 0, iv = nt, matched = 0;
    for (int i = 0; i < 500; ++i) {
        if (it < nt && !memcmp(x + i * 3, xp + it * 3, 12) && l[i] == lp[it])
            ++it, ++matched;
        else if (iv < 500 && !memcmp(x + i * 3, xp + iv * 3, 12) && l[i] == lp[iv])
            ++iv, ++matched;
    }
    CHECK(matched == 500, "split partitions the file (%lld matched)", (long long)matched);
    sp_dataset_close(ds);
    sp_dataset_close(dt);
    sp_dataset_close(dv);

    CHECK(run_(&o, "inspect %s", path_("nothing.h5")) == 1 && strstr(o, "validation: FAILED"),
          "inspect missing file: %s", o);
    free(o);
    CHECK(run_(&o, "inspect %s --y labels", b) == 1 && strstr(o, "dataset 'labels': not found") &&
              strstr(o, "validation: FAILED"),
          "inspect with a bad y: %s", o);
    free(o);
    CHECK(run_(&o, "split %s --out-train %s --out-val %s --val-fraction 1.5", b, tr, va) == 2 &&
              strstr(o, "--val-fraction: 1.5 is out of range"),
          "%s", o);
    free(o);
    CHECK(run_(&o, "synth --kind blobs --n 10 --frobnicate --out %s", b) == 2 &&
              strstr(o, "unknown flag '--frobnicate'"),
          "%s", o);
    free(o);
    CHECK(run_(&o, "synth --kind blobs --out %s --n", b) == 2 && strstr(o, "--n needs a value"),
          "%s", o);
    free(o);
    CHECK(run_(&o, "synth --kind blobs --n 12x --out %s", b) == 2 && strstr(o, "not an integer"),
          "%s", o);
    free(o);
    CHECK(run_(&o, "import idx --images a --labels b") == 2 &&
              strstr(o, "missing required flag --out"),
          "%s", o);
    free(o);
    CHECK(run_(&o, "synth --kind circles --n 10 --out %s", b) == 2 && strstr(o, "circles"), "%s",
          o);
    free(o);
    const char *helps[] = {"import idx", "import csv", "synth", "inspect", "split", "import"};
    for (int k = 0; k < 6; ++k) {
        CHECK(run_(&o, "%s --help", helps[k]) == 0 && strstr(o, "usage: shardprop"), "%s: %s",
              helps[k], o);
        free(o);
    }
    CHECK(run_(&o, "synth --help") == 0 && strstr(o, "--features F") && strstr(o, "--seed S") &&
              strstr(o, "--outputs T"),
          "%s", o);
    free(o);
    CHECK(run_(&o, "synth --kind regression --n 64 --features 5 --outputs 2 --out %s", b) == 0 &&
              run_(NULL, "inspect %s", b) == 0,
          "regression synth");
    free(o);
    CHECK(run_(&o, "inspect %s", b) == 0 && strstr(o, "T = 2"), "%s", o);
    free(o);
    /* A file with a /model group is routed away from the data checks. */
    const char *ck = path_("ckpt.h5");
    hid_t f = tw_create(ck);
    H5Gclose(H5Gcreate2(f, "model", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
    H5Fclose(f);
    CHECK(run_(&o, "inspect %s", ck) == 1 && strstr(o, "not a data file"), "%s", o);
    free(o);
    CHECK(temp_files_() == 0, "no temporary files left");
}

static void test_fashion_mnist_(void) {
    const char *src = "/usr/share/datasets/fashion-mnist";
    char img[256], lab[256];
    snprintf(img, sizeof img, "%s/train-images-idx3-ubyte.gz", src);
    snprintf(lab, sizeof lab, "%s/train-labels-idx1-ubyte.gz", src);
    if (!exists_(img) || !exists_(lab)) {
        printf("SKIP: Fashion-MNIST not installed (%s); apt-get install dataset-fashion-mnist\n",
               src);
        return;
    }
    const char *out = path_("fmnist.h5");
    char *o = NULL;
    CHECK(run_(&o, "import idx --images %s --labels %s --out %s", img, lab, out) == 0 &&
              strstr(o, "60000 samples"),
          "%s", o);
    printf("%s", o ? o : "");
    free(o);
    CHECK(run_(&o, "inspect %s", out) == 0, "inspect: %s", o);
    CHECK(o && strstr(o, "N: 60000") && strstr(o, "X: uint8, sample shape (1,28,28)") &&
              strstr(o, "classes: 10") && strstr(o, "validation: OK") && strstr(o, "min 0, max 1"),
          "inspect output: %s", o);
    int each = 0;
    for (int c = 0; c < 10; ++c) {
        char want[32];
        snprintf(want, sizeof want, "    %d: 6000\n", c);
        each += o && strstr(o, want) != NULL;
    }
    CHECK(each == 10, "6000 samples in each class (%d classes matched)", each);
    free(o);
}

int main(void) {
    snprintf(dir, sizeof dir, "%s", sp_test_tmpdir("data_tools"));
    bin_ = getenv("SHARDPROP_BIN");
    test_idx_();
    test_csv_();
    if (!bin_) {
        printf("SKIP: SHARDPROP_BIN not set (run under ctest): command-line checks skipped\n");
    } else {
        test_cli_();
        test_fashion_mnist_();
    }
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "cannot remove %s\n", dir);
    return sp_test_summary("data_tools");
}
