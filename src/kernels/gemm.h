/*
 * GEMM: C (M, N) = alpha * op(A) * op(B) + beta * C, all row-major float32.
 *
 *   op(A) is (M, K): A is stored (M, K) with leading dimension lda >= K, or,
 *                    when trans_a, (K, M) with lda >= M.
 *   op(B) is (K, N): B is stored (K, N) with ldb >= N, or, when trans_b, (N, K) with ldb >= K.
 *   C is (M, N) with ldc >= N. With beta == 0, C is overwritten (its old contents, even NaN,
 *   are ignored).
 *
 * Determinism contract (what the layers and the thread-invariance tests rely on):
 *   the value of every C element is computed by the same sequence of floating-point
 *   operations whatever the number of OpenMP threads, whichever thread computes it, and
 *   whatever its position (edge tiles included). Threads split C into tiles; the K
 *   dimension is never split across threads.
 *
 * sp_gemm       the optimized kernel: cache-blocked, packed, OpenMP-threaded, with an
 *               AVX-512 or AVX2+FMA micro-kernel chosen at run time (kernels/isa.h), or
 *               portable C.
 *               Called from inside an OpenMP parallel region it runs on the calling thread.
 * sp_gemm_ref   the plain triple loop, kept forever as the oracle (accumulates in double).
 */
#ifndef SP_KERNELS_GEMM_H
#define SP_KERNELS_GEMM_H

#include <stdbool.h>

void sp_gemm(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float *A, int lda,
             const float *B, int ldb, float beta, float *C, int ldc);

void sp_gemm_ref(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float *A,
                 int lda, const float *B, int ldb, float beta, float *C, int ldc);

/* How many OpenMP threads sp_gemm would use for an M x N x K product called from here (1 inside
 * a parallel region, and for problems too small to be worth the fork), with the current ISA. */
int sp_gemm_plan_threads(int M, int N, int K);

#endif
