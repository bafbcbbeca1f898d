# util/: the error channel and the counter-based RNG (status, rng), the atomic file writer, the
# flag parser (args: multi-valued flags).
sp_test(status)
sp_test(atomic_file)
sp_test(args)
