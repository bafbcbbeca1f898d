/* `shardprop generate`: text sampled from a trained language model. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/commands.h"
#include "cli/common.h"
#include "train/eval.h"
#include "train/generate.h"
#include "util/status.h"

/* Byte-level tokens are bytes: each is printed as it comes. */
static void print_token_(void *user, int32_t tok) {
    (void)user;
    putchar(tok);
    fflush(stdout);
}

int sp_cmd_generate(int argc, char **argv) {
    const char *ckpt = NULL, *prompt = "\n";
    int64_t tokens = 256, top_k = 0, seed = 1, threads = 0;
    double temperature = 1.0;
    sp_arg_spec specs[] = {
        {"checkpoint", SP_ARG_STRING, &ckpt, "MODEL.h5",
         "a trained language model: a checkpoint or a file written by `train --out`",
         .required = true},
        {"prompt", SP_ARG_STRING, &prompt, "TEXT",
         "the text to continue, as bytes (default: a newline)", .required = false},
        {"tokens", SP_ARG_INT, &tokens, "N", "tokens to generate (default 256)", .imin = 0,
         .imax = 1 << 24},
        {"temperature", SP_ARG_DOUBLE, &temperature, "T",
         "sample from softmax(logits / T); 0 takes the most likely token (default 1)", .dmin = 0,
         .dmax = 1e6},
        {"top-k", SP_ARG_INT, &top_k, "K",
         "sample among the K most likely tokens only (default 0: all)", .imin = 0, .imax = 1 << 24},
        {"seed", SP_ARG_INT, &seed, "S",
         "random seed: the same seed gives the same text "
         "(default 1)",
         .imin = 0, .imax = INT64_MAX},
        {"threads", SP_ARG_INT, &threads, "T",
         "OpenMP threads (default: OMP_NUM_THREADS, else the cores available)", .imin = 0,
         .imax = 4096},
    };
    sp_args a = {
        .command = "shardprop generate",
        .description =
            "Continue a prompt with text sampled from a language model trained on byte-level\n"
            "tokens (`shardprop import text`). Prints the continuation (not the prompt) as it\n"
            "is drawn. The model sees the last T tokens (T: its --seq-len); each token is drawn\n"
            "from the softmax of the last position's logits divided by the temperature, among\n"
            "the top-k only with --top-k. The same seed gives the same text for any number of\n"
            "threads; under mpirun rank 0 prints.",
        .specs = specs,
        .nspecs = (int)(sizeof specs / sizeof specs[0])};
    sp_comm *comm = NULL;
    const int early = sp_cli_mpi_start(&a, argc, argv, &comm);
    if (early >= 0) return early;
    const int rank = sp_comm_rank(comm);
    sp_set_threads(threads);

    sp_model *m = NULL;
    bool xent = false;
    sp_status st = sp_eval_load_model(ckpt, 1, &m, &xent);
    const int64_t n = (int64_t)strlen(prompt);
    int32_t *ids = malloc(((size_t)n + 1) * sizeof *ids);
    int32_t *out = malloc(((size_t)tokens + 1) * sizeof *out);
    if (st == SP_OK && (!ids || !out)) st = SP_FAIL(SP_ERR_NOMEM, "out of memory");
    if (st == SP_OK && n == 0) st = SP_FAIL(SP_ERR_ARG, "--prompt is empty");
    for (int64_t i = 0; st == SP_OK && i < n; ++i) ids[i] = (unsigned char)prompt[i];
    const sp_gen_config gc = {
        .tokens = tokens, .temperature = temperature, .top_k = (int)top_k, .seed = (uint64_t)seed};
    /* every rank draws the same tokens; rank 0 prints them */
    if (st == SP_OK) st = sp_generate(m, ids, n, &gc, out, rank == 0 ? print_token_ : NULL, NULL);
    if (st == SP_OK && rank == 0) {
        putchar('\n');
        fflush(stdout);
    }
    free(ids);
    free(out);
    sp_model_free(m);
    return sp_cli_mpi_finish(a.command, comm, st);
}
