#include "util/shape.h"

#include <stdbool.h>
#include <stdio.h>

static void format_(char *buf, size_t cap, const int64_t *shape, int rank, bool tuple) {
    if (cap == 0) return;
    size_t k = (size_t)snprintf(buf, cap, "(");
    for (int d = 0; d < rank && k < cap; ++d)
        k += (size_t)snprintf(buf + k, cap - k, "%s%lld", d ? (tuple ? ", " : ",") : "",
                              (long long)shape[d]);
    if (k < cap) snprintf(buf + k, cap - k, tuple && rank == 1 ? ",)" : ")");
}

void sp_shape_str(char *buf, size_t cap, const int64_t *shape, int rank) {
    format_(buf, cap, shape, rank, true);
}

void sp_shape_str_compact(char *buf, size_t cap, const int64_t *shape, int rank) {
    format_(buf, cap, shape, rank, false);
}
