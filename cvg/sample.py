"""The sampling stage: the sampler of each variant (``cvg.variants``), BN statistics from
``cvg norms`` files, and the samples file every metric reads (uint8 levels 1..L, labels,
stamped with the stage's fingerprint). The cascade itself is ``cvg.cascade``."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import torch
from tqdm import tqdm

from cvg.atomic import atomic_path, ensure_free
from cvg.cascade import CascadeSampler, level_grid, n_classes_of, to_uint8_frames
from cvg.checkpoint import check_stamp, checkpoint_stamp_of, load_checkpoint, load_generator, save_atomic
from cvg.config import Config
from cvg.data.real import real_level1
from cvg.errors import InputError
from cvg.fingerprint import Fingerprints, Stamp, from_stamp
from cvg.layout import LABEL, level_key
from cvg.models.presets import build_generator, get_preset
from cvg.pyramid import naive_upsample, to_unit_range
from cvg.variants import Variant
from cvg.video_io import encode_video


UNTRAINED_SEED = 12345  # the initialisation of the ``untrained`` variant's upsampling levels


def norm_settings(config: Config, variant: str = "cascade") -> tuple:
    """(mode, passes, level1_frames, batch, seed) of ``prepare_norms`` for sampling ``variant`` as
    ``sample`` asks: untrained levels always recompute (they have no running statistics of use)."""
    s = config.sample
    passes = s.bn_passes if s.bn == "recompute" or Variant.parse(variant, len(config.levels)).fresh else 0
    return ("recompute" if passes else "stationary", passes, s.level1_frames or config.level(1).frames, s.batch_size, s.seed)


def read_norm_records(paths, fps: Fingerprints | None = None) -> list[dict]:
    """``cvg norms`` files of levels 1..k, in order; with ``fps`` each must be that config's ``norms{l}``."""
    records = [load_checkpoint(p) for p in paths or ()]
    if fps is not None:
        for i, (path, record) in enumerate(zip(paths or (), records), start=1):
            check_stamp(fps, record, f"norms{i}", path)
    return records


def prepare_with_records(config: Config, sampler: CascadeSampler, variant: str = "cascade", norms=()) -> list[dict]:
    """``sampler.prepare_norms`` as ``sample`` asks, its first levels from ``cvg norms`` files;
    a stale or mismatched file is named in the error."""
    try:
        return sampler.prepare_norms(*norm_settings(config, variant), given=read_norm_records(norms, sampler.fingerprints))
    except ValueError as exc:
        if not norms:
            raise
        raise InputError(f"{', '.join(map(str, norms))}: {exc}") from None


def build_sampler(config: Config, checkpoints: list[str], variant: str, device="cpu") -> CascadeSampler:
    """The sampler of a variant: ``cascade`` = all trained levels; ``untrained`` = trained level 1
    with freshly initialised upsampling levels; ``bilinear`` = trained level 1 only;
    ``cascade_to_level{k}`` = trained levels 1..k only (``write_samples`` upsamples the levels a
    sampler lacks naively, so these rows show what each upsampling level adds).
    ``*_on_real`` are the same samplers, to be fed real level-1 clips (``write_samples(level1=...)``)."""
    spec = Variant.parse(variant, len(config.levels))
    trained = spec.trained
    if len(checkpoints) < trained:
        raise InputError(f"sample variant {variant!r} needs the checkpoints of levels 1..{trained}, got {len(checkpoints)}: {checkpoints}")
    fps = cascade_fingerprints(config, checkpoints[0])
    if not spec.fresh:
        return CascadeSampler(config, [load_generator(config, path, device, fps) for path in checkpoints[:trained]], device, fps)
    first = load_generator(config, checkpoints[0], device, fps)
    n_classes = n_classes_of(first)
    preset = get_preset(config.model.preset, config.model.width)
    with torch.random.fork_rng(devices=[]):  # the fresh levels' initialisation: seeded, the caller's random state untouched
        torch.manual_seed(UNTRAINED_SEED)
        fresh = [build_generator(preset, config.levels, lv.index, n_classes, refine=config.model.refine) for lv in config.levels[1:]]
    return CascadeSampler(config, [first, *fresh], device, fps)


def cascade_fingerprints(config: Config, level1_checkpoint: str | Path) -> Fingerprints:
    """The config's fingerprints on the data level 1 was trained on (its stamp's listing)."""
    return from_stamp(config, checkpoint_stamp_of(level1_checkpoint))


def prepared_sampler(config: Config, checkpoints: list[str], variant: str, device="cpu", norms=()) -> CascadeSampler:
    """``build_sampler`` with BN statistics set as ``sample.bn`` asks, ready to sample. ``norms``:
    files of ``cvg norms`` for the first levels (the workflow prepares each level's statistics
    once, for every variant), so those levels take no passes."""
    sampler = build_sampler(config, checkpoints, variant, device)
    if Variant.parse(variant, len(config.levels)).windows:  # statistics at the training lengths, not the unrolled ones
        s = config.sample
        sampler.prepare_window_norms(s.bn_passes, s.batch_size, s.seed)
        return sampler
    prepare_with_records(config, sampler, variant, norms)
    return sampler


def write_samples(config: Config, sampler: "CascadeSampler", out: str | Path, n: int, batch: int,
                  sigma: float, chunk: int | None, level1_frames: int | None, seed: int,
                  level1: tuple[np.ndarray, np.ndarray] | None = None, stamp: Stamp | None = None, windows: bool = False) -> Path:
    """All levels of ``n`` samples to HDF5 (uint8 level1..L, labels), atomically; the levels the
    sampler has no generator for are the naive (bilinear) upsampling of the one below. With
    ``level1`` = (uint8 clips (N, T, H, W, 3), labels), level 1 is those clips, not generated; with
    ``windows``, the samples are the training setup's (``CascadeSampler.sample_windows``)."""
    if level1 is not None:
        n = len(level1[0])
    out = Path(out)
    with atomic_path(out) as tmp, h5py.File(tmp, "w") as h5:
        written = 0
        with tqdm(total=n, desc=f"sample {out.stem}", unit="video") as bar:
            while written < n:
                k = min(batch, n - written)
                if windows:
                    videos, labels = sampler.sample_windows(k, sigma, seed=seed + written)
                elif level1 is None:
                    videos, labels = sampler.sample(k, sigma, level1_frames, chunk, seed=seed + written)
                else:
                    labels = torch.as_tensor(level1[1][written : written + k])
                    clips = to_unit_range(torch.as_tensor(level1[0][written : written + k]))
                    videos = sampler.upsample(clips, labels if sampler.n_classes else None, sigma, chunk, seed=seed + written)
                for lv in config.levels[len(sampler.generators):]:
                    videos.append(naive_upsample(videos[-1], lv.temporal_factor, lv.spatial_factor))
                ensure_free(tmp, sum(v[:1].numel() for v in videos) * k + (1 << 20))  # HDF5 crashes on a refused write
                for i, v in enumerate(videos):
                    arr = to_uint8_frames(v)
                    name = level_key(i + 1)
                    if name not in h5:
                        h5.create_dataset(name, shape=(n, *arr.shape[1:]), dtype=np.uint8, chunks=(1, *arr.shape[1:]))
                    h5[name][written : written + k] = arr
                if LABEL not in h5:
                    h5.create_dataset(LABEL, shape=(n,), dtype=np.int64)
                h5[LABEL][written : written + k] = labels.cpu().numpy() if labels is not None else -1
                written += k
                bar.update(k)
        h5.attrs.update({"sigma": sigma, "seed": seed, "trained_levels": len(sampler.generators), "levels": len(config.levels)})
        if stamp is not None:
            h5.attrs["stamp"] = stamp.to_json()
    return out


def sample_stage(config: Config, checkpoints: list[str], variant: str, out: str | Path, index: str | Path | None = None,
                 n: int | None = None, norms=(), device="cpu", grids=()) -> tuple[Path, int]:
    """``cvg sample``: ``n`` (default ``sample.n_samples``) samples of ``variant`` to ``out``,
    stamped with the variant's stage fingerprint; the ``*_on_real`` variants upsample held-out real
    level-1 clips of ``metrics.heldout_split`` (read through ``index``). ``grids``: MP4 / GIF files
    of ``sample.grid_samples`` samples at ``sample.grid_sigma``, levels stacked (Fig. 15).
    Returns the file and its number of samples (all held-out clips when there are fewer than ``n``)."""
    s, spec = config.sample, Variant.parse(variant, len(config.levels))
    sampler = prepared_sampler(config, checkpoints, variant, device, norms)
    frames1 = s.level1_frames or config.level(1).frames
    level1 = None
    if spec.on_real:
        if not index:
            raise InputError(f"--variant {variant} needs --index (results/NAME/data/index.csv)")
        if not config.metrics.heldout_split:
            raise InputError(f"--variant {variant} reads held-out real clips, but metrics.heldout_split is null")
        level1 = real_level1(config, index, config.metrics.heldout_split, n or s.n_samples)
    stamp = sampler.fingerprints.stamp(f"sample:{variant}")
    n = len(level1[0]) if level1 is not None else n or s.n_samples
    path = write_samples(config, sampler, out, n, s.batch_size, s.sigma, s.chunk, frames1, s.seed, level1, stamp,
                         windows=spec.windows)
    if grids:
        videos, _ = sampler.sample(s.grid_samples, s.grid_sigma, frames1, s.chunk, seed=s.seed + 10**6)
        frames = level_grid(videos)
        for grid in grids:
            encode_video(frames, grid, fps=max(1.0, config.data.fps / config.top.stride))
    return path, n


def norms_stage(config: Config, checkpoints: list[str], prev: list[str], out: str | Path, device="cpu") -> dict:
    """``cvg norms``: the BN statistics of the last of ``checkpoints``'s levels (those of the levels
    below from ``prev``, one ``cvg norms`` file each), stamped ``norms{K}``; returns the record."""
    if len(prev) != len(checkpoints) - 1:
        raise InputError(f"--prev needs the statistics of levels 1..{len(checkpoints) - 1} "
                         f"(one file per level below the last checkpoint), got {len(prev)}")
    fps = cascade_fingerprints(config, checkpoints[0])
    sampler = CascadeSampler(config, [load_generator(config, p, device, fps) for p in checkpoints], device, fps)
    record = prepare_with_records(config, sampler, norms=prev)[-1]
    save_atomic({**record, "stamp": fps.stamp(f"norms{len(checkpoints)}").to_json()}, Path(out))
    return record
