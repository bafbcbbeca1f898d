/*
 * The predictions file that `shardprop predict` writes (layout: train/predict.h), written by one
 * process through the atomic writer: nothing is visible at `path` until sp_pred_file_commit,
 * and an aborted file leaves nothing behind.
 */
#ifndef SP_IO_PREDICTIONS_H
#define SP_IO_PREDICTIONS_H

#include <stdbool.h>
#include <stdint.h>

#include "shardprop/status.h"

typedef struct sp_pred_file sp_pred_file;

/* A file for n rows of k values: probs float32 (n, k) and label int32 (n,) with attribute
 * classes = k when xent, else outputs float32 (n, k); root string attributes checkpoint, spec
 * and data. On failure *out is NULL and nothing is left on disk. */
sp_status sp_pred_file_create(sp_pred_file **out, const char *path, int64_t n, int k, bool xent,
                              const char *ckpt, const char *spec, const char *data);
/* Rows [first, first + count): main (count, k) probs or outputs, label (count) when xent. */
sp_status sp_pred_file_write(sp_pred_file *f, int64_t first, int64_t count, const float *main,
                             const int32_t *label);
/* Finish the file and move it into place; frees f whatever the outcome. */
sp_status sp_pred_file_commit(sp_pred_file *f);
/* Remove the unfinished file and free f (NULL: nothing). */
void sp_pred_file_abort(sp_pred_file *f);

#endif
