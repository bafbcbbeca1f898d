"""Turn run.sh's raw measurements (RESULTS/raw.jsonl) into the tables and files of issues 7, 20.

    python3 report.py RESULTS_DIR     -> stdout markdown; RESULTS_DIR/{table.md,results.json,results.csv}

Statistics: the median over the timed windows (epoch 1 / the first window is the warm-up).
GFLOP/s = median samples/s x training FLOPs per sample (workloads.flops_per_sample).
A language model (gpt) trains on T tokens per sample: tokens/s = samples/s x T.
% of peak: against the FMA peak measured on min(ranks x threads, CPUs) cores in the same run.
"""
import csv
import json
import math
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import workloads as wl  # noqa: E402


def median(xs):
    xs = [x for x in xs if x is not None and not (isinstance(x, float) and math.isnan(x))]
    return statistics.median(xs) if xs else None


def fmt(x, spec="{:.0f}", none="n/a"):
    return none if x is None else spec.format(x)


def main():
    d = sys.argv[1]
    raw = [json.loads(l) for l in open(os.path.join(d, "raw.jsonl")) if l.strip()]
    machine = next((r for r in raw if r["kind"] == "machine"), {})
    after = next((r for r in raw if r["kind"] == "machine_after"), {})
    peaks = {r["threads"]: r for r in raw if r["kind"] == "peak"}
    baseline = {r["ranks"]: r["rss_mb"] for r in raw if r["kind"] == "baseline"}
    ncpu = machine.get("ncpu", 1)
    rows = []
    for r in raw:
        if r["kind"] != "run":
            continue
        w = wl.WORKLOADS[r["workload"]]
        _, train_flops = wl.flops_per_sample(w["spec"], w["shape"])
        sps = median(r["samples_per_s"])
        tok = wl.tokens_per_sample(r["workload"])
        cores = min(r["ranks"] * r["threads"], ncpu)
        peak = peaks.get(cores, {}).get("gflops")
        gflops = sps * train_flops / 1e9 if sps else None
        row = {
            "workload": r["workload"], "framework": r["framework"],
            "version": r.get("version", ""),
            "layout": f"{r['ranks']}x{r['threads']}", "ranks": r["ranks"],
            "threads": r["threads"], "windows": len(r["samples_per_s"]),
            "samples_per_s": sps,
            "samples_per_s_min": min(r["samples_per_s"]) if r["samples_per_s"] else None,
            "samples_per_s_max": max(r["samples_per_s"]) if r["samples_per_s"] else None,
            "tokens_per_sample": tok, "tokens_per_s": sps * tok if sps and tok else None,
            "tokens_from": r.get("tokens_from"),
            "mflop_per_sample": train_flops / 1e6, "gflops": gflops,
            "peak_gflops": peak, "pct_of_peak": 100 * gflops / peak if gflops and peak else None,
            "peak_rss_mb_per_rank": max(r.get("peak_rss_mb_per_rank") or [0]) or None,
            "comm_hidden_fraction": median(r.get("comm_hidden_fraction", [])),
            "comm_s": median(r.get("comm_s", [])), "compute_s": median(r.get("compute_s", [])),
            # batch norm's statistics: over the global batch (shardprop's default, and any one
            # process), or each rank's own (pytorch-ddp: no SyncBatchNorm on CPU)
            "bn_stats": (r.get("bn_stats", "global") if any(
                k == "batchnorm" for k, _ in wl.layers(w["spec"], w["shape"])) else None),
        }
        if r["framework"].startswith("shardprop"):
            # what the memory should be: the trainer's own plan (--dry-run --json of the same
            # run: parameters, gradients, optimizer state, activations of the local batch, data
            # cache and batch buffers), against the peak RSS with and without the runtime's own
            # (the baseline run: code, MPI, HDF5, OpenMP)
            try:
                plan = json.load(open(os.path.join(
                    d, f"{r['framework']}-{r['workload']}-{r['ranks']}x{r['threads']}",
                    "plan.json")))
                row["plan_mb"] = plan["memory"]["total"] / 2**20
            except (OSError, ValueError, KeyError):
                row["plan_mb"] = None
            rss, base = row["peak_rss_mb_per_rank"], baseline.get(r["ranks"])
            if rss and row["plan_mb"]:
                row["rss_over_plan"] = rss / row["plan_mb"]
                if base:
                    row["runtime_rss_mb"] = base
                    row["rss_beyond_runtime_over_plan"] = (rss - base) / row["plan_mb"]
        rows.append(row)

    def rss_plan(r):
        if r.get("rss_over_plan") is None:
            return "-"
        out = f"{r['rss_over_plan']:.2f} of {r['plan_mb']:.0f} MB"
        if r.get("rss_beyond_runtime_over_plan") is not None:
            out += f" ({r['rss_beyond_runtime_over_plan']:.2f})"
        return out

    lines = []
    lines.append(f"CPU: {machine.get('cpu', '?')} ({ncpu} CPUs), {machine.get('date', '?')}, "
                 f"load {machine.get('load_before', '?')} before / {after.get('load_after', '?')} "
                 f"after{'  (QUICK run: not for quoting)' if machine.get('quick') else ''}")
    lines.append("FMA peak (FP32, measured by bench_fma_peak, best of 7): " + ", ".join(
        f"{t} core{'s' if t > 1 else ''} {p['gflops']:.1f} GFLOP/s ({p['isa']})"
        for t, p in sorted(peaks.items())))
    lines.append("")
    if baseline:
        lines.append("Runtime alone (peak RSS of a 50-parameter run: code, MPI, HDF5, OpenMP): " +
                     ", ".join(f"{fmt(v, '{:.1f}')} MB per rank at {k} rank{'s' if k > 1 else ''}"
                               for k, v in sorted(baseline.items())))
    lines.append("")
    lines.append("| workload | framework | layout | samples/s (median) | min..max | tokens/s | "
                 "GFLOP/s | % of peak | peak RSS/rank MB | RSS / plan (without runtime) | "
                 "comm hidden |")
    lines.append("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    small = "{:.1f}"  # a language model's samples/s are tens, not thousands
    for r in rows:
        sf = small if r["tokens_per_sample"] else "{:.0f}"
        lines.append(
            f"| {r['workload']} | {r['framework']} | {r['layout']} | "
            f"{fmt(r['samples_per_s'], sf)} | "
            f"{fmt(r['samples_per_s_min'], sf)}..{fmt(r['samples_per_s_max'], sf)} | "
            f"{fmt(r['tokens_per_s'], none='-')} | "
            f"{fmt(r['gflops'], '{:.1f}')} | {fmt(r['pct_of_peak'], '{:.1f}')} | "
            f"{fmt(r['peak_rss_mb_per_rank'])} | {rss_plan(r)} | "
            f"{fmt(r['comm_hidden_fraction'], '{:.2f}', '-')} |")
    local = sorted({r["workload"] for r in rows if r["bn_stats"] == "local"})
    if local:
        lines.append("")
        lines.append(f"Batch norm ({', '.join(local)}): pytorch-ddp normalizes with each rank's "
                     "own statistics (DDP refuses SyncBatchNorm on CPU modules); shardprop (every "
                     "layout) and the one-process peers with those of the global batch.")
    srcs = sorted({r["tokens_from"] for r in rows if r.get("tokens_from")})
    if srcs:
        lines.append("")
        lines.append(f"Token data of shardprop: {' and '.join(srcs)} bytes "
                     "(fortunes: the text of /usr/share/games/fortunes; random: uniform bytes); "
                     "the peers train on random tokens held in memory.")
    # ratios: shardprop's best layout vs the best peer layout, and per layout
    lines.append("")
    lines.append("| workload | shardprop best (layout) | % of peak | best peer (framework, layout) "
                 "| % of peak | ratio | vs pytorch same layout | vs jax same layout | 2x1 / 1x1 |")
    lines.append("|---|---|---:|---|---:|---:|---|---|---:|")

    def rate(r):  # the summary's throughput: tokens/s for a language model, else samples/s
        if r is None:
            return "n/a"
        return (f"{fmt(r['tokens_per_s'])} tok/s" if r["tokens_per_s"]
                else fmt(r["samples_per_s"]))
    summary = []
    for name in wl.WORKLOADS:
        mine = [r for r in rows if r["workload"] == name and r["framework"] == "shardprop"
                and r["samples_per_s"]]
        peers = [r for r in rows if r["workload"] == name
                 and not r["framework"].startswith("shardprop") and r["samples_per_s"]]
        if not mine and not peers:
            continue
        # (no shardprop row: its run failed, or the peers were measured alone)
        best = max(mine, key=lambda r: r["samples_per_s"]) if mine else None
        bp = max(peers, key=lambda r: r["samples_per_s"]) if peers else None
        ratio = best["samples_per_s"] / bp["samples_per_s"] if best and bp else None

        def same(fw_prefix):
            out = []
            for m in mine:
                p = [r for r in peers if r["framework"].startswith(fw_prefix)
                     and r["layout"] == m["layout"]]
                if p:
                    out.append(f"{m['layout']} {m['samples_per_s'] / p[0]['samples_per_s']:.2f}x")
            return ", ".join(out) or "n/a"
        by = {m["layout"]: m["samples_per_s"] for m in mine}
        scale = by["2x1"] / by["1x1"] if "2x1" in by and "1x1" in by else None
        lines.append(
            f"| {name} | {rate(best)}{' (' + best['layout'] + ')' if best else ''} | "
            f"{fmt(best and best['pct_of_peak'], '{:.1f}')} | "
            f"{rate(bp) + ' (' + bp['framework'] + ', ' + bp['layout'] + ')' if bp else 'n/a'} | "
            f"{fmt(bp and bp['pct_of_peak'], '{:.1f}')} | "
            f"{fmt(ratio, '{:.2f}x')} | {same('pytorch')} | {same('jax')} | "
            f"{fmt(scale, '{:.2f}x')} |")
        summary.append({"workload": name,
                        "shardprop_best": best["samples_per_s"] if best else None,
                        "shardprop_best_layout": best["layout"] if best else None,
                        "shardprop_best_tokens_per_s": best["tokens_per_s"] if best else None,
                        "shardprop_best_pct_of_peak": best["pct_of_peak"] if best else None,
                        "best_peer": bp["framework"] if bp else None,
                        "best_peer_layout": bp["layout"] if bp else None,
                        "best_peer_samples_per_s": bp["samples_per_s"] if bp else None,
                        "best_peer_tokens_per_s": bp["tokens_per_s"] if bp else None,
                        "best_peer_pct_of_peak": bp["pct_of_peak"] if bp else None,
                        "ratio": ratio, "scaling_2x1_over_1x1": scale})
    det = [r for r in rows if r["framework"] == "shardprop-det" and r["samples_per_s"]]
    if det:
        lines.append("")
        lines.append("| workload | layout | default samples/s | --deterministic samples/s | "
                     "deterministic / default |")
        lines.append("|---|---|---:|---:|---:|")
        for dr in det:
            base = [r for r in rows if r["framework"] == "shardprop" and r["samples_per_s"]
                    and r["workload"] == dr["workload"] and r["layout"] == dr["layout"]]
            b = base[0]["samples_per_s"] if base else None
            lines.append(f"| {dr['workload']} | {dr['layout']} | {fmt(b)} | "
                         f"{fmt(dr['samples_per_s'])} | "
                         f"{fmt(dr['samples_per_s'] / b if b else None, '{:.3f}')} |")
    gemm = [r for r in raw if r["kind"] == "gemm"]
    if gemm:
        lines.append("")
        lines.append("GEMM shapes of the workloads (GFLOP/s, median of 7; % of the FMA peak of "
                     "the same core count):")
        lines.append("")
        lines.append("| GEMM | ta,tb | M x N x K | threads | sp_gemm | % peak | torch.mm | % peak |")
        lines.append("|---|---|---|---:|---:|---:|---:|---:|")
        keys = []
        for g in gemm:
            k = (g["label"], g["threads"])
            if k not in keys:
                keys.append(k)
        for label, t in keys:
            s = next((g for g in gemm if g["label"] == label and g["threads"] == t
                      and g["framework"] == "shardprop"), None)
            p = next((g for g in gemm if g["label"] == label and g["threads"] == t
                      and g["framework"] == "pytorch"), None)
            g0 = s or p
            pk = peaks.get(min(t, ncpu), {}).get("gflops")
            lines.append(
                f"| {label} | {g0['ta']},{g0['tb']} | {g0['M']}x{g0['N']}x{g0['K']} | {t} | "
                f"{fmt(s and s['gflops'], '{:.1f}')} | "
                f"{fmt(s and pk and 100 * s['gflops'] / pk, '{:.0f}')} | "
                f"{fmt(p and p['gflops'], '{:.1f}')} | "
                f"{fmt(p and pk and 100 * p['gflops'] / pk, '{:.0f}')} |")
    text = "\n".join(lines) + "\n"
    sys.stdout.write(text)
    open(os.path.join(d, "table.md"), "w").write(text)
    json.dump({"machine": machine, "machine_after": after, "peaks": list(peaks.values()),
               "runs": rows, "summary": summary, "gemm": gemm},
              open(os.path.join(d, "results.json"), "w"), indent=1)
    with open(os.path.join(d, "results.csv"), "w", newline="") as f:
        cols = ["workload", "framework", "version", "layout", "ranks", "threads", "windows",
                "samples_per_s", "samples_per_s_min", "samples_per_s_max", "tokens_per_sample",
                "tokens_per_s", "tokens_from", "mflop_per_sample",
                "gflops", "peak_gflops", "pct_of_peak", "peak_rss_mb_per_rank", "plan_mb",
                "rss_over_plan", "runtime_rss_mb", "rss_beyond_runtime_over_plan",
                "comm_hidden_fraction", "comm_s", "compute_s", "bn_stats"]
        wr = csv.DictWriter(f, fieldnames=cols, extrasaction="ignore")
        wr.writeheader()
        for r in rows:
            wr.writerow(r)


def check(d):
    """--check: every run has the fields the issue asks for (the CTest smoke test). Speed is
    never asserted, only that numbers were measured."""
    res = json.load(open(os.path.join(d, "results.json")))
    errors = []
    if not res["peaks"] or any(not p.get("gflops") for p in res["peaks"]):
        errors.append("no FMA peak")
    if not res["runs"]:
        errors.append("no runs")
    for r in res["runs"]:
        name = f"{r['framework']} {r['workload']} {r['layout']}"
        for k in ("samples_per_s", "gflops", "pct_of_peak", "peak_rss_mb_per_rank",
                  "mflop_per_sample"):
            if not isinstance(r.get(k), (int, float)) or not r[k] > 0:
                errors.append(f"{name}: {k} missing or not positive ({r.get(k)})")
        if "comm_hidden_fraction" not in r:
            errors.append(f"{name}: comm_hidden_fraction missing")
        if r["framework"].startswith("shardprop") and not r.get("rss_over_plan"):
            errors.append(f"{name}: no memory plan to compare the peak RSS with")
        if r["ranks"] > 1 and r["framework"] == "shardprop" and r.get("comm_s") is None:
            errors.append(f"{name}: comm_s missing")
    for e in errors:
        print("check: " + e, file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[2] == "--check":
        sys.exit(check(sys.argv[1]))
    main()
