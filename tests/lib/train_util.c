#include "train_util.h"

#include <hdf5.h>
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
    FILE *f = fopen(path, "r");
    size_t cap = 1 << 16, used = 0;
    char *out = calloc(cap, 1), line[4096];
    while (f && out && fgets(line, sizeof line, f)) {
        const char *p = strstr(line, "\"loss_hex\": \"");
        if (!p) continue;
        p += 13;
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
