"""Experiment configuration: JSON-schema validation at load, then typed dataclasses.

The same schema file (``cvg/schemas/config.schema.yaml``, linked from ``workflow/schemas/``)
validates configs loaded from Python and from the Snakefile, so both fail with the same
message naming the bad key and, for enumerations, the allowed values.
"""

from __future__ import annotations

import copy
import json
import math
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from cvg.clips import MIN_FRAMES, SHORT_CLIP_FRAMES, as_lengths
from cvg.errors import CvgError


class ConfigError(CvgError, ValueError):
    """A configuration that does not match the schema or is internally inconsistent."""


@lru_cache(maxsize=1)
def config_schema() -> dict:
    text = resources.files("cvg").joinpath("schemas/config.schema.yaml").read_text()
    return yaml.safe_load(text)


def _key_path(error: jsonschema.ValidationError) -> str:
    parts = [str(p) for p in error.absolute_path]
    return ".".join(parts) if parts else "<top level>"


def _describe(error: jsonschema.ValidationError) -> str:
    where = _key_path(error)
    if error.validator == "enum":
        allowed = ", ".join(repr(v) for v in error.validator_value)
        return f"{where}: {error.instance!r} is not allowed; allowed values: {allowed}"
    if error.validator == "additionalProperties":
        known = sorted(error.schema.get("properties", {}))
        return f"{where}: {error.message}; known keys: {', '.join(known)}"
    if error.validator in ("oneOf", "anyOf") and "description" in error.schema:  # say what *is* expected
        return f"{where}: {error.instance!r} is not valid: {' '.join(error.schema['description'].split())}"
    return f"{where}: {error.message}"


def _fill_defaults(instance: Any, schema: dict) -> None:
    """Insert schema defaults for missing keys, recursively (objects and arrays of objects)."""
    if isinstance(instance, dict):
        for key, sub in schema.get("properties", {}).items():
            if key not in instance and "default" in sub:
                instance[key] = copy.deepcopy(sub["default"])
            if key in instance:
                _fill_defaults(instance[key], sub)
    elif isinstance(instance, list) and isinstance(schema.get("items"), dict):
        for item in instance:
            _fill_defaults(item, schema["items"])


def validate_config(raw: dict, source: str = "config") -> dict:
    """Validate ``raw`` against the schema and the pyramid's arithmetic; return a filled copy."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a mapping at the top level, got {type(raw).__name__}")
    config = copy.deepcopy(raw)
    schema = config_schema()
    errors = sorted(
        jsonschema.Draft202012Validator(schema).iter_errors(config),
        key=lambda e: list(map(str, e.absolute_path)),
    )
    if errors:
        lines = "\n  ".join(_describe(e) for e in errors)
        raise ConfigError(f"{source} is invalid:\n  {lines}")
    _fill_defaults(config, schema)
    _check_levels(config, source)
    _check_metrics(config, source)
    return config


def _check_metrics(config: dict, source: str) -> None:
    m = config["metrics"]
    top = config["levels"][-1]["frames"]
    level1 = config["sample"]["level1_frames"]
    sampled = top if level1 is None else top // config["levels"][0]["frames"] * level1
    where = f"levels.{len(config['levels']) - 1}.frames" if level1 is None else "sample.level1_frames x the temporal factors"
    for key, lengths in (("metrics.frames", as_lengths(m["frames"])), ("metrics.per_class.frames", [m["per_class"]["frames"] or 0])):
        if max(lengths) > sampled:
            raise ConfigError(f"{source}: {key} asks for {max(lengths)} frames, but the samples have {sampled} ({where})")
    splits = config["data"]["splits"]
    for key in ("real_split", "heldout_split"):
        if m[key] is not None and m[key] not in splits:
            raise ConfigError(f"{source}: metrics.{key}={m[key]!r} is not one of data.splits {splits}")
    lengths = as_lengths(m["frames"])
    if m["training_setup"]:
        top_level = config["levels"][-1]
        if len(config["levels"]) < 2:
            raise ConfigError(f"{source}: metrics.training_setup needs an upsampling level (the cascade has one level)")
        lengths = lengths + [top_level.get("window", config["levels"][-2]["frames"]) * top_level["temporal_factor"]]
    short = sorted(f for f in lengths if f < MIN_FRAMES)
    if short and m["short_clips"] != "repeat":
        raise ConfigError(
            f"{source}: metrics.frames asks for {short} frames, fewer than I3D's {MIN_FRAMES}: use {MIN_FRAMES} or more, "
            f"or set metrics.short_clips: repeat to score such clips stretched to {SHORT_CLIP_FRAMES} frames by frame repetition"
        )


def _check_levels(config: dict, source: str) -> None:
    levels = config["levels"]
    for i, level in enumerate(levels):
        key = f"levels.{i}"
        if i == 0:
            for name in ("temporal_factor", "spatial_factor", "window"):
                if name in level:
                    raise ConfigError(f"{source}: {key}.{name} is only meaningful for upsampling levels (2..L)")
            continue
        prev = levels[i - 1]
        for name in ("temporal_factor", "spatial_factor"):
            if name not in level:
                raise ConfigError(f"{source}: {key}.{name} is required for an upsampling level")
        if level["frames"] != prev["frames"] * level["temporal_factor"]:
            raise ConfigError(
                f"{source}: {key}.frames={level['frames']} must equal levels.{i - 1}.frames ({prev['frames']})"
                f" x temporal_factor ({level['temporal_factor']})"
            )
        if level["resolution"] != prev["resolution"] * level["spatial_factor"]:
            raise ConfigError(
                f"{source}: {key}.resolution={level['resolution']} must equal levels.{i - 1}.resolution"
                f" ({prev['resolution']}) x spatial_factor ({level['spatial_factor']})"
            )
        window = level.get("window", prev["frames"])
        if window > prev["frames"]:
            raise ConfigError(
                f"{source}: {key}.window={window} exceeds the previous level's {prev['frames']} frames"
            )
    for section in ("train", "slurm"):
        extra = len(config.get(section, {}).get("levels", [])) - len(levels)
        if extra > 0:
            raise ConfigError(f"{source}: {section}.levels has {extra} more entries than there are levels ({len(levels)})")
    strides = level_strides(config["data"]["stride"], [lv.get("temporal_factor", 1) for lv in levels])
    for i, (level, stride) in enumerate(zip(levels, strides)):
        if "stride" in level and level["stride"] != stride:
            raise ConfigError(
                f"{source}: levels.{i}.stride={level['stride']} but data.stride and the temporal factors give {stride}"
            )


def level_strides(top_stride: int, temporal_factors: list[int]) -> list[int]:
    """Temporal subsampling of each level relative to data.fps (level 1 first)."""
    strides = [top_stride]
    for factor in reversed(temporal_factors[1:]):
        strides.append(strides[-1] * factor)
    return strides[::-1]


@dataclass(frozen=True)
class LevelSpec:
    """One level of the pyramid, with its training window in previous-level frames."""

    index: int  # 1-based, as in the paper
    frames: int
    resolution: int
    stride: int
    temporal_factor: int
    spatial_factor: int
    window: int | None  # previous-level frames per training window (None for level 1)

    @property
    def is_first(self) -> bool:
        return self.index == 1

    @property
    def window_out(self) -> int:
        """Output frames of one training window."""
        return self.frames if self.window is None else self.window * self.temporal_factor


def level_defaults(definition: str) -> dict:
    """The defaults of a per-level section (``train_level``, ``slurm_level`` in the schema's
    ``$defs``): the schema is the one place of every default; the per-level sections take theirs
    here, under ``defaults:`` and ``levels:`` (merged by ``Config.train`` / ``Config.slurm``)."""
    properties = config_schema()["$defs"][definition]["properties"]
    return {key: copy.deepcopy(spec["default"]) for key, spec in properties.items()}


# the paper's values where it gives them (Sec. V / appendix A); betas are BigGAN's / DVD-GAN's
TRAIN_DEFAULTS = level_defaults("train_level")
SLURM_DEFAULTS = level_defaults("slurm_level")


@dataclass(frozen=True)
class TrainSpec:
    steps: int
    batch_size: int
    micro_batch: int
    lr_g: float
    lr_d: float
    betas: tuple[float, float]
    d_steps: int
    ema: float
    ema_ramp: float
    recon: float
    spectrum: float
    spectrum_form: str
    checkpoint_every: int
    eval_every: int
    eval_samples: int
    early_stop: int
    log_every: int
    sample_every: int
    seed: int
    num_workers: int
    precision: str
    compile: bool
    launcher: str
    procs: int


@dataclass(frozen=True)
class SlurmSpec:
    nodes: int
    gpus_per_node: int
    tasks_per_node: int | None
    cpus_per_task: int
    mem_gb: float
    gpu_mem_gb: float | None
    time_min: int
    partition: str
    account: str
    signal_delay_s: int
    max_requeues: int

    @property
    def tasks(self) -> int:
        return self.tasks_per_node or max(1, self.gpus_per_node)


@dataclass(frozen=True)
class ModelSpec:
    preset: str
    width: float
    matching: bool
    refine: bool


@dataclass(frozen=True)
class DataSpec:
    fps: float
    stride: int
    splits: tuple[str, ...]
    clips_per_video: int
    shard_size_mb: float
    compression: str | None
    workers: int
    ffmpeg_threads: int
    scale_flags: str


@dataclass(frozen=True)
class DatasetSpec:
    kind: str
    root: str
    conditional: bool
    options: dict  # the kind's own keys (demo:, annotations:, split:, ...)


@dataclass(frozen=True)
class SampleSpec:
    """``sample:``: how the frozen cascade is sampled (defaults in the schema)."""

    n_samples: int
    sigma: float
    grid_sigma: float
    grid_samples: int
    batch_size: int
    chunk: int | None
    level1_frames: int | None
    bn: str
    bn_passes: int
    seed: int


@dataclass(frozen=True)
class PerClassSpec:
    """``metrics.per_class:``: appendix E's per-class table."""

    groups: dict
    n_samples: int
    n_real: int | None
    frames: int | None


@dataclass(frozen=True)
class MetricsSpec:
    """``metrics:``: what is scored and how (defaults in the schema); ``frames`` always a tuple of lengths."""

    n_real: int
    frames: tuple[int, ...]
    short_clips: str
    batch_size: int
    classifier_steps: int
    training_setup: bool
    fid_network: str | None
    is_splits: int
    real_split: str
    heldout_split: str | None
    seed: int
    per_class: PerClassSpec


@dataclass(frozen=True)
class Config:
    name: str
    dataset: DatasetSpec
    data: DataSpec
    levels: tuple[LevelSpec, ...]
    raw: dict

    def to_yaml(self) -> str:
        """The validated mapping, defaults filled in, as YAML (the experiment's config snapshot)."""
        return yaml.safe_dump(self.raw, sort_keys=False)

    def to_json(self) -> str:
        """The same mapping as JSON (what a level checkpoint records of its config)."""
        return json.dumps(self.raw)

    @property
    def sample(self) -> SampleSpec:
        return SampleSpec(**self.raw["sample"])

    @property
    def metrics(self) -> MetricsSpec:
        m = dict(self.raw["metrics"])
        m["frames"] = tuple(as_lengths(m["frames"]))
        m["per_class"] = PerClassSpec(**m["per_class"])
        return MetricsSpec(**m)

    @property
    def model(self) -> ModelSpec:
        m = self.raw["model"]
        return ModelSpec(preset=m["preset"], width=float(m["width"]), matching=m["matching"], refine=m["refine"])

    def _merged(self, section: str, builtin: dict, index: int) -> dict:
        self.level(index)
        sec = self.raw.get(section, {})
        overrides = sec.get("levels", [])
        return {**builtin, **sec.get("defaults", {}), **(overrides[index - 1] if index <= len(overrides) else {})}

    def train(self, index: int) -> TrainSpec:
        """Training settings of level ``index``: built-in < train.defaults < train.levels[index-1]."""
        merged = self._merged("train", TRAIN_DEFAULTS, index)
        merged["betas"] = tuple(merged["betas"])
        return TrainSpec(**merged)

    def slurm(self, index: int) -> SlurmSpec:
        return SlurmSpec(**self._merged("slurm", SLURM_DEFAULTS, index))

    def slurm_eval(self) -> SlurmSpec:
        """Resources of the sampling and metric jobs: one process on one node with at most one
        GPU (the sampler and I3D use one device), partition, account, CPUs, memory and time as
        ``slurm.defaults``; ``slurm.eval`` overrides any of them."""
        sec = self.raw.get("slurm", {})
        base = {**SLURM_DEFAULTS, **sec.get("defaults", {})}
        base.update(nodes=1, gpus_per_node=min(1, base["gpus_per_node"]), tasks_per_node=1)
        return SlurmSpec(**{**base, **sec.get("eval", {})})

    @property
    def top(self) -> LevelSpec:
        return self.levels[-1]

    def level(self, index: int) -> LevelSpec:
        if not 1 <= index <= len(self.levels):
            raise ConfigError(f"{self.name}: level {index} does not exist (levels 1..{len(self.levels)})")
        return self.levels[index - 1]

    @property
    def decode_fps(self) -> float:
        """Frame rate handed to ffmpeg: data.fps subsampled by the top level's stride."""
        return self.data.fps / self.data.stride

    def bytes_per_clip(self) -> int:
        return sum(lv.frames * lv.resolution**2 * 3 for lv in self.levels)

    def clips_per_shard(self) -> int:
        return max(1, math.floor(self.data.shard_size_mb * 2**20 / self.bytes_per_clip()))


def build_config(raw: dict, source: str = "config") -> Config:
    if isinstance(raw, dict) and "extends" in raw:  # a mapping that says extends never silently runs on the defaults
        raise ConfigError(f"{source}: extends: {raw['extends']!r} is not resolved: read config files with read_raw / resolve_raw, "
                          "which resolve extends relative to the file that says it")
    cfg = validate_config(raw, source)
    data = cfg["data"]
    strides = level_strides(data["stride"], [lv.get("temporal_factor", 1) for lv in cfg["levels"]])
    levels = []
    for i, (lv, stride) in enumerate(zip(cfg["levels"], strides)):
        first = i == 0
        levels.append(
            LevelSpec(
                index=i + 1,
                frames=lv["frames"],
                resolution=lv["resolution"],
                stride=stride,
                temporal_factor=1 if first else lv["temporal_factor"],
                spatial_factor=1 if first else lv["spatial_factor"],
                window=None if first else lv.get("window", cfg["levels"][i - 1]["frames"]),
            )
        )
    ds = cfg["dataset"]
    options = {k: v for k, v in ds.items() if k not in ("kind", "root", "conditional")}
    return Config(
        name=cfg["name"],
        dataset=DatasetSpec(kind=ds["kind"], root=ds["root"], conditional=ds["conditional"], options=options),
        data=DataSpec(
            fps=float(data["fps"]),
            stride=data["stride"],
            splits=tuple(data["splits"]),
            clips_per_video=data["clips_per_video"],
            shard_size_mb=float(data["shard_size_mb"]),
            compression=data["compression"],
            workers=data["workers"],
            ffmpeg_threads=data["ffmpeg_threads"],
            scale_flags=data["scale_flags"],
        ),
        levels=tuple(levels),
        raw=cfg,
    )


def deep_merge(base: dict, override: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in override.items():
        out[key] = deep_merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else copy.deepcopy(value)
    return out


def read_raw(path: str | Path, _seen: tuple = ()) -> dict:
    """A config file's mapping with its ``extends:`` chain resolved (each ``extends`` relative to
    the file that says it); a missing base or a cycle is an error naming the files."""
    path = Path(path)
    if path.resolve() in _seen:
        cycle = " -> ".join(str(p) for p in (*_seen, path.resolve()))
        raise ConfigError(f"{path}: extends itself (cycle {cycle})")
    if not path.is_file():
        said = f"{_seen[-1]}: extends {path}, which" if _seen else f"config file {path}"
        raise ConfigError(f"{said} does not exist")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if isinstance(raw, dict) and "extends" in raw:
        base = read_raw(path.parent / raw.pop("extends"), _seen + (path.resolve(),))
        raw = deep_merge(base, raw)
    return raw


def resolve_raw(files: list[str | Path], overrides: dict | None = None, cwd: str | Path = ".") -> dict:
    """The one resolution of a config given as files (each with its ``extends:`` chain resolved
    relative to that file, later files over earlier ones, as Snakemake's ``--configfile``) and
    key overrides on top (``--config``; an ``extends`` among them is relative to ``cwd`` and is
    the base of everything). The result holds no ``extends``."""
    raw: dict = {}
    for path in files:
        layer = read_raw(path)
        if not isinstance(layer, dict):
            raise ConfigError(f"{path}: expected a mapping at the top level, got {type(layer).__name__}")
        raw = deep_merge(raw, layer)
    overrides = dict(overrides or {})
    if "extends" in overrides:
        raw = deep_merge(read_raw(Path(cwd) / overrides.pop("extends")), raw)
    return deep_merge(raw, overrides)


def extends_chain(path: str | Path) -> list[Path]:
    """The config files ``path`` extends, nearest first (``extends:`` keys, resolved relative to each file)."""
    chain, path = [], Path(path)
    while True:
        raw = yaml.safe_load(path.read_text()) if path.is_file() else None
        if not isinstance(raw, dict) or "extends" not in raw:
            return chain
        path = path.parent / raw["extends"]
        if path.resolve() in [p.resolve() for p in chain]:
            raise ConfigError(f"{path}: extends itself")
        chain.append(path)


def load_config(path: str | Path) -> Config:
    """Read, validate and type a config file; errors name the file and the key."""
    return build_config(read_raw(path), source=str(path))
