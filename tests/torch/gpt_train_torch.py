#!/usr/bin/python3
"""Train in PyTorch the GPT that `shardprop train --seq-len T` trains, the same run step for step,
and print its validation loss and wall time: the reference for shardprop's quality and speed on
a language model (data/configs/fortunes_gpt.model and .conf). Not a ctest: a long run.

Usage:
  gpt_train_torch.py --init init.h5 --data train.h5 --val val.h5 --seq-len 128 --batch 32
                     --steps N --lr 0.002 ...            (shardprop train's flags)
  gpt_train_torch.py --config data/configs/fortunes_gpt.conf --init init.h5 --steps N

The run starts from a shardprop checkpoint, normally the initial one:
  shardprop train --config data/configs/fortunes_gpt.conf --max-steps 0 --out init.h5
and reproduces shardprop's run from it (splm.py):
  * the batches: each epoch visits the windows of --seq-len tokens in shardprop's permutation
    (src/data/order.c with src/util/rng.h, reproduced exactly from --seed; --no-shuffle: file
    order), global batch b of an epoch its positions [bB, bB + B), the last one partial;
  * the length: ceil(N / B) steps per epoch for --epochs (default 10, as shardprop), cut at
    --steps (= --max-steps); a cosine schedule spans that many steps;
  * the update: loss the mean cross-entropy over the batch's tokens, --clip-norm the global
    gradient norm (torch.nn.utils.clip_grad_norm_), the learning rate of src/optim/schedule.c
    given as float32, torch.optim.AdamW with decoupled weight decay on every parameter (as
    src/optim/optim.c; the single-tensor path);
  * at the end, the validation loss: the mean over every token of every window of --val,
    printed in nats and in bits per token, with the training time and tokens per second.
Dropout, if the model has any, draws PyTorch's masks, not shardprop's: such a run is the same
in distribution only. Everything is float32 on the CPU, with --threads torch threads (2).
The BLAS library in use is printed: with Debian's reference libblas.so.3 (no OpenBLAS
installed) PyTorch's matrix products run at a few GFLOP/s, which its wall time then shows.

To compare with shardprop step by step, run both from the same init.h5 and compare the step
losses of the two --metrics files (--log-every 1) and the --out files (spgraph.read_state):
  shardprop train --config C --init-from init.h5 --max-steps 20 --log-every 1 \
      --metrics sp.jsonl --out sp.h5
  gpt_train_torch.py --config C --init init.h5 --steps 20 --log-every 1 --metrics pt.jsonl \
      --out pt.h5
On the fortunes config (shuffled, 20 steps) the losses agree within 1.3e-7 and the validation
losses within 1e-9. The parameters agree within 4e-6, but for qkv.bias (up to 1e-3): with the
config's Adam eps 1e-8 the k third of it, whose true gradient is 0, takes steps of rounding
noise (tests/torch/gpt_torch.py says why).

Options of the shardprop config that change nothing here (checkpoints, logging files, the MPI
layout) are accepted and ignored; --optimizer must be adamw. --out FILE writes the final
parameters in shardprop's layout (/model/params, spgraph.save_state), to compare with
shardprop's model; --metrics FILE appends JSON lines like shardprop's (step and summary events).
"""
import argparse
import json
import os
import sys
import time

try:
    import h5py
    import numpy as np
    import torch
except ImportError as e:
    print(f"gpt_train_torch: cannot import h5py/numpy/torch ({e}); install python3-h5py and "
          f"python3-torch")
    sys.exit(1)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import spgraph  # noqa: E402
import splm  # noqa: E402

# shardprop train's options that matter here: name -> (type, default), defaults as shardprop's
OPTIONS = {
    "data": (str, None), "val": (str, None), "model": (str, None), "seq-len": (int, None),
    "batch": (int, 64), "epochs": (int, 10), "max-steps": (int, None),
    "optimizer": (str, "sgd"), "lr": (float, 0.01), "beta1": (float, 0.9),
    "beta2": (float, 0.999), "eps": (float, 1e-8), "weight-decay": (float, 0.0),
    "schedule": (str, "constant"), "warmup-steps": (int, 0), "min-lr": (float, 0.0),
    "lr-gamma": (float, 0.1), "lr-step-every": (int, 1000), "clip-norm": (float, 0.0),
    "seed": (int, 1), "log-every": (int, 50), "no-shuffle": (bool, False),
}
# shardprop train's options that change nothing in this run
IGNORED = {"out", "metrics", "threads", "checkpoint-dir", "checkpoint-every",
           "checkpoint-every-minutes", "keep", "checkpoint-errors", "resume", "init-from",
           "max-time", "collective-timeout", "trace", "trace-max-events", "layer-stats",
           "bn-stats", "deterministic", "micro-batch", "data-cache-mb", "no-prefetch",
           "max-memory-mb", "bucket-mb", "check-every", "quiet", "loss", "x", "y"}


def read_config(path):
    """shardprop's --config: `key = value` lines, '#' comments, names without the dashes."""
    out = {}
    with open(path) as fh:
        for n, line in enumerate(fh, 1):
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            if "=" not in line:
                sys.exit(f"{path}:{n}: expected 'key = value', got {line!r}")
            k, v = (s.strip() for s in line.split("=", 1))
            out[k] = v
    return out


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--init", required=True, help="the shardprop checkpoint to start from")
    ap.add_argument("--config", help="a shardprop train config (key = value); flags override it")
    ap.add_argument("--steps", type=int, help="stop after N steps (shardprop's --max-steps)")
    ap.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    ap.add_argument("--out", help="write the final parameters here (shardprop's layout)")
    ap.add_argument("--metrics", help="append JSON lines: step and summary events")
    for name, (typ, _) in OPTIONS.items():
        if typ is bool:
            ap.add_argument(f"--{name}", action="store_true", default=None)
        else:
            ap.add_argument(f"--{name}", type=typ, default=None)
    a = ap.parse_args(argv)
    cfg = {}
    if a.config:
        for k, v in read_config(a.config).items():
            if k in OPTIONS:
                typ = OPTIONS[k][0]
                if typ is bool:  # as src/util/args.c reads a flag's value
                    if v not in ("true", "1", "yes", "false", "0", "no"):
                        sys.exit(f"{a.config}: {k}: '{v}' is not a boolean (true/false)")
                    cfg[k] = v in ("true", "1", "yes")
                else:
                    cfg[k] = typ(v)
            elif k not in IGNORED:
                sys.exit(f"{a.config}: unknown option '{k}'")
    for name, (_, default) in OPTIONS.items():
        v = getattr(a, name.replace("-", "_"))
        if v is not None:
            cfg[name] = v
        cfg.setdefault(name, default)
    if a.steps is not None:
        cfg["max-steps"] = a.steps
    for need in ("data", "seq-len"):
        if cfg[need] is None:
            sys.exit(f"gpt_train_torch: --{need} is required (or in --config)")
    if cfg["optimizer"] != "adamw":
        sys.exit(f"gpt_train_torch: --optimizer {cfg['optimizer']}: only adamw is reproduced")
    return a, cfg


def check_model(cfg, spec, config_path):
    """The init checkpoint's spec is the one the config names (when it can be read)."""
    want = cfg["model"]
    if not want:
        return
    if want.startswith("@"):
        path = want[1:]
        if not os.path.exists(path) and config_path:  # relative to the repository root
            root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(config_path))))
            path = os.path.join(root, path)
        if not os.path.exists(path):
            print(f"note: cannot read the model file {want[1:]}; using the checkpoint's spec")
            return
        with open(path) as fh:
            want = fh.read()
    if spgraph.parse(want) != spgraph.parse(spec):
        sys.exit("gpt_train_torch: the --init checkpoint's model is not the --model given")


def blas_in_use():
    """The BLAS library this process has loaded (Linux), which decides PyTorch's matmul speed:
    Debian's python3-torch calls the system libblas.so.3, the reference BLAS unless an
    optimized one (OpenBLAS, BLIS) is installed as its alternative."""
    torch.ones(2, 2) @ torch.ones(2, 2)
    try:
        with open("/proc/self/maps") as fh:
            libs = {os.path.realpath(line.split()[-1]) for line in fh
                    if any(k in line.rsplit("/", 1)[-1] for k in ("blas", "mkl", "blis"))}
    except OSError:
        return "unknown"
    return ", ".join(sorted(libs)) or "none found (built in)"


def main(argv=None):
    a, cfg = parse_args(sys.argv[1:] if argv is None else argv)
    torch.set_num_threads(a.threads)
    torch.manual_seed(cfg["seed"])  # dropout's masks (PyTorch's own)
    t0 = time.time()

    net, spec, shape = spgraph.load_checkpoint(a.init)
    check_model(cfg, spec, a.config)
    T = cfg["seq-len"]
    if shape != (T,):
        sys.exit(f"gpt_train_torch: {a.init} takes {shape}, not --seq-len {T}")
    if any(isinstance(m, torch.nn.Dropout) and m.p > 0 for m in net.modules()):
        print("note: the model has dropout; PyTorch's masks are not shardprop's")
    tokens, vocab = splm.read_tokens(cfg["data"])
    n = (len(tokens) - 1) // T
    B = cfg["batch"]
    steps = splm.total_steps(n, B, cfg["epochs"], cfg["max-steps"])
    sched = splm.Schedule(cfg["schedule"], cfg["lr"], cfg["warmup-steps"], steps, cfg["min-lr"],
                          cfg["lr-step-every"], cfg["lr-gamma"])
    opt = splm.make_adamw(net.parameters(), cfg["lr"], cfg["beta1"], cfg["beta2"], cfg["eps"],
                          cfg["weight-decay"])
    tr = splm.Trainer(net, opt, sched, cfg["clip-norm"])
    nparams = sum(p.numel() for p in net.parameters())
    order = "file order" if cfg["no-shuffle"] else f"shuffled with seed {cfg['seed']}"
    print(f"gpt_train_torch: {nparams} parameters, {len(tokens)} tokens (vocab {vocab}), {n} "
          f"windows of {T}, batch {B}: {splm.batches_per_epoch(n, B)} steps per epoch, {steps} "
          f"steps, {order}; {a.threads} torch threads, BLAS {blas_in_use()}")
    metrics = open(a.metrics, "a") if a.metrics else None

    def record(ev):
        if metrics:
            metrics.write(json.dumps(ev) + "\n")
            metrics.flush()

    t_train = time.time()
    log_sum = log_tok = 0.0
    done = 0
    for e in range(cfg["epochs"]):
        if done >= steps:
            break
        order = splm.epoch_order(n, cfg["seed"], e, not cfg["no-shuffle"])
        for b in range(splm.batches_per_epoch(n, B)):
            if done >= steps:
                break
            x, y = splm.windows(tokens, T, order[b * B:(b + 1) * B])
            loss, _, lr = tr.update(x, y)
            done += 1
            log_sum += loss * y.numel()
            log_tok += y.numel()
            if done % cfg["log-every"] == 0 or done == steps:
                mean = log_sum / log_tok
                dt = time.time() - t_train
                print(f"step {done}/{steps}  epoch {e + 1}  loss {mean:.4f} "
                      f"({mean / np.log(2):.3f} bits/token)  lr {lr:.4g}  "
                      f"{done * B * T / dt:.0f} tokens/s", flush=True)
                record({"event": "step", "step": done, "epoch": e + 1, "loss": mean, "lr": lr})
                log_sum = log_tok = 0.0
    train_s = time.time() - t_train

    val = None
    if cfg["val"]:
        vt, vv = splm.read_tokens(cfg["val"])
        if vv > vocab:
            sys.exit(f"{cfg['val']}: vocab_size {vv}, above {cfg['data']}'s {vocab}")
        vx, vy = splm.windows(vt, T)
        t_val = time.time()
        val = splm.eval_loss(net, vx, vy, batch=B)
        print(f"validation: loss {val:.4f} ({val / np.log(2):.4f} bits/token) over "
              f"{vy.numel()} tokens of {len(vx)} windows, {time.time() - t_val:.1f} s")
    total_s = time.time() - t0
    print(f"gpt_train_torch: {done} steps in {train_s:.1f} s ({done * B * T / train_s:.0f} "
          f"tokens/s, {a.threads} threads), {total_s:.1f} s in all"
          + (f"; VALIDATION {val / np.log(2):.4f} BITS PER TOKEN" if val is not None else ""))
    record({"event": "summary", "steps": done, "val_loss": val,
            "val_bits_per_token": None if val is None else val / np.log(2),
            "train_s": train_s, "total_s": total_s, "threads": a.threads})
    if metrics:
        metrics.close()
    if a.out:
        with h5py.File(a.out, "w") as f:
            spgraph.save_state(net, f)
            f["/model"].attrs["loss"] = np.bytes_(b"xent")
    return 0


if __name__ == "__main__":
    sys.exit(main())
