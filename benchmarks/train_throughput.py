"""Training throughput per level: one step = ``d_steps`` discriminator updates + one generator
update on random tensors of the level's training shapes (data loading excluded).
samples/s counts real clips consumed (batch x d_steps per step). FLOPs of one step are counted
by torch's FlopCounterMode (convolutions and matrix products, forward and backward, spectral-norm
power iterations included) on the warm-up step; achieved TFLOP/s is set against the device's
dense peak where it is known: bf16 tensor-core peak for bf16 rows, TF32 for fp32 rows (cuDNN
runs fp32 convolutions in TF32 by default). On CUDA the peak allocated memory of the timed steps
is reported too.

    python benchmarks/train_throughput.py --presets tiny demo --batch 8
    python benchmarks/train_throughput.py --presets bdd256 --width 1.0 --batch 16 --micro-batch 2 --device cuda --precision bf16
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def config_for(preset_name: str, width: float, batch: int, precision: str, micro_batch: int = 0):
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
        "model": {"preset": preset_name, "width": width}, "train": {"defaults": {"batch_size": batch, "precision": precision, "micro_batch": micro_batch}},
    })


# dense (no sparsity) tensor-core peaks in FLOP/s, from the vendors' data sheets: {name fragment: {precision: peak}}
PEAKS = {
    "H100": {"bf16": 989.4e12, "fp32": 494.7e12},  # SXM; fp32 rows run convolutions in TF32
    "H200": {"bf16": 989.4e12, "fp32": 494.7e12},
    "A100": {"bf16": 312e12, "fp32": 156e12},
}


def device_peak(device: str, precision: str) -> float | None:
    import torch

    if device != "cuda":
        return None
    name = torch.cuda.get_device_name()
    return next((peaks[precision] for key, peaks in PEAKS.items() if key in name), None)


def measure(cfg, index: int, batch: int, device: str, steps: int, compile_: bool = False) -> dict:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from cvg.train.level import Level

    torch.manual_seed(0)
    with torch.device(device):  # initialise on the device: orthogonal init of paper-width layers takes minutes on a CPU
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

    counter = FlopCounterMode(display=False)
    with counter:  # warm-up, counted before any compilation (the counter does not see inside compiled graphs)
        step(0)
    flops = counter.get_total_flops()
    if compile_:
        level.compile()
        step(0)  # compilation
    if dev.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for i in range(steps):
        step(i + 1)
    if dev.type == "cuda":
        torch.cuda.synchronize()
    seconds = (time.perf_counter() - start) / steps
    achieved = flops / seconds
    peak = device_peak(device, t.precision)
    return {"level": index, "shape": f"{spec.window_out}/{spec.resolution}", "compile": compile_, "s_per_step": seconds,
            "samples_per_s": batch * t.d_steps / seconds, "gflop_per_step": flops / 1e9, "tflop_per_s": achieved / 1e12,
            "peak_fraction": float("nan") if peak is None else achieved / peak,
            "peak_mem_gb": torch.cuda.max_memory_allocated() / 2**30 if dev.type == "cuda" else float("nan")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", nargs="+", default=["tiny", "demo"])
    parser.add_argument("--width", type=float, default=1.0)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    parser.add_argument("--compile", action="store_true", help="torch.compile G and D, as train.compile does on CUDA")
    parser.add_argument("--levels", type=int, nargs="+", help="only these levels (default: all)")
    parser.add_argument("--micro-batch", type=int, default=0, help="train.micro_batch: accumulate over micro-batches of this size (0: off)")
    args = parser.parse_args()

    import torch

    from benchmarks.common import report

    gpu = torch.cuda.get_device_name() if args.device == "cuda" else ""
    rows = []
    for name in args.presets:
        cfg = config_for(name, args.width, args.batch, args.precision, args.micro_batch)
        for lv in cfg.levels:
            if args.levels and lv.index not in args.levels:
                continue
            rows.append({"preset": name, "width": args.width, "batch": args.batch, "micro_batch": args.micro_batch,
                         "device": args.device, "gpu": gpu, "precision": args.precision,
                         **measure(cfg, lv.index, args.batch, args.device, args.steps, args.compile)})
    report("train_throughput", rows)


if __name__ == "__main__":
    main()
