/*
 * The memory limit for allocations whose size comes from outside: a data file's shape, a
 * checkpoint's attributes, an IDX header, a model spec. Such a size is never trusted: it is
 * computed with overflow checks (sp_size_mul) and compared with this limit before anything is
 * allocated, so a hostile or damaged file gets a clear error instead of an out-of-memory kill.
 *
 * The limit is process-wide. Default: half of the physical memory (sysconf), at least 64 MiB.
 * `shardprop train --max-memory-mb` sets it once at start-up, before any file is opened:
 *
 *     sp_mem_set_limit((size_t)cfg.max_memory_mb << 20);
 *
 * The limit applies to each allocation (or each group of allocations that live together, such
 * as a model's slabs), not to the process's total.
 */
#ifndef SP_UTIL_MEM_H
#define SP_UTIL_MEM_H

#include <stdbool.h>
#include <stddef.h>

#include "shardprop/status.h"

/* Set the limit in bytes; 0 restores the default. Thread-safe (an atomic store). */
void sp_mem_set_limit(size_t bytes);

/* The limit in bytes now in force. */
size_t sp_mem_limit(void);

/* SP_OK when `bytes` <= the limit; otherwise SP_ERR_NOMEM with one line:
 * "<who>: <what> needs <X> MiB, more than the memory limit of <L> MiB (--max-memory-mb)".
 * `who` names the file and dataset (or the spec), `what` the buffer. */
sp_status sp_mem_check(size_t bytes, const char *who, const char *what);

/* The same for a product count * size (SP_ERR_NOMEM also when it overflows size_t); the byte
 * count goes to *bytes when not NULL. */
sp_status sp_mem_check_n(size_t count, size_t size, size_t *bytes, const char *who,
                         const char *what);

#endif
