/* The model spec: parsing "conv2d:32:3:pad=1,relu,..." into a list of layer descriptions. */
#ifndef SP_MODEL_SPEC_H
#define SP_MODEL_SPEC_H

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
    SP_LAYER_DROPOUT
} sp_layer_kind;

typedef struct sp_layer_spec {
    sp_layer_kind kind;
    int units;        /* dense */
    int out_channels; /* conv2d */
    int kernel;       /* conv2d, pools */
    int stride;       /* conv2d (default 1), pools (default kernel) */
    int pad;          /* conv2d (default 0) */
    float slope;      /* leaky_relu (default 0.01, as PyTorch) */
    float p;          /* dropout */
    char text[64];    /* the layer as written, for messages (truncated) */
} sp_layer_spec;

/* Parse a spec into *layers (malloc'd, *n entries). Errors name the layer's index and text
 * and say what was expected. */
sp_status sp_spec_parse(const char *spec, sp_layer_spec **layers, int *n);

/* "dense", "conv2d", ... */
const char *sp_layer_kind_name(sp_layer_kind kind);

#endif
