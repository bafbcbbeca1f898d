/*
 * Writes the checkpoint seeds of the fuzz_ckpt corpus (used by scripts/fuzz-seeds.sh):
 *   seed_ckpt DIR  ->  DIR/adam.h5 (dense model, Adam state, train state)
 *                      DIR/sgd-conv.h5 (conv model, SGD momentum state, train state)
 */
#include <stdio.h>

#include "optim/optim.h"
#include "shardprop/model.h"
#include "io/checkpoint.h"

static int write_(const char *dir, const char *name, const char *spec, const int64_t *shape,
                  int rank, sp_opt_kind kind) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    sp_model *m;
    sp_optimizer *opt;
    sp_opt_config oc = sp_opt_config_defaults(kind);
    if (sp_model_create(&m, spec, shape, rank, 2) != SP_OK) goto fail;
    sp_model_init_params(m, 5);
    if (sp_optim_create(&opt, &oc, sp_model_num_params(m)) != SP_OK) goto fail;
    for (int s = 0; s < sp_optim_num_states(opt); ++s)
        for (size_t i = 0; i < sp_model_num_params(m); ++i)
            sp_optim_state(opt, s)[i] = 0.001f * (float)(i + 1);
    sp_optim_set_step_count(opt, 3);
    sp_train_state ts = {.step = 3,
                         .epoch = 1,
                         .epoch_batch = 1,
                         .seed = 9,
                         .config = "model = x\nlr = 0.1\n",
                         .world_size = 2,
                         .threads = 1};
    if (sp_ckpt_write(path, m, opt, "xent", &ts) != SP_OK) goto fail;
    sp_optim_free(opt);
    sp_model_free(m);
    return 0;
fail:
    fprintf(stderr, "seed_ckpt: %s: %s\n", name, sp_last_error());
    return 1;
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: seed_ckpt DIR\n");
        return 2;
    }
    const int64_t vec[1] = {3}, img[3] = {1, 4, 4};
    return write_(argv[1], "adam.h5", "dense:4,relu,dense:3", vec, 1, SP_OPT_ADAM) |
           write_(argv[1], "sgd-conv.h5", "conv2d:2:3:pad=1,relu,maxpool:2,flatten,dense:3", img, 3,
                  SP_OPT_SGD);
}
