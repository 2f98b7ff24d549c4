"""Batched I3D extraction over uint8 clips (from HDF5 or generated), with a progress bar."""

from __future__ import annotations

from typing import Iterable

import numpy as np
import torch
from tqdm import tqdm

from cvg.clips import MIN_FRAMES
from cvg.metrics.protocol import preprocess, stretch_frames


@torch.no_grad()
def i3d_outputs(model: torch.nn.Module, batches: Iterable[np.ndarray | torch.Tensor], total: int | None = None, desc: str = "I3D",
                stretch_short: bool = False, fid_model: torch.nn.Module | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(logits (N, 400), features (N, 1024)) for uint8 (B, T, H, W, 3) batches; with
    ``stretch_short``, clips shorter than I3D's minimum are first stretched to 16 frames; with
    ``fid_model`` (the paper's Kinetics-600 I3D for FID), the features are that network's."""
    device = next(model.parameters()).device
    logits, features = [], []
    with tqdm(total=total, desc=desc, unit="clip") as bar:
        for batch in batches:
            clips = torch.as_tensor(batch)
            if stretch_short and clips.shape[1] < MIN_FRAMES:
                clips = stretch_frames(clips)
            x = preprocess(clips).to(device)
            out_l, out_f = model(x)
            if fid_model is not None:
                out_f = fid_model(x)[1]
            logits.append(out_l.float().cpu().numpy())
            features.append(out_f.float().cpu().numpy())
            bar.update(len(clips))
    return np.concatenate(logits), np.concatenate(features)
