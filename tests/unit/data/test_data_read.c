/* The data file contract: every X and y dtype, every layout, groups, and every validation error
 * (each message must name the file, the dataset and the problem). */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "data/data.h"
#include "h5_writer.h"
#include "testutil.h"
#include "io/h5.h"

static char dir[512];
static char *path_(const char *name) {
    static char buf[8][600];
    static int k = 0;
    k = (k + 1) % 8;
    snprintf(buf[k], sizeof buf[k], "%s/%s", dir, name);
    return buf[k];
}

enum { N = 7 };

/* X (N, 2, 3) holding v = (i*7) % 23 in `xft`, y (N,) labels i % 3 in `yft`. */
static void write_basic_(const char *p, hid_t xft, hid_t yft, int layout, const char *xn,
                         const char *yn) {
    double x[N * 6];
    int64_t y[N];
    for (int i = 0; i < N * 6; ++i) x[i] = (i * 7) % 23;
    for (int i = 0; i < N; ++i) y[i] = i % 3;
    hid_t f = tw_create(p);
    hsize_t xd[3] = {N, 2, 3}, yd[1] = {N};
    tw_dataset(f, xn, xft, H5T_NATIVE_DOUBLE, 3, xd, x, layout);
    tw_dataset(f, yn, yft, H5T_NATIVE_INT64, 1, yd, y, layout);
    H5Fclose(f);
}

static void test_dtypes_(void) {
    const hid_t xts[] = {H5T_STD_U8LE, H5T_IEEE_F32LE, H5T_IEEE_F64LE, H5T_IEEE_F32BE};
    const char *xnames[] = {"uint8", "float32", "float64", "float32"};
    const hid_t yts[] = {H5T_STD_I8LE,  H5T_STD_I16LE, H5T_STD_I32LE, H5T_STD_I64LE, H5T_STD_U8LE,
                         H5T_STD_U16LE, H5T_STD_U32LE, H5T_STD_U64LE, H5T_STD_I32BE};
    const int64_t ids[] = {5, 0, 6, 2, 2, 3};
    const int nid = 6;
    for (int xi = 0; xi < 4; ++xi)
        for (int yi = 0; yi < 9; ++yi)
            for (int layout = 0; layout < 3; ++layout) {
                const char *p = path_("dt.h5");
                const bool grouped = (xi + yi + layout) % 2;
                const char *xn = grouped ? "data/inputs" : "X", *yn = grouped ? "data/lab" : "y";
                write_basic_(p, xts[xi], yts[yi], layout, xn, yn);
                const bool scaled = yi % 2;
                if (scaled) {
                    hid_t f = H5Fopen(p, H5F_ACC_RDWR, H5P_DEFAULT);
                    tw_attr(f, xn, "scale", H5T_IEEE_F32LE, 0.5);
                    tw_attr(f, xn, "offset", H5T_STD_I32LE, -1);
                    tw_attr(f, yn, "classes", H5T_STD_U16LE, 5);
                    H5Fclose(f);
                }
                sp_dataset *ds;
                sp_status st = sp_dataset_open(&ds, p, grouped ? xn : NULL, grouped ? yn : NULL);
                CHECK(st == SP_OK, "x %d y %d layout %d: %s", xi, yi, layout, sp_last_error());
                if (st != SP_OK) continue;
                const sp_dataset_info *in = sp_dataset_get_info(ds);
                CHECK(in->n == N && in->sample_rank == 2 && in->sample_shape[0] == 2 &&
                          in->sample_shape[1] == 3 && in->sample_size == 6,
                      "shape");
                CHECK(!strcmp(sp_x_dtype_name(in->x_dtype), xnames[xi]), "dtype %s",
                      sp_x_dtype_name(in->x_dtype));
                CHECK(!in->regression && in->classes == (scaled ? 5 : 3), "classes %lld",
                      (long long)in->classes);
                float x[6 * 6];
                int32_t lab[6];
                st = sp_dataset_read(ds, ids, nid, x, lab, NULL);
                CHECK(st == SP_OK, "read: %s", sp_last_error());
                int bad = 0;
                for (int k = 0; k < nid; ++k) {
                    if (lab[k] != ids[k] % 3) ++bad;
                    for (int e = 0; e < 6; ++e) {
                        double v = (double)((ids[k] * 6 + e) * 7 % 23);
                        float want = scaled ? (float)(v * 0.5 - 1.0) : (float)v;
                        if (x[k * 6 + e] != want) ++bad;
                    }
                }
                CHECK(bad == 0, "x %d y %d layout %d: %d wrong values", xi, yi, layout, bad);
                const int64_t ok_shape[2] = {2, 3}, bad_shape[1] = {6};
                CHECK(sp_dataset_check_input_shape(ds, ok_shape, 2) == SP_OK, "shape ok");
                sp_dataset_close(ds);
                (void)bad_shape;
            }
}

static void test_regression_(void) {
    const hid_t yts[] = {H5T_IEEE_F32LE, H5T_IEEE_F64LE};
    for (int yi = 0; yi < 2; ++yi)
        for (int t = 0; t < 2; ++t) {
            const char *p = path_("reg.h5");
            hid_t f = tw_create(p);
            float x[N * 2], y[N * 3];
            for (int i = 0; i < N * 2; ++i) x[i] = (float)i;
            for (int i = 0; i < N * 3; ++i) y[i] = 0.25f * (float)i;
            hsize_t xd[2] = {N, 2}, yd[2] = {N, 3};
            tw_dataset(f, "X", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 2, xd, x, TW_GZIP);
            tw_dataset(f, "y", yts[yi], H5T_NATIVE_FLOAT, t ? 2 : 1, yd, y, TW_CHUNKED);
            H5Fclose(f);
            sp_dataset *ds;
            sp_status st = sp_dataset_open(&ds, p, NULL, NULL);
            CHECK(st == SP_OK, "%s", sp_last_error());
            if (st != SP_OK) continue;
            const sp_dataset_info *in = sp_dataset_get_info(ds);
            const int64_t T = t ? 3 : 1;
            CHECK(in->regression && in->targets == T, "T %lld", (long long)in->targets);
            int64_t ids[2] = {6, 1};
            float xr[4], tr[6];
            int32_t lab[2];
            CHECK(sp_dataset_read(ds, ids, 2, xr, NULL, tr) == SP_OK, "%s", sp_last_error());
            CHECK(xr[0] == 12 && xr[1] == 13 && xr[2] == 2 && xr[3] == 3, "x");
            CHECK(tr[0] == 0.25f * (float)(6 * T) && tr[T] == 0.25f * (float)T, "targets");
            CHECK(sp_dataset_read(ds, ids, 2, xr, lab, NULL) == SP_ERR_ARG, "labels of regression");
            sp_dataset_close(ds);
        }
}

/* Open must fail with `code` and a message containing every one of the strings. */
static void expect_open_fail_(const char *p, const char *xn, const char *yn, sp_status code,
                              const char *a, const char *b, const char *c) {
    sp_dataset *ds = (sp_dataset *)1;
    sp_status st = sp_dataset_open(&ds, p, xn, yn);
    const char *m = sp_last_error();
    CHECK(st == code, "%s: status %s, want %s (%s)", p, sp_status_name(st), sp_status_name(code),
          m);
    CHECK(ds == NULL, "out is NULL on failure");
    CHECK(strstr(m, p) != NULL, "message names the file: %s", m);
    CHECK(!a || strstr(m, a), "message has '%s': %s", a, m);
    CHECK(!b || strstr(m, b), "message has '%s': %s", b, m);
    CHECK(!c || strstr(m, c), "message has '%s': %s", c, m);
    CHECK(strchr(m, '\n') == NULL, "one line");
    if (st == SP_OK) sp_dataset_close(ds);
}

static void test_validation_(void) {
    float x[N * 2] = {0};
    int32_t y[N] = {0};
    hsize_t xd[2] = {N, 2}, yd[2] = {N, 2};
    hid_t f;
    const char *p;

    expect_open_fail_(path_("missing.h5"), NULL, NULL, SP_ERR_IO, "'X'", "No such file", NULL);

    p = path_("text.h5");
    FILE *tf = fopen(p, "w");
    fprintf(tf, "this is not an HDF5 file, it is a longer line of plain text\n");
    fclose(tf);
    expect_open_fail_(p, NULL, NULL, SP_ERR_DATA, "'X'", "not an HDF5 file", NULL);

    /* The signature, then garbage: HDF5 itself refuses it. */
    p = path_("damaged.h5");
    tf = fopen(p, "wb");
    fwrite("\x89HDF\r\n\x1a\n", 1, 8, tf);
    for (int i = 0; i < 200; ++i) fputc(i * 37, tf);
    fclose(tf);
    expect_open_fail_(p, NULL, NULL, SP_ERR_DATA, "'X'", "cannot open as HDF5", NULL);

    p = path_("noy.h5");
    f = tw_create(p);
    tw_dataset(f, "X", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 2, xd, x, 0);
    H5Fclose(f);
    expect_open_fail_(p, NULL, NULL, SP_ERR_DATA, "dataset 'y'", "not found", NULL);
    expect_open_fail_(p, "grp/X", NULL, SP_ERR_DATA, "dataset 'grp/X'", "not found", NULL);

    p = path_("group.h5");
    f = tw_create(p);
    tw_dataset(f, "X/inner", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 2, xd, x, 0);
    tw_dataset(f, "y", H5T_STD_I32LE, H5T_NATIVE_INT32, 1, yd, y, 0);
    H5Fclose(f);
    expect_open_fail_(p, NULL, NULL, SP_ERR_DATA, "dataset 'X'", "is a group", NULL);

    p = path_("rank1.h5");
    f = tw_create(p);
    tw_dataset(f, "X", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 1, xd, x, 0);
    tw_dataset(f, "y", H5T_STD_I32LE, H5T_NATIVE_INT32, 1, yd, y, 0);
    H5Fclose(f);
    expect_open_fail_(p, NULL, NULL, SP_ERR_DATA, "dataset 'X'", "wrong rank 1", NULL);

    p = path_("rank6.h5");
    f = tw_create(p);
    hsize_t d6[6] = {N, 1, 1, 1, 1, 2};
    tw_dataset(f, "X", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 6, d6, x, 0);
    tw_dataset(f, "y", H5T_STD_I32LE, H5T_NATIVE_INT32, 1, yd, y, 0);
    H5Fclose(f);
    expect_open_fail_(p, NULL, NULL, SP_ERR_DATA, "dataset 'X'", "wrong rank", NULL);

    p = path_("scalar.h5");
    f = tw_create(p);
    {
        hid_t s = H5Screate(H5S_SCALAR);
        hid_t d = H5Dcreate2(f, "X", H5T_IEEE_F32LE, s, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        H5Dclose(d);
        H5Sclose(s);
    }
    tw_dataset(f, "y", H5T_STD_I32LE, H5T_NATIVE_INT32, 1, yd, y, 0);
    H5Fclose(f);
    expect_open_fail_(p, NULL, NULL, SP_ERR_DATA, "dataset 'X'", "scalar", "wrong rank");

    p = path_("y2.h5");
    f = tw_create(p);
    tw_dataset(f, "X", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 2, xd, x, 0);
    tw_dataset(f, "y", H5T_STD_I32LE, H5T_NATIVE_INT32, 2, yd, NULL, 0);
    H5Fclose(f);
    expect_open_fail_(p, NULL, NULL, SP_ERR_DATA, "dataset 'y'", "wrong rank 2", NULL);

    p = path_("int16.h5");
    f = tw_create(p);
    tw_dataset(f, "X", H5T_STD_I16LE, H5T_NATIVE_FLOAT, 2, xd, x, 0);
    tw_dataset(f, "y", H5T_STD_I32LE, H5T_NATIVE_INT32, 1, yd, y, 0);
    H5Fclose(f);
    expect_open_fail_(p, NULL, NULL, SP_ERR_DATA, "dataset 'X'", "unsupported dtype int16", NULL);

    p = path_("string.h5");
    f = tw_create(p);
    {
        hid_t st = H5Tcopy(H5T_C_S1);
        H5Tset_size(st, 8);
        tw_dataset(f, "X", st, st, 2, xd, NULL, 0);
        tw_dataset(f, "y", st, st, 1, yd, NULL, 0);
        H5Tclose(st);
    }
    H5Fclose(f);
    expect_open_fail_(p, NULL, NULL, SP_ERR_DATA, "dataset 'X'", "unsupported dtype string", NULL);

    p = path_("compound.h5");
    f = tw_create(p);
    {
        hid_t ct = H5Tcreate(H5T_COMPOUND, 8);
        H5Tinsert(ct, "a", 0, H5T_NATIVE_INT);
        H5Tinsert(ct, "b", 4, H5T_NATIVE_FLOAT);
        tw_dataset(f, "X", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 2, xd, x, 0);
        tw_dataset(f, "y", ct, ct, 1, yd, NULL, 0);
        H5Tclose(ct);
    }
    H5Fclose(f);
    expect_open_fail_(p, NULL, NULL, SP_ERR_DATA, "dataset 'y'", "unsupported dtype compound",
                      NULL);

    p = path_("nmismatch.h5");
    f = tw_create(p);
    {
        hsize_t yd6[1] = {N - 1};
        tw_dataset(f, "X", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 2, xd, x, 0);
        tw_dataset(f, "y", H5T_STD_I32LE, H5T_NATIVE_INT32, 1, yd6, y, 0);
    }
    H5Fclose(f);
    expect_open_fail_(p, NULL, NULL, SP_ERR_DATA, "'X' and 'y'", "disagree on N", "7");

    p = path_("empty.h5");
    f = tw_create(p);
    {
        hsize_t x0[2] = {0, 2}, y0[1] = {0};
        tw_dataset(f, "X", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 2, x0, NULL, 0);
        tw_dataset(f, "y", H5T_STD_I32LE, H5T_NATIVE_INT32, 1, y0, NULL, 0);
    }
    H5Fclose(f);
    expect_open_fail_(p, NULL, NULL, SP_ERR_DATA, "dataset 'X'", "N = 0", NULL);

    p = path_("neg.h5");
    f = tw_create(p);
    {
        int32_t yn[N] = {0, 1, 2, -1, 0, 1, 2};
        tw_dataset(f, "X", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 2, xd, x, 0);
        tw_dataset(f, "y", H5T_STD_I8LE, H5T_NATIVE_INT32, 1, yd, yn, TW_GZIP);
    }
    H5Fclose(f);
    expect_open_fail_(p, NULL, NULL, SP_ERR_DATA, "dataset 'y'", "row 3", "negative label -1");

    p = path_("range.h5");
    f = tw_create(p);
    {
        int32_t yr[N] = {0, 1, 2, 3, 0, 1, 9};
        tw_dataset(f, "X", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 2, xd, x, 0);
        tw_dataset(f, "y", H5T_STD_U8LE, H5T_NATIVE_INT32, 1, yd, yr, 0);
        tw_attr(f, "y", "classes", H5T_STD_I64LE, 4);
    }
    H5Fclose(f);
    expect_open_fail_(p, NULL, NULL, SP_ERR_DATA, "dataset 'y'", "row 6",
                      "label 9 out of range [0, 4)");

    p = path_("nantarget.h5");
    f = tw_create(p);
    {
        float yt[N] = {0, 1, 2, 3, NAN, 1, 9};
        tw_dataset(f, "X", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 2, xd, x, 0);
        tw_dataset(f, "y", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 1, yd, yt, 0);
    }
    H5Fclose(f);
    expect_open_fail_(p, NULL, NULL, SP_ERR_NUMERIC, "dataset 'y'", "row 4", "NaN");

    /* A shape whose byte size overflows size_t: HDF5 accepts the extent (no data is written). */
    p = path_("huge.h5");
    f = tw_create(p);
    {
        hsize_t hd[3] = {(hsize_t)1 << 16, (hsize_t)1 << 24, (hsize_t)1 << 23};
        hsize_t yh[1] = {(hsize_t)1 << 16};
        hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
        hsize_t ch[3] = {1, 1, 1024};
        H5Pset_chunk(dcpl, 3, ch);
        hid_t s = H5Screate_simple(3, hd, NULL);
        hid_t d = H5Dcreate2(f, "X", H5T_IEEE_F32LE, s, H5P_DEFAULT, dcpl, H5P_DEFAULT);
        CHECK(d >= 0, "huge dataset created");
        if (d >= 0) H5Dclose(d);
        H5Sclose(s);
        H5Pclose(dcpl);
        tw_dataset(f, "y", H5T_STD_I32LE, H5T_NATIVE_INT32, 1, yh, NULL, TW_CHUNKED);
    }
    H5Fclose(f);
    expect_open_fail_(p, NULL, NULL, SP_ERR_DATA, "dataset 'X'", "overflows size_t", NULL);

    /* Shape mismatch with the model input. */
    p = path_("ok.h5");
    write_basic_(p, H5T_IEEE_F32LE, H5T_STD_I32LE, 0, "X", "y");
    sp_dataset *ds;
    CHECK(sp_dataset_open(&ds, p, NULL, NULL) == SP_OK, "%s", sp_last_error());
    const int64_t want[1] = {784};
    sp_status st = sp_dataset_check_input_shape(ds, want, 1);
    CHECK(st == SP_ERR_DATA, "shape mismatch");
    const char *m = sp_last_error();
    CHECK(strstr(m, p) && strstr(m, "'X'") && strstr(m, "(2,3)") && strstr(m, "(784)") &&
              strstr(m, "does not match"),
          "%s", m);
    const int64_t bad_id[1] = {N};
    float xx[6];
    CHECK(sp_dataset_read(ds, bad_id, 1, xx, NULL, NULL) == SP_ERR_ARG, "id out of range");
    char line[512];
    sp_dataset_describe(ds, line, sizeof line);
    CHECK(strstr(line, "N=7") && strstr(line, "(2,3)") && strstr(line, "3 classes"), "%s", line);
    sp_dataset_close(ds);
}

/* NaN / Inf / float32 overflow in X is found while reading, with the row index. */
static void test_nonfinite_(void) {
    const double bads[3] = {NAN, INFINITY, 1e300};
    const char *words[3] = {"NaN", "Inf", "Inf"};
    for (int k = 0; k < 3; ++k) {
        const char *p = path_("nan.h5");
        double x[N * 2];
        int32_t y[N] = {0};
        for (int i = 0; i < N * 2; ++i) x[i] = i;
        x[4 * 2 + 1] = bads[k];
        hsize_t xd[2] = {N, 2}, yd[1] = {N};
        hid_t f = tw_create(p);
        tw_dataset(f, "X", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 2, xd, x, TW_GZIP);
        tw_dataset(f, "y", H5T_STD_I32LE, H5T_NATIVE_INT32, 1, yd, y, 0);
        H5Fclose(f);
        sp_dataset *ds;
        CHECK(sp_dataset_open(&ds, p, NULL, NULL) == SP_OK, "open is lazy about X: %s",
              sp_last_error());
        int64_t ok_ids[3] = {0, 6, 3}, bad_ids[3] = {0, 4, 5};
        float out[6];
        CHECK(sp_dataset_read(ds, ok_ids, 3, out, NULL, NULL) == SP_OK, "clean rows");
        sp_status st = sp_dataset_read(ds, bad_ids, 3, out, NULL, NULL);
        const char *m = sp_last_error();
        CHECK(st == SP_ERR_NUMERIC, "status %d", (int)st);
        CHECK(strstr(m, p) && strstr(m, "'X'") && strstr(m, "row 4") && strstr(m, words[k]), "%s",
              m);
        sp_dataset_close(ds);
    }
}

int main(void) {
    snprintf(dir, sizeof dir, "%s", sp_test_tmpdir("data_read"));
    test_dtypes_();
    test_regression_();
    test_validation_();
    test_nonfinite_();
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "cannot remove %s\n", dir);
    return sp_test_summary("data_read");
}
