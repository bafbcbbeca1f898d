/*
 * Private to src/kernels/: the micro-kernel behind sp_gemm_fixed (gemm_fixed.h).
 *
 * One MR x NR tile of C = A^T B over all K samples, from packed panels
 *   ap: (K, MR), ap[k * MR + r] = A[k, i0 + r] (zero rows past M)
 *   bp: (K, NR), bp[k * NR + j] = B[k, j0 + j] (zero columns past N)
 * For each micro-batch [k0, min(k0 + m, K)), k0 = 0, m, 2m, ...: the register tile starts at 0,
 * takes one fused multiply-add per sample in order (gemm_ukernel.h's rule, so the same bits as
 * sp_gemm's element with K = the micro-batch), and is then added to q as the bits of the double
 * v + 1.5 * 2^12: for |v| < 2^11 those are 0x40b8000000000000 + round(v * 2^40) (round to nearest
 * even, kernels/fixed.c), so after n micro-batches q holds n * 0x40b8000000000000 + the exact sum
 * (mod 2^64; the caller subtracts). q need not be cleared: the first micro-batch stores. Returns the largest |v| seen as float bits (NaN above +Inf):
 * the caller checks the range once per tile.
 */
#ifndef SP_KERNELS_GEMM_FIXED_UKERNEL_H
#define SP_KERNELS_GEMM_FIXED_UKERNEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SP_GEMM_FIXED_MR         6
#define SP_GEMM_FIXED_NR         16
#define SP_GEMM_FIXED_MAGIC_BITS 0x40b8000000000000ULL

#if defined(__x86_64__) && defined(__GNUC__)
/* q: MR x NR int64, 32-byte aligned, row-major, overwritten (K >= 1). AVX2 + FMA. */
uint32_t sp_gemm_fixed_ukernel_avx2(int K, int m, const float *ap, const float *bp, int64_t *q);

/* The first rm rows of a full-width tile q (MR x NR, 32-byte aligned, from the micro-kernel) minus
 * off (its n * 0x40b8000000000000), written to dq (int64, row stride ldq; with add, added to
 * it) or, with dq NULL, to dg as sp_fix_to_float of each (kernels/fixed.h), bit for bit. AVX2. */
void sp_gemm_fixed_store_avx2(const int64_t *q, uint64_t off, int rm, int64_t *dq, float *dg,
                              size_t ldq, bool add);
/* The same to dg, for a tile whose sums are all known to satisfy |q - off| < 2^51 (the caller's
 * bound from the largest term): the fast conversion with no range test. AVX2. */
void sp_gemm_fixed_store_small_avx2(const int64_t *q, uint64_t off, int rm, float *dg, size_t ldq);
#endif

#endif
