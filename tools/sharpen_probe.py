"""What would sharper detail be worth to the metric? Scores sample files as they are and after
a fixed unsharp mask (x + amount * (x - gaussian_blur(x, sigma)), per frame) at the top level,
against the real reference statistics that ``cvg metrics`` cached.

Developer probe behind the README's "The demo" section: on real level-1 clips upsampled
bilinearly, sharpening lowers FVD; on the cascade's own level-1 samples it raises it, so an
upsampling level wins little there by adding generic detail. After a demo run:

    python tools/sharpen_probe.py results/demo/samples/bilinear.h5 results/demo/samples/bilinear_on_real.h5
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of (N, C, H, W), radius 3 sigma, replicate padding."""
    radius = max(1, int(round(3 * sigma)))
    k = torch.exp(-torch.arange(-radius, radius + 1, dtype=torch.float32) ** 2 / (2 * sigma**2))
    k = (k / k.sum()).to(x)
    c = x.shape[1]
    x = F.conv2d(F.pad(x, (radius, radius, 0, 0), mode="replicate"), k.view(1, 1, 1, -1).repeat(c, 1, 1, 1), groups=c)
    return F.conv2d(F.pad(x, (0, 0, radius, radius), mode="replicate"), k.view(1, 1, -1, 1).repeat(c, 1, 1, 1), groups=c)


def unsharp(video: np.ndarray, amount: float, sigma: float) -> np.ndarray:
    """Unsharp mask of uint8 (N, T, H, W, 3) clips, frame by frame."""
    x = torch.as_tensor(video).float().flatten(0, 1).permute(0, 3, 1, 2)
    y = (x + amount * (x - gaussian_blur(x, sigma))).clamp(0, 255).round().to(torch.uint8)
    return y.permute(0, 2, 3, 1).reshape(video.shape).numpy()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("samples", nargs="+", type=Path, help="sample files written by `cvg sample` (HDF5)")
    parser.add_argument("--reference", type=Path, default=Path("results/demo/metrics.cache/real_train_48_seed0_16f.npz"),
                        help="cached real I3D outputs written by `cvg metrics` (default: the demo's)")
    parser.add_argument("--masks", default="1:1,2:1,2:2", help="amount:sigma pairs, comma-separated (default: %(default)s)")
    parser.add_argument("--frames", type=int, default=16, help="frames scored per clip, as the reference (default: %(default)s)")
    parser.add_argument("--batch", type=int, default=4)
    args = parser.parse_args(argv)

    import h5py

    from cvg.metrics.extract import i3d_outputs
    from cvg.metrics.frechet import frechet_from_samples
    from cvg.metrics.i3d import load_i3d

    if not args.reference.exists():
        parser.error(f"{args.reference}: no cached reference statistics; run the demo (or `cvg metrics`) first")
    ref = np.load(args.reference)
    masks = [tuple(float(v) for v in pair.split(":")) for pair in args.masks.split(",")]
    model = load_i3d()

    def score(video: np.ndarray) -> tuple[float, float]:
        logits, features = i3d_outputs(model, (video[a : a + args.batch] for a in range(0, len(video), args.batch)), total=len(video))
        return frechet_from_samples(logits, ref["logits"]), frechet_from_samples(features, ref["features"])

    print("samples,amount,sigma,FVD,FID")
    for path in args.samples:
        with h5py.File(path, "r") as h5:
            top = max(int(k[5:]) for k in h5 if k.startswith("level"))
            video = h5[f"level{top}"][:, : args.frames]
        for amount, sigma in [(0.0, 1.0), *masks]:
            fvd, fid = score(video if amount == 0 else unsharp(video, amount, sigma))
            print(f"{path.stem},{amount:g},{sigma:g},{fvd:.1f},{fid:.2f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
