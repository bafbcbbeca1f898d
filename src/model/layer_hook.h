/*
 * An observer of the model's layers, for the trainer's timeline (--trace) and per-layer
 * statistics (--layer-stats). Not part of the public API. With no hook set (the default) the
 * model pays one predictable branch per layer.
 */
#ifndef SP_MODEL_LAYER_HOOK_H
#define SP_MODEL_LAYER_HOOK_H

#include <stddef.h>

#include "shardprop/model.h"

typedef enum sp_hook_event {
    SP_HOOK_FORWARD_BEGIN,
    SP_HOOK_FORWARD_END,
    SP_HOOK_BACKWARD_BEGIN, /* dy: the error signal arriving at the layer, dL/d(its output) */
    SP_HOOK_BACKWARD_END
} sp_hook_event;

/* Called on the thread that runs forward/backward (the caller's), around each layer. For
 * SP_HOOK_BACKWARD_BEGIN, dy holds n = B * (the layer's output size) floats (B, out_size);
 * otherwise dy is NULL and n 0. The hook must not keep dy. */
typedef void (*sp_layer_hook_fn)(void *user, sp_hook_event ev, int layer, const float *dy,
                                 size_t n);

/* Set (fn != NULL) or clear (fn == NULL) the hook. */
void sp_model_set_layer_hook(sp_model *m, sp_layer_hook_fn fn, void *user);

#endif
