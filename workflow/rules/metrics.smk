# Metric tables: FVD / FID / IS of the cascade and its baselines, and the held-out real floor.


rule metrics:
    input:
        unpack(metric_samples),
        index=lambda wc: data_file(wc.dataset, "index.csv"),
    output:
        csv=report("results/{dataset}/metrics.csv", category="Metrics", caption="../report/metrics.rst"),
        paired=report("results/{dataset}/metrics_paired.csv", category="Metrics", caption="../report/metrics_paired.rst"),
        markdown=report("results/{dataset}/metrics.md", category="Metrics", caption="../report/metrics.rst"),
    log:
        "results/{dataset}/logs/metrics.log",
    conda:
        ENV
    threads: 2
    resources:
        **EVAL_RESOURCES,
    params:
        config=config_file,
        fingerprint=fingerprint("metrics"),
        cache=lambda wc: f"results/{owner(wc.dataset, 'data')}/metrics.cache",  # real-clip statistics: keyed by the data
        samples=lambda wc: " ".join(f"{model}={path}" for model, path in metric_samples(wc).items()),
    shell:
        "cvg metrics --config {params.config} --index {input.index} --out {output.csv} --paired {output.paired}"
        " --markdown {output.markdown}"
        " --cache {params.cache} --samples {params.samples} > {log} 2>&1"


rule psd:
    input:
        index=lambda wc: data_file(wc.dataset, "index.csv"),
        cascade=lambda wc: samples_file(wc.dataset, "cascade"),
        bilinear=lambda wc: samples_file(wc.dataset, "bilinear"),
    output:
        csv="results/{dataset}/psd.csv",
        svg=report("results/{dataset}/psd.svg", category="Metrics", caption="../report/psd.rst"),
    log:
        "results/{dataset}/logs/psd.log",
    conda:
        ENV
    params:
        config=config_file,
        fingerprint=fingerprint("metrics"),  # metrics.n_real and real_split choose the real clips
        n=lambda wc: exp(wc).metrics.n_real,
    shell:
        "cvg psd --config {params.config} --index {input.index} --n {params.n} --out {output.csv} --plot {output.svg}"
        " --samples cascade={input.cascade} bilinear={input.bilinear} > {log} 2>&1"


rule paper_table:
    """results/tables/table{N}.md: the paper's numbers beside ours (needs those experiments' metrics)."""
    input:
        unpack(lambda wc: {e: f"results/{e}/metrics.csv" for e in experiments_of(int(wc.number))}),
    output:
        csv="results/tables/table{number}.csv",
        md=report("results/tables/table{number}.md", category="Paper tables"),
    log:
        "results/tables/logs/table{number}.log",
    wildcard_constraints:
        number="[1-5]",
    conda:
        ENV
    params:
        metrics=lambda wc, input: " ".join(f"{name}={path}" for name, path in input.items()),
    shell:
        "cvg table --number {wildcards.number} --metrics {params.metrics} --csv {output.csv} --markdown {output.md} > {log} 2>&1"


rule per_class:
    """results/{dataset}/per_class.csv: appendix E's per-class IS / FID / FVD of the class-conditional
    cascade (metrics.per_class); a target of its own, not part of `all`."""
    input:
        checkpoints=level_checkpoints,
        norms=level_norms,
        index=lambda wc: data_file(wc.dataset, "index.csv"),
    output:
        csv="results/{dataset}/per_class.csv",
        md=report("results/{dataset}/per_class.md", category="Metrics", caption="../report/per_class.rst"),
    log:
        "results/{dataset}/logs/per_class.log",
    conda:
        ENV
    threads: 2
    resources:
        **EVAL_RESOURCES,
    params:
        config=config_file,
        fingerprint=fingerprint("per_class"),
        cache=lambda wc: f"results/{owner(wc.dataset, 'data')}/metrics.cache",  # real-clip statistics: keyed by the data
    shell:
        "cvg per-class --config {params.config} --checkpoints {input.checkpoints} --norms {input.norms} --index {input.index}"
        " --out {output.csv} --markdown {output.md} --cache {params.cache} > {log} 2>&1"
