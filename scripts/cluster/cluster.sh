#!/usr/bin/env bash
# An emulated cluster on this machine: N hosts h1..hN, each a network namespace with its own
# hostname, joined by veth pairs to a bridge, so that one mpirun job runs its ranks on several
# "hosts" that talk real TCP to each other (docs/cluster.md):
#
#   scripts/cluster/cluster.sh up N [--rate RATE]   # N hosts; RATE (1gbit, 500mbit, ...) shapes
#                                                   # both ends of every host's link (tc tbf)
#   scripts/cluster/cluster.sh status               # hosts, addresses, rate, reachable; exit 0 iff up
#   scripts/cluster/cluster.sh run [MPIRUN OPTIONS] [--] PROGRAM [ARGS...]
#                                                   # mpirun over the hosts, one rank per host
#                                                   # unless -n / --npernode say otherwise
#   scripts/cluster/cluster.sh exec HOST CMD...     # a command inside a host (h1, ..., or br)
#   scripts/cluster/cluster.sh link HOST down|up    # cut or restore a host's link
#   scripts/cluster/cluster.sh down                 # kill everything inside, remove it all
#
# Host hK is the namespace ${SP_CLUSTER}-hK at 10.77.0.(10+K)/24 (device eth0); the bridge and
# mpirun live in the namespace ${SP_CLUSTER}-br at 10.77.0.1 (ports h1..hN on bridge br0). Every
# interface is created straight inside these namespaces: nothing is added to the root one. Names
# resolve through /etc/netns/<ns>/{hosts,nsswitch.conf}. `up` of the same N and rate is a no-op,
# a different one re-creates the cluster; a failed `up` removes what it made.
#
# `run` passes: --mca btl tcp,self, btl_tcp_if_include and oob_tcp_if_include 10.77.0.0/24,
# plm_rsh_agent (the state directory's agent), plm_rsh_no_tree_spawn 1, orte_tmpdir_base (in the
# state directory), orte_leave_session_attached 1, oob_tcp_keepalive_time/intvl/probes 3/1/3
# (the namespaces' TCP gives up on a silent peer within seconds, so that a host cut off ends its
# processes), mpi_yield_when_idle 1 when ranks outnumber cores, btl_tcp_sndbuf/rcvbuf 262144 on
# shaped links, --bind-to none, --oversubscribe, --allow-run-as-root as root; an option or --mca
# parameter given on the command line replaces the default. -n M places ranks in blocks on as
# few hosts as needed (--host h1:S,...), --npernode S puts S on each; a --host or --hostfile of
# your own is used as given. It refuses to start while a host's link is down. Environment passed
# to the ranks (-x) when set: OMP_*, OPENBLAS_*, SHARDPROP_*, ASAN_OPTIONS, UBSAN_OPTIONS,
# LSAN_OPTIONS, LD_LIBRARY_PATH, TMPDIR. Its exit status is mpirun's.
#
# Environment: SP_CLUSTER (name, default spc: different names are independent clusters; 1-10
# of a-z 0-9), TMPDIR (the state directory is ${TMPDIR:-/tmp}/shardprop-cluster-${SP_CLUSTER}:
# hostfile, rsh agent, settings, Open MPI's session files), SP_CLUSTER_VERBOSE=1 (run prints
# its mpirun command line). Needs root, iproute2 and iputils-ping (installed with apt-get when
# missing) and util-linux (unshare, setpriv).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=../lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh"

NAME=${SP_CLUSTER:-spc}
STATE=${TMPDIR:-/tmp}/shardprop-cluster-$NAME
BR=$NAME-br
SUBNET=10.77.0.0/24
MAX_HOSTS=64

log() { printf '[cluster %s] %s\n' "$NAME" "$*" >&2; }
die() {
    log "error: $*"
    exit 1
}
usage() {
    sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'
}

host_ns() { echo "$NAME-$1"; }
host_addr() { echo "10.77.0.$((10 + ${1#h}))"; }

# The namespaces of this cluster that exist, bridge last.
our_namespaces() {
    ip netns list 2>/dev/null | awk '{print $1}' | grep -E "^$NAME-h[0-9]+\$" | sort -V || true
    if ip netns list 2>/dev/null | awk '{print $1}' | grep -qx "$BR"; then echo "$BR"; fi
}

setting() { # setting KEY: a value from the state directory's settings file
    [ -r "$STATE/settings" ] && sed -n "s/^$1=//p" "$STATE/settings" | head -n1
}

check_name() {
    [[ $NAME =~ ^[a-z0-9]{1,10}$ ]] ||
        die "SP_CLUSTER='$NAME': use 1-10 characters of a-z and 0-9 (it prefixes namespace names)"
}

need_tools() {
    [ "$(id -u)" -eq 0 ] || die "needs root (network namespaces); run it with sudo"
    if ! command -v ip >/dev/null || ! command -v tc >/dev/null || ! command -v ping >/dev/null; then
        sp_install iproute2 iputils-ping || die "cannot install iproute2 and iputils-ping"
    fi
    export PATH=$PATH:/usr/sbin:/sbin
    local b
    for b in ip tc ping unshare setpriv; do
        command -v "$b" >/dev/null || die "$b not found (apt-get install iproute2 iputils-ping util-linux)"
    done
}

# Kill every process inside our namespaces, TERM first, then KILL; return once none is left.
kill_inside() {
    local ns pids i
    for i in $(seq 50); do
        pids=""
        for ns in $(our_namespaces); do pids="$pids $(ip netns pids "$ns" 2>/dev/null || true)"; done
        [ -z "${pids// /}" ] && return 0
        # shellcheck disable=SC2086
        if [ "$i" -lt 20 ]; then kill -TERM $pids 2>/dev/null || true; else kill -KILL $pids 2>/dev/null || true; fi
        sleep 0.1
    done
    log "processes still inside after 5 s:$pids"
    return 1
}

cmd_down() {
    check_name
    local ns rc=0
    [ "$(id -u)" -eq 0 ] || die "needs root (network namespaces); run it with sudo"
    kill_inside || rc=1
    for ns in $(our_namespaces); do
        ip netns del "$ns" 2>/dev/null || { log "cannot delete namespace $ns"; rc=1; }
        rm -rf "/etc/netns/$ns"
    done
    # /etc/netns entries of namespaces that are gone already (a failed up)
    rm -rf /etc/netns/"$NAME"-h[0-9]* "/etc/netns/$BR"
    rm -rf "$STATE"
    return $rc
}

# tc tbf on one end of a link.
shape() { # shape NS DEV RATE
    tc -n "$1" qdisc replace dev "$2" root tbf rate "$3" burst 256kb limit 2mb
}

# shellcheck disable=SC2317 # the EXIT trap of cmd_up
on_up_exit() {
    local rc=$?
    [ "$rc" -eq 0 ] && return 0
    log "up failed; removing what it made"
    cmd_down 2>/dev/null || true
    exit "$rc"
}

# step WHAT CMD...: run CMD, or fail naming WHAT with the command's own first error line.
step() {
    local what=$1 err
    shift
    if ! err=$("$@" 2>&1); then
        die "$what: ${err%%$'\n'*}"
    fi
}

write_etc() { # write_etc NS N: hosts and nsswitch.conf for namespace NS
    local d=/etc/netns/$1 k
    mkdir -p "$d"
    {
        echo "127.0.0.1 localhost"
        echo "10.77.0.1 br"
        for ((k = 1; k <= $2; k++)); do echo "$(host_addr "h$k") h$k"; done
    } >"$d/hosts"
    # The whole file replaces the root's inside the namespace: keep its other databases.
    if [ -r /etc/nsswitch.conf ]; then
        sed '/^hosts:/d' /etc/nsswitch.conf >"$d/nsswitch.conf"
    else
        printf 'passwd: files\ngroup: files\nshadow: files\n' >"$d/nsswitch.conf"
    fi
    echo "hosts: files" >>"$d/nsswitch.conf"
}

# TCP inside the cluster gives up on a silent peer within seconds, as a real cluster's would
# within minutes: a host cut off from mpirun (link down) learns that its daemon's connection is
# gone and ends, instead of retransmitting for 15 minutes. The daemons' connections set their own
# keepalive: run passes the same values as MCA parameters.
tune_tcp() { # tune_tcp NS
    ip netns exec "$1" sysctl -q -w net.ipv4.tcp_retries2=3 net.ipv4.tcp_keepalive_time=3 \
        net.ipv4.tcp_keepalive_intvl=1 net.ipv4.tcp_keepalive_probes=3 net.ipv4.tcp_syn_retries=3
}

write_agent() {
    # mpirun calls AGENT HOST CMD... (as it would call ssh); the words arrive as one shell line.
    # setpriv --pdeathsig: the daemon ends when mpirun does, as a remote one does when its ssh
    # session ends (the agent execs into the daemon, which stays mpirun's child because run
    # sets orte_leave_session_attached: no --daemonize).
    cat >"$STATE/agent" <<EOF
#!/bin/sh
# rsh agent of the emulated cluster $NAME (scripts/cluster/cluster.sh): AGENT HOST CMD...
host=\$1
shift
exec ip netns exec "$NAME-\$host" unshare --uts setpriv --pdeathsig TERM \\
    sh -c 'hostname "\$0" && exec sh -c "\$1"' "\$host" "\$*"
EOF
    chmod 0755 "$STATE/agent"
}

cmd_up() {
    check_name
    local n="" rate="" a
    while [ $# -gt 0 ]; do
        a=$1
        case "$a" in
        --rate) [ $# -ge 2 ] || die "--rate needs a value (e.g. 1gbit)"; rate=$2; shift 2 ;;
        --rate=*) rate=${a#--rate=}; shift ;;
        -h | --help) usage; return 0 ;;
        -*) die "up: unknown option '$a'" ;;
        *) [ -z "$n" ] || die "up: one host count, not '$n' and '$a'"; n=$a; shift ;;
        esac
    done
    if ! [[ $n =~ ^[0-9]+$ ]] || [ "$n" -lt 1 ] || [ "$n" -gt $MAX_HOSTS ]; then
        die "up: the number of hosts must be 1-$MAX_HOSTS, not '${n}'"
    fi
    [ -z "$rate" ] || [[ $rate =~ ^[0-9]+(\.[0-9]+)?([kmg]?(bit|bps))$ ]] ||
        die "up: --rate '$rate' is not a tc rate such as 1gbit or 500mbit"
    need_tools
    local st
    if [ "$(setting hosts)" = "$n" ] && [ "$(setting rate)" = "$rate" ]; then
        if st=$(cmd_status 2>&1); then
            log "already up: $n hosts${rate:+, $rate}"
            return 0
        fi
        log "re-creating it: not all of it is up ($(grep -v ': reachable$' <<<"$st" | tail -n +2 | tr -s ' ' | tr '\n' ';'))"
        cmd_down
    elif [ -n "$(our_namespaces)" ] || [ -d "$STATE" ]; then
        log "re-creating it: it had $(setting hosts) hosts, rate '$(setting rate)'; asked $n, '$rate'"
        cmd_down
    fi
    trap on_up_exit EXIT
    mkdir -p "$STATE"
    step "create namespace $BR" ip netns add "$BR"
    write_etc "$BR" "$n"
    step "loopback in $BR" ip -n "$BR" link set lo up
    step "bridge in $BR" ip -n "$BR" link add br0 type bridge
    step "address of the bridge" ip -n "$BR" addr add 10.77.0.1/24 dev br0
    step "bridge up" ip -n "$BR" link set br0 up
    step "TCP settings in $BR" tune_tcp "$BR"
    local k h ns
    for ((k = 1; k <= n; k++)); do
        h=h$k ns=$(host_ns "$h")
        step "create namespace $ns" ip netns add "$ns"
        write_etc "$ns" "$n"
        step "veth pair of $h" ip link add "$h" netns "$BR" type veth peer name eth0 netns "$ns"
        step "port $h on the bridge" ip -n "$BR" link set "$h" master br0 up
        step "loopback of $h" ip -n "$ns" link set lo up
        step "address of $h" ip -n "$ns" addr add "$(host_addr "$h")/24" dev eth0
        step "link of $h up" ip -n "$ns" link set eth0 up
        step "TCP settings in $ns" tune_tcp "$ns"
        if [ -n "$rate" ]; then
            step "shaping $h to $rate" shape "$ns" eth0 "$rate"
            step "shaping port $h to $rate" shape "$BR" "$h" "$rate"
        fi
    done
    for ((k = 1; k <= n; k++)); do echo "h$k slots=1"; done >"$STATE/hostfile"
    write_agent
    printf 'hosts=%s\nrate=%s\n' "$n" "$rate" >"$STATE/settings"
    # Links take a moment to come up (bridge port forwarding); wait until every host answers.
    local i ok
    for ((i = 0; i < 50; i++)); do
        ok=1
        for ((k = 1; k <= n; k++)); do
            ip netns exec "$BR" ping -c1 -W1 -q "$(host_addr "h$k")" >/dev/null 2>&1 || { ok=0; break; }
        done
        [ $ok = 1 ] && break
        sleep 0.1
    done
    [ $ok = 1 ] || die "host h$k does not answer ping from the bridge"
    trap - EXIT
    log "up: $n hosts (h1..h$n, 10.77.0.11..$(host_addr "h$n"))${rate:+, links shaped to $rate}; state in $STATE"
}

cmd_status() {
    check_name
    local n rate k h ns ok=0 state
    n=$(setting hosts)
    rate=$(setting rate)
    if [ -z "$n" ] || ! ip netns list 2>/dev/null | awk '{print $1}' | grep -qx "$BR"; then
        echo "cluster $NAME: down"
        return 1
    fi
    echo "cluster $NAME: $n hosts, rate ${rate:-unshaped}, mpirun in namespace $BR (10.77.0.1)"
    for ((k = 1; k <= n; k++)); do
        h=h$k ns=$(host_ns "$h")
        if ! ip netns list | awk '{print $1}' | grep -qx "$ns"; then
            state="missing"
            ok=1
        elif ip netns exec "$BR" ping -c1 -W1 -q "$(host_addr "$h")" >/dev/null 2>&1; then
            state="reachable"
        else
            state="unreachable"
            [ "$(ip -n "$ns" -o link show eth0 2>/dev/null | grep -c 'state DOWN')" = 1 ] && state="unreachable (link down)"
            ok=1
        fi
        echo "  $h $(host_addr "$h") namespace $ns: $state"
    done
    return $ok
}

need_up() {
    if [ -z "$(setting hosts)" ] || ! ip netns list 2>/dev/null | awk '{print $1}' | grep -qx "$BR"; then
        die "cluster '$NAME' is not up (scripts/cluster/cluster.sh up N)"
    fi
}

resolve_host() { # resolve_host HOST: its namespace
    local h=$1 n
    n=$(setting hosts)
    case "$h" in
    br | bridge) echo "$BR" ;;
    h[0-9]*)
        if ! [[ ${h#h} =~ ^[0-9]+$ ]] || [ "${h#h}" -lt 1 ] || [ "${h#h}" -gt "$n" ]; then
            die "no host '$h' (hosts: h1..h$n, br)"
        fi
        host_ns "$h"
        ;;
    *) die "no host '$h' (hosts: h1..h$n, br)" ;;
    esac
}

cmd_exec() {
    check_name
    [ $# -ge 2 ] || die "usage: exec HOST CMD..."
    need_up
    local h=$1 ns
    ns=$(resolve_host "$h")
    shift
    [ "$ns" = "$BR" ] && exec ip netns exec "$ns" "$@"
    # shellcheck disable=SC2016 # expanded by the inner sh
    exec ip netns exec "$ns" unshare --uts sh -c 'hostname "$0" && shift && exec "$@"' "$h" sh "$@"
}

cmd_link() {
    check_name
    if [ $# -ne 2 ] || { [ "$2" != up ] && [ "$2" != down ]; }; then
        die "usage: link HOST down|up"
    fi
    need_up
    local ns
    ns=$(resolve_host "$1")
    [ "$ns" != "$BR" ] || die "link: name a host (h1..h$(setting hosts)), not the bridge"
    ip -n "$ns" link set eth0 "$2" || die "cannot set the link of $1 $2"
}

# Options of mpirun (Open MPI 4.1) that take a value: needed to find where PROGRAM starts.
takes_value() {
    case "$1" in
    -n | -np | -c | --np | -N | -npernode | --npernode | -H | -host | --host | -x | -wdir | --wdir | \
        -wd | --wd | --map-by | -map-by | --rank-by | -rank-by | --bind-to | -bind-to | \
        --hostfile | -hostfile | --machinefile | -machinefile | --default-hostfile | \
        --output-filename | -output-filename | --timeout | -timeout | --prefix | -prefix | \
        --cpus-per-proc | -cpus-per-proc | --cpus-per-rank | -cpus-per-rank | --report-bindings-to | \
        --tune | -tune | --am | -am | --app | -app | --path | -path | --preload-files | \
        --stdin | -stdin | -s | --preload-binary | --merge-stderr-to-stdout | --xml-file) return 0 ;;
    esac
    return 1
}

cmd_run() {
    check_name
    need_tools
    need_up
    local n_hosts rate
    n_hosts=$(setting hosts)
    rate=$(setting rate)
    # The user's options, with -n/--npernode/--host taken out (they decide the placement here),
    # and which defaults they replace.
    local -a user=() prog=()
    local -A mca=() have=()
    local np="" ppn="" hosts_opt="" a
    while [ $# -gt 0 ]; do
        a=$1
        case "$a" in
        --) shift; prog=("$@"); break ;;
        -n | -np | --np | -c) [ $# -ge 2 ] || die "$a needs a value"; np=$2; shift 2 ;;
        -N | -npernode | --npernode) [ $# -ge 2 ] || die "$a needs a value"; ppn=$2; shift 2 ;;
        -H | -host | --host) [ $# -ge 2 ] || die "$a needs a value"; hosts_opt=$2; shift 2 ;;
        --mca | -mca | --gmca | -gmca)
            [ $# -ge 3 ] || die "$a needs a name and a value"
            mca[$2]=$3
            shift 3
            ;;
        --bind-to | -bind-to) have[bind]=1; user+=("$a" "$2"); shift 2 ;;
        --hostfile | -hostfile | --machinefile | -machinefile) have[hostfile]=1; user+=("$a" "$2"); shift 2 ;;
        --nooversubscribe | -nooversubscribe) have[nooversub]=1; user+=("$a"); shift ;;
        --oversubscribe | -oversubscribe) shift ;;
        --allow-run-as-root) shift ;;
        -x)
            [ $# -ge 2 ] || die "-x needs a variable"
            have["x:${2%%=*}"]=1
            user+=("$a" "$2")
            shift 2
            ;;
        -*)
            if takes_value "$a"; then
                [ $# -ge 2 ] || die "$a needs a value"
                user+=("$a" "$2")
                shift 2
            else
                user+=("$a")
                shift
            fi
            ;;
        *) prog=("$@"); break ;;
        esac
    done
    [ ${#prog[@]} -gt 0 ] || die "run: no program given (run [MPIRUN OPTIONS] [--] PROGRAM [ARGS...])"
    [ -z "$np" ] || [[ $np =~ ^[1-9][0-9]*$ ]] || die "-n '$np' is not a positive number"
    [ -z "$ppn" ] || [[ $ppn =~ ^[1-9][0-9]*$ ]] || die "--npernode '$ppn' is not a positive number"

    # Placement: ppn ranks on each host, in blocks (ranks 0..ppn-1 on h1, ...), on as few hosts
    # as the ranks need so that daemons start only where ranks run.
    local -a place=()
    local total=$np
    if [ -z "$hosts_opt" ] && [ -z "${have[hostfile]:-}" ]; then
        [ -n "$ppn" ] || { if [ -n "$np" ]; then ppn=$(((np + n_hosts - 1) / n_hosts)); else ppn=1; fi; }
        [ -n "$total" ] || total=$((ppn * n_hosts))
        local used=$(((total + ppn - 1) / ppn)) k list=""
        [ "$used" -le "$n_hosts" ] || die "$total ranks at $ppn per host need $used hosts; the cluster has $n_hosts"
        for ((k = 1; k <= used; k++)); do list+="${list:+,}h$k:$ppn"; done
        place=(-n "$total" --host "$list")
    else
        [ -n "$hosts_opt" ] && place+=(--host "$hosts_opt")
        [ -n "$ppn" ] && place+=(--npernode "$ppn")
        [ -n "$np" ] && place+=(-n "$np")
        [ -n "$total" ] || total=$n_hosts
    fi

    # A host whose link is down makes mpirun wait for its daemon: say so at once instead.
    local k
    for ((k = 1; k <= n_hosts; k++)); do
        if ip -n "$(host_ns "h$k")" -o link show eth0 2>/dev/null | grep -q 'state DOWN'; then
            die "the link of host h$k is down (scripts/cluster/cluster.sh link h$k up)"
        fi
    done

    local -A def=(
        [btl]="tcp,self"
        [btl_tcp_if_include]=$SUBNET
        [oob_tcp_if_include]=$SUBNET
        [plm_rsh_agent]=$STATE/agent
        [plm_rsh_no_tree_spawn]=1
        [orte_tmpdir_base]=$STATE/ompi
        [orte_leave_session_attached]=1
        [oob_tcp_keepalive_time]=3
        [oob_tcp_keepalive_intvl]=1
        [oob_tcp_keepalive_probes]=3
    )
    [ "$total" -gt "$(nproc)" ] && def[mpi_yield_when_idle]=1
    if [ -n "$rate" ]; then
        def[btl_tcp_sndbuf]=262144
        def[btl_tcp_rcvbuf]=262144
    fi
    for k in "${!mca[@]}"; do def[$k]=${mca[$k]}; done
    mkdir -p "$STATE/ompi"

    local -a cmd=(mpirun)
    [ "$(id -u)" -eq 0 ] && cmd+=(--allow-run-as-root)
    [ -n "${have[nooversub]:-}" ] || cmd+=(--oversubscribe)
    [ -n "${have[bind]:-}" ] || cmd+=(--bind-to none)
    for k in $(printf '%s\n' "${!def[@]}" | sort); do cmd+=(--mca "$k" "${def[$k]}"); done
    local v
    for v in $(compgen -e | grep -E '^(OMP_|OPENBLAS_|SHARDPROP_)|^(ASAN_OPTIONS|UBSAN_OPTIONS|LSAN_OPTIONS|LD_LIBRARY_PATH|TMPDIR)$' | sort); do
        [ -n "${have["x:$v"]:-}" ] || cmd+=(-x "$v")
    done
    cmd+=("${place[@]}" "${user[@]}" "${prog[@]}")
    [ "${SP_CLUSTER_VERBOSE:-0}" = 1 ] && log "ip netns exec $BR ${cmd[*]}"
    local rc=0
    ip netns exec "$BR" "${cmd[@]}" || rc=$?
    return $rc
}

case "${1:-}" in
up) shift; cmd_up "$@" ;;
down) shift; [ $# -eq 0 ] || die "down takes no arguments"; cmd_down ;;
status) shift; cmd_status ;;
run) shift; cmd_run "$@" ;;
exec) shift; cmd_exec "$@" ;;
link) shift; cmd_link "$@" ;;
-h | --help | help) usage ;;
*)
    usage >&2
    exit 2
    ;;
esac
