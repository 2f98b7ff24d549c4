"""The embedded demo dataset: class-labelled procedural videos rendered to real H.264 MP4s.

Each class is a (shape, motion) pair, e.g. ``circle-orbit``: one or two objects of that
shape follow that motion over a background texture of drifting sinusoidal gratings. Motion
is what distinguishes classes with the same shape, so a model has to get time right, not
only appearance. Everything is a pure function of (seed, split, class, index), and the
files go through the same ffmpeg decode path as real datasets.
"""

from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from cvg.video_io import encode_video

SHAPES = ("circle", "square", "triangle")
MOTIONS = ("bounce", "orbit")
CLASSES = tuple(f"{shape}-{motion}" for shape in SHAPES for motion in MOTIONS)


@dataclass(frozen=True)
class DemoSpec:
    frames: int = 48
    width: int = 128
    height: int = 96
    fps: float = 25.0
    seed: int = 0
    crf: int = 20
    object_size: tuple[float, float] = (0.09, 0.14)  # radius range, fraction of the shorter side
    grating_frequency: tuple[float, float] = (0.08, 0.25)  # background gratings, radians per pixel
    # the second grating's range when given: fine texture that the pyramid's lower levels blur
    # away, so that the upsampling levels have detail to add that bilinear upsampling cannot
    detail_frequency: tuple[float, float] | None = None
    # when given: concentric rings of this period (pixels of the rendered frame) on every shape,
    # centred on it, so they move with it: detail finer than the lower levels resolve but
    # predictable from the shape's position, which an upsampling level can learn to draw
    ring_period: float | None = None
    # "gratings": the drifting textures above; "plain": one dark flat colour per video, so the
    # objects are the only thing that moves (fewer nuisance factors for a small generator)
    background: str = "gratings"
    objects: tuple[int, int] = (1, 2)  # [min, max] objects per video
    # each shape its own hue (circles red, squares green, triangles blue, in varying shades)
    # instead of any colour: classes a small generator can tell apart at level 1's 16x16
    class_colours: bool = False
    # motion, per rendered frame: bounce speed in pixels, orbit radius as a fraction of the
    # shorter side and orbit angular speed in radians ([min, max], drawn per video)
    bounce_speed: tuple[float, float] = (1.2, 2.4)
    orbit_radius: tuple[float, float] = (0.18, 0.3)
    orbit_speed: tuple[float, float] = (0.12, 0.22)

    def __post_init__(self) -> None:
        if self.background not in ("gratings", "plain"):
            raise ValueError(f"demo.background must be 'gratings' or 'plain', got {self.background!r}")
        lo, hi = self.objects
        if not 1 <= lo <= hi:
            raise ValueError(f"demo.objects must be [min, max] with 1 <= min <= max, got {[lo, hi]}")
        object.__setattr__(self, "objects", (int(lo), int(hi)))
        if self.ring_period is not None and not self.ring_period > 0:
            raise ValueError(f"demo.ring_period must be a positive number of pixels, got {self.ring_period}")
        # YAML gives lists; keep the spec hashable
        for name in ("object_size", "grating_frequency", "detail_frequency", "bounce_speed", "orbit_radius", "orbit_speed"):
            value = getattr(self, name)
            if value is None:
                continue
            lo, hi = value
            if not 0 < lo <= hi:
                raise ValueError(f"demo.{name} must be [min, max] with 0 < min <= max, got {[lo, hi]}")
            object.__setattr__(self, name, (float(lo), float(hi)))


def _rng(seed: int, split: str, label: int, index: int) -> np.random.Generator:
    split_code = int.from_bytes(split.encode()[:8].ljust(8, b"\0"), "little")
    return np.random.default_rng([seed, split_code, label, index])


def _background(rng: np.random.Generator, spec: DemoSpec, yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
    """Drifting gratings, (T, H, W, 3) float in [0, 1]: texture that moves as a whole."""
    t = np.arange(spec.frames, dtype=np.float32)[:, None, None]
    if spec.background == "plain":
        base = rng.uniform(0.02, 0.18, size=3).astype(np.float32)
        return np.broadcast_to(base, (spec.frames, spec.height, spec.width, 3)).copy()
    base = rng.uniform(0.15, 0.55, size=3).astype(np.float32)
    out = np.broadcast_to(base, (spec.frames, spec.height, spec.width, 3)).copy()
    velocity = rng.uniform(-0.6, 0.6, size=2)
    for frequency in (spec.grating_frequency, spec.detail_frequency or spec.grating_frequency):
        angle = rng.uniform(0, np.pi)
        freq = rng.uniform(*frequency)
        phase = rng.uniform(0, 2 * np.pi)
        kx, ky = freq * np.cos(angle), freq * np.sin(angle)
        drift = kx * velocity[0] + ky * velocity[1]
        wave = np.sin(kx * xx + ky * yy + phase - drift * t)  # (T, H, W)
        tint = rng.uniform(-0.12, 0.12, size=3).astype(np.float32)
        out += wave[..., None].astype(np.float32) * tint
    return out


def _trajectory(rng: np.random.Generator, motion: str, spec: DemoSpec, radius: float) -> np.ndarray:
    """(T, 2) object centres in pixels (x, y)."""
    t = np.arange(spec.frames, dtype=np.float64)
    w, h = spec.width, spec.height
    if motion == "bounce":
        speed = rng.uniform(*spec.bounce_speed)
        angle = rng.uniform(0, 2 * np.pi)
        start = rng.uniform([radius, radius], [w - radius, h - radius])
        raw = start[None] + t[:, None] * speed * np.array([np.cos(angle), np.sin(angle)])[None]
        lo, span = radius, np.array([w - 2 * radius, h - 2 * radius])
        folded = np.mod(raw - lo, 2 * span)  # reflect off the walls
        return lo + np.where(folded > span, 2 * span - folded, folded)
    if motion == "orbit":
        orbit = rng.uniform(*spec.orbit_radius) * min(w, h)
        centre = rng.uniform([radius + orbit, radius + orbit], [w - radius - orbit, h - radius - orbit])
        omega = rng.choice([-1, 1]) * rng.uniform(*spec.orbit_speed)
        phase = rng.uniform(0, 2 * np.pi)
        return centre[None] + orbit * np.stack([np.cos(omega * t + phase), np.sin(omega * t + phase)], 1)
    raise ValueError(f"unknown motion {motion!r}")


def _shape_mask(shape: str, xx: np.ndarray, yy: np.ndarray, cx: float, cy: float, r: float) -> np.ndarray:
    """Soft (anti-aliased) coverage in [0, 1] of a shape of size r centred at (cx, cy)."""
    dx, dy = xx - cx, yy - cy
    if shape == "circle":
        dist = np.sqrt(dx**2 + dy**2) - r
    elif shape == "square":
        dist = np.maximum(np.abs(dx), np.abs(dy)) - 0.85 * r
    elif shape == "triangle":  # upward equilateral triangle, signed distance to its three edges
        k = np.sqrt(3.0)
        dist = np.maximum.reduce([-(dy) - 0.5 * r, (k * dx + dy) / 2 - 0.5 * r, (-k * dx + dy) / 2 - 0.5 * r]) * 1.3
    else:
        raise ValueError(f"unknown shape {shape!r}")
    return np.clip(0.5 - dist, 0.0, 1.0)


def ring_shading(xx: np.ndarray, yy: np.ndarray, cx: float, cy: float, period: float) -> np.ndarray:
    """Brightness factor of concentric rings centred at (cx, cy): 0.3 at the centre and every
    ``period`` pixels out from it, 1.0 half-way between."""
    return 0.65 - 0.35 * np.cos(2 * np.pi * np.hypot(xx - cx, yy - cy) / period)


def render_clip(label: int, index: int, split: str = "train", spec: DemoSpec = DemoSpec()) -> np.ndarray:
    """One demo video, uint8 (T, H, W, 3); deterministic in (spec.seed, split, label, index)."""
    rng = _rng(spec.seed, split, label, index)
    shape, motion = CLASSES[label].split("-")
    yy, xx = np.mgrid[0 : spec.height, 0 : spec.width].astype(np.float32)
    video = _background(rng, spec, yy, xx)
    for _ in range(rng.integers(spec.objects[0], spec.objects[1] + 1)):
        radius = rng.uniform(*spec.object_size) * min(spec.width, spec.height)
        colour = rng.uniform(0.55, 1.0, size=3).astype(np.float32) * rng.permutation([1.0, 0.6, 0.2]).astype(np.float32)
        if spec.class_colours:
            colour = np.roll(np.array([1.0, rng.uniform(0.1, 0.5), rng.uniform(0.1, 0.3)], np.float32) * rng.uniform(0.8, 1.0),
                             SHAPES.index(shape))
        path = _trajectory(rng, motion, spec, radius)
        for t, (cx, cy) in enumerate(path):
            mask = _shape_mask(shape, xx, yy, cx, cy, radius)[..., None]
            paint = colour * ring_shading(xx, yy, cx, cy, spec.ring_period)[..., None] if spec.ring_period else colour
            video[t] = video[t] * (1 - mask) + paint * mask
    return (np.clip(video, 0, 1) * 255).round().astype(np.uint8)


def _render_one(job: tuple[str, str, int, int, DemoSpec]) -> str:
    out, split, label, index, spec = job
    encode_video(render_clip(label, index, split, spec), out, fps=spec.fps, crf=spec.crf)
    return out


def render_dataset(
    root: str | os.PathLike,
    videos_per_class: dict[str, int],
    spec: DemoSpec = DemoSpec(),
    workers: int = 2,
) -> list[Path]:
    """Write ROOT/<split>/<class>/<class>_<index>.mp4 for every split; skips files already there."""
    root = Path(root)
    jobs = []
    for split, count in videos_per_class.items():
        for label, name in enumerate(CLASSES):
            for index in range(count):
                out = root / split / name / f"{name}_{index:04d}.mp4"
                if not out.exists():
                    jobs.append((str(out), split, label, index, spec))
    if jobs:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            list(tqdm(pool.map(_render_one, jobs, chunksize=4), total=len(jobs), desc="render demo", unit="video"))
    return sorted(root.rglob("*.mp4"))
