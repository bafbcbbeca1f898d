#!/usr/bin/env bash
# The main job, in one command, on a fresh Debian 12 / Ubuntu machine:
#   installs what is missing (apt-get; says what), builds in Release, imports Fashion-MNIST from
#   the dataset-fashion-mnist package into data/fashion-mnist/{train,test}.h5 (once), trains an MLP
#   with `mpirun -n 2` (validation split from the training set for model selection), evaluates on
#   the test set, prints the test accuracy, and plots the loss/accuracy curves to a PNG.
# Environment: CONFIG (default data/configs/fashion_mlp.conf), RANKS (default 2).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
cd "$SP_ROOT"
config=${CONFIG:-data/configs/fashion_mlp.conf}
ranks=${RANKS:-2}
run=data/runs/quickstart
t_start=$(date +%s)

# shellcheck disable=SC2086
if ! sp_install $SP_PKGS_BUILD; then
    sp_log "cannot install the build dependencies (see above); on a cluster load the modules and"
    sp_log "build by hand: cmake -S . -B build -DCMAKE_BUILD_TYPE=Release && cmake --build build -j"
    exit 1
fi
have_fmnist=yes
sp_install dataset-fashion-mnist || have_fmnist=no
have_plot=yes
sp_install python3 python3-matplotlib || have_plot=no

sp_log "building (Release) in build/"
sp_build "$SP_ROOT/build" Release
bin=$SP_ROOT/build/shardprop

fm=/usr/share/datasets/fashion-mnist
mkdir -p data/fashion-mnist
if [ "$have_fmnist" = yes ] && [ -f $fm/train-images-idx3-ubyte.gz ]; then
    if [ ! -f data/fashion-mnist/train.h5 ] || [ ! -f data/fashion-mnist/test.h5 ]; then
        sp_log "importing Fashion-MNIST from $fm"
        "$bin" import idx --images $fm/train-images-idx3-ubyte.gz --labels $fm/train-labels-idx1-ubyte.gz \
            --out data/fashion-mnist/train.h5
        "$bin" import idx --images $fm/t10k-images-idx3-ubyte.gz --labels $fm/t10k-labels-idx1-ubyte.gz \
            --out data/fashion-mnist/test.h5
    fi
    what="Fashion-MNIST"
else
    sp_log "the dataset-fashion-mnist package is not available: FALLING BACK TO A SYNTHETIC SET"
    sp_log "(784-feature Gaussian blobs, 10 classes); the accuracy below is not Fashion-MNIST's"
    if [ ! -f data/fashion-mnist/synthetic-all.h5 ]; then
        "$bin" synth --kind blobs --n 70000 --features 784 --classes 10 --seed 1 \
            --out data/fashion-mnist/synthetic-all.h5
    fi
    "$bin" split data/fashion-mnist/synthetic-all.h5 --val-fraction 0.142857 --seed 2 \
        --out-train data/fashion-mnist/train.h5 --out-val data/fashion-mnist/test.h5
    what="a synthetic set (Fashion-MNIST unavailable)"
fi
if [ ! -f data/fashion-mnist/train_split.h5 ] || [ data/fashion-mnist/train.h5 -nt data/fashion-mnist/train_split.h5 ]; then
    "$bin" split data/fashion-mnist/train.h5 --val-fraction 0.1 --seed 1 --stratify \
        --out-train data/fashion-mnist/train_split.h5 --out-val data/fashion-mnist/val.h5
fi
"$bin" inspect data/fashion-mnist/train.h5 | sed -n '/^data:/,$p' | head -8

rm -rf "$run"
mkdir -p "$run"
sp_mpi_env
sp_log "training on $what with $ranks MPI ranks: $config"
OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} mpirun -n "$ranks" "$bin" train --config "$config" \
    --out "$run/model.h5" --metrics "$run/metrics.jsonl" --checkpoint-dir "$run/checkpoints" \
    --checkpoint-every 1000

sp_log "evaluating on the test set (data/fashion-mnist/test.h5)"
"$bin" eval --checkpoint "$run/model.h5" --data data/fashion-mnist/test.h5 \
    --metrics "$run/metrics.jsonl" | tee "$run/eval.txt"
acc=$(grep -o 'accuracy [0-9.]*' "$run/eval.txt" | head -n 1 | cut -d' ' -f2)

if [ "$have_plot" = yes ]; then
    "$(sp_python)" scripts/plot_metrics.py "$run/metrics.jsonl" -o "$run/curves.png" \
        --title "shardprop: $(basename "$config" .conf) on $what, $ranks ranks"
else
    sp_log "python3-matplotlib is not available: no plot (the curves are in $run/metrics.jsonl)"
fi
echo
echo "quickstart: TEST ACCURACY ${acc:-?} on $what ($(($(date +%s) - t_start)) s in all)"
plot_note=""
[ "$have_plot" = yes ] && plot_note=", plot $run/curves.png"
echo "  model $run/model.h5, metrics $run/metrics.jsonl$plot_note"
