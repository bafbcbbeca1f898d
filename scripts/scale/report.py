"""Table and plot of a scripts/scale/run.sh run.

    report.py RESULTS [--check TOL]

Reads RESULTS/results.jsonl (one line per workload, platform, P and skeleton mode: the
simulation "sim", the alpha-beta model of the same schedule "model", and the model's overlapped
ring "model_ring", Rabenseifner "model_rab" and Open MPI 4.1's choice for the trainer's
out-of-place MPI_Iallreduce "model_libnbc") and each
RESULTS/<workload>/plan.json (the trainer's bucket plan). Writes RESULTS/table.md (and prints
it) and RESULTS/scaling.png. --check TOL: exit 1 if a simulated step time is off the model's by
more than TOL (relative) or if the skeleton used another bucket plan than the trainer's."""
import json
import os
import sys


def main():
    args = sys.argv[1:]
    if not args:
        sys.exit(__doc__)
    res = args[0]
    tol = float(args[args.index("--check") + 1]) if "--check" in args else None
    rows = [json.loads(line) for line in open(os.path.join(res, "results.jsonl")) if line.strip()]
    problems = []
    by = {}
    for r in rows:
        by.setdefault((r["workload"], r["platform"], r["sim"]["P"]), {})[r["sim"]["mode"]] = r
        plan = json.load(open(os.path.join(res, r["workload"], "plan.json")))
        want = [(b["index"], b["offset"], b["floats"], b["bytes"]) for b in plan["buckets"]]
        got = [(b["index"], b["offset"], b["floats"], b["bytes"]) for b in r["sim"]["buckets"]]
        if want != got:
            problems.append(f"{r['workload']} P={r['sim']['P']}: skeleton buckets {got} != "
                            f"trainer's {want}")
        err = r["sim"]["step_s"] / r["model"]["step_s"] - 1
        r["err"] = err
        if tol is not None and abs(err) > tol:
            problems.append(f"{r['workload']} {r['platform']} P={r['sim']['P']} "
                            f"{r['sim']['mode']}: simulated {r['sim']['step_s']*1e3:.3f} ms vs "
                            f"model {r['model']['step_s']*1e3:.3f} ms ({err:+.1%})")
    lines = [
        "| workload | network | P | global batch | compute ms | step ms (overlap) | efficiency "
        "| hidden comm | model ms (diff) | step ms (blocking) | efficiency | model ms (diff) "
        "| model eff. ring | model eff. Rabenseifner | model eff. OMPI 4.1 (trainer) | wall s |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for (wl, plat, P), d in sorted(by.items(), key=lambda kv: (kv[0][0], kv[0][1], kv[0][2])):
        o, b = d.get("overlap"), d.get("blocking")
        if not o or not b:
            continue
        s, bs = o["sim"], b["sim"]
        lines.append(
            f"| {wl} | {plat} | {P} | {o['local_batch'] * P} | {s['compute_s']*1e3:.2f} "
            f"| {s['step_s']*1e3:.3f} | {s['efficiency']:.1%} | {s['hidden']:.0%} "
            f"| {o['model']['step_s']*1e3:.3f} ({o['err']:+.1%}) | {bs['step_s']*1e3:.3f} "
            f"| {bs['efficiency']:.1%} | {b['model']['step_s']*1e3:.3f} ({b['err']:+.1%}) "
            f"| {o['model_ring']['efficiency']:.1%} | {o['model_rab']['efficiency']:.1%} "
            f"| {o['model_libnbc']['efficiency']:.1%} "
            f"| {o['wall_s'] + b['wall_s']:.1f} |")
    table = "\n".join(lines) + "\n"
    open(os.path.join(res, "table.md"), "w").write(table)
    print(table)
    try:
        plot(by, os.path.join(res, "scaling.png"))
    except ImportError as e:
        print(f"report.py: no plot ({e}): run with /usr/bin/python3 (matplotlib)", file=sys.stderr)
    for p in problems:
        print("CHECK FAILED: " + p, file=sys.stderr)
    if tol is not None and not problems:
        print(f"check: {len(rows)} simulations within {tol:.0%} of the model, bucket plans equal "
              "to the trainer's")
    sys.exit(1 if problems else 0)


def plot(by, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    wls = sorted({k[0] for k in by})
    fig, axes = plt.subplots(1, len(wls), figsize=(6 * len(wls), 4.5), squeeze=False)
    colors = {"ib100": "tab:blue", "eth25": "tab:orange", "eth10": "tab:red"}
    for ax, wl in zip(axes[0], wls):
        for plat in sorted({k[1] for k in by if k[0] == wl}):
            Ps = sorted(k[2] for k in by if k[0] == wl and k[1] == plat)
            c = colors.get(plat, "gray")
            for mode, style, label in (("overlap", "-o", "overlap (sim)"),
                                       ("blocking", "--s", "blocking (sim)")):
                e = [by[(wl, plat, P)][mode]["sim"]["efficiency"] for P in Ps]
                ax.plot(Ps, e, style, color=c, label=f"{plat} {label}", ms=4)
            e = [by[(wl, plat, P)]["overlap"]["model_ring"]["efficiency"] for P in Ps]
            ax.plot(Ps, e, ":", color=c, label=f"{plat} ring model")
        ax.axhline(0.9, color="k", lw=0.5)
        ax.set_xscale("log", base=2)
        ax.set_ylim(0, 1.02)
        ax.set_xlabel("ranks P (weak scaling)")
        ax.set_ylabel("efficiency = compute / step")
        ax.set_title(wl)
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
