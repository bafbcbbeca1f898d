#define _GNU_SOURCE /* sched_getaffinity, CPU_COUNT */
#include "util/threads.h"

#include <omp.h>
#include <sched.h>
#include <stdlib.h>

int sp_set_threads(int64_t requested) {
    int t = (int)requested;
    if (t <= 0) {
        const char *env = getenv("OMP_NUM_THREADS");
        cpu_set_t set;
        CPU_ZERO(&set);
        if (env && atoi(env) > 0)
            t = omp_get_max_threads();
        else if (sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) > 0)
            t = CPU_COUNT(&set);
        else
            t = omp_get_max_threads();
    }
    omp_set_num_threads(t);
    return t;
}
