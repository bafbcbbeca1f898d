"""PyTorch peer of the shardprop benchmark: the same workload, batch and optimizer.

    python torch_ref.py --workload cnn --threads 1 --window 12 --reps 7 [--world 2 --rank R]

One process: torch.set_num_threads(T). With --world P (DDP, gloo, localhost) each of the P
processes trains its slice (global batch / P) and rank 0 reports the global throughput.
Batch norm runs in training mode; under DDP its statistics are each rank's own (no
SyncBatchNorm on CPU: see main). Data: synthetic tensors of the workload's shape, made once in
memory (the loop indexes batches out of them; no DataLoader). Steady state: one warm-up
window, then --reps windows of --window steps each; prints one JSON line with the samples/s of
every window and the peak RSS.
"""
import argparse
import json
import os
import resource
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import workloads as wl  # noqa: E402

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402


class Residual(nn.Module):
    """residual(f | g): f(x) + g(x), or f(x) + x without g (children f, g: the state_dict keys
    of shardprop's checkpoints, as tests/torch/spgraph.py builds them)."""

    def __init__(self, f, g):
        super().__init__()
        self.f = f
        self.g = g

    def forward(self, x):
        return self.f(x) + (x if self.g is None else self.g(x))


class GlobalAvgPool(nn.Module):
    """gap: (B, C, H, W) -> (B, C), the mean over H and W."""

    def forward(self, x):
        return x.mean(dim=(2, 3))


class PosEmbedding(nn.Module):
    """pos_embedding: x + P[t] at every position t (GPT-2's wpe), P (T, D)."""

    def __init__(self, positions, dim):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(positions, dim))
        nn.init.normal_(self.weight, std=0.02)

    def forward(self, x):
        return x + self.weight[:x.shape[1]]


class CausalSelfAttention(nn.Module):
    """attention:heads=H: GPT-2's attention, qkv (C -> 3C), causal scaled dot-product
    attention of H heads through F.scaled_dot_product_attention (PyTorch's fused CPU kernel),
    proj (C -> C); children qkv and proj, shardprop's P.qkv and P.proj."""

    def __init__(self, width, heads, bias):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(width, 3 * width, bias=bias)
        self.proj = nn.Linear(width, width, bias=bias)

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.qkv(x).split(C, dim=2)
        q, k, v = (t.view(B, T, self.heads, C // self.heads).transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.proj(y.transpose(1, 2).reshape(B, T, C))


def build_tree(tree):
    mods = []
    for d in tree:
        kind = d["kind"]
        if kind == "residual":
            mods.append(Residual(build_tree(d["f"]),
                                 None if d["g"] is None else build_tree(d["g"])))
        elif kind == "repeat":
            mods.append(nn.Sequential(*[build_tree(c) for c in d["copies"]]))
        elif kind == "attention":
            mods.append(CausalSelfAttention(d["in"][-1], d["heads"], d["bias"]))
        elif kind == "dense":
            lin = nn.Linear(d["features"], d["units"], bias=d["bias"])
            lin.sp_tie = d["tie"]  # build() gives it the embedding's weight
            mods.append(lin)
        elif kind == "embedding":
            emb = nn.Embedding(d["vocab"], d["dim"])
            nn.init.normal_(emb.weight, std=0.02)
            mods.append(emb)
        elif kind == "pos_embedding":
            mods.append(PosEmbedding(d["positions"], d["dim"]))
        elif kind == "layernorm":
            mods.append(nn.LayerNorm(d["normalized"], eps=d["eps"]))
        elif kind == "gelu":
            mods.append(nn.GELU(approximate=d["approximate"]))
        elif kind == "conv2d":
            mods.append(nn.Conv2d(d["in"][0], d["oc"], d["k"], d["stride"], d["pad"],
                                  bias=d["bias"]))
        elif kind == "maxpool":
            mods.append(nn.MaxPool2d(d["k"], d["stride"]))
        elif kind == "relu":
            mods.append(nn.ReLU())
        elif kind == "flatten":
            mods.append(nn.Flatten())
        elif kind == "gap":
            mods.append(GlobalAvgPool())
        elif kind == "batchnorm":
            cls = nn.BatchNorm1d if len(d["in"]) == 1 else nn.BatchNorm2d
            mods.append(cls(d["in"][0], eps=d["eps"], momentum=d["momentum"]))
        else:
            raise SystemExit(f"torch_ref: layer {kind} not supported")
    return nn.Sequential(*mods)


def build(spec, shape):
    """The workload's network, in training mode; its state_dict keys are shardprop's tensor
    names (0.weight, 3.f.1.running_mean, ...). A tied dense (dense:V:tie) shares the weight
    of the first embedding (GPT-2's lm head)."""
    model = build_tree(wl.graph(spec, shape))
    emb = next((m for m in model.modules() if isinstance(m, nn.Embedding)), None)
    for m in model.modules():
        if getattr(m, "sp_tie", False):
            m.weight = emb.weight
    return model


def gemm_main(argv):
    """--gemm --threads "1 2" LABEL:TA,TB,M,N,K ...: torch.mm GFLOP/s (median of 7) per shape,
    with the same transposes (a transposed view, as nn.Linear uses)."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--gemm", action="store_true")
    ap.add_argument("--threads", default="1")
    ap.add_argument("shapes", nargs="*")
    a = ap.parse_args(argv)
    for sh in a.shapes:
        label, dims = sh.split(":")
        ta, tb, M, N, K = map(int, dims.split(","))
        A = torch.randn((K, M) if ta else (M, K))
        B = torch.randn((N, K) if tb else (K, N))
        opA, opB = (A.t() if ta else A), (B.t() if tb else B)
        for t in map(int, a.threads.split()):
            torch.set_num_threads(t)
            C = torch.mm(opA, opB)
            g = []
            for _ in range(7):
                t0 = time.perf_counter()
                torch.mm(opA, opB, out=C)
                g.append(2.0 * M * N * K / (time.perf_counter() - t0) * 1e-9)
            g.sort()
            print(json.dumps({"framework": "pytorch", "label": label, "ta": ta, "tb": tb, "M": M,
                              "N": N, "K": K, "threads": t, "gflops": round(g[3], 2)}),
                  flush=True)


def main():
    if "--gemm" in sys.argv[1:]:
        return gemm_main(sys.argv[1:])
    ap = argparse.ArgumentParser()
    ap.add_argument("--workload", required=True, choices=sorted(wl.WORKLOADS))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--window", type=int, required=True, help="steps per timed window")
    ap.add_argument("--reps", type=int, default=7, help="timed windows after one warm-up window")
    ap.add_argument("--world", type=int, default=1)
    ap.add_argument("--rank", type=int, default=0)
    ap.add_argument("--no-fused", dest="fused", action="store_false",
                    help="AdamW: the for-loop implementation instead of the fused kernel")
    a = ap.parse_args()
    w = wl.WORKLOADS[a.workload]
    torch.set_num_threads(a.threads)
    torch.set_num_interop_threads(1)
    torch.manual_seed(wl.SEED)
    if a.world > 1:
        import torch.distributed as dist
        dist.init_process_group("gloo", rank=a.rank, world_size=a.world)
    model = build(w["spec"], w["shape"])
    bn = any(k == "batchnorm" for k, _ in wl.layers(w["spec"], w["shape"]))
    if a.world > 1:
        # Batch norm: each rank's statistics over its own samples, rank 0's running statistics
        # broadcast before every forward (DDP's broadcast_buffers). nn.SyncBatchNorm (statistics
        # over the global batch, as shardprop's default) is refused by DDP on CPU modules
        # ("SyncBatchNorm layers only work with GPU modules", PyTorch 2.15).
        model = nn.parallel.DistributedDataParallel(model)
    kind, o = wl.optimizer(a.workload)
    if kind == "adamw":
        # fused: PyTorch's one-kernel AdamW for CPU tensors, its fastest CPU path
        opt = torch.optim.AdamW(model.parameters(), lr=o["lr"], betas=(o["beta1"], o["beta2"]),
                                eps=o["eps"], weight_decay=o["weight_decay"], fused=a.fused)
    else:
        opt = torch.optim.SGD(model.parameters(), lr=o["lr"], momentum=o["momentum"])
    loss_fn = nn.CrossEntropyLoss()
    gb = w["batch"]
    lb = gb // a.world + (1 if a.rank < gb % a.world else 0)
    nb = 8  # distinct batches cycled through
    g = torch.Generator().manual_seed(wl.SEED + a.rank)
    T = wl.tokens_per_sample(a.workload)
    if T:  # windows of T + 1 random tokens: the first T the input, the last T the targets
        tok = torch.randint(0, w["vocab"], (nb * lb, T + 1), generator=g)
        X, Y = tok[:, :-1].contiguous(), tok[:, 1:].contiguous()
    else:
        X = torch.randn((nb * lb,) + tuple(w["shape"]), generator=g)
        Y = torch.randint(0, wl.CLASSES, (nb * lb,), generator=g)

    def step(i):
        j = (i % nb) * lb
        opt.zero_grad(set_to_none=False)
        out = model(X[j:j + lb])
        # a language model: the mean over every position of every sample
        loss = loss_fn(out.reshape(-1, out.shape[-1]), Y[j:j + lb].reshape(-1))
        loss.backward()
        opt.step()
        return loss

    rates = []
    it = 0
    for rep in range(a.reps + 1):
        if a.world > 1:
            torch.distributed.barrier()
        t0 = time.perf_counter()
        for _ in range(a.window):
            loss = step(it)
            it += 1
        loss = float(loss.detach())
        if a.world > 1:
            torch.distributed.barrier()
        dt = time.perf_counter() - t0
        if rep > 0:  # the first window is the warm-up
            rates.append(gb * a.window / dt)
    out = {"framework": "pytorch", "version": torch.__version__, "workload": a.workload,
           "optimizer": kind,
           "ranks": a.world, "threads": a.threads, "rank": a.rank, "samples_per_s": rates,
           "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
           "loss": loss}
    if bn and a.world > 1:
        out["bn_stats"] = "local"
    print(json.dumps(out), flush=True)
    if a.world > 1:
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main()
