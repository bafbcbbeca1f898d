/* The best validation epoch so far (train/best.h). */
#include "train/best.h"

#include <math.h>
#include <string.h>

sp_best sp_best_init(const char *metric) {
    return (sp_best){.on = metric != NULL,
                     .higher = metric && !strcmp(metric, "val_accuracy"),
                     .metric = metric,
                     .value = NAN};
}

bool sp_best_update(sp_best *b, double v, int64_t epoch) {
    /* a NaN or an Inf never becomes the best: nothing finite could beat it afterwards */
    const bool better = isfinite(v) && (b->epoch == 0 || (b->higher ? v > b->value : v < b->value));
    if (better) {
        b->value = v;
        b->epoch = epoch;
        b->since = 0;
    } else {
        b->since++;
    }
    return better;
}

bool sp_best_exhausted(const sp_best *b, int64_t patience) {
    return patience > 0 && b->since >= patience;
}
