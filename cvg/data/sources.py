"""Dataset adapters: each turns a dataset's on-disk layout into a list of VideoEntry.

Layouts (``root`` is dataset.root in the config):

* ``ucf101``: ROOT/UCF-101/<Class>/v_<Class>_gXX_cYY.avi and ROOT/ucfTrainTestlist/
  {classInd.txt, trainlist0N.txt, testlist0N.txt} (the official archive names).
* ``kinetics600``: ROOT/annotations/{train,validate,test}.csv with columns
  label,youtube_id,time_start,time_end,split and clips anywhere under ROOT/<split>/ named
  <youtube_id>_<time_start:06d>_<time_end:06d>.<ext> (the layout of the standard downloaders).
  Clips listed but not on disk are reported as failures, not errors: Kinetics shrinks.
* ``bdd100k``: ROOT/videos/{train,val}/*.mov, unlabelled.
* ``folder`` (and ``demo``): ROOT/<split>/<class>/*.<ext>, or ROOT/<class>/* (all "train").
* ``manifest``: a CSV (dataset.annotations, default ROOT/manifest.csv) with a ``path`` column
  and optional ``label`` and ``split`` columns; relative paths are relative to ROOT.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from cvg.config import Config
from cvg.errors import CvgError

EMPTY_CLASS = "class folder with no videos"


class DatasetError(CvgError, RuntimeError):
    """The dataset is absent or malformed as a whole (as opposed to one bad video)."""


@dataclass(frozen=True)
class VideoEntry:
    path: str
    split: str
    label_name: str  # "" for unlabelled datasets
    video_id: str
    missing_reason: str = ""  # set when the dataset lists a video that is not on disk


def _require_dir(path: Path, what: str) -> Path:
    if not path.is_dir():
        raise DatasetError(f"{what} not found: expected a directory at {path}")
    return path


def _videos_in(folder: Path, extensions: tuple[str, ...]) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in extensions)


def list_ucf101(root: Path, split_number: int, extensions) -> list[VideoEntry]:
    videos = _require_dir(root / "UCF-101", "UCF101 videos (UCF-101/)")
    lists = _require_dir(root / "ucfTrainTestlist", "UCF101 split lists (ucfTrainTestlist/)")
    entries = []
    for split, name in (("train", f"trainlist0{split_number}.txt"), ("test", f"testlist0{split_number}.txt")):
        list_file = lists / name
        if not list_file.is_file():
            raise DatasetError(f"UCF101 split list not found: {list_file}")
        for line in list_file.read_text().splitlines():
            if not line.strip():
                continue
            rel = line.split()[0]
            label = rel.split("/")[0]
            path = videos / rel
            entries.append(
                VideoEntry(str(path), split, label, Path(rel).stem, "" if path.is_file() else "listed in split but missing")
            )
    return entries


def list_kinetics600(root: Path, annotations: Path, extensions) -> list[VideoEntry]:
    _require_dir(annotations, "Kinetics annotations")
    on_disk = {p.stem: p for p in _videos_in(root, extensions)}
    entries = []
    csvs = sorted(annotations.glob("*.csv"))
    if not csvs:
        raise DatasetError(f"no annotation CSVs (train.csv, validate.csv, test.csv) in {annotations}")
    for csv_path in csvs:
        with open(csv_path, newline="") as f:
            reader = csv.DictReader(f)
            missing = {"youtube_id", "time_start", "time_end", "split"} - set(reader.fieldnames or [])
            if missing:
                raise DatasetError(f"{csv_path}: missing columns {sorted(missing)}")
            for row in reader:
                stem = f"{row['youtube_id']}_{int(float(row['time_start'])):06d}_{int(float(row['time_end'])):06d}"
                path = on_disk.get(stem)
                entries.append(
                    VideoEntry(
                        str(path) if path else str(root / row["split"] / f"{stem}.mp4"),
                        row["split"],
                        row.get("label", "") or "",
                        stem,
                        "" if path else "listed in annotations but not downloaded",
                    )
                )
    return entries


def list_bdd100k(root: Path, extensions) -> list[VideoEntry]:
    videos = _require_dir(root / "videos", "BDD100K videos (videos/{train,val}/)")
    entries = []
    for split_dir in sorted(p for p in videos.iterdir() if p.is_dir()):
        for path in _videos_in(split_dir, extensions):
            entries.append(VideoEntry(str(path), split_dir.name, "", path.stem))
    return entries


def list_folder(root: Path, splits: tuple[str, ...], extensions) -> list[VideoEntry]:
    has_splits = any((root / s).is_dir() for s in splits)
    entries = []
    for split in splits if has_splits else ("train",):
        base = root / split if has_splits else root
        if not base.is_dir():
            continue
        videos = _videos_in(base, extensions)
        for path in videos:
            rel = path.relative_to(base)
            label = rel.parts[0] if len(rel.parts) > 1 else ""
            entries.append(VideoEntry(str(path), split, label, str(rel.with_suffix("")).replace("/", "__")))
        classes = {path.relative_to(base).parts[0] for path in videos}
        for folder in sorted(p for p in base.iterdir() if p.is_dir() and p.name not in classes):  # in failures.csv, not dropped silently
            entries.append(VideoEntry(str(folder), split, "", folder.name, f"{EMPTY_CLASS} ({', '.join(extensions)}): the class is left out"))
    return entries


def list_manifest(root: Path, manifest: Path) -> list[VideoEntry]:
    if not manifest.is_file():
        raise DatasetError(f"manifest CSV not found: {manifest}")
    entries = []
    with open(manifest, newline="") as f:
        reader = csv.DictReader(f)
        if "path" not in (reader.fieldnames or []):
            raise DatasetError(f"{manifest}: needs a 'path' column (optional: label, split)")
        for row in reader:
            path = Path(row["path"])
            path = path if path.is_absolute() else root / path
            entries.append(VideoEntry(str(path), row.get("split") or "train", row.get("label") or "", path.stem))
    return entries


def list_videos(config: Config) -> list[VideoEntry]:
    """Every video of the configured splits; raises DatasetError naming the expected path."""
    spec = config.dataset
    root = Path(spec.root)
    if not root.is_dir():
        raise DatasetError(f"dataset '{config.name}' ({spec.kind}) not found: expected a directory at {root.resolve()}")
    ext = tuple(e.lower() for e in spec.options.get("extensions", [".mp4", ".avi", ".mov", ".mkv", ".webm"]))
    if spec.kind == "ucf101":
        entries = list_ucf101(root, spec.options.get("ucf101_split", 1), ext)
    elif spec.kind == "kinetics600":
        entries = list_kinetics600(root, Path(spec.options.get("annotations", root / "annotations")), ext)
    elif spec.kind == "bdd100k":
        entries = list_bdd100k(root, ext)
    elif spec.kind in ("folder", "demo"):
        entries = list_folder(root, config.data.splits, ext)
    elif spec.kind == "manifest":
        entries = list_manifest(root, Path(spec.options.get("annotations", root / "manifest.csv")))
    else:  # pragma: no cover - the schema's enum prevents it
        raise DatasetError(f"unknown dataset kind {spec.kind!r}")
    entries = [e for e in entries if e.split in config.data.splits]
    if all(e.missing_reason for e in entries):
        raise DatasetError(
            f"dataset '{config.name}' at {root.resolve()} has no videos for splits {list(config.data.splits)}"
            f" (kind {spec.kind}; see cvg/data/sources.py for the expected layout)"
        )
    return entries
