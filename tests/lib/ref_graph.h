/* A double-precision evaluator of a model's graph, for the tests: the model's structure (its
 * nodes, their inputs, shapes and parameter offsets) run through the reference layers of
 * ref_layers.c, not through the model's kernels. With it, the gradient of any graph (branches,
 * joins, batch norm in training) can be checked against central finite differences. */
#ifndef SP_TEST_REF_GRAPH_H
#define SP_TEST_REF_GRAPH_H

#include <stdbool.h>

#include "shardprop/model.h"

/* y (B, output size) = the model m's function of x (B, input size) with parameters p (a double
 * copy of the slab) and, for batch norm, either the batch statistics (training) or m's running
 * statistics (evaluation). Dropout is the identity (evaluation, or p = 0). Returns false if the
 * graph has a layer this evaluator does not know. */
bool ref_graph_forward(const sp_model *m, const double *p, const double *x, int B, bool training,
                       double *y);

#endif
