/*
 * The instruction set the kernels use, chosen once for every kernel family: the GEMM's
 * micro-kernel, the fixed-point conversion and GEMM of --deterministic, the pooling kernels.
 *
 * At the first use: the environment variable SHARDPROP_GEMM_ISA=portable|avx2|avx512 when set
 * (and the CPU has it; otherwise a warning and the best), else the best the CPU supports by
 * CPUID. Every path gives the same bits (the kernels' contracts); the choice is for speed and
 * for testing the paths against each other.
 */
#ifndef SP_KERNELS_ISA_H
#define SP_KERNELS_ISA_H

#include <stdbool.h>

typedef enum { SP_ISA_PORTABLE = 0, SP_ISA_AVX2 = 1, SP_ISA_AVX512 = 2 } sp_isa;

/* The ISA in use, the best one this CPU supports, and a name for reports ("avx2"). AVX2 means
 * AVX2 + FMA; AVX-512 means AVX-512F + VL besides. */
sp_isa sp_isa_active(void);
sp_isa sp_isa_best(void);
const char *sp_isa_name(sp_isa isa);

/* Force a path (tests and benchmarks). Returns false, changing nothing, if the CPU lacks it. */
bool sp_isa_set(sp_isa isa);

#endif
