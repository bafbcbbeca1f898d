#!/usr/bin/env bash
# Install the build tree into a temporary prefix and build scripts/examples/train_api.c against
# it twice — with CMake (find_package(shardprop)) and with pkg-config — then train with both
# builds on a synthetic file made by the installed `shardprop synth`.
#   tests/system/install.sh BUILD_DIR SOURCE_DIR C_COMPILER [CONSUMER_FLAGS]
# CONSUMER_FLAGS: extra compile/link flags for the consumer (sanitizer builds need -fsanitize).
set -euo pipefail
build=$1 src=$2 cc=$3 extra=${4:-}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/sp-install.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
prefix=$tmp/prefix

echo "== cmake --install $build --prefix $prefix"
cmake --install "$build" --prefix "$prefix" >"$tmp/install.log" || { cat "$tmp/install.log"; exit 1; }
for f in bin/shardprop include/shardprop/shardprop.h include/shardprop/data.h \
         include/shardprop/loss.h include/shardprop/optim.h include/shardprop/model.h \
         include/shardprop/status.h; do
    [[ -e $prefix/$f ]] || { echo "FAIL: $f not installed" >&2; exit 1; }
done
lib=$(find "$prefix" -name libshardprop.a | head -1)
cfg=$(find "$prefix" -name shardpropConfig.cmake | head -1)
pc=$(find "$prefix" -name shardprop.pc | head -1)
[[ -n $lib && -n $cfg && -n $pc ]] || { echo "FAIL: library, CMake package or .pc missing" >&2; exit 1; }
# The build's own flags (warnings, -Werror, sanitizers) must not reach consumers.
if grep -q -e sp_options -e Werror "$(dirname "$cfg")"/shardpropTargets*.cmake "$pc"; then
    echo "FAIL: build-only options leak into the installed package" >&2; exit 1
fi
if find "$prefix/include" -name '*.h' | xargs grep -l '#include "\(data\|util\|model\|optim\|layers\)/' ; then
    echo "FAIL: a public header includes an internal one" >&2; exit 1
fi

echo "== data: shardprop synth (installed binary)"
"$prefix/bin/shardprop" synth --kind blobs --n 1500 --features 8 --classes 3 --seed 3 \
    --out "$tmp/blobs.h5"

echo "== CMake consumer: find_package(shardprop)"
cmake -S "$src/scripts/examples" -B "$tmp/ex" -DCMAKE_PREFIX_PATH="$prefix" \
    -DCMAKE_C_COMPILER="$cc" -DCMAKE_BUILD_TYPE=Release -DCMAKE_C_FLAGS="$extra" \
    -DCMAKE_EXE_LINKER_FLAGS="$extra" >"$tmp/ex-config.log" || { cat "$tmp/ex-config.log"; exit 1; }
cmake --build "$tmp/ex" >"$tmp/ex-build.log" || { cat "$tmp/ex-build.log"; exit 1; }
"$tmp/ex/train_api" "$tmp/blobs.h5" 4

echo "== pkg-config consumer: cc train_api.c \$(pkg-config --cflags --libs shardprop)"
export PKG_CONFIG_PATH=$(dirname "$pc")
flags=$(pkg-config --cflags --libs shardprop)
echo "pkg-config: $flags"
# shellcheck disable=SC2086
"$cc" -std=c17 -Wall -Wextra -Werror $extra "$src/scripts/examples/train_api.c" -o "$tmp/train_api_pc" $flags
"$tmp/train_api_pc" "$tmp/blobs.h5" 4 "dense:16,tanh,dense:3"

echo "install: OK"
