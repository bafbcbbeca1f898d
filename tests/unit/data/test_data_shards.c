/* A data set over several files: the items of --data (lists, globs, directories, @lists), the
 * checks of each file against the first, reads across file boundaries against one file holding
 * the same rows, the bound on open files, a file changed mid-run, several token files, and the
 * --shuffle shards order. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "data/data.h"
#include "h5_writer.h"
#include "testutil.h"

static char dir[512];
static char *path_(const char *name) {
    static char buf[16][700];
    static int k = 0;
    k = (k + 1) % 16;
    snprintf(buf[k], sizeof buf[k], "%s/%s", dir, name);
    return buf[k];
}

enum { F = 3 };

/* Row r of the logical set: X (F) = r*F + e (float32), y = r % 5. */
static int write_rows_(const char *p, int64_t r0, int64_t n, hid_t xft, int f, bool with_y,
                       int classes_attr) {
    float *x = malloc((size_t)(n ? n : 1) * (size_t)f * sizeof(float));
    int32_t *y = malloc((size_t)(n ? n : 1) * sizeof(int32_t));
    for (int64_t i = 0; i < n; ++i) {
        for (int e = 0; e < f; ++e) x[i * f + e] = (float)((r0 + i) * f + e);
        y[i] = (int32_t)((r0 + i) % 5);
    }
    hid_t h = tw_create(p);
    hsize_t xd[2] = {(hsize_t)n, (hsize_t)f}, yd[1] = {(hsize_t)n};
    int rc = tw_dataset(h, "X", xft, H5T_NATIVE_FLOAT, 2, xd, x, TW_CHUNKED);
    if (with_y) rc |= tw_dataset(h, "y", H5T_STD_I32LE, H5T_NATIVE_INT32, 1, yd, y, TW_CHUNKED);
    if (with_y && classes_attr) rc |= tw_attr(h, "y", "classes", H5T_STD_I32LE, classes_attr);
    H5Fclose(h);
    free(x);
    free(y);
    return rc;
}

static bool has_(const char *msg, const char *a) {
    return strstr(msg, a) != NULL;
}

static void test_paths_(void) {
    mkdir(path_("p"), 0755);
    mkdir(path_("p/sub"), 0755);
    const char *names[] = {"p/c.h5", "p/a.h5", "p/b.h5", "p/sub/d.h5", "p/notes.txt"};
    for (int i = 0; i < 5; ++i) {
        FILE *f = fopen(path_(names[i]), "w");
        if (f) fclose(f);
    }
    sp_path_list l;
    /* a directory: its .h5 files, sorted, not the subdirectory's */
    sp_status st = sp_data_paths_expand_words(path_("p"), "--data", &l);
    CHECK(st == SP_OK && l.n == 3, "dir: %s, n %d", sp_last_error(), l.n);
    if (st == SP_OK && l.n == 3)
        CHECK(strstr(l.v[0], "/a.h5") && strstr(l.v[1], "/b.h5") && strstr(l.v[2], "/c.h5"),
              "dir order %s %s %s", l.v[0], l.v[1], l.v[2]);
    sp_path_list_free(&l);
    /* a glob plus a repeated file plus a list: sorted, deduplicated */
    char words[2400];
    FILE *lf = fopen(path_("p/list.txt"), "w");
    fprintf(lf, "# the shards\n\n  b.h5   # relative to the list\nsub/d.h5\n%s\n", path_("p/a.h5"));
    fclose(lf);
    snprintf(words, sizeof words, "%s %s @%s", path_("p/[bc].h5"), path_("p/c.h5"),
             path_("p/list.txt"));
    st = sp_data_paths_expand_words(words, "--data", &l);
    CHECK(st == SP_OK && l.n == 4, "glob+list: %s, n %d", st == SP_OK ? "" : sp_last_error(), l.n);
    if (st == SP_OK && l.n == 4)
        CHECK(strstr(l.v[0], "p/a.h5") && strstr(l.v[1], "p/b.h5") && strstr(l.v[2], "p/c.h5") &&
                  strstr(l.v[3], "p/sub/d.h5"),
              "glob+list order %s %s %s %s", l.v[0], l.v[1], l.v[2], l.v[3]);
    sp_path_list_free(&l);
    /* items given separately (argv) */
    const char *items[] = {path_("p/c.h5"), path_("p/a.h5")};
    st = sp_data_paths_expand(items, 2, NULL, &l);
    CHECK(st == SP_OK && l.n == 2 && strstr(l.v[0], "a.h5"), "items");
    sp_path_list_free(&l);
    /* errors: one line naming the item */
    st = sp_data_paths_expand_words(path_("p/none-*.h5"), "--data", &l);
    CHECK(st != SP_OK && has_(sp_last_error(), "none-*.h5") &&
              has_(sp_last_error(), "no file matches") && has_(sp_last_error(), "--data"),
          "empty glob: %s", sp_last_error());
    st = sp_data_paths_expand_words(path_("p/missing.h5"), "--val", &l);
    CHECK(st != SP_OK && has_(sp_last_error(), "missing.h5") && has_(sp_last_error(), "no such"),
          "missing: %s", sp_last_error());
    snprintf(words, sizeof words, "@%s", path_("p/nolist.txt"));
    st = sp_data_paths_expand_words(words, "--data", &l);
    CHECK(st != SP_OK && has_(sp_last_error(), "nolist.txt"), "no list: %s", sp_last_error());
    lf = fopen(path_("p/empty.txt"), "w");
    fprintf(lf, "# nothing\n\n");
    fclose(lf);
    snprintf(words, sizeof words, "@%s", path_("p/empty.txt"));
    st = sp_data_paths_expand_words(words, "--data", &l);
    CHECK(st != SP_OK && has_(sp_last_error(), "empty.txt") && has_(sp_last_error(), "no file"),
          "empty list: %s", sp_last_error());
    st = sp_data_paths_expand_words(path_("p/sub/"), NULL, &l);
    CHECK(st == SP_OK && l.n == 1, "dir with slash");
    sp_path_list_free(&l);
    mkdir(path_("p/empty"), 0755);
    st = sp_data_paths_expand_words(path_("p/empty"), NULL, &l);
    CHECK(st != SP_OK && has_(sp_last_error(), "no .h5 file"), "empty dir: %s", sp_last_error());
}

/* One file of N rows and the same rows cut at `cuts` into shards; reads compared. */
static void test_reads_(void) {
    enum { N = 50 };
    write_rows_(path_("one.h5"), 0, N, H5T_IEEE_F32LE, F, true, 0);
    const int64_t cuts[] = {0, 7, 8, 30, 49, 50};
    const int ns = 5;
    const char *paths[5];
    char names[5][32];
    for (int i = 0; i < ns; ++i) {
        snprintf(names[i], sizeof names[i], "r/s-%02d.h5", i);
        paths[i] = strdup(path_(names[i]));
    }
    mkdir(path_("r"), 0755);
    for (int i = 0; i < ns; ++i)
        write_rows_(paths[i], cuts[i], cuts[i + 1] - cuts[i], H5T_IEEE_F32LE, F, true, 0);
    sp_dataset *one = NULL, *many = NULL;
    CHECK(sp_dataset_open(&one, path_("one.h5"), NULL, NULL) == SP_OK, "one: %s", sp_last_error());
    sp_status st = sp_dataset_open_items(&many, path_("r"), "--data", NULL, NULL, 0);
    CHECK(st == SP_OK, "shards: %s", sp_last_error());
    if (!one || !many) goto out;
    const sp_dataset_info *a = sp_dataset_get_info(one), *b = sp_dataset_get_info(many);
    CHECK(b->n == N && b->classes == a->classes && b->sample_size == F && !b->regression,
          "info n %lld classes %lld", (long long)b->n, (long long)b->classes);
    CHECK(sp_dataset_nfiles(many) == ns && sp_dataset_file_rows(many, 2) == 22, "files");
    CHECK(has_(b->path, "(5 files)"), "path %s", b->path);
    /* every boundary, duplicates, any order */
    int64_t ids[] = {49, 0, 7, 8, 6, 29, 30, 48, 7, 7, 31, 1, 0, 49, 12};
    const int n = (int)(sizeof ids / sizeof ids[0]);
    float xa[15 * F], xb[15 * F];
    int32_t la[15], lb[15];
    CHECK(sp_dataset_read(one, ids, n, xa, la, NULL) == SP_OK, "read one");
    CHECK(sp_dataset_read(many, ids, n, xb, lb, NULL) == SP_OK, "read many: %s", sp_last_error());
    CHECK(!memcmp(xa, xb, sizeof xa) && !memcmp(la, lb, sizeof la), "rows differ");
    /* a whole pass, in order */
    int64_t all[N];
    for (int i = 0; i < N; ++i) all[i] = N - 1 - i;
    float ya[N * F], yb[N * F];
    CHECK(sp_dataset_read(one, all, N, ya, NULL, NULL) == SP_OK, "read one all");
    CHECK(sp_dataset_read(many, all, N, yb, NULL, NULL) == SP_OK, "read many all");
    CHECK(!memcmp(ya, yb, sizeof ya), "all rows differ");
    int64_t bad = N;
    CHECK(sp_dataset_read(many, &bad, 1, xb, NULL, NULL) != SP_OK, "out of range");
    /* the summary of the set is the file's */
    sp_dataset_summary sa, sb;
    CHECK(sp_dataset_summarize(one, &sa) == SP_OK, "sum one");
    CHECK(sp_dataset_summarize(many, &sb) == SP_OK, "sum many: %s", sp_last_error());
    CHECK(sa.x_min == sb.x_min && sa.x_max == sb.x_max && fabs(sa.x_mean - sb.x_mean) < 1e-9,
          "summary x %g %g", sa.x_mean, sb.x_mean);
    CHECK(!memcmp(sa.class_counts, sb.class_counts, (size_t)a->classes * sizeof(int64_t)),
          "class counts");
    sp_dataset_summary_free(&sa);
    sp_dataset_summary_free(&sb);
out:
    sp_dataset_close(one);
    sp_dataset_close(many);
    for (int i = 0; i < ns; ++i) free((void *)paths[i]);
}

/* Each mismatch against the first file names both files. */
static void test_mismatch_(void) {
    mkdir(path_("m"), 0755);
    write_rows_(path_("m/a.h5"), 0, 10, H5T_IEEE_F32LE, F, true, 0);
    struct {
        const char *name, *want;
        hid_t xft;
        int f;
        bool y;
        int classes;
    } cases[] = {
        {"m/b-dtype.h5", "dtype float64 differs", H5T_IEEE_F64LE, F, true, 0},
        {"m/b-shape.h5", "sample shape (4) differs from", H5T_IEEE_F32LE, 4, true, 0},
        {"m/b-classes.h5", "attribute 'classes' 9 differs", H5T_IEEE_F32LE, F, true, 9},
        {"m/b-noy.h5", "dataset 'y': not found in the file", H5T_IEEE_F32LE, F, false, 0},
    };
    for (int i = 0; i < 4; ++i) {
        write_rows_(path_(cases[i].name), 10, 5, cases[i].xft, cases[i].f, cases[i].y,
                    cases[i].classes);
        const char *paths[2] = {path_("m/a.h5"), path_(cases[i].name)};
        sp_dataset *ds = NULL;
        sp_status st = sp_dataset_open_files(&ds, paths, 2, NULL, NULL, 0);
        const char *e = sp_last_error();
        /* a file without y fails on its own: the message names it */
        CHECK(st == SP_ERR_DATA && !ds && has_(e, cases[i].want) &&
                  (has_(e, "m/a.h5") || !cases[i].y) && has_(e, cases[i].name),
              "%s: %s", cases[i].name, e);
        /* y missing in one file only, where y is optional (predict): both files named */
        if (!cases[i].y) {
            st = sp_dataset_open_files(&ds, paths, 2, NULL, NULL, SP_DATASET_Y_OPTIONAL);
            e = sp_last_error();
            CHECK(st == SP_ERR_DATA && has_(e, "m/a.h5") && has_(e, "m/b-noy.h5") &&
                      has_(e, "not in the file"),
                  "y optional: %s", e);
        }
    }
    /* classes: the largest over the files when no file has the attribute */
    write_rows_(path_("m/c.h5"), 0, 3, H5T_IEEE_F32LE, F, true, 0); /* labels 0..2 */
    const char *paths[2] = {path_("m/c.h5"), path_("m/a.h5")};
    sp_dataset *ds = NULL;
    CHECK(sp_dataset_open_files(&ds, paths, 2, NULL, NULL, 0) == SP_OK, "classes: %s",
          sp_last_error());
    if (ds)
        CHECK(sp_dataset_get_info(ds)->classes == 5, "classes %lld",
              (long long)sp_dataset_get_info(ds)->classes);
    sp_dataset_close(ds);
}

/* 40 files, at most 4 open: every read right, the bound kept; then a file changed mid-run. */
static void test_handles_(void) {
    enum { NS = 40, PER = 3 };
    mkdir(path_("h"), 0755);
    for (int i = 0; i < NS; ++i) {
        char name[32];
        snprintf(name, sizeof name, "h/s-%03d.h5", i);
        write_rows_(path_(name), (int64_t)i * PER, PER, H5T_IEEE_F32LE, F, true, 5);
    }
    setenv("SHARDPROP_MAX_OPEN_FILES", "4", 1);
    sp_dataset *ds = NULL;
    sp_status st = sp_dataset_open_items(&ds, path_("h/s-*.h5"), "--data", NULL, NULL, 0);
    unsetenv("SHARDPROP_MAX_OPEN_FILES");
    CHECK(st == SP_OK, "open: %s", sp_last_error());
    if (!ds) return;
    int now = 0, peak = 0;
    int64_t reopens = 0;
    sp_dataset_handle_stats(ds, &now, &peak, &reopens);
    CHECK(now <= 4 && peak <= 4, "after open: %d open, peak %d", now, peak);
    /* strided reads: every batch touches many files */
    int bad = 0;
    for (int pass = 0; pass < 3; ++pass)
        for (int s = 0; s < 7; ++s) {
            int64_t ids[NS * PER / 7 + 1];
            int n = 0;
            for (int64_t r = s; r < NS * PER; r += 7) ids[n++] = r;
            float x[(NS * PER / 7 + 1) * F];
            int32_t y[NS * PER / 7 + 1];
            if (sp_dataset_read(ds, ids, n, x, y, NULL) != SP_OK) {
                ++bad;
                continue;
            }
            for (int k = 0; k < n; ++k) {
                if (y[k] != ids[k] % 5) ++bad;
                for (int e = 0; e < F; ++e)
                    if (x[k * F + e] != (float)(ids[k] * F + e)) ++bad;
            }
            sp_dataset_handle_stats(ds, &now, &peak, &reopens);
            if (now > 4 || peak > 4) ++bad;
        }
    CHECK(bad == 0, "%d bad values or bound exceeded (peak %d)", bad, peak);
    CHECK(reopens > 40, "files were closed and reopened: %lld reopens", (long long)reopens);
    /* a file changed while closed: refused before it is reopened, naming it */
    int64_t id0 = 0, id39 = NS * PER - 1;
    float x[F];
    CHECK(sp_dataset_read(ds, &id39, 1, x, NULL, NULL) == SP_OK, "read last");
    sp_dataset_handle_stats(ds, &now, &peak, &reopens);
    usleep(20000); /* a new mtime even on coarse clocks */
    write_rows_(path_("h/s-000.h5"), 0, PER + 1, H5T_IEEE_F32LE, F, true, 5);
    st = sp_dataset_read(ds, &id0, 1, x, NULL, NULL);
    CHECK(st == SP_ERR_DATA && has_(sp_last_error(), "s-000.h5") &&
              has_(sp_last_error(), "while training read it"),
          "changed shard: %s", sp_last_error());
    /* a file removed */
    unlink(path_("h/s-020.h5"));
    int64_t id20 = 20 * PER;
    st = sp_dataset_read(ds, &id20, 1, x, NULL, NULL);
    CHECK(st == SP_ERR_DATA && has_(sp_last_error(), "s-020.h5") &&
              has_(sp_last_error(), "removed"),
          "removed shard: %s", sp_last_error());
    sp_dataset_close(ds);
}

/* Token files: each file's windows, concatenated; a window never spans two files. */
static void test_tokens_(void) {
    enum { T = 4 };
    mkdir(path_("t"), 0755);
    const int ntok[2] = {13, 10}; /* 3 and 2 windows */
    int32_t all[32];
    int k = 0;
    for (int i = 0; i < 2; ++i) {
        int32_t tok[16];
        for (int j = 0; j < ntok[i]; ++j) all[k++] = tok[j] = (int32_t)((i * 31 + j * 7) % 50);
        char name[32];
        snprintf(name, sizeof name, "t/tok-%d.h5", i);
        hid_t h = tw_create(path_(name));
        hsize_t d[1] = {(hsize_t)ntok[i]};
        tw_dataset(h, "tokens", H5T_STD_U16LE, H5T_NATIVE_INT32, 1, d, tok, TW_CHUNKED);
        tw_attr(h, "tokens", "vocab_size", H5T_STD_I32LE, 50);
        H5Fclose(h);
    }
    sp_dataset *ds = NULL;
    sp_status st = sp_dataset_open_tokens_items(&ds, path_("t/tok-*.h5"), "--data", NULL, T);
    CHECK(st == SP_OK, "tokens: %s", sp_last_error());
    if (!ds) return;
    CHECK(sp_dataset_get_info(ds)->n == 5, "windows %lld", (long long)sp_dataset_get_info(ds)->n);
    const int64_t ids[] = {4, 2, 3, 0};
    float x[4 * T];
    int32_t lab[4 * T];
    CHECK(sp_dataset_read(ds, ids, 4, x, lab, NULL) == SP_OK, "read: %s", sp_last_error());
    int bad = 0;
    for (int i = 0; i < 4; ++i) {
        const int file = ids[i] >= 3, w = (int)ids[i] - 3 * file;
        const int32_t *src = all + (file ? ntok[0] : 0) + w * T;
        for (int j = 0; j < T; ++j)
            if (x[i * T + j] != (float)src[j] || lab[i * T + j] != src[j + 1]) ++bad;
    }
    CHECK(bad == 0, "%d token values wrong", bad);
    sp_dataset_close(ds);
}

/* --shuffle shards: a permutation; pure; epochs differ; each window's rows contiguous. */
static void test_shard_order_(void) {
    const int64_t rows[] = {5, 1, 9, 4, 7, 3, 6};
    const int nf = 7;
    int64_t n = 0, first[8];
    for (int f = 0; f < nf; ++f) first[f] = n, n += rows[f];
    first[nf] = n;
    int64_t *p = malloc((size_t)n * sizeof(int64_t)), *q = malloc((size_t)n * sizeof(int64_t));
    int64_t scratch[14];
    for (int64_t W = 1; W <= 8; ++W) {
        sp_epoch_order_shards(p, rows, nf, W, 42, 3, scratch);
        sp_epoch_order_shards(q, rows, nf, W, 42, 3, scratch);
        CHECK(!memcmp(p, q, (size_t)n * sizeof(int64_t)), "W %lld: not pure", (long long)W);
        uint8_t seen[64] = {0};
        int dup = 0;
        for (int64_t i = 0; i < n; ++i) dup += p[i] < 0 || p[i] >= n || seen[p[i]]++;
        CHECK(dup == 0, "W %lld: not a permutation", (long long)W);
        /* walk the order: each window is a run of W whole files (the last may hold fewer) */
        int64_t pos = 0;
        int files_done = 0, bad = 0;
        while (pos < n) {
            uint8_t in_win[8] = {0};
            int nwin = 0;
            int64_t need = 0;
            /* the window's files: the first W (or the rest) met from here on; the window must
             * then be exactly their rows */
            for (int64_t i = pos; i < n && nwin < W && files_done + nwin < nf; ++i) {
                int f = 0;
                while (p[i] >= first[f + 1]) ++f;
                if (!in_win[f]) {
                    in_win[f] = 1;
                    ++nwin;
                    need += rows[f];
                }
            }
            for (int64_t i = pos; i < pos + need && i < n; ++i) {
                int f = 0;
                while (p[i] >= first[f + 1]) ++f;
                bad += !in_win[f];
            }
            files_done += nwin;
            pos += need;
            if (need == 0) break;
        }
        CHECK(bad == 0 && pos == n && files_done == nf, "W %lld: windows not contiguous",
              (long long)W);
    }
    sp_epoch_order_shards(p, rows, nf, 2, 42, 3, scratch);
    sp_epoch_order_shards(q, rows, nf, 2, 42, 4, scratch);
    CHECK(memcmp(p, q, (size_t)n * sizeof(int64_t)), "epochs 3 and 4 give the same order");
    sp_epoch_order_shards(q, rows, nf, 2, 43, 3, scratch);
    CHECK(memcmp(p, q, (size_t)n * sizeof(int64_t)), "seeds 42 and 43 give the same order");
    free(p);
    free(q);
}

/* The loader under --shuffle shards: the union of the ranks' slices of every batch is the same
 * for 1, 2 and 3 ranks (the order does not depend on the rank count). */
static void test_shard_loader_(void) {
    sp_dataset *ds = NULL;
    CHECK(sp_dataset_open_items(&ds, path_("r"), NULL, NULL, NULL, 0) == SP_OK, "open: %s",
          sp_last_error());
    if (!ds) return;
    enum { B = 8, NMAX = 50 };
    int64_t ref[NMAX];
    float xref[NMAX * F];
    int total = 0, bad = 0;
    for (int P = 1; P <= 3; ++P) {
        int64_t got[NMAX];
        float xgot[NMAX * F];
        int k = 0;
        for (int r = 0; r < P; ++r) {
            sp_loader *ld = NULL;
            sp_loader_config c = {.batch = B,
                                  .rank = r,
                                  .nranks = P,
                                  .seed = 9,
                                  .shuffle = true,
                                  .cache_mb = 0,
                                  .prefetch = r == 1,
                                  .shuffle_window = 2};
            if (sp_loader_create(&ld, ds, &c) != SP_OK) {
                ++bad;
                continue;
            }
            sp_loader_start_epoch(ld, 1, 0);
            sp_batch b;
            bool done = false;
            while (sp_loader_next(ld, &b, &done) == SP_OK && !done)
                for (int64_t i = 0; i < b.count; ++i) {
                    const int64_t at = b.first_pos + i;
                    got[at] = b.ids[i];
                    memcpy(xgot + at * F, b.x + i * F, F * sizeof(float));
                    ++k;
                }
            sp_loader_free(ld);
        }
        if (P == 1) {
            memcpy(ref, got, sizeof ref);
            memcpy(xref, xgot, sizeof xref);
            total = k;
        } else {
            bad += k != total || memcmp(ref, got, sizeof ref) || memcmp(xref, xgot, sizeof xref);
        }
    }
    CHECK(total == NMAX && bad == 0, "rows %d, %d layouts differ", total, bad);
    int64_t rows[5], scratch[10], want[NMAX];
    for (int f = 0; f < 5; ++f) rows[f] = sp_dataset_file_rows(ds, f);
    sp_epoch_order_shards(want, rows, 5, 2, 9, 1, scratch);
    CHECK(!memcmp(want, ref, sizeof want), "the loader's order is sp_epoch_order_shards'");
    sp_dataset_close(ds);
}

int main(void) {
    snprintf(dir, sizeof dir, "%s", sp_test_tmpdir("data_shards"));
    test_paths_();
    test_reads_();
    test_mismatch_();
    test_handles_();
    test_tokens_();
    test_shard_order_();
    test_shard_loader_();
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "cannot remove %s\n", dir);
    return sp_test_summary("data_shards");
}
