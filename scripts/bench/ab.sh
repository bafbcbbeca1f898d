#!/usr/bin/env bash
# Two builds against each other: the same training runs with the binary of OLD and of NEW, in
# alternating pairs (old first in even pairs, new first in odd ones), so that a change in the
# machine's load hits both sides of a pair alike. Per workload and layout: the median
# samples/s of each side and the median of the pair ratios new/old, with their range. For
# showing that a change keeps (or improves) the speed: interleave, don't compare runs of
# different moments.
#
#   scripts/bench/ab.sh --old DIR --new DIR [--pairs N] [--layouts "1x1 1x2 2x1"]
#                       [--workloads "mlp-wide mlp-small cnn"] [--mode default|det]
#                       [--epochs E] [-- extra train flags]
#
# DIR: a Release build directory (with scripts/bench/bench_mkdata in NEW). Runs are pinned as
# in run.sh. Each run: E epochs (default 6) of 24 steps; its figure is the median epoch after
# the first. About 40 s per pair and layout on mlp-wide with the defaults.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
OLD="" NEW="" PAIRS=7 LAYOUTS="1x1 1x2 2x1" WLS="mlp-wide mlp-small cnn" MODE=default EPOCHS=6
EXTRA=()
while [ $# -gt 0 ]; do
    case "$1" in
    --old) OLD="$(cd "$2" && pwd)"; shift ;;
    --new) NEW="$(cd "$2" && pwd)"; shift ;;
    --pairs) PAIRS=$2; shift ;;
    --layouts) LAYOUTS=$2; shift ;;
    --workloads) WLS=$2; shift ;;
    --mode) MODE=$2; shift ;;
    --epochs) EPOCHS=$2; shift ;;
    --) shift; EXTRA=("$@"); break ;;
    -h | --help) sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "ab.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
    esac
    shift
done
[ -n "$OLD" ] && [ -n "$NEW" ] || { echo "ab.sh: --old DIR and --new DIR are required" >&2; exit 2; }
MKDATA="$NEW/scripts/bench/bench_mkdata"
# shellcheck source=scripts/bench/lib.sh
source "$HERE/lib.sh"
bench_setup ab.sh "$OLD/shardprop" "$NEW/shardprop" "$MKDATA"
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

echo "ab: $OLD (old) against $NEW (new), $MODE mode, $PAIRS pairs, $EPOCHS epochs of 24 steps" \
    "per run ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')$(grep -q avx512f /proc/cpuinfo && echo ' with AVX-512'), load" \
    "$(cut -d' ' -f1-3 /proc/loadavg), $(date -Iseconds))"
for WL in $WLS; do
    B=$(wl_field "$WL" batch) SPEC=$(wl_field "$WL" spec) SHAPE=$(wl_field "$WL" shape)
    N=$((B * 24))
    DATA="$NEW/bench/data/$WL-$N.h5"
    mkdir -p "$(dirname "$DATA")"
    # shellcheck disable=SC2086
    [ -f "$DATA" ] || "$MKDATA" "$DATA" "$N" 10 7 $SHAPE
    for L in $LAYOUTS; do
        R=${L%x*} T=${L#*x} v=""
        for ((i = 0; i < PAIRS; ++i)); do
            run_side() { train_sps "$1/shardprop" "$R" "$T" "$MODE" "$DATA" "$SPEC" "$B" "$EPOCHS" \
                "$TMP" "${EXTRA[@]}"; }
            if ((i % 2 == 0)); then
                a=$(run_side "$OLD") b=$(run_side "$NEW")
            else
                b=$(run_side "$NEW") a=$(run_side "$OLD")
            fi
            v="$v $a $b"
        done
        # shellcheck disable=SC2086
        "$PY" - "$WL" "$L" $v <<'PYEOF'
import statistics as st, sys
wl, L, v = sys.argv[1], sys.argv[2], list(map(float, sys.argv[3:]))
old, new = v[0::2], v[1::2]
r = [b / a for a, b in zip(old, new)]
print("%-9s %s: old %.0f, new %.0f samples/s (medians); new/old median %.3f (range %.3f-%.3f "
      "over %d pairs)" % (wl, L, st.median(old), st.median(new), st.median(r), min(r), max(r),
                          len(r)))
PYEOF
    done
done
