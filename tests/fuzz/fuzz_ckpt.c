/*
 * Fuzz target: checkpoint loading. The input is written to a file in the scratch directory
 * (/dev/shm), then read as `--resume` would: sp_ckpt_read_info, a model built from the spec
 * and input shape it names (batch 1, 64 MiB limit), sp_ckpt_load_params, and with an
 * /optimizer group an optimizer of the configuration it names and sp_ckpt_load_optimizer.
 */
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"
#include "optim/optim.h"
#include "shardprop/model.h"
#include "io/checkpoint.h"

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    sp_fuzz_setup();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char path[512];
    sp_fuzz_path(path, sizeof path, "ckpt.h5");
    if (!sp_fuzz_write(path, data, size)) abort();
    sp_ckpt_info info;
    if (sp_ckpt_read_info(path, &info) == SP_OK) {
        if (!info.spec || !info.loss || info.input_rank < 1 || info.input_rank > 4) abort();
        sp_model *m;
        if (sp_model_create(&m, info.spec, info.input_shape, info.input_rank, 1) == SP_OK) {
            (void)sp_ckpt_load_params(path, m);
            sp_optimizer *opt;
            if (info.has_optimizer &&
                sp_optim_create(&opt, &info.opt, sp_model_num_params(m)) == SP_OK) {
                (void)sp_ckpt_load_optimizer(path, m, opt);
                sp_optim_free(opt);
            }
            sp_model_free(m);
        }
    }
    sp_ckpt_info_free(&info);
    return 0;
}
