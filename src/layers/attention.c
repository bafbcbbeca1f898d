/* Causal multi-head self-attention (the core between GPT-2's q/k/v and output projections).
 *
 * Each (sample, head) pair is independent: OpenMP splits the B*H pairs over the threads, and a
 * pair's outputs (its columns of y and dqkv, its row of lse) are written by its thread alone,
 * each value by the same arithmetic (attention_pair.h) whatever the thread count or the ISA.
 * Work per pair: forward 2 hs T (T+1) / 2 multiply-adds (S = q k^T and P v over the causal
 * half), backward 5 hs T (T+1) / 2 (S again, dP = dy v^T, dq, dk, dv), plus one exp per causal
 * entry in each pass. Nothing of size T x T: a pair's scratch holds its packed k and v and one
 * block of SP_ATT_R query rows of scores, 2 hs Tp + T hsp + 2 R hsp + 2 R Tp floats (Tp, hsp:
 * T, hs rounded up to 16; R = 48): 3.4 MiB for B=8 T=128 C=128 H=4, 6.4 MiB for B=4 T=256
 * C=256 H=8, about twice qkv. */
#include <math.h>

#include "kernels/isa.h"
#include "layers/attention_simd.h"
#include "layers/layers.h"

#define SP_ATT_VL   4
#define SP_ATT_MR   2
#define SP_ATT_NAME portable
#include "layers/attention_pair.h"

static size_t round16_(size_t n) {
    return (n + 15) / 16 * 16;
}

static void geom_(sp_att_geom *g, int T, int C, int H) {
    g->T = T, g->C = C, g->H = H, g->hs = C / H;
    g->Tp = (T + SP_ATT_NW - 1) / SP_ATT_NW * SP_ATT_NW;
    g->hsp = (g->hs + SP_ATT_NW - 1) / SP_ATT_NW * SP_ATT_NW;
    g->scale = (float)(1.0 / sqrt((double)g->hs));
    /* backward's layout (attention_pair.h); forward's is smaller */
    const size_t hs = (size_t)g->hs, Tp = (size_t)g->Tp, hsp = (size_t)g->hsp, R = SP_ATT_R;
    g->pair = round16_(2 * hs * Tp + (size_t)T * hsp + 2 * R * hsp + 2 * R * Tp);
}

size_t sp_attention_scratch_floats(int B, int T, int C, int H) {
    if (B <= 0 || T <= 0 || C <= 0 || H <= 0) return 0;
    sp_att_geom g;
    geom_(&g, T, C, H);
    return (size_t)B * (size_t)H * g.pair;
}

void sp_attention_forward(float *y, float *lse, float *scratch, const float *qkv, int B, int T,
                          int C, int H) {
    if (B <= 0 || T <= 0) return;
    sp_att_geom g;
    geom_(&g, T, C, H);
    sp_att_forward_fn f = sp_att_forward_portable;
#if defined(__x86_64__) && defined(__GNUC__)
    const sp_isa isa = sp_isa_active();
    if (isa == SP_ISA_AVX512) f = sp_att_forward_avx512;
    if (isa == SP_ISA_AVX2) f = sp_att_forward_avx2;
#endif
    const int np = B * H;
#pragma omp parallel for schedule(static)
    for (int p = 0; p < np; ++p) {
        const size_t b = (size_t)(p / H), h = (size_t)(p % H);
        f(y + b * T * C + h * g.hs, lse + (size_t)p * T, scratch + (size_t)p * g.pair,
          qkv + b * T * 3 * C + h * g.hs, &g);
    }
}

void sp_attention_backward(float *dqkv, float *scratch, const float *dy, const float *qkv,
                           const float *y, const float *lse, int B, int T, int C, int H) {
    if (B <= 0 || T <= 0) return;
    sp_att_geom g;
    geom_(&g, T, C, H);
    sp_att_backward_fn f = sp_att_backward_portable;
#if defined(__x86_64__) && defined(__GNUC__)
    const sp_isa isa = sp_isa_active();
    if (isa == SP_ISA_AVX512) f = sp_att_backward_avx512;
    if (isa == SP_ISA_AVX2) f = sp_att_backward_avx2;
#endif
    const int np = B * H;
#pragma omp parallel for schedule(static)
    for (int p = 0; p < np; ++p) {
        const size_t b = (size_t)(p / H), h = (size_t)(p % H);
        const size_t o1 = b * T * C + h * g.hs, o3 = b * T * 3 * C + h * g.hs;
        f(dqkv + o3, scratch + (size_t)p * g.pair, dy + o1, qkv + o3, y + o1, lse + (size_t)p * T,
          &g);
    }
}
