# io/: checkpoint files: round trips, refusals, the checkpoint directory, symlink/umask safety,
# write failures and kill -9 during a write (test_checkpoint.c; its layout against PyTorch:
# tests/torch/ckpt_torch.py).
sp_test(checkpoint)
