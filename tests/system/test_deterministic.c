/*
 * --deterministic (issue 9): bitwise-identical training for every layout of ranks x threads.
 *
 *  - the fixed-point accumulate: the AVX2 path equals the plain C reference bit for bit, on ties,
 *    signs, the range limit, NaN and Inf; the sum of int64 shares converted back to float, AVX2
 *    and plain C, equals the scalar conversion (sums past 2^51 included);
 *  - the micro-batch split: the slices of the ranks tile every global batch in order, each slice
 *    starts on a micro-batch boundary, and no slice exceeds sp_rank_slice_max;
 *  - an MLP with dropout (Adam, shuffled, 3 epochs, a partial last batch): the layouts 1x1, 1x2,
 *    2x1, 3x1, 4x1 (oversubscribed) and 2x2 end with bitwise-equal parameters and log the same
 *    losses to the last bit (loss_hex in the metrics); a rank without samples (more ranks than
 *    micro-batches, default --micro-batch) changes nothing either;
 *  - a small CNN (two conv layers, pooling, dropout): 1x1, 1x2, 3x1, 2x2 bitwise equal, and the
 *    portable GEMM kernel (SHARDPROP_GEMM_ISA=portable) gives the same bits as AVX2;
 *  - resume: 2 ranks stopped mid-epoch, resumed on 3 ranks, equals the uninterrupted 1x1 run
 *    bitwise; resuming with another --micro-batch is refused; --micro-batch alone is refused.
 */
#include <hdf5.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "data/data.h"
#include "h5_writer.h"
#include "testutil.h"
#include "train_util.h"
#include "kernels/fixed.h"

static char dir[256];

static void test_fixed_point(void) {
    enum { N = 1003 };
    static float g[N];
    static int64_t a[N], b[N];
    sp_test_fill(g, N, 11, -3.0f, 3.0f);
    for (int i = 0; i < N; i += 7) g[i] *= 1e-9f;       /* far below the resolution: rounding */
    g[1] = 0x1p-41f, g[2] = -0x1p-41f, g[3] = 0x3p-41f; /* ties: to even */
    g[4] = 1024.0f, g[5] = -2047.9998f, g[6] = 2048.0f; /* the last one out of range */
    g[8] = NAN, g[9] = INFINITY, g[10] = -INFINITY, g[11] = 0x1p-149f;
    const double lim = sp_fix_limit(100);
    CHECK(lim == 2048.0, "limit for 100 terms: %g", lim);
    CHECK(sp_fix_limit(1 << 20) == 4.0, "limit for 2^20 terms: %g", sp_fix_limit(1 << 20));
    for (int i = 0; i < N; ++i) a[i] = b[i] = (int64_t)i * 12345 - 777;
    const int64_t bad_a = sp_fix_accumulate(a, g, N, lim);
    const int64_t bad_b = sp_fix_accumulate_ref(b, g, N, lim);
    CHECK(bad_a == 4 && bad_b == 4, "out-of-range and non-finite terms counted: %lld, %lld",
          (long long)bad_a, (long long)bad_b);
    CHECK(!memcmp(a, b, sizeof a), "vector and reference accumulators are bitwise equal");
    CHECK(b[1] - (1 * 12345 - 777) == 0 && b[3] - (3 * 12345 - 777) == 2,
          "ties round to even: %lld %lld", (long long)(b[1] - 11568), (long long)(b[3] - 36258));
    CHECK(b[4] - (4 * 12345 - 777) == ((int64_t)1 << 50), "1024 -> 2^50");
    CHECK(b[8] == 8 * 12345 - 777, "NaN adds nothing");
    CHECK(sp_fix_to_float(((int64_t)3) << 38) == 0.75f, "back to float");
}

/* The sum of the ranks' int64 shares, converted: the AVX2 and plain C paths against the scalar
 * conversion of the exact sum, with 1 to 4 sources, lengths that end inside a vector and a block,
 * and a block holding a sum past 2^51 (the checked conversion) next to blocks that do not. */
static void test_fixed_sums(void) {
    enum { N = 1500, S = 4 };
    static int64_t q[S][N];
    static float got[N], ref[N], want[N];
    uint64_t x = 12345;
    for (int j = 0; j < S; ++j)
        for (int i = 0; i < N; ++i) {
            x = x * 6364136223846793005ULL + 1442695040888963407ULL;
            q[j][i] = (int64_t)(x >> 14) - ((int64_t)1 << 49); /* |q| < 2^49 */
        }
    q[1][700] = (int64_t)1 << 60, q[2][701] = -((int64_t)3 << 58);   /* block 1: past 2^51 */
    q[0][5] = ((int64_t)1 << 51) - 1, q[0][6] = -((int64_t)1 << 51); /* the fast range's ends */
    int bad = 0;
    const int64_t *src[S] = {q[0], q[1], q[2], q[3]};
    for (int ns = 1; ns <= S; ++ns)
        for (size_t n = N - 3; n <= N; ++n) {
            for (size_t i = 0; i < n; ++i) {
                int64_t s = 0;
                for (int j = 0; j < ns; ++j) s += src[j][i];
                want[i] = sp_fix_to_float(s);
            }
            memset(got, 0xff, sizeof got);
            memset(ref, 0xff, sizeof ref);
            sp_fix_sum_to_float(got, src, ns, n);
            sp_fix_sum_to_float_ref(ref, src, ns, n);
            bad += memcmp(got, want, n * sizeof *got) != 0 || memcmp(ref, want, n * sizeof *ref);
            uint32_t past = 0xffffffffu; /* nothing written past n */
            if (n < N) memcpy(&past, &got[n], sizeof past);
            bad += past != 0xffffffffu;
        }
    CHECK(bad == 0, "sums of 1-4 int64 shares convert to sp_fix_to_float's bits (%d bad)", bad);
    sp_fix_sum_to_float(got, (const int64_t *const[]){q[1]}, 1, N);
    CHECK(got[700] == 0x1p20f && got[3] == sp_fix_to_float(q[1][3]),
          "one array: 2^60 -> 2^20, and the rest");
}

static void test_split(void) {
    int fails = 0;
    for (int P = 1; P <= 6; ++P)
        for (int64_t micro = 1; micro <= 9; micro += 4)
            for (int64_t b = 0; b < 3; ++b) {
                int64_t next = b * 40, total = 0;
                for (int r = 0; r < P; ++r) {
                    int64_t pos, cnt, g;
                    sp_rank_slice_micro(103, 40, micro, b, r, P, &pos, &cnt, &g);
                    if (pos != next || cnt > sp_rank_slice_max(40, micro, P) ||
                        (cnt > 0 && (pos - b * 40) % micro != 0))
                        ++fails;
                    next = pos + cnt;
                    total += cnt;
                    if (g != (b < 2 ? 40 : 23)) ++fails;
                }
                if (total != (b < 2 ? 40 : 23)) ++fails;
            }
    CHECK(fails == 0, "micro-batch slices tile the batches on micro-batch boundaries (%d bad)",
          fails);
}

static int train(int np, int threads, const char *data, const char *args, const char *extra,
                 char **out) {
    char a[4096];
    snprintf(a, sizeof a, "train --data %s/%s %s %s", dir, data, args, extra);
    return sp_test_shardprop(np, threads, a, out);
}

static void train_ok(int np, int threads, const char *data, const char *args, const char *extra) {
    char *out = NULL;
    const int rc = train(np, threads, data, args, extra, &out);
    CHECK(rc == 0, "%d ranks x %d threads: exit %d\n%s", np ? np : 1, threads, rc, out ? out : "");
    free(out);
}

/* The same run on each layout {ranks, threads} (ranks 0: a singleton): parameters and losses
 * equal to the first layout's. */
static void test_layouts(const char *tag, const char *data, const char *args,
                         const int (*layouts)[2], int n) {
    char ref[512], ref_m[512];
    snprintf(ref, sizeof ref, "%s/%s_ref.h5", dir, tag);
    snprintf(ref_m, sizeof ref_m, "%s/%s_ref.jsonl", dir, tag);
    for (int i = 0; i < n; ++i) {
        const int np = layouts[i][0], th = layouts[i][1];
        char out[512], met[512], extra[1200];
        snprintf(out, sizeof out, "%s/%s_%dx%d.h5", dir, tag, np ? np : 1, th);
        snprintf(met, sizeof met, "%s/%s_%dx%d.jsonl", dir, tag, np ? np : 1, th);
        remove(met);
        snprintf(extra, sizeof extra, "--out %s --metrics %s", i ? out : ref, i ? met : ref_m);
        if (i == 0) remove(ref_m);
        train_ok(np, th, data, args, extra);
        if (i == 0) continue;
        CHECK(sp_test_same_params(ref, out), "%s: %d x %d gives the parameters of %d x %d bitwise",
              tag, np ? np : 1, th, layouts[0][0] ? layouts[0][0] : 1, layouts[0][1]);
        char *a = sp_test_loss_trace(ref_m), *b = sp_test_loss_trace(met);
        CHECK(a && b && a[0] && !strcmp(a, b), "%s: %d x %d logs the same losses:\n%s\n%s", tag,
              np ? np : 1, th, a ? a : "", b ? b : "");
        free(a), free(b);
    }
}

static const char *mlp = "--model dense:24,relu,dropout:0.25,dense:16,tanh,dense:4 --epochs 3 "
                         "--batch 40 --optimizer adam --lr 0.01 --seed 5 --log-every 1 --quiet "
                         "--deterministic --micro-batch 6";

static void test_mlp(void) {
    /* 437 samples, batch 40: 11 batches an epoch, the last one of 37 (7 micro-batches of 6, the
     * last partial); 4 ranks get 2 micro-batches each, one rank gets 1 in the last batch */
    const int layouts[][2] = {{0, 1}, {0, 2}, {2, 1}, {3, 1}, {4, 1}, {2, 2}};
    test_layouts("mlp", "d.h5", mlp, layouts, 6);
}

/* More ranks than micro-batches: batch 40 of micro-batches of 16 is 3 of them, so rank 3 of 4
 * has no samples in any batch and still takes part in every reduction. */
static void test_idle_rank(void) {
    static const char *args = "--model dense:16,relu,dropout:0.25,dense:4 --epochs 2 --batch 40 "
                              "--optimizer sgd --lr 0.05 --seed 9 --log-every 1 --quiet "
                              "--deterministic";
    const int layouts[][2] = {{0, 1}, {4, 1}};
    test_layouts("idle", "d.h5", args, layouts, 2);
}

static void write_images(const char *path) {
    enum { N = 150, C = 2, H = 9, W = 9 };
    static float x[N * C * H * W];
    static int32_t y[N];
    sp_test_fill(x, N * C * H * W, 3, 0.0f, 1.0f);
    for (int i = 0; i < N; ++i) y[i] = (int32_t)((x[i * C * H * W] + x[i * C * H * W + 5]) * 1.5f);
    hid_t f = tw_create(path);
    const hsize_t dx[4] = {N, C, H, W}, dy[1] = {N};
    int rc = f < 0 || tw_dataset(f, "X", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 4, dx, x, TW_CHUNKED) ||
             tw_dataset(f, "y", H5T_STD_I32LE, H5T_NATIVE_INT32, 1, dy, y, TW_CONTIGUOUS) ||
             tw_attr(f, "y", "classes", H5T_STD_I64LE, 3);
    if (f >= 0) H5Fclose(f);
    CHECK(rc == 0, "write %s", path);
}

static const char *cnn = "--model conv2d:4:3:pad=1,relu,maxpool:2,conv2d:6:3,relu,flatten,"
                         "dropout:0.2,dense:3 --epochs 2 --batch 32 --optimizer adam --lr 0.01 "
                         "--seed 3 --log-every 1 --quiet --deterministic --micro-batch 5";

static void test_cnn(void) {
    char path[512];
    snprintf(path, sizeof path, "%s/img.h5", dir);
    write_images(path);
    const int layouts[][2] = {{0, 1}, {0, 2}, {3, 1}, {2, 2}};
    test_layouts("cnn", "img.h5", cnn, layouts, 4);
    /* the portable micro-kernel: the same per-micro-batch arithmetic as AVX2 */
    char out[512], extra[600];
    snprintf(out, sizeof out, "%s/cnn_portable.h5", dir);
    snprintf(extra, sizeof extra, "--out %s", out);
    setenv("SHARDPROP_GEMM_ISA", "portable", 1);
    train_ok(0, 1, "img.h5", cnn, extra);
    unsetenv("SHARDPROP_GEMM_ISA");
    char ref[512];
    snprintf(ref, sizeof ref, "%s/cnn_ref.h5", dir);
    CHECK(sp_test_same_params(ref, out),
          "SHARDPROP_GEMM_ISA=portable gives the bits of the default");
}

/* The integer allreduce in buckets started during backward (--bucket-mb: 104 bytes is 13 int64,
 * so some 60 buckets for the MLP, buckets that split layers), and in one blocking call
 * (--bucket-mb 0): the bits of the uninterrupted 1 x 1 run either way. */
static void test_buckets(void) {
    static const struct {
        const char *tag, *data, *bucket;
        int np;
    } runs[] = {
        {"mlp", "d.h5", "0.0001", 2}, {"mlp", "d.h5", "0", 3}, {"cnn", "img.h5", "0.0001", 3}};
    for (size_t i = 0; i < sizeof runs / sizeof runs[0]; ++i) {
        char out[512], ref[512], extra[1200];
        snprintf(out, sizeof out, "%s/%s_bucket%zu.h5", dir, runs[i].tag, i);
        snprintf(ref, sizeof ref, "%s/%s_ref.h5", dir, runs[i].tag);
        snprintf(extra, sizeof extra, "--out %s --bucket-mb %s", out, runs[i].bucket);
        train_ok(runs[i].np, 1, runs[i].data, strcmp(runs[i].tag, "mlp") ? cnn : mlp, extra);
        CHECK(sp_test_same_params(ref, out), "%s, %d ranks, --bucket-mb %s: the bits of 1 x 1",
              runs[i].tag, runs[i].np, runs[i].bucket);
    }
    /* --dry-run on one rank plans the int64 buckets that more ranks would run: 780 parameters in
     * buckets of 13 are 60, none of them floats */
    char args[1200], *out = NULL;
    snprintf(args, sizeof args, "train --data %s/d.h5 %s --bucket-mb 0.0001 --dry-run", dir, mlp);
    CHECK(sp_test_shardprop(0, 1, args, &out) == 0, "--deterministic --dry-run on one rank");
    int n64 = 0;
    for (const char *p = out; p && (p = strstr(p, ": int64 sums [")); ++p) ++n64;
    CHECK(out && strstr(out, "gradient buckets (60,") && n64 == 60 && !strstr(out, ": floats ["),
          "one rank's plan lists 60 int64 buckets (%d):\n%s", n64, out ? out : "");
    free(out);
}

static void test_resume(void) {
    char ck[512], res[512], ref[512], extra[1600];
    snprintf(ck, sizeof ck, "%s/ck", dir);
    snprintf(res, sizeof res, "%s/resumed.h5", dir);
    snprintf(ref, sizeof ref, "%s/mlp_ref.h5", dir); /* the uninterrupted 1 x 1 run */
    /* 2 ranks stop after step 15 (epoch 2, batch 4), 3 ranks finish */
    snprintf(extra, sizeof extra, "--checkpoint-dir %s --max-steps 15", ck);
    train_ok(2, 1, "d.h5", mlp, extra);
    /* another micro-batch size is refused, naming it */
    char *out = NULL;
    snprintf(extra, sizeof extra, "--checkpoint-dir %s --resume auto --micro-batch 4", ck);
    char args[1024];
    snprintf(args, sizeof args, "%s", mlp);
    char *mb = strstr(args, " --micro-batch 6");
    if (mb) *mb = '\0';
    int rc = train(3, 1, "d.h5", args, extra, &out);
    CHECK(rc != 0 && out && strstr(out, "micro-batch = 6, this one 4"),
          "resume with another --micro-batch refused: %s", out ? out : "");
    free(out);
    snprintf(extra, sizeof extra, "--checkpoint-dir %s --resume auto --out %s", ck, res);
    train_ok(3, 1, "d.h5", mlp, extra);
    CHECK(sp_test_same_params(ref, res),
          "2 ranks, resumed on 3 ranks == uninterrupted 1 x 1, bitwise");
    out = NULL;
    rc = sp_test_shardprop(0, 1, "train --data x.h5 --model dense:2 --micro-batch 8", &out);
    CHECK(rc != 0 && out && strstr(out, "--micro-batch goes with --deterministic"),
          "--micro-batch without --deterministic: %s", out ? out : "");
    free(out);
}

int main(void) {
    snprintf(dir, sizeof dir, "%s", sp_test_tmpdir("deterministic"));
    test_fixed_point();
    test_fixed_sums();
    test_split();
    char args[1024];
    snprintf(args, sizeof args,
             "synth --kind blobs --n 437 --features 12 --classes 4 --seed 2 --out %s/d.h5", dir);
    CHECK(sp_test_shardprop(0, 1, args, NULL) == 0, "synth");
    test_mlp();
    test_idle_rank();
    test_cnn();
    test_buckets();
    test_resume();
    return sp_test_summary("deterministic");
}
