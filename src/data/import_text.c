/*
 * Text files -> byte-level token data (see tools.h): every byte is a token, vocab_size 256.
 * The files are streamed in blocks into an extendible uint8 dataset, so memory does not grow with
 * their size; the outputs are written through temporary files renamed into place at the end.
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "data/tools.h"
#include "io/h5.h"
#include "util/status.h"

#define BLOCK_       ((size_t)4 << 20)    /* bytes read at a time */
#define CHUNK_       ((hsize_t)128 << 10) /* tokens per chunk: 128 KiB, like sp_h5_create_rows */
#define SOURCES_MAX_ ((size_t)32 << 10) /* the `sources` attribute (an attribute stays < 64 KiB) */

/* One output file: its `tokens` dataset grows as blocks are appended. */
typedef struct {
    sp_h5_out o;
    hid_t d;
    int64_t n;
    const char *path; /* the final name, for messages */
    bool open;
} tok_out_;

/* Create the output and its empty, extendible `tokens` dataset (caller holds the lock). */
static sp_status out_create_(tok_out_ *t, const char *path) {
    t->d = -1;
    t->n = 0;
    t->path = path;
    t->open = false;
    SP_CHECK(sp_h5_out_create(&t->o, path));
    t->open = true;
    const hsize_t zero = 0, maxd = H5S_UNLIMITED, chunk = CHUNK_;
    hid_t s = H5Screate_simple(1, &zero, &maxd);
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    H5Pset_chunk(dcpl, 1, &chunk);
    if (H5Zfilter_avail(H5Z_FILTER_DEFLATE) > 0) H5Pset_deflate(dcpl, 4);
    t->d = H5Dcreate2(t->o.file, "tokens", H5T_STD_U8LE, s, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    H5Pclose(dcpl);
    H5Sclose(s);
    if (t->d < 0) return SP_FAIL(SP_ERR_IO, "%s: dataset 'tokens': cannot create", path);
    return SP_OK;
}

/* Append buf[0, len) to the tokens (caller holds the lock). */
static sp_status out_append_(tok_out_ *t, const unsigned char *buf, size_t len) {
    if (len == 0) return SP_OK;
    const hsize_t start = (hsize_t)t->n, cnt = (hsize_t)len, size = start + cnt;
    herr_t e = H5Dset_extent(t->d, &size);
    hid_t fs = e < 0 ? -1 : H5Dget_space(t->d);
    if (fs >= 0) e = H5Sselect_hyperslab(fs, H5S_SELECT_SET, &start, NULL, &cnt, NULL);
    hid_t ms = H5Screate_simple(1, &cnt, NULL);
    if (fs >= 0 && e >= 0) e = H5Dwrite(t->d, H5T_NATIVE_UCHAR, ms, fs, H5P_DEFAULT, buf);
    H5Sclose(ms);
    if (fs >= 0) H5Sclose(fs);
    if (fs < 0 || e < 0)
        return SP_FAIL(SP_ERR_IO, "%s: dataset 'tokens': cannot write tokens %lld..%lld", t->path,
                       (long long)start, (long long)(size - 1));
    t->n += (int64_t)len;
    return SP_OK;
}

/* A scalar fixed-length string attribute (the exact length plus a NUL, like checkpoints). */
static sp_status attr_string_(hid_t obj, const char *name, const char *v, const char *path) {
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, strlen(v) + 1);
    H5Tset_strpad(t, H5T_STR_NULLTERM);
    hid_t s = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(obj, name, t, s, H5P_DEFAULT, H5P_DEFAULT);
    herr_t e = a < 0 ? -1 : H5Awrite(a, t, v);
    if (a >= 0) H5Aclose(a);
    H5Sclose(s);
    H5Tclose(t);
    if (e < 0)
        return SP_FAIL(SP_ERR_IO, "%s: dataset 'tokens': cannot write attribute '%s'", path, name);
    return SP_OK;
}

/* The attributes of both outputs: vocab_size, tokenizer, sources (the input paths, one a line;
 * cut at SOURCES_MAX_ bytes with a last line "... and K more"). */
static sp_status out_attrs_(tok_out_ *t, const char *sources) {
    SP_CHECK(sp_h5_attr_write_int64(t->d, "vocab_size", 256) == SP_OK
                 ? SP_OK
                 : SP_FAIL(SP_ERR_IO, "%s: dataset 'tokens': cannot write attribute 'vocab_size'",
                           t->path));
    SP_CHECK(attr_string_(t->d, "tokenizer", "bytes", t->path));
    return attr_string_(t->d, "sources", sources, t->path);
}

static char *sources_(const char *const *in, int nin) {
    char *s = malloc(SOURCES_MAX_ + 64);
    if (!s) return NULL;
    size_t used = 0;
    s[0] = '\0';
    for (int i = 0; i < nin; ++i) {
        const size_t len = strlen(in[i]);
        if (used + len + 1 > SOURCES_MAX_) {
            snprintf(s + used, 64, "%s... and %d more", i ? "\n" : "", nin - i);
            break;
        }
        used += (size_t)snprintf(s + used, len + 2, "%s%s", i ? "\n" : "", in[i]);
    }
    return s;
}

/* read(2) of up to len bytes at the current offset, retried on EINTR: bytes read, or -1. */
static ssize_t read_some_(int fd, void *buf, size_t len) {
    for (;;) {
        ssize_t r = read(fd, buf, len);
        if (r >= 0 || errno != EINTR) return r;
    }
}

/* Where a file of `size` bytes is cut for --val-fraction F: after the first '\n' at or after
 * byte floor((1 - F) size), or at that byte when no '\n' follows. Reads from there on only. */
static sp_status find_cut_(int fd, const char *path, int64_t size, double F, unsigned char *buf,
                           int64_t *cut) {
    int64_t p = (int64_t)floor((1.0 - F) * (double)size);
    if (p > size) p = size;
    *cut = p;
    for (int64_t pos = p; pos < size;) {
        ssize_t r = pread(fd, buf, BLOCK_, (off_t)pos);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0)
            return SP_FAIL(SP_ERR_IO, "%s: read error at byte %lld (%s)", path, (long long)pos,
                           strerror(errno));
        if (r == 0) break;
        const unsigned char *nl = memchr(buf, '\n', (size_t)r);
        if (nl) {
            *cut = pos + (nl - buf) + 1;
            break;
        }
        pos += r;
    }
    return SP_OK;
}

/* Stream one input file into tr (bytes before the cut) and va (the rest; NULL: no split). */
static sp_status import_file_(const char *path, double F, tok_out_ *tr, tok_out_ *va,
                              unsigned char *buf) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return SP_FAIL(SP_ERR_IO, "%s: cannot open text file (%s)", path, strerror(errno));
    struct stat sb;
    sp_status st = SP_OK;
    if (fstat(fd, &sb) != 0)
        st = SP_FAIL(SP_ERR_IO, "%s: cannot stat text file (%s)", path, strerror(errno));
    else if (S_ISDIR(sb.st_mode))
        st = SP_FAIL(SP_ERR_IO, "%s: is a directory, not a text file", path);
    else if (!S_ISREG(sb.st_mode))
        st = SP_FAIL(SP_ERR_IO,
                     "%s: not a regular file (a pipe or device: save it to a file first)", path);
    if (st != SP_OK) {
        close(fd);
        return st;
    }
    const int64_t size = (int64_t)sb.st_size;
    int64_t cut = size, pos = 0;
    if (st == SP_OK && va) st = find_cut_(fd, path, size, F, buf, &cut);
    while (st == SP_OK) {
        const ssize_t r = read_some_(fd, buf, BLOCK_);
        if (r < 0) {
            st = SP_FAIL(SP_ERR_IO, "%s: read error at byte %lld (%s)", path, (long long)pos,
                         strerror(errno));
            break;
        }
        if (r == 0) break;
        if (pos + r > size) break; /* grew: reported below */
        const unsigned char *nul = memchr(buf, '\0', (size_t)r);
        if (nul) {
            st = SP_FAIL(SP_ERR_DATA, "%s: not a text file: a NUL byte at offset %lld", path,
                         (long long)(pos + (nul - buf)));
            break;
        }
        /* [pos, pos + r): the part before the cut to tr, the rest to va */
        const int64_t a = cut - pos <= 0 ? 0 : cut - pos >= r ? r : cut - pos;
        st = out_append_(tr, buf, (size_t)a);
        if (st == SP_OK && a < r) st = out_append_(va, buf + a, (size_t)(r - a));
        pos += r;
    }
    struct stat now;
    if (st == SP_OK &&
        (pos != size || fstat(fd, &now) != 0 || now.st_size != sb.st_size ||
         now.st_mtim.tv_sec != sb.st_mtim.tv_sec || now.st_mtim.tv_nsec != sb.st_mtim.tv_nsec))
        st = SP_FAIL(SP_ERR_IO, "%s: the file changed while it was read (%lld bytes at the start)",
                     path, (long long)size);
    close(fd);
    return st;
}

bool sp_import_text_val_path(const char *out, char *buf, size_t cap) {
    const size_t len = strlen(out);
    const bool h5 = len >= 3 && !strcmp(out + len - 3, ".h5");
    const size_t stem = h5 ? len - 3 : len;
    const int w = snprintf(buf, cap, "%.*s-val.h5", (int)stem, out);
    return w > 0 && (size_t)w < cap;
}

/* Close both outputs' HDF5 files, sync them, then rename val and train into place. */
static sp_status commit_(tok_out_ *tr, tok_out_ *va) {
    herr_t e = 0;
    if (tr->d >= 0) H5Dclose(tr->d);
    tr->d = -1;
    e |= H5Fclose(tr->o.file);
    tr->o.file = -1;
    if (va) {
        if (va->d >= 0) H5Dclose(va->d);
        va->d = -1;
        e |= H5Fclose(va->o.file);
        va->o.file = -1;
    }
    sp_status st =
        e < 0 ? SP_FAIL(SP_ERR_IO, "%s: cannot finish writing the output file", tr->path) : SP_OK;
    if (st == SP_OK) st = sp_afile_sync(&tr->o.af);
    if (st == SP_OK && va) st = sp_afile_sync(&va->o.af);
    if (st == SP_OK && va) st = sp_afile_commit(&va->o.af);
    if (va) va->open = false;
    if (st == SP_OK) st = sp_afile_commit(&tr->o.af);
    tr->open = false;
    if (st != SP_OK) {
        sp_afile_abort(&tr->o.af);
        if (va) sp_afile_abort(&va->o.af);
    }
    return st;
}

static void abort_(tok_out_ *t) {
    if (!t->open) return;
    if (t->d >= 0) H5Dclose(t->d);
    t->d = -1;
    sp_h5_out_abort(&t->o);
    t->open = false;
}

/* An output with fewer than 2 tokens cannot hold one window: an error naming it. */
static sp_status too_few_(const tok_out_ *t, const char *first_in, double F) {
    if (F > 0)
        return SP_FAIL(SP_ERR_DATA,
                       "%s: --val-fraction %g leaves %lld token%s for %s (a token file needs at "
                       "least 2: one window of --seq-len 1)",
                       first_in, F, (long long)t->n, t->n == 1 ? "" : "s", t->path);
    return SP_FAIL(SP_ERR_DATA,
                   "%s: %lld token: too few (a token file needs at least 2: one window of "
                   "--seq-len 1)",
                   first_in, (long long)t->n);
}

sp_status sp_import_text(const char *const *in, int nin, const char *out, double val_fraction,
                         sp_text_import *res) {
    memset(res, 0, sizeof *res);
    const double F = val_fraction;
    if (nin < 1) return SP_FAIL(SP_ERR_ARG, "%s: no input files", out);
    if (F != 0 && !(F > 0 && F < 1))
        return SP_FAIL(SP_ERR_ARG, "--val-fraction: %g is not in (0, 1)", F);
    const bool split = F > 0;
    if (split && !sp_import_text_val_path(out, res->val_path, sizeof res->val_path))
        return SP_FAIL(SP_ERR_ARG, "%s: output path too long", out);
    unsigned char *buf = malloc(BLOCK_);
    char *sources = sources_(in, nin);
    if (!buf || !sources) {
        free(buf);
        free(sources);
        return SP_FAIL(SP_ERR_NOMEM, "%s: out of memory", out);
    }
    tok_out_ tr = {.d = -1}, va = {.d = -1};
    sp_h5_lock();
    sp_status st = out_create_(&tr, out);
    if (st == SP_OK && split) st = out_create_(&va, res->val_path);
    for (int i = 0; i < nin && st == SP_OK; ++i)
        st = import_file_(in[i], F, &tr, split ? &va : NULL, buf);
    if (st == SP_OK && tr.n + va.n == 0)
        st = nin == 1 ? SP_FAIL(SP_ERR_DATA, "%s: empty file: no text to import", in[0])
                      : SP_FAIL(SP_ERR_DATA,
                                "%s and the %d other input file%s: all empty, no text to import",
                                in[0], nin - 1, nin == 2 ? "" : "s");
    if (st == SP_OK && tr.n < 2) st = too_few_(&tr, in[0], F);
    if (st == SP_OK && split && va.n < 2) st = too_few_(&va, in[0], F);
    if (st == SP_OK) st = out_attrs_(&tr, sources);
    if (st == SP_OK && split) st = out_attrs_(&va, sources);
    if (st == SP_OK) st = commit_(&tr, split ? &va : NULL);
    abort_(&tr);
    abort_(&va);
    sp_h5_unlock();
    free(buf);
    free(sources);
    if (st == SP_OK) {
        res->tokens = tr.n;
        res->val_tokens = va.n;
    } else {
        res->val_path[0] = '\0';
    }
    return st;
}
