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
 * order (the parameter slab's layout). NULL on failure. */
float *sp_test_read_params(const char *path, size_t *n);

/* 1 when the two model files hold the same parameters bit for bit (and at least one). */
int sp_test_same_params(const char *a, const char *b);

#endif
