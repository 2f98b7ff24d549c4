"""Long-video unrolling: frames/s and peak memory of sampling one video of growing length
through a trained-shape cascade (chunked unrolling), one fresh subprocess per length.
On CPU the memory figure is the peak RSS over the sampling call minus the RSS before it
(``benchmarks.common.peak_memory``); on CUDA it is the peak memory allocated by torch during
the call. Each length runs twice, once for the time and
once for the memory (see ``fresh_process_env``). ``outputs_MB`` is what the returned videos
occupy (every level; the top one as uint8), which must grow with the length; ``working_MB``
(peak minus outputs) is what chunked unrolling keeps flat.

    python benchmarks/unroll.py --preset demo --lengths 48 96 240 480 1000
    python benchmarks/unroll.py --preset bdd256 --device cuda --lengths 48 96 240 480 1000
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def run_point(preset_name: str, frames: int, chunk: int, device: str = "cpu", width: float = 1.0) -> dict:
    import torch

    from benchmarks.common import peak_memory
    from benchmarks.train_throughput import config_for
    from cvg.models.presets import build_generator, get_preset
    from cvg.cascade import CascadeSampler

    torch.manual_seed(0)
    cfg = config_for(preset_name, width, 2, "fp32")
    preset = get_preset(preset_name, width)
    dev = torch.device(device)
    with dev:  # initialise on the device: orthogonal init of paper-width layers takes minutes on a CPU
        gens = [build_generator(preset, cfg.levels, lv.index, 4) for lv in cfg.levels]
    for lv, g in zip(cfg.levels, gens):  # a few training-mode passes give the norms statistics
        with torch.no_grad():
            z, label = torch.randn(2, preset.z_dim, device=dev), torch.zeros(2, dtype=torch.long, device=dev)
            if lv.index == 1:
                g(z, label)
            else:
                prev = cfg.level(lv.index - 1)
                g(z, label, torch.rand(2, 3, lv.window, prev.resolution, prev.resolution, device=dev))
    sampler = CascadeSampler(cfg, gens, device=dev)
    scale = cfg.top.frames // cfg.level(1).frames
    level1_frames = max(1, frames // scale)
    sampler.prepare_norms("stationary", 0, level1_frames, 1)
    with peak_memory(device) as peak:
        start = time.perf_counter()
        videos, _ = sampler.sample(1, level1_frames=level1_frames, chunk=chunk, uint8_top=True)
        if dev.type == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
    out = videos[-1].shape[2]
    outputs_mb = sum(v.numel() * v.element_size() for v in videos) / 2**20  # the returned videos must grow with length
    return {
        "frames": out,
        "resolution": videos[-1].shape[-1],
        "chunk": chunk,
        "seconds": seconds,
        "frames_per_s": out / seconds,
        "peak_MB": peak["bytes"] / 2**20,
        "outputs_MB": outputs_mb,
        "working_MB": peak["bytes"] / 2**20 - outputs_mb,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="demo")
    parser.add_argument("--lengths", type=int, nargs="+", default=[48, 96, 240, 480, 1000])
    parser.add_argument("--chunk", type=int, default=8, help="conditioning frames per chunk")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--width", type=float, default=1.0, help="channel-width multiplier of the preset")
    parser.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(run_point(args.preset, args.worker, args.chunk, args.device, args.width)))
        return
    from benchmarks.common import fresh_process_env, report

    rows = []
    for frames in args.lengths:
        cmd = [sys.executable, __file__, "--preset", args.preset, "--chunk", str(args.chunk), "--device", args.device,
               "--width", str(args.width), "--worker", str(frames)]
        # twice: timed with the allocator as users run it, measured with the one that makes RSS
        # follow live memory (it unmaps every freed buffer, which costs 2-3x the time on CPU)
        timed, measured = (
            json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True, env=env).stdout.strip().splitlines()[-1])
            for env in (None, fresh_process_env())
        )
        rows.append({"preset": args.preset, "width": args.width, "device": args.device,
                     **measured, "seconds": timed["seconds"], "frames_per_s": timed["frames_per_s"]})
    report("unroll", rows)


if __name__ == "__main__":
    main()
