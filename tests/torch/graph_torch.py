#!/usr/bin/python3
"""Graph models (residual, repeat, save/concat, batch norm, layer norm, gap, upsample) trained
and evaluated by shardprop against the same models in PyTorch (spgraph.py).

Usage: graph_torch.py PATH/TO/shardprop   (else $SHARDPROP_BIN; ctest passes the build's binary)

Three models (MODELS below):
  resnet  (1, 28, 28) uint8 images, scale 1/255: a conv + batchnorm stem (8 channels), a block
          with a 1x1-conv + batchnorm projection shortcut (16 channels, stride 2), repeat:2 of
          identity-shortcut blocks, gap, dense:10 (cross-entropy);
  unet    (1, 16, 16): two levels down (maxpool:2, save of each skip) and up (upsample:2,
          concat of the skip), relu, a 1x1-conv regression head over every pixel (mse, y float
          (N, 256));
  prenorm (24) vectors: dense:16, repeat:2(residual(layernorm, dense:32, gelu, dense:16)),
          layernorm, dense:5 (cross-entropy).

What is checked, per model:
  1. TRAIN. `shardprop train --max-steps 0 --out init.h5` writes the initialized model; then
     `shardprop train --init-from init.h5 --no-shuffle --batch 16 --max-steps 5` on 80 samples
     (5 whole batches in file order; another --seed, so the start is the file's) with SGD
     (momentum 0.9, L2 weight decay 1e-3: g + wd*p, as torch.optim.SGD) and with AdamW
     (decoupled weight decay 0.05 on every parameter: p *= 1 - lr*wd, then the Adam step, as
     torch.optim.AdamW; src/optim/optim.c), and the same 5 steps in PyTorch from init.h5 in
     train mode (batch norm on batch statistics, the running ones moved with momentum 0.1 and
     the unbiased variance; mean loss of the batch; foreach=False). Every tensor of the final
     state_dict, running_mean, running_var and num_batches_tracked included, must agree:
     max|c - t| / max(max|t|, 1e-3) <= 1e-4.
     resnet and unet also run under `mpiexec -n 2` (both optimizers, 8 samples per rank):
     batch norm then uses the statistics of the global batch (summed over the ranks, as
     SyncBatchNorm), so the result must equal the 1-rank PyTorch run within the same 1e-4.
  2. EVAL. Each trained checkpoint (--out of the 1-rank runs) loaded with spgraph in eval mode
     (running statistics) gives `shardprop predict`'s probabilities (softmax) or outputs on 37
     other samples (batch 16: a partial last batch), max|c - t| / max(max|c|, 1) <= 1e-5, the
     same labels as torch's argmax (where its two best probabilities do not tie within 1e-6),
     and `shardprop eval`'s loss and correct count (exactly), or mse and mae, within 1e-5
     relative.
  3. --bn-stats local on 2 ranks (resnet, SGD): each rank normalizes with the statistics of its
     own 8 samples (DDP without SyncBatchNorm), so the run must NOT match the 1-rank PyTorch
     run: some tensor differs by more than 1e-3 relative. It must match, within 1e-4, PyTorch
     run the DDP way: two replicas each forward their contiguous half of the batch (rank r:
     samples [8r, 8r + 8), as sp_rank_slice) in train mode, the gradients of
     sum(loss of the half) / 16 are added, the update is made once, and every replica takes
     rank 0's buffers (shardprop broadcasts them after each step, as DDP's broadcast_buffers).

Conditioning. Both sides compute in float32, so the comparison means something only where the
5 steps amplify rounding little. Each training check also prints the distance between the
float32 and a float64 PyTorch run of the same steps (its floor): a case that fails with a floor
of the same size is ill-conditioned, not a shardprop discrepancy. Three choices keep the floor
at 1e-6 to 1e-5 (measured over 10 data/initialization seeds, in 9 of them for every case; in the
tenth the unet's one-element head bias ended at 1.8e-3, near the metric's 1e-3 floor, and the
float32 PyTorch run alone was 2.3e-4 from the float64 one):
  * no bias before a batch norm (bias=0): the norm cancels it and its gradient is rounding
    noise, which Adam turns into steps of +-lr;
  * AdamW eps 1e-4, not 1e-8: an element whose gradient is at its tensor's rounding level
    (|g| ~ 1e-6 max|g|, comparable to 1e-8) gets a first step lr*g/(|g| + eps) decided by
    rounding (1e-3 relative between float32 and float64 PyTorch);
  * gelu, not relu, in the resnet (2e6 activations per run): a relu input within 1e-7 of
    0 (2 to 3 seeds in 8) falls on either side in float32, which changes the gradient of the
    layers below by ~4e-3 relative and, through Adam, the weights by up to 1e-2. The smaller
    unet keeps relu (and maxpool): 8 seeds in 8 without a flip.

Needs /usr/bin/python3 with h5py, numpy and torch, and mpiexec ($MPIEXEC, else on PATH): when
any is missing this test FAILS (CI installs python3-h5py and python3-torch). About 30 s.
"""
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile

try:
    import h5py
    import numpy as np
    import torch
    from torch.nn import functional as F
except ImportError as e:  # not a skip: the cross-check must run in CI
    print(f"FAIL: cannot import h5py/numpy/torch ({e}); install python3-h5py and python3-torch")
    sys.exit(1)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import spgraph  # noqa: E402  (the spec as PyTorch modules with shardprop's tensor names)

TRAIN_TOL = 1e-4   # per tensor, max|c - t| / max(max|t|, 1e-3), after 5 steps
EVAL_TOL = 1e-5    # max|c - t| / max(max|c|, 1)
LOCAL_MIN = 1e-3   # --bn-stats local must differ from the global run by more than this

BATCH, STEPS = 16, 5
N_TRAIN, N_TEST = BATCH * STEPS, 37

OPTIMIZERS = {
    "sgd": dict(flags=["--optimizer", "sgd", "--lr", "0.05", "--momentum", "0.9",
                       "--weight-decay", "0.001"],
                lr=0.05, momentum=0.9, weight_decay=0.001),
    "adamw": dict(flags=["--optimizer", "adamw", "--lr", "0.005", "--weight-decay", "0.05",
                         "--beta1", "0.9", "--beta2", "0.999", "--eps", "1e-4"],
                  lr=0.005, betas=(0.9, 0.999), eps=1e-4, weight_decay=0.05),
}

MODELS = {
    "resnet": dict(
        shape=(1, 28, 28), loss="xent", classes=10, mpi=True,
        spec="conv2d:8:3:pad=1:bias=0, batchnorm, gelu,"
             " residual(conv2d:16:3:stride=2:pad=1:bias=0, batchnorm, gelu,"
             "          conv2d:16:3:pad=1:bias=0, batchnorm"
             "        | conv2d:16:1:stride=2:bias=0, batchnorm),"
             " gelu,"
             " repeat:2(residual(conv2d:16:3:pad=1:bias=0, batchnorm, gelu,"
             "                   conv2d:16:3:pad=1:bias=0, batchnorm), gelu),"
             " gap, dense:10"),
    "unet": dict(
        shape=(1, 16, 16), loss="mse", mpi=True,
        spec="conv2d:8:3:pad=1:bias=0, batchnorm, relu, save:s1, maxpool:2,"
             " conv2d:16:3:pad=1:bias=0, batchnorm, relu, save:s2, maxpool:2,"
             " conv2d:16:3:pad=1:bias=0, batchnorm, relu,"
             " upsample:2, concat:s2, conv2d:16:3:pad=1:bias=0, batchnorm, relu,"
             " upsample:2, concat:s1, conv2d:8:3:pad=1, relu,"
             " conv2d:1:1, flatten"),
    "prenorm": dict(
        shape=(24,), loss="xent", classes=5, mpi=False,
        spec="dense:16, repeat:2(residual(layernorm, dense:32, gelu, dense:16)),"
             " layernorm, dense:5"),
}


# ---- running shardprop ---------------------------------------------------------------------------

def _die(msg):
    print(f"FAIL: {msg}")
    sys.exit(1)


EXE = None
MPIEXEC = os.environ.get("MPIEXEC") or shutil.which("mpiexec") or "mpiexec"
MPI_PRE = shlex.split(os.environ.get("MPIEXEC_PREFLAGS", ""))
# what tests/CMakeLists.txt's SP_MPI_ENV gives under ctest, so that a run by hand works too
MPI_ENV = {"OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1",
           "OMPI_MCA_rmaps_base_oversubscribe": "1",
           "OMPI_MCA_btl_vader_single_copy_mechanism": "none"}


def shardprop(*args, ranks=1):
    env = dict(os.environ, OMP_NUM_THREADS="1", ASAN_OPTIONS="detect_leaks=0")
    cmd = [EXE, *args]
    if ranks > 1:
        for k, v in MPI_ENV.items():
            env.setdefault(k, v)
        cmd = [MPIEXEC, "-n", str(ranks), "--bind-to", "none", *MPI_PRE, *cmd]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if r.returncode != 0:
        _die(f"{' '.join(shlex.quote(c) for c in cmd)}: exit {r.returncode}\n{r.stdout}{r.stderr}")
    return r.stdout


# ---- data ------------------------------------------------------------------------------------------

def write_data(path, model, n, seed):
    """A synthetic file of the model's input shape. Images are uint8 with scale 1/255 (a bright
    patch whose place is the label, on noise); vectors float32 normal with a linear label;
    the U-Net's target is a smoothed, shifted copy of its image, float32 (N, H*W)."""
    rng = np.random.default_rng(seed)
    shape = model["shape"]
    with h5py.File(path, "w") as f:
        if len(shape) == 3:
            c, h, w = shape
            x = rng.integers(0, 90, size=(n, c, h, w), dtype=np.uint8)
            y = rng.integers(0, model.get("classes", 4), size=n)
            for i in range(n):
                r0 = rng.integers(0, h - 5)
                c0 = (y[i] * (w - 5)) // max(model.get("classes", 4) - 1, 1)
                x[i, :, r0:r0 + 5, c0:c0 + 5] = 160 + rng.integers(0, 95)
            d = f.create_dataset("X", data=x, chunks=(8, c, h, w), compression="gzip")
            d.attrs["scale"] = np.float64(1.0 / 255.0)
            d.attrs["offset"] = np.float64(0.0)
            if model["loss"] == "xent":
                f.create_dataset("y", data=y.astype(np.int64)).attrs["classes"] = \
                    np.int64(model["classes"])
            else:
                xf = x.astype(np.float32) / 255.0
                t = 0.25 * (np.roll(xf, 1, axis=2) + np.roll(xf, -1, axis=2)
                            + np.roll(xf, 1, axis=3) + xf) - 0.3
                f.create_dataset("y", data=t.reshape(n, -1).astype(np.float32))
        else:
            x = rng.standard_normal((n, *shape)).astype(np.float32)
            wgt = rng.standard_normal((shape[0], model["classes"]))
            y = np.argmax(x @ wgt + 0.5 * rng.standard_normal((n, model["classes"])), axis=1)
            f.create_dataset("X", data=x)
            f.create_dataset("y", data=y.astype(np.int64)).attrs["classes"] = \
                np.int64(model["classes"])


def read_data(path):
    """X as shardprop reads it (x * scale + offset in double, then float32) and y."""
    with h5py.File(path, "r") as f:
        d = f["X"]
        x = d[()].astype(np.float64)
        x = x * float(d.attrs.get("scale", 1.0)) + float(d.attrs.get("offset", 0.0))
        y = f["y"][()]
    return torch.from_numpy(x.astype(np.float32)), torch.from_numpy(y)


# ---- PyTorch --------------------------------------------------------------------------------------

def loss_fn(model, z, y, reduction="mean"):
    if model["loss"] == "xent":
        return F.cross_entropy(z, y.long(), reduction=reduction)
    return F.mse_loss(z, y.to(z.dtype), reduction=reduction)


def f32(v):
    return float(np.float32(v))


def make_opt(name, params):
    """torch.optim with the float32 values the C config holds."""
    o = OPTIMIZERS[name]
    if name == "sgd":
        return torch.optim.SGD(params, lr=f32(o["lr"]), momentum=f32(o["momentum"]),
                               weight_decay=f32(o["weight_decay"]), foreach=False)
    return torch.optim.AdamW(params, lr=f32(o["lr"]), betas=tuple(map(f32, o["betas"])),
                             eps=f32(o["eps"]), weight_decay=f32(o["weight_decay"]),
                             foreach=False)


def torch_train(model, init, opt_name, x, y, dtype=torch.float32):
    """STEPS steps of the whole batch in train mode: batch norm on the batch's statistics.
    dtype float64 gives the same steps with less rounding: how far the float32 run is from it
    tells how well conditioned the case is (the floor of any float32 comparison)."""
    net = spgraph.load_checkpoint(init)[0].to(dtype).train()
    opt = make_opt(opt_name, net.parameters())
    for s in range(STEPS):
        xb, yb = x[s * BATCH:(s + 1) * BATCH].to(dtype), y[s * BATCH:(s + 1) * BATCH]
        opt.zero_grad()
        loss_fn(model, net(xb), yb).backward()
        opt.step()
    return net.state_dict()


def torch_train_local(model, init, opt_name, x, y, ranks=2):
    """The same steps as DDP without SyncBatchNorm: replica r forwards its contiguous share of
    each batch in train mode (batch norm on that share's statistics, running statistics moved
    by it), the gradients of sum(per-sample loss) / BATCH are summed over the replicas, the
    update is made once, and every replica takes rank 0's buffers."""
    nets = [spgraph.load_checkpoint(init)[0].train() for _ in range(ranks)]
    opt = make_opt(opt_name, nets[0].parameters())
    per = BATCH // ranks
    for s in range(STEPS):
        opt.zero_grad()
        for r, net in enumerate(nets):
            lo = s * BATCH + r * per
            xb, yb = x[lo:lo + per], y[lo:lo + per]
            k = 1 if model["loss"] == "xent" else yb[0].numel()
            (loss_fn(model, net(xb), yb, reduction="sum") / (BATCH * k)).backward()
        for net in nets[1:]:
            for p0, p in zip(nets[0].parameters(), net.parameters()):
                p0.grad += p.grad
        opt.step()
        state = nets[0].state_dict()
        for net in nets[1:]:
            net.load_state_dict(state)  # the new parameters and rank 0's buffers
            net.zero_grad()
    return nets[0].state_dict()


# ---- comparisons ------------------------------------------------------------------------------------

def relerr(c, t, floor):
    c = np.asarray(c, dtype=np.float64)
    t = np.asarray(t, dtype=np.float64)
    if c.size == 0:
        return 0.0
    return float(np.max(np.abs(c - t)) / max(float(np.max(np.abs(t))), floor))


def compare_states(c_state, t_state):
    """{key: rel err} over the union of keys; a key on one side only is an error (inf)."""
    errs = {}
    for k in sorted(set(c_state) | set(t_state)):
        if k not in c_state or k not in t_state or \
                tuple(c_state[k].shape) != tuple(t_state[k].shape):
            errs[k] = float("inf")
        else:
            errs[k] = relerr(c_state[k].numpy(), t_state[k].detach().numpy(), 1e-3)
    return errs


def worst(errs):
    k = max(errs, key=errs.get)
    return k, errs[k]


def summary_by_kind(errs):
    """The largest error per tensor name (weight, bias, running_mean, ...)."""
    out = {}
    for k, e in errs.items():
        kind = k.rsplit(".", 1)[1]
        out[kind] = max(out.get(kind, 0.0), e)
    return ", ".join(f"{kind} {e:.1e}" for kind, e in sorted(out.items()))


def record(what, value, limit, ok):
    """A check's verdict; a failure is printed with what was measured and the limit."""
    if not ok:
        print(f"FAIL {what}: {value:.3e} (limit {limit})")
    return ok


def check_train(name, opt_name, layout, c_file, t_state, floor=None):
    """Every tensor of shardprop's final state against torch's. floor: torch float32 vs
    float64 on the same steps, printed so that a failure shows whether the case itself is
    ill-conditioned (then the floor is large too) or shardprop differs."""
    errs = compare_states(spgraph.read_state(c_file), t_state)
    k, e = worst(errs)
    extra = "" if floor is None else f"; torch float32 vs float64 {floor:.1e}"
    print(f"{name} {opt_name} {layout}: {len(errs)} tensors, worst {k} {e:.2e} "
          f"({summary_by_kind(errs)}){extra}")
    return record(f"train {name} {opt_name} {layout} ({k})", e, TRAIN_TOL, e <= TRAIN_TOL)


def check_eval(name, model, ckpt, test, tmp):
    """predict and eval of a checkpoint vs spgraph's model in eval mode."""
    ok = True
    pred = os.path.join(tmp, f"{name}_pred.h5")
    metrics = os.path.join(tmp, f"{name}_eval.jsonl")
    shardprop("predict", "--checkpoint", ckpt, "--data", test, "--out", pred, "--batch", "16",
              "--threads", "1")
    if os.path.exists(metrics):
        os.remove(metrics)
    shardprop("eval", "--checkpoint", ckpt, "--data", test, "--metrics", metrics, "--batch", "16",
              "--threads", "1")
    with open(metrics) as fh:
        ev = [json.loads(line) for line in fh if line.strip()][-1]
    net, _, _ = spgraph.load_checkpoint(ckpt)  # eval mode: the running statistics
    x, y = read_data(test)
    with torch.no_grad():
        z = net(x)
    tag = os.path.basename(ckpt)
    with h5py.File(pred, "r") as f:
        if model["loss"] == "xent":
            probs, label = f["probs"][()], f["label"][()]
            pt = torch.softmax(z, dim=1).numpy()
            e = relerr(pt, probs, 1.0) if probs.shape == pt.shape else float("inf")
            top2 = np.sort(pt, axis=1)[:, -2:]
            clear = (top2[:, 1] - top2[:, 0]) > 1e-6
            wrong = int(np.sum((label != np.argmax(pt, axis=1)) & clear))
            tl = float(F.cross_entropy(z, y.long()))
            tacc = int(np.sum(np.argmax(pt, axis=1) == y.numpy()))
            el = abs(ev["loss"] - tl) / max(abs(tl), 1e-12)
            print(f"{name} eval {tag}: predict probs {e:.2e}, {wrong} labels differ; eval loss "
                  f"{ev['loss']:.6f} vs torch {tl:.6f} ({el:.1e}), correct {ev['correct']} vs "
                  f"{tacc} of {ev['n']}")
            ok &= record(f"predict {name} {tag} probs", e, EVAL_TOL, e <= EVAL_TOL)
            ok &= record(f"predict {name} {tag} labels differing", wrong, 0, wrong == 0)
            ok &= record(f"eval {name} {tag} loss", el, EVAL_TOL, el <= EVAL_TOL)
            ok &= record(f"eval {name} {tag} correct - torch", abs(ev["correct"] - tacc), 0,
                         ev["correct"] == tacc and ev["n"] == len(y))
        else:
            out = f["outputs"][()]
            zt = z.numpy()
            e = relerr(zt, out, 1.0) if out.shape == zt.shape else float("inf")
            d = z - y.float()
            tmse, tmae = float(torch.mean(d * d)), float(torch.mean(torch.abs(d)))
            em = abs(ev["mse"] - tmse) / max(abs(tmse), 1e-12)
            ea = abs(ev["mae"] - tmae) / max(abs(tmae), 1e-12)
            print(f"{name} eval {tag}: predict outputs {e:.2e}; eval mse {ev['mse']:.6f} vs "
                  f"torch {tmse:.6f} ({em:.1e}), mae {ev['mae']:.6f} vs {tmae:.6f} ({ea:.1e})")
            ok &= record(f"predict {name} {tag} outputs", e, EVAL_TOL, e <= EVAL_TOL)
            ok &= record(f"eval {name} {tag} mse", em, EVAL_TOL, em <= EVAL_TOL)
            ok &= record(f"eval {name} {tag} mae", ea, EVAL_TOL, ea <= EVAL_TOL)
    return ok


# ---- the test -----------------------------------------------------------------------------------------

def train_flags(train, spec, init, opt_name, out):
    return ["train", "--data", train, "--model", spec, "--init-from", init, "--seed", "2",
            "--no-shuffle", "--batch", str(BATCH), "--epochs", "1", "--max-steps", str(STEPS),
            "--threads", "1", "--quiet", "--out", out, *OPTIMIZERS[opt_name]["flags"]]


def run_model(name, model, tmp):
    ok = True
    p = lambda f: os.path.join(tmp, f"{name}_{f}")  # noqa: E731
    train, test, init = p("train.h5"), p("test.h5"), p("init.h5")
    write_data(train, model, N_TRAIN, seed=11)
    write_data(test, model, N_TEST, seed=12)
    shardprop("train", "--data", train, "--model", model["spec"], "--seed", "1",
              "--batch", str(BATCH), "--max-steps", "0", "--quiet", "--out", init)
    x, y = read_data(train)
    for opt_name in OPTIMIZERS:
        t_state = torch_train(model, init, opt_name, x, y)
        floor = worst(compare_states(torch_train(model, init, opt_name, x, y, torch.float64),
                                     t_state))[1]
        out = p(f"{opt_name}_np1.h5")
        shardprop(*train_flags(train, model["spec"], init, opt_name, out))
        ok &= check_train(name, opt_name, "1 rank", out, t_state, floor)
        ok &= check_eval(name, model, out, test, tmp)
        if not model["mpi"]:
            continue
        out2 = p(f"{opt_name}_np2.h5")
        shardprop(*train_flags(train, model["spec"], init, opt_name, out2), ranks=2)
        ok &= check_train(name, opt_name, "2 ranks (global batch norm)", out2, t_state, floor)
        if opt_name != "sgd" or name != "resnet":
            continue
        # --bn-stats local: not the 1-rank run, but the DDP-without-SyncBatchNorm one
        out_l = p(f"{opt_name}_np2_local.h5")
        shardprop(*train_flags(train, model["spec"], init, opt_name, out_l), "--bn-stats",
                  "local", ranks=2)
        errs = compare_states(spgraph.read_state(out_l), t_state)
        k, e = worst(errs)
        print(f"{name} {opt_name} 2 ranks --bn-stats local vs the 1-rank torch run: worst {k} "
              f"{e:.2e} ({summary_by_kind(errs)})")
        ok &= record(f"local {name} {opt_name} differs from 1-rank ({k})", e, f"> {LOCAL_MIN}",
                     LOCAL_MIN < e < float("inf"))  # inf: a tensor missing, not a difference
        ok &= check_train(name, opt_name, "2 ranks --bn-stats local vs DDP-style torch", out_l,
                          torch_train_local(model, init, opt_name, x, y))
    return ok


def main():
    global EXE
    if len(sys.argv) > 2:
        print(__doc__)
        return 2
    EXE = sys.argv[1] if len(sys.argv) == 2 else os.environ.get("SHARDPROP_BIN")
    if not EXE or not os.access(EXE, os.X_OK):
        _die(f"no shardprop executable (argument or $SHARDPROP_BIN): {EXE!r}")
    if not shutil.which(MPIEXEC):
        _die(f"mpiexec not found ({MPIEXEC!r}; set MPIEXEC)")
    torch.manual_seed(0)
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        for name, model in MODELS.items():
            ok &= run_model(name, model, tmp)
    print("graph_torch:", "ok" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
