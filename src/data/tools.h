/*
 * Tools that write data files (the `import`, `synth`, `split` commands) and describe them
 * (`inspect`). Every writer goes through a temporary file renamed into place at the end, so a
 * failure leaves no partial output. Output datasets are chunked along N and gzip-compressed.
 */
#ifndef SP_DATA_TOOLS_H
#define SP_DATA_TOOLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "data/synth.h"
#include "shardprop/status.h"

/*
 * IDX (MNIST format) images + labels -> X uint8 (N, 1, rows, cols) with scale = 1/255, offset = 0
 * and y uint8 (N,) with classes = max label + 1. Either file may be gzipped or plain. The magic
 * numbers (0x00000803 images, 0x00000801 labels, unsigned byte), the dimensions, the counts and
 * the file lengths are validated. *n_out (may be NULL) receives N.
 */
sp_status sp_import_idx(const char *images, const char *labels, const char *out, int64_t *n_out);

/*
 * CSV of numbers -> X float32 (N, F) and y: int32 (N,) labels with `classes` (non-negative
 * integers), or float32 (N, 1) with `regression`. A first line with a non-numeric field is a
 * header. `label_column` is a header name or a 0-based column index. Blank lines are skipped;
 * every other malformed line is an error naming the line number.
 */
sp_status sp_import_csv(const char *in, const char *label_column, bool regression, const char *out,
                        int64_t *n_out, int64_t *features_out);

/*
 * Text files -> byte-level token data (shardprop/data.h, sp_dataset_open_tokens): the bytes of
 * in[0..nin), concatenated in that order, as a uint8 dataset `tokens` (chunks of 128 KiB, gzip)
 * with attributes vocab_size = 256, tokenizer = "bytes" and sources (the input paths, one a
 * line). val_fraction 0: everything goes to `out`. val_fraction F in (0, 1): each file is cut
 * after the first '\n' at or after its byte floor((1 - F) size) (at that byte when no '\n'
 * follows); the part after the cut goes to the validation file res->val_path
 * (sp_import_text_val_path), the rest to `out`, both in the same format.
 * The files are streamed in 4 MiB blocks: memory does not grow with their size.
 * Errors (one line, nothing written): no inputs or F outside (0, 1) (SP_ERR_ARG); a file that
 * is missing, unreadable, a directory or not a regular file, or changes while read (SP_ERR_IO);
 * a NUL byte (not text: the file and the byte offset), every input empty, an output with fewer
 * than 2 tokens (SP_ERR_DATA). The validation file is renamed into place just before `out`.
 */
typedef struct sp_text_import {
    int64_t tokens, val_tokens; /* tokens written to out and to val_path (0 without a split) */
    char val_path[4200];        /* the validation file, "" without a split */
} sp_text_import;
sp_status sp_import_text(const char *const *in, int nin, const char *out, double val_fraction,
                         sp_text_import *res);

/* The validation file of `out`: its ".h5" suffix replaced by "-val.h5", or "-val.h5" appended
 * when it has none ("train.h5" -> "train-val.h5", "corpus" -> "corpus-val.h5"). false when it
 * does not fit cap bytes. */
bool sp_import_text_val_path(const char *out, char *buf, size_t cap);

/* A synthetic set (data/synth.h) -> X float32 (N, F), y int32 (N,) with `classes` or float32
 * (N, T). */
sp_status sp_synth_write(const char *out, sp_synth_kind kind, int64_t n, int features, int classes,
                         int outputs, uint64_t seed);

/*
 * Random split of a data file into train and validation files: round(val_fraction * N) samples
 * (at least 1 and at most N-1) go to the validation file, chosen by a Fisher-Yates permutation
 * keyed by (seed, SP_STREAM_SPLIT); with `stratify` (classification only) each class is split on
 * its own. Both outputs keep the original order of their samples, the dtypes, shapes and every
 * attribute of X and y; the dataset names are kept too. Other objects in the file are not copied.
 */
sp_status sp_data_split(const char *in, const char *x_name, const char *y_name, double val_fraction,
                        uint64_t seed, bool stratify, const char *out_train, const char *out_val,
                        int64_t *n_train, int64_t *n_val);

/*
 * A data file as k shard files <prefix>-00000-of-0000k.h5 ... (i and k on 5 digits): its rows in
 * file order, file i holding N/k rows, one more for i < N % k; dtypes, shapes and every attribute
 * of X and y kept, as sp_data_split. Each file is written to a temporary file renamed into place,
 * so a failure leaves no partial shard (the shards written before it stay). 1 <= k <= N.
 * *rows_max (may be NULL): the rows of the largest shard.
 */
sp_status sp_data_split_shards(const char *in, const char *x_name, const char *y_name, int64_t k,
                               const char *prefix, int64_t *rows_max);

/* The path of shard i of k (sp_data_split_shards) into buf; false when it does not fit. */
bool sp_data_shard_path(const char *prefix, int64_t i, int64_t k, char *buf, size_t cap);

/* Print every group and dataset of an HDF5 file (shape, dtype, chunking, filters, attributes)
 * to `f`. *has_model_group tells whether a top-level group "model" exists (a checkpoint). */
sp_status sp_h5_describe_file(const char *path, FILE *f, bool *has_model_group);

/* s[0, len) in double quotes on one line, at most `max` bytes of it ("..." after the quote when
 * cut): newline, tab, other control characters, quotes and backslashes escaped as in C; bytes
 * >= 0x80 as they are (UTF-8 text stays readable). For string attributes and text tokens. */
void sp_fprint_escaped(FILE *f, const char *s, size_t len, size_t max);

#endif
