"""Evaluation during training (the paper's early stopping "when evaluation metrics stop
improving"): every ``train.eval_every`` steps a small FVD of the level's current output against
cached real statistics. Level 1 is scored on its samples, level l on the cascade up to l (its
frozen lower levels as sampling prepares them, this level unrolled over them), each upsampled
bilinearly to the top level's size, against real top-level clips of ``metrics.real_split``: so
the numbers of every level are on one scale. The first 16 frames (fewer when the top level has
fewer; clips under I3D's 9 are stretched), the metrics' I3D and resize.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from cvg.cascade import CascadeSampler, unroll
from cvg.clips import SHORT_CLIP_FRAMES
from cvg.config import Config
from cvg.data.real import real_batches
from cvg.fingerprint import Fingerprints
from cvg.metrics import i3d
from cvg.metrics.extract import i3d_outputs
from cvg.metrics.frechet import frechet_from_samples
from cvg.metrics.run import cache_key, i3d_of
from cvg.models.layers import set_norm_eval_stats
from cvg.pyramid import naive_upsample, quantize


@dataclass
class Selection:
    """Which step's generator the level's final checkpoint holds, and why."""

    step: int = 0
    fvd: float = math.inf
    evaluations: int = 0
    since_best: int = 0  # evaluations without improvement since the best one
    last_fvd: float = math.nan
    why: str = "the last step (no evaluation during training: train.eval_every is 0)"

    def to_dict(self) -> dict:
        return asdict(self)


class LevelEvaluator:
    def __init__(self, config: Config, index: int, data_index: Path, fps: Fingerprints, device: torch.device, n: int, cache_dir: Path):
        self.config, self.index, self.device, self.n, self.batch = config, index, device, n, config.metrics.batch_size
        self.frames = min(config.top.frames, SHORT_CLIP_FRAMES)
        self.model = i3d.load_i3d(device)
        split = config.metrics.real_split
        self.ref, _ = i3d_of(self.model, real_batches(config, data_index, split, n, self.frames, self.batch), f"I3D real {split} (evaluation)",
                             cache_dir / f"real_{split}_{n}_{self.frames}f.npz", cache_key(config, fps, split, n, self.frames))

    @torch.no_grad()
    def score(self, g: torch.nn.Module, frozen: CascadeSampler | None, n_classes: int) -> float:
        """FVD of ``n`` samples of the level being trained (generator ``g``), on fixed noise."""
        was_training = g.training
        g.eval()
        set_norm_eval_stats(g, "per_frame" if frozen is None else "stationary")  # unrolled: time-averaged statistics
        gen = torch.Generator().manual_seed(2024)
        videos = []
        try:
            for start in range(0, self.n, self.batch):
                k = min(self.batch, self.n - start)
                label = torch.randint(0, n_classes, (k,), generator=gen).to(self.device) if n_classes else None
                z = torch.randn(k, g.z_dim, generator=gen).to(self.device)
                if frozen is None:
                    video = g(z, label)
                else:
                    lower = frozen.from_noise([torch.randn(k, f.z_dim, generator=gen) for f in frozen.generators], label)[-1]
                    video = unroll(g, lower, z, label, self.config.sample.chunk)
                for lv in self.config.levels[self.index:]:
                    video = naive_upsample(video, lv.temporal_factor, lv.spatial_factor)
                videos.append(quantize(video[:, :, : self.frames]).permute(0, 2, 3, 4, 1).cpu().numpy())
        finally:
            set_norm_eval_stats(g, "per_frame")
            g.train(was_training)
        logits, _ = i3d_outputs(self.model, [np.concatenate(videos)], total=self.n, desc="I3D (evaluation)", stretch_short=True)
        return float(frechet_from_samples(logits, self.ref))
