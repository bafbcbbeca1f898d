#!/usr/bin/python3
"""End-to-end checks of `shardprop train --trace`, the straggler line and `--layer-stats`.

usage: trace_test.py trace|straggler|layer_stats      (run by ctest: needs SHARDPROP_BIN,
                                                        MPIEXEC, SHARDPROP_SOURCE_DIR)

trace:       a 2-rank run with --trace, a validation set and checkpoints. The file is valid
             JSON; both ranks have named tracks (process_name "rank N", thread_name "main" and
             "comm"); every step of every rank has a data wait, a step agreement, a forward and
             a backward span per layer, exactly one allreduce span per bucket (the bucket count
             from --dry-run --json), an optimizer span; checkpoints and evaluations appear;
             durations are >= 0, spans on one track nest properly, backward runs last layer
             first, each bucket's allreduce is posted during backward and is complete when the
             allreduce wait ends.
straggler:   2 ranks, SHARDPROP_TEST_STEP_DELAY_MS on one of them (MPMD launch): the straggler
             line and the metrics record name that rank, for either rank.
layer_stats: --layer-stats with SGD without momentum on 1 and 2 ranks: one record per layer
             with parameters per logging point (every --log-every steps, each epoch's end), all
             values finite and > 0, update_ratio == lr * weight_grad_norm / weight_norm (the
             update is measured from the parameters before and after the step), and the 2-rank
             records equal the 1-rank ones (the error signal summed over ranks is the global
             batch's); then scripts/plot_metrics.py draws the file (and a file without them).
"""
import json
import math
import os
import shlex
import subprocess
import sys
import tempfile

FAILS = []
PASSED = [0]


def check(cond, msg):
    PASSED[0] += bool(cond)
    if not cond:
        FAILS.append(msg)
        print("FAIL: " + msg, file=sys.stderr)
    return cond


def env_or_die(name):
    v = os.environ.get(name)
    if not v:
        sys.exit(f"{name} is not set (run through ctest)")
    return v


BIN = env_or_die("SHARDPROP_BIN")
MPIEXEC = os.environ.get("MPIEXEC") or "mpiexec"
PRE = shlex.split(os.environ.get("MPIEXEC_PREFLAGS", ""))
SRC = env_or_die("SHARDPROP_SOURCE_DIR")
PYTHON = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable


def run(cmd, env=None, ok=True):
    e = dict(os.environ, OMP_NUM_THREADS="1")
    if env:
        e.update(env)
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=e)
    if ok and p.returncode != 0:
        print(p.stdout)
        sys.exit(f"command failed ({p.returncode}): {' '.join(cmd)}")
    return p.stdout


def mpi(np, args, env=None):
    return run([MPIEXEC, "-n", str(np), "--bind-to", "none", *PRE, BIN, *args], env)


def synth(d):
    run([BIN, "synth", "--kind", "blobs", "--n", "600", "--features", "8", "--classes", "3",
         "--seed", "7", "--out", f"{d}/train.h5"], {"ASAN_OPTIONS": "detect_leaks=0"})
    run([BIN, "synth", "--kind", "blobs", "--n", "100", "--features", "8", "--classes", "3",
         "--seed", "7", "--out", f"{d}/val.h5"], {"ASAN_OPTIONS": "detect_leaks=0"})


MODEL = "dense:24,relu,dense:16,tanh,dense:3"
NLAYERS = 5


def test_trace(d):
    common = ["train", "--data", f"{d}/train.h5", "--model", MODEL, "--batch", "60",
              "--epochs", "2", "--bucket-mb", "0.0005", "--seed", "3"]
    plan = json.loads(mpi(2, common + ["--dry-run", "--json"]).strip().splitlines()[-1])
    nb = len(plan["buckets"])
    check(nb >= 3, f"the test needs several buckets, got {nb}")
    steps = 2 * 600 // 60
    out = mpi(2, common + ["--val", f"{d}/val.h5", "--trace", f"{d}/t.json", "--checkpoint-dir",
                           f"{d}/ck", "--checkpoint-every", "4", "--out", f"{d}/final.h5"])
    check("trace: " in out and f"{d}/t.json" in out, "the run reports the trace file:\n" + out)
    check(not [n for n in os.listdir(d) if n.startswith(("t.json.tmp", ".t.json.tmp"))],
          "no temporary file left")
    with open(f"{d}/t.json") as f:
        tr = json.load(f)  # valid JSON or an exception
    ev = tr["traceEvents"]
    check(tr["otherData"]["dropped_events"] == [0, 0], "no dropped events")
    meta = [e for e in ev if e["ph"] == "M"]
    spans = [e for e in ev if e["ph"] == "X"]
    check(all(e["ph"] in ("M", "X") for e in ev), "only M and X events")
    for r in (0, 1):
        names = {(e["name"], e["tid"]): e["args"].get("name") for e in meta if e["pid"] == r}
        check(names.get(("process_name", 0)) == f"rank {r}", f"rank {r}: process_name")
        check(names.get(("thread_name", 0)) == "main", f"rank {r}: main thread named")
        check(names.get(("thread_name", 1000)) == "comm", f"rank {r}: comm track named")
        check(any(e["pid"] == r for e in spans), f"rank {r}: has spans")
    for e in spans:
        check(e["dur"] >= 0 and e["ts"] >= 0, f"negative time: {e}")
        check("step" in e["args"], f"no step: {e}")

    def by(r, s, name):
        return [e for e in spans if e["pid"] == r and e["args"]["step"] == s and e["name"] == name]

    eps = 0.01  # microseconds: the file rounds to 1 ns
    for r in (0, 1):
        for s in range(1, steps + 1):
            one = {}
            for name in ("data wait", "step agreement", "step", "forward", "backward",
                         "allreduce wait", "optimizer"):
                got = by(r, s, name)
                check(len(got) == 1, f"rank {r} step {s}: {len(got)} '{name}' spans")
                one[name] = got[0] if got else None
            evals = [e for e in spans if e["pid"] == r and e["name"] == "evaluation"]
            fl = [e for e in spans if e["pid"] == r and e["args"]["step"] == s and
                  e["name"].startswith("forward ") and
                  not any(v["ts"] <= e["ts"] <= v["ts"] + v["dur"] for v in evals)]
            bl = [e for e in spans if e["pid"] == r and e["args"]["step"] == s and
                  e["name"].startswith("backward ")]
            check(sorted(e["args"]["layer"] for e in fl) == list(range(NLAYERS)),
                  f"rank {r} step {s}: forward layer spans {[e['name'] for e in fl]}")
            check(sorted(e["args"]["layer"] for e in bl) == list(range(NLAYERS)),
                  f"rank {r} step {s}: backward layer spans {[e['name'] for e in bl]}")
            bk = {e["args"]["layer"]: e for e in bl}
            fw = {e["args"]["layer"]: e for e in fl}
            if len(bk) == NLAYERS and len(fw) == NLAYERS:
                check(bk[NLAYERS - 1]["ts"] < bk[0]["ts"], f"step {s}: backward last layer first")
                check(fw[0]["ts"] < fw[NLAYERS - 1]["ts"], f"step {s}: forward first layer first")
                check(fw[NLAYERS - 1]["ts"] + fw[NLAYERS - 1]["dur"] <= bk[NLAYERS - 1]["ts"],
                      f"step {s}: forward ends before backward")
            if None in one.values():
                continue
            st, b, w, o = one["step"], one["backward"], one["allreduce wait"], one["optimizer"]
            check(one["step agreement"]["ts"] + one["step agreement"]["dur"] <= st["ts"] + eps,
                  f"step {s}: agreement before the step")
            check(w["ts"] >= b["ts"] + b["dur"] - eps and o["ts"] >= w["ts"] + w["dur"] - eps,
                  f"step {s}: backward, allreduce wait, optimizer in order")
            check(o["ts"] + o["dur"] <= st["ts"] + st["dur"] + eps, f"step {s}: optimizer in step")
            for L, P in [(x, b) for x in bk.values()] + [(x, one["forward"]) for x in fw.values()]:
                check(P["ts"] - eps <= L["ts"] and L["ts"] + L["dur"] <= P["ts"] + P["dur"] + eps,
                      f"step {s}: {L['name']} inside {P['name']}")
            ar = [e for e in spans if e["pid"] == r and e["args"]["step"] == s and
                  e["name"].startswith("allreduce bucket")]
            ids = sorted(e["args"]["bucket"] for e in ar)
            check(ids == list(range(nb)), f"rank {r} step {s}: buckets {ids}, want 0..{nb - 1}")
            for e in ar:
                check(e["tid"] >= 1000, "allreduce spans are on a comm track")
                check(b["ts"] - eps <= e["ts"] <= w["ts"] + eps,
                      f"step {s}: bucket {e['args']['bucket']} posted during backward/finish")
                check(e["ts"] + e["dur"] <= w["ts"] + w["dur"] + eps,
                      f"step {s}: bucket {e['args']['bucket']} complete when the wait ends")
            post = [e["ts"] for e in sorted(ar, key=lambda e: e["args"]["bucket"])]
            check(post == sorted(post), f"step {s}: buckets posted in order")
        ck = [e for e in spans if e["pid"] == r and e["name"] == "checkpoint"]
        # every 4 steps before the last, and the final state
        check(len(ck) == (steps - 1) // 4 + 1, f"rank {r}: {len(ck)} checkpoint spans")
        check(len([e for e in spans if e["pid"] == r and e["name"] == "evaluation"]) == 2,
              f"rank {r}: one evaluation span per epoch")
        check(len([e for e in spans if e["pid"] == r and e["name"] == "model write"]) == 1,
              f"rank {r}: the --out write")
    # proper nesting on every track: sorted by (start, -duration), a stack of open spans
    tracks = {}
    for e in spans:
        tracks.setdefault((e["pid"], e["tid"]), []).append(e)
    for key, lst in tracks.items():
        lst.sort(key=lambda e: (e["ts"], -e["dur"]))
        stack, bad = [], 0
        for e in lst:
            while stack and stack[-1]["ts"] + stack[-1]["dur"] <= e["ts"] + eps:
                stack.pop()
            if stack and e["ts"] + e["dur"] > stack[-1]["ts"] + stack[-1]["dur"] + eps:
                bad += 1
                if bad == 1:
                    print(f"overlap on {key}: {stack[-1]} / {e}", file=sys.stderr)
            stack.append(e)
        check(bad == 0, f"track {key}: {bad} spans overlap without nesting")
    # the cap: at most N events per rank are kept, the rest counted and reported
    out = mpi(2, common + ["--trace", f"{d}/small.json", "--trace-max-events", "50"])
    with open(f"{d}/small.json") as f:
        sm = json.load(f)
    kept = [sum(1 for e in sm["traceEvents"] if e["ph"] == "X" and e["pid"] == r) for r in (0, 1)]
    dropped = sm["otherData"]["dropped_events"]
    check(kept == [50, 50] and all(x > 0 for x in dropped), f"cap 50: kept {kept}, dropped {dropped}")
    check(f"{sum(dropped)} more dropped" in out, f"the run reports the dropped events:\n{out}")
    # an unwritable trace path is refused before training, with one line naming it
    p = subprocess.run([MPIEXEC, "-n", "2", "--bind-to", "none", *PRE, BIN, *common, "--trace",
                        f"{d}/no/such/dir/t.json", "--metrics", f"{d}/bad.jsonl"],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                       env=dict(os.environ, OMP_NUM_THREADS="1"))
    trained = os.path.exists(f"{d}/bad.jsonl") and '"step"' in open(f"{d}/bad.jsonl").read()
    check(p.returncode != 0 and not trained and
          f"{d}/no/such/dir/t.json: cannot create the trace file" in p.stdout,
          f"bad --trace path: exit {p.returncode}, trained {trained}\n{p.stdout}")
    # the common origin: the two ranks' first step agreements end at about the same time (a loose
    # bound: a loaded machine may deschedule a rank right after the collective)
    a = [by(r, 1, "step agreement") for r in (0, 1)]
    if a[0] and a[1]:
        end = [x[0]["ts"] + x[0]["dur"] for x in a]
        check(abs(end[0] - end[1]) < 200e3, f"origins agree: agreement ends {end}")


def test_trace_fused(d):
    """A CNN whose conv2d+relu+maxpool run as one fused pass: one span names the whole group."""
    import h5py
    import numpy as np
    rng = np.random.default_rng(5)
    with h5py.File(f"{d}/img.h5", "w") as h:
        h["X"] = rng.standard_normal((64, 1, 8, 8)).astype(np.float32)
        h["y"] = rng.integers(0, 3, 64).astype(np.int32)
    spec = "conv2d:4:3:pad=1,conv2d:4:3:pad=1,relu,maxpool:2,flatten,dense:3"
    out = run([BIN, "train", "--data", f"{d}/img.h5", "--model", spec, "--batch", "32",
               "--epochs", "1", "--trace", f"{d}/c.json"], {"ASAN_OPTIONS": "detect_leaks=0"})
    with open(f"{d}/c.json") as f:
        spans = [e for e in json.load(f)["traceEvents"] if e["ph"] == "X"]
    names = {e["name"] for e in spans}
    fwd = [e for e in spans if e["name"] == "forward 1-3 conv2d+relu+maxpool"]
    check(len(fwd) == 2 and all(e["args"].get("layer") == 1 and e["args"].get("last_layer") == 3
                                for e in fwd), f"fused forward span: {sorted(names)}\n{out}")
    check(sum(e["name"] == "backward 2-3 relu+maxpool" for e in spans) == 2,
          f"fused backward span: {sorted(names)}")
    check("backward 1 conv2d" in names and "forward 5 dense" in names, f"plain spans: {names}")


def test_straggler(d):
    args = ["train", "--data", f"{d}/train.h5", "--model", MODEL, "--batch", "60",
            "--max-steps", "15", "--seed", "3"]
    for slow in (1, 0):
        m = f"{d}/s{slow}.jsonl"
        ctx = []
        for r in (0, 1):
            ctx += ([":"] if r else []) + ["-n", "1"]
            if r == slow:
                ctx += ["env", "SHARDPROP_TEST_STEP_DELAY_MS=40"]
            ctx += [BIN, *args, "--metrics", m]
        out = run([MPIEXEC, "--bind-to", "none", *PRE, *ctx])
        lines = [x for x in out.splitlines() if x.startswith("straggler:")]
        check(len(lines) == 1 and lines[0].startswith(f"straggler: rank {slow} is "),
              f"delay on rank {slow}: {lines}\n{out}")
        recs = [json.loads(x) for x in open(m) if '"straggler"' in x]
        check(len(recs) == 1 and recs[0]["rank"] == slow and recs[0]["compute_ms_per_step"] >= 40
              and recs[0]["slower_than_median_pct"] > 10 and recs[0]["fastest_rank"] == 1 - slow,
              f"delay on rank {slow}: record {recs}")


def layer_records(path):
    recs = {}
    with open(path) as f:
        for line in f:
            d = json.loads(line)
            if d.get("event") == "layer_stats":
                key = (d["step"], d["layer"])
                check(key not in recs, f"{path}: two records for step/layer {key}")
                recs[key] = d
    return recs


def test_layer_stats(d):
    lr = 0.05
    args = ["train", "--data", f"{d}/train.h5", "--model", MODEL, "--batch", "70", "--epochs",
            "2", "--momentum", "0", "--lr", str(lr), "--seed", "3", "--layer-stats",
            "--log-every", "4", "--quiet"]
    out = run([BIN, *args, "--metrics", f"{d}/one.jsonl"], {"ASAN_OPTIONS": "detect_leaks=0"})
    mpi(2, args + ["--metrics", f"{d}/two.jsonl"])
    one, two = layer_records(f"{d}/one.jsonl"), layer_records(f"{d}/two.jsonl")
    spe = -(-600 // 70)  # 9 steps per epoch, the last one partial
    points = sorted({s for s in range(1, 2 * spe + 1) if s % 4 == 0 or s % spe == 0})
    want = {(s, layer) for s in points for layer in (0, 2, 4)}
    check(set(one) == want, f"1 rank: records at {sorted(set(one))}, want {sorted(want)}\n{out}")
    check(set(two) == want, f"2 ranks: records at {sorted(set(two))}")
    fields = ("error_norm", "weight_grad_norm", "bias_grad_norm", "weight_norm", "bias_norm",
              "update_norm", "update_ratio")
    for recs in (one, two):
        for key, r in recs.items():
            for k in fields:
                v = r.get(k)
                check(isinstance(v, float) and math.isfinite(v) and v > 0, f"{key} {k} = {v}")
            if all(isinstance(r.get(k), float) and r[k] > 0 for k in fields):
                expect = r["lr"] * r["weight_grad_norm"] / r["weight_norm"]
                check(abs(r["update_ratio"] - expect) <= 1e-3 * expect,
                      f"{key}: update_ratio {r['update_ratio']} vs lr*|g|/|W| {expect}")
                check(r["lr"] == lr and r["kind"] == "dense", f"{key}: lr/kind {r}")
    for key in sorted(want & set(one) & set(two)):
        for k in fields:
            a, b = one[key][k], two[key][k]
            if isinstance(a, float) and isinstance(b, float):
                check(abs(a - b) <= 1e-4 * max(abs(a), 1e-12),
                      f"{key} {k}: 1 rank {a} vs 2 ranks {b}")
    # at the output the error signal is (softmax - onehot) / B for B >= 40 samples: its norm is
    # at most sqrt(2 B) / B
    for s in points:
        r = one.get((s, 4))
        if r:
            check(0 < r["error_norm"] <= math.sqrt(2 / 40), f"step {s}: output error {r}")
    # plotting: with and without layer statistics
    for src, png in ((f"{d}/two.jsonl", f"{d}/two.png"), (None, f"{d}/plain.png")):
        if src is None:
            src = f"{d}/plain.jsonl"
            with open(f"{d}/two.jsonl") as f, open(src, "w") as g:
                g.writelines(x for x in f if '"layer_stats"' not in x)
        p = subprocess.run([PYTHON, f"{SRC}/scripts/plot_metrics.py", src, "-o", png],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        check(p.returncode == 0, f"plot_metrics.py {src}: {p.stdout}")
        with open(png, "rb") as f:
            check(f.read(8) == b"\x89PNG\r\n\x1a\n", f"{png} is a PNG")


def main():
    which = sys.argv[1] if len(sys.argv) > 1 else ""
    tests = {"trace": test_trace, "straggler": test_straggler, "layer_stats": test_layer_stats}
    if which not in tests:
        sys.exit(f"usage: {sys.argv[0]} {'|'.join(tests)}")
    with tempfile.TemporaryDirectory(prefix=f"sp_{which}_") as d:
        synth(d)
        tests[which](d)
        if which == "trace":
            test_trace_fused(d)
    if FAILS:
        print(f"{which}: {len(FAILS)} checks failed")
        return 1
    print(f"{which}: ok ({PASSED[0]} checks)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
