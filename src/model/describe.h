/* The model's graph as text, for `train --dry-run` and `inspect`. */
#ifndef SP_MODEL_DESCRIBE_H
#define SP_MODEL_DESCRIBE_H

#include <stdio.h>

#include "shardprop/model.h"

/* One line per layer, each starting with indent: index, module path, kind, inputs ("input",
 * "3", "7 + 9" for add, "7 | 9" for concat), output shape, the parameter tensors as the
 * checkpoint names them (params/<path>/weight (shape) bias (shape): N parameters, and the
 * running statistics of batch norm), and with saved the bytes kept for backward. */
void sp_model_print_graph(const sp_model *m, FILE *f, const char *indent, bool saved);

/* "input", "3", "7 + 9" or "7 | 9" into buf: layer i's inputs. */
void sp_model_inputs_str(const sp_model *m, int i, char *buf, size_t cap);

#endif
