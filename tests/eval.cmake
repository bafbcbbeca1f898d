# Using a trained model: shardprop eval / predict / inspect MODEL.h5, alone and under mpiexec
# (tests/test_eval.c; it starts mpiexec itself, 2 and 3 ranks).
sp_test(eval TIMEOUT 600 LABELS mpi) # about 25 s; ~170 s in the sanitizer build
target_link_libraries(test_eval PRIVATE sp_trainutil)
set_tests_properties(eval PROPERTIES PROCESSORS 2)
# The PyTorch cross-check of `shardprop predict`: h5py loads the checkpoint into nn.Sequential
# (tests/ckpt_torch.py) and predicts the same probabilities / outputs within 1e-5 (fails, not
# skips, when h5py or torch is missing).
add_test(NAME predict_torch COMMAND /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/predict_torch.py)
set_tests_properties(predict_torch PROPERTIES TIMEOUT 300 ENVIRONMENT "${SP_TEST_ENV}")
