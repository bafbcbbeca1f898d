/* IDX files (the MNIST format): a big-endian header {0, 0, type, ndims} then ndims uint32 sizes,
 * then the data. Only type 0x08 (unsigned byte) is used by MNIST-like sets. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "data/tools.h"
#include "io/h5.h"
#include "util/arith.h"
#include "util/mem.h"
#include "util/status.h"

typedef struct {
    int ndims;
    uint32_t dims[4];
    uint8_t *data; /* (prod dims) */
    size_t size;
} idx_array_;

static sp_status read_idx_(const char *path, int want_ndims, const char *what, idx_array_ *a) {
    memset(a, 0, sizeof *a);
    errno = 0;
    gzFile g = gzopen(path, "rb");
    if (!g)
        return SP_FAIL(SP_ERR_IO, "%s: cannot open IDX %s file (%s)", path, what,
                       errno ? strerror(errno) : "zlib error");
    gzbuffer(g, 1 << 17);
    unsigned char h[4];
    sp_status st = SP_OK;
    int got = gzread(g, h, 4);
    if (got != 4) {
        st = SP_FAIL(SP_ERR_DATA, "%s: not an IDX %s file (shorter than its 4-byte magic number)",
                     path, what);
        goto done;
    }
    if (h[0] != 0 || h[1] != 0 || h[2] != 0x08 || h[3] != want_ndims) {
        st = SP_FAIL(SP_ERR_DATA,
                     "%s: bad IDX magic number 0x%02x%02x%02x%02x for %s (expected 0x000008%02x: "
                     "unsigned bytes, %d dimensions)",
                     path, h[0], h[1], h[2], h[3], what, want_ndims, want_ndims);
        goto done;
    }
    a->ndims = want_ndims;
    size_t total = 1;
    for (int d = 0; d < want_ndims; ++d) {
        unsigned char b[4];
        if (gzread(g, b, 4) != 4) {
            st = SP_FAIL(SP_ERR_DATA, "%s: IDX %s header truncated (dimension %d missing)", path,
                         what, d);
            goto done;
        }
        a->dims[d] = (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
        if (a->dims[d] == 0 || !sp_size_mul(total, a->dims[d], &total)) {
            st = SP_FAIL(SP_ERR_DATA, "%s: IDX %s dimension %d is %u (must be >= 1, size must fit)",
                         path, what, d, a->dims[d]);
            goto done;
        }
    }
    a->size = total;
    /* The header's sizes are not trusted: checked against the memory limit, and the buffer
     * grows as data actually arrives, so a short file claiming a huge array allocates little. */
    char who[600];
    snprintf(who, sizeof who, "%s: IDX %s", path, what);
    if ((st = sp_mem_check(total, who, "the data")) != SP_OK) goto done;
    size_t have = 0, cap = 0;
    while (have < total) {
        if (have == cap) {
            size_t nc = cap ? (cap > total / 2 ? total : cap * 2)
                            : (total < (1u << 20) ? total : (1u << 20));
            uint8_t *grown = realloc(a->data, nc);
            if (!grown) {
                st = SP_FAIL(SP_ERR_NOMEM, "%s: cannot allocate %zu bytes for the IDX %s", path, nc,
                             what);
                goto done;
            }
            a->data = grown;
            cap = nc;
        }
        size_t want = cap - have > (1u << 30) ? (1u << 30) : cap - have;
        int r = gzread(g, a->data + have, (unsigned)want);
        if (r <= 0) break;
        have += (size_t)r;
    }
    if (have < total) {
        int zerr;
        const char *zmsg = gzerror(g, &zerr);
        st = SP_FAIL(SP_ERR_DATA, "%s: IDX %s data truncated: %zu of %zu bytes%s%s", path, what,
                     have, total, zerr != Z_OK ? ": " : "", zerr != Z_OK ? zmsg : "");
        goto done;
    }
    unsigned char extra;
    if (gzread(g, &extra, 1) == 1) {
        st = SP_FAIL(SP_ERR_DATA, "%s: IDX %s has trailing bytes after %zu data bytes", path, what,
                     total);
        goto done;
    }
done:
    gzclose(g);
    if (st != SP_OK) {
        free(a->data);
        a->data = NULL;
    }
    return st;
}

sp_status sp_import_idx(const char *images, const char *labels, const char *out, int64_t *n_out) {
    idx_array_ im, lb;
    SP_CHECK(read_idx_(images, 3, "images", &im));
    sp_status st = read_idx_(labels, 1, "labels", &lb);
    if (st != SP_OK) {
        free(im.data);
        return st;
    }
    if (im.dims[0] != lb.dims[0]) {
        st = SP_FAIL(SP_ERR_DATA, "%s and %s: %u images but %u labels", images, labels, im.dims[0],
                     lb.dims[0]);
        goto done;
    }
    const int64_t n = im.dims[0];
    int maxl = 0;
    for (size_t i = 0; i < lb.size; ++i)
        if (lb.data[i] > maxl) maxl = lb.data[i];
    sp_h5_lock();
    sp_h5_out o;
    st = sp_h5_out_create(&o, out);
    if (st == SP_OK) {
        hsize_t xd[4] = {(hsize_t)n, 1, im.dims[1], im.dims[2]}, yd[1] = {(hsize_t)n};
        hid_t dx = -1, dy = -1;
        st = sp_h5_create_rows(o.file, "X", H5T_STD_U8LE, 4, xd, &dx, out);
        if (st == SP_OK) st = sp_h5_write_rows(dx, H5T_NATIVE_UCHAR, 0, n, im.data, out, "X");
        if (st == SP_OK) st = sp_h5_attr_write_double(dx, "scale", 1.0 / 255.0);
        if (st == SP_OK) st = sp_h5_attr_write_double(dx, "offset", 0.0);
        if (st == SP_OK) st = sp_h5_create_rows(o.file, "y", H5T_STD_U8LE, 1, yd, &dy, out);
        if (st == SP_OK) st = sp_h5_write_rows(dy, H5T_NATIVE_UCHAR, 0, n, lb.data, out, "y");
        if (st == SP_OK) st = sp_h5_attr_write_int64(dy, "classes", maxl + 1);
        if (dx >= 0) H5Dclose(dx);
        if (dy >= 0) H5Dclose(dy);
        if (st == SP_OK)
            st = sp_h5_out_commit(&o);
        else
            sp_h5_out_abort(&o);
    }
    sp_h5_unlock();
    if (st == SP_OK && n_out) *n_out = n;
done:
    free(im.data);
    free(lb.data);
    return st;
}
