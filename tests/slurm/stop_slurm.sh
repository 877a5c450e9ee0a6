#!/usr/bin/env bash
# Stop the cluster that tests/slurm/start_slurm.sh started in DIR: cancel its jobs, then end slurmd, slurmctld
# and munged by the PIDs in their PID files (TERM, then KILL after 10 s). Never touches other daemons.
set -uo pipefail

if [[ $# -ne 1 ]]; then
    echo "usage: $0 DIR" >&2
    exit 2
fi
DIR=$(realpath -m "$1")
export SLURM_CONF="$DIR/etc/slurm.conf"

if [[ -f $DIR/slurmctld.pid ]] && command -v scancel >/dev/null 2>&1; then
    timeout 10 scancel --full --quiet --user=root 2>/dev/null || true
fi

stop_pid_file() {
    local file=$1 pid
    [[ -f $file ]] || return 0
    pid=$(cat "$file")
    [[ $pid =~ ^[0-9]+$ ]] || return 0
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null
        for _ in $(seq 1 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.2
        done
        if kill -0 "$pid" 2>/dev/null; then
            echo "$(basename "$file" .pid) ($pid) ignored TERM, killing it" >&2
            kill -KILL "$pid" 2>/dev/null
        fi
    fi
    echo "stopped $(basename "$file" .pid) (pid $pid)"
}

stop_pid_file "$DIR/slurmd.pid"
stop_pid_file "$DIR/slurmctld.pid"
stop_pid_file "$DIR/munge/munged.pid"
exit 0
