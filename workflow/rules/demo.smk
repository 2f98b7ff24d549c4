# The embedded demo dataset, rendered on first use (small; nothing large is committed).

import re


def demo_roots():
    return {name: cfg.dataset.root for name, cfg in EXPERIMENTS.items() if cfg.dataset.kind == "demo"}


def demo_experiment(root):
    """The name of the demo experiment whose videos go to ``root``."""
    return next(name for name, r in demo_roots().items() if r == root)


rule demo_videos:
    output:
        directory("{demo_root}"),
    wildcard_constraints:
        demo_root="|".join(re.escape(r) for r in demo_roots().values()) or "^$",
    params:
        # the snapshot (a relative path), not the source: a moved checkout or config file does
        # not re-render the videos and so retrain everything
        config=lambda wc: config_snapshot(demo_experiment(wc.demo_root)),
        # re-rendered (Snakemake empties the folder first) when the demo's settings change
        fingerprint=lambda wc: fingerprints(EXPERIMENTS[demo_experiment(wc.demo_root)]).fingerprint("demo"),
    log:
        "logs/demo_videos/{demo_root}.log",
    threads: 2
    shell:
        "cvg demo render --config {params.config} --out {output} --workers {threads} > {log} 2>&1"
