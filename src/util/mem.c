#include "util/mem.h"

#include <stdatomic.h>
#include <stdint.h>
#include <unistd.h>

#include "util/arith.h"
#include "util/status.h"

static _Atomic size_t sp_mem_limit_ = 0; /* 0: not set, use the default */

static size_t default_limit_(void) {
    long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    size_t phys = 0;
    if (pages <= 0 || page <= 0 || !sp_size_mul((size_t)pages, (size_t)page, &phys))
        phys = (size_t)8 << 30; /* unknown: assume 8 GiB */
    size_t lim = phys / 2;
    return lim < ((size_t)64 << 20) ? (size_t)64 << 20 : lim;
}

void sp_mem_set_limit(size_t bytes) {
    atomic_store(&sp_mem_limit_, bytes);
}

size_t sp_mem_limit(void) {
    size_t l = atomic_load(&sp_mem_limit_);
    return l ? l : default_limit_();
}

sp_status sp_mem_check(size_t bytes, const char *who, const char *what) {
    const size_t lim = sp_mem_limit();
    if (bytes <= lim) return SP_OK;
    return SP_FAIL(SP_ERR_NOMEM,
                   "%s: %s needs %.1f MiB, more than the memory limit of %.1f MiB "
                   "(--max-memory-mb; a damaged file or a too large shape?)",
                   who, what, (double)bytes / 1048576.0, (double)lim / 1048576.0);
}

sp_status sp_mem_check_n(size_t count, size_t size, size_t *bytes, const char *who,
                         const char *what) {
    size_t b;
    if (!sp_size_mul(count, size, &b))
        return SP_FAIL(SP_ERR_NOMEM, "%s: %s: %zu x %zu bytes overflows size_t", who, what, count,
                       size);
    if (bytes) *bytes = b;
    return sp_mem_check(b, who, what);
}
