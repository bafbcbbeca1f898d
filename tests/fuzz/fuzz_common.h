/*
 * Shared by the libFuzzer targets in tests/fuzz/ (see scripts/fuzz.sh). Each target defines
 * LLVMFuzzerTestOneInput; built with SHARDPROP_FUZZ it links libFuzzer's main, in a normal
 * build it links replay_main.c, which runs the committed corpus and regression inputs once
 * each as a CTest test.
 */
#ifndef SP_FUZZ_COMMON_H
#define SP_FUZZ_COMMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

/* The memory limit the targets run under (util/mem.h): small, so that inputs asking for huge
 * buffers are refused by shardprop itself well before libFuzzer's -rss_limit_mb. */
#define SP_FUZZ_MEM_LIMIT ((size_t)64 << 20)

/* Once per process: the memory limit, one OpenMP thread, HDF5 initialized and silent, and a
 * private scratch directory (under $SP_FUZZ_SCRATCH, else /dev/shm when there is one, else TMPDIR
 * or /tmp) removed at exit (a crashed process leaves it: scripts/fuzz.sh removes its scratch
 * root). Returns the directory. */
const char *sp_fuzz_setup(void);

/* "<scratch dir>/<name>" into buf (cap bytes). */
void sp_fuzz_path(char *buf, size_t cap, const char *name);

/* Write `size` bytes to `path` (truncating). false on failure. */
bool sp_fuzz_write(const char *path, const void *data, size_t size);

/* A NUL-terminated copy of the input (malloc'd). */
char *sp_fuzz_cstr(const uint8_t *data, size_t size);

#endif
