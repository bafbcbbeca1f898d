/*
 * sp_gemm: Goto/BLIS-style blocked GEMM (see gemm.h for the contract).
 *
 * Loops, per thread, over its rectangle of C (rows r0..r1, columns c0..c1):
 *
 *   for jc in c0..c1 step NC            B block  (KC, NC), packed into NR-wide panels (L3)
 *     for pc in 0..K step KC            the K blocks: always from 0, step KC, for every element
 *       pack op(B)[pc:+kc, jc:+nc]
 *       for ic in r0..r1 step MC        A block  (MC, KC), packed into MR-tall panels (L2)
 *         pack op(A)[ic:+mc, pc:+kc]
 *         for jr step NR, ir step MR    micro-kernel: MR x NR tile of C, B panel (KC, NR) in L1
 *
 * Arithmetic (the determinism contract): for each element c = C[i, j], with B_k = the K block
 * [k0, k0 + kc), k0 = 0, KC, 2 KC, ... and KC = SP_GEMM_KC fixed for every ISA,
 *
 *   acc_b = 0;  for k in B_k in increasing order:  acc_b = fmaf(opA[i,k], opB[k,j], acc_b)
 *   first block:  c = alpha * acc_0                      if beta == 0 (old c ignored)
 *                 c = fmaf(alpha, acc_0, beta * c)       otherwise (beta * c exact if beta == 1)
 *   later blocks: c = fmaf(alpha, acc_b, c)
 *
 * each operation rounded once to float. The tile an element falls in, the thread that owns the
 * tile, the number of threads, the small-problem path (the same code on one thread) and the
 * micro-kernel (AVX-512, AVX2, or portable fmaf: one IEEE fused multiply-add per lane either
 * way) change none of this, so C is bitwise the same for all of them. Zero padding of the
 * packed panels only feeds rows and columns of the tile that are not stored.
 * alpha == 0 or K == 0: C = beta * C (0 if beta == 0), A and B are not read.
 *
 * Threads: the C matrix is split into a tm x tn grid of rectangles on MR/NR panel boundaries,
 * one per thread; each thread packs its own A and B blocks into its own buffer (so no barriers
 * and no shared state). Splitting N repacks no B; the cost model below weighs the repacking of
 * A (and of B when M is split) against the balance of the work.
 */
#include "kernels/gemm.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <omp.h>

#include "kernels/gemm_ukernel.h"
#include "kernels/isa.h"
#include "util/arith.h"

/* A problem with fewer than this many multiply-adds per thread gets fewer threads; below
 * twice this, it runs on the calling thread (same code, same arithmetic). */
#define SP_GEMM_MIN_WORK_PER_THREAD (1 << 18)
/* In the thread-grid cost model: one packed element costs about this many flops of time. */
#define SP_GEMM_PACK_COST 32.0

/* Packs the transpose of n vectors (see pack_cols_). */
typedef void (*sp_gemm_pack_cols_fn)(const float *src, size_t ld, int kc, int n, int w, float *p);

/* Packs a non-transposed B block (see pack_b_). */
typedef void (*sp_gemm_pack_rows_fn)(const float *src, size_t ld, int kc, int nc, int nr,
                                     float *bp);

typedef struct {
    sp_gemm_ukernel_fn fn;
    sp_gemm_pack_cols_fn pack_cols;
    sp_gemm_pack_rows_fn pack_rows; /* NULL: the portable loop in pack_b_ */
    int mr, nr;                     /* micro-tile */
    int mc, nc; /* A block rows (multiple of mr), B block columns (multiple of nr) */
} sp_gemm_kernel_;

/* ---- portable micro-kernel ---------------------------------------------------------------- */

static void ukernel_portable_(int kc, const float *ap, const float *bp, float *c, int ldc, int m,
                              int n, float alpha, float beta) {
    enum { MR = SP_GEMM_PORTABLE_MR, NR = SP_GEMM_PORTABLE_NR };
    float acc[MR][NR] = {{0}};
    for (int k = 0; k < kc; ++k, ap += MR, bp += NR)
        for (int r = 0; r < MR; ++r)
            for (int j = 0; j < NR; ++j) acc[r][j] = fmaf(ap[r], bp[j], acc[r][j]);
    for (int r = 0; r < m; ++r)
        for (int j = 0; j < n; ++j)
            c[(size_t)r * ldc + j] =
                sp_gemm_update_(acc[r][j], c[(size_t)r * ldc + j], alpha, beta);
}

static void pack_cols_(const float *src, size_t ld, int kc, int n, int w, float *p);

/* Indexed by sp_isa. Blocking: A block mc x KC floats in L2 (portable 128 KiB, AVX2 144 KiB,
 * AVX-512 240 KiB), B panel KC x nr in L1 (16 KiB, 16 KiB, 32 KiB), B block KC x nc (2 MiB). */
static const sp_gemm_kernel_ sp_gemm_kernels_[3] = {
    {ukernel_portable_, pack_cols_, NULL, SP_GEMM_PORTABLE_MR, SP_GEMM_PORTABLE_NR, 128, 2048},
#if defined(__x86_64__) && defined(__GNUC__)
    {sp_gemm_ukernel_avx2, sp_gemm_pack_cols_avx2, sp_gemm_pack_rows_avx2, SP_GEMM_AVX2_MR,
     SP_GEMM_AVX2_NR, 144, 2048},
    {sp_gemm_ukernel_avx512, sp_gemm_pack_cols_avx2, sp_gemm_pack_rows_avx2, SP_GEMM_AVX512_MR,
     SP_GEMM_AVX512_NR, 240, 2048},
#else
    {ukernel_portable_, pack_cols_, NULL, SP_GEMM_PORTABLE_MR, SP_GEMM_PORTABLE_NR, 128, 2048},
    {ukernel_portable_, pack_cols_, NULL, SP_GEMM_PORTABLE_MR, SP_GEMM_PORTABLE_NR, 128, 2048},
#endif
};

/* ---- packing buffers: one per thread, 64-byte aligned, grown as needed ---------------------- */

/* The pointer stays reachable in thread-local storage while the thread lives; a pthread key
 * frees it when a thread other than the main one exits. */
static _Thread_local float *sp_gemm_buf_ = NULL;
static _Thread_local size_t sp_gemm_buf_cap_ = 0; /* floats */
static pthread_key_t sp_gemm_buf_key_;
static pthread_once_t sp_gemm_buf_once_ = PTHREAD_ONCE_INIT;

static void buf_key_init_(void) {
    if (pthread_key_create(&sp_gemm_buf_key_, free) != 0) {
        fprintf(stderr, "sp_gemm: pthread_key_create failed\n");
        abort();
    }
}

static float *pack_buffer_(size_t nfloats) {
    if (nfloats <= sp_gemm_buf_cap_) return sp_gemm_buf_;
    pthread_once(&sp_gemm_buf_once_, buf_key_init_);
    size_t cap = (nfloats + 15) & ~(size_t)15; /* whole 64-byte lines */
    float *p = aligned_alloc(64, cap * sizeof(float));
    if (!p) {
        /* sp_gemm returns no status; this is a few MiB at most (see the blocking). */
        fprintf(stderr, "sp_gemm: out of memory for a %zu-byte packing buffer\n",
                cap * sizeof(float));
        abort();
    }
    free(sp_gemm_buf_);
    sp_gemm_buf_ = p;
    sp_gemm_buf_cap_ = cap;
    pthread_setspecific(sp_gemm_buf_key_, p);
    return p;
}

/* ---- packing ------------------------------------------------------------------------------ */

static int round_up_(int x, int m) {
    return (x + m - 1) / m * m;
}

/* Panel (kc, w) <- n floats from each of the kc rows src + k * ld, zero-padded to width w. */
static void pack_rows_(const float *src, size_t ld, int kc, int n, int w, float *p) {
    for (int k = 0; k < kc; ++k, src += ld, p += w) {
        for (int j = 0; j < n; ++j) p[j] = src[j];
        for (int j = n; j < w; ++j) p[j] = 0.0f;
    }
}

/* Panel (kc, w) <- the transpose of n vectors of length kc at src + j * ld, zero-padded to w.
 * Reads w streams, writes sequentially. */
static void pack_cols_(const float *src, size_t ld, int kc, int n, int w, float *p) {
    const float *s[SP_GEMM_NR_MAX];
    for (int j = 0; j < n; ++j) s[j] = src + j * ld;
    for (int k = 0; k < kc; ++k, p += w) {
        for (int j = 0; j < n; ++j) p[j] = s[j][k];
        for (int j = n; j < w; ++j) p[j] = 0.0f;
    }
}

/* ap (ceil(mc/mr) panels of (kc, mr)) <- op(A)[i0 : i0+mc, p0 : p0+kc], rows past mc zero. */
static void pack_a_(const sp_gemm_kernel_ *kr, bool trans_a, const float *A, int lda, int i0,
                    int p0, int mc, int kc, float *ap) {
    const int mr = kr->mr;
    if (trans_a && kr->pack_rows) { /* A is (K, M): the panels of a non-transposed B block */
        kr->pack_rows(A + (size_t)p0 * lda + i0, (size_t)lda, kc, mc, mr, ap);
        return;
    }
    for (int ir = 0; ir < mc; ir += mr, ap += (size_t)kc * mr) {
        const int m = sp_min_int(mr, mc - ir);
        if (trans_a) /* A is (K, M) */
            pack_rows_(A + (size_t)p0 * lda + i0 + ir, (size_t)lda, kc, m, mr, ap);
        else
            kr->pack_cols(A + (size_t)(i0 + ir) * lda + p0, (size_t)lda, kc, m, mr, ap);
    }
}

/* bp (ceil(nc/nr) panels of (kc, nr)) <- op(B)[p0 : p0+kc, j0 : j0+nc], columns past nc zero. */
static void pack_b_(const sp_gemm_kernel_ *kr, bool trans_b, const float *B, int ldb, int p0,
                    int j0, int kc, int nc, float *bp) {
    const int nr = kr->nr;
    if (!trans_b) { /* B is (K, N): read each row of the block once, in order */
        if (kr->pack_rows) {
            kr->pack_rows(B + (size_t)p0 * ldb + j0, (size_t)ldb, kc, nc, nr, bp);
            return;
        }
        for (int k = 0; k < kc; ++k) {
            const float *src = B + (size_t)(p0 + k) * ldb + j0;
            for (int jr = 0; jr < nc; jr += nr)
                pack_rows_(src + jr, 0, 1, sp_min_int(nr, nc - jr), nr,
                           bp + (size_t)jr * kc + (size_t)k * nr);
        }
        return;
    }
    for (int jr = 0; jr < nc; jr += nr, bp += (size_t)kc * nr) /* B is (N, K) */
        kr->pack_cols(B + (size_t)(j0 + jr) * ldb + p0, (size_t)ldb, kc, sp_min_int(nr, nc - jr),
                      nr, bp);
}

/* ---- the blocked product of one rectangle of C ---------------------------------------------- */

static void gemm_rect_(const sp_gemm_kernel_ *kr, bool trans_a, bool trans_b, int r0, int r1,
                       int c0, int c1, int K, float alpha, const float *A, int lda, const float *B,
                       int ldb, float beta, float *C, int ldc) {
    const int mr = kr->mr, nr = kr->nr;
    const int kcmax = sp_min_int(SP_GEMM_KC, K);
    const int ncmax = round_up_(sp_min_int(kr->nc, c1 - c0), nr);
    const int mcmax = round_up_(sp_min_int(kr->mc, r1 - r0), mr);
    float *bp = pack_buffer_((size_t)kcmax * (ncmax + mcmax) +
                             SP_GEMM_PACK_SLACK); /* (kc, nc) then (mc, kc) */
    float *ap = bp + (size_t)kcmax * ncmax;       /* 64-byte aligned: nr | 16 */

    for (int jc = c0; jc < c1; jc += kr->nc) {
        const int nc = sp_min_int(kr->nc, c1 - jc);
        for (int pc = 0; pc < K; pc += SP_GEMM_KC) {
            const int kc = sp_min_int(SP_GEMM_KC, K - pc);
            const float beta_k = pc == 0 ? beta : 1.0f; /* later K blocks add to C */
            pack_b_(kr, trans_b, B, ldb, pc, jc, kc, nc, bp);
            for (int ic = r0; ic < r1; ic += kr->mc) {
                const int mc = sp_min_int(kr->mc, r1 - ic);
                pack_a_(kr, trans_a, A, lda, ic, pc, mc, kc, ap);
                for (int jr = 0; jr < nc; jr += nr) {
                    for (int ir = 0; ir < mc; ir += mr) {
                        kr->fn(kc, ap + (size_t)ir * kc, bp + (size_t)jr * kc,
                               C + (size_t)(ic + ir) * ldc + jc + jr, ldc, sp_min_int(mr, mc - ir),
                               sp_min_int(nr, nc - jr), alpha, beta_k);
                    }
                }
            }
        }
    }
}

/* ---- threads ------------------------------------------------------------------------------ */

/* The thread grid tm x tn (tm * tn <= nt) that minimises the estimated time of the slowest
 * thread: its padded flops plus its packing. Ties go to fewer threads, then to splitting N. */
static void thread_grid_(const sp_gemm_kernel_ *kr, int M, int N, int K, int nt, int *tm_out,
                         int *tn_out) {
    const int mp = (M + kr->mr - 1) / kr->mr, np = (N + kr->nr - 1) / kr->nr;
    double best = -1.0;
    *tm_out = *tn_out = 1;
    for (int tn = 1; tn <= sp_min_int(nt, np); ++tn) {
        for (int tm = 1; tm <= sp_min_int(nt / tn, mp); ++tm) {
            const double rows = (double)((mp + tm - 1) / tm) * kr->mr;
            const double cols = (double)((np + tn - 1) / tn) * kr->nr;
            const double jblocks = (double)(((int)cols + kr->nc - 1) / kr->nc);
            const double cost =
                2.0 * rows * cols * K + SP_GEMM_PACK_COST * K * (cols + rows * jblocks);
            const bool better = best < 0 || cost < best ||
                                (cost == best && (tm * tn < *tm_out * *tn_out ||
                                                  (tm * tn == *tm_out * *tn_out && tn > *tn_out)));
            if (better) {
                best = cost;
                *tm_out = tm;
                *tn_out = tn;
            }
        }
    }
}

/* Threads for an M x N x K product with kernel kr, from outside a parallel region. */
static int plan_threads_(const sp_gemm_kernel_ *kr, int M, int N, int K) {
    if (M <= 0 || N <= 0 || K <= 0 || omp_in_parallel()) return 1;
    const double work = (double)M * N * K;
    int nt = omp_get_max_threads();
    if (work < (double)nt * SP_GEMM_MIN_WORK_PER_THREAD)
        nt = (int)(work / SP_GEMM_MIN_WORK_PER_THREAD);
    if (nt < 2) return 1;
    int tm, tn;
    thread_grid_(kr, M, N, K, nt, &tm, &tn);
    return tm * tn;
}

int sp_gemm_plan_threads(int M, int N, int K) {
    return plan_threads_(&sp_gemm_kernels_[sp_isa_active()], M, N, K);
}

void sp_gemm(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float *A, int lda,
             const float *B, int ldb, float beta, float *C, int ldc) {
    if (M <= 0 || N <= 0) return;
    if (alpha == 0.0f || K <= 0) {
        for (int i = 0; i < M; ++i)
            for (int j = 0; j < N; ++j) {
                float *c = &C[(size_t)i * ldc + j];
                *c = beta == 0.0f ? 0.0f : beta * *c;
            }
        return;
    }
    const sp_gemm_kernel_ *kr = &sp_gemm_kernels_[sp_isa_active()];
    const int nt = plan_threads_(kr, M, N, K);
    if (nt == 1) {
        gemm_rect_(kr, trans_a, trans_b, 0, M, 0, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
        return;
    }
#pragma omp parallel num_threads(nt)
    {
        /* The runtime may give fewer threads than asked: plan for those it gave. */
        int tm, tn;
        thread_grid_(kr, M, N, K, omp_get_num_threads(), &tm, &tn);
        const int t = omp_get_thread_num();
        if (t < tm * tn) {
            const int ti = t / tn, tj = t % tn;
            const int mp = (M + kr->mr - 1) / kr->mr, np = (N + kr->nr - 1) / kr->nr;
            /* balanced split of the panels; the last rectangle ends at M (N) */
            const int r0 = (int)((long long)mp * ti / tm) * kr->mr;
            const int r1 = sp_min_int((int)((long long)mp * (ti + 1) / tm) * kr->mr, M);
            const int c0 = (int)((long long)np * tj / tn) * kr->nr;
            const int c1 = sp_min_int((int)((long long)np * (tj + 1) / tn) * kr->nr, N);
            if (r0 < r1 && c0 < c1)
                gemm_rect_(kr, trans_a, trans_b, r0, r1, c0, c1, K, alpha, A, lda, B, ldb, beta, C,
                           ldc);
        }
    }
}
