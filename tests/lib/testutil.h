/* A minimal test harness: CHECK records a failure with file:line and goes on; a test's
 * main ends with `return sp_test_summary("name");`, which prints "N passed, M failed". */
#ifndef SP_TESTUTIL_H
#define SP_TESTUTIL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

extern int sp_test_passed, sp_test_failed;

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (cond) {                                                                                \
            ++sp_test_passed;                                                                      \
        } else {                                                                                   \
            ++sp_test_failed;                                                                      \
            fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);                        \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fputc('\n', stderr);                                                                   \
        }                                                                                          \
    } while (0)

/* Print the tally and return the exit status for main. */
int sp_test_summary(const char *name);

/* Deterministic test data: uniform in [lo, hi) from (seed, i). */
void sp_test_fill(float *x, size_t n, uint64_t seed, float lo, float hi);
void sp_test_fill_d(double *x, size_t n, uint64_t seed, double lo, double hi);

/* max |a-b| / max(max|b|, floor): a scale-aware relative error of two vectors. */
double sp_test_relerr(const float *a, const double *b, size_t n, double floor);
double sp_test_relerr_ff(const float *a, const float *b, size_t n, double floor);

/* Path of a fresh temporary directory for this test (created; removed by the caller if wanted). */
const char *sp_test_tmpdir(const char *name);

/* Run a shell command, return its exit status (or -1); output captured into *out if non-NULL
 * (malloc'd, NUL-terminated). */
int sp_test_run(const char *cmd, char **out);

#endif
