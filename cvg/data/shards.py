"""Manifest -> HDF5 pyramid shards -> index, the data stage of the pipeline.

* ``write_manifest``: one row per video with its split, label and the shard it belongs to.
  Shards are sized so that a shard holds about ``data.shard_size_mb`` of pyramids.
* ``write_shard``: decodes one shard's videos in parallel processes, builds every clip's
  pyramid once, and writes ``level1..levelL`` uint8 arrays (one clip per HDF5 chunk) with
  labels, clip ids and source paths. Videos that fail are listed, with the reason, in the
  shard's failures CSV. Both files appear atomically (temp file + rename).
* ``write_index``: the per-clip index every loader reads, counts per split and class, and
  the dataset's failures report.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import tempfile
from dataclasses import asdict
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
from tqdm import tqdm

from cvg.atomic import atomic_path, ensure_free, write_csv
from cvg.config import Config
from cvg.data.sources import list_videos
from cvg.errors import CvgError
from cvg.fingerprint import Stamp, fingerprints, from_stamp, read_stamp, read_stamp_file, write_stamp_file
from cvg.layout import LABEL, level_key
from cvg.pyramid import build_pyramid
from cvg.video_io import DecodeError, decode_video

FAILURE_COLUMNS = ["path", "split", "video_id", "reason"]
PYRAMID_OPERATOR = "x^l = f_s(f_t(x^{l+1})); f_t keeps every k-th frame; f_s bilinear antialiased (torch)"


class ShardError(CvgError, RuntimeError):
    """A shard that cannot be opened or fails its checksums; the message names it and how to rebuild it."""


def rebuild_hint(path: str | os.PathLike) -> str:
    """How to rebuild shard ``path``: the snakemake command, with the options that define its
    experiment (``--configfile``, from the experiment's provenance.json) where it needs them."""
    options = ""
    for folder in Path(path).parents:
        provenance = folder / "provenance.json"
        if provenance.is_file():
            try:
                options = json.loads(provenance.read_text()).get("options", "")
            except (OSError, ValueError):
                pass
            break
    command = " ".join(part for part in ("snakemake -c2", options, f"--forcerun shard -- {path}") if part)
    return f"rebuild it: {command} (or delete it and rerun the pipeline)"


def open_shard(path: str | os.PathLike) -> h5py.File:
    """A shard opened for reading; a truncated or corrupt file raises ``ShardError`` naming it."""
    try:
        return h5py.File(path, "r")
    except (OSError, KeyError) as exc:
        raise ShardError(f"shard {path} cannot be opened ({exc}); {rebuild_hint(path)}") from None


def read_clip(h5: h5py.File, dataset: str, row: int, frames=slice(None)) -> np.ndarray:
    """One clip's frames; a checksum failure (fletcher32) or a read error names the shard."""
    try:
        return h5[dataset][row, frames]
    except (OSError, KeyError) as exc:
        reason = "its checksum (fletcher32) does not match: the file is corrupt" if "filter returned failure" in str(exc) else str(exc)
        raise ShardError(f"shard {h5.filename}: {dataset} row {row} cannot be read ({reason}); {rebuild_hint(h5.filename)}") from None


def stage_check(config: Config, stamp: Stamp | None, what: str):
    """The config's fingerprints on the listing ``what`` recorded, after checking it is the config's data."""
    fps = from_stamp(config, stamp)
    fps.check(stamp, "data", what)
    return fps


def write_manifest(config: Config, manifest_path: str | os.PathLike, classes_path: str | os.PathLike) -> pd.DataFrame:
    stamp = fingerprints(config).stamp("data")  # the listing before the videos are read: a later change shows
    entries = list_videos(config)
    frame = pd.DataFrame([asdict(e) for e in entries])
    names = sorted({n for n in frame["label_name"] if n}) if config.dataset.conditional else []
    label_of = {name: i for i, name in enumerate(names)}
    frame["label"] = [label_of.get(n, -1) for n in frame["label_name"]]
    per_shard = max(1, config.clips_per_shard() // max(1, config.data.clips_per_video))
    frame = frame.sort_values(["split", "path"], kind="stable").reset_index(drop=True)
    frame["shard"] = frame.groupby("split").cumcount() // per_shard
    write_csv(frame, manifest_path)
    write_csv(pd.DataFrame({"label": range(len(names)), "name": names}), classes_path)
    write_stamp_file(manifest_path, stamp)
    return frame


def shard_keys(manifest: pd.DataFrame) -> list[tuple[str, int]]:
    """(split, shard) pairs present in a manifest, for the Snakemake aggregation."""
    return sorted({(s, int(i)) for s, i in zip(manifest["split"], manifest["shard"])})


def _init_worker() -> None:
    import torch

    torch.set_num_threads(1)  # parallelism is across processes


def _scratch_dir() -> str | None:
    """Where workers hand decoded frames to the writer: $CVG_SCRATCH, else RAM-backed /dev/shm,
    else the default temporary folder (None). Each worker holds one video's frames there."""
    if os.environ.get("CVG_SCRATCH"):
        return os.environ["CVG_SCRATCH"]
    return "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None


def decode_to_scratch(job: dict) -> tuple[int, list[str] | None, int, str]:
    """Worker side of ``write_shard``: decode a video into raw scratch files, one per level
    (its clips stacked, (clips, T, H, W, 3) uint8, shapes known to the writer from the config).

    ffmpeg writes the top level straight into RAM-backed scratch and the lower levels are
    pyramided from a memory map of it, so the frames never pass through a pipe or a pickle;
    both cost more context switches and copies on a loaded machine than the pyramid does.
    Returns (row, one scratch path per level or None, clips, failure reason).
    """
    # files of a worker that raises are swept by ``write_shard`` (same prefix), which then stops
    scratch = _scratch_dir()
    fd, top_path = tempfile.mkstemp(prefix=job["scratch_prefix"], suffix=".rgb", dir=scratch)
    os.close(fd)
    row, levels, reason = decode_clips(job, top_out=top_path)
    if levels is None:
        os.unlink(top_path)
        return row, None, 0, reason
    paths = []
    for clips in levels[:-1]:
        fd, path = tempfile.mkstemp(prefix=job["scratch_prefix"], suffix=".rgb", dir=scratch)
        with os.fdopen(fd, "wb") as f:
            f.write(np.ascontiguousarray(clips).data)
        paths.append(path)
    return row, [*paths, top_path], len(levels[0]), ""


def decode_clips(job: dict, top_out: str | None = None) -> tuple[int, list[np.ndarray] | None, str]:
    """Decode one video into the pyramid of its consecutive clips: (row, one (clips, T, H, W, 3)
    array per level, failure reason). With ``top_out`` the top level is a memory map of that
    file (``decode_video``'s ``out``)."""
    top_frames = job["frames"][-1]
    wanted = job["clips_per_video"]
    try:
        if job["missing_reason"]:
            raise DecodeError(job["missing_reason"])
        frames = decode_video(
            job["path"],
            fps=job["fps"],
            resolution=job["resolution"],
            max_frames=wanted * top_frames if wanted else None,
            threads=job["threads"],
            scale_flags=job["scale_flags"],
            out=top_out,
        )
    except DecodeError as exc:
        return job["row"], None, str(exc)
    n_clips = len(frames) // top_frames
    if n_clips == 0:
        return job["row"], None, (
            f"too short: {len(frames)} frames at {job['fps']:g} fps, a clip needs {top_frames}"
        )
    clips = frames[: n_clips * top_frames].reshape(n_clips, top_frames, *frames.shape[1:])  # a view: no copy
    return job["row"], build_pyramid(clips, job["temporal_factors"], job["spatial_factors"]), ""


def _create_datasets(h5: h5py.File, config: Config) -> None:
    str_dt = h5py.string_dtype()
    for lv in config.levels:
        shape = (lv.frames, lv.resolution, lv.resolution, 3)
        h5.create_dataset(
            level_key(lv.index),
            shape=(0, *shape),
            maxshape=(None, *shape),
            chunks=(1, *shape),
            dtype=np.uint8,
            compression=config.data.compression,
            fletcher32=True,  # a checksum per clip, verified on every read
        )
    h5.create_dataset(LABEL, shape=(0,), maxshape=(None,), dtype=np.int64)
    h5.create_dataset("start_frame", shape=(0,), maxshape=(None,), dtype=np.int64)
    for name in ("clip_id", "source"):
        h5.create_dataset(name, shape=(0,), maxshape=(None,), dtype=str_dt)


def pyramid_attributes(config: Config) -> dict:
    return {
        "experiment": config.name,
        "fps": config.data.fps,
        "top_stride": config.data.stride,
        "levels": json.dumps([asdict(lv) for lv in config.levels]),
        "operator": PYRAMID_OPERATOR,
        "frame_layout": "(clip, T, H, W, RGB) uint8",
    }


def write_shard(
    config: Config,
    manifest_path: str | os.PathLike,
    split: str,
    shard: int,
    out_path: str | os.PathLike,
    failures_path: str | os.PathLike,
    workers: int | None = None,
) -> tuple[int, int]:
    """Write one shard; returns (clips written, videos failed)."""
    stamp = stage_check(config, read_stamp_file(manifest_path), f"manifest {manifest_path}").stamp("data")
    sweep_scratch()
    manifest = pd.read_csv(manifest_path, keep_default_na=False)
    rows = manifest[(manifest["split"] == split) & (manifest["shard"] == shard)]
    if rows.empty:
        raise ValueError(f"{manifest_path}: no videos for split={split!r} shard={shard}")
    out_path, failures_path = Path(out_path), Path(failures_path)
    base = {
        "fps": config.decode_fps,
        "resolution": config.top.resolution,
        "frames": [lv.frames for lv in config.levels],
        "temporal_factors": [lv.temporal_factor for lv in config.levels],
        "spatial_factors": [lv.spatial_factor for lv in config.levels],
        "clips_per_video": config.data.clips_per_video,
        "threads": config.data.ffmpeg_threads,
        "scale_flags": config.data.scale_flags,
        "scratch_prefix": f"cvg-{os.getpid()}-{split}-{shard}-",  # swept if this job fails
    }
    jobs = [{**base, "row": int(i), "path": r.path, "missing_reason": r.missing_reason} for i, r in rows.iterrows()]
    failures: list[dict] = []
    workers = workers or config.data.workers
    ctx = mp.get_context("fork") if hasattr(os, "fork") else mp.get_context("spawn")
    try:
        with atomic_path(out_path) as tmp:
            n_clips = _write_clips(config, manifest, jobs, tmp, split, shard, workers, ctx, failures, stamp)
    finally:  # scratch arrays of results never consumed (an error, an interrupt)
        for leftover in Path(_scratch_dir() or tempfile.gettempdir()).glob(f"{base['scratch_prefix']}*"):
            leftover.unlink(missing_ok=True)
    write_csv(pd.DataFrame(failures, columns=FAILURE_COLUMNS), failures_path)
    return n_clips, len(failures)


def sweep_scratch() -> int:
    """Remove scratch files of shard jobs that were killed (their process no longer runs); returns
    how many. Each job's files carry its pid (``cvg-PID-...``), and a live job's are left alone."""
    removed = 0
    for leftover in Path(_scratch_dir() or tempfile.gettempdir()).glob("cvg-*-*.rgb"):
        try:
            pid = int(leftover.name.split("-")[1])
        except (IndexError, ValueError):
            continue
        if pid != os.getpid() and not _alive(pid):
            leftover.unlink(missing_ok=True)
            removed += 1
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _write_clips(config: Config, manifest: pd.DataFrame, jobs: list[dict], tmp: Path, split: str, shard: int, workers: int, ctx, failures: list,
                 stamp: Stamp) -> int:
    n_clips = 0
    with h5py.File(tmp, "w") as h5, ctx.Pool(workers, initializer=_init_worker) as pool:
        _create_datasets(h5, config)
        h5.attrs.update(pyramid_attributes(config))
        h5.attrs.update({"split": split, "shard": shard, "stamp": stamp.to_json()})
        results = pool.imap(decode_to_scratch, jobs, chunksize=1)
        frames = {lv.index: h5[level_key(lv.index)] for lv in config.levels}
        per_clip: dict[str, list] = {"label": [], "start_frame": [], "clip_id": [], "source": []}  # written once, at the end
        for row, paths, k, reason in tqdm(results, total=len(jobs), desc=f"shard {split}/{shard:05d}", unit="video"):
            entry = manifest.loc[row]
            if paths is None:
                failures.append({"path": entry.path, "split": split, "video_id": entry.video_id, "reason": reason})
                continue
            # HDF5 crashes on a write the disk refuses: make sure it will not be refused
            ensure_free(tmp, k * config.bytes_per_clip() + (1 << 20))
            for lv, path in zip(config.levels, paths):  # the top level's file may hold a partial clip more
                frames[lv.index].resize(n_clips + k, axis=0)
                shape = (k, lv.frames, lv.resolution, lv.resolution, 3)
                frames[lv.index][n_clips : n_clips + k] = np.memmap(path, np.uint8, mode="r", shape=shape)
                os.unlink(path)
            per_clip["label"] += [entry.label] * k
            per_clip["start_frame"] += [i * config.top.frames for i in range(k)]
            per_clip["clip_id"] += [f"{entry.video_id}#{i}" for i in range(k)]
            per_clip["source"] += [entry.path] * k
            n_clips += k
        for name, values in per_clip.items():
            h5[name].resize(n_clips, axis=0)
            if values:
                h5[name][:] = values
        h5.attrs["clips"] = n_clips
    return n_clips


def read_index(index_path: str | os.PathLike) -> pd.DataFrame:
    """The per-clip index with its ``shard`` column as usable paths: stored relative to the
    index's folder, so that a results tree can be moved and read from any working directory
    (indexes written before that stored paths relative to the workflow's directory; those
    still resolve when read from there)."""
    index = pd.read_csv(index_path, keep_default_na=False)
    base = Path(index_path).parent

    def resolve(p: str) -> str:
        return p if Path(p).is_absolute() or (not (base / p).exists() and Path(p).exists()) else str(base / p)

    resolved = {p: resolve(p) for p in index["shard"].unique()}  # a few file checks per shard, not per clip
    index["shard"] = index["shard"].map(resolved)
    return index


def write_index(
    shard_paths: list[str | os.PathLike],
    failure_paths: list[str | os.PathLike],
    classes_path: str | os.PathLike,
    index_path: str | os.PathLike,
    counts_path: str | os.PathLike,
    failures_path: str | os.PathLike,
    config: Config | None = None,
) -> pd.DataFrame:
    """Per-clip index (shard, row, split, label, ...), counts per split and class, failures. With
    ``config``, every shard's stamp must be its data stage's; the index records the stamp."""
    classes = pd.read_csv(classes_path, keep_default_na=False)
    name_of = dict(zip(classes["label"], classes["name"]))
    frames = []
    stamp = None
    for path in shard_paths:
        with open_shard(path) as h5:
            shard_stamp = read_stamp(h5.attrs)
            if config is not None:
                stage_check(config, shard_stamp, f"shard {path}")
            if stamp is not None and shard_stamp is not None and shard_stamp.fingerprint != stamp.fingerprint:
                raise ShardError(f"shard {path} was made under other data settings than {shard_paths[0]}; {rebuild_hint(path)}")
            stamp = stamp or shard_stamp
            n = int(h5.attrs["clips"])
            frames.append(
                pd.DataFrame(
                    {
                        "shard": os.path.relpath(path, Path(index_path).parent),  # movable with its shards
                        "row": np.arange(n),
                        "split": h5.attrs["split"],
                        "label": h5[LABEL][:],
                        "clip_id": h5["clip_id"].asstr()[:],
                        "source": h5["source"].asstr()[:],
                        "start_frame": h5["start_frame"][:],
                    }
                )
            )
    index = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    index["label_name"] = [name_of.get(int(x), "") for x in index["label"]]
    write_csv(index, index_path)
    counts = index.groupby(["split", "label", "label_name"]).size().reset_index(name="clips")
    write_csv(counts, counts_path)
    failures = [pd.read_csv(p, keep_default_na=False) for p in failure_paths]
    failures = [f for f in failures if not f.empty]
    write_csv(pd.concat(failures, ignore_index=True) if failures else pd.DataFrame(columns=FAILURE_COLUMNS), failures_path)
    if stamp is not None:
        write_stamp_file(index_path, stamp)
    return read_index(index_path)


def index_fingerprints(config: Config, index_path: str | os.PathLike):
    """The config's fingerprints on the data ``index_path`` was made from, after checking that
    the index is the config's data stage (``StaleError`` naming the settings that differ)."""
    return stage_check(config, read_stamp_file(index_path), f"index {index_path}")
