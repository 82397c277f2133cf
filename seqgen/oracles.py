"""DNA oracles registered in the core registry: GC content, JASPAR motif best-hit score, and
cell-type probability / log-odds from a learned classifier ensemble (a chosen ``ft``/``eval``
copy, passed as ``reward_model=<path to model.safetensors>``)."""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from pathlib import Path

import pandas as pd
import torch

from rewarddiff import UserError
from rewarddiff.oracles.base import FunctionOracle, OracleInfo
from rewarddiff.oracles.learned import RewardEnsemble
from rewarddiff.oracles.registry import (
    check_label,
    label_check,
    register_function_oracle,
    register_oracle,
)
from seqgen import motifs
from seqgen.data import CELL_TYPES, encode
from seqgen.model import CNNConfig, SequenceClassifier

DOMAIN = "dna"


register_function_oracle(
    OracleInfo("gc_content", DOMAIN, "target", "fraction", description="fraction of G and C"),
    lambda seqs: [(s.count("G") + s.count("C")) / len(s) for s in seqs],
)


JASPAR_MOTIF = OracleInfo(
    "jaspar_motif:<matrix id>",
    DOMAIN,
    "maximize",
    "bits",
    description="best PWM log-odds hit over both strands (JASPAR2024 via pyjaspar)",
)


def jaspar_matrix(argument: str | None, config: dict | None = None):
    """The JASPAR motif of ``jaspar_motif:<matrix id>`` (a local database look-up)."""
    if not argument:
        raise UserError("oracle jaspar_motif needs a matrix id, e.g. jaspar_motif:MA0114")
    try:
        (motif,) = motifs.load_motifs([argument])
    except ValueError as err:
        raise UserError(f"oracle jaspar_motif: {err}") from None
    return motif


@register_oracle(DOMAIN, "jaspar_motif", JASPAR_MOTIF, check=jaspar_matrix)
def jaspar_motif(argument=None, **context):
    motif = jaspar_matrix(argument)
    return FunctionOracle(
        JASPAR_MOTIF.for_argument(argument, description=f"{motif.name} best hit"),
        lambda seqs: motifs.best_hit_scores(motif, list(seqs)),
    )


def _dna(seqs: list[str], config: dict) -> torch.Tensor:
    return encode(seqs)


@lru_cache(maxsize=8)
def load_classifier(path: str) -> RewardEnsemble:
    return RewardEnsemble.load(path, lambda c: SequenceClassifier(CNNConfig(**c["network"])))


def cell_types(config: dict) -> tuple[str, ...] | None:
    """The classes a cell-type classifier trained on the domain's ``data`` knows: the four
    ENCODE cell types for the default source, the labels file's for a user FASTA (None while
    that file cannot be read: preparing the data names the problem)."""
    data = config.get("data") or {}
    if data.get("source", "encode_dhs") == "encode_dhs":
        return CELL_TYPES
    try:
        labels = pd.read_csv(data["labels"], sep="\t", dtype=str)["label"].dropna().unique()
    except (KeyError, OSError, ValueError):
        return None
    return tuple(sorted(labels, key=lambda c: (c not in CELL_TYPES, c)))


def classifier_oracle(info: OracleInfo, argument, reward_model, encode_fn) -> FunctionOracle:
    """The oracle of the registered classifier oracle ``info`` for class ``argument``:
    P(class | x), or its log-odds for units ``log-odds``, from the classifier ensemble at
    ``reward_model``; differentiable in relaxed one-hot input. ``encode_fn(seqs, config)``
    turns strings into the tokens the classifier reads (``config``: the ensemble's)."""
    kind = info.kind
    if reward_model is None:
        raise UserError(f"oracle {kind} needs a reward model (--reward-model PATH)")
    if not Path(reward_model).exists():
        raise UserError(f"{reward_model}: reward model not found (oracle {kind})")
    model = load_classifier(str(reward_model))
    classes = model.config["classes"]
    check_label(kind, argument, classes)
    k = classes.index(argument)
    log_odds = info.units == "log-odds"

    def from_probs(p: torch.Tensor) -> torch.Tensor:
        p = p[:, k].clamp(1e-6, 1 - 1e-6)
        return (p.log() - torch.log1p(-p)) if log_odds else p

    def score(seqs):
        mean, _ = model.predict(encode_fn(list(seqs), model.config))
        return from_probs(mean).numpy()

    return FunctionOracle(
        info.for_argument(argument, description=f"{argument} class, {reward_model}"),
        score,
        lambda onehot: from_probs(model(onehot)),
    )


def register_classifier(
    domain: str,
    kind: str,
    pattern: str,
    description: str,
    check: Callable,
    encode_fn: Callable,
    default: str | None = None,
) -> None:
    """Register the classifier oracle ``kind`` (shown as ``kind`` + ``pattern``, e.g.
    ``:<cell>``) of :func:`classifier_oracle`: the log-odds for a ``kind`` ending in
    ``_logodds``, else the probability; ``default``: the class scored without an argument."""
    units = "log-odds" if kind.endswith("_logodds") else "probability"
    info = OracleInfo(kind + pattern, domain, "maximize", units, "moderate", True, description)

    @register_oracle(domain, kind, info, check)
    def factory(argument=None, reward_model=None, **context):
        return classifier_oracle(info, argument or default, reward_model, encode_fn)


for _kind, _description in (
    ("celltype_prob", "P(cell type | x) from the cell-type classifier ensemble"),
    ("celltype_logodds", "log P(cell) − log(1 − P(cell)): cell-type specificity as a log-odds"),
):
    register_classifier(
        DOMAIN, _kind, ":<cell>", _description, label_check(_kind, cell_types), _dna
    )
