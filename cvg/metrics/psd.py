"""Power spectral density of frames over time (appendix D): for chosen frame indices, the
radially averaged 2D power spectrum of the (grey) frames, averaged over videos; mean and std
over disjoint subsets of the videos (the appendix uses three sets of 600)."""

from __future__ import annotations

import functools

import numpy as np
import torch


@functools.lru_cache(maxsize=16)
def _radial_weights(h: int, w: int, dtype: torch.dtype = torch.float64, device: torch.device | None = None) -> torch.Tensor:
    """(H * (W // 2 + 1), bins) matrix averaging rfft2 power into integer-radius bins
    (radius in frequency-index units, ``min(H, W) // 2`` bins, corners beyond left out) as the
    full frequency plane would: rfft2 keeps one of each mirrored pair (equal power for real
    frames), so every column but the zero and Nyquist ones stands for two points. Built in
    float64, cached per dtype and device: the training term calls this at every G step, and at
    256x256 the matrix is 17-34 MB, not to be copied to the GPU each time."""
    fy = torch.arange(h, dtype=torch.float64)
    fy = torch.where(fy >= (h + 1) // 2, fy - h, fy)  # fftfreq's order as exact integers: no 4.999... radius
    fx = torch.arange(w // 2 + 1, dtype=torch.float64)
    radius = torch.hypot(fy[:, None], fx[None, :]).long().flatten()
    mirrored = ((fx > 0) & (fx < w / 2)).double() + 1.0
    bins = min(h, w) // 2
    # no data-dependent indexing: the matrix also builds on shape-only tensors (cvg.memory)
    weights = (radius[:, None] == torch.arange(bins)[None, :]).double() * mirrored.expand(h, -1).flatten()[:, None]
    return (weights / weights.sum(0, keepdim=True)).to(device=device, dtype=dtype)


def radial_power(frames: torch.Tensor) -> torch.Tensor:
    """Real (..., H, W) frames -> (..., min(H, W) // 2) radially averaged power per frequency
    bin, each frame's mean removed. Differentiable: the spectral training term
    (``cvg.train.spectrum``) matches the same statistic."""
    x = frames - frames.mean((-2, -1), keepdim=True)
    power = torch.fft.rfft2(x, norm="ortho").abs().square()
    return power.flatten(-2) @ _radial_weights(x.shape[-2], x.shape[-1], power.dtype, power.device)


def radial_psd(frames: np.ndarray) -> np.ndarray:
    """uint8/float (N, H, W, 3) frames -> (N, H//2) radially averaged power per frequency bin."""
    grey = np.asarray(frames, dtype=np.float64).mean(-1)
    return radial_power(torch.from_numpy(grey)).numpy()


def psd_table(videos: np.ndarray, frame_indices: list[int], source: str, subsets: int = 3) -> list[dict]:
    """Rows (source, frame, frequency, mean, std) for uint8 videos (N, T, H, W, 3)."""
    rows = []
    for t in frame_indices:
        if t >= videos.shape[1]:
            raise ValueError(f"frame index {t} is beyond the {videos.shape[1]} frames of {source}")
        per_video = radial_psd(videos[:, t])
        means = np.stack([part.mean(0) for part in np.array_split(per_video, min(subsets, len(per_video)))])
        for f, (m, s) in enumerate(zip(means.mean(0), means.std(0))):
            rows.append({"source": source, "frame": t, "frequency": f / (2 * len(means[0])), "mean": m, "std": s})
    return rows
