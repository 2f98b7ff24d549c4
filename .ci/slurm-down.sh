#!/usr/bin/env bash
# Stop the daemons started by .ci/slurm-up.sh.
for d in slurmd slurmctld slurmdbd; do pkill -x $d 2>/dev/null || true; done
pkill -x mariadbd 2>/dev/null || true
pkill -x munged 2>/dev/null || true
exit 0
