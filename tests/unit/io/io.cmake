# io/: checkpoint files: round trips, refusals, the checkpoint directory, symlink/umask safety,
# write failures and kill -9 during a write (test_checkpoint.c; its layout against PyTorch:
# tests/torch/ckpt_torch.py).
sp_test(checkpoint)
# The optional best-so-far record of /train (--keep-best, --early-stop) and DIR/best.h5
# (test_checkpoint_best.c).
sp_test(checkpoint_best)
