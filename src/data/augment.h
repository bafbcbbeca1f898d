/*
 * Image augmentation of training batches (--augment): random crops of a zero-padded image,
 * horizontal flips and integer translations, applied in the order given.
 *
 * Every draw is the counter RNG of util/rng.h keyed by
 *     (seed, SP_STREAM_AUGMENT + (epoch << 8), id * SP_AUGMENT_DRAWS + 2 * op + k),  k = 0, 1
 * so what happens to a sample depends only on (seed, epoch, sample id): never on the rank, the
 * thread, the batch it lands in or its position there. An epoch draws afresh; a resumed epoch
 * draws the same.
 *
 * The transforms, on one (C, H, W) image, every channel alike:
 *   crop:P       pad P zero pixels on every side, take the H x W window at offsets (oy, ox),
 *                each uniform in [0, 2P]: out[y][x] = in[y + oy - P][x + ox - P], 0 outside
 *   flip         with probability 1/2: out[y][x] = in[y][W - 1 - x]
 *   translate:T  shift by (dy, dx), each uniform in [-T, T]: out[y][x] = in[y - dy][x - dx],
 *                0 outside
 * crop:P and translate:P reach the same shifts with the same probabilities (a crop at offset o
 * is the shift P - o); both are offered because both are how the literature writes them.
 *
 *     sp_augment a;
 *     SP_CHECK(sp_augment_parse(&a, "crop:2,flip"));
 *     SP_CHECK(sp_augment_check_shape(&a, info));   // images, P and T below H and W
 *     sp_augment_apply(&a, x, ids, count, C, H, W, seed, epoch);
 */
#ifndef SP_DATA_AUGMENT_H
#define SP_DATA_AUGMENT_H

#include <stddef.h>
#include <stdint.h>

#include "shardprop/data.h"
#include "shardprop/status.h"

typedef enum { SP_AUG_CROP, SP_AUG_FLIP, SP_AUG_TRANSLATE } sp_aug_kind;

enum {
    SP_AUGMENT_MAX_OPS = 8,                    /* transforms in one list */
    SP_AUGMENT_DRAWS = 2 * SP_AUGMENT_MAX_OPS, /* counters per sample: two per transform */
    SP_AUGMENT_SPEC_MAX = 256                  /* characters of a spec */
};

typedef struct sp_aug_op {
    sp_aug_kind kind;
    int amount; /* P of crop, T of translate; 0 for flip */
} sp_aug_op;

/* A parsed spec: n transforms applied in order (n = 0: none). */
typedef struct sp_augment {
    int n;
    sp_aug_op op[SP_AUGMENT_MAX_OPS];
    char spec[SP_AUGMENT_SPEC_MAX]; /* the text as given, for messages */
} sp_augment;

/*
 * Parse a comma-separated list ("crop:2,flip", "translate:3"; blanks around items allowed;
 * "none" or "" is the empty list) into *a. An unknown transform, a missing or malformed number,
 * a negative one, an argument given to flip, an empty item or more than SP_AUGMENT_MAX_OPS
 * items is SP_ERR_ARG, one line quoting the spec. Sizes are checked by sp_augment_check_shape.
 */
sp_status sp_augment_parse(sp_augment *a, const char *spec);

/* The spec in its canonical form ("crop:2,flip"; "none" for the empty list) into buf (cap
 * bytes, always NUL-terminated): two specs that parse to the same list format the same. */
void sp_augment_format(const sp_augment *a, char *buf, size_t cap);

/* SP_ERR_DATA unless the data are images, samples of shape (C, H, W), and every crop:P and
 * translate:T has P, T < min(H, W); the message names the file, the dataset and the spec. */
sp_status sp_augment_check_shape(const sp_augment *a, const sp_dataset_info *info);

/*
 * Augment x (count, C, H, W) in place: sample i, whose id is ids[i], gets the transforms of a
 * drawn for (seed, epoch, ids[i]). Allocation-free; sample-sized memory moves only. The shape
 * must have passed sp_augment_check_shape.
 */
void sp_augment_apply(const sp_augment *a, float *x, const int64_t *ids, int64_t count, int C,
                      int H, int W, uint64_t seed, int64_t epoch);

/* The two moves every transform is made of, on one image (C, H, W) in place:
 * shift: out[c][y][x] = in[c][y - dy][x - dx], 0 where that is outside the image (any dy, dx);
 * flip:  out[c][y][x] = in[c][y][W - 1 - x]. */
void sp_augment_shift(float *img, int C, int H, int W, int dy, int dx);
void sp_augment_flip(float *img, int C, int H, int W);

/* The draws of transform `op` of a for one sample: the shift (dy, dx) it makes (crop and
 * translate; 0 for flip) and whether it flips (flip only). What sp_augment_apply does, exposed
 * for the tests' reference and for the distribution checks. */
void sp_augment_draw(const sp_augment *a, int op, uint64_t seed, int64_t epoch, int64_t id, int *dy,
                     int *dx, int *flip);

#endif
