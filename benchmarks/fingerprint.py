"""Stage-fingerprint cost on a large dataset: the listing of a dataset root of N video files
(stat calls only: relative path, size, modification time), then every stage's fingerprint of
a 3-level experiment on it (what the workflow computes when it builds the DAG).

    python benchmarks/fingerprint.py --files 100000

The files are empty (the listing reads no content), spread over 600 class folders as in
Kinetics-600, in a temporary folder on the same disk as the results.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import RESULTS, report  # noqa: E402
from cvg.config import build_config, read_raw  # noqa: E402
from cvg.fingerprint import Fingerprints, listing_digest  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=100_000, help="video files in the synthetic dataset root")
    parser.add_argument("--classes", type=int, default=600, help="class folders they are spread over")
    args = parser.parse_args()
    RESULTS.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(dir=RESULTS) as tmp:
        root = Path(tmp) / "train"
        for c in range(args.classes):
            (root / f"class{c:03d}").mkdir(parents=True)
        for i in range(args.files):
            (root / f"class{i % args.classes:03d}" / f"video{i:07d}.mp4").touch()
        start = time.perf_counter()
        listing = listing_digest(Path(tmp))
        listing_s = time.perf_counter() - start
        raw = read_raw(Path(__file__).resolve().parents[1] / "config" / "demo.yaml")
        raw["dataset"] = {"kind": "folder", "root": tmp}
        cfg = build_config(raw)
        start = time.perf_counter()
        fps = Fingerprints(cfg, listing)
        digests = [fps.fingerprint(stage) for stage in fps.stages()]
        stages_s = time.perf_counter() - start
    report("fingerprint", [{"files": args.files, "listing_s": round(listing_s, 3), "stages": len(digests),
                           "all_stages_s": round(stages_s, 4), "listing": listing}])


if __name__ == "__main__":
    main()
