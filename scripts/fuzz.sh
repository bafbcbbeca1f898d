#!/usr/bin/env bash
# Run one libFuzzer target of tests/fuzz/ for a while.
#   scripts/fuzz.sh TARGET SECONDS       TARGET: spec config data ckpt idx csv
# Builds build-fuzz/ (clang, -DSHARDPROP_FUZZ=ON) when needed, installing clang, compiler-rt and
# libomp with apt-get when missing. Fuzzes a scratch copy of tests/fuzz/corpus/TARGET (the
# committed corpus is never grown), one job, with -rss_limit_mb, -malloc_limit_mb and -timeout.
# Prints the executions; exits non-zero on any finding (crash, sanitizer report, leak, timeout,
# out-of-memory), leaving the reproducer in build-fuzz/findings/TARGET/. Known libhdf5 issues
# (leaks inside libhdf5, an input that hangs inside libhdf5: tests/fuzz/hdf5-known/) are reported
# but do not fail the run.
# Environment: SP_FUZZ_BUILD (default build-fuzz), SP_FUZZ_ARGS (extra libFuzzer flags).
set -euo pipefail
source "$(dirname "$0")/lib/common.sh"
usage() { echo "usage: $0 spec|config|data|ckpt|idx|csv SECONDS" >&2; exit 2; }
[ $# -eq 2 ] || usage
target=$1 secs=$2
case $target in spec | config | data | ckpt | idx | csv) ;; *) usage ;; esac
[[ $secs =~ ^[0-9]+$ ]] && [ "$secs" -ge 1 ] || usage

build=${SP_FUZZ_BUILD:-$SP_ROOT/build-fuzz}
# shellcheck disable=SC2086 # a list of package names
sp_install $SP_PKGS_BUILD clang-14 libclang-rt-14-dev libomp-14-dev
cc=$(command -v clang-14 || command -v clang)
if [ ! -f "$build/CMakeCache.txt" ]; then
    CC=$cc cmake -S "$SP_ROOT" -B "$build" -DSHARDPROP_FUZZ=ON -DBUILD_TESTING=OFF \
        -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
fi
cmake --build "$build" -j"$(nproc)" --target "fuzz_$target" >/dev/null

base=${TMPDIR:-/tmp}
[ -d /dev/shm ] && [ -w /dev/shm ] && base=/dev/shm
work=$(mktemp -d "$base/shardprop-fuzz-$target.XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir "$work/scratch"
export SP_FUZZ_SCRATCH=$work/scratch # the targets' files; crashed jobs' leftovers go with $work
cp -r "$SP_ROOT/tests/fuzz/corpus/$target" "$work/corpus"
findings=$build/findings/$target
mkdir -p "$findings"
dict=()
[ -f "$SP_ROOT/tests/fuzz/$target.dict" ] && dict=(-dict="$SP_ROOT/tests/fuzz/$target.dict")

export OMP_NUM_THREADS=1
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1}
export LSAN_OPTIONS=${LSAN_OPTIONS:-suppressions=$SP_ROOT/tests/fuzz/lsan-hdf5.supp:print_suppressions=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
limits=(-rss_limit_mb=2048 -malloc_limit_mb=1024 -timeout=10)
# The HDF5 targets run in fork mode with crashes, timeouts and OOMs logged rather than fatal: a
# crafted file can make libhdf5 itself crash, loop or allocate gigabytes (tests/fuzz/hdf5-known/);
# each is classified afterwards.
mode=()
case $target in data | ckpt) mode=(-fork=1 -ignore_timeouts=1 -ignore_ooms=1 -ignore_crashes=1) ;; esac
log=$work/log
set +e
# shellcheck disable=SC2086
(cd "$work" && "$build/fuzz_$target" -max_total_time="$secs" "${limits[@]}" -max_len=65536 \
    -print_final_stats=1 -artifact_prefix="$findings/" "${mode[@]}" "${dict[@]}" \
    ${SP_FUZZ_ARGS:-} "$work/corpus" >"$log" 2>&1)
rc=$?
set -e
execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
[ -n "$execs" ] || execs=$(sed -n 's/^#\([0-9]*\): cov:.*/\1/p' "$log" | tail -1) # fork mode
# In fork mode the exit status is the last job's: the artifacts below decide instead.
if [ $rc -ne 0 ] && [ ${#mode[@]} -eq 0 ]; then
    tail -n 60 "$log" >&2
    sp_log "fuzz_$target: FINDING after ${execs:-?} executions (exit $rc); reproducer in $findings/"
    exit 1
fi
# Findings of the HDF5 targets (fork mode): known when inside libhdf5 - the first stack frame
# of the report that is not libFuzzer's, the sanitizers', the allocator's or libc's is libhdf5's
# (tests/fuzz/hdf5-known/) -, a finding otherwise. The sanitizers' interceptors of libc calls
# (strdup, memcpy, ...) sit in the fuzz binary itself: a frame there without a source line is
# theirs (shardprop's own frames have file:line; the binary is built with debug info). An RSS out-of-memory report lists allocation
# sites; libFuzzer's own (from main, libstdc++) are skipped too. The rerun's RSS limit is high
# (8 GB) so that a huge single malloc is caught, with its stack, by the malloc limit before the
# RSS watchdog fires: the RSS report has no stack (a libhdf5 input that grew to 2 GB and then
# asked for 16 GB was once called a finding for that reason).
where_() { # ARTIFACT: the deciding stack frame
    "$build/fuzz_$target" -timeout=3 -rss_limit_mb=8192 -malloc_limit_mb=1024 "$1" 2>&1 |
        sed -n '/ERROR: /,$p' | grep '^ *#[0-9]' |
        grep -v 'fuzzer::\|__sanitizer\|__asan\|__interceptor_\| in malloc \| in calloc \| in realloc \|libc\.so\|sysdeps/\|libstdc++\| in main (' |
        grep -v "/fuzz_$target+0x" |
        head -n 1
}
known=0
for t in "$findings"/timeout-* "$findings"/oom-* "$findings"/crash-* "$findings"/leak-*; do
    [ -e "$t" ] || continue
    if [[ $(where_ "$t") == *libhdf5* ]]; then
        known=$((known + 1))
        mkdir -p "$findings/hdf5-known" && mv "$t" "$findings/hdf5-known/"
    else
        "$build/fuzz_$target" -timeout=3 "$t" 2>&1 | tail -n 40 >&2
        sp_log "fuzz_$target: FINDING outside libhdf5 after ${execs:-?} executions: $t"
        exit 1
    fi
done
[ $known -eq 0 ] || sp_log "fuzz_$target: $known input(s) crash, hang or exhaust memory inside libhdf5 (known HDF5 issues, kept in $findings/hdf5-known/)"
echo "fuzz_$target: ${execs:-0} executions in ${secs} s, no finding"
