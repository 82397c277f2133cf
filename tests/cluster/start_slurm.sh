#!/usr/bin/env bash
# Start a throw-away one-node SLURM cluster on this host (used by tests/test_slurm.py).
#
#   sudo tests/cluster/start_slurm.sh        # → prints "slurm cluster ready" when the node is idle
#   sudo tests/cluster/stop_slurm.sh         # stops exactly the daemons this script started
#
# Installs slurm-wlm + munge with apt when missing (Debian/Ubuntu, root), writes a one-node
# /etc/slurm/slurm.conf (jobs read it from there: the job-step plugin drops SLURM_CONF), runs
# munged on a private socket/key under the state dir, then slurmctld and slurmd in the foreground
# as background processes whose PIDs go to $STATE/pids/. No accounting database: job status comes
# from squeue, which needs MinJobAge >= 3 x slurm-init-seconds-before-status-checks.
#
# Environment: RD_SLURM_STATE (state dir, default /tmp/rewarddiff-slurm),
#   RD_SLURM_DEADLINE (seconds to wait for an idle node, default 60),
#   RD_SLURM_APT_TIMEOUT (seconds for apt-get, default 600).
set -euo pipefail

STATE=${RD_SLURM_STATE:-/tmp/rewarddiff-slurm}
DEADLINE=${RD_SLURM_DEADLINE:-60}
APT_TIMEOUT=${RD_SLURM_APT_TIMEOUT:-600}
CONF=/etc/slurm/slurm.conf
MARKER="# written by rewarddiff tests/cluster/start_slurm.sh"
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

die() {
    echo "start_slurm.sh: $*" >&2
    for log in "$STATE"/logs/*; do
        [ -f "$log" ] || continue
        echo "===== $log (last 60 lines) =====" >&2
        tail -n 60 "$log" >&2 || true
    done
    exit 1
}

[ "$(id -u)" = 0 ] || die "must run as root (installs packages, writes $CONF)"

case "$STATE" in /?*/?*) ;; *) die "RD_SLURM_STATE must be an absolute path two levels deep: $STATE" ;; esac
# A previous run that was not stopped (killed test): stop its daemons first, by PID.
if [ -d "$STATE/pids" ]; then
    "$HERE/stop_slurm.sh" || true
fi
rm -rf "$STATE"/{pids,logs,munge,slurmctld,slurmd,apt_seconds}  # only what this script creates
mkdir -p "$STATE"/{pids,logs,munge,slurmctld,slurmd}

# ---- packages -------------------------------------------------------------------------------
need_install=0
for bin in munged munge slurmctld slurmd sbatch squeue sinfo scontrol; do
    command -v "$bin" >/dev/null 2>&1 || need_install=1
done
if [ "$need_install" = 1 ]; then
    command -v apt-get >/dev/null 2>&1 || die "slurm/munge missing and apt-get not available"
    export DEBIAN_FRONTEND=noninteractive
    t0=$(date +%s)
    if ! apt-cache show slurm-wlm >/dev/null 2>&1; then
        timeout "$APT_TIMEOUT" apt-get update -q >"$STATE/logs/apt.log" 2>&1 \
            || die "apt-get update failed or timed out (${APT_TIMEOUT}s); see $STATE/logs/apt.log"
    fi
    timeout "$APT_TIMEOUT" apt-get install -y -q --no-install-recommends \
        -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
        slurm-wlm munge >>"$STATE/logs/apt.log" 2>&1 \
        || die "apt-get install slurm-wlm munge failed or timed out (${APT_TIMEOUT}s)"
    echo $(($(date +%s) - t0)) >"$STATE/apt_seconds"
    echo "installed slurm-wlm + munge in $(cat "$STATE/apt_seconds") s"
fi

# ---- munge: private key and socket, so a system munged (if any) is left alone ------------------
MUNGE_SOCKET="$STATE/munge/munge.socket.2"
chmod 700 "$STATE/munge"
dd if=/dev/urandom of="$STATE/munge/munge.key" bs=1024 count=1 status=none
chmod 400 "$STATE/munge/munge.key"

start_daemon() {  # name, command... (foreground daemon; stdout/err to its log, PID recorded)
    local name=$1
    shift
    setsid "$@" </dev/null >>"$STATE/logs/$name.out" 2>&1 &
    local pid=$!
    echo "$pid" >"$STATE/pids/$name.pid"
    sleep 0.2
    kill -0 "$pid" 2>/dev/null || die "$name exited at once"
}

start_daemon munged "$(command -v munged)" --foreground --force \
    --socket="$MUNGE_SOCKET" --key-file="$STATE/munge/munge.key" \
    --pid-file="$STATE/munge/munged.pid" --seed-file="$STATE/munge/munged.seed" \
    --log-file="$STATE/logs/munged.log"
t_end=$(($(date +%s) + DEADLINE))
until munge -n -S "$MUNGE_SOCKET" 2>/dev/null | unmunge -S "$MUNGE_SOCKET" >/dev/null 2>&1; do
    [ "$(date +%s)" -lt "$t_end" ] || die "munged not answering after ${DEADLINE}s"
    kill -0 "$(cat "$STATE/pids/munged.pid")" 2>/dev/null || die "munged died"
    sleep 0.2
done

# ---- slurm.conf: this host as the only node, partition debug -----------------------------------
HOST=$(hostname -s)
NODE=$(slurmd -C | head -n 1)  # NodeName=<host> CPUs=.. Boards=.. ... RealMemory=..
case "$NODE" in NodeName=*) ;; *) die "slurmd -C gave no node line: $NODE" ;; esac
mkdir -p /etc/slurm
if [ -f "$CONF" ] && ! grep -qF "$MARKER" "$CONF"; then
    cp -p "$CONF" "$STATE/slurm.conf.orig"  # restored by stop_slurm.sh
fi
cat >"$CONF.tmp" <<CONF
$MARKER (state: $STATE)
ClusterName=rdtest
SlurmctldHost=$HOST(127.0.0.1)
SlurmUser=root
SlurmdUser=root
SlurmctldPort=6817
SlurmdPort=6818
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$MUNGE_SOCKET
StateSaveLocation=$STATE/slurmctld
SlurmdSpoolDir=$STATE/slurmd
SlurmctldPidFile=$STATE/slurmctld/slurmctld.pid
SlurmdPidFile=$STATE/slurmd/slurmd.pid
SlurmctldLogFile=$STATE/logs/slurmctld.log
SlurmdLogFile=$STATE/logs/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
# no cgroups inside a container
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
MailProg=/bin/true
SwitchType=switch/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1000
# finished jobs stay visible to squeue for 10 min: the snakemake plugin needs
# MinJobAge >= 3 x slurm-init-seconds-before-status-checks to use squeue instead of sacct
MinJobAge=600
ReturnToService=2
SlurmdTimeout=60
InactiveLimit=0
KillWait=5
Waittime=0
$NODE NodeAddr=127.0.0.1 State=UNKNOWN
PartitionName=debug Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
CONF
sed -i 's/ UpTime=[^ ]*//' "$CONF.tmp"
mv "$CONF.tmp" "$CONF"

start_daemon slurmctld "$(command -v slurmctld)" -D -c -f "$CONF"
start_daemon slurmd "$(command -v slurmd)" -D -f "$CONF"

# ---- wait for an idle node ---------------------------------------------------------------------
state=""
until [ "$state" = idle ]; do
    if [ "$(date +%s)" -ge "$t_end" ]; then
        timeout 10 scontrol show node "$HOST" >&2 || true
        die "node $HOST not idle after ${DEADLINE}s (state: '${state:-no answer}')"
    fi
    for name in slurmctld slurmd munged; do
        kill -0 "$(cat "$STATE/pids/$name.pid")" 2>/dev/null || die "$name died"
    done
    state=$(timeout 5 sinfo -h -N -n "$HOST" -o %t 2>/dev/null | head -n 1 | tr -d '*~#') || true
    [ "$state" = idle ] || sleep 0.5
done
echo "slurm cluster ready: node $HOST idle in partition debug (state dir $STATE)"
