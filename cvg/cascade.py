"""Frozen-cascade sampling: level 1 from noise, then every upsampling level applied
convolutionally over the *whole* previous-level output (e.g. trained on 6 -> 12 windows,
applied 24 -> 48), in chunks with a halo so that memory does not grow with the length and
the result equals one full-length application.

BatchNorm at sampling time (``bn``): ``stationary`` uses each level's running statistics
averaged over time (a time-invariant generator); ``recompute`` re-estimates per-timestep
statistics at the sampled length with ``bn_passes`` dummy forward passes (appendix A: 200),
and chunks read the statistics of their absolute timesteps.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn as nn

from cvg.config import Config
from cvg.errors import InputError
from cvg.fingerprint import Fingerprints
from cvg.models.generators import UpsamplingGenerator
from cvg.models.layers import recompute_frame_stats, set_norm_eval_stats, set_time_offset
from cvg.pyramid import crop_windows, quantize, to_uint8, window_starts


def temporal_halo(g: UpsamplingGenerator) -> int:
    """Conditioning frames of context needed on each side of a chunk: every unit's temporal
    conv (kernel 3) reaches one output frame further; outputs come temporal_factor per input."""
    temporal_convs = sum(b.temporal_convs for b in g.blocks)
    return math.ceil(temporal_convs / g.temporal_factor) + 1


@torch.no_grad()
def unroll(g: UpsamplingGenerator, cond: torch.Tensor, z: torch.Tensor, label, chunk: int | None = None, transform=None) -> torch.Tensor:
    """g over the whole conditioning video, ``chunk`` conditioning frames at a time (None: at
    once). ``transform`` is applied to each output chunk as it is made (e.g. to uint8, so a
    long top-level video is never held in float)."""
    t_in, k = cond.shape[2], g.temporal_factor
    transform = transform or (lambda x: x)
    if chunk is None or chunk >= t_in:
        set_time_offset(g, 0)
        return transform(g(z, label, cond))
    halo = temporal_halo(g)
    result = None  # allocated at the first chunk and filled in place: no second copy at the end
    for start in range(0, t_in, chunk):
        stop = min(start + chunk, t_in)
        lo, hi = max(0, start - halo), min(t_in, stop + halo)
        set_time_offset(g, lo * k)
        piece = transform(g(z, label, cond[:, :, lo:hi])[:, :, (start - lo) * k : (stop - lo) * k])
        if result is None:
            result = piece.new_empty((*piece.shape[:2], t_in * k, *piece.shape[3:]))
        result[:, :, start * k : stop * k] = piece
    set_time_offset(g, 0)
    return result


def n_classes_of(g: nn.Module) -> int:
    """Classes a generator is conditioned on (0: unconditional)."""
    return g.stem.embed.num_embeddings if g.stem.embed is not None else 0


def is_inert_refiner(g: nn.Module) -> bool:
    """An untrained ``refine`` level (gate exactly 0) outputs the naive upsampling of its input
    whatever its BN statistics, so recomputing them from the lower levels' samples (most of the
    untrained baseline's sampling time) cannot change its output."""
    gain = getattr(g, "refine_gain", None)
    return gain is not None and not bool(gain.detach().any())


class CascadeSampler:
    def __init__(self, config: Config, generators: list[nn.Module], device="cpu", fingerprints: Fingerprints | None = None):
        self.config, self.device = config, torch.device(device)
        self.fingerprints = fingerprints  # the stamps of what it writes and reads (the sampling stage's)
        self.generators = [g.to(device).eval().requires_grad_(False) for g in generators]  # frozen: never trained here
        self.n_classes = n_classes_of(generators[0])

    def lengths(self, level1_frames: int) -> list[int]:
        out = [level1_frames]
        for lv in self.config.levels[1 : len(self.generators)]:
            out.append(out[-1] * lv.temporal_factor)
        return out

    def prepare_norms(self, mode: str, passes: int, level1_frames: int, batch: int, seed: int = 0,
                      given: list[dict] | tuple = ()) -> list[dict]:
        """Set every level's BN statistics for sampling at ``level1_frames`` (see module doc);
        return one ``norm_record`` per level (what ``cvg norms`` writes).

        ``recompute`` prepares the levels in order, and feeds each upsampling level's dummy
        passes with the already prepared lower levels' samples: its statistics depend on the
        conditioning video (added before its norms), so they must come from the inputs it
        will actually receive, not from arbitrary ones. ``given`` records (from earlier
        ``prepare_norms`` calls with the same settings) set the first levels without a pass;
        the noise then continues where they left it, so the result is the same bit for bit.
        """
        settings = {"mode": mode, "passes": passes, "level1_frames": level1_frames, "batch": batch, "seed": seed}
        gen = torch.Generator().manual_seed(seed)
        lengths = self.lengths(level1_frames)
        if len(given) > len(self.generators):
            raise InputError(f"{len(given)} levels of BN statistics given for a cascade of {len(self.generators)} levels")
        records = []
        for i, g in enumerate(self.generators):
            trained = self.config.level(i + 1).window_out
            if mode == "stationary":
                set_norm_eval_stats(g, "per_frame" if (i == 0 and lengths[0] == trained) else "stationary")
                records.append(norm_record(g, i + 1, settings, gen))
                continue
            set_norm_eval_stats(g, "per_frame")
            if i < len(given):
                load_norm_record(g, given[i], i + 1, settings)
                gen.set_state(given[i]["rng"])
                records.append(given[i])
                continue
            inert = is_inert_refiner(g)

            def dummy(i=i, g=g, inert=inert):
                z = torch.randn(batch, g.z_dim, generator=gen).to(self.device)
                label = self._labels(batch, gen)
                if i == 0:
                    return g(z, label, frames=lengths[0])
                if inert:  # its statistics only need to exist (and be finite): any input of the right shape
                    res = self.config.level(i).resolution
                    return g(z, label, torch.zeros(batch, 3, lengths[i - 1], res, res, device=self.device))
                lower, _ = self.sample(batch, level1_frames=lengths[0], labels=label, levels=i, generator=gen)
                return g(z, label, lower[-1])

            recompute_frame_stats(g, dummy, 1 if inert else passes)
            g.eval()
            records.append(norm_record(g, i + 1, settings, gen))
        return records

    def prepare_window_norms(self, passes: int, batch: int, seed: int = 0) -> None:
        """BN statistics for the training setup (``sample_windows``): each level's per-timestep
        statistics recomputed with ``passes`` dummy passes at its training length, level 1 from
        noise and each upsampling level on windows of the already prepared levels' outputs."""
        gen = torch.Generator().manual_seed(seed)
        for i, g in enumerate(self.generators):
            set_norm_eval_stats(g, "per_frame")

            def dummy(i=i, g=g):
                videos, label = self.sample_windows(batch, levels=i, generator=gen)
                z = torch.randn(batch, g.z_dim, generator=gen).to(self.device)
                if i == 0:
                    return g(z, label, frames=self.config.level(1).frames)
                return g(z, label, self._window(videos[-1], i + 1, gen))

            recompute_frame_stats(g, dummy, 1 if is_inert_refiner(g) else passes)
            g.eval()

    def _window(self, video: torch.Tensor, level: int, gen: torch.Generator) -> torch.Tensor:
        """Random windows of level ``level``'s training length from the level below's ``video``."""
        window = self.config.level(level).window
        starts = window_starts(video.shape[0], video.shape[2], window, gen)
        return crop_windows(video, starts, window)

    @torch.no_grad()
    def sample_windows(self, n: int, sigma: float = 1.0, seed: int = 0, levels: int | None = None,
                       generator: torch.Generator | None = None) -> tuple[list[torch.Tensor], torch.Tensor | None]:
        """The training setup, as the paper scores its training-length rows: level 1 at its
        training length, and each upsampling level applied to a random window of ``window``
        frames of the level below's output (eq. 3's x̂^{l-1}), giving ``window_out`` frames
        (Table 1's 12 frames: 6 of level 1's 24 -> 12 at 128x128). Every level's output."""
        gen = generator or torch.Generator().manual_seed(seed)
        label = self._labels(n, gen)
        generators = self.generators[: len(self.generators) if levels is None else levels]
        zs = [sigma * torch.randn(n, g.z_dim, generator=gen).to(self.device) for g in generators]
        videos = [generators[0](zs[0], label, frames=self.config.level(1).frames)] if generators else []
        for i, (g, z) in enumerate(zip(generators[1:], zs[1:]), start=2):
            videos.append(g(z, label, self._window(videos[-1], i, gen)))
        return videos, label

    def _labels(self, n: int, gen: torch.Generator):
        return torch.randint(0, self.n_classes, (n,), generator=gen).to(self.device) if self.n_classes else None

    @torch.no_grad()
    def sample(self, n: int, sigma: float = 1.0, level1_frames: int | None = None, chunk: int | None = None,
               seed: int = 0, labels: torch.Tensor | None = None, uint8_top: bool = False, levels: int | None = None,
               generator: torch.Generator | None = None) -> tuple[list[torch.Tensor], torch.Tensor | None]:
        """Videos of every level (or of the first ``levels``), (n, 3, T_l, H_l, W_l) in [-1, 1], and
        their labels; with ``uint8_top`` the last level comes as uint8 (same layout), quantised
        chunk by chunk. Noise comes from ``generator`` when given, else from ``seed``."""
        gen = generator or torch.Generator().manual_seed(seed)
        generators = self.generators[: levels or len(self.generators)]
        frames = level1_frames or self.config.level(1).frames
        label = labels.to(self.device) if labels is not None else self._labels(n, gen)
        zs = [sigma * torch.randn(n, g.z_dim, generator=gen) for g in generators]  # from_noise moves them
        return self.from_noise(zs, label, frames, chunk, uint8_top), label

    @torch.no_grad()
    def from_noise(self, zs: list[torch.Tensor], label: torch.Tensor | None, level1_frames: int | None = None,
                   chunk: int | None = None, uint8_top: bool = False) -> list[torch.Tensor]:
        """Levels 1..len(zs) from given per-level noise: ``sample`` draws its own; the training
        loop draws a global batch's noise and passes its rank's slice (eq. 3's x̂^{l-1})."""
        videos = [self.generators[0](zs[0].to(self.device), label, frames=level1_frames or self.config.level(1).frames)]
        return self._upsample(videos, [z.to(self.device) for z in zs[1:]], label, chunk, quantize if uint8_top else None)

    @torch.no_grad()
    def upsample(self, level1: torch.Tensor, labels: torch.Tensor | None = None, sigma: float = 1.0, chunk: int | None = None,
                 seed: int = 0) -> list[torch.Tensor]:
        """Every level from *given* level-1 videos (n, 3, T, H, W) in [-1, 1]: fed real held-out
        clips, the upsampling levels are scored apart from level 1's quality (the ``*_on_real``
        rows of the metrics table)."""
        gen = torch.Generator().manual_seed(seed)
        zs = [sigma * torch.randn(len(level1), g.z_dim, generator=gen).to(self.device) for g in self.generators[1:]]
        label = labels.to(self.device) if labels is not None else None
        return self._upsample([level1.to(self.device)], zs, label, chunk)

    def _upsample(self, videos: list[torch.Tensor], zs: list[torch.Tensor], label, chunk: int | None, top_transform=None) -> list[torch.Tensor]:
        for i, (g, z) in enumerate(zip(self.generators[1:], zs), start=1):
            videos.append(unroll(g, videos[-1], z, label, chunk, top_transform if i == len(zs) else None))
        return videos


def norm_record(g: nn.Module, level: int, settings: dict, gen: torch.Generator) -> dict:
    """A level's prepared state for sampling: every buffer (the FrameNorms' per-timestep
    statistics, and the spectral norms' power-iteration vectors, which the statistics passes run
    in training mode also advance), the settings it was prepared with, and the noise generator's
    state after it: what the cascade's later levels need to continue the preparation exactly."""
    buffers = {name: b.detach().cpu().clone() for name, b in g.named_buffers()}
    return {"level": level, "settings": dict(settings), "buffers": buffers, "rng": gen.get_state()}


def load_norm_record(g: nn.Module, record: dict, level: int, settings: dict) -> None:
    """Set ``g``'s buffers from ``norm_record`` output, after checking that they are this
    level's and were prepared as ``settings`` asks (else a stale file would be used)."""
    if int(record["level"]) != level:
        raise InputError(f"the BN statistics are level {record['level']}'s, expected level {level}'s")
    if dict(record["settings"]) != settings:
        raise InputError(f"the BN statistics were prepared with {dict(record['settings'])}, the config asks {settings}: "
                         "prepare them again (cvg norms)")
    buffers, expected = record["buffers"], dict(g.named_buffers())
    if set(buffers) != set(expected):
        raise InputError(f"the BN statistics do not match level {level}'s generator: missing {sorted(set(expected) - set(buffers))[:3]}, "
                         f"unexpected {sorted(set(buffers) - set(expected))[:3]}")
    for name, value in buffers.items():
        owner, _, attr = name.rpartition(".")
        setattr(g.get_submodule(owner), attr, value.to(expected[name].device))  # FrameNorm statistics change length


def to_uint8_frames(video: torch.Tensor):
    return to_uint8(video.cpu()).numpy()


def level_grid(videos: list[torch.Tensor]):
    """Fig. 15 layout as frames: each sample a column, its levels stacked top (level 1) to
    bottom (level L), lower levels nearest-resized and frames repeated to the top level's size."""
    top = videos[-1]
    t, size = top.shape[2], top.shape[-1]
    columns = []
    for i in range(top.shape[0]):
        rows = []
        for v in videos:
            clip = to_uint8_frames(v[i : i + 1])[0]  # (T_l, h, w, 3)
            s = size // clip.shape[1]
            clip = clip.repeat(s, 1).repeat(s, 2).repeat(t // clip.shape[0], 0)
            rows.append(clip)
        columns.append(np.concatenate(rows, 1))
    return np.concatenate(columns, 2)  # (T, L*H, n*W, 3)
