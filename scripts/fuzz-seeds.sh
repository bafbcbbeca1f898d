#!/usr/bin/env bash
# Regenerate the seed corpora of tests/fuzz/corpus/ with shardprop itself (a normal build).
#   scripts/fuzz-seeds.sh [BUILD_DIR]     (default: build; built if missing)
# Writes small valid inputs and a few slightly broken ones (truncated, a flipped byte). The
# result is committed; run this only to refresh the seeds after a file-format change.
set -euo pipefail
source "$(dirname "$0")/lib/common.sh"
build=${1:-$SP_ROOT/build}
[ -x "$build/shardprop" ] && [ -x "$build/fuzz_seed_ckpt" ] || sp_build "$build" Release
sp=$build/shardprop
sp_mpi_env
export OMP_NUM_THREADS=1
c=$SP_ROOT/tests/fuzz/corpus
rm -rf "$c"
mkdir -p "$c"/{spec,config,data,ckpt,idx,csv}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# broken FILE OUTDIR NAME: a truncated copy and one with a byte flipped in the middle.
broken() {
    local f=$1 d=$2 n=$3 size
    size=$(stat -c %s "$f")
    head -c $((size * 3 / 4)) "$f" >"$d/$n-truncated"
    cp "$f" "$d/$n-flipped"
    printf '\xff' | dd of="$d/$n-flipped" bs=1 seek=$((size / 2)) conv=notrunc status=none
}

# --- model specs
i=0
for s in "dense:10" "flatten,dense:16,relu,dense:4" "conv2d:4:3:pad=1,relu,maxpool:2,flatten,dense:3" \
    "conv2d:2:3:stride=2:pad=1,leaky_relu:0.2,avgpool:2:stride=1,flatten,dropout:0.5,dense:2" \
    "conv2d:3:1,tanh,conv2d:2:2,sigmoid,flatten,gelu,dense:5" "dense:4,relu,dense:4,dropout:0.1,dense:1" \
    "maxpool:3:stride=2,flatten,dense:2" "dense:1000000,dense:1000000" "dense:3,,relu" \
    "conv2d:32:9" "dense:units=7,leaky_relu:slope=0.5"; do
    printf '%s' "$s" >"$c/spec/seed-$i"
    i=$((i + 1))
done

# --- config files
cat >"$c/config/full.conf" <<'CONF'
# a training configuration
data = train.h5
val = val.h5
model = flatten,dense:16,relu,dense:10
optimizer = adamw
lr = 3e-4
weight_decay = 0.01
schedule = cosine
warmup-steps = 100
batch = 128
epochs = 3
seed = 42
no-shuffle = true
checkpoint-dir = ckpt
checkpoint-every = 500
keep = 2
resume = auto
collective-timeout = 120.5
CONF
printf 'data=a.h5\nmodel=dense:2\nnesterov = false\nmomentum=0.5\n' >"$c/config/short.conf"
printf 'unknown = 1\n' >"$c/config/unknown.conf"
printf 'lr = -1\n' >"$c/config/range.conf"
printf 'no equals sign\n' >"$c/config/noeq.conf"
printf '\n# only a comment\n   \n' >"$c/config/empty.conf"

# --- data files: classification, regression, an image set (uint8, via IDX), token data (via
# import text), broken ones
"$sp" synth --kind blobs --n 6 --features 3 --classes 3 --out "$tmp/blobs.h5" >/dev/null
"$sp" synth --kind regression --n 5 --features 2 --outputs 2 --out "$tmp/reg.h5" >/dev/null
# IDX: 3 images of 4x4 and 3 labels
printf '\x00\x00\x08\x03\x00\x00\x00\x03\x00\x00\x00\x04\x00\x00\x00\x04' >"$tmp/img.idx"
for i in $(seq 0 47); do printf "\\x$(printf %02x $((i * 5)))"; done >>"$tmp/img.idx"
printf '\x00\x00\x08\x01\x00\x00\x00\x03\x00\x01\x02' >"$tmp/lab.idx"
"$sp" import idx --images "$tmp/img.idx" --labels "$tmp/lab.idx" --out "$tmp/idx.h5" >/dev/null
printf 'a,b,label\n1,2,0\n3.5,-1,1\n0,0,2\n' >"$tmp/small.csv"
"$sp" import csv --in "$tmp/small.csv" --label-column label --out "$tmp/csv.h5" >/dev/null
printf 'To be, or not to be, that is the question:\nWhether tis nobler in the mind\n' >"$tmp/small.txt"
"$sp" import text --in "$tmp/small.txt" --out "$tmp/tokens.h5" >/dev/null # token data (bytes)
for f in blobs reg idx csv tokens; do cp "$tmp/$f.h5" "$c/data/$f.h5"; done
broken "$tmp/blobs.h5" "$c/data" blobs
broken "$tmp/idx.h5" "$c/data" idx
broken "$tmp/tokens.h5" "$c/data" tokens

# --- checkpoints: model only (shardprop train), and with optimizer and train state
"$sp" train --data "$tmp/blobs.h5" --model dense:4,relu,dense:3 --max-steps 0 --quiet \
    --out "$tmp/init.h5" >/dev/null
"$build/fuzz_seed_ckpt" "$tmp" # adam.h5, sgd-conv.h5: with optimizer and train state
cp "$tmp/init.h5" "$c/ckpt/model-only.h5"
cp "$tmp/adam.h5" "$tmp/sgd-conv.h5" "$c/ckpt/"
broken "$tmp/adam.h5" "$c/ckpt" adam

# --- IDX (fuzz_idx input: 2-byte little-endian labels length, labels, images)
idx_input() { # LABELS IMAGES OUT
    local l
    l=$(stat -c %s "$1")
    printf "\\x$(printf %02x $((l & 255)))\\x$(printf %02x $((l >> 8)))" >"$3"
    cat "$1" "$2" >>"$3"
}
idx_input "$tmp/lab.idx" "$tmp/img.idx" "$c/idx/plain"
gzip -c "$tmp/lab.idx" >"$tmp/lab.idx.gz"
gzip -c "$tmp/img.idx" >"$tmp/img.idx.gz"
idx_input "$tmp/lab.idx.gz" "$tmp/img.idx.gz" "$c/idx/gzip"
head -c 40 "$tmp/img.idx" >"$tmp/img-short.idx"
idx_input "$tmp/lab.idx" "$tmp/img-short.idx" "$c/idx/truncated"

# --- CSV (fuzz_csv input: one options byte, then the text)
csv_input() { printf "\\x$1" >"$3"; cat "$2" >>"$3"; }
csv_input 04 "$tmp/small.csv" "$c/csv/header"           # label column "label"
printf '1,0.5,2\n0,1e3,-4\n\n2,"3",5\n' >"$tmp/noheader.csv"
csv_input 00 "$tmp/noheader.csv" "$c/csv/noheader"       # label column "0"
csv_input 03 "$tmp/noheader.csv" "$c/csv/regression"     # regression, label column "1"
printf 'x,y\n1,2,3\n' >"$tmp/bad.csv"
csv_input 02 "$tmp/bad.csv" "$c/csv/badfields"
du -sh "$c"
