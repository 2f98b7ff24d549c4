"""Memory of one training step vs output length (the paper's Fig. 3/5).

For a two-level 128x128 cascade (preset bdd128 geometry: level 1 at 64x64 generating half the
output frames; level 2 trained on fixed 6 -> 12 frame windows at 128x128) and a non-cascaded
baseline generating all frames at 128x128 directly, the peak memory of one G+D training step
(D update on real and fake, then G update through the frozen D, Adam; one example, as the
paper's memory figures)
as the output length grows. Each point runs in a fresh subprocess:

* ``--device cpu`` (default): the memory account (``cvg.memory``): the step on fake tensors,
  every storage counted while alive, nothing allocated, so paper width runs on any machine;
  the figure is what CUDA would allocate beyond the weights and inputs
  (``docs/memory.md``, "Calibration");
* ``--device cuda``: measured, ``torch.cuda.max_memory_allocated`` minus what was allocated
  before the step; with ``--account`` too, both for each point;
* ``--rss``: the process's peak RSS over the step on the CPU (real tensors, small widths).

``--plot FILE`` draws the figure (matplotlib) with the paper's fixed 10,290 MB of its 128x128
level and the GPU budget.

    python benchmarks/memory_scaling.py --width 1 --lengths 12 24 48 96 140 --plot docs/fig3_memory.png
    python benchmarks/memory_scaling.py --preset bdd256 --width 1 --lengths 48          # 48/256x256
    python benchmarks/memory_scaling.py --device cuda --account --width 1 --lengths 12 48
"""

from __future__ import annotations

import argparse
import contextlib
import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


PAPER_LEVEL2_MB = 10290  # Fig. 3: the 128x128 second level's fixed memory cost


def training_step(preset_name: str, width: float, model: str, frames: int, device: str, instrument: str) -> dict:
    """One point. ``instrument``: "account" (fake tensors, counted: any machine, any width) or
    "measure" (CUDA's peak allocation, or the CPU's peak RSS)."""
    import torch
    from torch._subclasses.fake_tensor import FakeTensorMode

    from benchmarks.common import peak_memory
    from cvg.memory import StorageAccount
    from cvg.models.discriminators import d_hinge_loss, g_hinge_loss
    from cvg.models.layers import skipped_orthogonal_init
    from cvg.models.presets import build_baseline, build_discriminators, build_generator, get_preset
    from cvg.train.level import on_device

    torch.manual_seed(0)
    account = StorageAccount() if instrument == "account" else None
    setting = contextlib.ExitStack()
    if account is not None:  # shape-only tensors on the CPU, every storage counted
        device = "cpu"
        for ctx in (FakeTensorMode(allow_non_fake_inputs=True), account, skipped_orthogonal_init()):
            setting.enter_context(ctx)
    else:
        torch.set_default_device(device)  # initialise on the device: orthogonal init of paper-width layers takes minutes on a CPU

    @contextlib.contextmanager
    def counted():
        out = {}
        account.start()
        base = account.current
        yield out
        out["bytes"] = account.peak - base

    with setting:
        preset = get_preset(preset_name, width)
        levels, batch = preset.levels, 1
        label = torch.zeros(batch, dtype=torch.long) if preset.n_classes else None
        z = torch.randn(batch, preset.z_dim)
        if model == "level1":  # the first level generates the output subsampled by the cascade's factors
            spec = levels[0]
            out_frames = max(1, round(frames * spec.frames / levels[-1].frames))
            g, ds = build_generator(preset, levels, 1), build_discriminators(preset, levels, 1)
            g.frames = out_frames
            real = torch.rand(batch, 3, out_frames, spec.resolution, spec.resolution) * 2 - 1
            cond = None
        elif model.startswith("level"):  # an upsampling level: fixed training windows whatever the output length
            index = int(model[5:])
            spec, prev = levels[index - 1], levels[index - 2]
            g, ds = build_generator(preset, levels, index), build_discriminators(preset, levels, index)
            cond = torch.rand(batch, 3, spec.window, prev.resolution, prev.resolution) * 2 - 1
            real = torch.rand(batch, 3, spec.window_out, spec.resolution, spec.resolution) * 2 - 1
            out_frames = spec.window_out
        else:
            top = levels[-1]
            g, ds = build_baseline(preset, frames, top.resolution)
            real = torch.rand(batch, 3, frames, top.resolution, top.resolution) * 2 - 1
            cond, out_frames = None, frames
        g, ds = on_device(g, torch.device(device)), on_device(ds, torch.device(device))
        opt_g = torch.optim.Adam(g.parameters(), 1e-4, betas=(0.0, 0.999))
        opt_d = torch.optim.Adam(ds.parameters(), 5e-4, betas=(0.0, 0.999))

        def scores(video):
            return [d(video, cond, label) if k == "matching" else d(video, label) for k, d in ds.items()]

        with counted() if account is not None else peak_memory(device) as peak:
            with torch.no_grad():
                fake = g(z, label, cond)
            opt_d.zero_grad()
            d_hinge_loss(scores(real), scores(fake)).backward()
            opt_d.step()
            opt_g.zero_grad()
            ds.requires_grad_(False)  # as the trainer's G step (Level.update_G): D takes no gradient
            g_hinge_loss(scores(g(z, label, cond))).backward()
            ds.requires_grad_(True)
            opt_g.step()
    return {"model": model, "output_frames": frames, "trained_frames": out_frames, "peak_MB": peak["bytes"] / 2**20, "instrument": instrument}


def plot(rows: list[dict], path: str, preset: str, width: float) -> None:
    """The paper's Fig. 3: each model's peak against the output length, the paper's fixed
    10,290 MB of its 128x128 level, and a 32 GiB GPU; measured points where there are any."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = {"level1": "level 1 (64x64, half the frames)", "level2": "level 2 (6 -> 12 frame windows, 128x128)",
             "baseline": "non-cascaded (all frames at 128x128)"}
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for model, colour in zip(names, ("tab:blue", "tab:green", "tab:red")):
        for instrument, style in (("account", "-o"), ("measure", "x")):
            pts = sorted((r["output_frames"], r["peak_MB"] / 1024) for r in rows
                         if r["model"] == model and r.get("instrument") == instrument and r["status"] == "ok")
            if pts:
                label = names[model] + (" (measured on a GPU)" if instrument == "measure" else "")
                ax.plot(*zip(*pts), style, color=colour, label=label, markersize=5 if instrument == "account" else 9)
    ax.axhline(PAPER_LEVEL2_MB * 1e6 / 2**30, color="tab:green", ls=":", label="paper: its 128x128 level, 10,290 MB")
    ax.axhline(32, color="grey", ls="--", lw=1, label="a 32 GiB GPU")
    ax.set_xlabel("output frames")
    ax.set_ylabel("GiB beyond the weights (one example, fp32)")
    ax.set_title(f"Memory of one training step ({preset}, width {width:g})")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="bdd128")
    parser.add_argument("--width", type=float, default=1.0, help="channel width scale (1 = paper)")
    parser.add_argument("--lengths", type=int, nargs="+", default=[12, 24, 48, 96, 140])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--account", action="store_true", help="on CUDA: the account's figure beside each measured one")
    parser.add_argument("--rss", action="store_true", help="on the CPU: the process's peak RSS with real tensors instead of the account")
    parser.add_argument("--models", nargs="+", help="only these of level1, level2, ..., baseline (default: all)")
    parser.add_argument("--plot", help="draw the figure (PNG or SVG) here")
    parser.add_argument("--worker", nargs=3, metavar=("MODEL", "FRAMES", "INSTRUMENT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        model, frames, instrument = args.worker
        print(json.dumps(training_step(args.preset, args.width, model, int(frames), args.device, instrument)))
        return

    from benchmarks.common import fresh_process_env, report
    from cvg.models.presets import get_preset

    if args.device == "cuda":
        instruments = ["measure"] + (["account"] if args.account else [])
    else:
        instruments = ["measure"] if args.rss else ["account"]
    n_levels = len(get_preset(args.preset).levels)
    models = args.models or ["level1"] + [f"level{i}" for i in range(2, n_levels + 1)] + ["baseline"]
    rows = []
    for frames in args.lengths:
        for model in models:
            for instrument in instruments:
                cmd = [sys.executable, __file__, "--preset", args.preset, "--width", str(args.width), "--device", args.device,
                       "--worker", model, str(frames), instrument]
                out = subprocess.run(cmd, capture_output=True, text=True, env=fresh_process_env())
                if out.returncode != 0:  # out of device memory is a result (the baseline's, at paper width), not a crash
                    oom = ("OutOfMemoryError", "out of memory", "can't allocate memory")  # CUDA's and the CPU allocator's words
                    status = "out of memory" if any(word in out.stderr for word in oom) else "failed"
                    rows.append({"model": model, "output_frames": frames, "trained_frames": -1, "peak_MB": float("nan"), "instrument": instrument,
                                 "status": status})
                    print(f"{model} @ {frames}: {status}: {out.stderr.strip().splitlines()[-1:]}", file=sys.stderr)
                    continue
                rows.append({**json.loads(out.stdout.strip().splitlines()[-1]), "status": "ok"})
    report("memory_scaling", [{"preset": args.preset, "width": args.width, "device": args.device, **r} for r in rows])
    if args.plot:
        plot(rows, args.plot, args.preset, args.width)
        print(f"figure: {args.plot}")


if __name__ == "__main__":
    main()
