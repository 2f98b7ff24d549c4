"""Power spectral density of frames over time (appendix D): for chosen frame indices, the
radially averaged 2D power spectrum of the (grey) frames, averaged over videos; mean and std
over disjoint subsets of the videos (the appendix uses three sets of 600)."""

from __future__ import annotations

import numpy as np


def radial_psd(frames: np.ndarray) -> np.ndarray:
    """uint8/float (N, H, W, 3) frames -> (N, H//2) radially averaged power per frequency bin."""
    grey = np.asarray(frames, dtype=np.float64).mean(-1)
    grey = grey - grey.mean(axis=(1, 2), keepdims=True)
    n, h, w = grey.shape
    power = np.abs(np.fft.fftshift(np.fft.fft2(grey), axes=(1, 2))) ** 2 / (h * w)
    yy, xx = np.indices((h, w))
    radius = np.hypot(yy - h // 2, xx - w // 2).astype(int)
    bins = min(h, w) // 2
    mask = radius < bins
    counts = np.bincount(radius[mask], minlength=bins)
    return np.stack([np.bincount(radius[mask], weights=p[mask], minlength=bins) / counts for p in power])


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
