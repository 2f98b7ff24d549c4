# Data stage: manifest (checkpoint) -> one job per HDF5 shard -> index.

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


checkpoint manifest:
    input:
        dataset_input,
    output:
        manifest="results/{dataset}/data/manifest.csv",
        classes="results/{dataset}/data/classes.csv",
    params:
        config=config_file,
        fingerprint=fingerprint("data"),
    log:
        "results/{dataset}/logs/manifest.log",
    shell:
        "cvg data manifest --config {params.config} --manifest {output.manifest} --classes {output.classes} > {log} 2>&1"


rule shard:
    input:
        manifest="results/{dataset}/data/manifest.csv",
    output:
        shard="results/{dataset}/data/shards/{split}/{shard}.h5",
        failures="results/{dataset}/data/shards/{split}/{shard}.failures.csv",
    params:
        config=config_file,
        shard=lambda wc: int(wc.shard),
        fingerprint=fingerprint("data"),
    threads: lambda wc: exp(wc).data.workers
    log:
        "results/{dataset}/logs/shards/{split}/{shard}.log",
    shell:
        "cvg data shard --config {params.config} --manifest {input.manifest} --split {wildcards.split}"
        " --shard {params.shard} --out {output.shard} --failures {output.failures} --workers {threads} > {log} 2>&1"


def all_shards(wildcards, suffix=".h5"):
    import pandas as pd
    from cvg.data.shards import shard_keys

    manifest = checkpoints.manifest.get(dataset=wildcards.dataset).output.manifest
    keys = shard_keys(pd.read_csv(manifest, keep_default_na=False))
    return [f"results/{wildcards.dataset}/data/shards/{split}/{shard:05d}{suffix}" for split, shard in keys]


rule index:
    input:
        shards=all_shards,
        failures=lambda wc: all_shards(wc, ".failures.csv"),
        classes="results/{dataset}/data/classes.csv",
    output:
        index="results/{dataset}/data/index.csv",
        counts="results/{dataset}/data/counts.csv",
        failures="results/{dataset}/data/failures.csv",
    params:
        config=config_file,
        fingerprint=fingerprint("data"),
    log:
        "results/{dataset}/logs/index.log",
    shell:
        "cvg data index --config {params.config} --shards {input.shards} --shard-failures {input.failures} --classes {input.classes}"
        " --index {output.index} --counts {output.counts} --failures {output.failures} > {log} 2>&1"
