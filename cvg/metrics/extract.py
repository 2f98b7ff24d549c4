"""Batched I3D extraction over uint8 clips (from HDF5 or generated), with a progress bar."""

from __future__ import annotations

import sys
from typing import Iterable

import numpy as np
import torch
from tqdm import tqdm

from cvg.clips import MIN_FRAMES
from cvg.metrics.protocol import preprocess, stretch_frames


@torch.no_grad()
def i3d_outputs(model: torch.nn.Module, batches: Iterable[np.ndarray | torch.Tensor], total: int | None = None, desc: str = "I3D",
                stretch_short: bool = False, fid_model: torch.nn.Module | None = None, batch_size: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(logits (N, 400), features (N, 1024)) for uint8 (B, T, H, W, 3) batches, each resized by the
    protocol at its own frame size (``cvg score`` passes clips of any size one by one); the
    network runs on ``batch_size`` clips at a time (default: each batch as it comes). With
    ``stretch_short``, clips shorter than I3D's minimum are first stretched to 16 frames; with
    ``fid_model`` (the paper's Kinetics-600 I3D for FID), the features are that network's."""
    device = next(model.parameters()).device
    logits, features, pending = [], [], []

    def run() -> None:
        x = torch.cat(pending).to(device)
        pending.clear()
        out_l, out_f = model(x)
        if fid_model is not None:
            out_f = fid_model(x)[1]
        logits.append(out_l.float().cpu().numpy())
        features.append(out_f.float().cpu().numpy())

    with tqdm(total=total, desc=desc, unit="clip", file=sys.stderr) as bar:
        for batch in batches:
            clips = torch.tensor(batch) if isinstance(batch, np.ndarray) and not batch.flags.writeable else torch.as_tensor(batch)
            if stretch_short and clips.shape[1] < MIN_FRAMES:
                clips = stretch_frames(clips)
            pending.append(preprocess(clips))
            if batch_size is None or sum(len(x) for x in pending) >= batch_size:
                run()
            bar.update(len(clips))
        if pending:
            run()
    if not logits:
        return np.zeros((0, 400), np.float32), np.zeros((0, 1024), np.float32)
    return np.concatenate(logits), np.concatenate(features)
