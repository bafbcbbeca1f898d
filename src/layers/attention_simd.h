/* Private to src/layers/: the causal attention core of one (sample, head) pair, compiled once per
 * instruction set from attention_pair.h (see there for the arithmetic every build shares bit for
 * bit, and for the layout of the pair's scratch). */
#ifndef SP_LAYERS_ATTENTION_SIMD_H
#define SP_LAYERS_ATTENTION_SIMD_H

#include <stddef.h>

/* Columns of a register tile (floats), and the padding of every packed operand: fixed for every
 * ISA, so that the scratch size depends on the sizes only. */
#define SP_ATT_NW 16
/* Query rows per block: the rows whose scores, probabilities and their blame are held at once. */
#define SP_ATT_R 48

typedef struct sp_att_geom {
    int T, C, H, hs; /* positions, width, heads, head size C / H */
    int Tp, hsp;     /* T and hs rounded up to SP_ATT_NW */
    float scale;     /* 1 / sqrt(hs) */
    size_t pair;     /* floats of scratch of one pair */
} sp_att_geom;

/* One pair: qkv points at the pair's q (row stride 3C; its k and v follow at +C and +2C), y and
 * dy at the pair's columns of y (row stride C), lse at the pair's T values, dqkv as qkv, ws at
 * the pair's g->pair floats of scratch. */
typedef void (*sp_att_forward_fn)(float *y, float *lse, float *ws, const float *qkv,
                                  const sp_att_geom *g);
typedef void (*sp_att_backward_fn)(float *dqkv, float *ws, const float *dy, const float *qkv,
                                   const float *y, const float *lse, const sp_att_geom *g);

void sp_att_forward_portable(float *y, float *lse, float *ws, const float *qkv,
                             const sp_att_geom *g);
void sp_att_backward_portable(float *dqkv, float *ws, const float *dy, const float *qkv,
                              const float *y, const float *lse, const sp_att_geom *g);
#if defined(__x86_64__) && defined(__GNUC__)
/* Built with -mavx2 / -mavx512f -mavx512vl; call only when the CPU has them. */
void sp_att_forward_avx2(float *y, float *lse, float *ws, const float *qkv, const sp_att_geom *g);
void sp_att_backward_avx2(float *dqkv, float *ws, const float *dy, const float *qkv, const float *y,
                          const float *lse, const sp_att_geom *g);
void sp_att_forward_avx512(float *y, float *lse, float *ws, const float *qkv, const sp_att_geom *g);
void sp_att_backward_avx512(float *dqkv, float *ws, const float *dy, const float *qkv,
                            const float *y, const float *lse, const sp_att_geom *g);
#endif

#endif
