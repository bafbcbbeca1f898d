#!/usr/bin/env bash
# scripts/slurm/train.sbatch on a real SLURM cluster (scripts/slurm/local-cluster.sh).
#
#   tests/system/slurm_test.sh --fake
#       the batch script's own logic, with a stand-in trainer (slurm_fake_shardprop.sh, next to
#       this script) that follows the trainer's stop/resume contract
#   tests/system/slurm_test.sh SHARDPROP_BIN
#       the real trainer
#   tests/system/slurm_test.sh --nodes 2 SHARDPROP_BIN
#       the real trainer on 2 emulated nodes (h1, h2: network namespaces of
#       scripts/cluster/cluster.sh, one slurmd each), one rank per node talking over TCP: an
#       uninterrupted `sbatch -N 2` run, then one with srun and one with mpirun that get the
#       warning signal mid-run; both nodes must have run ranks, in every start of every job;
#       and a short job with two ranks per node
# SLURM_TEST_LAUNCHERS="srun" (or "mpirun") runs only that launcher's interrupted job.
#
# Both start the cluster, submit train.sbatch, send the warning signal (scancel -b -s USR1, what
# --signal=B:USR1@T sends at the time) after the first checkpoint, and check that the job
# checkpointed, requeued itself, resumed and finished; with the srun and the mpirun launcher.
# The cluster is stopped on every exit. The test fails (it does not skip) when SLURM cannot be
# installed or started. SHARDPROP_TEST_KEEP=1 keeps the work directory.
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd) # the source tree: this script is tests/system/slurm_test.sh
cluster=$root/scripts/slurm/local-cluster.sh
sbatch_script=$root/scripts/slurm/train.sbatch
for f in "$cluster" "$sbatch_script"; do
    [ -f "$f" ] || { echo "FAIL: $f not found (the source tree is taken to be $root)" >&2; exit 1; }
done

nodes=1
if [ "${1:-}" = --nodes ]; then
    nodes=${2:-}
    shift 2
    [[ $nodes =~ ^[1-9][0-9]*$ ]] || { echo "usage: $0 [--nodes N] --fake | SHARDPROP_BIN" >&2; exit 2; }
fi
mode=real
if [ "${1:-}" = --fake ]; then
    mode=fake
    bin=$here/slurm_fake_shardprop.sh
else
    bin=${1:-${SHARDPROP_BIN:-}}
    if [ -z "$bin" ] || [ ! -x "$bin" ]; then
        echo "usage: $0 --fake | SHARDPROP_BIN" >&2
        exit 2
    fi
    bin=$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")
fi

t0=$(date +%s)
work=$(mktemp -d "${TMPDIR:-/tmp}/shardprop-slurm-test.XXXXXX")
chmod 0755 "$work" # munged runs as the munge user and must reach its socket in here
export SHARDPROP_SLURM_DIR=$work/cluster
failed=0
log() { printf '[slurm_test +%ss] %s\n' "$(($(date +%s) - t0))" "$*"; }
fail() {
    log "FAIL: $*"
    failed=$((failed + 1))
}
watchdog=""
cleanup() {
    local rc=$?
    [ -n "$watchdog" ] && kill "$watchdog" 2>/dev/null
    [ $failed -gt 0 ] && rc=1
    if [ $rc -ne 0 ]; then
        bash "$cluster" logs 2>&1 | tail -n 60
    fi
    bash "$cluster" stop || rc=1
    if [ "${SHARDPROP_TEST_KEEP:-0}" = 1 ]; then
        log "work directory kept: $work"
    else
        rm -rf "$work"
    fi
    log "$([ $rc = 0 ] && echo PASSED || echo FAILED) ($mode, $nodes node(s), $(($(date +%s) - t0)) s)"
    exit $rc
}
trap cleanup EXIT
trap 'log "FAIL: interrupted or out of time"; exit 1' INT TERM
# Give up before CTest's TIMEOUT kills us with SIGKILL: the daemons must be stopped here.
(
    sleep "${SLURM_TEST_TIME_LIMIT:-240}"
    kill -TERM $$
) >/dev/null 2>&1 &
watchdog=$!

if [ "$nodes" -gt 1 ]; then
    # Our own emulated cluster (namespaces NAME-br, NAME-h1, ...), not one a user may be running.
    export SHARDPROP_SLURM_CLUSTER=${SHARDPROP_SLURM_CLUSTER:-slt}
    log "starting a $nodes-node SLURM cluster (emulated hosts $SHARDPROP_SLURM_CLUSTER-h1..) in $SHARDPROP_SLURM_DIR"
    if ! bash "$cluster" start --nodes "$nodes"; then
        log "FAIL: could not start the $nodes-node local SLURM cluster (it needs root, network" \
            "namespaces with veth and bridge links, scripts/cluster/cluster.sh, and slurm-wlm +" \
            "munge installed or installable with apt-get); see the messages above"
        exit 1
    fi
    # slurmctld is reachable only from inside the emulated network: the client commands go
    # through `local-cluster.sh exec`, which also sets the Open MPI settings for it (OMPI_MCA_*),
    # passed on by sbatch to the jobs.
    for c in sbatch scontrol scancel squeue; do
        eval "$c() { bash \"\$cluster\" exec $c \"\$@\"; }"
    done
    alloc=(-N "$nodes" --ntasks-per-node=1 -c 1)
else
    log "starting a one-node SLURM cluster in $SHARDPROP_SLURM_DIR"
    if ! bash "$cluster" start; then
        log "FAIL: could not start the local SLURM cluster (it needs root, and slurm-wlm + munge" \
            "installed or installable with apt-get); see the messages above"
        exit 1
    fi
    eval "$(bash "$cluster" env)"
    export SLURM_CONF
    alloc=(-N 1 -n 2 -c 1)
fi

# job_field ID FIELD: a field of `scontrol show job` (JobState, Restarts, ExitCode, ...).
job_field() { scontrol show job "$1" -o 2>/dev/null | tr ' ' '\n' | sed -n "s/^$2=//p" | head -n1; }

# wait_done ID SECONDS: until the job reaches a final state (not the pause of a requeue).
wait_done() {
    local id=$1 limit=$2 st
    for ((i = 0; i < limit * 5; i++)); do
        st=$(job_field "$id" JobState)
        case "$st" in
        COMPLETED | FAILED | CANCELLED | TIMEOUT | OUT_OF_MEMORY | NODE_FAIL | BOOT_FAIL | DEADLINE)
            echo "$st"
            return 0
            ;;
        esac
        sleep 0.2
    done
    echo "${st:-unknown}"
    return 1
}

# wait_file PATH ID SECONDS: until PATH exists; fails early when the job ended before.
wait_file() {
    local f=$1 id=$2 limit=$3 st
    for ((i = 0; i < limit * 10; i++)); do
        [ -e "$f" ] && return 0
        st=$(job_field "$id" JobState)
        case "$st" in COMPLETED | FAILED | CANCELLED | TIMEOUT) [ -e "$f" ] && return 0 || return 1 ;; esac
        sleep 0.1
    done
    return 1
}

show_log() {
    log "---- $1"
    sed 's/\r/\n/g' "$1" | tail -n 40
}

# submit NAME LAUNCHER [train arguments...]: prints the job id. 2 ranks x 1 thread (one node),
# or one rank x 1 thread on each node; the script's own warning (600 s before the end) would
# come at once with a 5-minute limit.
submit() {
    local name=$1 launcher=$2 largs=""
    shift 2
    mkdir -p "$work/$name"
    # All emulated nodes bind their first rank to the same real core: do not bind there.
    [ "$nodes" -gt 1 ] && [ "$launcher" = mpirun ] && largs="--bind-to none"
    SHARDPROP=$bin SHARDPROP_LAUNCHER=$launcher SHARDPROP_CHECKPOINT_DIR=$work/$name/ckpt \
        SHARDPROP_CHECKPOINT_EVERY=$ckpt_every SHARDPROP_MAX_RESTARTS=3 \
        SHARDPROP_LAUNCHER_ARGS=$largs \
        sbatch --parsable --job-name="$name" "${alloc[@]}" --time=5 --signal=B:USR1@10 \
            --output="$work/$name/job.out" "$sbatch_script" "$@" --out "$work/$name/model.h5"
}

# on_all_nodes NAME STARTS [PER_NODE]: each of the job's STARTS starts ran PER_NODE (default 1)
# ranks on every node (the trainer's layout report: "host hK: 1 rank, ...").
on_all_nodes() {
    local name=$1 want=$2 per=${3:-1} k n
    for ((k = 1; k <= nodes; k++)); do
        n=$(grep -c "^  host h$k: $per rank" "$work/$name/job.out")
        if [ "$n" = "$want" ]; then
            log "$name: host h$k ran $per rank(s) in each of the $want start(s)"
        else
            fail "$name: host h$k ran $per rank(s) in $n of the $want start(s) (layout report lines 'host h$k:')"
        fi
    done
}

# check_finished NAME ID RESTARTS: the job ended well, after RESTARTS requeues.
check_finished() {
    local name=$1 id=$2 want=$3 d=$work/$1 st r f0=$failed
    st=$(wait_done "$id" 90) || {
        fail "$name: job $id did not end within 90 s (state $st)"
        scancel "$id" 2>/dev/null
        return 1
    }
    r=$(job_field "$id" Restarts)
    [ "$st" = COMPLETED ] || fail "$name: job $id ended $st (exit $(job_field "$id" ExitCode))"
    [ "$r" = "$want" ] || fail "$name: job $id was restarted ${r:-?} times, expected $want"
    [ -s "$d/ckpt/COMPLETE" ] || fail "$name: no $d/ckpt/COMPLETE"
    [ -s "$d/model.h5" ] || fail "$name: --out $d/model.h5 not written"
    grep -q "training finished" "$d/job.out" || fail "$name: the log does not say 'training finished'"
    if [ $failed = "$f0" ]; then
        log "$name: job $id COMPLETED after $r requeue(s); COMPLETE=$(cat "$d/ckpt/COMPLETE")"
        return 0
    fi
    show_log "$d/job.out"
    return 1
}

# interrupted NAME LAUNCHER [train arguments...]: the warning signal after the first
# checkpoint; the job must checkpoint, requeue, resume from that checkpoint and finish.
interrupted() {
    local name=$1 launcher=$2 id d=$work/$1 at step part f0=$failed
    shift 2
    id=$(submit "$name" "$launcher" "$@") || {
        fail "$name: sbatch failed"
        return 1
    }
    log "$name: job $id ($launcher); waiting for the first checkpoint"
    if ! wait_file "$d/ckpt/latest" "$id" 60; then
        fail "$name: no checkpoint ($d/ckpt/latest) appeared while the job ran (state $(job_field "$id" JobState))"
        show_log "$d/job.out"
        scancel "$id" 2>/dev/null
        return 1
    fi
    log "$name: checkpoint $(cat "$d/ckpt/latest"); sending the warning signal (scancel -b -s USR1 $id)"
    scancel -b -s USR1 "$id" || fail "$name: scancel -b -s USR1 failed"
    check_finished "$name" "$id" 1 || return 1
    grep -q "got SIGUSR1" "$d/job.out" || fail "$name: the batch shell's trap did not fire"
    grep -q "checkpointed at step" "$d/job.out" ||
        fail "$name: no 'checkpointed at step' line from the trainer after the signal"
    at=$(sed -n 's/.*checkpointed at \(step_[0-9]*\.h5\) and not finished.*requeueing.*/\1/p' "$d/job.out" | head -n1)
    [ -n "$at" ] || fail "$name: the batch script did not requeue after a checkpoint"
    # The part of the log after the restart: the trainer must say it resumes from that checkpoint.
    step=${at:-step_0.h5}
    step=${step#step_}
    step=$((10#${step%.h5}))
    part=$(sed -n '/restart 1:/,$p' "$d/job.out" | grep -v '^\[train.sbatch' | tr '\r' '\n')
    grep -qi "resum" <<<"$part" || fail "$name: no resume message from the trainer after the requeue"
    grep -i "resum" <<<"$part" | grep -qE "$at|(^|[^0-9])$step([^0-9]|$)" ||
        fail "$name: the trainer's resume message does not name $at / step $step"
    if [ $failed = "$f0" ]; then
        log "$name: checkpointed at $at, requeued, resumed and finished"
    else
        show_log "$d/job.out"
        return 1
    fi
}

# crashed NAME LAUNCHER [train arguments...]: a failing trainer: no requeue, status kept.
crashed() {
    local name=$1 launcher=$2 id st r f0=$failed
    shift 2
    id=$(submit "$name" "$launcher" "$@") || {
        fail "$name: sbatch failed"
        return 1
    }
    st=$(wait_done "$id" 60)
    r=$(job_field "$id" Restarts)
    [ "$st" = FAILED ] || fail "$name: a crashing trainer should leave the job FAILED, got $st"
    [ "$r" = 0 ] || fail "$name: a crashing trainer was requeued ($r restarts)"
    grep -q "training failed" "$work/$name/job.out" || fail "$name: no 'training failed' in the log"
    if [ $failed = "$f0" ]; then
        log "$name: job $id $st, exit $(job_field "$id" ExitCode), not requeued"
    else
        show_log "$work/$name/job.out"
        return 1
    fi
}

if [ $mode = fake ]; then
    ckpt_every=5
    export FAKE_STEP_SECONDS=0.1
    for launcher in srun mpirun; do
        interrupted "fake-$launcher" $launcher --max-steps 40 || continue
        n=$(find "$work/fake-$launcher/ckpt/signals" -name 'rank*.USR1' | wc -l)
        if [ "$n" = 2 ]; then
            log "fake-$launcher: SIGUSR1 reached both ranks"
        else
            fail "fake-$launcher: SIGUSR1 reached $n of 2 ranks"
        fi
    done
    FAKE_FAIL_AT=3 crashed fake-crash srun --max-steps 40
else
    # Blobs, 2 ranks, 471 steps: about 3 s of training per run on 2 idle cores (10-20 s when
    # the cores are shared); a checkpoint every 25 steps.
    ckpt_every=${SLURM_TEST_CKPT_EVERY:-25}
    "$bin" synth --kind blobs --n 20000 --features 32 --classes 4 --seed 1 \
        --out "$work/blobs.h5" >/dev/null || {
        fail "shardprop synth failed"
        exit 1
    }
    train=(--data "$work/blobs.h5" --model "dense:512,relu,dense:512,relu,dense:4" --epochs 3
        --batch 128 --seed 3 --quiet)
    launchers=${SLURM_TEST_LAUNCHERS:-srun mpirun}
    if [ "$nodes" -gt 1 ]; then
        # Without --quiet: the layout report says which hosts ran ranks.
        unset 'train[${#train[@]}-1]'
    fi
    id=$(submit reference srun "${train[@]}") || fail "reference: sbatch failed"
    log "reference: job $id (srun), uninterrupted"
    check_finished reference "$id" 0 && [ "$nodes" -gt 1 ] && on_all_nodes reference 1
    for launcher in $launchers; do
        interrupted "signal-$launcher" "$launcher" "${train[@]}" || continue
        [ "$nodes" -gt 1 ] && on_all_nodes "signal-$launcher" 2
        if [ -s "$work/reference/model.h5" ]; then
            if h5diff -q "$work/reference/model.h5" "$work/signal-$launcher/model.h5" /model/params \
                /model/params >/dev/null 2>&1; then
                log "signal-$launcher: final parameters identical to the uninterrupted run"
            else
                fail "signal-$launcher: final parameters differ from the uninterrupted run"
                h5diff -r "$work/reference/model.h5" "$work/signal-$launcher/model.h5" /model/params \
                    /model/params 2>&1 | head -n 20
            fi
        fi
    done
    if [ "$nodes" = 1 ]; then
        crashed crash srun --data "$work/missing.h5" --model dense:4 --epochs 1
    else
        # Two ranks on every node (mpirun), a short run.
        alloc=(-N "$nodes" --ntasks-per-node=2 -c 1)
        if id=$(submit two-per-node mpirun --data "$work/blobs.h5" --model dense:64,relu,dense:4 \
            --epochs 1 --batch 256 --seed 3); then
            log "two-per-node: job $id (mpirun, $((2 * nodes)) ranks)"
            check_finished two-per-node "$id" 0 && on_all_nodes two-per-node 1 2
        else
            fail "two-per-node: sbatch failed"
        fi
    fi
fi
[ $failed = 0 ]
