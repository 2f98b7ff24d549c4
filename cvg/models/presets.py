"""Model presets named after the paper's models, and builders of a level's networks.

Channel widths are appendix B's. Where the appendix is silent (BDD100K and UCF101 level 1)
we use the Kinetics level-1 widths with one more unit to reach 64x64; the level-1
discriminator multipliers, printed as [16, 16, 8, 4, 2] from the output side, are applied
input-first as [2, 4, 8, 16, 16]. ``width`` scales every channel count (reduced-width runs
on CPU); ``tiny`` and ``demo`` are for tests and the demo.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
import torch.nn as nn

from cvg.config import LevelSpec
from cvg.errors import InputError
from cvg.models.discriminators import MatchingDiscriminator, SpatialDiscriminator, TemporalDiscriminator
from cvg.models.generators import Level1Generator, UpsamplingGenerator


@dataclass(frozen=True)
class NetSpec:
    g_ch: int
    g_mults: tuple[int, ...]
    d_ch: int
    d_mults: tuple[int, ...]
    # the temporal discriminator's input is the video spatially downsampled by this factor (the
    # paper: 2, at 32x32 and more); the demo's 16x16 level 1 keeps its full size, where 8x8 would
    # leave its objects 2-3 pixels wide and their motion a fraction of a pixel per frame
    temporal_downsample: int = 2


@dataclass(frozen=True)
class ModelPreset:
    name: str
    description: str
    levels: tuple[LevelSpec, ...]  # reference geometry (the paper's), used by `cvg model summary`
    nets: tuple[NetSpec, ...]  # one per level
    z_dim: int = 128
    emb_dim: int = 128
    k_frames: int = 8
    n_classes: int = 0

    def scaled(self, width: float) -> "ModelPreset":
        def s(c: int) -> int:
            return max(1, round(c * width))

        return replace(self, nets=tuple(replace(n, g_ch=s(n.g_ch), d_ch=s(n.d_ch)) for n in self.nets))


def _levels(*specs) -> tuple[LevelSpec, ...]:
    out = []
    for i, (frames, res, tf, sf, window) in enumerate(specs):
        out.append(LevelSpec(index=i + 1, frames=frames, resolution=res, stride=1, temporal_factor=tf, spatial_factor=sf, window=window))
    return tuple(out)


K_L1 = NetSpec(128, (8, 8, 4, 2), 128, (2, 4, 8, 16, 16))
L1_64 = NetSpec(128, (8, 8, 4, 2, 1), 128, (2, 4, 8, 16, 16))
UP_D = (96, (1, 2, 4, 8, 16, 16))

KINETICS128 = ModelPreset(
    "kinetics128",
    "Kinetics-600 2-level 48/128x128: 24/32x32 level 1, 6/32x32 -> 12/128x128 windows (Table 1)",
    _levels((24, 32, 1, 1, None), (48, 128, 2, 4, 6)),
    (K_L1, NetSpec(128, (8, 8, 4, 2, 1), *UP_D)),
    n_classes=600,
)

PRESETS: dict[str, ModelPreset] = {
    p.name: p
    for p in [
        KINETICS128,
        replace(
            KINETICS128,
            name="kinetics128_w3",
            description="Kinetics-600 2-level with 3-frame windows (Tables 3, 4)",
            levels=_levels((24, 32, 1, 1, None), (48, 128, 2, 4, 3)),
        ),
        ModelPreset(
            "bdd128",
            "BDD100K 128x128: 12/64x64 level 1, 6/64x64 -> 12/128x128 windows",
            _levels((12, 64, 1, 1, None), (24, 128, 2, 2, 6)),
            (L1_64, NetSpec(96, (8, 8, 4, 2, 1), *UP_D)),
        ),
        ModelPreset(
            "bdd256",
            "BDD100K 3-level 48/256x256: 12/64 -> 24/128 (6->12 windows) -> 48/256 (6->12 windows) (Table 5)",
            _levels((12, 64, 1, 1, None), (24, 128, 2, 2, 6), (48, 256, 2, 2, 6)),
            (L1_64, NetSpec(96, (8, 8, 4, 2, 1), *UP_D), NetSpec(96, (8, 4, 4, 4, 2, 1), 96, (1, 2, 4, 8, 8, 16, 16))),
        ),
        ModelPreset(
            "ucf101",
            "UCF101 2-level 16/128x128: 8/64x64 level 1, whole 8-frame clips -> 16/128x128 (Table 2)",
            _levels((8, 64, 1, 1, None), (16, 128, 2, 2, 8)),
            (L1_64, NetSpec(128, (8, 8, 4, 2, 1), *UP_D)),
            n_classes=101,
        ),
        ModelPreset(
            "demo",
            "The demo's 3-level 8/16 -> 16/32 -> 32/64 cascade, CPU-trainable in minutes",
            _levels((8, 16, 1, 1, None), (16, 32, 2, 2, 4), (32, 64, 2, 2, 4)),
            (NetSpec(16, (4, 2, 1), 8, (1, 2, 4), temporal_downsample=1), NetSpec(8, (4, 2, 1), 8, (1, 2, 4)),
             NetSpec(8, (4, 2, 1, 1), 8, (1, 2, 4, 4))),
            z_dim=32,
            emb_dim=16,
            k_frames=4,
            n_classes=6,
        ),
        ModelPreset(
            "tiny",
            "Smallest networks with the paper's structure, for unit tests",
            _levels((4, 8, 1, 1, None), (8, 16, 2, 2, 2)),
            (NetSpec(4, (2, 1), 4, (1, 2)), NetSpec(4, (2, 1, 1), 4, (1, 2, 2))),
            z_dim=8,
            emb_dim=4,
            k_frames=3,
            n_classes=3,
        ),
    ]
}


def get_preset(name: str, width: float = 1.0) -> ModelPreset:
    if name not in PRESETS:
        raise InputError(f"unknown model preset {name!r}; presets: {', '.join(PRESETS)}")
    preset = PRESETS[name]
    return preset.scaled(width) if width != 1.0 else preset


def build_generator(preset: ModelPreset, levels: tuple[LevelSpec, ...], index: int, n_classes: int | None = None,
                    refine: bool = False) -> nn.Module:
    """Level ``index``'s generator; ``refine`` (upsampling levels only) makes it correct the naive
    upsampling of its input instead of synthesising the output from scratch (not the paper's)."""
    spec, net = levels[index - 1], preset.nets[index - 1]
    classes = preset.n_classes if n_classes is None else n_classes
    if index == 1:
        return Level1Generator(spec.frames, spec.resolution, net.g_ch, net.g_mults, preset.z_dim, classes, preset.emb_dim)
    prev = levels[index - 2]
    return UpsamplingGenerator(prev.resolution, spec.resolution, spec.temporal_factor, net.g_ch, net.g_mults, preset.z_dim, classes, preset.emb_dim,
                                refine=refine)


def build_discriminators(
    preset: ModelPreset, levels: tuple[LevelSpec, ...], index: int, n_classes: int | None = None, matching: bool = True
) -> nn.ModuleDict:
    """Spatial + temporal for every level; + matching for upsampling levels (unless No-MD)."""
    spec, net = levels[index - 1], preset.nets[index - 1]
    classes = preset.n_classes if n_classes is None else n_classes
    ds = nn.ModuleDict(
        {
            "spatial": SpatialDiscriminator(spec.resolution, net.d_ch, net.d_mults, preset.k_frames, classes),
            "temporal": TemporalDiscriminator(spec.resolution, net.d_ch, net.d_mults, classes, downsample=net.temporal_downsample),
        }
    )
    if index > 1 and matching:
        prev = levels[index - 2]
        ds["matching"] = MatchingDiscriminator(prev.resolution, spec.spatial_factor, spec.temporal_factor, net.d_ch, net.d_mults, classes)
    return ds


def build_baseline(preset: ModelPreset, frames: int, resolution: int, n_classes: int | None = None) -> tuple[nn.Module, nn.ModuleDict]:
    """Non-cascaded comparison model (Fig. 3/5): a level-1-style generator producing the full
    video directly, with the top level's widths, and spatial + temporal discriminators."""
    top = preset.nets[-1]
    classes = preset.n_classes if n_classes is None else n_classes
    g = Level1Generator(frames, resolution, top.g_ch, top.g_mults, preset.z_dim, classes, preset.emb_dim)
    ds = nn.ModuleDict(
        {
            "spatial": SpatialDiscriminator(resolution, top.d_ch, top.d_mults, preset.k_frames, classes),
            "temporal": TemporalDiscriminator(resolution, top.d_ch, top.d_mults, classes),
        }
    )
    return g, ds


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def activations_per_sample(module: nn.Module, *inputs) -> int:
    """Output elements of every leaf module in one forward, per sample (a memory proxy)."""
    total = 0

    def hook(_m, _i, out):
        nonlocal total
        for o in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(o, torch.Tensor):
                total += o.numel()

    handles = [m.register_forward_hook(hook) for m in module.modules() if not list(m.children())]
    try:
        with torch.no_grad():
            module(*inputs)
    finally:
        for h in handles:
            h.remove()
    return total // inputs[0].shape[0]


def summarize(preset: ModelPreset, device: str = "meta") -> list[dict]:
    """Parameters and activations per sample of every network of every level (meta tensors:
    shapes only, no memory, so paper-width presets summarise instantly)."""
    rows = []
    with torch.device(device):
        for spec in preset.levels:
            g = build_generator(preset, preset.levels, spec.index)
            ds = build_discriminators(preset, preset.levels, spec.index)
            z = torch.randn(2, preset.z_dim)
            label = torch.zeros(2, dtype=torch.long) if preset.n_classes else None
            frames = spec.window_out
            video = torch.randn(2, 3, frames, spec.resolution, spec.resolution)
            if spec.index == 1:
                g_inputs = (z, label)
            else:
                prev = preset.levels[spec.index - 2]
                cond = torch.randn(2, 3, spec.window, prev.resolution, prev.resolution)
                g_inputs = (z, label, cond)
            shape = f"{frames}/{spec.resolution}"
            rows.append({"level": spec.index, "network": "G", "shape": shape, "params": count_parameters(g),
                         "activations_per_sample": activations_per_sample(g, *g_inputs)})
            for name, d in ds.items():
                d_inputs = (video, cond, label) if name == "matching" else (video, label)
                rows.append({"level": spec.index, "network": f"D_{name}", "shape": shape, "params": count_parameters(d),
                             "activations_per_sample": activations_per_sample(d, *d_inputs)})
    return rows
