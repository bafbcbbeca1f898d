"""Per-layer compute times of a real run, from the trainer's --trace, in scale_layer_times' JSON
format (the model's compute input measured under the run's own conditions: ranks sharing the
L3 cache and memory bandwidth, the trainer's own overheads).

    trace_profile.py TRACE.json PLAN.json SKIP_STEPS OUT.json [KAPPA]

TRACE.json: `shardprop train --trace` of a blocking run (--bucket-mb 0); PLAN.json: the same
model's `--dry-run --json` (parameter offsets). Steps <= SKIP_STEPS (the first epoch: warm-up)
are left out. Per rank, the median over steps of each layer's forward and backward span (a span
of fused layers, "forward 0-2 conv2d+relu+maxpool", split evenly over them), of the
optimizer span, and of the rest of the step ("other": the step agreement, the non-finite scan
of the gradients, the loss sums: step - forward - backward - optimizer - allreduce wait); the
slowest rank (largest median forward + backward + optimizer + other) is written, with "other"
added to update_s (it is serial work after backward, like the update) and kept as "other_s".
KAPPA (default 1) multiplies forward, backward and optimizer: the contention of more concurrent
ranks than the traced run had, beyond the time-sharing the model applies itself."""
import collections
import json
import re
import sys


def median(v):
    v = sorted(v)
    return v[len(v) // 2] if v else 0.0


def main():
    if len(sys.argv) not in (5, 6):
        sys.exit(__doc__)
    kappa = float(sys.argv[5]) if len(sys.argv) > 5 else 1.0
    tr, plan, skip, out = json.load(open(sys.argv[1])), json.load(open(sys.argv[2])), \
        int(sys.argv[3]), sys.argv[4]
    per = collections.defaultdict(lambda: collections.defaultdict(float))  # (rank, step) -> name
    for e in tr["traceEvents"]:
        step = e.get("args", {}).get("step") if e.get("ph") == "X" else None
        if step is not None and step > skip:
            name, dur = e["name"], e["dur"] * 1e-6
            # a fused span ("forward 0-2 conv2d+relu+maxpool"): its time split evenly over its
            # layers, each under its own name ("forward 0 conv2d", ...)
            m = re.match(r"(forward|backward) (\d+)-(\d+) (\S+)$", name)
            if m and len(m.group(4).split("+")) == int(m.group(3)) - int(m.group(2)) + 1:
                kinds = m.group(4).split("+")
                for k, kind in enumerate(kinds):
                    per[(e["pid"], step)][f"{m.group(1)} {int(m.group(2)) + k} {kind}"] += \
                        dur / len(kinds)
            else:
                per[(e["pid"], step)][name] += dur
    nl = len(plan["layers"])
    best = None
    for rank in sorted({r for r, _ in per}):
        steps = [v for (r, _), v in per.items() if r == rank and "step" in v]
        if not steps:
            continue
        fw = [median(s.get(f"forward {i} {plan['layers'][i]['name']}", 0) for s in steps)
              for i in range(nl)]
        bw = [median(s.get(f"backward {i} {plan['layers'][i]['name']}", 0) for s in steps)
              for i in range(nl)]
        upd = median(s.get("optimizer", 0) for s in steps)
        other = median(s["step"] - s.get("forward", 0) - s.get("backward", 0) -
                       s.get("optimizer", 0) - s.get("allreduce wait", 0) for s in steps)
        tot = sum(fw) + sum(bw) + upd + other
        if best is None or tot > best[0]:
            best = (tot, rank, fw, bw, upd, other, len(steps))
    if best is None:
        sys.exit(f"trace_profile.py: {sys.argv[1]}: no steps after step {skip}")
    _, rank, fw, bw, upd, other, n = best
    fw, bw, upd = [kappa * t for t in fw], [kappa * t for t in bw], kappa * upd
    layers = [{"index": i, "name": L["name"],
               "param_offset": L["param_offset"] if L["params"] > 0 else -1,
               "forward_s": fw[i], "backward_s": bw[i]} for i, L in enumerate(plan["layers"])]
    json.dump({"source": sys.argv[1], "rank": rank, "steps": n, "kappa": kappa,
               "params": plan["params"],
               "forward_s": sum(fw), "backward_s": sum(bw), "optimizer_s": upd, "other_s": other,
               "update_s": upd + other, "layers": layers}, open(out, "w"))
    print(f"rank {rank}, {n} steps, x {kappa:.3f}: forward {sum(fw)*1e3:.2f} ms, backward {sum(bw)*1e3:.2f} ms, "
          f"optimizer {upd*1e3:.2f} ms, other {other*1e3:.2f} ms")


if __name__ == "__main__":
    main()
