#!/usr/bin/env bash
# Fail if any C source or header is not formatted with the committed .clang-format.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
sp_install $SP_PKGS_CI
cd "$SP_ROOT"
mapfile -t files < <(git ls-files '*.c' '*.h')
if ! clang-format --dry-run -Werror "${files[@]}"; then
    echo "check-format: the files above are not formatted; run: clang-format -i \$(git ls-files '*.c' '*.h')" >&2
    exit 1
fi
echo "check-format: ${#files[@]} files formatted"
