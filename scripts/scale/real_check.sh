#!/usr/bin/env bash
# Predicted vs simulated vs measured on this machine (docs/scaling.md): mlp-wide at local batch
# 32, real `shardprop train` runs at 2 ranks and at 4 (oversubscribed on 2 cores), with the
# default 4 MB buckets (overlapped out-of-place MPI_Iallreduce) and with --bucket-mb 0 (one blocking
# MPI_Allreduce), next to the alpha-beta model and the SMPI skeleton on a platform with the
# alpha, beta that measure_net.sh measures here just before.
#
#   scripts/scale/real_check.sh [--build DIR] [--out DIR] [--epochs N] [--ranks "2 4"]
#
# Compute in the model and the skeleton: the layer times measured alone (scale_layer_times),
# times P/cores when the ranks outnumber the cores. Output: OUT/real.md (also printed).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
# shellcheck source=../lib/common.sh
source "$ROOT/scripts/lib/common.sh"
BUILD="$ROOT/build"
OUT=""
EPOCHS=3
RANKS="2 4"
while [ $# -gt 0 ]; do
    case "$1" in
    --build) BUILD="$(cd "$2" && pwd)"; shift ;;
    --out) OUT="$2"; shift ;;
    --epochs) EPOCHS="$2"; shift ;;
    --ranks) RANKS="$2"; shift ;;
    -h | --help) sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "real_check.sh: unknown argument '$1'" >&2; exit 2 ;;
    esac
    shift
done
[ -n "$OUT" ] || OUT="$BUILD/scale/real-$(date +%Y%m%d-%H%M%S)"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
sp_mpi_env
SPEC="dense:1024,relu,dense:1024,relu,dense:10"
LB=32
N=8192
CORES=$(nproc)
uptime >"$OUT/load.txt"
"$BUILD/scripts/bench/bench_mkdata" "$OUT/data.h5" "$N" 10 7 784 >/dev/null
"$HERE/measure_net.sh" --build "$BUILD" --ranks "$RANKS" --out "$OUT/net" >/dev/null
for P in $RANKS; do
    for mb in 4 0; do
        echo "[real] train: $P ranks, --bucket-mb $mb" >&2
        rm -f "$OUT/train-$P-$mb.jsonl"
        mpirun -n "$P" --oversubscribe "$BUILD/shardprop" train --data "$OUT/data.h5" \
            --model "$SPEC" --batch $((LB * P)) --epochs "$EPOCHS" --bucket-mb "$mb" --threads 1 \
            --quiet --metrics "$OUT/train-$P-$mb.jsonl" >/dev/null
        read -r a b <"$OUT/net/alpha_beta-$P.txt"
        net=$(awk -v a="$a" -v b="$b" 'BEGIN { printf "%.4g:%.4g", a * 1e6, 8e-9 / b }')
        scale=$(awk -v p="$P" -v c="$CORES" 'BEGIN { print (p > c ? p / c : 1) }')
        "$HERE/run.sh" "$SPEC" --shape 784 --local-batch "$LB" --platforms "$net" --ranks "$P" \
            --bucket-mb "$mb" --compute-scale "$scale" --no-build --build "$BUILD" \
            --results "$OUT/sim-$P-$mb" >/dev/null
    done
done
uptime >>"$OUT/load.txt"
"$(sp_python)" - "$OUT" "$N" "$LB" $RANKS <<'PY'
import json
import sys

out, n, lb, ranks = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), [int(p) for p in sys.argv[4:]]
rows = ["| P | buckets | measured step ms | measured compute ms | measured hidden | model step ms "
        "(trainer as is) | simulated step ms (skeleton: ring surrogate / blocking) | model compute ms "
        "| meas./model |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|"]
for P in ranks:
    for mb in (4, 0):
        ev = [json.loads(l) for l in open(f"{out}/train-{P}-{mb}.jsonl")]
        ep = [e for e in ev if e.get("event") == "epoch"][1:]  # epoch 1 warms up
        steps = n // (lb * P)
        step = sorted(e["time_s"] / steps for e in ep)[len(ep) // 2]
        comp = sorted(e["compute_s"] / steps for e in ep)[len(ep) // 2]
        hid = sorted((e["comm_hidden_fraction"] or 0) for e in ep)[len(ep) // 2]
        sims = [json.loads(l) for l in open(f"{out}/sim-{P}-{mb}/results.jsonl")]
        ov = [s for s in sims if s["sim"]["mode"] == "overlap"][0]
        bl = [s for s in sims if s["sim"]["mode"] == "blocking"][0]
        if mb:  # the trainer: overlapped MPI_Iallreduce (Open MPI 4.1: binomial below 4 ranks,
            # Rabenseifner from 4)
            model, sim = ov["model_libnbc"]["step_s"], ov["sim"]["step_s"]
            what = "4 MB, overlapped"
        else:  # one blocking MPI_Allreduce after backward
            model, sim = bl["model"]["step_s"], bl["sim"]["step_s"]
            what = "0 (blocking)"
        rows.append(f"| {P} | {what} | {step*1e3:.1f} | {comp*1e3:.1f} | {hid:.0%} "
                    f"| {model*1e3:.1f} | {sim*1e3:.1f} | {ov['model']['compute_s']*1e3:.1f} "
                    f"| {step/model:.2f} |")
text = open(f"{out}/net/net.md").read().split("\n\n")[0] + "\n\nload: " + \
    " / ".join(l.split("load average:")[-1].strip() for l in open(f"{out}/load.txt")) + \
    "\n\n" + "\n".join(rows) + "\n"
open(f"{out}/real.md", "w").write(text)
print(text)
PY
