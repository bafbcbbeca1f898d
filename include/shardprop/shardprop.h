/*
 * shardprop/shardprop.h — the whole public API of the shardprop library in one include.
 *
 * A complete single-process training loop (scripts/examples/train_api.c is this, with error
 * handling): open an HDF5 data file, build a model, and train it with softmax cross-entropy
 * and Adam.
 *
 *   #include <shardprop/shardprop.h>
 *
 *   sp_dataset *ds;
 *   sp_dataset_open(&ds, "train.h5", NULL, NULL);           // X (N, F), y (N) labels
 *   const sp_dataset_info *info = sp_dataset_get_info(ds);
 *   const int B = 64, C = (int)info->classes;
 *
 *   sp_model *m;
 *   sp_model_create(&m, "dense:64,relu,dense:3", info->sample_shape, info->sample_rank, B);
 *   sp_model_init_params(m, 1);
 *   sp_opt_config oc = sp_opt_config_defaults(SP_OPT_ADAM);
 *   sp_optimizer *opt;
 *   sp_optim_create(&opt, &oc, sp_model_num_params(m));
 *
 *   sp_loader *ld;
 *   sp_loader_config lc = {.batch = B, .rank = 0, .nranks = 1, .seed = 1, .shuffle = true};
 *   sp_loader_create(&ld, ds, &lc);
 *   float *dz = malloc(sizeof(float) * B * C);               // d loss / d logits (B, C)
 *   double *rows = malloc(sizeof(double) * B);               // loss scratch (B)
 *   int64_t step = 0;
 *   for (int64_t e = 0; e < 5; ++e) {
 *       sp_loader_start_epoch(ld, e, 0);
 *       sp_batch b;
 *       bool done = false;
 *       while (sp_loader_next(ld, &b, &done) == SP_OK && !done) {
 *           sp_step_ctx ctx = {.training = true, .seed = 1, .step = step, .sample_ids = b.ids};
 *           const float *z = sp_model_forward(m, b.x, (int)b.count, &ctx);
 *           double loss; int64_t correct;
 *           sp_xent_loss(&loss, &correct, dz, rows, z, b.labels, (int)b.count, C,
 *                        1.0f / (float)b.global_count);
 *           sp_model_zero_grads(m);
 *           sp_model_backward(m, dz, (int)b.count, NULL, NULL);
 *           sp_optim_step(opt, sp_model_params(m), sp_model_grads(m), 1e-3f);
 *           ++step;
 *       }
 *   }
 *   free(rows); free(dz);
 *   sp_loader_free(ld); sp_optim_free(opt); sp_model_free(m); sp_dataset_close(ds);
 *
 * Build against an installed shardprop:
 *   CMake:       find_package(shardprop REQUIRED)
 *                target_link_libraries(app PRIVATE shardprop::shardprop)
 *   pkg-config:  cc app.c $(pkg-config --cflags --libs shardprop)
 *
 * Conventions of every public header:
 *   - Functions that can fail return sp_status (SP_OK = 0) and leave a one-line message for
 *     sp_last_error() (status.h). Creators take `T **out` and set *out = NULL on failure.
 *   - Whatever a *_create or *_open returns belongs to the caller and is released by the
 *     matching *_free / *_close (NULL is accepted). Pointers returned by getters are owned by
 *     the object and live as long as it (or as documented, e.g. until the next call).
 *   - Shapes are written (rows, columns) in row-major float32, PyTorch layouts.
 *   - Nothing in these headers is collective or calls MPI: a single-process program needs no
 *     MPI_Init. Data-parallel training over MPI (gradient allreduce, checkpoints, the command
 *     line) is what the `shardprop` executable adds; it is not part of this API.
 *   - Results are bitwise identical for any number of OpenMP threads.
 *
 * Headers: status.h (errors), model.h (the network), data.h (HDF5 files and batches),
 * loss.h (cross-entropy, MSE), optim.h (SGD, Adam, AdamW).
 */
#ifndef SHARDPROP_SHARDPROP_H
#define SHARDPROP_SHARDPROP_H

#include "shardprop/status.h"
#include "shardprop/model.h"
#include "shardprop/data.h"
#include "shardprop/loss.h"
#include "shardprop/optim.h"

#endif
