# Metric tables: FVD / FID / IS of the cascade and its baselines, and the held-out real floor.

from cvg.tables import experiments_of
from cvg.variants import ON_REAL, WINDOWS, table_name, variant_names


def metric_samples(wildcards):
    """{table model name: samples HDF5}: every sample variant (``cvg.variants``: the cascade, its
    baselines, the cascade cut at each intermediate level); the on-real ones only where held-out
    real clips are configured."""
    m = exp(wildcards).raw["metrics"]
    variants = [v for v in variant_names(len(exp(wildcards).levels)) if (m["heldout_split"] or not v.endswith(ON_REAL))
                and (m["training_setup"] or v != WINDOWS)]
    return {table_name(v): samples_file(wildcards.dataset, v) for v in variants}


rule metrics:
    input:
        unpack(metric_samples),
        index=lambda wc: data_file(wc.dataset, "index.csv"),
    output:
        report("results/{dataset}/metrics.csv", category="Metrics", caption="../report/metrics.rst"),
        paired=report("results/{dataset}/metrics_paired.csv", category="Metrics", caption="../report/metrics_paired.rst"),
        markdown=report("results/{dataset}/metrics.md", category="Metrics", caption="../report/metrics.rst"),
    params:
        config=config_file,
        fingerprint=fingerprint("metrics"),
        cache=lambda wc: f"results/{owner(wc.dataset, 'data')}/metrics.cache",  # real-clip statistics: keyed by the data
        samples=lambda wc: " ".join(f"{model}={path}" for model, path in metric_samples(wc).items()),
    resources:
        **EVAL_RESOURCES,
    threads: 2
    log:
        "results/{dataset}/logs/metrics.log",
    shell:
        "cvg metrics --config {params.config} --index {input.index} --out {output[0]} --paired {output.paired}"
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
    params:
        config=config_file,
        n=lambda wc: exp(wc).raw["metrics"]["n_real"],
    log:
        "results/{dataset}/logs/psd.log",
    shell:
        "cvg psd --config {params.config} --index {input.index} --n {params.n} --out {output.csv} --plot {output.svg}"
        " --samples cascade={input.cascade} bilinear_level1={input.bilinear} > {log} 2>&1"


rule paper_table:
    """results/tables/table{N}.md: the paper's numbers beside ours (needs those experiments' metrics)."""
    input:
        unpack(lambda wc: {e: f"results/{e}/metrics.csv" for e in experiments_of(int(wc.number))}),
    output:
        csv="results/tables/table{number}.csv",
        md=report("results/tables/table{number}.md", category="Paper tables"),
    wildcard_constraints:
        number="[1-5]",
    run:
        from cvg.tables import render

        render(int(wildcards.number), dict(input), output.csv, output.md)


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
    params:
        config=config_file,
        fingerprint=fingerprint("per_class"),
        cache=lambda wc: f"results/{owner(wc.dataset, 'data')}/metrics.cache",  # real-clip statistics: keyed by the data
    resources:
        **EVAL_RESOURCES,
    threads: 2
    log:
        "results/{dataset}/logs/per_class.log",
    shell:
        "cvg per-class --config {params.config} --checkpoints {input.checkpoints} --norms {input.norms} --index {input.index}"
        " --out {output.csv} --markdown {output.md} --cache {params.cache} > {log} 2>&1"
