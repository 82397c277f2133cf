"""Peptide data: the antimicrobial-peptide (AMP) sets shipped with ``modlamp``, user FASTA (+ labels
TSV), tokens with padding for variable lengths, seeded splits and length statistics.

Tokens are ``(n, max_length) int64``: amino acid ``AMINO_ACIDS[i]`` is ``i`` and every position
after the sequence end is ``PAD`` (= 20). Identical sequences always share a split (the AMP set
repeats some sequences, a few with both labels), so no test sequence is seen in training.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd
import torch

from rewarddiff import UserError
from seqgen import data

AMINO_ACIDS = "ACDEFGHIKLMNPQRSTVWY"
PAD = len(AMINO_ACIDS)
SPLITS = ("train", "valid", "test")
MODLAMP_SETS = ("AMPvsUniProt", "AMPvsTMset")  # label 1 = AMP; 0 = random UniProt / TM helices


def read_modlamp(name: str = "AMPvsUniProt") -> tuple[list[str], np.ndarray]:
    """A labelled set shipped with ``modlamp`` → (sequences, labels (n,) int64, 1 = AMP).

    The CSV's first line is a header ``n_rows,n_features,name_0,name_1``; each following line is
    ``SEQUENCE, label`` (label after a space in ``AMPvsUniProt.csv``).
    """
    if name not in MODLAMP_SETS:
        raise UserError(f"unknown modlamp set {name!r} (known: {', '.join(MODLAMP_SETS)})")
    path = data.package_data_file("modlamp", f"data/{name}.csv")
    table = pd.read_csv(
        path, skiprows=1, header=None, names=["sequence", "label"], skipinitialspace=True
    )
    return table["sequence"].tolist(), table["label"].to_numpy(np.int64)


class FastaPeptides(NamedTuple):
    ids: list[str]
    seqs: list[str]
    labels: np.ndarray | None  # (n,) int64 when a labels TSV was given
    dropped: list[str]  # ids of the records longer than max_length left out (drop_long=True)


def read_fasta(
    path: str | Path,
    labels_tsv: str | Path | None = None,
    max_length: int = 50,
    drop_long: bool = False,
) -> FastaPeptides:
    """Read and validate a peptide FASTA (and a TSV with integer labels, columns ``id``, ``label``).

    Lowercase letters are made uppercase and one terminal ``*`` (stop) is removed. Errors name the
    file and record: letters outside the 20 standard amino acids (B, J, O, U, X, Z, a ``*``
    before the end), empty sequences, duplicate ids, and sequences longer than ``max_length``
    unless ``drop_long`` leaves them out (their ids in ``dropped``). Labels must be 0 (non-AMP)
    or 1 (AMP).
    """
    path = Path(path)
    ids, seqs = data.read_fasta(path, AMINO_ACIDS, terminal_stop=True)
    if not drop_long:
        for seq in seqs:
            if len(seq) > max_length:
                raise UserError(
                    f"{seq.where}: length {len(seq)} exceeds the maximum {max_length} "
                    "(raise max_length or drop such records with drop_long)"
                )
    labels = None if labels_tsv is None else _integer_labels(labels_tsv, ids)
    keep = np.array([len(s) <= max_length for s in seqs])
    if not keep.any():
        raise UserError(f"{path}: every record is longer than max_length {max_length}")
    return FastaPeptides(
        [i for i, k in zip(ids, keep) if k],
        [s for s, k in zip(seqs, keep) if k],
        None if labels is None else labels[keep],
        [i for i, k in zip(ids, keep) if not k],
    )


def _integer_labels(path: str | Path, ids: list[str]) -> np.ndarray:
    labels = data.read_labels(path, ids)
    numbers = pd.to_numeric(labels, errors="coerce")
    bad = ~numbers.isin([0, 1])
    if bad.any():
        rid = labels.index[bad.to_numpy()][0]
        raise UserError(f"{path}: label {labels[rid]!r} for {rid!r} is not 0 (non-AMP) or 1 (AMP)")
    return numbers.to_numpy(np.int64)


def encode(seqs: list[str], max_length: int) -> torch.Tensor:
    """Sequences → tokens (n, max_length) int64, ``PAD`` after each sequence end."""
    lut = np.full(256, -1, dtype=np.int64)
    lut[np.frombuffer(AMINO_ACIDS.encode(), dtype=np.uint8)] = np.arange(len(AMINO_ACIDS))
    tokens = np.full((len(seqs), max_length), PAD, dtype=np.int64)
    for row, seq in enumerate(seqs):
        if len(seq) > max_length:
            raise ValueError(f"sequence {row} has length {len(seq)} > max_length {max_length}")
        tokens[row, : len(seq)] = lut[np.frombuffer(seq.encode(), dtype=np.uint8)]
    if (tokens < 0).any():
        row = int(np.flatnonzero((tokens < 0).any(axis=1))[0])
        raise ValueError(f"sequence {row} has letters outside {AMINO_ACIDS}: {seqs[row]!r}")
    return torch.from_numpy(tokens)


def decode(tokens: torch.Tensor | np.ndarray) -> list[str]:
    """Tokens (n, L) → sequences; each ends at its first ``PAD`` and any letters after it are
    ignored (count such rows with :func:`letters_after_pad`). Ids above ``PAD`` are an error."""
    tokens = np.asarray(tokens.cpu() if isinstance(tokens, torch.Tensor) else tokens)
    if tokens.size and (tokens.min() < 0 or tokens.max() > PAD):
        raise ValueError(f"token ids must lie in [0, {PAD}] (PAD = {PAD})")
    letters = np.frombuffer(AMINO_ACIDS.encode() + b"\0", dtype=np.uint8)[tokens]
    return [row.tobytes().split(b"\0", 1)[0].decode() for row in letters]


def letters_after_pad(tokens: torch.Tensor | np.ndarray) -> np.ndarray:
    """(n,) bool: rows with an amino acid after their first ``PAD`` (dropped by :func:`decode`)."""
    is_pad = np.asarray(tokens.cpu() if isinstance(tokens, torch.Tensor) else tokens) == PAD
    after_first_pad = np.cumsum(is_pad, axis=1) > 0
    return (after_first_pad & ~is_pad).any(axis=1)


def _grouped_parts(
    seqs: list[str], labels: np.ndarray | None, fractions: tuple[float, ...], seed: int
) -> np.ndarray:
    """Part index per row for ``fractions``: identical sequences share a part, and each label
    (of a sequence's first occurrence) is cut in the given proportions."""
    unique, first, inverse = np.unique(np.asarray(seqs), return_index=True, return_inverse=True)
    strata = np.zeros(len(unique)) if labels is None else np.asarray(labels)[first]
    rng = np.random.default_rng(seed)
    cumulative = np.cumsum(fractions)[:-1] / np.sum(fractions)
    part = np.empty(len(unique), dtype=np.int64)
    for label in np.unique(strata):
        members = rng.permutation(np.flatnonzero(strata == label))
        cuts = np.round(cumulative * len(members)).astype(int)
        for k, chunk in enumerate(np.split(members, cuts)):
            part[chunk] = k
    return part[inverse.ravel()]


def split(
    seqs: list[str],
    labels: np.ndarray | None,
    seed: int,
    fractions: tuple[float, float, float] = (0.8, 0.1, 0.1),
) -> np.ndarray:
    """Seeded train/valid/test assignment per row, (n,) str; stratified by label (if given) over
    distinct sequences, so duplicates never straddle two splits."""
    return np.asarray(SPLITS)[_grouped_parts(seqs, labels, fractions, seed)]


def pretraining_pool(seqs: list[str], splits: np.ndarray) -> list[str]:
    """Distinct sequences for unlabelled pretraining (first-seen order): every sequence outside
    the test split that does not also occur in it."""
    test = {s for s, part in zip(seqs, splits) if part == "test"}
    return list(dict.fromkeys(s for s in seqs if s not in test))


def train_halves(seqs: list[str], labels: np.ndarray, splits: np.ndarray, seed: int) -> np.ndarray:
    """(n,) int: 0 or 1 for the two disjoint, label-stratified halves of the train split that
    train the ``ft`` and ``eval`` classifier copies; -1 for rows outside train."""
    halves = np.full(len(seqs), -1, dtype=np.int64)
    train = np.flatnonzero(np.asarray(splits) == "train")
    halves[train] = _grouped_parts(
        [seqs[i] for i in train], np.asarray(labels)[train], (0.5, 0.5), seed
    )
    return halves


def length_histogram(seqs: list[str], max_length: int) -> np.ndarray:
    """(max_length + 1,) float64 probabilities: entry L is the fraction of sequences of length L."""
    lengths = np.array([len(s) for s in seqs])
    if lengths.max(initial=0) > max_length:
        raise ValueError(f"a sequence is longer than max_length {max_length}")
    counts = np.bincount(lengths, minlength=max_length + 1)
    return counts / counts.sum()


def sample_lengths(histogram: np.ndarray, n: int, seed: int) -> np.ndarray:
    """``n`` lengths drawn from a :func:`length_histogram`, (n,) int64."""
    return np.random.default_rng(seed).choice(len(histogram), size=n, p=histogram)
