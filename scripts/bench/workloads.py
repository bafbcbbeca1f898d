"""The benchmark workloads of issues 7 and 20, shared by run.sh (via report.py) and the peers.

Each workload: shardprop model spec, sample shape, global batch (and for a language model the
context length T and vocabulary: a sample is a window of T tokens). graph() reads the spec into a
tree (residual blocks included) with every layer's shapes and PyTorch module path, from which
torch_ref.py and jax_ref.py build the same network; FLOPs are counted here once (see
flops_per_sample) so that every framework is scored against the same number. Plain Python (no
numpy, no torch): run.sh and report.py run it with any python3.
"""
import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def model_file(path):
    """A model file of the repository (data/configs/*.model) as one line, '#' comments and
    blanks dropped: the graph `--model @FILE` reads, as a spec every tool here can pass on."""
    with open(os.path.join(ROOT, path)) as f:
        return re.sub(r"\s+", "", re.sub(r"#[^\n]*", "", f.read()))


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
    # a stem, one block at 28x28, two stages with 1x1-conv + batch-norm projection shortcuts;
    # batch norm in training mode, statistics over the global batch (shardprop's default)
    "resnet": {
        "spec": model_file("data/configs/fashion_resnet.model"),
        "model_file": "data/configs/fashion_resnet.model",
        "shape": (1, 28, 28),
        "batch": 128,
    },
    # issue 20: a GPT-2-style decoder on byte tokens (width 128, 4 layers of 4 heads, T = 128,
    # tied output), trained with AdamW as data/configs/fortunes_gpt.conf (without its schedule
    # and clipping) on that config's global batch of 32 windows (4096 tokens per step)
    "gpt": {
        "spec": model_file("data/configs/fortunes_gpt.model"),
        "model_file": "data/configs/fortunes_gpt.model",
        "shape": (128,),
        "batch": 32,
        "seq_len": 128,
        "vocab": 256,
        "optimizer": "adamw",
    },
}

CLASSES = 10
LR = 0.01
MOMENTUM = 0.9
SEED = 7
# AdamW (decoupled weight decay on every parameter, as torch.optim.AdamW over model.parameters()
# and shardprop's adamw), constant rate, no gradient clipping
ADAMW = {"lr": 0.002, "beta1": 0.9, "beta2": 0.95, "eps": 1e-8, "weight_decay": 0.1}


def optimizer(name):
    """The workload's optimizer: ("sgd", {"lr", "momentum"}) or ("adamw", ADAMW)."""
    kind = WORKLOADS[name].get("optimizer", "sgd")
    if kind == "adamw":
        return kind, dict(ADAMW)
    return kind, {"lr": LR, "momentum": MOMENTUM}


def shardprop_args(name):
    """The `shardprop train` flags of workload `name` beyond data, model, batch and layout: its
    optimizer, and --seq-len for token data."""
    kind, o = optimizer(name)
    if kind == "adamw":
        args = ["--optimizer", "adamw", "--lr", repr(o["lr"]), "--beta1", repr(o["beta1"]),
                "--beta2", repr(o["beta2"]), "--eps", repr(o["eps"]),
                "--weight-decay", repr(o["weight_decay"])]
    else:
        args = ["--optimizer", "sgd", "--lr", repr(o["lr"]), "--momentum", repr(o["momentum"])]
    if "seq_len" in WORKLOADS[name]:
        args += ["--seq-len", str(WORKLOADS[name]["seq_len"])]
    return args


def tokens_per_sample(name):
    """Tokens a sample trains on (T of a language model), or None for the other workloads."""
    return WORKLOADS[name].get("seq_len")


# ---- the spec language (the subset of src/model/spec.h the peers build) --------------------------
# item := layer | residual(seq [| seq]) | repeat:N(seq);  layer := NAME {:ARG}, positional
# arguments first, then key=value. Paths as shardprop's and tests/torch/spgraph.py's: top-level
# items 0, 1, ...; a residual at i holds i.f.K and i.g.K, a repeat at i holds i.R.K.

_POSITIONAL = {  # kind -> its positional arguments, in order
    "dense": ("units",), "conv2d": ("out_channels", "kernel", "stride", "pad"),
    "maxpool": ("kernel", "stride"), "avgpool": ("kernel", "stride"),
    "leaky_relu": ("slope",), "dropout": ("p",), "gelu": ("approximate",),
    "embedding": ("vocab", "dim"),
}
_KEYWORD = {"dense": ("bias", "tie"), "conv2d": ("bias",), "batchnorm": ("eps", "momentum"),
            "layernorm": ("eps",), "attention": ("heads", "bias")}
_PLAIN = ("flatten", "relu", "tanh", "sigmoid", "gap", "pos_embedding")


def _tokens(spec):
    spec = re.sub(r"#[^\n]*", "", spec)
    return re.findall(r"[,:()|=]|[^\s,:()|=]+", spec) + [None]


def parse(spec):
    """The spec as a tree: [("layer", kind, {arg: text}) | ("residual", f, g or None) |
    ("repeat", n, body)]. ValueError on what this subset does not read."""
    toks, i = _tokens(spec), 0

    def take(want=None):
        nonlocal i
        t = toks[i]
        if want is not None and t != want:
            raise ValueError(f"workloads: model spec: expected '{want}', got '{t}' in {spec!r}")
        i += 1
        return t

    def seq():
        items = [item()]
        while toks[i] == ",":
            take(",")
            items.append(item())
        return items

    def item():
        name = take()
        if name == "residual" and toks[i] == "(":
            take("(")
            f, g = seq(), None
            if toks[i] == "|":
                take("|")
                g = seq()
            take(")")
            return ("residual", f, g)
        if name == "repeat" and toks[i] == ":":
            take(":")
            n = int(take())
            take("(")
            body = seq()
            take(")")
            return ("repeat", n, body)
        if name not in _POSITIONAL and name not in _KEYWORD and name not in _PLAIN:
            raise ValueError(f"workloads: layer '{name}' is not supported by the benchmark "
                             f"peers (spec {spec!r})")
        args, npos = {}, 0
        while toks[i] == ":":
            take(":")
            a = take()
            if name == "dense" and a == "tie" and toks[i] != "=":
                args["tie"] = "1"  # the flag alone: dense:V:tie
                continue
            if toks[i] == "=":
                take("=")
                if a not in _POSITIONAL.get(name, ()) + _KEYWORD.get(name, ()):
                    raise ValueError(f"workloads: {name}: unknown argument '{a}'")
                args[a] = take()
            else:
                if npos >= len(_POSITIONAL.get(name, ())):
                    raise ValueError(f"workloads: {name}: too many arguments in {spec!r}")
                args[_POSITIONAL[name][npos]] = a
                npos += 1
        return ("layer", name, args)

    tree = seq()
    if toks[i] is not None:
        raise ValueError(f"workloads: model spec: unexpected '{toks[i]}' in {spec!r}")
    return tree


def _layer(kind, a, shape, path, reads_input):
    """One layer's dict: its arguments (defaults filled in), in/out shapes, path."""
    d = {"kind": kind, "in": shape, "path": path, "reads_input": reads_input}
    if kind == "dense":  # on (F), or on every position of a sequence (T, D)
        tie = a.get("tie", "0") == "1"
        d.update(units=int(a["units"]), tie=tie, bias=not tie and a.get("bias", "1") == "1",
                 features=shape[-1], positions=shape[0] if len(shape) == 2 else 1)
        shape = shape[:-1] + (d["units"],)
    elif kind == "embedding":  # (T) token ids -> (T, DIM)
        d.update(vocab=int(a["vocab"]), dim=int(a["dim"]))
        shape = (shape[0], d["dim"])
    elif kind == "pos_embedding":
        d.update(positions=shape[0], dim=shape[1])
    elif kind == "attention_core":  # (T, 3C) -> (T, C)
        d.update(heads=int(a["heads"]), positions=shape[0], width=shape[1] // 3)
        shape = (shape[0], shape[1] // 3)
    elif kind == "gelu":
        d.update(approximate=a.get("approximate", "none"))
    elif kind == "conv2d":
        c, h, w = shape
        oc, k = int(a["out_channels"]), int(a["kernel"])
        s, pad = int(a.get("stride", 1)), int(a.get("pad", 0))
        d.update(oc=oc, k=k, stride=s, pad=pad, bias=a.get("bias", "1") == "1")
        shape = (oc, (h + 2 * pad - k) // s + 1, (w + 2 * pad - k) // s + 1)
    elif kind in ("maxpool", "avgpool"):
        c, h, w = shape
        k = int(a["kernel"])
        s = int(a.get("stride", k))
        d.update(k=k, stride=s)
        shape = (c, (h - k) // s + 1, (w - k) // s + 1)
    elif kind == "flatten":
        n = 1
        for x in shape:
            n *= x
        shape = (n,)
    elif kind == "gap":
        shape = (shape[0],)
    elif kind in ("batchnorm", "layernorm"):
        d.update(eps=float(a.get("eps", 1e-5)), momentum=float(a.get("momentum", 0.1)))
        if kind == "layernorm":  # over each position's D features, or over the whole sample
            d["normalized"] = shape[-1:] if len(shape) == 2 else shape
    elif kind == "leaky_relu":
        d.update(slope=float(a.get("slope", 0.01)))
    elif kind == "dropout":
        d.update(p=float(a["p"]))
    d["out"] = shape
    return d


def graph(spec, shape):
    """The spec as a tree of dicts, every item with "kind", "in", "out" (sample shapes) and
    "path": a layer also with its arguments and "reads_input" (fed by the model's input: no
    input gradient); {"kind": "residual", "f": [...], "g": [...] or None} is f(x) + g(x)
    (g None: + x); {"kind": "repeat", "copies": [[...], ...]} the copies in a row;
    {"kind": "attention", "qkv": dense, "core": attention_core, "proj": dense} GPT-2's attention
    module at path P (P.qkv, the causal core at P, P.proj: shardprop's nodes)."""
    def seq(items, shape, prefix, is_input):
        out = []
        for i, it in enumerate(items):
            d, shape = node(it, shape, f"{prefix}{i}", is_input)
            out.append(d)
            is_input = False
        return out, shape

    def node(it, shape, path, is_input):
        if it[0] == "residual":
            f, fs = seq(it[1], shape, f"{path}.f.", is_input)
            g, gs = (None, shape) if it[2] is None else seq(it[2], shape, f"{path}.g.", is_input)
            if fs != gs:
                raise ValueError(f"workloads: residual at {path}: f(x) {fs} but g(x) {gs}")
            return {"kind": "residual", "f": f, "g": g, "in": shape, "out": fs,
                    "path": path}, fs
        if it[0] == "repeat":
            copies, s = [], shape
            for k in range(it[1]):
                c, s = seq(it[2], s, f"{path}.{k}.", is_input and k == 0)
                copies.append(c)
                for lay in walk(c) if k else ():
                    lay["repeat_copy"] = k  # the same shapes as copy 0's
            return {"kind": "repeat", "copies": copies, "in": shape, "out": s,
                    "path": path}, s
        if it[1] == "attention":
            a = it[2]
            bias = a.get("bias", "1")
            qkv = _layer("dense", {"units": str(3 * shape[-1]), "bias": bias}, shape,
                         f"{path}.qkv", is_input)
            core = _layer("attention_core", {"heads": a["heads"]}, qkv["out"], path, False)
            proj = _layer("dense", {"units": str(shape[-1]), "bias": bias}, core["out"],
                          f"{path}.proj", False)
            return {"kind": "attention", "qkv": qkv, "core": core, "proj": proj,
                    "heads": core["heads"], "bias": bias == "1", "in": shape,
                    "out": proj["out"], "path": path}, proj["out"]
        d = _layer(it[1], it[2], shape, path, is_input)
        return d, d["out"]

    return seq(parse(spec), tuple(shape), "", True)[0]


def walk(tree):
    """The layers of a graph() tree in execution order (f before g, as shardprop)."""
    for d in tree:
        if d["kind"] == "residual":
            yield from walk(d["f"])
            if d["g"] is not None:
                yield from walk(d["g"])
        elif d["kind"] == "repeat":
            for c in d["copies"]:
                yield from walk(c)
        elif d["kind"] == "attention":
            yield d["qkv"]
            yield d["core"]
            yield d["proj"]
        else:
            yield d


def layers(spec, shape):
    """[(kind, dict)] of every layer in execution order, with its input and output shape."""
    return [(d["kind"], d) for d in walk(graph(spec, shape))]


def flops_per_sample(spec, shape):
    """Training FLOPs per sample, the convention of README.md:

    a dense layer in -> out does 2*in*out FLOPs forward (one multiply-add = 2 FLOPs) at every
    position (T of a sequence; a tied output projection counts as any dense), a conv2d
    2*oc*(c*k*k)*oh*ow, the causal attention core 4*C*(T+1)/2 per position (q k^T and P v over
    the (T+1)/2 keys a query sees on average); training counts 3x the forward (forward, weight
    gradient, input gradient), for every GEMM layer including the first. Bias, activations,
    pooling, batch and layer norm, embeddings, the residual adds, global average pooling, loss
    and the optimizer are not counted (they are O(activations), not O(MACs)).
    Returns (forward, train)."""
    fwd = 0
    for kind, d in layers(spec, shape):
        if kind == "dense":
            fwd += 2 * d["features"] * d["units"] * d["positions"]
        elif kind == "attention_core":
            T = d["positions"]
            fwd += T * 4 * d["width"] * (T + 1) // 2
        elif kind == "conv2d":
            c = d["in"][0]
            _, oh, ow = d["out"]
            fwd += 2 * d["oc"] * c * d["k"] * d["k"] * oh * ow
    return fwd, 3 * fwd


def params_count(spec, shape):
    """Trained parameters (batch and layer norm's gamma and beta included, batch norm's running
    statistics not; a tied projection's weight is the embedding's, counted once)."""
    n = 0
    for kind, d in layers(spec, shape):
        if kind == "dense":
            n += (0 if d["tie"] else d["features"] * d["units"]) + (d["units"] if d["bias"] else 0)
        elif kind == "embedding":
            n += d["vocab"] * d["dim"]
        elif kind == "pos_embedding":
            n += d["positions"] * d["dim"]
        elif kind == "layernorm":
            f = 1
            for x in d["normalized"]:
                f *= x
            n += 2 * f
        elif kind == "conv2d":
            n += d["oc"] * d["in"][0] * d["k"] * d["k"] + (d["oc"] if d["bias"] else 0)
        elif kind == "batchnorm":
            n += 2 * d["in"][0]
    return n


def gemm_shapes(name):
    """The GEMMs shardprop runs per training step of workload `name` on one rank, as
    (label, trans_a, trans_b, M, N, K) in sp_gemm's terms (src/layers/dense.c, conv2d.c),
    labelled by the layer's module path; a layer fed by the model's input computes no input
    gradient. (A conv's forward and input gradient are counted as one GEMM over the batch's
    columns; shardprop runs them per sample, B GEMMs of N = oh*ow.) A dense on a sequence is one
    GEMM over the batch's B*T positions; the attention core's per-(sample, head) products are
    not listed, nor the GEMMs of a repeat's copies after the first (the same shapes)."""
    w = WORKLOADS[name]
    B, out = w["batch"], []
    for kind, d in layers(w["spec"], w["shape"]):
        i = d["path"]
        if d.get("repeat_copy"):
            continue
        if kind == "dense":
            n_in, n_out, B = d["features"], d["units"], w["batch"] * d["positions"]
            out.append((f"{name}.{i}.dense.fwd", 0, 1, B, n_out, n_in))
            out.append((f"{name}.{i}.dense.dW", 1, 0, n_out, n_in, B))
            if not d["reads_input"]:
                out.append((f"{name}.{i}.dense.dX", 0, 0, B, n_in, n_out))
        elif kind == "conv2d":
            ckk = d["in"][0] * d["k"] * d["k"]
            cols = B * d["out"][1] * d["out"][2]
            out.append((f"{name}.{i}.conv.fwd", 0, 0, d["oc"], cols, ckk))
            out.append((f"{name}.{i}.conv.dW", 0, 1, d["oc"], ckk, cols))
            if not d["reads_input"]:
                out.append((f"{name}.{i}.conv.dX", 1, 0, ckk, cols, d["oc"]))
    return out


if __name__ == "__main__":
    import sys
    if len(sys.argv) > 1 and sys.argv[1] == "--gemm-shapes":
        print(" ".join(f"{l}:{ta},{tb},{m},{n},{k}" for wname in sys.argv[2:]
                       for (l, ta, tb, m, n, k) in gemm_shapes(wname)))
        sys.exit(0)
    if len(sys.argv) > 2 and sys.argv[1] == "--shardprop-args":
        print(" ".join(shardprop_args(sys.argv[2])))
        sys.exit(0)
    for name, w in WORKLOADS.items():
        f, t = flops_per_sample(w["spec"], w["shape"])
        tok = tokens_per_sample(name)
        per_tok = f", {t / tok / 1e6:.3f} MFLOP train per token" if tok else ""
        print(f"{name}: {f / 1e6:.2f} MFLOP forward, {t / 1e6:.2f} MFLOP train per sample"
              f"{per_tok}, {params_count(w['spec'], w['shape'])} params")
