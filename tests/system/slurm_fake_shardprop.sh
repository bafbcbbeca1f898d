#!/bin/bash
# A stand-in for `shardprop train` that follows the trainer's stop/resume contract, so that
# tests/system/slurm_test.sh can check train.sbatch's signal forwarding and requeue logic
# on its own:
#   - every rank records each SIGUSR1/SIGTERM it receives in DIR/signals/rank<R>.<SIG>;
#   - --resume auto continues from DIR/latest ("step_<8 digits>.h5", as the trainer writes it);
#   - a checkpoint every --checkpoint-every steps (rank 0 writes DIR/step_N.h5 and DIR/latest);
#   - on USR1/TERM: checkpoint at the next step, print "checkpointed at step N", exit 0;
#   - at the end: rank 0 writes --out and DIR/COMPLETE (the final step), exit 0.
# Steps: --max-steps N (default 40), FAKE_STEP_SECONDS per step (default 0.1).
# FAKE_FAIL_AT=N makes every rank exit with status 3 at step N (a crash).
# Rank: OMPI_COMM_WORLD_RANK (mpirun), else PMIX_RANK (srun --mpi=pmix), else SLURM_PROCID.
set -u
[ "${1:-}" = train ] || {
    echo "fake shardprop: only 'train'" >&2
    exit 2
}
shift
dir="" out="" every=0 steps=40 resume=""
while [ $# -gt 0 ]; do
    case "$1" in
    --checkpoint-dir) dir=$2; shift ;;
    --out) out=$2; shift ;;
    --checkpoint-every) every=$2; shift ;;
    --max-steps) steps=$2; shift ;;
    --resume) resume=$2; shift ;;
    --*=*) ;;
    --quiet | --no-shuffle | --nesterov | --no-prefetch | --dry-run | --json) ;;
    --*) shift ;;
    esac
    shift
done
rank=${OMPI_COMM_WORLD_RANK:-${PMIX_RANK:-${SLURM_PROCID:-0}}}
stop=""
trap 'stop=USR1; : >"$dir/signals/rank$rank.USR1"' USR1
trap 'stop=TERM; : >"$dir/signals/rank$rank.TERM"' TERM
mkdir -p "$dir/signals"

ckpt() { # ckpt STEP: rank 0 writes the checkpoint and points latest at it
    [ "$rank" = 0 ] || return 0
    local name
    name=$(printf 'step_%08d.h5' "$1")
    echo "fake checkpoint at step $1" >"$dir/$name"
    printf '%s\n' "$name" >"$dir/.latest.tmp" && mv "$dir/.latest.tmp" "$dir/latest"
}

step=0
if [ "$resume" = auto ] && [ -r "$dir/latest" ]; then
    name=$(cat "$dir/latest")
    step=${name#step_}
    step=$((10#${step%.h5}))
    [ "$rank" = 0 ] && echo "resuming from $dir/$name at step $step"
fi
[ "$rank" = 0 ] && echo "fake shardprop: rank $rank of ${SLURM_NTASKS:-${OMPI_COMM_WORLD_SIZE:-1}}," \
    "steps $step..$steps, OMP_NUM_THREADS=${OMP_NUM_THREADS:-unset}"
while [ "$step" -lt "$steps" ]; do
    if [ -n "$stop" ]; then
        ckpt "$step"
        [ "$rank" = 0 ] && echo "SIG$stop: checkpointed at step $step; resume with --resume auto"
        exit 0
    fi
    sleep "${FAKE_STEP_SECONDS:-0.1}"
    step=$((step + 1))
    if [ -n "${FAKE_FAIL_AT:-}" ] && [ "$step" -ge "$FAKE_FAIL_AT" ]; then
        echo "fake shardprop: rank $rank: simulated crash at step $step" >&2
        exit 3
    fi
    if [ "$every" -gt 0 ] && [ $((step % every)) = 0 ]; then ckpt "$step"; fi
done
if [ "$rank" = 0 ]; then
    ckpt "$step"
    [ -n "$out" ] && echo "fake model" >"$out"
    echo "$step" >"$dir/COMPLETE"
    echo "done: $step steps; model written to ${out:-nowhere}"
fi
exit 0
