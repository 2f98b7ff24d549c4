"""Figures with matplotlib (the Agg backend, no display): loss curves, the PSD figure of
appendix D, and frame strips of real clips beside samples. SVG or PNG by the file's suffix,
written atomically."""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from cvg.atomic import atomic_path  # noqa: E402


def save_figure(fig, path: str | os.PathLike) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=path.suffix.lstrip(".") or "svg", bbox_inches="tight", dpi=110)
    plt.close(fig)
    return path


def _label_panels(fig, axes, ylabel: str, title: str):
    """A row of panels: the y label on the first, the legend on the last, the title above."""
    axes[0][0].set_ylabel(ylabel)
    axes[0][-1].legend(fontsize=8)
    fig.suptitle(title)
    return fig


def psd_figure(table, path: str | os.PathLike) -> Path:
    """Appendix D's figure from ``cvg.metrics.psd.psd_table`` rows, saved to ``path``."""
    return save_figure(make_psd_figure(table), path)


def make_psd_figure(table):
    """One panel per frame index, log power against spatial frequency, each source a line with
    its subset std shaded."""
    table = pd.DataFrame(table)
    table = table[table["frequency"] > 0]  # the DC bin is removed by mean subtraction
    frames = sorted(table["frame"].unique())
    fig, axes = plt.subplots(1, len(frames), figsize=(3.4 * len(frames), 3), sharey=True, squeeze=False)
    for ax, frame in zip(axes[0], frames):
        for source, g in table[table["frame"] == frame].groupby("source", sort=False):
            ax.plot(g["frequency"], g["mean"], label=str(source))
            ax.fill_between(g["frequency"], (g["mean"] - g["std"]).clip(lower=1e-12), g["mean"] + g["std"], alpha=0.15)
        ax.set_yscale("log")
        ax.set_title(f"frame {int(frame) + 1}")
        ax.set_xlabel("spatial frequency (cycles/pixel)")
    return _label_panels(fig, axes, "power", "Power spectral density over time")


def loss_figure(losses, path: str | os.PathLike) -> Path:
    """The loss curves of every level (``make_loss_figure``), saved to ``path``."""
    return save_figure(make_loss_figure(losses), path)


def make_loss_figure(losses):
    """One panel per level: discriminator and generator hinge losses against the step."""
    losses = pd.DataFrame(losses)
    levels = sorted(losses["level"].unique())
    fig, axes = plt.subplots(1, len(levels), figsize=(3.4 * len(levels), 3), squeeze=False)
    for ax, level in zip(axes[0], levels):
        g = losses[losses["level"] == level]
        ax.plot(g["step"], g["loss_d"], label="D loss")
        ax.plot(g["step"], g["loss_g"], label="G loss")
        ax.set_title(f"level {int(level)}")
        ax.set_xlabel("generator step")
    return _label_panels(fig, axes, "hinge loss", "Training losses")


def frame_strip(rows: dict[str, np.ndarray], path: str | os.PathLike, frames: int = 6) -> Path:
    """A grid of frames: one row per clip (``{label: uint8 (T, H, W, 3)}``), ``frames`` evenly
    spaced frames each, the row's label on the left (real clips above, samples below)."""
    fig, axes = plt.subplots(len(rows), frames, figsize=(1.1 * frames, 1.1 * len(rows)), squeeze=False)
    for r, (label, clip) in enumerate(rows.items()):
        picks = np.linspace(0, len(clip) - 1, frames).round().astype(int)
        for c, t in enumerate(picks):
            ax = axes[r][c]
            ax.imshow(clip[t], interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(label, fontsize=7, rotation=0, ha="right", va="center")
            if r == 0:
                ax.set_title(f"t={t}", fontsize=7)
    fig.subplots_adjust(wspace=0.03, hspace=0.05)
    return save_figure(fig, path)
