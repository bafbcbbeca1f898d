#!/usr/bin/env bash
# The trainer across emulated hosts (scripts/cluster/cluster.sh: network namespaces joined by a
# bridge, real TCP between them).
#
#   tests/system/cluster_test.sh script SHARDPROP_BIN
#       the contract of cluster.sh: up is idempotent and re-creates on another size or rate, a
#       failed up leaves nothing, hostnames and shaping, status, link, a user --mca parameter
#       replacing a default (mpirun aborts on repeats), -n/--npernode placement, exit status
#   tests/system/cluster_test.sh train SHARDPROP_BIN
#       2 hosts, then 4: the layout report names every host and its ranks; the bytes that cross
#       the hosts' links are at least the gradients' (and none cross when both ranks share h1);
#       the final parameters equal a one-host run within 1e-5 and, with --deterministic, bitwise
#   tests/system/cluster_test.sh faults SHARDPROP_BIN
#       mid-run, (a) h2's link taken down: the collective-timeout watchdog ends the job within
#       its timeout plus a bounded grace, naming the rank and the operation (h2's processes end
#       by themselves once TCP gives up on mpirun: the link stays down until they have); (b) the rank on h2
#       killed with SIGKILL: the job ends. Both: exit status non-zero, no process left in any of
#       the cluster's namespaces, and --resume auto then ends bitwise equal to an uninterrupted run
#
# Each run uses a cluster of its own (SP_CLUSTER) that is torn down on every exit. Needs root;
# the test fails (it does not skip) when the cluster cannot be brought up, saying why.
# SHARDPROP_TEST_KEEP=1 keeps the work directory.
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
cluster=$root/scripts/cluster/cluster.sh
mode=${1:-}
bin=${2:-}
if ! [[ $mode =~ ^(script|train|faults)$ ]] || [ ! -x "$bin" ]; then
    echo "usage: $0 script|train|faults SHARDPROP_BIN" >&2
    exit 2
fi
bin=$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")
[ -f "$cluster" ] || {
    echo "FAIL: $cluster not found" >&2
    exit 1
}

t0=$(date +%s)
work=$(mktemp -d "${TMPDIR:-/tmp}/shardprop-cluster-test.XXXXXX")
# Short (namespace and interface names), unique among concurrent runs on this machine.
export SP_CLUSTER=c${mode:0:1}$$
failed=0
log() { printf '[cluster_test %s +%ss] %s\n' "$mode" "$(($(date +%s) - t0))" "$*"; }
fail() {
    log "FAIL: $*"
    failed=$((failed + 1))
}
cleanup() {
    local rc=$?
    [ $failed -gt 0 ] && rc=1
    bash "$cluster" down || {
        log "FAIL: cluster.sh down failed"
        rc=1
    }
    if ip netns list 2>/dev/null | awk '{print $1}' | grep -q "^$SP_CLUSTER-"; then
        log "FAIL: namespaces left after down: $(ip netns list | grep "^$SP_CLUSTER-" | tr '\n' ' ')"
        rc=1
    fi
    if [ "${SHARDPROP_TEST_KEEP:-0}" = 1 ]; then log "work directory kept: $work"; else rm -rf "$work"; fi
    if [ $rc -eq 0 ]; then log "PASS"; else log "FAILED"; fi
    exit $rc
}
trap cleanup EXIT
cd "$work" || exit 1
PY=/usr/bin/python3
[ -x $PY ] || PY=$(command -v python3)

up() { # up N: or fail the whole test, saying why
    local err
    if ! err=$(bash "$cluster" up "$@" 2>&1); then
        fail "cannot bring up an emulated cluster of $1 hosts (needs root and network namespaces): ${err##*error: }"
        exit 1
    fi
}
crun() { bash "$cluster" run "$@"; }

# same A B TOL: the parameters of two model files, bitwise (TOL 0) or within TOL
same() {
    $PY - "$@" <<'EOF'
import sys, h5py, numpy as np
a, b, tol = sys.argv[1], sys.argv[2], float(sys.argv[3])
def params(p):
    out = {}
    with h5py.File(p, "r") as f:
        f["model/params"].visititems(lambda n, o: out.__setitem__(n, o[()]) if isinstance(o, h5py.Dataset) else None)
    return out
pa, pb = params(a), params(b)
if sorted(pa) != sorted(pb) or not pa:
    sys.exit(f"different tensors: {sorted(pa)} vs {sorted(pb)}")
worst = max(float(np.max(np.abs(pa[k].astype(np.float64) - pb[k]))) for k in pa)
bitwise = all(pa[k].tobytes() == pb[k].tobytes() for k in pa)
print(f"max |difference| {worst:.3g}, bitwise {'yes' if bitwise else 'no'}")
sys.exit(0 if (bitwise if tol == 0 else worst <= tol) else 1)
EOF
}

# The bytes that crossed host hK's link so far (received + sent by its eth0).
link_bytes() {
    ip -n "$SP_CLUSTER-$1" -s -j link show eth0 |
        $PY -c 'import json,sys; s=json.load(sys.stdin)[0]["stats64"]; print(s["rx"]["bytes"] + s["tx"]["bytes"])'
}

# The processes left in any namespace of the cluster (none when all is well), as "pid name".
leftovers() {
    local ns p
    for ns in $(ip netns list | awk '{print $1}' | grep "^$SP_CLUSTER-"); do
        for p in $(ip netns pids "$ns" 2>/dev/null); do echo "$p $(cat /proc/"$p"/comm 2>/dev/null) (in $ns)"; done
    done
}

script_test() {
    local out
    up 2
    # a mark inside h1's namespace (a second loopback address): kept by a no-op up, gone when
    # the namespace is re-created
    mark() { [[ $(ip -n "$SP_CLUSTER-h1" addr show dev lo 2>/dev/null) == *127.0.0.77/8* ]]; }
    ip -n "$SP_CLUSTER-h1" addr add 127.0.0.77/8 dev lo || fail "cannot add an address in h1"
    out=$(bash "$cluster" up 2 2>&1) || fail "up 2 again: $out"
    mark || fail "up 2 again re-created the cluster: $out"
    up 3 --rate 500mbit
    mark && fail "up 3 did not re-create the cluster"
    tc -n "$SP_CLUSTER-h3" qdisc show dev eth0 | grep -q "tbf .*rate 500Mbit" ||
        fail "h3's end of the link is not shaped: $(tc -n "$SP_CLUSTER-h3" qdisc show dev eth0)"
    tc -n "$SP_CLUSTER-br" qdisc show dev h3 | grep -q "tbf .*rate 500Mbit" ||
        fail "the bridge's end of h3's link is not shaped: $(tc -n "$SP_CLUSTER-br" qdisc show dev h3)"
    out=$(bash "$cluster" status) || fail "status of a cluster that is up: exit $?: $out"
    [ "$(grep -c ': reachable$' <<<"$out")" = 3 ] || fail "status: not 3 hosts reachable: $out"
    # stdout only: Open MPI may warn that setpgid lost a race with the agent's exec (harmless)
    out=$(crun hostname 2>/dev/null | sort | tr '\n' ' ') || fail "run hostname: exit $?"
    [ "$out" = "h1 h2 h3 " ] || fail "run hostname: '$out', not one rank on each of h1 h2 h3"
    # shellcheck disable=SC2016 # expanded by the ranks' sh
    out=$(crun -n 4 sh -c 'echo $(hostname) $OMP_NUM_THREADS' 2>/dev/null | sort | tr '\n' ' ')
    [ "$out" = "h1 1 h1 1 h2 1 h2 1 " ] || fail "run -n 4: '$out', not 2 ranks on h1 and h2 with OMP_NUM_THREADS=1"
    out=$(crun --npernode 2 -n 2 --mca btl_tcp_sndbuf 131072 --mca btl tcp,self hostname 2>/dev/null | tr '\n' ' ')
    [ "$out" = "h1 h1 " ] || fail "run --npernode 2 -n 2 with --mca parameters of its own: '$out'"
    crun sh -c 'exit 7' >/dev/null 2>&1
    out=$?
    [ "$out" != 0 ] || fail "run of a program that exits 7: exit 0"
    bash "$cluster" link h2 down || fail "link h2 down"
    out=$(bash "$cluster" status) && fail "status with h2's link down: exit 0"
    grep -q "h2 .*unreachable" <<<"$out" || fail "status does not call h2 unreachable: $out"
    out=$(crun hostname 2>&1) && fail "run with h2's link down: exit 0"
    bash "$cluster" link h2 up || fail "link h2 up"
    bash "$cluster" status >/dev/null || fail "status after link h2 up: $(bash "$cluster" status)"
    # a failing up (a rate tc refuses) leaves nothing behind
    out=$(bash "$cluster" up 2 --rate 0bit 2>&1) && fail "up with rate 0bit: exit 0"
    grep -q "error: shaping h1" <<<"$out" || fail "up with rate 0bit: the error does not say what failed: $out"
    if ip netns list | grep -q "^$SP_CLUSTER-" || ls -d /etc/netns/"$SP_CLUSTER"-* 2>/dev/null ||
        [ -e "${TMPDIR:-/tmp}/shardprop-cluster-$SP_CLUSTER" ]; then
        fail "a failed up left namespaces, /etc/netns entries or state behind"
    fi
    bash "$cluster" down || fail "down after a failed up"
    out=$(bash "$cluster" status) && fail "status of a cluster that is down: exit 0"
    log "script: up, status, run, link, down and a failed up as specified"
}

"$bin" synth --kind blobs --n 420 --features 12 --classes 4 --seed 2 --out d.h5 >/dev/null ||
    {
        fail "synth"
        exit 1
    }
export OMP_NUM_THREADS=1
common=(--data d.h5 --model "dense:24,relu,dense:4" --batch 48 --seed 7 --optimizer sgd --lr 0.05
    --momentum 0.9)

train_test() {
    local gbytes n steps out before after
    up 2
    log "$(bash "$cluster" status | head -n1)"
    # one host, one process: the reference (singleton, no mpirun)
    "$bin" train "${common[@]}" --epochs 3 --quiet --out ref.h5 >ref.log 2>&1 || fail "one-host run: $(tail -n3 ref.log)"
    "$bin" train "${common[@]}" --epochs 3 --quiet --deterministic --out refd.h5 >refd.log 2>&1 ||
        fail "one-host --deterministic run: $(tail -n3 refd.log)"

    before=$(link_bytes h2)
    crun "$bin" train "${common[@]}" --epochs 3 --out two.h5 >two.log 2>&1 || fail "2 hosts: exit $?: $(tail -n5 two.log)"
    after=$(link_bytes h2)
    grep -q "^  host h1: 1 rank (0), 1 thread" two.log || fail "2 hosts: no layout line for h1 rank 0: $(grep -A3 ^layout two.log)"
    grep -q "^  host h2: 1 rank (1), 1 thread" two.log || fail "2 hosts: no layout line for h2 rank 1: $(grep -A3 ^layout two.log)"
    n=$(sed -n 's/^model: .*(\([0-9]*\) parameters).*/\1/p' two.log)
    steps=$(sed -n 's/^done: \([0-9]*\) steps.*/\1/p' two.log)
    if [ -z "$n" ] || [ -z "$steps" ]; then
        fail "2 hosts: no parameter or step count in the output: $(head -n5 two.log)"
    else
        gbytes=$((n * 4 * steps))
        log "2 hosts: $((after - before)) bytes crossed h2's link; gradients: $n floats x $steps steps = $gbytes bytes"
        [ $((after - before)) -ge $gbytes ] || fail "2 hosts: only $((after - before)) bytes crossed h2's link, fewer than the $gbytes of the gradients (not TCP between hosts?)"
    fi
    out=$(same two.h5 ref.h5 1e-5) || fail "2 hosts vs one host, default mode: not within 1e-5 ($out)"
    log "2 hosts vs one host, default mode: $out"

    # both ranks on h1: nothing crosses h2's link (the counters above are the ranks' traffic)
    before=$(link_bytes h2)
    crun --npernode 2 -n 2 "$bin" train "${common[@]}" --epochs 3 --out h1only.h5 >h1only.log 2>&1 ||
        fail "2 ranks on h1: exit $?: $(tail -n5 h1only.log)"
    after=$(link_bytes h2)
    log "2 ranks on h1: $((after - before)) bytes crossed h2's link"
    grep -q "^  host h1: 2 ranks (0-1), 2 threads" h1only.log || fail "2 ranks on h1: layout: $(grep -A3 ^layout h1only.log)"
    if [ $((after - before)) -ge $((${gbytes:-4} / 4)) ]; then
        fail "2 ranks on h1: $((after - before)) bytes crossed h2's link (expected next to none)"
    fi

    crun "$bin" train "${common[@]}" --epochs 3 --deterministic --out twod.h5 >twod.log 2>&1 ||
        fail "2 hosts --deterministic: exit $?: $(tail -n5 twod.log)"
    out=$(same twod.h5 refd.h5 0) || fail "2 hosts vs one host, --deterministic: not bitwise ($out)"
    log "2 hosts vs one host, --deterministic: $out"

    up 4
    before=$(link_bytes h4)
    crun "$bin" train "${common[@]}" --epochs 3 --deterministic --out fourd.h5 >fourd.log 2>&1 ||
        fail "4 hosts --deterministic: exit $?: $(tail -n5 fourd.log)"
    after=$(link_bytes h4)
    local k
    for k in 1 2 3 4; do
        grep -q "^  host h$k: 1 rank ($((k - 1))), 1 thread" fourd.log || fail "4 hosts: no layout line for h$k: $(grep -A5 ^layout fourd.log)"
    done
    [ $((after - before)) -ge "${gbytes:-1}" ] || fail "4 hosts: only $((after - before)) bytes crossed h4's link"
    out=$(same fourd.h5 refd.h5 0) || fail "4 hosts vs one host, --deterministic: not bitwise ($out)"
    log "4 hosts vs one host, --deterministic: $out"
}

# The faults: 2 hosts, 2 ranks, --deterministic, a checkpoint every 3 steps, steps slowed so
# that a fault lands mid-run; the fault comes once a checkpoint exists.
TIMEOUT_S=4
# After the watchdog's abort, mpirun still waits for the cut host's daemon until the cluster's
# TCP gives up on it (scripts/cluster/cluster.sh tune_tcp: about 7 s); measured 11 s in all.
GRACE_S=15
fargs=(--epochs 6 --deterministic --checkpoint-every 3 --keep 2 --collective-timeout "$TIMEOUT_S" --quiet)

# ck_step DIR: the step of DIR's latest checkpoint (nothing before the first)
ck_step() { sed -n 's/^step_0*\([0-9][0-9]*\)\.h5$/\1/p' "$1/latest" 2>/dev/null || true; }

# faulty RUN_NAME FAULT: starts the run, waits for its second checkpoint, applies FAULT (a
# function), waits for the job; sets $rc and $ended (seconds from the fault to mpirun's end).
faulty() {
    local name=$1 fault=$2 mp i t
    rm -rf "ck_$name"
    SHARDPROP_TEST_STEP_DELAY_MS=40 crun "$bin" train "${common[@]}" "${fargs[@]}" \
        --checkpoint-dir "ck_$name" --resume auto >"$name.log" 2>&1 &
    mp=$!
    for ((i = 0; i < 300; i++)); do
        [ "$(ck_step "ck_$name")" -ge 6 ] 2>/dev/null && break
        kill -0 $mp 2>/dev/null || break
        sleep 0.05
    done
    if ! [ "$(ck_step "ck_$name")" -ge 6 ] 2>/dev/null || ! kill -0 $mp 2>/dev/null; then
        fail "$name: the run ended or had no second checkpoint after 15 s: $(tail -n5 "$name.log")"
        kill $mp 2>/dev/null
        wait $mp
        return 1
    fi
    t=$(date +%s.%N)
    $fault
    # bounded: a job that does not end is a failure, not a hang of the test
    for ((i = 0; i < 600; i++)); do
        kill -0 $mp 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 $mp 2>/dev/null; then
        fail "$name: the job has not ended 60 s after the fault; left: $(leftovers | tr '\n' ';')"
        bash "$cluster" link h2 up
        kill $mp 2>/dev/null
    fi
    wait $mp
    rc=$?
    ended=$($PY -c "import time; print(f'{time.time() - $t:.1f}')")
}

cut_h2() { bash "$cluster" link h2 down; }
kill_h2() {
    local p k=0
    for p in $(ip netns pids "$SP_CLUSTER-h2"); do
        [ "$(cat /proc/"$p"/comm 2>/dev/null)" = shardprop ] && kill -9 "$p" && k=$((k + 1))
    done
    [ $k -ge 1 ] || fail "kill: no shardprop process in h2's namespace"
}

# after_fault NAME: no process left anywhere in the cluster, then --resume auto to the end,
# bitwise equal to the uninterrupted run.
after_fault() {
    local name=$1 left out i
    for ((i = 0; i < 20; i++)); do
        left=$(leftovers)
        [ -z "$left" ] && break
        sleep 0.1
    done
    [ -z "$left" ] || fail "$name: processes left in the cluster's namespaces 2 s after mpirun ended: $(tr '\n' ';' <<<"$left")"
    bash "$cluster" link h2 up
    bash "$cluster" status >/dev/null || fail "$name: the cluster is not reachable again: $(bash "$cluster" status)"
    local from
    from=$(ck_step "ck_$name")
    crun "$bin" train "${common[@]}" "${fargs[@]}" --checkpoint-dir "ck_$name" --resume auto \
        --out "$name.h5" >"$name.resume.log" 2>&1 || fail "$name: --resume auto: exit $?: $(tail -n5 "$name.resume.log")"
    # from the checkpoint, not afresh (which would end bitwise equal too)
    grep -q "^resuming from .*step_0*$from.h5: step $from," "$name.resume.log" ||
        fail "$name: --resume auto did not resume from step ${from:-?}: $(head -n3 "$name.resume.log")"
    log "$name: $(grep -m1 '^resuming from' "$name.resume.log")"
    out=$(same "$name.h5" ref.h5 0) || fail "$name: resumed run vs uninterrupted: not bitwise ($out)"
    log "$name: resumed vs uninterrupted: $out"
}

faults_test() {
    up 2
    crun "$bin" train "${common[@]}" "${fargs[@]}" --checkpoint-dir ck_ref --out ref.h5 >ref.log 2>&1 ||
        fail "uninterrupted run: exit $?: $(tail -n5 ref.log)"

    faulty cut cut_h2 && {
        log "cut: h2's link down; the job ended $ended s later with exit $rc"
        [ "$rc" -ne 0 ] || fail "cut: exit status 0 after h2's link went down"
        grep -Eq "rank [01] waited more than $TIMEOUT_S s in [a-z].* at step [0-9]+" cut.log ||
            fail "cut: no watchdog message naming the rank and the operation: $(head -n5 cut.log)"
        grep -E "waited more than" cut.log | head -n1 | sed 's/^/    /'
        $PY -c "import sys; sys.exit(0 if $ended <= $TIMEOUT_S + $GRACE_S + 5 else 1)" ||
            fail "cut: the job took $ended s to end, more than the timeout $TIMEOUT_S s + grace $GRACE_S s + 5 s"
        after_fault cut
    }
    faulty kill kill_h2 && {
        log "kill: h2's rank killed with SIGKILL; the job ended $ended s later with exit $rc"
        [ "$rc" -ne 0 ] || fail "kill: exit status 0 after h2's rank was killed"
        $PY -c "import sys; sys.exit(0 if $ended <= $TIMEOUT_S + $GRACE_S + 5 else 1)" ||
            fail "kill: the job took $ended s to end, more than $TIMEOUT_S s + $GRACE_S s + 5 s"
        after_fault kill
    }
}

"${mode}_test"
