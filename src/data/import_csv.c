/* CSV of numbers -> data file. Comma-separated; fields may be padded with spaces or quoted. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "data/tools.h"
#include "util/args.h"
#include "io/h5.h"
#include "util/arith.h"
#include "util/mem.h"
#include "util/status.h"

#define MAX_FIELDS_ 1000000

/* Split `line` in place at commas; trims blanks, CR/LF and one pair of double quotes. */
static int split_(char *line, char ***fields, int *cap) {
    int n = 0;
    char *p = line;
    for (;;) {
        char *end = strchr(p, ',');
        if (end) *end = '\0';
        char *s = p;
        while (*s == ' ' || *s == '\t') ++s;
        size_t len = strlen(s);
        while (len && (s[len - 1] == ' ' || s[len - 1] == '\t' || s[len - 1] == '\r' ||
                       s[len - 1] == '\n'))
            s[--len] = '\0';
        if (len >= 2 && s[0] == '"' && s[len - 1] == '"') {
            s[len - 1] = '\0';
            ++s;
        }
        if (n == *cap) {
            int nc = *cap ? *cap * 2 : 64;
            char **nf = realloc(*fields, (size_t)nc * sizeof(char *));
            if (!nf) return -1;
            *fields = nf;
            *cap = nc;
        }
        (*fields)[n++] = s;
        if (!end || n >= MAX_FIELDS_) break;
        p = end + 1;
    }
    return n;
}

static bool blank_(const char *s) {
    for (; *s; ++s)
        if (*s != ' ' && *s != '\t' && *s != '\r' && *s != '\n') return false;
    return true;
}

typedef struct {
    void *p;
    size_t len, cap, elem;
} vec_;

/* Grows by doubling, within the memory limit (util/mem.h): false when out of memory. */
static bool vec_push_(vec_ *v, const void *x) {
    if (v->len == v->cap) {
        size_t nc = v->cap ? v->cap * 2 : 1024, bytes;
        if (!sp_size_mul(nc, v->elem, &bytes) || bytes > sp_mem_limit()) return false;
        void *np = realloc(v->p, bytes);
        if (!np) return false;
        v->p = np;
        v->cap = nc;
    }
    memcpy((char *)v->p + v->len * v->elem, x, v->elem);
    v->len++;
    return true;
}

static sp_status nomem_(const char *in, int64_t lineno) {
    return SP_FAIL(SP_ERR_NOMEM,
                   "%s: line %lld: out of memory, or the data exceed the memory limit of %.1f MiB "
                   "(--max-memory-mb)",
                   in, (long long)lineno, (double)sp_mem_limit() / 1048576.0);
}

sp_status sp_import_csv(const char *in, const char *label_column, bool regression, const char *out,
                        int64_t *n_out, int64_t *features_out) {
    FILE *f = fopen(in, "r");
    if (!f) return SP_FAIL(SP_ERR_IO, "%s: cannot open CSV file (%s)", in, strerror(errno));
    char *line = NULL, **fields = NULL, **names = NULL, *header = NULL;
    size_t lcap = 0;
    int fcap = 0, ncap = 0, nf = -1, label = -1;
    int64_t lineno = 0, maxl = -1;
    vec_ xs = {NULL, 0, 0, sizeof(float)}, ys = {NULL, 0, 0, regression ? sizeof(float) : 4};
    sp_status st = SP_OK;
    ssize_t got;
    while (st == SP_OK && (got = getline(&line, &lcap, f)) >= 0) {
        ++lineno;
        if (blank_(line)) continue;
        if (nf < 0) {
            /* The first line: a header if any field is not a number. */
            free(header);
            header = strdup(line);
            if (!header) {
                st = SP_FAIL(SP_ERR_NOMEM, "%s: out of memory", in);
                break;
            }
            int k = split_(header, &names, &ncap);
            if (k < 0) {
                st = SP_FAIL(SP_ERR_NOMEM, "%s: out of memory", in);
                break;
            }
            nf = k;
            if (nf < 2) {
                st = SP_FAIL(SP_ERR_DATA,
                             "%s: line %lld: only %d column (need a label column and at least one "
                             "feature)",
                             in, (long long)lineno, nf);
                break;
            }
            bool is_header = false;
            for (int i = 0; i < nf; ++i) {
                double v;
                if (!sp_parse_double(names[i], &v)) is_header = true;
            }
            int64_t idx;
            for (int i = 0; is_header && i < nf && label < 0; ++i)
                if (!strcmp(names[i], label_column)) label = i;
            if (label < 0) {
                if (!sp_parse_int64(label_column, &idx)) {
                    st = SP_FAIL(SP_ERR_ARG,
                                 is_header ? "%s: label column '%s' is not a column name of the "
                                             "header (line %lld) nor a column index"
                                           : "%s: label column '%s': the file has no header line "
                                             "(line %lld is numeric), give a 0-based column index",
                                 in, label_column, (long long)lineno);
                    break;
                }
                if (idx < 0 || idx >= nf) {
                    st = SP_FAIL(SP_ERR_ARG,
                                 "%s: label column index %lld is out of range [0, %d) (line %lld "
                                 "has %d columns)",
                                 in, (long long)idx, nf, (long long)lineno, nf);
                    break;
                }
                label = (int)idx;
            }
            if (is_header) continue;
            free(names);
            names = NULL;
            ncap = 0;
        }
        int k = split_(line, &fields, &fcap);
        if (k < 0) {
            st = SP_FAIL(SP_ERR_NOMEM, "%s: out of memory", in);
            break;
        }
        if (k != nf) {
            st = SP_FAIL(SP_ERR_DATA, "%s: line %lld: expected %d fields, found %d", in,
                         (long long)lineno, nf, k);
            break;
        }
        for (int i = 0; i < nf && st == SP_OK; ++i) {
            const char *s = fields[i];
            char cname[96] = "";
            if (names) snprintf(cname, sizeof cname, " ('%s')", names[i]);
            double v;
            if (!*s) {
                st = SP_FAIL(SP_ERR_DATA, "%s: line %lld: column %d%s: empty field", in,
                             (long long)lineno, i, cname);
            } else if (!sp_parse_double(s, &v)) {
                st = SP_FAIL(SP_ERR_DATA, "%s: line %lld: column %d%s: '%.40s' is not a number", in,
                             (long long)lineno, i, cname, s);
            } else if (!isfinite(v) || fabs(v) > 3.4028234663852886e38) {
                st = SP_FAIL(SP_ERR_DATA,
                             "%s: line %lld: column %d%s: '%.40s' is not a finite float32 value",
                             in, (long long)lineno, i, cname, s);
            } else if (i == label && !regression) {
                if (v < 0 || v != floor(v) || v >= 2147483647.0) {
                    st = SP_FAIL(SP_ERR_DATA,
                                 "%s: line %lld: column %d%s: label '%.40s' is not a non-negative "
                                 "integer (use --regression for real-valued targets)",
                                 in, (long long)lineno, i, cname, s);
                } else {
                    int32_t l = (int32_t)v;
                    if (l > maxl) maxl = l;
                    if (!vec_push_(&ys, &l)) st = nomem_(in, lineno);
                }
            } else {
                float fv = (float)v;
                if (!vec_push_(i == label ? &ys : &xs, &fv)) st = nomem_(in, lineno);
            }
        }
    }
    if (st == SP_OK && ferror(f)) st = SP_FAIL(SP_ERR_IO, "%s: read error", in);
    fclose(f);
    free(line);
    free(fields);
    free(names);
    free(header);
    const int64_t n = (int64_t)ys.len;
    if (st == SP_OK && n == 0)
        st = SP_FAIL(SP_ERR_DATA, "%s: no data rows (N = 0)%s", in,
                     nf < 0 ? ": the file is empty" : "");
    if (st == SP_OK) {
        sp_h5_lock();
        sp_h5_out o;
        st = sp_h5_out_create(&o, out);
        if (st == SP_OK) {
            hsize_t xd[2] = {(hsize_t)n, (hsize_t)(nf - 1)}, yd[2] = {(hsize_t)n, 1};
            hid_t dx = -1, dy = -1;
            st = sp_h5_create_rows(o.file, "X", H5T_IEEE_F32LE, 2, xd, &dx, out);
            if (st == SP_OK) st = sp_h5_write_rows(dx, H5T_NATIVE_FLOAT, 0, n, xs.p, out, "X");
            if (st == SP_OK)
                st = sp_h5_create_rows(o.file, "y", regression ? H5T_IEEE_F32LE : H5T_STD_I32LE,
                                       regression ? 2 : 1, yd, &dy, out);
            if (st == SP_OK)
                st = sp_h5_write_rows(dy, regression ? H5T_NATIVE_FLOAT : H5T_NATIVE_INT32, 0, n,
                                      ys.p, out, "y");
            if (st == SP_OK && !regression) st = sp_h5_attr_write_int64(dy, "classes", maxl + 1);
            if (dx >= 0) H5Dclose(dx);
            if (dy >= 0) H5Dclose(dy);
            if (st == SP_OK)
                st = sp_h5_out_commit(&o);
            else
                sp_h5_out_abort(&o);
        }
        sp_h5_unlock();
    }
    free(xs.p);
    free(ys.p);
    if (st == SP_OK) {
        if (n_out) *n_out = n;
        if (features_out) *features_out = nf - 1;
    }
    return st;
}
