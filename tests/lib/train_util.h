/* Helpers for the tests that drive the `shardprop` executable (under mpiexec or alone). */
#ifndef SP_TEST_TRAIN_UTIL_H
#define SP_TEST_TRAIN_UTIL_H

#include <stddef.h>

/* "$SHARDPROP_BIN" or a clear failure. */
const char *sp_test_bin(void);

/* Run `shardprop ARGS` with np ranks (np == 0: no mpiexec, a singleton) and `threads` OpenMP
 * threads per rank; output (stdout+stderr) into *out if non-NULL. Returns the exit status. */
int sp_test_shardprop(int np, int threads, const char *args, char **out);

/* Read every /model/params/<i>/{weight,bias} of a model file into one malloc'd array in layer
 * order (the parameter slab's layout). NULL on failure. Straight stacks whose layers all have a
 * bias; for graphs (module paths, bias=0, batch-norm buffers) see sp_test_read_tensors. */
float *sp_test_read_params(const char *path, size_t *n);

/* 1 when the two model files hold the same parameters bit for bit (and at least one). */
int sp_test_same_params(const char *a, const char *b);

/* One dataset of a file, as sp_test_read_tensors reads it. */
typedef struct sp_test_tensor {
    char name[256]; /* below the group visited: "3.f.1/running_mean", "state/0/weight/exp_avg" */
    int is_int;     /* int64 (num_batches_tracked); else float32 */
    size_t n;       /* elements */
    void *data;     /* float[n] or int64_t[n] */
} sp_test_tensor;

/* Every dataset below `group` of an HDF5 file ("/model/params", "/optimizer"), in name order,
 * into a malloc'd array of *n (free with sp_test_free_tensors): the parameters, batch-norm
 * buffers and optimizer state of any graph. 0 on success, -1 when the file or the group cannot
 * be read or a dataset is neither floating point nor integer. */
int sp_test_read_tensors(const char *path, const char *group, sp_test_tensor **t, int *n);
void sp_test_free_tensors(sp_test_tensor *t, int n);

/* Every "loss_hex" value (--deterministic's exact losses) of a metrics file, space-separated, in
 * a malloc'd string ("" if none; NULL if out of memory): two runs' traces compare with strcmp. */
char *sp_test_loss_trace(const char *path);
/* The same for the values of `key` (e.g. "val_loss_hex"), in the order of the file. */
char *sp_test_hex_trace(const char *path, const char *key);

/* 1 when every dataset of /model and /optimizer of the two files (parameters, running
 * statistics, num_batches_tracked, optimizer state) has the same name, type and bits; else 0,
 * and the first difference in why. */
int sp_test_same_model(const char *a, const char *b, char *why, size_t cap);

/* /model/params of file a against file b: the relative error of the parameters (every weight
 * and bias, one vector) and of the running statistics (every running_mean and running_var), and
 * whether num_batches_tracked are equal. */
typedef struct sp_test_model_diff {
    int ok;            /* both read, the same tensors */
    double params;     /* max |a - b| / max |b| (floor 1e-3), over all weights and biases */
    double stats;      /* likewise over all running_mean and running_var */
    int nstats;        /* running statistics tensors */
    int tracked_same;  /* every num_batches_tracked equal */
    long long tracked; /* b's, when all its batch norms agree (else -1) */
} sp_test_model_diff;
sp_test_model_diff sp_test_diff_models(const char *a, const char *b);

/* The value of `key` in each line of event `event` of a metrics file, in order, into out (at
 * most cap); returns how many. */
int sp_test_metric_values(const char *path, const char *event, const char *key, double *out,
                          int cap);

#endif
