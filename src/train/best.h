/*
 * The best validation epoch so far (--keep-best, --early-stop): which metric, its best value,
 * the epoch that reached it and how many epochs have gone by without beating it. The trainer
 * updates it after each complete epoch's validation pass and keeps it in every checkpoint, so a
 * resumed run takes the same decisions as an uninterrupted one.
 *
 * An epoch improves when its value is finite and strictly better than the best so far (lower
 * for val_loss, higher for val_accuracy), or when it is the first finite value. Nothing here
 * is collective: the validation values are global, so every rank holds the same state.
 */
#ifndef SP_TRAIN_BEST_H
#define SP_TRAIN_BEST_H

#include <stdbool.h>
#include <stdint.h>

typedef struct sp_best {
    bool on;            /* --keep-best or --early-stop */
    bool higher;        /* val_accuracy: higher is better; val_loss: lower */
    const char *metric; /* "val_loss" | "val_accuracy" */
    double value;       /* the best value so far; NaN before the first finite one */
    int64_t epoch;      /* the epoch (1-based) that reached it; 0: none yet */
    int64_t since;      /* complete epochs validated since then (since the start when none) */
} sp_best;

/* Off, or tracking `metric` ("val_loss" | "val_accuracy") from no epoch yet. */
sp_best sp_best_init(const char *metric);

/* Epoch `epoch` (1-based) validated to `v`: true when it improves (the state then names it),
 * else one more epoch counts without improvement. */
bool sp_best_update(sp_best *b, double v, int64_t epoch);

/* Whether `patience` (> 0) epochs in a row went by without improvement. */
bool sp_best_exhausted(const sp_best *b, int64_t patience);

#endif
