/* The error channel: one line, thread-local, cleared on request. */
#include <string.h>

#include "testutil.h"
#include "util/rng.h"
#include "util/status.h"

int main(void) {
    sp_status st = SP_FAIL(SP_ERR_DATA, "%s: dataset '%s': %s", "f.h5", "X", "bad\nthing");
    CHECK(st == SP_ERR_DATA, "status %d", (int)st);
    CHECK(strcmp(sp_last_error(), "f.h5: dataset 'X': bad thing") == 0, "msg '%s'",
          sp_last_error());
    CHECK(strstr(sp_last_error_where(), "test_status.c") != NULL, "where '%s'",
          sp_last_error_where());
    sp_error_clear();
    CHECK(sp_last_error()[0] == '\0', "cleared");
    CHECK(strcmp(sp_status_name(SP_ERR_IO), "I/O error") == 0, "name");

    /* The counter-based RNG is a pure function of its key, and roughly uniform. */
    CHECK(sp_rng_u64(1, 2, 3) == sp_rng_u64(1, 2, 3), "pure");
    CHECK(sp_rng_u64(1, 2, 3) != sp_rng_u64(1, 2, 4), "counter");
    CHECK(sp_rng_u64(1, 2, 3) != sp_rng_u64(1, 3, 3), "stream");
    CHECK(sp_rng_u64(1, 2, 3) != sp_rng_u64(2, 2, 3), "seed");
    int bins[10] = {0};
    double mean = 0;
    const int n = 100000;
    for (int i = 0; i < n; ++i) {
        float u = sp_rng_uniform(7, 1, (uint64_t)i);
        CHECK(u >= 0.0f && u < 1.0f, "range %g", (double)u);
        mean += u;
        bins[sp_rng_below(7, 2, (uint64_t)i, 10)]++;
    }
    mean /= n;
    CHECK(mean > 0.495 && mean < 0.505, "mean %g", mean);
    for (int b = 0; b < 10; ++b) CHECK(bins[b] > 9500 && bins[b] < 10500, "bin %d: %d", b, bins[b]);
    return sp_test_summary("status");
}
