"""The ``protein`` domain: antimicrobial peptides (modlamp's AMP sets or user FASTA + labels),
AMP classifiers, a masked-diffusion generator over padded peptides of variable length, FASTA
designs and the peptide metrics (P(AMP), property windows, composition, length, identity)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd
import torch

from rewarddiff import UserError
from rewarddiff.domain import register_domain
from rewarddiff.io import atomic_path, read_json, write_json
from seqgen import DESIGN_SUFFIX, peptide_metrics, peptides
from seqgen import peptide_oracles as _oracles
from seqgen.data import read_fasta, write_fasta
from seqgen.domain import SequenceDomain, require_splits
from seqgen.oracles import load_classifier

SPLITS = ("train", "valid", "test")
CLASSES = ("non_amp", "amp")  # label 0 / 1 of the AMP sets


@dataclass
class ProteinDomain(SequenceDomain):
    name: str = "protein"
    design_suffix: str = DESIGN_SUFFIX
    logo_colors: str = "chemistry"
    alphabet: str = peptides.AMINO_ACIDS
    # report columns beyond the generic ones: statistic → better direction
    report_columns: ClassVar[dict[str, str]] = {
        "windows_satisfied": "↑",
        "all_windows_satisfied": "↑",
        "composition_jsd": "↓",
        "length_wasserstein": "↓",
        "max_identity_to_train": "↓",
        "mean_length": "",
    }
    length: int = 50  # default maximum peptide length (positions, PAD after the end)
    vocab_size: int = len(peptides.AMINO_ACIDS) + 1  # 20 amino acids + PAD
    condition_name: str = "activity"
    learned_oracles: ClassVar[tuple[str, ...]] = ("amp_prob", "amp_logodds")
    fixed_length: ClassVar[bool] = False  # the classifier reads peptides up to its length

    # ----- data ----------------------------------------------------------------------------
    def prepare(self, params: dict, out_dir: Path) -> dict:
        """Write ``{train,valid,test}.fasta``, ``labels.tsv`` (id, label, split, half) and
        ``peptides.json`` (max_length). Identical sequences share a split; peptides longer than
        ``max_length`` are left out (counted); ``half`` splits train for the ft/eval copies."""
        max_length = int(params.get("max_length", self.length))
        source = params.get("source", "modlamp")
        if source == "modlamp":
            seqs, labels = peptides.read_modlamp(params.get("set", "AMPvsUniProt"))
            ids = [f"pep{i}" for i in range(len(seqs))]  # modlamp's rows, numbered
            keep = np.array([len(s) <= max_length for s in seqs])
            dropped = [i for i, k in zip(ids, keep) if not k]
            ids, seqs = [i for i, k in zip(ids, keep) if k], [s for s, k in zip(seqs, keep) if k]
            labels = labels[keep]
        elif source == "fasta":
            if "fasta" not in params or "labels" not in params:
                raise UserError("data: source 'fasta' needs keys 'fasta' and 'labels' (id, label)")
            read = peptides.read_fasta(params["fasta"], params["labels"], max_length, True)
            ids, seqs, labels, dropped = read
        else:
            raise UserError(f"protein data: unknown source {source!r} (modlamp or fasta)")
        seed = params.get("seed", 0)
        splits = peptides.split(seqs, labels, seed)
        table = pd.DataFrame(
            {
                "id": ids,
                "sequence": seqs,
                "label": np.array(CLASSES)[labels],
                "split": splits,
                "half": peptides.train_halves(seqs, labels, splits, seed),
            }
        )
        distinct = len(set(seqs))  # identical sequences share a split
        origin = f"max_length {max_length} ({len(dropped)} longer left out; {distinct} distinct)"
        per_split = params.get("max_per_split")
        if per_split:  # demo scale: a seeded subset of each split
            shuffled = table.sample(frac=1.0, random_state=seed)
            table = shuffled.groupby("split").head(per_split).sort_index()
            origin += f", max_per_split {per_split}"
        require_splits(table["split"], origin)
        for split in SPLITS:
            rows = table[table["split"] == split]
            write_fasta(out_dir / f"{split}.fasta", rows["id"].tolist(), rows["sequence"].tolist())
        with atomic_path(out_dir / "labels.tsv") as tmp:
            table[["id", "label", "split", "half"]].to_csv(tmp, sep="\t", index=False)
        write_json(out_dir / "peptides.json", {"max_length": max_length})
        lengths = table["sequence"].str.len()
        counts = table.groupby(["split", "label"]).size().unstack(fill_value=0)
        if dropped:  # the documented normalisation: named in the log and the manifest
            print(f"left out {len(dropped)} peptides longer than max_length {max_length}: "
                  f"{', '.join(dropped[:10])}{' …' if len(dropped) > 10 else ''}")  # fmt: skip
        return {
            "counts": counts.to_dict("index"),
            "too_long_dropped": len(dropped),
            "too_long_ids": dropped,
            "max_length": max_length,
            "length_range": [int(lengths.min()), int(lengths.max())],
            "classes": list(CLASSES),
        }

    def load_split(self, data_dir: Path, split: str) -> tuple[torch.Tensor, pd.DataFrame]:
        """Tokens (n, max_length) with PAD after each peptide, and the label rows."""
        max_length = read_json(Path(data_dir) / "peptides.json")["max_length"]
        ids, seqs = read_fasta(Path(data_dir) / f"{split}.fasta", peptides.AMINO_ACIDS)
        labels = pd.read_csv(Path(data_dir) / "labels.tsv", sep="\t").set_index("id").loc[ids]
        return peptides.encode(seqs, max_length), labels

    def class_order(self, labels: pd.Series) -> list[str]:
        return list(CLASSES)

    # ----- designs ------------------------------------------------------------------------
    def to_designs(self, tokens: torch.Tensor) -> list[str]:
        """Peptides up to the first PAD (an all-PAD row is the empty peptide)."""
        return peptides.decode(tokens)

    def encode_designs(self, designs: list[str], gen, params: dict) -> torch.Tensor:
        """Tokens (n, ``gen.length``), PAD after each peptide."""
        return peptides.encode(designs, gen.length)

    def read_designs(self, path: Path, embed: bool = False) -> list[str]:
        """Designed peptides (one terminal ``*`` dropped); an empty record is a design, one that
        every oracle scores NaN."""
        return read_fasta(path, peptides.AMINO_ACIDS, allow_empty=True, terminal_stop=True)[1]

    def scorable(self, design: str) -> bool:
        """Oracles see non-empty peptides only (an empty one scores NaN)."""
        return bool(design)

    # ----- evaluation ----------------------------------------------------------------------
    def design_metrics(
        self, designs: list[str], params: dict, data_dir: Path, reward_model: Path
    ) -> dict:
        """P(AMP) by the eval classifier, property windows, composition and length distance to
        real AMPs (test split), diversity and novelty by alignment identity."""
        self.check_lengths(designs, reward_model)
        target = params.get("target", "amp")
        classifier = load_classifier(str(reward_model))
        k = classifier.config["classes"].index(target)
        tokens = peptides.encode(designs, classifier.config["length"])
        probs = classifier.predict(tokens)[0][:, k]
        _, lab_te = self.load_split(data_dir, "test")
        _, seqs_te = read_fasta(Path(data_dir) / "test.fasta", peptides.AMINO_ACIDS)
        real = [s for s, y in zip(seqs_te, lab_te["label"]) if y == target]
        _, train = read_fasta(Path(data_dir) / "train.fasta", peptides.AMINO_ACIDS)
        windows = (
            _oracles.parse_windows(params["windows"])
            if params.get("windows")
            else _oracles.DEFAULT_WINDOWS
        )
        nonempty = [s for s in designs if s]
        out = {
            "n": len(designs),
            "validity": len(nonempty) / max(1, len(designs)),  # non-empty peptides
            "target_prob": float(probs.mean()),
            "target_fraction": float((probs > 0.5).float().mean()),
            "mean_length": float(np.mean([len(s) for s in designs])),
        }
        if nonempty:
            # novelty against a seeded random subset of train (the file is ordered by label)
            n_ref = min(len(train), params.get("novelty_reference", 1000))
            pick = np.sort(np.random.default_rng(0).choice(len(train), n_ref, replace=False))
            novelty = peptide_metrics.novelty(nonempty, [train[i] for i in pick])
            out |= {
                **peptide_metrics.window_satisfaction(nonempty, windows),
                "composition_jsd": peptide_metrics.composition_jsd(nonempty, real),
                "length_wasserstein": peptide_metrics.length_wasserstein(nonempty, real),
                "diversity": 1.0 - peptide_metrics.mean_pairwise_identity(nonempty),
                "novelty": novelty["novel_fraction"],
                "max_identity_to_train": novelty["max_identity_mean"],
            }
        return out


PROTEIN = register_domain(ProteinDomain())
