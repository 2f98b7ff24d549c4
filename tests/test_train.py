"""Greedy level training on a tiny real dataset (demo videos through the real ingest)."""

import copy
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
import yaml

from cvg.config import build_config
from cvg.data.demo import DemoSpec, render_dataset
from cvg.train.level import Level
from cvg.checkpoint import save_atomic
from cvg.train.loop import NonFiniteLossError, load_checkpoint, train_level
from tests.conftest import tiny_raw_config
from tests.test_shards import ingest

TRAIN = {"batch_size": 4, "steps": 3, "checkpoint_every": 2, "log_every": 1, "sample_every": 2, "num_workers": 0, "lr_d": 5e-4}


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    render_dataset(root / "videos", {"train": 2}, DemoSpec(frames=20, width=48, height=40), workers=2)  # 12 videos, 6 classes
    raw = tiny_raw_config(root / "videos")
    raw["model"] = {"preset": "tiny"}
    raw["train"] = {"defaults": dict(TRAIN)}
    ingest(build_config(raw), root / "data")
    return root, raw


def make_config(raw, **train):
    raw = copy.deepcopy(raw)
    raw["train"]["defaults"].update(train)
    return build_config(raw)


def tiny_level_config(tmp_path, **train):
    raw = tiny_raw_config(tmp_path)
    raw["model"] = {"preset": "tiny"}
    raw["train"] = {"defaults": {"batch_size": 4, **train}}
    return build_config(raw)


def assert_finite_log(work_dir, steps: int) -> None:
    """``work_dir/log.csv`` has one row per step, each with finite D and G losses."""
    rows = (work_dir / "log.csv").read_text().splitlines()[1:]
    assert len(rows) == steps and all(np.isfinite([float(v) for v in r.split(",")[2:4]]).all() for r in rows)


def level_losses(cfg, device: str, steps: int = 2, bf16: bool = False, compile_backend: str | None = None) -> list[float]:
    """D and G losses of ``steps`` training steps of level 2 from the same initial weights and
    inputs on any device, optionally under bf16 autocast or torch.compile."""
    torch.manual_seed(0)
    level = Level(cfg, 2, n_classes=3, device=device)  # built on the CPU, then moved: same weights everywhere
    if compile_backend:
        level.compile(compile_backend)
    spec, prev = cfg.level(2), cfg.level(1)
    gen = torch.Generator().manual_seed(1)
    b = cfg.train(2).batch_size
    real = (torch.rand(b, 3, spec.window_out, spec.resolution, spec.resolution, generator=gen) * 2 - 1).to(device)
    cond = (torch.rand(b, 3, spec.window, prev.resolution, prev.resolution, generator=gen) * 2 - 1).to(device)
    label = torch.randint(0, 3, (b,), generator=gen).to(device)
    losses = []
    with torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=bf16):
        for step in range(steps):
            for sub in range(cfg.train(2).d_steps):
                draws = level.draws(step, sub, b, slice(0, b), spec.window_out, 2)
                losses.append(float(level.update_D(real, cond, cond, label, draws)))
            draws = level.draws(step, cfg.train(2).d_steps, b, slice(0, b), spec.window_out, 1)
            losses.append(float(level.update_G(cond, label, draws)))
    return losses


@pytest.mark.parametrize("recon", [0.0, 10.0])
def test_micro_batches_accumulate_the_whole_batch_gradient(tmp_path, recon):
    """``train.micro_batch`` splits each update into micro-batches whose weighted gradients add
    up to the whole batch's. With the networks in eval mode (stored normalisation statistics, no
    spectral-norm power iteration: the two things that legitimately differ per micro-batch) and
    in float64 (so that summation order does not blur the comparison), a D and a G update of
    batch 7 in micro-batches of 3 (an uneven last one) give the losses and gradients of the
    whole batch at once."""
    results, B = [], 7
    for micro in (0, 3):
        cfg = tiny_level_config(tmp_path, batch_size=B, micro_batch=micro, recon=recon)
        torch.manual_seed(0)
        level = Level(cfg, 2, n_classes=3)
        level.opt_d.step = level.opt_g.step = lambda: None  # keep the weights: compare gradients of one state
        spec, prev = cfg.level(2), cfg.level(1)
        gen = torch.Generator().manual_seed(1)
        real = torch.rand(B, 3, spec.window_out, spec.resolution, spec.resolution, generator=gen, dtype=torch.float64) * 2 - 1
        cond = torch.rand(B, 3, spec.window, prev.resolution, prev.resolution, generator=gen, dtype=torch.float64) * 2 - 1
        label = torch.randint(0, 3, (B,), generator=gen)
        with torch.no_grad():  # populate the per-frame statistics (a float32 training pass), then freeze them
            level.G(torch.randn(B, level.preset.z_dim, generator=gen), label, cond.float())
        level.G.eval().double(), level.D.eval().double()
        draws_d, draws_g = level.draws(0, 0, B, slice(0, B), spec.window_out, 2), level.draws(0, 2, B, slice(0, B), spec.window_out, 1)
        draws_d.z, draws_g.z = draws_d.z.double(), draws_g.z.double()
        loss_d = level.update_D(real, cond, cond, label, draws_d)
        grads_d = [p.grad.clone() for p in level.D.parameters()]
        loss_g = level.update_G(cond, label, draws_g, real, cond)
        grads_g = [p.grad.clone() for p in level.G.parameters() if p.grad is not None]
        results.append((loss_d, grads_d, loss_g, grads_g))
    (whole_d, whole_gd, whole_g, whole_gg), (micro_d, micro_gd, micro_g, micro_gg) = results
    torch.testing.assert_close(micro_d, whole_d, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(micro_g, whole_g, rtol=1e-10, atol=1e-12)
    assert len(micro_gd) == len(whole_gd) and len(micro_gg) == len(whole_gg) > 0
    for a, b in zip(micro_gd + micro_gg, whole_gd + whole_gg):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-10 * b.abs().max().item())
    assert any(g.abs().max() > 1e-3 for g in whole_gg)  # the gradients compared are not all ~0


def test_a_compiler_crash_names_the_setting_to_change(tmp_path):
    """A crash inside torch.compile's backend (as Triton's did on an H200) surfaces as one error
    naming the config key that turns compilation off, with the compiler's own error chained."""
    from cvg.train.level import CompileError

    def broken_backend(graph, example_inputs):
        raise RuntimeError("PassManager::run failed")

    with pytest.raises(CompileError, match=r"level 2: torch.compile \(backend 'broken_backend'\).*train.compile: false.*train.levels\[1\]") as info:
        level_losses(tiny_level_config(tmp_path), "cpu", compile_backend=broken_backend)
    assert "PassManager::run failed" in str(info.value.__cause__)


def test_bf16_autocast_and_compiled_graphs_on_cpu(tmp_path):
    """The CPU side of test_cuda.py's check: a level's updates under bf16 autocast and traced by
    torch.compile (the "aot_eager" backend: the same graph capture and autograd tracing as on a
    GPU, without the C++ code generation) follow the eager fp32 losses."""
    cfg = tiny_level_config(tmp_path)
    eager = level_losses(cfg, "cpu")
    compiled = level_losses(cfg, "cpu", compile_backend="aot_eager")
    bf16 = level_losses(cfg, "cpu", bf16=True)
    np.testing.assert_allclose(compiled, eager, rtol=1e-5, atol=1e-5)
    assert np.isfinite(bf16).all() and bf16 != eager
    np.testing.assert_allclose(bf16, eager, rtol=0.05, atol=0.1)  # bf16: an 8-bit mantissa, over a few steps


def test_each_level_trains_and_checkpoints_load_safely(tiny_data, tmp_path):
    root, raw = tiny_data
    cfg = make_config(raw)
    index = root / "data" / "index.csv"
    train_level(cfg, 1, index, tmp_path / "level1.pt", tmp_path / "work1", progress=False)
    train_level(cfg, 2, index, tmp_path / "level2.pt", tmp_path / "work2", [str(tmp_path / "level1.pt")], progress=False)
    for level in (1, 2):
        state = load_checkpoint(tmp_path / f"level{level}.pt")  # weights_only=True
        assert state["index"] == level and state["step"] == 3 and state["n_classes"] == 6
        log = (tmp_path / f"work{level}" / "log.csv").read_text().splitlines()
        assert len(log) == 4  # header + 3 steps
        for row in log[1:]:
            _, _, loss_d, loss_g, rate, _ = row.split(",")
            assert all(map(lambda v: torch.isfinite(torch.tensor(float(v))), (loss_d, loss_g))) and float(rate) > 0
        assert (tmp_path / f"work{level}" / "samples" / "step0000002.png").stat().st_size > 0
    with pytest.raises(ValueError, match="needs the checkpoints of levels 1..1"):
        train_level(cfg, 2, index, tmp_path / "x.pt", tmp_path / "w", [], progress=False)


def test_non_finite_loss_names_the_step(tiny_data, tmp_path):
    root, raw = tiny_data
    cfg = make_config(raw, lr_d=1e38, lr_g=1e38, steps=50, checkpoint_every=1000)
    with pytest.raises(NonFiniteLossError, match=r"level 1: non-finite loss at step \d+"):
        train_level(cfg, 1, root / "data" / "index.csv", tmp_path / "l1.pt", tmp_path / "w", progress=False)


def test_ema_averages_the_generator_with_a_warmup(tiny_data):
    _, raw = tiny_data
    level = Level(make_config(raw, ema=0.5), 1, 6)
    before = [p.clone() for p in level.G_ema.parameters()]
    with torch.no_grad():
        for p in level.G.parameters():
            p.add_(1.0)
    level.update_ema(1)  # warm-up: decay (1 + 1) / (10 + 1) < 0.5
    for old, new, live in zip(before, level.G_ema.parameters(), level.G.parameters()):
        torch.testing.assert_close(new, old + (1 - 2 / 11) * (live - old))
    level.update_ema(1000)  # the configured decay
    for old, new, live in zip(before, level.G_ema.parameters(), level.G.parameters()):
        mid = old + (1 - 2 / 11) * (live - old)
        torch.testing.assert_close(new, mid + 0.5 * (live - mid))
    assert level.G_final is level.G_ema and not any(p.requires_grad for p in level.G_ema.parameters())
    assert Level(make_config(raw), 1, 6).G_ema is None  # ema 0 (the paper's setting): no copy


def test_ema_ramp_sets_how_far_back_the_average_reaches(tiny_data):
    """``ema_ramp`` k: decay (1 + n) / (k + n). k = 2 weighs every update alike (the initial weights
    count twice); the default 10 weighs the last updates most."""
    _, raw = tiny_data

    def average_after(ramp, n=5):
        level = Level(make_config(raw, ema=0.9999, ema_ramp=ramp), 1, 6)
        start = [p.clone() for p in level.G.parameters()]
        for update in range(1, n + 1):  # G's weights are start + update after each update
            with torch.no_grad():
                for p, p0 in zip(level.G.parameters(), start):
                    p.copy_(p0 + update)
            level.update_ema(update)
        return [(avg - p0).mean().item() for avg, p0 in zip(level.G_ema.parameters(), start)]

    plain = average_after(2)
    assert plain == pytest.approx([15 / 7] * len(plain), rel=1e-5)  # (1 + ... + 5) / (5 + 2)
    assert all(a < b for a, b in zip(average_after(3), average_after(10)))  # a shorter ramp reaches further back


def level2_batch(raw, root):
    from cvg.data.windows import PyramidWindows

    cfg = make_config(raw)
    items = [PyramidWindows(cfg, root / "data" / "index.csv", 2)[i] for i in range(4)]
    return {key: torch.stack([item[key] for item in items]) for key in ("video", "cond", "label")}


def test_reconstruction_term_pulls_the_generator_towards_the_real_pairs(tiny_data):
    root, raw = tiny_data
    batch = level2_batch(raw, root)
    real, cond, label = batch["video"], batch["cond"], batch["label"]

    def run(recon, steps, with_real=True):
        torch.manual_seed(0)
        level = Level(make_config(raw, recon=recon, lr_g=1e-3), 2, 6)
        losses = []
        for step in range(steps):
            draws = level.draws(step, 0, 4, slice(0, 4), level.spec.window_out, 1)
            losses.append(float(level.update_G(cond, label, draws, *((real, cond) if with_real else ()))))
        with torch.no_grad():
            error = (level.G(draws.z, label, cond) - real).square().mean().item()
        return losses, error

    # recon 0 (the paper's objective): the real pairs are not used at all
    assert run(0.0, 2) == run(0.0, 2, with_real=False)
    # a dominant reconstruction weight: G's loss is (almost) the squared error, and it falls
    start, _ = run(1e3, 1)
    losses, error = run(1e3, 15)
    assert losses[-1] < 0.8 * losses[0] and error < start[0] / 1e3


def cvg_train(cfg_path, index, out, work, *extra):
    return [sys.executable, "-m", "cvg.cli", "train", "--config", str(cfg_path), "--level", "1", "--index", str(index),
            "--out", str(out), "--work", str(work), *extra]


def test_sigkilled_run_resumes_to_the_bitwise_same_weights(tiny_data, tmp_path):
    root, raw = tiny_data
    index = root / "data" / "index.csv"
    raw = copy.deepcopy(raw)
    raw["train"]["defaults"].update(steps=8, checkpoint_every=2, ema=0.9)  # the exported G is the average
    cfg_path = tmp_path / "cfg.yaml"
    cfg_path.write_text(yaml.safe_dump(raw))
    subprocess.run(cvg_train(cfg_path, index, tmp_path / "a.pt", tmp_path / "work_a"), check=True, capture_output=True)

    proc = subprocess.Popen(cvg_train(cfg_path, index, tmp_path / "b.pt", tmp_path / "work_b"), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    latest = tmp_path / "work_b" / "latest.pt"
    deadline = time.time() + 120
    while not latest.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert latest.exists() and not (tmp_path / "b.pt").exists(), "the run was not interrupted mid-way"
    killed_at = int(load_checkpoint(latest)["step"])
    assert 2 <= killed_at < 8
    subprocess.run(cvg_train(cfg_path, index, tmp_path / "b.pt", tmp_path / "work_b"), check=True, capture_output=True)

    a, b = load_checkpoint(tmp_path / "a.pt"), load_checkpoint(tmp_path / "b.pt")
    for part in ("G", "D"):
        assert a[part].keys() == b[part].keys()
        for key in a[part]:
            assert torch.equal(a[part][key], b[part][key]), f"{part}.{key} differs after resume from step {killed_at}"
    assert (tmp_path / "work_b" / "log.csv").read_text() .count("\n") == 9  # header + steps 1..8, no duplicates


def test_two_process_ddp_matches_single_process(tiny_data, tmp_path):
    root, raw = tiny_data
    index = root / "data" / "index.csv"
    raw = copy.deepcopy(raw)
    raw["train"]["defaults"].update(steps=3, batch_size=4, procs=2)
    cfg_path = tmp_path / "cfg.yaml"
    cfg_path.write_text(yaml.safe_dump(raw))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run(cvg_train(cfg_path, index, tmp_path / "one.pt", tmp_path / "w1", "--device", "cpu"), check=True, capture_output=True, env=env)
    command = cvg_train(cfg_path, index, tmp_path / "two.pt", tmp_path / "w2", "--launcher", "torchrun", "--device", "cpu")
    out = subprocess.run(command, capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    one, two = load_checkpoint(tmp_path / "one.pt"), load_checkpoint(tmp_path / "two.pt")
    worst = 0.0
    for part in ("G", "D"):
        for key in one[part]:
            if one[part][key].is_floating_point():
                worst = max(worst, (one[part][key] - two[part][key]).abs().max().item())
    # same global batch, noise, frames and synchronised BN: only the all-reduce summation order differs
    assert worst < 1e-4, worst


def test_two_process_ddp_with_micro_batches(tiny_data, tmp_path):
    """The accumulation path under DDP (no_sync until each rank's last micro-batch) trains to
    the end with finite losses and a final checkpoint; so does level 2 on it, whose frozen
    level-1 conditioning is then made one micro-batch at a time."""
    root, raw = tiny_data
    raw = copy.deepcopy(raw)
    raw["train"]["defaults"].update(steps=2, batch_size=4, procs=2, micro_batch=1)
    cfg_path = tmp_path / "cfg.yaml"
    cfg_path.write_text(yaml.safe_dump(raw))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run(cvg_train(cfg_path, root / "data" / "index.csv", tmp_path / "two.pt", tmp_path / "w", "--launcher", "torchrun", "--device", "cpu"),
                         capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    assert load_checkpoint(tmp_path / "two.pt")["step"] == 2
    assert_finite_log(tmp_path / "w", 2)
    train_level(build_config(raw), 2, root / "data" / "index.csv", tmp_path / "level2.pt", tmp_path / "w2", [str(tmp_path / "two.pt")], progress=False)
    assert_finite_log(tmp_path / "w2", 2)


@pytest.mark.parametrize("index", [1, 2])
def test_frozen_generator_loads_from_its_checkpoint_without_initialising(tmp_path, index):
    """load_generator skips orthogonal init and loads the checkpoint: the same weights, buffers
    (per-frame statistics included) and outputs as a generator initialised and then loaded; a
    checkpoint missing a tensor is refused."""
    from cvg.models.presets import build_generator
    from cvg.train.loop import load_generator

    cfg = tiny_level_config(tmp_path)
    level = Level(cfg, index, n_classes=3)
    spec = cfg.level(index)
    z, label = torch.randn(2, level.preset.z_dim), torch.tensor([0, 2])
    cond = None if index == 1 else torch.rand(2, 3, spec.window, cfg.level(index - 1).resolution, cfg.level(index - 1).resolution) * 2 - 1
    args = (z, label) if index == 1 else (z, label, cond)
    with torch.no_grad():
        level.G(*args)  # a training-mode pass: per-frame running statistics to carry over
    save_atomic({"G": level.G.state_dict(), "index": index, "n_classes": 3}, tmp_path / "g.pt")
    loaded = load_generator(cfg, tmp_path / "g.pt")
    reference = build_generator(level.preset, cfg.levels, index, 3, refine=cfg.model.refine)
    reference.load_state_dict(level.G.state_dict())
    reference.eval()
    assert not loaded.training
    for (name, mine), (_, theirs) in zip(loaded.state_dict().items(), reference.state_dict().items()):
        assert torch.equal(mine, theirs), name
    with torch.no_grad():
        assert torch.equal(loaded(*args), reference(*args))
    partial = level.G.state_dict()
    partial.pop(next(iter(partial)))
    save_atomic({"G": partial, "index": index, "n_classes": 3}, tmp_path / "partial.pt")
    with pytest.raises(RuntimeError, match="Missing key"):
        load_generator(cfg, tmp_path / "partial.pt")
