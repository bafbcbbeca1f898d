sp_test(optim)
# An independent reference: 20-step trajectories against torch.optim (fails if torch is missing).
add_test(NAME optim_vs_torch COMMAND /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/optim_vs_torch.py
         $<TARGET_FILE:test_optim>)
set_tests_properties(optim_vs_torch PROPERTIES TIMEOUT 300 ENVIRONMENT "${SP_TEST_ENV}")
