#include "train_util.h"

#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

const char *sp_test_bin(void) {
    const char *b = getenv("SHARDPROP_BIN");
    if (!b || !*b) {
        fprintf(stderr, "SHARDPROP_BIN is not set (run the test through ctest)\n");
        exit(2);
    }
    return b;
}

/* The subcommands that start MPI. */
static int mpi_command_(const char *args) {
    return !strncmp(args, "train", 5) || !strncmp(args, "eval", 4) || !strncmp(args, "predict", 7);
}

int sp_test_shardprop(int np, int threads, const char *args, char **out) {
    const char *mpiexec = getenv("MPIEXEC"), *pre = getenv("MPIEXEC_PREFLAGS");
    char cmd[8192];
    if (np > 0)
        snprintf(cmd, sizeof cmd, "OMP_NUM_THREADS=%d %s -n %d --bind-to none %s %s %s 2>&1",
                 threads, mpiexec ? mpiexec : "mpiexec", np, pre ? pre : "", sp_test_bin(), args);
    else
        /* LeakSanitizer's tracer crashes in an Open MPI singleton (its helper threads); leaks
         * of the same code are checked in the runs under mpiexec */
        snprintf(cmd, sizeof cmd, "OMP_NUM_THREADS=%d %s%s %s 2>&1", threads,
                 mpi_command_(args) ? "ASAN_OPTIONS=detect_leaks=0 " : "", sp_test_bin(), args);
    return sp_test_run(cmd, out);
}

float *sp_test_read_params(const char *path, size_t *n) {
    *n = 0;
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0) return NULL;
    hid_t g = H5Gopen2(f, "/model/params", H5P_DEFAULT);
    if (g < 0) {
        H5Fclose(f);
        return NULL;
    }
    H5G_info_t gi;
    H5Gget_info(g, &gi);
    const int nlayers = (int)gi.nlinks;
    float *all = NULL;
    size_t used = 0;
    for (int i = 0, found = 0; found < nlayers && i < 100000; ++i) {
        char name[64];
        snprintf(name, sizeof name, "%d", i);
        if (H5Lexists(g, name, H5P_DEFAULT) <= 0) continue;
        ++found;
        for (int k = 0; k < 2; ++k) {
            snprintf(name, sizeof name, "%d/%s", i, k ? "bias" : "weight");
            hid_t d = H5Dopen2(g, name, H5P_DEFAULT);
            hid_t s = H5Dget_space(d);
            hssize_t cnt = H5Sget_simple_extent_npoints(s);
            all = realloc(all, sizeof(float) * (used + (size_t)cnt));
            H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, all + used);
            used += (size_t)cnt;
            H5Sclose(s);
            H5Dclose(d);
        }
    }
    H5Gclose(g);
    H5Fclose(f);
    *n = used;
    return all;
}

int sp_test_same_params(const char *a, const char *b) {
    size_t na = 0, nb = 0;
    float *pa = sp_test_read_params(a, &na), *pb = sp_test_read_params(b, &nb);
    const int same = pa && pb && na == nb && na && !memcmp(pa, pb, na * sizeof(float));
    free(pa), free(pb);
    return same;
}

typedef struct tensors_ {
    sp_test_tensor *t;
    int n, cap, bad;
} tensors_;

/* H5Lvisit: each dataset appended to the list (groups and attributes skipped). */
static herr_t tensor_cb_(hid_t g, const char *name, const H5L_info_t *info, void *user) {
    (void)info;
    tensors_ *ts = user;
    hid_t o = H5Oopen(g, name, H5P_DEFAULT);
    if (o < 0) {
        ts->bad++;
        return -1;
    }
    int rc = 0;
    if (H5Iget_type(o) == H5I_DATASET && ts->n == ts->cap) {
        const int cap = ts->cap ? 2 * ts->cap : 32;
        sp_test_tensor *grown = realloc(ts->t, sizeof *grown * (size_t)cap);
        if (grown)
            ts->t = grown, ts->cap = cap;
        else
            rc = -1;
    }
    if (H5Iget_type(o) == H5I_DATASET && rc == 0) {
        sp_test_tensor *t = &ts->t[ts->n];
        memset(t, 0, sizeof *t);
        snprintf(t->name, sizeof t->name, "%s", name);
        hid_t type = H5Dget_type(o), s = H5Dget_space(o);
        const H5T_class_t cls = H5Tget_class(type);
        const hssize_t cnt = H5Sget_simple_extent_npoints(s);
        rc = cnt < 0 || (cls != H5T_FLOAT && cls != H5T_INTEGER) ? -1 : 0;
        if (rc == 0) {
            t->is_int = cls == H5T_INTEGER;
            t->n = (size_t)cnt;
            t->data = malloc((t->is_int ? sizeof(int64_t) : sizeof(float)) * (t->n ? t->n : 1));
            if (!t->data || H5Dread(o, t->is_int ? H5T_NATIVE_INT64 : H5T_NATIVE_FLOAT, H5S_ALL,
                                    H5S_ALL, H5P_DEFAULT, t->data) < 0)
                rc = -1;
        }
        if (rc == 0)
            ts->n++;
        else
            free(t->data);
        H5Sclose(s);
        H5Tclose(type);
    }
    H5Oclose(o);
    if (rc) ts->bad++;
    return rc;
}

int sp_test_read_tensors(const char *path, const char *group, sp_test_tensor **t, int *n) {
    *t = NULL;
    *n = 0;
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0) return -1;
    hid_t g = H5Lexists(f, group, H5P_DEFAULT) > 0 ? H5Gopen2(f, group, H5P_DEFAULT) : -1;
    tensors_ ts = {0};
    if (g < 0 || H5Lvisit(g, H5_INDEX_NAME, H5_ITER_INC, tensor_cb_, &ts) < 0) ts.bad++;
    if (g >= 0) H5Gclose(g);
    H5Fclose(f);
    if (ts.bad) {
        sp_test_free_tensors(ts.t, ts.n);
        return -1;
    }
    *t = ts.t;
    *n = ts.n;
    return 0;
}

void sp_test_free_tensors(sp_test_tensor *t, int n) {
    for (int i = 0; i < n; ++i) free(t[i].data);
    free(t);
}

/* train_util.h */
char *sp_test_loss_trace(const char *path) {
    return sp_test_hex_trace(path, "loss_hex");
}

char *sp_test_hex_trace(const char *path, const char *key) {
    FILE *f = fopen(path, "r");
    size_t cap = 1 << 16, used = 0;
    char *out = calloc(cap, 1), line[4096], pat[128];
    snprintf(pat, sizeof pat, "\"%s\": \"", key);
    while (f && out && fgets(line, sizeof line, f)) {
        const char *p = strstr(line, pat);
        if (!p) continue;
        p += strlen(pat);
        const char *e = strchr(p, '"');
        if (!e || used + (size_t)(e - p) + 2 >= cap) break;
        memcpy(out + used, p, (size_t)(e - p));
        used += (size_t)(e - p);
        out[used++] = ' ';
        out[used] = '\0';
    }
    if (f) fclose(f);
    return out;
}

/* ---- comparing model files, reading metrics ---- */

/* 1 when every dataset of /model and /optimizer of the two files (parameters, running
 * statistics, num_batches_tracked, optimizer state) has the same name, type and bits; else 0,
 * and the first difference in why. */
int sp_test_same_model(const char *a, const char *b, char *why, size_t cap) {
    static const char *groups[] = {"/model", "/optimizer"};
    snprintf(why, cap, "identical");
    int same = 1, total = 0;
    for (int k = 0; k < 2 && same; ++k) {
        sp_test_tensor *ta = NULL, *tb = NULL;
        int na = 0, nb = 0;
        if (sp_test_read_tensors(a, groups[k], &ta, &na) ||
            sp_test_read_tensors(b, groups[k], &tb, &nb)) {
            snprintf(why, cap, "cannot read %s of %s or %s", groups[k], a, b);
            same = 0;
        } else if (na != nb) {
            snprintf(why, cap, "%s: %d datasets vs %d", groups[k], na, nb);
            same = 0;
        }
        for (int i = 0; same && i < na; ++i) {
            const size_t bytes = ta[i].n * (ta[i].is_int ? sizeof(int64_t) : sizeof(float));
            if (strcmp(ta[i].name, tb[i].name) || ta[i].is_int != tb[i].is_int ||
                ta[i].n != tb[i].n || memcmp(ta[i].data, tb[i].data, bytes)) {
                snprintf(why, cap, "%s/%s differs (vs %s)", groups[k], ta[i].name, tb[i].name);
                same = 0;
            }
        }
        total += na;
        sp_test_free_tensors(ta, na);
        sp_test_free_tensors(tb, nb);
    }
    if (same && total == 0) snprintf(why, cap, "no datasets");
    return same && total > 0;
}

static int ends_with_(const char *s, const char *tail) {
    const size_t n = strlen(s), t = strlen(tail);
    return n >= t && !strcmp(s + n - t, tail);
}

static float *append_(float *v, size_t *n, const sp_test_tensor *t) {
    float *g = realloc(v, sizeof(float) * (*n + t->n));
    if (!g) return v;
    memcpy(g + *n, t->data, sizeof(float) * t->n);
    *n += t->n;
    return g;
}

sp_test_model_diff sp_test_diff_models(const char *a, const char *b) {
    sp_test_model_diff d = {0, INFINITY, INFINITY, 0, 0, -1};
    sp_test_tensor *ta = NULL, *tb = NULL;
    int na = 0, nb = 0;
    const int ra = sp_test_read_tensors(a, "/model/params", &ta, &na);
    const int rb = sp_test_read_tensors(b, "/model/params", &tb, &nb);
    d.ok = !ra && !rb && na == nb && na > 0;
    for (int i = 0; d.ok && i < na; ++i)
        d.ok =
            !strcmp(ta[i].name, tb[i].name) && ta[i].is_int == tb[i].is_int && ta[i].n == tb[i].n;
    if (d.ok) {
        float *pa = NULL, *pb = NULL, *sa = NULL, *sb = NULL;
        size_t npa = 0, npb = 0, nsa = 0, nsb = 0;
        int ntracked = 0, agree = 1;
        d.tracked_same = 1;
        for (int i = 0; i < na; ++i) {
            if (ta[i].is_int) {
                const long long x = *(int64_t *)ta[i].data, y = *(int64_t *)tb[i].data;
                d.tracked_same &= x == y;
                agree &= ntracked++ == 0 || d.tracked == y;
                d.tracked = y;
            } else if (ends_with_(ta[i].name, "/running_mean") ||
                       ends_with_(ta[i].name, "/running_var")) {
                sa = append_(sa, &nsa, &ta[i]), sb = append_(sb, &nsb, &tb[i]);
                d.nstats++;
            } else {
                pa = append_(pa, &npa, &ta[i]), pb = append_(pb, &npb, &tb[i]);
            }
        }
        if (npa && npa == npb) d.params = sp_test_relerr_ff(pa, pb, npa, 1e-3);
        if (nsa && nsa == nsb) d.stats = sp_test_relerr_ff(sa, sb, nsa, 1e-3);
        if (!agree || !ntracked) d.tracked = -1;
        free(pa), free(pb), free(sa), free(sb);
    }
    sp_test_free_tensors(ta, na);
    sp_test_free_tensors(tb, nb);
    return d;
}

/* The value of `key` in each line of event `event` of a metrics file, in order. */
int sp_test_metric_values(const char *path, const char *event, const char *key, double *out,
                          int cap) {
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    char line[16384], ev[64], k[64];
    snprintf(ev, sizeof ev, "\"event\": \"%s\"", event);
    snprintf(k, sizeof k, "\"%s\": ", key);
    int n = 0;
    while (fgets(line, sizeof line, f) && n < cap) {
        if (!strstr(line, ev)) continue;
        const char *p = strstr(line, k);
        if (p) out[n++] = strtod(p + strlen(k), NULL);
    }
    fclose(f);
    return n;
}
