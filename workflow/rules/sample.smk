# Frozen-cascade sampling: the trained cascade, its baselines, its per-level cuts and their on-real-input variants for the metrics table.

from cvg.variants import trained_levels


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
    resources:
        **EVAL_RESOURCES,
    threads: 2
    log:
        "results/{dataset}/logs/sample/cascade.log",
    shell:
        "cvg sample --config {params.config} --checkpoints {input} --variant cascade --out {output.samples}"
        " --grid {output.mp4} {output.gif} > {log} 2>&1"


def variant_checkpoints(wildcards):
    """The checkpoints a variant reads (``cvg.variants.trained_levels``), so retraining a level
    leaves the samples that ignore it alone."""
    return level_checkpoints(wildcards)[: trained_levels(wildcards.variant, len(exp(wildcards).levels))]


def baseline_settings(wildcards):
    """What a baseline's samples depend on: the *_on_real ones also on which held-out clips the metrics choose."""
    raw = exp(wildcards).raw
    if wildcards.variant.endswith("_on_real"):
        return {"sample": raw["sample"], "clips": {k: raw["metrics"][k] for k in ("heldout_split", "seed")}}
    return raw["sample"]


rule sample_baseline:
    """Baselines (untrained upsampling levels, bilinear upsampling of level 1), the cascade cut at
    an intermediate level k (cascade_to_level{k}: levels above k bilinear), and each of those
    applied to real held-out level-1 clips (*_on_real: what the upsampling levels add, apart
    from level 1's quality)."""
    input:
        checkpoints=variant_checkpoints,
        index="results/{dataset}/data/index.csv",
    output:
        "results/{dataset}/samples/{variant}.h5",
    wildcard_constraints:
        variant="untrained|bilinear|cascade_on_real|bilinear_on_real|cascade_to_level[0-9]+(_on_real)?",
    params:
        config=config_file,
        settings=lambda wc: json.dumps(baseline_settings(wc), sort_keys=True),
    resources:
        **EVAL_RESOURCES,
    threads: 2
    log:
        "results/{dataset}/logs/sample/{variant}.log",
    shell:
        "cvg sample --config {params.config} --checkpoints {input.checkpoints} --variant {wildcards.variant} --index {input.index}"
        " --out {output} > {log} 2>&1"
