#!/usr/bin/python3
"""`shardprop predict` against PyTorch: a checkpoint loaded into nn.Sequential with h5py
(tests/torch/ckpt_torch.py's load_checkpoint) predicts the same as shardprop.

Usage: predict_torch.py   (the environment gives SHARDPROP_BIN, as ctest sets it)

For three trained models — a dense classifier on blobs, a conv net on uint8 images with
scale/offset attributes (the file is also predicted without y), and a regression model — it runs
`shardprop train` briefly, then `shardprop predict`, and checks, per row in input order:
  * classification: torch.softmax(model(X)) vs probs, max abs difference <= 1e-5, and
    label == argmax(probs) of torch (except rows where torch's two best probabilities tie
    within 1e-6);
  * regression: model(X) vs outputs, max |torch - c| / max(max |c|, 1) <= 1e-5.
X is read as shardprop reads it: x * scale + offset (in double), rounded to float32.

h5py and torch must be importable: when they are not, this test FAILS (CI installs python3-h5py
and python3-torch).
"""
import os
import subprocess
import sys
import tempfile

try:
    import h5py
    import numpy as np
    import torch
except ImportError as e:  # not a skip: the cross-check must run in CI
    print(f"FAIL: cannot import h5py/numpy/torch ({e}); install python3-h5py and python3-torch")
    sys.exit(1)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ckpt_torch import load_checkpoint  # noqa: E402  (the reusable loader)


def shardprop(*args):
    exe = os.environ.get("SHARDPROP_BIN")
    if not exe:
        print("FAIL: SHARDPROP_BIN is not set (run through ctest)")
        sys.exit(2)
    env = dict(os.environ, OMP_NUM_THREADS="1", ASAN_OPTIONS="detect_leaks=0")
    r = subprocess.run([exe, *args], capture_output=True, text=True, env=env)
    if r.returncode != 0:
        print(f"FAIL: shardprop {' '.join(args)}: exit {r.returncode}\n{r.stdout}{r.stderr}")
        sys.exit(1)
    return r.stdout


def read_x(path, name="X"):
    """X as shardprop sees it: x * scale + offset in double, then float32."""
    with h5py.File(path, "r") as f:
        d = f[name]
        x = d[()].astype(np.float64)
        scale = float(d.attrs.get("scale", 1.0))
        offset = float(d.attrs.get("offset", 0.0))
    return (x * scale + offset).astype(np.float32)


def torch_outputs(ckpt, data):
    model, info = load_checkpoint(ckpt)
    x = torch.from_numpy(read_x(data))
    with torch.no_grad():
        z = model(x)
    return z, info


def check_classifier(ckpt, data, pred, what):
    z, info = torch_outputs(ckpt, data)
    assert info["loss"] == "xent", info
    pt = torch.softmax(z, dim=1).numpy()
    with h5py.File(pred, "r") as f:
        probs = f["probs"][()]
        label = f["label"][()]
    ok = True
    if probs.shape != pt.shape or label.shape != (pt.shape[0],):
        print(f"FAIL {what}: shapes probs {probs.shape} label {label.shape}, torch {pt.shape}")
        return False
    err = float(np.max(np.abs(probs.astype(np.float64) - pt)))
    top2 = np.sort(pt, axis=1)[:, -2:]
    clear = (top2[:, 1] - top2[:, 0]) > 1e-6
    wrong = int(np.sum((label != np.argmax(pt, axis=1)) & clear))
    print(f"{what}: {pt.shape[0]} rows x {pt.shape[1]} classes, max |probs - torch| {err:.2e}, "
          f"{wrong} labels differ from torch's argmax")
    if not err <= 1e-5:
        print(f"FAIL {what}: probabilities differ from torch by {err:.3e} (> 1e-5)")
        ok = False
    if wrong:
        print(f"FAIL {what}: {wrong} labels differ from torch's argmax")
        ok = False
    return ok


def check_regression(ckpt, data, pred, what):
    z, info = torch_outputs(ckpt, data)
    assert info["loss"] == "mse", info
    zt = z.numpy()
    with h5py.File(pred, "r") as f:
        out = f["outputs"][()]
    if out.shape != zt.shape:
        print(f"FAIL {what}: outputs {out.shape}, torch {zt.shape}")
        return False
    err = float(np.max(np.abs(out.astype(np.float64) - zt)) / max(float(np.max(np.abs(out))), 1))
    print(f"{what}: outputs {out.shape}, rel err vs torch {err:.2e}")
    if not err <= 1e-5:
        print(f"FAIL {what}: outputs differ from torch by {err:.3e} (> 1e-5)")
        return False
    return True


def write_images(path, n, seed, labeled=True):
    """uint8 images (N, 1, 8, 8) with scale 1/255 and offset -0.5; the label is the quadrant
    holding a bright 3x3 patch (4 classes)."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 60, size=(n, 1, 8, 8), dtype=np.uint8)
    y = rng.integers(0, 4, size=n).astype(np.int32)
    for i in range(n):
        r0, c0 = (y[i] // 2) * 4 + rng.integers(0, 2), (y[i] % 2) * 4 + rng.integers(0, 2)
        x[i, 0, r0:r0 + 3, c0:c0 + 3] = 200 + rng.integers(0, 55)
    with h5py.File(path, "w") as f:
        d = f.create_dataset("X", data=x, chunks=(16, 1, 8, 8), compression="gzip")
        d.attrs["scale"] = np.float64(1.0 / 255.0)
        d.attrs["offset"] = np.float64(-0.5)
        if labeled:
            f.create_dataset("y", data=y).attrs["classes"] = np.int64(4)


def main():
    ok = True
    with tempfile.TemporaryDirectory() as t:
        p = lambda name: os.path.join(t, name)  # noqa: E731
        # 1. a dense classifier on blobs
        shardprop("synth", "--kind", "blobs", "--n", "600", "--features", "7", "--classes", "3",
                  "--seed", "5", "--out", p("blobs.h5"))
        shardprop("train", "--data", p("blobs.h5"), "--model", "dense:12,gelu,dense:3",
                  "--epochs", "2", "--batch", "32", "--optimizer", "adam", "--lr", "0.01",
                  "--quiet", "--out", p("blobs_model.h5"))
        shardprop("predict", "--checkpoint", p("blobs_model.h5"), "--data", p("blobs.h5"),
                  "--out", p("blobs_pred.h5"), "--batch", "50")
        ok &= check_classifier(p("blobs_model.h5"), p("blobs.h5"), p("blobs_pred.h5"), "dense")
        # 2. a conv net on uint8 images with scale/offset; the same images without y
        write_images(p("img.h5"), 300, 1)
        write_images(p("img_x.h5"), 300, 1, labeled=False)
        shardprop("train", "--data", p("img.h5"), "--model",
                  "conv2d:4:3:pad=1,relu,maxpool:2,flatten,dense:4", "--epochs", "2",
                  "--batch", "32", "--optimizer", "adam", "--lr", "0.01", "--quiet", "--out",
                  p("img_model.h5"))
        for data in ("img.h5", "img_x.h5"):
            shardprop("predict", "--checkpoint", p("img_model.h5"), "--data", p(data), "--out",
                      p("img_pred.h5"))
            ok &= check_classifier(p("img_model.h5"), p(data), p("img_pred.h5"), f"conv {data}")
        # 3. regression
        shardprop("synth", "--kind", "regression", "--n", "300", "--features", "4", "--outputs",
                  "2", "--seed", "6", "--out", p("reg.h5"))
        shardprop("train", "--data", p("reg.h5"), "--model", "dense:10,tanh,dense:2",
                  "--epochs", "2", "--batch", "20", "--quiet", "--out", p("reg_model.h5"))
        shardprop("predict", "--checkpoint", p("reg_model.h5"), "--data", p("reg.h5"), "--out",
                  p("reg_pred.h5"))
        ok &= check_regression(p("reg_model.h5"), p("reg.h5"), p("reg_pred.h5"), "regression")
    print("predict_torch:", "ok" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
