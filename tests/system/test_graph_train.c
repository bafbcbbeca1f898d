/*
 * `shardprop train` on graphs, through the executable: a ResNet-like CNN with batch norm (a stem,
 * a basic block, a downsampling block with a 1x1 projection shortcut, gap, dense; convolutions
 * bias=0) on synthetic 3x8x8 images, and a layer-norm graph on flat data (6 features) with
 * save/add/concat, a repeat of pre-norm residual blocks and a batch-norm branch beside a
 * projection. 103 samples in batches of 20: the last batch of every epoch has 3 samples, so 3
 * ranks get one each and with 4 ranks one rank has none (it takes part in every sum with none).
 *  - synchronized batch norm (default --bn-stats global): 2, 3 and 4 ranks (oversubscribed, one
 *    thread; 4 ranks with 128-float gradient buckets) end with the parameters and the running statistics of 1 rank within 1e-5 relative
 *    (max |a - b| / max |b|, as test_train_mpi), num_batches_tracked equal (18, one per step), the
 *    epoch losses within 1e-5;
 *  - --bn-stats local (each rank's own samples, DDP without SyncBatchNorm): on 1 rank bitwise the
 *    global run; on 2 ranks parameters and running statistics differ from 1 rank by more than
 *    1e-3 relative, and every rank ends with rank 0's running statistics: the distributed
 *    validation at the end of the last epoch (each rank its shard, with its own statistics) gives
 *    the loss and accuracy that `shardprop eval` of the checkpoint gives on 1 rank;
 *  - threads: 1 rank x 2 threads writes the model file of 1 x 1 bit for bit (parameters,
 *    running statistics, num_batches_tracked, optimizer state);
 *  - resume: stopped mid-epoch (step 8: epoch 2, batch 2) and resumed, 1 rank with SGD momentum
 *    and 2 ranks with Adam, equals the uninterrupted run bit for bit (as test_resume);
 *  - --deterministic: 1x1 within 1e-4 of the default mode's model; 1x1, 1x2, 2x1, 3x1 and 4x1
 *    (micro-batches of 4: in the last batch only rank 0 has samples) give bitwise-identical
 *    model files and loss_hex traces; 2 ranks stopped
 *    mid-epoch and resumed on 3 give the 1 x 1 file;
 *  - --model @FILE: a multi-line spec with # comments trains the model of the inline spec bit
 *    for bit;
 *  - bad specs: unknown layer inside a residual, unbalanced parentheses, add:NAME without a save,
 *    a residual whose branches' shapes differ, a missing @FILE, an @FILE with an error on line 3:
 *    one error naming the position (the column; for @FILE the file once, the line and the column,
 *    also for a shape found wrong when the model is built) and what was expected, a non-zero
 *    exit, no output file; under 2 ranks the same within seconds, printed once (an @FILE is read
 *    with the other arguments, whose errors every rank prints before the ranks meet);
 *  - --dry-run prints every node with its path, kind, inputs ("7 + 2" for the join of the first
 *    residual, "20 | 0" for a concat) and output shape; --dry-run --json has path, inputs and
 *    saved_bytes per layer.
 * Needs mpiexec and /usr/bin/python3 (its json module reads the --dry-run --json plan).
 */
#include <hdf5.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "h5_writer.h"
#include "testutil.h"
#include "train_util.h"

static char dir[256];

/* A ResNet-like CNN and a layer-norm graph (the header comment) */
#define RESNET                                                                                     \
    "conv2d:8:3:pad=1:bias=0,batchnorm,relu,"                                                      \
    "residual(conv2d:8:3:pad=1:bias=0,batchnorm,relu,conv2d:8:3:pad=1:bias=0,batchnorm),relu,"     \
    "residual(conv2d:16:3:stride=2:pad=1:bias=0,batchnorm | conv2d:16:1:stride=2:bias=0,"          \
    "batchnorm),relu,gap,dense:10"
#define FLAT                                                                                       \
    "dense:24,save:x,layernorm,gelu,dense:24,add:x,"                                               \
    "repeat:2(residual(layernorm,dense:32,gelu,dense:24)),layernorm,"                              \
    "residual(dense:16:bias=0,batchnorm,relu | dense:16),concat:x,dense:4"
/* 103 samples, batches of 20 (the last of 3), 3 epochs: 18 steps */
static const char *common = "--epochs 3 --batch 20 --seed 5 --quiet --collective-timeout 60";
enum { STEPS = 18 };

/* The two graphs, each with its data, validation data and optimizer. */
typedef struct graph {
    const char *tag, *spec, *data, *val, *opt;
} graph;
static const graph graphs[] = {
    {"resnet", RESNET, "img.h5", "img_val.h5", "--optimizer sgd --lr 0.05 --momentum 0.9"},
    {"flat", FLAT, "flat.h5", "flat_val.h5", "--optimizer adam --lr 0.01"},
};

static int count_of(const char *s, const char *needle) {
    int n = 0;
    for (const char *p = s; p && (p = strstr(p, needle)); ++p) ++n;
    return n;
}

/* `shardprop train --data DIR/data --model 'spec' ARGS` on np ranks (0: a singleton). */
static int train(int np, int threads, const char *data, const char *spec, const char *args,
                 char **out) {
    char a[8192];
    snprintf(a, sizeof a, "train --data %s/%s --model '%s' %s", dir, data, spec, args);
    return sp_test_shardprop(np, threads, a, out);
}

static void train_ok(int np, int threads, const char *data, const char *spec, const char *args,
                     const char *what) {
    char *out = NULL;
    const int rc = train(np, threads, data, spec, args, &out);
    CHECK(rc == 0, "%s: exit %d\n%s", what, rc, out ? out : "");
    free(out);
}

/* ------------------------------------------------------------------ the tests */

/* 1 rank x 1 thread of graph g (with its validation set, --metrics): the reference of the
 * equivalence, thread, --bn-stats and @FILE checks. */
static void ref_paths(const graph *g, char *model, char *met, size_t cap) {
    snprintf(model, cap, "%s/%s_ref.h5", dir, g->tag);
    snprintf(met, cap, "%s/%s_ref.jsonl", dir, g->tag);
}

static void test_sync_bn(const graph *g) {
    char ref[512], refm[512], args[2048];
    ref_paths(g, ref, refm, sizeof ref);
    snprintf(args, sizeof args, "%s %s --val %s/%s --out %s --metrics %s", common, g->opt, dir,
             g->val, ref, refm);
    train_ok(0, 1, g->data, g->spec, args, "1 rank x 1 thread");
    double lref[8];
    const int nref = sp_test_metric_values(refm, "epoch", "loss", lref, 8);
    CHECK(nref == 3, "%s: 3 epoch events, got %d", g->tag, nref);
    const sp_test_model_diff self = sp_test_diff_models(ref, ref);
    CHECK(self.ok && self.tracked == STEPS && self.nstats > 0,
          "%s: the reference has running statistics, num_batches_tracked %lld", g->tag,
          self.tracked);
    for (int np = 2; np <= 4; ++np) {
        char outp[512], met[512], what[96];
        snprintf(outp, sizeof outp, "%s/%s_%dx1.h5", dir, g->tag, np);
        snprintf(met, sizeof met, "%s/%s_%dx1.jsonl", dir, g->tag, np);
        /* 4 ranks: tiny buckets, whose allreduces interleave with batch norm's sums during
         * backward; the rank without samples issues both in the others' order, as the MPI
         * standard requires (Open MPI keeps blocking and non-blocking collectives apart and
         * tolerates the other order, an MPI that does not would hang or mix the sums here) */
        snprintf(args, sizeof args, "%s %s --val %s/%s --out %s --metrics %s%s", common, g->opt,
                 dir, g->val, outp, met, np == 4 ? " --bucket-mb 0.0005" : "");
        snprintf(what, sizeof what, "%s, %d ranks, synchronized batch norm%s", g->tag, np,
                 np == 4 ? ", 128-float buckets" : "");
        train_ok(np, 1, g->data, g->spec, args, what);
        const sp_test_model_diff d = sp_test_diff_models(outp, ref);
        printf("%s: parameters relerr %.3g, running statistics relerr %.3g\n", what, d.params,
               d.stats);
        CHECK(d.ok, "%s: the same tensors as 1 rank", what);
        CHECK(d.params < 1e-5, "%s: parameters vs 1 rank: relerr %.3g", what, d.params);
        CHECK(d.stats < 1e-5, "%s: running statistics vs 1 rank: relerr %.3g", what, d.stats);
        CHECK(d.tracked_same && d.tracked == STEPS, "%s: num_batches_tracked %lld, as 1 rank", what,
              d.tracked);
        double l[8];
        const int n = sp_test_metric_values(met, "epoch", "loss", l, 8);
        CHECK(n == nref, "%s: %d epoch events", what, n);
        for (int k = 0; k < n && k < nref; ++k)
            CHECK(fabs(l[k] - lref[k]) <= 1e-5 * fabs(lref[k]), "%s: epoch %d loss %.9g vs %.9g",
                  what, k + 1, l[k], lref[k]);
    }
}

static void test_threads(const graph *g) {
    char ref[512], refm[512], outp[512], args[2048], why[600];
    ref_paths(g, ref, refm, sizeof ref);
    snprintf(outp, sizeof outp, "%s/%s_1x2.h5", dir, g->tag);
    snprintf(args, sizeof args, "%s %s --val %s/%s --out %s", common, g->opt, dir, g->val, outp);
    train_ok(0, 2, g->data, g->spec, args, "1 rank x 2 threads");
    CHECK(sp_test_same_model(outp, ref, why, sizeof why),
          "%s: 1 x 2 threads writes the model file of 1 x 1 bitwise: %s", g->tag, why);
}

static void test_local_bn(const graph *g) {
    char ref[512], refm[512], l1[512], l2[512], met[512], evm[512], args[2048], why[600];
    ref_paths(g, ref, refm, sizeof ref);
    snprintf(l1, sizeof l1, "%s/%s_local_1.h5", dir, g->tag);
    snprintf(l2, sizeof l2, "%s/%s_local_2.h5", dir, g->tag);
    snprintf(met, sizeof met, "%s/%s_local_2.jsonl", dir, g->tag);
    snprintf(evm, sizeof evm, "%s/%s_local_eval.jsonl", dir, g->tag);
    /* one rank: its samples are the global batch */
    snprintf(args, sizeof args, "%s %s --val %s/%s --bn-stats local --out %s", common, g->opt, dir,
             g->val, l1);
    train_ok(0, 1, g->data, g->spec, args, "--bn-stats local, 1 rank");
    CHECK(sp_test_same_model(l1, ref, why, sizeof why),
          "%s: --bn-stats local on 1 rank is the global run bitwise: %s", g->tag, why);
    /* two ranks: statistics of 10 (last batch: 2 and 1) samples instead of 20 (3) */
    snprintf(args, sizeof args, "%s %s --val %s/%s --bn-stats local --out %s --metrics %s", common,
             g->opt, dir, g->val, l2, met);
    train_ok(2, 1, g->data, g->spec, args, "--bn-stats local, 2 ranks");
    const sp_test_model_diff d = sp_test_diff_models(l2, ref);
    printf("%s, --bn-stats local, 2 ranks vs 1: parameters relerr %.3g, running statistics %.3g\n",
           g->tag, d.params, d.stats);
    CHECK(d.ok && d.params > 1e-3,
          "%s: --bn-stats local, 2 ranks: parameters differ from 1 rank by more than 1e-3 "
          "(relerr %.3g)",
          g->tag, d.params);
    CHECK(d.ok && d.stats > 1e-3,
          "%s: --bn-stats local, 2 ranks: running statistics differ from 1 rank by more than 1e-3 "
          "(relerr %.3g)",
          g->tag, d.stats);
    CHECK(d.ok && d.tracked == STEPS, "%s: --bn-stats local: num_batches_tracked %lld", g->tag,
          d.tracked);
    /* the last epoch's validation ran on both ranks with each rank's running statistics; the
     * checkpoint holds rank 0's: evaluated on one rank, the same loss and accuracy */
    double vl[4], va[4], el[2], ea[2];
    const int nv = sp_test_metric_values(met, "epoch", "val_loss", vl, 4);
    sp_test_metric_values(met, "epoch", "val_accuracy", va, 4);
    char cmd[2048], *out = NULL;
    snprintf(cmd, sizeof cmd, "eval --checkpoint %s --data %s/%s --metrics %s", l2, dir, g->val,
             evm);
    const int rc = sp_test_shardprop(0, 1, cmd, &out);
    CHECK(rc == 0, "eval of the --bn-stats local model: exit %d\n%s", rc, out ? out : "");
    free(out);
    const int ne = sp_test_metric_values(evm, "eval", "loss", el, 2);
    sp_test_metric_values(evm, "eval", "accuracy", ea, 2);
    CHECK(nv == 3 && ne == 1, "%s: 3 epochs with val_loss (%d), one eval event (%d)", g->tag, nv,
          ne);
    if (nv == 3 && ne == 1) {
        printf("%s, --bn-stats local: last val_loss %.9g (2 ranks, their own statistics), eval of "
               "the checkpoint %.9g\n",
               g->tag, vl[2], el[0]);
        CHECK(fabs(vl[2] - el[0]) <= 1e-6 * fabs(el[0]) && va[2] == ea[0],
              "%s: every rank ends with the checkpoint's running statistics: validation on 2 "
              "ranks %.9g (accuracy %.6g), eval of the checkpoint on 1 rank %.9g (%.6g)",
              g->tag, vl[2], va[2], el[0], ea[0]);
    }
}

static void test_resume(const graph *g, int np, const char *opt, const char *tag) {
    char full[512], res[512], ck[512], args[2048], why[600];
    snprintf(full, sizeof full, "%s/%s_%s_%d_full.h5", dir, g->tag, tag, np);
    snprintf(res, sizeof res, "%s/%s_%s_%d_resumed.h5", dir, g->tag, tag, np);
    snprintf(ck, sizeof ck, "%s/%s_%s_%d_ck", dir, g->tag, tag, np);
    snprintf(args, sizeof args, "%s %s --out %s", common, opt, full);
    train_ok(np, 1, g->data, g->spec, args, "uninterrupted");
    /* 6 batches an epoch (the last of 3): stop after step 8, batch 2 of epoch 2 */
    snprintf(args, sizeof args, "%s %s --checkpoint-dir %s --checkpoint-every 3 --max-steps 8",
             common, opt, ck);
    train_ok(np, 1, g->data, g->spec, args, "first part");
    snprintf(args, sizeof args,
             "%s %s --checkpoint-dir %s --checkpoint-every 3 --resume auto --out %s", common, opt,
             ck, res);
    char *out = NULL;
    const int rc = train(np, 1, g->data, g->spec, args, &out);
    CHECK(rc == 0 && out && strstr(out, "resuming from") && strstr(out, "step_00000008.h5") &&
              strstr(out, "step 8, epoch 2, batch 2 of the epoch"),
          "%s %s %d ranks: says where it resumes from (exit %d): %s", g->tag, tag, np ? np : 1, rc,
          out ? out : "");
    free(out);
    CHECK(sp_test_same_model(res, full, why, sizeof why),
          "%s %s, %d rank(s): interrupted + resumed == uninterrupted, bitwise (parameters, "
          "running statistics, optimizer state): %s",
          g->tag, tag, np ? np : 1, why);
}

static void test_deterministic(const graph *g) {
    static const int layouts[][2] = {{0, 1}, {0, 2}, {2, 1}, {3, 1}, {4, 1}};
    char ref[512], refm[512], args[2048], why[600];
    const char *det = "--deterministic --micro-batch 4 --log-every 1";
    snprintf(ref, sizeof ref, "%s/%s_det_1x1.h5", dir, g->tag);
    snprintf(refm, sizeof refm, "%s/%s_det_1x1.jsonl", dir, g->tag);
    for (size_t i = 0; i < sizeof layouts / sizeof layouts[0]; ++i) {
        const int np = layouts[i][0], th = layouts[i][1];
        char outp[512], met[512], what[96];
        snprintf(outp, sizeof outp, "%s/%s_det_%dx%d.h5", dir, g->tag, np ? np : 1, th);
        snprintf(met, sizeof met, "%s/%s_det_%dx%d.jsonl", dir, g->tag, np ? np : 1, th);
        remove(met);
        snprintf(args, sizeof args, "%s %s %s --out %s --metrics %s", common, g->opt, det, outp,
                 met);
        snprintf(what, sizeof what, "%s --deterministic %d x %d", g->tag, np ? np : 1, th);
        train_ok(np, th, g->data, g->spec, args, what);
        if (i == 0) { /* the same training as the default mode's, up to rounding */
            char fref[512], frefm[512];
            ref_paths(g, fref, frefm, sizeof fref);
            const sp_test_model_diff d = sp_test_diff_models(outp, fref);
            CHECK(d.ok && d.params < 1e-4 && (!d.nstats || d.stats < 1e-4),
                  "%s: within 1e-4 of the default mode (parameters %.3g, running statistics %.3g)",
                  what, d.params, d.stats);
            continue;
        }
        CHECK(sp_test_same_model(outp, ref, why, sizeof why),
              "%s: the model file of 1 x 1 bitwise: %s", what, why);
        char *a = sp_test_loss_trace(refm), *b = sp_test_loss_trace(met);
        CHECK(a && b && a[0] && !strcmp(a, b), "%s logs the losses of 1 x 1:\n%s\n%s", what,
              a ? a : "", b ? b : "");
        free(a), free(b);
    }
    if (strcmp(g->tag, "resnet")) return;
    /* 2 ranks stop mid-epoch, 3 ranks finish: the bits of 1 x 1 */
    char ck[512], res[512];
    snprintf(ck, sizeof ck, "%s/%s_det_ck", dir, g->tag);
    snprintf(res, sizeof res, "%s/%s_det_resumed.h5", dir, g->tag);
    snprintf(args, sizeof args, "%s %s %s --checkpoint-dir %s --max-steps 8", common, g->opt, det,
             ck);
    train_ok(2, 1, g->data, g->spec, args, "--deterministic, 2 ranks, first part");
    snprintf(args, sizeof args, "%s %s %s --checkpoint-dir %s --resume auto --out %s", common,
             g->opt, det, ck, res);
    train_ok(3, 1, g->data, g->spec, args, "--deterministic, resumed on 3 ranks");
    CHECK(sp_test_same_model(res, ref, why, sizeof why),
          "%s --deterministic: 2 ranks, resumed on 3 == uninterrupted 1 x 1, bitwise: %s", g->tag,
          why);
}

/* The ResNet as a file: several lines, comments, blanks around the separators. */
static const char *resnet_file =
    "# a ResNet-like CNN: a stem, a basic block, a downsampling block\n"
    "conv2d:8:3:pad=1:bias=0, batchnorm, relu,     # the stem\n"
    "residual(conv2d:8:3:pad=1:bias=0, batchnorm, relu,\n"
    "         conv2d:8:3:pad=1:bias=0, batchnorm),\n"
    "relu,\n"
    "residual(conv2d:16:3:stride=2:pad=1:bias=0, batchnorm    # f\n"
    "         | conv2d:16:1:stride=2:bias=0, batchnorm),     # g: the projection\n"
    "relu, gap, dense:10\n";

static void write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    CHECK(f && fputs(text, f) >= 0 && fclose(f) == 0, "write %s", path);
}

static void test_model_file(void) {
    const graph *g = &graphs[0];
    char spec[512], ref[512], refm[512], outp[512], args[2048], why[600];
    snprintf(spec, sizeof spec, "@%s/resnet.spec", dir);
    write_text(spec + 1, resnet_file);
    ref_paths(g, ref, refm, sizeof ref);
    snprintf(outp, sizeof outp, "%s/resnet_from_file.h5", dir);
    snprintf(args, sizeof args, "%s %s --val %s/%s --out %s", common, g->opt, dir, g->val, outp);
    train_ok(0, 1, g->data, spec, args, "--model @resnet.spec");
    CHECK(sp_test_same_model(outp, ref, why, sizeof why),
          "--model @FILE trains the model of the inline spec, bitwise: %s", why);
}

/* A bad spec: a non-zero exit, one error holding every fragment, no output file. */
static void bad_spec(int np, const char *spec, const char *data, const char *const *frags,
                     int nfrags, const char *what) {
    static int k = 0;
    char outp[512], args[1024];
    snprintf(outp, sizeof outp, "%s/bad_%d.h5", dir, k++);
    snprintf(args, sizeof args, "--epochs 1 --batch 20 --out %s", outp);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    char *out = NULL;
    const int rc = train(np, 1, data, spec, args, &out);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    const double secs = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
    CHECK(rc != 0, "%s: non-zero exit\n%s", what, out ? out : "");
    int all = out != NULL;
    for (int i = 0; all && i < nfrags; ++i) all = strstr(out, frags[i]) != NULL;
    CHECK(all, "%s: the error says where and what was expected:\n%s", what, out ? out : "");
    for (int i = 0; !all && out && i < nfrags; ++i)
        if (!strstr(out, frags[i])) fprintf(stderr, "  missing: %s\n", frags[i]);
    /* arguments (and --model @FILE) are checked by every rank before they meet: one line each */
    CHECK(out && count_of(out, "error:") == (np > 1 && spec[0] == '@' ? np : 1),
          "%s: one error line per process that reports it:\n%s", what, out ? out : "");
    if (spec[0] == '@')
        CHECK(out && count_of(out, "--model @") == count_of(out, "error:"),
              "%s: each error line names the file once:\n%s", what, out ? out : "");
    CHECK(access(outp, F_OK) != 0, "%s: no output file", what);
    CHECK(secs < 30, "%s: all ranks stopped in %.1f s", what, secs);
    free(out);
}

static void test_bad_specs(void) {
    {
        const char *f[] = {"model spec: layer 1.f.1 'batchnrom' (column 26)",
                           "unknown layer 'batchnrom'", "(expected one of dense, conv2d,",
                           " batchnorm, layernorm,"};
        bad_spec(0, "dense:8,residual(dense:8,batchnrom,relu),dense:4", "flat.h5", f, 4,
                 "unknown layer inside a residual");
        bad_spec(2, "dense:8,residual(dense:8,batchnrom,relu),dense:4", "flat.h5", f, 4,
                 "unknown layer inside a residual, 2 ranks");
    }
    {
        const char *f[] = {"model spec: at column 38",
                           "expected ')' or '|' to continue the residual block"};
        bad_spec(0, "dense:8,residual(dense:8,relu,dense:4", "flat.h5", f, 2,
                 "a residual( without its ')'");
    }
    {
        const char *f[] = {"model spec: at column 13 (near '),dense:4')", "a ')' without its '('"};
        bad_spec(0, "dense:8,relu),dense:4", "flat.h5", f, 2, "a ')' without its '('");
    }
    {
        const char *f[] = {"model spec: at column 30", "expected ')' to close the repeat block"};
        bad_spec(0, "dense:8,repeat:2(dense:8,relu", "flat.h5", f, 2,
                 "a repeat:2( without its ')'");
    }
    {
        const char *f[] = {"model spec: layer 3 'add:b' (column 21)",
                           "no value saved as 'b' before it (save:b)", "(expected add:NAME)"};
        bad_spec(0, "dense:8,save:a,relu,add:b,dense:4", "flat.h5", f, 3, "add:NAME without save");
    }
    {
        /* f ends in 5 features, the identity shortcut carries 8 */
        const char *f[] = {"model spec: layer 1 'residual' (column 9)",
                           "adds (8,) to (5,): the shapes differ",
                           "needs a projection: residual(f | g)"};
        bad_spec(0, "dense:8,residual(dense:8,relu,dense:5),dense:4", "flat.h5", f, 3,
                 "a residual that changes the shape without a projection");
        bad_spec(2, "dense:8,residual(dense:8,relu,dense:5),dense:4", "flat.h5", f, 3,
                 "a residual that changes the shape without a projection, 2 ranks");
    }
    {
        /* and with images: a stride-2 branch without the projection */
        const char *f[] = {"model spec: layer 3 'residual' (column 40)",
                           "adds (8, 8, 8) to (16, 4, 4): the shapes differ"};
        bad_spec(0,
                 "conv2d:8:3:pad=1:bias=0,batchnorm,relu,"
                 "residual(conv2d:16:3:stride=2:pad=1:bias=0,batchnorm),relu,gap,dense:10",
                 "img.h5", f, 2, "a downsampling residual without its projection");
    }
    char spec[700], path[600];
    snprintf(spec, sizeof spec, "@%s/missing.spec", dir);
    {
        char frag[800];
        snprintf(frag, sizeof frag, "--model %s: cannot read it: No such file or directory", spec);
        const char *f[] = {frag};
        bad_spec(0, spec, "flat.h5", f, 1, "--model @missing-file");
        bad_spec(2, spec, "flat.h5", f, 1, "--model @missing-file, 2 ranks");
    }
    /* an argument out of range on line 3, column 25 */
    snprintf(path, sizeof path, "%s/bad_arg.spec", dir);
    write_text(path, "# a residual MLP, with an error on line 3\n"
                     "dense:8, relu,\n"
                     "residual(dense:8, relu, dense:8:bias=2),\n"
                     "dense:4\n");
    snprintf(spec, sizeof spec, "@%s", path);
    {
        char at[900];
        snprintf(
            at, sizeof at,
            "--model %s: model spec: layer 2.f.2 'dense:8:bias=2' (line 3, column 25): ", spec);
        const char *f[] = {at, "bias must be 0 or 1, got '2'",
                           "(expected dense:UNITS[:bias=0][:tie])"};
        bad_spec(0, spec, "flat.h5", f, 3, "@FILE: a bad argument on line 3");
        bad_spec(2, spec, "flat.h5", f, 3, "@FILE: a bad argument on line 3, 2 ranks");
    }
    /* an unknown layer on line 3, after a comment line */
    snprintf(path, sizeof path, "%s/bad_layer.spec", dir);
    write_text(path, "dense:8, relu,\n"
                     "   # the block\n"
                     "   residual(dense:8, layernrom), dense:4\n");
    snprintf(spec, sizeof spec, "@%s", path);
    {
        char at[900];
        snprintf(at, sizeof at,
                 "--model %s: model spec: layer 2.f.1 'layernrom' (line 3, column 22): ", spec);
        const char *f[] = {at, "unknown layer 'layernrom'", "(expected one of dense,"};
        bad_spec(0, spec, "flat.h5", f, 3, "@FILE: an unknown layer on line 3");
    }
    /* a ')' too many on line 3 */
    snprintf(path, sizeof path, "%s/bad_paren.spec", dir);
    write_text(path, "dense:8,\n"
                     "relu,\n"
                     "dense:8, relu),   # one too many\n"
                     "dense:4\n");
    snprintf(spec, sizeof spec, "@%s", path);
    {
        char at[900];
        snprintf(at, sizeof at, "--model %s: model spec: at line 3, column 14 (near '),", spec);
        const char *f[] = {at, "a ')' without its '('"};
        bad_spec(0, spec, "flat.h5", f, 2, "@FILE: unbalanced parentheses on line 3");
    }
    /* shapes that differ, found after parsing: the residual on line 3 */
    snprintf(path, sizeof path, "%s/bad_shape.spec", dir);
    write_text(path, "dense:8, relu,\n"
                     "# the shortcut carries 8 features, f ends in 5\n"
                     "residual(dense:8, relu, dense:5),\n"
                     "dense:4\n");
    snprintf(spec, sizeof spec, "@%s", path);
    {
        char at[900];
        snprintf(at, sizeof at, "--model %s: ", spec);
        const char *f[] = {at, "layer 2 'residual' (line 3, column 1)",
                           "adds (8,) to (5,): the shapes differ"};
        bad_spec(0, spec, "flat.h5", f, 3, "@FILE: a residual that changes the shape");
    }
}

/* The lines of the --dry-run graph: index, path, kind, inputs, output shape. */
typedef struct node_line {
    const char *path, *kind, *inputs, *shape;
} node_line;

static const node_line resnet_nodes[] = {
    {"0", "conv2d", "input", "(8, 8, 8)"},
    {"1", "batchnorm", "0", "(8, 8, 8)"},
    {"2", "relu", "1", "(8, 8, 8)"},
    {"3.f.0", "conv2d", "2", "(8, 8, 8)"},
    {"3.f.1", "batchnorm", "3", "(8, 8, 8)"},
    {"3.f.2", "relu", "4", "(8, 8, 8)"},
    {"3.f.3", "conv2d", "5", "(8, 8, 8)"},
    {"3.f.4", "batchnorm", "6", "(8, 8, 8)"},
    {"3", "add", "7 + 2", "(8, 8, 8)"},
    {"4", "relu", "8", "(8, 8, 8)"},
    {"5.f.0", "conv2d", "9", "(16, 4, 4)"},
    {"5.f.1", "batchnorm", "10", "(16, 4, 4)"},
    {"5.g.0", "conv2d", "9", "(16, 4, 4)"},
    {"5.g.1", "batchnorm", "12", "(16, 4, 4)"},
    {"5", "add", "11 + 13", "(16, 4, 4)"},
    {"6", "relu", "14", "(16, 4, 4)"},
    {"7", "gap", "15", "(16,)"},
    {"8", "dense", "16", "(10,)"},
};
static const node_line flat_nodes[] = {
    {"0", "dense", "input", "(24,)"},
    {"2", "layernorm", "0", "(24,)"},
    {"3", "gelu", "1", "(24,)"},
    {"4", "dense", "2", "(24,)"},
    {"5", "add", "3 + 0", "(24,)"},
    {"6.0.0.f.0", "layernorm", "4", "(24,)"},
    {"6.0.0.f.1", "dense", "5", "(32,)"},
    {"6.0.0.f.2", "gelu", "6", "(32,)"},
    {"6.0.0.f.3", "dense", "7", "(24,)"},
    {"6.0.0", "add", "8 + 4", "(24,)"},
    {"6.1.0.f.0", "layernorm", "9", "(24,)"},
    {"6.1.0.f.1", "dense", "10", "(32,)"},
    {"6.1.0.f.2", "gelu", "11", "(32,)"},
    {"6.1.0.f.3", "dense", "12", "(24,)"},
    {"6.1.0", "add", "13 + 9", "(24,)"},
    {"7", "layernorm", "14", "(24,)"},
    {"8.f.0", "dense", "15", "(16,)"},
    {"8.f.1", "batchnorm", "16", "(16,)"},
    {"8.f.2", "relu", "17", "(16,)"},
    {"8.g.0", "dense", "15", "(16,)"},
    {"8", "add", "18 + 19", "(16,)"},
    {"9", "concat", "20 | 0", "(40,)"},
    {"10", "dense", "21", "(4,)"},
};

static char *trim_(char *s) {
    while (*s == ' ') ++s;
    char *e = s + strlen(s);
    while (e > s && (e[-1] == ' ' || e[-1] == '\n')) *--e = '\0';
    return s;
}

/* Check the graph of a --dry-run's text against the expected nodes; returns the lines seen. */
static int check_graph_text(const char *out, const node_line *want, int n, const char *what) {
    const char *g = out ? strstr(out, "\ngraph (") : NULL;
    char head[64];
    snprintf(head, sizeof head, "\ngraph (%d layers;", n);
    CHECK(g && !strncmp(g, head, strlen(head)), "%s: the graph has %d layers:\n%s", what, n,
          out ? out : "");
    if (!g) return 0;
    g = strchr(g + 1, '\n');
    int seen = 0;
    while (g && g[1] == ' ') {
        const char *eol = strchr(g + 1, '\n');
        char line[1024];
        snprintf(line, sizeof line, "%.*s", (int)(eol ? eol - g - 1 : (long)strlen(g + 1)), g + 1);
        g = eol;
        int idx = -1, off = 0;
        char path[64] = "", kind[32] = "";
        if (sscanf(line, "%d %63s %31s %n", &idx, path, kind, &off) < 3) break;
        char *arrow = strstr(line, " -> ");
        if (!arrow || line + off > arrow) break;
        *arrow = '\0';
        char *inputs = trim_(line + off), *shape = arrow + 4;
        char *end = strstr(shape, "  ");
        if (end) *end = '\0';
        shape = trim_(shape);
        const int ok = idx == seen && idx < n && !strcmp(path, want[idx].path) &&
                       !strcmp(kind, want[idx].kind) && !strcmp(inputs, want[idx].inputs) &&
                       !strcmp(shape, want[idx].shape);
        CHECK(ok, "%s: node %d is '%s %s %s -> %s', expected '%s %s %s -> %s'", what, seen, path,
              kind, inputs, shape, idx >= 0 && idx < n ? want[idx].path : "?",
              idx >= 0 && idx < n ? want[idx].kind : "?",
              idx >= 0 && idx < n ? want[idx].inputs : "?",
              idx >= 0 && idx < n ? want[idx].shape : "?");
        ++seen;
    }
    CHECK(seen == n, "%s: %d node lines, expected %d", what, seen, n);
    return seen;
}

static void test_dry_run(void) {
    char args[2048], *out = NULL;
    snprintf(args, sizeof args, "--batch 20 --dry-run");
    int rc = train(0, 1, "img.h5", RESNET, args, &out);
    CHECK(rc == 0, "resnet --dry-run: exit %d\n%s", rc, out ? out : "");
    check_graph_text(out, resnet_nodes, 18, "resnet --dry-run");
    /* parameters as the checkpoint names them: no bias for bias=0, batch norm's buffers */
    CHECK(out && strstr(out, "params/0/weight (8, 3, 3, 3): 216 parameters") &&
              strstr(out, "params/5.g.0/weight (16, 8, 1, 1): 128 parameters") &&
              strstr(out, "params/5.g.1/weight (16,) bias (16,): 32 parameters + running_mean, "
                          "running_var (16,)") &&
              strstr(out, "params/8/weight (10, 16) bias (10,): 170 parameters"),
          "resnet --dry-run: each layer's tensors:\n%s", out ? out : "");
    free(out);
    out = NULL;
    char spec[512];
    snprintf(spec, sizeof spec, "@%s/resnet.spec", dir);
    rc = train(0, 1, "img.h5", spec, args, &out);
    CHECK(rc == 0, "--model @resnet.spec --dry-run: exit %d\n%s", rc, out ? out : "");
    check_graph_text(out, resnet_nodes, 18, "--model @resnet.spec --dry-run");
    free(out);
    out = NULL;
    rc = train(0, 1, "flat.h5", FLAT, args, &out);
    CHECK(rc == 0, "flat --dry-run: exit %d\n%s", rc, out ? out : "");
    check_graph_text(out, flat_nodes, 23, "flat --dry-run");
    free(out);

    /* the JSON plan, read by Python's json module: path, inputs (-1: the input), saved_bytes */
    char cmd[8192];
    snprintf(cmd, sizeof cmd,
             "OMP_NUM_THREADS=1 %s train --data %s/img.h5 --model '%s' --batch 20 --dry-run --json "
             "> %s/plan.json && /usr/bin/python3 - %s/plan.json <<'EOF'\n"
             "import json, sys\n"
             "plan = json.load(open(sys.argv[1]))\n"
             "L = plan['layers']\n"
             "paths = ['0', '1', '2', '3.f.0', '3.f.1', '3.f.2', '3.f.3', '3.f.4', '3', '4',\n"
             "         '5.f.0', '5.f.1', '5.g.0', '5.g.1', '5', '6', '7', '8']\n"
             "inputs = [[-1], [0], [1], [2], [3], [4], [5], [6], [7, 2], [8], [9], [10], [9],\n"
             "          [12], [11, 13], [14], [15], [16]]\n"
             "assert [l['path'] for l in L] == paths, [l['path'] for l in L]\n"
             "assert [l['inputs'] for l in L] == inputs, [l['inputs'] for l in L]\n"
             "for l in L:\n"
             "    assert isinstance(l['saved_bytes'], int) and l['saved_bytes'] >= 0, l\n"
             "    if l['name'] in ('conv2d', 'batchnorm', 'relu'):\n"
             "        assert l['saved_bytes'] > 0, l\n"
             "# a relu keeps its (20, 8, 8, 8) float output for backward\n"
             "assert L[2]['saved_bytes'] == 20 * 512 * 4, L[2]\n"
             "assert sum(l['params'] for l in L) == plan['params'] == 2930, plan['params']\n"
             "print('plan: %%d layers, %%d bytes saved for backward' %%\n"
             "      (len(L), sum(l['saved_bytes'] for l in L)))\n"
             "EOF",
             sp_test_bin(), dir, RESNET, dir, dir);
    out = NULL;
    rc = sp_test_run(cmd, &out);
    CHECK(rc == 0, "--dry-run --json: path, inputs and saved_bytes per layer:\n%s", out ? out : "");
    if (out) printf("%s", out);
    free(out);
}

/* ------------------------------------------------------------------ data */

/* 3x8x8 images uniform in [0, 1), the class the first pixel's tenth (10 classes). */
static void write_images(const char *path, int n, uint64_t seed) {
    enum { C = 3, H = 8, W = 8, S = C * H * W };
    float *x = malloc(sizeof(float) * (size_t)n * S);
    int32_t *y = malloc(sizeof(int32_t) * (size_t)n);
    int rc = !x || !y;
    if (!rc) {
        sp_test_fill(x, (size_t)n * S, seed, 0.0f, 1.0f);
        for (int i = 0; i < n; ++i) {
            const int c = (int)(x[(size_t)i * S] * 10.0f);
            y[i] = c > 9 ? 9 : c;
        }
        hid_t f = tw_create(path);
        const hsize_t dx[4] = {(hsize_t)n, C, H, W}, dy[1] = {(hsize_t)n};
        rc = f < 0 || tw_dataset(f, "X", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 4, dx, x, TW_CHUNKED) ||
             tw_dataset(f, "y", H5T_STD_I32LE, H5T_NATIVE_INT32, 1, dy, y, TW_CONTIGUOUS) ||
             tw_attr(f, "y", "classes", H5T_STD_I64LE, 10);
        if (f >= 0) H5Fclose(f);
    }
    CHECK(rc == 0, "write %s", path);
    free(x), free(y);
}

/* 6 features uniform in [-2, 2), 4 classes by the signs of x0 + x1 and of x2. */
static void write_flat(const char *path, int n, uint64_t seed) {
    enum { F = 6 };
    float *x = malloc(sizeof(float) * (size_t)n * F);
    int32_t *y = malloc(sizeof(int32_t) * (size_t)n);
    int rc = !x || !y;
    if (!rc) {
        sp_test_fill(x, (size_t)n * F, seed, -2.0f, 2.0f);
        for (int i = 0; i < n; ++i) {
            const float *r = x + (size_t)i * F;
            y[i] = (r[0] + r[1] > 0) + 2 * (r[2] > 0);
        }
        hid_t f = tw_create(path);
        const hsize_t dx[2] = {(hsize_t)n, F}, dy[1] = {(hsize_t)n};
        rc = f < 0 ||
             tw_dataset(f, "X", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 2, dx, x, TW_CONTIGUOUS) ||
             tw_dataset(f, "y", H5T_STD_I32LE, H5T_NATIVE_INT32, 1, dy, y, TW_CONTIGUOUS) ||
             tw_attr(f, "y", "classes", H5T_STD_I64LE, 4);
        if (f >= 0) H5Fclose(f);
    }
    CHECK(rc == 0, "write %s", path);
    free(x), free(y);
}

int main(void) {
    snprintf(dir, sizeof dir, "%s", sp_test_tmpdir("graph_train"));
    char p[600];
    snprintf(p, sizeof p, "%s/img.h5", dir);
    write_images(p, 103, 3);
    snprintf(p, sizeof p, "%s/img_val.h5", dir);
    write_images(p, 40, 4);
    snprintf(p, sizeof p, "%s/flat.h5", dir);
    write_flat(p, 103, 5);
    snprintf(p, sizeof p, "%s/flat_val.h5", dir);
    write_flat(p, 40, 6);
    for (int i = 0; i < 2; ++i) {
        test_sync_bn(&graphs[i]);
        test_threads(&graphs[i]);
        test_local_bn(&graphs[i]);
        test_deterministic(&graphs[i]);
    }
    test_resume(&graphs[0], 0, "--optimizer sgd --lr 0.05 --momentum 0.9", "sgd");
    test_resume(&graphs[0], 2, "--optimizer adam --lr 0.01", "adam");
    test_model_file();
    test_bad_specs();
    test_dry_run();
    return sp_test_summary("graph_train");
}
