#!/usr/bin/env bash
# A SLURM cluster on this machine, for tests and for trying train.sbatch:
#
#   scripts/slurm/local-cluster.sh start    # installs slurm-wlm + munge when missing, starts
#                                           # munged, slurmctld and slurmd; prints the SLURM_CONF
#   eval "$(scripts/slurm/local-cluster.sh env)"   # export SLURM_CONF for sbatch, squeue, ...
#   scripts/slurm/local-cluster.sh status   # exit 0 when all daemons run and the nodes are up
#   scripts/slurm/local-cluster.sh stop     # stops them and removes the state; safe to repeat
#
# N nodes (--nodes N or SHARDPROP_SLURM_NODES=N, default 1): with N > 1 the nodes are emulated
# hosts h1..hN (network namespaces made by scripts/cluster/cluster.sh, 10.77.0.(10+K)/24, each
# with its own hostname): slurmctld runs in the cluster's bridge ("head") namespace at 10.77.0.1,
# one `slurmd -N hK` in each host's namespace, one munged for all (its socket is a file). The
# client commands reach slurmctld only from inside the emulated network: run them with
#
#   scripts/slurm/local-cluster.sh start --nodes 2
#   scripts/slurm/local-cluster.sh exec sbatch -N 2 ... scripts/slurm/train.sbatch ...
#   scripts/slurm/local-cluster.sh exec squeue     # (or: scontrol, sinfo, scancel, bash -l)
#
# `exec` runs the command in the head namespace with SLURM_CONF and the Open MPI settings for
# the emulated network (OMPI_MCA_* for 10.77.0.0/24, printed by `env`), which sbatch passes on
# to the job and so to mpirun and to the ranks.
#
# Everything (slurm.conf, its own munge key and socket, state, spool, logs, pid files) lives in
# one directory, $SHARDPROP_SLURM_DIR (default ${TMPDIR:-/tmp}/shardprop-slurm-$UID), so it does
# not touch /etc/slurm, /etc/munge or a munged/slurmd the machine may already run. The ports are
# free ones chosen at start. It needs root (slurmd does), as CI has; no systemd is needed.
# If start fails, whatever it started is stopped again before it exits non-zero.
#
# Environment: SHARDPROP_SLURM_DIR (state directory), SHARDPROP_SLURM_CPUS (CPUs of each node,
# default nproc: the emulated nodes share the machine's cores), SHARDPROP_SLURM_KEEP=1 (stop keeps
# the directory, e.g. to read the logs), SHARDPROP_SLURM_NODES (node count), and with N > 1:
# SHARDPROP_SLURM_CLUSTER (the emulated cluster's name, SP_CLUSTER of cluster.sh; default sln),
# SHARDPROP_SLURM_RATE (cluster.sh up --rate, e.g. 1gbit; default unshaped).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=../lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh"

DIR=${SHARDPROP_SLURM_DIR:-${TMPDIR:-/tmp}/shardprop-slurm-$(id -u)}
CONF=$DIR/slurm.conf
CLUSTER_SH=${SHARDPROP_CLUSTER_SH:-$SP_ROOT/scripts/cluster/cluster.sh}
NET=10.77.0 # the emulated network of cluster.sh: bridge .1, host hK at .(10+K), a /24

# A running cluster's node count and emulated cluster name (written by start).
NODES=$(cat "$DIR/nodes" 2>/dev/null || echo 1)
[[ $NODES =~ ^[0-9]+$ ]] || NODES=1
CLUSTER=$(cat "$DIR/cluster" 2>/dev/null || echo "${SHARDPROP_SLURM_CLUSTER:-sln}")

log() { printf '[local-cluster] %s\n' "$*" >&2; }
die() {
    log "error: $*"
    exit 1
}

pid_of() { # pid_of NAME: the pid in $DIR/NAME.pid when that process is alive
    local f=$DIR/$1.pid p
    [ -r "$f" ] || return 1
    p=$(cat "$f" 2>/dev/null) || return 1
    [[ $p =~ ^[0-9]+$ ]] && kill -0 "$p" 2>/dev/null && echo "$p"
}

# A TCP port nobody listens on, from $1 upwards.
free_port() {
    local p=$1 used
    used=$(ss -Htln 2>/dev/null | awk '{print $4}' | sed 's/.*://' | sort -u)
    while grep -qx "$p" <<<"$used" || grep -qx "$((p + 1))" <<<"$used"; do p=$((p + 2)); done
    echo "$p"
}

# at_head CMD...: run a client command where it reaches slurmctld (with N > 1 in the head namespace).
at_head() {
    if [ "$NODES" -gt 1 ]; then
        ip netns exec "$CLUSTER-br" env SLURM_CONF="$CONF" "$@"
    else
        SLURM_CONF=$CONF "$@"
    fi
}

# The node's state (one node), or the "worst" state of all nodes (N nodes): "idle" only when all
# of them are usable.
node_state() {
    if [ "$NODES" -gt 1 ]; then
        local st
        st=$(at_head sinfo -h -N -o %T 2>/dev/null | sort -u) || return 0
        [ "$(wc -l <<<"$st")" -eq 1 ] && [ "$(grep -c . <<<"$st")" -eq 1 ] &&
            [ "$(at_head sinfo -h -N -o %N 2>/dev/null | sort -u | wc -l)" -eq "$NODES" ] &&
            { echo "$st"; return 0; }
        case "$st" in *idle* | *mixed* | *allocated*) grep -Ev 'idle|mixed|allocated' <<<"$st" | head -n1 ;; *) head -n1 <<<"$st" ;; esac
    else
        SLURM_CONF=$CONF sinfo -h -n localhost -o %T 2>/dev/null | head -n1
    fi
}

# The Open MPI settings for the emulated network (N > 1): TCP between the hosts' 10.77.0.0/24
# interfaces, for the ranks (btl) and for mpirun's daemons (oob); yield when idle, since all the
# emulated hosts share the machine's cores.
mca_env() {
    printf '%s\n' OMPI_MCA_btl=tcp,self "OMPI_MCA_btl_tcp_if_include=$NET.0/24" \
        "OMPI_MCA_oob_tcp_if_include=$NET.0/24" OMPI_MCA_mpi_yield_when_idle=1
}

# in_host NS HOSTNAME CMD...: CMD in the network namespace NS with its own hostname, and with the
# namespace's /etc/netns/NS files (hosts, nsswitch.conf) over /etc, as `ip netns exec` does; but
# unlike `ip netns exec` it keeps the machine's /sys, whose cgroup mounts slurmd needs.
in_host() {
    local ns=$1 name=$2
    shift 2
    # shellcheck disable=SC2016 # expanded by the inner sh
    nsenter --net="/run/netns/$ns" unshare --mount --uts --propagation slave sh -c '
        ns=$1 name=$2; shift 2
        for f in /etc/netns/"$ns"/*; do
            [ -e "$f" ] && [ -e "/etc/${f##*/}" ] && mount --bind "$f" "/etc/${f##*/}"
        done
        hostname "$name" && exec "$@"' sh "$ns" "$name" "$@"
}

ns_exists() { ip netns list 2>/dev/null | awk '{print $1}' | grep -qx -- "$1"; }

# The processes still living in our namespaces (a job's leftovers), killed by pid.
kill_ns_procs() {
    local ns p
    for ns in "$CLUSTER-br" $(seq -f "$CLUSTER-h%g" 1 "$NODES"); do
        for p in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$p" 2>/dev/null || true; done
    done
}

print_logs() {
    local f
    for f in "$DIR"/log/*.log; do
        [ -s "$f" ] || continue
        log "---- last lines of $f"
        tail -n 20 "$f" >&2
    done
}

# Stop one daemon: TERM, wait up to $2 s, then KILL.
stop_pid() {
    local name=$1 wait_s=${2:-10} p i
    p=$(pid_of "$name") || return 0
    kill -TERM "$p" 2>/dev/null || true
    for ((i = 0; i < wait_s * 10; i++)); do
        kill -0 "$p" 2>/dev/null || return 0
        sleep 0.1
    done
    log "$name ($p) did not stop; killing it"
    kill -KILL "$p" 2>/dev/null || true
}

cmd_stop() {
    [ -d "$DIR" ] || {
        log "not running (no $DIR)"
        return 0
    }
    if [ -f "$CONF" ] && pid_of slurmctld >/dev/null; then
        # Cancel leftover jobs so that no job processes outlive the cluster.
        at_head scancel --quiet --full --signal=KILL --user="$(id -un)" 2>/dev/null || true
        at_head timeout 10 scontrol shutdown >/dev/null 2>&1 || true
    fi
    local k
    if [ "$NODES" -gt 1 ]; then
        for ((k = 1; k <= NODES; k++)); do stop_pid "slurmd-h$k" 10; done
    else
        stop_pid slurmd 10
    fi
    stop_pid slurmctld 10
    stop_pid munged 5
    if [ "$NODES" -gt 1 ]; then
        kill_ns_procs
        if [ -f "$CLUSTER_SH" ]; then
            SP_CLUSTER=$CLUSTER bash "$CLUSTER_SH" down >/dev/null 2>&1 ||
                log "warning: SP_CLUSTER=$CLUSTER $CLUSTER_SH down failed"
        fi
        for k in "$CLUSTER-br" $(seq -f "$CLUSTER-h%g" 1 "$NODES"); do
            if ns_exists "$k"; then
                log "warning: namespace $k is still there after '$CLUSTER_SH down'; deleting it"
                ip netns del "$k" 2>/dev/null || true
                rm -rf "/etc/netns/$k"
            fi
        done
    fi
    if [ "${SHARDPROP_SLURM_KEEP:-0}" = 1 ]; then
        log "stopped; state kept in $DIR"
    else
        rm -rf "$DIR"
        log "stopped"
    fi
}

cmd_status() {
    local ok=0 n p names=(munged slurmctld slurmd)
    [ "$NODES" -gt 1 ] && mapfile -t names < <(printf '%s\n' munged slurmctld; seq -f "slurmd-h%g" 1 "$NODES")
    for n in "${names[@]}"; do
        if p=$(pid_of "$n"); then
            echo "$n: running (pid $p)"
        else
            echo "$n: not running"
            ok=1
        fi
    done
    if [ $ok = 0 ]; then
        echo "SLURM_CONF=$CONF"
        at_head sinfo -N -o '%N %T %c %P' 2>&1 || ok=1
        case "$(node_state)" in idle* | mixed* | allocated* | completing*) ;; *) ok=1 ;; esac
    fi
    return $ok
}

# shellcheck disable=SC2317 # the EXIT trap of cmd_start
on_start_exit() {
    local rc=$?
    [ "$rc" -eq 0 ] && return 0
    log "start failed; stopping what was started"
    print_logs
    SHARDPROP_SLURM_KEEP=0 cmd_stop || true
    exit "$rc"
}

cmd_start() {
    local want=${SHARDPROP_SLURM_NODES:-1}
    while [ $# -gt 0 ]; do
        case "$1" in
        --nodes | -N) want=${2:-}; shift 2 || die "--nodes needs a count" ;;
        --nodes=*) want=${1#--nodes=}; shift ;;
        *) die "start: unknown option '$1' (start [--nodes N])" ;;
        esac
    done
    if ! [[ $want =~ ^[1-9][0-9]*$ ]] || [ "$want" -gt 64 ]; then
        die "--nodes must be 1..64, got '$want'"
    fi
    [ "$(id -u)" -eq 0 ] || die "needs root (slurmd runs as root); run it with sudo"
    if cmd_status >/dev/null 2>&1; then
        [ "$NODES" = "$want" ] ||
            die "already running with $NODES node(s), not $want: stop it first ($0 stop)"
        log "already running; SLURM_CONF=$CONF"
        echo "export SLURM_CONF=$CONF"
        return 0
    fi
    if [ "$want" -gt 1 ]; then
        [[ ${SHARDPROP_SLURM_CLUSTER:-sln} =~ ^[a-z0-9]{1,10}$ ]] ||
            die "SHARDPROP_SLURM_CLUSTER='${SHARDPROP_SLURM_CLUSTER:-}': use 1-10 of a-z and 0-9 (cluster.sh's SP_CLUSTER)"
        [ -f "$CLUSTER_SH" ] || die "$CLUSTER_SH not found: $want emulated nodes need it"
    fi
    local pkgs=(slurm-wlm munge)
    [ "$want" -gt 1 ] && pkgs+=(iproute2 util-linux)
    if ! sp_install "${pkgs[@]}"; then
        die "cannot install ${pkgs[*]} (apt-get install -y ${pkgs[*]})"
    fi
    local b bins=(munged mungekey slurmctld slurmd sinfo sbatch scontrol)
    [ "$want" -gt 1 ] && bins+=(ip nsenter unshare)
    for b in "${bins[@]}"; do
        command -v "$b" >/dev/null || [ -x "/usr/sbin/$b" ] ||
            die "$b not found after installing ${pkgs[*]}"
    done
    export PATH=$PATH:/usr/sbin

    # Leftovers of an earlier start that died half-way: clear them first.
    [ -d "$DIR" ] && SHARDPROP_SLURM_KEEP=0 cmd_stop 2>/dev/null
    NODES=$want
    CLUSTER=${SHARDPROP_SLURM_CLUSTER:-sln}
    trap on_start_exit EXIT

    mkdir -p "$DIR"/{state,spool,log,munge}
    chmod 0755 "$DIR"
    # Written first, so that a stop (also the one of a failed start) knows what to tear down.
    echo "$NODES" >"$DIR/nodes"
    echo "$CLUSTER" >"$DIR/cluster"
    local k
    if [ "$NODES" -gt 1 ]; then
        # The emulated hosts h1..hN and the head (bridge) namespace.
        local up=(up "$NODES")
        [ -n "${SHARDPROP_SLURM_RATE:-}" ] && up+=(--rate "$SHARDPROP_SLURM_RATE")
        # Namespaces of this name are ours: ones left by a start or test that was killed may
        # still hold daemons (whose ports the new ones need), so they go first.
        if ns_exists "$CLUSTER-br"; then
            log "the emulated cluster '$CLUSTER' exists already (a leftover?): removing it first"
            SP_CLUSTER=$CLUSTER bash "$CLUSTER_SH" down >&2 || true
        fi
        if ! SP_CLUSTER=$CLUSTER bash "$CLUSTER_SH" "${up[@]}" >"$DIR/log/cluster-up.log" 2>&1; then
            cat "$DIR/log/cluster-up.log" >&2
            die "could not create $NODES emulated hosts (SP_CLUSTER=$CLUSTER $CLUSTER_SH ${up[*]});" \
                "they need root and network namespaces (ip netns add, veth, bridge)"
        fi
        for k in "$CLUSTER-br" $(seq -f "$CLUSTER-h%g" 1 "$NODES"); do
            ns_exists "$k" || die "$CLUSTER_SH up did not make the namespace $k"
        done
    fi

    # munge: our own key, socket and daemon, run as the munge user (munged refuses root).
    local mdir=$DIR/munge muser=munge
    id "$muser" >/dev/null 2>&1 || die "no 'munge' user (is the munge package installed?)"
    mungekey --create --keyfile="$mdir/munge.key" >/dev/null 2>&1 ||
        dd if=/dev/urandom of="$mdir/munge.key" bs=1024 count=1 status=none
    runuser -u "$muser" -- test -x "$DIR" ||
        die "the munge user cannot reach $DIR (make its parent directories world-searchable)"
    chown -R "$muser:" "$mdir"
    chmod 0700 "$mdir"
    chmod 0600 "$mdir/munge.key"
    chmod 0711 "$mdir" # clients must reach the socket inside
    runuser -u "$muser" -- munged --socket="$mdir/munge.socket" --key-file="$mdir/munge.key" \
        --pid-file="$mdir/munged.pid" --log-file="$mdir/munged.log" \
        --seed-file="$mdir/munged.seed" ||
        die "munged did not start (see $mdir/munged.log)"
    local i
    for ((i = 0; i < 50; i++)); do
        [ -s "$mdir/munged.pid" ] && break
        sleep 0.1
    done
    ln -sf "$mdir/munged.pid" "$DIR/munged.pid"
    ln -sf "$mdir/munged.log" "$DIR/log/munged.log"
    munge -S "$mdir/munge.socket" -n | unmunge -S "$mdir/munge.socket" >/dev/null ||
        die "munge does not work (munge -n | unmunge failed)"

    local port cpus ctld=localhost taskplugin=task/affinity sdir=$DIR/spool spid=$DIR/slurmd.pid
    local slog=$DIR/log/slurmd.log nodes="NodeName=localhost CPUs=${SHARDPROP_SLURM_CPUS:-$(nproc)} State=UNKNOWN"
    port=$(free_port 6817)
    cpus=${SHARDPROP_SLURM_CPUS:-$(nproc)}
    if [ "$NODES" -gt 1 ]; then
        # slurmctld at the head's address; one spool, pid and log file per node (%n: its name).
        # No task binding: every emulated node would bind its first task to the same real core.
        port=6817
        ctld="localhost($NET.1)"
        taskplugin=task/none
        sdir=$DIR/spool/%n spid=$DIR/slurmd-%n.pid slog=$DIR/log/slurmd-%n.log
        nodes=$(for ((k = 1; k <= NODES; k++)); do
            echo "NodeName=h$k NodeHostname=h$k NodeAddr=$NET.$((10 + k)) CPUs=$cpus State=UNKNOWN"
        done)
    fi
    cat >"$CONF" <<EOF
# $NODES-node cluster made by scripts/slurm/local-cluster.sh; everything under $DIR.
ClusterName=shardprop-local
SlurmctldHost=$ctld
SlurmctldPort=$port
SlurmdPort=$((port + 1))
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$mdir/munge.socket,cred_expire=${SHARDPROP_SLURM_CRED_EXPIRE:-5}
ProctrackType=proctrack/linuxproc
TaskPlugin=${SHARDPROP_SLURM_TASKPLUGIN:-$taskplugin}
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=none
ReturnToService=2
JobRequeue=1
KillWait=10
SchedulerParameters=batch_sched_delay=0,sched_interval=1,bf_interval=1
MailProg=/bin/true
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$sdir
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$spid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$slog
$nodes
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
    export SLURM_CONF=$CONF
    if [ "$NODES" -gt 1 ]; then
        in_host "$CLUSTER-br" "$(hostname)" slurmctld -c -f "$CONF" || die "slurmctld did not start"
        for ((k = 1; k <= NODES; k++)); do
            # Each node reads the same slurm.conf, through a directory of its own that also holds
            # its mpi.conf: PMIx's per-step directories are named by job and step only, and the
            # emulated nodes share /tmp, so each node gets its own base for them.
            mkdir -p "$DIR/spool/h$k" "$DIR/etc/h$k" "$DIR/tmp/h$k"
            ln -sf ../../slurm.conf "$DIR/etc/h$k/slurm.conf"
            echo "PMIxCliTmpDirBase=$DIR/tmp/h$k" >"$DIR/etc/h$k/mpi.conf"
            # In hK's namespace, with hK as its hostname (its own UTS namespace), which the jobs
            # and the ranks (MPI_Get_processor_name) see too.
            in_host "$CLUSTER-h$k" "h$k" slurmd -f "$DIR/etc/h$k/slurm.conf" -N "h$k" ||
                die "slurmd of h$k did not start"
        done
    else
        slurmctld -c -f "$CONF" || die "slurmctld did not start"
        slurmd -f "$CONF" -N localhost || die "slurmd did not start"
    fi
    local st=""
    for ((i = 0; i < 150; i++)); do
        st=$(node_state)
        case "$st" in idle* | mixed* | allocated*) break ;; esac
        sleep 0.2
    done
    case "$st" in idle* | mixed* | allocated*) ;; *) die "node(s) not up after 30 s (state: '${st:-none}')" ;; esac
    pid_of slurmctld >/dev/null || die "slurmctld exited"
    if [ "$NODES" -gt 1 ]; then
        for ((k = 1; k <= NODES; k++)); do pid_of "slurmd-h$k" >/dev/null || die "slurmd of h$k exited"; done
        trap - EXIT
        log "up: nodes h[1-$NODES] ($cpus CPUs each, shared) $st; slurmctld at $NET.1 in namespace" \
            "$CLUSTER-br; state in $DIR"
        log "client commands: $0 exec sbatch|squeue|scontrol|... (they run in $CLUSTER-br)"
    else
        pid_of slurmd >/dev/null || die "slurmd exited"
        trap - EXIT
        log "up: node localhost ($cpus CPUs) $st; state in $DIR"
    fi
    echo "export SLURM_CONF=$CONF"
}

cmd_env() {
    echo "export SLURM_CONF=$CONF"
    if [ "$NODES" -gt 1 ]; then
        local v
        for v in $(mca_env); do echo "export $v"; done
        echo "# $NODES emulated nodes: slurmctld is reachable only inside the emulated network;"
        echo "# run client commands with: $0 exec CMD... (or ip netns exec $CLUSTER-br CMD...)"
    fi
}

# exec CMD...: CMD where the client commands reach slurmctld, with SLURM_CONF (and, with N > 1,
# the Open MPI settings of the emulated network) in its environment.
cmd_exec() {
    [ $# -gt 0 ] || die "usage: $0 exec CMD [ARGS...]"
    [ -f "$CONF" ] || die "not running (no $CONF): $0 start first"
    export PATH=$PATH:/usr/sbin
    if [ "$NODES" -gt 1 ]; then
        # shellcheck disable=SC2046 # one word per VAR=value
        exec ip netns exec "$CLUSTER-br" env SLURM_CONF="$CONF" $(mca_env) "$@"
    fi
    SLURM_CONF=$CONF exec "$@"
}

case "${1:-}" in
start) shift; cmd_start "$@" ;;
stop) cmd_stop ;;
status) cmd_status ;;
env) cmd_env ;;
exec) shift; cmd_exec "$@" ;;
logs) print_logs ;;
*)
    echo "usage: $0 start [--nodes N]|stop|status|env|exec CMD...|logs" >&2
    exit 2
    ;;
esac
