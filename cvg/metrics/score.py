"""``cvg score``: FVD, FID and IS of any two sets of videos under the reference FVD protocol.

A side (REAL or FAKE) is a folder (searched recursively for video files), a glob, a text file
listing paths (one per line, relative to the list), a NumPy (.npy / .npz) or HDF5 file of uint8
(N, T, H, W, 3) clips, a cvg samples file (its finest level), or one video file.

The protocol is the reference FVD's (google-research ``frechet_video_distance.py``): every frame
decoded by ffmpeg to RGB at the video's own size (no crop, no rescale, no frame-rate change), the
first ``frames`` frames taken every ``stride``-th, resized to 224x224 by TF1 ``resize_bilinear``
(``cvg.metrics.protocol``: no half-pixel centres, aspect not kept), scaled to [-1, 1] as
2x/255 - 1, the Kinetics-400 I3D's logits, and the Fréchet distance with unbiased (n - 1)
covariances (``cvg.metrics.frechet``). The workflow's metrics stage runs its clips through the
same code (``cvg.metrics.extract.i3d_outputs``: the protocol's resize and scaling, the network)
and the same distances; only its clips come from the pyramid shards instead of video files. FID is the Fréchet distance of the same network's Mixed_5c features
(mean-pooled), IS the Inception Score of FAKE's logits.

The I3D outputs of REAL are cached by content (each input file's SHA-256, cached by file status,
and the protocol) under ``$CVG_CACHE_DIR/score``: scoring ten models against one test set decodes
and embeds it once; a changed file or protocol misses the cache.
"""

from __future__ import annotations

import glob
import hashlib
import json
import subprocess
import sys
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import h5py
import numpy as np
import torch

import cvg
from cvg.atomic import atomic_path
from cvg.content import DigestCache, cache_dir
from cvg.errors import CvgError
from cvg.metrics.extract import i3d_outputs
from cvg.metrics.frechet import frechet_from_samples, inception_score
from cvg.metrics.i3d import load_i3d, network_name, weights_path
from cvg.metrics.protocol import I3D_SIZE
from cvg.video_io import DecodeError, decode_frames, ffmpeg_executable

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".gif")
ARRAY_SUFFIXES = (".npy", ".npz", ".h5", ".hdf5")
LIST_SUFFIXES = (".txt", ".lst", ".list")
CACHE_VERSION = 1


class ScoreError(CvgError, ValueError):
    """A side that cannot be scored as a whole (no video, fewer than 2 usable clips, a malformed
    array file); the message names it."""


@dataclass
class Side:
    """One side's inputs: video files and clip-array files, and what could not be used."""

    spec: str
    videos: list[Path] = field(default_factory=list)
    arrays: list[Path] = field(default_factory=list)
    skipped: list[dict] = field(default_factory=list)

    @property
    def files(self) -> list[Path]:
        return self.videos + self.arrays

    def skip(self, path: Path, reason: str) -> None:
        """List ``path`` as unusable in the card, and say so in one line on stderr."""
        self.skipped.append({"path": str(path), "reason": reason})
        print(f"cvg score: skipped {path}: {reason}", file=sys.stderr)


def _expand(paths: list[Path]) -> tuple[list[Path], list[Path]]:
    videos = sorted(p for p in paths if p.suffix.lower() in VIDEO_SUFFIXES)
    arrays = sorted(p for p in paths if p.suffix.lower() in ARRAY_SUFFIXES)
    return videos, arrays


def resolve(spec: str) -> Side:
    """The files ``spec`` names (see the module docstring); an error naming ``spec`` when it names none."""
    path = Path(spec)
    side = Side(spec)
    if path.is_dir():
        side.videos, side.arrays = _expand([p for p in path.rglob("*") if p.is_file()])
        side.arrays = []  # a folder is a folder of videos; arrays are named one by one
        if not side.videos:
            raise ScoreError(f"{spec}: no video files ({' '.join(VIDEO_SUFFIXES)}) in this folder or below")
    elif path.is_file() and path.suffix.lower() in LIST_SUFFIXES:
        listed = [line.strip() for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")]
        files = [(Path(name) if Path(name).is_absolute() else path.parent / name) for name in listed]
        side.videos, side.arrays = _expand(files)
        side.skipped += [{"path": str(f), "reason": "not a video or clip-array file"} for f in files if f not in side.videos + side.arrays]
    elif path.is_file():
        side.videos, side.arrays = _expand([path])
        if not side.files:
            raise ScoreError(f"{spec}: neither a video ({' '.join(VIDEO_SUFFIXES)}), a clip array ({' '.join(ARRAY_SUFFIXES)}) nor a list of paths")
    elif any(ch in spec for ch in "*?["):
        side.videos, side.arrays = _expand([Path(p) for p in glob.glob(spec, recursive=True) if Path(p).is_file()])
        if not side.files:
            raise ScoreError(f"{spec}: the pattern matches no video or clip-array file")
    else:
        raise ScoreError(f"{spec}: no such file or folder")
    return side


def protocol(frames: int, stride: int) -> dict:
    """The protocol a score was computed under, as the card states it."""
    version = ffmpeg_version()
    return {
        "decoder": f"{version}: every frame to rgb24 at the video's own size (no crop, no rescale, no frame-rate change)",
        "frame_selection": f"the first {frames} frames" if stride == 1
        else f"{frames} frames, every {stride}-th from the first (frames 0, {stride}, ..., {(frames - 1) * stride})",
        "resize": f"TF1 resize_bilinear to {I3D_SIZE}x{I3D_SIZE} (align_corners=False, half_pixel_centers=False), aspect not kept",
        "value_range": "2x/255 - 1, in [-1, 1]",
        "network": network_name(),
        "weights_sha256": _weights_digest(),
        "fvd": "Frechet distance of the I3D logits, unbiased (n - 1) covariances",
        "fid": "Frechet distance of the I3D Mixed_5c features (mean-pooled), unbiased covariances",
    }


def ffmpeg_version() -> str:
    out = subprocess.run([ffmpeg_executable(), "-version"], capture_output=True, text=True).stdout
    return " ".join(out.split()[:3]) if out else "ffmpeg"


def _weights_digest() -> str:
    return DigestCache(weights_path().parent).digests({weights_path().name: weights_path().stat()}, progress=False, prune=False)[weights_path().name]


def _selection(clip: np.ndarray, frames: int, stride: int) -> np.ndarray:
    return np.ascontiguousarray(clip[: (frames - 1) * stride + 1 : stride])


def _decoded(path: Path, frames: int, stride: int) -> np.ndarray | str:
    """A video's selected frames, or why it cannot be scored."""
    need = (frames - 1) * stride + 1
    try:
        clip = decode_frames(path, need)
    except DecodeError as exc:
        return str(exc)
    if len(clip) < need:
        return f"too short: {len(clip)} frames, the protocol takes frames 0..{need - 1}"
    return _selection(clip, frames, stride)


def _array_clips(path: Path) -> np.ndarray:
    """The uint8 (N, T, H, W, 3) clips of an array file (a cvg samples file: its finest level)."""
    suffix = path.suffix.lower()
    try:
        if suffix == ".npy":
            arrays = {"": np.load(path, mmap_mode="r")}
        elif suffix == ".npz":
            with np.load(path) as npz:
                arrays = {key: npz[key] for key in npz.files}
        else:
            with h5py.File(path, "r") as h5:
                levels = sorted((k for k in h5 if k.startswith("level") and k[5:].isdigit()), key=lambda k: int(k[5:]))
                keys = levels[-1:] or [k for k in h5 if isinstance(h5[k], h5py.Dataset) and h5[k].ndim == 5]
                arrays = {key: h5[key][()] for key in keys}
    except (OSError, ValueError) as exc:
        raise ScoreError(f"{path}: not a readable clip array ({exc})") from None
    clips = [(key, a) for key, a in arrays.items() if a.ndim == 5 and a.shape[-1] == 3]
    if len(clips) != 1:
        raise ScoreError(f"{path}: expected one (N, T, H, W, 3) array of clips, found {[(k, a.shape) for k, a in arrays.items()]}")
    key, clips = clips[0]
    if clips.dtype != np.uint8:
        raise ScoreError(f"{path}{'[' + key + ']' if key else ''}: clips must be uint8 frames (0..255), got {clips.dtype}")
    return clips


def clips_of(side: Side, frames: int, stride: int, workers: int = 4) -> Iterator[np.ndarray]:
    """Every usable clip of ``side`` (uint8 (frames, H, W, 3)), videos decoded ``workers`` at a
    time a few ahead of use; unusable ones go to ``side.skipped`` and one line on stderr."""
    need = (frames - 1) * stride + 1
    with ThreadPoolExecutor(workers) as pool:
        pending: deque = deque()
        videos = iter(side.videos)
        for path in videos:
            pending.append((path, pool.submit(_decoded, path, frames, stride)))
            if len(pending) >= 2 * workers:
                break
        while pending:
            path, future = pending.popleft()
            nxt = next(videos, None)
            if nxt is not None:
                pending.append((nxt, pool.submit(_decoded, nxt, frames, stride)))
            result = future.result()
            if isinstance(result, str):
                side.skip(path, result)
            else:
                yield result
    for path in side.arrays:
        clips = _array_clips(path)
        if clips.shape[1] < need:
            reason = f"too short: {clips.shape[1]} frames per clip, the protocol takes frames 0..{need - 1}"
            side.skip(path, reason)
            continue
        for clip in clips:
            yield _selection(clip, frames, stride)


def _cache_key(side: Side, proto: dict, frames: int, stride: int) -> str:
    """A digest of the side's files' content and of the protocol."""
    digests = []
    for folder in sorted({p.resolve().parent for p in side.files}):
        names = {p.name: p.stat() for p in side.files if p.resolve().parent == folder}
        cache = DigestCache(folder)
        digests += [digest for _, digest in sorted(cache.digests(names, progress=True, prune=False).items())]
        cache.save()
    text = json.dumps({"version": CACHE_VERSION, "files": digests, "protocol": proto, "frames": frames, "stride": stride}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def side_outputs(side: Side, model, proto: dict, frames: int, stride: int, batch_size: int, workers: int, use_cache: bool, desc: str):
    """I3D (logits, features) of a side, from the cache when ``use_cache`` and it holds them."""
    path = None
    if use_cache:
        path = cache_dir() / "score" / f"{_cache_key(side, proto, frames, stride)}.npz"
        if path.is_file():
            try:
                with np.load(path) as stored:
                    side.skipped += json.loads(str(stored["skipped"]))
                    print(f"cvg score: {side.spec}: I3D outputs from the cache ({path})", file=sys.stderr)
                    return stored["logits"], stored["features"]
            except (OSError, ValueError, KeyError):
                pass  # an unreadable cache entry: computed again
    total = None if side.arrays else len(side.videos)
    clips = (clip[None] for clip in clips_of(side, frames, stride, workers))  # one at a time: each at its own frame size
    logits, features = i3d_outputs(model, clips, total, desc, batch_size=batch_size)
    if path is not None:
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as f:
                np.savez(f, logits=logits, features=features, skipped=json.dumps(side.skipped))
    return logits, features


def is_splits(n: int) -> int:
    """The Inception Score's splits: the usual 10 where each gets 50 clips or more, fewer for
    fewer clips (a split of one or two clips scores 1 whatever they show)."""
    return min(10, max(1, n // 50))


def bootstrap_interval(real: np.ndarray, fake: np.ndarray, n_boot: int, seed: int, level: float = 0.95) -> list[float]:
    """Percentile interval of the Fréchet distance over resamples of both sets (clips drawn with
    replacement, each side independently): how much the score depends on which clips were scored."""
    rng = np.random.default_rng(seed)
    values = [frechet_from_samples(real[rng.integers(0, len(real), len(real))], fake[rng.integers(0, len(fake), len(fake))]) for _ in range(n_boot)]
    tail = (1 - level) / 2
    return [float(np.quantile(values, tail)), float(np.quantile(values, 1 - tail))]


def score(real: str, fake: str, frames: int = 16, stride: int = 1, device: str | None = None, batch_size: int = 8,
          n_boot: int = 1000, seed: int = 0, workers: int = 4, use_cache: bool = True) -> dict:
    """The card of FAKE scored against REAL (see the module docstring)."""
    if frames < 9:
        raise ScoreError(f"--frames {frames}: the I3D takes 9 frames or more (the reference FVD uses 16)")
    if stride < 1:
        raise ScoreError(f"--stride {stride}: must be 1 or more")
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    proto = protocol(frames, stride)
    model = load_i3d(device)
    sides = {"real": resolve(real), "fake": resolve(fake)}
    outputs = {}
    for name, side in sides.items():
        outputs[name] = side_outputs(side, model, proto, frames, stride, batch_size, workers, use_cache and name == "real", f"I3D {name}")
        if len(outputs[name][0]) < 2:
            raise ScoreError(f"{side.spec}: {len(outputs[name][0])} usable clip(s) of {frames} frames (stride {stride}); "
                             f"need 2 or more ({len(side.skipped)} skipped)")
    (real_logits, real_features), (fake_logits, fake_features) = outputs["real"], outputs["fake"]
    splits = is_splits(len(fake_logits))
    proto["is"] = f"Inception Score of FAKE's I3D logits (softmax), {splits} split(s) of the clips"
    inception, inception_std = inception_score(fake_logits, splits)
    return {
        "fvd": frechet_from_samples(real_logits, fake_logits),
        "fvd_ci": bootstrap_interval(real_logits, fake_logits, n_boot, seed) if n_boot else None,
        "fid": frechet_from_samples(real_features, fake_features),
        "is": inception,
        "is_std": inception_std,
        "n_real": int(len(real_logits)),
        "n_fake": int(len(fake_logits)),
        "frames": frames,
        "stride": stride,
        "real": real,
        "fake": fake,
        "protocol": proto,
        "skipped": sides["real"].skipped + sides["fake"].skipped,
        "bootstrap": {"resamples": n_boot, "seed": seed, "level": 0.95},
        "cvg_version": cvg.__version__,
    }


def format_card(card: dict) -> str:
    ci = card["fvd_ci"]
    interval = f"  (95% bootstrap interval {ci[0]:.2f} .. {ci[1]:.2f}, {card['bootstrap']['resamples']} resamples)" if ci else ""
    proto = card["protocol"]
    lines = [
        f"FVD {card['fvd']:.2f}{interval}",
        f"FID {card['fid']:.2f}",
        f"IS  {card['is']:.2f} +- {card['is_std']:.2f}",
        f"clips: {card['n_real']} real ({card['real']}), {card['n_fake']} generated ({card['fake']}); {len(card['skipped'])} skipped",
        f"network: {proto['network']} (weights sha256 {proto['weights_sha256'][:16]}...)",
        f"protocol: {proto['frame_selection']}; {proto['resize']}; {proto['value_range']}; decoder {proto['decoder']}",
    ]
    return "\n".join(lines)
