/*
 * Small helpers shared by the scale/ measurement programs (layer_times.c, step_times.c,
 * net_bench.c): the median of a sample and the SHAPE argument; the clock and the comparator are
 * the benchmarks' (scripts/bench/bench_util.h).
 */
#ifndef SP_SCALE_UTIL_H
#define SP_SCALE_UTIL_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "../bench/bench_util.h"

/* The median of t[0..n), the upper one for even n (sorts t). */
static inline double scale_median(double *t, int n) {
    qsort(t, (size_t)n, sizeof *t, bench_cmp_double);
    return t[n / 2];
}

/* "784" or "1,28,28" into shape[0..*rank); false after an error line naming prog. */
static inline int scale_parse_shape(const char *prog, const char *arg, int64_t shape[3],
                                    int *rank) {
    *rank = 0;
    for (const char *s = arg; *s && *rank < 3;) {
        char *end;
        shape[(*rank)++] = strtoll(s, &end, 10);
        if (end == s || shape[*rank - 1] <= 0 || (*end && *end != ',')) {
            fprintf(stderr, "%s: bad shape '%s' (e.g. 784 or 1,28,28)\n", prog, arg);
            return 0;
        }
        s = *end ? end + 1 : end;
    }
    return 1;
}

#endif
