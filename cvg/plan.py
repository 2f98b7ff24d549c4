"""``cvg plan``: the memory and FLOPs of every level's training step, before a cluster run.

The step is the trainer's (``train.d_steps`` calls of ``Level.update_D``, one ``Level.update_G``,
``Level.update_ema``, under the config's precision and micro-batch), run on fake tensors with
``cvg.memory.StorageAccount`` counting the bytes: peak by category (parameters and buffers,
gradients, optimiser state, the moving average of G, activations saved for a backward, other
temporaries) and by the module whose forward created them; FLOPs by
``torch.utils.flop_counter.FlopCounterMode``. Seconds per level on a CPU, any width.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import math
import warnings
from collections import defaultdict
from pathlib import Path

import torch
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.nn.utils.parametrizations import _SpectralNorm
from torch.utils.flop_counter import FlopCounterMode

from cvg.config import Config, build_config
from cvg.errors import CvgError
from cvg.experiment import processes
from cvg.memory import CUDA_MARGIN, GIB, StorageAccount, serials
from cvg.models.layers import skipped_orthogonal_init
from cvg.models.presets import build_generator, get_preset
from cvg.train.level import Level

CATEGORIES = ("parameters", "gradients", "optimizer", "ema", "frozen levels", "inputs", "saved", "temporaries")
MICRO_BATCHES = (1, 2, 4, 8)


@dataclasses.dataclass
class StepAccount:
    """The account of one training step of one level."""

    level: int
    micro_batch: int  # examples in the step's one forward and backward
    precision: str
    peak_bytes: int  # everything alive at the peak, parameters included
    baseline_bytes: int  # alive before the step: parameters, buffers, EMA, the batch
    peak_phase: str
    by_category: dict[str, int]
    by_module: dict[str, int]  # saved activations and temporaries at the peak, by creating module
    flops: int  # per step (all micro-batches, d_steps D updates and one G update)

    @property
    def peak_gib(self) -> float:
        return self.peak_bytes / GIB

    @property
    def cuda_peak_gib(self) -> float:
        """The account's estimate of ``torch.cuda.max_memory_allocated`` for the step, weights included."""
        return self.peak_bytes * (1 + CUDA_MARGIN) / GIB

    @property
    def growth_gib(self) -> float:
        """Peak minus what was alive before the step (what ``benchmarks`` measure on CUDA)."""
        return (self.peak_bytes - self.baseline_bytes) / GIB

    @property
    def tflop_per_example(self) -> float:
        return self.flops / self.micro_batch / 1e12

    def modules(self, depth: int = 3, top: int = 10) -> list[tuple[str, int]]:
        """The ``top`` modules (names cut to ``depth`` parts, e.g. ``G.blocks.13``) by the saved
        activations and temporaries their forwards created that are alive at the peak."""
        merged: dict[str, int] = defaultdict(int)
        for name, nbytes in self.by_module.items():
            merged[".".join(name.split(".")[:depth])] += nbytes
        return sorted(merged.items(), key=lambda kv: -kv[1])[:top]

    def to_dict(self) -> dict:
        return {**dataclasses.asdict(self), "peak_gib": self.peak_gib, "cuda_peak_gib": self.cuda_peak_gib, "growth_gib": self.growth_gib,
                "tflop_per_example": self.tflop_per_example}


def account_step(config: Config, index: int, micro_batch: int, precision: str | None = None, n_classes: int | None = None,
                 flops: bool = True) -> StepAccount:
    """Account one training step of level ``index`` of ``config`` at ``micro_batch`` examples per
    GPU (the whole per-GPU batch in one forward and backward), with ``precision`` (default: the
    config's ``train.precision``)."""
    spec, t = config.level(index), config.train(index)
    precision = precision or t.precision
    batch = micro_batch  # the whole batch in one forward and backward: the step's memory is a micro-batch's
    config = _with_train(config, index, {"batch_size": batch, "micro_batch": 0, "precision": precision})
    train = config.train(index)
    preset = get_preset(config.model.preset, config.model.width)
    classes = n_classes if n_classes is not None else (preset.n_classes if config.dataset.conditional else 0)
    prev = config.level(index - 1) if index > 1 else None
    account = StorageAccount()
    counter = FlopCounterMode(display=False) if flops else contextlib.nullcontext()
    quiet = warnings.catch_warnings()  # deepcopy of fake tensors (the trainer's G_ema) warns of their data pointers
    with quiet, FakeTensorMode(allow_non_fake_inputs=True), account, skipped_orthogonal_init():
        warnings.simplefilter("ignore")
        with _shape_only_spectral_norm_init():
            level = Level(config, index, max(classes, 0), device="cpu")
            # the frozen lower levels the trainer holds on the same GPU to make the fake pairs
            frozen = [build_generator(preset, config.levels, i, classes, refine=config.model.refine).eval() for i in range(1, index)]
        if level.G_ema is not None:  # deepcopy gives tensors of another fake mode: build the average's copy afresh
            level.G_ema = build_generator(level.preset, config.levels, index, classes, refine=config.model.refine).eval().requires_grad_(False)
        real = torch.rand(batch, 3, spec.window_out, spec.resolution, spec.resolution) * 2 - 1
        cond = torch.rand(batch, 3, spec.window, prev.resolution, prev.resolution) * 2 - 1 if prev else None
        fake_cond = torch.rand(batch, 3, spec.window, prev.resolution, prev.resolution) * 2 - 1 if prev else None
        label = torch.zeros(batch, dtype=torch.long) if classes else None
        inputs = [t for t in (real, cond, fake_cond, label) if t is not None]
        account.start()
        baseline = account.current
        whole = slice(0, batch)
        with account.modules({"G": level.G, "D": level.D}), account.saved_tensors(), counter:
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
                for sub in range(train.d_steps):
                    draws = level.draws(0, sub, batch, whole, spec.window_out, pairs=2)
                    with account.during(f"D step {sub + 1}"):
                        level.update_D(real, cond, fake_cond, label, draws)
                draws = level.draws(0, train.d_steps, batch, whole, spec.window_out, pairs=1)
                with account.during("G step"):
                    level.update_G(fake_cond, label, draws, real, cond)
            with account.during("EMA"):
                level.update_ema(1)
        account.finish()
        categories = _categorise(account, level, inputs, frozen)
    by_module: dict[str, int] = defaultdict(int)
    for record in account.peak_live.values():
        if record.phase != "setup" and categories.get(record.serial) in ("saved", "temporaries"):
            by_module[record.module or "(outside modules)"] += record.nbytes
    by_category = {c: 0 for c in CATEGORIES}
    for record in account.peak_live.values():
        by_category[categories.get(record.serial, "temporaries")] += record.nbytes
    return StepAccount(index, micro_batch, precision, account.peak, baseline, account.peak_phase, by_category,
                       dict(sorted(by_module.items(), key=lambda kv: -kv[1])), int(counter.get_total_flops()) if flops else 0)


@contextlib.contextmanager
def _shape_only_spectral_norm_init():
    """Skip the 15 power iterations spectral norm runs on every weight it is registered on: on fake
    tensors they compute nothing (there are no values), and they were most of an account's time."""
    original = _SpectralNorm._power_method
    _SpectralNorm._power_method = lambda self, weight_mat, n_power_iterations: None
    try:
        yield
    finally:
        _SpectralNorm._power_method = original


def _categorise(account: StorageAccount, level, inputs, frozen) -> dict[int, str]:
    out: dict[int, str] = {}
    for serial in serials(account, (t for g in frozen for t in [*g.parameters(), *g.buffers()])):
        out[serial] = "frozen levels"
    for serial in account.saved:
        out[serial] = "saved"
    for serial in serials(account, inputs):
        out[serial] = "inputs"
    for serial in serials(account, (p for net in (level.G, level.D) for p in [*net.parameters(), *net.buffers()])):
        out[serial] = "parameters"
    for serial in serials(account, (p.grad for net in (level.G, level.D) for p in net.parameters())):
        out[serial] = "gradients"
    for opt in (level.opt_g, level.opt_d):
        for state in opt.state.values():
            for serial in serials(account, state.values()):
                out[serial] = "optimizer"
    if level.G_ema is not None:
        for serial in serials(account, [*level.G_ema.parameters(), *level.G_ema.buffers()]):
            out[serial] = "ema"
    return out


def _with_train(config: Config, index: int, overrides: dict) -> Config:
    """``config`` with ``overrides`` in level ``index``'s training settings."""
    raw = copy.deepcopy(config.raw)
    levels = raw.setdefault("train", {}).setdefault("levels", [])
    levels.extend({} for _ in range(index - len(levels)))
    levels[index - 1] = {**levels[index - 1], **overrides}
    return build_config(raw, f"{config.name} (accounted)")


def fits(peak_gib_by_batch: dict[int, float], gpu_gib: float) -> int:
    """The largest micro-batch whose peak fits ``gpu_gib`` (0: none): the peak is linear in the
    micro-batch between accounted ones, and beyond the largest along its last segment."""
    points = sorted(peak_gib_by_batch.items())
    best = max((b for b, gib in points if gib <= gpu_gib), default=0)
    if not best or len(points) < 2:
        return best
    i = [b for b, _ in points].index(best)
    (b0, g0), (b1, g1) = points[i : i + 2] if i + 1 < len(points) else points[-2:]
    slope = (g1 - g0) / (b1 - b0)
    fitting = points[i][1]
    return max(best, best + int(math.floor((gpu_gib - fitting) / slope))) if slope > 0 else best


# -- the plan ------------------------------------------------------------------------------------------------
THROUGHPUT_CSV = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "train_throughput.csv"


@dataclasses.dataclass
class LevelPlan:
    """One level's pre-flight: peak GPU memory per micro-batch, what fits, FLOPs, time."""

    level: int
    shape: str
    precision: str
    peak_gib: dict[int, float]  # micro-batch -> estimated CUDA peak, weights included
    fits: int  # the largest micro-batch within the GPU memory (0: none)
    configured: int  # the micro-batch the config trains with on one GPU
    tflop_per_example: float
    accounts: dict[int, StepAccount]
    step_s: float | None = None  # at a measured throughput, when benchmarks/ has one
    wall_h: float | None = None
    throughput_source: str = ""

    def to_dict(self) -> dict:
        return {"level": self.level, "shape": self.shape, "precision": self.precision,
                "peak_gib": {str(b): round(g, 3) for b, g in self.peak_gib.items()}, "fits": self.fits, "configured_micro_batch": self.configured,
                "tflop_per_example": round(self.tflop_per_example, 3), "step_s": self.step_s, "wall_h": self.wall_h,
                "throughput_source": self.throughput_source,
                "by_category_gib": {str(b): {k: round(v / GIB, 3) for k, v in a.by_category.items()} for b, a in self.accounts.items()}}


def per_gpu_micro_batch(config: Config, index: int, world: int | None = None) -> int:
    """Examples in one forward/backward on one GPU: ``train.micro_batch``, or the whole per-process
    batch (``train.batch_size`` over the ``world`` processes, default the config's) when it is 0."""
    t = config.train(index)
    world = world or processes(config, index, config.slurm(index).gpus_per_node)
    local = max(1, t.batch_size // max(1, world))
    return min(t.micro_batch or local, local)


def plan_level(config: Config, index: int, gpu_gib: float, precision: str | None = None, micro_batches=MICRO_BATCHES) -> LevelPlan:
    spec = config.level(index)
    precision = precision or config.train(index).precision
    accounts = {b: account_step(config, index, b, precision) for b in micro_batches}
    peaks = {b: a.cuda_peak_gib for b, a in accounts.items()}
    prev = config.level(index - 1) if index > 1 else None
    shape = f"{spec.window}/{prev.resolution} -> {spec.window_out}/{spec.resolution}" if prev else f"{spec.frames}/{spec.resolution}"
    plan = LevelPlan(index, shape, precision, peaks, fits(peaks, gpu_gib), per_gpu_micro_batch(config, index),
                     accounts[micro_batches[0]].tflop_per_example, accounts)
    measured = measured_throughput(config.model.preset, config.model.width, index, precision)
    if measured is not None:
        tflops, source = measured
        t, s = config.train(index), config.slurm(index)
        gpus = max(1, s.nodes * max(1, s.gpus_per_node))
        plan.step_s = plan.tflop_per_example * t.batch_size / gpus / tflops
        plan.wall_h = plan.step_s * t.steps / 3600
        plan.throughput_source = source
    return plan


def plan(config: Config, gpu_gib: float, precision: str | None = None, levels=None, micro_batches=MICRO_BATCHES) -> list[LevelPlan]:
    return [plan_level(config, i, gpu_gib, precision, micro_batches) for i in (levels or range(1, len(config.levels) + 1))]


def measured_throughput(preset: str, width: float, index: int, precision: str) -> tuple[float, str] | None:
    """The latest CUDA training throughput (TFLOP/s) ``benchmarks/train_throughput.py`` recorded for
    this preset, width, level and precision, and where it comes from; None without one."""
    if not THROUGHPUT_CSV.exists():
        return None
    import pandas as pd

    rows = pd.read_csv(THROUGHPUT_CSV)
    rows = rows[(rows["device"] == "cuda") & (rows["preset"] == preset) & (rows["width"] == width) & (rows["level"] == index)
                & (rows["precision"] == precision) & rows["tflop_per_s"].notna()]
    if rows.empty:
        return None
    row = rows.iloc[-1]
    gpu = row["gpu"] if "gpu" in rows and isinstance(row.get("gpu"), str) else "a GPU"
    return float(row["tflop_per_s"]), f"{row['tflop_per_s']:.0f} TFLOP/s measured on {gpu} ({row['date'][:10]}, commit {row['git']}, batch {row['batch']})"


def format_plan(config: Config, plans: list[LevelPlan], gpu_gib: float) -> str:
    batches = list(plans[0].peak_gib) if plans else []
    lines = [f"{config.name}: peak GPU memory of one training step (account of cvg.plan, weights, gradients and Adam state included; "
             f"CUDA margin {CUDA_MARGIN:.0%}), GPU of {gpu_gib:g} GiB",
             "level  shape                 precision  " + "  ".join(f"mb {b:<5}" for b in batches) + "  fits  config  TFLOP/example"]
    for p in plans:
        cells = "  ".join(f"{p.peak_gib[b]:>8.1f}" for b in batches)
        lines.append(f"{p.level:>5}  {p.shape:<21} {p.precision:<9}  {cells}  {p.fits:>4}  {p.configured:>6}  {p.tflop_per_example:>13.2f}")
    for p in plans:
        if p.fits == 0:
            lines.append(f"level {p.level} does not fit {gpu_gib:g} GiB even at micro-batch 1: it needs {p.peak_gib[batches[0]]:.1f} GiB, "
                         f"{p.peak_gib[batches[0]] - gpu_gib:.1f} GiB more")
        elif p.configured > p.fits:
            lines.append(f"level {p.level} is configured for micro-batch {p.configured}, more than the {p.fits} that fit {gpu_gib:g} GiB: "
                         f"set train.levels[{p.level - 1}].micro_batch: {p.fits}")
        if p.step_s is not None:
            lines.append(f"level {p.level}: {p.step_s:.2f} s per step, {p.wall_h:.1f} h for its steps, at {p.throughput_source}")
    return "\n".join(lines)


class DoesNotFit(CvgError, RuntimeError):
    """A level's training step would not fit the GPU's memory."""


def check_fits(config: Config, index: int, gpu_gib: float, precision: str | None = None, micro: int | None = None) -> StepAccount:
    """Refuse, before anything is allocated, a level whose micro-batch (default: the configured one
    per GPU) does not fit ``gpu_gib``; the message says by how much and which micro-batch fits."""
    micro = micro or per_gpu_micro_batch(config, index)
    account = account_step(config, index, micro, precision, flops=False)
    need = account.cuda_peak_gib
    if need <= gpu_gib:
        return account
    if micro == 1:
        raise DoesNotFit(f"level {index} does not fit {gpu_gib:.1f} GiB even at micro-batch 1: it needs {need:.1f} GiB, "
                         f"{need - gpu_gib:.1f} GiB more (`cvg plan CONFIG --modules 10` shows where the bytes go)")
    fit = fits({1: account_step(config, index, 1, precision, flops=False).cuda_peak_gib, micro: need}, gpu_gib)
    hint = f"set train.levels[{index - 1}].micro_batch: {fit}" if fit else "it does not fit even at micro-batch 1"
    raise DoesNotFit(f"level {index} at micro-batch {micro} needs {need:.1f} GiB, {need - gpu_gib:.1f} GiB more than the {gpu_gib:.1f} GiB "
                     f"of this GPU: {hint}")


def preflight(config: Config, index: int, device: torch.device, world: int) -> StepAccount | None:
    """``check_fits`` against the memory of the CUDA device a training process is about to use
    (nothing on other devices), at that process's micro-batch."""
    if device.type != "cuda":
        return None
    total = torch.cuda.get_device_properties(device).total_memory / GIB
    return check_fits(config, index, total, micro=per_gpu_micro_batch(config, index, world))
