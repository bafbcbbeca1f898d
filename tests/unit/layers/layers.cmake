# layers/: every layer and loss against the double-precision references of tests/lib/ref_layers.c
# (forward values, finite-difference gradients); the fast kernels bitwise against the scalar loops.
sp_test(layers)
sp_test(layer_kernels)
# the sequence layers (token and position embedding, causal attention) and the tanh GELU, with
# their determinism (1 vs 2 threads, every ISA path) and attention's causality
sp_test(seq_layers)

# Per-layer times of the cnn workload and of the attention core: build/tests/bench_layers, see
# scripts/bench/layers_bench.c.
add_executable(bench_layers ${CMAKE_SOURCE_DIR}/scripts/bench/layers_bench.c)
target_link_libraries(bench_layers PRIVATE shardprop)
target_include_directories(bench_layers PRIVATE ${CMAKE_SOURCE_DIR}/src)
