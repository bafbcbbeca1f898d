#!/usr/bin/env bash
# The gradient exchange on the emulated cluster (issue 22, item 3): shardprop's step time and
# comm_hidden_fraction at 2 and 4 emulated hosts (network namespaces, one rank per host, TCP
# through a bridge, shaped with tc tbf or unshaped), per workload and trainer configuration,
# against the cost model (scale/costmodel.h) with alpha, beta, gamma fitted on the same links,
# and the model's bucket-size advice against the measured winner. See scripts/bench/README.md,
# "The emulated cluster".
#
#   scripts/bench/cluster.sh [--quick] [--local] [--results DIR] [--no-build] [--report DIR]
#
# Parameters (environment; defaults in brackets):
#   HOSTS="2 4"  RATES="1gbit none"  WORKLOADS="mlp-wide cnn resnet"  REPS=3 (runs per row,
#   interleaved; the median is reported)  EPOCHS=2 (timed epochs per run, after one warm-up
#   epoch that is dropped)  STEPS (steps per epoch; default per workload: mlp-wide 10, cnn 8,
#   resnet 3)  BIN [build/shardprop]  OLD_BIN [/work/old-bin/shardprop-4382cb1]
#   CONFIGS: trainer configurations, ';'-separated, each NAME|BIN|FLAGS[|MPIRUN_OPTS[|MODEL]]
#     BIN: new (= $BIN), old (= $OLD_BIN) or a path; FLAGS: extra `shardprop train` flags;
#     MPIRUN_OPTS: extra mpirun options of that configuration (e.g. --mca ...); MODEL: the cost
#     model mode of scale_model (blocking, libnbc, rabenseifner, ring; default: blocking when the
#     plan has --bucket-mb 0, libnbc for OLD_BIN, rabenseifner otherwise). Default:
#       before|old|--bucket-mb 4; blocking|new|--bucket-mb 0; after|new|;
#       after-b1|new|--bucket-mb 1; after-b4|new|--bucket-mb 4; after-b16|new|--bucket-mb 16
#   RACE="blocking after-b1 after-b4 after-b16": the configurations whose bucket sizes compete
#   SP_CLUSTER=bch  CLUSTER_SH [scripts/cluster/cluster.sh]  NET_MAX=16777216 (scale_net_bench's
#   largest message)  RUN_TIMEOUT=600 (seconds per run)  CALIB_REPS=2 (traced runs for the
#   model's compute input; the fastest is kept)  QUICK=1 (= --quick: mlp-wide, 2 hosts,
#   1 rep, 1 timed epoch of 6 steps)  LOCAL=1 (= --local: plain mpirun on this machine, shared
#   memory, rate "shm", no cluster: for testing the harness without scripts/cluster)
# --report DIR: only rebuild the tables of an earlier run's results directory.
# Output: RESULTS (default BUILD/bench/cluster/<date-time>): table.md (also printed),
# results.json, runs.jsonl (one line per run), meta.json, net/ (scale_net_bench per hosts and
# rate, the fitted --network strings), model/ (compute input, plans, dry-run advice),
# runs/<hosts>h-<rate>/<workload>/<config>/rep<k>/ (metrics.jsonl, out.txt, cmd.txt).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
BUILD="$ROOT/build"
RESULTS=""
DO_BUILD=1
REPORT_ONLY=""
QUICK=${QUICK:-0}
LOCAL=${LOCAL:-0}

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
    case "$1" in
    --quick) QUICK=1 ;;
    --local) LOCAL=1 ;;
    --results) RESULTS="$2"; shift ;;
    --no-build) DO_BUILD=0 ;;
    --report) REPORT_ONLY="$2"; shift ;;
    -h | --help) usage; exit 0 ;;
    *) echo "cluster.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
    esac
    shift
done
PY=/usr/bin/python3
[ -x "$PY" ] || PY=python3
if [ -n "$REPORT_ONLY" ]; then
    exec "$PY" "$HERE/cluster_report.py" "$REPORT_ONLY"
fi

if [ "$QUICK" = 1 ]; then
    HOSTS=${HOSTS:-2} WORKLOADS=${WORKLOADS:-mlp-wide} REPS=${REPS:-1} EPOCHS=${EPOCHS:-1}
    STEPS=${STEPS:-6}
fi
HOSTS=${HOSTS:-"2 4"}
RATES=${RATES:-"1gbit none"}
[ "$LOCAL" = 1 ] && RATES=shm
WORKLOADS=${WORKLOADS:-"mlp-wide cnn resnet"}
REPS=${REPS:-3}
EPOCHS=${EPOCHS:-2}
STEPS=${STEPS:-}
BIN=${BIN:-$BUILD/shardprop}
OLD_BIN=${OLD_BIN:-/work/old-bin/shardprop-4382cb1}
CONFIGS=${CONFIGS:-"before|old|--bucket-mb 4; blocking|new|--bucket-mb 0; after|new|;
after-b1|new|--bucket-mb 1; after-b4|new|--bucket-mb 4; after-b16|new|--bucket-mb 16"}
RACE=${RACE:-"blocking after-b1 after-b4 after-b16"}
export SP_CLUSTER=${SP_CLUSTER:-bch}
CLUSTER_SH=${CLUSTER_SH:-$ROOT/scripts/cluster/cluster.sh}
NET_MAX=${NET_MAX:-16777216}
RUN_TIMEOUT=${RUN_TIMEOUT:-600}
CALIB_REPS=${CALIB_REPS:-2}

log() { printf '[cluster-bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { echo "cluster.sh: $*" >&2; exit 1; }

# ---- build and checks ----------------------------------------------------------------------------
if [ $DO_BUILD = 1 ]; then
    [ -f "$BUILD/CMakeCache.txt" ] || cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release >&2
    cmake --build "$BUILD" -j2 --target shardprop_cli bench_mkdata scale_net_bench scale_model >&2
fi
MKDATA="$BUILD/scripts/bench/bench_mkdata"
NETBENCH="$BUILD/scripts/scale/scale_net_bench"
SCALE_MODEL="$BUILD/scripts/scale/scale_model"
for exe in "$BIN" "$MKDATA" "$NETBENCH" "$SCALE_MODEL"; do
    [ -x "$exe" ] || die "$exe missing: build first (or drop --no-build)"
done
if [ "$LOCAL" != 1 ] && [ ! -x "$CLUSTER_SH" ]; then
    die "$CLUSTER_SH missing (scripts/cluster is on branch cluster): use --local, or set CLUSTER_SH"
fi
for wl in $WORKLOADS; do
    case "$wl" in mlp-wide | mlp-small | cnn | resnet) ;; *) die "unknown workload '$wl'" ;; esac
done
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
CORES=$(nproc)

# configurations: NAMES, and per name CBIN, CFLAGS, CMPI, CMODEL
declare -A CBIN CFLAGS CMPI CMODEL
NAMES=()
while IFS= read -r entry; do
    entry="$(echo "$entry" | sed 's/^[[:space:]]*//; s/[[:space:]]*$//')"
    [ -n "$entry" ] || continue
    IFS='|' read -r name bin flags mpi model <<<"$entry|||"
    name="$(echo "$name" | tr -d '[:space:]')" bin="$(echo "$bin" | tr -d '[:space:]')"
    [ -n "$name" ] || die "CONFIGS: an entry without a name: '$entry'"
    case "$bin" in
    new | "") bin="$BIN" ;;
    old) bin="$OLD_BIN" ;;
    esac
    [ -x "$bin" ] || die "CONFIGS: $name: binary $bin missing"
    NAMES+=("$name")
    CBIN[$name]=$bin CFLAGS[$name]=$flags CMPI[$name]=$mpi CMODEL[$name]=$(echo "$model" | tr -d '[:space:]')
done < <(echo "$CONFIGS" | tr ';' '\n')
[ ${#NAMES[@]} -gt 0 ] || die "CONFIGS is empty"

[ -n "$RESULTS" ] || RESULTS="$BUILD/bench/cluster/$(date +%Y%m%d-%H%M%S)"
mkdir -p "$RESULTS"/{net,model,runs}
RESULTS="$(cd "$RESULTS" && pwd)"
DATA="$BUILD/bench/data"
mkdir -p "$DATA"
RUNS="$RESULTS/runs.jsonl"
: >"$RUNS"
T_START=$(date +%s)

steps_of() { # WORKLOAD: steps per epoch
    if [ -n "$STEPS" ]; then echo "$STEPS"; return; fi
    case "$1" in mlp-wide) echo 10 ;; mlp-small) echo 64 ;; cnn) echo 8 ;; resnet) echo 3 ;; esac
}
# shellcheck source=scripts/bench/lib.sh
source "$HERE/lib.sh" # wl_field
declare -A WSPEC WSHAPE WB WDATA WOPT
for wl in $WORKLOADS; do
    WSPEC[$wl]=$(wl_field "$wl" spec)
    WSHAPE[$wl]=$(wl_field "$wl" shape)
    WB[$wl]=$(wl_field "$wl" batch)
    WOPT[$wl]=$("$PY" "$HERE/workloads.py" --shardprop-args "$wl")
    n=$((WB[$wl] * $(steps_of "$wl")))
    WDATA[$wl]="$DATA/$wl-$n.h5"
    # shellcheck disable=SC2086
    [ -f "${WDATA[$wl]}" ] || "$MKDATA" "${WDATA[$wl]}" "$n" 10 7 ${WSHAPE[$wl]} >/dev/null
done

# ---- the machine and the binaries ----------------------------------------------------------------
bin_commit() { # BIN: the commit it was built from, as far as can be told
    local b=$1 c
    if [ "$(readlink -f "$b")" = "$(readlink -f "$BUILD/shardprop")" ]; then
        # the last commit that changed the sources (later commits of scripts/ or docs/ do not
        # change the binary); +dirty when the work tree's sources differ from it
        c="$(git -C "$ROOT" log -1 --format=%h -- src include cmake CMakeLists.txt)"
        git -C "$ROOT" diff --quiet HEAD -- src include cmake CMakeLists.txt 2>/dev/null || c="$c+dirty"
        echo "$c (this worktree's sources; branch $(git -C "$ROOT" rev-parse --abbrev-ref HEAD))"
    elif c=$(basename "$b" | grep -oE '[0-9a-f]{7,40}$'); then
        echo "$c (from the file name)"
    else
        echo "unknown"
    fi
}
CPU="$(lscpu | sed -n 's/^Model name: *//p' | head -1)"
CPUFLAGS="$(grep -m1 '^flags' /proc/cpuinfo | tr ' ' '\n' | grep -xE 'avx|avx2|fma|avx512f|avx512bw|avx512vl|avx512_bf16|amx_tile' | tr '\n' ' ')"
"$PY" - "$RESULTS/meta.json" <<PYEOF
import json, sys
meta = {
    "date": "$(date -u +%Y-%m-%dT%H:%M:%SZ)", "cpu": """$CPU""", "cpu_flags": """$CPUFLAGS""".split(),
    "cpu_family_model": """$(lscpu | sed -n 's/^CPU family: *//p' | head -1)/$(lscpu | sed -n 's/^Model: *//p' | head -1)""",
    "cores": $CORES, "load_before": "$(cut -d' ' -f1-3 /proc/loadavg)",
    "bin": "$BIN", "bin_commit": "$(bin_commit "$BIN")", "bin_sha256": "$(sha256sum "$BIN" | cut -c1-16)",
    "old_bin": "$OLD_BIN", "old_bin_commit": "$([ -x "$OLD_BIN" ] && bin_commit "$OLD_BIN" || echo missing)",
    "old_bin_sha256": "$([ -x "$OLD_BIN" ] && sha256sum "$OLD_BIN" | cut -c1-16)",
    "harness_commit": "$(git -C "$ROOT" rev-parse --short=12 HEAD)",
    "hosts": "$HOSTS".split(), "rates": "$RATES".split(), "workloads": "$WORKLOADS".split(),
    "reps": $REPS, "epochs": $EPOCHS, "race": "$RACE".split(), "local": $LOCAL, "quick": $QUICK,
    "build": "$BUILD", "scale_model": "$SCALE_MODEL",
}
json.dump(meta, open(sys.argv[1], "w"), indent=1)
PYEOF
{
    for n in "${NAMES[@]}"; do
        printf '%s\t%s\t%s\t%s\t%s\n' "$n" "${CBIN[$n]}" "${CFLAGS[$n]}" "${CMPI[$n]}" "${CMODEL[$n]}"
    done
} >"$RESULTS/configs.tsv"
lscpu >"$RESULTS/lscpu.txt"
log "CPU: $CPU ($CORES cores; $CPUFLAGS); load $(cut -d' ' -f1-3 /proc/loadavg)"
log "BIN $BIN: $(bin_commit "$BIN"); OLD_BIN $OLD_BIN: $(bin_commit "$OLD_BIN" 2>/dev/null || echo missing)"

# ---- the cluster ---------------------------------------------------------------------------------
CLUSTER_UP=0
cluster_down() {
    if [ "$CLUSTER_UP" = 1 ]; then
        "$CLUSTER_SH" down >&2 || log "cluster.sh down failed"
        CLUSTER_UP=0
    fi
}
trap cluster_down EXIT
trap 'exit 130' INT TERM
cluster_up() { # HOSTS RATE
    [ "$LOCAL" = 1 ] && return 0
    cluster_down
    local rate_args=()
    [ "$2" = none ] || rate_args=(--rate "$2")
    CLUSTER_UP=1
    "$CLUSTER_SH" up "$1" "${rate_args[@]}" >&2
    "$CLUSTER_SH" status >"$RESULTS/net/status-$1h-$2.txt" 2>&1 || true
}
# launch P [mpirun options] PROGRAM ARGS: P ranks, one per emulated host (or local mpirun)
launch() {
    local P=$1
    shift
    if [ "$LOCAL" = 1 ]; then
        local extra=()
        [ "$P" -gt "$CORES" ] && extra=(--mca mpi_yield_when_idle 1)
        OMPI_MCA_btl_vader_single_copy_mechanism=none timeout -k 10 "$RUN_TIMEOUT" \
            mpirun -n "$P" --oversubscribe --bind-to none "${extra[@]}" "$@"
    else
        timeout -k 10 "$RUN_TIMEOUT" "$CLUSTER_SH" run "$@"
    fi
}

# ---- the model's compute input (this machine, shared memory, one rank per core) -------------------
# Per workload and P: a traced blocking run of CORES ranks at the local batch B/P (the trainer's
# own per-layer times with both cores busy, as in the cluster runs; docs/scaling.md §6), reduced by
# scripts/scale/trace_profile.py (the slowest rank; its "other" work goes with the update). The
# model multiplies it by P / CORES when the P hosts share the CORES cores. Plans: each
# configuration's `--dry-run --json` (its buckets), and BIN's at every bucket size the advice
# tries.
train_args() { # WORKLOAD: the workload's common `shardprop train` flags (data, model, optimizer)
    local -n _out=$2
    local opt
    read -ra opt <<<"${WOPT[$1]}"
    _out=(train --data "${WDATA[$1]}" --model "${WSPEC[$1]}" "${opt[@]}" --seed 7 --threads 1)
}
base=() # train_args fills it
log "model input: plans and per-layer compute (traced blocking runs, $CORES ranks, local mpirun)"
for wl in $WORKLOADS; do
    md="$RESULTS/model/$wl"
    mkdir -p "$md"
    B=${WB[$wl]}
    train_args "$wl" base
    for n in "${NAMES[@]}"; do
        read -ra fl <<<"${CFLAGS[$n]}"
        "${CBIN[$n]}" "${base[@]}" --batch "$B" "${fl[@]}" --dry-run --json >"$md/plan-$n.json" 2>"$md/plan-$n.err" ||
            die "$n: the dry run failed: $(tail -2 "$md/plan-$n.err")"
    done
    for mb in 0 0.25 0.5 1 2 4 8 16 32 64; do
        "$BIN" "${base[@]}" --batch "$B" --bucket-mb "$mb" --dry-run --json >"$md/plan-mb$mb.json"
    done
    for P in $HOSTS; do
        LB=$(((B + P - 1) / P))
        steps=$((B * $(steps_of "$wl") / (LB * CORES)))
        [ "$steps" -ge 2 ] || steps=2
        "$BIN" "${base[@]}" --batch $((LB * CORES)) --bucket-mb 0 --dry-run --json >"$md/calib-P$P.plan.json"
        # steps of the first epoch (the warm-up): the data file holds B x steps_of samples
        skip=$(((B * $(steps_of "$wl") + LB * CORES - 1) / (LB * CORES)))
        # CALIB_REPS traced runs; the fastest profile is kept (others' load only slows a run)
        for ((c = 1; c <= CALIB_REPS; ++c)); do
            tr="$md/calib-P$P-$c.trace.json"
            rm -f "$tr"
            OMPI_MCA_btl_vader_single_copy_mechanism=none mpirun -n "$CORES" --bind-to core \
                "$BIN" "${base[@]}" --batch $((LB * CORES)) --epochs 2 --bucket-mb 0 --quiet \
                --check-every 0 --trace "$tr" >"$md/calib-P$P-$c.out" 2>&1 ||
                die "$wl P=$P: the traced calibration run failed: $(tail -3 "$md/calib-P$P-$c.out")"
            "$PY" "$ROOT/scripts/scale/trace_profile.py" "$tr" "$md/calib-P$P.plan.json" "$skip" \
                "$md/profile-P$P-$c.json" >"$md/profile-P$P-$c.txt" || die "$wl P=$P: trace_profile.py failed"
            rm -f "$tr" # large; the profile keeps what the model reads
        done
        best=$("$PY" -c 'import json, sys
t = {f: (lambda p: p["forward_s"] + p["backward_s"] + p["update_s"])(json.load(open(f))) for f in sys.argv[1:]}
print(min(t, key=t.get))' "$md"/profile-P"$P"-*.json)
        cp "$best" "$md/profile-P$P.json"
        cp "${best%.json}.txt" "$md/profile-P$P.txt"
        log "  $wl P=$P (local batch $LB): $(cat "$md/profile-P$P.txt")"
    done
done

# ---- per hosts and rate: links, model, runs ------------------------------------------------------
for RATE in $RATES; do
    for P in $HOSTS; do
        tag="${P}h-$RATE"
        log "$tag: cluster up"
        cluster_up "$P" "$RATE"
        log "$tag: scale_net_bench (up to $NET_MAX bytes)"
        launch "$P" "$NETBENCH" "$NET_MAX" >"$RESULTS/net/net-$tag.txt" 2>"$RESULTS/net/net-$tag.err" ||
            die "$tag: scale_net_bench failed: $(tail -3 "$RESULTS/net/net-$tag.err")"
        NET=$("$PY" "$HERE/cluster_report.py" --fit "$RESULTS/net/net-$tag.txt" "$P" "$RATE")
        echo "$NET" >"$RESULTS/net/network-$tag.txt"
        log "$tag: fitted --network $NET"
        # the dry run's own advice with these links (it times the layers here, one process)
        for wl in $WORKLOADS; do
            train_args "$wl" base
            "$BIN" "${base[@]}" --batch "${WB[$wl]}" --dry-run --network "$NET" \
                >"$RESULTS/model/$wl/advice-$tag.txt" 2>&1 || true
        done
        for ((rep = 1; rep <= REPS; ++rep)); do
            for wl in $WORKLOADS; do
                train_args "$wl" base
                for n in "${NAMES[@]}"; do
                    d="$RESULTS/runs/$tag/$wl/$n/rep$rep"
                    mkdir -p "$d"
                    read -ra fl <<<"${CFLAGS[$n]}"
                    read -ra mo <<<"${CMPI[$n]}"
                    cmd=("${mo[@]}" -x OMP_NUM_THREADS=1 "${CBIN[$n]}" "${base[@]}"
                        --batch "${WB[$wl]}" --epochs $((EPOCHS + 1)) "${fl[@]}" --quiet
                        --log-every 1 --check-every 0 --metrics "$d/metrics.jsonl")
                    printf '%q ' launch "$P" "${cmd[@]}" >"$d/cmd.txt"
                    rm -f "$d/metrics.jsonl"
                    st=0
                    t0=$(date +%s.%N)
                    launch "$P" "${cmd[@]}" >"$d/out.txt" 2>&1 || st=$?
                    t1=$(date +%s.%N)
                    [ $st = 0 ] || log "$tag $wl $n rep $rep: failed (exit $st): see $d/out.txt"
                    printf '{"hosts": %d, "rate": "%s", "workload": "%s", "config": "%s", "rep": %d, "status": %d, "wall_s": %.2f, "dir": "%s", "load": "%s"}\n' \
                        "$P" "$RATE" "$wl" "$n" "$rep" "$st" "$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')" \
                        "${d#"$RESULTS"/}" "$(cut -d' ' -f1 /proc/loadavg)" >>"$RUNS"
                done
                log "$tag rep $rep/$REPS: $wl done ($(($(date +%s) - T_START)) s so far)"
            done
        done
        cluster_down
    done
done

"$PY" - "$RESULTS/meta.json" "$(($(date +%s) - T_START))" "$(cut -d' ' -f1-3 /proc/loadavg)" <<'PYEOF'
import json, sys
m = json.load(open(sys.argv[1]))
m["elapsed_s"], m["load_after"] = int(sys.argv[2]), sys.argv[3]
json.dump(m, open(sys.argv[1], "w"), indent=1)
PYEOF
"$PY" "$HERE/cluster_report.py" "$RESULTS"
log "results in $RESULTS (table.md, results.json, runs.jsonl); $(($(date +%s) - T_START)) s"
