"""Fit alpha and beta to scale_net_bench's output and compare the allreduces with the model.

    net_report.py OUT P...

Reads OUT/net-P.txt (and OUT/net-P-rab.txt when present); writes OUT/alpha_beta-P.txt
("alpha beta" in seconds and seconds per byte) and OUT/net.md (also printed)."""
import math
import os
import sys


def load(path):
    d = {}
    for kind, m, med, mn in (line.split() for line in open(path) if line.strip()):
        d.setdefault(kind, {})[int(m)] = (float(med), float(mn))
    return d


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    out, ranks = sys.argv[1], [int(p) for p in sys.argv[2:]]
    lines = ["| ranks | bytes | MPI_Allreduce: median (min) / model, us | MPI_Iallreduce in place: "
             "median (min) / model (binomial) | same, Rabenseifner forced: median (min) / model |",
             "|---:|---:|---:|---:|---:|"]
    summary = []
    for P in ranks:
        d = load(f"{out}/net-{P}.txt")
        rp = f"{out}/net-{P}-rab.txt"
        rab = load(rp) if os.path.exists(rp) else None
        # the hardware's capability: the fastest ping-pong times; alpha from <= 64 B, beta the
        # least squares slope over 64 KiB .. 1 MiB (bigger messages leave the caches)
        pp = {m: v[1] for m, v in d["pingpong"].items()}
        alpha = min(t for m, t in pp.items() if m <= 64)
        big = [(m, t) for m, t in pp.items() if 65536 <= m <= (1 << 20)]
        mx = sum(m for m, _ in big) / len(big)
        my = sum(t for _, t in big) / len(big)
        beta = sum((m - mx) * (t - my) for m, t in big) / sum((m - mx) ** 2 for m, _ in big)
        lg = math.ceil(math.log2(P))
        summary.append(f"{P} ranks: alpha {alpha*1e6:.2f} us, beta {beta*1e9:.4f} ns/B "
                       f"({1e-9/beta:.2f} GB/s)  [fastest ping-pong times]")
        for m in sorted(d["allreduce"]):
            if m < 4096:
                continue
            # blocking: Open MPI 4.1 picks Rabenseifner (or a segmented ring, the same cost) at
            # these sizes; the in-place MPI_Iallreduce: binomial reduce + bcast
            mrab = 2 * lg * alpha + 2 * (P - 1) / P * m * beta
            mbin = 2 * lg * (alpha + m * beta)
            a, i = d["allreduce"][m], d["iallreduce"][m]
            r = "-"
            if rab:
                ri = rab["iallreduce"][m]
                r = f"{ri[0]*1e6:.0f} ({ri[1]*1e6:.0f}) / {mrab*1e6:.0f}"
            lines.append(f"| {P} | {m} | {a[0]*1e6:.0f} ({a[1]*1e6:.0f}) / {mrab*1e6:.0f} "
                         f"| {i[0]*1e6:.0f} ({i[1]*1e6:.0f}) / {mbin*1e6:.0f} | {r} |")
        with open(f"{out}/alpha_beta-{P}.txt", "w") as f:
            f.write(f"{alpha:.6g} {beta:.6g}\n")
    text = "\n".join(summary) + "\n\n" + "\n".join(lines) + "\n"
    open(f"{out}/net.md", "w").write(text)
    print(text)


if __name__ == "__main__":
    main()
