# model/: spec parsing, shape inference and parameter layout, initialization, whole-model gradients.
sp_test(model)
