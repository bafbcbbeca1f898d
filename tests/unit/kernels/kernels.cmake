# kernels/: sp_gemm on every ISA path against its reference; sp_gemm_fixed (the fixed-point
# weight-gradient GEMM of --deterministic) against its oracle.
sp_test(gemm)
sp_test(gemm_fixed)

# Benchmark (not a test): build/tests/bench_gemm, see scripts/bench/gemm_bench.c.
add_executable(bench_gemm ${CMAKE_SOURCE_DIR}/scripts/bench/gemm_bench.c)
target_link_libraries(bench_gemm PRIVATE shardprop)
target_include_directories(bench_gemm PRIVATE ${CMAKE_SOURCE_DIR}/src)
