"""Tables of scripts/bench/cluster.sh: measured step times on the emulated cluster against the
cost model with alpha, beta, gamma fitted on the same links.

    cluster_report.py RESULTS            write RESULTS/table.md (printed) and results.json
    cluster_report.py --fit NET.txt P RATE   print the --network string fitted to one
                                         scale_net_bench output (ALPHA_US:GBITS:GAMMA_NS)

Measured, per run (RESULTS/runs/.../metrics.jsonl, rank 0's --metrics with --log-every 1): the
median step time over the steps of the timed epochs (epoch 1, the warm-up, dropped; a step's time
is the global batch over its samples_per_s), the median of the timed epochs' comm_hidden_fraction
and compute_s per step. Per row (hosts, rate, workload, configuration): the median over the runs.

Model, per row: scripts/scale/scale_model on the configuration's own bucket plan (its
--dry-run --json) and the compute profile of the workload at that local batch
(RESULTS/model/WL/profile-PP.json, trace_profile.py of a traced blocking run with one rank per
core), at P hosts sharing the machine's cores (compute x P / cores when P > cores), with the
network fitted at those hosts and that rate: "net apart" (ALPHA_US:GBITS:GAMMA_NS, the links
move the bytes while the cores compute) and "CPU-driven" (shm:..., nothing overlaps). The ratio
is measured / the primary model (net apart on the cluster; CPU-driven for --local runs on shared
memory). Mode: the configuration's MODEL, else blocking for --bucket-mb 0, libnbc (Open MPI
4.1's MPI_Iallreduce) for the old binary, rabenseifner (the dry run's own choice) otherwise.

Bucket sizes: among the RACE configurations, the measured winner (lowest median step), the
model's winner among the same configurations, the model's best over the dry run's choices
(0.25-64 MB, overlapped Rabenseifner, cores accounted for) and the dry run's own advice
(`shardprop train --dry-run --network NET`, RESULTS/model/WL/advice-TAG.txt: its "best MB" at P;
it times the layers alone on one core and does not know that the hosts share the cores)."""
import json
import math
import os
import re
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "scale"))
import net_report  # noqa: E402  (load, fit: the alpha-beta-gamma fit of measure_net.sh)

PLAN_PY = os.path.join(os.path.dirname(HERE), "scale", "plan.py")

BUCKETS_MB = (0.25, 0.5, 1, 2, 4, 8, 16, 32, 64)  # scale/scaleplan.c's bucket_choices_mb_


def median(xs):
    xs = sorted(x for x in xs if x is not None and not (isinstance(x, float) and math.isnan(x)))
    if not xs:
        return None
    n = len(xs)
    return xs[n // 2] if n % 2 else 0.5 * (xs[n // 2 - 1] + xs[n // 2])


def network_string(alpha, beta, gamma):
    return f"{alpha * 1e6:.4g}:{8e-9 / beta:.4g}:{gamma * 1e9:.4g}"


def fit_file(path, P):
    d = net_report.load(path)
    return net_report.fit(d, P)


# ---- measured --------------------------------------------------------------------------------------
def run_stats(path, batch):
    """(median step s, median comm_hidden_fraction, median compute s per step, timed steps) of one
    run's metrics, or None when it has no timed epoch."""
    if not os.path.exists(path):
        return None
    ev = []
    for line in open(path):
        line = line.strip()
        if line:
            try:
                ev.append(json.loads(line.replace("NaN", "null")))
            except ValueError:
                pass
    epochs = [e for e in ev if e.get("event") == "epoch"]
    if len(epochs) < 2:
        return None
    steps = [batch / e["samples_per_s"] for e in ev
             if e.get("event") == "step" and e.get("epoch", 1) >= 2 and e.get("samples_per_s")]
    prev = epochs[0]["step"]
    comp = []
    for e in epochs[1:]:
        k = e["step"] - prev
        prev = e["step"]
        if k > 0 and e.get("compute_s") is not None:
            comp.append(e["compute_s"] / k)
    if not steps:  # no step records: the epochs' mean step
        prev = epochs[0]["step"]
        for e in epochs[1:]:
            steps.append(e["time_s"] / max(1, e["step"] - prev))
            prev = e["step"]
    return {"step_s": median(steps), "hidden": median(e.get("comm_hidden_fraction") for e in epochs[1:]),
            "compute_s": median(comp), "steps": len(steps)}


# ---- model -------------------------------------------------------------------------------------------
class Model:
    """scale_model on a plan (--dry-run --json) and a compute profile (trace_profile.py's JSON),
    through scripts/scale/plan.py (the skeleton's input format), P ranks on `cores` cores."""

    def __init__(self, exe, cores):
        self.exe, self.cores, self.cache = exe, cores, {}

    def step(self, plan_path, prof_path, net, P, mode):
        key = (plan_path, prof_path, net, P, mode)
        if key not in self.cache:
            fd, inp = tempfile.mkstemp(suffix=".in")
            os.close(fd)
            try:
                subprocess.run([sys.executable, PLAN_PY, plan_path, prof_path, inp], check=True,
                               capture_output=True, text=True)
                r = subprocess.run([self.exe, inp, net, str(P), mode, str(self.cores)],
                                   capture_output=True, text=True, check=True)
                self.cache[key] = json.loads(r.stdout.strip().splitlines()[-1])
            except (subprocess.CalledProcessError, ValueError, IndexError) as e:
                self.cache[key] = {"error": str(e)}
            finally:
                os.unlink(inp)
        return self.cache[key]


def mode_of(cfg, plan, old_bin):
    if cfg.get("model"):
        return cfg["model"]
    if plan["bucket_mb"] == 0:
        return "blocking"
    if os.path.realpath(cfg["bin"]) == os.path.realpath(old_bin):
        return "libnbc"
    m = re.search(r"--allreduce[ =](\w+)", cfg["flags"])
    if m and m.group(1) in ("ring", "rabenseifner"):
        return m.group(1)
    if m and m.group(1) == "mpi":
        return "libnbc"
    return "rabenseifner"


def dry_run_advice(path, P):
    """The dry run's row for P: (best MB, step ms, bound) or (None, reason)."""
    if not os.path.exists(path):
        return None, "not run"
    text = open(path).read()
    for line in text.splitlines():
        m = re.match(r"\s+(\d+)\s+(\d+)\s+([\d.]+)ms\s+([\d.]+)ms\s+([\d.]+)ms\s+([\d.]+)%\s+(\S+)"
                     r"\s+([\d.]+)%\s+([\d.]+)%\s+(\S+)", line)
        if m and int(m.group(1)) == P:
            return {"best_mb": float(m.group(7)), "step_ms": float(m.group(5)),
                    "bound": m.group(10)}, None
    m = re.search(r"no scaling advice: (.*)", text)
    return None, (m.group(1).strip() if m else "no row for P=%d" % P)


def fmt(x, spec="{:.1f}", none="-"):
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return none
    return spec.format(0.0 if abs(x) < 5e-3 else x)


def fmt_mb(mb):
    return "-" if mb is None else f"{mb:g}"


def report(res):
    meta = json.load(open(os.path.join(res, "meta.json")))
    cores = meta["cores"]
    configs, order = {}, []
    for line in open(os.path.join(res, "configs.tsv")):
        parts = (line.rstrip("\n").split("\t") + [""] * 5)[:5]
        name, b, flags, mpi, model = parts
        configs[name] = {"bin": b, "flags": flags.strip(), "mpi": mpi.strip(), "model": model}
        order.append(name)
    runs = [json.loads(l) for l in open(os.path.join(res, "runs.jsonl")) if l.strip()]
    sys.path.insert(0, HERE)
    import workloads  # noqa: E402

    mdl = Model(meta["scale_model"], cores)
    plans, nets = {}, {}

    def plan(wl, name):  # (path, the plan) or None
        k = (wl, name)
        if k not in plans:
            p = os.path.join(res, "model", wl, f"plan-{name}.json")
            plans[k] = (p, json.load(open(p))) if os.path.exists(p) else None
        return plans[k]

    def profile(wl, P):  # its path or None
        p = os.path.join(res, "model", wl, f"profile-P{P}.json")
        return p if os.path.exists(p) else None

    def network(tag):
        if tag not in nets:
            p = os.path.join(res, "net", f"net-{tag}.txt")
            nets[tag] = None
            if os.path.exists(p) and os.path.getsize(p) > 0:
                P = int(tag.split("h-")[0])
                try:
                    nets[tag] = fit_file(p, P)
                except (KeyError, ValueError, ZeroDivisionError):
                    pass
        return nets[tag]

    # rows
    groups = {}
    for r in runs:
        k = (r["rate"], r["hosts"], r["workload"], r["config"])
        groups.setdefault(k, []).append(r)
    rows = []
    for (rate, P, wl, name), rs in groups.items():
        B = workloads.WORKLOADS[wl]["batch"]
        st = [run_stats(os.path.join(res, r["dir"], "metrics.jsonl"), B) for r in rs]
        ok = [s for s in st if s and s["step_s"]]
        row = {"rate": rate, "hosts": P, "workload": wl, "config": name, "runs": len(rs),
               "ok_runs": len(ok), "failed": sum(1 for r in rs if r["status"] != 0),
               "step_ms": fmt_none(median(s["step_s"] for s in ok), 1e3),
               "step_ms_runs": [round(s["step_s"] * 1e3, 2) for s in ok],
               "hidden": median(s["hidden"] for s in ok),
               "compute_ms": fmt_none(median(s["compute_s"] for s in ok), 1e3)}
        pl, pr, nt = plan(wl, name), profile(wl, P), network(f"{P}h-{rate}")
        row["bucket_mb"] = pl[1]["bucket_mb"] if pl else None
        if pl and pr and nt:
            mode = mode_of(configs[name], pl[1], meta["old_bin"])
            net = network_string(*nt)
            apart = mdl.step(pl[0], pr, net, P, mode)
            cpu = mdl.step(pl[0], pr, "shm:" + net, P, mode)
            prim = cpu if rate == "shm" else apart
            row.update({"model_mode": mode, "network": net,
                        "model_ms": fmt_none(prim.get("step_s"), 1e3),
                        "model_hidden": prim.get("hidden"),
                        "model_compute_ms": fmt_none(prim.get("compute_s"), 1e3),
                        "model_apart_ms": fmt_none(apart.get("step_s"), 1e3),
                        "model_cpu_ms": fmt_none(cpu.get("step_s"), 1e3),
                        "primary": "cpu-driven" if rate == "shm" else "apart"})
            if row["step_ms"] and row["model_ms"]:
                row["ratio"] = row["step_ms"] / row["model_ms"]
        rows.append(row)
    rank = {n: i for i, n in enumerate(order)}
    rows.sort(key=lambda r: (meta["rates"].index(r["rate"]) if r["rate"] in meta["rates"] else 9,
                             r["workload"], r["hosts"], rank.get(r["config"], 99)))

    # bucket-size race per (rate, workload, hosts)
    races = []
    for key in sorted({(r["rate"], r["workload"], r["hosts"]) for r in rows},
                      key=lambda k: (meta["rates"].index(k[0]) if k[0] in meta["rates"] else 9, k[1], k[2])):
        rate, wl, P = key
        cand = [r for r in rows if (r["rate"], r["workload"], r["hosts"]) == key
                and r["config"] in meta["race"] and r["step_ms"]]
        if not cand:
            continue
        meas = min(cand, key=lambda r: r["step_ms"])
        withm = [r for r in cand if r.get("model_ms")]
        modl = min(withm, key=lambda r: r["model_ms"]) if withm else None
        # configurations the model cannot tell apart (within 0.5 %) all count as its winner
        ties = [r["config"] for r in withm if modl and r["model_ms"] <= modl["model_ms"] * 1.005]
        tag = f"{P}h-{rate}"
        best = None
        pr, nt = profile(wl, P), network(tag)
        if pr and nt:
            net = network_string(*nt)
            if rate == "shm":
                net = "shm:" + net
            for mb in BUCKETS_MB:
                p = os.path.join(res, "model", wl, f"plan-mb{mb:g}.json")
                if not os.path.exists(p):
                    continue
                pl = json.load(open(p))
                s = mdl.step(p, pr, net, P, "rabenseifner").get("step_s")
                if s is not None and (best is None or s < best[1] * 0.999):
                    best = (mb, s)
                if mb * 1048576 >= pl["params"] * 4:
                    break
        adv, why = dry_run_advice(os.path.join(res, "model", wl, f"advice-{tag}.txt"), P)
        races.append({"rate": rate, "workload": wl, "hosts": P,
                      "measured": meas["config"], "measured_mb": meas["bucket_mb"],
                      "measured_ms": meas["step_ms"],
                      "all": {r["config"]: r["step_ms"] for r in cand},
                      "mbs": {r["config"]: r["bucket_mb"] for r in cand},
                      "model": modl["config"] if modl else None, "model_ties": ties,
                      "model_mb": modl["bucket_mb"] if modl else None,
                      "model_best_mb": best[0] if best else None,
                      "dry_run_mb": adv["best_mb"] if adv else None,
                      "dry_run_note": why})

    # before / after
    ba = []
    for key in sorted({(r["rate"], r["workload"], r["hosts"]) for r in rows},
                      key=lambda k: (meta["rates"].index(k[0]) if k[0] in meta["rates"] else 9, k[1], k[2])):
        by = {r["config"]: r for r in rows if (r["rate"], r["workload"], r["hosts"]) == key}
        if "before" in by and "after" in by and by["before"]["step_ms"] and by["after"]["step_ms"]:
            ba.append({"rate": key[0], "workload": key[1], "hosts": key[2],
                       "before_ms": by["before"]["step_ms"], "after_ms": by["after"]["step_ms"],
                       "before_hidden": by["before"]["hidden"], "after_hidden": by["after"]["hidden"]})

    # ---- markdown
    L = []
    L.append(f"# shardprop on the emulated cluster ({meta['date']})")
    L.append("")
    L.append(f"- CPU: {meta['cpu']} (family/model {meta['cpu_family_model']}), {cores} cores; "
             f"flags: {' '.join(meta['cpu_flags']) or 'none of avx/avx2/fma/avx512*'}"
             f"{'' if 'avx512f' in meta['cpu_flags'] else ' (no AVX-512)'}")
    L.append(f"- load (1/5/15 min) before {meta['load_before']}, after {meta.get('load_after', '?')}; "
             f"elapsed {meta.get('elapsed_s', '?')} s"
             f"{'; QUICK (smoke run: not for quoting)' if meta.get('quick') else ''}"
             f"{'; LOCAL (plain mpirun on shared memory, no emulated hosts)' if meta.get('local') else ''}")
    L.append(f"- BIN {meta['bin']}: {meta['bin_commit']} (sha256 {meta['bin_sha256']}); "
             f"OLD_BIN {meta['old_bin']}: {meta['old_bin_commit']} (sha256 {meta['old_bin_sha256']}); "
             f"harness {meta['harness_commit']}")
    L.append(f"- runs: {meta['reps']} per row (interleaved), {meta['epochs']} timed epoch(s) each after "
             f"one warm-up epoch; step = median over the timed steps, then over the runs")
    L.append("- configurations: " + "; ".join(
        f"`{n}` = {os.path.basename(configs[n]['bin'])} {configs[n]['flags'] or '(defaults)'}"
        f"{(' [mpirun ' + configs[n]['mpi'] + ']') if configs[n]['mpi'] else ''}" for n in order))
    L.append("")
    L.append("## Links (scale_net_bench, fitted as docs/scaling.md §3: medians, 1-16 MiB)")
    L.append("")
    L.append("| hosts | rate | α µs | β ns/B | bandwidth Gbit/s | γ ns/B | --network |")
    L.append("|---:|---|---:|---:|---:|---:|---|")
    for tag in sorted({f"{r['hosts']}h-{r['rate']}" for r in rows}):
        nt = network(tag)
        P, rate = tag.split("h-")
        if nt:
            a, b, g = nt
            L.append(f"| {P} | {rate} | {a*1e6:.1f} | {b*1e9:.3f} | {8e-9/b:.3g} | {g*1e9:.3f} | "
                     f"`{network_string(a, b, g)}` |")
        else:
            L.append(f"| {P} | {rate} | - | - | - | - | (no net bench) |")
    for rate in meta["rates"]:
        rr = [r for r in rows if r["rate"] == rate]
        if not rr:
            continue
        L.append("")
        L.append(f"## Rate {rate}")
        L.append("")
        L.append("| workload | hosts | config | bucket MB | step ms (median) | runs ms | comm hidden "
                 "| compute ms | model bound ms | model hidden | measured / bound | model net apart ms "
                 "| model CPU-driven ms | model mode |")
        L.append("|---|---:|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---|")
        for r in rr:
            runs_ms = " ".join(f"{x:.1f}" for x in r["step_ms_runs"])
            if r["failed"]:
                runs_ms += f" ({r['failed']} failed)"
            L.append(f"| {r['workload']} | {r['hosts']} | {r['config']} | {fmt_mb(r['bucket_mb'])} "
                     f"| {fmt(r['step_ms'])} | {runs_ms} | {fmt(r['hidden'], '{:.2f}')} "
                     f"| {fmt(r['compute_ms'])} | {fmt(r.get('model_ms'))} "
                     f"| {fmt(r.get('model_hidden'), '{:.2f}')} | {fmt(r.get('ratio'), '{:.2f}')} "
                     f"| {fmt(r.get('model_apart_ms'))} | {fmt(r.get('model_cpu_ms'))} "
                     f"| {r.get('model_mode', '-')} |")
        rc = [x for x in races if x["rate"] == rate]
        if rc:
            L.append("")
            L.append("Bucket size (configurations " + ", ".join(meta["race"]) + "):")
            L.append("")
            for x in rc:
                ties = x["model_ties"]
                same = x["measured"] in ties
                mw = " = ".join(f"{t} ({fmt_mb(x['mbs'][t])} MB)" for t in ties) or "-"
                verdict = "right" if same else "wrong"
                if len(ties) > 1 and len(ties) == len(x["all"]):
                    verdict = "no preference (every size within 0.5 %)"
                dr = (f"{fmt_mb(x['dry_run_mb'])} MB" if x["dry_run_mb"] is not None
                      else f"n/a ({x['dry_run_note']})")
                L.append(f"- {x['workload']}, {x['hosts']} hosts: measured winner **{x['measured']}** "
                         f"({fmt_mb(x['measured_mb'])} MB, {x['measured_ms']:.1f} ms; "
                         + ", ".join(f"{k} {v:.1f}" for k, v in x["all"].items())
                         + f"); model's winner among them {mw}"
                         f"{' (a tie)' if len(ties) > 1 else ''}: "
                         f"{verdict}; model's best "
                         f"of 0.25-64 MB (cores accounted for) {fmt_mb(x['model_best_mb'])} MB; "
                         f"dry-run advice {dr}")
    if ba:
        L.append("")
        L.append("## Before / after (`before` = OLD_BIN, `after` = BIN, both with their defaults)")
        L.append("")
        L.append("| rate | workload | hosts | before ms | after ms | before / after | comm hidden before | after |")
        L.append("|---|---|---:|---:|---:|---:|---:|---:|")
        for x in ba:
            L.append(f"| {x['rate']} | {x['workload']} | {x['hosts']} | {x['before_ms']:.1f} "
                     f"| {x['after_ms']:.1f} | {x['before_ms'] / x['after_ms']:.2f} "
                     f"| {fmt(x['before_hidden'], '{:.2f}')} | {fmt(x['after_hidden'], '{:.2f}')} |")
    L.append("")
    L.append("Model: scale_model with the fitted --network, compute from a traced blocking run "
             f"with one rank per core (x P / {cores} beyond {cores} hosts); 'bound' = the primary "
             "model (net apart; CPU-driven for shm). comm hidden: the trainer's comm_hidden_fraction "
             "(1 - exposed / allreduce time).")
    text = "\n".join(L) + "\n"
    open(os.path.join(res, "table.md"), "w").write(text)
    json.dump({"meta": meta, "rows": rows, "races": races, "before_after": ba},
              open(os.path.join(res, "results.json"), "w"), indent=1)
    print(text)


def fmt_none(x, scale):
    return None if x is None else x * scale


def main():
    if len(sys.argv) == 5 and sys.argv[1] == "--fit":
        a, b, g = fit_file(sys.argv[2], int(sys.argv[3]))
        print(network_string(a, b, g))
        return
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    report(sys.argv[1])


if __name__ == "__main__":
    main()
