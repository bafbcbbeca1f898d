/*
 * The causal attention core of one (sample, head) pair: the body of sp_att_forward_<isa> and
 * sp_att_backward_<isa>, included once by each of attention.c (portable), attention_avx2.c and
 * attention_avx512.c, which define before including it
 *   SP_ATT_VL     floats per vector (4, 8, 16): the width of the GNU C vectors used,
 *   SP_ATT_MR     rows of a register tile,
 *   SP_ATT_NAME   the function names' suffix (portable, avx2, avx512).
 * Tile shapes and vector widths change only which values are computed together, never the
 * operations that compute one value; contraction into FMA is off (ISO C mode in GCC, the pragma
 * below for clang), so every build gives the same bits.
 *
 * The arithmetic, all in float, one rounding per operation (i is a query row, j <= i a key row):
 *   S[i, j]  = (((0 + q_i[0] k_j[0]) + q_i[1] k_j[1]) + ... + q_i[hs-1] k_j[hs-1]) * scale
 *   m_i      = max_j S[i, j];  e_ij = exp(S[i, j] - m_i) (exp_ below: within 1.2 ulp)
 *   l_i      = sum_j e_ij as 16 partial sums, lane t taking j = t mod 16 in order of j, then the
 *              16 added in lane order;  lse_i = m_i + logf(l_i)
 *   y_i[d]   = (((0 + e_i0 v_0[d]) + e_i1 v_1[d]) + ... + e_ii v_i[d]) * (1 / l_i)
 * and in backward, with P recomputed from the saved lse:
 *   P_ij = exp(S[i, j] - lse_i);  dP_ij = dy_i . v_j (as S, without scale);  D_i = dy_i . y_i
 *   dS_ij = (P_ij (dP_ij - D_i)) * scale
 *   dq_i = sum_j dS_ij k_j, dk_j = sum_i dS_ij q_i, dv_j = sum_i P_ij dy_i, each sum from 0 in
 *   order of j (dq) or of i (dk, dv): dk and dv accumulate over the query blocks in order.
 * Entries above the diagonal (j > i) are scored only up to the diagonal of a row tile (rounded
 * up to 16 columns) and never exponentiated nor read, except within a row's last 16-wide chunk,
 * where they are replaced by 0: a NaN or inf in a later position cannot reach an earlier one.
 *
 * Scratch of a pair (sp_att_geom.pair floats; Tp, hsp: T, hs rounded up to SP_ATT_NW, R =
 * SP_ATT_R; packed operands are zero-padded):
 *   forward:  kT (hs, Tp) | vp (T, hsp) | S (R, Tp) | 1/l (R)
 *   backward: kT (hs, Tp) | vT (hs, Tp) | kp (T, hsp) | qb, dyb (R, hsp) each | P, dS (R, Tp)
 *             each
 */
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "layers/attention_simd.h"

#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#endif

#define SP_ATT_CAT_(a, b) a##_##b
#define SP_ATT_CAT(a, b)  SP_ATT_CAT_(a, b)

typedef float vf_ __attribute__((vector_size(SP_ATT_VL * sizeof(float))));
typedef int32_t vi_ __attribute__((vector_size(SP_ATT_VL * sizeof(float))));
typedef uint32_t vu_ __attribute__((vector_size(SP_ATT_VL * sizeof(float))));

enum { NW_ = SP_ATT_NW, NV_ = SP_ATT_NW / SP_ATT_VL, MR_ = SP_ATT_MR, R_ = SP_ATT_R };
/* complete unrolling of the loops over a tile's rows, early enough that the accumulators become
 * registers (not a stack array cleared by memset) */
#define UNROLL_ _Pragma("GCC unroll 16")

static inline vf_ vld_(const float *p) {
    vf_ v;
    memcpy(&v, p, sizeof v);
    return v;
}
static inline void vst_(float *p, vf_ v) {
    memcpy(p, &v, sizeof v);
}
static inline vf_ vsplat_(float x) {
    return (vf_){0} + x;
}
/* m ? a : b, lane by lane (m all ones or all zeros) */
static inline vf_ vsel_(vi_ m, vf_ a, vf_ b) {
    return (vf_)(((vi_)a & m) | ((vi_)b & ~m));
}
/* lanes j0 + t < n */
static inline vi_ vbelow_(int j0, int n) {
    vi_ t;
    for (int l = 0; l < SP_ATT_VL; ++l) t[l] = l;
    return t + j0 < n;
}

/* exp(x) for x <= 88, lane by lane: x = n ln2 + r (n = nearest integer to x log2 e, r by a
 * two-part ln2), exp(r) by its Taylor polynomial of degree 7 (|r| <= 0.347: truncation 7e-9
 * relative), times 2^n built in the exponent bits. Within 1.2 ulp of exp on [-87.3, 0.5] (every
 * 16th float checked against the double exp); 0 for x < -87.3 (results below the normal range),
 * NaN for NaN. Plain multiplies and adds: the same bits in every build, whatever the libm. */
static inline vf_ exp_(vf_ x) {
    const float lo = -87.33f, magic = 12582912.0f; /* 1.5 2^23: adding it rounds to integer */
    const float ln2_hi = 0.693145751953125f;       /* 15 significant bits: n ln2_hi is exact */
    const float ln2_lo = (float)(0.69314718055994530942 - 0.693145751953125);
    const vi_ under = x < lo;
    vf_ xc = vsel_(under, vsplat_(lo), x);
    xc = vsel_(xc > 88.0f, vsplat_(88.0f), xc);
    const vf_ t = xc * 1.44269504088896341f + magic, n = t - magic;
    const vf_ r = (xc - n * ln2_hi) - n * ln2_lo;
    vf_ p = r * (1.0f / 5040) + (1.0f / 720);
    p = p * r + (1.0f / 120);
    p = p * r + (1.0f / 24);
    p = p * r + (1.0f / 6);
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    const vu_ e = ((vu_)t - (vu_)vsplat_(magic) + 127u) << 23; /* n + 127 in [1, 254] */
    return vsel_(under, vsplat_(0.0f), p * (vf_)e);
}

/*
 * One register tile of C (+)= A B:
 *   for rows m < mr, columns n < nc (nc <= NW_):
 *     c[m][n] = ((load ? c[m][n] : 0) + sum over k in [k0[m], k1[m]) ascending of
 *                A(m, k) b[k][n]) * (ralpha ? ralpha[m] : alpha)
 * with A(m, k) = a[m ars + k aks] and b rows of NW_ readable floats at b + k ldb (packed, padded).
 * Rows past mr are computed from row 0's A and not stored. The k that every row takes, [max k0,
 * min k1), run without a test; those before and after it, row by row.
 */
static void tile_(float *restrict c, size_t ldc, int mr, int nc, const float *a, size_t ars,
                  size_t aks, const float *restrict b, size_t ldb, const int *k0, const int *k1,
                  float alpha, const float *ralpha, bool load) {
    vf_ acc[MR_][NV_];
    const float *ap[MR_];
    UNROLL_ for (int m = 0; m < MR_; ++m) {
        ap[m] = a + (size_t)(m < mr ? m : 0) * ars;
        for (int v = 0; v < NV_; ++v) acc[m][v] = vsplat_(0.0f);
    }
    /* every loop over m runs to MR_ (tested against mr inside): fully unrolled, acc stays in
     * registers */
    UNROLL_ for (int m = 0; m < MR_; ++m) {
        if (!load || m >= mr) break;
        const float *cm = c + (size_t)m * ldc;
        if (nc == NW_) {
            for (int v = 0; v < NV_; ++v) acc[m][v] = vld_(cm + v * SP_ATT_VL);
            continue;
        }
        float t[NW_];
        for (int n = 0; n < NW_; ++n) t[n] = n < nc ? cm[n] : 0.0f;
        for (int v = 0; v < NV_; ++v) acc[m][v] = vld_(t + v * SP_ATT_VL);
    }
    int lo = k0[0], clo = k0[0], chi = k1[0], hi = k1[0];
    UNROLL_ for (int m = 1; m < MR_; ++m) {
        if (m >= mr) break;
        lo = k0[m] < lo ? k0[m] : lo, clo = k0[m] > clo ? k0[m] : clo;
        chi = k1[m] < chi ? k1[m] : chi, hi = k1[m] > hi ? k1[m] : hi;
    }
    if (chi < clo) chi = clo;
#define SP_ATT_STEP_(test)                                                                         \
    do {                                                                                           \
        const float *bk = b + (size_t)k * ldb;                                                     \
        vf_ bv[NV_];                                                                               \
        for (int v = 0; v < NV_; ++v) bv[v] = vld_(bk + v * SP_ATT_VL);                            \
        const size_t ko = (size_t)k * aks;                                                         \
        UNROLL_ for (int m = 0; m < MR_; ++m) {                                                    \
            if (!(test)) continue;                                                                 \
            const float am = ap[m][ko];                                                            \
            for (int v = 0; v < NV_; ++v) acc[m][v] += am * bv[v];                                 \
        }                                                                                          \
    } while (0)
    for (int k = lo; k < clo; ++k) SP_ATT_STEP_(m < mr && k >= k0[m] && k < k1[m]);
    for (int k = clo; k < chi; ++k) SP_ATT_STEP_(1);
    for (int k = chi; k < hi; ++k) SP_ATT_STEP_(m < mr && k >= k0[m] && k < k1[m]);
#undef SP_ATT_STEP_
    UNROLL_ for (int m = 0; m < MR_; ++m) {
        if (m >= mr) break;
        const float s = ralpha ? ralpha[m] : alpha;
        float *cm = c + (size_t)m * ldc;
        if (nc == NW_) {
            for (int v = 0; v < NV_; ++v) vst_(cm + v * SP_ATT_VL, acc[m][v] * s);
            continue;
        }
        float t[NW_];
        for (int v = 0; v < NV_; ++v) vst_(t + v * SP_ATT_VL, acc[m][v] * s);
        for (int n = 0; n < nc; ++n) cm[n] = t[n];
    }
}

/* out[r][j] = (A_r . bT[., j]) * alpha for the rows r < rv of a query block starting at row i0
 * and the j the causal mask lets each row tile see (rounded up to NW_): A_r = a + r ars, the hs
 * values of a query (q, or dy for dP); bT (hs, Tp) a packed transposed operand (k, or v). */
static void scores_(float *out, const float *a, size_t ars, const float *bT, const sp_att_geom *g,
                    int i0, int rv, float alpha) {
    int k0[MR_], k1[MR_];
    for (int m = 0; m < MR_; ++m) k0[m] = 0, k1[m] = g->hs;
    for (int m0 = 0; m0 < rv; m0 += MR_) {
        const int mr = rv - m0 < MR_ ? rv - m0 : MR_, jn = i0 + m0 + mr;
        for (int j0 = 0; j0 < jn; j0 += NW_)
            tile_(out + (size_t)m0 * g->Tp + j0, (size_t)g->Tp, mr, NW_, a + (size_t)m0 * ars, ars,
                  1, bT + j0, (size_t)g->Tp, k0, k1, alpha, NULL, false);
    }
}

/* dst (n, ldd) = rows of src (row stride lds), hs values each, zero-padded to ldd */
static void pack_rows_(float *dst, size_t ldd, const float *src, size_t lds, int n, int hs) {
    for (int j = 0; j < n; ++j) {
        memcpy(dst + (size_t)j * ldd, src + (size_t)j * lds, (size_t)hs * sizeof(float));
        memset(dst + (size_t)j * ldd + hs, 0, (ldd - (size_t)hs) * sizeof(float));
    }
}
/* dst (hs, Tp) = the transpose of n = T rows of src (row stride lds), zero-padded */
static void pack_t_(float *dst, const float *src, size_t lds, const sp_att_geom *g) {
    const int T = g->T, Tp = g->Tp;
    for (int j = 0; j < T; ++j)
        for (int d = 0; d < g->hs; ++d) dst[(size_t)d * Tp + j] = src[(size_t)j * lds + d];
    for (int d = 0; d < g->hs; ++d)
        for (int j = T; j < Tp; ++j) dst[(size_t)d * Tp + j] = 0.0f;
}

void SP_ATT_CAT(sp_att_forward, SP_ATT_NAME)(float *y, float *lse, float *ws, const float *qkv,
                                             const sp_att_geom *g) {
    const int T = g->T, hs = g->hs, Tp = g->Tp, hsp = g->hsp;
    const size_t ld3 = 3 * (size_t)g->C, ldy = (size_t)g->C;
    float *kT = ws, *vp = kT + (size_t)hs * Tp, *S = vp + (size_t)T * hsp,
          *il = S + (size_t)R_ * Tp;
    pack_t_(kT, qkv + g->C, ld3, g);
    pack_rows_(vp, (size_t)hsp, qkv + 2 * (size_t)g->C, ld3, T, hs);
    int k0[MR_], k1[MR_];
    for (int i0 = 0; i0 < T; i0 += R_) {
        const int rv = T - i0 < R_ ? T - i0 : R_;
        scores_(S, qkv + (size_t)i0 * ld3, ld3, kT, g, i0, rv, g->scale);
        for (int r = 0; r < rv; ++r) { /* softmax of row i over j <= i: e in place of S */
            const int n = i0 + r + 1;
            float *s = S + (size_t)r * Tp;
            vf_ mx[NV_];
            for (int v = 0; v < NV_; ++v) mx[v] = vsplat_(-INFINITY);
            for (int j0 = 0; j0 < n; j0 += NW_)
                for (int v = 0; v < NV_; ++v) {
                    const int jv = j0 + v * SP_ATT_VL;
                    const vf_ x = vld_(s + jv);
                    mx[v] = vsel_((x > mx[v]) & vbelow_(jv, n), x, mx[v]);
                }
            float m = -INFINITY, l = 0.0f;
            for (int v = 0; v < NV_; ++v)
                for (int t = 0; t < SP_ATT_VL; ++t) m = mx[v][t] > m ? mx[v][t] : m;
            vf_ ls[NV_];
            for (int v = 0; v < NV_; ++v) ls[v] = vsplat_(0.0f);
            for (int j0 = 0; j0 < n; j0 += NW_)
                for (int v = 0; v < NV_; ++v) {
                    const int jv = j0 + v * SP_ATT_VL;
                    const vf_ e = vsel_(vbelow_(jv, n), exp_(vld_(s + jv) - m), vsplat_(0.0f));
                    vst_(s + jv, e);
                    ls[v] += e;
                }
            for (int v = 0; v < NV_; ++v)
                for (int t = 0; t < SP_ATT_VL; ++t) l += ls[v][t];
            lse[i0 + r] = m + logf(l);
            il[r] = 1.0f / l;
        }
        /* y rows = e rows V, j <= i, times 1 / l */
        for (int m0 = 0; m0 < rv; m0 += MR_) {
            const int mr = rv - m0 < MR_ ? rv - m0 : MR_;
            for (int m = 0; m < MR_; ++m) k0[m] = 0, k1[m] = i0 + m0 + m + 1;
            for (int d0 = 0; d0 < hs; d0 += NW_)
                tile_(y + (size_t)(i0 + m0) * ldy + d0, ldy, mr, hs - d0 < NW_ ? hs - d0 : NW_,
                      S + (size_t)m0 * Tp, (size_t)Tp, 1, vp + d0, (size_t)hsp, k0, k1, 1.0f,
                      il + m0, false);
        }
    }
}

void SP_ATT_CAT(sp_att_backward, SP_ATT_NAME)(float *dqkv, float *ws, const float *dy,
                                              const float *qkv, const float *y, const float *lse,
                                              const sp_att_geom *g) {
    const int T = g->T, hs = g->hs, Tp = g->Tp, hsp = g->hsp;
    const size_t ld3 = 3 * (size_t)g->C, ldy = (size_t)g->C, C = (size_t)g->C;
    float *kT = ws, *vT = kT + (size_t)hs * Tp, *kp = vT + (size_t)hs * Tp;
    float *qb = kp + (size_t)T * hsp, *dyb = qb + (size_t)R_ * hsp, *P = dyb + (size_t)R_ * hsp;
    float *dS = P + (size_t)R_ * Tp;
    pack_t_(kT, qkv + C, ld3, g);
    pack_t_(vT, qkv + 2 * C, ld3, g);
    pack_rows_(kp, (size_t)hsp, qkv + C, ld3, T, hs);
    for (int j = 0; j < T; ++j) /* dk, dv accumulate from 0 */
        memset(dqkv + (size_t)j * ld3 + C, 0, (size_t)hs * sizeof(float)),
            memset(dqkv + (size_t)j * ld3 + 2 * C, 0, (size_t)hs * sizeof(float));
    int k0[MR_], k1[MR_];
    for (int i0 = 0; i0 < T; i0 += R_) {
        const int rv = T - i0 < R_ ? T - i0 : R_, nj = i0 + rv;
        scores_(P, qkv + (size_t)i0 * ld3, ld3, kT, g, i0, rv, g->scale);
        scores_(dS, dy + (size_t)i0 * ldy, ldy, vT, g, i0, rv, 1.0f); /* dP */
        for (int r = 0; r < rv; ++r) {
            const int i = i0 + r, n = i + 1;
            const float *dyi = dy + (size_t)i * ldy, *yi = y + (size_t)i * ldy;
            float di = 0.0f;
            for (int d = 0; d < hs; ++d) di += dyi[d] * yi[d];
            float *p = P + (size_t)r * Tp, *ds = dS + (size_t)r * Tp;
            const float li = lse[i];
            for (int j0 = 0; j0 < n; j0 += NW_)
                for (int v = 0; v < NV_; ++v) {
                    const int jv = j0 + v * SP_ATT_VL;
                    const vf_ e = vsel_(vbelow_(jv, n), exp_(vld_(p + jv) - li), vsplat_(0.0f));
                    vst_(p + jv, e);
                    vst_(ds + jv, (e * (vld_(ds + jv) - di)) * g->scale);
                }
        }
        pack_rows_(qb, (size_t)hsp, qkv + (size_t)i0 * ld3, ld3, rv, hs);
        pack_rows_(dyb, (size_t)hsp, dy + (size_t)i0 * ldy, ldy, rv, hs);
        /* dq rows of the block = dS K over j <= i */
        for (int m0 = 0; m0 < rv; m0 += MR_) {
            const int mr = rv - m0 < MR_ ? rv - m0 : MR_;
            for (int m = 0; m < MR_; ++m) k0[m] = 0, k1[m] = i0 + m0 + m + 1;
            for (int d0 = 0; d0 < hs; d0 += NW_)
                tile_(dqkv + (size_t)(i0 + m0) * ld3 + d0, ld3, mr, hs - d0 < NW_ ? hs - d0 : NW_,
                      dS + (size_t)m0 * Tp, (size_t)Tp, 1, kp + d0, (size_t)hsp, k0, k1, 1.0f, NULL,
                      false);
        }
        /* dk_j += sum_i dS_ij q_i, dv_j += sum_i P_ij dy_i over the block's rows i >= j */
        for (int j0 = 0; j0 < nj; j0 += MR_) {
            const int mr = nj - j0 < MR_ ? nj - j0 : MR_;
            for (int m = 0; m < MR_; ++m)
                k0[m] = j0 + m - i0 > 0 ? j0 + m - i0 : 0, k1[m] = m < mr ? rv : 0;
            for (int d0 = 0; d0 < hs; d0 += NW_) {
                const int nc = hs - d0 < NW_ ? hs - d0 : NW_;
                tile_(dqkv + (size_t)j0 * ld3 + C + d0, ld3, mr, nc, dS + j0, 1, (size_t)Tp,
                      qb + d0, (size_t)hsp, k0, k1, 1.0f, NULL, true);
                tile_(dqkv + (size_t)j0 * ld3 + 2 * C + d0, ld3, mr, nc, P + j0, 1, (size_t)Tp,
                      dyb + d0, (size_t)hsp, k0, k1, 1.0f, NULL, true);
            }
        }
    }
}
