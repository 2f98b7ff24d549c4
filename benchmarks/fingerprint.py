"""Stage-fingerprint cost on a large dataset: the content listing of a dataset root of N video
files (``cvg.content``: relative path, size and SHA-256 of each file, digests cached by file
status), in the four states a user meets, then every stage's fingerprint of a 3-level experiment.

    python benchmarks/fingerprint.py --files 100000 --kib 64

* first: no cache (the first listing of a dataset: every file read once);
* unchanged: the cache warm (stat calls only: every DAG build and every job's start);
* touched: every file's modification time changed, the same bytes (every file read again);
* moved: the root renamed to another path (a copy to scratch storage): every file read once.

The files (``--kib`` KiB of random bytes each) are spread over 600 class folders as in
Kinetics-600, in a temporary folder on the same disk as the results; the page cache is warm, so
the read rows measure hashing and system calls, not the disk (divide the bytes by the disk's
read rate to add it). Appends a row per state to results/fingerprint.csv.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import RESULTS, report  # noqa: E402
from cvg.config import build_config, read_raw  # noqa: E402
from cvg.content import content_listing  # noqa: E402
from cvg.fingerprint import Fingerprints  # noqa: E402


def timed(root: Path) -> tuple[str, float]:
    start = time.perf_counter()
    listing = content_listing(root, progress=False)
    return listing, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=100_000, help="video files in the synthetic dataset root")
    parser.add_argument("--kib", type=int, default=64, help="size of each file, KiB")
    parser.add_argument("--classes", type=int, default=600, help="class folders they are spread over")
    args = parser.parse_args()
    RESULTS.mkdir(exist_ok=True)
    rows = []
    with tempfile.TemporaryDirectory(dir=RESULTS) as tmp:
        os.environ["CVG_CACHE_DIR"] = str(Path(tmp) / "cache")
        root = Path(tmp) / "videos"
        for c in range(args.classes):
            (root / f"class{c:03d}").mkdir(parents=True)
        block = os.urandom(args.kib * 1024)
        for i in range(args.files):
            (root / f"class{i % args.classes:03d}" / f"video{i:07d}.mp4").write_bytes(i.to_bytes(8, "little") + block[8:])
        gib = args.files * args.kib / 2**20
        first, first_s = timed(root)
        unchanged, unchanged_s = timed(root)
        now = time.time_ns()
        for path in root.rglob("*.mp4"):
            os.utime(path, ns=(now, now))
        touched, touched_s = timed(root)
        moved_root = Path(tmp) / "scratch" / "videos"
        moved_root.parent.mkdir()
        root.rename(moved_root)
        moved, moved_s = timed(moved_root)
        assert first == unchanged == touched == moved, "the content listing changed with the files' place or times"
        raw = read_raw(Path(__file__).resolve().parents[1] / "config" / "demo.yaml")
        raw["dataset"] = {"kind": "folder", "root": str(moved_root)}
        start = time.perf_counter()
        fps = Fingerprints(build_config(raw), moved)
        digests = [fps.fingerprint(stage) for stage in fps.stages()]
        stages_s = time.perf_counter() - start
    for state, seconds, read in (("first", first_s, True), ("unchanged", unchanged_s, False), ("touched", touched_s, True), ("moved", moved_s, True)):
        rows.append({"files": args.files, "kib": args.kib, "state": state, "listing_s": round(seconds, 3),
                     "read_gib_per_s": round(gib / seconds, 3) if read else "", "stages": len(digests),
                     "all_stages_s": round(stages_s, 4), "listing": moved})
    report("fingerprint", rows)


if __name__ == "__main__":
    main()
