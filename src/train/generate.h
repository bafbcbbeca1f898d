/*
 * Sampling text from a language model (`shardprop generate`): the model reads the last T tokens
 * (T its input length), gives the logits of the next token at the last position, and one token
 * is drawn from softmax(logits / temperature), among the top_k largest only when top_k > 0;
 * temperature 0 takes the argmax (the first maximum), as greedy decoding does.
 *
 * Draw k (0, 1, ...) uses the counter-based uniform of (seed, SP_STREAM_GENERATE, k): the same
 * seed gives the same text, for any number of threads (the forward pass is bitwise
 * thread-invariant). A context shorter than T is padded with token 0 after its end: the
 * attention is causal, so the padding changes nothing at the positions before it.
 */
#ifndef SP_TRAIN_GENERATE_H
#define SP_TRAIN_GENERATE_H

#include <stdint.h>

#include "shardprop/model.h"
#include "shardprop/status.h"

typedef struct sp_gen_config {
    int64_t tokens;     /* how many to generate */
    double temperature; /* >= 0; 0: greedy */
    int top_k;          /* 0: the whole vocabulary */
    uint64_t seed;
} sp_gen_config;

/* Each token as it is drawn (for printing as it comes). */
typedef void (*sp_gen_emit_fn)(void *user, int32_t token);

/*
 * Continue prompt[0, n) (n >= 1 token ids in [0, V)) by cfg->tokens tokens, written to
 * out[0, cfg->tokens) and passed to emit (may be NULL) one by one. m: a language model (input
 * (T) token ids, output (T, V) logits) with max_batch >= 1. Not collective.
 */
sp_status sp_generate(sp_model *m, const int32_t *prompt, int64_t n, const sp_gen_config *cfg,
                      int32_t *out, sp_gen_emit_fn emit, void *user);

/* The next token from the logits z[0, V) at draw k (the rule above; scratch: V floats and V
 * ints). */
int32_t sp_gen_pick(const float *z, int V, const sp_gen_config *cfg, int64_t k, float *prob,
                    int32_t *index);

#endif
