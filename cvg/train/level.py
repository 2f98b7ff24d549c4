"""A cascade level as a trainable unit (long-video-gan style): it owns its generator,
discriminators and optimisers and exposes ``update_D`` / ``update_G``. The cascade is a list
of levels; training is greedy (eq. 3 of the paper): level l trains against *real* pairs
(x^l, x^{l-1}) from data and *fake* pairs (G_l(z, x̂^{l-1}), x̂^{l-1}) whose x̂^{l-1} comes
from the frozen levels 1..l-1.

Randomness that defines a step (noise, labels of fakes, spatial-D frame picks) is drawn for
the *global* batch from a generator seeded by (seed, step) and each process takes its slice,
so a distributed run makes the same draws as a single-process one with the same global batch.
"""

from __future__ import annotations

import contextlib
import copy
import functools
from dataclasses import dataclass

import torch
import torch.nn as nn
from torch.nn.parallel import DistributedDataParallel as DDP

from cvg.config import Config, LevelSpec, TrainSpec
from cvg.models.discriminators import d_hinge_loss, g_hinge_loss
from cvg.models.presets import ModelPreset, build_discriminators, build_generator, get_preset
from cvg.seeding import keyed_generator
from cvg.train.spectrum import spectrum_loss


@dataclass
class Draws:
    """Per-step random draws for this process's slice of the global batch."""

    z: torch.Tensor
    frames: torch.Tensor | None  # spatial-D frame indices, (2B, k) for [real; fake] or (B, k)


def take_rows(x: torch.Tensor | None, rows: slice) -> torch.Tensor | None:
    """``x[rows]`` for optional batch tensors (labels, conditioning)."""
    return None if x is None else x[rows]


def _no_sync(module: nn.Module, skip: bool):
    """DDP's ``no_sync`` (gradients stay local until the last micro-batch's backward) when
    ``skip`` and ``module`` is DDP, also under torch.compile's wrapper; otherwise a no-op."""
    ddp = getattr(module, "_orig_mod", module)
    return ddp.no_sync() if skip and hasattr(ddp, "no_sync") else contextlib.nullcontext()


def on_device(module: nn.Module, device: torch.device) -> nn.Module:
    """``module`` moved to ``device``, untouched when it is there already (the memory account's
    fake tensors cannot be swapped by ``Module.to``, and need not be)."""
    tensors = [*module.parameters(), *module.buffers()]
    if all(t.device == device or (device.index is None and t.device.type == device.type) for t in tensors):
        return module
    return module.to(device)


class CompileError(RuntimeError):
    """torch.compile could not build a level's kernels: a failure of the compiler stack, not of training."""


def is_compile_failure(exc: BaseException) -> bool:
    """Dynamo wraps a backend's crash in BackendCompilerFailed; inductor (torch >= 2.6) raises InductorError."""
    from torch._dynamo.exc import BackendCompilerFailed

    return isinstance(exc, BackendCompilerFailed) or type(exc).__name__ == "InductorError"


def explain_compile_failures(update):
    """Turn a compiler crash inside a compiled update into an error that names the setting to
    change (a Triton build failure of a fused FrameNorm reduction is on record in
    docs/gpu_runs.md), instead of a page of inductor internals."""

    @functools.wraps(update)
    def wrapped(self, *args, **kwargs):
        try:
            return update(self, *args, **kwargs)
        except Exception as exc:
            if self.compiled is None or not is_compile_failure(exc):
                raise
            first = next((ln.strip() for ln in str(exc).splitlines() if ln.strip()), "")
            raise CompileError(
                f"level {self.index}: torch.compile (backend {self.compiled!r}) could not build this level's kernels on "
                f"{self.device} with torch {torch.__version__} ({type(exc).__name__}: {first}). Train it eagerly: set "
                f"train.compile: false (in train.defaults, or in train.levels[{self.index - 1}] for this level alone) and rerun"
            ) from exc

    return wrapped


class Level:
    def __init__(self, config: Config, index: int, n_classes: int, device: torch.device | str = "cpu"):
        self.config, self.index, self.device = config, index, torch.device(device)
        self.spec: LevelSpec = config.level(index)
        self.prev: LevelSpec | None = config.level(index - 1) if index > 1 else None
        self.train_spec: TrainSpec = config.train(index)
        self.preset: ModelPreset = get_preset(config.model.preset, config.model.width)
        self.n_classes = n_classes
        self.G = on_device(build_generator(self.preset, config.levels, index, n_classes, refine=config.model.refine), self.device)
        self.D = on_device(build_discriminators(self.preset, config.levels, index, n_classes, matching=config.model.matching), self.device)
        t = self.train_spec
        self.opt_g = torch.optim.Adam(self.G.parameters(), lr=t.lr_g, betas=t.betas)
        self.opt_d = torch.optim.Adam(self.D.parameters(), lr=t.lr_d, betas=t.betas)
        # an averaged copy of G (BigGAN-style): what the final checkpoint holds when ema > 0, because
        # it averages out the step-to-step noise of the GAN game that single iterates carry
        self.G_ema: nn.Module | None = copy.deepcopy(self.G).eval().requires_grad_(False) if t.ema > 0 else None
        # wrappers used for the forward passes (DistributedDataParallel when distributed)
        self.G_run: nn.Module = self.G
        self.compiled: str | None = None  # the torch.compile backend, once compile() has run
        self.D_plain = Discriminators(self.D)  # no DDP wrapper: the G step needs no D gradients synced
        self.D_run: nn.Module = self.D_plain

    def wrap(self, world: int, compile: bool, verbose: bool = True) -> None:
        """The forward wrappers of training: DistributedDataParallel across ``world`` processes,
        then torch.compile where asked (``train.compile``; on CUDA only: a CPU run stays eager)."""
        if world > 1:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.G_run = DDP(self.G, device_ids=ids, broadcast_buffers=False)
            self.D_run = DDP(self.D_run, device_ids=ids, broadcast_buffers=False)
        if compile and self.device.type == "cuda":
            self.compile()
        elif compile and verbose:
            print(f"level {self.index}: train.compile applies on CUDA only; running eagerly on {self.device.type}", flush=True)

    def compile(self, backend="inductor") -> None:
        """torch.compile the forward wrappers (after any DDP wrapping): the G step's generator and
        the D step's discriminators, the passes that carry gradients. (``backend``: the CPU test
        traces with "aot_eager", which skips the minutes of C++ code generation.)"""
        self.G_run, self.D_run = torch.compile(self.G_run, backend=backend), torch.compile(self.D_run, backend=backend)
        self.compiled = backend if isinstance(backend, str) else getattr(backend, "__name__", repr(backend))

    # -- randomness ------------------------------------------------------------------
    def draws(self, step: int, sub: int, global_batch: int, rank_slice: slice, frames: int, pairs: int) -> Draws:
        gen = keyed_generator(self.train_spec.seed, self.index, step, sub)
        z = torch.randn(global_batch, self.preset.z_dim, generator=gen)[rank_slice]
        picks = self.D["spatial"].frame_index(pairs * global_batch, frames, gen)
        if picks is not None:  # rows [0, B) for the first set of videos, [B, 2B) for the second
            picks = picks.view(pairs, global_batch, -1)[:, rank_slice].reshape(-1, picks.shape[-1])
        return Draws(z=z.to(self.device), frames=picks)

    # -- forward helpers ---------------------------------------------------------------
    def generate(self, z: torch.Tensor, label: torch.Tensor | None, cond: torch.Tensor | None, module: nn.Module | None = None) -> torch.Tensor:
        g = module or self.G_run
        return g(z, label, cond)

    def scores(self, video, cond, label, frames, module: nn.Module | None = None) -> list[torch.Tensor]:
        d = module or self.D_run
        return d(video, cond, label, frames)

    # -- updates -------------------------------------------------------------------------
    def micro_batches(self, b: int) -> list[slice]:
        """This process's batch of ``b`` in slices of ``train.micro_batch`` (0: one slice)."""
        m = self.train_spec.micro_batch or b
        return [slice(i, min(i + m, b)) for i in range(0, b, m)]

    @explain_compile_failures
    def update_D(self, real: torch.Tensor, real_cond, fake_cond, label, draws: Draws) -> torch.Tensor:
        """One discriminator step on a batch of real pairs and freshly generated fake pairs,
        accumulated over micro-batches (each weighted by its share, so that the step's gradient
        is that of the batch mean) before one optimiser step."""
        b = real.shape[0]
        chunks = self.micro_batches(b)
        self.opt_d.zero_grad(set_to_none=True)
        total = None
        for i, c in enumerate(chunks):
            with torch.no_grad():
                fake = self.generate(draws.z[c], take_rows(label, c), take_rows(fake_cond, c), module=self.G)
            n = fake.shape[0]
            video = torch.cat([real[c], fake])
            cond = None if real_cond is None else torch.cat([real_cond[c], fake_cond[c]])
            both_labels = None if label is None else torch.cat([label[c], label[c]])
            frames = None if draws.frames is None else torch.cat([draws.frames[c], draws.frames[b:][c]])
            with _no_sync(self.D_run, i < len(chunks) - 1):
                scores = self.scores(video, cond, both_labels, frames)
                loss = d_hinge_loss([s[:n] for s in scores], [s[n:] for s in scores])
                if len(chunks) > 1:
                    loss = loss * (n / b)
                loss.backward()
            total = loss.detach() if total is None else total + loss.detach()
        self.opt_d.step()
        return total

    @explain_compile_failures
    def update_G(self, fake_cond, label, draws: Draws, real: torch.Tensor | None = None, real_cond: torch.Tensor | None = None) -> torch.Tensor:
        """One generator step; D is frozen (no grads) and called without its DDP wrapper.
        Gradients are accumulated over micro-batches as in ``update_D``.

        With ``train.recon`` > 0 (upsampling levels; not the paper's objective) G also maps the
        real conditioning windows ``real_cond`` and pays ``recon * mean (G(z, x^{l-1}) - x^l)^2``: both
        halves go through one forward, so the DDP wrapper sees one graph per step. With
        ``train.spectrum`` > 0 (not the paper's either) it also pays ``spectrum`` times the
        distance between the log radial power spectra of its fakes and of ``real``
        (``cvg.train.spectrum``)."""
        b = draws.z.shape[0]
        chunks = self.micro_batches(b)
        recon = self.train_spec.recon > 0 and real_cond is not None
        spectral = self.train_spec.spectrum > 0 and real is not None
        self.opt_g.zero_grad(set_to_none=True)
        total = None
        self.D.requires_grad_(False)
        try:
            for i, c in enumerate(chunks):
                z, lab, cond = draws.z[c], take_rows(label, c), take_rows(fake_cond, c)
                frames = None if draws.frames is None else draws.frames[c]
                n = z.shape[0]
                with _no_sync(self.G_run, i < len(chunks) - 1):
                    if recon:
                        out = self.generate(torch.cat([z, z]), None if lab is None else torch.cat([lab, lab]), torch.cat([cond, real_cond[c]]))
                        fake = out[:n]
                    else:
                        fake = self.generate(z, lab, cond)
                    loss = g_hinge_loss(self.scores(fake, cond, lab, frames, module=self.D_plain))
                    if recon:
                        loss = loss + self.train_spec.recon * (out[n:] - real[c]).square().mean()
                    if spectral:
                        loss = loss + self.train_spec.spectrum * spectrum_loss(fake, real[c], self.train_spec.spectrum_form)
                    if len(chunks) > 1:
                        loss = loss * (n / b)
                    loss.backward()
                total = loss.detach() if total is None else total + loss.detach()
        finally:
            self.D.requires_grad_(True)
        self.opt_g.step()
        return total

    @torch.no_grad()
    def update_ema(self, updates: int) -> None:
        """Move G_ema towards G after generator update number ``updates`` (1-based). The decay ramps
        up as (1 + n) / (k + n) to ``ema``, k = ``train.ema_ramp``, so that a short run is not
        dominated by the initial weights: until ``ema`` caps it, the average weights update m of n
        about as m^(k - 2) (k = 2: the plain average of all updates, 3: weights growing linearly,
        10: mostly the last tenth of the run)."""
        if self.G_ema is None:
            return
        k = self.train_spec.ema_ramp
        decay = min(self.train_spec.ema, (1 + updates) / (k + updates))
        torch._foreach_lerp_(list(self.G_ema.parameters()), list(self.G.parameters()), 1.0 - decay)
        for mine, theirs in zip(self.G_ema.buffers(), self.G.buffers()):  # BN statistics: G's (sized lazily)
            mine.resize_as_(theirs).copy_(theirs)

    @property
    def G_final(self) -> nn.Module:
        """The generator a checkpoint exports for sampling: the average when there is one."""
        return self.G if self.G_ema is None else self.G_ema

    # -- state -----------------------------------------------------------------------------
    def state_dict(self) -> dict:
        state = {"G": self.G.state_dict(), "D": self.D.state_dict(), "opt_g": self.opt_g.state_dict(), "opt_d": self.opt_d.state_dict()}
        if self.G_ema is not None:
            state["G_ema"] = self.G_ema.state_dict()
        return state

    def load_state_dict(self, state: dict) -> None:
        self.G.load_state_dict(state["G"])
        self.D.load_state_dict(state["D"])
        self.opt_g.load_state_dict(state["opt_g"])
        self.opt_d.load_state_dict(state["opt_d"])
        if self.G_ema is not None:
            if "G_ema" not in state:
                raise ValueError("the checkpoint to resume has no averaged generator (G_ema) but train.ema > 0: "
                                 "resume with the ema it was started with, or start the level afresh")
            self.G_ema.load_state_dict(state["G_ema"])


class Discriminators(nn.Module):
    """All of a level's discriminators as one module (one DDP wrapper, one forward)."""

    def __init__(self, ds: nn.ModuleDict):
        super().__init__()
        self.ds = ds

    def forward(self, video, cond, label, frames):
        return run_discriminators(self.ds, video, cond, label, frames)


def run_discriminators(ds: nn.ModuleDict, video, cond, label, frames) -> list[torch.Tensor]:
    out = []
    for name, d in ds.items():
        if name == "matching":
            out.append(d(video, cond, label))
        elif name == "spatial":
            out.append(d(video, label, frames))
        else:
            out.append(d(video, label))
    return out
