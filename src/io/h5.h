/*
 * HDF5 helpers shared by the data files and (later) checkpoints.
 *
 * Locking: shardprop serializes every HDF5 call sequence with one process-wide recursive mutex
 * (sp_h5_lock / sp_h5_unlock), because a serial HDF5 build is not thread-safe and the data
 * loader reads on a background thread. Callers of the functions below hold the lock.
 *
 * Writing: sp_h5_out_create starts an atomic replacement of <path> (util/atomic_file.h: an
 * exclusive temporary file beside it) that HDF5 writes; commit closes it, syncs it and renames it
 * over <path>, abort closes and deletes it, so a failed writer leaves no partial file.
 */
#ifndef SP_IO_H5_H
#define SP_IO_H5_H

#include <hdf5.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "shardprop/status.h"
#include "util/atomic_file.h"

/* Take / release the process-wide HDF5 lock (recursive). The first call also silences HDF5's own
 * error-stack printing: shardprop reports errors itself, one line each. */
void sp_h5_lock(void);
void sp_h5_unlock(void);

/* Check that `path` exists, is a readable regular file and carries the HDF5 signature (at offset
 * 0 or a user-block offset 512, 1024, ...). `what` names what the caller wanted from the file
 * ("datasets 'X' and 'y'"), for the message. SP_ERR_IO / SP_ERR_DATA with one line. */
sp_status sp_h5_check_file(const char *path, const char *what);

/* Does the object at `path` (absolute or relative, groups allowed) exist? Walks the components,
 * so a missing group is "no" rather than an HDF5 error. */
bool sp_h5_exists(hid_t loc, const char *path);

/* A short dtype name: "uint8", "int64", "float32", "string", "compound", ... (static string). */
const char *sp_h5_type_name(hid_t type);

/* Read a numeric scalar attribute as double. *found = false (and SP_OK) when absent; an attribute
 * that is not a numeric scalar is SP_ERR_DATA naming file/object/attribute. */
sp_status sp_h5_attr_read_double(hid_t obj, const char *attr, double *out, bool *found,
                                 const char *file, const char *objname);
sp_status sp_h5_attr_write_double(hid_t obj, const char *attr, double v);
sp_status sp_h5_attr_write_int64(hid_t obj, const char *attr, int64_t v);

/* Copy every attribute of `src` onto `dst` (same types and shapes). */
sp_status sp_h5_attr_copy_all(hid_t src, hid_t dst);

typedef struct sp_h5_out {
    hid_t file;
    sp_afile af; /* the file being written: af.shown is the final path */
} sp_h5_out;

sp_status sp_h5_out_create(sp_h5_out *o, const char *path);
sp_status sp_h5_out_commit(sp_h5_out *o);
void sp_h5_out_abort(sp_h5_out *o);

/*
 * Create a dataset (N, dims[1], ...) of `file_type`, chunked along the first axis (chunks of
 * about 128 KiB, whole samples) and gzip-compressed (level 4, with shuffle for multi-byte types).
 * Intermediate groups in `name` are created. *out is the dataset id.
 */
sp_status sp_h5_create_rows(hid_t file, const char *name, hid_t file_type, int rank,
                            const hsize_t *dims, hid_t *out, const char *path);

/* Write rows [first, first + count) of a dataset created by sp_h5_create_rows from `buf`
 * (count rows, row-major, in `mem_type`). */
/* Select rows [first, first + count) of a dataset (all of its other dimensions): *fs the file
 * space with that selection, *ms a memory space of the same shape. The caller closes both. */
void sp_h5_select_rows(hid_t dset, int64_t first, int64_t count, hid_t *fs, hid_t *ms);

sp_status sp_h5_write_rows(hid_t dset, hid_t mem_type, int64_t first, int64_t count,
                           const void *buf, const char *path, const char *name);

#endif
