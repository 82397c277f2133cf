#!/usr/bin/env bash
# Stop the one-node SLURM cluster started by start_slurm.sh: only the PIDs it recorded.
set -uo pipefail

STATE=${RD_SLURM_STATE:-/tmp/rewarddiff-slurm}
CONF=/etc/slurm/slurm.conf
MARKER="# written by rewarddiff tests/cluster/start_slurm.sh"

[ -d "$STATE/pids" ] || { echo "stop_slurm.sh: nothing started in $STATE"; exit 0; }

alive() {  # pid, expected command name: the PID is still the daemon we started
    [ -n "$1" ] && [ -r "/proc/$1/comm" ] && [ "$(cat "/proc/$1/comm")" = "$2" ]
}

# jobs still queued or running on this throw-away cluster go first (their steps are slurmd's)
if alive "$(cat "$STATE/pids/slurmctld.pid" 2>/dev/null)" slurmctld; then
    timeout 10 scancel --user="$(id -un)" 2>/dev/null || true
fi

for name in slurmd slurmctld munged; do
    pidfile="$STATE/pids/$name.pid"
    [ -f "$pidfile" ] || continue
    pid=$(cat "$pidfile")
    if alive "$pid" "$name"; then
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 1 50); do
            alive "$pid" "$name" || break
            sleep 0.2
        done
        if alive "$pid" "$name"; then
            kill -KILL "$pid" 2>/dev/null || true
        fi
    fi
    rm -f "$pidfile"
done

if [ -f "$STATE/slurm.conf.orig" ]; then
    cp -p "$STATE/slurm.conf.orig" "$CONF" && rm -f "$STATE/slurm.conf.orig"
elif [ -f "$CONF" ] && grep -qF "$MARKER" "$CONF"; then
    rm -f "$CONF"
fi
echo "slurm cluster stopped (state dir $STATE kept for its logs)"
