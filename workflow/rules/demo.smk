# The embedded demo dataset, rendered on first use (small; nothing large is committed).


rule demo_videos:
    output:
        directory("{demo_root}"),
    log:
        "logs/demo_videos/{demo_root}.log",
    wildcard_constraints:
        demo_root="|".join(re.escape(r) for r in demo_roots().values()) or "^$",
    conda:
        ENV
    threads: 2
    params:
        # the snapshot (a relative path), not the source: a moved checkout or config file does
        # not re-render the videos and so retrain everything
        config=lambda wc: snapshot_path(demo_experiment(wc.demo_root)),
        # re-rendered (Snakemake empties the folder first) when the demo's settings change
        fingerprint=lambda wc: EXPERIMENTS[demo_experiment(wc.demo_root)].fingerprint("demo"),
    shell:
        "cvg demo render --config {params.config} --out {output} --workers {threads} > {log} 2>&1"
