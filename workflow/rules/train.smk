# Greedy training: one job per level; level l needs the final checkpoints of levels 1..l-1.
# Resumable state lives in the undeclared results/{dataset}/train/level{l}.work/ folder, so a
# failed or cancelled job resumes on rerun; the declared output is only the final checkpoint.
# A level another experiment trains under the same fingerprint is read from there (``owner``).


rule train_level:
    input:
        index=lambda wc: data_file(wc.dataset, "index.csv"),
        prev=lambda wc: [level_checkpoint(wc.dataset, i) for i in range(1, int(wc.level))],
    output:
        "results/{dataset}/train/level{level}.pt",
    log:
        "results/{dataset}/logs/train/level{level}.log",
    wildcard_constraints:
        level=r"\d+",
    conda:
        ENV
    threads: lambda wc: slurm_of(wc).cpus_per_task if exp(wc).train(int(wc.level)).launcher != "local" else 2
    resources:
        runtime=lambda wc: slurm_of(wc).time_min,
        mem_mb=lambda wc: int(slurm_of(wc).mem_gb * 1024),
        gpu=lambda wc: slurm_of(wc).gpus_per_node,
        nodes=lambda wc: slurm_of(wc).nodes,
        tasks=lambda wc: slurm_of(wc).nodes,
        cpus_per_task=lambda wc: slurm_of(wc).cpus_per_task,
        slurm_partition=lambda wc: slurm_of(wc).partition or None,
        slurm_account=lambda wc: slurm_of(wc).account or None,
    params:
        config=config_file,
        fingerprint=fingerprint("train{level}"),
        work=lambda wc: f"results/{wc.dataset}/train/level{wc.level}.work",
    shell:
        "cvg train --config {params.config} --level {wildcards.level} --index {input.index}"
        " --out {output} --work {params.work} --prev {input.prev} > {log} 2>&1"


rule training_losses:
    """Every level's loss / throughput log in one table (a report item)."""
    input:
        lambda wc: [level_checkpoint(wc.dataset, lv.index) for lv in exp(wc).levels],
    output:
        csv="results/{dataset}/train/losses.csv",
        svg=report("results/{dataset}/train/losses.svg", category="Training", caption="../report/losses.rst"),
    log:
        "results/{dataset}/logs/train/losses.log",
    conda:
        ENV
    shell:
        "cvg losses --checkpoints {input} --csv {output.csv} --plot {output.svg} > {log} 2>&1"
