"""Metric tables: FVD (I3D logits), FID (I3D Mixed_5c features), IS (softmax of logits) of
generated HDF5 samples against the real clips of a split, in the tidy layout
model, level, frames, resolution, metric, value, n_samples, protocol."""

from __future__ import annotations

import json
import os
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

from cvg.atomic import atomic_path, write_csv, write_text
from cvg.clips import MIN_FRAMES, SHORT_CLIP_FRAMES
from cvg.config import Config
from cvg.data.real import in_batches, real_batches, split_rows
from cvg.data.shards import index_fingerprints, read_index
from cvg.fingerprint import Fingerprints, read_stamp, write_stamp_file
from cvg.layout import LABEL, level_key
from cvg.metrics import i3d
from cvg.metrics.classifier import cached_classifier, classifier_scores, predict, train_classifier
from cvg.metrics.extract import i3d_outputs
from cvg.metrics.frechet import frechet_from_samples, inception_score, paired_bootstrap
from cvg.metrics.i3d import K400, network_name
from cvg.metrics.protocol import RESIZE
from cvg.metrics.psd import psd_table
from cvg.tables import markdown_table
from cvg.variants import WINDOWS, paired_comparisons
from cvg.errors import InputError

COLUMNS = ["model", "level", "frames", "resolution", "metric", "value", "n_samples", "network", "protocol"]
PAIRED_COLUMNS = ["model", "baseline", "frames", "metric", "delta", "ci_low", "ci_high", "p_better", "n_boot", "n_samples"]
def eval_lengths(config: Config) -> list[int]:
    """The config's ``metrics.frames`` as a list of clip lengths."""
    return list(config.metrics.frames)


def clip_name(frames: int) -> str:
    """A clip length as protocols and cache names state it; clips shorter than I3D's minimum
    are scored stretched to 16 frames (``metrics.short_clips: repeat``), and say so."""
    return f"{frames}f" if frames >= MIN_FRAMES else f"{frames}f-repeated-to-{SHORT_CLIP_FRAMES}f"


# bumped whenever the clip preprocessing changes, so cached real statistics are recomputed
PROTOCOL_VERSION = f"{RESIZE} v2"


def protocol_name(config: Config, frames: int, training_setup: bool = False) -> str:
    """How a row was scored: network, clip length (``-training-setup``: the samples of
    ``cascade_windows``; otherwise the first frames of the unrolled videos), resize, reference."""
    m = config.metrics
    setup = "-training-setup" if training_setup else ""
    return f"{K400} {clip_name(frames)}{setup} {RESIZE} ref={m.real_split}:{m.n_real}@seed{m.seed}"


def networks(config: Config) -> dict[str, str]:
    """The network behind each metric, as the rows name it: FVD and IS on the TF-Hub
    Kinetics-400 I3D (the paper's); FID on ``metrics.fid_network`` when given (the paper's
    Kinetics-600 I3D), else on the Kinetics-400 one, which the row says is not the paper's."""
    fid = config.metrics.fid_network
    return {"FVD": f"{K400} logits", "IS": f"{K400} softmax", "IS_std": f"{K400} softmax",
            "FID": f"{network_name(fid)} Mixed_5c" if fid else f"{K400} Mixed_5c (the paper: i3d-k600)"}


def load_judges(config: Config, device: str):
    """(the I3D of FVD and IS, the I3D of FID or None when it is the same network) on ``device``
    (resolved: ``cvg.devices.device_type``)."""
    fid = config.metrics.fid_network
    return i3d.load_i3d(device), (i3d.load_i3d(device, fid) if fid else None)


def real_cache(cache_dir: str | os.PathLike, split: str, n: int, seed: int, frames: int, label: int | None = None) -> Path:
    """Where the I3D outputs of a real clip set are cached: named by everything that picks the
    clips (split, class, count, seed of the draw) and by the clip length."""
    group = "" if label is None else f"_class{label}"
    return Path(cache_dir) / f"real_{split}{group}_{n}_seed{seed}_{clip_name(frames)}.npz"


def sample_batches(path: str | os.PathLike, level: int, frames: int, batch: int, n: int | None = None):
    """(batches of the first ``frames`` frames of level ``level``'s samples, their number); the
    file is open while the batches are read, and closed when they are done."""
    with h5py.File(path, "r") as h5:
        shape = h5[level_key(level)].shape
    if shape[1] < frames:
        raise InputError(f"{path}: level {level} has {shape[1]} frames, metrics.frames asks for {frames}")
    n = min(n or shape[0], shape[0])

    def batches():
        with h5py.File(path, "r") as h5:
            data = h5[level_key(level)]
            yield from in_batches(lambda a, b: data[a:b, :frames], n, batch)

    return batches(), n


def cache_key(config: Config, fps: Fingerprints, split: str, n: int, frames: int, label: int | None = None) -> str:
    """What a cached set of real-clip I3D outputs depends on: the data (its stage fingerprint),
    which clips (split, class, count, seed of the draw), their length, the protocol and networks."""
    return json.dumps({"data": fps.fingerprint("data"), "split": split, "label": label, "n": n, "seed": config.metrics.seed,
                       "frames": frames, "protocol": PROTOCOL_VERSION, "networks": networks(config)}, sort_keys=True)


def i3d_of(model, batches_and_n, desc: str, cache: Path | None = None, key: str = "", fid_model=None) -> tuple[np.ndarray, np.ndarray]:
    """I3D (logits, features) of a clip set; with ``cache``, read from it when it was computed
    for the same ``key`` (``cache_key``), else computed and cached."""

    if cache is not None and cache.exists():
        with np.load(cache) as data:
            stored = str(data["key"]) if "key" in data.files else ""
            if stored == key:
                return data["logits"], data["features"]
        print(f"{cache}: computed for other data or settings ({stored or 'unrecorded'}); recomputing", flush=True)
    batches, n = batches_and_n
    logits, features = i3d_outputs(model, batches, total=n, desc=desc, stretch_short=True, fid_model=fid_model)  # config allowed short clips
    if cache is not None:
        with atomic_path(cache) as tmp:
            with open(tmp, "wb") as f:
                np.savez(f, logits=logits, features=features, key=np.array(key))
    return logits, features


def check_samples(fps: Fingerprints, path: str | os.PathLike) -> None:
    """``StaleError`` unless the samples file was made by one of this config's sample stages."""
    with h5py.File(path, "r") as h5:
        stamp = read_stamp(h5.attrs)
    stage = stamp.stage if stamp is not None and stamp.stage.startswith("sample:") else "sample:cascade"
    fps.check(stamp, stage, f"samples {path}")


def score_rows(model: str, level, frames: int, resolution: int, logits, features, ref_logits, ref_features, splits: int, protocol: str,
               nets: dict[str, str]) -> list[dict]:
    is_mean, is_std = inception_score(logits, splits)
    n = len(logits)
    base = {"model": model, "level": level, "frames": frames, "resolution": resolution, "n_samples": n, "protocol": protocol}
    values = {"FVD": frechet_from_samples(logits, ref_logits), "FID": frechet_from_samples(features, ref_features), "IS": is_mean, "IS_std": is_std}
    return [{**base, "metric": metric, "value": value, "network": nets[metric]} for metric, value in values.items()]


def strip_clips(config: Config, index_path, samples_path, classes: int = 3) -> dict[str, np.ndarray]:
    """Real held-out clips above generated ones, one pair per class for the first ``classes``
    classes (labels from the index and the samples file): the demo's strip PNG."""
    m = config.metrics
    split = m.heldout_split or m.real_split
    rows = split_rows(config, index_path, split, m.n_real)
    index = read_index(index_path)
    names = dict(zip(index["label"], index.get("label_name", index["label"].astype(str))))
    top = config.top.frames
    real, fake = {}, {}
    with h5py.File(samples_path, "r") as h5:
        labels = h5[LABEL][:]
        for label in sorted(set(rows["label"]))[:classes]:
            pick = rows[rows["label"] == label].iloc[:1]
            real[f"real {names.get(label, label)}"] = next(real_batches(config, index_path, split, 1, top, 1, rows=pick)[0])[0]
            generated = np.flatnonzero(labels == label)
            if len(generated):
                fake[f"sample {names.get(label, label)}"] = h5[level_key(len(config.levels))][int(generated[0])]
    return {**real, **fake}


def classifier_rows(config: Config, fps: Fingerprints, index_path, samples: dict[str, str], frames: int, cache_dir) -> list[dict]:
    """ACC and CIS of the held-out real clips (the ceiling) and of every generated set, by the
    classifier trained on every clip of the real split (``cvg.metrics.classifier``; not only the
    ``n_real`` of the I3D reference), on their first ``frames``."""
    m = config.metrics
    index = read_index(index_path)
    rows = split_rows(config, index_path, m.real_split, len(index))  # every clip of the split
    if (rows["label"] < 0).all():
        print("metrics.classifier_steps: the data has no classes; no classifier rows", flush=True)
        return []
    n_classes = int(index["label"].max()) + 1
    clips = next(real_batches(config, index_path, m.real_split, len(rows), frames, len(rows), rows=rows)[0])
    key = {"data": fps.fingerprint("data"), "split": m.real_split, "n": len(rows), "seed": m.seed, "frames": frames,
           "steps": m.classifier_steps, "version": 1}
    judge = cached_classifier(Path(cache_dir), key, lambda: train_classifier(clips, rows["label"].to_numpy(), n_classes, m.classifier_steps, m.seed))
    sets = {}
    if m.heldout_split:
        held = split_rows(config, index_path, m.heldout_split, m.n_real)
        sets[f"real:{m.heldout_split}"] = ("data", next(real_batches(config, index_path, m.heldout_split, m.n_real, frames, len(held),
                                                                         rows=held)[0]), held["label"].to_numpy())
    top = len(config.levels)
    for name, path in samples.items():
        with h5py.File(path, "r") as h5:
            sets[name] = (top, h5[level_key(top)][:, :frames], h5[LABEL][:])
    out = []
    base = {"frames": frames, "resolution": config.top.resolution, "network": "classifier of the dataset's classes",
            "protocol": f"video classifier on {m.real_split}:{len(rows)} ({m.classifier_steps} steps), first {frames}f, chance {1 / n_classes:.3f}"}
    for name, (level, data, labels) in sets.items():
        scores = classifier_scores(predict(judge, data), labels)
        out += [{**base, "model": name, "level": level, "metric": metric, "value": value, "n_samples": len(data)} for metric, value in scores.items()]
    return out


def paired_rows(outputs: dict[str, tuple[np.ndarray, np.ndarray]], ref: tuple[np.ndarray, np.ndarray], frames: int,
                n_boot: int, seed: int = 0) -> list[dict]:
    """FVD / FID differences (model minus baseline, negative: the model is closer to the real
    clips) with bootstrap intervals, for every pair of ``paired_comparisons`` among ``outputs``
    ({model: (logits, features)})."""
    rows = []
    for model, baseline in paired_comparisons(outputs):
        for metric, k in (("FVD", 0), ("FID", 1)):
            stats = paired_bootstrap(outputs[model][k], outputs[baseline][k], ref[k], n_boot, seed)
            rows.append({"model": model, "baseline": baseline, "frames": frames, "metric": metric, **stats,
                         "n_samples": len(outputs[model][k])})
    return rows


def verdict(ci_low: float, ci_high: float) -> str:
    """What a paired interval says of model vs baseline (negative differences: the model is better)."""
    if ci_high < 0:
        return "better"
    if ci_low > 0:
        return "worse"
    return "no significant difference"


def metrics_markdown(table: pd.DataFrame, paired: pd.DataFrame | None = None) -> str:
    """The metric table (one row per model and length) and, when given, the paired differences
    with their verdict: the table says whether the cascade beat its baselines."""

    # the clip count is a column, not a header: rows differ (a held-out split can be smaller than
    # the generated sets), and Fréchet distances of different set sizes are biased differently
    wide = table.pivot_table(index=["model", "frames", "n_samples"], columns="metric", values="value", sort=False).reset_index()
    wide = wide.rename(columns={"n_samples": "clips"})
    wide = wide[["model", "frames", "clips"] + [m for m in ("FVD", "FID", "IS", "IS_std", "ACC", "CIS") if m in wide.columns]]
    nets = "; ".join(f"{metric}: {net}" for metric, net in dict(zip(table["metric"], table["network"])).items() if metric != "IS_std")
    judge = table.loc[table["metric"] == "ACC", "protocol"]
    nets += f"; ACC, CIS: {judge.iloc[0]}" if len(judge) else ""
    text = f"# Metrics\n\n{table['protocol'].iloc[0]}\n\nNetworks: {nets}\n\n{markdown_table(wide)}"
    if paired is not None and not paired.empty:
        rows = paired.assign(verdict=[verdict(lo, hi) for lo, hi in zip(paired["ci_low"], paired["ci_high"])], clips=paired["n_samples"])
        rows = rows[["model", "baseline", "frames", "clips", "metric", "delta", "ci_low", "ci_high", "p_better", "verdict"]]
        text += ("\n## Paired differences (model - baseline; negative: closer to the real clips)\n\n"
                 f"95 % bootstrap intervals over the scored clips ({int(paired['n_boot'].iloc[0])} resamples); "
                 "training-run variance is not included.\n\n" + markdown_table(rows))
    return text


def evaluate(config: Config, index_path: str | os.PathLike, samples: dict[str, str], out_csv: str | os.PathLike,
             cache_dir: str | os.PathLike, device: str = "cpu", paired_csv: str | os.PathLike | None = None,
             n_boot: int = 1000, markdown: str | os.PathLike | None = None) -> pd.DataFrame:
    """Score every ``samples`` {model name: HDF5} at the top level, plus the held-out real
    split (the floor), against the real split's I3D statistics (cached per protocol); with
    ``paired_csv``, also the paired differences of ``paired_comparisons`` with bootstrap intervals; with
    ``markdown``, both as Markdown with a verdict per pair."""
    m = config.metrics
    batch, top = m.batch_size, config.top
    lengths = eval_lengths(config)
    fps = index_fingerprints(config, index_path)
    # the training setup's samples at their own length only; the unrolled samples at metrics.frames
    scored_at = {name: [top.window_out] if name == WINDOWS else lengths for name in samples}
    for name, path in samples.items():  # stale or too-short samples fail here, before any I3D work
        check_samples(fps, path)
        sample_batches(path, len(config.levels), max(scored_at[name]), batch)
    model, fid_model = load_judges(config, device)
    nets = networks(config)
    rows, paired = [], []
    for frames in sorted(set().union(lengths, *scored_at.values())):
        proto = protocol_name(config, frames)
        ref_l, ref_f = i3d_of(model, real_batches(config, index_path, m.real_split, m.n_real, frames, batch),
                              f"I3D real {m.real_split} {frames}f", real_cache(cache_dir, m.real_split, m.n_real, m.seed, frames),
                              cache_key(config, fps, m.real_split, m.n_real, frames), fid_model)
        if m.heldout_split:
            split = m.heldout_split
            held = i3d_of(model, real_batches(config, index_path, split, m.n_real, frames, batch), f"I3D real {split} {frames}f",
                          real_cache(cache_dir, split, m.n_real, m.seed, frames), cache_key(config, fps, split, m.n_real, frames),
                          fid_model)
            rows += score_rows(f"real:{split}", "data", frames, top.resolution, *held, ref_l, ref_f, m.is_splits, proto, nets)
        outputs = {}
        for name, path in samples.items():
            if frames not in scored_at[name]:
                continue
            outputs[name] = i3d_of(model, sample_batches(path, len(config.levels), frames, batch), f"I3D {name} {frames}f", fid_model=fid_model)
            row_proto = protocol_name(config, frames, training_setup=True) if name == WINDOWS else proto
            rows += score_rows(name, len(config.levels), frames, top.resolution, *outputs[name], ref_l, ref_f, m.is_splits, row_proto, nets)
        if paired_csv is not None:
            paired += paired_rows(outputs, (ref_l, ref_f), frames, n_boot)
    if m.classifier_steps:
        rows += classifier_rows(config, fps, index_path, {k: v for k, v in samples.items() if k != WINDOWS}, max(lengths), cache_dir)
    table = pd.DataFrame(rows, columns=COLUMNS)
    paired = pd.DataFrame(paired, columns=PAIRED_COLUMNS) if paired_csv is not None else None
    if paired is not None:  # written first: metrics.csv is the rule's completion marker
        write_csv(paired, paired_csv)
    if markdown is not None:
        write_text(markdown, metrics_markdown(table, paired))
    write_csv(table, out_csv)
    write_stamp_file(out_csv, fps.stamp("metrics"))
    return table


def psd_stage(config: Config, index_path: str | os.PathLike, samples: dict[str, str], frames: list[int], n: int) -> pd.DataFrame:
    """Appendix D's table: the PSD (``cvg.metrics.psd``) of ``n`` real clips of ``metrics.real_split``
    and of each generated set {name: samples HDF5} at the top level, at the frame indices the
    videos have (frame 0 when none of ``frames`` is within them)."""
    frames = [t for t in frames if t < config.top.frames] or [0]
    batches, _ = real_batches(config, index_path, config.metrics.real_split, n, config.top.frames, n)
    rows = psd_table(np.concatenate(list(batches)), frames, "real")
    for name, path in samples.items():
        with h5py.File(path, "r") as h5:
            rows += psd_table(h5[level_key(len(config.levels))][:n], frames, name)
    return pd.DataFrame(rows)
