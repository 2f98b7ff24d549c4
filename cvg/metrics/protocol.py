"""The reference FVD input protocol (google-research ``frechet_video_distance.py``): every frame
resized to 224x224 without cropping by TF1's ``tf.image.resize_bilinear`` with its defaults
(``align_corners=False, half_pixel_centers=False``), then ``2 * x / 255 - 1``. TF1's mapping per
axis: output pixel ``d`` reads source coordinate ``s = d * in / out``, between pixels
``floor(s)`` and ``min(floor(s) + 1, in - 1)`` with weight ``s - floor(s)``. It is not PyTorch's
``interpolate(bilinear, align_corners=False)`` (half-pixel centres, TF2's ``tf.image.resize``),
which differs by up to 91 grey levels on 64-pixel frames. The same resize feeds FID and IS.

Clips shorter than I3D's 9-frame minimum (the paper's 6-frame rows of Table 3 give no method)
are scored, only where ``metrics.short_clips: repeat`` asks for it, after nearest-neighbour
resampling in time to the FVD convention's 16 frames, real and generated alike."""

from __future__ import annotations

import torch

from cvg.clips import SHORT_CLIP_FRAMES

I3D_SIZE = 224
RESIZE = "tf1-bilinear224"  # how protocol names state the resize


def tf1_bilinear_weights(n_in: int, n_out: int) -> torch.Tensor:
    """(n_out, n_in) interpolation matrix of TF1 ``resize_bilinear`` (align_corners=False,
    half_pixel_centers=False) along one axis."""
    src = torch.arange(n_out, dtype=torch.float64) * (n_in / n_out)
    lo = src.floor().long()
    hi = torch.clamp(lo + 1, max=n_in - 1)
    frac = src - lo
    weights = torch.zeros(n_out, n_in, dtype=torch.float64)
    weights[torch.arange(n_out), lo] += 1 - frac
    weights[torch.arange(n_out), hi] += frac
    return weights.float()


def tf1_resize_bilinear(x: torch.Tensor, size: int) -> torch.Tensor:
    """(N, C, H, W) float -> (N, C, size, size), TF1 ``resize_bilinear`` semantics (separable:
    rows, then columns, each a small matrix product)."""
    h, w = x.shape[-2:]
    rows = tf1_bilinear_weights(h, size).to(x.device)
    cols = tf1_bilinear_weights(w, size).to(x.device)
    return torch.matmul(torch.matmul(rows, x), cols.T)


def preprocess(frames: torch.Tensor, size: int = I3D_SIZE) -> torch.Tensor:
    """uint8 (B, T, H, W, 3) -> float (B, 3, T, size, size) in [-1, 1]."""
    if frames.dtype != torch.uint8 or frames.ndim != 5 or frames.shape[-1] != 3:
        raise ValueError(f"expected uint8 (B, T, H, W, 3), got {frames.dtype} {tuple(frames.shape)}")
    b, t, h, w, _ = frames.shape
    x = frames.permute(0, 1, 4, 2, 3).reshape(b * t, 3, h, w).float()
    if (h, w) != (size, size):
        x = tf1_resize_bilinear(x, size)
    x = x.mul_(2.0 / 255.0).sub_(1.0)
    return x.reshape(b, t, 3, size, size).permute(0, 2, 1, 3, 4)


def stretch_frames(frames: torch.Tensor, length: int = SHORT_CLIP_FRAMES) -> torch.Tensor:
    """(B, T, ...) clips -> (B, length, ...) by nearest-neighbour resampling in time: output
    frame i is input frame floor(i T / length), so each frame repeats length / T times in order
    (6 -> 16: 3, 3, 2, 3, 3, 2). No new frame content: I3D sees the clip slowed down."""
    t = frames.shape[1]
    return frames[:, torch.arange(length) * t // length]
