# Experiment registry and small helpers shared by all rules.

import json
import os
from pathlib import Path

from snakemake.exceptions import WorkflowError

from cvg.atomic import write_json, write_text
from cvg.config import ConfigError, extends_chain
from cvg.experiment import build_experiment, load_experiment
from cvg.fingerprint import fingerprints


def _load_experiments():
    experiments, sources = {}, {}
    for path in sorted(Path(workflow.basedir, "config").glob("*.yaml")):
        cfg = load_experiment(path)
        experiments[cfg.name], sources[cfg.name] = cfg, str(path)
    global DEPTH
    DEPTH = {name: len(extends_chain(path)) for name, path in sources.items()}
    if config.get("name"):  # --configfile / --config: replaces the experiment of that name
        cfg = build_experiment(dict(config), source="--configfile")
        experiments[cfg.name] = cfg
        for path in workflow.overwrite_configfiles or []:
            sources[cfg.name] = str(path)
    return experiments, sources


try:
    EXPERIMENTS, CONFIG_FILES = _load_experiments()
except ConfigError as exc:
    raise WorkflowError(str(exc)) from None


wildcard_constraints:
    dataset="|".join(EXPERIMENTS),
    split="[A-Za-z0-9_-]+",
    shard=r"\d{5}",


def exp(wildcards):
    return EXPERIMENTS[wildcards.dataset]


DEPTH = {}  # experiment -> how many configs it extends (set by _load_experiments)


def owner(name, stage):
    """The experiment whose results hold ``stage`` of experiment ``name``: of all experiments
    whose ``stage`` has the same fingerprint (the same settings, upstream stages and input
    videos, so the same result), the base-most one (fewest ``extends:``), then by name. An
    ablation that differs from its base only at level 2 so reads the base's data and level 1."""
    fp = fingerprints(EXPERIMENTS[name]).fingerprint(stage)
    same = [other for other, cfg in EXPERIMENTS.items()
            if stage in fingerprints(cfg).stages() and fingerprints(cfg).fingerprint(stage) == fp]
    return min(same, key=lambda other: (DEPTH.get(other, 0), other))


def data_file(name, filename):
    """A file of experiment ``name``'s data stage (index.csv, classes.csv ...), where its owner keeps it."""
    return f"results/{owner(name, 'data')}/data/{filename}"


def level_checkpoint(name, level):
    return f"results/{owner(name, f'train{level}')}/train/level{level}.pt"


def level_norm(name, level):
    return f"results/{owner(name, f'norms{level}')}/samples/norms/level{level}.pt"


def samples_file(name, variant):
    return f"results/{owner(name, f'sample:{variant}')}/samples/{variant}.h5"


def fingerprint(stage):
    """A rule's rerun trigger: the stage fingerprint (``cvg.fingerprint``) of its experiment;
    ``stage`` may name wildcards, e.g. ``"train{level}"``. The artefact records the same value."""

    def get(wildcards):
        return fingerprints(exp(wildcards)).fingerprint(stage.format(**dict(wildcards.items())))

    return get


def _code_version() -> str:
    import subprocess

    import cvg

    try:
        commit = subprocess.run(["git", "-C", workflow.basedir, "describe", "--always", "--dirty"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = "unknown"
    return f"cvg {cvg.__version__} ({commit})"


def config_file(wildcards):
    """``config_snapshot`` of the rule's ``{dataset}``, as a rule's params function."""
    return config_snapshot(wildcards.dataset)


def config_snapshot(name):
    """Experiment ``name``'s validated config, snapshotted at results/{name}/config.yaml.

    Rules read the snapshot (a constant relative path), so where the config came from (config/
    or --configfile, and where the checkout lies) does not trigger reruns; what changes inside
    it does, through each rule's `fingerprint` param (``cvg.fingerprint``). The snapshot and provenance.json record
    what produced the results.
    """
    import yaml

    path = Path("results", name, "config.yaml")
    text = yaml.safe_dump(EXPERIMENTS[name].raw, sort_keys=False)
    if not path.exists() or path.read_text() != text:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text(path, text)
        write_json(Path("results", name, "provenance.json"), {"source": CONFIG_FILES[name], "code": _code_version()})
    return str(path)


def eval_resource(key):
    """One resource of the sampling / metric jobs (``Config.slurm_eval``), for a rule's resources."""

    def get(wildcards):
        spec = exp(wildcards).slurm_eval()
        return {
            "runtime": spec.time_min,
            "mem_mb": int(spec.mem_gb * 1024),
            "gpu": spec.gpus_per_node,
            "cpus_per_task": spec.cpus_per_task,
            "slurm_partition": spec.partition or None,
            "slurm_account": spec.account or None,
        }[key]

    return get


# resources of every sampling / metric rule: `resources: **EVAL_RESOURCES`
EVAL_RESOURCES = {key: eval_resource(key) for key in ("runtime", "mem_mb", "gpu", "cpus_per_task", "slurm_partition", "slurm_account")}
