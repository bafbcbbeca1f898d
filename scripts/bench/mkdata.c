/*
 * Synthetic data for the benchmark workloads: classification data of any sample shape, or
 * byte tokens for a language model.
 *
 *   bench_mkdata OUT.h5 N CLASSES SEED DIM...     e.g.  bench_mkdata cnn.h5 4096 10 7 1 28 28
 *   bench_mkdata --tokens OUT.h5 NTOKENS SEED [TEXT...]
 *
 * Classification: X float32 (N, DIM...) and y int32 (N) with the attribute `classes` (the data
 * contract of include/shardprop/data.h). Sample i has label i mod CLASSES (the trainer
 * shuffles) and pixels 0.5 * pattern[label] + uniform noise in [-0.5, 0.5), all pure functions
 * of (SEED, i): the numbers only have to be realistic in scale for a throughput benchmark, not
 * learnable.
 *
 * Tokens: a 1-D uint8 dataset `tokens` of NTOKENS byte tokens with the attributes
 * vocab_size = 256 and tokenizer = "bytes" (sp_dataset_open_tokens' contract): the bytes of the
 * TEXT files one after the other (from the start again when they are shorter than NTOKENS), or,
 * without TEXT, uniform random bytes, pure functions of (SEED, position).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hdf5.h>
#include <hdf5_hl.h>

#include "util/rng.h"

/* bench_mkdata --tokens OUT.h5 NTOKENS SEED [TEXT...] */
static int make_tokens(int argc, char **argv) {
    if (argc < 5) {
        fprintf(stderr, "usage: bench_mkdata --tokens OUT.h5 NTOKENS SEED [TEXT...]\n");
        return 2;
    }
    const long long n = atoll(argv[3]);
    const uint64_t seed = (uint64_t)atoll(argv[4]);
    if (n < 2) {
        fprintf(stderr, "bench_mkdata: need NTOKENS >= 2\n");
        return 2;
    }
    unsigned char *tok = malloc((size_t)n);
    if (!tok) {
        fprintf(stderr, "bench_mkdata: out of memory\n");
        return 1;
    }
    long long have = 0;
    while (argc > 5 && have < n) { /* the TEXT files in order, again until NTOKENS */
        const long long before = have;
        for (int a = 5; a < argc && have < n; ++a) {
            FILE *in = fopen(argv[a], "rb");
            if (!in) {
                fprintf(stderr, "bench_mkdata: cannot read %s\n", argv[a]);
                free(tok);
                return 1;
            }
            have += (long long)fread(tok + have, 1, (size_t)(n - have), in);
            fclose(in);
        }
        if (have == before) {
            fprintf(stderr, "bench_mkdata: the TEXT files are empty\n");
            free(tok);
            return 1;
        }
    }
    for (long long i = have; i < n; ++i)
        tok[i] = (unsigned char)sp_rng_below(seed, 2, (uint64_t)i, 256);
    hid_t f = H5Fcreate(argv[2], H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    const hsize_t dims = (hsize_t)n;
    const int vocab = 256;
    const int ok = f >= 0 && H5LTmake_dataset(f, "tokens", 1, &dims, H5T_NATIVE_UCHAR, tok) >= 0 &&
                   H5LTset_attribute_int(f, "tokens", "vocab_size", &vocab, 1) >= 0 &&
                   H5LTset_attribute_string(f, "tokens", "tokenizer", "bytes") >= 0;
    if (f >= 0) H5Fclose(f);
    free(tok);
    if (!ok) {
        fprintf(stderr, "bench_mkdata: cannot write %s\n", argv[2]);
        return 1;
    }
    return 0;
}

int main(int argc, char **argv) {
    if (argc > 1 && !strcmp(argv[1], "--tokens")) return make_tokens(argc, argv);
    if (argc < 6 || argc > 9) {
        fprintf(stderr, "usage: bench_mkdata OUT.h5 N CLASSES SEED DIM [DIM [DIM [DIM]]]\n");
        return 2;
    }
    const long long n = atoll(argv[2]);
    const int classes = atoi(argv[3]);
    const uint64_t seed = (uint64_t)atoll(argv[4]);
    hsize_t dims[5] = {(hsize_t)n};
    size_t size = 1;
    const int rank = argc - 4;
    for (int d = 1; d < rank; ++d) {
        dims[d] = (hsize_t)atoll(argv[4 + d]);
        size *= (size_t)dims[d];
    }
    if (n < 1 || classes < 2 || size < 1) {
        fprintf(stderr, "bench_mkdata: need N >= 1, CLASSES >= 2, every DIM >= 1\n");
        return 2;
    }
    float *x = malloc(sizeof(float) * size * (size_t)n);
    int32_t *y = malloc(sizeof(int32_t) * (size_t)n);
    if (!x || !y) {
        fprintf(stderr, "bench_mkdata: out of memory\n");
        return 1;
    }
    for (long long i = 0; i < n; ++i) {
        const int label = (int)(i % classes);
        y[i] = label;
        for (size_t e = 0; e < size; ++e) {
            const float pattern = sp_rng_uniform(seed, 1000 + (uint64_t)label, e) - 0.5f;
            const float noise = sp_rng_uniform(seed, 1, (uint64_t)i * size + e) - 0.5f;
            x[(size_t)i * size + e] = 0.5f * pattern + noise;
        }
    }
    hid_t f = H5Fcreate(argv[1], H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    hsize_t ny = (hsize_t)n;
    int classes_attr = classes;
    const int ok = f >= 0 && H5LTmake_dataset_float(f, "X", rank, dims, x) >= 0 &&
                   H5LTmake_dataset_int(f, "y", 1, &ny, y) >= 0 &&
                   H5LTset_attribute_int(f, "y", "classes", &classes_attr, 1) >= 0;
    if (f >= 0) H5Fclose(f);
    free(x);
    free(y);
    if (!ok) {
        fprintf(stderr, "bench_mkdata: cannot write %s\n", argv[1]);
        return 1;
    }
    return 0;
}
