# comm/: the --deterministic gradient reducer (src/comm/reducer.c: int64 reduce-scatter, float
# allgather), bitwise against the exact sum, on 1 to 4 ranks (4 oversubscribes this 2-core machine).
foreach(np 1 2 3 4)
  sp_mpi_test(reducer ${np} TIMEOUT 120)
endforeach()
