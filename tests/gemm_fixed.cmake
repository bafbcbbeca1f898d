sp_test(gemm_fixed)
