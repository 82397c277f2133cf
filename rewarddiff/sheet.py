"""Campaign sheets (``campaigns.tsv``): one row = domain × objective × method × seeds × budget.

:func:`read_sheet` checks every row against ``campaigns.schema.yaml`` and the config and names
the file, line and column of the first problem; :func:`campaign_runs` and :func:`plan` expand
the enabled rows into the jobs the workflow runs (shared data, reward models and pretraining
per domain; fine-tune → sample → score per row and seed; a pretrained baseline per campaign).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from rewarddiff import UserError, layout
from rewarddiff.config import dataclass_from, load_schema
from rewarddiff.domain import COPIES
from rewarddiff.finetune import METHODS

ENABLED = {"true", "yes", "1"}


def sheet_schema() -> dict:
    """``campaigns.schema.yaml`` with the method column's enum: the registered methods."""
    schema = load_schema("campaigns.schema.yaml")
    schema["properties"]["method"]["enum"] = list(METHODS)
    return schema


def _read_tsv(path: Path, schema: dict) -> tuple[int, list[str], list[tuple[int, list[str]]]]:
    """(header line, column names, [(line, fields)]) of a TSV sheet: UTF-8 with or without a
    BOM, LF or CRLF line ends; lines starting with ``#`` and empty lines are skipped. The header
    names the schema's columns; rows have as many fields; a line of tabs only is an error (an
    emptied row)."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as err:
        raise UserError(f"{path}: not UTF-8 text (byte {err.start})") from None
    lines = []
    for number, line in enumerate(text.splitlines(), 1):
        if line.lstrip().startswith("#") or not line.strip(" "):
            continue
        if not line.strip():
            raise UserError(f"{path}:{number}: a line of tabs only; delete it or fill in a row")
        lines.append((number, [field.strip() for field in line.split("\t")]))
    if not lines:
        raise UserError(f"{path}: empty sheet (no header line)")
    (header_line, columns), rows = lines[0], lines[1:]
    _check_header(path, header_line, columns, schema)
    for number, fields in rows:
        if len(fields) != len(columns):
            raise UserError(f"{path}:{number}: {len(fields)} tab-separated fields, the header "
                            f"(line {header_line}) has {len(columns)}")  # fmt: skip
    return header_line, columns, rows


def _check_header(path: Path, line: int, columns: list[str], schema: dict) -> None:
    """Every column the schema requires, once, and no other."""
    known = schema["properties"]
    problems = [f"column {c!r} twice" for c in dict.fromkeys(columns) if columns.count(c) > 1]
    problems += [f"unknown column {c!r}" for c in columns if c not in known]
    missing = [c for c in schema["required"] if c not in columns]
    if missing:
        problems.append(f"missing column(s) {', '.join(missing)}")
    if problems:
        raise UserError(f"{path}:{line}: {'; '.join(problems)} (columns: {', '.join(known)})")


def _problem(err) -> str:
    """A schema error on one cell, in words (the schema's ``expected`` or its enum)."""
    schema, value = err.schema, err.instance
    expected = schema.get("expected")
    if "enum" in schema:
        expected = f"one of {', '.join(schema['enum'])}"
    if value == "":
        return f"empty; expected {expected}" if expected else "empty"
    return f"{value!r} is not {expected}" if expected else err.message


def read_sheet(
    path: str | Path, objectives: dict, deep: bool = True, domains: dict | None = None
) -> pd.DataFrame:
    """The enabled rows of the sheet at ``path`` (strings, as written, plus ``line``).

    Every row is checked against the schema, every enabled row against the config's
    ``objectives`` (defined, same domain); rows must not repeat a (campaign, method) pair and
    a campaign keeps one domain, objective and direction. ``deep`` also imports each domain
    and checks every oracle spec named (``eval_oracles``, the objective's reward): registered,
    and its argument accepted by the oracle's check against the domain's section of the
    config's ``domains`` (``None``: the defaults), so nothing fails at scoring after training.
    The first problem is a UserError: ``<file>:<line>: column <c>: <problem>``.
    """
    import jsonschema

    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: campaign sheet not found")
    schema = sheet_schema()
    header_line, columns, rows = _read_tsv(path, schema)
    if not rows:
        raise UserError(f"{path}:{header_line}: no rows after the header")
    sheet = pd.DataFrame([fields for _, fields in rows], columns=columns, dtype=str)
    sheet["line"] = [number for number, _ in rows]
    validator = jsonschema.Draft202012Validator(schema)

    def fail(row, column: str, problem: str):
        raise UserError(f"{path}:{row['line']}: column {column}: {problem}")

    for _, row in sheet.iterrows():
        record = {c: row[c] for c in columns}
        for err in sorted(validator.iter_errors(record), key=lambda e: columns.index(e.path[0])):
            fail(row, err.path[0], _problem(err))
        problem = _check_method(row, domains)
        if problem:
            fail(row, *problem)
    sheet = sheet[sheet["enabled"].str.lower().isin(ENABLED)].reset_index(drop=True)
    if sheet.empty:
        raise UserError(f"{path}: every row is disabled (column enabled); nothing to run")
    seen, check_oracle = set(), _oracle_checker(domains) if deep else None
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
            _check_domain(row, fail, domains)
        objective = objectives.get(row["objective"])
        if objective is None:
            known = ", ".join(objectives) or "none"
            fail(row, "objective", f"{row['objective']!r} is not defined in the config's "
                                   f"'objectives' (defined: {known})")  # fmt: skip
        if objective.get("domain", row["domain"]) != row["domain"]:
            fail(row, "objective", f"objective {row['objective']!r} is for domain "
                                   f"{objective['domain']!r}, not {row['domain']!r}")  # fmt: skip
        if deep:
            _check_oracles(row, objective, fail, check_oracle)
    return sheet


def _check_method(row, domains: dict | None) -> tuple[str, str] | None:
    """The method's own check of its settings as the row's fine-tuning job gets them: the
    domain's ``finetune.<method>`` section of the config (when given) and the row's budget."""
    spec = METHODS[row["method"]]
    settings = (domains or {}).get(row["domain"], {}).get("finetune", {}).get(spec.id, {})
    settings = settings | spec.sheet_settings(row)
    return spec.check(dataclass_from(spec.config, settings, f"finetune.{spec.id}"))


def _check_domain(row, fail, domains: dict | None) -> None:
    """The row's domain is built in or registered by an installed package (and has a section
    in the config's ``domains`` when given)."""
    from rewarddiff.domain import get_domain

    try:
        get_domain(row["domain"])
    except UserError as err:
        fail(row, "domain", str(err))
    if domains is not None and row["domain"] not in domains:
        fail(row, "domain", f"the config has no section domains.{row['domain']}")


def _oracle_checker(domains: dict | None):
    """``check(domain, spec) -> problem or None``, each distinct spec checked once."""
    from rewarddiff.oracles.registry import check_oracle

    problems = {}

    def check(domain: str, spec: str) -> str | None:
        if (domain, spec) not in problems:
            try:
                check_oracle(domain, spec, (domains or {}).get(domain))
                problems[domain, spec] = None
            except UserError as err:
                problems[domain, spec] = str(err)
        return problems[domain, spec]

    return check


def _check_oracles(row, objective: dict, fail, check_oracle) -> None:
    """Every oracle spec the row names (evaluation, objective) passes its oracle's check."""
    checks = [("eval_oracles", o) for o in row["eval_oracles"].split(",") if o]
    checks += [("objective", c["oracle"]) for c in objective.get("reward", [])]
    for column, spec in checks:
        problem = check_oracle(row["domain"], spec)
        if problem:
            fail(row, column, problem)


def campaign_runs(sheet: pd.DataFrame) -> list[tuple[str, str, str, int]]:
    """(domain, campaign, method, seed) of every run, plus a pretrained baseline per campaign
    for as many seeds as its rows have at most."""
    runs = []
    for _, row in sheet.iterrows():
        for seed in range(int(row["seeds"])):
            runs.append((row["domain"], row["campaign"], row["method"], seed))
    for (domain, campaign), rows in sheet.groupby(["domain", "campaign"], sort=False):
        for seed in range(int(rows["seeds"].astype(int).max())):
            runs.append((domain, campaign, layout.BASELINE, seed))
    return runs


def plan(sheet: pd.DataFrame, results: str = "results") -> pd.DataFrame:
    """Every job the sheet expands to, in dependency order: stage, domain, campaign, method,
    seed and the directory it writes (shared stages once per domain)."""
    jobs = []
    for domain in dict.fromkeys(sheet["domain"]):
        jobs += [("prepare_data", domain, "", "", "", str(layout.data_dir(results, domain)))]
        for copy in COPIES:
            folder = str(layout.reward_dir(results, domain, copy))
            jobs += [("train_reward", domain, "", copy, "", folder)]
        jobs += [("pretrain", domain, "", "", "", str(layout.pretrained_dir(results, domain)))]
    for domain, campaign, method, seed in campaign_runs(sheet):
        out = str(layout.run_dir(results, domain, campaign, method, seed))
        baseline = method == layout.BASELINE
        stages = ("sample", "score") if baseline else ("finetune", "sample", "score")
        jobs += [(stage, domain, campaign, method, seed, out) for stage in stages]
    jobs.append(("report", "", "", "", "", str(layout.report_dir(results))))
    return pd.DataFrame(jobs, columns=["stage", "domain", "campaign", "method", "seed", "output"])
