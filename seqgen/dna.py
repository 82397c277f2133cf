"""The ``dna`` domain: ENCODE DHS data (or user FASTA), cell-type reward models, a masked-diffusion
generator over 200 bp sequences, FASTA designs and the DRAKES / DNA-Diffusion metrics."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd
import torch

from rewarddiff import UserError
from rewarddiff.domain import register_domain
from rewarddiff.io import atomic_path
from seqgen import DESIGN_SUFFIX, metrics, motifs
from seqgen import oracles as _oracles  # noqa: F401  (registers the DNA oracles)
from seqgen.data import (
    CELL_TYPES,
    DNA_ALPHABET,
    chromosome_halves,
    decode,
    encode,
    read_fasta,
    read_label_table,
    write_fasta,
)
from seqgen.domain import SequenceDomain, require_splits

SPLITS = ("train", "valid", "test")
USER_CHROMOSOME = "user"  # the chr of user sequences given without one


@dataclass
class DNADomain(SequenceDomain):
    name: str = "dna"
    design_suffix: str = DESIGN_SUFFIX
    # report columns beyond the generic ones: statistic → better direction
    report_columns: ClassVar[dict[str, str]] = {"kmer3_pearson": "↑", "jaspar_pearson": "↑"}
    alphabet: str = DNA_ALPHABET
    length: int = 200
    vocab_size: int = len(DNA_ALPHABET)
    condition_name: str = "cell_type"
    learned_oracles: ClassVar[tuple[str, ...]] = ("celltype_prob", "celltype_logodds")

    # ----- data ----------------------------------------------------------------------------
    def prepare(self, params: dict, out_dir: Path) -> dict:
        """Write ``{train,valid,test}.fasta`` and ``labels.tsv`` (id, label, split, chr, half)."""
        if params.get("source", "encode_dhs") == "encode_dhs":
            from seqgen.data import load_encode_dhs

            table = load_encode_dhs().rename(columns={"cell_type": "label"})
            origin = "ENCODE's splits"
        else:
            table, origin = self._user_table(params)
        per_split = params.get("max_per_split")
        if per_split:  # demo scale: a stratified, seeded subset of each split
            shuffled = table.sample(frac=1.0, random_state=params.get("seed", 0))
            table = shuffled.groupby(["split", "label"]).head(per_split // 4).sort_index()
            origin += f", max_per_split {per_split} ({per_split // 4} per label)"
        require_splits(table["split"], origin)
        train_rows = table["split"] == "train"
        table["half"] = -1
        table.loc[train_rows, "half"] = self._halves(table[train_rows], params.get("seed", 0))
        for split in SPLITS:
            rows = table[table["split"] == split]
            write_fasta(out_dir / f"{split}.fasta", rows["id"].tolist(), rows["sequence"].tolist())
        with atomic_path(out_dir / "labels.tsv") as tmp:
            table[["id", "label", "split", "chr", "half"]].to_csv(tmp, sep="\t", index=False)
        counts = table.groupby(["split", "label"]).size().unstack(fill_value=0)
        return {
            "counts": counts.to_dict(orient="index"),
            "length": self.length,
            "classes": sorted(table["label"].unique()),
        }

    def _user_table(self, params: dict) -> tuple[pd.DataFrame, str]:
        """User FASTA + labels TSV (columns id, label, optional split/chr), and how the splits
        were made."""
        if "fasta" not in params or "labels" not in params:
            raise UserError("data: source 'fasta' needs keys 'fasta' and 'labels'")
        ids, seqs = read_fasta(params["fasta"], self.alphabet, self.length)
        extra = read_label_table(params["labels"], ids)
        table = pd.DataFrame({"id": ids, "sequence": seqs, "label": extra["label"].values})
        table["chr"] = extra["chr"].values if "chr" in extra else USER_CHROMOSOME
        if "split" in extra:
            for rid, split in extra["split"].items():
                if split not in SPLITS:
                    raise UserError(
                        f"{params['labels']}: split {split!r} of {rid!r} is not one of "
                        f"{', '.join(SPLITS)}"
                    )
            table["split"] = extra["split"].values
            return table, f"the split column of {params['labels']}"
        u = np.random.default_rng(params.get("seed", 0)).random(len(table))
        table["split"] = np.where(u < 0.8, "train", np.where(u < 0.9, "valid", "test"))
        return table, f"the seeded 80/10/10 split of {params['fasta']}"

    @staticmethod
    def _halves(train: pd.DataFrame, seed: int) -> np.ndarray:
        """Half 0 (``ft``) or 1 (``eval``) per training row: by chromosome halves, or at
        random (seeded) when the user gave no chromosomes."""
        if (train["chr"] == USER_CHROMOSOME).all():
            return np.random.default_rng([seed, 1]).permutation(len(train)) % 2
        halves = chromosome_halves(train["chr"]).to_numpy()
        if len(set(halves)) < 2:
            raise UserError(
                f"data: the training split holds one chromosome ({train['chr'].iloc[0]}); the "
                "ft and eval reward copies need two disjoint halves"
            )
        return halves

    def load_split(self, data_dir: Path, split: str) -> tuple[torch.Tensor, pd.DataFrame]:
        ids, seqs = read_fasta(Path(data_dir) / f"{split}.fasta", self.alphabet, self.length)
        labels = pd.read_csv(Path(data_dir) / "labels.tsv", sep="\t").set_index("id").loc[ids]
        return encode(seqs, self.alphabet), labels

    def class_order(self, labels: pd.Series) -> list[str]:
        """Classifier outputs: the four ENCODE cell types first, then any user labels."""
        return sorted(labels.unique(), key=lambda c: (c not in CELL_TYPES, c))

    def half_summary(self, labels: pd.DataFrame, rows: torch.Tensor) -> dict:
        return {"train_chromosomes": sorted(labels.loc[rows.numpy(), "chr"].unique())}

    # ----- designs ------------------------------------------------------------------------
    def to_designs(self, tokens: torch.Tensor) -> list[str]:
        return decode(tokens, self.alphabet)

    def encode_designs(self, designs: list[str], gen, params: dict) -> torch.Tensor:
        return encode(designs, self.alphabet)

    def read_designs(self, path: Path, embed: bool = False) -> list[str]:
        """Any-length DNA FASTA (oracles score any length; metrics need equal lengths)."""
        return read_fasta(path, self.alphabet)[1]

    # ----- evaluation ----------------------------------------------------------------------
    def design_metrics(
        self, designs: list[str], params: dict, data_dir: Path, reward_model: Path
    ) -> dict:
        """DRAKES / DNA-Diffusion metrics of a design set against the target cell type."""
        self.check_lengths(designs, reward_model)
        target = params["target"]
        tokens = encode(designs, self.alphabet)
        classifier = _oracles.load_classifier(str(reward_model))
        classes = classifier.config["classes"]
        probs, _ = classifier.predict(tokens)
        k = classes.index(target)
        x_te, lab_te = self.load_split(data_dir, "test")
        real = x_te[torch.as_tensor((lab_te["label"] == target).values)]
        x_tr, _ = self.load_split(data_dir, "train")
        panel = motifs.load_motifs(
            params.get("motifs")
            or sorted({m for ms in motifs.CELL_TYPE_MOTIFS.values() for m in ms})
        )
        design_hits = motifs.hit_counts(panel, designs)
        real_hits = motifs.hit_counts(panel, decode(real, self.alphabet))
        out = {
            "n": len(designs),
            "target_fraction": (probs.argmax(-1) == k).float().mean().item(),
            "target_prob": probs[:, k].mean().item(),
            "kmer3_pearson": metrics.kmer_pearson(tokens.numpy(), real.numpy(), 3),
            "jaspar_pearson": metrics.motif_count_correlation(design_hits, real_hits),
            "jaspar_kl": metrics.motif_distribution_kl(design_hits, real_hits),
            "diversity": metrics.mean_pairwise_hamming(tokens.numpy()),
            "memorisation": float(
                metrics.max_positional_identity(tokens.numpy(), x_tr.numpy()).mean()
            ),
            "gc_content": float(metrics.gc_content(tokens.numpy()).mean()),
        }
        for c, p in zip(classes, probs.mean(0).tolist()):
            out[f"prob_{c}"] = p
        return out


DNA = register_domain(DNADomain())
