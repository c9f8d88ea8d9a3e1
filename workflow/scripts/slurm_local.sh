#!/usr/bin/env bash
# A real one-node SLURM on this machine, for testing the cluster path (`snakemake --executor slurm`).
#
#   sudo workflow/scripts/slurm_local.sh start    # install if missing, configure, start, wait until idle
#   sudo workflow/scripts/slurm_local.sh stop     # stop slurmd, slurmctld and munged started by `start`
#   workflow/scripts/slurm_local.sh status        # sinfo of the node
#
# For throw-away machines (CI, a container) only: run as root on Debian/Ubuntu. It installs Debian's
# `slurmctld slurmd slurm-client munge` (Debian 12: SLURM 22.05) if `slurmctld` is missing, writes
# /etc/slurm/slurm.conf and gres.conf for this host and refuses to overwrite a slurm.conf it did not write.
# No systemd and no cgroups are assumed: the daemons are started by hand, processes are tracked with
# proctrack/linuxproc, and nothing is confined (memory and CPU requests are bookkept, not enforced).
#
# The node `srbench` (127.0.0.1) has $SLURM_LOCAL_CPUS CPUs (default: nproc, at least 2),
# $SLURM_LOCAL_MEM_MB MB (default 8000) and one fake GPU: gres.conf points `gpu` at /dev/null, so a job
# submitted with --gpus=1 gets CUDA_VISIBLE_DEVICES=0 from SLURM, as on a real GPU node.
#
# No slurmdbd, so `sacct` does not work. Job status is read with `squeue`, which lists finished jobs for
# MinJobAge (1 h here): run Snakemake with `--slurm-status-command squeue` (the plugin would otherwise pick
# sacct because the binary exists).
#
# State, logs and pid files: $SLURM_LOCAL_DIR (default /var/tmp/srbench-slurm).
set -euo pipefail

DIR=${SLURM_LOCAL_DIR:-/var/tmp/srbench-slurm}
CPUS=${SLURM_LOCAL_CPUS:-$(( $(nproc) > 2 ? $(nproc) : 2 ))}
MEM_MB=${SLURM_LOCAL_MEM_MB:-8000}
NODE=srbench
CONF=/etc/slurm/slurm.conf
MARKER="# written by srbench slurm_local.sh"
WAIT_S=60

die() { echo "slurm_local: $*" >&2; exit 1; }

install_packages() {
    command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v sbatch >/dev/null \
        && command -v munged >/dev/null && return
    command -v apt-get >/dev/null || die "slurmctld/slurmd/munge are missing and apt-get is not available"
    echo "slurm_local: installing slurmctld slurmd slurm-client munge (apt)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        slurmctld slurmd slurm-client munge >/dev/null
}

write_config() {
    if [[ -f $CONF ]] && ! grep -qF "$MARKER" "$CONF"; then
        die "$CONF exists and was not written by this script; not touching a real SLURM installation"
    fi
    mkdir -p "$DIR/state" "$DIR/spool" /etc/slurm
    cat > "$CONF" <<EOF
$MARKER; it is replaced on every start
ClusterName=srbench
SlurmctldHost=$(hostname -s)(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/slurmctld.log
SlurmdLogFile=$DIR/slurmd.log
# No systemd, no cgroups: track processes by parent pid, no task confinement, no accounting daemon.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
# The node below is declared, not probed (a container may show other hardware).
SlurmdParameters=config_overrides
ReturnToService=2
# Finished jobs stay visible to squeue/scontrol for an hour: status polling with squeue needs this.
MinJobAge=3600
SchedulerParameters=sched_interval=2
GresTypes=gpu
NodeName=$NODE NodeHostname=$(hostname -s) NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$MEM_MB Gres=gpu:1 State=UNKNOWN
PartitionName=debug Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF
    cat > /etc/slurm/gres.conf <<EOF
$MARKER
AutoDetect=off
# SLURM wants a character device; /dev/null stands in for /dev/nvidia0 (only its index reaches the job)
NodeName=$NODE Name=gpu File=/dev/null
EOF
}

start_munge() {
    pgrep -x munged >/dev/null && return
    [[ -f /etc/munge/munge.key ]] || mungekey --create --keyfile=/etc/munge/munge.key
    chown munge:munge /etc/munge/munge.key && chmod 600 /etc/munge/munge.key
    mkdir -p /run/munge /var/log/munge /var/lib/munge
    chown munge:munge /run/munge /var/log/munge /var/lib/munge
    runuser -u munge -- munged
}

wait_idle() {
    local state=""
    for _ in $(seq "$WAIT_S"); do
        state=$(sinfo -h -n "$NODE" -o %T 2>/dev/null || true)
        if [[ $state == idle ]]; then
            echo "slurm_local: node $NODE idle ($CPUS CPUs, $MEM_MB MB, gres gpu:1)"
            return
        fi
        sleep 1
    done
    tail -n 20 "$DIR/slurmctld.log" "$DIR/slurmd.log" >&2 || true
    die "node $NODE not idle after ${WAIT_S} s (state: '${state:-no answer}'); logs in $DIR"
}

stop_daemons() {
    for name in slurmd slurmctld; do
        local pid
        pid=$(cat "$DIR/$name.pid" 2>/dev/null || true)
        if [[ -n $pid ]] && kill "$pid" 2>/dev/null; then
            for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done  # port and pid file free
            echo "slurm_local: stopped $name"
        fi
        rm -f "$DIR/$name.pid"
    done
}

case ${1:-start} in
    start)
        [[ $(id -u) == 0 ]] || die "start must run as root (it installs packages and writes /etc/slurm)"
        install_packages
        stop_daemons
        write_config
        start_munge
        slurmctld -c -i   # -c: forget the jobs of an earlier start; -i: ignore its unreadable state files
        slurmd -N "$NODE"
        wait_idle
        ;;
    stop)
        stop_daemons
        ;;
    status)
        sinfo -N -o "%N %T %c %m %G"
        ;;
    *)
        die "usage: $0 [start|stop|status]"
        ;;
esac
