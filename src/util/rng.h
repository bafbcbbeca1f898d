/*
 * Counter-based random numbers: every draw is a pure function of
 * (seed, stream, counter), so a value never depends on ranks, threads,
 * or on how many draws came before it. Resuming a run needs no RNG state.
 *
 *   stream: what the numbers are for (init of layer i, dropout of layer i at step t, epoch order)
 *   counter: which number (element index, sample id * size + element, position)
 */
#ifndef SP_UTIL_RNG_H
#define SP_UTIL_RNG_H

#include <stdint.h>

/* splitmix64 finalizer: a bijective 64-bit mix with good avalanche. */
static inline uint64_t sp_mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* 64 random bits for (seed, stream, counter). */
static inline uint64_t sp_rng_u64(uint64_t seed, uint64_t stream, uint64_t counter) {
    uint64_t k = sp_mix64(seed ^ 0x9e3779b97f4a7c15ULL);
    k = sp_mix64(k ^ (stream * 0xd1b54a32d192ed03ULL + 0x8cb92ba72f3d8dd7ULL));
    return sp_mix64(k + counter * 0x9e3779b97f4a7c15ULL);
}

/* Uniform in [0, 1) with 24 random bits (exactly representable as float). */
static inline float sp_rng_uniform(uint64_t seed, uint64_t stream, uint64_t counter) {
    return (float)(sp_rng_u64(seed, stream, counter) >> 40) * (1.0f / 16777216.0f);
}

/* Uniform integer in [0, n) without modulo bias (Lemire's multiply-shift, 64-bit). */
static inline uint64_t sp_rng_below(uint64_t seed, uint64_t stream, uint64_t counter, uint64_t n) {
    /* 128-bit product of a 64-bit draw and n; the high word is the result. The tiny bias
     * (n / 2^64) is far below anything measurable for dataset sizes. */
    __extension__ typedef unsigned __int128 u128;
    u128 p = (u128)sp_rng_u64(seed, stream, counter) * n;
    return (uint64_t)(p >> 64);
}

/* Stream identifiers, so that different uses of one seed never share numbers. */
enum {
    SP_STREAM_INIT = 1,    /* + layer index << 8 */
    SP_STREAM_DROPOUT = 2, /* + layer index << 8, step in the counter's high bits */
    SP_STREAM_ORDER = 3,   /* + epoch << 8 */
    SP_STREAM_SYNTH = 4,
    SP_STREAM_SPLIT = 5,
    SP_STREAM_GENERATE = 6,    /* counter: the index of the generated token */
    SP_STREAM_AUGMENT = 7,     /* + epoch << 8; counter: sample id and draw (data/augment.h) */
    SP_STREAM_ORDER_SHARDS = 8 /* + epoch << 8: --shuffle shards (data/order.c) */
};

#endif
