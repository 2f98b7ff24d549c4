"""Stage fingerprints: one definition of what every stage of the pipeline depends on.

A stage's *settings* are the config values it reads (``RERUN_TABLE`` says which key feeds which
stage, for every key of the schema), flattened to ``key path -> value``; its *closure* adds the
settings of every stage it reads from (level 2's training closure holds the data settings and
level 1's training settings), and, for the data, the identity of the input videos (every file's
relative path, size and content digest, ``cvg.content``: not where they lie or when they were
written). The fingerprint is a hash of the stage's
name and its closure. So one function decides both when Snakemake reruns a rule (each rule's
``fingerprint`` param) and whether stored state may be reused: every artefact records its
stage's fingerprint and closure (``Stamp``), and a consumer that finds another fingerprint
starts afresh (training's ``latest.pt``, metric caches) or refuses, naming the settings that
differ (checkpoints and BN statistics read by later stages).

Stages of an L-level experiment: ``demo`` (the rendered demo videos, demo experiments only),
``data`` (manifest, shards, index), ``train{l}`` and ``norms{l}`` for l = 1..L,
``sample:{variant}`` for every sample variant, ``metrics`` and ``per_class``.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from cvg.atomic import write_text
from cvg.config import TRAIN_DEFAULTS, Config
from cvg.content import content_listing
from cvg.errors import CvgError
from cvg.models.presets import get_preset
from cvg.variants import Variant, variant_names

# Which stage reads each config key (canonical paths: per-level train / slurm keys as
# `train.KEY` / `slurm.KEY`, list items as `levels[].KEY`). None: the key changes how or where
# a stage runs, never what it computes, so no stage reruns. Listed by pattern, every schema key
# must match one entry (tests/test_fingerprint.py enumerates the schema).
RERUN_TABLE: dict[str, tuple[str | None, str]] = {
    "name": (None, "outputs go to results/{name}/: another experiment, not a change of this one"),
    "extends": (None, "resolved into the other keys before anything reads them"),
    "dataset.root": (None, "where the videos are, not what: their content is the data listing's (a copy or a move reruns nothing)"),
    "dataset.annotations": (None, "where the annotation files are, not what: their content is the data listing's"),
    "dataset.demo.*": ("demo", "the demo videos are rendered from these"),
    "dataset.*": ("data", "which videos, and their labels and splits"),
    "data.workers": (None, "decoding processes: how fast, not what"),
    "data.ffmpeg_threads": (None, "ffmpeg's threads: how fast, not what"),
    "data.*": ("data", "decoding, clips and shard layout (the training order follows the index)"),
    "levels[].window": ("train", "that level's training windows"),
    "levels[].*": ("data", "every level's frames and resolution are in the pyramid shards"),
    "model.matching": ("train", "upsampling levels' discriminators"),
    "model.refine": ("train", "upsampling levels' generators"),
    "model.*": ("train", "each level's networks (the preset's widths of that level)"),
    "train.checkpoint_every": (None, "when state is saved, not what is trained"),
    "train.log_every": (None, "logging cadence"),
    "train.sample_every": (None, "monitoring grids"),
    "train.num_workers": (None, "data-loading processes (the data order is seeded)"),
    "train.compile": (None, "torch.compile: the same model, compiled"),
    "train.launcher": (None, "where the processes run (the global batch is the same)"),
    "train.procs": (None, "processes for torchrun on CPUs (the global batch is the same)"),
    "train.*": ("train", "that level's optimisation"),
    "slurm.*": (None, "resources of the jobs, not what they compute"),
    "sample.bn": ("norms", "BN statistics at sampling; also the frozen lower levels of training"),
    "sample.bn_passes": ("norms", "BN statistics at sampling; also the frozen lower levels of training"),
    "sample.batch_size": ("norms", "BN statistics passes and sampling batches; also training's frozen levels"),
    "sample.seed": ("norms", "noise of the statistics passes and of the samples; also training's frozen levels"),
    "sample.level1_frames": ("norms", "the sampled length"),
    "sample.*": ("sample", "the generated sets"),
    "metrics.heldout_split": ("metrics", "the floor row; also which real level-1 clips the *_on_real samples upsample"),
    "metrics.seed": ("metrics", "which real clips are scored; also the *_on_real samples' inputs"),
    "metrics.batch_size": (None, "clips per I3D forward pass"),
    "metrics.per_class.*": ("per_class", "appendix E's per-class table"),
    "metrics.*": ("metrics", "what is scored and how"),
}
# keys read by a second stage besides the one named above
ALSO_READ = {
    "sample.bn": ("train",),
    "sample.bn_passes": ("train",),
    "sample.batch_size": ("train", "sample"),
    "sample.seed": ("train", "sample"),
    "sample.level1_frames": ("sample",),
    "metrics.heldout_split": ("sample",),
    "metrics.seed": ("sample",),
}
STAGE_KINDS = ("demo", "data", "train", "norms", "sample", "metrics", "per_class")
WHAT_RERUNS = {
    None: "nothing",
    "demo": "the demo videos, then everything",
    "data": "manifest, shards, index, then every level and everything after",
    "train": "that level (all levels for `train.defaults`), the levels above it, samples, metrics",
    "norms": "BN statistics, samples, metrics",
    "sample": "samples, metrics",
    "metrics": "metrics, per-class table",
    "per_class": "per-class table",
}
ALSO_SAYS = {"train": "levels 2.. (their frozen lower levels)", "sample": "samples", "norms": "BN statistics"}


def rerun_table_markdown() -> str:
    """``RERUN_TABLE`` as the README's table: what a change of each key reruns, and why."""
    lines = ["| change of | reruns | because |", "| --- | --- | --- |"]
    for pattern, (stage, why) in RERUN_TABLE.items():
        reruns = WHAT_RERUNS[stage]
        if pattern.startswith("model.") and pattern != "model.*":
            reruns = "levels 2.. (upsampling levels), samples, metrics"
        also = [ALSO_SAYS[k] for k in ALSO_READ.get(pattern, ()) if k in ALSO_SAYS]
        if also:
            reruns += "; also " + ", ".join(also)
        lines.append(f"| `{pattern}` | {reruns} | {why} |")
    return "\n".join(lines) + "\n"


def decision(key: str) -> tuple[str | None, str]:
    """(stage kind that reads ``key``, why) from ``RERUN_TABLE``; the first matching pattern wins."""
    for pattern, value in RERUN_TABLE.items():
        if key == pattern or (pattern.endswith(".*") and key.startswith(pattern[:-1])):
            return value
    raise KeyError(f"config key {key!r} has no entry in cvg.fingerprint.RERUN_TABLE: say which stage reads it")


def canonical_key(path: str) -> str:
    """A flattened config path (``train.levels[1].lr_g``, ``levels[2].frames``) as ``RERUN_TABLE`` names it."""
    for section in ("train", "slurm"):
        for sub in (f"{section}.defaults.", f"{section}.eval."):
            if path.startswith(sub):
                return section + "." + path[len(sub):]
        if path.startswith(f"{section}.levels["):
            return section + "." + path.split("].", 1)[1]
    if path.startswith("levels["):
        return "levels[]." + path.split("].", 1)[1]
    return path


def flatten(obj, prefix: str = "") -> dict:
    """``{"a": {"b": 1}, "l": [{"x": 2}]}`` -> ``{"a.b": 1, "l[0].x": 2}``; lists of scalars stay
    leaves, empty mappings vanish (a key set to ``{}`` then appears as keys once it has some)."""
    if isinstance(obj, dict):
        out = {}
        for key, value in obj.items():
            out.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
        return out  # an empty mapping sets nothing
    if isinstance(obj, list) and obj and all(isinstance(v, dict) for v in obj):
        out = {}
        for i, value in enumerate(obj):
            out.update(flatten(value, f"{prefix}[{i}]"))
        return out
    return {prefix: list(obj) if isinstance(obj, (list, tuple)) else obj}


# -- the stages' own settings -----------------------------------------------------------------
def _select(config: Config, kind: str) -> dict:
    """Every non-level-specific raw key read by stage kind ``kind`` (by ``RERUN_TABLE``/``ALSO_READ``)."""
    out = {}
    for path, value in flatten(config.raw).items():
        key = canonical_key(path)
        if key.startswith(("train.", "slurm.", "levels[]", "model.")):
            continue  # per level: see _train_settings / _data_settings
        stage, _ = decision(key)
        if stage == kind or kind in ALSO_READ.get(key, ()):
            out[path] = value
    return out


def _data_settings(config: Config, listing: str) -> dict:
    out = _select(config, "data")
    for lv in config.levels:
        for name in ("frames", "resolution", "stride", "temporal_factor", "spatial_factor"):
            out[f"levels[{lv.index - 1}].{name}"] = getattr(lv, name)
    out["data.listing"] = listing
    return out


def _train_settings(config: Config, index: int) -> dict:
    t = asdict(config.train(index))
    prefix = f"level{index}"
    out = {f"{prefix}.train.{k}": (list(v) if isinstance(v, tuple) else v) for k, v in t.items()
           if k in TRAIN_DEFAULTS and decision(f"train.{k}")[0] == "train"}
    m = config.model
    net = get_preset(m.preset, m.width)
    if index > len(net.nets):
        raise ValueError(f"model preset {m.preset!r} has networks for {len(net.nets)} levels, the config has {len(config.levels)}")
    out[f"{prefix}.model.net"] = asdict(net.nets[index - 1])
    out[f"{prefix}.model.shared"] = {"z_dim": net.z_dim, "emb_dim": net.emb_dim, "k_frames": net.k_frames}
    out[f"{prefix}.window"] = config.level(index).window
    if index > 1:
        out[f"{prefix}.model.matching"] = m.matching
        out[f"{prefix}.model.refine"] = m.refine
        out.update({f"{prefix}.frozen.{k}": v for k, v in _select(config, "train").items()})
    return out


@dataclass(frozen=True)
class Stamp:
    """What an artefact records of the stage that made it."""

    stage: str
    fingerprint: str
    settings: dict  # the stage's closure, flattened

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "Stamp":
        d = json.loads(text)
        return cls(d["stage"], d["fingerprint"], d["settings"])


def _hash(stage: str, closure: dict) -> str:
    return hashlib.sha256(json.dumps({"stage": stage, "closure": closure}, sort_keys=True, default=str).encode()).hexdigest()[:16]


class Fingerprints:
    """Every stage's closure and fingerprint for one config and one input listing."""

    def __init__(self, config: Config, listing: str):
        self.config, self.listing = config, listing
        self.n_levels = len(config.levels)
        self._cache: dict[str, dict] = {}

    def stages(self) -> list[str]:
        names = ["demo"] if self.config.dataset.kind == "demo" else []
        names += ["data", *(f"train{i}" for i in range(1, self.n_levels + 1)), *(f"norms{i}" for i in range(1, self.n_levels + 1))]
        return names + [f"sample:{v}" for v in variant_names(self.n_levels)] + ["metrics", "per_class"]

    def closure(self, stage: str) -> dict:
        if stage not in self._cache:
            self._cache[stage] = self._closure(stage)
        return self._cache[stage]

    def _closure(self, stage: str) -> dict:
        cfg = self.config
        if stage == "demo":
            return _select(cfg, "demo")
        if stage == "data":
            return {**(self.closure("demo") if cfg.dataset.kind == "demo" else {}), **_data_settings(cfg, self.listing)}
        if stage.startswith("train"):
            i = int(stage[5:])
            upstream = self.closure(f"train{i - 1}") if i > 1 else self.closure("data")
            return {**upstream, **_train_settings(cfg, i)}
        if stage.startswith("norms"):
            i = int(stage[5:])
            upstream = self.closure(f"norms{i - 1}") if i > 1 else {}
            return {**upstream, **self.closure(f"train{i}"), **{f"norms.{k}": v for k, v in _select(cfg, "norms").items()}}
        if stage.startswith("sample:"):
            spec = Variant.parse(stage.split(":", 1)[1], self.n_levels)
            out = {**self.closure(f"norms{spec.trained}"), **{f"sample.{key}": v for key, v in _select(cfg, "sample").items()}}
            if spec.fresh:  # fresh upsampling networks of the preset
                for i in range(2, self.n_levels + 1):
                    out.update({key: v for key, v in _train_settings(cfg, i).items() if ".model." in key and not key.endswith(".matching")})
            if not spec.on_real:
                out = {key: v for key, v in out.items() if not key.startswith("sample.metrics.")}
            return out
        if stage == "metrics":
            out = {}
            for v in variant_names(self.n_levels):
                out.update(self.closure(f"sample:{v}"))
            return {**out, **{f"metrics.{k}": v for k, v in _select(cfg, "metrics").items()}}
        if stage == "per_class":
            own = {f"per_class.{k}": v for k, v in _select(cfg, "per_class").items()}
            return {**self.closure("metrics"), **self.closure(f"norms{self.n_levels}"), **own}
        raise KeyError(f"unknown stage {stage!r}; stages: {', '.join(self.stages())}")

    def fingerprint(self, stage: str) -> str:
        return _hash(stage, self.closure(stage))

    def stamp(self, stage: str) -> Stamp:
        return Stamp(stage, self.fingerprint(stage), self.closure(stage))

    def check(self, stamp: Stamp | None, stage: str, what: str) -> None:
        """Raise ``StaleError`` unless ``stamp`` (of the artefact ``what``) is this config's ``stage``."""
        expected = self.stamp(stage)
        if stamp is None:
            raise StaleError(f"{what} records no stage fingerprint (made by an older cvg or by hand); "
                             f"remake it under the current config")
        if stamp.stage != stage or stamp.fingerprint != expected.fingerprint:
            raise StaleError(f"{what} was made under other settings than the config's (stage {stamp.stage}, fingerprint "
                             f"{stamp.fingerprint}; the config gives {stage} {expected.fingerprint}): "
                             f"{describe_difference(stamp.settings, expected.settings)}; remake it (rerun the pipeline)")


class StaleError(CvgError, ValueError):
    """Stored state of another fingerprint than the config's: the message says which settings differ."""


def describe_difference(stored: dict, expected: dict, limit: int = 6) -> str:
    """``key: stored -> config`` for every setting that differs (at most ``limit``, then a count)."""
    keys = sorted(set(stored) | set(expected))
    diffs = []
    for key in keys:
        a, b = stored.get(key, "<absent>"), expected.get(key, "<absent>")
        if json.dumps(a, sort_keys=True, default=str) != json.dumps(b, sort_keys=True, default=str):
            diffs.append(f"{key}: {a!r} (stored) vs {b!r} (config)")
    if not diffs:
        return "no setting differs (another stage or code version)"
    more = f"; and {len(diffs) - limit} more" if len(diffs) > limit else ""
    return "; ".join(diffs[:limit]) + more


# -- the identity of the input videos ------------------------------------------------------------
DEMO_LISTING = "rendered from dataset.demo"


def dataset_listing(config: Config) -> str:
    """The input identity of ``config``'s data stage: the demo's videos are a function of its
    settings (already in the closure); a real dataset's is its files' content (``cvg.content``),
    wherever the root lies."""
    if config.dataset.kind == "demo":
        return DEMO_LISTING
    extra = [config.dataset.options["annotations"]] if "annotations" in config.dataset.options else []
    if extra and Path(extra[0]).is_dir():
        extra = sorted(Path(extra[0]).glob("*"))
    return content_listing(config.dataset.root, extra)


_LISTINGS: dict[tuple, str] = {}


def fingerprints(config: Config, listing: str | None = None) -> Fingerprints:
    """The config's fingerprints. ``listing``: the input identity recorded by an upstream artefact
    (``Stamp.settings["data.listing"]``); default: the dataset root's listing now, computed once
    per process and dataset (what the workflow and ``cvg data manifest`` use)."""
    if listing is None:
        key = (config.dataset.kind, config.dataset.root, json.dumps(config.dataset.options, sort_keys=True))
        if key not in _LISTINGS:
            _LISTINGS[key] = dataset_listing(config)
        listing = _LISTINGS[key]
    return Fingerprints(config, listing)


def from_stamp(config: Config, stamp: Stamp | None) -> Fingerprints:
    """The config's fingerprints on the input listing an upstream artefact recorded (its settings
    are then checked against the config's by ``Fingerprints.check``)."""
    listing = (stamp.settings.get("data.listing") if stamp is not None else None) or "<unknown>"
    return Fingerprints(config, listing)


# -- where artefacts keep their stamp ----------------------------------------------------------------
def stamp_file(artifact: str | os.PathLike) -> Path:
    """The stamp of a CSV / Markdown artefact lives beside it: ``index.csv`` -> ``index.csv.stamp.json``."""
    artifact = Path(artifact)
    return artifact.with_name(artifact.name + ".stamp.json")


def write_stamp_file(artifact: str | os.PathLike, stamp: Stamp) -> None:

    write_text(stamp_file(artifact), stamp.to_json() + "\n")


def read_stamp_file(artifact: str | os.PathLike) -> Stamp | None:
    path = stamp_file(artifact)
    return Stamp.from_json(path.read_text()) if path.is_file() else None


def read_stamp(obj) -> Stamp | None:
    """The stamp of a checkpoint / statistics dict or of HDF5 attributes (None when absent)."""
    text = obj.get("stamp") if hasattr(obj, "get") else None
    if text is None:
        return None
    return Stamp.from_json(text.decode() if isinstance(text, bytes) else str(text))
