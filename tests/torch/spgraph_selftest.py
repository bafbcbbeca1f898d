#!/usr/bin/python3
"""Self-test of spgraph.py, the spec language as PyTorch modules: no C, no shardprop binary.

Usage: spgraph_selftest.py

The cross-checks trust spgraph to build the network shardprop builds and to name its tensors
as shardprop's checkpoints do, so this test pins both down on four graphs (a ResNet with a
projection shortcut, a pre-norm transformer block, a two-level U-Net, a small GPT) and a few
small ones:
  * output shapes, and the forward against the same modules composed by hand (which checks
    the wiring of residual, repeat, save/add/concat, not PyTorch's layers);
  * the exact state_dict key lists and parameter counts, both written out by hand below;
  * a checkpoint written by a plain h5py writer in shardprop's layout loads strictly
    (parameters and buffers, num_batches_tracked an int64 scalar), save_state writes the same
    layout back, and a missing, extra, mistyped or nested tensor is refused by name;
  * comments, newlines, spacing and written-out defaults do not change the model;
  * bad specs, and specs that do not fit their input, raise SpecError at the right offset;
  * the GPT's layers (embedding, pos_embedding, attention, dense and layernorm on sequences,
    gelu:tanh, the tied output projection): shapes, a forward against GPT-2's block written
    out by hand (attention a loop over heads and rows), causality (a later token changes no
    earlier logit; a shorter context gives the same first logits), the tie sharing one tensor
    whose gradient is the sum of both uses, and the checkpoint names (P.qkv, P.proj, nothing
    for the tied dense) loading strictly.

h5py and torch must be importable: when they are not, this test FAILS (CI installs python3-h5py
and python3-torch).
"""
import os
import sys
import tempfile
import traceback

try:
    import h5py
    import numpy as np
    import torch
    from torch.nn import functional as F
except ImportError as e:  # not a skip: the test must run in CI
    print(f"FAIL: cannot import h5py/numpy/torch ({e}); install python3-h5py and python3-torch")
    sys.exit(1)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import spgraph  # noqa: E402
from spgraph import SpecError  # noqa: E402

RESNET = ("conv2d:16:3:pad=1:bias=0,batchnorm,relu,"
          "residual(conv2d:32:3:stride=2:pad=1:bias=0,batchnorm,relu,"
          "conv2d:32:3:pad=1:bias=0,batchnorm | conv2d:32:1:stride=2:bias=0,batchnorm),relu,"
          "repeat:2(residual(conv2d:32:3:pad=1:bias=0,batchnorm,relu,"
          "conv2d:32:3:pad=1:bias=0,batchnorm),relu),gap,dense:10")
TRANSFORMER = "dense:64,repeat:2(residual(layernorm,dense:128,gelu,dense:64)),layernorm,dense:10"
GPT = ("embedding:40:32,pos_embedding,"
       "repeat:2(residual(layernorm,attention:heads=4),"
       "residual(layernorm,dense:64,gelu:tanh,dense:32)),layernorm,dense:40:tie")
GPT_T = 16
UNET = ("conv2d:8:3:pad=1,relu,save:s1,maxpool:2,conv2d:16:3:pad=1,relu,save:s2,maxpool:2,"
        "conv2d:32:3:pad=1,relu,upsample:2,concat:s2,conv2d:16:3:pad=1,relu,upsample:2,"
        "concat:s1,conv2d:8:3:pad=1,relu,conv2d:1:1")
IMAGE = (1, 28, 28)

failures = []
checks = 0


def check(ok, what):
    global checks
    checks += 1
    if not ok:
        failures.append(what)
        print(f"FAIL {what}")


def raises(fn, exc, *pieces):
    """fn() raises exc whose text holds every piece; returns the exception (or None)."""
    try:
        fn()
    except exc as e:
        text = str(e)
        missing = [p for p in pieces if p not in text]
        check(not missing, f"error text lacks {missing}: {text}")
        return e
    except Exception as e:  # noqa: BLE001  (the wrong kind of error is a failure, not a crash)
        check(False, f"expected {exc.__name__}, got {type(e).__name__}: {e}")
        return None
    check(False, f"expected {exc.__name__} ({pieces}), nothing raised")
    return None


def close(a, b, what, tol=1e-6):
    err = float((a - b).abs().max()) / max(float(b.abs().max()), 1.0)
    check(a.shape == b.shape and err <= tol, f"{what}: {tuple(a.shape)} vs {tuple(b.shape)}, "
                                              f"rel err {err:.2e} (> {tol})")


def chain(seq, x):
    """A branch or copy whose items are all plain layers, applied one by one."""
    for m in seq:
        x = m(x)
    return x


def bn(path):
    return [f"{path}.{t}" for t in ("weight", "bias", "running_mean", "running_var",
                                    "num_batches_tracked")]


def wb(path):
    return [f"{path}.weight", f"{path}.bias"]


def nparams(m):
    return sum(p.numel() for p in m.parameters())


def randomize_buffers(m, gen):
    """Non-trivial running statistics, so that batchnorm in eval mode is not the identity."""
    for mod in m.modules():
        if isinstance(mod, torch.nn.modules.batchnorm._BatchNorm):
            mod.running_mean.copy_(torch.randn(mod.running_mean.shape, generator=gen))
            mod.running_var.copy_(torch.rand(mod.running_var.shape, generator=gen) + 0.5)


# ---- the three graphs ---------------------------------------------------------------------------

def test_resnet():
    m = spgraph.build(RESNET, IMAGE)
    keys = list(m.state_dict())
    want = (["0.weight"] + bn("1")
            + ["3.f.0.weight"] + bn("3.f.1") + ["3.f.3.weight"] + bn("3.f.4")
            + ["3.g.0.weight"] + bn("3.g.1")
            + ["5.0.0.f.0.weight"] + bn("5.0.0.f.1") + ["5.0.0.f.3.weight"] + bn("5.0.0.f.4")
            + ["5.1.0.f.0.weight"] + bn("5.1.0.f.1") + ["5.1.0.f.3.weight"] + bn("5.1.0.f.4")
            + wb("7"))
    check(keys == want, f"resnet keys {keys}")
    # items: 0 conv, 1 bn, 2 relu, 3 residual, 4 relu, 5 repeat (copy k: 0 residual, 1 relu),
    # 6 gap, 7 dense
    for k in ("3.g.0.weight", "1.num_batches_tracked", "5.1.0.f.4.running_var", "7.bias"):
        check(k in keys, f"resnet: {k} missing")
    for k in ("3.num_batches_tracked", "0.bias", "3.g.0.bias", "4.1.f.4.running_var",
              "5.1.1.weight"):
        check(k not in keys, f"resnet: {k} should not be there")
    sd = m.state_dict()
    check(tuple(sd["3.g.0.weight"].shape) == (32, 16, 1, 1), "resnet: the projection's weight")
    check(tuple(sd["3.f.0.weight"].shape) == (32, 16, 3, 3), "resnet: 3.f.0's weight")
    check(sd["1.num_batches_tracked"].dtype == torch.int64 and
          sd["1.num_batches_tracked"].shape == (), "resnet: num_batches_tracked int64 scalar")
    check(isinstance(m[1], torch.nn.BatchNorm2d), "resnet: batchnorm on (C,H,W) is 2d")
    # parameters: 0: 16*1*9 = 144; 1: 2*16; 3.f: 32*16*9 + 64 + 32*32*9 + 64, 3.g: 32*16 + 64;
    # 5: 2 copies of (32*32*9 + 64) * 2; 7: 32*10 + 10
    n = 144 + 32 + (4608 + 64 + 9216 + 64) + (512 + 64) + 2 * 2 * (9216 + 64) + 330
    check(n == 52154 and nparams(m) == n, f"resnet: {nparams(m)} parameters, want {n}")
    stats = sum(b.numel() for k, b in sd.items() if k.endswith(("running_mean", "running_var")))
    check(stats == 2 * (16 + 7 * 32), f"resnet: {stats} running statistics")

    x = torch.randn(4, *IMAGE, generator=torch.Generator().manual_seed(1))
    y = m(x)  # training mode: batch statistics
    check(tuple(y.shape) == (4, 10), f"resnet output {tuple(y.shape)}")
    check(int(m.state_dict()["5.1.0.f.4.num_batches_tracked"]) == 1,
          "resnet: a training forward counts a batch in every batchnorm")

    randomize_buffers(m, torch.Generator().manual_seed(2))
    m.eval()
    with torch.no_grad():
        h = torch.relu(m[1](m[0](x)))
        h = torch.relu(chain(m[3].f, h) + chain(m[3].g, h))  # residual(f | g)
        for copy in m[5]:  # repeat:2(residual(f), relu)
            h = torch.relu(chain(copy[0].f, h) + h)
        want_y = m[7](h.mean(dim=(2, 3)))
        close(m(x), want_y, "resnet eval forward vs the modules composed by hand")
    check(m.output_shape == (10,), f"resnet output_shape {m.output_shape}")


def test_transformer():
    m = spgraph.build(TRANSFORMER, (64,))
    keys = list(m.state_dict())
    want = wb("0")
    for k in range(2):
        want += wb(f"1.{k}.0.f.0") + wb(f"1.{k}.0.f.1") + wb(f"1.{k}.0.f.3")
    want += wb("2") + wb("3")
    check(keys == want, f"transformer keys {keys}")
    # 0: 64*64 + 64; 1: 2 copies of 2*64 + (64*128 + 128) + (128*64 + 64); 2: 2*64; 3: 64*10 + 10
    n = 4160 + 2 * (128 + 8320 + 8256) + 128 + 650
    check(n == 38346 and nparams(m) == n, f"transformer: {nparams(m)} parameters, want {n}")
    check(m.state_dict()["1.1.0.f.1.weight"].shape == (128, 64), "transformer: f.1 is (128, 64)")
    x = torch.randn(5, 64, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        y = m(x)
        h = m[0](x)
        for copy in m[1]:  # residual(f): h + f(h)
            h = h + chain(copy[0].f, h)
        close(y, m[3](m[2](h)), "transformer forward vs the modules composed by hand")
    check(tuple(y.shape) == (5, 10), f"transformer output {tuple(y.shape)}")

    # layernorm normalizes the whole sample; batchnorm on a flat input is BatchNorm1d
    ln = spgraph.build("layernorm:eps=0.001", (3, 4, 5))
    check(tuple(ln.state_dict()["0.weight"].shape) == (3, 4, 5) and ln[0].eps == 1e-3,
          "layernorm on (3,4,5): weight (3,4,5), eps 1e-3")
    x = torch.randn(2, 3, 4, 5, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        close(ln(x), F.layer_norm(x, (3, 4, 5), eps=1e-3), "layernorm over (C,H,W)")
    b1 = spgraph.build("batchnorm:eps=1e-3:momentum=0.2", (6,))
    check(isinstance(b1[0], torch.nn.BatchNorm1d) and b1[0].eps == 1e-3 and
          b1[0].momentum == 0.2, "batchnorm on (F): BatchNorm1d(eps, momentum)")


def test_unet():
    m = spgraph.build(UNET, IMAGE)
    keys = list(m.state_dict())
    want = [k for i in (0, 4, 8, 12, 16, 18) for k in wb(str(i))]
    check(keys == want, f"unet keys {keys}")
    sd = m.state_dict()
    # concat adds the saved channels: 32 + 16 in at 12, 16 + 8 in at 16
    check(tuple(sd["12.weight"].shape) == (16, 48, 3, 3), "unet: 12 takes 48 channels")
    check(tuple(sd["16.weight"].shape) == (8, 24, 3, 3), "unet: 16 takes 24 channels")
    n = (8 * 9 + 8) + (16 * 8 * 9 + 16) + (32 * 16 * 9 + 32) + (16 * 48 * 9 + 16) + \
        (8 * 24 * 9 + 8) + (8 + 1)
    check(n == 14561 and nparams(m) == n, f"unet: {nparams(m)} parameters, want {n}")
    x = torch.randn(2, *IMAGE, generator=torch.Generator().manual_seed(5))

    def up(t):  # nearest by 2, independently of nn.Upsample
        return t.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)

    with torch.no_grad():
        y = m(x)
        s1 = torch.relu(m[0](x))
        s2 = torch.relu(m[4](F.max_pool2d(s1, 2)))
        h = torch.relu(m[8](F.max_pool2d(s2, 2)))
        h = torch.relu(m[12](torch.cat([up(h), s2], dim=1)))
        h = torch.relu(m[16](torch.cat([up(h), s1], dim=1)))
        close(y, m[18](h), "unet forward vs the modules composed by hand")
    check(tuple(y.shape) == (2, 1, 28, 28), f"unet output {tuple(y.shape)}")


def test_straight_stack():
    """A plain stack keeps today's keys and nn.Sequential's results."""
    spec = "conv2d:4:3:pad=1,relu,maxpool:2,flatten,dense:5"
    m = spgraph.build(spec, (1, 6, 6))
    check(list(m.state_dict()) == wb("0") + wb("4"), f"straight stack keys {list(m.state_dict())}")
    seq = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.ReLU(),
                              torch.nn.MaxPool2d(2), torch.nn.Flatten(), torch.nn.Linear(36, 5))
    seq.load_state_dict(m.state_dict(), strict=True)
    x = torch.randn(3, 1, 6, 6, generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        close(m(x), seq(x), "straight stack vs nn.Sequential", tol=0)


def test_saved_names():
    """A name is the most recent save in execution order, f before g."""
    m = spgraph.build("save:a,dense:4,repeat:2(save:a,dense:4),add:a", (4,))
    x = torch.randn(3, 4, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        h1 = m[1](x)
        h2 = m[2][0][1](h1)
        h3 = m[2][1][1](h2)
        close(m(x), h3 + h2, "add reads the save of the last repeat copy")
    m = spgraph.build("residual(save:t,dense:4 | dense:4,save:t),add:t", (4,))
    with torch.no_grad():
        f, g = m[0].f[1](x), m[0].g[0](x)
        close(m(x), f + g + g, "residual runs f, then g: g's save is the most recent")
    m = spgraph.build("save:a,dense:3,concat:a", (4,))
    check(m.output_shape == (7,), f"concat of flat features: {m.output_shape}")
    with torch.no_grad():
        close(m(x), torch.cat([m[1](x), x], dim=1), "concat: current first, then the save")
    check(list(m.state_dict()) == wb("1"), "save/add/concat count as items, hold no tensors")


# ---- the GPT -------------------------------------------------------------------------------------

def gpt_keys():
    """GPT's state_dict keys, written out: 0 embedding, 1 pos_embedding, 2 repeat (copy k:
    0 residual(layernorm, attention), 1 residual(layernorm, dense, gelu, dense)), 3 layernorm,
    4 the tied dense (no tensor)."""
    keys = ["0.weight", "1.weight"]
    for k in range(2):
        keys += (wb(f"2.{k}.0.f.0") + wb(f"2.{k}.0.f.1.qkv") + wb(f"2.{k}.0.f.1.proj")
                 + wb(f"2.{k}.1.f.0") + wb(f"2.{k}.1.f.1") + wb(f"2.{k}.1.f.3"))
    return keys + wb("3")


def attention_by_hand(x, qkv_w, qkv_b, proj_w, proj_b, heads):
    """GPT-2's causal self-attention on (B, T, C), one head and one row at a time: row i's
    softmax over the scores of positions 0..i only (no mask, no -inf)."""
    B, T, C = x.shape
    hs = C // heads
    qkv = x @ qkv_w.T + (0 if qkv_b is None else qkv_b)
    y = torch.zeros(B, T, C, dtype=x.dtype)
    for h in range(heads):
        q = qkv[:, :, h * hs:(h + 1) * hs]
        k = qkv[:, :, C + h * hs:C + (h + 1) * hs]
        v = qkv[:, :, 2 * C + h * hs:2 * C + (h + 1) * hs]
        for i in range(T):
            s = (k[:, :i + 1] * q[:, i:i + 1]).sum(-1) / hs ** 0.5  # (B, i+1)
            p = torch.exp(s - s.max(dim=1, keepdim=True).values)
            p = p / p.sum(dim=1, keepdim=True)
            y[:, i, h * hs:(h + 1) * hs] = (p.unsqueeze(-1) * v[:, :i + 1]).sum(1)
    return y @ proj_w.T + (0 if proj_b is None else proj_b)


def gelu_tanh(x):
    return 0.5 * x * (1 + torch.tanh((2 / np.pi) ** 0.5 * (x + 0.044715 * x ** 3)))


def gpt_by_hand(sd, ids, heads=4, blocks=2):
    """The GPT forward from its state dict alone (float64): what each layer is in GPT-2."""
    d = {k: v.double() for k, v in sd.items()}
    t = ids.shape[1]
    h = d["0.weight"][ids.long()] + d["1.weight"][:t]
    for k in range(blocks):
        p = f"2.{k}."
        a = F.layer_norm(h, h.shape[-1:], d[p + "0.f.0.weight"], d[p + "0.f.0.bias"])
        h = h + attention_by_hand(a, d[p + "0.f.1.qkv.weight"], d.get(p + "0.f.1.qkv.bias"),
                                  d[p + "0.f.1.proj.weight"], d.get(p + "0.f.1.proj.bias"),
                                  heads)
        a = F.layer_norm(h, h.shape[-1:], d[p + "1.f.0.weight"], d[p + "1.f.0.bias"])
        a = gelu_tanh(a @ d[p + "1.f.1.weight"].T + d[p + "1.f.1.bias"])
        h = h + a @ d[p + "1.f.3.weight"].T + d[p + "1.f.3.bias"]
    h = F.layer_norm(h, h.shape[-1:], d["3.weight"], d["3.bias"])
    return h @ d["0.weight"].T  # the tied head: the embedding's weight


def random_gpt(seed):
    """GPT with every tensor random at a GPT-like scale (layer norms not the identity)."""
    m = spgraph.build(GPT, (GPT_T,))
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for k, p in m.state_dict().items():
            p.copy_(torch.randn(p.shape, generator=gen) * (0.3 if k.endswith("bias") else 0.5)
                    + (1.0 if k in ("3.weight",) or k.endswith("f.0.weight") else 0.0))
    return m


def tokens(shape, seed, vocab=40):
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, vocab, shape, generator=gen).float()  # ids as floats, as shardprop


def test_gpt_modules():
    m = spgraph.build(GPT, (GPT_T,))
    keys = list(m.state_dict())
    check(keys == gpt_keys(), f"gpt keys {keys}")
    check(m.tokens and m.input_shape == (GPT_T,) and m.output_shape == (GPT_T, 40),
          f"gpt: tokens {m.tokens}, input {m.input_shape}, output {m.output_shape}")
    sd = m.state_dict()
    for k, shape in (("0.weight", (40, 32)), ("1.weight", (16, 32)),
                     ("2.0.0.f.1.qkv.weight", (96, 32)), ("2.0.0.f.1.qkv.bias", (96,)),
                     ("2.1.0.f.1.proj.weight", (32, 32)), ("2.1.0.f.1.proj.bias", (32,)),
                     ("2.0.0.f.0.weight", (32,)), ("2.1.1.f.1.weight", (64, 32)),
                     ("2.1.1.f.3.weight", (32, 64)), ("3.bias", (32,))):
        check(tuple(sd[k].shape) == shape, f"gpt: {k} is {tuple(sd[k].shape)}, want {shape}")
    # 0: 40*32; 1: 16*32; 2: 2 copies of (2*32 + 32*96 + 96 + 32*32 + 32) + (2*32 + 32*64 + 64
    # + 64*32 + 32); 3: 2*32; 4: tied, nothing of its own
    n = 1280 + 512 + 2 * ((64 + 3168 + 1056) + (64 + 2112 + 2080)) + 64
    check(n == 18944 and nparams(m) == n, f"gpt: {nparams(m)} parameters, want {n}")
    check(isinstance(m[2][0][0].f[1], spgraph.CausalSelfAttention) and
          m[2][0][0].f[1].heads == 4, "gpt: 2.0.0.f.1 is the attention, 4 heads")
    check(m[2][0][1].f[2].approximate == "tanh", "gelu:tanh is nn.GELU(approximate='tanh')")
    check(spgraph.build("dense:4,gelu", (4,))[1].approximate == "none", "gelu is the erf form")
    ln = m[3]
    check(tuple(ln.normalized_shape) == (32,), "layernorm on (T, D) normalizes over D")

    x = tokens((3, GPT_T), seed=20)
    y = m(x)
    check(tuple(y.shape) == (3, GPT_T, 40), f"gpt output {tuple(y.shape)}")
    check(torch.equal(m(x.long()), y), "ids as integers give what ids as floats give")

    # no biases with bias=0; dense and layernorm on sequences act on every position alone
    nb = spgraph.build("embedding:10:8,attention:heads=2:bias=0,dense:5,layernorm", (6,))
    check(list(nb.state_dict()) == ["0.weight", "1.qkv.weight", "1.proj.weight"] + wb("2")
          + wb("3"), f"attention bias=0: keys {list(nb.state_dict())}")
    check(nb.output_shape == (6, 5), f"dense on (T, D): {nb.output_shape}")
    h = torch.randn(2, 6, 8, generator=torch.Generator().manual_seed(21))
    with torch.no_grad():
        per = torch.stack([nb[2](h[:, t]) for t in range(6)], dim=1)
        close(nb[2](h), per, "dense on (B, T, D) = the Linear at each position")
        z = nb[2](h)
        per = torch.stack([F.layer_norm(z[:, t], (5,), nb[3].weight, nb[3].bias)
                           for t in range(6)], dim=1)
        close(nb[3](z), per, "layernorm on (B, T, D) = each position alone")
        close(nb[1](h), attention_by_hand(h, nb[1].qkv.weight, None, nb[1].proj.weight, None,
                                          2), "attention without biases vs by hand")
    # pos_embedding adds P[t] at position t
    pe = spgraph.build("embedding:10:8,pos_embedding", (6,))
    ids = tokens((2, 6), seed=22, vocab=10)
    with torch.no_grad():
        close(pe(ids), pe[0].weight[ids.long()] + pe[1].weight.unsqueeze(0),
              "pos_embedding: x + P[arange(T)]", tol=0)
    raises(lambda: pe(ids + 0.5), ValueError, "token ids must be integers")
    raises(lambda: pe(ids + 10), ValueError, "token ids must be in [0, 10)")
    raises(lambda: pe(torch.zeros(2, 7)), ValueError, "the model takes (B, 6)")

    # lm_loss: the mean over B*T tokens of -log softmax at the target
    z = torch.randn(3, 5, 7, generator=torch.Generator().manual_seed(23), dtype=torch.float64)
    t = torch.randint(0, 7, (3, 5), generator=torch.Generator().manual_seed(24))
    want = -torch.log_softmax(z, -1).gather(-1, t.unsqueeze(-1)).mean()
    close(spgraph.lm_loss(z, t), want, "lm_loss: mean over tokens", tol=1e-12)


def test_gpt_forward():
    m = random_gpt(seed=25)
    x = tokens((3, GPT_T), seed=26)
    with torch.no_grad():
        m64 = random_gpt(seed=25).double()
        close(m64(x.double()), gpt_by_hand(m.state_dict(), x), "gpt forward (float64) vs GPT-2 "
              "written out by hand", tol=1e-10)
        close(m(x).double(), gpt_by_hand(m.state_dict(), x), "gpt forward (float32) vs by hand",
              tol=1e-5)


def test_gpt_causal():
    m = random_gpt(seed=27).eval()
    x = tokens((2, GPT_T), seed=28)
    with torch.no_grad():
        y = m(x)
        for t in (0, 5, GPT_T - 1):
            x2 = x.clone()
            x2[:, t] = (x2[:, t] + 7) % 40
            y2 = m(x2)
            before = float((y2[:, :t] - y[:, :t]).abs().max()) if t else 0.0
            after = float((y2[:, t:] - y[:, t:]).abs().max())
            check(before == 0.0, f"causal: changing token {t} changes an earlier logit by "
                                 f"{before:.2e}")
            check(after > 1e-3, f"changing token {t} changes its own logits by only {after:.2e}")
        for t in (1, 7, GPT_T):
            close(m(x[:, :t]), y[:, :t], f"a {t}-token context gives the first {t} logits",
                  tol=1e-6)
    # a full context with the tail padded (by token 0) reads the same at the last real position
    ids = x[:, :5]
    padded = torch.cat([ids, torch.zeros(2, GPT_T - 5)], dim=1)
    with torch.no_grad():
        close(m(padded)[:, 4], m(ids)[:, 4], "padding after the context changes nothing before",
              tol=1e-6)


def test_gpt_tie():
    m = random_gpt(seed=29)
    head, emb = m[4], m[0]
    check(isinstance(head, spgraph.TiedLinear) and head.weight is emb.weight and
          head.weight.data_ptr() == emb.weight.data_ptr(), "tie: the head's weight is the "
                                                           "embedding's tensor")
    check(sum(1 for p in m.parameters() if p is emb.weight) == 1,
          "tie: the shared tensor is one parameter")
    check("4.weight" not in m.state_dict(), "tie: no state_dict key of its own")
    # the gradient is the sum of both uses: the same model with an untied copy of the weight
    x, t = tokens((2, GPT_T), seed=30), tokens((2, GPT_T), seed=31).long()
    spgraph.lm_loss(m(x), t).backward()
    untied = random_gpt(seed=29)
    copy = torch.nn.Linear(32, 40, bias=False)
    with torch.no_grad():
        copy.weight.copy_(untied[0].weight)
    untied[4] = copy
    spgraph.lm_loss(untied(x), t).backward()
    both = untied[0].weight.grad + copy.weight.grad
    close(emb.weight.grad, both, "tie: the gradient = the embedding's + the head's", tol=1e-6)
    check(float(copy.weight.grad.abs().max()) > 1e-3 and
          float(untied[0].weight.grad.abs().max()) > 1e-5, "tie: both uses have blame")
    # .double() and deepcopy keep the tie
    import copy as cp
    d = cp.deepcopy(m).double()
    check(d[4].weight is d[0].weight and d[4].weight.dtype == torch.float64,
          "tie: kept through deepcopy and .double()")
    # the first embedding is the one tied to; the shapes must match
    two = spgraph.build("embedding:12:8,residual(dense:8),dense:12:tie", (5,))
    check(two[2].weight is two[0].weight and two[2].tied_to == "0", "tie: to layer 0")


def test_gpt_checkpoint():
    with tempfile.TemporaryDirectory() as tmp:
        tensors = random_state(spgraph.build(GPT, (GPT_T,)), seed=32)
        check(sorted(tensors) == sorted(gpt_keys()), "gpt: random_state's keys")
        path = os.path.join(tmp, "gpt.h5")
        write_checkpoint(path, GPT, (GPT_T,), tensors)
        with h5py.File(path, "r") as f:
            check("/model/params/2.1.0.f.1.qkv/weight" in f and
                  "/model/params/4" not in f, "gpt: the file's names")
        m, spec, shape = spgraph.load_checkpoint(path)
        check(spec == GPT and shape == (GPT_T,) and m.tokens, "gpt: load_checkpoint")
        check(all(torch.equal(m.state_dict()[k], torch.as_tensor(v)) for k, v in
                  tensors.items()), "gpt: the loaded tensors are the file's")
        check(m[4].weight is m[0].weight and torch.equal(m[4].weight,
                                                         torch.as_tensor(tensors["0.weight"])),
              "gpt: the tied head reads the loaded embedding")
        check(spgraph.key_from_name("/model/params/2.1.0.f.1.qkv/weight") ==
              "2.1.0.f.1.qkv.weight" and
              spgraph.name_from_key("2.0.0.f.1.proj.bias") == "/model/params/2.0.0.f.1.proj/bias",
              "gpt: names of the attention's projections")
        raises(lambda: spgraph.key_from_name("/model/params/2.0.0.f.1.q/weight"), ValueError,
               "not a shardprop tensor name")
        path2 = os.path.join(tmp, "gpt_saved.h5")
        spgraph.save_state(m, path2)
        with h5py.File(path2, "r") as f:
            names = []
            f["/model/params"].visititems(
                lambda n, o: names.append(n) if isinstance(o, h5py.Dataset) else None)
            check(sorted(names) == sorted(spgraph.name_from_key(k, prefix="") for k in tensors),
                  f"gpt: save_state's datasets {sorted(names)[:4]}...")
            attrs = {g: f["/model/params"][g].attrs.get("layer") for g in f["/model/params"]}
            check(attrs.get("2.0.0.f.1.qkv") == b"dense" and attrs.get("2.1.0.f.1.proj") ==
                  b"dense" and attrs.get("0") == b"embedding" and
                  attrs.get("1") == b"pos_embedding" and attrs.get("3") == b"layernorm",
                  f"gpt: save_state's layer attributes {attrs}")
        m2, _, _ = spgraph.load_checkpoint(path2)
        x = tokens((2, GPT_T), seed=33)
        with torch.no_grad():
            close(m2(x), m(x), "gpt: a saved and reloaded model", tol=0)

        bad = os.path.join(tmp, "bad.h5")

        def variant(edit):
            write_checkpoint(bad, GPT, (GPT_T,), tensors)
            with h5py.File(bad, "r+") as f:
                edit(f)
            return lambda: spgraph.load_checkpoint(bad)

        raises(variant(lambda f: f.require_group("/model/params/4").create_dataset(
            "weight", data=tensors["0.weight"])), ValueError,
               "not in the spec's model /model/params/4/weight")
        raises(variant(lambda f: f["/model/params/2.0.0.f.1.qkv"].pop("bias")), ValueError,
               "missing /model/params/2.0.0.f.1.qkv/bias")

        def short_pos(f):
            del f["/model/params/1/weight"]
            f["/model/params/1"].create_dataset("weight", data=np.zeros((8, 32), "f4"))
        raises(variant(short_pos), ValueError, "/model/params/1/weight is torch.float32 (8, 32)")


def test_gpt_spec_text():
    for short, long in (("gelu:tanh", "gelu:approximate=tanh"), ("gelu", "gelu:none"),
                        ("dense:40:tie", "dense:units=40:tie=1:bias=0"),
                        ("dense:40:tie=0", "dense:40"),
                        ("embedding:40:32", "embedding:vocab=40:dim=32"),
                        ("attention:4", "attention:heads=4:bias=1")):
        check(spgraph.parse(short) == spgraph.parse(long), f"{short} == {long}")
    t = spgraph.parse("dense:40:tie")[0]
    check(t.args == {"units": 40, "bias": False, "tie": True}, f"dense:40:tie args {t.args}")
    check(spgraph.parse(GPT)[2].n == 2, "the gpt's tree")


# ---- checkpoints --------------------------------------------------------------------------------

def random_state(model, seed):
    """A value for every tensor of the model, of its shape and dtype (variances positive)."""
    rng = np.random.default_rng(seed)
    out = {}
    for k, t in model.state_dict().items():
        if k.endswith("num_batches_tracked"):
            out[k] = np.int64(rng.integers(1, 1000))
        elif k.endswith("running_var"):
            out[k] = rng.uniform(0.5, 2.0, size=t.shape).astype(np.float32)
        else:
            out[k] = rng.standard_normal(t.shape).astype(np.float32)
    return out


def write_checkpoint(path, spec, shape, tensors):
    """shardprop's layout written with h5py alone (docs/checkpoints.md): /model's attributes
    as fixed-length strings and int64, one group per module named by its dotted path."""
    with h5py.File(path, "w") as f:
        g = f.create_group("model")
        g.attrs["spec"] = np.bytes_(spec.encode())
        g.attrs["input_shape"] = np.array(shape, dtype=np.int64)
        g.attrs["loss"] = np.bytes_(b"xent")
        g.attrs["format_version"] = np.int32(1)
        p = g.create_group("params")
        for key, value in tensors.items():
            module, tensor = key.rsplit(".", 1)
            p.require_group(module).create_dataset(tensor, data=value)


def test_checkpoints():
    with tempfile.TemporaryDirectory() as tmp:
        checkpoints_in(tmp)


def checkpoints_in(tmp):
    for what, spec, shape in (("resnet", RESNET, IMAGE), ("transformer", TRANSFORMER, (64,)),
                              ("unet", UNET, IMAGE)):
        tensors = random_state(spgraph.build(spec, shape), seed=len(spec))
        path = os.path.join(tmp, f"{what}.h5")
        write_checkpoint(path, spec, shape, tensors)
        m, spec2, shape2 = spgraph.load_checkpoint(path)
        check(spec2 == spec and shape2 == shape and not m.training,
              f"{what}: load_checkpoint gives ({spec2!r}, {shape2}, training={m.training})")
        sd = m.state_dict()
        same = sd.keys() == tensors.keys() and all(
            torch.equal(sd[k], torch.as_tensor(v)) and sd[k].dtype == torch.as_tensor(v).dtype
            for k, v in tensors.items())
        check(same, f"{what}: the loaded tensors are the file's")
        check(spgraph.read_state(path).keys() == tensors.keys(), f"{what}: read_state's keys")

        # save_state writes the same layout back: the same datasets, the same values
        path2 = os.path.join(tmp, f"{what}_saved.h5")
        spgraph.save_state(m, path2)
        with h5py.File(path2, "r") as f:
            names = []
            f["/model/params"].visititems(
                lambda n, o: names.append(n) if isinstance(o, h5py.Dataset) else None)
            check(sorted(names) == sorted(spgraph.name_from_key(k, prefix="") for k in tensors),
                  f"{what}: save_state's datasets {sorted(names)[:4]}...")
            check(all(np.array_equal(f[spgraph.name_from_key(k)][()], v)
                      and f[spgraph.name_from_key(k)].dtype == np.asarray(v).dtype
                      for k, v in tensors.items()), f"{what}: save_state's values and dtypes")
            check(f["/model"].attrs["spec"] == spec.encode() and
                  tuple(f["/model"].attrs["input_shape"]) == shape, f"{what}: save_state's /model")
            if what == "resnet":
                check(f["/model/params/3.g.1"].attrs["layer"] == b"batchnorm",
                      "save_state: the group attribute layer")
        m2, _, _ = spgraph.load_checkpoint(path2)
        x = torch.randn(2, *shape, generator=torch.Generator().manual_seed(8))
        with torch.no_grad():
            close(m2(x), m(x), f"{what}: a saved and reloaded model", tol=0)

    # what a strict load refuses, named as the file names it
    tensors = random_state(spgraph.build(RESNET, IMAGE), seed=9)
    bad = os.path.join(tmp, "bad.h5")

    def variant(edit):
        write_checkpoint(bad, RESNET, IMAGE, tensors)
        with h5py.File(bad, "r+") as f:
            edit(f)
        return lambda: spgraph.load_checkpoint(bad)

    raises(variant(lambda f: f["/model/params/3.g.1"].pop("running_var")), ValueError,
           "missing /model/params/3.g.1/running_var")
    raises(variant(lambda f: f["/model/params/0"].create_dataset("bias", data=np.zeros(16, "f4"))),
           ValueError, "not in the spec's model /model/params/0/bias")
    raises(variant(lambda f: f.require_group("/model/params/3").create_dataset(
        "num_batches_tracked", data=np.int64(1))), ValueError,
           "not in the spec's model /model/params/3/num_batches_tracked")

    def retype(f):
        del f["/model/params/1/num_batches_tracked"]
        f["/model/params/1"].create_dataset("num_batches_tracked", data=np.float32(3))
    raises(variant(retype), ValueError, "/model/params/1/num_batches_tracked is torch.float32")

    def reshape(f):
        del f["/model/params/7/bias"]
        f["/model/params/7"].create_dataset("bias", data=np.zeros(11, "f4"))
    raises(variant(reshape), ValueError, "/model/params/7/bias is torch.float32 (11,)")

    def nest(f):  # /model/params/3/g/0/weight: groups per path component, not shardprop's
        f.create_group("/model/params/3/g")
        f.move("/model/params/3.g.0", "/model/params/3/g/0")
    raises(variant(nest), ValueError, "named with dots")


def test_names():
    check(spgraph.key_from_name("/model/params/3.g.0/weight") == "3.g.0.weight", "key_from_name")
    check(spgraph.key_from_name("5.1.0.f.4/running_var") == "5.1.0.f.4.running_var",
          "key_from_name without the prefix")
    check(spgraph.name_from_key("3.g.0.weight") == "/model/params/3.g.0/weight", "name_from_key")
    check(spgraph.name_from_key("1.num_batches_tracked", prefix="") == "1/num_batches_tracked",
          "name_from_key, no prefix")
    keys = list(spgraph.build(RESNET, IMAGE).state_dict())
    check(all(spgraph.key_from_name(spgraph.name_from_key(k)) == k for k in keys),
          "name_from_key and key_from_name are inverses")
    raises(lambda: spgraph.key_from_name("/model/params/3.x.0/weight"), ValueError,
           "not a shardprop tensor name")
    raises(lambda: spgraph.name_from_key("3.g.0.momentum"), ValueError, "3.g.0.momentum")


# ---- the spec's text ----------------------------------------------------------------------------

def test_spec_text():
    multi = """
        # a pre-norm transformer block
        dense:64,                  # embedding
        repeat : 2 (
            residual(layernorm,
                     dense:128, gelu,   # the MLP
                     dense:64)
        ),
        layernorm , dense : 10     # the head
    """
    check(spgraph.parse(multi) == spgraph.parse(TRANSFORMER),
          "comments, newlines and spacing do not change the tree")
    check(list(spgraph.build(multi, (64,)).state_dict()) ==
          list(spgraph.build(TRANSFORMER, (64,)).state_dict()),
          "comments and newlines do not change the keys")
    inner = spgraph.parse(multi)[1].body[0].f[1]
    check(inner.kind == "dense" and inner.pos == multi.index("dense:128") and
          inner.text == "dense:128", f"a layer's position and text: {inner}")
    check(len(spgraph.parse("dense:4 # ,relu")) == 1, "a comment runs to the end of the line")
    check(len(spgraph.parse("relu#x\n,tanh")) == 2, "'#' ends a word")
    for short, long in (("maxpool:2", "maxpool:2:stride=2"),
                        ("conv2d:8:3", "conv2d:8:3:stride=1:pad=0:bias=1"),
                        ("conv2d:8:3:2:1", "conv2d:8:3:stride=2:pad=1"),
                        ("dense:4", "dense:units=4:bias=1"),
                        ("batchnorm", "batchnorm:eps=1e-5:momentum=0.1"),
                        ("layernorm", "layernorm:eps=0.00001"),
                        ("leaky_relu", "leaky_relu:0.01")):
        check(spgraph.parse(short) == spgraph.parse(long), f"{short} == {long}")
    tree = spgraph.parse(RESNET)
    check([type(t).__name__ for t in tree] ==
          ["Layer", "Layer", "Layer", "Residual", "Layer", "Repeat", "Layer", "Layer"] and
          tree[3].g is not None and tree[5].n == 2 and tree[5].body[0].g is None,
          "the resnet's tree")
    m = spgraph.build("conv2d:4:3:bias=0,flatten,dense:2:bias=0", (1, 5, 5))
    check(list(m.state_dict()) == ["0.weight", "2.weight"] and m[0].bias is None,
          "bias=0: no bias tensor")


BAD = [  # (spec, input shape or None for parse only, offset, a piece of the message)
    ("", None, 0, "got the end of the spec"),
    ("  # nothing\n", None, 12, "got the end of the spec"),
    ("dense:10,,relu", None, 9, "two commas in a row"),
    ("dense:10,", None, 9, "trailing comma"),
    ("relu)", None, 4, "expected ',' or the end of the spec, got ')'"),
    ("foo:1", None, 0, "unknown layer 'foo'"),
    ("dense", None, 0, "missing units"),
    ("dense:x", None, 6, "units must be an integer"),
    ("dense:0", None, 6, ">= 1"),
    ("dense:10:bias=2", None, 14, "bias must be 0 or 1"),
    ("dense:10:2", None, 9, "too many arguments"),
    ("dense:10:bias=1:4", None, 16, "a positional argument after a key=value one"),
    ("dense:10:units=3", None, 9, "argument 'units' given twice"),
    ("conv2d:8:3:pd=1", None, 11, "unknown argument 'pd'"),
    ("conv2d:8", None, 0, "missing kernel"),
    ("conv2d:8:3:pad=", None, 15, "a value after 'pad='"),
    ("dropout:1", None, 8, "[0, 1)"),
    ("leaky_relu:abc", None, 11, "must be a number"),
    ("batchnorm:eps=0", None, 14, "must be > 0"),
    ("batchnorm:1e-3", None, 10, "too many arguments"),
    ("save:1x", None, 5, "must be a name"),
    ("residual(dense:4", None, 16, "expected ',', '|' or ')'"),
    ("residual(dense:4|)", None, 17, "expected a layer"),
    ("residual dense:4", None, 9, "'(' after residual"),
    ("repeat(relu)", None, 6, "':N' after repeat"),
    ("repeat:0(relu)", None, 7, "count must be an integer >= 1"),
    ("repeat:2 relu", None, 9, "'(' after repeat:N"),
    ("repeat:2(relu", None, 13, "',' or ')' in repeat"),
    ("dense:4,\n  bogus:1", None, 11, "line 2, column 3"),
    # specs that parse but do not fit their input
    ("dense:4", IMAGE, 0, "needs a flat input (F)"),
    ("relu,conv2d:4:3", (16,), 5, "needs an image input"),
    ("conv2d:4:5", (1, 3, 3), 0, "at least as large as the kernel"),
    ("maxpool:4", (1, 3, 3), 0, "at least as large as the window"),
    ("gap", (8,), 0, "needs an image input (C, H, W)"),
    ("upsample:2", (4,), 0, "needs an image input (C, H, W)"),
    ("residual(dense:4)", (8,), 0, "f(x) is (4) but x is (8)"),
    ("dense:8,residual(dense:4 | dense:5)", (8,), 8, "f(x) is (4) but g(x) is (5)"),
    ("repeat:2(residual(dense:4,flatten,conv2d:1:1))", (4,), 34, "layer 0.0.0.f.2"),
    ("relu,add:z", (4,), 5, "no 'save:z' runs before it"),
    ("add:a,save:a", (4,), 0, "no 'save:a' runs before it"),
    ("save:a,dense:3,add:a", (4,), 15, "the shapes must be equal"),
    ("save:a,maxpool:2,concat:a", (1, 4, 4), 17, "all but the first (channel) dimension"),
    # the sequence layers
    ("gelu:erf", None, 5, "approximate must be tanh or none"),
    ("embedding:40", None, 0, "missing dim"),
    ("attention", None, 0, "missing heads"),
    ("attention:heads=4:2", None, 18, "a positional argument after a key=value one"),
    ("pos_embedding:3", None, 14, "too many arguments"),
    ("dense:40:tie:bias=1", None, 13, "a tied projection has no bias"),
    ("dense:40:tie=2", None, 13, "tie must be 0 or 1"),
    ("embedding:10:8,attention:heads=3", (6,), 15, "3 heads do not divide the width 8"),
    ("dense:8,attention:heads=2", (6,), 8, "needs a sequence (T, C)"),
    ("dense:8,pos_embedding", (6,), 8, "needs a sequence (T, D)"),
    ("embedding:10:8,embedding:10:8", (6,), 15, "needs token ids (T)"),
    ("embedding:10:8", (1, 4, 4), 0, "needs token ids (T)"),
    ("embedding:10:8,batchnorm", (6,), 15, "not a sequence (use layernorm)"),
    ("embedding:10:8,save:a,concat:a", (6,), 22, "concatenates sequences"),
    ("dense:10:tie", (6,), 0, "tie needs an embedding before it"),
    ("embedding:10:8,dense:11:tie", (6,), 15, "is tied to the embedding at layer 0 of 10 x 8"),
    ("embedding:10:8,dense:4,dense:10:tie", (6,), 23, "its weight would be 10 x 4"),
    ("embedding:10:8,conv2d:4:3", (6,), 15, "needs an image input"),
]


def test_bad_specs():
    for spec, shape, pos, piece in BAD:
        e = raises((lambda: spgraph.parse(spec)) if shape is None
                   else (lambda: spgraph.build(spec, shape)), SpecError, piece, f"offset {pos}")
        if e is not None:
            check(e.pos == pos, f"{spec!r}: offset {e.pos}, want {pos}")
    raises(lambda: spgraph.build("relu", (2, 3)), ValueError, "(F) or (C, H, W)")
    m = spgraph.build("relu", (3,))
    raises(lambda: m(torch.zeros(2, 4)), ValueError, "the model takes (B, 3)")


def main():
    torch.manual_seed(0)
    for t in (test_resnet, test_transformer, test_unet, test_straight_stack, test_saved_names,
              test_checkpoints, test_names, test_spec_text, test_bad_specs, test_gpt_modules,
              test_gpt_forward, test_gpt_causal, test_gpt_tie, test_gpt_checkpoint,
              test_gpt_spec_text):
        before = len(failures)
        try:
            t()
        except Exception:  # noqa: BLE001  (report it and go on to the next test)
            failures.append(t.__name__)
            print(f"FAIL {t.__name__} raised:")
            traceback.print_exc()
        print(f"{t.__name__}: {'ok' if len(failures) == before else 'FAILED'}")
    print(f"spgraph_selftest: {checks} checks, {len(failures)} failed:",
          "ok" if not failures else "FAILED")
    return 0 if not failures else 1


if __name__ == "__main__":
    sys.exit(main())
