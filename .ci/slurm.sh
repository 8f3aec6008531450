#!/usr/bin/env bash
# A single-node Slurm on this machine for mxflow's live Slurm tests.
#
#   .ci/slurm.sh up       install (Debian packages) if missing, configure, start, wait idle
#   .ci/slurm.sh down     stop slurmd and slurmctld (started by 'up')
#   .ci/slurm.sh status   say whether it runs (exit 0) or not (exit 1)
#
# Idempotent; meant for root in a container without systemd: the daemons are
# started directly.  No munge: AuthType=auth/none + CredType=cred/none (Slurm
# 22.05 still ships both plugins; localhost only).  No cgroups: processes are
# tracked by /proc (proctrack/linuxproc) and memory is enforced by
# jobacct_gather/linux with OverMemoryKill, sampled every second: a job over its
# --mem is killed and ends OUT_OF_MEMORY.  There is no accounting database, so
# 'sacct' has nothing; 'scontrol show job' keeps finished jobs for MinJobAge s.
set -euo pipefail

STATE=${MXFLOW_SLURM_STATE:-/var/lib/mxflow-slurm}
CONF=/etc/slurm/slurm.conf
SUDO=$([ "$(id -u)" = 0 ] || echo sudo)
WAIT_S=${MXFLOW_SLURM_WAIT_S:-60}

log() { echo "slurm.sh: $*" >&2; }

install() {
    if command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v sbatch >/dev/null; then
        return
    fi
    log "installing slurmctld, slurmd and slurm-client (apt-get)"
    $SUDO apt-get update -q
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends \
        slurmctld slurmd slurm-client
}

write_conf() {
    local host cpus mem
    host=$(hostname -s)
    cpus=$(nproc)
    # RealMemory in MB, a little under the machine's total (Slurm refuses a node
    # that reports less than its configured RealMemory)
    mem=$(awk '/^MemTotal:/ {print int($2 / 1024 * 0.95)}' /proc/meminfo)
    $SUDO mkdir -p /etc/slurm "$STATE/ctld" "$STATE/d"
    $SUDO tee "$CONF.new" >/dev/null <<EOF
# written by mxflow's .ci/slurm.sh: one node on localhost
ClusterName=mxflowci
SlurmctldHost=${host}(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/none
CredType=cred/none
SlurmctldPort=6817
SlurmdPort=6818
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/d
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$STATE/slurmctld.log
SlurmdLogFile=$STATE/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=task=1
JobAcctGatherParams=OverMemoryKill
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1000
MpiDefault=none
ReturnToService=2
MinJobAge=600
KillWait=5
SlurmdTimeout=30
InactiveLimit=0
NodeName=${host} NodeAddr=127.0.0.1 CPUs=${cpus} RealMemory=${mem} State=UNKNOWN
PartitionName=debug Nodes=${host} Default=YES MaxTime=INFINITE State=UP
EOF
    if cmp -s "$CONF.new" "$CONF"; then
        $SUDO rm -f "$CONF.new"
        return 1 # unchanged
    fi
    $SUDO mv "$CONF.new" "$CONF"
}

pid_alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

running() { pid_alive "$STATE/slurmctld.pid" && pid_alive "$STATE/slurmd.pid"; }

node_idle() {
    local state
    state=$(sinfo -h -N -p debug -o %T 2>/dev/null | head -n1) || return 1
    [ "$state" = idle ] || [ "$state" = mixed ] || [ "$state" = allocated ]
}

stop() {
    local name pidfile pid i
    for name in slurmd slurmctld; do
        pidfile="$STATE/$name.pid"
        pid_alive "$pidfile" || continue
        pid=$(cat "$pidfile")
        log "stopping $name (pid $pid)"
        $SUDO kill "$pid" 2>/dev/null || true
        for i in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
        kill -0 "$pid" 2>/dev/null && $SUDO kill -9 "$pid" 2>/dev/null || true
        $SUDO rm -f "$pidfile"
    done
}

up() {
    install
    if write_conf && running; then
        log "configuration changed: restarting"
        stop
    fi
    if ! pid_alive "$STATE/slurmctld.pid"; then
        # -c: no saved state (a fresh queue each time), -i: ignore stale job state
        $SUDO slurmctld -c -i
    fi
    if ! pid_alive "$STATE/slurmd.pid"; then
        $SUDO slurmd
    fi
    local t0=$SECONDS
    until node_idle; do
        if ((SECONDS - t0 > WAIT_S)); then
            log "the node did not become idle within ${WAIT_S} s:"
            sinfo -N -l >&2 || true
            tail -n 20 "$STATE/slurmctld.log" "$STATE/slurmd.log" >&2 || true
            exit 1
        fi
        # a node left DOWN by an earlier stop comes back with this
        scontrol update nodename="$(hostname -s)" state=resume 2>/dev/null || true
        sleep 1
    done
    log "up: $(sinfo -h -N -o '%N %T cpus=%c mem=%m MB partition=%P')"
}

case "${1:-}" in
up) up ;;
down) stop ;;
status)
    if running && node_idle; then
        sinfo -N -l
    else
        log "not running"
        exit 1
    fi
    ;;
*)
    echo "usage: $0 up|down|status" >&2
    exit 2
    ;;
esac
