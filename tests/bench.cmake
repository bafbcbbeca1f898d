# Smoke test of the benchmark harness, shardprop side only (no peers, no pip): a --quick run of
# every workload on 1x1, 1x2 and 2x1 that must produce every field. Speed is never asserted; a
# run pinned to fewer cores than it has threads fails it.
add_test(NAME bench_smoke
  COMMAND ${CMAKE_SOURCE_DIR}/scripts/bench/run.sh --quick --no-build --no-gemm --peers none
          --check --layouts "1x1 1x2 2x1" --build ${CMAKE_BINARY_DIR}
          --results ${CMAKE_BINARY_DIR}/bench/smoke)
set_tests_properties(bench_smoke PROPERTIES TIMEOUT 600 LABELS bench PROCESSORS 2
    ENVIRONMENT "${SP_TEST_ENV}")
