# Reward-guided diffusion design pipeline.
#   snakemake --configfile config/demo/config.yaml --profile workflow/profiles/default --cores 2
# Stages (one .smk each): data → reward → pretrain → finetune → sample → score → report.

from snakemake.utils import min_version, validate

min_version("8.10")


# the full-scale config unless one is given (--configfile replaces it rather than merging)
if not config:

    configfile: "config/config.yaml"


validate(config, "workflow/schemas/config.schema.yaml")


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/reward.smk"
include: "workflow/rules/pretrain.smk"
include: "workflow/rules/finetune.smk"
include: "workflow/rules/sample.smk"
include: "workflow/rules/score.smk"
include: "workflow/rules/report.smk"


rule all:
    input:
        f"{RESULTS}/report/summary.md",
