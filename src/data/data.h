/*
 * data: the data file contract, its validation, the global sample order, per-rank reads with a
 * row cache, and a prefetching loader. Knows nothing of the model (beyond an input shape to
 * compare with) and nothing of MPI: rank and nranks are plain ints.
 *
 * The data file contract (HDF5):
 *   X  (N, ...) float32 | float64 | uint8; (N, F) vectors or (N, C, H, W) images (1-4 sample
 *      dims). Optional numeric attributes `scale`, `offset`: the value used is x*scale + offset,
 *      as float32.
 *   y  (N,) integer labels (int8..int64, uint8..uint64) in [0, classes) for classification, with
 *      an optional integer attribute `classes` (default: max label + 1); or (N, T) / (N,) float32 |
 *      float64 targets for regression.
 *   Other dataset paths (groups allowed) may be named instead of "X" and "y". Any chunking and
 *   any filter HDF5 can decode (gzip included) is fine; a file written by h5py is fine.
 *
 * The global order: epoch e uses the permutation sp_epoch_order(seed, e) of 0..N-1, the same on
 * every rank; global batch b is positions [b*B, min((b+1)*B, N)); rank r of P takes a contiguous,
 * balanced slice of it (sp_rank_slice). So the samples of a global batch do not depend on P, and
 * the last, partial batch is kept with real counts (a rank's count may be 0).
 *
 * Threads: every HDF5 call made here is serialized by the process-wide lock of io/h5.h, so a
 * loader's background thread and other datasets opened on the main thread can coexist. One
 * sp_dataset or sp_loader must be used by one thread at a time (the loader's own reader thread
 * is managed internally).
 *
 *     sp_dataset *ds; sp_loader *ld;
 *     SP_CHECK(sp_dataset_open(&ds, "train.h5", NULL, NULL));
 *     sp_loader_config cfg = {.batch = 64, .rank = r, .nranks = p, .seed = 1, .shuffle = true,
 *                             .cache_mb = 1024, .prefetch = true};
 *     SP_CHECK(sp_loader_create(&ld, ds, &cfg));
 *     for (int64_t e = 0; e < epochs; ++e) {
 *         SP_CHECK(sp_loader_start_epoch(ld, e, 0));
 *         sp_batch b; bool done;
 *         while (sp_loader_next(ld, &b, &done) == SP_OK && !done) train_step(b.x, b.labels,
 *                                                                       b.count, b.global_count);
 *     }
 *     sp_loader_free(ld); sp_dataset_close(ds);
 */
#ifndef SP_DATA_DATA_H
#define SP_DATA_DATA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The public part: the dataset, the loader and their types (one declaration per function). */
#include "shardprop/data.h"
#include "shardprop/status.h"

/* ------------------------------------------------- the items of --data: files of a dataset */

/*
 * A logical dataset is named by items, each one of:
 *   a file path; a glob pattern (holds *, ? or [; expanded with glob(3)); a directory (its *.h5
 *   files); @FILE, a text file of items, one a line, relative to FILE's directory unless
 *   absolute (blank lines and # comments skipped).
 * The expansion is sorted by path (strcmp) and deduplicated: the files in sorted order.
 * A missing file, a pattern that matches nothing, a directory without .h5 files, an empty or
 * unreadable list: one line naming it (and `flag`, e.g. "--data", when not NULL).
 */
typedef struct sp_path_list {
    char **v; /* (n) malloc'd paths, sorted, unique */
    int n, cap;
} sp_path_list;
sp_status sp_data_paths_expand(const char *const *items, int nitems, const char *flag,
                               sp_path_list *out);

/* The same for items separated by blanks in one string (a config's `data = a.h5 b.h5`, or the
 * words of --data joined by sp_data_items_join). A string that names an existing file is that
 * one file, blanks included. */
sp_status sp_data_paths_expand_words(const char *words, const char *flag, sp_path_list *out);
void sp_path_list_free(sp_path_list *l);

/* items[0..n) joined by single spaces (malloc'd; NULL when out of memory). */
char *sp_data_items_join(const char *const *items, int nitems);

/* Expand `items` (sp_data_paths_expand_words) and open the files as one dataset:
 * sp_dataset_open_files / sp_dataset_open_tokens_files. */
sp_status sp_dataset_open_items(sp_dataset **out, const char *items, const char *flag,
                                const char *x_name, const char *y_name, unsigned flags);
sp_status sp_dataset_open_tokens_items(sp_dataset **out, const char *items, const char *flag,
                                       const char *name, int64_t seq_len);

/* The files of a dataset: their number, and file i's path and rows (its first row in the
 * logical order is the sum of the rows before it). One file for sp_dataset_open. */
int sp_dataset_nfiles(const sp_dataset *ds);
const char *sp_dataset_file_path(const sp_dataset *ds, int i);
int64_t sp_dataset_file_rows(const sp_dataset *ds, int i);

/* Open HDF5 files of a dataset: *open_now, the most at once since open (*peak) and the opens
 * after the first of each file (*reopens). For tests of the handle bound. */
void sp_dataset_handle_stats(const sp_dataset *ds, int *open_now, int *peak, int64_t *reopens);

/* ------------------------------------------------------ internal extras: dataset from memory */

/*
 * The same as sp_dataset_open from an HDF5 file image in memory (`len` bytes; copied, so the
 * caller may free it on return). `name` (NULL: "(file image)") stands for the path in messages
 * and in the info. Used by the fuzz targets and by tests; the validation is exactly
 * sp_dataset_open's.
 */
sp_status sp_dataset_open_image(sp_dataset **out, const void *image, size_t len, const char *name,
                                const char *x_name, const char *y_name);

/* sp_dataset_open_tokens from a file image, the same way (the fuzz targets, tests). */
sp_status sp_dataset_open_tokens_image(sp_dataset **out, const void *image, size_t len,
                                       const char *name, const char *tokens_name, int64_t seq_len);

/* Does `path` hold token data instead of samples: a dataset "tokens" and no dataset `x_name`
 * (NULL: "X"), the case sp_dataset_open refuses with the --seq-len hint? false when the file
 * cannot be opened as HDF5. Records no error (for `inspect`, which then describes the tokens). */
bool sp_dataset_is_token_file(const char *path, const char *x_name);

/* Whole-file statistics (for `inspect`): X min/max/mean after scale/offset, label histogram or
 * target statistics. Reads X once in blocks (validating it: NaN/Inf is an error).
 * Token data: every token of the file (not only those of whole windows) is read once in blocks:
 * x_min/x_max/x_mean of the token ids and class_counts the histogram (vocab_size entries); a
 * token out of range is SP_ERR_DATA naming its position. */
typedef struct sp_dataset_summary {
    double x_min, x_max, x_mean;
    int64_t *class_counts;       /* (classes), malloc'd, NULL for regression */
    double y_min, y_max, y_mean; /* regression targets */
} sp_dataset_summary;
sp_status sp_dataset_summarize(sp_dataset *ds, sp_dataset_summary *out);
void sp_dataset_summary_free(sp_dataset_summary *s);

/* -------------------------------------------------- the global order and the per-rank split */

/* perm (n): the sample order of `epoch`. Fisher-Yates driven by the counter RNG keyed by
 * (seed, SP_STREAM_ORDER + (epoch << 8), position): identical on every rank for any n.
 * shuffle = false gives the identity. */
void sp_epoch_order(int64_t *perm, int64_t n, uint64_t seed, int64_t epoch, bool shuffle);

/*
 * perm (N = sum of rows[0..nfiles)): the order of `epoch` for --shuffle shards. The files
 * (shards) are permuted by Fisher-Yates keyed by (seed, SP_STREAM_ORDER_SHARDS + (epoch << 8),
 * i) for i < nfiles, the permuted shards are grouped into consecutive windows of `window`
 * shards (the last may hold fewer), and the rows of each window, in file order, are shuffled
 * among themselves keyed by (seed, same stream, nfiles + position). A pure function of (seed,
 * epoch, rows, window): the same on every rank for any number of ranks. window >= 1;
 * scratch (2 nfiles) is the caller's; on return scratch[0..nfiles) holds the permuted file
 * order (the loader's window staging reads the windows' boundaries from it).
 */
void sp_epoch_order_shards(int64_t *perm, const int64_t *rows, int nfiles, int64_t window,
                           uint64_t seed, int64_t epoch, int64_t *scratch);

/* ------------------------------------------------------------ loader internals, for tests */

/* Window staging (--shuffle shards without the row cache; loader.c): whether it is on, and a
 * switch to turn it off (the per-batch reads, the reference of the tests) or back on. The
 * switch finishes any read in flight; sp_loader_start_epoch must follow. */
bool sp_loader_staging(const sp_loader *ld);
sp_status sp_loader_set_staging(sp_loader *ld, bool on);

/* Counters of the staged reads since create: stages read (one per stage with rows needed per
 * epoch), sp_dataset_read calls, and calls whose first id was not above the previous call's
 * last id of the same stage (0: each stage is read in one ascending pass). */
typedef struct sp_loader_stage_stats {
    uint64_t stages_read, blocks_read, descents;
} sp_loader_stage_stats;
void sp_loader_get_stage_stats(const sp_loader *ld, sp_loader_stage_stats *st);

/* Rank r's contiguous slice of global batch b: positions [*pos, *pos + *count) of the epoch
 * order; *global_count = samples in the whole batch. The g samples of the batch are split as
 * evenly as possible, lower ranks taking the remainder: count = g/P + (r < g%P); count may be 0. */
void sp_rank_slice(int64_t n, int64_t batch, int64_t b, int rank, int nranks, int64_t *pos,
                   int64_t *count, int64_t *global_count);

/* The same with micro-batches (--deterministic): the g samples of the batch are the fixed
 * sequence of ceil(g/micro) micro-batches of `micro` samples (the last may be partial), and rank
 * r gets a contiguous block of whole micro-batches, nmb/P + (r < nmb%P) of them. Rank r's slice
 * then starts on a micro-batch boundary, so the micro-batches never depend on P.
 * micro <= 0 is sp_rank_slice. */
void sp_rank_slice_micro(int64_t n, int64_t batch, int64_t micro, int64_t b, int rank, int nranks,
                         int64_t *pos, int64_t *count, int64_t *global_count);

/* The most samples any rank gets in one global batch of `batch` samples (micro: as above). */
int64_t sp_rank_slice_max(int64_t batch, int64_t micro, int nranks);

#endif
