#!/usr/bin/env bash
# CI: run every fuzz target of tests/fuzz/ for SECONDS each (default 45: six targets, about
# 5 minutes with the build cached) and fail on any finding. Builds build-fuzz/ if needed.
#   scripts/fuzz-ci.sh [SECONDS]
set -uo pipefail
secs=${1:-45}
here=$(dirname "$0")
fail=0
for t in spec config csv idx data ckpt; do
    "$here/fuzz.sh" "$t" "$secs" || fail=1
done
exit $fail
