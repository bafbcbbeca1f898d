/*
 * shardprop/data.h — open an HDF5 data file and walk it in batches.
 *
 *   sp_dataset *ds;
 *   if (sp_dataset_open(&ds, "train.h5", NULL, NULL) != SP_OK) { ...sp_last_error()... }
 *   const sp_dataset_info *info = sp_dataset_get_info(ds);   // N, sample shape, classes
 *   sp_loader *ld;
 *   sp_loader_config cfg = {.batch = 64, .rank = 0, .nranks = 1, .seed = 1, .shuffle = true,
 *                           .cache_mb = 256, .prefetch = true};
 *   sp_loader_create(&ld, ds, &cfg);                          // borrows ds
 *   for (int64_t e = 0; e < epochs; ++e) {
 *       sp_loader_start_epoch(ld, e, 0);
 *       sp_batch b;
 *       bool done = false;
 *       while (sp_loader_next(ld, &b, &done) == SP_OK && !done)
 *           use(b.x, b.labels, b.count);                      // x (count, sample_size)
 *   }
 *   sp_loader_free(ld);                                       // first the loader,
 *   sp_dataset_close(ds);                                     // then the dataset
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
 *   `shardprop synth`, `shardprop import` and `shardprop split` write such files.
 *
 * Batches: epoch e visits the samples in a permutation that depends only on (seed, e); global
 * batch b is positions [b*B, min((b+1)*B, N)) of it (the last, partial batch is kept). With
 * nranks = P > 1, rank r receives a contiguous, balanced slice of every global batch (its count
 * may be 0), so the samples of a global batch do not depend on P. A single process uses
 * rank = 0, nranks = 1 and receives whole batches.
 *
 * Nothing here is collective and nothing calls MPI: rank and nranks are plain ints, and a
 * program that never uses MPI may use this header without MPI_Init.
 * Threads: every HDF5 call made by shardprop is serialized by one process-wide lock, so a
 * loader's background reader thread and datasets used on the caller's thread coexist. One
 * sp_dataset or sp_loader must be used by one thread at a time.
 * Errors: every function returning sp_status records a one-line message (file, dataset,
 * problem) that sp_last_error() returns (see shardprop/status.h).
 */
#ifndef SHARDPROP_DATA_H
#define SHARDPROP_DATA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "shardprop/status.h"

/* ---------------------------------------------------------------- dataset: open and validate */

/* An open, validated data file (opaque). */
typedef struct sp_dataset sp_dataset;

typedef enum { SP_DTYPE_F32, SP_DTYPE_F64, SP_DTYPE_U8, SP_DTYPE_U16, SP_DTYPE_I32 } sp_x_dtype;

/* "float32", "float64", "uint8", "uint16", "int32" (static string). */
const char *sp_x_dtype_name(sp_x_dtype t);

typedef struct sp_dataset_info {
    const char *path, *x_name, *y_name; /* owned by the dataset */
    int64_t n;                          /* samples, >= 1 */
    int sample_rank;                    /* 1 for (N,F), 3 for (N,C,H,W); 1..4 */
    int64_t sample_shape[4];            /* shape of one sample (first sample_rank entries) */
    size_t sample_size;                 /* floats per sample (product of sample_shape) */
    sp_x_dtype x_dtype;                 /* dtype of X in the file */
    double scale, offset;               /* from X's attributes; 1 and 0 when absent */
    bool regression;                    /* y is float (N,T) or (N,) */
    int64_t targets;                    /* T for regression, 0 for classification */
    int64_t classes;                    /* classification: 'classes' attribute, else max + 1 */
    const char *y_dtype;                /* dtype name of y in the file ("uint8", "float32", ...) */
    size_t x_row_bytes;                 /* bytes of one sample of X in the file's dtype */
    bool labeled; /* y is present (always, unless opened with SP_DATASET_Y_OPTIONAL) */
    /* Token data (sp_dataset_open_tokens), else 0 / NULL: each sample is a window of seq_len
     * tokens and has seq_len labels, the next token at every position. */
    int64_t seq_len;       /* T: sample_shape = (T), classes = the file's vocab_size */
    int64_t tokens;        /* tokens in the file */
    const char *tokenizer; /* the `tokenizer` attribute ("bytes"), or NULL when absent */
} sp_dataset_info;

/*
 * Open `path` read-only and validate the contract: file exists and is HDF5, X and y exist and
 * are datasets, ranks and dtypes are supported, X and y agree on N, N >= 1, byte sizes fit
 * size_t, and (classification) every label is in [0, classes) — y is read fully here (N values;
 * regression targets are checked for NaN/Inf too). X is not read. x_name/y_name NULL mean "X"/"y".
 * Buffers sized from the file (one sample, the labels or targets) are checked against
 * shardprop's memory limit first: SP_ERR_NOMEM naming the file and dataset.
 * Ownership: on success *out is the caller's, released with sp_dataset_close. On failure *out is
 * NULL and the status carries one line: "<file>: dataset '<name>': <problem>". Not collective.
 */
sp_status sp_dataset_open(sp_dataset **out, const char *path, const char *x_name,
                          const char *y_name);

/*
 * Token data for language models (HDF5): a 1-D integer dataset `tokens` (uint8, uint16 or int32)
 * with an integer attribute `vocab_size` (1 <= vocab_size <= 2^24) and an optional string
 * attribute `tokenizer` ("bytes" for byte-level text, `shardprop import text`). Sample i is the
 * window tokens[i T, i T + T + 1): its input the first T tokens (as floats, the token ids), its
 * labels the last T (the next token at each position). N = (tokens - 1) / T windows, N >= 1.
 * A token outside [0, vocab_size) is SP_ERR_DATA when its window is read, naming the file, the
 * dataset and the token's position. sp_dataset_read gives x (n, T) and labels (n, T); a loader
 * gives batches with labels (count, T). `name` NULL means "tokens". Not collective.
 * sp_dataset_open of a token file fails with a message that says to give --seq-len.
 */
sp_status sp_dataset_open_tokens(sp_dataset **out, const char *path, const char *name,
                                 int64_t seq_len);

/* Flags of sp_dataset_open_ex. */
enum {
    /* A file without the y dataset opens as unlabeled data (for prediction): info.labeled is
     * false, regression false, classes and targets 0; sp_dataset_read then gives X only (asking
     * for labels or targets is SP_ERR_ARG) and a loader's batches have labels = targets = NULL.
     * A y that exists is validated as usual. */
    SP_DATASET_Y_OPTIONAL = 1u
};

/* sp_dataset_open with flags (0 = sp_dataset_open). */
sp_status sp_dataset_open_ex(sp_dataset **out, const char *path, const char *x_name,
                             const char *y_name, unsigned flags);

/*
 * Several files as one logical dataset: paths[0..npaths) in that order (callers sort them), their
 * rows concatenated (file i's row r is row first_i + r, first_i the rows of the files before
 * it). Each file is opened and validated as by sp_dataset_open_ex (its y read whole, as for one
 * file), then checked against the first: the same X dtype, sample shape, scale and offset, y
 * present in both, the same kind of y (labels or targets) and T, the same `classes` attribute
 * (or none in both; classes is then the largest over the files); a mismatch names both files.
 * At most SHARDPROP_MAX_OPEN_FILES (default 16) files are open at a time: a file is reopened
 * when its rows are read, least recently used closed first, and a file changed since the open
 * (removed, replaced, truncated, rewritten) is SP_ERR_DATA naming it. HDF5's chunk cache of X,
 * 64 MiB for one file, is shared by the open files. info.path is "first .. last (K files)";
 * messages about a row name the file that holds it and the row within that file.
 * npaths = 1 is sp_dataset_open_ex. Not collective.
 */
sp_status sp_dataset_open_files(sp_dataset **out, const char *const *paths, int npaths,
                                const char *x_name, const char *y_name, unsigned flags);

/* Token files as one dataset the same way: each file's windows, concatenated (a window never
 * spans two files); the files must agree on dtype, vocab_size and tokenizer. */
sp_status sp_dataset_open_tokens_files(sp_dataset **out, const char *const *paths, int npaths,
                                       const char *name, int64_t seq_len);

/* The dataset's description (owned by the dataset; valid until sp_dataset_close). */
const sp_dataset_info *sp_dataset_get_info(const sp_dataset *ds);

/* SP_ERR_DATA unless the sample shape equals shape[0..rank) (e.g. the model's input shape,
 * sp_model_input_shape); the message names the file, the dataset and both shapes. */
sp_status sp_dataset_check_input_shape(const sp_dataset *ds, const int64_t *shape, int rank);

/*
 * Read samples ids[0..n) (any order, duplicates allowed; each in [0, N)) into caller-owned
 *   x        (n, sample_size) float32, as x*scale + offset; NULL to skip X
 *   labels   (n) or NULL (classification only); (n, T) for token data
 *   targets  (n, targets) or NULL (regression only)
 * Reads only those rows of X (sorted and coalesced into runs of consecutive ids). A NaN or Inf
 * value (after scale/offset) is SP_ERR_NUMERIC naming the file, dataset and row (sample index).
 * Must not be called while a loader over ds exists.
 */
sp_status sp_dataset_read(sp_dataset *ds, const int64_t *ids, int64_t n, float *x, int32_t *labels,
                          float *targets);

/* Close the file and free everything (the info pointer dies with it). NULL is fine. */
void sp_dataset_close(sp_dataset *ds);

/* One line into buf (cap bytes, always NUL-terminated): "<file>: N=60000, X uint8 (1,28,28)
 * scale=0.00392157 offset=0, y uint8 10 classes". */
void sp_dataset_describe(const sp_dataset *ds, char *buf, size_t cap);

/* ceil(n / batch): the number of global batches of an epoch (the partial last batch is kept).
 * 0 when n == 0. */
int64_t sp_batches_per_epoch(int64_t n, int64_t batch);

/* ---------------------------------------------------------------------- the batch loader */

/* A batch iterator over a dataset, with an optional row cache and background prefetch. */
typedef struct sp_loader sp_loader;

typedef struct sp_loader_config {
    int64_t batch;          /* global batch size B >= 1 */
    int rank, nranks;       /* 0 <= rank < nranks; a single process: 0 and 1 */
    uint64_t seed;          /* shuffle seed: epoch e's order depends only on (seed, e) */
    bool shuffle;           /* false: identity order every epoch */
    size_t cache_mb;        /* row cache budget in MiB; 0 disables the cache */
    bool prefetch;          /* read batch b+1 on a background thread while b is used */
    int64_t micro_batch;    /* 0: balanced split; > 0: whole micro-batches of this size per rank
                          * (contiguous blocks, sp_rank_slice_micro; --deterministic) */
    const char *augment;    /* NULL, "" or "none": batches hold the rows as read; else a list of
                          * image transforms applied to each batch, e.g. "crop:2,flip" (below) */
    int64_t shuffle_window; /* 0: with shuffle, one permutation of all N rows; W > 0: the files
                             * in a shuffled order, rows shuffled within windows of W files
                             * (--shuffle shards; a pure function of seed, epoch, file sizes
                             * and W) */
} sp_loader_config;

typedef struct sp_batch {
    int64_t epoch, index;  /* index: global batch index in the epoch */
    int64_t count;         /* samples of this rank, may be 0 */
    int64_t global_count;  /* samples of the whole global batch (all ranks) */
    int64_t first_pos;     /* position of ids[0] in the epoch order */
    const int64_t *ids;    /* (count) sample indices */
    const float *x;        /* (count, sample_size) */
    const int32_t *labels; /* (count) or NULL (regression, unlabeled); (count, T) for tokens */
    const float *targets;  /* (count, T) or NULL (classification, unlabeled) */
} sp_batch;

/*
 * A loader over `ds` (borrowed: it must outlive the loader and must not be used by the caller
 * while the loader exists, since the reader thread uses it). *out is the caller's, released
 * with sp_loader_free; NULL on failure.
 * The cache: the rank's working set is N rows when shuffling (over the epochs every sample comes
 * by) or its own slices without shuffling. If working set * sample_size * 4 bytes <= cache_mb,
 * every row read is kept (as converted float32) and never read again; otherwise no cache.
 * Token data (sp_dataset_open_tokens) has no row cache: cache_mb is ignored and
 * sp_loader_cache_enabled is false. Each batch reads its windows' token runs from the file, with
 * their labels in the same read; HDF5's chunk cache (up to 64 MiB of the dataset, in the
 * file's dtype) keeps a token file that size in memory after the first epoch.
 * Augmentation (cfg->augment, for training data only): a comma-separated list applied in order
 * to every sample of a batch (C, H, W), after its rows are read and on the same thread (the
 * reader thread with prefetch), so it overlaps training; the cache keeps the rows un-augmented.
 *   crop:P       pad P zero pixels on every side, take a random H x W window (offsets uniform in
 *                [0, 2P] on each axis)
 *   flip         mirror left-right with probability 1/2
 *   translate:T  shift by a random integer in [-T, T] on each axis, zero fill
 * Every draw depends only on (seed, epoch, sample id): not on nranks, the batch or the thread,
 * and a resumed epoch draws the same. The spec is parsed here (the string need not outlive the
 * call): a bad one is SP_ERR_ARG quoting it; data that are not images (N, C, H, W), or P, T not
 * below H and W, are SP_ERR_DATA naming the file and the dataset.
 *
 * Window staging: with shuffle and shuffle_window > 0 (--shuffle shards), no row cache and not
 * token data, the rows this rank needs from each window of W files are read in one ascending
 * pass into one of two window buffers (the reader thread reads the next window while the
 * current one is served) and the batches are copied from them: the same batches as per-batch
 * reads. The buffers hold R' rows each, R' = min(R, ((R - 1) / batch + 2) * the rank's largest
 * slice, the rank's rows per epoch) with R = the rows of the largest W files + batch - 1, at
 * (sample_size * 4 + 8) bytes a row; checked against the memory limit (util/mem.h): a refusal
 * names the data set and says to lower --shuffle-window or raise --max-memory-mb.
 */
sp_status sp_loader_create(sp_loader **out, sp_dataset *ds, const sp_loader_config *cfg);

/* Begin `epoch` (>= 0) at global batch `first_batch` (0, or a later one to resume mid-epoch).
 * Any prefetch in flight is finished and discarded; with prefetch the first batch starts
 * loading. */
sp_status sp_loader_start_epoch(sp_loader *ld, int64_t epoch, int64_t first_batch);

/* The next batch of this epoch into *out; *done = true (and *out untouched) after the last.
 * The pointers in *out are owned by the loader and stay valid until the next call of
 * sp_loader_next / sp_loader_start_epoch / sp_loader_free. */
sp_status sp_loader_next(sp_loader *ld, sp_batch *out, bool *done);

typedef struct sp_loader_stats {
    double io_wait_s;    /* time sp_loader_next spent waiting for data */
    uint64_t bytes_read; /* bytes of X rows read from the file (uncompressed, file dtype) */
    uint64_t rows_read;  /* rows of X read from the file (window staging: its window reads) */
    uint64_t cache_hits; /* rows served from the cache */
    double read_s;       /* time spent filling batches (reads, conversion, cache copies) and
                          * reading windows ahead (window staging), on the
                          * reader thread with prefetch: bytes_read / read_s is the read rate */
} sp_loader_stats;

/* Cumulative counters since sp_loader_create into *st. */
void sp_loader_get_stats(const sp_loader *ld, sp_loader_stats *st);

/* Bytes of X this rank reads from the file in one epoch without cache hits (its share of N rows
 * times the row size in the file's dtype). With the cache on, epochs after the first read less
 * (0 once every row of the working set was read). */
uint64_t sp_loader_bytes_per_epoch(const sp_loader *ld);

/* Whether the row cache is on (the working set fits cache_mb). */
bool sp_loader_cache_enabled(const sp_loader *ld);

/* Bytes the loader holds at most: *cache the row cache once full (0 when off; its pages are
 * committed as rows arrive), *buffers the batch buffers, the epoch order and the two window
 * buffers of window staging (sp_loader_create). */
void sp_loader_memory_bytes(const sp_loader *ld, size_t *cache, size_t *buffers);

/* Stops the reader thread and frees the buffers (not the dataset). NULL is fine. */
void sp_loader_free(sp_loader *ld);

#endif
