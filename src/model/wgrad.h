/*
 * Backward with the weight gradients handed out (--deterministic training, train/deterministic.c).
 *
 * sp_model_backward_wgrad runs the same backward as sp_model_backward (the error signals, dX, of
 * every layer: per-sample values, the same bits for any batch composition), but a layer with
 * parameters does not compute its own dW and db over the whole batch: it calls fn with what they
 * are made of, after its error signal is known, and leaves the gradient slab untouched. The
 * caller sums them its own way (per micro-batch, in fixed point).
 */
#ifndef SP_MODEL_WGRAD_H
#define SP_MODEL_WGRAD_H

#include <stdbool.h>
#include <stddef.h>

#include "layers/layers.h"
#include "shardprop/model.h"

typedef enum {
    SP_WGRAD_DENSE, /* dW = dy^T x, db = column sums of dy */
    SP_WGRAD_CONV,  /* dW = dy x^T over pixels, db = row sums of dy */
    SP_WGRAD_TERMS, /* normalization: per-sample terms whose sums over samples are the gradients */
    SP_WGRAD_ROWS   /* embeddings: dW[row(i)] += dy[i], a scatter-add of rows of blame */
} sp_wgrad_kind;

typedef struct sp_wgrad_layer {
    int index; /* layer index in the spec */
    sp_wgrad_kind kind;
    size_t w_off, w_len, b_off, b_len; /* views into the parameter / gradient slabs */
    int B;    /* rows of dy: samples in the batch x rows (positions per sample) */
    int rows; /* rows per sample: T for a dense or layer norm on a sequence (T, D) and for the
                 embeddings; 1 otherwise. A micro-batch of m samples is m * rows rows. */
    /* dense: dy (B, out) the layer's output error, x (B, in) its input (B rows: a sequence's
     *        positions are rows).
     * conv:  dy (oc, B*oh*ow) the output error laid out like the GEMM output (sample n's pixels
     *        are columns [n*oh*ow, (n+1)*oh*ow)); x (c*k*k, B*oh*ow) the im2col matrix, same
     *        column order. dW = dy x^T, db = row sums of dy. */
    const float *dy, *x;
    /* terms: (B, w_len + b_len) sample n's share of the gradients of [w_off, b_off + b_len)
     * (weight then bias, adjacent in the slab), in double. */
    const double *terms;
    /* rows: dy (B, out) the blame of each position; x (B) the token ids (as floats) whose rows of
     * dW (in, out) = (vocabulary, D) take it, or NULL for a position embedding, where row i
     * goes to row i % rows of dW (rows, out). */
    int in, out;              /* dense: input and output features (floats per sample) */
    const sp_conv_geom *geom; /* conv only */
    bool tied; /* dense:V:tie: dW is the embedding's, whose own rows are added after it */
} sp_wgrad_layer;

/* What layer i hands out, known at create time: its kind, the slab range it fills (a tied dense:
 * the embedding's weight), in, out and rows as in sp_wgrad_layer. False for a layer without
 * parameters of its own or shared. */
typedef struct sp_wgrad_info {
    sp_wgrad_kind kind;
    size_t w_off, w_len, b_off, b_len;
    int in, out, rows;
    bool tied;
} sp_wgrad_info;
bool sp_model_wgrad_info(const sp_model *m, int i, sp_wgrad_info *info);

typedef void (*sp_wgrad_fn)(void *user, const sp_wgrad_layer *L);

/* Layers from the last to the first; fn is called once per layer with parameters. */
void sp_model_backward_wgrad(sp_model *m, const float *d_out, int B, sp_wgrad_fn fn, void *user);

#endif
