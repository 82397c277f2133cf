"""DNA oracles registered in the core registry: GC content, JASPAR motif best-hit score, and
cell-type probability / log-odds from a learned classifier ensemble (a chosen ``ft``/``eval``
copy, passed as ``reward_model=<path to model.safetensors>``)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import pandas as pd
import torch

from rewarddiff import UserError
from rewarddiff.oracles.base import FunctionOracle, OracleInfo
from rewarddiff.oracles.learned import RewardEnsemble
from rewarddiff.oracles.registry import check_label, label_check, no_argument, register_oracle
from seqgen import motifs
from seqgen.data import CELL_TYPES, encode
from seqgen.model import CNNConfig, SequenceClassifier

DOMAIN = "dna"


@register_oracle(
    DOMAIN,
    "gc_content",
    OracleInfo("gc_content", DOMAIN, "target", "fraction", description="fraction of G and C"),
    check=no_argument("gc_content"),
)
def gc_content(argument=None, **context):
    no_argument("gc_content")(argument)
    return FunctionOracle(
        OracleInfo("gc_content", DOMAIN, "target", "fraction"),
        lambda seqs: [(s.count("G") + s.count("C")) / len(s) for s in seqs],
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


@register_oracle(
    DOMAIN,
    "jaspar_motif",
    OracleInfo(
        "jaspar_motif:<matrix id>",
        DOMAIN,
        "maximize",
        "bits",
        description="best PWM log-odds hit over both strands (JASPAR2024 via pyjaspar)",
    ),
    check=jaspar_matrix,
)
def jaspar_motif(argument=None, **context):
    motif = jaspar_matrix(argument)
    return FunctionOracle(
        OracleInfo(
            f"jaspar_motif:{argument}",
            DOMAIN,
            "maximize",
            "bits",
            description=f"{motif.name} best hit",
        ),
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


def classifier_oracle(
    domain: str, kind: str, argument, reward_model, log_odds: bool, encode_fn
) -> FunctionOracle:
    """P(class ``argument`` | x) (or its log-odds) from the classifier ensemble at
    ``reward_model``; differentiable in relaxed one-hot input. ``encode_fn(seqs, config)``
    turns strings into the tokens the classifier reads (``config``: the ensemble's)."""
    if reward_model is None:
        raise UserError(f"oracle {kind} needs a reward model (--reward-model PATH)")
    if not Path(reward_model).exists():
        raise UserError(f"{reward_model}: reward model not found (oracle {kind})")
    model = load_classifier(str(reward_model))
    classes = model.config["classes"]
    check_label(kind, argument, classes)
    k = classes.index(argument)

    def from_probs(p: torch.Tensor) -> torch.Tensor:
        p = p[:, k].clamp(1e-6, 1 - 1e-6)
        return (p.log() - torch.log1p(-p)) if log_odds else p

    def score(seqs):
        mean, _ = model.predict(encode_fn(list(seqs), model.config))
        return from_probs(mean).numpy()

    info = OracleInfo(
        f"{kind}:{argument}",
        domain,
        "maximize",
        "log-odds" if log_odds else "probability",
        "moderate",
        True,
        f"{argument} class, {reward_model}",
    )
    return FunctionOracle(info, score, lambda onehot: from_probs(model(onehot)))


@register_oracle(
    DOMAIN,
    "celltype_prob",
    OracleInfo(
        "celltype_prob:<cell>",
        DOMAIN,
        "maximize",
        "probability",
        "moderate",
        True,
        "P(cell type | x) from the cell-type classifier ensemble",
    ),
    check=label_check("celltype_prob", cell_types),
)
def celltype_prob(argument=None, reward_model=None, **context):
    return classifier_oracle(DOMAIN, "celltype_prob", argument, reward_model, False, _dna)


@register_oracle(
    DOMAIN,
    "celltype_logodds",
    OracleInfo(
        "celltype_logodds:<cell>",
        DOMAIN,
        "maximize",
        "log-odds",
        "moderate",
        True,
        "log P(cell) − log(1 − P(cell)): cell-type specificity as a log-odds",
    ),
    check=label_check("celltype_logodds", cell_types),
)
def celltype_logodds(argument=None, reward_model=None, **context):
    return classifier_oracle(DOMAIN, "celltype_logodds", argument, reward_model, True, _dna)
