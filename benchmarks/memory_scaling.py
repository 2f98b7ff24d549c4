"""Memory of one training step vs output length (the paper's Fig. 3/5).

For a two-level 128x128 cascade (preset bdd128 geometry: level 1 at 64x64 generating half the
output frames; level 2 trained on fixed 6 -> 12 frame windows at 128x128) and a non-cascaded
baseline generating all frames at 128x128 directly, measure the peak memory of one G+D
training step (D update on real and fake, then G update, Adam) as the output length grows.
Each point runs in a fresh subprocess: on CPU the figure is the peak RSS over the step minus
the RSS before it (``benchmarks.common.peak_memory``); on CUDA, torch.cuda.max_memory_allocated.

    python benchmarks/memory_scaling.py --width 0.0625 --lengths 12 24 48 96 140
    python benchmarks/memory_scaling.py --preset bdd256 --width 0.0625 --lengths 48   # 48/256x256
    python benchmarks/memory_scaling.py --preset ucf101 --width 1.0 --lengths 16 --models level1 level2
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def training_step(preset_name: str, width: float, model: str, frames: int, device: str) -> dict:
    import torch

    from cvg.models.discriminators import d_hinge_loss, g_hinge_loss
    from benchmarks.common import peak_memory
    from cvg.models.presets import build_baseline, build_discriminators, build_generator, get_preset

    torch.manual_seed(0)
    torch.set_default_device(device)  # initialise on the device: orthogonal init of paper-width layers takes minutes on a CPU
    preset = get_preset(preset_name, width)
    levels, batch = preset.levels, 1
    label = torch.zeros(batch, dtype=torch.long, device=device) if preset.n_classes else None
    z = torch.randn(batch, preset.z_dim, device=device)
    if model == "level1":  # the first level generates the output subsampled by the cascade's factors
        spec = levels[0]
        out_frames = max(1, round(frames * spec.frames / levels[-1].frames))
        g, ds = build_generator(preset, levels, 1).to(device), build_discriminators(preset, levels, 1).to(device)
        g.frames = out_frames
        real = torch.rand(batch, 3, out_frames, spec.resolution, spec.resolution, device=device) * 2 - 1
        fake_fn = lambda: g(z, label)  # noqa: E731
        cond = None
    elif model.startswith("level"):  # an upsampling level: fixed training windows whatever the output length
        index = int(model[5:])
        spec, prev = levels[index - 1], levels[index - 2]
        g, ds = build_generator(preset, levels, index).to(device), build_discriminators(preset, levels, index).to(device)
        cond = torch.rand(batch, 3, spec.window, prev.resolution, prev.resolution, device=device) * 2 - 1
        real = torch.rand(batch, 3, spec.window_out, spec.resolution, spec.resolution, device=device) * 2 - 1
        fake_fn = lambda: g(z, label, cond)  # noqa: E731
        out_frames = spec.window_out
    else:
        top = levels[-1]
        g, ds = build_baseline(preset, frames, top.resolution)
        g, ds = g.to(device), ds.to(device)
        real = torch.rand(batch, 3, frames, top.resolution, top.resolution, device=device) * 2 - 1
        fake_fn = lambda: g(z, label)  # noqa: E731
        cond, out_frames = None, frames
    opt_g = torch.optim.Adam(g.parameters(), 1e-4, betas=(0.0, 0.999))
    opt_d = torch.optim.Adam(ds.parameters(), 5e-4, betas=(0.0, 0.999))

    def scores(video):
        return [d(video, cond, label) if k == "matching" else d(video, label) for k, d in ds.items()]

    with peak_memory(device) as peak:
        with torch.no_grad():
            fake = fake_fn()
        opt_d.zero_grad()
        d_hinge_loss(scores(real), scores(fake)).backward()
        opt_d.step()
        opt_g.zero_grad()
        g_hinge_loss(scores(fake_fn())).backward()
        opt_g.step()
    return {"model": model, "output_frames": frames, "trained_frames": out_frames, "peak_MB": peak["bytes"] / 2**20}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="bdd128")
    parser.add_argument("--width", type=float, default=0.0625, help="channel width scale (1 = paper)")
    parser.add_argument("--lengths", type=int, nargs="+", default=[12, 24, 48, 96, 140])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--models", nargs="+", help="only these of level1, level2, ..., baseline (default: all)")
    parser.add_argument("--worker", nargs=2, metavar=("MODEL", "FRAMES"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(training_step(args.preset, args.width, args.worker[0], int(args.worker[1]), args.device)))
        return

    from benchmarks.common import fresh_process_env, report
    from cvg.models.presets import get_preset

    n_levels = len(get_preset(args.preset).levels)
    models = args.models or ["level1"] + [f"level{i}" for i in range(2, n_levels + 1)] + ["baseline"]
    rows = []
    for frames in args.lengths:
        for model in models:
            cmd = [sys.executable, __file__, "--preset", args.preset, "--width", str(args.width), "--device", args.device, "--worker", model, str(frames)]
            out = subprocess.run(cmd, capture_output=True, text=True, env=fresh_process_env())
            if out.returncode != 0:  # out of device memory is a result (the baseline's, at paper width), not a crash
                oom = ("OutOfMemoryError", "out of memory", "can't allocate memory")  # CUDA's and the CPU allocator's words
                status = "out of memory" if any(word in out.stderr for word in oom) else "failed"
                rows.append({"model": model, "output_frames": frames, "trained_frames": -1, "peak_MB": float("nan"), "status": status})
                print(f"{model} @ {frames}: {status}: {out.stderr.strip().splitlines()[-1:]}", file=sys.stderr)
                continue
            rows.append({**json.loads(out.stdout.strip().splitlines()[-1]), "status": "ok"})
        if "baseline" not in models or models == ["baseline"]:
            continue
        cascade = max(r["peak_MB"] for r in rows if r["output_frames"] == frames and r["model"] != "baseline")
        baseline = next(r["peak_MB"] for r in rows if r["output_frames"] == frames and r["model"] == "baseline")
        rows.append({"model": "cascade(max level)/baseline", "output_frames": frames, "trained_frames": frames, "peak_MB": cascade / baseline,
                     "status": "ratio"})
    report("memory_scaling", [{"preset": args.preset, "width": args.width, "device": args.device, **r} for r in rows])


if __name__ == "__main__":
    main()
