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

Two forms (``train.spectrum_form``): ``batch`` matches the batch's mean spectrum to the real
batch's, so it moves every output the same way, taking detail out of the outputs that lack it
as well as out of those that carry too much; ``excess`` looks at each generated clip alone and
pays only the log power above the most any real clip of the batch has in that frequency bin, so
it takes out a lower level's clutter where there is some and leaves the other outputs free.
On level 1, which has no lower level, the excess form charges its own samples' clutter (the
demo uses it there at weight 0.25: the batch form froze level 1's samples, docs/demo_tuning.md).
"""

from __future__ import annotations

import torch

from cvg.metrics.psd import radial_power


def log_radial_power(video: torch.Tensor, eps: float = 1e-8, per_clip: bool = False) -> torch.Tensor:
    """log of the mean power per radial frequency bin of the frames of ``video`` (B, ..., H, W),
    averaged over every leading axis (batch, channels, time): shape (bins,); with ``per_clip``
    over every axis but the batch: shape (B, bins)."""
    power = radial_power(video.float())
    rows = power.shape[0] if per_clip else 1
    mean = power.reshape(rows, -1, power.shape[-1]).mean(1)
    return (mean if per_clip else mean[0]).add(eps).log()


SPECTRUM_FORMS = ("batch", "excess")


def spectrum_loss(fake: torch.Tensor, real: torch.Tensor, form: str = "batch") -> torch.Tensor:
    """(B, C, T, H, W) ``fake`` against ``real``; gradients reach ``fake`` only. ``batch``: mean
    absolute difference of the two batches' log radial power spectra; ``excess``: mean over
    clips and bins of each fake clip's log power above the real batch's per-bin maximum."""
    if form == "batch":
        return (log_radial_power(fake) - log_radial_power(real.detach())).abs().mean()
    if form == "excess":
        ceiling = log_radial_power(real.detach(), per_clip=True).amax(0, keepdim=True)
        return torch.relu(log_radial_power(fake, per_clip=True) - ceiling).mean()
    raise ValueError(f"spectrum form must be one of {', '.join(SPECTRUM_FORMS)}, got {form!r}")
