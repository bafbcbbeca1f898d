add_library(sp_trainutil STATIC train_util.c)
target_link_libraries(sp_trainutil PUBLIC sp_testutil)
sp_test(train_mpi TIMEOUT 600 LABELS mpi)
target_link_libraries(test_train_mpi PRIVATE sp_trainutil)
sp_test(resume TIMEOUT 600 LABELS mpi)
target_link_libraries(test_resume PRIVATE sp_trainutil)
sp_test(config)
# --trace, the straggler line and --layer-stats end to end (tests/trace_test.py; the trace and
# metrics files parsed with /usr/bin/python3, plot_metrics.py run on the layer statistics).
foreach(t trace straggler layer_stats)
  add_test(NAME train_${t} COMMAND /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/trace_test.py ${t})
  set_tests_properties(train_${t} PROPERTIES TIMEOUT 300 ENVIRONMENT "${SP_TEST_ENV}"
      PROCESSORS 2 LABELS mpi)
endforeach()
sp_test(deterministic TIMEOUT 900 LABELS mpi)
target_link_libraries(test_deterministic PRIVATE sp_trainutil)
# The model's sums over ranks through the two gradient exchanges (train/exchange.h).
foreach(np 1 2 3)
  sp_mpi_test(exchange ${np} TIMEOUT 60)
endforeach()
