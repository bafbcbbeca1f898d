/* `import text`: byte-level token files. The bytes round trip (one file, several in order), the
 * attributes, the validation split rule (each file's tail after a newline), the validation file's
 * name, every error with no partial output; then the command line (the multi-valued --in,
 * messages, exit codes, inspect of a token file) and the real fortunes files when installed. */
#include <dirent.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "data/data.h"
#include "data/tools.h"
#include "h5_writer.h"
#include "testutil.h"

static char dir[512];
static char *path_(const char *name) {
    static char buf[64][600]; /* a ring: the last 64 names stay valid */
    static int k = 0;
    k = (k + 1) % 64;
    snprintf(buf[k], sizeof buf[k], "%s/%s", dir, name);
    return buf[k];
}

static bool exists_(const char *p) {
    return access(p, F_OK) == 0;
}

static int temp_files_(void) {
    DIR *d = opendir(dir);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (strstr(e->d_name, ".tmp-")) ++n;
    closedir(d);
    return n;
}

static void write_bytes_(const char *p, const void *b, size_t n) {
    FILE *f = fopen(p, "wb");
    fwrite(b, 1, n, f);
    fclose(f);
}

static void write_text_(const char *p, const char *t) {
    write_bytes_(p, t, strlen(t));
}

/* The tokens of a token file, read with the HDF5 API (not shardprop's reader), malloc'd; *n. */
static unsigned char *read_tokens_(const char *p, int64_t *n) {
    *n = -1;
    hid_t f = H5Fopen(p, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0) return NULL;
    hid_t d = H5Dopen2(f, "tokens", H5P_DEFAULT);
    hid_t s = H5Dget_space(d);
    *n = H5Sget_simple_extent_npoints(s);
    unsigned char *b = malloc((size_t)*n + 1);
    H5Dread(d, H5T_NATIVE_UCHAR, H5S_ALL, H5S_ALL, H5P_DEFAULT, b);
    H5Sclose(s);
    H5Dclose(d);
    H5Fclose(f);
    return b;
}

/* A string attribute of /tokens (fixed-length), malloc'd, or NULL. */
static char *str_attr_(const char *p, const char *name) {
    hid_t f = H5Fopen(p, H5F_ACC_RDONLY, H5P_DEFAULT);
    hid_t d = H5Dopen2(f, "tokens", H5P_DEFAULT);
    char *v = NULL;
    if (H5Aexists(d, name) > 0) {
        hid_t a = H5Aopen(d, name, H5P_DEFAULT);
        hid_t t = H5Aget_type(a);
        v = H5Tis_variable_str(t) > 0 ? NULL : calloc(1, H5Tget_size(t) + 1);
        if (v) H5Aread(a, t, v);
        H5Tclose(t);
        H5Aclose(a);
    }
    H5Dclose(d);
    H5Fclose(f);
    return v;
}

/* The token file `p` holds exactly want[0, n) and opens as token data with vocab 256. */
static void expect_tokens_(const char *p, const char *want, int64_t n) {
    int64_t got;
    unsigned char *b = read_tokens_(p, &got);
    CHECK(b && got == n && !memcmp(b, want, (size_t)n), "%s: %lld tokens, want %lld", p,
          (long long)got, (long long)n);
    free(b);
    sp_dataset *ds;
    CHECK(sp_dataset_open_tokens(&ds, p, NULL, 1) == SP_OK, "%s", sp_last_error());
    if (!ds) return;
    const sp_dataset_info *in = sp_dataset_get_info(ds);
    CHECK(in->classes == 256 && in->x_dtype == SP_DTYPE_U8 && in->tokenizer &&
              !strcmp(in->tokenizer, "bytes") && in->tokens == n,
          "format");
    sp_dataset_close(ds);
}

static void test_round_trip_(void) {
    /* every byte value but NUL, and a file without a final newline */
    unsigned char all[2 * 255 + 7];
    for (int i = 0; i < 2 * 255; ++i) all[i] = (unsigned char)(1 + i % 255);
    memcpy(all + 510, "\nend\r\nx", 7);
    const char *a = path_("all.bin"), *out = path_("rt.h5");
    write_bytes_(a, all, sizeof all);
    sp_text_import r;
    const char *in1[1] = {a};
    CHECK(sp_import_text(in1, 1, out, 0, &r) == SP_OK && r.tokens == (int64_t)sizeof all &&
              r.val_tokens == 0 && r.val_path[0] == '\0',
          "%s", sp_last_error());
    expect_tokens_(out, (const char *)all, (int64_t)sizeof all);
    char *src = str_attr_(out, "sources");
    CHECK(src && !strcmp(src, a), "sources: %s", src ? src : "(none)");
    free(src);
    CHECK(!exists_(path_("rt-val.h5")), "no validation file without --val-fraction");

    /* several files, concatenated in the order given (the same file twice, an empty one) */
    const char *b = path_("b.txt"), *e = path_("empty.txt"), *c = path_("c.txt");
    write_text_(b, "first file\n");
    write_text_(e, "");
    write_text_(c, "third, no newline");
    const char *in4[5] = {c, b, e, b, a};
    CHECK(sp_import_text(in4, 5, out, 0, &r) == SP_OK, "%s", sp_last_error());
    char want[1024];
    size_t n = 0;
    n += (size_t)sprintf(want + n, "third, no newlinefirst file\nfirst file\n");
    memcpy(want + n, all, sizeof all);
    n += sizeof all;
    CHECK(r.tokens == (int64_t)n, "tokens %lld, want %zu", (long long)r.tokens, n);
    expect_tokens_(out, want, (int64_t)n);
    src = str_attr_(out, "sources");
    char wsrc[3000];
    snprintf(wsrc, sizeof wsrc, "%s\n%s\n%s\n%s\n%s", c, b, e, b, a);
    CHECK(src && !strcmp(src, wsrc), "sources: %s", src ? src : "(none)");
    free(src);
    CHECK(temp_files_() == 0, "no temporary files");
}

static void test_val_path_(void) {
    char buf[64];
    CHECK(sp_import_text_val_path("data/train.h5", buf, sizeof buf) &&
              !strcmp(buf, "data/train-val.h5"),
          "%s", buf);
    CHECK(sp_import_text_val_path("corpus", buf, sizeof buf) && !strcmp(buf, "corpus-val.h5"), "%s",
          buf);
    CHECK(sp_import_text_val_path("x.hdf5", buf, sizeof buf) && !strcmp(buf, "x.hdf5-val.h5"), "%s",
          buf);
    CHECK(sp_import_text_val_path(".h5", buf, sizeof buf) && !strcmp(buf, "-val.h5"), "%s", buf);
    CHECK(!sp_import_text_val_path("a-very-long-name.h5", buf, 12), "too long");
}

/* --val-fraction F: each file's tail, from the line after byte floor((1 - F) size), goes to the
 * validation file; a file without a newline there is cut at that byte. */
static void test_split_(void) {
    const char *a = path_("a.txt"), *b = path_("b.txt"), *c = path_("c.txt");
    /* lines of a: bytes 0..8, 9..17, 18..28, 29..38 */
    const char *ta = "line one\nline two\nline three\nline four\n"; /* 39 bytes */
    const char *tb = "0123456789abcdefghij";                        /* 20, no newline */
    const char *tc = "short\n";                                     /* 6: p = 4, '\n' at 5 */
    write_text_(a, ta);
    write_text_(b, tb);
    write_text_(c, tc);
    const char *in[3] = {a, b, c};
    const char *out = path_("sp.h5");
    sp_text_import r;
    CHECK(sp_import_text(in, 3, out, 0.25, &r) == SP_OK, "%s", sp_last_error());
    CHECK(!strcmp(r.val_path, path_("sp-val.h5")), "val path %s", r.val_path);
    /* a: p = floor(0.75 * 39) = 29, the 'l' of "line four": the first '\n' at or after it is
     * byte 38, the last: all of a stays in train. b: p = 15, no newline after: cut at 15.
     * c: p = 4, '\n' at 5, the last byte: all in train */
    char wt[128], wv[128];
    snprintf(wt, sizeof wt, "%s%.15s%s", ta, tb, tc);
    snprintf(wv, sizeof wv, "%s", tb + 15);
    CHECK(r.tokens == (int64_t)strlen(wt) && r.val_tokens == (int64_t)strlen(wv), "%lld + %lld",
          (long long)r.tokens, (long long)r.val_tokens);
    expect_tokens_(out, wt, (int64_t)strlen(wt));
    expect_tokens_(r.val_path, wv, (int64_t)strlen(wv));
    /* F = 0.5 on a: p = 19, inside "line three\n": train the first three lines */
    CHECK(sp_import_text(in, 1, out, 0.5, &r) == SP_OK, "%s", sp_last_error());
    expect_tokens_(out, ta, 29);
    expect_tokens_(r.val_path, ta + 29, 10);
    /* p exactly on a newline, which ends train: F = 0.55, p = floor(0.45 * 39) = 17 */
    CHECK(sp_import_text(in, 1, out, 0.55, &r) == SP_OK, "%s", sp_last_error());
    expect_tokens_(out, ta, 18);
    expect_tokens_(r.val_path, ta + 18, 21);
    /* a validation file per output name: no .h5 suffix */
    const char *bare = path_("bare");
    CHECK(sp_import_text(in, 2, bare, 0.5, &r) == SP_OK &&
              !strcmp(r.val_path, path_("bare-val.h5")),
          "%s %s", sp_last_error(), r.val_path);
    CHECK(exists_(bare) && exists_(path_("bare-val.h5")), "both written");
    char *src = str_attr_(r.val_path, "sources");
    CHECK(src && strstr(src, a) && strstr(src, b), "val sources");
    free(src);
    CHECK(temp_files_() == 0, "no temporary files");
}

/* Every error: one line naming the problem, no output file, no temporary file. */
static void test_errors_(void) {
    const char *ok = path_("ok.txt"), *out = path_("err.h5"), *val = path_("err-val.h5");
    write_text_(ok, "some text\nmore text\n");
    const char *d = path_("adir");
    mkdir(d, 0755);
    const char *nul = path_("nul.txt");
    write_bytes_(nul, "text\0more", 9);
    const char *bignul = path_("bignul.txt");
    {
        /* a NUL past the first 4 MiB block */
        const size_t len = (5u << 20) + 3;
        char *big = malloc(len);
        memset(big, 'a', len);
        for (size_t i = 99; i < len; i += 100) big[i] = '\n';
        big[(4u << 20) + 17] = '\0';
        write_bytes_(bignul, big, len);
        free(big);
    }
    const char *e1 = path_("e1.txt"), *e2 = path_("e2.txt"), *one = path_("one.txt");
    write_text_(e1, "");
    write_text_(e2, "");
    write_text_(one, "x");
    const char *nonl = path_("nonl.txt");
    write_text_(nonl, "ab\ncd"); /* 5 bytes */
    const char *abc = path_("abc.txt");
    write_text_(abc, "abc");
    struct {
        const char *in[3];
        int nin;
        double F;
        sp_status code;
        const char *want, *who;
    } cases[] = {
        {{path_("missing.txt")}, 1, 0, SP_ERR_IO, "cannot open text file (No such file", "missing"},
        {{ok, d}, 2, 0, SP_ERR_IO, "is a directory", "adir"},
        {{ok, "/dev/null"}, 2, 0, SP_ERR_IO, "not a regular file", "/dev/null"},
        {{ok, nul}, 2, 0, SP_ERR_DATA, "not a text file: a NUL byte at offset 4", "nul.txt"},
        {{bignul}, 1, 0.1, SP_ERR_DATA, "a NUL byte at offset 4194321", "bignul.txt"},
        {{e1}, 1, 0, SP_ERR_DATA, "empty file", "e1.txt"},
        {{e1, e2}, 2, 0.5, SP_ERR_DATA, "all empty", "e1.txt"},
        {{ok}, 1, 1.0, SP_ERR_ARG, "--val-fraction: 1 is not in (0, 1)", NULL},
        {{ok}, 1, -0.2, SP_ERR_ARG, "--val-fraction: -0.2 is not in (0, 1)", NULL},
        {{ok}, 1, 1.5, SP_ERR_ARG, "is not in (0, 1)", NULL},
        /* train keeps ok's first line and more; val gets 0 tokens at F = 0.01 */
        {{ok}, 1, 0.01, SP_ERR_DATA, "--val-fraction 0.01 leaves 0 tokens for", "err-val.h5"},
        /* "x" alone: 1 token. "ab\ncd" at F = 0.1: p = 4, no newline after: val "d".
         * "x" at F = 0.5: p = 0: train empty. "abc" at F = 0.5: p = 1: train "a" */
        {{one}, 1, 0, SP_ERR_DATA, "1 token: too few", "one.txt"},
        {{nonl, e1}, 2, 0.1, SP_ERR_DATA, "--val-fraction 0.1 leaves 1 token for", "err-val.h5"},
        {{one, e1}, 2, 0.5, SP_ERR_DATA, "leaves 0 tokens for", "err.h5"},
        {{abc}, 1, 0.5, SP_ERR_DATA, "leaves 1 token for", "err.h5"},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; ++k) {
        sp_text_import r;
        sp_status st = sp_import_text(cases[k].in, cases[k].nin, out, cases[k].F, &r);
        const char *m = sp_last_error();
        CHECK(st == cases[k].code && strstr(m, cases[k].want) &&
                  (!cases[k].who || strstr(m, cases[k].who)) && !strchr(m, '\n'),
              "case %zu: %s: %s (want '%s')", k, sp_status_name(st), m, cases[k].want);
        CHECK(!exists_(out) && !exists_(val) && temp_files_() == 0, "case %zu: nothing written", k);
    }
    /* "ab\ncd" with F = 0.3: p = 3 ('c'), no newline after: cut at 3, val "cd" */
    sp_text_import r;
    const char *in[1] = {nonl};
    CHECK(sp_import_text(in, 1, out, 0.3, &r) == SP_OK && r.tokens == 3 && r.val_tokens == 2,
          "ab|cd: %s", sp_last_error());
    /* an existing output is replaced only on success: a failure leaves it as it was */
    int64_t n0;
    free(read_tokens_(out, &n0));
    const char *bad[1] = {nul};
    CHECK(sp_import_text(bad, 1, out, 0.3, &r) == SP_ERR_DATA, "fails");
    int64_t n1;
    free(read_tokens_(out, &n1));
    CHECK(n0 == 3 && n1 == 3 && temp_files_() == 0, "old output kept (%lld)", (long long)n1);
    remove(out);
    remove(val);
    if (geteuid() != 0) {
        const char *locked = path_("locked.txt");
        write_text_(locked, "secret\n");
        chmod(locked, 0);
        const char *li[1] = {locked};
        CHECK(sp_import_text(li, 1, out, 0, &r) == SP_ERR_IO &&
                  strstr(sp_last_error(), "Permission denied") && !exists_(out),
              "unreadable: %s", sp_last_error());
    } else {
        printf("SKIP: unreadable-file case (running as root)\n");
    }
    CHECK(sp_import_text(in, 0, out, 0, &r) == SP_ERR_ARG, "no inputs");
}

static char *bin_;

static int run_(char **out, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int run_(char **out, const char *fmt, ...) {
    char args[8192], cmd[9000];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    snprintf(cmd, sizeof cmd, "'%s' %s 2>&1", bin_, args);
    return sp_test_run(cmd, out);
}

static void test_cli_(void) {
    const char *a = path_("c1.txt"), *b = path_("c2.txt"), *out = path_("cli.h5");
    write_text_(a, "The first file.\nIt has two lines.\n");
    write_text_(b, "The second file\nhas three\nlines.\n");
    char *o = NULL, want[1200];
    CHECK(run_(&o, "import text --in %s %s --out %s", a, b, out) == 0, "%s", o);
    snprintf(want, sizeof want, "wrote %s: 67 tokens\n", out);
    CHECK(o && strstr(o, want) && !strstr(o, "-val.h5"), "%s", o);
    free(o);
    /* --in last, --in=FILE, the flags in any order */
    CHECK(run_(&o, "import text --out %s --val-fraction 0.3 --in %s %s", out, b, a) == 0, "%s", o);
    snprintf(want, sizeof want, "wrote %s: ", path_("cli-val.h5"));
    CHECK(o && strstr(o, want) && strstr(o, "tokens\n"), "%s", o);
    free(o);
    CHECK(run_(&o, "import text --in=%s --out %s", a, out) == 0 && o && strstr(o, ": 34 tokens"),
          "%s", o);
    free(o);
    CHECK(run_(&o, "import text --in=%s %s --out %s", a, b, out) == 2 &&
              strstr(o, "unexpected argument"),
          "--in=A takes one value: %s", o);
    free(o);
    CHECK(run_(&o, "import text --in --out %s", out) == 2 &&
              strstr(o, "--in needs a value (FILE...)"),
          "%s", o);
    free(o);
    CHECK(run_(&o, "import text --out %s", out) == 2 && strstr(o, "missing required flag --in"),
          "%s", o);
    free(o);
    CHECK(run_(&o, "import text --in %s --out %s --val-fraction 0", a, out) == 2 &&
              strstr(o, "shardprop import text: error: --val-fraction: 0 is not in (0, 1)"),
          "%s", o);
    free(o);
    CHECK(run_(&o, "import text --in %s --out %s --val-fraction 1", a, out) == 2 &&
              strstr(o, "is not in (0, 1)"),
          "%s", o);
    free(o);
    CHECK(run_(&o, "import text --in %s %s --out %s", a, path_("nope.txt"), path_("x.h5")) == 1 &&
              strstr(o, "nope.txt: cannot open text file") && !exists_(path_("x.h5")),
          "%s", o);
    free(o);
    CHECK(run_(&o, "import text --help") == 0 && strstr(o, "usage: shardprop import text") &&
              strstr(o, "--in FILE...") && strstr(o, "--val-fraction F"),
          "%s", o);
    free(o);
    CHECK(run_(&o, "import --help") == 0 && strstr(o, "idx|csv|text") && strstr(o, "text  "), "%s",
          o);
    free(o);
    CHECK(run_(&o, "import bogus") == 2 && strstr(o, "idx, csv or text"), "%s", o);
    free(o);
    /* inspect describes the token file by itself */
    CHECK(run_(&o, "import text --in %s %s --out %s", a, b, out) == 0, "%s", o);
    free(o);
    CHECK(run_(&o, "inspect %s", out) == 0, "inspect: %s", o);
    CHECK(
        o && strstr(o, "/tokens  dataset uint8 (67)") && strstr(o, "tokens: 67, uint8") &&
            strstr(o, "vocab_size: 256") && strstr(o, "tokenizer: bytes") &&
            strstr(o, "start: \"The first file.\\nIt has two lines.\\nThe second file\\nhas th") &&
            strstr(o, "most frequent: 101 \"e\"") && strstr(o, "T=64: N=1\n") &&
            strstr(o, "validation: OK"),
        "inspect output: %s", o);
    free(o);
    /* a bad token: inspect fails naming it */
    const char *bad = path_("badtok.h5");
    hid_t f = tw_create(bad);
    {
        uint16_t t[5] = {1, 2, 3, 900, 4};
        hsize_t d[1] = {5};
        tw_dataset(f, "tokens", H5T_STD_U16LE, H5T_NATIVE_UINT16, 1, d, t, 0);
        tw_attr(f, "tokens", "vocab_size", H5T_STD_I32LE, 500);
    }
    H5Fclose(f);
    CHECK(run_(&o, "inspect %s", bad) == 1 && strstr(o, "validation: FAILED: ") &&
              strstr(o, "token 900 at position 3"),
          "%s", o);
    free(o);
    CHECK(temp_files_() == 0, "no temporary files");
}

/* The fortunes files (Debian's fortunes package): real text, 2.5 MB in 40-odd files. */
static void test_fortunes_(void) {
    const char *src = "/usr/share/games/fortunes";
    DIR *d = opendir(src);
    if (!d) {
        printf("SKIP: %s not installed (apt-get install fortunes)\n", src);
        return;
    }
    char args[8192] = "";
    size_t used = 0;
    long long bytes = 0;
    int files = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (strchr(e->d_name, '.')) continue; /* ".", "..", *.dat indexes, *.u8 links */
        char p[700];
        snprintf(p, sizeof p, "%s/%s", src, e->d_name);
        struct stat sb;
        if (stat(p, &sb) != 0 || !S_ISREG(sb.st_mode)) continue;
        if (used + strlen(p) + 2 >= sizeof args) break;
        used += (size_t)snprintf(args + used, sizeof args - used, " %s", p);
        bytes += (long long)sb.st_size;
        ++files;
    }
    closedir(d);
    if (files == 0) {
        printf("SKIP: no fortunes files in %s\n", src);
        return;
    }
    const char *out = path_("fortunes.h5");
    char *o = NULL;
    CHECK(run_(&o, "import text --in%s --out %s --val-fraction 0.1", args, out) == 0, "%s", o);
    printf("%s", o ? o : "");
    free(o);
    int64_t nt, nv;
    free(read_tokens_(out, &nt));
    free(read_tokens_(path_("fortunes-val.h5"), &nv));
    CHECK(nt + nv == bytes && nv > bytes / 20 && nv < bytes / 5,
          "%d files, %lld bytes: %lld + %lld tokens", files, bytes, (long long)nt, (long long)nv);
    sp_dataset *ds;
    CHECK(sp_dataset_open_tokens(&ds, out, NULL, 128) == SP_OK &&
              sp_dataset_get_info(ds)->n == (nt - 1) / 128,
          "%s", sp_last_error());
    char line[512];
    sp_dataset_describe(ds, line, sizeof line);
    printf("%s\n", line);
    sp_dataset_close(ds);
}

int main(void) {
    snprintf(dir, sizeof dir, "%s", sp_test_tmpdir("data_text"));
    bin_ = getenv("SHARDPROP_BIN");
    test_round_trip_();
    test_val_path_();
    test_split_();
    test_errors_();
    if (!bin_) {
        printf("SKIP: SHARDPROP_BIN not set (run under ctest): command-line checks skipped\n");
    } else {
        test_cli_();
        test_fortunes_();
    }
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "cannot remove %s\n", dir);
    return sp_test_summary("data_text");
}
