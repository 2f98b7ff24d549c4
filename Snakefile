# cvg: Cascaded Video Generation as a Snakemake DAG.
#
#   snakemake -c2                                  # the demo, end to end (rule all)
#   snakemake -c2 results/demo/data/index.csv      # one stage
#   snakemake --configfile config/bdd100k.yaml results/bdd100k/data/index.csv
#
# Every config/*.yaml is an experiment, addressed by its `name` in results/{name}/...;
# a --configfile replaces the experiment of the same name. All configs are validated
# against workflow/schemas/config.schema.yaml when the workflow loads.

from snakemake.utils import min_version

min_version("8.0")


include: "workflow/rules/common.smk"
include: "workflow/rules/demo.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/sample.smk"
include: "workflow/rules/metrics.smk"


rule all:
    default_target: True
    input:
        "results/demo/metrics.csv",
        "results/demo/metrics_paired.csv",
        "results/demo/samples/grid.mp4",
        "results/demo/samples/strip.png",
        "results/demo/psd.svg",
        "results/demo/train/losses.svg",
