"""What the sequence domains (``dna``, ``protein``) share: a masked-diffusion generator over
token arrays (n, L) built from the dilated-CNN denoiser, CNN classifiers as reward models,
FASTA designs, length checks for the learned oracles and sequence-logo pictures. Subclasses
supply the data, ``to_designs`` / ``encode_designs`` and the evaluation metrics."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd
import torch

from rewarddiff import UserError
from rewarddiff.conditioning import LabelCondition
from rewarddiff.config import dataclass_from
from rewarddiff.diffusion.masked import MaskedDiffusion
from rewarddiff.domain import Domain, elbo
from rewarddiff.generator import MaskedSequenceGenerator
from rewarddiff.oracles import learned
from rewarddiff.oracles.base import best_first
from seqgen import metrics
from seqgen.data import write_fasta
from seqgen.model import CNNConfig, SequenceClassifier, SequenceDenoiser
from seqgen.oracles import load_classifier

VALID_LOGLIK = 512  # validation sequences of the pretraining ELBO


class SequenceDomain(Domain):
    """Base of the sequence domains; dataclass subclasses set ``name``, ``design_suffix``,
    ``length`` (positions L) and ``vocab_size`` (tokens the networks see, e.g. 4 for DNA, 20
    amino acids + PAD for proteins), ``alphabet`` (the letters) and implement the data and
    design hooks."""

    name: str
    alphabet: str
    length: int
    vocab_size: int
    condition_name: str  # what the classifier's classes are (``ctrl`` condition name)
    logo_colors: str = "classic"  # logomaker colour scheme of the report's sequence logos
    learned_oracles: ClassVar[tuple[str, ...]] = ()  # oracles that read with the reward model
    fixed_length: ClassVar[bool] = True  # the reward model reads exactly its length (or at most)
    reward_net = SequenceClassifier
    reward_net_settings = CNNConfig
    small_reward_network: ClassVar[dict] = {"hidden": 32, "layers": 4, "dropout": 0.1}

    # ----- reward models -------------------------------------------------------------------
    def reward_network_config(self, settings, num_outputs, where, data_dir=None) -> CNNConfig:
        cfg = super().reward_network_config(settings, num_outputs, where, data_dir)
        cfg.vocab_size = self.vocab_size
        return cfg

    def reward_targets(self, params: dict, data_dir: Path, labels: pd.DataFrame) -> learned.Classes:
        """The ``labels.tsv`` classes (:meth:`class_order`)."""
        return learned.Classes(self.class_order(labels["label"]), "label")

    def reward_config(self, data_dir: Path, x_train: torch.Tensor) -> dict:
        return {"length": int(x_train.shape[1])}

    def label_condition(self, objective, reward_model, data_dir=None, spec=None) -> LabelCondition:
        """The classifier's label (``condition_name``: cell type, AMP activity) as a condition:
        p̂(y | x) from the calibrated classifier ensemble at ``reward_model``. (``spec`` is
        unused: the classes come with the classifier.)"""
        classifier = load_classifier(str(reward_model))
        return self.class_condition(
            self.condition_name,
            classifier.config["classes"],
            "label",
            lambda x: classifier.to(x.device)(x),  # relaxed one-hot (B, L, V) → (B, classes)
            lambda tokens: classifier.predict(tokens.cpu())[0],
            objective,
            data_dir,
        )

    # ----- generator -----------------------------------------------------------------------
    def build_generator(self, params: dict) -> MaskedSequenceGenerator:
        """Masked-diffusion generator over ``params["length"]`` positions (default
        ``self.length``) with the dilated-CNN denoiser of ``params["network"]``."""
        length = params.get("length", self.length)
        net_cfg = dataclass_from(CNNConfig, params.get("network"), "pretrain.network")
        net_cfg.vocab_size = self.vocab_size
        diffusion = MaskedDiffusion(
            self.vocab_size,
            num_labels=net_cfg.num_labels,
            label_dropout=params.get("label_dropout", 0.0),
        )
        config = {
            "network": net_cfg.to_dict(),
            "label_dropout": diffusion.label_dropout,
            "sampling_steps": params.get("sampling_steps", 100),
            "length": length,
            "domain": self.name,
        }
        return MaskedSequenceGenerator(
            diffusion,
            SequenceDenoiser(net_cfg),
            length,
            sampling_steps=config["sampling_steps"],
            config=config,
        )

    def generator_settings(self, params: dict, data_dir: Path, x: torch.Tensor) -> dict:
        return params | {"length": x.shape[1]}

    def pretrain_summary(self, gen: MaskedSequenceGenerator, x_valid, params: dict) -> dict:
        ll = elbo(gen, x_valid[:VALID_LOGLIK])
        return {
            "valid_loglik_per_seq": ll.mean().item(),
            "valid_nats_per_position": -ll.mean().item() / gen.length,
        }

    def conditional_generator(
        self, gen: MaskedSequenceGenerator, num_labels: int
    ) -> MaskedSequenceGenerator:
        """The base's, without the pretraining's label dropout (``ctrl`` and ``rcgdm`` drop
        labels themselves)."""
        plain = replace(gen, config=gen.config | {"label_dropout": 0.0})
        return super().conditional_generator(plain, num_labels)

    # ----- designs, oracles ------------------------------------------------------------------
    def write_designs(self, path: Path, designs: list[str], scores: dict[str, np.ndarray]) -> None:
        """FASTA of ``designs`` under their own headers (id and description, see
        :func:`design_id`) with one ``name=value`` field per score added (replacing a field of
        that name already there)."""
        descriptions = [
            with_fields(getattr(d, "description", ""), {k: v[i] for k, v in scores.items()})
            for i, d in enumerate(designs)
        ]
        ids = [design_id(d, i) for i, d in enumerate(designs)]
        write_fasta(path, ids, list(designs), descriptions)

    def design_labels(self, designs: list[str]) -> list[str]:
        """``id SEQUENCE`` per design (the FASTA record id; ``design_<i>`` if generated)."""
        return [f"{design_id(d, i)} {d}".rstrip() for i, d in enumerate(designs)]

    def check_designs(self, designs: list[str], oracles: list[str], reward_model) -> None:
        """A learned oracle's reward model must fit every design's length."""
        if any(spec.partition(":")[0] in self.learned_oracles for spec in oracles):
            self.check_lengths(designs, reward_model)

    def check_lengths(self, designs: list[str], reward_model: Path) -> None:
        """UserError naming the first design whose length the reward model cannot read: other
        than its length (``fixed_length``) or above it."""
        length = load_classifier(str(reward_model)).config["length"]
        for i, design in enumerate(designs):
            if len(design) != length and (self.fixed_length or len(design) > length):
                expected = f"{'' if self.fixed_length else 'at most '}{length}"
                where = getattr(design, "where", f"design {i}")
                raise UserError(
                    f"{where}: length {len(design)}; the reward model {reward_model} reads "
                    f"sequences of length {expected}"
                )

    def diversity(self, tokens: torch.Tensor) -> float:
        """Mean pairwise Hamming distance of token arrays (the per-round log's diversity)."""
        return metrics.mean_pairwise_hamming(tokens.numpy())

    def render_designs(
        self, runs: list[tuple[str, list, np.ndarray]], path: Path, per_run: int = 32,
        positions: int = 60,
    ) -> bool:  # fmt: skip
        """PNG of sequence logos for the report: one row per (label, designs, their
        ``reward_eval``), the information content (bits) per position of its ``per_run`` best
        designs, over the first ``positions`` positions (shorter peptides end early)."""
        import logomaker
        from matplotlib.figure import Figure

        from rewarddiff.io import atomic_path

        width = min(positions, self.length)
        figure = Figure(figsize=(1.0 + 0.16 * width, 1.5 * len(runs)))
        for row, (label, designs, scores) in enumerate(runs):
            best = best_first(scores)[:per_run]
            counts = pd.DataFrame(0.0, index=range(width), columns=list(self.alphabet))
            for i in best:  # letter counts per position (shorter designs end early)
                for position, letter in enumerate(designs[i][:width]):
                    counts.loc[position, letter] += 1
            bits = logomaker.transform_matrix(
                counts, from_type="counts", to_type="information", pseudocount=0.1
            )
            axes = figure.add_subplot(len(runs), 1, row + 1)
            logomaker.Logo(bits, ax=axes, color_scheme=self.logo_colors)
            axes.set_ylabel(f"{label}\nbits", fontsize=8)
            axes.set_xticks([])
        figure.tight_layout()
        with atomic_path(path) as tmp:
            figure.savefig(tmp, format="png", dpi=100)
        return True


def require_splits(splits: pd.Series, origin: str) -> None:
    """UserError naming the first of train, valid and test that ``splits`` (one per record)
    leaves empty, and ``origin`` (the settings that chose the records and their splits)."""
    for split in ("train", "valid", "test"):
        if not (splits == split).any():
            raise UserError(f"data: split {split!r} is empty: {len(splits)} records after {origin}")


def design_id(design: str, index: int) -> str:
    """The FASTA record id a design was read with, else ``design_<index>``."""
    return getattr(design, "id", None) or f"design_{index}"


def with_fields(description: str, fields: dict[str, float]) -> str:
    """``description`` with ``name=value`` fields for ``fields`` (values to 4 significant
    digits) added after its words, replacing words that set the same names."""
    kept = [w for w in description.split() if w.partition("=")[0] not in fields]
    return " ".join(kept + [f"{k}={v:.4g}" for k, v in fields.items()])
