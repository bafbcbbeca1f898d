"""The benchmark workloads of issue 7, shared by run.sh (via report.py) and the peers.

Each workload: shardprop model spec, sample shape, global batch, and the layers as
(kind, args) for building the same network in PyTorch and JAX. FLOPs are counted here once
(see flops_per_sample) so that every framework is scored against the same number.
"""

WORKLOADS = {
    "mlp-wide": {
        "spec": "dense:1024,relu,dense:1024,relu,dense:10",
        "shape": (784,),
        "batch": 256,
    },
    "mlp-small": {
        "spec": "dense:128,relu,dense:10",
        "shape": (784,),
        "batch": 32,
    },
    "cnn": {
        "spec": "conv2d:32:3:pad=1,relu,maxpool:2,conv2d:64:3:pad=1,relu,maxpool:2,flatten,"
                "dense:128,relu,dense:10",
        "shape": (1, 28, 28),
        "batch": 128,
    },
}

CLASSES = 10
LR = 0.01
MOMENTUM = 0.9
SEED = 7


def layers(spec, shape):
    """[(kind, dict)] with every layer's input and output shape filled in."""
    out = []
    shape = tuple(shape)
    for item in spec.split(","):
        parts = item.split(":")
        kind, pos, kw = parts[0], [], {}
        for p in parts[1:]:
            if "=" in p:
                k, v = p.split("=")
                kw[k] = v
            else:
                pos.append(p)
        d = {"in": shape}
        if kind == "dense":
            d["units"] = int(pos[0])
            shape = (d["units"],)
        elif kind == "conv2d":
            c, h, w = shape
            oc, k = int(pos[0]), int(pos[1])
            s, pad = int(kw.get("stride", 1)), int(kw.get("pad", 0))
            d.update(oc=oc, k=k, stride=s, pad=pad)
            shape = (oc, (h + 2 * pad - k) // s + 1, (w + 2 * pad - k) // s + 1)
        elif kind in ("maxpool", "avgpool"):
            c, h, w = shape
            k = int(pos[0])
            s = int(kw.get("stride", k))
            d.update(k=k, stride=s)
            shape = (c, (h - k) // s + 1, (w - k) // s + 1)
        elif kind == "flatten":
            n = 1
            for x in shape:
                n *= x
            shape = (n,)
        d["out"] = shape
        out.append((kind, d))
    return out


def flops_per_sample(spec, shape):
    """Training FLOPs per sample, the convention of README.md:

    a dense layer in -> out does 2*in*out FLOPs forward (one multiply-add = 2 FLOPs), a conv2d
    2*oc*(c*k*k)*oh*ow; training counts 3x the forward (forward, weight gradient, input
    gradient), for every GEMM layer including the first. Bias, activations, pooling, loss and
    the optimizer are not counted (they are O(activations), not O(MACs)).
    Returns (forward, train)."""
    fwd = 0
    for kind, d in layers(spec, shape):
        if kind == "dense":
            fwd += 2 * d["in"][0] * d["units"]
        elif kind == "conv2d":
            c = d["in"][0]
            _, oh, ow = d["out"]
            fwd += 2 * d["oc"] * c * d["k"] * d["k"] * oh * ow
    return fwd, 3 * fwd


def params_count(spec, shape):
    n = 0
    for kind, d in layers(spec, shape):
        if kind == "dense":
            n += d["in"][0] * d["units"] + d["units"]
        elif kind == "conv2d":
            n += d["oc"] * d["in"][0] * d["k"] * d["k"] + d["oc"]
    return n


def gemm_shapes(name):
    """The GEMMs shardprop runs per training step of workload `name` on one rank, as
    (label, trans_a, trans_b, M, N, K) in sp_gemm's terms (src/layers/dense.c, conv2d.c); the
    first layer computes no input gradient."""
    w = WORKLOADS[name]
    B, out, first = w["batch"], [], True
    for i, (kind, d) in enumerate(layers(w["spec"], w["shape"])):
        if kind == "dense":
            n_in, n_out = d["in"][0], d["units"]
            out.append((f"{name}.{i}.dense.fwd", 0, 1, B, n_out, n_in))
            out.append((f"{name}.{i}.dense.dW", 1, 0, n_out, n_in, B))
            if not first:
                out.append((f"{name}.{i}.dense.dX", 0, 0, B, n_in, n_out))
        elif kind == "conv2d":
            ckk = d["in"][0] * d["k"] * d["k"]
            cols = B * d["out"][1] * d["out"][2]
            out.append((f"{name}.{i}.conv.fwd", 0, 0, d["oc"], cols, ckk))
            out.append((f"{name}.{i}.conv.dW", 0, 1, d["oc"], ckk, cols))
            if not first:
                out.append((f"{name}.{i}.conv.dX", 1, 0, ckk, cols, d["oc"]))
        else:
            continue
        first = False
    return out


if __name__ == "__main__":
    import sys
    if len(sys.argv) > 1 and sys.argv[1] == "--gemm-shapes":
        print(" ".join(f"{l}:{ta},{tb},{m},{n},{k}" for wname in sys.argv[2:]
                       for (l, ta, tb, m, n, k) in gemm_shapes(wname)))
        sys.exit(0)
    for name, w in WORKLOADS.items():
        f, t = flops_per_sample(w["spec"], w["shape"])
        print(f"{name}: {f / 1e6:.2f} MFLOP forward, {t / 1e6:.2f} MFLOP train per sample, "
              f"{params_count(w['spec'], w['shape'])} params")
