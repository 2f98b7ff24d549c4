"""A stop asked of a local Snakemake run reaches its training jobs at once.

Snakemake answers SIGTERM by waiting for its running jobs to finish (a level's training: hours),
and SIGINT sent to it alone (not from a terminal, which signals the whole foreground group) by
waiting as well. The workflow installs ``forward_stops`` when a run starts: the same signal is
then also sent to every ``cvg train`` process the run started, which finishes its current step,
saves it to ``latest.pt`` and exits with 128 + the signal (``cvg.train.loop.StopSignals``), so
Snakemake sees the job fail and a rerun resumes at that step. Other jobs (decoding, sampling)
finish as Snakemake lets them. Linux (``/proc``); elsewhere nothing is forwarded.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path


def _children() -> dict[int, list[int]]:
    """{parent pid: child pids} of every process visible in /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir() if Path("/proc").is_dir() else ():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # gone meanwhile
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])  # after "pid (comm) state": the parent pid
        children.setdefault(parent, []).append(int(entry.name))
    return children


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (children, their children ...)."""
    children, found, queue = _children(), [], [pid]
    while queue:
        for child in children.get(queue.pop(), []):
            found.append(child)
            queue.append(child)
    return found


def is_training(pid: int) -> bool:
    """Whether ``pid`` runs ``cvg train`` (the console script or ``python -m cvg.cli``)."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    for i, arg in enumerate(argv[:-1]):
        if (arg.endswith(b"/cvg") or arg in (b"cvg", b"cvg.cli")) and argv[i + 1] == b"train":
            return True
    return False


def stop_training(sig: int, parent: int | None = None) -> list[int]:
    """Send ``sig`` to every ``cvg train`` process below ``parent`` (default: this process);
    return their pids."""
    stopped = []
    for pid in descendants(parent or os.getpid()):
        if is_training(pid):
            try:
                os.kill(pid, sig)
                stopped.append(pid)
            except ProcessLookupError:
                pass
    return stopped


def forward_stops() -> None:
    """From now on, SIGINT and SIGTERM received by this (Snakemake) process are first sent to its
    training jobs, then handled as before (Snakemake's own handlers: SIGTERM waits for the
    running jobs, SIGINT raises ``KeyboardInterrupt``). Call it after Snakemake installed its
    handlers (the workflow's ``onstart``)."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        previous = signal.getsignal(sig)
        if getattr(previous, "forwards_stops", False):
            continue

        def forward(signum, frame, previous=previous):
            stop_training(signum)
            if callable(previous):
                previous(signum, frame)
            elif previous == signal.SIG_DFL:
                signal.signal(signum, signal.SIG_DFL)
                os.kill(os.getpid(), signum)

        forward.forwards_stops = True
        signal.signal(sig, forward)
