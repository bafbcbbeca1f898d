#!/usr/bin/env bash
# Set up and run the test suite: installs missing packages (apt-get), configures, builds and
# runs `ctest --output-on-failure`.
#   BUILD_DIR   build directory (default: build)
#   BUILD_TYPE  CMake build type (default: Release)
#   CMAKE_ARGS  extra CMake arguments, e.g. "-DSHARDPROP_SANITIZE=ON -DSHARDPROP_WERROR=ON"
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
# shellcheck disable=SC2086
sp_install $SP_PKGS_BUILD $SP_PKGS_TEST
build_dir=${BUILD_DIR:-$SP_ROOT/build}
# shellcheck disable=SC2086
sp_build "$build_dir" "${BUILD_TYPE:-Release}" ${CMAKE_ARGS:-}
cd "$build_dir"
ctest --output-on-failure -j"$(nproc)" ${CTEST_ARGS:-}
