/*
 * The fixed-point gradient reducer of --deterministic (comm/reducer.h, sp_reducer_create_fixed), on 1 to
 * 4 ranks: every rank's result must be, bit for bit, the float of the exact int64 sum over all
 * ranks times 2^-40 (sp_fix_to_float), computed here without MPI. Cases: bucket sizes that cut the slab
 * unevenly (bucket lengths not a multiple of the ranks, a last bucket with fewer elements than
 * ranks), buckets started during a mock backward (sp_reducer_ready from the end of the slab
 * towards its start, as the layers finish) or all at finish, and bucket_bytes 0 (one blocking
 * reduce-scatter + allgather). The values are up to 2^50 in magnitude (a few up to 2^59) and of
 * both signs, so a float or double sum in another order would round differently; the slab must be left as it
 * was, and a second step with other values must not see the first one's.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <mpi.h>

#include "comm/comm.h"
#include "comm/reducer.h"
#include "testutil.h"

static uint64_t mix_(uint64_t z) { /* splitmix64's finalizer */
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Rank r's value of element i at step s: in (-2^50, 2^50), both signs; every 97th in (-2^59,
 * 2^59), so that sums beyond 2^53 (where the int64 -> double conversion rounds) are in every
 * bucket of more than 97 elements. */
static int64_t value_(int r, size_t i, int s) {
    const uint64_t h = mix_(((uint64_t)s << 56) ^ ((uint64_t)r << 40) ^ (uint64_t)i);
    if (i % 97 == 0) return (int64_t)(h >> 4) - ((int64_t)1 << 59);
    return (int64_t)(h >> 13) - ((int64_t)1 << 50);
}

int main(int argc, char **argv) {
    sp_comm *c = NULL;
    if (sp_comm_init(&c, &argc, &argv) != SP_OK) return 1;
    const int P = sp_comm_size(c), me = sp_comm_rank(c);
    const double scale = 0x1p-40;
    const size_t sizes[] = {1, 3, 1000, 100003};
    const size_t buckets[] = {0, 7 * sizeof(int64_t), 1000 * sizeof(int64_t), 1 << 20};
    for (size_t si = 0; si < sizeof sizes / sizeof *sizes; ++si) {
        const size_t n = sizes[si];
        int64_t *slab = malloc(n * sizeof *slab), *copy = malloc(n * sizeof *copy);
        float *got = malloc(n * sizeof *got), *want = malloc(n * sizeof *want);
        for (size_t bi = 0; bi < sizeof buckets / sizeof *buckets; ++bi) {
            sp_reducer *r = NULL;
            CHECK(sp_reducer_create_fixed(&r, c, slab, got, n, buckets[bi]) == SP_OK,
                  "create n=%zu bucket=%zu", n, buckets[bi]);
            if (!r) continue;
            const int nb = sp_reducer_num_buckets(r);
            /* the receive buffer: P - 1 slots of this rank's share of each bucket, the other
             * ranks' terms (one slot, the sums, for one blocking call), and the counts,
             * requests and source pointers */
            const size_t slots = buckets[bi] ? (size_t)P - 1 : 1;
            const size_t share = (n + (size_t)P - 1) / (size_t)P + (size_t)nb;
            if (P > 1)
                CHECK(sp_reducer_memory_bytes(r) <=
                          slots * share * sizeof(int64_t) +
                              2 * (size_t)nb * (size_t)P * (sizeof(int) + sizeof(MPI_Request)) +
                              (size_t)P * sizeof(int64_t *),
                      "n=%zu bucket=%zu: %zu bytes held", n, buckets[bi],
                      sp_reducer_memory_bytes(r));
            for (int step = 0; step < 2; ++step) {
                for (size_t i = 0; i < n; ++i) {
                    slab[i] = value_(me, i, step);
                    int64_t sum = 0;
                    for (int k = 0; k < P; ++k) sum += value_(k, i, step);
                    want[i] = (float)((double)sum * scale);
                    got[i] = -1.0f;
                }
                memcpy(copy, slab, n * sizeof *slab);
                sp_reducer_begin(r);
                if (step == 0) /* a mock backward: the slab completes from its end */
                    for (size_t done = n; done > 0; done = done > 5 ? done - 5 : 0)
                        sp_reducer_ready(r, done - (done > 5 ? 5 : done));
                CHECK(sp_reducer_finish(r) == SP_OK, "finish");
                size_t bad = 0, first = n;
                for (size_t i = 0; i < n; ++i)
                    if (memcmp(&got[i], &want[i], sizeof(float)) != 0)
                        bad++, first = i < first ? i : first;
                CHECK(bad == 0,
                      "rank %d of %d, n=%zu bucket=%zu (%d buckets) step %d: %zu results differ "
                      "from the exact sum, first at %zu: %a, want %a",
                      me, P, n, buckets[bi], nb, step, bad, first, first < n ? got[first] : 0.0f,
                      first < n ? want[first] : 0.0f);
                CHECK(memcmp(copy, slab, n * sizeof *slab) == 0, "the slab is left as it was");
            }
            sp_reducer_free(r);
        }
        free(slab), free(copy), free(got), free(want);
    }
    const int rc = sp_test_summary("reducer");
    sp_comm_finalize(c);
    return rc;
}
