/* Sampling text from a language model (train/generate.h). */
#include "train/generate.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "util/rng.h"
#include "util/status.h"

/* index[0, k) = the k largest logits, largest first (equal ones by index: a pure function of
 * z), by k passes of selection: top_k is small. */
static void top_k_(const float *z, int V, int k, int32_t *index) {
    for (int j = 0; j < V; ++j) index[j] = j;
    for (int c = 0; c < k; ++c) {
        int best = c;
        for (int j = c + 1; j < V; ++j)
            if (z[index[j]] > z[index[best]] ||
                (z[index[j]] == z[index[best]] && index[j] < index[best]))
                best = j;
        const int32_t t = index[c];
        index[c] = index[best], index[best] = t;
    }
}

int32_t sp_gen_pick(const float *z, int V, const sp_gen_config *cfg, int64_t k, float *prob,
                    int32_t *index) {
    if (cfg->temperature <= 0) { /* greedy: the first maximum */
        int32_t arg = 0;
        for (int j = 1; j < V; ++j)
            if (z[j] > z[arg]) arg = j;
        return arg;
    }
    const int n = cfg->top_k > 0 && cfg->top_k < V ? cfg->top_k : V;
    if (n < V)
        top_k_(z, V, n, index);
    else
        for (int j = 0; j < V; ++j) index[j] = j;
    /* softmax(z / temperature) over the candidates, in double around the largest */
    double zmax = -INFINITY, sum = 0;
    for (int c = 0; c < n; ++c) zmax = fmax(zmax, (double)z[index[c]]);
    for (int c = 0; c < n; ++c) {
        const double p = exp(((double)z[index[c]] - zmax) / cfg->temperature);
        prob[c] = (float)p;
        sum += p;
    }
    /* the candidate whose cumulative mass first passes u * sum */
    const double u = (double)sp_rng_uniform(cfg->seed, SP_STREAM_GENERATE, (uint64_t)k) * sum;
    double acc = 0;
    for (int c = 0; c < n; ++c) {
        acc += prob[c];
        if (u < acc) return index[c];
    }
    return index[n - 1];
}

sp_status sp_generate(sp_model *m, const int32_t *prompt, int64_t n, const sp_gen_config *cfg,
                      int32_t *out, sp_gen_emit_fn emit, void *user) {
    const int T = (int)sp_model_input_size(m);
    const size_t out_size = sp_model_output_size(m);
    if (sp_model_input_rank(m) != 1 || out_size % (size_t)T)
        return SP_FAIL(SP_ERR_ARG, "generate: the model is not a language model (input (T) token "
                                   "ids, output (T, V) logits)");
    const int V = (int)(out_size / (size_t)T);
    if (n < 1) return SP_FAIL(SP_ERR_ARG, "generate: the prompt is empty");
    for (int64_t i = 0; i < n; ++i)
        if (prompt[i] < 0 || prompt[i] >= V)
            return SP_FAIL(SP_ERR_ARG,
                           "generate: prompt token %lld is %d, not below the model's "
                           "vocabulary of %d",
                           (long long)i, (int)prompt[i], V);
    const int64_t total = n + cfg->tokens;
    int32_t *seq = malloc((size_t)total * sizeof *seq);
    float *x = calloc((size_t)T, sizeof *x), *prob = malloc((size_t)V * sizeof *prob);
    int32_t *index = malloc((size_t)V * sizeof *index);
    sp_status st = SP_OK;
    if (!seq || !x || !prob || !index) st = SP_FAIL(SP_ERR_NOMEM, "generate: out of memory");
    if (st == SP_OK) memcpy(seq, prompt, (size_t)n * sizeof *seq);
    const sp_step_ctx ctx = {.training = false};
    for (int64_t k = 0; st == SP_OK && k < cfg->tokens; ++k) {
        const int64_t len = n + k, from = len > T ? len - T : 0, L = len - from;
        for (int64_t i = 0; i < T; ++i) x[i] = i < L ? (float)seq[from + i] : 0.0f;
        const float *z = sp_model_forward(m, x, 1, &ctx); /* (T, V) */
        st = sp_model_status(m);
        if (st != SP_OK) break;
        const int32_t tok = sp_gen_pick(z + (size_t)(L - 1) * V, V, cfg, k, prob, index);
        seq[len] = out[k] = tok;
        if (emit) emit(user, tok);
    }
    free(seq);
    free(x);
    free(prob);
    free(index);
    return st;
}
