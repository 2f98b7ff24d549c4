"""Calibrate the memory account (``cvg.memory``) against peaks measured on a GPU.

The GPU figures in ``docs/gpu_runs.md`` were measured by ``benchmarks/memory_scaling.py`` at a
given commit: one G+D training step at batch 1, fp32, Adam, ``torch.cuda.max_memory_allocated``
minus the memory allocated before the step (the networks and the inputs). This script checks
out the package of that commit into a temporary folder, runs the same step there on fake
tensors under today's ``StorageAccount`` (loaded from its file, so the old package is what is
measured), and prints the account beside the GPU's figure.

    python benchmarks/memory_calibration.py                 # the H200 figures of 2026-11-27 (f40f5ea)
    python benchmarks/memory_calibration.py --ref HEAD      # today's networks (no GPU figure to compare)
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# (model, output frames) -> MiB measured on one H200 (docs/gpu_runs.md, 2026-11-27, commit f40f5ea,
# torch 2.11.0+cu130, bdd256 at paper width, batch 1, fp32)
H200_F40F5EA = {("level1", 12): 8745, ("level1", 48): 17546, ("level1", 140): 39698, ("level2", 48): 11779, ("level3", 48): 31389,
                ("baseline", 12): 40920}

WORKER = r'''
import importlib.util, json, sys, warnings
import torch
warnings.filterwarnings("ignore")
spec = importlib.util.spec_from_file_location("cvg_memory_account", sys.argv[1])
memory = importlib.util.module_from_spec(spec); sys.modules[spec.name] = memory; spec.loader.exec_module(memory)
from torch._subclasses.fake_tensor import FakeTensorMode
from cvg.models.discriminators import d_hinge_loss, g_hinge_loss
from cvg.models.presets import build_baseline, build_discriminators, build_generator, get_preset

import inspect
import cvg.models.generators as generators
assert generators.__file__.startswith(sys.argv[4]), generators.__file__
old_signature = list(inspect.signature(generators.UpsamplingGenerator.forward).parameters)[1] == "cond_video"
model, frames = sys.argv[2], int(sys.argv[3])
account = memory.StorageAccount()
with FakeTensorMode(allow_non_fake_inputs=True), account:
    preset = get_preset("bdd256", 1.0)
    levels, batch = preset.levels, 1
    z = torch.randn(batch, preset.z_dim)
    label = None
    if model == "level1":
        spec = levels[0]
        out_frames = max(1, round(frames * spec.frames / levels[-1].frames))
        g, ds = build_generator(preset, levels, 1), build_discriminators(preset, levels, 1)
        g.frames = out_frames
        real = torch.rand(batch, 3, out_frames, spec.resolution, spec.resolution) * 2 - 1
        fake_fn, cond = (lambda: g(z, label)), None
    elif model.startswith("level"):
        index = int(model[5:])
        spec, prev = levels[index - 1], levels[index - 2]
        g, ds = build_generator(preset, levels, index), build_discriminators(preset, levels, index)
        cond = torch.rand(batch, 3, spec.window, prev.resolution, prev.resolution) * 2 - 1
        real = torch.rand(batch, 3, spec.window_out, spec.resolution, spec.resolution) * 2 - 1
        fake_fn = lambda: g(cond, z, label) if old_signature else g(z, label, cond)
    else:
        top = levels[-1]
        g, ds = build_baseline(preset, frames, top.resolution)
        real = torch.rand(batch, 3, frames, top.resolution, top.resolution) * 2 - 1
        fake_fn, cond = (lambda: g(z, label)), None
    opt_g = torch.optim.Adam(g.parameters(), 1e-4, betas=(0.0, 0.999))
    opt_d = torch.optim.Adam(ds.parameters(), 5e-4, betas=(0.0, 0.999))
    scores = lambda v: [d(v, cond, label) if k == "matching" else d(v, label) for k, d in ds.items()]
    account.start()
    base = account.current
    with torch.no_grad():
        fake = fake_fn()
    opt_d.zero_grad()
    d_hinge_loss(scores(real), scores(fake)).backward()
    opt_d.step()
    opt_g.zero_grad()
    g_hinge_loss(scores(fake_fn())).backward()
    opt_g.step()
print(json.dumps({"model": model, "frames": frames, "growth_MiB": (account.peak - base) / 2**20, "weights_MiB": base / 2**20}))
'''


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ref", default="f40f5ea", help="git commit whose networks to account (default: the H200 runs' commit)")
    parser.add_argument("--points", nargs="+", default=[f"{m}:{f}" for m, f in H200_F40F5EA], help="MODEL:FRAMES points")
    args = parser.parse_args()

    from benchmarks.common import report
    from cvg.memory import CUDA_MARGIN

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", args.ref, "cvg"], capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", tmp], input=archive, check=True)
        for point in args.points:
            model, frames = point.split(":")
            out = subprocess.run([sys.executable, "-c", WORKER, str(ROOT / "cvg" / "memory.py"), model, frames, tmp], capture_output=True, text=True,
                                 cwd=tmp, env={"PYTHONPATH": tmp, "PATH": "/usr/bin:/bin"})
            if out.returncode:
                raise SystemExit(f"{point} at {args.ref} failed:\n{out.stderr[-2000:]}")
            row = json.loads(out.stdout.strip().splitlines()[-1])
            gpu = H200_F40F5EA.get((model, int(frames))) if args.ref.startswith("f40f5ea") else None
            row.update(ref=args.ref, gpu_MiB=gpu, estimate_MiB=row["growth_MiB"] * (1 + CUDA_MARGIN),
                       estimate_over_gpu=None if gpu is None else row["growth_MiB"] * (1 + CUDA_MARGIN) / gpu)
            rows.append(row)
    report("memory_calibration", rows)


if __name__ == "__main__":
    main()
