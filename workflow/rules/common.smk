# Helpers shared by every stage: campaign sheet, result paths, parameters as shell-safe JSON.
import json
import os
import re
import shlex
from pathlib import Path

from rewarddiff.config import exit_on_user_error
from rewarddiff.domain import design_suffix
from rewarddiff.finetune import METHODS
from rewarddiff.sheet import campaign_runs as sheet_runs, read_sheet

RESULTS = config.get("results_dir", "results")
LOGS = f"{RESULTS}/logs"


wildcard_constraints:
    results=re.escape(RESULTS),
    domain="[a-z]+",
    campaign="[A-Za-z0-9_.-]+",
    method="[a-z_]+",


# the enabled rows, checked against the schema and the config; the main process also checks
# every domain and oracle spec named, arguments included (jobs on a cluster skip the imports)
CAMPAIGNS = exit_on_user_error(
    read_sheet,
    config["campaigns"],
    config["objectives"],
    deep=workflow.is_main_process,
    domains=config["domains"],
)
# design-file suffixes (the sample rule's) of the sheet's domains, each declared by its package
DESIGN_EXT = "|".join(re.escape(s.lstrip(".")) for s in sorted(
    {design_suffix(d) for d in CAMPAIGNS["domain"]}))


def as_json(obj):
    """Shell-quoted JSON, so parameters reach the CLI unchanged (and re-trigger on change)."""
    return shlex.quote(json.dumps(obj, sort_keys=True))


def domain_cfg(domain, section):
    return config["domains"][domain][section]


def pretrained_checkpoint(domain):
    """The model file ``pretrain.checkpoint`` adopts ([] when the domain trains its own)."""
    source = domain_cfg(domain, "pretrain").get("checkpoint")
    if not source:
        return []
    return str(Path(source) / "model.safetensors") if Path(source).is_dir() else source


def campaign_row(campaign, method):
    rows = CAMPAIGNS[(CAMPAIGNS["campaign"] == campaign) & (CAMPAIGNS["method"] == method)]
    return rows.iloc[0]


def method_params(domain, campaign, method):
    """The config's settings of ``method`` for the domain, with the campaign row's budget (and
    n_samples, for methods whose settings take it)."""
    settings = domain_cfg(domain, "finetune").get(method, {})
    return settings | METHODS[method].sheet_settings(campaign_row(campaign, method))


def makes_selection(method):
    """Whether ``method`` makes its designs while fine-tuning (``selected.<ext>``)."""
    return method in METHODS and METHODS[method].produces == "selection"


def objective_of(campaign):
    row = CAMPAIGNS[CAMPAIGNS["campaign"] == campaign].iloc[0]
    objective = dict(config["objectives"][row["objective"]])
    objective["direction"] = row["direction"]
    return objective


def campaign_runs():
    """(domain, campaign, method, seed) of every run, plus a pretrained baseline per campaign."""
    return sheet_runs(CAMPAIGNS)


def run_dir(domain, campaign, method, seed):
    return f"{RESULTS}/{domain}/campaigns/{campaign}/{method}/seed{seed}"
