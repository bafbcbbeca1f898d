sp_test(status)
