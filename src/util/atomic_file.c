/* The atomic file writer (util/atomic_file.h). */
#include "util/atomic_file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/status.h"

enum { RAND_LEN = 12 };

static const char infix_[] = ".tmp-";
static const char alphabet_[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

char *sp_path_join(const char *dir, const char *name) {
    const size_t a = strlen(dir), b = strlen(name);
    char *p = malloc(a + b + 2);
    if (!p) return NULL;
    memcpy(p, dir, a);
    size_t k = a;
    if (a > 0 && dir[a - 1] != '/') p[k++] = '/';
    memcpy(p + k, name, b + 1);
    return p;
}

/* Fill out[0, n) with characters of alphabet_ from the kernel's random source. Never falls back
 * to anything predictable: false if no random bytes could be had. */
static bool random_chars_(char *out, size_t n) {
    unsigned char raw[64];
    if (n > sizeof raw) return false;
    size_t got = 0;
    while (got < n) {
        const ssize_t r = getrandom(raw + got, n - got, 0);
        if (r < 0) {
            if (errno == EINTR) continue;
            break;
        }
        got += (size_t)r;
    }
    if (got < n) { /* an old kernel without getrandom: /dev/urandom */
        const int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
        if (fd < 0) return false;
        while (got < n) {
            const ssize_t r = read(fd, raw + got, n - got);
            if (r < 0 && errno == EINTR) continue;
            if (r <= 0) break;
            got += (size_t)r;
        }
        close(fd);
        if (got < n) return false;
    }
    /* 256 = 4 * 62 + 8: reject the top 8 values so that each character is uniform */
    for (size_t i = 0; i < n; ++i) {
        while (raw[i] >= 248)
            if (getrandom(&raw[i], 1, 0) != 1 && errno != EINTR) return false;
        out[i] = alphabet_[raw[i] % 62];
    }
    return true;
}

bool sp_afile_is_temp_name(const char *name, size_t *target_len) {
    const size_t len = strlen(name), infix = sizeof infix_ - 1;
    if (name[0] != '.' || len < 1 + 1 + infix + RAND_LEN) return false;
    const char *r = name + len - RAND_LEN;
    for (size_t i = 0; i < RAND_LEN; ++i)
        if (!strchr(alphabet_, r[i]) || r[i] == '\0') return false;
    if (memcmp(r - infix, infix_, infix) != 0) return false;
    *target_len = len - 1 - infix - RAND_LEN;
    return true;
}

sp_status sp_afile_check_target(int dirfd, const char *name, const char *shown) {
    struct stat st;
    if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
        if (errno == ENOENT) return SP_OK;
        return SP_FAIL(SP_ERR_IO, "%s: cannot check the file there (%s)", shown, strerror(errno));
    }
    if (S_ISLNK(st.st_mode))
        return SP_FAIL(SP_ERR_IO,
                       "%s: is a symbolic link; refusing to write through or replace it (remove "
                       "it if you made it)",
                       shown);
    if (!S_ISREG(st.st_mode))
        return SP_FAIL(SP_ERR_IO, "%s: exists and is not a regular file; refusing to replace it",
                       shown);
    return SP_OK;
}

static sp_status check_target_(const sp_afile *f) {
    return sp_afile_check_target(f->dirfd, f->name, f->shown);
}

/* Release what f holds (the temporary file is closed; removed when `remove`). */
static void release_(sp_afile *f, bool remove) {
    if (f->fd >= 0) close(f->fd);
    if (remove && f->tmp) unlinkat(f->dirfd, f->tmp, 0);
    if (f->own_dirfd && f->dirfd >= 0) close(f->dirfd);
    free(f->dir);
    free(f->name);
    free(f->tmp);
    free(f->shown);
    free(f->tmp_path);
    memset(f, 0, sizeof *f);
    f->fd = f->dirfd = -1;
}

sp_status sp_afile_open_at(sp_afile *f, int dirfd, const char *dirpath, const char *name,
                           const char *what) {
    memset(f, 0, sizeof *f);
    f->fd = -1;
    f->dirfd = dirfd;
    f->what = what;
    const size_t tlen = 1 + strlen(name) + sizeof infix_ + RAND_LEN;
    f->dir = strdup(dirpath);
    f->name = strdup(name);
    f->tmp = malloc(tlen);
    f->shown = sp_path_join(dirpath, name);
    if (!f->dir || !f->name || !f->tmp || !f->shown) {
        release_(f, false);
        return SP_FAIL(SP_ERR_NOMEM, "%s/%s: out of memory", dirpath, name);
    }
    sp_status st = check_target_(f);
    for (int attempt = 0; attempt < 100 && st == SP_OK && f->fd < 0; ++attempt) {
        char r[RAND_LEN];
        if (!random_chars_(r, RAND_LEN)) {
            st = SP_FAIL(SP_ERR_IO, "%s: no random bytes for a temporary file name (%s)", f->shown,
                         strerror(errno));
            break;
        }
        snprintf(f->tmp, tlen, ".%s%s%.*s", name, infix_, RAND_LEN, r);
        /* O_EXCL also fails on an existing symbolic link (even a dangling one); O_NOFOLLOW in
         * addition. Mode 0666: the kernel applies the umask. */
        f->fd = openat(dirfd, f->tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0666);
        if (f->fd < 0 && errno != EEXIST)
            st = SP_FAIL(SP_ERR_IO, "%s: cannot create the %s (a temporary file in %s: %s)",
                         f->shown, what, dirpath, strerror(errno));
    }
    if (st == SP_OK && f->fd < 0)
        st = SP_FAIL(SP_ERR_IO, "%s: cannot create the %s (a temporary file in %s: %s)", f->shown,
                     what, dirpath, strerror(EEXIST));
    struct stat sb;
    if (st == SP_OK && fstat(f->fd, &sb) != 0)
        st = SP_FAIL(SP_ERR_IO, "%s: cannot stat the temporary file (%s)", f->shown,
                     strerror(errno));
    if (st == SP_OK) {
        f->dev = sb.st_dev, f->ino = sb.st_ino;
        f->tmp_path = sp_path_join(dirpath, f->tmp);
        if (!f->tmp_path) st = SP_FAIL(SP_ERR_NOMEM, "%s: out of memory", f->shown);
    }
    if (st != SP_OK) release_(f, f->fd >= 0);
    return st;
}

sp_status sp_afile_open(sp_afile *f, const char *path, const char *what) {
    memset(f, 0, sizeof *f);
    f->fd = f->dirfd = -1;
    const size_t len = strlen(path);
    const char *slash = strrchr(path, '/');
    const char *base = slash ? slash + 1 : path;
    if (len == 0 || !*base || !strcmp(base, ".") || !strcmp(base, ".."))
        return SP_FAIL(SP_ERR_ARG, "'%s': the path of a %s must name a file", path, what);
    char *dir = slash ? strndup(path, slash == path ? 1 : (size_t)(slash - path)) : strdup(".");
    if (!dir) return SP_FAIL(SP_ERR_NOMEM, "%s: out of memory", path);
    const int dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dirfd < 0) {
        const sp_status st = SP_FAIL(SP_ERR_IO, "%s: cannot create the %s (%s: %s)", path, what,
                                     dir, strerror(errno));
        free(dir);
        return st;
    }
    const sp_status st = sp_afile_open_at(f, dirfd, dir, base, what);
    free(dir);
    if (st != SP_OK) {
        close(dirfd);
        return st;
    }
    f->own_dirfd = true;
    return SP_OK;
}

const char *sp_afile_tmp_path(const sp_afile *f) {
    return f->tmp_path;
}

sp_status sp_afile_write(sp_afile *f, const void *buf, size_t len) {
    const unsigned char *p = buf;
    for (size_t done = 0; done < len;) {
        size_t chunk = len - done;
        if (chunk > ((size_t)64 << 20)) chunk = (size_t)64 << 20;
        const ssize_t w = write(f->fd, p + done, chunk);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0)
            return SP_FAIL(SP_ERR_IO, "%s: cannot write the %s (%s)", f->shown, f->what,
                           strerror(w < 0 ? errno : EIO));
        done += (size_t)w;
    }
    return SP_OK;
}

sp_status sp_afile_sync(sp_afile *f) {
    if (f->fd < 0) return SP_OK;
    sp_status st = SP_OK;
    if (fsync(f->fd) != 0)
        st = SP_FAIL(SP_ERR_IO, "%s: cannot fsync the %s (%s)", f->shown, f->what, strerror(errno));
    const int e = close(f->fd);
    f->fd = -1;
    if (st == SP_OK && e != 0)
        st = SP_FAIL(SP_ERR_IO, "%s: cannot close the %s (%s)", f->shown, f->what, strerror(errno));
    return st;
}

sp_status sp_afile_commit(sp_afile *f) {
    sp_status st = sp_afile_sync(f);
    /* right before the rename, again: a link planted at the target meanwhile is refused, and
     * the temporary name must still be the file created (no one swapped it) */
    if (st == SP_OK) st = check_target_(f);
    struct stat sb;
    if (st == SP_OK && (fstatat(f->dirfd, f->tmp, &sb, AT_SYMLINK_NOFOLLOW) != 0 ||
                        !S_ISREG(sb.st_mode) || sb.st_dev != f->dev || sb.st_ino != f->ino))
        st = SP_FAIL(SP_ERR_IO, "%s: the temporary file %s was replaced while being written",
                     f->shown, f->tmp);
    if (st == SP_OK && renameat(f->dirfd, f->tmp, f->dirfd, f->name) != 0)
        st = SP_FAIL(SP_ERR_IO, "%s: cannot rename the temporary file into place (%s)", f->shown,
                     strerror(errno));
    const bool renamed = st == SP_OK;
    if (renamed) st = sp_fsync_dir(f->dirfd, f->dir);
    release_(f, !renamed);
    return st;
}

sp_status sp_fsync_dir(int dirfd, const char *dirpath) {
    if (fsync(dirfd) != 0 && errno != EINVAL && errno != ENOTSUP)
        return SP_FAIL(SP_ERR_IO, "%s: cannot fsync the directory (%s)", dirpath, strerror(errno));
    return SP_OK;
}

void sp_afile_abort(sp_afile *f) {
    if (f->name) release_(f, true);
}

sp_status sp_afile_write_file(const char *path, const void *buf, size_t len, const char *what) {
    sp_afile f;
    SP_CHECK(sp_afile_open(&f, path, what));
    const sp_status st = sp_afile_write(&f, buf, len);
    if (st != SP_OK) {
        sp_afile_abort(&f);
        return st;
    }
    return sp_afile_commit(&f);
}
