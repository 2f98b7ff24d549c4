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
import yaml
from tqdm import tqdm

import cvg
from cvg.atomic import write_json
from cvg.cascade import CascadeSampler, level_grid, n_classes_of, to_uint8_frames
from cvg.checkpoint import CheckpointError, generator_from_state, load_checkpoint, save_atomic
from cvg.config import Config, ConfigError, build_config
from cvg.errors import CvgError
from cvg.experiment import load_experiment
from cvg.fingerprint import Fingerprints, from_stamp, read_stamp
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
def _first_stamped(candidates, expected) -> tuple[Path, dict] | None:
    """The first readable file of ``candidates`` whose stamp's fingerprint is ``expected(stamp)``,
    with its content (unreadable or altered files are passed over)."""
    for path in candidates:
        if not path.is_file():
            continue
        try:
            state = load_checkpoint(path)
        except CheckpointError:
            continue
        stamp = read_stamp(state)
        if stamp is not None and stamp.fingerprint == expected(stamp):
            return path, state
    return None


def _trained_level(config: Config, level: int, results: Path, fps: Fingerprints | None) -> dict:
    """The final checkpoint of ``level`` trained under this config's settings: the experiment's
    own, else any experiment's under ``results`` with the same stage fingerprint. Without ``fps``
    (level 1), the fingerprint is the config's on the data the checkpoint records."""
    own = results / config.name / "train" / f"level{level}.pt"
    candidates = [own] + sorted(p for p in results.glob(f"*/train/level{level}.pt") if p != own)
    found = _first_stamped(candidates, lambda stamp: (fps or from_stamp(config, stamp)).fingerprint(f"train{level}"))
    if found is None:
        raise GenerateError(f"level {level} of experiment {config.name!r} is not trained under its current settings: "
                            f"train it with `snakemake -c2 results/{config.name}/train/level{level}.pt` (add --configfile for a config outside config/)")
    return found


def from_results(config_path: str | os.PathLike, results: str | os.PathLike = "results", levels: int | None = None,
                 device="cpu") -> Cascade:
    """The cascade of experiment ``config_path`` (levels 1..``levels``) from its results."""
    config = load_experiment(config_path)
    results = Path(results)
    k = _levels(config, levels)
    first, level1 = _trained_level(config, 1, results, None)
    fps = from_stamp(config, read_stamp(level1))
    states = [level1] + [_trained_level(config, lv, results, fps)[1] for lv in range(2, k + 1)]
    generators = [generator_from_state(config, state, device) for state in states]
    norms = _norm_files(results, k, fps)
    classes = _classes(results / config.name / "data" / "classes.csv", first)
    return Cascade(config, generators, norms, classes, {f"train{i}": fps.fingerprint(f"train{i}") for i in range(1, k + 1)})


def _norm_files(results: Path, k: int, fps: Fingerprints) -> list[dict] | None:
    """The ``cvg norms`` records of levels 1..k where the sampling stage wrote all of them."""
    records = []
    for level in range(1, k + 1):
        expected = fps.fingerprint(f"norms{level}")
        found = _first_stamped(sorted(results.glob(f"*/samples/norms/level{level}.pt")), lambda stamp, expected=expected: expected)
        if found is None:
            return None
        records.append(found[1])
    return records


def _classes(csv: Path, level1: Path) -> list[str]:
    """Class names by label: the experiment's classes.csv, else those of the data level 1 was trained on."""
    for path in (csv, level1.parent.parent / "data" / "classes.csv"):
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
        "generators": [{"index": i + 1, "n_classes": cascade.n_classes, "G": state} for i, state in enumerate(states)],
        "norms": norms, "classes": list(cascade.classes), "fingerprints": dict(cascade.fingerprints),
    }, out)
    return Path(out)


def from_file(path: str | os.PathLike, levels: int | None = None, device="cpu") -> Cascade:
    """A cascade from ``export``'s file; a truncated, altered or foreign file is refused, naming it."""
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
    generators = [generator_from_state(config, entry, device) for entry in state["generators"][:k]]
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
