"""Domain registry. A domain package (``seqgen``, ``molgen``, ``shapes``) provides one object
implementing :class:`Domain` and registers it under its names; the core looks it up by name.
Third-party domains use the ``rewarddiff.domains`` entry-point group."""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from rewarddiff import UserError

ENTRY_POINT_GROUP = "rewarddiff.domains"
# domain name -> module that registers it on import
BUILTIN = {
    "dna": "seqgen.dna",
    "protein": "seqgen.protein",
    "molecule": "molgen.domain",
    "shape": "shapes.domain",
}
# design file suffix per built-in domain, readable without importing the domain (Snakemake)
BUILTIN_SUFFIX = {"dna": ".fasta", "protein": ".fasta", "molecule": ".sdf", "shape": ".npz"}

_DOMAINS: dict[str, Domain] = {}


class Domain(Protocol):
    """What the CLI stages need from a domain; every path argument is explicit."""

    name: str
    design_suffix: str  # e.g. ".fasta"

    def prepare(self, params: dict, out_dir: Path) -> dict: ...

    def train_reward(self, params: dict, data_dir: Path, out_dir: Path) -> dict: ...

    def pretrain(self, params: dict, data_dir: Path, out_dir: Path) -> dict: ...

    def load_generator(self, checkpoint: Path, device: str = "cpu") -> Any: ...

    def reward_function(self, spec: list[dict], reward_dir: Path, copy: str) -> Any: ...

    def read_designs(self, path: Path) -> Any: ...

    def write_designs(self, path: Path, designs: Any, scores: dict[str, np.ndarray]) -> None: ...

    def design_labels(self, designs: Any) -> list[str]: ...  # one printable id per design

    def score(self, designs: Any, oracles: list[str], reward_dir: Path | None) -> dict: ...

    def metrics(
        self, designs: Any, params: dict, data_dir: Path, reward_dir: Path, pretrained: Path | None
    ) -> dict: ...


def design_suffix(name: str) -> str:
    return BUILTIN_SUFFIX[name] if name in BUILTIN_SUFFIX else get_domain(name).design_suffix


def register_domain(domain: Domain) -> Domain:
    _DOMAINS[domain.name] = domain
    return domain


def get_domain(name: str) -> Domain:
    if name not in _DOMAINS and name in BUILTIN:
        importlib.import_module(BUILTIN[name])
    if name not in _DOMAINS:
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            if ep.name == name:
                register_domain(ep.load())
    if name not in _DOMAINS:
        known = sorted(set(BUILTIN) | set(_DOMAINS))
        raise UserError(f"unknown domain {name!r} (known: {', '.join(known)})")
    return _DOMAINS[name]
