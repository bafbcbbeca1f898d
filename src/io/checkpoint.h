/*
 * Checkpoint files: the model, the optimizer state and the training position in one HDF5 file,
 * written atomically and safely on shared scratch file systems, and read back with checks.
 *
 * Nothing here is collective and nothing here knows MPI: the trainer decides who writes (rank 0;
 * parameters and optimizer state are identical on every rank) and when (all ranks agree on the
 * step). Every HDF5 call sequence runs under sp_h5_lock (a data loader thread uses HDF5 too).
 *
 * File layout (format_version 1). Strings are scalar fixed-length NUL-terminated UTF-8
 * attributes (h5py returns bytes; variable-length strings are refused on reading, since libhdf5
 * may return them unterminated from a damaged file); floats are float32 little-endian,
 * contiguous, uncompressed.
 *
 *   /model                         attrs: spec (str), input_shape (int64[rank]), loss (str),
 *                                         format_version (int32, = 1)
 *   /model/params/<i>/weight       float32, PyTorch layout: dense (out, in), conv2d (out, in, k, k)
 *   /model/params/<i>/bias         float32 (out)
 *                                  <i> = the layer's index in the spec, only for layers with
 *                                  parameters; each group has the attr layer (str): "dense", ...
 *   /optimizer                     attrs: type ("sgd" | "adam" | "adamw"), momentum (float32),
 *                                         nesterov (int32 0/1), weight_decay, beta1, beta2, eps
 *                                         (float32; all six always written, the ones the type
 *                                         does not use hold the torch defaults), step (int64)
 *   /optimizer/state/<i>/weight/<name>   float32, same shape as /model/params/<i>/weight
 *   /optimizer/state/<i>/bias/<name>     <name> = momentum_buffer (SGD with momentum > 0) or
 *                                        exp_avg and exp_avg_sq (Adam, AdamW); no
 *                                        /optimizer/state group when the optimizer has no state
 *   /train                         attrs: step, epoch, epoch_batch (int64), seed (uint64),
 *                                         config (str), shardprop_version (str),
 *                                         world_size, threads (int32); optional, all four or
 *                                         none: best_metric (str), best_value (float64),
 *                                         best_epoch, epochs_since_best (int64)
 *
 * /optimizer is absent when written without an optimizer, /train when written without a train
 * state: a model-only file (e.g. for predict) is still a checkpoint.
 *
 * Writing is atomic: the file is built in memory (HDF5 core driver, no file system access), then
 * written with write(2) into a temporary file that this process created in the target directory
 * with O_CREAT | O_EXCL | O_NOFOLLOW, mode 0666 filtered by the umask, and an unpredictable name
 * ".<target>.tmp-<12 random [A-Za-z0-9]>"; then fsync, rename over the target, fsync the
 * directory. All of it happens relative to one open directory descriptor (openat/renameat), so a
 * directory swapped during the write cannot redirect it. A crash at any moment leaves either the
 * old file or the complete new one under the target name (and maybe a temporary file).
 */
#ifndef SP_IO_CHECKPOINT_H
#define SP_IO_CHECKPOINT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "optim/optim.h"
#include "shardprop/model.h"
#include "shardprop/status.h"

#define SP_CKPT_FORMAT_VERSION 1

/* Where a run stands, saved in /train. */
typedef struct sp_train_state {
    int64_t step;            /* optimizer steps done */
    int64_t epoch;           /* current epoch (from 0) */
    int64_t epoch_batch;     /* global batches of `epoch` already done */
    uint64_t seed;           /* run seed */
    const char *config;      /* the full resolved configuration, "key = value\n" lines; NULL = "" */
    int world_size, threads; /* of the run that wrote it, for information only */
} sp_train_state;

/* The best validation so far (--keep-best, --early-stop), saved in /train next to the position
 * when given; absent from files older than it and from runs without those flags. */
typedef struct sp_ckpt_best {
    const char *metric;        /* "val_loss" | "val_accuracy" */
    double value;              /* NaN before the first finite value */
    int64_t epoch;             /* 1-based; 0: none yet */
    int64_t epochs_since_best; /* complete epochs validated since `epoch` */
} sp_ckpt_best;

/*
 * Write a complete checkpoint to `path`, atomically (see the top of this file). `opt` NULL: no
 * /optimizer group; `ts` NULL: no /train group; `loss_name` NULL: "". The optimizer must have
 * been created for sp_model_num_params(m) parameters.
 * Refuses (SP_ERR_IO) when `path` exists as a symbolic link or as anything but a regular file.
 * On failure, nothing is left behind, an existing `path` is untouched, and the status is
 * SP_ERR_IO with one line naming the path and the errno text.
 * Memory: the file is built in memory, then copied once: about twice the file size at the peak.
 */
sp_status sp_ckpt_write(const char *path, const sp_model *m, const sp_optimizer *opt,
                        const char *loss_name, const sp_train_state *ts);

/*
 * In the checkpoint directory `dir` (created with its parents if missing, mode 0777 & ~umask;
 * SP_ERR_IO if it is not a directory):
 *   1. remove temporary files left by killed writers: names ".<name>.tmp-<12 chars>" for <name>
 *      "latest", "best.h5" or a step file, regular files owned by this user (best effort; one
 *      writer per directory is assumed, as for the rest of this function);
 *   2. write dir/step_<step, 8 digits>.h5 atomically as sp_ckpt_write;
 *   3. replace dir/latest atomically (temporary file + rename + directory fsync); it holds the
 *      file name and a newline: "step_00000042.h5\n";
 *   4. keep <= 0: keep every checkpoint; otherwise delete step files beyond the `keep` newest:
 *      the file just written always stays, then the others with the largest steps.
 * Refuses (SP_ERR_IO, before writing anything) when dir/latest or the step file exists as a
 * symbolic link or a non-regular file: it never writes through or replaces a planted link.
 * written_path (may be NULL) receives "dir/step_XXXXXXXX.h5" (truncated to cap).
 * A failure in 2 or 3 leaves the previous checkpoint and `latest` intact. A failure in 4 is
 * reported (SP_ERR_IO) although the new checkpoint is complete and `latest` names it.
 */
sp_status sp_ckpt_save(const char *dir, int64_t step, int keep, const sp_model *m,
                       const sp_optimizer *opt, const char *loss_name, const sp_train_state *ts,
                       char *written_path, size_t cap);

/* sp_ckpt_save that also records `best` in /train (best NULL: exactly sp_ckpt_save; needs ts). */
sp_status sp_ckpt_save_tracked(const char *dir, int64_t step, int keep, const sp_model *m,
                               const sp_optimizer *opt, const char *loss_name,
                               const sp_train_state *ts, const sp_ckpt_best *best,
                               char *written_path, size_t cap);

/* The name of the best checkpoint in a checkpoint directory (--keep-best). */
#define SP_CKPT_BEST_NAME "best.h5"

/*
 * Write dir/best.h5 (dir created with its parents if missing, like sp_ckpt_save) atomically as
 * sp_ckpt_write, with `best` (may be NULL) recorded in /train, after removing temporary files
 * left by killed writers (as sp_ckpt_save).
 * Neither `latest` nor the step files change, and sp_ckpt_save's pruning never removes it.
 * written_path (may be NULL) receives "dir/best.h5" (truncated to cap).
 */
sp_status sp_ckpt_save_best(const char *dir, const sp_model *m, const sp_optimizer *opt,
                            const char *loss_name, const sp_train_state *ts,
                            const sp_ckpt_best *best, char *written_path, size_t cap);

/*
 * The newest complete checkpoint of `dir`: reads dir/latest and writes "dir/<name>" into `path`
 * (cap bytes). *found = false (and SP_OK) when `dir` or dir/latest does not exist. Errors
 * (SP_ERR_IO / SP_ERR_DATA): latest is a symbolic link or not a regular file, its content is not a
 * plain file name, the file it names is missing, not a regular file, unreadable or not HDF5, or
 * the path does not fit in cap.
 */
sp_status sp_ckpt_latest(const char *dir, char *path, size_t cap, bool *found);

/* What a checkpoint holds, besides the arrays. Strings are owned: sp_ckpt_info_free. */
typedef struct sp_ckpt_info {
    int format_version;
    char *spec;
    int input_rank; /* 1..4 */
    int64_t input_shape[4];
    char *loss;
    bool has_optimizer;
    sp_opt_config opt; /* when has_optimizer */
    int64_t opt_step;  /* optimizer step count, when has_optimizer */
    bool has_train;
    sp_train_state train; /* when has_train; train.config points into this struct */
    char *version;        /* shardprop_version, when has_train */
    bool has_best;        /* /train records the best so far */
    sp_ckpt_best best;    /* when has_best; best.metric points into this struct */
} sp_ckpt_info;

/*
 * Open `path` and read its attributes into *info (zeroed first; free with sp_ckpt_info_free even
 * on failure). Validates: the file exists and is HDF5, /model exists with every attribute of the
 * right type, format_version is 1, and when /optimizer or /train exist, their attributes too.
 * SP_ERR_IO (missing, unreadable) or SP_ERR_DATA (not HDF5, not a checkpoint, bad attribute), one
 * line naming the file and the object.
 */
sp_status sp_ckpt_read_info(const char *path, sp_ckpt_info *info);

/* Release the strings of *info (safe on a zeroed or partially filled struct). */
void sp_ckpt_info_free(sp_ckpt_info *info);

/*
 * Load the parameters of `path` into m's parameter slab. Refuses (SP_ERR_SPEC) when the spec
 * (compared layer by layer after parsing: spacing and defaults written out do not matter) or the
 * input shape differ from the model's, naming both; (SP_ERR_DATA) when a dataset is missing, not
 * float, of another shape (naming the dataset and both shapes), or holds NaN/Inf. All or nothing:
 * on failure the model's parameters are unchanged.
 */
sp_status sp_ckpt_load_params(const char *path, sp_model *m);

/*
 * Load the optimizer state of `path` into `opt` (created for model m's parameters): the state
 * arrays and the step count. The type and the hyper-parameters the type uses (SGD: momentum,
 * nesterov, weight_decay; Adam/AdamW: weight_decay, beta1, beta2, eps) must equal opt's config
 * exactly (resuming must be exact): SP_ERR_ARG listing every difference otherwise. The checkpoint's
 * spec must match m (as in sp_ckpt_load_params). SP_ERR_DATA when /optimizer is missing, a state
 * dataset is missing or misshapen, or holds NaN/Inf. All or nothing: on failure opt is unchanged.
 */
sp_status sp_ckpt_load_optimizer(const char *path, const sp_model *m, sp_optimizer *opt);

/*
 * TEST ONLY: with the environment variable SHARDPROP_TEST_CKPT_PAUSE set, a writer stops itself
 * with SIGSTOP (after printing one line with its pid to stderr) at a chosen moment, so a test can
 * SIGKILL it there:
 *   "1" or "data"  half-way through writing the temporary file of a checkpoint (.h5)
 *   "latest"       after the new step file is in place, with the new `latest` written to its
 *                  temporary file but not yet renamed
 * SIGCONT lets the write go on normally. Never set it in production.
 */
#define SP_CKPT_TEST_PAUSE_ENV "SHARDPROP_TEST_CKPT_PAUSE"

#endif
