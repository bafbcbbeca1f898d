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
