# Data stage: manifest (checkpoint) -> one job per HDF5 shard -> index.


checkpoint manifest:
    input:
        dataset_input,
    output:
        manifest="results/{dataset}/data/manifest.csv",
        classes="results/{dataset}/data/classes.csv",
    log:
        "results/{dataset}/logs/manifest.log",
    conda:
        ENV
    params:
        config=config_file,
        fingerprint=fingerprint("data"),
    shell:
        "cvg data manifest --config {params.config} --manifest {output.manifest} --classes {output.classes} > {log} 2>&1"


rule shard:
    input:
        manifest="results/{dataset}/data/manifest.csv",
    output:
        shard="results/{dataset}/data/shards/{split}/{shard}.h5",
        failures="results/{dataset}/data/shards/{split}/{shard}.failures.csv",
    log:
        "results/{dataset}/logs/shards/{split}/{shard}.log",
    conda:
        ENV
    threads: lambda wc: exp(wc).data.workers
    params:
        config=config_file,
        shard=lambda wc: int(wc.shard),
        fingerprint=fingerprint("data"),
    shell:
        "cvg data shard --config {params.config} --manifest {input.manifest} --split {wildcards.split}"
        " --shard {params.shard} --out {output.shard} --failures {output.failures} --workers {threads} > {log} 2>&1"


rule index:
    input:
        shards=all_shards,
        failures=lambda wc: all_shards(wc, ".failures.csv"),
        classes="results/{dataset}/data/classes.csv",
    output:
        index="results/{dataset}/data/index.csv",
        counts="results/{dataset}/data/counts.csv",
        failures="results/{dataset}/data/failures.csv",
    log:
        "results/{dataset}/logs/index.log",
    conda:
        ENV
    params:
        config=config_file,
        fingerprint=fingerprint("data"),
    shell:
        "cvg data index --config {params.config} --shards {input.shards} --shard-failures {input.failures} --classes {input.classes}"
        " --index {output.index} --counts {output.counts} --failures {output.failures} > {log} 2>&1"
