/* A listing of an HDF5 file's groups and datasets, for `shardprop inspect`. */
#include <stdlib.h>
#include <string.h>

#include "data/tools.h"
#include "io/h5.h"
#include "util/status.h"

void sp_fprint_escaped(FILE *f, const char *s, size_t len, size_t max) {
    fputc('"', f);
    size_t i = 0;
    for (; i < len && i < max; ++i) {
        const unsigned char c = (unsigned char)s[i];
        if (c == '\n')
            fputs("\\n", f);
        else if (c == '\t')
            fputs("\\t", f);
        else if (c == '"' || c == '\\')
            fprintf(f, "\\%c", c);
        else if (c < 0x20 || c == 0x7f)
            fprintf(f, "\\x%02x", c);
        else
            fputc(c, f);
    }
    fputs(i < len ? "\"..." : "\"", f);
}

static void print_attr_value_(FILE *f, hid_t a) {
    hid_t t = H5Aget_type(a), s = H5Aget_space(a);
    H5T_class_t c = H5Tget_class(t);
    hssize_t np = H5Sget_simple_extent_npoints(s);
    if ((c == H5T_INTEGER || c == H5T_FLOAT) && np >= 1 && np <= 16) {
        double v[16];
        if (H5Aread(a, H5T_NATIVE_DOUBLE, v) >= 0) {
            for (hssize_t i = 0; i < np; ++i) fprintf(f, "%s%.9g", i ? ", " : "", v[i]);
            fprintf(f, " (%s)", sp_h5_type_name(t));
        }
    } else if (c == H5T_STRING && np == 1) {
        if (H5Tis_variable_str(t) > 0) {
            /* not read: libhdf5 may return such a string unterminated from a damaged file */
            fprintf(f, "(a variable-length string)");
        } else {
            size_t len = H5Tget_size(t);
            char *str = calloc(1, len + 1);
            if (str && H5Aread(a, t, str) >= 0) sp_fprint_escaped(f, str, strlen(str), 200);
            free(str);
        }
    } else {
        fprintf(f, "<%s, %lld values>", sp_h5_type_name(t), (long long)np);
    }
    H5Sclose(s);
    H5Tclose(t);
}

static herr_t attr_cb_(hid_t loc, const char *name, const H5A_info_t *info, void *op) {
    (void)info;
    FILE *f = op;
    hid_t a = H5Aopen(loc, name, H5P_DEFAULT);
    if (a < 0) return 0;
    fprintf(f, "      @%s = ", name);
    print_attr_value_(f, a);
    fputc('\n', f);
    H5Aclose(a);
    return 0;
}

static void print_dims_(FILE *f, const hsize_t *d, int r) {
    fputc('(', f);
    for (int i = 0; i < r; ++i) fprintf(f, "%s%llu", i ? "," : "", (unsigned long long)d[i]);
    fputc(')', f);
}

static herr_t link_cb_(hid_t g, const char *name, const H5L_info_t *info, void *op) {
    (void)info;
    FILE *f = op;
    hid_t o = H5Oopen(g, name, H5P_DEFAULT);
    if (o < 0) {
        fprintf(f, "  /%s  (cannot open: dangling or external link)\n", name);
        return 0;
    }
    H5I_type_t it = H5Iget_type(o);
    if (it == H5I_GROUP) {
        fprintf(f, "  /%s/  group\n", name);
    } else if (it == H5I_DATASET) {
        hid_t t = H5Dget_type(o), s = H5Dget_space(o), p = H5Dget_create_plist(o);
        int r = H5Sget_simple_extent_ndims(s);
        hsize_t d[32];
        if (r > 0 && r <= 32) H5Sget_simple_extent_dims(s, d, NULL);
        fprintf(f, "  /%s  dataset %s ", name, sp_h5_type_name(t));
        if (r > 0 && r <= 32)
            print_dims_(f, d, r);
        else
            fprintf(f, "scalar");
        if (H5Pget_layout(p) == H5D_CHUNKED) {
            hsize_t c[32];
            int cr = H5Pget_chunk(p, 32, c);
            fprintf(f, " chunks ");
            print_dims_(f, c, cr);
        }
        int nf = H5Pget_nfilters(p);
        for (int i = 0; i < nf; ++i) {
            unsigned flags, cd[8];
            size_t ncd = 8;
            char fname[64] = "";
            H5Z_filter_t id =
                H5Pget_filter2(p, (unsigned)i, &flags, &ncd, cd, sizeof fname, fname, NULL);
            fprintf(f, "%s%s", i ? "+" : " filters ",
                    id == H5Z_FILTER_DEFLATE   ? "gzip"
                    : id == H5Z_FILTER_SHUFFLE ? "shuffle"
                    : fname[0]                 ? fname
                                               : "?");
            if (id == H5Z_FILTER_DEFLATE && ncd >= 1) fprintf(f, "(%u)", cd[0]);
        }
        fputc('\n', f);
        H5Pclose(p);
        H5Sclose(s);
        H5Tclose(t);
    } else {
        fprintf(f, "  /%s  (named datatype)\n", name);
    }
    hsize_t idx = 0;
    H5Aiterate2(o, H5_INDEX_NAME, H5_ITER_INC, &idx, attr_cb_, f);
    H5Oclose(o);
    return 0;
}

sp_status sp_h5_describe_file(const char *path, FILE *f, bool *has_model_group) {
    *has_model_group = false;
    SP_CHECK(sp_h5_check_file(path, "inspection"));
    sp_h5_lock();
    hid_t file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (file < 0) {
        sp_h5_unlock();
        return SP_FAIL(SP_ERR_DATA, "%s: cannot open as HDF5 (damaged or truncated file?)", path);
    }
    if (H5Lexists(file, "model", H5P_DEFAULT) > 0) {
        hid_t o = H5Oopen(file, "model", H5P_DEFAULT);
        *has_model_group = o >= 0 && H5Iget_type(o) == H5I_GROUP;
        if (o >= 0) H5Oclose(o);
    }
    fprintf(f, "%s:\n", path);
    H5Lvisit(file, H5_INDEX_NAME, H5_ITER_INC, link_cb_, f);
    H5Fclose(file);
    sp_h5_unlock();
    return SP_OK;
}
