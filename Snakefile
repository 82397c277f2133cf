# Reward-guided diffusion design pipeline.
#   snakemake --configfile config/demo/config.yaml --profile workflow/profiles/default --cores 2
# Stages (one .smk each): data → reward → pretrain → finetune → sample → score → report.

from snakemake.utils import min_version

from rewarddiff.config import exit_on_user_error, validate_config

min_version("8.10")


# the full-scale config unless one is given (--configfile replaces it rather than merging)
if not config:

    configfile: "config/config.yaml"


# workflow/schemas/config.schema.yaml; a problem is one line <file>:<line>:<column>: ..., exit 2
exit_on_user_error(validate_config, config, workflow.configfiles)


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
