# train/: the configuration (flags, --config files), the model's sums over ranks through the two
# gradient exchanges (train/exchange.h), the non-finite gradient scan (no MPI).
sp_test(config)
sp_test(config_data)
foreach(np 1 2 3)
  sp_mpi_test(exchange ${np} TIMEOUT 60)
endforeach()
sp_test(nonfinite TIMEOUT 60)
# The best-so-far rule of --keep-best and --early-stop (test_best_rule.c, no MPI).
sp_test(best_rule)
