# Experiment registry and small helpers shared by all rules.

from pathlib import Path

from snakemake.exceptions import WorkflowError

from cvg.config import ConfigError, build_config, load_config


def _load_experiments():
    experiments, sources = {}, {}
    for path in sorted(Path(workflow.basedir, "config").glob("*.yaml")):
        cfg = load_config(path)
        experiments[cfg.name], sources[cfg.name] = cfg, str(path)
    if config.get("name"):  # --configfile / --config: replaces the experiment of that name
        cfg = build_config(dict(config), source="--configfile")
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


def config_file(wildcards):
    return CONFIG_FILES[wildcards.dataset]
