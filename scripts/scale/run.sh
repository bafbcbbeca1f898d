#!/usr/bin/env bash
# Simulated scaling of shardprop's training step with SMPI (SimGrid), see docs/scaling.md.
#
#   scripts/scale/run.sh [WORKLOAD|SPEC ...] [--platforms "ib100 eth25 eth10"]
#                        [--ranks "8 16 32 64 128 256 512 1024"] [--local-batch N] [--shape S]
#                        [--bucket-mb MB] [--reps N] [--compute-scale F] [--build DIR]
#                        [--results DIR] [--no-build] [--check TOL]
#
# WORKLOAD: mlp-wide, cnn, mlp-small (scripts/bench/workloads.py; default: mlp-wide cnn), or a
# model SPEC (then --shape, default 784, and --local-batch, default 32). A platform is ib100
# (fat tree), eth25, eth10 (platforms/*.xml) or ALPHA_US:GBITS (a non-blocking switch with those
# node-to-node parameters, e.g. this machine's shared memory from measure_net.sh).
# --compute-scale F multiplies the measured compute (e.g. 2: 4 ranks sharing 2 cores).
# Weak scaling: every rank
# has the local batch (a workload's bench batch / 8: global batch = bench batch x P / 8).
# Per workload: the trainer's bucket plan (shardprop train --dry-run --json), per-layer compute
# times measured here at the local batch (scale_layer_times, REPS runs), then per platform and P
# the skeleton in both modes (overlap: ring surrogate; blocking: per-bucket MPI_Allreduce) next
# to the alpha-beta model's prediction (scale_model). Output: RESULTS/table.md (also printed),
# RESULTS/results.jsonl, RESULTS/scaling.png (default RESULTS: BUILD/scale/<date-time>).
# --check TOL: fail when a simulated step time differs from the model's by more than TOL
# (a fraction, e.g. 0.2), or when the skeleton's bucket plan differs from the trainer's.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
# shellcheck source=../lib/common.sh
source "$ROOT/scripts/lib/common.sh"
BUILD="$ROOT/build"
RESULTS=""
PLATFORMS="ib100 eth25 eth10"
RANKS="8 16 32 64 128 256 512 1024"
LOCAL_BATCH=""
SHAPE=""
BUCKET_MB=4
REPS=10
CSCALE=1
DO_BUILD=1
CHECK=""
WORKLOADS=()

usage() { sed -n '2,23p' "$0" | sed 's/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
    case "$1" in
    --platforms) PLATFORMS="$2"; shift ;;
    --ranks) RANKS="$2"; shift ;;
    --local-batch) LOCAL_BATCH="$2"; shift ;;
    --shape) SHAPE="$2"; shift ;;
    --bucket-mb) BUCKET_MB="$2"; shift ;;
    --reps) REPS="$2"; shift ;;
    --compute-scale) CSCALE="$2"; shift ;;
    --build) BUILD="$(cd "$2" && pwd)"; shift ;;
    --results) RESULTS="$2"; shift ;;
    --no-build) DO_BUILD=0 ;;
    --check) CHECK="$2"; shift ;;
    -h | --help) usage; exit 0 ;;
    -*) echo "run.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
    *) WORKLOADS+=("$1") ;;
    esac
    shift
done
[ ${#WORKLOADS[@]} -gt 0 ] || WORKLOADS=(mlp-wide cnn)
[ -n "$RESULTS" ] || RESULTS="$BUILD/scale/$(date +%Y%m%d-%H%M%S)"
mkdir -p "$RESULTS"
RESULTS="$(cd "$RESULTS" && pwd)"
PY="$(sp_python)"
log() { printf '[scale] %s\n' "$*" >&2; }

if ! command -v smpicc >/dev/null || ! command -v smpirun >/dev/null; then
    echo "run.sh: smpicc/smpirun missing: apt-get install libsimgrid-dev (SimGrid >= 3.32)" >&2
    exit 1
fi
if [ $DO_BUILD = 1 ]; then
    [ -f "$BUILD/CMakeCache.txt" ] || cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release >&2
    cmake --build "$BUILD" -j2 --target shardprop_cli bench_mkdata scale_layer_times \
        scale_model >&2
fi
SP="$BUILD/shardprop"
for exe in "$SP" "$BUILD/scripts/bench/bench_mkdata" "$BUILD/scripts/scale/scale_layer_times" \
    "$BUILD/scripts/scale/scale_model"; do
    [ -x "$exe" ] || { echo "run.sh: $exe missing: build first (or drop --no-build)" >&2; exit 1; }
done

# The skeleton: compiled with SMPI's compiler wrapper, into the results directory.
SKEL="$RESULTS/skeleton"
smpicc -O2 -o "$SKEL" "$HERE/skeleton.c"
# Settings: docs/scaling.md ("How the simulation is set up") and the machine notes. SMPI's
# default per-message-size correction factors are off (bw/lat-factor 0:1) and so is the
# acknowledgement traffic: the platform's links are then exactly the alpha-beta parameters.
# Broadcasts are binomial: the "ompi" selector's choice for 256-2047 ranks (an MVAPICH2
# intra-node k-nomial) is linear in SMPI, which made the step's 24-byte loss allreduce take 20 ms
# of simulated and 215 s of real time at 1024 ranks. The skeleton has no mutable globals: no
# per-rank privatization needed.
SMPI_CFG=(--cfg=smpi/simulate-computation:no --cfg=smpi/coll-selector:ompi
    --cfg=smpi/bcast:binomial_tree --cfg=smpi/privatization:no
    --cfg=smpi/shared-malloc-blocksize:268435456 --cfg=smpi/bw-factor:0:1
    --cfg=smpi/lat-factor:0:1 --cfg=network/crosstraffic:0 --log=root.thr:critical)
export TMPDIR="${TMPDIR:-/tmp}" # smpirun -tmpdir is broken in 3.32
seq 0 1023 | sed 's/^/node-/' >"$RESULTS/hosts.txt"

wl_field() {
    "$PY" -c "import sys; sys.path.insert(0, '$ROOT/scripts/bench'); import workloads as w; \
v = w.WORKLOADS['$1']['$2']; print(','.join(map(str, v)) if isinstance(v, tuple) else v)"
}

OUT="$RESULTS/results.jsonl"
: >"$OUT"
fail=0
for wl in "${WORKLOADS[@]}"; do
    if "$PY" -c "import sys; sys.path.insert(0, '$ROOT/scripts/bench'); import workloads as w; \
sys.exit(0 if '$wl' in w.WORKLOADS else 1)"; then
        spec=$(wl_field "$wl" spec)
        shape=${SHAPE:-$(wl_field "$wl" shape)}
        lb=${LOCAL_BATCH:-$(($(wl_field "$wl" batch) / 8))}
        name=$wl
    else
        spec=$wl
        shape=${SHAPE:-784}
        lb=${LOCAL_BATCH:-32}
        name=custom
    fi
    dir="$RESULTS/$name"
    mkdir -p "$dir"
    # a small data file of the right sample shape: the dry run only reads its header
    dims=${shape//,/ }
    # shellcheck disable=SC2086
    "$BUILD/scripts/bench/bench_mkdata" "$dir/data.h5" 64 10 7 $dims >/dev/null
    "$SP" train --data "$dir/data.h5" --model "$spec" --batch "$lb" --bucket-mb "$BUCKET_MB" \
        --dry-run --json >"$dir/plan.json"
    log "$name: timing the layers at local batch $lb (best of $REPS)"
    "$BUILD/scripts/scale/scale_layer_times" "$spec" "$shape" "$lb" "$REPS" 1 >"$dir/layer_times.json"
    "$PY" "$HERE/plan.py" "$dir/plan.json" "$dir/layer_times.json" "$dir/skeleton.in" 1e11 "$CSCALE"
    for plat in $PLATFORMS; do
        case "$plat" in
        ib100) xml="$HERE/platforms/fattree-ib100.xml" ;;
        eth25) xml="$HERE/platforms/eth25.xml" ;;
        eth10) xml="$HERE/platforms/eth10.xml" ;;
        *:*)
            # alpha split over the two links node-switch-node; no backbone: a non-blocking switch
            xml="$RESULTS/platform-${plat//[:.]/_}.xml"
            awk -v a="${plat%%:*}" -v g="${plat##*:}" 'BEGIN {
                print "<?xml version=\x271.0\x27?>"
                print "<!DOCTYPE platform SYSTEM \"https://simgrid.org/simgrid.dtd\">"
                print "<platform version=\"4.1\">"
                printf "  <cluster id=\"custom\" prefix=\"node-\" suffix=\"\" radical=\"0-1023\" "
                printf "speed=\"100Gf\" bw=\"%gGbps\" lat=\"%gus\"/>\n", g, a / 2
                print "</platform>" }' >"$xml"
            ;;
        *) echo "run.sh: unknown platform '$plat' (ib100, eth25, eth10, ALPHA_US:GBITS)" >&2; exit 2 ;;
        esac
        for P in $RANKS; do
            for mode in overlap blocking; do
                t0=$(date +%s.%N)
                sim=$(smpirun -np "$P" -platform "$xml" -hostfile "$RESULTS/hosts.txt" \
                    "${SMPI_CFG[@]}" "$SKEL" "$dir/skeleton.in" "$mode" 2 2>"$dir/smpi-$plat-$P-$mode.log" |
                    tail -n 1)
                wall=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.3f", b - a }')
                [ "$mode" = overlap ] && mm=surrogate || mm=blocking
                model=$("$BUILD/scripts/scale/scale_model" "$dir/skeleton.in" "$plat" "$P" "$mm")
                nbc=$("$BUILD/scripts/scale/scale_model" "$dir/skeleton.in" "$plat" "$P" libnbc)
                ring=$("$BUILD/scripts/scale/scale_model" "$dir/skeleton.in" "$plat" "$P" ring)
                rab=$("$BUILD/scripts/scale/scale_model" "$dir/skeleton.in" "$plat" "$P" rabenseifner)
                echo "{\"workload\": \"$name\", \"spec\": \"$spec\", \"local_batch\": $lb, \
\"platform\": \"$plat\", \"wall_s\": $wall, \"sim\": $sim, \"model\": $model, \
\"model_ring\": $ring, \"model_rab\": $rab, \"model_libnbc\": $nbc}" >>"$OUT"
                log "$name $plat P=$P $mode: $(echo "$sim" | cut -c1-90) (${wall}s)"
            done
        done
    done
done
"$PY" "$HERE/report.py" "$RESULTS" ${CHECK:+--check "$CHECK"} || fail=1
exit $fail
