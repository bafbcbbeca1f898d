/* How many OpenMP threads a rank uses. */
#ifndef SP_UTIL_THREADS_H
#define SP_UTIL_THREADS_H

#include <stdint.h>

/* `requested` when > 0, else OMP_NUM_THREADS when set, else the cores this process may run on
 * (its affinity mask: what mpirun/srun binding gave the rank). Sets omp_set_num_threads and
 * returns the count. */
int sp_set_threads(int64_t requested);

#endif
