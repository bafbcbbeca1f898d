#!/usr/bin/env bash
# Measure the alpha-beta-gamma parameters of this machine's MPI (shared memory) with
# scale_net_bench: ping-pong and allreduces at 2 ranks, and at 4 ranks (oversubscribed on a
# 2-core machine), and compare the allreduces with the model (docs/scaling.md §3).
#
#   scripts/scale/measure_net.sh [--build DIR] [--max-bytes N] [--ranks "2 4"] [--out DIR]
#
# Output: per rank count the raw lines (OUT/net-P.txt; from 4 ranks on also OUT/net-P-rab.txt,
# with --mca coll_libnbc_iallreduce_algorithm 3); alpha, beta (ping-pong) and gamma (blocking
# allreduce minus its alpha-beta part) fitted to the medians over 1..16 MiB (net_report.py),
# OUT/alpha_beta-P.txt ("alpha beta gamma"), OUT/network.txt (the shm parameters of one rank per
# core as a --network string, shm:ALPHA_US:GBITS:GAMMA_NS) and a table of measured vs modelled
# allreduce times (printed, OUT/net.md).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
# shellcheck source=../lib/common.sh
source "$ROOT/scripts/lib/common.sh"
BUILD="$ROOT/build"
MAX=$((16 << 20))
RANKS="2 4"
OUT=""
while [ $# -gt 0 ]; do
    case "$1" in
    --build) BUILD="$(cd "$2" && pwd)"; shift ;;
    --max-bytes) MAX="$2"; shift ;;
    --ranks) RANKS="$2"; shift ;;
    --out) OUT="$2"; shift ;;
    -h | --help) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "measure_net.sh: unknown argument '$1'" >&2; exit 2 ;;
    esac
    shift
done
[ -n "$OUT" ] || OUT="$BUILD/scale/net-$(date +%Y%m%d-%H%M%S)"
mkdir -p "$OUT"
BENCH="$BUILD/scripts/scale/scale_net_bench"
[ -x "$BENCH" ] || cmake --build "$BUILD" -j2 --target scale_net_bench >&2
sp_mpi_env
for P in $RANKS; do
    echo "[net] $P ranks..." >&2
    mpirun -n "$P" --oversubscribe "$BENCH" "$MAX" >"$OUT/net-$P.txt"
    if [ "$P" -ge 4 ]; then
        # the trainer's in-place MPI_Iallreduce with Rabenseifner forced instead of binomial
        echo "[net] $P ranks, coll_libnbc_iallreduce_algorithm 3..." >&2
        mpirun -n "$P" --oversubscribe --mca coll_libnbc_iallreduce_algorithm 3 "$BENCH" "$MAX" \
            >"$OUT/net-$P-rab.txt"
    fi
done
# shellcheck disable=SC2086
"$(sp_python)" "$HERE/net_report.py" "$OUT" "$(nproc)" $RANKS
