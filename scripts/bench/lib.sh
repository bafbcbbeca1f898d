# shellcheck shell=bash
# Shell helpers shared by run.sh and det_cost.sh (sourced after they set HERE, this directory,
# and NCPU, the cores of the machine).

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
