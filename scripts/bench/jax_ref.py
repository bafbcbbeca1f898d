"""JAX peer of the shardprop benchmark: the same workload, batch and optimizer, one jit-compiled
training step (forward, backward, SGD with momentum).

    python jax_ref.py --workload cnn --threads 1 --window 12 --reps 7

Threads: XLA:CPU has no thread-count knob of its own; run.sh pins the process to T cores
(taskset) and, for T = 1, sets XLA_FLAGS=--xla_cpu_multi_thread_eigen=false
intra_op_parallelism_threads=1. Data: synthetic arrays made once (no input pipeline). Steady
state as in torch_ref.py: one warm-up window (which includes compilation), then --reps windows.
"""
import argparse
import json
import os
import resource
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import workloads as wl  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402


def init(spec, shape, key):
    """PyTorch's default init (kaiming-uniform a=sqrt(5): U(-1/sqrt(fan_in), 1/sqrt(fan_in)))."""
    params = []
    for kind, d in wl.layers(spec, shape):
        if kind == "dense":
            fan_in, wshape, bshape = d["in"][0], (d["in"][0], d["units"]), (d["units"],)
        elif kind == "conv2d":
            fan_in = d["in"][0] * d["k"] * d["k"]
            wshape, bshape = (d["oc"], d["in"][0], d["k"], d["k"]), (d["oc"],)
        else:
            continue
        key, k1, k2 = jax.random.split(key, 3)
        bound = 1.0 / fan_in ** 0.5
        params.append((jax.random.uniform(k1, wshape, jnp.float32, -bound, bound),
                       jax.random.uniform(k2, bshape, jnp.float32, -bound, bound)))
    return params


def make_forward(spec, shape):
    ls = wl.layers(spec, shape)

    def forward(params, x):
        p = 0
        for kind, d in ls:
            if kind == "dense":
                w, b = params[p]
                p += 1
                x = x @ w + b
            elif kind == "conv2d":
                w, b = params[p]
                p += 1
                x = jax.lax.conv_general_dilated(
                    x, w, (d["stride"],) * 2, [(d["pad"], d["pad"])] * 2,
                    dimension_numbers=("NCHW", "OIHW", "NCHW")) + b[None, :, None, None]
            elif kind == "relu":
                x = jax.nn.relu(x)
            elif kind == "maxpool":
                k, s = d["k"], d["stride"]
                x = jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 1, k, k), (1, 1, s, s),
                                          "VALID")
            elif kind == "flatten":
                x = x.reshape(x.shape[0], -1)
            else:
                raise SystemExit(f"jax_ref: layer {kind} not supported")
        return x
    return forward


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--workload", required=True, choices=sorted(wl.WORKLOADS))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--window", type=int, required=True)
    ap.add_argument("--reps", type=int, default=7)
    a = ap.parse_args()
    w = wl.WORKLOADS[a.workload]
    forward = make_forward(w["spec"], w["shape"])

    def loss_fn(params, x, y):
        logits = forward(params, x)
        return jnp.mean(jax.nn.logsumexp(logits, axis=1) -
                        jnp.take_along_axis(logits, y[:, None], axis=1)[:, 0])

    @jax.jit
    def step(params, mom, x, y):
        loss, grads = jax.value_and_grad(loss_fn)(params, x, y)
        # SGD with momentum as torch.optim.SGD: v = m v + g;  p = p - lr v
        mom = jax.tree_util.tree_map(lambda v, g: wl.MOMENTUM * v + g, mom, grads)
        params = jax.tree_util.tree_map(lambda p, v: p - wl.LR * v, params, mom)
        return params, mom, loss

    key = jax.random.PRNGKey(wl.SEED)
    params = init(w["spec"], w["shape"], key)
    mom = jax.tree_util.tree_map(jnp.zeros_like, params)
    gb, nb = w["batch"], 8
    kx, ky = jax.random.split(jax.random.PRNGKey(wl.SEED + 1))
    X = jax.random.normal(kx, (nb, gb) + tuple(w["shape"]), jnp.float32)
    Y = jax.random.randint(ky, (nb, gb), 0, wl.CLASSES)
    rates, it, loss = [], 0, None
    for rep in range(a.reps + 1):
        t0 = time.perf_counter()
        for _ in range(a.window):
            params, mom, loss = step(params, mom, X[it % nb], Y[it % nb])
            it += 1
        loss = float(jax.block_until_ready(loss))
        dt = time.perf_counter() - t0
        if rep > 0:
            rates.append(gb * a.window / dt)
    print(json.dumps({"framework": "jax", "version": jax.__version__, "workload": a.workload,
                      "ranks": 1, "threads": a.threads, "rank": 0, "samples_per_s": rates,
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
                      "loss": loss}), flush=True)


if __name__ == "__main__":
    main()
