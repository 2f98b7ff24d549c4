"""A judge trained on the experiment's own data: a small video classifier (class = the demo's
shape x motion), trained on the real training clips, scores each generated set by how often a
clip is classified as the class it was generated for (accuracy; chance is 1 / classes) and by the
Inception-style score of its predictions. I3D features of small synthetic clips barely move when
samples gain or lose their objects; a classifier of those very classes does.

The classifier is cached next to the real-clip statistics, keyed by the data's fingerprint and its
own settings, and trained deterministically under its seed.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from cvg.checkpoint import CheckpointError, load_checkpoint, save_atomic

CLASSIFIER_SIZE = 32  # frames are resized to this square before the network


class VideoClassifier(nn.Module):
    """Three strided 3D convolutions, global average pooling, a linear head."""

    def __init__(self, n_classes: int, width: int = 24):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv3d(3, width, 3, stride=(1, 2, 2), padding=1), nn.ReLU(),
            nn.Conv3d(width, 2 * width, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv3d(2 * width, 4 * width, 3, stride=2, padding=1), nn.ReLU(),
        )
        self.head = nn.Linear(4 * width, n_classes)

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        """uint8 (B, T, H, W, 3) -> logits (B, classes)."""
        return self.head(self.features(prepare(clips)).mean(dim=(2, 3, 4)))


def prepare(clips: torch.Tensor) -> torch.Tensor:
    b, t, h, w, _ = clips.shape
    x = clips.permute(0, 1, 4, 2, 3).reshape(b * t, 3, h, w).float().div_(127.5).sub_(1)
    if (h, w) != (CLASSIFIER_SIZE, CLASSIFIER_SIZE):
        x = F.interpolate(x, size=(CLASSIFIER_SIZE, CLASSIFIER_SIZE), mode="bilinear", antialias=True, align_corners=False)
    return x.reshape(b, t, 3, CLASSIFIER_SIZE, CLASSIFIER_SIZE).transpose(1, 2)


def train_classifier(clips: np.ndarray, labels: np.ndarray, n_classes: int, steps: int, seed: int = 0, batch: int = 32) -> VideoClassifier:
    """Train on uint8 (N, T, H, W, 3) clips; each step a random batch and random temporal
    offsets of half the clip length (so the judge sees motion, not a fixed frame)."""
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = VideoClassifier(n_classes)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    data, target = torch.from_numpy(np.ascontiguousarray(clips)), torch.from_numpy(labels.astype(np.int64))
    t = data.shape[1]
    span = max(1, t // 2)
    model.train()
    for _ in range(steps):
        rows = torch.randint(0, len(data), (min(batch, len(data)),), generator=gen)
        start = int(torch.randint(0, t - span + 1, (1,), generator=gen))
        loss = F.cross_entropy(model(data[rows, start : start + span]), target[rows])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


@torch.no_grad()
def predict(model: VideoClassifier, clips: np.ndarray, batch: int = 64) -> np.ndarray:
    """Class probabilities (N, classes), averaged over the clip's first and second halves."""
    data = torch.from_numpy(np.ascontiguousarray(clips))
    span = max(1, data.shape[1] // 2)
    probs = []
    for i in range(0, len(data), batch):
        chunk = data[i : i + batch]
        views = [chunk[:, :span], chunk[:, -span:]]
        probs.append(torch.stack([F.softmax(model(v), 1) for v in views]).mean(0))
    return torch.cat(probs).numpy()


def classifier_scores(probs: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Accuracy against the intended classes, and the Inception-style score exp(E KL(p(y|x) || p(y)))."""
    accuracy = float((probs.argmax(1) == labels).mean())
    marginal = probs.mean(0, keepdims=True)
    kl = (probs * (np.log(probs + 1e-12) - np.log(marginal + 1e-12))).sum(1)
    return {"ACC": accuracy, "CIS": float(np.exp(kl.mean()))}


def cached_classifier(cache: Path, key: dict, train) -> VideoClassifier:
    """The classifier of ``key`` from ``cache`` (a state dict loaded safely), else ``train()``ed and cached."""
    text = json.dumps(key, sort_keys=True)
    path = Path(cache) / f"classifier_{hashlib.sha256(text.encode()).hexdigest()[:12]}.pt"
    if path.exists():
        try:
            state = load_checkpoint(path)
        except CheckpointError as exc:
            print(f"{exc}: training the classifier again", flush=True)
            state = {}
        if state.get("key") == text:
            model = VideoClassifier(int(state["n_classes"]))
            model.load_state_dict(state["weights"])
            return model.eval()
    model = train()
    save_atomic({"key": text, "n_classes": model.head.out_features, "weights": model.state_dict()}, path)
    return model
