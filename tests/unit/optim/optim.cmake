# optim/: optimizers, schedules and clipping against values worked out in double (their
# trajectories against torch.optim: tests/torch/optim_vs_torch.py).
sp_test(optim)
