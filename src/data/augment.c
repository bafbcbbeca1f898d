/* Image augmentation of training batches (data/augment.h). */
#include "data/augment.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/rng.h"
#include "util/status.h"

static const struct {
    const char *name;
    sp_aug_kind kind;
    const char *what; /* the number's name in messages, NULL: takes none */
} transforms_[] = {{"crop", SP_AUG_CROP, "padding"},
                   {"flip", SP_AUG_FLIP, NULL},
                   {"translate", SP_AUG_TRANSLATE, "shift"}};
enum { N_TRANSFORMS = sizeof transforms_ / sizeof transforms_[0] };

/* One item ("crop:2", blanks trimmed, len bytes at s) into *op. */
static sp_status parse_item_(const char *spec, const char *s, size_t len, sp_aug_op *op) {
    const char *colon = memchr(s, ':', len);
    const size_t nlen = colon ? (size_t)(colon - s) : len;
    int k = 0;
    while (k < N_TRANSFORMS &&
           (strlen(transforms_[k].name) != nlen || strncmp(transforms_[k].name, s, nlen)))
        ++k;
    if (k == N_TRANSFORMS)
        return SP_FAIL(SP_ERR_ARG,
                       "augment '%s': unknown transform '%.*s' (known: crop:P, flip, "
                       "translate:T)",
                       spec, (int)nlen, s);
    op->kind = transforms_[k].kind;
    op->amount = 0;
    const char *what = transforms_[k].what;
    if (!what) {
        if (colon)
            return SP_FAIL(SP_ERR_ARG, "augment '%s': '%.*s': %s takes no number", spec, (int)len,
                           s, transforms_[k].name);
        return SP_OK;
    }
    if (!colon || colon + 1 == s + len)
        return SP_FAIL(SP_ERR_ARG, "augment '%s': %s needs its %s in pixels, e.g. %s:2", spec,
                       transforms_[k].name, what, transforms_[k].name);
    const char *num = colon + 1;
    const size_t dlen = len - nlen - 1;
    size_t i = num[0] == '-' || num[0] == '+';
    bool digits = i < dlen;
    for (; i < dlen; ++i) digits = digits && isdigit((unsigned char)num[i]);
    if (!digits)
        return SP_FAIL(SP_ERR_ARG, "augment '%s': '%.*s': the %s must be a whole number of pixels",
                       spec, (int)len, s, what);
    char buf[32];
    if (dlen >= sizeof buf)
        return SP_FAIL(SP_ERR_ARG, "augment '%s': '%.*s': the %s is too large", spec, (int)len, s,
                       what);
    memcpy(buf, num, dlen);
    buf[dlen] = '\0';
    errno = 0;
    const long v = strtol(buf, NULL, 10);
    if (v < 0)
        return SP_FAIL(SP_ERR_ARG, "augment '%s': '%.*s': the %s must be >= 0", spec, (int)len, s,
                       what);
    if (errno == ERANGE || v > INT_MAX / 4)
        return SP_FAIL(SP_ERR_ARG, "augment '%s': '%.*s': the %s is too large", spec, (int)len, s,
                       what);
    op->amount = (int)v;
    return SP_OK;
}

sp_status sp_augment_parse(sp_augment *a, const char *spec) {
    memset(a, 0, sizeof *a);
    if (!spec) return SP_OK;
    if (strlen(spec) >= SP_AUGMENT_SPEC_MAX)
        return SP_FAIL(SP_ERR_ARG, "augment '%.40s...': longer than %d characters", spec,
                       SP_AUGMENT_SPEC_MAX - 1);
    snprintf(a->spec, sizeof a->spec, "%s", spec);
    const char *p = spec;
    while (isspace((unsigned char)*p)) ++p;
    if (!*p || !strcmp(p, "none")) return SP_OK; /* "none" alone; trailing blanks below */
    for (;;) {
        const char *end = strchr(p, ',');
        if (!end) end = p + strlen(p);
        const char *s = p, *e = end;
        while (s < e && isspace((unsigned char)*s)) ++s;
        while (e > s && isspace((unsigned char)e[-1])) --e;
        if (e - s == 4 && !strncmp(s, "none", 4) && a->n == 0 && !*end) return SP_OK;
        if (s == e) {
            memset(a, 0, sizeof *a);
            return SP_FAIL(SP_ERR_ARG, "augment '%s': an empty item (two commas, or one at an end)",
                           spec);
        }
        if (a->n == SP_AUGMENT_MAX_OPS) {
            memset(a, 0, sizeof *a);
            return SP_FAIL(SP_ERR_ARG, "augment '%s': more than %d transforms", spec,
                           SP_AUGMENT_MAX_OPS);
        }
        const sp_status st = parse_item_(spec, s, (size_t)(e - s), &a->op[a->n]);
        if (st != SP_OK) {
            memset(a, 0, sizeof *a);
            return st;
        }
        a->n++;
        if (!*end) return SP_OK;
        p = end + 1;
    }
}

void sp_augment_format(const sp_augment *a, char *buf, size_t cap) {
    if (cap == 0) return;
    buf[0] = '\0';
    if (a->n == 0) {
        snprintf(buf, cap, "none");
        return;
    }
    size_t used = 0;
    for (int i = 0; i < a->n && used < cap; ++i) {
        const sp_aug_op *o = &a->op[i];
        const char *sep = i ? "," : "";
        int w = o->kind == SP_AUG_FLIP
                    ? snprintf(buf + used, cap - used, "%sflip", sep)
                    : snprintf(buf + used, cap - used, "%s%s:%d", sep,
                               o->kind == SP_AUG_CROP ? "crop" : "translate", o->amount);
        used += w > 0 ? (size_t)w : 0;
    }
}

sp_status sp_augment_check_shape(const sp_augment *a, const sp_dataset_info *in) {
    if (a->n == 0) return SP_OK;
    if (in->seq_len > 0)
        return SP_FAIL(SP_ERR_DATA,
                       "%s: dataset '%s': augment '%s' needs images (N, C, H, W); the samples "
                       "are windows of %lld tokens",
                       in->path, in->x_name, a->spec, (long long)in->seq_len);
    if (in->sample_rank != 3) {
        char shape[96] = "";
        size_t used = 0;
        for (int d = 0; d < in->sample_rank && used < sizeof shape; ++d)
            used += (size_t)snprintf(shape + used, sizeof shape - used, "%s%lld", d ? ", " : "",
                                     (long long)in->sample_shape[d]);
        return SP_FAIL(SP_ERR_DATA,
                       "%s: dataset '%s': augment '%s' needs images (N, C, H, W); the samples "
                       "are %s (%s)",
                       in->path, in->x_name, a->spec,
                       in->sample_rank == 1 ? "vectors" : "not images", shape);
    }
    const int64_t H = in->sample_shape[1], W = in->sample_shape[2];
    const int64_t side = H < W ? H : W;
    for (int i = 0; i < a->n; ++i) {
        const sp_aug_op *o = &a->op[i];
        if (o->kind != SP_AUG_FLIP && o->amount >= side)
            return SP_FAIL(SP_ERR_DATA,
                           "%s: dataset '%s': augment '%s': %s:%d on %lldx%lld images; the "
                           "number must be below the height and the width",
                           in->path, in->x_name, a->spec,
                           o->kind == SP_AUG_CROP ? "crop" : "translate", o->amount, (long long)H,
                           (long long)W);
    }
    return SP_OK;
}

void sp_augment_draw(const sp_augment *a, int op, uint64_t seed, int64_t epoch, int64_t id, int *dy,
                     int *dx, int *flip) {
    const uint64_t stream = (uint64_t)SP_STREAM_AUGMENT + ((uint64_t)epoch << 8);
    const uint64_t c = (uint64_t)id * SP_AUGMENT_DRAWS + 2 * (uint64_t)op;
    const sp_aug_op *o = &a->op[op];
    *dy = *dx = *flip = 0;
    switch (o->kind) {
    case SP_AUG_CROP: { /* window offsets in [0, 2P]: the shift P - offset */
        const uint64_t span = 2 * (uint64_t)o->amount + 1;
        *dy = o->amount - (int)sp_rng_below(seed, stream, c, span);
        *dx = o->amount - (int)sp_rng_below(seed, stream, c + 1, span);
        break;
    }
    case SP_AUG_TRANSLATE: {
        const uint64_t span = 2 * (uint64_t)o->amount + 1;
        *dy = (int)sp_rng_below(seed, stream, c, span) - o->amount;
        *dx = (int)sp_rng_below(seed, stream, c + 1, span) - o->amount;
        break;
    }
    case SP_AUG_FLIP:
        *flip = (int)sp_rng_below(seed, stream, c, 2);
        break;
    }
}

/* Row dst = row src shifted right by dx (left for dx < 0), zeros where nothing arrives. The rows
 * are the same or disjoint (memmove covers the first). */
static void shift_row_(float *dst, const float *src, int W, int dx) {
    const int n = W - abs(dx), to = dx > 0 ? dx : 0, from = dx > 0 ? 0 : -dx;
    memmove(dst + to, src + from, (size_t)n * sizeof(float));
    memset(dst, 0, (size_t)to * sizeof(float));
    memset(dst + to + n, 0, (size_t)(W - to - n) * sizeof(float));
}

void sp_augment_shift(float *img, int C, int H, int W, int dy, int dx) {
    if (dy == 0 && dx == 0) return;
    const size_t plane = (size_t)H * (size_t)W;
    if (abs(dy) >= H || abs(dx) >= W) {
        memset(img, 0, (size_t)C * plane * sizeof(float));
        return;
    }
    for (int c = 0; c < C; ++c) {
        float *p = img + (size_t)c * plane;
        /* row y takes row y - dy: walk away from the rows still to be read */
        if (dy > 0) {
            for (int y = H - 1; y >= dy; --y)
                shift_row_(p + (size_t)y * W, p + (size_t)(y - dy) * W, W, dx);
            memset(p, 0, (size_t)dy * W * sizeof(float));
        } else {
            for (int y = 0; y < H + dy; ++y)
                shift_row_(p + (size_t)y * W, p + (size_t)(y - dy) * W, W, dx);
            memset(p + (size_t)(H + dy) * W, 0, (size_t)(-dy) * W * sizeof(float));
        }
    }
}

void sp_augment_flip(float *img, int C, int H, int W) {
    for (size_t r = 0; r < (size_t)C * (size_t)H; ++r) {
        float *row = img + r * (size_t)W;
        for (int x = 0, y = W - 1; x < y; ++x, --y) {
            const float t = row[x];
            row[x] = row[y];
            row[y] = t;
        }
    }
}

void sp_augment_apply(const sp_augment *a, float *x, const int64_t *ids, int64_t count, int C,
                      int H, int W, uint64_t seed, int64_t epoch) {
    const size_t ss = (size_t)C * (size_t)H * (size_t)W;
    for (int64_t i = 0; i < count; ++i) {
        float *img = x + (size_t)i * ss; /* (C, H, W) */
        for (int j = 0; j < a->n; ++j) {
            int dy, dx, flip;
            sp_augment_draw(a, j, seed, epoch, ids[i], &dy, &dx, &flip);
            if (flip)
                sp_augment_flip(img, C, H, W);
            else
                sp_augment_shift(img, C, H, W, dy, dx);
        }
    }
}
