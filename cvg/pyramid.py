"""The data pyramid of the paper: x^l = f_s(f_t(x^{l+1})), x^L the full video.

f_t keeps every k-th frame (frame i of x^l is frame k*i of x^{l+1}); f_s is bilinear,
antialiased spatial downsampling. Every level is computed from the *stored* (uint8)
level above it (``uint8_pyramid_step``), so a stored pyramid can be checked exactly.
"""

from __future__ import annotations

import warnings
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F


def temporal_subsample(video: torch.Tensor, factor: int, dim: int = 2) -> torch.Tensor:
    """f_t: keep frames 0, k, 2k, ... along ``dim`` (time is dim 2 of (B, C, T, H, W))."""
    if factor == 1:
        return video
    index = torch.arange(0, video.shape[dim], factor, device=video.device)
    return video.index_select(dim, index)


def spatial_downsample(video: torch.Tensor, factor: int) -> torch.Tensor:
    """f_s: bilinear antialiased downsampling of (B, C, T, H, W) float video by ``factor``."""
    if factor == 1:
        return video
    b, c, t, h, w = video.shape
    if h % factor or w % factor:
        raise ValueError(f"frame size {h}x{w} is not divisible by spatial factor {factor}")
    frames = video.permute(0, 2, 1, 3, 4).reshape(b * t, c, h, w)
    # the antialiasing filter runs in float32: PyTorch's CPU kernel has no bfloat16 version, and
    # under bf16 autocast the discriminators receive bfloat16 videos
    small = F.interpolate(frames.float(), size=(h // factor, w // factor), mode="bilinear", antialias=True, align_corners=False)
    return small.to(video.dtype).reshape(b, t, c, h // factor, w // factor).permute(0, 2, 1, 3, 4)


def pyramid_step(video: torch.Tensor, temporal_factor: int, spatial_factor: int) -> torch.Tensor:
    """One step down the pyramid, f_s(f_t(x)); float (B, C, T, H, W) in, float out."""
    return spatial_downsample(temporal_subsample(video, temporal_factor), spatial_factor)


def naive_upsample(video: torch.Tensor, temporal_factor: int, spatial_factor: int) -> torch.Tensor:
    """The no-learning inverse of a pyramid step: frames repeated, bilinear in space. Per frame,
    so it commutes with temporal chunking (the bilinear baseline; the generators' ``refine``)."""
    b, c, t, h, w = video.shape
    rep = video.repeat_interleave(temporal_factor, dim=2)
    frames = rep.transpose(1, 2).reshape(b * t * temporal_factor, c, h, w)
    up = F.interpolate(frames, scale_factor=spatial_factor, mode="bilinear", align_corners=False)
    return up.reshape(b, t * temporal_factor, c, h * spatial_factor, w * spatial_factor).transpose(1, 2).clamp(-1, 1)


def uint8_pyramid_step(frames: np.ndarray, temporal_factor: int, spatial_factor: int) -> np.ndarray:
    """``pyramid_step`` on uint8 clips (..., T, H, W, 3) (one clip, or a stack of them), rounded
    back to uint8; every frame is downsampled on its own, so a stack equals its clips one by one.

    The frames stay channels-last (a permuted view, no layout copy): the kernel computes the
    same values as on contiguous frames. PyTorch's faster uint8 kernel is not used: its
    fixed-point weights put its results 0.12 grey levels above the operator on average.
    """
    kept = frames[..., ::temporal_factor, :, :, :]  # f_t: a view; only kept frames are converted
    lead, (t, h, w, c) = kept.shape[:-4], kept.shape[-4:]
    if spatial_factor == 1:
        return np.ascontiguousarray(kept)
    with warnings.catch_warnings():  # a read-only memory map (the shard writer's scratch) is only read here
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        x = torch.from_numpy(np.ascontiguousarray(kept)).reshape(-1, h, w, c)
    x = x.float().permute(0, 3, 1, 2)  # (N, C, H, W) in channels-last memory
    y = spatial_downsample(x.unsqueeze(2), spatial_factor).squeeze(2)
    y = y.round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous()
    return y.reshape(*lead, t, *y.shape[1:]).numpy()


def build_pyramid(top: np.ndarray, temporal_factors: Sequence[int], spatial_factors: Sequence[int]) -> list[np.ndarray]:
    """All levels of one clip (T, H, W, 3), or of a stack of clips (N, T, H, W, 3), level 1
    first, from the full-resolution frames x^L.

    ``temporal_factors[l]`` / ``spatial_factors[l]`` relate level l+1 to level l (0-based list
    over levels; entry 0, level 1's, is unused).
    """
    levels = [top]
    for tf, sf in zip(reversed(temporal_factors[1:]), reversed(spatial_factors[1:])):
        levels.append(uint8_pyramid_step(levels[-1], tf, sf))
    return levels[::-1]


def window_bounds(start: int, window: int, temporal_factor: int) -> tuple[slice, slice]:
    """Aligned partial views: frames [s, s+w) of x^{l-1} and [k*s, k*(s+w)) of x^l."""
    return slice(start, start + window), slice(start * temporal_factor, (start + window) * temporal_factor)


def to_unit_range(frames_uint8: torch.Tensor) -> torch.Tensor:
    """uint8 (..., T, H, W, 3) -> float (..., 3, T, H, W) in [-1, 1], the generators' range."""
    x = frames_uint8.float().div_(127.5).sub_(1.0)
    return x.movedim(-1, -4)


def quantize(video: torch.Tensor) -> torch.Tensor:
    """float in [-1, 1] -> uint8 in [0, 255], same layout."""
    return ((video.detach().float() + 1.0) * 127.5).round_().clamp_(0, 255).to(torch.uint8)


def to_uint8(video: torch.Tensor) -> torch.Tensor:
    """float (..., 3, T, H, W) in [-1, 1] -> uint8 (..., T, H, W, 3); uint8 input is only moved."""
    x = video if video.dtype == torch.uint8 else quantize(video)
    return x.movedim(-4, -1)


def crop_windows(video: torch.Tensor, starts: torch.Tensor, window: int) -> torch.Tensor:
    """Per-sample temporal crops of ``window`` frames of (B, C, T, H, W) at ``starts`` (a window
    of x^{l-1}, as an upsampling level is trained and evaluated on)."""
    return torch.stack([video[i, :, window_bounds(int(s), window, 1)[0]] for i, s in enumerate(starts)])


def window_starts(n: int, frames: int, window: int, generator: torch.Generator) -> torch.Tensor:
    """Start frames of ``n`` windows of ``window`` frames of ``frames``-frame videos, uniform over
    every full window: the one draw of an upsampling level's windows, real (data) and fake
    (frozen cascade) alike, and of the training-setup samples."""
    if not 0 < window <= frames:
        raise ValueError(f"a window of {window} frames does not fit in {frames} frames")
    return torch.randint(0, frames - window + 1, (n,), generator=generator)
