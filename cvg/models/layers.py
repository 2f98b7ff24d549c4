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

import contextlib
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


def _wide(x: torch.Tensor) -> torch.Tensor:
    """``x`` in the precision the norms compute in: fp32, or fp64 for fp64 inputs."""
    return x if x.dtype == torch.float64 else x.float()


def frame_stats(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Population mean and variance per (timestep, channel) in fp32, all-reduced across
    workers. On CUDA by ``var_mean`` (one Welford reduction): from sums of x and x², inductor
    fuses the reduction with the following ReLU's backward into a kernel that Triton has failed
    to build (docs/gpu_runs.md). On the CPU by those sums, which are faster there than
    ``var_mean`` (and which the CPU's inductor builds)."""
    dims, n = (0, 3, 4), float(x.shape[0] * x.shape[3] * x.shape[4])
    x = _wide(x)
    distributed = _distributed()
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
        return frame_stats(x)

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

    def affine(self, cond: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The (B, C) gain and bias of condition ``cond``."""
        return 1.0 + self.gain(cond), self.bias(cond)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        gain, bias = self.affine(cond)
        return self.norm(x) * gain[:, :, None, None, None] + bias[:, :, None, None, None]


# how a fused norm-ReLU-conv applies its conv (``norm_relu_conv``)
FRAMES, FRAMES_UP, VIDEO = "frames", "frames_up", "video"
_reference_composition = False


@contextmanager
def reference_composition():
    """Within it, ``norm_relu_conv`` composes the plain autograd ops (norm, ReLU, nearest 2x, conv)
    instead of its fused function: the reference the fused one is tested against."""
    global _reference_composition
    previous, _reference_composition = _reference_composition, True
    try:
        yield
    finally:
        _reference_composition = previous


def upsampling_phase_weights(weight: torch.Tensor) -> list[torch.Tensor]:
    """A 3x3 conv of the nearest-2x-upsampled input as four 2x2 convs of the input itself, one per
    output phase (row parity a, column parity b): output pixel (2i + a, 2j + b) reads input rows
    i - 1 + a .. i + a with the 3x3 kernel's rows summed onto the two rows they fall on
    (a = 0: [w0, w1 + w2]; a = 1: [w0 + w1, w2]), and columns alike. The same function, 2.25x
    fewer multiplications, and nothing at the upsampled size is kept for the backward."""
    rows = weight.new_tensor([[[1.0, 0.0, 0.0], [0.0, 1.0, 1.0]], [[1.0, 1.0, 0.0], [0.0, 0.0, 1.0]]])  # (parity, tap, 3x3 row)
    return [torch.einsum("pi,qj,ocij->ocpq", rows[a], rows[b], weight) for a in (0, 1) for b in (0, 1)]


def _convolve(r: torch.Tensor, mode: str, weights, bias) -> torch.Tensor:
    """The conv of a fused norm-ReLU-conv. ``r``: (B*T, C, H, W) frame-major for FRAMES and
    FRAMES_UP, (B, C, T, H, W) for VIDEO; returns the same layout at the output size."""
    if mode == VIDEO:
        (w,) = weights
        return F.conv3d(r, w, bias, padding=tuple(k // 2 for k in w.shape[2:]))
    if mode == FRAMES:
        (w,) = weights
        return F.conv2d(r, w, bias, padding=w.shape[-1] // 2)
    n, _, h, w = r.shape
    padded = F.pad(r, (1, 1, 1, 1))
    out = r.new_empty(n, weights[0].shape[0], h, 2, w, 2)
    for k, weight in enumerate(weights):
        a, b = divmod(k, 2)
        out[:, :, :, a, :, b] = F.conv2d(padded[:, :, a : a + h + 1, b : b + w + 1], weight, bias)
    return out.view(n, -1, 2 * h, 2 * w)


def _convolve_backward(grad: torch.Tensor, r: torch.Tensor, mode: str, weights, has_bias: bool):
    """Gradients of ``_convolve`` with respect to ``r``, each weight, and the bias."""
    def one(g, x, w, padding):
        return torch.ops.aten.convolution_backward(g, x, w, [w.shape[0]] if has_bias else None, [1] * (w.dim() - 2), padding,
                                                   [1] * (w.dim() - 2), False, [0] * (w.dim() - 2), 1, [True, True, has_bias])

    if mode in (VIDEO, FRAMES):
        (w,) = weights
        g_r, g_w, g_b = one(grad, r, w, [k // 2 for k in w.shape[2:]])
        return g_r, [g_w], g_b
    n, c, h, w = r.shape
    padded = F.pad(r, (1, 1, 1, 1))
    g_padded = torch.zeros_like(padded)
    grad = grad.view(n, grad.shape[1], h, 2, w, 2)
    g_ws, g_b = [], None
    for k, weight in enumerate(weights):
        a, b = divmod(k, 2)
        g_x, g_w, g_bk = one(grad[:, :, :, a, :, b], padded[:, :, a : a + h + 1, b : b + w + 1], weight, [0, 0])
        g_padded[:, :, a : a + h + 1, b : b + w + 1] += g_x
        g_ws.append(g_w)
        g_b = g_bk if g_b is None else g_b + g_bk
    return g_padded[:, :, 1:-1, 1:-1], g_ws, g_b


def _frames(x: torch.Tensor) -> torch.Tensor:
    """(B, C, T, H, W) -> (B*T, C, H, W), a view when ``x`` is frame-major (a per-frame conv's output)."""
    b, c, t, h, w = x.shape
    return x.transpose(1, 2).reshape(b * t, c, h, w)


def _video(y: torch.Tensor, b: int) -> torch.Tensor:
    """(B*T, C, H, W) -> the (B, C, T, H, W) view of it (frame-major)."""
    return y.view(b, -1, *y.shape[1:]).transpose(1, 2)


class _NormReluConv(torch.autograd.Function):
    """conv(relu(per-frame BN(x) * gain + bias)) keeping only ``x`` (and the conv's weights and the
    per-(timestep, channel) statistics) for its backward: the normalised and activated tensors are
    recomputed there from ``x`` (elementwise work; no conv is recomputed), so a norm-ReLU-conv
    keeps one tensor where the composed autograd ops keep five (the input, its centred and
    normalised copies, the ReLU's output and the conv's copy of it). Batch statistics are
    all-reduced across workers in the forward and their gradient sums in the backward (the
    synchronised BN of several workers equals one worker's). Computes in fp32; the conv runs in
    autocast's dtype when autocast is on, as it would outside."""

    @staticmethod
    def forward(ctx, x, gain, bias, mean, var, eps, training, mode, conv_dtype, conv_bias, *weights):
        b, c, t = x.shape[:3]
        if training:
            mean, var = frame_stats(x)  # (T, C) fp32, all-reduced (a Function's forward runs without autograd)
        else:  # the running statistics, returned as outputs of their own
            mean, var = mean.clone(), var.clone()
        inv = torch.rsqrt(var + eps)
        r = _activate(x, mean, inv, gain, bias, mode)
        dtype = conv_dtype or x.dtype
        y = _convolve(r.to(dtype), mode, [w.to(dtype) for w in weights], None if conv_bias is None else conv_bias.to(dtype))
        ctx.save_for_backward(x, gain, bias, mean, inv, conv_bias, *weights)
        ctx.training, ctx.mode, ctx.dtype, ctx.b = training, mode, dtype, b
        ctx.mark_non_differentiable(mean, var)
        return (y if mode == VIDEO else _video(y, b)), mean, var

    @staticmethod
    def backward(ctx, grad, _grad_mean, _grad_var):
        x, gain, bias, mean, inv, conv_bias, *weights = ctx.saved_tensors
        mode, dtype, b = ctx.mode, ctx.dtype, ctx.b
        # the temporaries are the step's peak at large micro-batches: each one is freed as soon as
        # it is used, and the reductions go through einsum (no elementwise product kept)
        xhat = _normalised(x, mean, inv, mode)  # fp32, in the conv's input layout
        g4 = _channels(gain, xhat, mode)
        z = torch.addcmul(_channels(bias, xhat, mode), xhat, g4)
        positive = z > 0
        r = z.clamp_(min=0)
        del z
        if r.dtype != dtype:
            r = r.to(dtype)
        grad = grad if mode == VIDEO else _frames(grad)
        g_r, g_ws, g_b = _convolve_backward(grad.to(dtype), r, mode, [w.to(dtype) for w in weights], conv_bias is not None)
        del r, grad
        g_z = _wide(g_r).mul_(positive)
        del g_r, positive
        # per (example, channel, frame): Q = sum over space of g_z, P = of g_z * xhat
        if mode == VIDEO:  # (B, C, T, H, W)
            q, p = g_z.sum((3, 4)), torch.einsum("bcthw,bcthw->bct", g_z, xhat)
        else:  # (B*T, C, H, W) -> (B, C, T)
            q = g_z.sum((2, 3)).view(b, -1, g_z.shape[1]).transpose(1, 2)
            p = torch.einsum("nchw,nchw->nc", g_z, xhat).view(b, -1, g_z.shape[1]).transpose(1, 2)
        g_bias, g_gain = q.sum(2), p.sum(2)
        g_xhat = g_z.mul_(g4)
        if ctx.training:
            g = _wide(gain)[:, :, None]
            s1, s2 = (g * q).sum(0).t(), (g * p).sum(0).t()  # (T, C): sums over batch and space of g_xhat, g_xhat * xhat
            n = float(x.shape[0] * x.shape[3] * x.shape[4])
            if _distributed():
                packed = torch.cat([s1.flatten(), s2.flatten(), s1.new_tensor([n])])
                dist.all_reduce(packed)
                s1, s2, n = packed[: s1.numel()].view_as(s1), packed[s1.numel() : -1].view_as(s2), packed[-1]
            g_xhat.sub_(_broadcast(s1 / n, g_xhat, mode, b)).sub_(xhat.mul_(_broadcast(s2 / n, g_xhat, mode, b)))
        del xhat
        g_x = g_xhat.mul_(_broadcast(inv, g_xhat, mode, b))
        g_x = g_x if mode == VIDEO else _video(g_x, b)
        g_ws = [g.to(w.dtype) for g, w in zip(g_ws, weights)]
        g_b = None if g_b is None else g_b.to(conv_bias.dtype)
        return (g_x.to(x.dtype), g_gain.to(gain.dtype), g_bias.to(bias.dtype), None, None, None, None, None, None, g_b, *g_ws)


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def _broadcast(v: torch.Tensor, like: torch.Tensor, mode: str, b: int) -> torch.Tensor:
    """A (T, C) statistic broadcast against ``like`` in the conv's input layout."""
    if mode == VIDEO:
        return v.t()[None, :, :, None, None]
    return v[:, :, None, None].repeat(b, 1, 1, 1)


def _channels(v: torch.Tensor, like: torch.Tensor, mode: str) -> torch.Tensor:
    """A (B, C) gain or bias broadcast against ``like`` in the conv's input layout, in fp32."""
    v = _wide(v)
    if mode == VIDEO:
        return v[:, :, None, None, None]
    return v.repeat_interleave(like.shape[0] // v.shape[0], 0)[:, :, None, None]


def _normalised(x: torch.Tensor, mean: torch.Tensor, inv: torch.Tensor, mode: str) -> torch.Tensor:
    """(x - mean) * inv in fp32, (B, C, T, H, W) for VIDEO, frame-major (B*T, C, H, W) otherwise."""
    b = x.shape[0]
    if mode == VIDEO:
        return (_wide(x) - mean.t()[None, :, :, None, None]).mul_(inv.t()[None, :, :, None, None])
    xf = _frames(x)
    return (_wide(xf) - _broadcast(mean, xf, mode, b)).mul_(_broadcast(inv, xf, mode, b))


def _activate(x, mean, inv, gain, bias, mode) -> torch.Tensor:
    xhat = _normalised(x, mean, inv, mode)
    return xhat.mul_(_channels(gain, xhat, mode)).add_(_channels(bias, xhat, mode)).clamp_(min=0)


def norm_relu_conv(norm: ConditionalNorm, x: torch.Tensor, cond: torch.Tensor, conv: nn.Module, mode: str) -> torch.Tensor:
    """``conv(relu(norm(x, cond)))``: ``mode`` FRAMES applies a 2D conv to every frame, FRAMES_UP
    upsamples every frame 2x (nearest) before it, VIDEO applies a 3D conv. One fused function
    (``_NormReluConv``) that keeps only ``x`` for the backward; within ``reference_composition``
    the plain autograd ops (the reference it is tested against)."""
    if _reference_composition:
        h = F.relu(norm(x, cond))
        if mode == VIDEO:
            return conv(h)
        if mode == FRAMES_UP:
            h = F.interpolate(h, scale_factor=(1, 2, 2), mode="nearest")
        return per_frame(conv, h)
    frame_norm = norm.norm
    gain, bias = norm.affine(cond)
    mean = var = None
    if not frame_norm.training:
        mean, var = frame_norm.stats(x.shape[2])
    weights = upsampling_phase_weights(conv.weight) if mode == FRAMES_UP else [conv.weight]
    autocast = x.device.type in ("cpu", "cuda")  # not on shape-only (meta) tensors
    conv_dtype = torch.get_autocast_dtype(x.device.type) if autocast and torch.is_autocast_enabled(x.device.type) else None
    with torch.autocast(x.device.type, enabled=False) if autocast else contextlib.nullcontext():
        y, mean, var = _NormReluConv.apply(x, gain, bias, mean, var, frame_norm.eps, frame_norm.training, mode, conv_dtype, conv.bias, *weights)
    if frame_norm.training:
        frame_norm._update_running(mean, var)
    return y


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
        if self.temporal:  # norm-relu-temporal conv fused, then the separable conv's spatial half
            h = self.conv1.spatial(norm_relu_conv(self.norm1, x, cond, self.conv1.temporal, VIDEO))
            h = self.conv2.spatial(norm_relu_conv(self.norm2, h, cond, self.conv2.temporal, VIDEO))
        else:
            h = norm_relu_conv(self.norm1, x, cond, self.conv1, FRAMES_UP if self.upsample else FRAMES)
            h = norm_relu_conv(self.norm2, h, cond, self.conv2, FRAMES)
        if _reference_composition:
            skip = self._up(x)
            return h + (per_frame(self.skip, skip) if self.skip is not None else skip)
        # a 1x1 conv commutes with nearest upsampling: applied first, at the input's size, as a 3D
        # conv of the whole video (no per-frame copy of x, which the fused norm keeps already)
        skip = F.conv3d(x, self.skip.weight[:, :, None]) if self.skip is not None else x
        return h + self._up(skip)


class _InputGradConv(torch.autograd.Function):
    """A conv whose weight takes no gradient (the frozen discriminator of a G step): it keeps only
    the weight for its backward, which needs only the input's gradient; autograd's own conv would
    keep the input too, for a weight gradient nobody asks for."""

    @staticmethod
    def forward(ctx, x, weight, bias, padding):
        ctx.save_for_backward(weight)
        ctx.shape, ctx.padding, ctx.has_bias = x.shape, padding, bias is not None
        conv = F.conv3d if x.dim() == 5 else F.conv2d
        return conv(x, weight, bias, padding=padding)

    @staticmethod
    def backward(ctx, grad):
        (weight,) = ctx.saved_tensors
        n = len(ctx.shape) - 2
        g_x = torch.ops.aten.convolution_backward(grad, grad.new_empty(()).expand(ctx.shape), weight, None, [1] * n, list(ctx.padding),
                                                  [1] * n, False, [0] * n, 1, [True, False, False])[0]
        return g_x, None, None, None


class _MaskReLU(torch.autograd.Function):
    """ReLU keeping a one-byte mask for its backward instead of its output (which, in a frozen
    discriminator, nothing else keeps: ``_InputGradConv`` does not)."""

    @staticmethod
    def forward(ctx, x):
        positive = x > 0
        ctx.save_for_backward(positive)
        return x * positive

    @staticmethod
    def backward(ctx, grad):
        (positive,) = ctx.saved_tensors
        return grad * positive


def _frozen(conv: nn.Module) -> bool:
    """A conv whose weight takes no gradient, outside the composed reference. Reads the stored
    weight: evaluating a spectral-norm weight would run a power iteration."""
    stored = conv.parametrizations.weight.original if hasattr(conv, "parametrizations") else conv.weight
    return not _reference_composition and not stored.requires_grad and torch.is_grad_enabled()


class DBlock(nn.Module):
    """Discriminator ResNet block: [relu]-conv-relu-conv-[avgpool], no normalisation, plus shortcut.

    3D blocks pool space only (time is kept, so outputs stay per timestep); 2D blocks
    process every frame independently. Frozen (a G step: no weight takes a gradient), the block
    keeps one-byte ReLU masks for its backward and nothing else (``_InputGradConv``,
    ``_MaskReLU``, the pooling as a mean of 2x2 views, whose backward needs no input).
    """

    def __init__(self, cin: int, cout: int, downsample: bool, three_d: bool, preactivate: bool = True):
        super().__init__()
        self.downsample, self.three_d, self.preactivate = downsample, three_d, preactivate
        make = conv3d if three_d else conv2d
        self.conv1, self.conv2 = make(cin, cout), make(cout, cout)
        self.skip = make(cin, cout, 1) if (cin != cout or downsample) else None

    def _pool(self, x: torch.Tensor, frozen: bool) -> torch.Tensor:
        if not self.downsample:
            return x
        if frozen:  # the same average, by a reshape and a mean: autograd keeps no input for it
            b, c, t, h, w = x.shape
            return x.reshape(b, c, t, h // 2, 2, w // 2, 2).mean((4, 6))
        return F.avg_pool3d(x, (1, 2, 2))  # space only, for 2D and 3D blocks alike

    def _conv(self, conv, x, frozen: bool):
        if not frozen:
            return conv(x) if self.three_d else per_frame(conv, x)
        weight = conv.weight
        if self.three_d:
            return _InputGradConv.apply(x, weight, conv.bias, tuple(k // 2 for k in weight.shape[2:]))
        return per_frame(lambda f: _InputGradConv.apply(f, weight, conv.bias, (weight.shape[-1] // 2,) * 2), x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        frozen = _frozen(self.conv1)
        relu = _MaskReLU.apply if frozen else F.relu
        h = relu(x) if self.preactivate else x
        h = self._conv(self.conv2, relu(self._conv(self.conv1, h, frozen)), frozen)
        h = self._pool(h, frozen)
        skip = x
        if self.skip is not None:  # conv then pool on the shortcut (BigGAN-style)
            skip = self._pool(self._conv(self.skip, x, frozen), frozen)
        return h + skip
