/*
 * --augment (data/augment.h) against plain-loop references that follow the contract literally
 * (a zero-padded image and a window of it; index arithmetic with bounds checks; the draws taken
 * from the counter RNG as documented):
 *  - each move on its own: the crop at every offset, shifts past the edges, the flip;
 *  - whole lists on batches, bitwise, the transforms in the order given;
 *  - a sample's result depends on (seed, epoch, id) only: the same for any batch composition and
 *    order; another epoch or seed draws differently;
 *  - the draws: flips near half of the samples, crop and translate shifts covering [-P, P];
 *  - parsing, the canonical form, the shape checks;
 *  - the loader: 1 and 2 ranks, prefetch or not, cache or not (the cache keeps rows as read),
 *    every batch equal to the reference applied to the rows of the file.
 */
#include <stdlib.h>
#include <string.h>

#include "data/augment.h"
#include "data/data.h"
#include "h5_writer.h"
#include "testutil.h"
#include "util/rng.h"

/* ------------------------------------------------------------------ the references */

/* out (C, H, W) = the H x W window at (oy, ox) of in (C, H, W) padded with P zeros per side. */
static void crop_ref(float *out, const float *in, int C, int H, int W, int P, int oy, int ox) {
    const int PH = H + 2 * P, PW = W + 2 * P;
    float *pad = calloc((size_t)C * PH * PW, sizeof(float)); /* (C, H + 2P, W + 2P) */
    for (int c = 0; c < C; ++c)
        for (int y = 0; y < H; ++y)
            for (int x = 0; x < W; ++x)
                pad[((size_t)c * PH + y + P) * PW + x + P] = in[((size_t)c * H + y) * W + x];
    for (int c = 0; c < C; ++c)
        for (int y = 0; y < H; ++y)
            for (int x = 0; x < W; ++x)
                out[((size_t)c * H + y) * W + x] = pad[((size_t)c * PH + y + oy) * PW + x + ox];
    free(pad);
}

/* out[c][y][x] = in[c][y - dy][x - dx], 0 outside. */
static void shift_ref(float *out, const float *in, int C, int H, int W, int dy, int dx) {
    for (int c = 0; c < C; ++c)
        for (int y = 0; y < H; ++y)
            for (int x = 0; x < W; ++x) {
                const int sy = y - dy, sx = x - dx;
                out[((size_t)c * H + y) * W + x] = sy >= 0 && sy < H && sx >= 0 && sx < W
                                                       ? in[((size_t)c * H + sy) * W + sx]
                                                       : 0.0f;
            }
}

static void flip_ref(float *out, const float *in, int C, int H, int W) {
    for (int c = 0; c < C; ++c)
        for (int y = 0; y < H; ++y)
            for (int x = 0; x < W; ++x)
                out[((size_t)c * H + y) * W + x] = in[((size_t)c * H + y) * W + (W - 1 - x)];
}

/* The documented draw k of transform j for sample id: a uniform integer in [0, n). */
static int draw_ref(uint64_t seed, int64_t epoch, int64_t id, int j, int k, int n) {
    const uint64_t stream = 7 + ((uint64_t)epoch << 8); /* SP_STREAM_AUGMENT */
    return (int)sp_rng_below(seed, stream, (uint64_t)id * 16 + 2 * (uint64_t)j + (uint64_t)k,
                             (uint64_t)n);
}

/* The list, transform after transform, on every sample of x (count, C, H, W). */
static void augment_ref(const sp_augment *a, float *x, const int64_t *ids, int64_t count, int C,
                        int H, int W, uint64_t seed, int64_t epoch) {
    const size_t ss = (size_t)C * H * W;
    float *tmp = malloc(ss * sizeof(float));
    for (int64_t i = 0; i < count; ++i) {
        float *img = x + i * ss;
        for (int j = 0; j < a->n; ++j) {
            const int P = a->op[j].amount;
            switch (a->op[j].kind) {
            case SP_AUG_CROP:
                crop_ref(tmp, img, C, H, W, P, draw_ref(seed, epoch, ids[i], j, 0, 2 * P + 1),
                         draw_ref(seed, epoch, ids[i], j, 1, 2 * P + 1));
                break;
            case SP_AUG_TRANSLATE:
                shift_ref(tmp, img, C, H, W, draw_ref(seed, epoch, ids[i], j, 0, 2 * P + 1) - P,
                          draw_ref(seed, epoch, ids[i], j, 1, 2 * P + 1) - P);
                break;
            case SP_AUG_FLIP:
                if (draw_ref(seed, epoch, ids[i], j, 0, 2))
                    flip_ref(tmp, img, C, H, W);
                else
                    memcpy(tmp, img, ss * sizeof(float));
                break;
            }
            memcpy(img, tmp, ss * sizeof(float));
        }
    }
    free(tmp);
}

static sp_augment parsed(const char *spec) {
    sp_augment a;
    const sp_status st = sp_augment_parse(&a, spec);
    CHECK(st == SP_OK, "parse '%s': %s", spec, sp_last_error());
    return a;
}

/* ------------------------------------------------------------------ the moves */

static void test_moves(void) {
    enum { C = 3, H = 5, W = 7, P = 2 };
    float in[C * H * W], got[C * H * W], want[C * H * W];
    sp_test_fill(in, C * H * W, 1, 0.5f, 2.0f); /* no zeros: a zero means "outside" */
    int bad = 0;
    for (int oy = 0; oy <= 2 * P; ++oy)
        for (int ox = 0; ox <= 2 * P; ++ox) {
            memcpy(got, in, sizeof in);
            sp_augment_shift(got, C, H, W, P - oy, P - ox);
            crop_ref(want, in, C, H, W, P, oy, ox);
            bad += memcmp(got, want, sizeof got) != 0;
        }
    CHECK(bad == 0, "crop:%d at each of the %d offsets is the window of the padded image (%d bad)",
          P, (2 * P + 1) * (2 * P + 1), bad);
    /* offset (0, 0): the image moved down-right by P; its corner now holds zeros */
    memcpy(got, in, sizeof in);
    sp_augment_shift(got, C, H, W, P, P);
    CHECK(got[0] == 0.0f && got[P * W + P] == in[0] && got[H * W + P * W + P] == in[H * W],
          "offset (0, 0): in[0][0] lands at (P, P), zeros before it");
    bad = 0;
    for (int dy = -H - 1; dy <= H + 1; ++dy)
        for (int dx = -W - 1; dx <= W + 1; ++dx) {
            memcpy(got, in, sizeof in);
            sp_augment_shift(got, C, H, W, dy, dx);
            shift_ref(want, in, C, H, W, dy, dx);
            bad += memcmp(got, want, sizeof got) != 0;
        }
    CHECK(bad == 0, "shifts by (dy, dx) in [-H-1, H+1] x [-W-1, W+1], in place (%d bad)", bad);
    memcpy(got, in, sizeof in);
    sp_augment_flip(got, C, H, W);
    flip_ref(want, in, C, H, W);
    CHECK(!memcmp(got, want, sizeof got), "flip mirrors every row of every channel");
    sp_augment_flip(got, C, H, W);
    CHECK(!memcmp(got, in, sizeof got), "flip twice is the identity");
    float one[2 * 4 * 1];
    sp_test_fill(one, 8, 2, 1.0f, 2.0f);
    memcpy(got, one, sizeof one);
    sp_augment_flip(got, 2, 4, 1);
    CHECK(!memcmp(got, one, sizeof one), "flip of one-pixel-wide images changes nothing");
}

/* ------------------------------------------------------------------ whole lists */

enum { C = 2, H = 9, W = 11, N = 64 };
static float base[N * C * H * W]; /* the images as read */

static void test_lists(void) {
    static float got[N * C * H * W], want[N * C * H * W];
    static const char *specs[] = {"crop:2",
                                  "flip",
                                  "translate:3",
                                  "crop:0",
                                  "flip,crop:3",
                                  "crop:1, flip ,translate:2",
                                  "translate:8,translate:1,flip,flip"};
    int64_t ids[N];
    for (int i = 0; i < N; ++i) ids[i] = 1000 + 37 * i;
    for (size_t k = 0; k < sizeof specs / sizeof *specs; ++k) {
        const sp_augment a = parsed(specs[k]);
        memcpy(got, base, sizeof base);
        memcpy(want, base, sizeof base);
        sp_augment_apply(&a, got, ids, N, C, H, W, 42, 3);
        augment_ref(&a, want, ids, N, C, H, W, 42, 3);
        CHECK(!memcmp(got, want, sizeof got), "'%s': equals the reference bitwise", specs[k]);
        if (a.op[0].amount > 0 || a.op[0].kind == SP_AUG_FLIP)
            CHECK(memcmp(got, base, sizeof got), "'%s': changes the batch", specs[k]);
    }
    /* crop:0 draws nothing that moves */
    const sp_augment c0 = parsed("crop:0");
    memcpy(got, base, sizeof base);
    sp_augment_apply(&c0, got, ids, N, C, H, W, 42, 3);
    CHECK(!memcmp(got, base, sizeof got), "crop:0 is the identity");
}

/* The order given is the order applied: for a sample that moves sideways and then flips,
 * translate,flip is flip(shift(x)), not shift(flip(x)). */
static void test_order(void) {
    const sp_augment a = parsed("translate:2,flip");
    const size_t ss = (size_t)C * H * W;
    float got[C * H * W], want[C * H * W], tmp[C * H * W], other[C * H * W];
    int found = 0;
    for (int64_t id = 0; id < 100 && !found; ++id) {
        int dy, dx, flip, d0, d1, f;
        sp_augment_draw(&a, 0, 5, 0, id, &dy, &dx, &f);
        sp_augment_draw(&a, 1, 5, 0, id, &d0, &d1, &flip);
        if (!flip || dx == 0) continue;
        found = 1;
        const float *img = base + (size_t)(id % N) * ss;
        memcpy(got, img, sizeof got);
        sp_augment_apply(&a, got, &id, 1, C, H, W, 5, 0);
        shift_ref(tmp, img, C, H, W, dy, dx);
        flip_ref(want, tmp, C, H, W);
        flip_ref(tmp, img, C, H, W);
        shift_ref(other, tmp, C, H, W, dy, dx);
        CHECK(!memcmp(got, want, sizeof got), "id %lld: translate then flip", (long long)id);
        CHECK(memcmp(got, other, sizeof got), "id %lld: not flip then translate", (long long)id);
    }
    CHECK(found, "some sample of 100 both shifts sideways and flips");
}

/* ------------------------------------------------------------------ determinism */

static void test_determinism(void) {
    static float all[N * C * H * W], part[N * C * H * W], other[N * C * H * W];
    const size_t ss = (size_t)C * H * W;
    const sp_augment a = parsed("crop:2,flip,translate:1");
    int64_t ids[N], perm[N];
    for (int i = 0; i < N; ++i) ids[i] = i;
    memcpy(all, base, sizeof base);
    sp_augment_apply(&a, all, ids, N, C, H, W, 9, 4);
    /* the same samples, reversed and cut into batches of 7 (another rank count, another batch
     * position): each sample comes out as before */
    for (int i = 0; i < N; ++i) perm[i] = N - 1 - i;
    for (int i = 0; i < N; ++i) memcpy(part + (size_t)i * ss, base + (size_t)perm[i] * ss, ss * 4);
    for (int b = 0; b < N; b += 7)
        sp_augment_apply(&a, part + (size_t)b * ss, perm + b, N - b < 7 ? N - b : 7, C, H, W, 9, 4);
    int bad = 0;
    for (int i = 0; i < N; ++i)
        bad += memcmp(part + (size_t)i * ss, all + (size_t)perm[i] * ss, ss * 4) != 0;
    CHECK(bad == 0, "a sample's result does not depend on its batch or position (%d differ)", bad);
    /* another epoch, another seed: other draws for most samples */
    int same_epoch = 0, same_seed = 0;
    memcpy(other, base, sizeof base);
    sp_augment_apply(&a, other, ids, N, C, H, W, 9, 5);
    for (int i = 0; i < N; ++i) same_epoch += !memcmp(other + i * ss, all + i * ss, ss * 4);
    memcpy(other, base, sizeof base);
    sp_augment_apply(&a, other, ids, N, C, H, W, 10, 4);
    for (int i = 0; i < N; ++i) same_seed += !memcmp(other + i * ss, all + i * ss, ss * 4);
    CHECK(same_epoch < N / 8, "epoch 5 draws afresh: %d of %d samples as in epoch 4", same_epoch,
          N);
    CHECK(same_seed < N / 8, "seed 10 draws afresh: %d of %d samples as with seed 9", same_seed, N);
}

/* ------------------------------------------------------------------ the draws */

static void test_distribution(void) {
    enum { M = 21000 };
    const sp_augment a = parsed("flip,crop:3,translate:2");
    int flips = 0, crop_y[7] = {0}, crop_x[7] = {0}, tr[5] = {0}, outside = 0;
    for (int64_t id = 0; id < M; ++id) {
        int dy, dx, f;
        sp_augment_draw(&a, 0, 1, 2, id, &dy, &dx, &f);
        flips += f;
        outside += dy != 0 || dx != 0;
        sp_augment_draw(&a, 1, 1, 2, id, &dy, &dx, &f);
        if (dy < -3 || dy > 3 || dx < -3 || dx > 3 || f) {
            ++outside;
            continue;
        }
        crop_y[3 - dy]++, crop_x[3 - dx]++; /* the window offset P - shift */
        sp_augment_draw(&a, 2, 1, 2, id, &dy, &dx, &f);
        if (dy < -2 || dy > 2 || dx < -2 || dx > 2 || f) {
            ++outside;
            continue;
        }
        tr[dy + 2]++, tr[dx + 2]++;
    }
    CHECK(outside == 0, "every draw within its range (%d not)", outside);
    /* 21000 fair coins: sd 72; 0.485..0.515 is 4.4 sd either side */
    CHECK(flips > M * 485 / 1000 && flips < M * 515 / 1000, "flip rate %.4f, near 0.5",
          (double)flips / M);
    int lo = M, hi = 0;
    for (int o = 0; o < 7; ++o) {
        lo = crop_y[o] < lo ? crop_y[o] : lo, hi = crop_y[o] > hi ? crop_y[o] : hi;
        lo = crop_x[o] < lo ? crop_x[o] : lo, hi = crop_x[o] > hi ? crop_x[o] : hi;
    }
    /* 3000 expected per offset, sd ~51 */
    CHECK(lo > 2800 && hi < 3200, "crop:3 offsets 0..6 each ~3000 times on each axis: %d..%d", lo,
          hi);
    lo = 2 * M, hi = 0;
    for (int s = 0; s < 5; ++s) lo = tr[s] < lo ? tr[s] : lo, hi = tr[s] > hi ? tr[s] : hi;
    CHECK(lo > 8000 && hi < 8800, "translate:2 shifts -2..2 each ~8400 times: %d..%d", lo, hi);
}

/* ------------------------------------------------------------------ specs and shapes */

static void test_parse(void) {
    static const char *good[][2] = {{"crop:2,flip", "crop:2,flip"},
                                    {" translate:3 , flip ", "translate:3,flip"},
                                    {"crop:04", "crop:4"},
                                    {"none", "none"},
                                    {"", "none"},
                                    {"  none ", "none"},
                                    {"flip,flip,crop:0", "flip,flip,crop:0"}};
    for (size_t k = 0; k < sizeof good / sizeof *good; ++k) {
        const sp_augment a = parsed(good[k][0]);
        char buf[SP_AUGMENT_SPEC_MAX];
        sp_augment_format(&a, buf, sizeof buf);
        CHECK(!strcmp(buf, good[k][1]), "'%s' -> '%s' (got '%s')", good[k][0], good[k][1], buf);
    }
    sp_augment a;
    CHECK(sp_augment_parse(&a, NULL) == SP_OK && a.n == 0, "NULL: none");
    static const char *bad[][2] = {{"blur:2", "unknown transform 'blur'"},
                                   {"crop", "crop needs its padding"},
                                   {"crop:", "crop needs its padding"},
                                   {"translate", "translate needs its shift"},
                                   {"crop:-1", "must be >= 0"},
                                   {"translate:-3,flip", "must be >= 0"},
                                   {"crop:x", "whole number"},
                                   {"crop:2.5", "whole number"},
                                   {"crop:99999999999999999999", "too large"},
                                   {"flip:1", "takes no number"},
                                   {"crop:2,,flip", "empty item"},
                                   {"flip,", "empty item"},
                                   {"none,flip", "unknown transform 'none'"},
                                   {"Flip", "unknown transform 'Flip'"},
                                   {"flip,flip,flip,flip,flip,flip,flip,flip,flip", "more than 8"}};
    for (size_t k = 0; k < sizeof bad / sizeof *bad; ++k) {
        char quoted[300];
        snprintf(quoted, sizeof quoted, "augment '%s'", bad[k][0]);
        const sp_status st = sp_augment_parse(&a, bad[k][0]);
        const char *e = sp_last_error();
        CHECK(st == SP_ERR_ARG && strstr(e, quoted) && strstr(e, bad[k][1]) && !strchr(e, '\n') &&
                  a.n == 0,
              "'%s': one line quoting the spec and saying '%s' (got %d: %s)", bad[k][0], bad[k][1],
              st, e);
    }
}

static void test_shapes(void) {
    sp_dataset_info img = {
        .path = "img.h5", .x_name = "X", .sample_rank = 3, .sample_shape = {1, 6, 9}};
    sp_augment a = parsed("crop:5,translate:5");
    CHECK(sp_augment_check_shape(&a, &img) == SP_OK, "P, T = 5 below 6x9: %s", sp_last_error());
    a = parsed("flip,crop:6");
    CHECK(sp_augment_check_shape(&a, &img) == SP_ERR_DATA && strstr(sp_last_error(), "img.h5") &&
              strstr(sp_last_error(), "'X'") && strstr(sp_last_error(), "crop:6 on 6x9"),
          "crop:6 on 6x9 images: %s", sp_last_error());
    a = parsed("translate:9");
    CHECK(sp_augment_check_shape(&a, &img) == SP_ERR_DATA && strstr(sp_last_error(), "translate:9"),
          "translate:9 on 6x9 images: %s", sp_last_error());
    sp_dataset_info vec = {
        .path = "vec.h5", .x_name = "feat", .sample_rank = 1, .sample_shape = {784}};
    a = parsed("flip");
    CHECK(sp_augment_check_shape(&a, &vec) == SP_ERR_DATA && strstr(sp_last_error(), "vec.h5") &&
              strstr(sp_last_error(), "'feat'") && strstr(sp_last_error(), "vectors (784)") &&
              strstr(sp_last_error(), "augment 'flip' needs images"),
          "vectors: %s", sp_last_error());
    sp_dataset_info tok = {.path = "tok.h5",
                           .x_name = "tokens",
                           .sample_rank = 1,
                           .sample_shape = {32},
                           .seq_len = 32};
    CHECK(sp_augment_check_shape(&a, &tok) == SP_ERR_DATA && strstr(sp_last_error(), "tokens"),
          "token windows: %s", sp_last_error());
    a = parsed("none");
    CHECK(sp_augment_check_shape(&a, &vec) == SP_OK, "no transforms: any data");
}

/* ------------------------------------------------------------------ through the loader */

static void write_images(const char *path) {
    static int32_t y[N];
    for (int i = 0; i < N; ++i) y[i] = i % 3;
    hid_t f = tw_create(path);
    const hsize_t dx[4] = {N, C, H, W}, dy[1] = {N};
    const int rc = f < 0 ||
                   tw_dataset(f, "X", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 4, dx, base, TW_CHUNKED) ||
                   tw_dataset(f, "y", H5T_STD_I32LE, H5T_NATIVE_INT32, 1, dy, y, TW_CONTIGUOUS);
    if (f >= 0) H5Fclose(f);
    CHECK(rc == 0, "write %s", path);
}

static void test_loader(const char *dir) {
    char path[600];
    snprintf(path, sizeof path, "%s/img.h5", dir);
    write_images(path);
    sp_dataset *ds;
    CHECK(sp_dataset_open(&ds, path, NULL, NULL) == SP_OK, "%s", sp_last_error());
    const size_t ss = (size_t)C * H * W;
    const char *spec = "crop:2,flip";
    char spec_copy[32];
    const sp_augment a = parsed(spec);
    static float want[N * C * H * W];
    int bad = 0, batches = 0, moved = 0;
    /* layouts: {ranks, prefetch, cache}; epochs 0, 1 and a resumed start at batch 2 of epoch 1 */
    const int layouts[][3] = {{1, 0, 0}, {1, 1, 1}, {2, 1, 0}, {2, 0, 1}};
    for (int l = 0; l < 4; ++l)
        for (int r = 0; r < layouts[l][0]; ++r) {
            snprintf(spec_copy, sizeof spec_copy, "%s", spec); /* the loader keeps no pointer */
            sp_loader_config lc = {.batch = 10,
                                   .rank = r,
                                   .nranks = layouts[l][0],
                                   .seed = 3,
                                   .shuffle = true,
                                   .cache_mb = layouts[l][2] ? 64 : 0,
                                   .prefetch = layouts[l][1],
                                   .augment = spec_copy};
            sp_loader *ld;
            CHECK(sp_loader_create(&ld, ds, &lc) == SP_OK, "%s", sp_last_error());
            memset(spec_copy, 'x', sizeof spec_copy - 1);
            for (int e = 0; e < 3 && ld; ++e) {
                const int64_t epoch = e < 2 ? e : 1, first = e < 2 ? 0 : 2;
                CHECK(sp_loader_start_epoch(ld, epoch, first) == SP_OK, "%s", sp_last_error());
                sp_batch b;
                bool done = false;
                while (sp_loader_next(ld, &b, &done) == SP_OK && !done) {
                    for (int64_t i = 0; i < b.count; ++i)
                        memcpy(want + i * ss, base + (size_t)b.ids[i] * ss, ss * sizeof(float));
                    augment_ref(&a, want, b.ids, b.count, C, H, W, 3, epoch);
                    bad += memcmp(b.x, want, (size_t)b.count * ss * sizeof(float)) != 0;
                    for (int64_t i = 0; i < b.count; ++i)
                        moved += memcmp(b.x + i * ss, base + (size_t)b.ids[i] * ss, ss * 4) != 0;
                    ++batches;
                }
            }
            sp_loader_free(ld);
        }
    CHECK(bad == 0 && batches > 40, "%d of %d batches differ from the reference", bad, batches);
    CHECK(moved > batches * 5, "the loader's batches are augmented (%d samples changed)", moved);
    /* validation-style loader: no augment, the rows as read */
    sp_loader_config plain = {.batch = 16, .rank = 0, .nranks = 1, .prefetch = true};
    sp_loader *ld;
    CHECK(sp_loader_create(&ld, ds, &plain) == SP_OK, "%s", sp_last_error());
    CHECK(sp_loader_start_epoch(ld, 0, 0) == SP_OK, "%s", sp_last_error());
    sp_batch b;
    bool done = false;
    int changed = 0;
    while (sp_loader_next(ld, &b, &done) == SP_OK && !done)
        changed += memcmp(b.x, base + (size_t)b.ids[0] * ss, (size_t)b.count * ss * 4) != 0;
    CHECK(changed == 0, "without augment the batches are the file's rows");
    sp_loader_free(ld);
    plain.augment = "crop:9";
    CHECK(sp_loader_create(&ld, ds, &plain) == SP_ERR_DATA && !ld && strstr(sp_last_error(), path),
          "crop:9 on 9x11 images: %s", sp_last_error());
    plain.augment = "crop:1;flip";
    CHECK(sp_loader_create(&ld, ds, &plain) == SP_ERR_ARG && !ld, "bad spec: %s", sp_last_error());
    sp_dataset_close(ds);
}

int main(void) {
    char dir[512];
    snprintf(dir, sizeof dir, "%s", sp_test_tmpdir("data_augment"));
    sp_test_fill(base, sizeof base / sizeof *base, 77, 0.25f, 1.0f);
    test_moves();
    test_lists();
    test_order();
    test_determinism();
    test_distribution();
    test_parse();
    test_shapes();
    test_loader(dir);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "cannot remove %s\n", dir);
    return sp_test_summary("data_augment");
}
