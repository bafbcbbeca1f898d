sp_test(gemm)

# Benchmark (not a test): build/tests/bench_gemm, see scripts/bench/gemm_bench.c.
add_executable(bench_gemm ${CMAKE_SOURCE_DIR}/scripts/bench/gemm_bench.c)
target_link_libraries(bench_gemm PRIVATE shardprop)
target_include_directories(bench_gemm PRIVATE ${CMAKE_SOURCE_DIR}/src)
# Per-layer times of the cnn workload: build/tests/bench_layers, see scripts/bench/layers_bench.c.
add_executable(bench_layers ${CMAKE_SOURCE_DIR}/scripts/bench/layers_bench.c)
target_link_libraries(bench_layers PRIVATE shardprop)
target_include_directories(bench_layers PRIVATE ${CMAKE_SOURCE_DIR}/src)
sp_test(layer_kernels)
