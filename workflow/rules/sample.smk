# Frozen-cascade sampling: the trained cascade and the two baselines the metrics table needs.


def level_checkpoints(wildcards):
    return [f"results/{wildcards.dataset}/train/level{lv.index}.pt" for lv in exp(wildcards).levels]


rule sample:
    input:
        level_checkpoints,
    output:
        samples="results/{dataset}/samples/cascade.h5",
        mp4=report("results/{dataset}/samples/grid.mp4", category="Samples", caption="../report/grid.rst"),
        gif="results/{dataset}/samples/grid.gif",
    params:
        config=config_file,
        settings=lambda wc: json.dumps(exp(wc).raw["sample"], sort_keys=True),
    threads: 2
    log:
        "results/{dataset}/logs/sample/cascade.log",
    shell:
        "cvg sample --config {params.config} --checkpoints {input} --variant cascade --out {output.samples}"
        " --grid {output.mp4} {output.gif} > {log} 2>&1"


rule sample_baseline:
    input:
        level_checkpoints,
    output:
        "results/{dataset}/samples/{variant}.h5",
    wildcard_constraints:
        variant="untrained|bilinear",
    params:
        config=config_file,
        settings=lambda wc: json.dumps(exp(wc).raw["sample"], sort_keys=True),
    threads: 2
    log:
        "results/{dataset}/logs/sample/{variant}.log",
    shell:
        "cvg sample --config {params.config} --checkpoints {input} --variant {wildcards.variant} --out {output} > {log} 2>&1"
