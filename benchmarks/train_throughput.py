"""Training throughput per level: one step = ``d_steps`` discriminator updates + one generator
update on random tensors of the level's training shapes (data loading excluded).
samples/s counts real clips consumed (batch x d_steps per step).

    python benchmarks/train_throughput.py --presets tiny demo --batch 8
    python benchmarks/train_throughput.py --presets bdd256 --width 0.125 --device cuda --precision bf16
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def config_for(preset_name: str, width: float, batch: int, precision: str):
    from cvg.config import build_config
    from cvg.models.presets import get_preset

    preset = get_preset(preset_name)
    levels = []
    for lv in preset.levels:
        entry = {"frames": lv.frames, "resolution": lv.resolution}
        if lv.index > 1:
            entry.update(temporal_factor=lv.temporal_factor, spatial_factor=lv.spatial_factor, window=lv.window)
        levels.append(entry)
    return build_config({
        "name": f"bench_{preset_name}", "dataset": {"kind": "folder", "root": "."}, "data": {}, "levels": levels,
        "model": {"preset": preset_name, "width": width}, "train": {"defaults": {"batch_size": batch, "precision": precision}},
    })


def measure(cfg, index: int, batch: int, device: str, steps: int) -> dict:
    import torch

    from cvg.train.level import Level

    torch.manual_seed(0)
    level = Level(cfg, index, n_classes=4, device=device)
    spec, prev = cfg.level(index), (cfg.level(index - 1) if index > 1 else None)
    dev = torch.device(device)
    real = torch.rand(batch, 3, spec.window_out, spec.resolution, spec.resolution, device=dev) * 2 - 1
    cond = None if prev is None else torch.rand(batch, 3, spec.window, prev.resolution, prev.resolution, device=dev) * 2 - 1
    label = torch.randint(0, 4, (batch,), device=dev)
    t = cfg.train(index)
    autocast = torch.autocast(dev.type, dtype=torch.bfloat16, enabled=t.precision == "bf16")

    def step(i):
        with autocast:
            for sub in range(t.d_steps):
                level.update_D(real, cond, cond, label, level.draws(i, sub, batch, slice(0, batch), spec.window_out, 2))
            level.update_G(cond, label, level.draws(i, t.d_steps, batch, slice(0, batch), spec.window_out, 1))

    step(0)  # warm-up
    if dev.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for i in range(steps):
        step(i + 1)
    if dev.type == "cuda":
        torch.cuda.synchronize()
    seconds = (time.perf_counter() - start) / steps
    return {"level": index, "shape": f"{spec.window_out}/{spec.resolution}", "s_per_step": seconds, "samples_per_s": batch * t.d_steps / seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", nargs="+", default=["tiny", "demo"])
    parser.add_argument("--width", type=float, default=1.0)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    args = parser.parse_args()

    from benchmarks.common import report

    rows = []
    for name in args.presets:
        cfg = config_for(name, args.width, args.batch, args.precision)
        for lv in cfg.levels:
            rows.append({"preset": name, "width": args.width, "batch": args.batch, "device": args.device, "precision": args.precision,
                         **measure(cfg, lv.index, args.batch, args.device, args.steps)})
    report("train_throughput", rows)


if __name__ == "__main__":
    main()
