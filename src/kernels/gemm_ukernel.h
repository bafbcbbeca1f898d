/*
 * Private to src/kernels/: the micro-kernels behind sp_gemm and the one arithmetic rule they
 * all share (see gemm.c for the blocking around them).
 *
 * A micro-kernel computes one MR x NR tile of C from one K block of length kc (1 <= kc <= KC):
 *
 *   ap: (kc, MR) packed A panel, ap[k * MR + r] = op(A)[i0 + r, p0 + k], zero rows past M
 *   bp: (kc, NR) packed B panel, bp[k * NR + j] = op(B)[p0 + k, j0 + j], zero columns past N
 *   c:  (m, n) valid part of the tile, row stride ldc; m <= MR, n <= NR
 *
 * and, for every valid (r, j), in exactly this order of single-rounding float operations:
 *
 *   acc = 0;  for k = 0 .. kc-1:  acc = fmaf(ap[k][r], bp[k][j], acc)
 *   beta == 0:  c = alpha * acc                  (old c ignored, even NaN)
 *   beta == 1:  c = fmaf(alpha, acc, c)
 *   otherwise:  c = fmaf(alpha, acc, beta * c)
 *
 * (beta == 1 is the beta rule with the exact product 1 * c, so it is the same arithmetic.)
 * Vector lanes and scalar fmaf are both one IEEE fused multiply-add, so every micro-kernel,
 * whatever its MR x NR, gives the same bits for the same element.
 */
#ifndef SP_KERNELS_GEMM_UKERNEL_H
#define SP_KERNELS_GEMM_UKERNEL_H

#include <stddef.h>

typedef void (*sp_gemm_ukernel_fn)(int kc, const float *ap, const float *bp, float *c, int ldc,
                                   int m, int n, float alpha, float beta);

/* The K block: fixed for every ISA, so the sequence of operations per element (and hence the
 * bits of C) does not depend on the ISA either. */
#define SP_GEMM_KC 256

/* The widest MR or NR of any micro-kernel. */
#define SP_GEMM_NR_MAX 32

/* Floats a packing buffer holds past its panels: the AVX2 column packer may write up to 8 past
 * a panel narrower than 8. */
#define SP_GEMM_PACK_SLACK 16

/* Portable C (fmaf), in gemm.c: 4 x 16. */
#define SP_GEMM_PORTABLE_MR 4
#define SP_GEMM_PORTABLE_NR 16

#if defined(__x86_64__) && defined(__GNUC__)
/* AVX2 + FMA: 6 x 16 (12 ymm accumulators). */
#define SP_GEMM_AVX2_MR 6
#define SP_GEMM_AVX2_NR 16
void sp_gemm_ukernel_avx2(int kc, const float *ap, const float *bp, float *c, int ldc, int m, int n,
                          float alpha, float beta);

/* Panel (kc, w) <- the transpose of n vectors of length kc at src + j * ld, zero-padded to w
 * (n <= w <= SP_GEMM_NR_MAX): the packing of a transposed operand, by 8 x 8 AVX2 transposes.
 * Pure data movement: the packed panel is the same as the scalar packer's. */
void sp_gemm_pack_cols_avx2(const float *src, size_t ld, int kc, int n, int w, float *p);

/* B block (kc, nc) <- rows src + k * ld, k < kc, packed into ceil(nc / nr) panels of (kc, nr)
 * (zero columns past nc): the packing of a non-transposed B, and of a transposed A (nr = MR).
 * Pure data movement; may write up to 2 floats past the last panel (SP_GEMM_PACK_SLACK). */
void sp_gemm_pack_rows_avx2(const float *src, size_t ld, int kc, int nc, int nr, float *bp);

/* AVX-512F: 12 x 32 (24 zmm accumulators). */
#define SP_GEMM_AVX512_MR 12
#define SP_GEMM_AVX512_NR 32
void sp_gemm_ukernel_avx512(int kc, const float *ap, const float *bp, float *c, int ldc, int m,
                            int n, float alpha, float beta);
#endif

/* The update of one element by the rule above, for edge tiles (each ISA file has its own copy
 * so that fmaf compiles to the FMA instruction where the file is built with -mfma). */
static inline float sp_gemm_update_(float acc, float c, float alpha, float beta) {
    if (beta == 0.0f) return alpha * acc;
    if (beta == 1.0f) return __builtin_fmaf(alpha, acc, c);
    return __builtin_fmaf(alpha, acc, beta * c);
}

#endif
