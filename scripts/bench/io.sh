#!/usr/bin/env bash
# Reading a data set larger than the row cache: read bandwidth per rank, io_wait_s, and whether
# the prefetch hides the reads.
#
#   scripts/bench/io.sh [BUILD]      (default build; needs shardprop and bench_mkdata)
#
# Writes a synthetic set of MB mebibytes (X float32 (N, 3, 32, 32), 12 KiB a row) as SHARDS
# shard files (bench_mkdata, then `shardprop split --shards`), and trains one epoch of an MLP on
# it on RANKS ranks x 1 thread with --data-cache-mb 256 (far below the set: no row cache), in
# four ways: --shuffle shards or global, with or without the prefetch thread. Before every run
# the shard files are dropped from the page cache (posix_fadvise DONTNEED after sync), so every
# epoch reads from the disk. A last run with the files in the page cache gives the compute-bound
# rate. Each configuration runs REPS times; the table has the medians, from rank 0's epoch
# record (--metrics): epoch time, samples/s, io_wait_s, read_mb and read_mb_per_s (MiB read over
# the time the loader spent filling batches).
#   MB (default 2048), SHARDS (32), RANKS (2), REPS (3), WINDOW (2: --shuffle-window),
#   SHARDS_ONLY (1: only the two --shuffle shards runs), IO_DIR (BUILD/bench/io: the data, kept
#   for reruns). With fewer ranks than cores the ranks run unbound, so that the reader threads
#   have the cores left over (RANKS=1 on 2 cores: one core computes, one reads).
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
BUILD=$(cd "${1:-$ROOT/build}" && pwd)
# shellcheck source=scripts/bench/lib.sh
source "$HERE/lib.sh"
SP="$BUILD/shardprop"
MKDATA="$BUILD/scripts/bench/bench_mkdata"
bench_setup io.sh "$SP" "$MKDATA"
MB=${MB:-2048} SHARDS=${SHARDS:-32} RANKS=${RANKS:-2} REPS=${REPS:-3} WINDOW=${WINDOW:-2} SHARDS_ONLY=${SHARDS_ONLY:-0}
DIR=${IO_DIR:-$BUILD/bench/io}
mkdir -p "$DIR"
row=$((3 * 32 * 32 * 4))
n=$((MB * 1024 * 1024 / row))
prefix="$DIR/set${MB}m"
if ! ls "$prefix"-*-of-*.h5 >/dev/null 2>&1; then
    echo "io.sh: writing $n samples ($MB MiB) as $SHARDS shards under $DIR" >&2
    "$MKDATA" "$DIR/whole.h5" "$n" 10 7 3 32 32
    "$SP" split "$DIR/whole.h5" --shards "$SHARDS" --out "$prefix" >/dev/null
    rm -f "$DIR/whole.h5"
fi
shards=("$prefix"-*-of-*.h5)

evict() {
    sync
    "$PY" -c "
import os, sys
for p in sys.argv[1:]:
    fd = os.open(p, os.O_RDONLY)
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    os.close(fd)" "${shards[@]}"
}

# the disk's own sequential read rate, for scale: every shard once, cold
evict
t0=$(date +%s.%N)
cat "${shards[@]}" >/dev/null
t1=$(date +%s.%N)
bytes=$(stat -c %s "${shards[@]}" | awk '{s += $1} END {print s}')
seq_mbs=$("$PY" -c "print(round($bytes / 1048576 / ($t1 - $t0)))")

# one epoch: the epoch record's fields of rank 0, as a JSON object on one line
run() { # NAME COLD(1|0) extra flags...
    local name=$1 cold=$2
    shift 2
    local mf="$DIR/m.jsonl"
    rm -f "$mf"
    [ "$cold" = 1 ] && evict
    mpi_bind "$RANKS" 1
    # fewer ranks than cores: unbound, so that the reader threads can use the cores left over
    [ "$RANKS" -lt "$NCPU" ] && MPI_BIND=(--bind-to none)
    OMP_NUM_THREADS=1 mpirun -n "$RANKS" "${MPI_BIND[@]}" -x OMP_NUM_THREADS "$SP" train \
        --data "$prefix-*.h5" --model flatten,dense:512,relu,dense:10 --batch 256 --epochs 1 \
        --optimizer sgd --lr 0.01 --seed 7 --threads 1 --data-cache-mb 256 --quiet \
        --log-every 1000000000 --check-every 0 --metrics "$mf" "$@" >"$DIR/out" 2>&1 ||
        { echo "io.sh: $name failed:" >&2; tail -5 "$DIR/out" >&2; exit 1; }
    "$PY" -c "
import json, sys
e = [r for r in map(json.loads, open('$mf')) if r.get('event') == 'epoch'][-1]
e['name'] = '$name'
print(json.dumps(e))"
}

res="$DIR/results.jsonl"
: >"$res"
for ((r = 0; r < REPS; ++r)); do
    run "shards, prefetch" 1 --shuffle shards --shuffle-window "$WINDOW" >>"$res"
    run "shards, no prefetch" 1 --shuffle shards --shuffle-window "$WINDOW" --no-prefetch >>"$res"
    [ "$SHARDS_ONLY" = 1 ] && continue
    run "global, prefetch" 1 >>"$res"
    run "global, no prefetch" 1 --no-prefetch >>"$res"
    run "shards, in page cache" 0 --shuffle shards --shuffle-window "$WINDOW" >>"$res"
done

"$PY" - "$res" "$seq_mbs" "$n" "$MB" "$SHARDS" "$RANKS" "$REPS" <<'EOF'
import json, statistics, sys, collections
res, seq, n, mb, shards, ranks, reps = sys.argv[1:]
rows = collections.OrderedDict()
for l in open(res):
    e = json.loads(l)
    rows.setdefault(e['name'], []).append(e)
info = dict(l.split(':', 1) for l in open('/proc/cpuinfo').read().split('\n\n')[0].splitlines() if ':' in l)
info = {k.strip(): v.strip() for k, v in info.items()}
isa = 'AVX-512' if 'avx512f' in info.get('flags', '').split() else 'AVX2'
cpu = f"{info.get('model name', '?')} (family {info.get('cpu family', '?')} model {info.get('model', '?')}, {isa})"
print(f"{n} samples of 12 KiB ({mb} MiB) in {shards} files, {ranks} ranks x 1 thread, "
      f"--data-cache-mb 256, one epoch; medians of {reps}; CPU {cpu}; "
      f"the disk reads the files sequentially at {seq} MiB/s (cat, cold)")
print()
print("| reading | epoch s | samples/s | io_wait_s | read MiB (rank 0) | read MiB/s (rank 0) |")
print("|---|---:|---:|---:|---:|---:|")
med = lambda es, k: statistics.median(e[k] for e in es)
for name, es in rows.items():
    print(f"| {name} | {med(es, 'time_s'):.1f} | {med(es, 'samples_per_s'):.0f} | "
          f"{med(es, 'io_wait_s'):.2f} | {med(es, 'read_mb'):.0f} | {med(es, 'read_mb_per_s'):.0f} |")
EOF
