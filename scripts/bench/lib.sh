# shellcheck shell=bash
# Shell helpers shared by run.sh, det_cost.sh and ab.sh (sourced after they set HERE, this
# directory; cpus_of and train_sps need NCPU and PY, which bench_setup sets).

# bench_setup NAME EXE...: stop with NAME's message when an executable is missing; then PY
# (Debian's python3, with numpy and h5py), NCPU and Open MPI's permission to run as root.
bench_setup() {
    local name=$1 exe
    shift
    for exe in "$@"; do
        [ -x "$exe" ] || { echo "$name: $exe missing: build first" >&2; exit 1; }
    done
    PY=/usr/bin/python3
    [ -x "$PY" ] || PY=python3
    export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
    NCPU=$(nproc)
}

# wl_field WORKLOAD FIELD: a field of workloads.py's WORKLOADS (a tuple as space-separated words)
wl_field() { python3 -c "import sys; sys.path.insert(0, '$HERE'); import workloads as w; \
v = w.WORKLOADS['$1']['$2']; print(' '.join(map(str, v)) if isinstance(v, tuple) else v)"; }

# cpus_of T RANK: the T cores rank RANK of an R x T layout is pinned to, T consecutive cores from
# RANK * T (wrapping around when the layout has more threads than the machine has cores)
cpus_of() {
    local first=$(($1 * $2)) list="" i
    for ((i = 0; i < $1; ++i)); do list="$list,$(((first + i) % NCPU))"; done
    echo "${list#,}"
}

# mpi_bind R T: mpirun's binding flags for R ranks of T threads, into the array MPI_BIND: each
# rank on T cores of its own, or no binding when the layout oversubscribes the machine
# shellcheck disable=SC2034 # MPI_BIND is the result, read by the caller
mpi_bind() {
    MPI_BIND=(--bind-to core --map-by "slot:PE=$2")
    [ $(($1 * $2)) -le "$NCPU" ] || MPI_BIND=(--oversubscribe --bind-to none)
    [ "$2" = 1 ] && [ "$1" -le "$NCPU" ] && MPI_BIND=(--bind-to core)
    return 0
}

# train_sps BIN R T MODE DATA SPEC BATCH EPOCHS TMPDIR [extra train flags...]: one training run
# of BIN on R ranks x T threads, pinned as above, in MODE (default, or det: --deterministic);
# prints its samples/s, the median over its epochs after the first (the warm-up).
train_sps() {
    local sp=$1 R=$2 T=$3 mode=$4 data=$5 spec=$6 batch=$7 epochs=$8 tmp=$9
    shift 9
    local mf="$tmp/m.jsonl"
    rm -f "$mf"
    local args=(train --data "$data" --model "$spec" --batch "$batch" --epochs "$epochs"
        --optimizer sgd --lr 0.01 --momentum 0.9 --seed 7 --threads "$T" --quiet
        --log-every 1000000000 --check-every 0 --metrics "$mf" "$@")
    [ "$mode" = det ] && args+=(--deterministic)
    if [ "$R" = 1 ]; then
        OMP_NUM_THREADS=$T taskset -c "$(cpus_of "$T" 0)" "$sp" "${args[@]}" >"$tmp/out" 2>&1
    else
        mpi_bind "$R" "$T"
        OMP_NUM_THREADS=$T mpirun -n "$R" "${MPI_BIND[@]}" -x OMP_NUM_THREADS "$sp" "${args[@]}" \
            >"$tmp/out" 2>&1
    fi || { echo "train_sps: $sp $R x $T $mode failed:" >&2; tail -5 "$tmp/out" >&2; return 1; }
    "$PY" -c "
import json, statistics, sys
ep = [e for e in map(json.loads, open(sys.argv[1])) if e.get('event') == 'epoch'][1:]
print('%.1f' % statistics.median(e['samples_per_s'] for e in ep))" "$mf"
}
