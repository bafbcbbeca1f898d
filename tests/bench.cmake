# Smoke test of the benchmark harness, shardprop side only (no peers, no pip): a --quick run of
# every workload on 1x1 and 2x1 that must produce every field. Speed is never asserted.
add_test(NAME bench_smoke
  COMMAND ${CMAKE_SOURCE_DIR}/scripts/bench/run.sh --quick --no-build --no-gemm --peers none
          --check --layouts "1x1 2x1" --build ${CMAKE_BINARY_DIR}
          --results ${CMAKE_BINARY_DIR}/bench/smoke)
set_tests_properties(bench_smoke PROPERTIES TIMEOUT 600 LABELS bench PROCESSORS 2
    ENVIRONMENT "${SP_TEST_ENV}")
