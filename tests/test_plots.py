"""Figures (matplotlib): the PSD panels, loss curves and frame strips hold the data where it belongs."""

import numpy as np
import pandas as pd

from cvg.metrics.psd import psd_table
from cvg.plots import frame_strip, loss_figure, make_loss_figure, make_psd_figure, psd_figure


def test_psd_figure_panels_and_ordering(tmp_path):
    rng = np.random.default_rng(0)
    noisy = rng.integers(0, 256, (6, 3, 16, 16, 3), dtype=np.uint8)  # white noise: flat, high power
    smooth = np.repeat(np.repeat(noisy[:, :, ::4, ::4], 4, 2), 4, 3)  # blocky: little high-frequency power
    rows = pd.DataFrame(psd_table(noisy, [0, 2], "noise") + psd_table(smooth, [0, 2], "blocky"))
    fig = make_psd_figure(rows)
    axes = fig.axes
    assert [ax.get_title() for ax in axes] == ["frame 1", "frame 3"]
    noise, blocky = axes[0].lines  # sources in order
    assert [t.get_text() for t in axes[-1].get_legend().get_texts()] == ["noise", "blocky"]
    assert noise.get_ydata()[-1] > blocky.get_ydata()[-1]  # at the highest frequency the noise has more power
    assert list(noise.get_xdata()) == sorted(noise.get_xdata())
    path = psd_figure(rows, tmp_path / "psd.svg")
    assert path.read_text().lstrip().startswith("<?xml") and "frame 3" in path.read_text()


def test_loss_figure_one_panel_per_level(tmp_path):
    losses = pd.DataFrame({"step": [10, 20, 10, 20], "loss_d": [1.0, 0.5, 2.0, 1.5], "loss_g": [2.0, 3.0, 1.0, 0.5], "level": [1, 1, 2, 2]})
    fig = make_loss_figure(losses)
    assert [ax.get_title() for ax in fig.axes] == ["level 1", "level 2"]
    d1, g1 = fig.axes[0].lines
    assert list(d1.get_ydata()) == [1.0, 0.5] and list(g1.get_ydata()) == [2.0, 3.0]
    assert loss_figure(losses, tmp_path / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_frame_strip_shows_each_row_at_even_times(tmp_path):
    clip = np.zeros((12, 8, 8, 3), np.uint8)
    clip[:, :, :, 0] = np.arange(12)[:, None, None] * 20  # red grows with time
    path = frame_strip({"real": clip, "sample": clip[::-1]}, tmp_path / "strip.png", frames=4)
    from matplotlib.image import imread

    image = imread(path)
    assert image.shape[0] > 50 and image.shape[1] > 100
