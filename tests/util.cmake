sp_test(status)
sp_test(atomic_file)
