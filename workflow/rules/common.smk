# Helpers shared by every stage: campaign sheet, result paths, parameters as shell-safe JSON.
import json
import os
import re
import shlex

import pandas as pd
from snakemake.utils import validate

from rewarddiff.domain import BUILTIN_SUFFIX, design_suffix

RESULTS = config.get("results_dir", "results")
LOGS = f"{RESULTS}/logs"
DESIGN_EXT = "|".join(s.lstrip(".") for s in sorted(set(BUILTIN_SUFFIX.values())))


wildcard_constraints:
    results=re.escape(RESULTS),
    domain="[a-z]+",
    campaign="[A-Za-z0-9_.-]+",
    method="[a-z_]+",


CAMPAIGNS = pd.read_csv(config["campaigns"], sep="\t", dtype=str, comment="#").fillna("")
validate(CAMPAIGNS, "../schemas/campaigns.schema.yaml")
CAMPAIGNS = CAMPAIGNS[CAMPAIGNS["enabled"].str.lower().isin(["true", "yes", "1"])]
for _, _row in CAMPAIGNS.iterrows():
    if _row["objective"] not in config["objectives"]:
        raise ValueError(
            f"{config['campaigns']}: campaign {_row['campaign']!r} uses objective "
            f"{_row['objective']!r}, which config 'objectives' does not define"
        )


def as_json(obj):
    """Shell-quoted JSON, so parameters reach the CLI unchanged (and re-trigger on change)."""
    return shlex.quote(json.dumps(obj, sort_keys=True))


def domain_cfg(domain, section):
    return config["domains"][domain][section]


def campaign_row(campaign, method):
    rows = CAMPAIGNS[(CAMPAIGNS["campaign"] == campaign) & (CAMPAIGNS["method"] == method)]
    return rows.iloc[0]


def objective_of(campaign):
    row = CAMPAIGNS[CAMPAIGNS["campaign"] == campaign].iloc[0]
    objective = dict(config["objectives"][row["objective"]])
    objective["direction"] = row["direction"]
    return objective


def campaign_runs():
    """(domain, campaign, method, seed) of every run, plus a pretrained baseline per campaign."""
    runs = []
    for _, row in CAMPAIGNS.iterrows():
        for seed in range(int(row["seeds"])):
            runs.append((row["domain"], row["campaign"], row["method"], seed))
    for (domain, campaign), rows in CAMPAIGNS.groupby(["domain", "campaign"]):
        for seed in range(int(rows["seeds"].astype(int).max())):
            runs.append((domain, campaign, "pretrained", seed))
    return runs


def run_dir(domain, campaign, method, seed):
    return f"{RESULTS}/{domain}/campaigns/{campaign}/{method}/seed{seed}"
