"""Line plots as standalone SVG (small multiples), for the PSD figure and the loss curves.

Plain SVG text keeps plotting free of a graphics stack: the design card's packages have
none, Snakemake reports embed SVG as is, and a browser opens it directly.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from html import escape
from pathlib import Path

from cvg.atomic import write_text

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf")


@dataclass
class Series:
    label: str
    x: list[float]
    y: list[float]
    band: list[float] | None = None  # +- half-width around y (e.g. a std), drawn shaded


@dataclass
class Panel:
    title: str
    series: list[Series] = field(default_factory=list)


def _ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """Round tick values covering [lo, hi]."""
    if hi <= lo:
        return [lo]
    raw = (hi - lo) / n
    step = 10 ** math.floor(math.log10(raw))
    step *= next(m for m in (1, 2, 5, 10) if raw <= m * step)
    first = math.ceil(lo / step) * step
    return [first + i * step for i in range(int((hi - first) / step + 1e-9) + 1)]


def _scale(lo: float, hi: float, start: float, span: float):
    """Data value -> pixel: [lo, hi] onto [start, start + span]."""
    return lambda v: start + (v - lo) / (hi - lo) * span


def _fmt(v: float) -> str:
    return f"{v:.3g}"


def line_plot_svg(panels: list[Panel], path: str | os.PathLike, xlabel: str, ylabel: str, log_y: bool = False,
                  title: str = "", panel_size: tuple[int, int] = (300, 220)) -> Path:
    """Panels side by side sharing the legend (labels coloured in order of first appearance).

    ``log_y`` plots log10(y) (non-positive values are dropped). Written atomically.
    """
    labels = list(dict.fromkeys(s.label for p in panels for s in p.series))
    colour = {label: PALETTE[i % len(PALETTE)] for i, label in enumerate(labels)}
    pw, ph = panel_size
    ml, mr, mt, mb = 62, 12, 28, 42
    top = 28 if title else 4
    width = len(panels) * (ml + pw + mr)
    height = top + mt + ph + mb + 18 * len(labels) + 8
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="11">',
           '<rect width="100%" height="100%" fill="white"/>']
    if title:
        out.append(f'<text x="{width / 2}" y="18" text-anchor="middle" font-size="14">{escape(title)}</text>')

    def transform(y: float) -> float | None:
        if not log_y:
            return y
        return math.log10(y) if y > 0 else None

    for k, panel in enumerate(panels):
        x0, y0 = k * (ml + pw + mr) + ml, top + mt
        points = [(x, transform(y)) for s in panel.series for x, y in zip(s.x, s.y)]
        points = [(x, y) for x, y in points if y is not None and math.isfinite(y) and math.isfinite(x)]
        if not points:
            continue
        xs, ys = [p[0] for p in points], [p[1] for p in points]
        xlo, xhi = min(xs), max(xs)
        ylo, yhi = min(ys), max(ys)
        xhi, yhi = (xhi if xhi > xlo else xlo + 1), (yhi if yhi > ylo else ylo + 1)
        sx, sy = _scale(xlo, xhi, x0, pw), _scale(ylo, yhi, y0 + ph, -ph)
        out.append(f'<text x="{x0 + pw / 2}" y="{y0 - 8}" text-anchor="middle" font-size="12">{escape(panel.title)}</text>')
        out.append(f'<rect x="{x0}" y="{y0}" width="{pw}" height="{ph}" fill="none" stroke="#444"/>')
        for t in _ticks(xlo, xhi):
            out.append(f'<line x1="{sx(t):.1f}" y1="{y0 + ph}" x2="{sx(t):.1f}" y2="{y0 + ph + 4}" stroke="#444"/>')
            out.append(f'<text x="{sx(t):.1f}" y="{y0 + ph + 16}" text-anchor="middle">{_fmt(t)}</text>')
        for t in _ticks(ylo, yhi):
            text = f"1e{_fmt(t)}" if log_y else _fmt(t)
            out.append(f'<line x1="{x0 - 4}" y1="{sy(t):.1f}" x2="{x0 + pw}" y2="{sy(t):.1f}" stroke="#ddd"/>')
            out.append(f'<text x="{x0 - 6}" y="{sy(t) + 4:.1f}" text-anchor="end">{text}</text>')
        out.append(f'<text x="{x0 + pw / 2}" y="{y0 + ph + 32}" text-anchor="middle">{escape(xlabel)}</text>')
        if k == 0:
            out.append(f'<text transform="translate({x0 - 48},{y0 + ph / 2}) rotate(-90)" text-anchor="middle">{escape(ylabel)}</text>')
        for s in panel.series:
            if s.band is not None:
                upper = [(x, transform(y + b)) for x, y, b in zip(s.x, s.y, s.band)]
                lower = [(x, transform(y - b)) for x, y, b in zip(s.x, s.y, s.band)]
                lower = [(x, y if y is not None else ylo) for x, y in lower]
                ring = [(x, y) for x, y in upper if y is not None] + lower[::-1]
                ring = [(x, min(max(y, ylo), yhi)) for x, y in ring]
                pts = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in ring)
                out.append(f'<polygon points="{pts}" fill="{colour[s.label]}" fill-opacity="0.15" stroke="none"/>')
            line = [(x, transform(y)) for x, y in zip(s.x, s.y)]
            pts = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in line if y is not None and math.isfinite(y))
            out.append(f'<polyline points="{pts}" fill="none" stroke="{colour[s.label]}" stroke-width="1.5"/>')
    for i, label in enumerate(labels):
        y = top + mt + ph + mb + 18 * i + 6
        out.append(f'<line x1="{ml}" y1="{y}" x2="{ml + 24}" y2="{y}" stroke="{colour[label]}" stroke-width="3"/>')
        out.append(f'<text x="{ml + 30}" y="{y + 4}">{escape(label)}</text>')
    out.append("</svg>")
    return write_text(path, "\n".join(out) + "\n")


def psd_figure(table, path: str | os.PathLike) -> Path:
    """Appendix D's figure from ``cvg.metrics.psd.psd_table`` rows: one panel per frame index,
    log power against spatial frequency, each source a line with its subset std shaded."""
    import pandas as pd

    table = pd.DataFrame(table)
    table = table[table["frequency"] > 0]  # the DC bin is removed by mean subtraction
    panels = []
    for frame, rows in table.groupby("frame", sort=True):
        series = [Series(str(src), g["frequency"].tolist(), g["mean"].tolist(), g["std"].tolist())
                  for src, g in rows.groupby("source", sort=False)]
        panels.append(Panel(f"frame {int(frame) + 1}", series))
    return line_plot_svg(panels, path, "spatial frequency (cycles/pixel)", "power", log_y=True,
                         title="Power spectral density over time")


def loss_figure(losses, path: str | os.PathLike) -> Path:
    """One panel per level: discriminator and generator hinge losses against the step."""
    import pandas as pd

    losses = pd.DataFrame(losses)
    panels = [Panel(f"level {int(level)}", [Series("D loss", g["step"].tolist(), g["loss_d"].tolist()),
                                            Series("G loss", g["step"].tolist(), g["loss_g"].tolist())])
              for level, g in losses.groupby("level", sort=True)]
    return line_plot_svg(panels, path, "generator step", "hinge loss", title="Training losses")
