# cvg: Cascaded Video Generation as a Snakemake DAG. The entry point, run from the repository
# root; the workflow itself (rules, environments, schema, report captions) is workflow/.
#
#   snakemake -c2                                  # the demo, end to end (rule all)
#   snakemake -c2 results/demo/data/index.csv      # one stage
#   snakemake --configfile config/bdd100k.yaml results/bdd100k/data/index.csv


include: "workflow/Snakefile"


rule all:
    default_target: True
    input:
        "results/demo/metrics.csv",
        "results/demo/metrics_paired.csv",
        "results/demo/samples/grid.mp4",
        "results/demo/samples/strip.png",
        "results/demo/psd.svg",
        "results/demo/train/losses.svg",
