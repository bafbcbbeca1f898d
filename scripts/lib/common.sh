# Shared by the scripts in scripts/: package installation and the build.
# shellcheck shell=bash

SP_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"

# Debian/Ubuntu packages by purpose.
SP_PKGS_BUILD="build-essential cmake pkg-config openmpi-bin libopenmpi-dev libhdf5-dev hdf5-tools zlib1g-dev"
SP_PKGS_TEST="python3 python3-numpy python3-h5py python3-torch python3-matplotlib dataset-fashion-mnist fortunes libsimgrid-dev gdb iproute2 iputils-ping"
SP_PKGS_CI="clang-format"

sp_log() { printf '[shardprop] %s\n' "$*" >&2; }

# sp_missing PKG...: print the packages that are not installed.
sp_missing() {
    local p
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || echo "$p"
    done
}

# sp_install PKG...: install what is missing with apt-get (as root, or through sudo).
# Returns non-zero, after saying what to install, when that is not possible.
sp_install() {
    if ! command -v dpkg-query >/dev/null 2>&1; then
        sp_log "not a Debian/Ubuntu system: make sure these are available (or 'module load' them):"
        sp_log "  a C17 compiler, CMake >= 3.22, MPI (Open MPI, MPICH or Cray MPI), HDF5 (C and HL), zlib"
        return 0
    fi
    local missing
    missing=$(sp_missing "$@" | tr '\n' ' ')
    [ -z "${missing// /}" ] && return 0
    local sudo=""
    if [ "$(id -u)" -ne 0 ]; then
        if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
            sudo="sudo"
        else
            sp_log "missing packages: $missing"
            sp_log "install them with: sudo apt-get install -y $missing"
            sp_log "(on a cluster: module load cmake openmpi hdf5, or your site's equivalents)"
            return 1
        fi
    fi
    sp_log "installing: $missing"
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get update -q >/dev/null
    # shellcheck disable=SC2086
    $sudo apt-get install -y -q --no-install-recommends $missing >/dev/null
}

# sp_build DIR TYPE [cmake args...]: configure and build (the compiler's output goes to
# DIR/build.log, shown when the build fails).
sp_build() {
    local dir=$1 type=$2
    shift 2
    mkdir -p "$dir"
    if ! { cmake -S "$SP_ROOT" -B "$dir" -DCMAKE_BUILD_TYPE="$type" "$@" &&
        cmake --build "$dir" -j"$(nproc)"; } >"$dir/build.log" 2>&1; then
        tail -n 40 "$dir/build.log" >&2
        sp_log "the build failed; the whole log is $dir/build.log"
        return 1
    fi
}

# Debian's python3 (with the python3-* packages) even when another python3 comes first on PATH.
sp_python() {
    if [ -x /usr/bin/python3 ]; then echo /usr/bin/python3; else command -v python3; fi
}

# Open MPI refuses to run as root unless told; allow more ranks than cores.
sp_mpi_env() {
    if [ "$(id -u)" -eq 0 ]; then
        export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
    fi
    export OMPI_MCA_rmaps_base_oversubscribe=1
}
