"""Training checks that need a CUDA device (the whole module skips without one): a level's
D / G updates on the GPU against the CPU, bf16 autocast and torch.compile against eager fp32,
and a real training run with bf16 + compile. The I3D port and chunked unrolling are checked on
the GPU by their own tests' cuda parameter (test_metrics.py, test_sample.py).

    python -m pytest -q -k cuda      # on a GPU machine

Comparisons against the CPU run the convolutions in full fp32 (``exact_fp32_convolutions``):
by default cuDNN uses TF32 for fp32 convolutions, whose 10-bit mantissa alone moves a loss by
~1e-3. Synchronised BatchNorm over NCCL needs two GPUs and is not exercised here (with one
process FrameNorm has nothing to all-reduce); its CUDA path is tested with two gloo workers
sharing the GPU (test_models.py), DDP training over gloo in test_train.py.
"""

import numpy as np

from cvg.config import build_config
from cvg.metrics.i3d import exact_fp32_convolutions
from tests.conftest import needs_cuda
from tests.test_train import TRAIN, assert_finite_log, level_losses, tiny_data, tiny_level_config  # noqa: F401  (tiny_data: the shared fixture)

pytestmark = needs_cuda


def test_level_updates_on_cuda_match_cpu(tmp_path):
    cfg = tiny_level_config(tmp_path)
    with exact_fp32_convolutions():
        cpu, gpu = level_losses(cfg, "cpu"), level_losses(cfg, "cuda")
    np.testing.assert_allclose(gpu, cpu, rtol=1e-4, atol=1e-4)


def test_bf16_autocast_and_compile_follow_eager_fp32(tmp_path):
    cfg = tiny_level_config(tmp_path)
    with exact_fp32_convolutions():
        eager = level_losses(cfg, "cuda")
        compiled = level_losses(cfg, "cuda", compile_backend="inductor")
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
        assert_finite_log(tmp_path / f"w{level}", TRAIN["steps"])
