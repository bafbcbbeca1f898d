/*
 * The model spec: parsing a model description into the nodes of its graph.
 *
 *   seq   := item { ',' item }
 *   item  := layer | 'residual' '(' seq [ '|' seq ] ')' | 'repeat' ':' N '(' seq ')'
 *   layer := NAME { ':' ARG }            positional args first, then key=value
 *
 * Blanks and newlines between tokens do not matter; '#' starts a comment to the end of the line.
 * A straight stack ("conv2d:8:3,relu,flatten,dense:10") is one node per item, each fed by the
 * one before. residual(f | g) is y = f(x) + g(x) (g the identity when left out); repeat:N(seq)
 * is N copies of seq, each with its own parameters; save:NAME names the current value (no node:
 * an alias), and add:NAME / concat:NAME join the current value with the last one saved under
 * NAME (concat: channels of the current value first, as torch.cat([x, saved], dim=1)).
 *
 * Nodes come out in execution order (every input before its consumers), each with the module
 * path of the equivalent PyTorch module: the top-level items are numbered by position, as in
 * nn.Sequential (save, add and concat count), a residual at i holds i.f.K and i.g.K, a repeat
 * at i holds i.R.K. A straight stack's paths are "0", "1", ..., today's checkpoint names.
 *
 * attention:heads=H at path P is three nodes, as GPT-2's attention module: a dense of 3C units
 * at P.qkv (q, k and v of every position, C the input's features), the causal attention core
 * at P, and a dense of C units at P.proj.
 */
#ifndef SP_MODEL_SPEC_H
#define SP_MODEL_SPEC_H

#include <stdbool.h>

#include "shardprop/status.h"

typedef enum {
    SP_LAYER_DENSE,
    SP_LAYER_CONV2D,
    SP_LAYER_MAXPOOL,
    SP_LAYER_AVGPOOL,
    SP_LAYER_FLATTEN,
    SP_LAYER_RELU,
    SP_LAYER_LEAKY_RELU,
    SP_LAYER_TANH,
    SP_LAYER_SIGMOID,
    SP_LAYER_GELU,
    SP_LAYER_DROPOUT,
    SP_LAYER_BATCHNORM,
    SP_LAYER_LAYERNORM,
    SP_LAYER_GAP,
    SP_LAYER_UPSAMPLE,
    SP_LAYER_ADD,           /* in[0] + in[1]: a residual join or add:NAME */
    SP_LAYER_CONCAT,        /* channels of in[0], then of in[1] */
    SP_LAYER_EMBEDDING,     /* token ids (T) -> (T, DIM) */
    SP_LAYER_POS_EMBEDDING, /* (T, D) + a learned (T, D) */
    SP_LAYER_ATTENTION      /* the causal attention core: (T, 3C) q, k, v -> (T, C) */
} sp_layer_kind;

#define SP_SPEC_INPUT (-1) /* in[k]: the model's input */
#define SP_SPEC_NONE  (-2) /* in[1] of a node with one input */

typedef struct sp_layer_spec {
    sp_layer_kind kind;
    int units;        /* dense */
    int out_channels; /* conv2d */
    int kernel;       /* conv2d, pools */
    int stride;       /* conv2d (default 1), pools (default kernel) */
    int pad;          /* conv2d (default 0) */
    int scale;        /* upsample */
    bool bias;        /* dense, conv2d: with a bias (default; bias=0 without) */
    float slope;      /* leaky_relu (default 0.01, as PyTorch) */
    float p;          /* dropout */
    float eps;        /* batchnorm, layernorm (default 1e-5) */
    float momentum;   /* batchnorm (default 0.1) */
    int vocab;        /* embedding: VOCAB (and units = DIM) */
    int heads;        /* attention */
    int units_x;      /* dense made by attention: units = units_x x the input's features */
    bool tie;         /* dense: the weight is the embedding's (tie) */
    bool tanh;        /* gelu:tanh, GPT-2's approximation */
    int in[2];        /* producers: node indices, SP_SPEC_INPUT, or (in[1]) SP_SPEC_NONE */
    char path[64];    /* the PyTorch module path, "3" or "3.f.0" */
    char text[64];    /* the item as written, for messages (truncated) */
    int line, column; /* where the item starts in the spec, from 1 */
} sp_layer_spec;

/* Parse a spec into *nodes (malloc'd, *n >= 1 entries, execution order). Errors name the item's
 * path, its text and its line and column, and say what was expected. */
sp_status sp_spec_parse(const char *spec, sp_layer_spec **nodes, int *n);

/* Do two specs describe the same graph? (Parsed: spacing, comments and written-out defaults do
 * not matter.) Clears the error a failed parse leaves. */
bool sp_spec_same(const char *a, const char *b);

/* "dense", "conv2d", ... */
const char *sp_layer_kind_name(sp_layer_kind kind);

#endif
