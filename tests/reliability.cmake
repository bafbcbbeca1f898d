# Injected faults (issue 8; tests/test_kill_resume.c, tests/test_faults.c): kill -9 at random
# moments then --resume auto (bitwise), a checkpoint directory that fills up or turns read-only
# mid-run, NaN/Inf with --on-nonfinite stop|skip, a data file truncated or replaced under the
# reader. Both are end-to-end runs of the executable under mpiexec; each bounded by TIMEOUT.
sp_test(kill_resume TIMEOUT 420 LABELS mpi faults)
target_link_libraries(test_kill_resume PRIVATE sp_trainutil)
sp_test(faults TIMEOUT 300 LABELS mpi faults)
target_link_libraries(test_faults PRIVATE sp_trainutil)
target_compile_options(test_faults PRIVATE -Wno-format-truncation) # fixed buffers, paths under TMPDIR
# The non-finite gradient scan itself (no MPI).
sp_test(nonfinite TIMEOUT 60)
