#!/usr/bin/env bash
# Predicted vs measured on this machine (docs/scaling.md §6): mlp-wide at local batch 32, real
# `shardprop train` runs at 2 ranks and at 4 (oversubscribed on 2 cores), with the default 4 MB
# buckets (overlapped out-of-place MPI_Iallreduce) and with --bucket-mb 0 (one blocking
# MPI_Allreduce), next to the cost model for a CPU-driven shared-memory network
# (scale/costmodel.h) with the alpha, beta, gamma that measure_net.sh measures just before.
#
#   scripts/scale/real_check.sh [--build DIR] [--out DIR] [--epochs N] [--ranks "2 4"]
#
# Compute input of the model: the trainer's own per-layer trace (--trace) of a separate blocking
# run with one rank per core (nproc ranks, the same local batch), slowest rank, medians over the
# steps after the first epoch (trace_profile.py): forward, backward, optimizer and the trainer's
# other per-step work, measured with the ranks sharing the L3 cache and memory bandwidth as in the
# real runs. For P > cores the model multiplies it by P / cores (oversubscription), and the
# forward, backward and optimizer times by kappa_P = t(P) / (P/cores x t(cores)), t(Q) = the
# slowest median step of Q concurrent scale_step_times processes: what time-sharing does to the
# caches beyond P / cores. Output: OUT/real.md (also printed) and OUT/real.jsonl.
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
    -h | --help) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "real_check.sh: unknown argument '$1'" >&2; exit 2 ;;
    esac
    shift
done
[ -n "$OUT" ] || OUT="$BUILD/scale/real-$(date +%Y%m%d-%H%M%S)"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
sp_mpi_env
PY="$(sp_python)"
SPEC="dense:1024,relu,dense:1024,relu,dense:10"
LB=32
N=8192
CORES=$(nproc)
SP="$BUILD/shardprop"
uptime >"$OUT/load.txt"
"$BUILD/scripts/bench/bench_mkdata" "$OUT/data.h5" "$N" 10 7 784 >/dev/null
echo "[real] measure_net.sh" >&2
"$HERE/measure_net.sh" --build "$BUILD" --ranks "$RANKS" --out "$OUT/net" >/dev/null
NET=$(cat "$OUT/net/network.txt") # shm:ALPHA_US:GBITS:GAMMA_NS, CPU-driven
APART=${NET#shm:}                 # the same parameters, network apart from the cores
plan() { # P MB OUT.json: the trainer's bucket plan at local batch LB
    "$SP" train --data "$OUT/data.h5" --model "$SPEC" --batch $((LB * $1)) --bucket-mb "$2" \
        --threads 1 --dry-run --json >"$3"
}
echo "[real] compute input: blocking run, $CORES ranks, traced" >&2
mpirun -n "$CORES" "$SP" train --data "$OUT/data.h5" --model "$SPEC" --batch $((LB * CORES)) \
    --epochs 2 --bucket-mb 0 --threads 1 --quiet --trace "$OUT/calib-trace.json" >/dev/null
plan "$CORES" 0 "$OUT/calib-plan.json"
steps_of() { # Q: the slowest median step of Q concurrent processes
    mpirun -n "$1" --oversubscribe "$BUILD/scripts/scale/scale_step_times" "$SPEC" 784 "$LB" 200 |
        tee "$OUT/step_times-$1.jsonl" | "$PY" -c \
        'import json, sys; print(max(json.loads(l)["step_s"] for l in sys.stdin))'
}
echo "[real] compute contention: scale_step_times x $CORES $RANKS" >&2
t_c=$(steps_of "$CORES")
: >"$OUT/profile.txt"
for P in $RANKS; do
    t_p=$t_c
    [ "$P" = "$CORES" ] || t_p=$(steps_of "$P")
    kappa=$(awk -v t="$t_p" -v c="$t_c" -v p="$P" -v n="$CORES" \
        'BEGIN { printf "%.4f", t / ((p > n ? p / n : 1) * c) }')
    echo "P=$P: kappa $kappa; $("$PY" "$HERE/trace_profile.py" "$OUT/calib-trace.json" \
        "$OUT/calib-plan.json" $((N / (LB * CORES))) "$OUT/profile-$P.json" "$kappa")" \
        >>"$OUT/profile.txt"
done
: >"$OUT/real.jsonl"
for P in $RANKS; do
    for mb in 4 0; do
        echo "[real] train: $P ranks, --bucket-mb $mb" >&2
        rm -f "$OUT/train-$P-$mb.jsonl"
        mpirun -n "$P" --oversubscribe "$SP" train --data "$OUT/data.h5" \
            --model "$SPEC" --batch $((LB * P)) --epochs "$EPOCHS" --bucket-mb "$mb" --threads 1 \
            --quiet --metrics "$OUT/train-$P-$mb.jsonl" >/dev/null
        plan "$P" "$mb" "$OUT/plan-$P-$mb.json"
        "$PY" "$HERE/plan.py" "$OUT/plan-$P-$mb.json" "$OUT/profile-$P.json" "$OUT/model-$P-$mb.in"
        # the trainer: overlapped MPI_Iallreduce (libnbc's choice) or one blocking MPI_Allreduce
        [ "$mb" = 0 ] && mode=blocking || mode=libnbc
        m=$("$BUILD/scripts/scale/scale_model" "$OUT/model-$P-$mb.in" "$NET" "$P" "$mode" "$CORES")
        a=$("$BUILD/scripts/scale/scale_model" "$OUT/model-$P-$mb.in" "$APART" "$P" "$mode" "$CORES")
        echo "{\"P\": $P, \"bucket_mb\": $mb, \"model\": $m, \"apart\": $a}" >>"$OUT/real.jsonl"
    done
done
uptime >>"$OUT/load.txt"
"$PY" - "$OUT" "$N" "$LB" "$EPOCHS" "$NET" "$CORES" <<'PY'
import json
import sys

out, n, lb, epochs, net, cores = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), \
    int(sys.argv[4]), sys.argv[5], int(sys.argv[6])
rows = ["| P | buckets | measured step ms | measured compute ms | model step ms | model compute "
        "ms | model comm ms | measured / model | model with the network apart (overlap), step ms |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|"]
for line in open(f"{out}/real.jsonl"):
    r = json.loads(line)
    P, mb, m, a = r["P"], r["bucket_mb"], r["model"], r["apart"]
    ev = [json.loads(l) for l in open(f"{out}/train-{P}-{mb}.jsonl")]
    ep = [e for e in ev if e.get("event") == "epoch"][1:]  # epoch 1 warms up
    steps = n // (lb * P)
    step = sorted(e["time_s"] / steps for e in ep)[len(ep) // 2]
    comp = sorted(e["compute_s"] / steps for e in ep)[len(ep) // 2]
    what = f"{mb} MB, overlapped" if mb else "0 (blocking)"
    rows.append(f"| {P} | {what} | {step*1e3:.1f} | {comp*1e3:.1f} | {m['step_s']*1e3:.1f} "
                f"| {m['compute_s']*1e3:.1f} | {m['comm_s']*1e3:.1f} | {step/m['step_s']:.2f} "
                f"| {a['step_s']*1e3:.1f} |")
net_md = open(f"{out}/net/net.md").read().split("\n\n")[0]
text = (net_md + "\n\ncompute input (trace of a blocking run, " + str(cores) + " ranks):\n" +
        open(f"{out}/profile.txt").read().strip() + "\n\nload: " +
        " / ".join(l.split("load average:")[-1].strip() for l in open(f"{out}/load.txt")) +
        f"\n\nmodel: --network {net}, {cores} cores; measured: median of epochs 2-{epochs}\n\n" +
        "\n".join(rows) + "\n")
open(f"{out}/real.md", "w").write(text)
print(text)
PY
