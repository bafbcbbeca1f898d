#!/usr/bin/env bash
# The shardprop benchmark harness (issues 7, 20): shardprop vs PyTorch and JAX on the same
# workloads, layouts and machine, in one run, against the measured FMA peak. See
# scripts/bench/README.md.
#
#   scripts/bench/run.sh [--quick] [--layouts "1x1 1x2 2x1"]
#                        [--workloads "mlp-wide mlp-small cnn resnet gpt"]
#                        [--reps N] [--peers "torch jax"|none] [--build DIR] [--results DIR]
#                        [--no-build] [--no-gemm] [--check] [--deterministic]
#
# --deterministic: also run shardprop with --deterministic (framework "shardprop-det").
# --check: verify that every run has every field (the CTest smoke test; speed is not checked).
# Layout RxT: R MPI ranks (processes) x T threads each. Output: a markdown table on stdout,
# RESULTS/results.json, RESULTS/results.csv, RESULTS/table.md and the raw measurements
# RESULTS/raw.jsonl (default RESULTS: BUILD/bench/results/<date-time>).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
BUILD="$ROOT/build"
RESULTS=""
LAYOUTS="1x1 1x2 2x1"
WORKLOADS="mlp-wide mlp-small cnn resnet gpt"
PEERS="torch jax"
QUICK=0
REPS=""
DO_BUILD=1
DO_GEMM=1
DO_CHECK=0
DO_DET=0
PIN_WARNINGS=0

usage() { sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
    case "$1" in
    --quick) QUICK=1 ;;
    --layouts) LAYOUTS="$2"; shift ;;
    --workloads) WORKLOADS="$2"; shift ;;
    --reps) REPS="$2"; shift ;;
    --peers) PEERS="$2"; shift ;;
    --build) BUILD="$(cd "$2" && pwd)"; shift ;;
    --results) RESULTS="$2"; shift ;;
    --no-build) DO_BUILD=0 ;;
    --no-gemm) DO_GEMM=0 ;;
    --check) DO_CHECK=1 ;;
    --deterministic) DO_DET=1 ;;
    -h | --help) usage; exit 0 ;;
    *) echo "run.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
    esac
    shift
done
[ "$PEERS" = none ] && PEERS=""
if [ -z "$REPS" ]; then REPS=$([ $QUICK = 1 ] && echo 2 || echo 7); fi
[ -n "$RESULTS" ] || RESULTS="$BUILD/bench/results/$(date +%Y%m%d-%H%M%S)"
mkdir -p "$RESULTS"
RESULTS="$(cd "$RESULTS" && pwd)"
DATA="$BUILD/bench/data"
FORTUNES=/usr/share/games/fortunes # the gpt workload's text, when the fortunes package is there
VENV="$BUILD/bench/venv"
mkdir -p "$DATA"
RAW="$RESULTS/raw.jsonl"
: >"$RAW"
log() { printf '[bench] %s\n' "$*" >&2; }

# Steps per timed window (full / quick): each window is a few tenths of a second here.
window_of() {
    case "$1" in
    mlp-wide) [ $QUICK = 1 ] && echo 3 || echo 24 ;;
    mlp-small) [ $QUICK = 1 ] && echo 16 || echo 256 ;;
    cnn) [ $QUICK = 1 ] && echo 2 || echo 12 ;;
    resnet) [ $QUICK = 1 ] && echo 1 || echo 2 ;;
    gpt) [ $QUICK = 1 ] && echo 1 || echo 2 ;;
    *) echo "run.sh: unknown workload '$1'" >&2; exit 2 ;;
    esac
}

# ---- build -----------------------------------------------------------------------------------
if [ $DO_BUILD = 1 ]; then
    [ -f "$BUILD/CMakeCache.txt" ] || cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release >&2
    cmake --build "$BUILD" -j2 --target shardprop_cli bench_fma_peak bench_mkdata bench_gemm >&2
fi
SP="$BUILD/shardprop"
for exe in "$SP" "$BUILD/scripts/bench/bench_fma_peak" "$BUILD/scripts/bench/bench_mkdata"; do
    [ -x "$exe" ] || { echo "run.sh: $exe missing: build first (or drop --no-build)" >&2; exit 1; }
done
NCPU=$(nproc)
# shellcheck source=scripts/bench/lib.sh
source "$HERE/lib.sh"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_btl_vader_single_copy_mechanism=none

# ---- the machine: CPU, load, FMA peak for every core count the layouts use ---------------------
CPU="$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')"
CORES=""
for L in $LAYOUTS; do
    r=${L%x*} t=${L#*x}
    CORES="$CORES $((r * t > NCPU ? NCPU : r * t))"
done
CORES="$(echo "$CORES" | tr ' ' '\n' | sort -nu | tr '\n' ' ')"
log "FMA peak on $CORES core(s) ($CPU, load $(cut -d' ' -f1-3 /proc/loadavg))"
# shellcheck disable=SC2086
"$BUILD/scripts/bench/bench_fma_peak" $CORES | sed 's/^{/{"kind": "peak", /' >>"$RAW"
printf '{"kind": "machine", "cpu": "%s", "ncpu": %d, "date": "%s", "load_before": "%s", "quick": %d, "reps": %d}\n' \
    "$CPU" "$NCPU" "$(date -Iseconds)" "$(cut -d' ' -f1-3 /proc/loadavg)" "$QUICK" "$REPS" >>"$RAW"

# Under a sanitizer build, LeakSanitizer's tracer can crash in an Open MPI singleton (its helper
# threads; the same code's leaks are checked under mpirun): singleton runs go without it.
SINGLETON_ASAN="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0"

# ranks_run R CMD...: CMD as a singleton when R = 1, else under mpirun -n R unbound (with RSS_OUT
# passed on when set): for the short side runs (baseline, memory plan), not the timed ones
ranks_run() {
    local R=$1
    shift
    if [ "$R" = 1 ]; then
        ASAN_OPTIONS="$SINGLETON_ASAN" "$@"
    else
        mpirun -n "$R" --oversubscribe --bind-to none ${RSS_OUT:+-x RSS_OUT} "$@"
    fi
}

# The runtime's own peak RSS (code, MPI, HDF5, OpenMP and a 50-parameter model on 64 samples of
# 4 features), alone and per rank under mpirun: what a rank holds beyond the memory plan that
# `shardprop train --dry-run` prints, whatever the model.
base_data="$DATA/baseline-64.h5"
mkdir -p "$DATA" "$RESULTS/baseline"
[ -f "$base_data" ] || "$BUILD/scripts/bench/bench_mkdata" "$base_data" 64 10 7 4
for R in $(for l in $LAYOUTS; do echo "${l%x*}"; done | sort -nu); do
    rm -f "$RESULTS/baseline/rss".*
    base_args=(train --data "$base_data" --model dense:10 --batch 8 --epochs 1 --threads 1 --quiet)
    # (a failed baseline run leaves the value null: the table then omits the bracketed ratio)
    RSS_OUT="$RESULTS/baseline/rss" ranks_run "$R" "$HERE/rss_wrap.sh" "$SP" "${base_args[@]}" \
        >/dev/null 2>&1 || true
    base_mb="$(cat "$RESULTS/baseline/rss".* 2>/dev/null | sort -n | tail -1 |
        awk '{printf "%.1f", $1 / 1024}')"
    printf '{"kind": "baseline", "ranks": %d, "rss_mb": %s}\n' "$R" "${base_mb:-null}" >>"$RAW"
done

# ---- peers' environment ------------------------------------------------------------------------
PY=""
if [ -n "$PEERS" ]; then
    if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c "import torch, jax" 2>/dev/null; then
        log "installing PyTorch and JAX from PyPI into $VENV (once; a few GB)"
        if python3 -m venv "$VENV" && "$VENV/bin/pip" install -q --upgrade pip &&
            "$VENV/bin/pip" install -q torch jax; then
            :
        else
            log "pip install failed (PyPI unreachable?): falling back to Debian's python3-torch"
            PY=/usr/bin/python3
        fi
    fi
    [ -n "$PY" ] || PY="$VENV/bin/python"
    if ! "$PY" -c "import torch" 2>/dev/null; then
        log "no PyTorch available: peers skipped"
        PEERS=""
    fi
fi


# ---- shardprop -----------------------------------------------------------------------------------
run_shardprop() { # WORKLOAD R T [det]
    local wl=$1 R=$2 T=$3 det=${4:-} W B spec shape n data tag dir fw=shardprop seq src=""
    W=$(window_of "$wl")
    B=$(wl_field "$wl" batch)
    spec=$(wl_field "$wl" spec)
    shape=$(wl_field "$wl" shape)
    seq=$(python3 -c "import sys; sys.path.insert(0, '$HERE'); import workloads as w; \
print(w.tokens_per_sample('$wl') or '')")
    n=$((B * W)) # one epoch = one timed window
    if [ -n "$seq" ]; then
        # token data: n windows of seq tokens (+ 1, the last window's last target), bytes of the
        # fortunes corpus when the fortunes package is installed, else random bytes
        local texts=()
        [ -d "$FORTUNES" ] && mapfile -t texts < <(find "$FORTUNES" -maxdepth 1 -type f ! -name '*.*' | sort)
        src=$([ ${#texts[@]} -gt 0 ] && echo fortunes || echo random)
        data="$DATA/$wl-$n-$src.h5"
        [ -f "$data" ] || "$BUILD/scripts/bench/bench_mkdata" --tokens "$data" $((n * seq + 1)) 7 \
            "${texts[@]}"
    else
        data="$DATA/$wl-$n.h5"
        # shellcheck disable=SC2086
        [ -f "$data" ] || "$BUILD/scripts/bench/bench_mkdata" "$data" "$n" 10 7 $shape
    fi
    [ -n "$det" ] && fw=shardprop-det
    tag="$fw-$wl-${R}x$T"
    dir="$RESULTS/$tag"
    mkdir -p "$dir"
    rm -f "$dir"/metrics.jsonl "$dir"/rss.*
    local opt_args
    read -ra opt_args <<<"$(python3 "$HERE/workloads.py" --shardprop-args "$wl")"
    local args=(train --data "$data" --model "$spec" --batch "$B" --epochs $((REPS + 1))
        "${opt_args[@]}" --seed 7 --threads "$T" --quiet
        --log-every 1000000000 --check-every 0 --metrics "$dir/metrics.jsonl")
    [ -n "$det" ] && args+=(--deterministic)
    local st=0
    if [ "$R" = 1 ]; then
        OMP_NUM_THREADS=$T RSS_OUT="$dir/rss" ASAN_OPTIONS="$SINGLETON_ASAN" \
            taskset -c "$(cpus_of "$T" 0)" \
            "$HERE/rss_wrap.sh" "$SP" "${args[@]}" >"$dir/out.txt" 2>&1 || st=$?
    else
        mpi_bind "$R" "$T"
        OMP_NUM_THREADS=$T RSS_OUT="$dir/rss" mpirun -n "$R" "${MPI_BIND[@]}" -x OMP_NUM_THREADS \
            -x RSS_OUT "$HERE/rss_wrap.sh" "$SP" "${args[@]}" >"$dir/out.txt" 2>&1 || st=$?
    fi
    if [ $st != 0 ]; then
        log "shardprop $wl ${R}x$T failed (exit $st): see $dir/out.txt"
        tail -5 "$dir/out.txt" >&2
        return 0
    fi
    # the layout report warns when threads share a core: such a run measures the wrong thing
    if grep -q "warning: .*bound to" "$dir/out.txt"; then
        log "shardprop $wl ${R}x$T: $(grep -m1 'warning: .*bound to' "$dir/out.txt" | sed 's/^ *//')"
        PIN_WARNINGS=$((PIN_WARNINGS + 1))
    fi
    # the memory plan of one rank of this layout (rank 0 prints it)
    ranks_run "$R" "$SP" "${args[@]}" --dry-run --json >"$dir/plan.json" 2>/dev/null || true
    python3 - "$dir" "$wl" "$R" "$T" "$fw" "$src" >>"$RAW" <<'PYEOF'
import glob, json, os, sys
d, wl, R, T, fw = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
src = sys.argv[6]
ev = [json.loads(l) for l in open(os.path.join(d, "metrics.jsonl")) if l.strip()]
ep = [e for e in ev if e.get("event") == "epoch"][1:]  # epoch 1 is the warm-up
rss = []
for f in sorted(glob.glob(os.path.join(d, "rss.*"))):
    try:
        rss.append(float(open(f).read().split()[-1]) / 1024.0)
    except (ValueError, IndexError):
        pass
run = {"kind": "run", "framework": fw, "workload": wl, "ranks": R,
       "threads": T, "samples_per_s": [e["samples_per_s"] for e in ep],
       "compute_s": [e["compute_s"] for e in ep], "comm_s": [e["comm_s"] for e in ep],
       "comm_hidden_fraction": [e["comm_hidden_fraction"] for e in ep],
       "peak_rss_mb_per_rank": rss}
if src:
    run["tokens_from"] = src  # token data: the fortunes corpus or random bytes
print(json.dumps(run))
PYEOF
}

# ---- peers ---------------------------------------------------------------------------------------
run_torch() { # WORKLOAD R T
    local wl=$1 R=$2 T=$3 W dir r port
    W=$(window_of "$wl")
    dir="$RESULTS/torch-$wl-${R}x$T"
    mkdir -p "$dir"
    port=$((29500 + RANDOM % 1000))
    for ((r = 0; r < R; ++r)); do
        MASTER_ADDR=127.0.0.1 MASTER_PORT=$port GLOO_SOCKET_IFNAME=lo OMP_NUM_THREADS=$T \
            MKL_NUM_THREADS=$T taskset -c "$(cpus_of "$T" "$r")" \
            "$PY" "$HERE/torch_ref.py" --workload "$wl" --threads "$T" --window "$W" \
            --reps "$REPS" --world "$R" --rank "$r" >"$dir/out.$r.json" 2>"$dir/err.$r.txt" &
    done
    if ! wait; then
        log "torch $wl ${R}x$T failed: see $dir/err.*.txt"
        return 0
    fi
    python3 - "$dir" "$R" >>"$RAW" <<'PYEOF'
import json, os, sys
d, R = sys.argv[1], int(sys.argv[2])
outs = [json.loads(open(os.path.join(d, f"out.{r}.json")).read().strip().splitlines()[-1])
        for r in range(R)]
o = outs[0]
o["kind"] = "run"
o["framework"] = "pytorch" if R == 1 else "pytorch-ddp"
o["peak_rss_mb_per_rank"] = [x["peak_rss_mb"] for x in outs]
print(json.dumps(o))
PYEOF
}

run_jax() { # WORKLOAD T  (one process)
    local wl=$1 T=$2 W dir flags=""
    W=$(window_of "$wl")
    dir="$RESULTS/jax-$wl-1x$T"
    mkdir -p "$dir"
    [ "$T" = 1 ] && flags="--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
    if ! XLA_FLAGS="$flags" JAX_PLATFORMS=cpu taskset -c "$(cpus_of "$T" 0)" \
        "$PY" "$HERE/jax_ref.py" --workload "$wl" --threads "$T" --window "$W" --reps "$REPS" \
        >"$dir/out.json" 2>"$dir/err.txt"; then
        log "jax $wl 1x$T failed: see $dir/err.txt"
        return 0
    fi
    python3 -c "import json,sys; o=json.loads(open(sys.argv[1]).read().strip().splitlines()[-1]); \
o['kind']='run'; o['peak_rss_mb_per_rank']=[o['peak_rss_mb']]; print(json.dumps(o))" \
        "$dir/out.json" >>"$RAW"
}

# ---- the runs: per workload and layout, shardprop then its peers, back to back -------------------
for wl in $WORKLOADS; do
    for L in $LAYOUTS; do
        R=${L%x*} T=${L#*x}
        log "$wl ${R}x$T: shardprop"
        run_shardprop "$wl" "$R" "$T"
        if [ $DO_DET = 1 ]; then
            log "$wl ${R}x$T: shardprop --deterministic"
            run_shardprop "$wl" "$R" "$T" det
        fi
        case " $PEERS " in *" torch "*)
            log "$wl ${R}x$T: pytorch$([ "$R" -gt 1 ] && echo ' DDP (gloo)')"
            run_torch "$wl" "$R" "$T" ;;
        esac
        case " $PEERS " in *" jax "*)
            if [ "$R" = 1 ]; then
                log "$wl 1x$T: jax"
                run_jax "$wl" "$T"
            fi ;;
        esac
    done
done

# ---- GEMM micro-benchmark: the workloads' GEMM shapes, sp_gemm vs PyTorch's (MKL) ---------------
if [ $DO_GEMM = 1 ] && [ -x "$BUILD/tests/bench_gemm" ]; then
    log "GEMM shapes of the workloads: sp_gemm"
    gemm_threads="$(echo "$CORES" | tr ' ' '\n' | grep -v '^$' | tr '\n' ' ')"
    shapes="$(python3 "$HERE/workloads.py" --gemm-shapes $WORKLOADS)"
    # shellcheck disable=SC2086
    "$BUILD/tests/bench_gemm" --json --threads "$gemm_threads" $shapes | sed 's/^{/{"kind": "gemm", /' >>"$RAW" || true
    case " $PEERS " in *" torch "*)
        log "GEMM shapes of the workloads: torch.mm"
        # shellcheck disable=SC2086
        "$PY" "$HERE/torch_ref.py" --gemm --threads "$gemm_threads" $shapes 2>/dev/null |
            sed 's/^{/{"kind": "gemm", /' >>"$RAW" || true ;;
    esac
fi

printf '{"kind": "machine_after", "load_after": "%s"}\n' "$(cut -d' ' -f1-3 /proc/loadavg)" >>"$RAW"
python3 "$HERE/report.py" "$RESULTS"
log "results in $RESULTS (table.md, results.json, results.csv, raw.jsonl)"
if [ $DO_CHECK = 1 ]; then
    python3 "$HERE/report.py" "$RESULTS" --check
    if [ "$PIN_WARNINGS" != 0 ]; then
        echo "run.sh --check: $PIN_WARNINGS shardprop run(s) pinned to fewer cores than threads" >&2
        exit 1
    fi
fi
