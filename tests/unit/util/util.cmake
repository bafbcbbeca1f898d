# util/: the error channel and the counter-based RNG (status, rng), the atomic file writer.
sp_test(status)
sp_test(atomic_file)
