# The entry point of `snakemake` run from the repository root; the workflow itself lives in
# workflow/Snakefile (rules, environments, schema and report captions under workflow/).


include: "workflow/Snakefile"
