"""JAX peer of the shardprop benchmark: the same workload, batch and optimizer, one jit-compiled
training step (forward, backward, SGD with momentum or AdamW), written with jax.lax and plain
functions (no flax, no optax): the network comes from workloads.graph, batch norm in training
mode (statistics over the whole batch, running statistics updated as PyTorch's); the gpt
workload's causal attention through jax.nn.dot_product_attention (--attention xla) or written
out as two einsums and a masked softmax (--attention einsum).

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
    """PyTorch's default init (kaiming-uniform a=sqrt(5): U(-1/sqrt(fan_in), 1/sqrt(fan_in)));
    batch norm gamma 1, beta 0. Returns (params, state): dicts by module path, state the batch
    norms' running statistics (updated, not trained)."""
    params, state = {}, {}
    for kind, d in wl.layers(spec, shape):
        if kind in ("embedding", "pos_embedding"):  # N(0, 0.02), as GPT-2 (and torch_ref.py)
            rows = d["vocab"] if kind == "embedding" else d["positions"]
            key, k1 = jax.random.split(key)
            params[d["path"]] = {"weight": 0.02 * jax.random.normal(k1, (rows, d["dim"]),
                                                                    jnp.float32)}
            continue
        if kind == "layernorm":
            params[d["path"]] = {"weight": jnp.ones(d["normalized"], jnp.float32),
                                 "bias": jnp.zeros(d["normalized"], jnp.float32)}
            continue
        if kind == "dense" and d["tie"]:  # the embedding's weight (no bias)
            continue
        if kind == "batchnorm":
            c = d["in"][0]
            params[d["path"]] = {"weight": jnp.ones((c,), jnp.float32),
                                 "bias": jnp.zeros((c,), jnp.float32)}
            state[d["path"]] = {"running_mean": jnp.zeros((c,), jnp.float32),
                                "running_var": jnp.ones((c,), jnp.float32)}
            continue
        if kind == "dense":
            fan_in, wshape, bshape = d["features"], (d["features"], d["units"]), (d["units"],)
        elif kind == "conv2d":
            fan_in = d["in"][0] * d["k"] * d["k"]
            wshape, bshape = (d["oc"], d["in"][0], d["k"], d["k"]), (d["oc"],)
        else:
            continue
        key, k1, k2 = jax.random.split(key, 3)
        bound = 1.0 / fan_in ** 0.5
        p = {"weight": jax.random.uniform(k1, wshape, jnp.float32, -bound, bound)}
        if d["bias"]:
            p["bias"] = jax.random.uniform(k2, bshape, jnp.float32, -bound, bound)
        params[d["path"]] = p
    return params, state


def batchnorm_train(x, p, s, d):
    """Batch norm in training mode, as PyTorch's: normalized with the batch's mean and biased
    variance over (N, H, W) (or N); the running statistics move by momentum towards the mean
    and the unbiased variance."""
    axes = (0, 2, 3) if x.ndim == 4 else (0,)
    n = x.size // x.shape[1]
    bshape = (1, -1, 1, 1) if x.ndim == 4 else (1, -1)
    mean = jnp.mean(x, axis=axes)
    var = jnp.mean(jnp.square(x - mean.reshape(bshape)), axis=axes)
    y = (x - mean.reshape(bshape)) * jax.lax.rsqrt(var + d["eps"]).reshape(bshape)
    y = y * p["weight"].reshape(bshape) + p["bias"].reshape(bshape)
    m = d["momentum"]
    mean, var = jax.lax.stop_gradient(mean), jax.lax.stop_gradient(var)
    s = {"running_mean": (1 - m) * s["running_mean"] + m * mean,
         "running_var": (1 - m) * s["running_var"] + m * var * (n / (n - 1))}
    return y, s


def layernorm(x, p, d):
    """Layer norm as nn.LayerNorm: over the last axis of a sequence, or the whole sample."""
    axes = tuple(range(x.ndim - len(d["normalized"]), x.ndim))
    mean = jnp.mean(x, axis=axes, keepdims=True)
    var = jnp.mean(jnp.square(x - mean), axis=axes, keepdims=True)
    return (x - mean) * jax.lax.rsqrt(var + d["eps"]) * p["weight"] + p["bias"]


def causal_attention(qkv, heads, impl):
    """The causal attention core: qkv (B, T, 3C) -> (B, T, C), H heads side by side."""
    B, T, C3 = qkv.shape
    C = C3 // 3
    q, k, v = (t.reshape(B, T, heads, C // heads) for t in jnp.split(qkv, 3, axis=2))
    if impl == "xla":
        y = jax.nn.dot_product_attention(q, k, v, is_causal=True)
    else:
        s = jnp.einsum("bthd,bshd->bhts", q, k) / jnp.sqrt(jnp.float32(C // heads))
        s = jnp.where(jnp.tril(jnp.ones((T, T), bool)), s, -jnp.inf)
        y = jnp.einsum("bhts,bshd->bthd", jax.nn.softmax(s, axis=-1), v)
    return y.reshape(B, T, C)


def make_forward(spec, shape, attention="xla"):
    """forward(params, state, x) -> (logits, new state): the network in training mode."""
    tree = wl.graph(spec, shape)
    tied = next((d["path"] for kind, d in wl.layers(spec, shape) if kind == "embedding"), None)

    def seq(items, params, state, new, x):
        for d in items:
            kind = d["kind"]
            if kind == "residual":
                y = seq(d["f"], params, state, new, x)
                x = y + (x if d["g"] is None else seq(d["g"], params, state, new, x))
            elif kind == "repeat":
                for c in d["copies"]:
                    x = seq(c, params, state, new, x)
            elif kind == "attention":
                x = seq([d["qkv"]], params, state, new, x)
                x = causal_attention(x, d["heads"], attention)
                x = seq([d["proj"]], params, state, new, x)
            elif kind == "dense" and d["tie"]:  # x W_emb^T, the embedding's (V, D) weight
                x = x @ params[tied]["weight"].T
            elif kind == "dense":
                p = params[d["path"]]
                x = x @ p["weight"]
                if "bias" in p:
                    x = x + p["bias"]
            elif kind == "embedding":
                x = jnp.take(params[d["path"]]["weight"], x, axis=0)
            elif kind == "pos_embedding":
                x = x + params[d["path"]]["weight"][:x.shape[1]]
            elif kind == "layernorm":
                x = layernorm(x, params[d["path"]], d)
            elif kind == "gelu":
                x = jax.nn.gelu(x, approximate=d["approximate"] == "tanh")
            elif kind == "conv2d":
                p = params[d["path"]]
                x = jax.lax.conv_general_dilated(
                    x, p["weight"], (d["stride"],) * 2, [(d["pad"], d["pad"])] * 2,
                    dimension_numbers=("NCHW", "OIHW", "NCHW"))
                if "bias" in p:
                    x = x + p["bias"][None, :, None, None]
            elif kind == "batchnorm":
                x, new[d["path"]] = batchnorm_train(x, params[d["path"]], state[d["path"]], d)
            elif kind == "relu":
                x = jax.nn.relu(x)
            elif kind == "maxpool":
                k, s = d["k"], d["stride"]
                x = jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 1, k, k), (1, 1, s, s),
                                          "VALID")
            elif kind == "gap":
                x = jnp.mean(x, axis=(2, 3))
            elif kind == "flatten":
                x = x.reshape(x.shape[0], -1)
            else:
                raise SystemExit(f"jax_ref: layer {kind} not supported")
        return x

    def forward(params, state, x):
        new = {}
        x = seq(tree, params, state, new, x)
        return x, new
    return forward


def make_step(name, attention="xla"):
    """The jit-compiled training step of workload `name`: (params, opt, state, x, y) ->
    (params, opt, state, loss): forward in training mode, backward, and the workload's
    optimizer: SGD with momentum as torch.optim.SGD, or AdamW as torch.optim.AdamW. The loss is
    the mean cross-entropy over the samples (a language model's: over every position)."""
    w = wl.WORKLOADS[name]
    forward = make_forward(w["spec"], w["shape"], attention)
    kind, o = wl.optimizer(name)

    def loss_fn(params, state, x, y):
        logits, state = forward(params, state, x)
        loss = jnp.mean(jax.nn.logsumexp(logits, axis=-1) -
                        jnp.take_along_axis(logits, y[..., None], axis=-1)[..., 0])
        return loss, state

    def sgd(params, mom, grads):
        # SGD with momentum as torch.optim.SGD: v = m v + g;  p = p - lr v
        mom = jax.tree_util.tree_map(lambda v, g: o["momentum"] * v + g, mom, grads)
        params = jax.tree_util.tree_map(lambda p, v: p - o["lr"] * v, params, mom)
        return params, mom

    def adamw(params, opt, grads):
        # torch.optim.AdamW: p *= 1 - lr wd; m, v moving averages of g and g^2;
        # p -= lr (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)
        m, v, t = opt
        t = t + 1
        b1, b2, lr = o["beta1"], o["beta2"], o["lr"]
        m = jax.tree_util.tree_map(lambda m, g: b1 * m + (1 - b1) * g, m, grads)
        v = jax.tree_util.tree_map(lambda v, g: b2 * v + (1 - b2) * g * g, v, grads)
        bc1, bc2 = 1 - b1 ** t, 1 - b2 ** t
        params = jax.tree_util.tree_map(
            lambda p, m, v: p * (1 - lr * o["weight_decay"]) -
            lr * (m / bc1) / (jnp.sqrt(v / bc2) + o["eps"]), params, m, v)
        return params, (m, v, t)

    @jax.jit
    def step(params, opt, state, x, y):
        (loss, state), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, state, x, y)
        params, opt = (adamw if kind == "adamw" else sgd)(params, opt, grads)
        return params, opt, state, loss
    return step


def init_opt(name, params):
    """The optimizer's state: SGD's momentum, or AdamW's (m, v, step count)."""
    zeros = jax.tree_util.tree_map(jnp.zeros_like, params)
    if wl.optimizer(name)[0] == "adamw":
        return (zeros, jax.tree_util.tree_map(jnp.zeros_like, params), jnp.float32(0))
    return zeros


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--workload", required=True, choices=sorted(wl.WORKLOADS))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--window", type=int, required=True)
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--attention", choices=("xla", "einsum"), default="xla",
                    help="causal attention: jax.nn.dot_product_attention, or written out")
    a = ap.parse_args()
    w = wl.WORKLOADS[a.workload]
    step = make_step(a.workload, a.attention)
    key = jax.random.PRNGKey(wl.SEED)
    params, state = init(w["spec"], w["shape"], key)
    opt = init_opt(a.workload, params)
    gb, nb = w["batch"], 8
    kx, ky = jax.random.split(jax.random.PRNGKey(wl.SEED + 1))
    T = wl.tokens_per_sample(a.workload)
    if T:  # windows of T + 1 random tokens: the first T the input, the last T the targets
        tok = jax.random.randint(kx, (nb, gb, T + 1), 0, w["vocab"])
        X, Y = tok[:, :, :-1], tok[:, :, 1:]
    else:
        X = jax.random.normal(kx, (nb, gb) + tuple(w["shape"]), jnp.float32)
        Y = jax.random.randint(ky, (nb, gb), 0, wl.CLASSES)
    rates, it, loss = [], 0, None
    for rep in range(a.reps + 1):
        t0 = time.perf_counter()
        for _ in range(a.window):
            params, opt, state, loss = step(params, opt, state, X[it % nb], Y[it % nb])
            it += 1
        loss = float(jax.block_until_ready(loss))
        dt = time.perf_counter() - t0
        if rep > 0:
            rates.append(gb * a.window / dt)
    extra = {"attention": a.attention} if T else {}
    print(json.dumps({"framework": "jax", "version": jax.__version__, "workload": a.workload,
                      "optimizer": wl.optimizer(a.workload)[0], **extra,
                      "ranks": 1, "threads": a.threads, "rank": 0, "samples_per_s": rates,
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
                      "loss": loss}), flush=True)


if __name__ == "__main__":
    main()
