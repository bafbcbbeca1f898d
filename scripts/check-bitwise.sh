#!/usr/bin/env bash
# Does a change keep training bitwise? Runs a fixed set of trainings with two shardprop
# binaries and compares every dataset of their final model files byte for byte (parameters,
# optimizer state, the batch-norm-free /train state), and the loss lines of their metrics.
#
#   scripts/check-bitwise.sh OLD_BIN NEW_BIN [WORKDIR]
#
# OLD_BIN is typically the build of the commit before a refactor (git worktree add /tmp/old
# <commit> && build it), NEW_BIN the build after it. The set: an MLP (with dropout, Adam,
# clipping and validation) and a CNN, on 1 and 2 ranks, in the default mode and with
# --deterministic, and a 2-rank run stopped at a checkpoint and resumed. Data: the first
# 6,000 Fashion-MNIST training images, 4,800 to train and 1,200 to validate. About 2 minutes on 2 cores.
# Prints one line per run and exits non-zero if any file differs.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
[ $# -ge 2 ] || { sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
OLD=$(realpath "$1") NEW=$(realpath "$2")
WORK=${3:-$(mktemp -d /tmp/sp-bitwise.XXXXXX)}
mkdir -p "$WORK"
sp_mpi_env
PY=$(sp_python)
FM=/usr/share/datasets/fashion-mnist
[ -r "$FM/train-images-idx3-ubyte.gz" ] || { echo "check-bitwise: $FM missing (apt-get install dataset-fashion-mnist)" >&2; exit 1; }

TRAIN=$WORK/train.h5 VAL=$WORK/val.h5
if [ ! -s "$TRAIN" ]; then
    "$NEW" import idx --images "$FM/train-images-idx3-ubyte.gz" --labels "$FM/train-labels-idx1-ubyte.gz" \
        --out "$WORK/fm.h5" >/dev/null
    "$NEW" split "$WORK/fm.h5" --val-fraction 0.9 --seed 3 --out-train "$WORK/fm6k.h5" --out-val "$WORK/rest.h5" >/dev/null
    "$NEW" split "$WORK/fm6k.h5" --val-fraction 0.2 --seed 3 --out-train "$TRAIN" --out-val "$VAL" >/dev/null
    rm -f "$WORK/fm.h5" "$WORK/fm6k.h5" "$WORK/rest.h5"
fi

MLP="flatten,dense:96,relu,dropout:0.2,dense:10"
CNN="conv2d:8:3:pad=1,relu,maxpool:2,conv2d:8:3,relu,flatten,dense:10"
COMMON=(--data "$TRAIN" --seed 5 --batch 50 --log-every 10 --quiet)

# run SIDE NAME RANKS THREADS [train flags...]: trains with SIDE's binary (old|new) into
# $WORK/NAME.SIDE.h5
run() {
    local side=$1 name=$2 np=$3 th=$4 bin
    shift 4
    bin=$([ "$side" = old ] && echo "$OLD" || echo "$NEW")
    rm -rf "$WORK/$name.$side".*
    OMP_NUM_THREADS=$th mpirun -n "$np" --bind-to none "$bin" train "${COMMON[@]}" \
        --metrics "$WORK/$name.$side.jsonl" --out "$WORK/$name.$side.h5" "$@" >"$WORK/$name.$side.log" 2>&1 ||
        { echo "check-bitwise: $name ($side) failed:" >&2; tail -5 "$WORK/$name.$side.log" >&2; return 1; }
}

# resumed SIDE NAME RANKS [train flags...]: 60 steps with a checkpoint at 30, stopped there by
# --max-steps, then resumed to 60 from the checkpoint
resumed() {
    local side=$1 name=$2 np=$3 bin
    shift 3
    bin=$([ "$side" = old ] && echo "$OLD" || echo "$NEW")
    rm -rf "$WORK/$name.$side".* "$WORK/$name.$side.ckpt"
    local ck=(--checkpoint-dir "$WORK/$name.$side.ckpt" --checkpoint-every 30)
    mpirun -n "$np" --bind-to none "$bin" train "${COMMON[@]}" "${ck[@]}" --max-steps 30 "$@" \
        >"$WORK/$name.$side.log" 2>&1 &&
        mpirun -n "$np" --bind-to none "$bin" train "${COMMON[@]}" "${ck[@]}" --max-steps 60 \
            --resume auto --metrics "$WORK/$name.$side.jsonl" --out "$WORK/$name.$side.h5" "$@" \
            >>"$WORK/$name.$side.log" 2>&1 ||
        { echo "check-bitwise: $name ($side) failed:" >&2; tail -5 "$WORK/$name.$side.log" >&2; return 1; }
}

RUNS=(
    "mlp_1x1 run 1 1 --model $MLP --optimizer adam --lr 0.002 --clip-norm 1 --val $VAL --epochs 2"
    "mlp_2x1 run 2 1 --model $MLP --optimizer adam --lr 0.002 --clip-norm 1 --val $VAL --epochs 2 --layer-stats"
    "mlp_1x2 run 1 2 --model $MLP --max-steps 150"
    "mlp_det_1x1 run 1 1 --model $MLP --deterministic --micro-batch 8 --epochs 2"
    "mlp_det_2x1 run 2 1 --model $MLP --deterministic --micro-batch 8 --epochs 2"
    "cnn_1x1 run 1 1 --model $CNN --max-steps 60"
    "cnn_2x1 run 2 1 --model $CNN --max-steps 60"
    "cnn_det_1x1 run 1 1 --model $CNN --max-steps 60 --deterministic"
    "cnn_det_2x1 run 2 1 --model $CNN --max-steps 60 --deterministic"
    "mlp_resume_2x1 resumed 2 --model $MLP --optimizer adamw --weight-decay 0.01"
    "mlp_det_resume_2x1 resumed 2 --model $MLP --deterministic"
)

fail=0
for spec in "${RUNS[@]}"; do
    read -r -a w <<<"$spec"
    name=${w[0]} kind=${w[1]}
    for side in old new; do
        if [ "$kind" = run ]; then
            run $side "$name" "${w[2]}" "${w[3]}" "${w[@]:4}"
        else
            resumed $side "$name" "${w[2]}" "${w[@]:3}"
        fi
    done
    if "$PY" - "$WORK/$name.old" "$WORK/$name.new" <<'EOF'; then :; else fail=1; fi
import json, sys
import h5py, numpy as np
old, new = sys.argv[1], sys.argv[2]
def datasets(path):
    out = {}
    with h5py.File(path + ".h5", "r") as f:
        f.visititems(lambda n, o: out.__setitem__(n, o[()]) if isinstance(o, h5py.Dataset) else None)
    return out
def losses(path):
    keep = ("event", "step", "epoch", "loss", "loss_hex", "accuracy", "val_loss", "val_accuracy")
    rows = []
    for line in open(path + ".jsonl"):
        r = json.loads(line)
        if r.get("event") in ("step", "epoch"):
            rows.append({k: r[k] for k in keep if k in r})
    return rows
a, b = datasets(old), datasets(new)
diff = sorted(set(a) ^ set(b))
for k in sorted(set(a) & set(b)):
    x, y = np.asarray(a[k]), np.asarray(b[k])
    if x.dtype != y.dtype or x.shape != y.shape or x.tobytes() != y.tobytes():
        diff.append(k)
la, lb = losses(old), losses(new)
name = old.rsplit("/", 1)[1].rsplit(".", 1)[0]
n = sum(np.asarray(v).size for k, v in a.items() if k.startswith(("model/", "optimizer/")))
if diff or la != lb:
    print(f"DIFFER   {name}: datasets {diff or 'equal'}; metrics {'equal' if la == lb else 'differ'}")
    sys.exit(1)
print(f"BITWISE  {name}: {len(a)} datasets ({n} model and optimizer values), {len(la)} metric lines")
EOF
done
[ $fail = 0 ] && echo "check-bitwise: every run is bitwise identical ($WORK)" || echo "check-bitwise: differences ($WORK)"
exit $fail
