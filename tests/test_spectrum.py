"""The spectral term of G's loss (cvg.train.spectrum) and its place in a level's G update."""

import math

import numpy as np
import pytest
import torch

from cvg.metrics.psd import radial_psd
from cvg.train.level import Level
from cvg.train.spectrum import log_radial_power, spectrum_loss
from tests.test_train import level2_batch, make_config, tiny_data  # noqa: F401  (fixture)


def grating(k: int, size: int = 32, frames: int = 4) -> torch.Tensor:
    """(1, 3, T, H, W) vertical stripes of k cycles per frame width."""
    x = torch.cos(2 * math.pi * k * torch.arange(size) / size)
    return x.expand(1, 3, frames, size, size).clone()


def test_log_radial_power_puts_a_grating_in_its_frequency_bin_and_agrees_with_the_metric():
    for k in (2, 5, 11):
        assert int(log_radial_power(grating(k)).argmax()) == k
    noise = torch.randn(64, 3, 4, 32, 32, generator=torch.Generator().manual_seed(0))
    flat = log_radial_power(noise)[1:]  # white noise: the same power in every bin (bin 0 is the removed mean)
    assert flat.max() - flat.min() < 0.25
    # same binning as the PSD metric: the numpy radial_psd of the grey frames, in log scale
    grey = noise.mean(1, keepdim=True)  # (B, 1, T, H, W)
    metric = radial_psd(grey[:, 0].reshape(-1, 32, 32, 1).expand(-1, -1, -1, 3).numpy()).mean(0)
    np.testing.assert_allclose(log_radial_power(grey).exp().numpy(), metric, rtol=1e-4, atol=1e-7)


def test_spectrum_loss_is_zero_on_equal_spectra_and_reaches_only_the_fakes():
    gen = torch.Generator().manual_seed(1)
    real = torch.rand(4, 3, 4, 16, 16, generator=gen) * 2 - 1
    assert spectrum_loss(real, real).item() == 0.0
    assert spectrum_loss(real, real.flip(-1)).item() < 1e-5  # a spectrum ignores where things are
    fake = (torch.rand(4, 3, 4, 16, 16, generator=gen) * 2 - 1).requires_grad_()
    blurred = torch.nn.functional.avg_pool3d(fake, (1, 3, 3), 1, (0, 1, 1))  # less high-frequency power
    loss = spectrum_loss(blurred, real.requires_grad_())
    loss.backward()
    assert loss.item() > 0.5 and fake.grad.abs().sum() > 0 and real.grad is None


def test_excess_form_pays_only_for_clips_with_more_power_than_any_real_clip():
    gen = torch.Generator().manual_seed(2)
    real = torch.nn.functional.avg_pool3d(torch.rand(4, 3, 4, 16, 16, generator=gen) * 2 - 1, (1, 3, 3), 1, (0, 1, 1))
    assert spectrum_loss(real, real, "excess").item() == 0.0
    smoother = torch.nn.functional.avg_pool3d(real, (1, 3, 3), 1, (0, 1, 1))  # less power than the data: free
    assert spectrum_loss(smoother, real, "excess").item() == 0.0 < spectrum_loss(smoother, real, "batch").item()
    # one clean clip and one with clutter on top: the gradient reaches the cluttered clip alone,
    # where the batch form would move both
    fake = torch.cat([real[:1], real[1:2] + 0.5 * torch.randn(1, 3, 4, 16, 16, generator=gen)]).requires_grad_()
    loss = spectrum_loss(fake, real, "excess")
    loss.backward()
    assert loss.item() > 0.1 and fake.grad[0].abs().sum() == 0 and fake.grad[1].abs().sum() > 0
    batch_grad = torch.autograd.grad(spectrum_loss(fake, real, "batch"), fake)[0]
    assert batch_grad[0].abs().sum() > 0
    with pytest.raises(ValueError, match="spectrum form"):
        spectrum_loss(fake, real, "mean")


def test_spectral_term_is_added_to_the_generator_loss_and_matches_the_spectra(tiny_data):  # noqa: F811
    root, raw = tiny_data
    batch = level2_batch(raw, root)
    real, cond, label = batch["video"], batch["cond"], batch["label"]

    def level_with(spectrum):
        torch.manual_seed(0)
        level = Level(make_config(raw, spectrum=spectrum, lr_g=1e-3), 2, 6)
        with torch.no_grad():  # per-frame statistics, then eval mode: one forward is reproducible
            level.G(torch.zeros(4, level.preset.z_dim), label, cond)
        level.G.eval(), level.D.eval()
        return level

    probe = level_with(0.0)
    draws = probe.draws(0, 0, 4, slice(0, 4), probe.spec.window_out, 1)
    plain, spectral = level_with(0.0), level_with(3.0)
    plain.opt_g.step = spectral.opt_g.step = lambda: None
    with torch.no_grad():
        expected = 3.0 * spectrum_loss(plain.G(draws.z, label, cond), real)
    difference = spectral.update_G(cond, label, draws, real, cond) - plain.update_G(cond, label, draws, real, cond)
    torch.testing.assert_close(difference, expected, rtol=1e-5, atol=1e-6)
    assert expected > 0
    assert plain.update_G(cond, label, draws, real, cond) == plain.update_G(cond, label, draws)  # off: real unused

    # a dominant weight: a few G steps bring the fakes' spectrum towards the real batch's,
    # which the same steps without the term do not
    def distance_after(spectrum, steps=12):
        level = level_with(spectrum)
        level.G.train()
        for step in range(steps):
            level.update_G(cond, label, level.draws(step, 0, 4, slice(0, 4), level.spec.window_out, 1), real, cond)
        with torch.no_grad():
            return spectrum_loss(level.G(draws.z, label, cond), real).item()

    start = distance_after(0.0, steps=0)
    spectral_end, plain_end = distance_after(1e3), distance_after(0.0)
    assert spectral_end < 0.8 * start and spectral_end < 0.8 * plain_end
