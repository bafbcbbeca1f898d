#!/usr/bin/python3
"""A small GPT trained and sampled by shardprop against the same GPT in PyTorch (spgraph.py,
splm.py).

Usage: gpt_torch.py PATH/TO/shardprop   (else $SHARDPROP_BIN; ctest passes the build's binary)

The model (T = 16, byte-level tokens, vocab 64; 19.7k parameters):
  embedding:64:32, pos_embedding,
  repeat:2(residual(layernorm, attention:heads=4), residual(layernorm, dense:64, gelu:tanh,
  dense:32)), layernorm, dense:64:tie
on synthetic sums ("12+7=19\\n": digits, '+', '=' and newlines, all bytes below 64), so that
a prompt is text.

What is checked:
  1. INIT. `shardprop train --seq-len 16 --max-steps 0 --out init.h5` writes a checkpoint that
     spgraph loads strictly: /model/params/<path>/{weight,bias} with the attention's P.qkv and
     P.proj, no tensor for the tied head, nothing missing or extra.
  2. TRAIN. 8 AdamW steps (decoupled weight decay 0.1 on every parameter, betas 0.9/0.95,
     eps 1e-4 (see below), --clip-norm 1 (which must clip: the norms are printed, and a run
     in which no step's norm exceeds 1 fails, as it would not test clipping), --schedule cosine --warmup-steps 2 --min-lr 3e-4, --batch 8, --no-shuffle:
     step b trains windows [8b, 8b + 8)) of `shardprop train --init-from init.h5` on 1 rank
     and under `mpiexec -n 2`, against the same 8 steps in PyTorch (float32, splm.Trainer):
     every tensor of the final model within max|c - t| / max(max|t|, 1e-3) <= 1e-4 (per
     tensor; the worst tensor and the overall error, all tensors as one vector, are printed),
     and each step's loss (--metrics, --log-every 1: the mean over the batch's 128 tokens,
     so step 1's is the initial model's forward) within 1e-5 relative.
  3. ORDER. The same with shuffling on 20 windows, batch 8, 2 epochs (6 steps, each epoch's
     third batch 4 windows), 1 and 2 ranks: shardprop's epoch permutation (src/data/order.c)
     as splm.epoch_order reproduces it, and a partial batch's mean over its own tokens.
  4. VALIDATION. The val_loss shardprop reports after the 1-rank run (--val: the mean over
     every token of every window of the file) equals PyTorch's forward of shardprop's final
     checkpoint on the same windows within 1e-5 relative.
  5. GENERATE. After 8 steps the model repeats one token whatever its context, so a longer
     run trains it first (300 AdamW steps, lr 0.01, cosine with 10 warmup steps; 1 s): then
     `shardprop generate --checkpoint M --prompt P --tokens 24 --temperature 0` must print
     PyTorch's greedy continuation and a newline (argmax of the logits at the last position,
     the context the last 16 tokens; the prompt's bytes are the ids), for a short prompt and
     one longer than T, each continuation at least 4 distinct tokens (else the check proves
     little, and fails). Where PyTorch's two best logits are within 1e-4 of each other a
     different pick is reported as a tie rather than a failure; the rest must be equal.

Conditioning: each training check also prints the distance between the float32 and a float64
PyTorch run of the same steps, the floor of any float32 comparison. Adam's eps is 1e-4, not
GPT's 1e-8, because the k third of qkv.bias has no gradient at all: adding a constant to every
key of a row adds one constant to that row's scores, which the softmax ignores (its float64
gradient is 3e-19, against 3e-3 for the q and 2e-2 for the v third). In float32 it is rounding
noise of about 1e-10, which with eps 1e-8 Adam turns into steps of up to +-lr, different on
every implementation: the floor is then 4e-3 to 1.3e-2 on qkv.bias (3 initializations). With
eps 1e-4 that noise moves nothing and the floor is 1e-6 to 3e-6 (the other tensors are at
3e-6 to 3e-5 with eps 1e-8 too).

Needs /usr/bin/python3 with h5py, numpy and torch, and mpiexec ($MPIEXEC, else on PATH): when
any is missing this test FAILS (CI installs python3-h5py and python3-torch). About 20 s.
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
except ImportError as e:  # not a skip: the cross-check must run in CI
    print(f"FAIL: cannot import h5py/numpy/torch ({e}); install python3-h5py and python3-torch")
    sys.exit(1)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import spgraph  # noqa: E402  (the spec as PyTorch modules with shardprop's tensor names)
import splm  # noqa: E402     (shardprop's language-model steps in PyTorch)

T, VOCAB = 16, 64
SPEC = ("embedding:64:32, pos_embedding,"
        " repeat:2(residual(layernorm, attention:heads=4),"
        "          residual(layernorm, dense:64, gelu:tanh, dense:32)),"
        " layernorm, dense:64:tie")
BATCH, STEPS = 8, 8
OPT = dict(lr=3e-3, beta1=0.9, beta2=0.95, eps=1e-4, weight_decay=0.1, clip_norm=1.0,
           schedule="cosine", warmup=2, min_lr=3e-4)
OPT_FLAGS = ["--optimizer", "adamw", "--lr", "0.003", "--beta1", "0.9", "--beta2", "0.95",
             "--eps", "1e-4", "--weight-decay", "0.1", "--clip-norm", "1",
             "--schedule", "cosine", "--warmup-steps", "2", "--min-lr", "0.0003"]
SHUF_WINDOWS, SHUF_EPOCHS, SHUF_SEED = 20, 2, 5
GEN_TOKENS = 24
GEN_FLAGS = ["--optimizer", "adamw", "--lr", "0.01", "--schedule", "cosine", "--warmup-steps",
             "10", "--epochs", "100", "--max-steps", "300"]
GEN_DISTINCT = 4  # a continuation of fewer distinct tokens does not test the context
PROMPTS = ["12+7=", "3+4=7\n25+13=38\n4+"]  # the second is longer than T

PARAM_TOL = 1e-4   # per tensor, max|c - t| / max(max|t|, 1e-3)
LOSS_TOL = 1e-5    # relative, per step and for the validation loss
TIE_MARGIN = 1e-4  # top-2 logits closer than this: either pick is right


# ---- running shardprop -------------------------------------------------------------------------

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


def shardprop(*args, ranks=1, text=True):
    env = dict(os.environ, OMP_NUM_THREADS="1", ASAN_OPTIONS="detect_leaks=0")
    cmd = [EXE, *args]
    if ranks > 1:
        for k, v in MPI_ENV.items():
            env.setdefault(k, v)
        cmd = [MPIEXEC, "-n", str(ranks), "--bind-to", "none", *MPI_PRE, *cmd]
    r = subprocess.run(cmd, capture_output=True, env=env)
    if r.returncode != 0:
        _die(f"{' '.join(shlex.quote(c) for c in cmd)}: exit {r.returncode}\n"
             f"{r.stdout.decode(errors='replace')}{r.stderr.decode(errors='replace')}")
    return r.stdout.decode() if text else r.stdout


def read_metrics(path):
    with open(path) as fh:
        return [json.loads(line) for line in fh if line.strip()]


# ---- data --------------------------------------------------------------------------------------

def sums_text(n_tokens, seed):
    """Lines "a+b=c\\n" with a, b in [0, 50): n_tokens bytes of them."""
    rng = np.random.default_rng(seed)
    out = bytearray()
    while len(out) < n_tokens:
        a, b = rng.integers(0, 50, size=2)
        out += f"{a}+{b}={a + b}\n".encode()
    return np.frombuffer(bytes(out[:n_tokens]), dtype=np.uint8)


def write_tokens(path, tokens, dtype):
    with h5py.File(path, "w") as f:
        d = f.create_dataset("tokens", data=tokens.astype(dtype))
        d.attrs["vocab_size"] = np.int64(VOCAB)
        d.attrs["tokenizer"] = np.bytes_(b"bytes")


# ---- comparisons -------------------------------------------------------------------------------

def relerr(c, t, floor):
    c = np.asarray(c, dtype=np.float64)
    t = np.asarray(t, dtype=np.float64)
    return float(np.max(np.abs(c - t)) / max(float(np.max(np.abs(t))), floor)) if c.size else 0.0


def compare_states(c_state, t_state):
    """({key: rel err}, overall rel err of all tensors as one vector); a key on one side only
    or a shape mismatch is inf."""
    errs, cs, ts = {}, [], []
    for k in sorted(set(c_state) | set(t_state)):
        if k not in c_state or k not in t_state or \
                tuple(c_state[k].shape) != tuple(t_state[k].shape):
            errs[k] = float("inf")
            continue
        c, t = c_state[k].double().numpy(), t_state[k].detach().double().numpy()
        errs[k] = relerr(c, t, 1e-3)
        cs.append(c.ravel())
        ts.append(t.ravel())
    overall = relerr(np.concatenate(cs), np.concatenate(ts), 1e-3) if cs else float("inf")
    return errs, overall


def worst(errs):
    k = max(errs, key=errs.get)
    return k, errs[k]


def record(what, value, limit, ok):
    if not ok:
        print(f"FAIL {what}: {value:.3e} (limit {limit})")
    return ok


# ---- PyTorch -----------------------------------------------------------------------------------

def torch_train(init, tokens, steps, dtype=torch.float32):
    """[(epoch, ids)] steps from init.h5 in PyTorch: (state_dict, losses, grad norms)."""
    net = spgraph.load_checkpoint(init)[0].to(dtype).train()
    opt = splm.make_adamw(net.parameters(), OPT["lr"], OPT["beta1"], OPT["beta2"], OPT["eps"],
                          OPT["weight_decay"])
    sched = splm.Schedule(OPT["schedule"], OPT["lr"], OPT["warmup"], len(steps), OPT["min_lr"])
    tr = splm.Trainer(net, opt, sched, OPT["clip_norm"])
    losses, norms = [], []
    for _, ids in steps:
        x, y = splm.windows(tokens, T, ids)
        loss, norm, _ = tr.update(x, y)
        losses.append(loss)
        norms.append(norm)
    return net.state_dict(), losses, norms


def greedy(net, prompt, n):
    """PyTorch's greedy continuation: ids, and the top-2 margin of each pick."""
    seq, out, margins = list(prompt), [], []
    with torch.no_grad():
        for _ in range(n):
            ctx = torch.tensor([seq[-T:]], dtype=torch.float32)
            z = net(ctx)[0, -1]
            top = torch.topk(z, 2).values
            nxt = int(torch.argmax(z))
            out.append(nxt)
            margins.append(float(top[0] - top[1]))
            seq.append(nxt)
    return out, margins


# ---- the checks --------------------------------------------------------------------------------

def check_run(what, c_file, c_metrics, t_state, t_losses, floor):
    ok = True
    errs, overall = compare_states(spgraph.read_state(c_file), t_state)
    k, e = worst(errs)
    by_kind = {}
    for key, v in errs.items():
        kind = "qkv" if ".qkv." in key else "proj" if ".proj." in key else key.rsplit(".", 1)[1]
        by_kind[kind] = max(by_kind.get(kind, 0.0), v)
    print(f"{what}: {len(errs)} tensors, worst {k} {e:.2e}, overall {overall:.2e} ("
          + ", ".join(f"{n} {v:.1e}" for n, v in sorted(by_kind.items()))
          + f"); torch float32 vs float64 {floor:.1e}")
    ok &= record(f"{what}: parameters ({k})", e, PARAM_TOL, e <= PARAM_TOL)
    steps = [m for m in read_metrics(c_metrics) if m.get("event") == "step"]
    c_losses = [m["loss"] for m in steps]
    if [m["step"] for m in steps] != list(range(1, len(t_losses) + 1)):
        print(f"FAIL {what}: metrics steps {[m['step'] for m in steps]}, want 1..{len(t_losses)}")
        return False
    le = max(abs(c - t) / abs(t) for c, t in zip(c_losses, t_losses))
    print(f"{what}: step losses {' '.join(f'{v:.5f}' for v in c_losses)}; worst rel err {le:.1e}")
    ok &= record(f"{what}: step losses", le, LOSS_TOL, le <= LOSS_TOL)
    return ok


def check_generate(ckpt):
    net, _, _ = spgraph.load_checkpoint(ckpt)
    ok = True
    for prompt in PROMPTS:
        ids = list(prompt.encode())
        want, margins = greedy(net, ids, GEN_TOKENS)
        out = shardprop("generate", "--checkpoint", ckpt, "--prompt", prompt, "--tokens",
                        str(GEN_TOKENS), "--temperature", "0", text=False)
        # the continuation (not the prompt), then a newline
        got = list(out[:-1]) if out.endswith(b"\n") else list(out)
        first = next((i for i, (a, b) in enumerate(zip(got, want)) if a != b),
                     None if len(got) == len(want) else min(len(got), len(want)))
        shown = bytes(want).decode(errors="replace")
        if len(set(want)) < GEN_DISTINCT:
            print(f"FAIL generate {prompt!r}: PyTorch's continuation {shown!r} has "
                  f"{len(set(want))} distinct tokens (< {GEN_DISTINCT}): train the model longer")
            ok = False
        if first is None:
            print(f"generate {prompt!r}: {shown!r} as PyTorch's greedy argmax (smallest top-2 "
                  f"margin {min(margins):.2e})")
        elif first < len(want) and first < len(got) and margins[first] < TIE_MARGIN:
            print(f"generate {prompt!r}: equal for {first} tokens, then a tie (PyTorch's two "
                  f"best logits {margins[first]:.1e} apart): shardprop {bytes(got)!r}, "
                  f"PyTorch {shown!r}")
        else:
            print(f"FAIL generate {prompt!r}: shardprop printed {out!r}, PyTorch's greedy "
                  f"continuation is {shown!r} (first difference at token {first})")
            ok = False
    return ok


def check_val(ckpt, metrics, val_tokens):
    summ = [m for m in read_metrics(metrics) if m.get("event") == "summary"]
    if not summ or summ[-1].get("val_loss") is None:
        print(f"FAIL validation: no summary event with val_loss in {metrics}")
        return False
    c = summ[-1]["val_loss"]
    net, _, _ = spgraph.load_checkpoint(ckpt)
    t = splm.eval_loss(net, *splm.windows(val_tokens, T))
    e = abs(c - t) / abs(t)
    print(f"validation: shardprop val_loss {c:.6f}, PyTorch on its checkpoint {t:.6f} ({e:.1e}, "
          f"{(len(val_tokens) - 1) // T} windows)")
    return record("validation loss", e, LOSS_TOL, e <= LOSS_TOL)


def train_flags(data, init, out, metrics, extra):
    return ["train", "--data", data, "--seq-len", str(T), "--model", SPEC, "--init-from", init,
            "--seed", str(SHUF_SEED), "--batch", str(BATCH), "--threads", "1", "--quiet",
            "--log-every", "1", "--metrics", metrics, "--out", out, *OPT_FLAGS, *extra]


def run(tmp):
    ok = True
    p = lambda f: os.path.join(tmp, f)  # noqa: E731
    train_tok, val_tok = sums_text(3001, seed=1), sums_text(801, seed=2)
    shuf_tok = sums_text(SHUF_WINDOWS * T + 1, seed=3)
    write_tokens(p("train.h5"), train_tok, np.uint16)
    write_tokens(p("val.h5"), val_tok, np.uint8)
    write_tokens(p("shuf.h5"), shuf_tok, np.int32)
    train_tok, val_tok, shuf_tok = (splm.read_tokens(p(f))[0] for f in
                                    ("train.h5", "val.h5", "shuf.h5"))

    # 1. the initial checkpoint, loaded strictly
    shardprop("train", "--data", p("train.h5"), "--seq-len", str(T), "--model", SPEC, "--seed",
              "1", "--batch", str(BATCH), "--max-steps", "0", "--quiet", "--out", p("init.h5"))
    try:
        net, spec, shape = spgraph.load_checkpoint(p("init.h5"))
    except (ValueError, KeyError, spgraph.SpecError) as e:
        _die(f"init.h5 does not load into spgraph's GPT: {e}")
    with h5py.File(p("init.h5"), "r") as f:
        groups = sorted(f["/model/params"])
    print(f"init: {len(net.state_dict())} tensors in {len(groups)} groups load strictly "
          f"(input_shape {shape}; {sum(q.numel() for q in net.parameters())} parameters)")
    ok &= record("init: input_shape", 0, f"({T},)", shape == (T,))

    # 2. 8 steps in file order, 1 and 2 ranks
    steps = splm.batch_ids((len(train_tok) - 1) // T, BATCH, SHUF_SEED, False, 1, STEPS)
    t_state, t_losses, norms = torch_train(p("init.h5"), train_tok, steps)
    floor = worst(compare_states(torch_train(p("init.h5"), train_tok, steps, torch.float64)[0],
                                 t_state)[0])[1]
    print(f"torch: gradient norms before clipping {' '.join(f'{v:.3f}' for v in norms)}")
    ok &= record("clipping: the largest gradient norm", max(norms), "> 1 (the clip)",
                 max(norms) > OPT["clip_norm"])
    for ranks in (1, 2):
        out, met = p(f"np{ranks}.h5"), p(f"np{ranks}.jsonl")
        shardprop(*train_flags(p("train.h5"), p("init.h5"), out, met,
                               ["--no-shuffle", "--epochs", "1", "--max-steps", str(STEPS),
                                "--val", p("val.h5")]), ranks=ranks)
        ok &= check_run(f"{STEPS} steps, {ranks} rank{'s' if ranks > 1 else ''}", out, met,
                        t_state, t_losses, floor)

    # 3. shuffled, two epochs with a partial batch each
    steps = splm.batch_ids(SHUF_WINDOWS, BATCH, SHUF_SEED, True, SHUF_EPOCHS)
    print(f"shuffled order: {[ids.tolist() for _, ids in steps[:3]]} (epoch 1)")
    t_state, t_losses, _ = torch_train(p("init.h5"), shuf_tok, steps)
    floor = worst(compare_states(torch_train(p("init.h5"), shuf_tok, steps, torch.float64)[0],
                                 t_state)[0])[1]
    for ranks in (1, 2):
        out, met = p(f"shuf{ranks}.h5"), p(f"shuf{ranks}.jsonl")
        shardprop(*train_flags(p("shuf.h5"), p("init.h5"), out, met,
                               ["--epochs", str(SHUF_EPOCHS)]), ranks=ranks)
        ok &= check_run(f"shuffled {len(steps)} steps, {ranks} rank{'s' if ranks > 1 else ''}",
                        out, met, t_state, t_losses, floor)

    # 4. the 1-rank model's validation loss; 5. sampling, from a model trained longer
    ok &= check_val(p("np1.h5"), p("np1.jsonl"), val_tok)
    shardprop("train", "--data", p("train.h5"), "--seq-len", str(T), "--model", SPEC,
              "--init-from", p("init.h5"), "--batch", str(BATCH), "--threads", "1", "--quiet",
              "--out", p("gen.h5"), *GEN_FLAGS)
    ok &= check_generate(p("gen.h5"))
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
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        ok = run(tmp)
    print("gpt_torch:", "ok" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
