"""Training views over pyramid shards.

Level 1 trains on full clips of x^1. An upsampling level l trains on *partial views*: a
random window of ``window`` frames of x^{l-1} and the temporally aligned
``window * temporal_factor`` frames of x^l (frame i of x^{l-1} is frame k*i of x^l).

Safe with multi-worker DataLoaders: HDF5 files are opened lazily in each process (h5py
handles must not cross a fork). Deterministic: the window of item i in epoch e depends only
on (seed, e, i); call ``set_epoch`` as with a DistributedSampler.
"""

from __future__ import annotations

import os

import h5py
import torch
from torch.utils.data import Dataset

from cvg.config import Config
from cvg.data.shards import open_shard, read_clip, read_index
from cvg.layout import level_key
from cvg.pyramid import to_unit_range, window_bounds, window_starts
from cvg.seeding import keyed_generator


class PyramidWindows(Dataset):
    def __init__(self, config: Config, index_path: str | os.PathLike, level: int, split: str = "train", seed: int = 0):
        index = read_index(index_path)
        index = index[index["split"] == split].reset_index(drop=True)
        if index.empty:
            raise ValueError(f"{index_path}: no clips in split {split!r}")
        self.spec = config.level(level)
        self.prev = config.level(level - 1) if level > 1 else None
        self.shards = list(index["shard"])
        self.rows = index["row"].to_numpy()
        self.labels = index["label"].to_numpy()
        self.seed = seed
        self.epoch = 0
        self._files: dict[str, h5py.File] = {}
        self._pid = None

    def __len__(self) -> int:
        return len(self.rows)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_files"], state["_pid"] = {}, None
        return state

    def _file(self, path: str) -> h5py.File:
        if self._pid != os.getpid():  # new worker process: never reuse a parent's handles
            self._files, self._pid = {}, os.getpid()
        if path not in self._files:
            self._files[path] = open_shard(path)
        return self._files[path]

    def window_start(self, item: int) -> int:
        if self.prev is None:
            return 0
        return int(window_starts(1, self.prev.frames, self.spec.window, keyed_generator(self.seed, self.epoch, item))[0])

    def __getitem__(self, item: int) -> dict[str, torch.Tensor]:
        h5 = self._file(self.shards[item])
        row = int(self.rows[item])
        label = torch.tensor(int(self.labels[item]))
        if self.prev is None:
            video = torch.from_numpy(read_clip(h5, level_key(self.spec.index), row))
            return {"video": to_unit_range(video), "label": label}
        start = self.window_start(item)
        cond_slice, out_slice = window_bounds(start, self.spec.window, self.spec.temporal_factor)
        cond = torch.from_numpy(read_clip(h5, level_key(self.prev.index), row, cond_slice))
        video = torch.from_numpy(read_clip(h5, level_key(self.spec.index), row, out_slice))
        return {"video": to_unit_range(video), "cond": to_unit_range(cond), "label": label, "start": torch.tensor(start)}
