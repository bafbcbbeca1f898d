/* The global sample order and the per-rank split of each global batch: pure functions of their
 * arguments, so every rank computes the same thing without communicating. */
#include "data/data.h"
#include "util/rng.h"

void sp_epoch_order(int64_t *perm, int64_t n, uint64_t seed, int64_t epoch, bool shuffle) {
    for (int64_t i = 0; i < n; ++i) perm[i] = i;
    if (!shuffle) return;
    const uint64_t stream = (uint64_t)SP_STREAM_ORDER + ((uint64_t)epoch << 8);
    /* Fisher-Yates from the back: position i swaps with a uniform j in [0, i]; the draw for
     * position i is keyed by i alone. */
    for (int64_t i = n - 1; i > 0; --i) {
        int64_t j = (int64_t)sp_rng_below(seed, stream, (uint64_t)i, (uint64_t)i + 1);
        int64_t t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
}

void sp_epoch_order_shards(int64_t *perm, const int64_t *rows, int nfiles, int64_t window,
                           uint64_t seed, int64_t epoch, int64_t *scratch) {
    const uint64_t stream = (uint64_t)SP_STREAM_ORDER_SHARDS + ((uint64_t)epoch << 8);
    /* the shards: Fisher-Yates as sp_epoch_order, position i keyed by i */
    int64_t *order = scratch;
    int64_t *first = scratch + nfiles; /* first row of each file */
    int64_t acc = 0;
    for (int f = 0; f < nfiles; ++f) {
        order[f] = f;
        first[f] = acc;
        acc += rows[f];
    }
    for (int64_t i = nfiles - 1; i > 0; --i) {
        int64_t j = (int64_t)sp_rng_below(seed, stream, (uint64_t)i, (uint64_t)i + 1);
        int64_t t = order[i];
        order[i] = order[j];
        order[j] = t;
    }
    if (window < 1) window = 1;
    /* each window: its shards' rows in file order, then shuffled among themselves, the draw
     * for position p (of the epoch) keyed by nfiles + p */
    int64_t p = 0;
    for (int w0 = 0, w1; w0 < nfiles; w0 = w1) {
        w1 = nfiles - w0 > window ? w0 + (int)window : nfiles;
        const int64_t p0 = p;
        for (int k = w0; k < w1; ++k)
            for (int64_t r = 0; r < rows[order[k]]; ++r) perm[p++] = first[order[k]] + r;
        for (int64_t i = p - 1; i > p0; --i) {
            int64_t j = p0 + (int64_t)sp_rng_below(seed, stream, (uint64_t)(nfiles + i),
                                                   (uint64_t)(i - p0 + 1));
            int64_t t = perm[i];
            perm[i] = perm[j];
            perm[j] = t;
        }
    }
}

int64_t sp_batches_per_epoch(int64_t n, int64_t batch) {
    if (n <= 0 || batch <= 0) return 0;
    return (n + batch - 1) / batch;
}

void sp_rank_slice(int64_t n, int64_t batch, int64_t b, int rank, int nranks, int64_t *pos,
                   int64_t *count, int64_t *global_count) {
    int64_t first = b * batch;
    int64_t g = n - first < batch ? n - first : batch;
    if (g < 0 || b < 0) g = 0;
    const int64_t p = nranks, r = rank;
    const int64_t base = g / p, rem = g % p;
    *global_count = g;
    *count = base + (r < rem ? 1 : 0);
    *pos = first + r * base + (r < rem ? r : rem);
}

void sp_rank_slice_micro(int64_t n, int64_t batch, int64_t micro, int64_t b, int rank, int nranks,
                         int64_t *pos, int64_t *count, int64_t *global_count) {
    if (micro <= 0) {
        sp_rank_slice(n, batch, b, rank, nranks, pos, count, global_count);
        return;
    }
    int64_t first = b * batch;
    int64_t g = n - first < batch ? n - first : batch;
    if (g < 0 || b < 0) g = 0;
    const int64_t nmb = (g + micro - 1) / micro, p = nranks, r = rank;
    const int64_t base = nmb / p, rem = nmb % p;
    const int64_t mb0 = r * base + (r < rem ? r : rem), mbn = base + (r < rem ? 1 : 0);
    int64_t s0 = mb0 * micro, s1 = (mb0 + mbn) * micro;
    if (s0 > g) s0 = g;
    if (s1 > g) s1 = g;
    *global_count = g;
    *pos = first + s0;
    *count = s1 - s0;
}

int64_t sp_rank_slice_max(int64_t batch, int64_t micro, int nranks) {
    if (micro <= 0) return (batch + nranks - 1) / nranks;
    const int64_t nmb = (batch + micro - 1) / micro;
    const int64_t most = (nmb + nranks - 1) / nranks * micro;
    return most < batch ? most : batch;
}
