/* The best-so-far rule (train/best.h): the first finite value is the best, then only a strictly
 * better one (lower val_loss, higher val_accuracy); a NaN or an Inf never is; every other epoch
 * counts towards --early-stop's patience. */
#include <math.h>

#include "testutil.h"
#include "train/best.h"

static void test_loss(void) {
    sp_best b = sp_best_init("val_loss");
    CHECK(b.on && !b.higher && b.epoch == 0 && b.since == 0, "fresh");
    CHECK(!sp_best_update(&b, NAN, 1) && b.epoch == 0 && b.since == 1, "NaN first: no best");
    CHECK(!sp_best_update(&b, INFINITY, 2) && b.since == 2, "Inf: no best");
    CHECK(sp_best_update(&b, 2.0, 3) && b.epoch == 3 && b.value == 2.0 && b.since == 0,
          "the first finite value is the best");
    CHECK(!sp_best_update(&b, 2.0, 4) && b.epoch == 3 && b.since == 1, "a tie is no improvement");
    CHECK(!sp_best_update(&b, 2.5, 5) && b.since == 2, "worse");
    CHECK(!sp_best_exhausted(&b, 3) && sp_best_exhausted(&b, 2), "patience 2 ran out, 3 not");
    CHECK(sp_best_update(&b, 1.5, 6) && b.epoch == 6 && b.since == 0, "lower is better");
    CHECK(!sp_best_exhausted(&b, 1), "an improvement resets the count");
    CHECK(!sp_best_exhausted(&b, 0) && !sp_best_update(&b, NAN, 7) && !sp_best_exhausted(&b, 0),
          "patience 0: never");
}

static void test_accuracy(void) {
    sp_best b = sp_best_init("val_accuracy");
    CHECK(b.on && b.higher, "higher is better");
    CHECK(sp_best_update(&b, 0.5, 1), "first");
    CHECK(!sp_best_update(&b, 0.4, 2) && !sp_best_update(&b, 0.5, 3) && b.since == 2,
          "lower and equal are no improvement");
    CHECK(sp_best_update(&b, 0.6, 4) && b.epoch == 4, "higher");
    const sp_best off = sp_best_init(NULL);
    CHECK(!off.on, "no metric: off");
}

int main(void) {
    test_loss();
    test_accuracy();
    return sp_test_summary("best_rule");
}
