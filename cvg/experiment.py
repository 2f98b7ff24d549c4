"""An experiment ready to run: its config, validated by the schema (``cvg.config``), and the
checks that need the model presets: every level's networks exist and reach its resolution,
and every level's global batch splits evenly over the processes its launcher starts. So a
config that cannot run fails when it loads (in the workflow, before any job), naming the key.

``Experiment`` is that config with its stage fingerprints as methods (``cvg.fingerprint``):
what the workflow's rules call for their rerun triggers and to find where a stage's results live.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields

from cvg.config import Config, ConfigError, build_config, load_config
from cvg.fingerprint import Fingerprints, fingerprints
from cvg.models.generators import start_resolution
from cvg.models.presets import get_preset


def processes(config: Config, index: int, gpus: int = 0) -> int:
    """The processes level ``index``'s training starts: one (``local``), the node's ``gpus`` or
    else ``train.procs`` (``torchrun``; the GPUs are known only where it runs), nodes x tasks (``slurm``)."""
    t, s = config.train(index), config.slurm(index)
    if t.launcher == "torchrun":
        return gpus or t.procs
    if t.launcher == "slurm":
        return s.nodes * s.tasks
    return 1


def check_experiment(config: Config, source: str = "config") -> Config:
    """Raise ``ConfigError`` naming the key when ``config`` cannot run with its preset and launchers."""
    m = config.model
    preset = get_preset(m.preset, m.width)
    if len(preset.nets) < len(config.levels):
        raise ConfigError(f"{source}: model.preset {m.preset!r} has networks for {len(preset.nets)} levels, "
                          f"the config has {len(config.levels)} (levels)")
    for lv, net in zip(config.levels, preset.nets):
        units = len(net.g_mults)
        try:
            start_resolution(lv.resolution, units)
        except ValueError:
            step = 2 ** (units - 1)
            raise ConfigError(f"{source}: levels.{lv.index - 1}.resolution={lv.resolution} cannot be reached by the {m.preset!r} preset's "
                              f"{units} generator units at level {lv.index} (each doubles the size): use a multiple of {step}") from None
    for lv in config.levels:
        check_batch(config, lv.index, processes(config, lv.index), source)
        t = config.train(lv.index)
        if t.early_stop and not t.eval_every:
            raise ConfigError(f"{source}: train early_stop={t.early_stop} of level {lv.index} needs evaluations: set train eval_every")
    return config


def check_batch(config: Config, index: int, world: int, source: str = "config") -> None:
    t = config.train(index)
    if t.batch_size % world:
        raise ConfigError(f"{source}: train batch_size={t.batch_size} of level {index} (train.defaults / train.levels.{index - 1}) "
                          f"is not divisible by the {world} processes of launcher {t.launcher!r}")


@dataclass(frozen=True)
class Experiment(Config):
    """A config that can run, with its stage fingerprints (the dataset's listing is read once per
    process and dataset)."""

    @classmethod
    def of(cls, config: Config) -> "Experiment":
        return cls(**{f.name: getattr(config, f.name) for f in fields(Config)})

    def fingerprints(self) -> Fingerprints:
        return fingerprints(self)

    def stages(self) -> list[str]:
        """Every stage of this experiment: demo (demo data only), data, train{l}, norms{l}, sample:{variant}, metrics, per_class."""
        return self.fingerprints().stages()

    def fingerprint(self, stage: str) -> str:
        """The fingerprint of ``stage``: a rule's rerun trigger, recorded by the stage's artefacts."""
        return self.fingerprints().fingerprint(stage)


def load_experiment(path: str | os.PathLike) -> Experiment:
    """``load_config`` and ``check_experiment``: what every stage loads."""
    return Experiment.of(check_experiment(load_config(path), str(path)))


def build_experiment(raw: dict, source: str = "config") -> Experiment:
    return Experiment.of(check_experiment(build_config(raw, source), source))
