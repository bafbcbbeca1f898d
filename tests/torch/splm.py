"""splm: a shardprop language-model run (`shardprop train --seq-len T`) step by step in PyTorch.

gpt_torch.py (the ctest) and gpt_train_torch.py (the long-run comparison) both train in
PyTorch what shardprop trains; this module is what they share, written from shardprop's
definitions (the file named with each):

read_tokens(path)              the 1-D `tokens` dataset (uint8, uint16, int32) and vocab_size
windows(tokens, T[, ids])      sample i: x = tokens[iT : iT+T], y = tokens[iT+1 : iT+T+1]
                               (include/shardprop/data.h, sp_dataset_open_tokens)
epoch_order(n, seed, epoch, shuffle)
                               src/data/order.c sp_epoch_order with src/util/rng.h: a
                               Fisher-Yates shuffle from the back whose draw for position i is
                               a counter-based splitmix64 value, exactly
batch_ids(n, batch, seed, shuffle, epochs, max_steps)
                               the global batches of a run in order: batch b of epoch e is
                               positions [bB, bB + B) of that epoch's order (the last one
                               partial), ceil(n / B) per epoch (src/train/trainer.c)
Schedule                       src/optim/schedule.c sp_schedule_lr: linear warmup to base_lr on
                               its last step, then constant, step or cosine (clamped at min_lr);
                               double, and given to the optimizer as float32
make_adamw(params, ...)        torch.optim.AdamW (decoupled decay on every parameter, as
                               src/optim/optim.c) with the float32 values the C config holds
Trainer                        one update: forward, lm_loss (mean over the B*T tokens),
                               backward, --clip-norm by torch.nn.utils.clip_grad_norm_ (the
                               global norm), lr of the step, AdamW step
eval_loss(model, x, y)         the mean loss over every token of every window (validation)
f32(v)                         v rounded to float32, as a Python float

Run with /usr/bin/python3 (torch, h5py, numpy).
"""
import math

import h5py
import numpy as np
import torch

import spgraph

__all__ = ["read_tokens", "windows", "epoch_order", "batch_ids", "Schedule", "make_adamw",
           "Trainer", "eval_loss", "f32"]

_M64 = (1 << 64) - 1
SP_STREAM_ORDER = 3  # src/util/rng.h


def f32(v):
    return float(np.float32(v))


# ---- token files --------------------------------------------------------------------------------

def read_tokens(path, name="tokens"):
    """(tokens as an int64 array, the vocab_size attribute) of a token file."""
    with h5py.File(path, "r") as f:
        d = f[name]
        if d.ndim != 1 or d.dtype.kind not in "ui":
            raise ValueError(f"{path}: /{name} must be a 1-D integer dataset, is {d.dtype} "
                             f"{d.shape}")
        vocab = int(d.attrs["vocab_size"])
        tok = d[()].astype(np.int64)
    if tok.size and (tok.min() < 0 or tok.max() >= vocab):
        raise ValueError(f"{path}: token ids outside [0, {vocab})")
    return tok, vocab


def windows(tokens, T, ids=None):
    """(x, y) int64 tensors (n, T) of windows ids (default all (len - 1) // T of them)."""
    n = (len(tokens) - 1) // T
    ids = np.arange(n) if ids is None else np.asarray(ids, dtype=np.int64)
    if ids.size and (ids.min() < 0 or ids.max() >= n):
        raise ValueError(f"window ids outside [0, {n})")
    starts = ids[:, None] * T + np.arange(T)[None, :]
    return torch.from_numpy(tokens[starts]), torch.from_numpy(tokens[starts + 1])


# ---- shardprop's sample order -------------------------------------------------------------------

def _mix64(z):
    """splitmix64's finalizer on a uint64 array (wrapping arithmetic)."""
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xbf58476d1ce4e5b9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94d049bb133111eb)
    return z ^ (z >> np.uint64(31))


def _rng_u64(seed, stream, counters):
    """sp_rng_u64(seed, stream, counter) for an array of counters."""
    with np.errstate(over="ignore"):
        k = int(_mix64(np.uint64((seed ^ 0x9e3779b97f4a7c15) & _M64)))
        k = int(_mix64(np.uint64(k ^ ((stream * 0xd1b54a32d192ed03 + 0x8cb92ba72f3d8dd7) & _M64))))
        c = np.asarray(counters, dtype=np.uint64)
        return _mix64(np.uint64(k) + c * np.uint64(0x9e3779b97f4a7c15))


def epoch_order(n, seed, epoch, shuffle=True):
    """sp_epoch_order: the samples of epoch `epoch` (0-based) in the order shardprop visits
    them. Position i (from n-1 down to 1) swaps with j = sp_rng_below(seed, 3 + (epoch << 8),
    i, i + 1), the high word of the 128-bit product of the draw and i + 1."""
    perm = np.arange(n, dtype=np.int64)
    if not shuffle or n < 2:
        return perm
    stream = (SP_STREAM_ORDER + (epoch << 8)) & _M64
    i = np.arange(n - 1, 0, -1, dtype=np.uint64)
    draws = _rng_u64(seed & _M64, stream, i)
    js = [(int(u) * (int(c) + 1)) >> 64 for u, c in zip(draws, i)]
    p = perm.tolist()
    for c, j in zip(range(n - 1, 0, -1), js):
        p[c], p[j] = p[j], p[c]
    return np.asarray(p, dtype=np.int64)


def batches_per_epoch(n, batch):
    return (n + batch - 1) // batch


def total_steps(n, batch, epochs, max_steps=None):
    """The run's length as the trainer sets it: every batch of every epoch, cut at
    --max-steps."""
    total = batches_per_epoch(n, batch) * epochs
    return total if max_steps is None or max_steps >= total else max_steps


def batch_ids(n, batch, seed, shuffle, epochs, max_steps=None):
    """[(epoch, ids of the global batch)] for every step of the run, in order."""
    out, steps = [], total_steps(n, batch, epochs, max_steps)
    for e in range(epochs):
        if len(out) >= steps:
            break
        order = epoch_order(n, seed, e, shuffle)
        for b in range(batches_per_epoch(n, batch)):
            if len(out) >= steps:
                break
            out.append((e, order[b * batch:(b + 1) * batch]))
    return out


# ---- the learning-rate schedule -----------------------------------------------------------------

class Schedule:
    """sp_schedule_lr. total is the run's length (total_steps); a cosine schedule spans
    max(total, warmup + 1) steps, as the trainer sets it."""

    def __init__(self, kind, base_lr, warmup=0, total=1, min_lr=0.0, step_every=1000,
                 gamma=0.1):
        if kind not in ("constant", "step", "cosine"):
            raise ValueError(f"unknown schedule '{kind}' (constant, step or cosine)")
        self.kind, self.base, self.warmup = kind, float(base_lr), int(warmup)
        self.total = max(int(total), self.warmup + 1)
        self.min_lr, self.step_every, self.gamma = float(min_lr), int(step_every), float(gamma)

    def __call__(self, step):
        """The rate of update `step` (0-based), in double."""
        step = max(step, 0)
        if step < self.warmup:
            return self.base * (step + 1) / self.warmup
        t = step - self.warmup
        if self.kind == "constant":
            return self.base
        if self.kind == "step":
            return self.base * self.gamma ** (t // self.step_every)
        span = self.total - self.warmup
        if t >= span:
            return self.min_lr
        return self.min_lr + (self.base - self.min_lr) * (1.0 + math.cos(math.pi * t / span)) / 2.0


# ---- the update ---------------------------------------------------------------------------------

def make_adamw(params, lr, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0):
    """torch.optim.AdamW (single-tensor path) with the float32 values shardprop holds."""
    return torch.optim.AdamW(params, lr=f32(lr), betas=(f32(beta1), f32(beta2)), eps=f32(eps),
                             weight_decay=f32(weight_decay), foreach=False)


class Trainer:
    """shardprop's step on a model (spgraph.Graph): forward of the global batch, the mean loss
    over its B*T tokens, backward, clipping of the global gradient norm (clip_norm > 0), the
    step's learning rate (as float32), the optimizer's update."""

    def __init__(self, model, opt, schedule, clip_norm=0.0):
        self.model, self.opt, self.schedule, self.clip = model, opt, schedule, float(clip_norm)
        self.step = 0

    def update(self, x, y):
        """One step on inputs x (B, T) and targets y (B, T); returns (loss, grad norm or
        None, lr), the loss that of the model before the update."""
        self.model.train()
        self.opt.zero_grad(set_to_none=True)
        dtype = next(self.model.parameters()).dtype
        loss = spgraph.lm_loss(self.model(x.to(dtype)), y)
        loss.backward()
        norm = None
        if self.clip > 0:
            norm = float(torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.clip))
        lr = self.schedule(self.step)
        for g in self.opt.param_groups:
            g["lr"] = f32(lr)
        self.opt.step()
        self.step += 1
        return float(loss), norm, lr


@torch.no_grad()
def eval_loss(model, x, y, batch=64):
    """The mean loss over every token of the windows (x, y), in eval mode (no dropout)."""
    was = model.training
    model.eval()
    dtype = next(model.parameters()).dtype
    total, count = 0.0, 0
    for i in range(0, len(x), batch):
        z = model(x[i:i + batch].to(dtype))
        yb = y[i:i + batch]
        total += float(spgraph.lm_loss(z, yb).double()) * yb.numel()
        count += yb.numel()
    model.train(was)
    return total / count
