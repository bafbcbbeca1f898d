"""Fit alpha, beta, gamma to scale_net_bench's output and compare the allreduces with the model.

    net_report.py OUT CORES P...

Reads OUT/net-P.txt (and OUT/net-P-rab.txt when present). Per P, from the medians (what a run
on a quiet machine sees; the fastest times are printed too):
  alpha  the fastest median one-way time of messages <= 64 B;
  beta   least squares slope of the median ping-pong times over 1..16 MiB (the gradient buckets'
         sizes: smaller messages stay in the caches and move 2x faster);
  gamma  the reduction cost per byte: least squares fit, through 0, of the median blocking
         MPI_Allreduce time minus its alpha-beta part (Open MPI's algorithm, scale/costmodel.h)
         against the bytes that algorithm sums per rank ((P-1)/P n for Rabenseifner), 1..16 MiB.
The "shm" parameters are the fit of the largest P <= CORES (one rank per core): written to
OUT/network.txt as the --network string "shm:ALPHA_US:GBITS:GAMMA_NS" that scale_model and
shardprop train --dry-run take, and to OUT/alpha_beta-P.txt per P ("alpha beta gamma", seconds
and seconds per byte). The table (printed, OUT/net.md) compares every measured allreduce with
the CPU-driven model of the shm parameters (times P/CORES for P > CORES, a binomial tree
ceil(P/2)/CORES)."""
import math
import os
import sys

LO, HI = 1 << 20, 16 << 20


def load(path):
    d = {}
    for kind, m, med, mn in (line.split() for line in open(path) if line.strip()):
        d.setdefault(kind, {})[int(m)] = (float(med), float(mn))
    return d


def blocking_alg(P, n):
    """Open MPI 4.1's fixed decision (coll/tuned), as sp_cost_ompi_blocking_alg, for P < 8."""
    if P < 4:
        if n < 8 or 4096 <= n < 8192 or 16384 <= n < 262144:
            return "ring"
        return "rdb" if n < 65536 else "rab"
    if P < 8:
        return "ring" if n < 16 else "rdb" if n < 8192 else "rab"
    return "rab"


def cost(alg, P, n, a, b):
    """(alpha-beta part, gamma coefficient): scale/costmodel.c's formulas."""
    lg = math.ceil(math.log2(P))
    fr = (P - 1) / P
    if alg == "ring":
        return 2 * (P - 1) * a + 2 * fr * n * b, fr * n
    if alg == "rdb":
        return lg * (a + n * b), lg * n
    if alg == "rab":
        return 2 * lg * a + 2 * fr * n * b, fr * n
    return 2 * lg * (a + n * b), lg * n  # binomial


def model(alg, P, n, p, cores):
    """The CPU-driven model: P / cores time-sharing (a binomial tree: ceil(P/2) / cores)."""
    ab, gc = cost(alg, P, n, p[0], p[1])
    busy = (P + 1) // 2 if alg == "bin" else P
    return max(1.0, busy / cores) * (ab + gc * p[2])


def fit(d, P):
    alpha = min(v[0] for m, v in d["pingpong"].items() if m <= 64)
    big = [(m, v[0]) for m, v in d["pingpong"].items() if LO <= m <= HI]
    mx = sum(m for m, _ in big) / len(big)
    my = sum(t for _, t in big) / len(big)
    beta = sum((m - mx) * (t - my) for m, t in big) / sum((m - mx) ** 2 for m, _ in big)
    pts = []
    for m, v in d["allreduce"].items():
        if LO <= m <= HI:
            ab, gc = cost(blocking_alg(P, m), P, m, alpha, beta)
            pts.append((gc, v[0] - ab))
    gamma = max(0.0, sum(x * y for x, y in pts) / sum(x * x for x, _ in pts))
    return alpha, beta, gamma


def main():
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    out, cores, ranks = sys.argv[1], int(sys.argv[2]), [int(p) for p in sys.argv[3:]]
    data = {P: load(f"{out}/net-{P}.txt") for P in ranks}
    fits = {P: fit(data[P], P) for P in ranks}
    summary = []
    for P in ranks:
        a, b, g = fits[P]
        summary.append(f"{P} ranks: alpha {a*1e6:.2f} us, beta {b*1e9:.4f} ns/B ({1e-9/b:.2f} GB/s), "
                       f"gamma {g*1e9:.4f} ns/B ({1e-9/g if g else math.inf:.2f} GB/s)  [medians, "
                       f"{LO >> 20}..{HI >> 20} MiB]")
        with open(f"{out}/alpha_beta-{P}.txt", "w") as f:
            f.write(f"{a:.6g} {b:.6g} {g:.6g}\n")
        if "sum" in data[P]:
            sm = [(m, v[0]) for m, v in data[P]["sum"].items() if LO <= m <= HI]
            summary.append(f"  the sum alone (fb[i] += rb[i], {P} processes at once): "
                           f"{sum(t for _, t in sm) / sum(m for m, _ in sm) * 1e9:.4f} ns/B")
    own = [P for P in ranks if P <= cores]
    if not own:
        sys.exit(f"net_report.py: no run with at most {cores} ranks (one per core) to fit shm on")
    shm = fits[max(own)]
    net = f"shm:{shm[0]*1e6:.4g}:{8e-9/shm[1]:.4g}:{shm[2]*1e9:.4g}"
    open(f"{out}/network.txt", "w").write(net + "\n")
    summary.append(f"shm parameters (from {max(own)} ranks on {cores} cores): --network {net}")
    lines = ["| ranks | bytes | MPI_Allreduce: median (min) / model, us | MPI_Iallreduce in place: "
             "median (min) / model (binomial) | MPI_Iallreduce out of place + copy back: median "
             "(min) / model (libnbc's choice) | same in place, Rabenseifner forced: median (min) / "
             "model |", "|---:|---:|---:|---:|---:|---:|"]
    for P in ranks:
        d = data[P]
        rp = f"{out}/net-{P}-rab.txt"
        rab = load(rp) if os.path.exists(rp) else None
        for m in sorted(d["allreduce"]):
            if m < 131072:
                continue
            a, i = d["allreduce"][m], d["iallreduce"][m]
            o = d.get("iallreduce_oop", {}).get(m)
            mb = model(blocking_alg(P, m), P, m, shm, cores)
            mi = model("bin", P, m, shm, cores)
            mo = model("bin" if P < 4 or m < 65536 else "rab", P, m, shm, cores)
            r = o_ = "-"
            if o:
                o_ = f"{o[0]*1e6:.0f} ({o[1]*1e6:.0f}) / {mo*1e6:.0f}"
            if rab:
                ri = rab["iallreduce"][m]
                r = f"{ri[0]*1e6:.0f} ({ri[1]*1e6:.0f}) / {model('rab', P, m, shm, cores)*1e6:.0f}"
            lines.append(f"| {P} | {m} | {a[0]*1e6:.0f} ({a[1]*1e6:.0f}) / {mb*1e6:.0f} "
                         f"| {i[0]*1e6:.0f} ({i[1]*1e6:.0f}) / {mi*1e6:.0f} | {o_} | {r} |")
    text = "\n".join(summary) + "\n\n" + "\n".join(lines) + "\n"
    open(f"{out}/net.md", "w").write(text)
    print(text)


if __name__ == "__main__":
    main()
