/*
 * predict: a trained model applied to every sample of a data set (labels not needed), the
 * results written to an HDF5 file in input order.
 *
 * Output file (written by rank 0 to "<out>.tmp.<pid>", renamed into place when complete; on any
 * failure it is removed, so no partial output is left):
 *   classification model (loss xent):
 *     probs  float32 (N, C)  softmax of the logits, computed in double, rounded to float32
 *     label  int32   (N,)    argmax of the logits (the first maximum): the class eval counts as
 *                            predicted; attribute classes = C
 *   regression model (loss mse):
 *     outputs float32 (N, T) the model's outputs
 *   root attributes: checkpoint, spec, data (strings): where the rows came from.
 * Row i of every dataset is sample i of the input file.
 *
 * Distribution: the samples are walked in global batches of `batch` in file order; rank r of P
 * runs the model on its contiguous slice of each batch (sp_rank_slice), rank 0 gathers the raw
 * outputs of the batch (at most batch * C floats in memory) and writes the batch's rows. Every
 * row is computed by the same arithmetic whatever P and the thread count, so the file is the same
 * bits for any layout.
 */
#ifndef SP_TRAIN_PREDICT_H
#define SP_TRAIN_PREDICT_H

#include <stdbool.h>
#include <stdint.h>

#include "data/data.h"
#include "comm/comm.h"
#include "shardprop/model.h"
#include "shardprop/status.h"

/*
 * Predict every sample of `ds` with `m` (built for max_batch >= min(ceil(batch / P), N)) and write
 * `out_path` as above. `ds` is borrowed (a loader over it is created and freed here); it may be
 * unlabeled. ckpt_path is recorded in the file. (collective: every rank calls it with the same
 * arguments; local failures are agreed before each collective step; only rank 0 writes.)
 */
sp_status sp_predict_write(sp_model *m, sp_dataset *ds, int64_t batch, sp_comm *c, bool xent,
                           const char *out_path, const char *ckpt_path);

#endif
