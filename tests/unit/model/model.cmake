# model/: spec parsing, shape inference and parameter layout, initialization, whole-model
# gradients; graphs (branches, joins, normalization) against the double evaluator ref_graph.c.
sp_test(model)
sp_test(graph)
