"""Configuration: YAML files validated against the workflow's JSON schemas, and plain
dataclasses built from config sections with unknown keys reported by name."""

from __future__ import annotations

import sys
from dataclasses import fields
from functools import lru_cache
from pathlib import Path

import torch
import yaml

from rewarddiff import UserError

SCHEMA_DIR = Path(__file__).resolve().parents[1] / "workflow" / "schemas"


def resolve_device(name: str | None = "auto") -> torch.device:
    """``auto`` → CUDA when available, else CPU; ``cpu``/``cuda``/``cuda:N`` as given."""
    if name in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"device {name!r} requested but CUDA is not available")
    return torch.device(name)


def dataclass_from(cls, params: dict | None, where: str):
    """Build config dataclass ``cls`` from a dict; unknown keys give a UserError naming them."""
    params = dict(params or {})
    unknown = set(params) - {f.name for f in fields(cls)}
    if unknown:
        raise UserError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
    return cls(**params)


def load_schema(schema_name: str) -> dict:
    """The JSON schema ``workflow/schemas/<schema_name>`` (YAML)."""
    schema_path = SCHEMA_DIR / schema_name
    if not schema_path.exists():
        raise UserError(f"{schema_path}: schema not found (is the package installed editable?)")
    return yaml.safe_load(schema_path.read_text())


@lru_cache(maxsize=1)
def _config_validator(methods: tuple):
    """The config schema; a registered method (spec) without a section of its own there is
    checked against the section its settings dataclass implies."""
    import jsonschema

    schema = load_schema("config.schema.yaml")
    sections = schema["$defs"]["finetune"]["properties"]
    for spec in methods:
        sections.setdefault(spec.id, spec.settings_schema())
    return jsonschema.Draft202012Validator(schema)


def load_config(path: str | Path) -> dict:
    """Read a pipeline config YAML and validate it against ``config.schema.yaml``."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: config file not found")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise UserError(f"{path}: invalid YAML ({str(err).splitlines()[0]})") from None
    return validate_config(data, [path])


def validate_config(data: dict, sources: list[str | Path]) -> dict:
    """Validate a config (read from the YAML files ``sources``, later ones overriding earlier
    ones, as Snakemake merges them) against ``config.schema.yaml``. The problem first in the
    files is a UserError ``<file>:<line>:<column>: <key path>: <problem>``; unknown keys are
    named with the keys their section knows."""
    from rewarddiff.finetune import METHODS

    errors = list(_config_validator(tuple(METHODS.values())).iter_errors(data))
    if not errors:
        return data
    trees = [_compose(source) for source in sources]
    raise UserError(min(_locate(err, sources, trees) for err in errors)[1])


def _compose(source: str | Path) -> yaml.Node | None:
    """The YAML node tree of a config file (None if it is not readable YAML)."""
    try:
        return yaml.compose(Path(source).read_text(), Loader=yaml.SafeLoader)
    except (OSError, yaml.YAMLError):
        return None


def _describe(err) -> tuple[list, bool, str]:
    """(path of the offending node, whether it is a key, message) of a jsonschema error."""
    path = list(err.absolute_path)
    section = _dotted(path) or "top level"
    if err.validator == "additionalProperties" and err.validator_value is False:
        known = sorted(err.schema.get("properties", {}))
        key = next(k for k in err.instance if k not in known)
        listing = f"known: {', '.join(known)}" if known else "this section takes no keys"
        hint = f"; {SHEET_KEYS[key]}" if key in SHEET_KEYS else ""
        return path + [key], True, f"{section}: unknown key {key!r} ({listing}{hint})"
    message = err.message
    if err.validator == "type" and isinstance(err.instance, str) and _is_number(err.instance):
        message += " (YAML reads it as text: write numbers unquoted, 1.0e-4 rather than 1e-4)"
    return path, False, f"{section}: {message}"


# keys that belong in the campaigns sheet, not in a method's settings
SHEET_KEYS = {k: "set per row in the campaigns sheet" for k in ("oracle_budget", "n_samples")}


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _dotted(path: list) -> str:
    """``domains.dna.pretrain`` / ``objectives.gc.reward[0].oracle``."""
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path).lstrip(".")


def _locate(err, sources: list, trees: list) -> tuple[tuple, str]:
    """(order, message) of a jsonschema error: ``<file>:<line>:<column>: …`` (1-based) of its
    node in the last file holding it. The order is file, line, column, with missing keys after
    the rest (a misspelt key is reported as unknown, not as the key it misses) and problems no
    file holds (e.g. Snakemake's ``--config``) last."""
    path, at_key, message = _describe(err)
    missing = err.validator == "required"
    for index in reversed(range(len(sources))):
        mark = _mark(trees[index], path, at_key)
        if mark is not None:
            line, column = mark.line + 1, mark.column + 1
            return (missing, index, line, column), f"{sources[index]}:{line}:{column}: {message}"
    return (missing, len(sources), 0, 0), f"{', '.join(map(str, sources)) or 'config'}: {message}"


def _mark(node, path: list, at_key: bool):
    """Start mark of the node (or key) at ``path`` below ``node``; None if it is not there."""
    for depth, step in enumerate(path):
        if isinstance(node, yaml.MappingNode):
            pairs = [(k, v) for k, v in node.value if k.value == str(step)]
            if not pairs:
                return None
            key, node = pairs[-1]
            if at_key and depth == len(path) - 1:
                return key.start_mark
        elif isinstance(node, yaml.SequenceNode) and isinstance(step, int):
            if step >= len(node.value):
                return None
            node = node.value[step]
        else:
            return None
    return None if node is None else node.start_mark


def exit_on_user_error(fn, *args, **kwargs):
    """``fn(*args, **kwargs)`` for a Snakefile: a UserError is printed as its one line on stderr
    and Snakemake exits with status 2 (it would print a traceback around the exception)."""
    try:
        return fn(*args, **kwargs)
    except UserError as err:
        print(err, file=sys.stderr)
        raise SystemExit(2) from None


def stage_params(
    config_path: str | Path | None, domain: str, section: str, inline: dict | None
) -> dict:
    """Parameters of one stage: inline JSON (from Snakemake) wins over the config file."""
    if inline is not None:
        return inline
    if config_path is None:
        return {}
    domains = load_config(config_path).get("domains", {})
    if domain not in domains:
        raise UserError(f"{config_path}: no section domains.{domain}")
    return domains[domain].get(section, {})
