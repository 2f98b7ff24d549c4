"""``cvg generate`` and ``cvg export``: MP4s from a trained cascade, and the cascade as one file.

A cascade comes from an experiment's results (``--config``: each level's final checkpoint and
BN statistics under ``results/``, found by their stage fingerprints, so an ablation that reads
its base's level 1 finds it there) or from an exported file (``--model``: every level's
generator, the BN statistics, the classes, the config and the fingerprints, with the SHA-256 of
its content checked at load, ``cvg.checkpoint``). Both give the same frames for the same
arguments: sample i is drawn from its own noise generator seeded ``seed + i`` (its class, when
not chosen, then each level's noise), so it does not depend on ``--n`` either.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch
from tqdm import tqdm

import cvg
from cvg.atomic import write_json
from cvg.cascade import CascadeSampler, level_grid, n_classes_of, to_uint8_frames
from cvg.checkpoint import CheckpointError, load_checkpoint, load_generator, save_atomic
from cvg.config import Config, ConfigError, build_config
from cvg.errors import CvgError
from cvg.experiment import load_experiment
from cvg.fingerprint import Fingerprints, from_stamp, read_stamp
from cvg.models.layers import skipped_orthogonal_init
from cvg.models.presets import build_generator, get_preset
from cvg.sample import norm_settings
from cvg.video_io import encode_video

FORMAT = "cvg-cascade"
FORMAT_VERSION = 1


class GenerateError(CvgError, ValueError):
    """A cascade that cannot be loaded or asked for what it cannot give; the message says what to do."""


@dataclass
class Cascade:
    """A trained cascade ready to sample: its config, generators, BN statistics (one record per
    level, as ``cvg norms`` writes them; None where they are prepared on demand), class names."""

    config: Config
    generators: list[torch.nn.Module]
    norms: list[dict] | None
    classes: list[str]
    fingerprints: dict[str, str]

    @property
    def n_classes(self) -> int:
        return n_classes_of(self.generators[0])


# -- from an experiment's results -----------------------------------------------------------------
def _trained_level(config: Config, level: int, results: Path, fps: Fingerprints | None) -> Path:
    """The final checkpoint of ``level`` trained under this config's settings: the experiment's
    own, else any experiment's under ``results`` with the same stage fingerprint."""
    own = results / config.name / "train" / f"level{level}.pt"
    candidates = [own] + sorted(p for p in results.glob(f"*/train/level{level}.pt") if p != own)
    for path in candidates:
        if not path.is_file():
            continue
        try:
            stamp = read_stamp(load_checkpoint(path))
        except CheckpointError:
            continue
        expected = (fps or from_stamp(config, stamp)).fingerprint(f"train{level}")
        if stamp is not None and stamp.fingerprint == expected:
            return path
    raise GenerateError(f"level {level} of experiment {config.name!r} is not trained under its current settings: "
                        f"train it with `snakemake -c2 results/{config.name}/train/level{level}.pt` (add --configfile for a config outside config/)")


def from_results(config_path: str | os.PathLike, results: str | os.PathLike = "results", levels: int | None = None,
                 device="cpu") -> Cascade:
    """The cascade of experiment ``config_path`` (levels 1..``levels``) from its results."""
    config = load_experiment(config_path)
    results = Path(results)
    k = _levels(config, levels)
    first = _trained_level(config, 1, results, None)
    fps = from_stamp(config, read_stamp(load_checkpoint(first)))
    paths = [first] + [_trained_level(config, lv, results, fps) for lv in range(2, k + 1)]
    generators = [load_generator(config, p, device, fps) for p in paths]
    norms = _norm_files(config, results, k, fps)
    classes = _classes(results / config.name / "data" / "classes.csv", paths[0])
    return Cascade(config, generators, norms, classes, {f"train{i}": fps.fingerprint(f"train{i}") for i in range(1, k + 1)})


def _norm_files(config: Config, results: Path, k: int, fps: Fingerprints) -> list[dict] | None:
    """The ``cvg norms`` records of levels 1..k where the sampling stage wrote all of them."""
    records = []
    for level in range(1, k + 1):
        expected = fps.fingerprint(f"norms{level}")
        found = None
        for path in sorted(results.glob(f"*/samples/norms/level{level}.pt")):
            try:
                record = load_checkpoint(path)
            except CheckpointError:
                continue
            stamp = read_stamp(record)
            if stamp is not None and stamp.fingerprint == expected:
                found = record
                break
        if found is None:
            return None
        records.append(found)
    return records


def _classes(csv: Path, level1: Path) -> list[str]:
    """Class names by label: the experiment's classes.csv, else those of the data level 1 was trained on."""
    for path in (csv, *sorted(level1.parent.parent.glob("data/classes.csv"))):
        if path.is_file():
            table = pd.read_csv(path, keep_default_na=False)
            return [str(name) for name in table.sort_values("label")["name"]]
    return []


def _levels(config: Config, levels: int | None) -> int:
    k = levels or len(config.levels)
    if not 1 <= k <= len(config.levels):
        raise GenerateError(f"--levels {k}: the cascade has levels 1..{len(config.levels)}")
    return k


# -- one file ---------------------------------------------------------------------------------------
def export(cascade: Cascade, out: str | os.PathLike) -> Path:
    """Write ``cascade`` as one file: generators (as trained: the statistics passes of a
    preparation also advance their spectral norms' vectors, so the states are taken first), BN
    statistics, classes, config, fingerprints."""
    states = [{key: value.detach().cpu().clone() for key, value in g.state_dict().items()} for g in cascade.generators]
    norms = cascade.norms if cascade.norms is not None else prepare(cascade)
    save_atomic({
        "format": FORMAT, "version": FORMAT_VERSION, "cvg_version": cvg.__version__,
        "config": cascade.config.to_yaml(),
        "generators": [{"index": i + 1, "n_classes": cascade.n_classes, "state": state} for i, state in enumerate(states)],
        "norms": norms, "classes": list(cascade.classes), "fingerprints": dict(cascade.fingerprints),
    }, out)
    return Path(out)


def from_file(path: str | os.PathLike, levels: int | None = None, device="cpu") -> Cascade:
    """A cascade from ``export``'s file; a truncated, altered or foreign file is refused, naming it."""
    import yaml

    state = load_checkpoint(path, device)
    if state.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not an exported cvg cascade (format {state.get('format')!r}; make one with `cvg export`)")
    if int(state["version"]) > FORMAT_VERSION:
        raise CheckpointError(f"{path} is format version {state['version']}; this cvg reads up to {FORMAT_VERSION}: update cvg")
    try:
        config = build_config(yaml.safe_load(state["config"]), source=f"{path} (its config)")
    except ConfigError as exc:
        raise CheckpointError(str(exc)) from None
    k = _levels(config, levels)
    preset = get_preset(config.model.preset, config.model.width)
    generators = []
    for entry in state["generators"][:k]:
        with skipped_orthogonal_init():
            g = build_generator(preset, config.levels, int(entry["index"]), int(entry["n_classes"]), refine=config.model.refine)
        g.load_state_dict(entry["state"])
        generators.append(g.to(device).eval())
    return Cascade(config, generators, list(state["norms"])[:k], list(state["classes"]), dict(state["fingerprints"]))


# -- sampling ---------------------------------------------------------------------------------------
def prepare(cascade: Cascade, level1_frames: int | None = None, device="cpu") -> list[dict]:
    """Set the generators' BN statistics as the sampling stage does (``sample.bn``) for level-1
    clips of ``level1_frames``: from the cascade's records where they were prepared at that
    length, else prepared now (the records are returned)."""
    mode, passes, default_frames, batch, seed = norm_settings(cascade.config)
    frames = level1_frames or default_frames
    sampler = CascadeSampler(cascade.config, cascade.generators, device)
    given = cascade.norms if cascade.norms is not None and frames == default_frames else ()
    if not given and mode == "recompute":
        print(f"preparing BN statistics for {frames}-frame level-1 clips ({passes} passes, sample.bn: recompute)", flush=True)
    return sampler.prepare_norms(mode, passes, frames, batch, seed, given=given)


def class_labels(cascade: Cascade, chosen: list[str] | None, n: int) -> list[int | None]:
    """Sample i's label: the chosen classes in turn (names or indices), else None (drawn from its noise)."""
    if not chosen:
        return [None] * n
    if cascade.n_classes == 0:
        raise GenerateError("--class: the model is unconditional (it was trained without labels)")
    labels = []
    for name in chosen:
        if name.isdigit() and int(name) < cascade.n_classes:
            labels.append(int(name))
        elif name in cascade.classes:
            labels.append(cascade.classes.index(name))
        else:
            known = ", ".join(cascade.classes) or f"0..{cascade.n_classes - 1}"
            raise GenerateError(f"--class {name!r}: not a class of this model ({known})")
    return [labels[i % len(labels)] for i in range(n)]


def level1_frames_for(config: Config, frames: int | None, k: int) -> int:
    """The level-1 length whose unroll through levels 2..k gives ``frames`` frames."""
    factor = 1
    for lv in config.levels[1:k]:
        factor *= lv.temporal_factor
    if frames is None:
        return config.sample.level1_frames or config.level(1).frames
    if frames % factor or frames // factor < 1:
        near = max(factor, round(frames / factor) * factor)
        raise GenerateError(f"--frames {frames}: levels 1..{k} multiply the length by {factor}; ask for a multiple of {factor} (e.g. {near})")
    return frames // factor


@torch.no_grad()
def generate(cascade: Cascade, out: str | os.PathLike, n: int = 8, seed: int = 0, classes: list[str] | None = None,
             frames: int | None = None, sigma: float = 1.0, fps: float | None = None, grid: bool = False, device="cpu") -> list[dict]:
    """``n`` samples as ``out/sample_0000.mp4`` ... and ``out/samples.json``; returns the records."""
    config, k = cascade.config, len(cascade.generators)
    frames1 = level1_frames_for(config, frames, k)
    prepare(cascade, frames1, device)
    sampler = CascadeSampler(config, cascade.generators, device)
    labels = class_labels(cascade, classes, n)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rate = fps or max(1.0, config.data.fps / config.level(k).stride)
    records, grids = [], []
    for i in tqdm(range(n), desc="generate", unit="video"):
        gen = torch.Generator().manual_seed(seed + i)
        label = torch.tensor([labels[i]]) if labels[i] is not None else (
            torch.randint(0, sampler.n_classes, (1,), generator=gen) if sampler.n_classes else None)
        videos, _ = sampler.sample(1, sigma, frames1, config.sample.chunk, labels=label, generator=gen)
        path = out / f"sample_{i:04d}.mp4"
        encode_video(to_uint8_frames(videos[-1])[0], path, fps=rate)
        value = int(label.item()) if label is not None else None
        name = cascade.classes[value] if value is not None and value < len(cascade.classes) else value
        records.append({"file": path.name, "seed": seed + i, "class": name, "label": value, "frames": int(videos[-1].shape[2]),
                        "size": list(videos[-1].shape[-2:]), "levels": k, "sigma": sigma, "fps": rate})
        if grid:
            grids.append(videos)
    if grid:
        stacked = [torch.cat([v[lv] for v in grids]) for lv in range(k)]
        encode_video(level_grid(stacked), out / "grid.mp4", fps=rate)
    write_json(out / "samples.json", {"samples": records, "experiment": config.name, "fingerprints": cascade.fingerprints,
                                      "cvg_version": cvg.__version__})
    return records


def load_cascade(config: str | None, model: str | None, levels: int | None, device="cpu") -> Cascade:
    if (config is None) == (model is None):
        raise GenerateError("give one of --config (an experiment's results) or --model (a `cvg export` file)")
    return from_results(config, levels=levels, device=device) if config else from_file(model, levels, device)
