# The embedded demo dataset, rendered on first use (small; nothing large is committed).

import re


def demo_roots():
    return {name: cfg.dataset.root for name, cfg in EXPERIMENTS.items() if cfg.dataset.kind == "demo"}


rule demo_videos:
    output:
        directory("{demo_root}"),
    wildcard_constraints:
        demo_root="|".join(re.escape(r) for r in demo_roots().values()) or "^$",
    params:
        config=lambda wc: next(CONFIG_FILES[n] for n, r in demo_roots().items() if r == wc.demo_root),
        # re-rendered (Snakemake empties the folder first) when the demo's settings change
        settings=lambda wc: json.dumps(
            next(c.dataset.options.get("demo", {}) for c in EXPERIMENTS.values() if c.dataset.root == wc.demo_root), sort_keys=True
        ),
    log:
        "logs/demo_videos/{demo_root}.log",
    threads: 2
    shell:
        "cvg demo render --config {params.config} --out {output} --workers {threads} > {log} 2>&1"
