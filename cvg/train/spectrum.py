"""A spectral term for G (not in the paper): the radially averaged spatial power spectrum of
the generated videos, matched in log scale to that of the real batch.

Why: an upsampling level trained on real pairs learns a correction for *real* low-resolution
inputs; the frozen lower level's samples carry more power at its highest frequencies than the
data (docs/demo_tuning.md), and what the correction adds on top of them moves them further
from the data. The term looks at G's outputs on the *generated* inputs (the fake pairs of
eq. 3) and penalises a spectrum unlike the data's, whatever the input, so G learns to take out
the excess as well as to add the missing detail. It compares batch statistics, not pairs, so
it needs no ground truth for generated inputs. Binning follows ``cvg.metrics.psd.radial_psd``
(integer radius in frequency-index units, ``min(H, W) // 2`` bins), here differentiable and
over colour channels rather than grey.
"""

from __future__ import annotations

import functools

import torch


@functools.lru_cache(maxsize=16)
def _radial_weights(h: int, w: int) -> torch.Tensor:
    """(H * (W // 2 + 1), bins) matrix averaging rfft2 power into integer-radius bins as the
    full frequency plane would: rfft2 keeps one of each mirrored pair (equal power for real
    frames), so every column but the zero and Nyquist ones stands for two points."""
    fy = torch.fft.fftfreq(h) * h  # frequency indices, signed
    fx = torch.fft.rfftfreq(w) * w
    radius = torch.hypot(fy[:, None], fx[None, :]).long().flatten()
    mirrored = ((fx > 0) & (fx < w / 2)).float() + 1.0
    bins = min(h, w) // 2
    keep = radius < bins
    weights = torch.zeros(radius.numel(), bins)
    weights[keep.nonzero().squeeze(1), radius[keep]] = mirrored.expand(h, -1).flatten()[keep]
    return weights / weights.sum(0, keepdim=True)


def log_radial_power(video: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """log of the mean power per radial frequency bin of the frames of ``video`` (..., H, W),
    each frame's mean removed, averaged over every leading axis (batch, channels, time)."""
    x = video.float()
    power = torch.fft.rfft2(x - x.mean((-2, -1), keepdim=True), norm="ortho").abs().square()
    power = power.reshape(-1, power.shape[-2] * power.shape[-1]).mean(0)
    return (power @ _radial_weights(x.shape[-2], x.shape[-1]).to(power.device) + eps).log()


def spectrum_loss(fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference of the log radial power spectra of ``fake`` and ``real``
    (B, C, T, H, W); gradients reach ``fake`` only."""
    return (log_radial_power(fake) - log_radial_power(real.detach())).abs().mean()
