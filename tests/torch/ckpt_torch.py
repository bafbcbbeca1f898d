#!/usr/bin/python3
"""Check the checkpoint layout against PyTorch: h5py loads a shardprop checkpoint into the
equivalent PyTorch model (spgraph.py: for a straight stack the layers of nn.Sequential, with the
state_dict keys "<i>.weight", "<i>.bias") and torch.optim.Adam.

Usage: ckpt_torch.py PATH/TO/test_checkpoint

For each model, `test_checkpoint --export FILE SPEC SHAPE` writes a checkpoint after 3 Adam steps
and prints the input and output of a forward pass (4 samples), then one more Adam step (its
gradient and the parameters after it). This script loads FILE with load_checkpoint() below and
checks:
  * the outputs of the PyTorch model on the same input: max |torch - c| / max(max |c|, 1) <= 1e-5;
  * one torch.optim.Adam step (foreach=False) from the loaded optimizer state with the same
    gradient: the parameters after it at 1e-6 relative.

h5py and torch must be importable: when they are not, this test FAILS (CI installs python3-h5py
and python3-torch). load_checkpoint / load_optimizer are the reusable part (shown in the README).
"""
import subprocess
import sys
import tempfile
import os

try:
    import h5py
    import numpy as np
    import torch
except ImportError as e:  # not a skip: the layout check must run in CI
    print(f"FAIL: cannot import h5py/numpy/torch ({e}); install python3-h5py and python3-torch")
    sys.exit(1)


# ---- the reusable loader ------------------------------------------------------------------------

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import spgraph  # noqa: E402  (the spec as PyTorch modules, graphs included)


def _text(v):
    """String attributes are fixed-length UTF-8: h5py gives bytes."""
    return v.decode("utf-8") if isinstance(v, (bytes, np.bytes_)) else v


def load_checkpoint(path):
    """A shardprop checkpoint -> (the model with its parameters and buffers, in eval mode; dict
    of the attributes). The model is spgraph's: for a straight stack, the layers of
    nn.Sequential under the keys "<i>.weight", "<i>.bias"; for a graph, the module paths."""
    model, _, _ = spgraph.load_checkpoint(path)  # strict: every tensor comes from the file
    with h5py.File(path, "r") as f:
        g = f["/model"]
        info = {k: _text(g.attrs[k]) for k in ("spec", "input_shape", "loss", "format_version")}
        if "/train" in f:
            info["train"] = {k: _text(v) for k, v in f["/train"].attrs.items()}
    return model, info


def load_optimizer(path, model, lr):
    """The /optimizer group -> a torch.optim optimizer over model.parameters() with its state.
    torch numbers parameters in model.parameters() order: layer by layer, weight then bias."""
    with h5py.File(path, "r") as f:
        o = f["/optimizer"]
        a = o.attrs
        kind = _text(a["type"])
        if kind == "sgd":
            opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=float(a["momentum"]),
                                  nesterov=bool(a["nesterov"]),
                                  weight_decay=float(a["weight_decay"]), foreach=False)
        else:
            cls = torch.optim.Adam if kind == "adam" else torch.optim.AdamW
            opt = cls(model.parameters(), lr=lr, betas=(float(a["beta1"]), float(a["beta2"])),
                      eps=float(a["eps"]), weight_decay=float(a["weight_decay"]), foreach=False)
        named = dict(model.named_parameters())  # "<path>.weight" -> Parameter
        for key, p in named.items():
            path, which = key.rsplit(".", 1)
            st = o.get(f"state/{path}/{which}")  # /optimizer/state/<path>/<weight|bias>/<name>
            if st is None:
                continue  # plain SGD: no state
            s = {name: torch.from_numpy(st[name][()]) for name in st}
            if kind != "sgd":
                s["step"] = torch.tensor(float(a["step"]))
            opt.state[p] = s
    return opt


# ---- the test -----------------------------------------------------------------------------------

CASES = [
    ("dense:5,relu,dense:3", "8"),
    ("conv2d:4:3:pad=1,relu,maxpool:2,flatten,dense:5", "1,6,6"),
    ("conv2d:3:3:stride=2,tanh,avgpool:2,flatten,dense:6,gelu,dropout:0.5,dense:4,sigmoid,"
     "leaky_relu:0.2,dense:2", "2,9,9"),
]


def relerr(a, b, floor):
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    return float(np.max(np.abs(a - b)) / max(float(np.max(np.abs(b))), floor))


def run_case(exe, spec, shape, tmp):
    path = os.path.join(tmp, "ckpt.h5")
    out = subprocess.run([exe, "--export", path, spec, shape], check=True, capture_output=True,
                         text=True).stdout
    rec = {}
    for line in out.splitlines():
        tag, *vals = line.split()
        rec[tag] = vals
    B = int(rec["batch"][0])
    x = np.array(rec["input"][1:], dtype=np.float32)
    y = np.array(rec["output"][1:], dtype=np.float32)
    model, info = load_checkpoint(path)
    ok = True
    if info["spec"] != spec or info["format_version"] != 1 or info["loss"] != "xent":
        print(f"FAIL {spec}: attributes {info}")
        ok = False
    in_shape = tuple(int(s) for s in info["input_shape"])
    with torch.no_grad():
        yt = model(torch.from_numpy(x).reshape(B, *in_shape)).reshape(-1).numpy()
    e = relerr(yt, y, 1.0)
    print(f"{spec} {in_shape}: forward rel err {e:.2e}")
    if not e <= 1e-5:
        print(f"FAIL {spec}: forward differs from shardprop by {e:.3e} (> 1e-5)")
        ok = False

    opt = load_optimizer(path, model, float(rec["lr"][0]))
    g = np.array(rec["grad"][1:], dtype=np.float32)
    k = 0
    for p in model.parameters():
        n = p.numel()
        p.grad = torch.from_numpy(g[k:k + n].copy()).reshape(p.shape)
        k += n
    opt.step()
    after = np.concatenate([p.detach().reshape(-1).numpy() for p in model.parameters()])
    want = np.array(rec["params_after"][1:], dtype=np.float32)
    e = relerr(after, want, 1e-3)
    print(f"{spec}: Adam step from the checkpoint's state, rel err {e:.2e}")
    if k != g.size or not e <= 1e-6:
        print(f"FAIL {spec}: the Adam step from the loaded state differs by {e:.3e} (> 1e-6)")
        ok = False
    return ok


def main():
    if len(sys.argv) != 2:
        print(__doc__)
        return 2
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        for spec, shape in CASES:
            ok &= run_case(sys.argv[1], spec, shape, tmp)
    print("ckpt_torch:", "ok" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
