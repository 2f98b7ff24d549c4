"""Per-class scores (appendix E): IS, FID and FVD of the class-conditional cascade's samples of
one class against the real clips of that class, for chosen groups of classes (the paper:
five high-motion and five low-motion Kinetics-600 classes, 1000 samples each, all real videos of
the class, 48 frames). With a held-out split, each class also gets a floor: its held-out real
clips scored the same way, since classes differ in how varied their own clips are.

Samples are generated and scored on the fly (nothing as large as 1000 x 48 frames per class is
written); the real statistics of each class are cached like the main table's.
"""

from __future__ import annotations

import os
from dataclasses import replace

import pandas as pd
import torch

from cvg.atomic import write_csv, write_text
from cvg.config import Config, PerClassSpec, SampleSpec
from cvg.data.real import choose_clips, real_batches
from cvg.data.shards import index_fingerprints, read_index
from cvg.errors import InputError
from cvg.fingerprint import write_stamp_file
from cvg.metrics.extract import i3d_outputs
from cvg.metrics.frechet import frechet_from_samples, inception_score
from cvg.metrics.i3d import K400
from cvg.metrics.protocol import RESIZE
from cvg.metrics.run import cache_key, eval_lengths, i3d_of, load_judges, networks, real_cache
from cvg.tables import markdown_table

COLUMNS = ["group", "class", "label", "frames", "n_samples", "n_real", "IS", "IS_std", "FID", "FVD",
           "n_heldout", "floor_FID", "floor_FVD", "networks", "protocol"]

# Appendix E, Table 4 (Kinetics-600, two-level HVG, 48 frames): class -> (IS, FID)
PAPER = {
    "bungee jumping": (11.66, 82.21), "capoeira": (9.48, 84.57), "cheerleading": (12.10, 116.84),
    "kitesurfing": (11.36, 108.81), "skydiving": (5.99, 90.25), "doing nails": (13.32, 91.67),
    "cooking egg": (7.60, 111.63), "crying": (8.92, 70.74), "reading book": (11.13, 64.97), "yawning": (9.71, 79.08),
}


def per_class_settings(config: Config) -> PerClassSpec:
    """``metrics.per_class`` with ``frames`` resolved (null: the longest evaluated length); empty
    ``groups`` stay empty and mean every class (``class_groups``)."""
    settings = config.metrics.per_class
    return replace(settings, frames=settings.frames or max(eval_lengths(config)))


def class_groups(index: pd.DataFrame, groups: dict[str, list[str]], index_path) -> list[tuple[str, str, int]]:
    """(group, class name, label) for every configured class; all classes of the index when
    ``groups`` is empty. Unknown names fail naming the class and the index."""
    names = index.drop_duplicates("label").set_index("label_name")["label"] if "label_name" in index else pd.Series(dtype=int)
    names = names[names.index != ""]
    if names.empty or (index["label"] < 0).all():
        raise InputError(f"{index_path}: the dataset has no class labels; per-class scores need a class-conditional dataset")
    if not groups:
        return [("all", name, int(label)) for name, label in names.sort_values().items()]
    out = []
    for group, classes in groups.items():
        for name in classes:
            if name not in names.index:
                known = ", ".join(sorted(names.index)[:12])
                raise InputError(f"metrics.per_class.groups.{group}: class {name!r} is not in {index_path} (classes: {known}, ...)")
            out.append((group, name, int(names[name])))
    return out


def _generated_batches(sampler, label: int, n: int, batch: int, frames: int, sample_cfg: SampleSpec, level1_frames: int, seed: int):
    """uint8 (B, frames, H, W, 3) top-level samples of one class, ``batch`` at a time."""
    gen = torch.Generator().manual_seed(seed)
    for start in range(0, n, batch):
        k = min(batch, n - start)
        labels = torch.full((k,), label, dtype=torch.long)
        videos, _ = sampler.sample(k, sample_cfg.sigma, level1_frames, sample_cfg.chunk, labels=labels, uint8_top=True, generator=gen)
        top = videos[-1]
        if top.shape[2] < frames:
            raise InputError(f"the cascade makes {top.shape[2]} frames, metrics.per_class.frames asks for {frames}")
        yield top[:, :, :frames].permute(0, 2, 3, 4, 1).cpu().numpy()


def per_class_scores(config: Config, sampler, index_path: str | os.PathLike, out_csv: str | os.PathLike,
                     cache_dir: str | os.PathLike | None = None, markdown: str | os.PathLike | None = None,
                     device: str = "cpu") -> pd.DataFrame:
    """Score ``sampler`` (a prepared, class-conditional CascadeSampler) class by class; write the
    table (and, with ``markdown``, the table with group means and the paper's numbers)."""

    if not sampler.n_classes:
        raise InputError("per-class scores need a class-conditional cascade (its level 1 has no class embedding)")
    m, s = config.metrics, config.sample
    pc = per_class_settings(config)
    frames, n = pc.frames, pc.n_samples
    if n < m.is_splits:
        raise InputError(f"metrics.per_class.n_samples ({n}) must be at least metrics.is_splits ({m.is_splits})")
    index = read_index(index_path)
    fps = index_fingerprints(config, index_path)
    classes = class_groups(index, pc.groups, index_path)
    level1_frames = s.level1_frames or config.level(1).frames
    model, fid_model = load_judges(config, device)
    nets = networks(config)
    net_text = f"FVD {nets['FVD']}; FID {nets['FID']}; IS {nets['IS']}"
    protocol = f"{K400} {frames}f {RESIZE} ref={m.real_split}:class:{pc.n_real or 'all'}@seed{m.seed}"

    def class_outputs(split: str, label: int, name: str):
        """I3D outputs of a class's clips of ``split`` (``n_real`` of them, or all), cached;
        None when the split has fewer than 2 (no covariance to compare)."""
        rows_c = choose_clips(index[(index["split"] == split) & (index["label"] == label)], pc.n_real or len(index), m.seed)
        if len(rows_c) < 2:
            return None
        cache = real_cache(cache_dir, split, len(rows_c), m.seed, frames, label) if cache_dir else None
        return i3d_of(model, real_batches(config, index_path, split, len(rows_c), frames, m.batch_size, rows=rows_c),
                      f"I3D real {split} {name}", cache, cache_key(config, fps, split, len(rows_c), frames, label), fid_model)

    rows = []
    for group, name, label in classes:
        ref = class_outputs(m.real_split, label, name)
        if ref is None:
            raise InputError(f"{index_path}: class {name!r} has fewer than 2 clips in split {m.real_split!r}; per-class FID needs 2 or more")
        ref_l, ref_f = ref
        # the class's held-out clips against its reference: how far its own real clips score
        held = class_outputs(m.heldout_split, label, name) if m.heldout_split else None
        floor = {"n_heldout": 0 if held is None else len(held[0]),
                 "floor_FID": None if held is None else frechet_from_samples(held[1], ref_f),
                 "floor_FVD": None if held is None else frechet_from_samples(held[0], ref_l)}
        batches = _generated_batches(sampler, label, n, m.batch_size, frames, s, level1_frames, s.seed + 7919 * (label + 1))
        gen_l, gen_f = i3d_outputs(model, batches, total=n, desc=f"I3D samples {name}", fid_model=fid_model)
        is_mean, is_std = inception_score(gen_l, m.is_splits)
        rows.append({"group": group, "class": name, "label": label, "frames": frames, "n_samples": n, "n_real": len(ref_l),
                     "IS": is_mean, "IS_std": is_std, "FID": frechet_from_samples(gen_f, ref_f),
                     "FVD": frechet_from_samples(gen_l, ref_l), **floor, "networks": net_text, "protocol": protocol})
    table = pd.DataFrame(rows, columns=COLUMNS)
    if markdown is not None:
        write_text(markdown, per_class_markdown(table))
    write_csv(table, out_csv)
    write_stamp_file(out_csv, fps.stamp("per_class"))
    return table


def per_class_markdown(table: pd.DataFrame) -> str:
    """The per-class table beside the paper's numbers (where the class is one of appendix E's),
    and the mean of each group."""

    wide = table[["group", "class", "n_real", "IS", "FID", "FVD", "floor_FID", "floor_FVD"]].rename(
        columns={"n_real": "real videos", "floor_FID": "held-out real FID", "floor_FVD": "held-out real FVD"})
    wide = wide.assign(**{"paper IS": [PAPER.get(c, (None, None))[0] for c in table["class"]],
                          "paper FID": [PAPER.get(c, (None, None))[1] for c in table["class"]]})
    means = table.groupby("group", sort=False)[["IS", "FID", "FVD", "floor_FID", "floor_FVD"]].mean().reset_index()
    means = means.rename(columns={"floor_FID": "held-out real FID", "floor_FVD": "held-out real FVD"})
    first = table.iloc[0]
    return (f"# Per-class scores (appendix E)\n\n{first['protocol']}, {int(first['n_samples'])} samples per class\n\n"
            f"Networks: {first['networks']}\n\n"
            f"{markdown_table(wide)}\n## Group means\n\n{markdown_table(means)}")
