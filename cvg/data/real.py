"""The real clips that scoring and the ``*_on_real`` samples read from the pyramid shards: which
clips of a split (``metrics.seed``'s uniform draw) and their frames of one level, in batches."""

from __future__ import annotations

import os

import h5py
import numpy as np
import pandas as pd

from cvg.config import Config
from cvg.data.shards import open_shard, read_clip, read_index
from cvg.errors import InputError
from cvg.layout import level_key


def in_batches(read, n: int, batch: int):
    """``read(a, b)`` over [0, n) in slices of ``batch``."""
    for start in range(0, n, batch):
        yield read(start, min(n, start + batch))


def choose_clips(rows: pd.DataFrame, n: int, seed: int) -> pd.DataFrame:
    """``n`` clips drawn uniformly without replacement (all of them when there are fewer), kept
    in index order. Not the first ``n``: the index is grouped by class, so its head would be a
    few classes only (the demo's first 48 training clips are 2 of its 6 classes)."""
    if n >= len(rows):
        return rows
    picked = np.sort(np.random.default_rng(seed).choice(len(rows), size=n, replace=False))
    return rows.iloc[picked]


def split_rows(config: Config, index_path: str | os.PathLike, split: str, n: int) -> pd.DataFrame:
    """The real clips of ``split`` that the metrics use: ``n`` chosen with ``metrics.seed``."""
    index = read_index(index_path)
    rows = index[index["split"] == split]
    if rows.empty:
        raise InputError(f"{index_path}: no clips in split {split!r} for the metrics")
    return choose_clips(rows, n, config.metrics.seed)


def real_batches(config: Config, index_path: str | os.PathLike, split: str, n: int, frames: int, batch: int, level: int | None = None,
                 rows: pd.DataFrame | None = None):
    """``n`` clips of a split chosen by ``split_rows`` (or the given index ``rows``), ``frames``
    frames of pyramid ``level`` (default: the top), in batches; and how many."""
    rows = split_rows(config, index_path, split, n) if rows is None else rows
    dataset = level_key(level or len(config.levels))
    files: dict[str, h5py.File] = {}

    def read(a, b):
        clips = []
        for shard, row in zip(rows["shard"].iloc[a:b], rows["row"].iloc[a:b]):
            files.setdefault(shard, open_shard(shard))
            clips.append(read_clip(files[shard], dataset, int(row), slice(0, frames)))
        return np.stack(clips)

    return in_batches(read, len(rows), batch), len(rows)


def real_level1(config: Config, index_path: str | os.PathLike, split: str, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 level-1 clips, labels) of ``n`` clips of a split (``split_rows``): the inputs of
    the ``*_on_real`` sample variants."""
    rows = split_rows(config, index_path, split, n)
    batches, _ = real_batches(config, index_path, split, n, config.level(1).frames, n, level=1, rows=rows)
    return next(batches), rows["label"].to_numpy(np.int64)
