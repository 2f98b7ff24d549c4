"""A spectral term for G (not in the paper): the radially averaged spatial power spectrum of
the generated videos, matched in log scale to that of the real batch.

Why: an upsampling level trained on real pairs learns a correction for *real* low-resolution
inputs; the frozen lower level's samples carry more power at its highest frequencies than the
data (docs/demo_tuning.md), and what the correction adds on top of them moves them further
from the data. The term looks at G's outputs on the *generated* inputs (the fake pairs of
eq. 3) and penalises a spectrum unlike the data's, whatever the input, so G learns to take out
the excess as well as to add the missing detail. It compares batch statistics, not pairs, so
it needs no ground truth for generated inputs. The spectrum is the PSD metric's
(``cvg.metrics.psd.radial_power``), here over colour channels rather than grey.
"""

from __future__ import annotations

import torch

from cvg.metrics.psd import radial_power


def log_radial_power(video: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """log of the mean power per radial frequency bin of the frames of ``video`` (..., H, W),
    averaged over every leading axis (batch, channels, time)."""
    power = radial_power(video.float())
    return (power.reshape(-1, power.shape[-1]).mean(0) + eps).log()


def spectrum_loss(fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference of the log radial power spectra of ``fake`` and ``real``
    (B, C, T, H, W); gradients reach ``fake`` only."""
    return (log_radial_power(fake) - log_radial_power(real.detach())).abs().mean()
