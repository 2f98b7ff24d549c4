# Frozen-cascade sampling: the trained cascade, its baselines, its per-level cuts and their on-real-input variants for the metrics table.


rule norms:
    """Level k's per-timestep BN statistics at the sampled length (appendix A's dummy passes over
    the lower levels' samples), continuing from levels 1..k-1's. Every variant that samples level
    k reads them, so the passes run once, not once per variant."""
    input:
        checkpoints=lambda wc: level_checkpoints(wc)[: int(wc.level)],
        prev=lambda wc: [level_norm(wc.dataset, i) for i in range(1, int(wc.level))],
    output:
        "results/{dataset}/samples/norms/level{level}.pt",
    log:
        "results/{dataset}/logs/sample/norms_level{level}.log",
    wildcard_constraints:
        level=r"\d+",
    conda:
        ENV
    threads: 2
    resources:
        **EVAL_RESOURCES,
    params:
        config=config_file,
        fingerprint=fingerprint("norms{level}"),
    shell:
        "cvg norms --config {params.config} --checkpoints {input.checkpoints} --prev {input.prev} --out {output} > {log} 2>&1"


rule sample:
    input:
        checkpoints=level_checkpoints,
        norms=level_norms,
    output:
        samples="results/{dataset}/samples/cascade.h5",
        mp4=report("results/{dataset}/samples/grid.mp4", category="Samples", caption="../report/grid.rst"),
        gif="results/{dataset}/samples/grid.gif",
    log:
        "results/{dataset}/logs/sample/cascade.log",
    conda:
        ENV
    threads: 2
    resources:
        **EVAL_RESOURCES,
    params:
        config=config_file,
        fingerprint=fingerprint("sample:cascade"),
    shell:
        "cvg sample --config {params.config} --checkpoints {input.checkpoints} --norms {input.norms} --variant cascade --out {output.samples}"
        " --grid {output.mp4} {output.gif} > {log} 2>&1"


rule sample_baseline:
    """Baselines (untrained upsampling levels, bilinear upsampling of level 1), the cascade cut at
    an intermediate level k (cascade_to_level{k}: levels above k bilinear), and each of those
    applied to real held-out level-1 clips (*_on_real: what the upsampling levels add, apart
    from level 1's quality)."""
    input:
        checkpoints=variant_checkpoints,
        norms=variant_norms,
        index=lambda wc: data_file(wc.dataset, "index.csv"),
    output:
        "results/{dataset}/samples/{variant}.h5",
    log:
        "results/{dataset}/logs/sample/{variant}.log",
    wildcard_constraints:
        variant=VARIANT_PATTERN,
    conda:
        ENV
    threads: 2
    resources:
        **EVAL_RESOURCES,
    params:
        config=config_file,
        fingerprint=fingerprint("sample:{variant}"),
    shell:
        "cvg sample --config {params.config} --checkpoints {input.checkpoints} --norms {input.norms} --variant {wildcards.variant}"
        " --index {input.index}"
        " --out {output} > {log} 2>&1"


rule strip:
    """A PNG of real held-out clips above samples of the same classes, a few frames each."""
    input:
        index=lambda wc: data_file(wc.dataset, "index.csv"),
        samples=lambda wc: samples_file(wc.dataset, "cascade"),
    output:
        report("results/{dataset}/samples/strip.png", category="Samples"),
    log:
        "results/{dataset}/logs/sample/strip.log",
    conda:
        ENV
    params:
        config=config_file,
        fingerprint=fingerprint("metrics"),  # metrics.real_split / heldout_split choose the real clips shown
    shell:
        "cvg strip --config {params.config} --index {input.index} --samples {input.samples} --out {output} > {log} 2>&1"
