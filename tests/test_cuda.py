"""Checks that need a CUDA device (the whole module skips without one): the I3D port's numbers
on the GPU, a level's D / G updates on the GPU against the CPU, bf16 autocast and torch.compile
against eager fp32, chunked unrolling on the GPU, and a real training run with bf16 + compile.

    python -m pytest -q tests/test_cuda.py      # on a GPU machine

Comparisons against the CPU run the convolutions in full fp32 (``exact_fp32_convolutions``):
by default cuDNN uses TF32 for fp32 convolutions, whose 10-bit mantissa alone moves a loss by
~1e-3. Synchronised BatchNorm over NCCL needs two GPUs and is not exercised here (with one
process FrameNorm has nothing to all-reduce); the gloo path is tested in test_train.py.
"""

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from cvg.config import build_config
from cvg.metrics.i3d import exact_fp32_convolutions
from cvg.train.level import Level
from tests.conftest import tiny_raw_config

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
REPO = Path(__file__).resolve().parents[1]


def tiny_level_config(tmp_path, **train):
    raw = tiny_raw_config(tmp_path)
    raw["model"] = {"preset": "tiny"}
    raw["train"] = {"defaults": {"batch_size": 4, **train}}
    return build_config(raw)


def level_losses(cfg, device: str, steps: int = 2, bf16: bool = False, compile_: bool = False) -> list[float]:
    """D and G losses of ``steps`` training steps of level 2 from the same initial weights and
    inputs on any device."""
    torch.manual_seed(0)
    level = Level(cfg, 2, n_classes=3, device=device)  # built on the CPU, then moved: same weights everywhere
    if compile_:
        level.compile()
    spec, prev = cfg.level(2), cfg.level(1)
    gen = torch.Generator().manual_seed(1)
    b = cfg.train(2).batch_size
    real = (torch.rand(b, 3, spec.window_out, spec.resolution, spec.resolution, generator=gen) * 2 - 1).to(device)
    cond = (torch.rand(b, 3, spec.window, prev.resolution, prev.resolution, generator=gen) * 2 - 1).to(device)
    label = torch.randint(0, 3, (b,), generator=gen).to(device)
    losses = []
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=bf16):
        for step in range(steps):
            for sub in range(cfg.train(2).d_steps):
                draws = level.draws(step, sub, b, slice(0, b), spec.window_out, 2)
                losses.append(float(level.update_D(real, cond, cond, label, draws)))
            draws = level.draws(step, cfg.train(2).d_steps, b, slice(0, b), spec.window_out, 1)
            losses.append(float(level.update_G(cond, label, draws)))
    return losses


def test_i3d_on_cuda_matches_the_jax_reference():
    from cvg.metrics.i3d import load_i3d

    sys.path.insert(0, str(REPO / "tools"))
    from i3d_reference import reference_inputs

    ref = np.load(REPO / "tests" / "data" / "i3d_reference.npz")
    model = load_i3d("cuda")
    with torch.no_grad():  # with the caller's TF32 setting on: the port must turn it off itself
        logits, features = (t.cpu().numpy() for t in model(torch.from_numpy(reference_inputs()).cuda()))
    assert np.abs(logits - ref["logits"]).max() < 1e-3
    assert np.abs(features - ref["features"]).max() < 1e-3


def test_level_updates_on_cuda_match_cpu(tmp_path):
    cfg = tiny_level_config(tmp_path)
    with exact_fp32_convolutions():
        cpu, gpu = level_losses(cfg, "cpu"), level_losses(cfg, "cuda")
    np.testing.assert_allclose(gpu, cpu, rtol=1e-4, atol=1e-4)


def test_bf16_autocast_and_compile_follow_eager_fp32(tmp_path):
    cfg = tiny_level_config(tmp_path)
    with exact_fp32_convolutions():
        eager = level_losses(cfg, "cuda")
        compiled = level_losses(cfg, "cuda", compile_=True)
    bf16 = level_losses(cfg, "cuda", bf16=True)
    np.testing.assert_allclose(compiled, eager, rtol=1e-3, atol=1e-3)
    assert np.isfinite(bf16).all()
    np.testing.assert_allclose(bf16, eager, rtol=0.05, atol=0.1)  # bf16: an 8-bit mantissa, over a few steps


def test_chunked_unrolling_on_cuda_equals_full_application():
    from cvg.models.layers import recompute_frame_stats
    from cvg.models.presets import build_generator, get_preset
    from cvg.sample import unroll

    torch.manual_seed(0)
    preset = get_preset("tiny")
    g = build_generator(preset, preset.levels, 2, refine=True).cuda()
    g.refine_gain.data.fill_(1.0)
    z, label = torch.randn(2, preset.z_dim, device="cuda"), torch.tensor([0, 1], device="cuda")
    cond = torch.rand(2, 3, 50, 8, 8, device="cuda") * 2 - 1
    with torch.no_grad(), exact_fp32_convolutions():
        recompute_frame_stats(g, lambda: g(torch.rand_like(cond) * 2 - 1, torch.randn_like(z), label), passes=4)
        g.eval()
        full = unroll(g, cond, z, label, chunk=None)
        for chunk in (4, 7, 16):
            assert (unroll(g, cond, z, label, chunk=chunk) - full).abs().max() <= 1e-5


@pytest.fixture(scope="module")
def cuda_tiny_data(tmp_path_factory):
    """Demo videos through the real ingest (ffmpeg: a system one or imageio-ffmpeg's)."""
    from cvg.data.demo import DemoSpec, render_dataset
    from tests.test_shards import ingest

    root = tmp_path_factory.mktemp("cuda_tiny")
    render_dataset(root / "videos", {"train": 2}, DemoSpec(frames=20, width=48, height=40), workers=2)
    raw = tiny_raw_config(root / "videos")
    raw["model"] = {"preset": "tiny"}
    ingest(build_config(raw), root / "data")
    return root, raw


def test_training_with_bf16_and_compile_on_cuda(cuda_tiny_data, tmp_path):
    from cvg.train.loop import load_checkpoint, train_level
    from tests.test_train import TRAIN

    root, raw = cuda_tiny_data
    raw = {**raw, "train": {"defaults": {**TRAIN, "precision": "bf16", "compile": True}}}
    cfg = build_config(raw)
    index = root / "data" / "index.csv"
    train_level(cfg, 1, index, tmp_path / "level1.pt", tmp_path / "w1", device="cuda", progress=False)
    train_level(cfg, 2, index, tmp_path / "level2.pt", tmp_path / "w2", [str(tmp_path / "level1.pt")], device="cuda", progress=False)
    for level in (1, 2):
        state = load_checkpoint(tmp_path / f"level{level}.pt")
        assert state["step"] == TRAIN["steps"]
        rows = (tmp_path / f"w{level}" / "log.csv").read_text().splitlines()[1:]
        assert len(rows) == TRAIN["steps"] and all(np.isfinite([float(v) for v in r.split(",")[2:4]]).all() for r in rows)
