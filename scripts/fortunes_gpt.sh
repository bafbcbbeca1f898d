#!/usr/bin/env bash
# A GPT on real text, in one command, on a fresh Debian 12 / Ubuntu machine: installs what is
# missing (apt-get: the build dependencies and the `fortunes` package), builds in Release, imports
# the fortunes corpus as byte-level tokens into data/fortunes/fortunes{,-val}.h5 (once; 10 % of
# each file for validation), trains data/configs/fortunes_gpt.conf with `mpirun -n 2`, prints the
# validation loss in bits per byte, and samples text from the trained model.
# Environment: CONFIG (default data/configs/fortunes_gpt.conf), RANKS (default 2), and any
# further `shardprop train` flags in TRAIN_ARGS (e.g. "--max-steps 200" for a short run).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
cd "$SP_ROOT"
config=${CONFIG:-data/configs/fortunes_gpt.conf}
ranks=${RANKS:-2}
run=data/runs/fortunes_gpt
t_start=$(date +%s)

# shellcheck disable=SC2086
sp_install $SP_PKGS_BUILD fortunes
sp_log "building (Release) in build/"
sp_build "$SP_ROOT/build" Release
bin=$SP_ROOT/build/shardprop

corpus=/usr/share/games/fortunes
mkdir -p data/fortunes
if [ ! -f data/fortunes/fortunes.h5 ] || [ ! -f data/fortunes/fortunes-val.h5 ]; then
    # the text files only: not the .dat indexes, nor the .u8 links to the same files
    mapfile -t files < <(find "$corpus" -maxdepth 1 -type f ! -name '*.*' | sort)
    [ "${#files[@]}" -gt 0 ] || { sp_log "no text files in $corpus"; exit 1; }
    sp_log "importing ${#files[@]} files of $corpus as byte-level tokens"
    "$bin" import text --in "${files[@]}" --out data/fortunes/fortunes.h5 --val-fraction 0.1
fi

rm -rf "$run"
mkdir -p "$run"
sp_mpi_env
sp_log "training a GPT on the fortunes corpus with $ranks MPI ranks: $config"
t_train=$(date +%s)
# shellcheck disable=SC2086
OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} mpirun -n "$ranks" "$bin" train --config "$config" \
    --out "$run/model.h5" --metrics "$run/metrics.jsonl" --checkpoint-dir "$run/checkpoints" \
    --checkpoint-every 500 ${TRAIN_ARGS:-}
t_trained=$(date +%s)

bpb=$(grep '"event": "summary"' "$run/metrics.jsonl" | tail -n 1 |
    grep -o '"val_bits_per_token": [0-9.]*' | cut -d' ' -f2)
echo
echo "fortunes_gpt: sample (--prompt 'The ' --tokens 300 --temperature 0.7 --top-k 40 --seed 1):"
"$bin" generate --checkpoint "$run/model.h5" --prompt "The " --tokens 300 --temperature 0.7 \
    --top-k 40 --seed 1 | tee "$run/sample.txt"
echo
echo "fortunes_gpt: VALIDATION ${bpb:-?} BITS PER BYTE (training $((t_trained - t_train)) s," \
    "$(($(date +%s) - t_start)) s in all)"
echo "  model $run/model.h5, metrics $run/metrics.jsonl, sample $run/sample.txt"
