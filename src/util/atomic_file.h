/*
 * The one way shardprop writes a file: atomically. Nothing appears at the target until the new
 * content is complete and on disk; a writer that fails, or is killed at any moment, leaves the
 * old file (or none) and at worst a hidden temporary file that the next writer of a checkpoint
 * directory removes.
 *
 *   1. open:   an exclusive temporary file beside the target, ".<name>.tmp-<12 random chars>"
 *              (O_CREAT | O_EXCL | O_NOFOLLOW, mode 0666 less the umask): an unpredictable name,
 *              never opened through a symbolic link. A target that is a symbolic link or not a
 *              regular file is refused.
 *   2. write:  sp_afile_write (write(2)), or a library that opens sp_afile_tmp_path by name
 *              (HDF5: io/h5.h's sp_h5_out).
 *   3. commit: fsync and close the temporary file, check the target again (a link planted
 *              meanwhile is refused, not replaced) and that the temporary file is still the one
 *              created in step 1, rename it over the target, fsync the directory.
 * Any failure removes the temporary file; the message names the target and what failed.
 *
 * Used by checkpoints (io/checkpoint.c), the data tools' and predict's HDF5 outputs (io/h5.c),
 * the --trace file and the checkpoint directory's COMPLETE marker (train/). Not thread-safe per
 * object; one writer per target at a time.
 */
#ifndef SP_UTIL_ATOMIC_FILE_H
#define SP_UTIL_ATOMIC_FILE_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "shardprop/status.h"

typedef struct sp_afile {
    int dirfd;        /* the target's directory */
    bool own_dirfd;   /* opened by sp_afile_open (else borrowed from the caller) */
    int fd;           /* the temporary file; -1 once closed */
    dev_t dev;        /* the temporary file as created: checked again before the rename */
    ino_t ino;        /*   (a library that opens it by name writes the same file) */
    const char *what; /* what the file is, for messages: "checkpoint", "trace file", ... */
    char *dir;        /* the directory as given, for messages */
    char *name;       /* the target's name in dir */
    char *tmp;        /* the temporary file's name in dir */
    char *shown;      /* dir/name, for messages */
    char *tmp_path;   /* dir/tmp */
} sp_afile;

/* Start replacing `path` (a file name, with or without directories; the directory must exist).
 * `what` names the file in messages ("trace file": "PATH: cannot create the trace file (...)")
 * and must outlive f. On failure f holds nothing to release. */
sp_status sp_afile_open(sp_afile *f, const char *path, const char *what);
/* The same for `name` in the open directory dirfd (borrowed: it must stay open until commit or
 * abort); dirpath is the directory's name for messages. */
sp_status sp_afile_open_at(sp_afile *f, int dirfd, const char *dirpath, const char *name,
                           const char *what);

/* Append len bytes of buf to the temporary file. */
sp_status sp_afile_write(sp_afile *f, const void *buf, size_t len);
/* The temporary file's path, for a library that writes the file by name. */
const char *sp_afile_tmp_path(const sp_afile *f);

/* Make the content durable: fsync and close the temporary file (commit does it if not done). */
sp_status sp_afile_sync(sp_afile *f);
/* Move the finished file into place (steps 3 above). f is released whatever the outcome. */
sp_status sp_afile_commit(sp_afile *f);
/* Give up: close and remove the temporary file; f is released. Safe after a failed open, a
 * commit or an abort (does nothing then). */
void sp_afile_abort(sp_afile *f);

/* Replace `path` by buf[0, len) in one call (open, write, commit). */
sp_status sp_afile_write_file(const char *path, const void *buf, size_t len, const char *what);

/* The check of step 1 alone, for a caller that refuses a bad target before doing any work:
 * SP_OK when dirfd/name is absent or a regular file (shown names it in messages). */
sp_status sp_afile_check_target(int dirfd, const char *name, const char *shown);

/* fsync the open directory dirfd (dirpath names it in the message): after a rename or an unlink
 * in it. File systems that cannot fsync a directory (EINVAL, ENOTSUP) are taken as they are. */
sp_status sp_fsync_dir(int dirfd, const char *dirpath);

/* "dir/name" (malloc'd; no second slash when dir ends in one), or NULL when out of memory. */
char *sp_path_join(const char *dir, const char *name);

/* Is `name` a temporary file of this writer (".<target>.tmp-<12 chars>")? *target_len: the
 * length of <target>, which starts at name + 1. */
bool sp_afile_is_temp_name(const char *name, size_t *target_len);

#endif
