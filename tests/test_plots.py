"""SVG figures: the PSD panels and loss curves are well-formed and place data where it belongs."""

import xml.etree.ElementTree as ET

import numpy as np
import pandas as pd

from cvg.metrics.psd import psd_table
from cvg.plots import loss_figure, psd_figure

SVG = "{http://www.w3.org/2000/svg}"


def polylines(path):
    root = ET.parse(path).getroot()
    lines = [[tuple(map(float, p.split(","))) for p in el.get("points").split()] for el in root.iter(SVG + "polyline")]
    texts = [el.text for el in root.iter(SVG + "text")]
    return lines, texts


def test_psd_figure_panels_and_ordering(tmp_path):
    rng = np.random.default_rng(0)
    noisy = rng.integers(0, 256, (6, 3, 16, 16, 3), dtype=np.uint8)  # white noise: flat, high power
    smooth = np.repeat(np.repeat(noisy[:, :, ::4, ::4], 4, 2), 4, 3)  # blocky: little high-frequency power
    rows = psd_table(noisy, [0, 2], "noise") + psd_table(smooth, [0, 2], "blocky")
    lines, texts = polylines(psd_figure(pd.DataFrame(rows), tmp_path / "psd.svg"))
    assert len(lines) == 4 and {"frame 1", "frame 3", "noise", "blocky"} <= set(texts)
    noise, blocky = lines[0], lines[1]  # first panel: sources in order
    # at the highest frequency the noise has more power: drawn higher (smaller pixel y)
    assert noise[-1][1] < blocky[-1][1]
    assert [x for x, _ in noise] == sorted(x for x, _ in noise)


def test_loss_figure_one_panel_per_level(tmp_path):
    losses = pd.DataFrame({"step": [10, 20, 10, 20], "loss_d": [1.0, 0.5, 2.0, 1.5], "loss_g": [2.0, 3.0, 1.0, 0.5], "level": [1, 1, 2, 2]})
    lines, texts = polylines(loss_figure(losses, tmp_path / "loss.svg"))
    assert len(lines) == 4 and {"level 1", "level 2", "D loss", "G loss"} <= set(texts)
    d1 = lines[0]
    assert d1[0][1] < d1[1][1]  # D loss falls from 1.0 to 0.5: the second point is lower on the page
