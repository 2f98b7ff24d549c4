"""The memory-lean training step and its account: the fused norm-ReLU-conv gives the composed
autograd ops' numbers (one training step of every level, synchronised statistics on two
workers), and the account (``cvg.memory``, ``cvg.plan``, ``cvg plan``) counts what a step keeps."""

from __future__ import annotations

import contextlib
import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

from cvg.config import build_config, load_config
from cvg.models.layers import FRAMES, FRAMES_UP, VIDEO, ConditionalNorm, conv2d, conv3d, norm_relu_conv, reference_composition
from cvg.plan import DoesNotFit, account_step, check_fits, per_gpu_micro_batch
from cvg.train.level import Level
from tests.conftest import one_and_two_workers, tiny_raw_config

ROOT = Path(__file__).resolve().parents[1]


def tiny_config(**train):
    raw = tiny_raw_config(Path("/nonexistent"))
    raw["model"] = {"preset": "tiny"}
    raw["train"] = {"defaults": {"batch_size": 4, **train}}
    return build_config(raw)


def demo_config():
    return build_config(load_config(ROOT / "config" / "demo.yaml").raw)


def one_step(level: Level, seed: int = 1) -> list[float]:
    """The trainer's step (``Trainer.step``) on fixed random batches: ``d_steps`` D updates, one G
    update (with the real pairs, for the reconstruction and spectral terms), the moving average."""
    cfg, index = level.config, level.index
    spec, t = cfg.level(index), cfg.train(index)
    prev = cfg.level(index - 1) if index > 1 else None
    gen = torch.Generator().manual_seed(seed)
    b = t.batch_size
    real = torch.rand(b, 3, spec.window_out, spec.resolution, spec.resolution, generator=gen) * 2 - 1
    real_cond = torch.rand(b, 3, spec.window, prev.resolution, prev.resolution, generator=gen) * 2 - 1 if prev else None
    fake_cond = torch.rand(b, 3, spec.window, prev.resolution, prev.resolution, generator=gen) * 2 - 1 if prev else None
    label = torch.randint(0, level.n_classes, (b,), generator=gen) if level.n_classes else None
    losses = []
    for sub in range(t.d_steps):
        draws = level.draws(0, sub, b, slice(0, b), spec.window_out, 2)
        losses.append(float(level.update_D(real, real_cond, fake_cond, label, draws)))
    draws = level.draws(0, t.d_steps, b, slice(0, b), spec.window_out, 1)
    losses.append(float(level.update_G(fake_cond, label, draws, real, real_cond)))
    level.update_ema(1)
    return losses


CASES = [("tiny", 1), ("tiny", 2), ("demo", 1), ("demo", 2), ("demo", 3)]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["fp32", "fp64"])
@pytest.mark.parametrize("preset,index", CASES, ids=[f"{p}-level{i}" for p, i in CASES])
def test_fused_training_step_equals_the_composed_ops(preset, index, dtype):
    """One training step of each level (CPU) with the fused norm-ReLU-conv, the sub-pixel
    upsampling conv and the 1x1 shortcut before the upsampling gives the losses, weights and
    running statistics of the composed autograd ops within 1e-5 (the demo's step includes its
    reconstruction and spectral terms and the moving average).

    In fp32 the two orders of the same sums differ by rounding, and Adam's first step moves each
    weight by lr * g / (|g| + 1e-8), about lr * sign(g): where a gradient is within that rounding
    of 0, the rounding picks the sign. Such weights (|g| under four times the tensor's largest
    gradient difference, at most 0.1 % of them) may differ by up to 2 lr; all others agree within
    1e-5. In fp64 every weight does."""
    cfg = tiny_config() if preset == "tiny" else demo_config()
    n_classes = 3 if preset == "tiny" else 6
    torch.manual_seed(0)
    fused = Level(cfg, index, n_classes)
    composed = Level(cfg, index, n_classes)
    composed.G.load_state_dict(fused.G.state_dict())
    composed.D.load_state_dict(fused.D.state_dict())
    if fused.G_ema is not None:
        composed.G_ema.load_state_dict(fused.G_ema.state_dict())
    for level in (fused, composed):
        for net in (level.G, level.D, level.G_ema):
            if net is not None:
                net.to(dtype)
    with torch_default_dtype(dtype):
        losses = one_step(fused)
        with reference_composition():
            reference = one_step(composed)
    torch.testing.assert_close(torch.tensor(losses), torch.tensor(reference), rtol=0, atol=1e-5)
    lr = {"G": cfg.train(index).lr_g, "D": cfg.train(index).lr_d}
    for net in ("G", "D"):
        for (key, mine), theirs in zip(getattr(fused, net).named_parameters(), getattr(composed, net).parameters()):
            if theirs.grad is None:
                torch.testing.assert_close(mine, theirs, rtol=0, atol=0)
                continue
            noise = float((mine.grad - theirs.grad).abs().max())
            assert noise <= 1e-3 * float(theirs.grad.abs().max()) + 1e-12, f"{net}.{key}: gradients differ by {noise}"
            settled = theirs.grad.abs() > 4 * noise if dtype == torch.float32 else torch.ones_like(theirs, dtype=torch.bool)
            diff = (mine.detach() - theirs.detach()).abs()
            worst = float(diff[settled].max()) if settled.any() else 0.0
            assert worst <= 1e-5, f"{net}.{key}: {worst}"
            assert diff.max() <= 2 * lr[net] and (diff > 1e-5).sum() <= max(1, mine.numel() // 1000), f"{net}.{key}"
    for net in ("G", "D", "G_ema"):
        if getattr(fused, net) is None:
            continue
        for (key, mine), theirs in zip(getattr(fused, net).named_buffers(), getattr(composed, net).buffers()):
            torch.testing.assert_close(mine, theirs, rtol=0, atol=1e-5, msg=lambda m, key=key, net=net: f"{net}.{key}: {m}")
    moved = [(k, v) for k, v in fused.G.state_dict().items() if k.endswith("running_mean") and v.numel()]
    assert moved and any(v.abs().max() > 1e-3 for _, v in moved)  # the statistics compared were updated


@contextlib.contextmanager
def torch_default_dtype(dtype):
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


@pytest.mark.parametrize("mode", [FRAMES, FRAMES_UP, VIDEO])
@pytest.mark.parametrize("training", [True, False])
def test_fused_norm_relu_conv_gradients_equal_the_composed_ops_in_fp64(mode, training):
    """In fp64 the fused function and the composed ops agree to rounding (1e-10): outputs and
    the gradients of the input, the condition, the gain and bias maps and the conv."""
    torch.manual_seed(0)
    norm = ConditionalNorm(4, 5).double().train(training)
    norm.gain.eval(), norm.bias.eval()  # spectral norm: no power iteration, the same weights on both calls
    norm.norm.running_mean = torch.randn(3, 4, dtype=torch.double) * 0.1
    norm.norm.running_var = torch.rand(3, 4, dtype=torch.double) + 0.5
    conv = (conv3d(4, 6, (3, 1, 1)) if mode == VIDEO else conv2d(4, 6)).double().eval()  # eval: one power iteration state
    x = torch.randn(2, 4, 3, 5, 5, dtype=torch.double, requires_grad=True)
    cond = torch.randn(2, 5, dtype=torch.double, requires_grad=True)
    params = [x, cond, *norm.parameters(), *conv.parameters()]
    weight = torch.randn(2, 6, 3, 10 if mode == FRAMES_UP else 5, 10 if mode == FRAMES_UP else 5, dtype=torch.double)
    stats = copy.deepcopy(norm.norm)
    y = norm_relu_conv(norm, x, cond, conv, mode)
    grads = torch.autograd.grad((y * weight).sum(), params)
    norm.norm = stats
    with reference_composition():
        y_ref = norm_relu_conv(norm, x, cond, conv, mode)
    grads_ref = torch.autograd.grad((y_ref * weight).sum(), params)
    torch.testing.assert_close(y, y_ref, rtol=0, atol=1e-10)
    for g, r in zip(grads, grads_ref):
        torch.testing.assert_close(g, r, rtol=0, atol=1e-10)


def _fused_rank(rank: int, world: int, port: int, mode: str, queue) -> None:
    """One worker: its share of a fixed batch through a fused norm-ReLU-conv, a non-linear loss."""
    if world > 1:
        os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
        dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.manual_seed(0)
    norm = ConditionalNorm(4, 5)
    conv = conv3d(4, 6, (3, 1, 1)) if mode == VIDEO else conv2d(4, 6)
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(8, 4, 3, 6, 6, generator=gen) * 2 + 1
    cond = torch.randn(8, 5, generator=gen)
    part, part_cond = x.chunk(world)[rank].clone().requires_grad_(), cond.chunk(world)[rank]
    y = norm_relu_conv(norm, part, part_cond, conv, mode)
    y.pow(3).sum().backward()
    params = [p.grad for p in (*norm.parameters(), *conv.parameters())]
    queue.put((rank, *(t.detach().numpy() for t in (y, part.grad, norm.norm.running_mean, norm.norm.running_var, *params))))
    if world > 1:
        dist.destroy_process_group()


@pytest.mark.parametrize("mode", [FRAMES_UP, VIDEO])
def test_fused_norm_on_two_workers_equals_one_worker(mode):
    """Two gloo workers each holding half the batch give the outputs, input gradients and running
    statistics of one worker holding all of it, and their parameter gradients sum to its: the
    fused function all-reduces the statistics in the forward and their gradient sums in the
    backward (synchronised BN)."""
    results = {}
    for world, got in one_and_two_workers(_fused_rank, mode).items():
        cat = [torch.cat([torch.from_numpy(g[i]) for g in got]) for i in (1, 2)]
        stats = [torch.from_numpy(got[0][i]) for i in (3, 4)]
        summed = [sum(torch.from_numpy(g[i]) for g in got) for i in range(5, len(got[0]))]
        results[world] = (*cat, *stats, *summed)
    for i, (one, two) in enumerate(zip(results[1], results[2])):
        torch.testing.assert_close(two, one, rtol=1e-4, atol=1e-4, msg=lambda m, i=i: f"tensor {i}: {m}")
    assert results[1][1].abs().max() > 1  # the input gradient compared is not ~0


def test_account_counts_weights_gradients_and_adam_state_exactly():
    """The account of a tiny level's step peaks in the G step's backward: D's gradients and Adam
    moments (left by its update) are alive then, G's Adam moments not yet (they come with its
    update); the moments are exactly the bytes of D's, the gradients D's and part of G's, the
    weights at least the built networks' bytes."""
    cfg = tiny_config()
    account = account_step(cfg, 2, 2, n_classes=3)
    torch.manual_seed(0)
    level = Level(cfg, 2, 3)
    nets = (level.G, level.D)
    d_params = sum(p.numel() * p.element_size() for p in level.D.parameters())
    params = sum(p.numel() * p.element_size() for net in nets for p in net.parameters())
    buffers = sum(b.numel() * b.element_size() for net in nets for b in net.buffers())
    by = account.by_category
    assert account.peak_phase == "G step"
    assert d_params <= by["gradients"] < params
    assert by["optimizer"] == 2 * d_params + 4 * len(list(level.D.parameters()))  # two moments, a step counter each
    assert by["parameters"] >= params + buffers  # the running statistics grow when first used
    # fp32 real windows (4/32x32), both conditionings (2/16x16) of 2 examples, and their int64 labels
    assert by["inputs"] == sum(4 * 2 * 3 * n for n in (4 * 32 * 32, 2 * 16 * 16, 2 * 16 * 16)) + 8 * 2
    assert by["saved"] > 0 and account.peak_bytes == sum(by.values())
    assert account.flops > 0


def test_fused_step_keeps_less_than_half_the_activations_of_the_composed_ops():
    """The account of the demo's level 3 step: the fused norm-ReLU-conv keeps under half the
    saved activations the composed ops keep (at paper width the same change took level 3 of
    bdd100k from 41.9 to 17.0 GiB for one fp32 example, docs/memory.md)."""
    cfg = demo_config()
    fused = account_step(cfg, 3, 4, n_classes=6, flops=False)
    with reference_composition():
        composed = account_step(cfg, 3, 4, n_classes=6, flops=False)
    assert fused.by_category["saved"] < 0.5 * composed.by_category["saved"]
    assert fused.peak_bytes < 0.7 * composed.peak_bytes


def test_check_fits_refuses_before_allocating_and_names_the_micro_batch():
    """A level whose micro-batch does not fit is refused with the micro-batch that does; one that
    does not fit at micro-batch 1 says by how much."""
    cfg = tiny_config(micro_batch=4)
    assert per_gpu_micro_batch(cfg, 2) == 4
    one = account_step(cfg, 2, 1, flops=False).cuda_peak_gib
    four = account_step(cfg, 2, 4, flops=False).cuda_peak_gib
    with pytest.raises(DoesNotFit, match=r"level 2 at micro-batch 4 needs .* set train.levels\[1\].micro_batch: [123]"):
        check_fits(cfg, 2, (one + four) / 2)
    with pytest.raises(DoesNotFit, match="does not fit .* even at micro-batch 1"):
        check_fits(build_config({**cfg.raw, "train": {"defaults": {"batch_size": 4, "micro_batch": 1}}}), 2, one / 2)
    assert check_fits(cfg, 2, four * 2).micro_batch == 4


def test_cvg_plan_prints_and_writes_every_level(tmp_path):
    """``cvg plan CONFIG --gpu-mem --json``: every level's peak at the micro-batches asked for, growing
    with the micro-batch, the largest that fits, TFLOP per example."""
    out = tmp_path / "plan.json"
    run = subprocess.run([sys.executable, "-m", "cvg.cli", "plan", str(ROOT / "config" / "demo.yaml"), "--gpu-mem", "0.1G", "--micro-batches", "1", "4",
                          "--json", str(out)],
                         capture_output=True, text=True, cwd=ROOT)
    assert run.returncode == 0, run.stderr
    assert "TFLOP/example" in run.stdout
    plan = json.loads(out.read_text())
    assert [lv["level"] for lv in plan["levels"]] == [1, 2, 3]
    for lv in plan["levels"]:
        peaks = [lv["peak_gib"][b] for b in ("1", "4")]
        assert peaks == sorted(peaks) and peaks[0] < peaks[-1]
        fits = [int(b) for b, g in lv["peak_gib"].items() if g <= 0.1]
        assert lv["fits"] >= max(fits, default=0) and lv["tflop_per_example"] > 0
    bad = subprocess.run([sys.executable, "-m", "cvg.cli", "plan", str(ROOT / "config" / "demo.yaml")], capture_output=True, text=True, cwd=ROOT)
    assert bad.returncode != 0 and "gpu_mem_gb" in bad.stderr + bad.stdout


def test_bdd100k_level3_trains_four_examples_per_32_gib_gpu_in_bf16_and_two_in_fp32():
    """The paper's scaling claim at paper width, by the account (calibrated against an H200,
    docs/memory.md): level 3 of config/bdd100k.yaml (6/128 -> 12/256) at its configured 4 examples
    per GPU in bf16, and 2 in fp32, within its 32 GiB GPUs, frozen lower levels included."""
    from cvg.experiment import load_experiment

    cfg = load_experiment(ROOT / "config" / "bdd100k.yaml")
    gpu = cfg.slurm(3).gpu_mem_gb
    assert gpu == 32 and cfg.train(3).precision == "bf16" and per_gpu_micro_batch(cfg, 3) == 4
    bf16 = check_fits(cfg, 3, gpu)
    fp32 = check_fits(cfg, 3, gpu, precision="fp32", micro=2)
    assert bf16.micro_batch == 4 and bf16.cuda_peak_gib <= gpu and fp32.cuda_peak_gib <= gpu
    assert bf16.by_category["frozen levels"] > 1 * 2**30  # levels 1 and 2 held beside it
