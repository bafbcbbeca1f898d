# Checkpoint files: round trips, refusals, the checkpoint directory, symlink/umask safety,
# write failures and kill -9 during a write (tests/test_checkpoint.c).
sp_test(checkpoint)
# The layout against PyTorch: h5py loads a checkpoint into nn.Sequential and torch.optim.Adam
# (fails, not skips, when h5py or torch is missing: CI installs python3-h5py and python3-torch).
add_test(NAME ckpt_torch COMMAND /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/ckpt_torch.py
         $<TARGET_FILE:test_checkpoint>)
set_tests_properties(ckpt_torch PROPERTIES TIMEOUT 300 ENVIRONMENT "${SP_TEST_ENV}")
