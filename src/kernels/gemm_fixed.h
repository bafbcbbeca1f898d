/*
 * The fixed-point weight-gradient GEMM of --deterministic training (train/deterministic.c).
 *
 * For C (M, N) = A^T B, A stored (K, M) with leading dimension lda and B stored (K, N) with ldb
 * (a dense layer: A = dY (samples, out), B = X (samples, in), C = dW), the K samples are cut into
 * micro-batches of m consecutive samples (the last may be partial), and for every element (i, j)
 * and micro-batch t = [k0, k1):
 *
 *   v = 0;  for k = k0 .. k1-1:  v = fmaf(A[k, i], B[k, j], v)      (each rounded once)
 *   q[i, j] += round(v * 2^40)                                         (kernels/fixed.h)
 *
 * with q starting at 0. v is bitwise the element of sp_gemm(true, false, M, N, k1 - k0, 1, A + k0
 * lda, lda, B + k0 ldb, ldb, 0, C, N) for m <= SP_GEMM_KC (one K block: gemm.h, gemm_ukernel.h),
 * so this is the same arithmetic as a GEMM per micro-batch followed by sp_fix_accumulate, done
 * in one pass over the K samples: the operands are packed once, and the register tile of float
 * sums is converted into int64 accumulators at each micro-batch boundary.
 *
 * A term with |v| >= limit, or NaN, is counted and adds 0 (as sp_fix_accumulate_ref). Each
 * element depends only on its own A column, B column and the micro-batch boundaries, never on
 * the thread, the tile or M, N: threads own tiles of C.
 *
 * sp_gemm_fixed      packed, OpenMP-threaded (when called outside a parallel region), AVX2
 *                    micro-kernel; returns -1 (and does nothing) when it cannot run here (no AVX2,
 *                    SHARDPROP_GEMM_ISA=portable, or m > SP_GEMM_KC): use the per-micro-batch
 *                    sp_gemm + sp_fix_accumulate then, which gives the same integers.
 * sp_gemm_fixed_ref  the plain loops over elements, micro-batches and samples: the oracle.
 *
 * Output: with q != NULL, q[i * ldq + j] = the int64 sum (overwritten; with add, added to it:
 * gradient accumulation over several calls); otherwise g[i * ldq + j] = sp_fix_to_float(the
 * sum). Returns the number of out-of-range terms.
 */
#ifndef SP_KERNELS_GEMM_FIXED_H
#define SP_KERNELS_GEMM_FIXED_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct sp_gemm_fixed_args {
    int M, N, K, m;
    const float *A; /* (K, M), row stride lda */
    int lda;
    const float *B; /* (K, N), row stride ldb */
    int ldb;
    double limit; /* largest allowed |term|, a power of two <= 2^11 (sp_fix_limit) */
    int64_t *q;   /* (M, N) row stride ldq, or NULL: */
    float *g;     /* (M, N) row stride ldq, the float of the sums */
    int ldq;
    bool add; /* with q: q += the sums, instead of q = */
} sp_gemm_fixed_args;

/* Floats of workspace sp_gemm_fixed needs for these sizes (64-byte aligned by the caller). */
size_t sp_gemm_fixed_workspace(int M, int N, int K);

int64_t sp_gemm_fixed(const sp_gemm_fixed_args *a, float *work);
int64_t sp_gemm_fixed_ref(const sp_gemm_fixed_args *a);

#endif
