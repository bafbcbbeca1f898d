/*
 * A GPT trained through the executable: token embedding, position embedding, two pre-norm blocks
 * of causal attention (2 heads) and a GELU (tanh) MLP, a final layer norm and the output
 * projection tied to the embedding, with dropout; on a token file of 985 uint8 tokens from a
 * noisy order-2 Markov chain over 24 symbols, --seq-len 8: 123 windows, batches of 20, the last
 * of 3 (one each for 3 ranks; with 4 ranks one rank has none). AdamW with clipping and a cosine
 * schedule, 2 epochs: 14 steps. The attention has no biases here: the key bias's gradient is 0 in
 * exact arithmetic (it adds a constant to each row of scores, which the softmax removes), so in
 * float it is rounding noise, which Adam scales into steps of about lr, different on every
 * layout. Its biases are checked by the unit gradient test (test_graph.c) and against PyTorch.
 *  - ranks: 2, 3 and 4 ranks end with the parameters of 1 rank within 1e-5 relative, and the
 *    same epoch losses and validation losses within 1e-5; the metrics give bits_per_token =
 *    loss / ln 2 and val_bits_per_token, and the loss falls;
 *  - threads: 1 rank x 2 threads writes the model file of 1 x 1 bit for bit;
 *  - resume: resumed from the checkpoint an uninterrupted run wrote mid-epoch (step 9: epoch 2,
 *    batch 2), on 1 and on 2 ranks, ends with that run's file bit for bit (parameters and AdamW
 *    state; --max-steps would change the cosine schedule's length, so the run is not cut);
 *  - --deterministic: 1x1 within 1e-4 of the default mode's model; 1x1, 1x2, 2x1, 3x1 and 4x1
 *    (micro-batches of 4) give bitwise-identical
 *    model files and loss_hex traces; 3 ranks resumed from 2 ranks' step-9 checkpoint give 1 x 1's;
 *  - generate: the same seed gives the same text, for 1 and 2 threads and under mpirun -n 2
 *    (printed once); another seed gives another text; temperature 0 is greedy (the same text for
 *    any seed); --top-k 1 equals greedy; a prompt byte outside the vocabulary is an error;
 *  - errors: a token file without --seq-len, --seq-len longer than the file, a model whose
 *    output is not (T, V), an embedding smaller than the vocabulary, tie without an embedding
 *    and heads that do not divide the width: one clear line each, a non-zero exit, no output;
 *  - --dry-run prints the attention as its three nodes (P.qkv, P, P.proj) and the tie.
 * Needs mpiexec.
 */
#include <hdf5.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "h5_writer.h"
#include "testutil.h"
#include "train_util.h"

static char dir[256];

#define VOCAB 24
#define GPT                                                                                        \
    "embedding:24:16,pos_embedding,dropout:0.1,"                                                   \
    "repeat:2(residual(layernorm,attention:heads=2:bias=0),"                                       \
    "residual(layernorm,dense:32,gelu:tanh,dense:16,dropout:0.1)),"                                \
    "layernorm,dense:24:tie"
static const char *common =
    "--seq-len 8 --epochs 2 --batch 20 --seed 3 --quiet --collective-timeout 60 "
    "--optimizer adamw --lr 0.01 --weight-decay 0.01 --clip-norm 1 --schedule cosine "
    "--warmup-steps 2";
enum { STEPS = 14 };

/* `shardprop train --data DIR/tok.h5 --model 'spec' ARGS` on np ranks (0: a singleton). */
static int train(int np, int threads, const char *spec, const char *args, char **out) {
    char a[8192];
    snprintf(a, sizeof a, "train --data %s/tok.h5 --model '%s' %s", dir, spec, args);
    return sp_test_shardprop(np, threads, a, out);
}

static void train_ok(int np, int threads, const char *args, const char *what) {
    char *out = NULL;
    const int rc = train(np, threads, GPT, args, &out);
    CHECK(rc == 0, "%s: exit %d\n%s", what, rc, out ? out : "");
    free(out);
}

/* ------------------------------------------------------------------ training */

static void ref_paths(char *model, char *met, size_t cap) {
    snprintf(model, cap, "%s/ref.h5", dir);
    snprintf(met, cap, "%s/ref.jsonl", dir);
}

static void test_ranks(void) {
    char ref[512], refm[512], args[2048];
    ref_paths(ref, refm, sizeof ref);
    snprintf(args, sizeof args, "%s --val %s/tok_val.h5 --out %s --metrics %s --log-every 1",
             common, dir, ref, refm);
    train_ok(0, 1, args, "1 rank x 1 thread");
    double lref[4], vref[4], bits[4], vbits[4], steps[STEPS];
    const int ne = sp_test_metric_values(refm, "epoch", "loss", lref, 4);
    CHECK(ne == 2, "the reference logs 2 epochs (%d)", ne);
    CHECK(sp_test_metric_values(refm, "epoch", "val_loss", vref, 4) == 2 &&
              sp_test_metric_values(refm, "epoch", "bits_per_token", bits, 4) == 2 &&
              sp_test_metric_values(refm, "epoch", "val_bits_per_token", vbits, 4) == 2,
          "epoch records have val_loss, bits_per_token, val_bits_per_token");
    for (int e = 0; e < 2; ++e)
        CHECK(fabs(bits[e] - lref[e] / log(2.0)) < 1e-4 * bits[e] &&
                  fabs(vbits[e] - vref[e] / log(2.0)) < 1e-4 * vbits[e],
              "epoch %d: bits per token = loss / ln 2 (%g vs %g, %g vs %g)", e + 1, bits[e],
              lref[e] / log(2.0), vbits[e], vref[e] / log(2.0));
    const int ns = sp_test_metric_values(refm, "step", "loss", steps, STEPS);
    CHECK(ns == STEPS && steps[STEPS - 1] < steps[0] - 0.1,
          "the loss falls over %d steps (%g -> %g)", ns, ns ? steps[0] : NAN,
          ns ? steps[ns - 1] : NAN);
    CHECK(steps[0] > log((double)VOCAB) - 0.3 && steps[0] < log((double)VOCAB) + 0.3,
          "the first loss is about ln %d = %.3f (%g): the logits start small", VOCAB,
          log((double)VOCAB), steps[0]);
    for (int np = 2; np <= 4; ++np) {
        char outp[512], met[512], what[64];
        snprintf(outp, sizeof outp, "%s/np%d.h5", dir, np);
        snprintf(met, sizeof met, "%s/np%d.jsonl", dir, np);
        remove(met);
        snprintf(args, sizeof args, "%s --val %s/tok_val.h5 --out %s --metrics %s %s", common, dir,
                 outp, met, np == 4 ? "--bucket-mb 0.0005" : "");
        snprintf(what, sizeof what, "%d ranks", np);
        train_ok(np, 1, args, what);
        const sp_test_model_diff d = sp_test_diff_models(outp, ref);
        CHECK(d.ok && d.params < 1e-5, "%s: parameters of 1 rank within 1e-5 (%.3g)", what,
              d.params);
        double l[4], v[4];
        CHECK(sp_test_metric_values(met, "epoch", "loss", l, 4) == 2 &&
                  sp_test_metric_values(met, "epoch", "val_loss", v, 4) == 2,
              "%s: 2 epoch records", what);
        for (int e = 0; e < 2; ++e)
            CHECK(fabs(l[e] - lref[e]) < 1e-5 * lref[e] && fabs(v[e] - vref[e]) < 1e-5 * vref[e],
                  "%s epoch %d: loss %.8g vs %.8g, val_loss %.8g vs %.8g", what, e + 1, l[e],
                  lref[e], v[e], vref[e]);
    }
}

static void test_threads(void) {
    char ref[512], refm[512], outp[512], args[2048], why[600];
    ref_paths(ref, refm, sizeof ref);
    snprintf(outp, sizeof outp, "%s/t2.h5", dir);
    snprintf(args, sizeof args, "%s --val %s/tok_val.h5 --out %s", common, dir, outp);
    train_ok(0, 2, args, "1 rank x 2 threads");
    CHECK(sp_test_same_model(outp, ref, why, sizeof why),
          "1 x 2 threads: the model file of 1 x 1 bitwise: %s", why);
}

static void test_resume(int np) {
    char full[512], ck[512], res[512], args[2048], why[600];
    snprintf(full, sizeof full, "%s/full_%d.h5", dir, np);
    snprintf(ck, sizeof ck, "%s/ck_%d", dir, np);
    snprintf(res, sizeof res, "%s/resumed_%d.h5", dir, np);
    snprintf(args, sizeof args, "%s --out %s --checkpoint-dir %s --checkpoint-every 9", common,
             full, ck);
    train_ok(np, 1, args, "uninterrupted, a checkpoint at step 9");
    snprintf(args, sizeof args, "%s --resume %s/step_00000009.h5 --out %s", common, ck, res);
    char *out = NULL;
    const int rc = train(np, 1, GPT, args, &out);
    CHECK(rc == 0 && out && strstr(out, "step 9, epoch 2, batch 2 of the epoch"),
          "%d rank(s): resumes from step 9 (epoch 2, batch 2) (exit %d): %s", np ? np : 1, rc,
          out ? out : "");
    free(out);
    CHECK(sp_test_same_model(res, full, why, sizeof why),
          "%d rank(s): interrupted + resumed == uninterrupted, bitwise: %s", np ? np : 1, why);
}

static void test_deterministic(void) {
    static const int layouts[][2] = {{0, 1}, {0, 2}, {2, 1}, {3, 1}, {4, 1}};
    char ref[512], refm[512], args[2048], why[600];
    const char *det = "--deterministic --micro-batch 4 --log-every 1";
    snprintf(ref, sizeof ref, "%s/det_1x1.h5", dir);
    snprintf(refm, sizeof refm, "%s/det_1x1.jsonl", dir);
    for (size_t i = 0; i < sizeof layouts / sizeof layouts[0]; ++i) {
        const int np = layouts[i][0], th = layouts[i][1];
        char outp[512], met[512], what[96];
        snprintf(outp, sizeof outp, "%s/det_%dx%d.h5", dir, np ? np : 1, th);
        snprintf(met, sizeof met, "%s/det_%dx%d.jsonl", dir, np ? np : 1, th);
        remove(met);
        snprintf(args, sizeof args, "%s %s --out %s --metrics %s", common, det, outp, met);
        snprintf(what, sizeof what, "--deterministic %d x %d", np ? np : 1, th);
        train_ok(np, th, args, what);
        if (i == 0) { /* the same training as the default mode's, up to rounding */
            char fref[512], frefm[512];
            ref_paths(fref, frefm, sizeof fref);
            const sp_test_model_diff d = sp_test_diff_models(outp, fref);
            CHECK(d.ok && d.params < 1e-4, "%s: within 1e-4 of the default mode (%.3g)", what,
                  d.params);
            continue;
        }
        CHECK(sp_test_same_model(outp, ref, why, sizeof why),
              "%s: the model file of 1 x 1 bitwise: %s", what, why);
        char *a = sp_test_loss_trace(refm), *b = sp_test_loss_trace(met);
        CHECK(a && b && a[0] && !strcmp(a, b), "%s logs the losses of 1 x 1:\n%s\n%s", what,
              a ? a : "", b ? b : "");
        free(a), free(b);
    }
    char ck[512], res[512];
    snprintf(ck, sizeof ck, "%s/det_ck", dir);
    snprintf(res, sizeof res, "%s/det_resumed.h5", dir);
    snprintf(args, sizeof args, "%s %s --checkpoint-dir %s --checkpoint-every 9", common, det, ck);
    train_ok(2, 1, args, "--deterministic, 2 ranks, a checkpoint at step 9");
    snprintf(args, sizeof args, "%s %s --resume %s/step_00000009.h5 --out %s", common, det, ck,
             res);
    train_ok(3, 1, args, "--deterministic, resumed on 3 ranks");
    CHECK(sp_test_same_model(res, ref, why, sizeof why),
          "--deterministic: 2 ranks, resumed on 3 == uninterrupted 1 x 1, bitwise: %s", why);
}

/* ------------------------------------------------------------------ generate */

/* The generated text: bytes (token 0 is a NUL byte), so through a file. */
typedef struct text {
    unsigned char b[256];
    size_t n;
} text;

static int same_text(const text *a, const text *b) {
    return a->n == b->n && !memcmp(a->b, b->b, a->n);
}

/* `shardprop generate --checkpoint REF ARGS` on np ranks, its stdout (the continuation). */
static text generated(int np, int threads, const char *args, const char *what) {
    static int k = 0;
    char ref[512], refm[512], path[512], a[2048];
    ref_paths(ref, refm, sizeof ref);
    snprintf(path, sizeof path, "%s/gen_%d.txt", dir, k++);
    snprintf(a, sizeof a, "generate --checkpoint %s %s > %s", ref, args, path);
    char *out = NULL;
    const int rc = sp_test_shardprop(np, threads, a, &out);
    CHECK(rc == 0, "generate %s: exit %d\n%s", what, rc, out ? out : "");
    free(out);
    text t = {.n = 0};
    FILE *f = fopen(path, "rb");
    if (f) {
        t.n = fread(t.b, 1, sizeof t.b, f);
        fclose(f);
    }
    return t;
}

static void test_generate(void) {
    const char *p = "--prompt \"$(printf '\\001\\002\\003')\" --tokens 40";
    char args[512];
    snprintf(args, sizeof args, "%s --seed 7", p);
    const text a = generated(0, 1, args, "seed 7");
    const text b = generated(0, 1, args, "seed 7 again");
    const text c = generated(0, 2, args, "seed 7, 2 threads");
    const text d = generated(2, 1, args, "seed 7, 2 ranks");
    CHECK(a.n == 41 && a.b[40] == '\n', "40 tokens and a newline (%zu bytes)", a.n);
    CHECK(same_text(&a, &b), "the same seed gives the same text");
    CHECK(same_text(&a, &c), "1 and 2 threads give the same text");
    CHECK(same_text(&a, &d), "under mpirun -n 2 rank 0 alone prints the same text (%zu bytes)",
          d.n);
    snprintf(args, sizeof args, "%s --seed 8", p);
    const text e = generated(0, 1, args, "seed 8");
    CHECK(!same_text(&a, &e), "another seed gives another text");
    snprintf(args, sizeof args, "%s --seed 7 --temperature 0", p);
    const text g1 = generated(0, 1, args, "greedy, seed 7");
    snprintf(args, sizeof args, "%s --seed 9 --temperature 0", p);
    const text g2 = generated(0, 1, args, "greedy, seed 9");
    snprintf(args, sizeof args, "%s --seed 9 --top-k 1", p);
    const text g3 = generated(0, 1, args, "top-k 1");
    CHECK(g1.n == 41 && same_text(&g1, &g2), "temperature 0 is greedy: the seed does not matter");
    CHECK(same_text(&g1, &g3), "--top-k 1 draws the argmax, as greedy");
    int in_vocab = a.n == 41;
    for (size_t i = 0; i + 1 < a.n; ++i) in_vocab &= a.b[i] < VOCAB;
    CHECK(in_vocab, "every generated token is in the vocabulary");
    char *bad = NULL, ref[512], refm[512], cmd[1024];
    ref_paths(ref, refm, sizeof ref);
    snprintf(cmd, sizeof cmd, "generate --checkpoint %s --prompt hello --tokens 4", ref);
    const int rc = sp_test_shardprop(0, 1, cmd, &bad);
    CHECK(rc != 0 && bad &&
              strstr(bad, "prompt token 0 is 104, not below the model's "
                          "vocabulary of 24"),
          "a prompt byte outside the vocabulary is an error (exit %d): %s", rc, bad ? bad : "");
    free(bad);
}

/* ------------------------------------------------------------------ errors and --dry-run */

static void bad_run(const char *data, const char *spec, const char *args, const char *frag,
                    const char *what) {
    char outp[512], a[4096];
    static int k = 0;
    snprintf(outp, sizeof outp, "%s/bad_%d.h5", dir, k++);
    snprintf(a, sizeof a, "train --data %s/%s --model '%s' --epochs 1 --batch 20 --out %s %s", dir,
             data, spec, outp, args);
    char *out = NULL;
    const int rc = sp_test_shardprop(0, 1, a, &out);
    CHECK(rc != 0 && out && strstr(out, frag), "%s: a non-zero exit (%d) and '%s':\n%s", what, rc,
          frag, out ? out : "");
    CHECK(access(outp, F_OK) != 0, "%s: no output file", what);
    free(out);
}

static void test_errors(void) {
    bad_run("tok.h5", GPT, "", "train it with --seq-len T", "a token file without --seq-len");
    bad_run("tok.h5", GPT, "--seq-len 5000", "--seq-len", "--seq-len longer than the file");
    bad_run("tok.h5", "embedding:24:16,attention:heads=2,dense:10", "--seq-len 8",
            "must end with (T, V) = (8, 24) logits", "a model whose output is not (T, V)");
    bad_run("tok.h5", "embedding:16:8,dense:24", "--seq-len 8", "layer 0 embeds 16 token ids but",
            "an embedding smaller than the vocabulary");
    bad_run("tok.h5", "dense:8,dense:24:tie", "--seq-len 8", "tie needs an embedding before it",
            "tie without an embedding");
    bad_run("tok.h5", "embedding:24:16,attention:heads=3,dense:24", "--seq-len 8",
            "3 heads do not divide the width 16", "heads that do not divide the width");
}

static void test_dry_run(void) {
    char a[4096];
    snprintf(a, sizeof a, "train --data %s/tok.h5 --model '%s' %s --dry-run", dir, GPT, common);
    char *out = NULL;
    const int rc = sp_test_shardprop(0, 1, a, &out);
    CHECK(rc == 0 && out, "--dry-run (exit %d)", rc);
    static const char *const want[] = {"3.0.0.f.1.qkv",  "3.0.0.f.1 ",
                                       "3.0.0.f.1.proj", "attention",
                                       "(8, 48)",        "weight = params/0/weight (tied)"};
    for (size_t i = 0; out && i < sizeof want / sizeof want[0]; ++i)
        CHECK(strstr(out, want[i]) != NULL, "--dry-run shows '%s':\n%s", want[i], out);
    free(out);
}

/* ------------------------------------------------------------------ data */

/* n tokens of a noisy order-2 Markov chain over VOCAB symbols: learnable, not trivial. */
static void write_tokens(const char *path, int n, uint64_t seed) {
    unsigned char *t = malloc((size_t)n);
    uint64_t s = seed;
    for (int i = 0; i < n; ++i) {
        s = s * 6364136223846793005ULL + 1442695040888963407ULL;
        const int r = (int)(s >> 59); /* 0..31 */
        t[i] = i < 2 ? (unsigned char)r % VOCAB
                     : (unsigned char)(r < 4 ? r % VOCAB : (3 * t[i - 1] + t[i - 2] + 1) % VOCAB);
    }
    hid_t f = tw_create(path);
    const hsize_t dims[1] = {(hsize_t)n};
    CHECK(f >= 0 &&
              !tw_dataset(f, "tokens", H5T_STD_U8LE, H5T_NATIVE_UCHAR, 1, dims, t, TW_CHUNKED) &&
              !tw_attr(f, "tokens", "vocab_size", H5T_STD_I64LE, VOCAB),
          "write %s", path);
    if (f >= 0) H5Fclose(f);
    free(t);
}

int main(void) {
    snprintf(dir, sizeof dir, "%s", sp_test_tmpdir("gpt_train"));
    char p[512];
    snprintf(p, sizeof p, "%s/tok.h5", dir);
    write_tokens(p, 123 * 8 + 1, 1);
    snprintf(p, sizeof p, "%s/tok_val.h5", dir);
    write_tokens(p, 40 * 8 + 1, 2);
    test_ranks();
    test_threads();
    test_resume(0);
    test_resume(2);
    test_deterministic();
    test_generate();
    test_errors();
    test_dry_run();
    return sp_test_summary("gpt_train");
}
