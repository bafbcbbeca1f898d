/* Token data (sp_dataset_open_tokens): windows and their next-token labels for every token dtype
 * and layout, ids in any order with duplicates, lazy validation of token ids, every open error
 * (each message names the file, the dataset and what it found), the --seq-len hint of
 * sp_dataset_open, the summary, a file changed under the reader, and the loader: 1, 2 and 3
 * ranks see the same global batches, with and without prefetch, resumed mid-epoch. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "data/data.h"
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

/* The token at position p of the test files: distinct enough that a window or label taken one
 * position off is caught, and < vocab for every vocab used (>= 200). */
static int32_t tok_(int64_t p) {
    return (int32_t)((p * 37 + 11) % 199);
}

/* A scalar string attribute `name` on `obj`: fixed-length (exact size) or variable-length. */
static void str_attr_(hid_t f, const char *obj, const char *name, const char *v, bool vlen) {
    hid_t o = H5Oopen(f, obj, H5P_DEFAULT);
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, vlen ? H5T_VARIABLE : strlen(v) + 1);
    hid_t s = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(o, name, t, s, H5P_DEFAULT, H5P_DEFAULT);
    if (vlen)
        H5Awrite(a, t, &v);
    else
        H5Awrite(a, t, v);
    H5Aclose(a);
    H5Sclose(s);
    H5Tclose(t);
    H5Oclose(o);
}

/* `name` (ntok,) of `ftype` holding tok_(p), with vocab_size (unless < 0) and tokenizer
 * (unless NULL). */
static void write_tokens_(const char *p, const char *name, hid_t ftype, int64_t ntok, int layout,
                          double vocab, const char *tokenizer) {
    int32_t *t = malloc((size_t)ntok * sizeof(int32_t));
    for (int64_t i = 0; i < ntok; ++i) t[i] = tok_(i);
    hid_t f = tw_create(p);
    hsize_t d[1] = {(hsize_t)ntok};
    tw_dataset(f, name, ftype, H5T_NATIVE_INT32, 1, d, t, layout);
    if (vocab >= 0) tw_attr(f, name, "vocab_size", H5T_STD_I64LE, vocab);
    if (tokenizer) str_attr_(f, name, "tokenizer", tokenizer, false);
    H5Fclose(f);
    free(t);
}

/* x (n, T) and labels (n, T) of windows ids[0..n) are tok_ at [id T, id T + T) and one later. */
static int check_windows_(const int64_t *ids, int64_t n, int64_t T, const float *x,
                          const int32_t *labels) {
    int bad = 0;
    for (int64_t i = 0; i < n; ++i)
        for (int64_t k = 0; k < T; ++k) {
            if (x && x[i * T + k] != (float)tok_(ids[i] * T + k)) ++bad;
            if (labels && labels[i * T + k] != tok_(ids[i] * T + k + 1)) ++bad;
        }
    return bad;
}

static void test_windows_(void) {
    const hid_t fts[] = {H5T_STD_U8LE, H5T_STD_U16LE, H5T_STD_I32LE, H5T_STD_U16BE};
    const char *names[] = {"uint8", "uint16", "int32", "uint16"};
    const int64_t Ts[] = {1, 3, 7, 40};
    const int64_t ntok = 101; /* 100 / T windows, the tail past the last window unused */
    for (int ti = 0; ti < 4; ++ti)
        for (int layout = 0; layout < 3; ++layout)
            for (int k = 0; k < 4; ++k) {
                const int64_t T = Ts[k];
                const char *p = path_("tok.h5");
                const bool grouped = (ti + layout) % 2;
                const char *name = grouped ? "text/ids" : "tokens";
                write_tokens_(p, name, fts[ti], ntok + k, layout, 200, ti ? NULL : "bytes");
                sp_dataset *ds;
                sp_status st = sp_dataset_open_tokens(&ds, p, grouped ? name : NULL, T);
                CHECK(st == SP_OK, "%s layout %d T %lld: %s", names[ti], layout, (long long)T,
                      sp_last_error());
                if (st != SP_OK) continue;
                const sp_dataset_info *in = sp_dataset_get_info(ds);
                const int64_t N = (ntok + k - 1) / T;
                const size_t esz = ti == 0 ? 1 : ti == 2 ? 4 : 2;
                CHECK(in->n == N && in->seq_len == T && in->tokens == ntok + k &&
                          in->sample_rank == 1 && in->sample_shape[0] == T &&
                          in->sample_size == (size_t)T && in->classes == 200 && in->labeled &&
                          !in->regression && in->targets == 0 && in->x_row_bytes == T * esz &&
                          in->scale == 1 && in->offset == 0,
                      "info: N %lld T %lld tokens %lld classes %lld row bytes %zu",
                      (long long)in->n, (long long)in->seq_len, (long long)in->tokens,
                      (long long)in->classes, in->x_row_bytes);
                CHECK(!strcmp(sp_x_dtype_name(in->x_dtype), names[ti]) && !strcmp(in->x_name, name),
                      "dtype %s, name %s", sp_x_dtype_name(in->x_dtype), in->x_name);
                CHECK(ti ? in->tokenizer == NULL
                         : (in->tokenizer && !strcmp(in->tokenizer, "bytes")),
                      "tokenizer");
                /* any order, duplicates, runs of consecutive windows, the last window */
                int64_t ids[9] = {N - 1, 0, 1 % N, 2 % N, 2 % N, N / 2, 0, N - 1, 3 % N};
                float x[9 * 40];
                int32_t lab[9 * 40];
                st = sp_dataset_read(ds, ids, 9, x, lab, NULL);
                CHECK(st == SP_OK, "read: %s", sp_last_error());
                CHECK(check_windows_(ids, 9, T, x, lab) == 0, "%s layout %d T %lld: windows",
                      names[ti], layout, (long long)T);
                /* labels only, x only */
                memset(lab, 0xff, sizeof lab);
                memset(x, 0, sizeof x);
                CHECK(sp_dataset_read(ds, ids, 9, NULL, lab, NULL) == SP_OK &&
                          check_windows_(ids, 9, T, NULL, lab) == 0,
                      "labels only");
                CHECK(sp_dataset_read(ds, ids + 1, 4, x, NULL, NULL) == SP_OK &&
                          check_windows_(ids + 1, 4, T, x, NULL) == 0,
                      "x only");
                /* every window at once: one run of N T + 1 tokens */
                int64_t *all = malloc((size_t)N * sizeof(int64_t));
                float *xa = malloc((size_t)(N * T) * sizeof(float));
                int32_t *la = malloc((size_t)(N * T) * sizeof(int32_t));
                for (int64_t i = 0; i < N; ++i) all[i] = N - 1 - i;
                CHECK(sp_dataset_read(ds, all, N, xa, la, NULL) == SP_OK &&
                          check_windows_(all, N, T, xa, la) == 0,
                      "all windows");
                free(all);
                free(xa);
                free(la);
                float tg[40];
                st = sp_dataset_read(ds, ids, 1, x, NULL, tg);
                CHECK(st == SP_ERR_ARG && strstr(sp_last_error(), "targets"), "targets: %s",
                      sp_last_error());
                const int64_t bad_id[1] = {N};
                CHECK(sp_dataset_read(ds, bad_id, 1, x, lab, NULL) == SP_ERR_ARG, "id N");
                const int64_t shape[1] = {T};
                CHECK(sp_dataset_check_input_shape(ds, shape, 1) == SP_OK, "input shape (T)");
                char line[512];
                sp_dataset_describe(ds, line, sizeof line);
                char want[256];
                snprintf(want, sizeof want,
                         ": %lld tokens %s, vocab_size 200%s, windows of %lld: N=%lld",
                         (long long)(ntok + k), names[ti], ti ? "" : " (bytes)", (long long)T,
                         (long long)N);
                CHECK(strstr(line, p) && strstr(line, want), "describe: %s (want %s)", line, want);
                sp_dataset_close(ds);
            }
}

/* Open must fail with `code` and a one-line message holding every one of the strings. */
static void expect_fail_(const char *p, const char *name, int64_t T, sp_status code, const char *a,
                         const char *b, const char *c) {
    sp_dataset *ds = (sp_dataset *)1;
    sp_status st = sp_dataset_open_tokens(&ds, p, name, T);
    const char *m = sp_last_error();
    CHECK(st == code, "%s: status %s, want %s (%s)", p, sp_status_name(st), sp_status_name(code),
          m);
    CHECK(ds == NULL, "out is NULL on failure");
    CHECK(strstr(m, p) != NULL, "message names the file: %s", m);
    CHECK(!a || strstr(m, a), "message has '%s': %s", a, m);
    CHECK(!b || strstr(m, b), "message has '%s': %s", b, m);
    CHECK(!c || strstr(m, c), "message has '%s': %s", c, m);
    CHECK(strchr(m, '\n') == NULL, "one line: %s", m);
    if (st == SP_OK) sp_dataset_close(ds);
}

static void test_open_errors_(void) {
    const char *p;
    hid_t f;
    expect_fail_(path_("none.h5"), NULL, 4, SP_ERR_IO, "'tokens'", "No such file", NULL);
    p = path_("ok.h5");
    write_tokens_(p, "tokens", H5T_STD_U8LE, 20, TW_GZIP, 256, NULL);
    expect_fail_(p, NULL, 0, SP_ERR_ARG, "'tokens'", "--seq-len must be >= 1 (got 0)", NULL);
    expect_fail_(p, NULL, -3, SP_ERR_ARG, "'tokens'", "--seq-len", NULL);
    /* too short: 20 tokens hold one window of 19, none of 20 */
    sp_dataset *ds;
    CHECK(sp_dataset_open_tokens(&ds, p, NULL, 19) == SP_OK && sp_dataset_get_info(ds)->n == 1,
          "19: one window: %s", sp_last_error());
    sp_dataset_close(ds);
    expect_fail_(p, NULL, 20, SP_ERR_DATA, "'tokens'", "20 tokens",
                 "--seq-len 20 needs at least 21 tokens");
    expect_fail_(p, NULL, INT64_MAX, SP_ERR_DATA, "20 tokens", "needs at least", NULL);
    expect_fail_(p, "ids", 4, SP_ERR_DATA, "dataset 'ids'", "not found", NULL);
    p = path_("one.h5");
    write_tokens_(p, "tokens", H5T_STD_U8LE, 1, 0, 256, NULL);
    expect_fail_(p, NULL, 1, SP_ERR_DATA, "1 tokens", "--seq-len 1 needs at least 2", NULL);
    p = path_("zero.h5");
    write_tokens_(p, "tokens", H5T_STD_U8LE, 0, 0, 256, NULL);
    expect_fail_(p, NULL, 1, SP_ERR_DATA, "0 tokens", "needs at least 2", NULL);

    const hid_t bad_types[] = {H5T_STD_I8LE,  H5T_STD_I16LE,  H5T_STD_U32LE,
                               H5T_STD_I64LE, H5T_IEEE_F32LE, H5T_IEEE_F64LE};
    const char *bad_names[] = {"int8", "int16", "uint32", "int64", "float32", "float64"};
    for (int k = 0; k < 6; ++k) {
        p = path_("dtype.h5");
        write_tokens_(p, "tokens", bad_types[k], 10, 0, 256, NULL);
        char want[64];
        snprintf(want, sizeof want, "unsupported dtype %s", bad_names[k]);
        expect_fail_(p, NULL, 2, SP_ERR_DATA, "dataset 'tokens'", want, "uint8, uint16 or int32");
    }
    p = path_("2d.h5");
    f = tw_create(p);
    {
        uint8_t t[24] = {0};
        hsize_t d[2] = {4, 6};
        tw_dataset(f, "tokens", H5T_STD_U8LE, H5T_NATIVE_UINT8, 2, d, t, 0);
        tw_attr(f, "tokens", "vocab_size", H5T_STD_I32LE, 256);
    }
    H5Fclose(f);
    expect_fail_(p, NULL, 2, SP_ERR_DATA, "dataset 'tokens'", "wrong rank 2", "(4,6)");
    p = path_("scalar.h5");
    f = tw_create(p);
    {
        hid_t s = H5Screate(H5S_SCALAR);
        H5Dclose(H5Dcreate2(f, "tokens", H5T_STD_U8LE, s, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
        H5Sclose(s);
    }
    H5Fclose(f);
    expect_fail_(p, NULL, 2, SP_ERR_DATA, "dataset 'tokens'", "scalar", NULL);
    p = path_("group.h5");
    f = tw_create(p);
    H5Gclose(H5Gcreate2(f, "tokens", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
    H5Fclose(f);
    expect_fail_(p, NULL, 2, SP_ERR_DATA, "dataset 'tokens'", "is a group", NULL);

    p = path_("novocab.h5");
    write_tokens_(p, "tokens", H5T_STD_U16LE, 10, 0, -1, NULL);
    expect_fail_(p, NULL, 2, SP_ERR_DATA, "dataset 'tokens'", "attribute 'vocab_size' not found",
                 NULL);
    const double bad_vocab[] = {0, 2.5, 16777217.0, -4};
    for (int k = 0; k < 4; ++k) {
        p = path_("vocab.h5");
        write_tokens_(p, "tokens", H5T_STD_U16LE, 10, 0, -1, NULL);
        f = H5Fopen(p, H5F_ACC_RDWR, H5P_DEFAULT);
        tw_attr(f, "tokens", "vocab_size", H5T_IEEE_F64LE, bad_vocab[k]);
        H5Fclose(f);
        expect_fail_(p, NULL, 2, SP_ERR_DATA, "attribute 'vocab_size'",
                     "not an integer in [1, 16777216]", NULL);
    }
    p = path_("vocabstr.h5");
    write_tokens_(p, "tokens", H5T_STD_U16LE, 10, 0, -1, NULL);
    f = H5Fopen(p, H5F_ACC_RDWR, H5P_DEFAULT);
    str_attr_(f, "tokens", "vocab_size", "256", false);
    H5Fclose(f);
    expect_fail_(p, NULL, 2, SP_ERR_DATA, "attribute 'vocab_size'", "must be one number", NULL);
    /* the largest vocabulary */
    p = path_("bigvocab.h5");
    write_tokens_(p, "tokens", H5T_STD_I32LE, 10, 0, 16777216.0, NULL);
    CHECK(sp_dataset_open_tokens(&ds, p, NULL, 3) == SP_OK &&
              sp_dataset_get_info(ds)->classes == 16777216,
          "vocab 2^24: %s", sp_last_error());
    sp_dataset_close(ds);

    /* tokenizer: a fixed-length string is read; variable-length refused; a number refused */
    p = path_("tokenizer.h5");
    write_tokens_(p, "tokens", H5T_STD_U8LE, 10, 0, 256, NULL);
    f = H5Fopen(p, H5F_ACC_RDWR, H5P_DEFAULT);
    str_attr_(f, "tokens", "tokenizer", "gpt2-like", false);
    H5Fclose(f);
    CHECK(sp_dataset_open_tokens(&ds, p, NULL, 3) == SP_OK &&
              !strcmp(sp_dataset_get_info(ds)->tokenizer, "gpt2-like"),
          "fixed-length tokenizer: %s", sp_last_error());
    sp_dataset_close(ds);
    write_tokens_(p, "tokens", H5T_STD_U8LE, 10, 0, 256, NULL);
    f = H5Fopen(p, H5F_ACC_RDWR, H5P_DEFAULT);
    str_attr_(f, "tokens", "tokenizer", "bytes", true);
    H5Fclose(f);
    expect_fail_(p, NULL, 2, SP_ERR_DATA, "attribute 'tokenizer'", "variable-length",
                 "fixed-length");
    write_tokens_(p, "tokens", H5T_STD_U8LE, 10, 0, 256, NULL);
    f = H5Fopen(p, H5F_ACC_RDWR, H5P_DEFAULT);
    tw_attr(f, "tokens", "tokenizer", H5T_STD_I32LE, 1);
    H5Fclose(f);
    expect_fail_(p, NULL, 2, SP_ERR_DATA, "attribute 'tokenizer'", "must be one string", NULL);

    /* a sample file opened as tokens: the hint to leave --seq-len out */
    p = path_("samples.h5");
    f = tw_create(p);
    {
        float x[8] = {0};
        int32_t y[4] = {0};
        hsize_t xd[2] = {4, 2}, yd[1] = {4};
        tw_dataset(f, "X", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 2, xd, x, 0);
        tw_dataset(f, "y", H5T_STD_I32LE, H5T_NATIVE_INT32, 1, yd, y, 0);
    }
    H5Fclose(f);
    expect_fail_(p, NULL, 2, SP_ERR_DATA, "dataset 'tokens'", "holds samples ('X')",
                 "without --seq-len");
}

/* sp_dataset_open (and _ex) of a token file: the --seq-len hint with the token count. */
static void test_seq_len_hint_(void) {
    const char *p = path_("hint.h5");
    write_tokens_(p, "tokens", H5T_STD_U8LE, 2576, TW_GZIP, 256, "bytes");
    for (int k = 0; k < 2; ++k) {
        sp_dataset *ds = (sp_dataset *)1;
        sp_status st = k ? sp_dataset_open_ex(&ds, p, NULL, NULL, SP_DATASET_Y_OPTIONAL)
                         : sp_dataset_open(&ds, p, NULL, NULL);
        const char *m = sp_last_error();
        CHECK(st == SP_ERR_DATA && ds == NULL, "open of a token file fails (%s)", m);
        char want[600];
        snprintf(want, sizeof want,
                 "%s: dataset 'X' not found; the file holds token data ('tokens', 2576 tokens): "
                 "train it with --seq-len T",
                 p);
        CHECK(!strcmp(m, want), "hint: %s", m);
    }
    CHECK(sp_dataset_is_token_file(p, NULL) && sp_dataset_is_token_file(p, "X"), "is a token file");
    CHECK(!sp_dataset_is_token_file(path_("samples.h5"), NULL), "samples.h5 is not");
    CHECK(!sp_dataset_is_token_file(path_("none.h5"), NULL), "a missing file is not");
    /* from a file image, as the fuzz target opens it */
    FILE *f = fopen(p, "rb");
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *img = malloc((size_t)len);
    CHECK(fread(img, 1, (size_t)len, f) == (size_t)len, "read image");
    fclose(f);
    sp_dataset *ds;
    CHECK(sp_dataset_open_tokens_image(&ds, img, (size_t)len, "img", NULL, 16) == SP_OK &&
              sp_dataset_get_info(ds)->n == 2575 / 16,
          "image: %s", sp_last_error());
    int64_t ids[2] = {159, 3};
    float x[32];
    int32_t l[32];
    CHECK(sp_dataset_read(ds, ids, 2, x, l, NULL) == SP_OK && check_windows_(ids, 2, 16, x, l) == 0,
          "image windows");
    sp_dataset_close(ds);
    CHECK(sp_dataset_open_tokens_image(&ds, img, 10, "img", NULL, 16) == SP_ERR_DATA && !ds,
          "a cut image");
    free(img);
}

/* A token >= vocab_size (or negative) fails the read of a window holding it, naming the file,
 * the dataset, the token and its position; other windows read fine. Summaries too. */
static void test_bad_tokens_(void) {
    const int64_t ntok = 50, T = 4;
    for (int k = 0; k < 2; ++k) {
        const char *p = path_("bad.h5");
        int32_t t[50];
        for (int64_t i = 0; i < ntok; ++i) t[i] = tok_(i) % 100;
        t[21] = k ? -5 : 100; /* window 5 is tokens [20, 25) */
        hid_t f = tw_create(p);
        hsize_t d[1] = {(hsize_t)ntok};
        tw_dataset(f, "tokens", k ? H5T_STD_I32LE : H5T_STD_U8LE, H5T_NATIVE_INT32, 1, d, t,
                   TW_CHUNKED);
        tw_attr(f, "tokens", "vocab_size", H5T_STD_U16LE, 100);
        H5Fclose(f);
        sp_dataset *ds;
        CHECK(sp_dataset_open_tokens(&ds, p, NULL, T) == SP_OK, "lazy: %s", sp_last_error());
        if (!ds) continue;
        int64_t ok_ids[3] = {0, 6, 11}, bad_ids[3] = {0, 11, 5};
        float x[12];
        int32_t l[12];
        CHECK(sp_dataset_read(ds, ok_ids, 3, x, l, NULL) == SP_OK, "clean windows: %s",
              sp_last_error());
        char want[200];
        snprintf(want, sizeof want, "token %d at position 21 is out of range [0, 100)",
                 k ? -5 : 100);
        sp_status st = sp_dataset_read(ds, bad_ids, 3, x, l, NULL);
        CHECK(st == SP_ERR_DATA && strstr(sp_last_error(), p) &&
                  strstr(sp_last_error(), "dataset 'tokens'") && strstr(sp_last_error(), want),
              "bad token: %s", sp_last_error());
        CHECK(sp_dataset_read(ds, bad_ids + 2, 1, NULL, l, NULL) == SP_ERR_DATA, "labels only too");
        /* the boundary token of window 4 is token 20 (its label), clean; window 5 holds 21 */
        int64_t w4[1] = {4};
        CHECK(sp_dataset_read(ds, w4, 1, x, l, NULL) == SP_OK, "window 4");
        sp_dataset_summary sum;
        st = sp_dataset_summarize(ds, &sum);
        CHECK(st == SP_ERR_DATA && strstr(sp_last_error(), want), "summary: %s", sp_last_error());
        sp_dataset_summary_free(&sum);
        sp_dataset_close(ds);
    }
    /* the last token of the file, outside every window, is still checked by the summary: 50
     * tokens, T = 7: 7 windows cover tokens 0..49, T = 8: 6 windows cover 0..48 */
    const char *p = path_("tail.h5");
    int32_t t[50];
    for (int i = 0; i < 50; ++i) t[i] = i % 10;
    t[49] = 10;
    hid_t f = tw_create(p);
    hsize_t d[1] = {50};
    tw_dataset(f, "tokens", H5T_STD_U8LE, H5T_NATIVE_INT32, 1, d, t, 0);
    tw_attr(f, "tokens", "vocab_size", H5T_STD_U16LE, 10);
    H5Fclose(f);
    sp_dataset *ds;
    CHECK(sp_dataset_open_tokens(&ds, p, NULL, 8) == SP_OK, "%s", sp_last_error());
    int64_t all[6] = {0, 1, 2, 3, 4, 5};
    float x[48];
    int32_t l[48];
    CHECK(sp_dataset_read(ds, all, 6, x, l, NULL) == SP_OK, "windows do not reach token 49");
    sp_dataset_summary sum;
    CHECK(sp_dataset_summarize(ds, &sum) == SP_ERR_DATA &&
              strstr(sp_last_error(), "token 10 at position 49"),
          "%s", sp_last_error());
    sp_dataset_summary_free(&sum);
    sp_dataset_close(ds);
}

static void test_summary_(void) {
    const char *p = path_("sum.h5");
    write_tokens_(p, "tokens", H5T_STD_U16LE, 1000, TW_GZIP, 300, NULL);
    sp_dataset *ds;
    CHECK(sp_dataset_open_tokens(&ds, p, NULL, 10) == SP_OK, "%s", sp_last_error());
    sp_dataset_summary sum;
    CHECK(sp_dataset_summarize(ds, &sum) == SP_OK, "%s", sp_last_error());
    int64_t hist[300] = {0}, total = 0, mn = 1000, mx = -1;
    double s = 0;
    for (int64_t i = 0; i < 1000; ++i) {
        const int32_t v = tok_(i);
        hist[v]++;
        s += v;
        mn = v < mn ? v : mn;
        mx = v > mx ? v : mx;
    }
    int bad = 0;
    for (int v = 0; v < 300; ++v) {
        bad += sum.class_counts[v] != hist[v];
        total += sum.class_counts[v];
    }
    CHECK(bad == 0 && total == 1000, "histogram of every token (%d bad, %lld)", bad,
          (long long)total);
    CHECK(sum.x_min == (double)mn && sum.x_max == (double)mx && fabs(sum.x_mean - s / 1000) < 1e-9,
          "min %g max %g mean %g", sum.x_min, sum.x_max, sum.x_mean);
    sp_dataset_summary_free(&sum);
    sp_dataset_close(ds);
}

/* A token file truncated or rewritten after open: the next read says so. */
static void test_changed_(void) {
    const char *p = path_("changed.h5");
    write_tokens_(p, "tokens", H5T_STD_U8LE, 5000, 0, 256, NULL);
    sp_dataset *ds;
    CHECK(sp_dataset_open_tokens(&ds, p, NULL, 8) == SP_OK, "%s", sp_last_error());
    int64_t ids[2] = {1, 600};
    float x[16];
    int32_t l[16];
    CHECK(sp_dataset_read(ds, ids, 2, x, l, NULL) == SP_OK, "before");
    CHECK(truncate(p, 2048) == 0, "truncate");
    sp_status st = sp_dataset_read(ds, ids, 2, x, l, NULL);
    CHECK(st != SP_OK && strstr(sp_last_error(), p) && strstr(sp_last_error(), "'tokens'") &&
              strstr(sp_last_error(), "truncated"),
          "truncated: %s", sp_last_error());
    sp_dataset_close(ds);
}

/* ------------------------------------------------------------------------------- the loader */

typedef struct {
    int64_t nb, total;
    int64_t *ids, *count, *gcount;
    float *x;
    int32_t *lab;
} rec_;

static void record_(sp_loader *ld, int64_t n, int64_t T, int64_t epoch, int64_t first, rec_ *r) {
    memset(r, 0, sizeof *r);
    r->ids = malloc((size_t)n * 8);
    r->x = malloc((size_t)(n * T) * 4);
    r->lab = malloc((size_t)(n * T) * 4);
    r->count = malloc(1000 * 8);
    r->gcount = malloc(1000 * 8);
    CHECK(sp_loader_start_epoch(ld, epoch, first) == SP_OK, "start");
    sp_batch b;
    bool done = false;
    while (sp_loader_next(ld, &b, &done) == SP_OK && !done) {
        memcpy(r->ids + r->total, b.ids, (size_t)b.count * 8);
        memcpy(r->x + r->total * T, b.x, (size_t)(b.count * T) * 4);
        memcpy(r->lab + r->total * T, b.labels, (size_t)(b.count * T) * 4);
        r->count[r->nb] = b.count;
        r->gcount[r->nb++] = b.global_count;
        r->total += b.count;
        CHECK(b.targets == NULL, "no targets");
    }
    CHECK(done, "ends with done: %s", sp_last_error());
}

static void free_rec_(rec_ *r) {
    free(r->ids);
    free(r->x);
    free(r->lab);
    free(r->count);
    free(r->gcount);
}

static void test_loader_(void) {
    const char *p = path_("loader.h5");
    const int64_t T = 6, B = 10;
    write_tokens_(p, "tokens", H5T_STD_U16LE, 6 * 83 + 4, TW_GZIP, 256, NULL);
    sp_dataset *ds;
    CHECK(sp_dataset_open_tokens(&ds, p, NULL, T) == SP_OK, "%s", sp_last_error());
    const int64_t n = sp_dataset_get_info(ds)->n;
    CHECK(n == 83, "N %lld", (long long)n);
    sp_loader_config c1 = {.batch = B,
                           .rank = 0,
                           .nranks = 1,
                           .seed = 11,
                           .shuffle = true,
                           .cache_mb = 64,
                           .prefetch = false};
    sp_loader *ld;
    CHECK(sp_loader_create(&ld, ds, &c1) == SP_OK, "%s", sp_last_error());
    CHECK(!sp_loader_cache_enabled(ld), "no row cache for token data");
    size_t cache, bufs;
    sp_loader_memory_bytes(ld, &cache, &bufs);
    CHECK(cache == 0 && bufs > (size_t)(2 * B * T * 4), "memory: cache %zu, buffers %zu", cache,
          bufs);
    CHECK(sp_loader_bytes_per_epoch(ld) == (uint64_t)(n * T * 2), "bytes per epoch");
    rec_ ref;
    record_(ld, n, T, 3, 0, &ref);
    sp_loader_stats s;
    sp_loader_get_stats(ld, &s);
    CHECK(s.rows_read == (uint64_t)n && s.cache_hits == 0 && s.bytes_read == (uint64_t)(n * T * 2),
          "stats: %llu rows", (unsigned long long)s.rows_read);
    /* a second epoch reads every window again */
    rec_ again;
    record_(ld, n, T, 4, 0, &again);
    sp_loader_get_stats(ld, &s);
    CHECK(s.rows_read == (uint64_t)(2 * n), "epoch 2 reads again");
    CHECK(memcmp(again.ids, ref.ids, (size_t)n * 8) != 0, "epochs differ");
    free_rec_(&again);
    sp_loader_free(ld);
    CHECK(ref.nb == 9 && ref.total == n && ref.count[8] == 3, "%lld batches", (long long)ref.nb);
    CHECK(check_windows_(ref.ids, n, T, ref.x, ref.lab) == 0, "windows and labels of their ids");
    int64_t *sorted = malloc((size_t)n * 8);
    memcpy(sorted, ref.ids, (size_t)n * 8);
    int seen[83] = {0}, dup = 0;
    for (int64_t i = 0; i < n; ++i) dup += seen[sorted[i]]++ > 0;
    CHECK(dup == 0, "every window once per epoch");
    free(sorted);

    for (int P = 1; P <= 3; ++P) {
        rec_ rec[3];
        for (int r = 0; r < P; ++r) {
            sp_loader_config c = c1;
            c.rank = r;
            c.nranks = P;
            c.prefetch = (r + P) % 2 == 0;
            CHECK(sp_loader_create(&ld, ds, &c) == SP_OK, "%s", sp_last_error());
            record_(ld, n, T, 3, 0, &rec[r]);
            sp_loader_free(ld);
        }
        int64_t off[3] = {0}, refoff = 0;
        int mism = 0;
        for (int64_t b = 0; b < ref.nb; ++b) {
            int64_t got = 0;
            for (int r = 0; r < P; ++r) {
                const int64_t c = rec[r].count[b];
                CHECK(rec[r].nb == ref.nb && rec[r].gcount[b] == ref.gcount[b], "global count");
                if (memcmp(rec[r].ids + off[r], ref.ids + refoff + got, (size_t)c * 8) ||
                    memcmp(rec[r].x + off[r] * T, ref.x + (refoff + got) * T,
                           (size_t)(c * T) * 4) ||
                    memcmp(rec[r].lab + off[r] * T, ref.lab + (refoff + got) * T,
                           (size_t)(c * T) * 4))
                    ++mism;
                off[r] += c;
                got += c;
            }
            CHECK(got == ref.count[b], "P=%d batch %lld tiled", P, (long long)b);
            refoff += ref.count[b];
        }
        CHECK(mism == 0, "P=%d: %d slices differ from the single-rank batch", P, mism);
        for (int r = 0; r < P; ++r) free_rec_(&rec[r]);
    }
    /* resume at batch 5 with prefetch: the rest of the same epoch */
    sp_loader_config cp = c1;
    cp.prefetch = true;
    CHECK(sp_loader_create(&ld, ds, &cp) == SP_OK, "%s", sp_last_error());
    rec_ res;
    record_(ld, n, T, 3, 5, &res);
    CHECK(res.nb == 4 && res.total == n - 50 &&
              !memcmp(res.ids, ref.ids + 50, (size_t)res.total * 8) &&
              !memcmp(res.lab, ref.lab + 50 * T, (size_t)(res.total * T) * 4),
          "resume at batch 5");
    free_rec_(&res);
    sp_loader_free(ld);
    /* micro-batches of 4 over 2 ranks, no shuffle: windows in file order */
    sp_loader_config cm = {.batch = B,
                           .rank = 1,
                           .nranks = 2,
                           .seed = 1,
                           .shuffle = false,
                           .prefetch = true,
                           .micro_batch = 4};
    CHECK(sp_loader_create(&ld, ds, &cm) == SP_OK, "%s", sp_last_error());
    rec_ mr;
    record_(ld, n, T, 0, 0, &mr);
    CHECK(mr.count[0] == 2 && mr.ids[0] == 8 &&
              check_windows_(mr.ids, mr.total, T, mr.x, mr.lab) == 0,
          "micro-batches: rank 1 gets the partial third, windows 8, 9 (%lld)",
          (long long)mr.ids[0]);
    free_rec_(&mr);
    sp_loader_free(ld);
    free_rec_(&ref);
    sp_dataset_close(ds);

    /* a bad token found by the reader thread comes back from sp_loader_next */
    const char *pb = path_("loader_bad.h5");
    int32_t t[61];
    for (int i = 0; i < 61; ++i) t[i] = i % 50;
    t[45] = 77;
    hid_t f = tw_create(pb);
    hsize_t d[1] = {61};
    tw_dataset(f, "tokens", H5T_STD_U8LE, H5T_NATIVE_INT32, 1, d, t, 0);
    tw_attr(f, "tokens", "vocab_size", H5T_STD_U16LE, 50);
    H5Fclose(f);
    CHECK(sp_dataset_open_tokens(&ds, pb, NULL, 3) == SP_OK, "%s", sp_last_error());
    for (int pf = 0; pf < 2; ++pf) {
        sp_loader_config ce = {
            .batch = 4, .rank = 0, .nranks = 1, .shuffle = false, .prefetch = pf};
        CHECK(sp_loader_create(&ld, ds, &ce) == SP_OK, "%s", sp_last_error());
        CHECK(sp_loader_start_epoch(ld, 0, 0) == SP_OK, "start");
        sp_batch b;
        bool done = false;
        int nb = 0;
        sp_status st;
        while ((st = sp_loader_next(ld, &b, &done)) == SP_OK && !done) ++nb;
        /* window 15 = tokens [45, 48): batch 3 (windows 12..15) */
        CHECK(st == SP_ERR_DATA && nb == 3 && strstr(sp_last_error(), "token 77 at position 45"),
              "prefetch %d: %d batches, %s", pf, nb, sp_last_error());
        sp_loader_free(ld);
    }
    sp_dataset_close(ds);
}

int main(void) {
    snprintf(dir, sizeof dir, "%s", sp_test_tmpdir("data_tokens"));
    test_windows_();
    test_open_errors_();
    test_seq_len_hint_();
    test_bad_tokens_();
    test_summary_();
    test_changed_();
    test_loader_();
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "cannot remove %s\n", dir);
    return sp_test_summary("data_tokens");
}
