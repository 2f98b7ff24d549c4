"""Helpers shared by the benchmark scripts: a printed table and an appended CSV row."""

from __future__ import annotations

import csv
import datetime as dt
import platform
import subprocess
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def git_version() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


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
    new = not path.exists()
    with open(path, "a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=keys)
        if new:
            writer.writeheader()
        writer.writerows(rows)
    return path


def _fmt(v) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)
