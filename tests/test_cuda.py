"""Training checks that need a CUDA device (the whole module skips without one): a level's
D / G updates on the GPU against the CPU, bf16 autocast and torch.compile against eager fp32,
and a real training run with bf16 + compile. The I3D port and chunked unrolling are checked on
the GPU by their own tests' cuda parameter (test_metrics.py, test_sample.py).

    python -m pytest -q -k cuda      # on a GPU machine

Comparisons against the CPU run the convolutions in full fp32 (``exact_fp32_convolutions``):
by default cuDNN uses TF32 for fp32 convolutions, whose 10-bit mantissa alone moves a loss by
~1e-3. Synchronised BatchNorm over NCCL needs two GPUs and is not exercised here (with one
process FrameNorm has nothing to all-reduce); the gloo path is tested in test_train.py.
"""

import numpy as np
import torch

from cvg.config import build_config
from cvg.metrics.i3d import exact_fp32_convolutions
from cvg.train.level import Level
from tests.conftest import needs_cuda, tiny_raw_config
from tests.test_train import TRAIN, tiny_data  # noqa: F401  (tiny_data: the shared fixture)

pytestmark = needs_cuda


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


def test_training_with_bf16_and_compile_on_cuda(tiny_data, tmp_path):  # noqa: F811 (the imported fixture)
    from cvg.train.loop import load_checkpoint, train_level

    root, raw = tiny_data
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
