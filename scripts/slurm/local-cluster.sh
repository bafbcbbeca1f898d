#!/usr/bin/env bash
# A one-node SLURM cluster on this machine, for tests and for trying train.sbatch:
#
#   scripts/slurm/local-cluster.sh start    # installs slurm-wlm + munge when missing, starts
#                                           # munged, slurmctld and slurmd; prints the SLURM_CONF
#   eval "$(scripts/slurm/local-cluster.sh env)"   # export SLURM_CONF for sbatch, squeue, ...
#   scripts/slurm/local-cluster.sh status   # exit 0 when all three daemons run and the node is up
#   scripts/slurm/local-cluster.sh stop     # stops them and removes the state; safe to repeat
#
# Everything (slurm.conf, its own munge key and socket, state, spool, logs, pid files) lives in
# one directory, $SHARDPROP_SLURM_DIR (default ${TMPDIR:-/tmp}/shardprop-slurm-$UID), so it does
# not touch /etc/slurm, /etc/munge or a munged/slurmd the machine may already run. The ports are
# free ones chosen at start. It needs root (slurmd does), as CI has; no systemd is needed.
# If start fails, whatever it started is stopped again before it exits non-zero.
#
# Environment: SHARDPROP_SLURM_DIR (state directory), SHARDPROP_SLURM_CPUS (CPUs of the node,
# default nproc), SHARDPROP_SLURM_KEEP=1 (stop keeps the directory, e.g. to read the logs).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=../lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh"

DIR=${SHARDPROP_SLURM_DIR:-${TMPDIR:-/tmp}/shardprop-slurm-$(id -u)}
CONF=$DIR/slurm.conf

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

node_state() { SLURM_CONF=$CONF sinfo -h -n localhost -o %T 2>/dev/null | head -n1; }

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
        SLURM_CONF=$CONF scancel --quiet --full --signal=KILL --user="$(id -un)" 2>/dev/null || true
        SLURM_CONF=$CONF timeout 10 scontrol shutdown >/dev/null 2>&1 || true
    fi
    stop_pid slurmd 10
    stop_pid slurmctld 10
    stop_pid munged 5
    if [ "${SHARDPROP_SLURM_KEEP:-0}" = 1 ]; then
        log "stopped; state kept in $DIR"
    else
        rm -rf "$DIR"
        log "stopped"
    fi
}

cmd_status() {
    local ok=0 n p
    for n in munged slurmctld slurmd; do
        if p=$(pid_of "$n"); then
            echo "$n: running (pid $p)"
        else
            echo "$n: not running"
            ok=1
        fi
    done
    if [ $ok = 0 ]; then
        echo "SLURM_CONF=$CONF"
        SLURM_CONF=$CONF sinfo -N -o '%N %T %c %P' 2>&1 || ok=1
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
    [ "$(id -u)" -eq 0 ] || die "needs root (slurmd runs as root); run it with sudo"
    if cmd_status >/dev/null 2>&1; then
        log "already running; SLURM_CONF=$CONF"
        echo "export SLURM_CONF=$CONF"
        return 0
    fi
    if ! sp_install slurm-wlm munge; then
        die "cannot install slurm-wlm and munge (apt-get install -y slurm-wlm munge)"
    fi
    local b
    for b in munged mungekey slurmctld slurmd sinfo sbatch scontrol; do
        command -v "$b" >/dev/null || [ -x "/usr/sbin/$b" ] ||
            die "$b not found after installing slurm-wlm and munge"
    done
    export PATH=$PATH:/usr/sbin

    # Leftovers of an earlier start that died half-way: clear them first.
    [ -d "$DIR" ] && SHARDPROP_SLURM_KEEP=0 cmd_stop 2>/dev/null
    trap on_start_exit EXIT

    mkdir -p "$DIR"/{state,spool,log,munge}
    chmod 0755 "$DIR"

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

    local port cpus
    port=$(free_port 6817)
    cpus=${SHARDPROP_SLURM_CPUS:-$(nproc)}
    cat >"$CONF" <<EOF
# One-node cluster made by scripts/slurm/local-cluster.sh; everything under $DIR.
ClusterName=shardprop-local
SlurmctldHost=localhost
SlurmctldPort=$port
SlurmdPort=$((port + 1))
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$mdir/munge.socket,cred_expire=${SHARDPROP_SLURM_CRED_EXPIRE:-5}
ProctrackType=proctrack/linuxproc
TaskPlugin=${SHARDPROP_SLURM_TASKPLUGIN:-task/affinity}
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
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
NodeName=localhost CPUs=$cpus State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
    export SLURM_CONF=$CONF
    slurmctld -c -f "$CONF" || die "slurmctld did not start"
    slurmd -f "$CONF" -N localhost || die "slurmd did not start"
    local st=""
    for ((i = 0; i < 150; i++)); do
        st=$(node_state)
        case "$st" in idle* | mixed* | allocated*) break ;; esac
        sleep 0.2
    done
    case "$st" in idle* | mixed* | allocated*) ;; *) die "node not up after 30 s (state: '${st:-none}')" ;; esac
    pid_of slurmctld >/dev/null || die "slurmctld exited"
    pid_of slurmd >/dev/null || die "slurmd exited"
    trap - EXIT
    log "up: node localhost ($cpus CPUs) $st; state in $DIR"
    echo "export SLURM_CONF=$CONF"
}

case "${1:-}" in
start) cmd_start ;;
stop) cmd_stop ;;
status) cmd_status ;;
env) echo "export SLURM_CONF=$CONF" ;;
logs) print_logs ;;
*)
    echo "usage: $0 start|stop|status|env|logs" >&2
    exit 2
    ;;
esac
