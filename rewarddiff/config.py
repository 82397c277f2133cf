"""Configuration: YAML files validated against the workflow's JSON schemas, and plain
dataclasses built from config sections with unknown keys reported by name."""

from __future__ import annotations

from dataclasses import fields
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


def validate(data: dict, schema_name: str, source: str) -> dict:
    """Validate ``data`` against ``workflow/schemas/<schema_name>``."""
    import jsonschema

    validator = jsonschema.Draft202012Validator(load_schema(schema_name))
    errors = sorted(validator.iter_errors(data), key=lambda e: list(e.absolute_path))
    if errors:
        err = errors[0]
        key = ".".join(str(p) for p in err.absolute_path) or "<top level>"
        raise UserError(f"{source}: config key {key}: {err.message}")
    return data


def load_config(path: str | Path) -> dict:
    """Read a pipeline config YAML and validate it against ``config.schema.yaml``."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: config file not found")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise UserError(f"{path}: invalid YAML ({str(err).splitlines()[0]})") from None
    return validate(data, "config.schema.yaml", str(path))


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
