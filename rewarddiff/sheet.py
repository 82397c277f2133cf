"""Campaign sheets (``campaigns.tsv``): one row = domain × objective × method × seeds × budget.

:func:`read_sheet` checks every row against ``campaigns.schema.yaml`` and the config and names
the file, line and column of the first problem; :func:`campaign_runs` and :func:`plan` expand
the enabled rows into the jobs the workflow runs (shared data, reward models and pretraining
per domain; fine-tune → sample → score per row and seed; a pretrained baseline per campaign).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from rewarddiff import UserError
from rewarddiff.config import load_schema

ENABLED = {"true", "yes", "1"}


def _data_lines(path: Path) -> list[int]:
    """1-based file line of every data row (after the header; blank and # lines skipped)."""
    lines = [i + 1 for i, text in enumerate(path.read_text().splitlines())
             if text.strip() and not text.lstrip().startswith("#")]  # fmt: skip
    return lines[1:]


def read_sheet(path: str | Path, objectives: dict, deep: bool = True) -> pd.DataFrame:
    """The enabled rows of the sheet at ``path`` (strings, as written, plus ``line``).

    Every row is checked against the schema, every enabled row against the config's
    ``objectives`` (defined, same domain); rows must not repeat a (campaign, method) pair and
    a campaign keeps one domain, objective and direction. ``deep`` also imports each domain
    and checks that it and every oracle named (``eval_oracles``, the objective's reward) are
    registered. The first problem is a UserError: ``<file>:<line>: column <c>: <problem>``.
    """
    import jsonschema

    from rewarddiff.finetune import METHODS

    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: campaign sheet not found")
    sheet = pd.read_csv(path, sep="\t", dtype=str, comment="#", skip_blank_lines=True)
    sheet = sheet.fillna("")
    schema = load_schema("campaigns.schema.yaml")
    missing = [c for c in schema["required"] if c not in sheet.columns]
    if missing:
        raise UserError(f"{path}: missing column(s) {', '.join(missing)}")
    sheet["line"] = _data_lines(path)[: len(sheet)]
    validator = jsonschema.Draft202012Validator(schema)

    def fail(row, column: str, problem: str):
        raise UserError(f"{path}:{row['line']}: column {column}: {problem}")

    for _, row in sheet.iterrows():
        record = {c: row[c] for c in sheet.columns if c != "line"}
        for err in sorted(validator.iter_errors(record), key=lambda e: list(e.path)):
            column = err.path[0] if err.path else "?"
            fail(row, column, err.message)
        if row["method"] not in METHODS:
            fail(row, "method", f"unknown method {row['method']!r} (known: {', '.join(METHODS)})")
    sheet = sheet[sheet["enabled"].str.lower().isin(ENABLED)].reset_index(drop=True)
    seen = set()
    for _, row in sheet.iterrows():
        key = (row["campaign"], row["method"])
        if key in seen:
            fail(row, "method", f"campaign {key[0]!r} lists method {key[1]!r} twice")
        seen.add(key)
        first = sheet[sheet["campaign"] == row["campaign"]].iloc[0]
        for column in ("domain", "objective", "direction"):
            if row[column] != first[column]:
                fail(row, column, f"campaign {row['campaign']!r} has {column} "
                                  f"{first[column]!r} on line {first['line']}")  # fmt: skip
        if deep:
            _check_domain(row, fail)
        objective = objectives.get(row["objective"])
        if objective is None:
            known = ", ".join(objectives) or "none"
            fail(row, "objective", f"{row['objective']!r} is not defined in the config's "
                                   f"'objectives' (defined: {known})")  # fmt: skip
        if objective.get("domain", row["domain"]) != row["domain"]:
            fail(row, "objective", f"objective {row['objective']!r} is for domain "
                                   f"{objective['domain']!r}, not {row['domain']!r}")  # fmt: skip
        if deep:
            _check_oracles(row, objective, fail)
    return sheet


def _check_domain(row, fail) -> None:
    """The row's domain is built in or registered by an installed package."""
    from rewarddiff.domain import get_domain

    try:
        get_domain(row["domain"])
    except UserError as err:
        fail(row, "domain", str(err))


def _check_oracles(row, objective: dict, fail) -> None:
    """Every oracle the row names (evaluation, objective) is registered for its domain."""
    from rewarddiff.oracles.registry import available

    known = available(row["domain"])
    checks = [("eval_oracles", o) for o in row["eval_oracles"].split(",") if o]
    checks += [("objective", c["oracle"]) for c in objective.get("reward", [])]
    for column, spec in checks:
        if spec.partition(":")[0] not in known:
            fail(row, column, f"unknown oracle {spec!r} for domain {row['domain']!r} "
                              f"(known: {', '.join(known)})")  # fmt: skip


def campaign_runs(sheet: pd.DataFrame) -> list[tuple[str, str, str, int]]:
    """(domain, campaign, method, seed) of every run, plus a pretrained baseline per campaign
    for as many seeds as its rows have at most."""
    runs = []
    for _, row in sheet.iterrows():
        for seed in range(int(row["seeds"])):
            runs.append((row["domain"], row["campaign"], row["method"], seed))
    for (domain, campaign), rows in sheet.groupby(["domain", "campaign"], sort=False):
        for seed in range(int(rows["seeds"].astype(int).max())):
            runs.append((domain, campaign, "pretrained", seed))
    return runs


def plan(sheet: pd.DataFrame, results: str = "results") -> pd.DataFrame:
    """Every job the sheet expands to, in dependency order: stage, domain, campaign, method,
    seed and the directory it writes (shared stages once per domain)."""
    jobs = []
    for domain in dict.fromkeys(sheet["domain"]):
        jobs += [("prepare_data", domain, "", "", "", f"{results}/{domain}/data")]
        jobs += [("train_reward", domain, "", role, "", f"{results}/{domain}/rewards/{role}")
                 for role in ("ft", "eval")]  # fmt: skip
        jobs += [("pretrain", domain, "", "", "", f"{results}/{domain}/pretrained")]
    for domain, campaign, method, seed in campaign_runs(sheet):
        out = f"{results}/{domain}/campaigns/{campaign}/{method}/seed{seed}"
        stages = ("sample", "score") if method == "pretrained" else ("finetune", "sample", "score")
        jobs += [(stage, domain, campaign, method, seed, out) for stage in stages]
    jobs.append(("report", "", "", "", "", f"{results}/report"))
    return pd.DataFrame(jobs, columns=["stage", "domain", "campaign", "method", "seed", "output"])
