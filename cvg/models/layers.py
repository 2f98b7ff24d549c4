"""Building blocks of the appendix's networks. Videos are (B, C, T, H, W) throughout.

* spectral norm on every conv / linear (first singular value, one power iteration per step)
  and orthogonal initialisation;
* per-frame batch normalisation: statistics per (timestep, channel) over batch and space,
  synchronised across distributed workers, with running statistics per timestep;
* conditional BN whose gain and bias are a learned linear map of the condition vector
  (noise, concatenated with the class embedding when class-conditional);
* ConvGRU with a ReLU candidate (DVD-GAN), separable 3D conv (temporal 3, then 3x3),
  generator ResNet up-blocks (norm-act-[upsample]-conv-norm-act-conv) and discriminator
  ResNet blocks (relu-conv-relu-conv-[avgpool], no normalisation), in 2D and 3D.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
import torch.distributed as dist
import torch.distributed.nn  # noqa: F401  (autograd-aware all_reduce for synchronised BN)
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils.parametrizations import spectral_norm

_skip_orthogonal_init = False


@contextmanager
def skipped_orthogonal_init():
    """Within it, networks are built without orthogonal init: for networks whose every tensor a
    checkpoint overwrites at once (a resumed level, a frozen level loaded by ``load_generator``),
    where the QR decompositions of paper-width layers cost tens of seconds per network on a CPU."""
    global _skip_orthogonal_init
    previous, _skip_orthogonal_init = _skip_orthogonal_init, True
    try:
        yield
    finally:
        _skip_orthogonal_init = previous


def orthogonal_init(weight: torch.Tensor) -> None:
    """Orthogonal init; skipped on meta tensors (shape-only, where QR is needlessly slow) and
    within ``skipped_orthogonal_init``."""
    if not weight.is_meta and not _skip_orthogonal_init:
        nn.init.orthogonal_(weight)


def sn(module: nn.Module) -> nn.Module:
    """Orthogonal init, then spectral normalisation by the first singular value."""
    orthogonal_init(module.weight)
    if getattr(module, "bias", None) is not None:
        nn.init.zeros_(module.bias)
    return spectral_norm(module, n_power_iterations=1)


def conv2d(cin: int, cout: int, kernel: int = 3, bias: bool = True) -> nn.Module:
    return sn(nn.Conv2d(cin, cout, kernel, padding=kernel // 2, bias=bias))


def conv3d(cin: int, cout: int, kernel=3, bias: bool = True) -> nn.Module:
    kernel = (kernel,) * 3 if isinstance(kernel, int) else tuple(kernel)
    return sn(nn.Conv3d(cin, cout, kernel, padding=tuple(k // 2 for k in kernel), bias=bias))


def linear(cin: int, cout: int, bias: bool = True) -> nn.Module:
    return sn(nn.Linear(cin, cout, bias=bias))


def per_frame(fn, x: torch.Tensor) -> torch.Tensor:
    """Apply a 2D op to every frame of (B, C, T, H, W) by folding time into the batch."""
    b, c, t, h, w = x.shape
    y = fn(x.transpose(1, 2).reshape(b * t, c, h, w))
    return y.reshape(b, t, *y.shape[1:]).transpose(1, 2)


@torch.library.custom_op("cvg::update_running_stats", mutates_args=("running_mean", "running_var", "batches_tracked"))
def update_running_stats(
    running_mean: torch.Tensor, running_var: torch.Tensor, batches_tracked: torch.Tensor, mean: torch.Tensor, var: torch.Tensor, momentum: float
) -> None:
    """Move the first ``len(mean)`` timesteps of the running statistics towards the batch's
    (momentum < 0: cumulative average). An opaque op, so that torch.compile neither fuses
    these in-place buffer updates into the statistics' reduction nor breaks the graph around
    them."""
    batches_tracked.add_(1)
    m = momentum if momentum >= 0 else 1.0 / float(batches_tracked)
    t = mean.shape[0]
    running_mean[:t].lerp_(mean, m)
    running_var[:t].lerp_(var, m)


@update_running_stats.register_fake
def _(running_mean, running_var, batches_tracked, mean, var, momentum) -> None:
    return None


class FrameNorm(nn.Module):
    """Batch norm with per-frame statistics (over batch and space, per timestep and channel).

    Training: batch statistics, all-reduced across workers when torch.distributed is
    initialised (synchronised BN on CPU/gloo and CUDA/NCCL alike). Running statistics are kept
    per timestep. Evaluation, by ``eval_stats``:
      * ``"per_frame"`` (paper): the running statistics of each timestep; a clip longer than
        the statistics held needs ``recompute_frame_stats`` at that length first;
      * ``"stationary"``: the mean of the per-timestep statistics for every frame, which makes
        a generator a time-invariant (truly convolutional) function for unrolling.
    """

    def __init__(self, channels: int, eps: float = 1e-4, momentum: float | None = 0.1):
        super().__init__()
        self.channels, self.eps, self.momentum = channels, eps, momentum
        self.eval_stats = "per_frame"
        self.time_offset = 0  # first timestep of the input within the statistics (chunked unrolling)
        self.register_buffer("running_mean", torch.zeros(0, channels))
        self.register_buffer("running_var", torch.ones(0, channels))
        self.register_buffer("batches_tracked", torch.zeros((), dtype=torch.long))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        for name in ("running_mean", "running_var"):  # the number of timesteps is data, not shape
            if prefix + name in state_dict:
                setattr(self, name, torch.empty_like(state_dict[prefix + name]))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def _batch_stats(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Population mean and variance per (timestep, channel) in fp32, all-reduced across
        workers. On CUDA by ``var_mean`` (one Welford reduction): from sums of x and x², inductor
        fused the reduction with the following ReLU's backward into a kernel that Triton 3.6
        failed to build on an H200 (docs/gpu_runs.md). On the CPU by those sums, which run 1.5-3x
        faster there than ``var_mean`` (and which the CPU's inductor builds)."""
        dims, n = (0, 3, 4), float(x.shape[0] * x.shape[3] * x.shape[4])
        x = x.float()
        distributed = dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
        if x.is_cuda:
            var, mean = torch.var_mean(x, dims, correction=0)  # (C, T)
            if not distributed:
                return mean.t(), var.t()
            s1, s2 = mean * n, (var + mean.pow(2)) * n
        else:
            s1, s2 = x.sum(dims), x.pow(2).sum(dims)  # (C, T)
        count = torch.tensor(n, device=x.device)
        if distributed:
            packed = torch.cat([s1.flatten(), s2.flatten(), count.view(1)])
            packed = torch.cat(dist.nn.functional.all_reduce(packed).split([s1.numel(), s2.numel(), 1]))
            s1, s2, count = packed[: s1.numel()].view_as(s1), packed[s1.numel() : -1].view_as(s2), packed[-1]
        mean = s1 / count
        var = (s2 / count - mean.pow(2)).clamp_min(0)
        return mean.t(), var.t()  # (T, C)

    @torch.no_grad()
    def _update_running(self, mean: torch.Tensor, var: torch.Tensor) -> None:
        t = mean.shape[0]
        if self.running_mean.shape[0] < t:  # first time at this length: start from the batch
            grow = t - self.running_mean.shape[0]
            self.running_mean = torch.cat([self.running_mean, mean[-grow:].detach()])
            self.running_var = torch.cat([self.running_var, var[-grow:].detach()])
        momentum = -1.0 if self.momentum is None else float(self.momentum)
        update_running_stats(self.running_mean, self.running_var, self.batches_tracked, mean.detach(), var.detach(), momentum)

    def stats(self, t: int) -> tuple[torch.Tensor, torch.Tensor]:
        if self.eval_stats == "stationary":
            mean, var = self.running_mean.mean(0, keepdim=True), self.running_var.mean(0, keepdim=True)
            return mean.expand(t, -1), var.expand(t, -1)
        start, stop = self.time_offset, self.time_offset + t
        if self.running_mean.shape[0] < stop:
            raise RuntimeError(
                f"FrameNorm holds statistics for {self.running_mean.shape[0]} frames but got frames {start}..{stop - 1}: "
                "run cvg.models.layers.recompute_frame_stats at this length or use eval_stats='stationary'"
            )
        return self.running_mean[start:stop], self.running_var[start:stop]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = x.shape[2]
        if self.training:
            mean, var = self._batch_stats(x)
            self._update_running(mean, var)
        else:
            mean, var = self.stats(t)
        mean = mean.t()[None, :, :, None, None].to(x.dtype)
        inv = torch.rsqrt(var.t()[None, :, :, None, None] + self.eps).to(x.dtype)
        return (x - mean) * inv


class ConditionalNorm(nn.Module):
    """FrameNorm whose per-channel gain and bias are linear maps of a condition vector."""

    def __init__(self, channels: int, cond_dim: int):
        super().__init__()
        self.norm = FrameNorm(channels)
        self.gain = linear(cond_dim, channels)
        self.bias = linear(cond_dim, channels)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        gain = 1.0 + self.gain(cond)[:, :, None, None, None]
        bias = self.bias(cond)[:, :, None, None, None]
        return self.norm(x) * gain + bias


def set_norm_eval_stats(model: nn.Module, mode: str) -> None:
    if mode not in ("per_frame", "stationary"):
        raise ValueError(f"eval_stats must be 'per_frame' or 'stationary', got {mode!r}")
    for m in model.modules():
        if isinstance(m, FrameNorm):
            m.eval_stats = mode


def set_time_offset(model: nn.Module, offset: int) -> None:
    for m in model.modules():
        if isinstance(m, FrameNorm):
            m.time_offset = offset


@torch.no_grad()
def recompute_frame_stats(model: nn.Module, forward, passes: int) -> None:
    """Re-estimate every FrameNorm's per-timestep statistics with ``passes`` dummy forwards.

    The appendix runs 200 such passes before unrolling a generator beyond its training length.
    ``forward()`` runs one batch at the target length; statistics become the exact average.
    """
    norms = [m for m in model.modules() if isinstance(m, FrameNorm)]
    saved = [(m.momentum, m.training) for m in norms]
    was_training = model.training
    model.train()
    for m in norms:
        m.running_mean = m.running_mean[:0]
        m.running_var = m.running_var[:0]
        m.batches_tracked.zero_()
        m.momentum = None
    for _ in range(passes):
        forward()
    for m, (momentum, _) in zip(norms, saved):
        m.momentum = momentum
    model.train(was_training)


class ConvGRU(nn.Module):
    """Convolutional GRU over time with a ReLU candidate; returns every hidden state."""

    def __init__(self, cin: int, hidden: int):
        super().__init__()
        self.hidden = hidden
        self.gates = conv2d(cin + hidden, 2 * hidden)
        self.candidate = conv2d(cin + hidden, hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, t, h, w = x.shape
        state = x.new_zeros(b, self.hidden, h, w)
        outputs = []
        for i in range(t):
            inp = x[:, :, i]
            reset, update = torch.sigmoid(self.gates(torch.cat([inp, state], 1))).chunk(2, 1)
            cand = F.relu(self.candidate(torch.cat([inp, reset * state], 1)))
            state = update * state + (1 - update) * cand
            outputs.append(state)
        return torch.stack(outputs, 2)


class SeparableConv3d(nn.Module):
    """Temporal conv (kernel 3 over time) followed by a spatial 3x3 conv."""

    def __init__(self, cin: int, cout: int, bias: bool = True):
        super().__init__()
        self.temporal = conv3d(cin, cout, (3, 1, 1), bias=False)
        self.spatial = conv3d(cout, cout, (1, 3, 3), bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.spatial(self.temporal(x))


class GBlock(nn.Module):
    """Generator ResNet block: cnorm-relu-[nearest 2x]-conv-cnorm-relu-conv, plus shortcut.

    ``temporal=True`` makes it a 3D ResNet block whose two convs are separable 3D convs
    (temporal kernel 3, then 3x3: the upsampling levels' unit head, appendix B.2); otherwise
    both convs are 2D and applied to every frame independently.
    """

    def __init__(self, cin: int, cout: int, cond_dim: int, upsample: bool, temporal: bool = False):
        super().__init__()
        self.upsample, self.out_channels = upsample, cout
        self.norm1, self.norm2 = ConditionalNorm(cin, cond_dim), ConditionalNorm(cout, cond_dim)
        self.temporal = temporal
        self.temporal_convs = 2 if temporal else 0  # each reaches one frame further on either side
        # every conv here feeds a normalisation (this block's or the next one's), which removes
        # a bias exactly: a bias would only collect zero-mean gradient noise
        self.conv1 = SeparableConv3d(cin, cout, bias=False) if temporal else conv2d(cin, cout, bias=False)
        self.conv2 = SeparableConv3d(cout, cout, bias=False) if temporal else conv2d(cout, cout, bias=False)
        self.skip = conv2d(cin, cout, 1, bias=False) if (cin != cout) else None

    def _up(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, scale_factor=(1, 2, 2), mode="nearest") if self.upsample else x

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        h = self._up(F.relu(self.norm1(x, cond)))
        h = self.conv1(h) if self.temporal else per_frame(self.conv1, h)
        h = F.relu(self.norm2(h, cond))
        h = self.conv2(h) if self.temporal else per_frame(self.conv2, h)
        skip = self._up(x)
        return h + (per_frame(self.skip, skip) if self.skip is not None else skip)


class DBlock(nn.Module):
    """Discriminator ResNet block: [relu]-conv-relu-conv-[avgpool], no normalisation, plus shortcut.

    3D blocks pool space only (time is kept, so outputs stay per timestep); 2D blocks
    process every frame independently.
    """

    def __init__(self, cin: int, cout: int, downsample: bool, three_d: bool, preactivate: bool = True):
        super().__init__()
        self.downsample, self.three_d, self.preactivate = downsample, three_d, preactivate
        make = conv3d if three_d else conv2d
        self.conv1, self.conv2 = make(cin, cout), make(cout, cout)
        self.skip = make(cin, cout, 1) if (cin != cout or downsample) else None

    def _pool(self, x: torch.Tensor) -> torch.Tensor:
        if not self.downsample:
            return x
        return F.avg_pool3d(x, (1, 2, 2))  # space only, for 2D and 3D blocks alike

    def _conv(self, conv, x):
        return conv(x) if self.three_d else per_frame(conv, x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(x) if self.preactivate else x
        h = self._conv(self.conv2, F.relu(self._conv(self.conv1, h)))
        h = self._pool(h)
        skip = x
        if self.skip is not None:  # conv then pool on the shortcut (BigGAN-style)
            skip = self._pool(self._conv(self.skip, x))
        return h + skip
