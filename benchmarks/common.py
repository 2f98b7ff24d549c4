"""Helpers shared by the benchmark scripts: a printed table and an appended CSV row."""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import os
import platform
import resource
import subprocess
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def git_version() -> str:
    """The commit the rows were measured at; $CVG_GIT_VERSION where the tree has no .git."""
    if os.environ.get("CVG_GIT_VERSION"):
        return os.environ["CVG_GIT_VERSION"]
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def fresh_process_env() -> dict:
    """Environment for a measuring subprocess: glibc hands every buffer of 64 KiB or more back
    to the system when it is freed, so the process's RSS follows the memory actually in use
    instead of what the allocator happens to keep cached (without it, the same level-2 training
    step read 785-869 MB across runs; with it 535.7-536.0 MB). It slows CPU work 2-3x: time
    such a run apart."""
    return {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"}


def _proc_status_bytes(field: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            line = next(ln for ln in f if ln.startswith(f"{field}:"))
        return int(line.split()[1]) * 1024  # kB
    except (OSError, StopIteration, ValueError, IndexError):
        return None


def _start_rss_peak() -> int:
    """RSS now, after resetting the kernel's peak-RSS mark to it (Linux: ``5`` into
    /proc/self/clear_refs), so that the peak read afterwards belongs to what follows; where
    that is unavailable, the peak so far (the growth is then a lower bound)."""
    now = _proc_status_bytes("VmRSS")
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        now = None
    return now if now is not None else _rss_peak()


def _rss_peak() -> int:
    peak = _proc_status_bytes("VmHWM")
    return peak if peak is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


@contextlib.contextmanager
def peak_memory(device: str):
    """Peak memory growth over the ``with`` body, in bytes, in the yielded dict's ``"bytes"``:
    on CUDA torch's peak allocated memory (synchronised), on CPU the process's peak RSS over
    the body minus its RSS at the start (measure each point in a fresh process started with
    ``fresh_process_env``)."""
    import torch

    cuda = str(device).startswith("cuda")
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        base = _start_rss_peak()
    out = {}
    yield out
    if cuda:
        torch.cuda.synchronize()
    now = torch.cuda.max_memory_allocated() if cuda else _rss_peak()
    out["bytes"] = now - base


def report(name: str, rows: list[dict]) -> Path:
    """Print ``rows`` as a table and append them, stamped, to benchmarks/results/NAME.csv."""
    stamp = {"date": dt.datetime.now().isoformat(timespec="seconds"), "git": git_version(), "host": platform.node()}
    rows = [{**stamp, **r} for r in rows]
    keys = list(rows[0])
    widths = {k: max(len(k), *(len(_fmt(r[k])) for r in rows)) for k in keys}
    print("  ".join(k.ljust(widths[k]) for k in keys))
    for r in rows:
        print("  ".join(_fmt(r[k]).ljust(widths[k]) for k in keys))
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.csv"
    old_rows, old_keys = [], []
    if path.exists():
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            old_keys, old_rows = list(reader.fieldnames or []), list(reader)
    if old_keys and all(k in old_keys for k in keys):  # same columns: append
        with open(path, "a", newline="") as f:
            csv.DictWriter(f, fieldnames=old_keys).writerows(rows)
        return path
    # new columns (a script that now measures more): rewrite with the union, old rows blank there
    fields = old_keys + [k for k in keys if k not in old_keys]
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(old_rows + rows)
    tmp.replace(path)
    return path


def _fmt(v) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)
