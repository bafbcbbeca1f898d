#!/usr/bin/env bash
# `shardprop train --dry-run --network NET` prints the scaling advice (docs/scaling.md, section 7):
# one row per rank count up to the global batch and the largest rank count at >= 90 % (for a
# CPU-driven shm network: up to 4 x this machine's cores, and says so); a bad
# network name and --network without --dry-run are one-line errors.
set -euo pipefail
SP=$1
d=$(mktemp -d)
trap 'rm -rf "$d"' EXIT
"$SP" synth --kind blobs --n 64 --features 8 --classes 3 --out "$d/x.h5" >/dev/null
out=$("$SP" train --data "$d/x.h5" --model dense:16,relu,dense:3 --batch 16 --dry-run \
    --network eth25)
echo "$out"
fail() { echo "FAIL: $*" >&2; exit 1; }
echo "$out" | grep -q "scaling advice for network eth25 (alpha 10 us, 25 Gb/s" || fail "header"
for P in 1 2 4 8 16; do
    echo "$out" | grep -Eq "^ +$P +$((16 / P)) " || fail "no row for P=$P"
done
echo "$out" | grep -Eq "^ +32 " && fail "a row beyond the global batch"
echo "$out" | grep -q "largest P at >= 90% efficiency (every P up to it): [0-9]* with 4 MB buckets" || fail "summary"
# shm: CPU-driven, one node: the rows stop at 4 x the cores (ranks beyond share them)
cores=$(nproc)
shm=$("$SP" train --data "$d/x.h5" --model dense:16,relu,dense:3 --batch 64 --dry-run \
    --network shm:0.3:25:0.2)
echo "$shm" | grep -q "CPU-driven: the allreduce runs on the $cores cores" || fail "shm header"
echo "$shm" | grep -q "gamma 0.2 ns/B" || fail "shm gamma"
echo "$shm" | grep -Eq "^ +$((8 * cores)) " && fail "shm: a row beyond 4 x $cores cores"
echo "$shm" | grep -Eq "^ +2 +32 " || fail "shm: no row for P=2"
if [ "$cores" -ge 2 ]; then
    echo "$shm" | grep -q "CPU-driven, $cores ranks: --bucket-mb 0 (one blocking" || fail "shm: blocking"
else
    echo "$shm" | grep -q "CPU-driven, [0-9]* ranks: --bucket-mb 0" && fail "shm: blocking at 1 core"
fi
if "$SP" train --data "$d/x.h5" --model dense:3 --dry-run --network ib 2>"$d/err"; then
    fail "--network ib accepted"
fi
grep -q "expected ib100, eth25, eth10, shm, ALPHA_US:GBITS\[:GAMMA_NS\]" "$d/err" || fail "message: $(cat "$d/err")"
if "$SP" train --data "$d/x.h5" --model dense:3 --network ib100 2>"$d/err"; then
    fail "--network without --dry-run accepted"
fi
grep -q "goes with --dry-run" "$d/err" || fail "message: $(cat "$d/err")"
echo "scale_advice: ok"
