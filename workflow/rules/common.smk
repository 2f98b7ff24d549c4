# Experiment registry and small helpers shared by all rules.

import json
import os
import re
import shlex
from pathlib import Path

from snakemake.exceptions import WorkflowError

from cvg.atomic import write_json, write_text
from cvg.config import ConfigError, extends_chain, resolve_raw
from cvg.experiment import build_experiment, load_experiment
from cvg.stop import forward_stops
from cvg.tables import experiments_of
from cvg.variants import PATTERN as VARIANT_PATTERN, scored_variants, trained_levels

ENV = "../envs/cvg.yaml"  # every rule's conda environment (`--use-conda`): the project's one (envs/cvg.yaml)


def _load_experiments():
    """Every config/*.yaml, and the experiment --configfile / --config define (it replaces the
    config/ one of the same name), each resolved by the one rule of ``cvg.config.resolve_raw``."""
    experiments, sources, depth = {}, {}, {}
    for path in sorted(Path(REPO, "config").glob("*.yaml")):
        cfg = load_experiment(path)
        experiments[cfg.name], sources[cfg.name], depth[cfg.name] = cfg, str(path), len(extends_chain(path))
    files = list(workflow.overwrite_configfiles or [])
    overrides = dict(workflow.config_settings.config or {})
    if files or overrides:
        source = str(files[-1]) if files else "--config"
        cfg = build_experiment(resolve_raw(files, overrides), source=source)
        experiments[cfg.name], sources[cfg.name] = cfg, source
        base = overrides.get("extends")
        depth[cfg.name] = len(extends_chain(files[-1])) if files else 0
        depth[cfg.name] += 1 + len(extends_chain(base)) if base else 0
    return experiments, sources, depth


def _command_options():
    """The snakemake options that define the command line's experiment (its --configfile /
    --config), for the commands cvg's messages suggest (``provenance.json``'s ``options``)."""
    files = [f"--configfile {shlex.quote(str(f))}" for f in workflow.overwrite_configfiles or []]
    items = [shlex.quote(f"{key}={json.dumps(value)}") for key, value in dict(workflow.config_settings.config or {}).items()]
    return " ".join(files + (["--config", *items] if items else []))


try:
    EXPERIMENTS, CONFIG_FILES, DEPTH = _load_experiments()
    COMMAND_LINE_OPTIONS = _command_options()
except ConfigError as exc:
    raise WorkflowError(str(exc)) from None


wildcard_constraints:
    dataset="|".join(EXPERIMENTS),
    split="[A-Za-z0-9_-]+",
    shard=r"\d{5}",


def exp(wildcards):
    return EXPERIMENTS[wildcards.dataset]


def owner(name, stage):
    """The experiment whose results hold ``stage`` of experiment ``name``: of all experiments
    whose ``stage`` has the same fingerprint (the same settings, upstream stages and input
    videos, so the same result), the base-most one (fewest ``extends:``), then by name. An
    ablation that differs from its base only at level 2 so reads the base's data and level 1."""
    fp = EXPERIMENTS[name].fingerprint(stage)
    same = [other for other, cfg in EXPERIMENTS.items() if stage in cfg.stages() and cfg.fingerprint(stage) == fp]
    return min(same, key=lambda other: (DEPTH[other], other))


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
    """A rule's rerun trigger: the stage fingerprint of its experiment (``Experiment.fingerprint``);
    ``stage`` may name wildcards, e.g. ``"train{level}"``. The artefact records the same value."""

    def get(wildcards):
        return exp(wildcards).fingerprint(stage.format(**dict(wildcards.items())))

    return get


def _code_version() -> str:
    import subprocess

    import cvg

    try:
        commit = subprocess.run(["git", "-C", str(REPO), "describe", "--always", "--dirty"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = "unknown"
    return f"cvg {cvg.__version__} ({commit})"


def snapshot_path(name):
    return f"results/{name}/config.yaml"


def config_file(wildcards):
    """The config snapshot of the rule's ``{dataset}`` (``write_snapshots``), as a rule's params function."""
    return snapshot_path(wildcards.dataset)


def options_of(name):
    """The snakemake options experiment ``name`` needs: none for config/'s, the command line's otherwise."""
    return "" if CONFIG_FILES[name].startswith(str(Path(REPO, "config"))) else COMMAND_LINE_OPTIONS


def write_snapshots(jobs):
    """Write the config snapshot of every experiment the ``jobs`` read: its validated, fully
    resolved config (no ``extends``) at results/{name}/config.yaml, and provenance.json beside it
    (the config's source, the code). Called by ``onstart``: after Snakemake holds its lock and
    never in a dry run, so `snakemake -n` and a run refused by the lock write nothing.

    Rules read the snapshot (a constant relative path, their `config` param), so where the config
    came from (config/ or --configfile, and where the checkout lies) does not trigger reruns; what
    changes inside it does, through each rule's `fingerprint` param (``cvg.fingerprint``).
    """
    names = sorted({Path(job.params.config).parent.name for job in jobs if "config" in job.params.keys()})
    for name in names:
        path, text = Path(snapshot_path(name)), EXPERIMENTS[name].to_yaml()
        if path.exists() and path.read_text() == text:
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text(path, text)
        write_json(path.with_name("provenance.json"), {"source": CONFIG_FILES[name], "code": _code_version(), "options": options_of(name)})


onstart:
    write_snapshots(workflow.dag.needrun_jobs())
    forward_stops()  # SIGTERM / SIGINT to snakemake reach the running training jobs (cvg.stop)


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


# -- helpers of the stage rules --------------------------------------------------------------
def demo_roots():
    return {name: cfg.dataset.root for name, cfg in EXPERIMENTS.items() if cfg.dataset.kind == "demo"}


def demo_experiment(root):
    """The name of the demo experiment whose videos go to ``root``."""
    return next(name for name, r in demo_roots().items() if r == root)


def dataset_input(wildcards):
    """The dataset directory; for real datasets it must exist before the DAG is built."""
    cfg = exp(wildcards)
    if cfg.dataset.kind == "demo":
        return cfg.dataset.root  # produced by rule demo_videos
    root = Path(cfg.dataset.root)
    if not root.is_dir():
        raise WorkflowError(
            f"dataset '{cfg.name}' ({cfg.dataset.kind}) not found: expected it at {root.resolve()}. "
            f"Download it there or set dataset.root in {CONFIG_FILES[cfg.name]} (see README, 'Real datasets')."
        )
    return []


def all_shards(wildcards, suffix=".h5"):
    import pandas as pd
    from cvg.data.shards import shard_keys

    manifest = checkpoints.manifest.get(dataset=wildcards.dataset).output.manifest
    keys = shard_keys(pd.read_csv(manifest, keep_default_na=False))
    return [f"results/{wildcards.dataset}/data/shards/{split}/{shard:05d}{suffix}" for split, shard in keys]


def slurm_of(wildcards):
    return exp(wildcards).slurm(int(wildcards.level))


def level_checkpoints(wildcards):
    return [level_checkpoint(wildcards.dataset, lv.index) for lv in exp(wildcards).levels]


def level_norms(wildcards):
    """Every level's BN statistics for sampling (``rule norms``), prepared once for all the sample
    variants; none where ``sample.bn`` is stationary (then there is nothing to prepare)."""
    if exp(wildcards).sample.bn != "recompute":
        return []
    return [level_norm(wildcards.dataset, lv.index) for lv in exp(wildcards).levels]


def variant_checkpoints(wildcards):
    """The checkpoints a variant reads (``cvg.variants.trained_levels``), so retraining a level
    leaves the samples that ignore it alone."""
    return level_checkpoints(wildcards)[: trained_levels(wildcards.variant, len(exp(wildcards).levels))]


def variant_norms(wildcards):
    """The BN statistics of the trained levels a variant samples (the untrained baseline: level 1's)."""
    return level_norms(wildcards)[: trained_levels(wildcards.variant, len(exp(wildcards).levels))]


def metric_samples(wildcards):
    """{table model name: samples HDF5}: every sample variant (``cvg.variants``: the cascade, its
    baselines, the cascade cut at each intermediate level); the on-real ones only where held-out
    real clips are configured."""
    cfg = exp(wildcards)
    variants = scored_variants(len(cfg.levels), bool(cfg.metrics.heldout_split), cfg.metrics.training_setup, cfg.model.refine)
    return {v: samples_file(wildcards.dataset, v) for v in variants}
