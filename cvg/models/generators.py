"""Generators of appendix B: the level-1 (ConvGRU) generator and the upsampling generator.

Both start from noise (concatenated with a class embedding when class-conditional) mapped
by a linear layer to a (mults[0]*ch) x s x s tensor, replicated over time, then stack units,
each unit two 2D ResNet blocks with the first upsampling 2x (all units but the last). Level 1
runs a ConvGRU before each unit's blocks; upsampling levels replace it with a 3D ResNet block
of separable 3D convs (temporal kernel 3, then 3x3), and add the conditioning video (frames
repeated to the output length, nearest-resized, 1x1-conv-mapped) after every block whose
resolution does not exceed the conditioning video's (appendix B.2).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from cvg.models.layers import FRAMES, ConditionalNorm, ConvGRU, GBlock, conv2d, conv3d, linear, norm_relu_conv, orthogonal_init
from cvg.pyramid import naive_upsample

REFINE_CLAMP = 0.995  # atanh(0.995) = 3: saturated pixels of x^{l-1} stay finite in logit space


def start_resolution(resolution: int, units: int) -> int:
    """Spatial size of the stem: ``resolution / 2**(units - 1)`` (the last unit keeps size)."""
    start = resolution // 2 ** (units - 1)
    if start < 1 or start * 2 ** (units - 1) != resolution:
        raise ValueError(f"{units} units cannot reach {resolution}x{resolution} by doubling from an integer size")
    return start


class LatentStem(nn.Module):
    """z (+ class embedding) -> linear -> (C, s, s), replicated over T; also returns the BN condition."""

    def __init__(self, z_dim: int, n_classes: int, emb_dim: int, channels: int, size: int):
        super().__init__()
        self.z_dim, self.channels, self.size = z_dim, channels, size
        self.embed = nn.Embedding(n_classes, emb_dim) if n_classes > 0 else None
        if self.embed is not None:
            orthogonal_init(self.embed.weight)
        self.cond_dim = z_dim + (emb_dim if n_classes > 0 else 0)
        self.fc = linear(self.cond_dim, channels * size * size)

    def forward(self, z: torch.Tensor, label: torch.Tensor | None, frames: int) -> tuple[torch.Tensor, torch.Tensor]:
        cond = z if self.embed is None else torch.cat([z, self.embed(label)], 1)
        x = self.fc(cond).view(z.shape[0], self.channels, 1, self.size, self.size)
        return x.expand(-1, -1, frames, -1, -1), cond


class OutputHead(nn.Module):
    """cnorm-relu-conv3x3-tanh to RGB in [-1, 1]."""

    def __init__(self, channels: int, cond_dim: int):
        super().__init__()
        self.norm = ConditionalNorm(channels, cond_dim)
        self.conv = conv2d(channels, 3)

    def logits(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        return norm_relu_conv(self.norm, x, cond, self.conv, FRAMES)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.logits(x, cond))


class Level1Generator(nn.Module):
    """p_g1(x^1): noise -> (frames, resolution) video through ConvGRU + 2D ResNet units.

    Also the non-cascaded baseline when built at the full resolution and length.
    """

    def __init__(self, frames: int, resolution: int, ch: int, mults, z_dim: int = 128, n_classes: int = 0, emb_dim: int = 128):
        super().__init__()
        self.frames, self.resolution, self.z_dim = frames, resolution, z_dim
        widths = [ch * m for m in mults]
        self.stem = LatentStem(z_dim, n_classes, emb_dim, widths[0], start_resolution(resolution, len(mults)))
        cond_dim = self.stem.cond_dim
        self.grus, self.blocks = nn.ModuleList(), nn.ModuleList()
        cin = widths[0]
        for i, width in enumerate(widths):
            self.grus.append(ConvGRU(cin, cin))
            self.blocks.append(
                nn.ModuleList([GBlock(cin, width, cond_dim, upsample=i < len(widths) - 1), GBlock(width, width, cond_dim, upsample=False)])
            )
            cin = width
        self.head = OutputHead(cin, cond_dim)

    def forward(self, z: torch.Tensor, label: torch.Tensor | None = None, lower: torch.Tensor | None = None, frames: int | None = None) -> torch.Tensor:
        """``frames`` frames (default: the trained length) from noise ``z`` and class ``label``."""
        if lower is not None:
            raise ValueError("level 1 generates from noise alone: it takes no lower-level video (lower=None)")
        x, cond = self.stem(z, label, frames or self.frames)
        for gru, (block1, block2) in zip(self.grus, self.blocks):
            x = block2(block1(gru(x), cond), cond)
        return self.head(x, cond)


class UpsamplingGenerator(nn.Module):
    """p_gl(x^l | x^{l-1}): conditional generator, fully convolutional in time.

    ``forward(z, label, lower)`` maps the T_in frames of ``lower`` (x^{l-1}, at ``in_resolution``)
    to ``temporal_factor * T_in`` frames at ``resolution``, for any T_in (trained on windows,
    unrolled over whole videos). The call signature is level 1's: ``(z, label, lower, frames)``.
    """

    def __init__(
        self,
        in_resolution: int,
        resolution: int,
        temporal_factor: int,
        ch: int,
        mults,
        z_dim: int = 128,
        n_classes: int = 0,
        emb_dim: int = 128,
        refine: bool = False,
    ):
        super().__init__()
        self.in_resolution, self.resolution, self.temporal_factor, self.z_dim = in_resolution, resolution, temporal_factor, z_dim
        # refine: a ReZero-style gate on the correction: an untrained refining level *is* the naive
        # upsampling, and learns how far to depart from it
        self.refine_gain = nn.Parameter(torch.zeros(())) if refine else None
        widths = [ch * m for m in mults]
        size = start_resolution(resolution, len(mults))
        self.stem = LatentStem(z_dim, n_classes, emb_dim, widths[0], size)
        cond_dim = self.stem.cond_dim
        self.blocks = nn.ModuleList()
        self.residuals = nn.ModuleDict()  # block index -> 1x1 conv of the conditioning video
        cin, index = widths[0], 0
        for i, width in enumerate(widths):
            # a unit: one 3D ResNet block (separable convs, in place of level 1's ConvGRU), then two
            # 2D ResNet blocks, the first upsampling 2x (all units but the last)
            unit = (GBlock(cin, cin, cond_dim, upsample=False, temporal=True),
                    GBlock(cin, width, cond_dim, upsample=i < len(widths) - 1), GBlock(width, width, cond_dim, upsample=False))
            for block in unit:
                size = size * 2 if block.upsample else size
                self.blocks.append(block)
                if size <= in_resolution:
                    self.residuals[str(index)] = conv3d(3, block.out_channels, 1, bias=False)  # feeds a norm: no bias
                index += 1
            cin = width
        self.head = OutputHead(cin, cond_dim)

    def forward(self, z: torch.Tensor, label: torch.Tensor | None = None, lower: torch.Tensor | None = None, frames: int | None = None) -> torch.Tensor:
        if lower is None:
            raise ValueError(f"an upsampling generator maps a lower-level video: pass lower, (B, 3, T, {self.in_resolution}, {self.in_resolution})")
        if frames is not None and frames != lower.shape[2] * self.temporal_factor:
            raise ValueError(f"{lower.shape[2]} lower-level frames upsample to {lower.shape[2] * self.temporal_factor}, not {frames}")
        frames = lower.shape[2] * self.temporal_factor
        repeated = lower.repeat_interleave(self.temporal_factor, dim=2)  # nearest temporal interpolation
        x, cond = self.stem(z, label, frames)
        for index, block in enumerate(self.blocks):
            x = block(x, cond)
            proj = self.residuals[str(index)] if str(index) in self.residuals else None
            if proj is not None:
                size = x.shape[-1]
                x = x + proj(F.interpolate(repeated, size=(frames, size, size), mode="nearest"))
        if self.refine_gain is not None:  # a correction, in tanh's logit space, of the naive upsampling of x^{l-1}
            base = naive_upsample(lower, self.temporal_factor, self.resolution // self.in_resolution)
            return torch.tanh(self.refine_gain * self.head.logits(x, cond) + torch.atanh(base.clamp(-REFINE_CLAMP, REFINE_CLAMP)))
        return self.head(x, cond)
