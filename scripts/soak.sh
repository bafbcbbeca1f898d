#!/usr/bin/env bash
# Soak test: train with 2 ranks for MINUTES, checkpointing and resuming over and over, and watch
# the resident memory of the ranks. RSS after warm-up must stay flat.
#
#   scripts/soak.sh MINUTES [WORKDIR]
#
# The run is cut into cycles (SOAK_CYCLE_MIN, default MINUTES/3, at least 1): odd cycles end with
# --max-time (a clean checkpoint and exit 0), even ones with kill -9 of both ranks and the
# launcher at a random moment; each next cycle resumes with --resume auto. Training reads the
# data file every step (--data-cache-mb 0: the HDF5 read path runs all the time), evaluates a
# validation set every epoch and checkpoints every 100 steps (--keep 3).
#
# Every SOAK_SAMPLE_S seconds (default 2) the VmRSS of each rank (/proc/PID/status) goes to
# WORKDIR/rss.csv (time_s, cycle, rank, pid, rss_kib, step). The first SOAK_WARMUP_S seconds of
# each cycle (default 20: the first epoch, buffers, the MPI stack) are warm-up; over the rest a
# least-squares line is fitted per rank and cycle, and pooled over the cycles (the within-cycle
# slope: every cycle is a new process). PASS when the pooled slope of every rank is below
# SOAK_MAX_SLOPE (KiB/min, default 64). Exit status 0 = pass, 1 = fail, 2 = the run itself
# failed (a cycle that should have checkpointed did not, or no progress).
#
# Environment: SHARDPROP (the binary; default build/shardprop, built if missing), MPIEXEC.
set -uo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=lib/common.sh
. "$here/lib/common.sh"
minutes=${1:?usage: scripts/soak.sh MINUTES [WORKDIR]}
work=${2:-$(mktemp -d "${TMPDIR:-/tmp}/sp_soak_XXXXXX")}
mkdir -p "$work"
bin=${SHARDPROP:-$SP_ROOT/build/shardprop}
if [ ! -x "$bin" ]; then
    cmake -S "$SP_ROOT" -B "$SP_ROOT/build" -DCMAKE_BUILD_TYPE=Release >/dev/null &&
        cmake --build "$SP_ROOT/build" -j"$(nproc)" >/dev/null || exit 2
fi
mpiexec=${MPIEXEC:-mpiexec}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1
sample_s=${SOAK_SAMPLE_S:-2}
warmup_s=${SOAK_WARMUP_S:-20}
max_slope=${SOAK_MAX_SLOPE:-64}
cycle_min=${SOAK_CYCLE_MIN:-$(awk -v m="$minutes" 'BEGIN { c = m / 3; print (c < 1 ? 1 : c) }')}

"$bin" synth --kind blobs --n 20000 --features 64 --classes 10 --seed 1 --out "$work/train.h5" >/dev/null &&
    "$bin" synth --kind blobs --n 2000 --features 64 --classes 10 --seed 2 --out "$work/val.h5" >/dev/null || exit 2
ck="$work/ck"
args=(train --data "$work/train.h5" --val "$work/val.h5" --model dense:256,relu,dropout:0.1,dense:128,relu,dense:10
    --optimizer adam --lr 0.001 --batch 64 --epochs 100000 --data-cache-mb 0
    --checkpoint-dir "$ck" --checkpoint-every 100 --keep 3 --resume auto --log-every 1000
    --metrics "$work/metrics.jsonl")
csv="$work/rss.csv"
echo "time_s,cycle,rank,pid,rss_kib,step" >"$csv"
sp_log "soak: $minutes min in cycles of $cycle_min min, RSS every $sample_s s, warm-up $warmup_s s; $work"

t_start=$(date +%s.%N)
elapsed() { awk -v a="$(date +%s.%N)" -v b="$t_start" 'BEGIN { printf "%.1f", a - b }'; }
cycle=0 status=0
while awk -v e="$(elapsed)" -v m="$minutes" 'BEGIN { exit !(e < m * 60 - 30) }'; do
    cycle=$((cycle + 1))
    left=$(awk -v e="$(elapsed)" -v m="$minutes" -v c="$cycle_min" 'BEGIN { l = m - e / 60; print (l < c ? l : c) }')
    kill_mode=$((cycle % 2 == 0))
    if [ $kill_mode = 1 ]; then
        # killed at a random moment in the second half of the cycle; --max-time as a backstop
        kill_at=$(awk -v l="$left" -v s="$RANDOM" 'BEGIN { printf "%.1f", l * 60 * (0.5 + 0.4 * s / 32768) }')
    fi
    "$mpiexec" -n 2 --bind-to none "$bin" "${args[@]}" --max-time "$left" >"$work/cycle_$cycle.log" 2>&1 &
    mp=$!
    c0=$(date +%s.%N)
    while kill -0 $mp 2>/dev/null; do
        now=$(awk -v a="$(date +%s.%N)" -v b="$c0" 'BEGIN { printf "%.1f", a - b }')
        step=$(cat "$ck/latest" 2>/dev/null | sed 's/step_0*\([0-9]*\)\.h5/\1/')
        for p in $(pgrep -f "^$bin train .*--checkpoint-dir $ck "); do
            r=$(tr '\0' '\n' <"/proc/$p/environ" 2>/dev/null | sed -n 's/^OMPI_COMM_WORLD_RANK=//p')
            rss=$(awk '/^VmRSS:/ { print $2 }' "/proc/$p/status" 2>/dev/null)
            [ -n "$r" ] && [ -n "$rss" ] && echo "$(elapsed),$cycle,$r,$p,$rss,${step:-0}" >>"$csv"
        done
        if [ $kill_mode = 1 ] && awk -v n="$now" -v k="$kill_at" 'BEGIN { exit !(n >= k) }'; then
            kill -9 $mp $(pgrep -f "^$bin train .*--checkpoint-dir $ck ") 2>/dev/null
            sp_log "cycle $cycle: kill -9 after $now s (latest: $(cat "$ck/latest" 2>/dev/null))"
            break
        fi
        sleep "$sample_s"
    done
    { wait $mp; } 2>/dev/null # no "Killed" notice from the shell
    rc=$?
    # make sure nothing of this cycle is left before the next one resumes
    for _ in $(seq 50); do pgrep -f "^$bin train .*--checkpoint-dir $ck " >/dev/null || break; sleep 0.1; done
    if [ $kill_mode = 0 ] || [ $rc -eq 0 ]; then
        if [ $rc -ne 0 ] || ! grep -q "stopped by the time limit\|^done:" "$work/cycle_$cycle.log"; then
            sp_log "cycle $cycle: the run failed (exit $rc):"
            tail -n 20 "$work/cycle_$cycle.log" >&2
            status=2
            break
        fi
        sp_log "cycle $cycle: clean stop ($(grep -o 'checkpointed at step [0-9]*' "$work/cycle_$cycle.log"))"
    fi
done
final=$(sed 's/step_0*\([0-9]*\)\.h5/\1/' "$ck/latest" 2>/dev/null)
sp_log "soak: $cycle cycles, $(elapsed) s, training at step ${final:-0}"
[ "${final:-0}" -gt 0 ] || status=2

# the last cycle ends at MINUTES (one shorter than 30 s is not started)
# Least squares per (rank, cycle) after warm-up, and pooled within-cycle per rank (KiB/min).
awk -F, -v warm="$warmup_s" -v max="$max_slope" -v status="$status" '
NR == 1 { next }
{
    k = $3 "," $2
    if (!(k in t0)) t0[k] = $1
    if ($1 - t0[k] < warm) next
    x = ($1 - t0[k]) / 60; y = $5
    n[k]++; sx[k] += x; sy[k] += y; sxx[k] += x * x; sxy[k] += x * y
    if (!(k in first)) first[k] = y
    last[k] = y
}
END {
    fail = 0
    for (k in n) {
        split(k, rc, ",")
        if (n[k] < 3) continue
        cxx = sxx[k] - sx[k] * sx[k] / n[k]; cxy = sxy[k] - sx[k] * sy[k] / n[k]
        if (cxx <= 0) continue
        printf "rank %s cycle %s: %d samples, RSS %d -> %d KiB, slope %+.1f KiB/min\n", rc[1], rc[2], n[k], first[k], last[k], cxy / cxx | "sort -V"
        pxx[rc[1]] += cxx; pxy[rc[1]] += cxy; pn[rc[1]] += n[k]
    }
    close("sort -V")
    for (r in pxx) {
        s = pxy[r] / pxx[r]
        ok = s < max
        if (!ok) fail = 1
        printf "SLOPE rank %s: %+.2f KiB/min (pooled over cycles, %d samples after warm-up); threshold %d: %s\n", r, s, pn[r], max, ok ? "PASS" : "FAIL"
    }
    if (length(pxx) == 0) { print "no samples after warm-up: FAIL"; fail = 1 }
    exit status ? status : fail
}' "$csv"
rc=$?
sp_log "samples: $csv"
exit "$rc"
