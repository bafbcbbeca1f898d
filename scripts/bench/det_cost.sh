#!/usr/bin/env bash
# The cost of --deterministic (issue 9), measured as pairs: the same training run in the default
# mode and at once with --deterministic (in alternating order), N times in turn for each layout,
# so that load changes on a shared machine hit both sides of a pair alike. Each run's throughput is the median over its
# epochs after the first (warm-up); the result per layout is the median of the N pair ratios
# (deterministic / default) and their range.
#
#   scripts/bench/det_cost.sh [--pairs N] [--layouts "1x1 1x2 2x1"] [--workload mlp-wide]
#                             [--epochs E] [--build DIR] [--vs "FLAGS"] [-- extra train flags]
#
# --vs FLAGS compares the default run with one that adds FLAGS instead of --deterministic: the
# cost of batch norm's synchronized statistics is
#   det_cost.sh --workload resnet --layouts 2x1 --vs "--bn-stats local"
# (the ratio is local / global: above 1 when the sums over ranks cost time).
#
# Runs are pinned as in run.sh (R x T: rank r on cores r*T .. r*T+T-1). Needs a Release build
# with bench_mkdata (scripts/bench/run.sh builds both). About 7 minutes with the defaults.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
BUILD="$ROOT/build"
PAIRS=7
LAYOUTS="1x1 1x2 2x1"
WL=mlp-wide
EPOCHS=6
EXTRA=()
VS="--deterministic"
while [ $# -gt 0 ]; do
    case "$1" in
    --pairs) PAIRS=$2; shift ;;
    --layouts) LAYOUTS=$2; shift ;;
    --workload) WL=$2; shift ;;
    --epochs) EPOCHS=$2; shift ;;
    --build) BUILD="$(cd "$2" && pwd)"; shift ;;
    --vs) VS=$2; shift ;;
    --) shift; EXTRA=("$@"); break ;;
    *) echo "det_cost.sh: unknown argument '$1'" >&2; exit 2 ;;
    esac
    shift
done
SP="$BUILD/shardprop"
MKDATA="$BUILD/scripts/bench/bench_mkdata"
# shellcheck source=scripts/bench/lib.sh
source "$HERE/lib.sh"
bench_setup det_cost.sh "$SP" "$MKDATA"
B=$(wl_field "$WL" batch)
SPEC=$(wl_field "$WL" spec)
SHAPE=$(wl_field "$WL" shape)
N=$((B * 24)) # 24 steps per epoch
DATA="$BUILD/bench/data/$WL-$N.h5"
mkdir -p "$(dirname "$DATA")"
# shellcheck disable=SC2086
[ -f "$DATA" ] || "$MKDATA" "$DATA" "$N" 10 7 $SHAPE
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

# one run: R T MODE(default|det: with the --vs flags) -> "samples/s" (median epoch after the first)
read -r -a VS_FLAGS <<<"$VS"
one_run() {
    local flags=("${EXTRA[@]}")
    [ "$3" = det ] && flags+=("${VS_FLAGS[@]}")
    train_sps "$SP" "$1" "$2" default "$DATA" "$SPEC" "$B" "$EPOCHS" "$TMP" "${flags[@]}"
}

echo "det_cost: $WL, default vs $VS, $PAIRS pairs per layout, $EPOCHS epochs of 24 steps per run" \
    "(load $(cut -d' ' -f1-3 /proc/loadavg), $(date -Iseconds))"
for L in $LAYOUTS; do
    R=${L%x*} T=${L#*x}
    pairs=""
    for ((i = 0; i < PAIRS; ++i)); do
        # the order alternates (default first in even pairs, det first in odd ones), so that a
        # drift in the machine's speed within a pair does not favour one mode
        if ((i % 2 == 0)); then
            a=$(one_run "$R" "$T" default) b=$(one_run "$R" "$T" det)
        else
            b=$(one_run "$R" "$T" det) a=$(one_run "$R" "$T" default)
        fi
        pairs="$pairs $a $b"
    done
    # shellcheck disable=SC2086
    "$PY" - "$L" "$VS" $pairs <<'PYEOF'
import statistics as st, sys
L, vs, v = sys.argv[1], sys.argv[2], list(map(float, sys.argv[3:]))
d, x = v[0::2], v[1::2]
r = [b / a for a, b in zip(d, x)]
print("%s: default %.0f, %s %.0f samples/s (medians); ratio median %.3f "
      "(range %.3f-%.3f over %d pairs)" % (L, st.median(d), vs, st.median(x), st.median(r),
                                          min(r), max(r), len(r)))
PYEOF
done
