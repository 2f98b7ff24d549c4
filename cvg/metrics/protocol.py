"""The reference FVD input protocol: bilinear resize of every frame to 224x224 without
cropping (TF2 ``tf.image.resize`` semantics: half-pixel centres, no antialiasing), then
``2 * x / 255 - 1``.

Clips shorter than I3D's 9-frame minimum (the paper's 6-frame rows of Table 3 give no method)
are scored, only where ``metrics.short_clips: repeat`` asks for it, after nearest-neighbour
resampling in time to the FVD convention's 16 frames, real and generated alike."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from cvg.metrics import SHORT_CLIP_FRAMES

I3D_SIZE = 224


def preprocess(frames: torch.Tensor, size: int = I3D_SIZE) -> torch.Tensor:
    """uint8 (B, T, H, W, 3) -> float (B, 3, T, size, size) in [-1, 1]."""
    if frames.dtype != torch.uint8 or frames.ndim != 5 or frames.shape[-1] != 3:
        raise ValueError(f"expected uint8 (B, T, H, W, 3), got {frames.dtype} {tuple(frames.shape)}")
    b, t, h, w, _ = frames.shape
    x = frames.permute(0, 1, 4, 2, 3).reshape(b * t, 3, h, w).float()
    if (h, w) != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=False)
    x = x.mul_(2.0 / 255.0).sub_(1.0)
    return x.reshape(b, t, 3, size, size).permute(0, 2, 1, 3, 4)


def stretch_frames(frames: torch.Tensor, length: int = SHORT_CLIP_FRAMES) -> torch.Tensor:
    """(B, T, ...) clips -> (B, length, ...) by nearest-neighbour resampling in time: output
    frame i is input frame floor(i T / length), so each frame repeats length / T times in order
    (6 -> 16: 3, 3, 2, 3, 3, 2). No new frame content: I3D sees the clip slowed down."""
    t = frames.shape[1]
    return frames[:, torch.arange(length) * t // length]
