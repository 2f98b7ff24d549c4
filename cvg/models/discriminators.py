"""Discriminators of appendix B and the geometric hinge loss.

* spatial: 2D ResNet on k randomly sampled full-resolution frames, one output per frame;
* temporal: the same with its first two blocks 3D, on the video spatially downsampled by 2,
  one output per timestep;
* matching: the temporal architecture on concat(x^{l-1} with frames repeated to the output
  length, x^l downsampled to x^{l-1}'s size), so it judges input/output *pairs*.

Class-conditional discriminators add a projection term (embedding . pooled features).
Outputs of all discriminators are concatenated and the hinge loss is averaged over samples
and output locations.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from cvg.models.layers import DBlock, linear, orthogonal_init
from cvg.pyramid import spatial_downsample


class VideoDiscriminator(nn.Module):
    """ResNet discriminator over (B, C, T, H, W); the first ``three_d_blocks`` are 3D.

    Every block but the last halves the resolution, down to 4x4. Returns (B, T) scores.
    """

    def __init__(self, in_channels: int, resolution: int, ch: int, mults, three_d_blocks: int, n_classes: int = 0):
        super().__init__()
        blocks, cin, size = [], in_channels, resolution
        for i, m in enumerate(mults):
            down = i < len(mults) - 1 and size > 4
            blocks.append(DBlock(cin, ch * m, downsample=down, three_d=i < three_d_blocks, preactivate=i > 0))
            size, cin = (size // 2 if down else size), ch * m
        self.blocks = nn.ModuleList(blocks)
        self.out = linear(cin, 1)
        self.embed = nn.Embedding(n_classes, cin) if n_classes > 0 else None
        if self.embed is not None:
            orthogonal_init(self.embed.weight)

    def forward(self, x: torch.Tensor, label: torch.Tensor | None = None) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        features = F.relu(x).sum(dim=(3, 4)).transpose(1, 2)  # (B, T, C)
        score = self.out(features).squeeze(-1)
        if self.embed is not None:
            score = score + (features * self.embed(label)[:, None]).sum(-1)
        return score


class SpatialDiscriminator(nn.Module):
    def __init__(self, resolution: int, ch: int, mults, k_frames: int = 8, n_classes: int = 0):
        super().__init__()
        self.k_frames = k_frames
        self.net = VideoDiscriminator(3, resolution, ch, mults, three_d_blocks=0, n_classes=n_classes)

    def frame_index(self, batch: int, frames: int, generator: torch.Generator | None = None) -> torch.Tensor | None:
        """k distinct random frame indices per sample; None when the clip has at most k frames."""
        if frames <= self.k_frames:
            return None
        return torch.rand(batch, frames, generator=generator).argsort(1)[:, : self.k_frames]

    def forward(self, video: torch.Tensor, label: torch.Tensor | None = None, frame_index: torch.Tensor | None = None) -> torch.Tensor:
        """``frame_index`` (B, k) picks the frames; drawn here when not given (trainers pass it
        so that a distributed run draws the same frames as a single-process one)."""
        if frame_index is None:
            frame_index = self.frame_index(video.shape[0], video.shape[2])
        if frame_index is not None:
            index = frame_index.to(video.device)[:, None, :, None, None].expand(-1, video.shape[1], -1, *video.shape[3:])
            video = video.gather(2, index)
        return self.net(video, label)


class TemporalDiscriminator(nn.Module):
    def __init__(self, resolution: int, ch: int, mults, n_classes: int = 0, downsample: int = 2):
        super().__init__()
        self.downsample = downsample
        self.net = VideoDiscriminator(3, resolution // downsample, ch, mults, three_d_blocks=2, n_classes=n_classes)

    def forward(self, video: torch.Tensor, label: torch.Tensor | None = None) -> torch.Tensor:
        return self.net(spatial_downsample(video, self.downsample), label)


class MatchingDiscriminator(nn.Module):
    """Scores (x^l, x^{l-1}) pairs: is x^l a plausible upsampling of *this* x^{l-1}?"""

    def __init__(self, in_resolution: int, spatial_factor: int, temporal_factor: int, ch: int, mults, n_classes: int = 0):
        super().__init__()
        self.spatial_factor, self.temporal_factor = spatial_factor, temporal_factor
        self.net = VideoDiscriminator(6, in_resolution, ch, mults, three_d_blocks=2, n_classes=n_classes)

    def pair(self, video: torch.Tensor, cond_video: torch.Tensor) -> torch.Tensor:
        small = spatial_downsample(video, self.spatial_factor)
        return torch.cat([cond_video.repeat_interleave(self.temporal_factor, dim=2), small], 1)

    def forward(self, video: torch.Tensor, cond_video: torch.Tensor, label: torch.Tensor | None = None) -> torch.Tensor:
        return self.net(self.pair(video, cond_video), label)


def d_hinge_loss(real_scores: list[torch.Tensor], fake_scores: list[torch.Tensor]) -> torch.Tensor:
    """Hinge loss of the discriminators' concatenated outputs, mean over samples and locations."""
    real = torch.cat([s.flatten(1) for s in real_scores], 1)
    fake = torch.cat([s.flatten(1) for s in fake_scores], 1)
    return F.relu(1.0 - real).mean() + F.relu(1.0 + fake).mean()


def g_hinge_loss(fake_scores: list[torch.Tensor]) -> torch.Tensor:
    return -torch.cat([s.flatten(1) for s in fake_scores], 1).mean()
