#!/usr/bin/env bash
# Valgrind memcheck on the single-process tests: the C tests of tests/unit/ and tests/system/
# that run in one process (status, the atomic file writer, config, layers, layer kernels, the
# sequence layers, GEMM, model, graphs, optimizers, threads, data reading and loading (sets over
# several files, window staging, augmentation), checkpoints, the best-so-far rule, limits, the
# non-finite scan; every room's executables are build/tests/test_<name>) and the
# fuzz-corpus replays (build/replay_<target>: every committed input of the six fuzz targets of
# tests/fuzz/: the parsers on bad input).
# Any invalid read or write, use of uninitialised memory, bad free, or definite leak fails.
# Complements the ASan+UBSan pass (which runs everything, MPI included): memcheck sees what ASan
# does not instrument (uninitialised reads, code in the system libraries: HDF5, zlib, libgomp).
#   scripts/valgrind.sh [BUILD_DIR]      (a build of the tests; default build/, built if missing)
set -uo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=lib/common.sh
. "$here/lib/common.sh"
build=${1:-$SP_ROOT/build}
command -v valgrind >/dev/null 2>&1 || sp_install valgrind || exit 1
if [ ! -x "$build/tests/test_layers" ]; then
    cmake -S "$SP_ROOT" -B "$build" -DCMAKE_BUILD_TYPE=Release >/dev/null || exit 1
    cmake --build "$build" -j"$(nproc)" >/dev/null || exit 1
fi
log=$(mktemp -d "${TMPDIR:-/tmp}/sp_valgrind_XXXXXX")
# definite leaks are errors; "possibly lost" blocks are libgomp's and HDF5's thread-local and
# free-list memory at exit, not ours
vg=(valgrind --quiet --error-exitcode=99 --leak-check=full --show-leak-kinds=definite
    --errors-for-leak-kinds=definite --track-origins=yes --num-callers=30)
# OpenMP threads are real threads under valgrind (serialized): 2 keeps the threaded paths
export OMP_NUM_THREADS=2 OMP_WAIT_POLICY=passive
# smaller problem sizes where a test offers them (test_gemm: the large shapes left out)
export SHARDPROP_TEST_SMALL=1
fail=0
run() { # NAME COMMAND...
    local name=$1 t0=$SECONDS rc
    shift
    "${vg[@]}" --log-file="$log/$name.%p.log" "$@" >"$log/$name.out" 2>&1
    rc=$?
    if [ $rc -eq 0 ]; then
        printf 'valgrind %-16s ok      %4d s\n' "$name" $((SECONDS - t0))
    else
        printf 'valgrind %-16s FAILED  %4d s (exit %d)\n' "$name" $((SECONDS - t0)) $rc
        tail -n 30 "$log/$name.out"
        cat "$log/$name".*.log
        fail=1
    fi
}
for t in status atomic_file config config_data layers layer_kernels seq_layers gemm model graph \
    optim threads data_read data_loader data_shards data_stage data_augment checkpoint \
    checkpoint_best best_rule limits nonfinite; do
    run "$t" "$build/tests/test_$t"
done
for t in spec config data ckpt idx csv; do
    run "replay_$t" "$build/replay_$t" "$SP_ROOT/tests/fuzz/corpus/$t"
done
[ $fail -eq 0 ] && rm -rf "$log"
exit $fail
