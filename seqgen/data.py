"""Sequence data: the ENCODE DHS set shipped with ``dnadiffusion``, FASTA and label TSV files.

Sequences are encoded as ``tokens: (n, L) int64`` with the alphabet's index order (DNA: A C G T).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from rewarddiff import UserError
from rewarddiff.io import atomic_path

DNA_ALPHABET = "ACGT"
DHS_FILE = "K562_hESCT0_HepG2_GM12878_12k_sequences_per_group.txt"
CELL_TYPES = ("GM12878", "hESCT0", "K562", "HepG2")  # label index order


def encode(seqs: list[str], alphabet: str = DNA_ALPHABET) -> torch.Tensor:
    """Equal-length strings → tokens (n, L); letters must already be validated."""
    lut = np.full(256, -1, dtype=np.int64)
    lut[np.frombuffer(alphabet.encode(), dtype=np.uint8)] = np.arange(len(alphabet))
    arr = np.frombuffer("".join(seqs).encode(), dtype=np.uint8).reshape(len(seqs), -1)
    return torch.from_numpy(lut[arr])


def decode(tokens: torch.Tensor, alphabet: str = DNA_ALPHABET) -> list[str]:
    letters = np.frombuffer(alphabet.encode(), dtype=np.uint8)[tokens.cpu().numpy()]
    return [row.tobytes().decode() for row in letters]


def read_fasta(
    path: str | Path,
    alphabet: str = DNA_ALPHABET,
    length: int | None = None,
    allow_empty: bool = False,
) -> tuple[list[str], list[str]]:
    """Read and validate a FASTA file → (ids, upper-case sequences).

    Errors name the file, record and problem: invalid letters, empty records (unless
    ``allow_empty``: a generated peptide may be empty), wrong length, duplicate ids, no records.
    """
    from Bio import SeqIO

    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: file not found")
    allowed = set(alphabet)
    ids, seqs = [], []
    try:
        with open(path) as handle:
            records = list(SeqIO.parse(handle, "fasta"))
    except ValueError as err:
        raise UserError(f"{path}: not a FASTA file ({err})") from None
    for number, record in enumerate(records, 1):
        seq = str(record.seq).upper()
        where = f"{path}: record {number} ({record.id!r})"
        if not seq and not allow_empty:
            raise UserError(f"{where}: empty sequence")
        bad = sorted(set(seq) - allowed)
        if bad:
            pos = min(seq.index(c) for c in bad) + 1
            raise UserError(
                f"{where}: invalid letter {bad[0]!r} at position {pos} (allowed: {alphabet})"
            )
        if length is not None and len(seq) != length:
            raise UserError(f"{where}: length {len(seq)}, expected {length}")
        ids.append(record.id)
        seqs.append(seq)
    if not seqs:
        raise UserError(f"{path}: no FASTA records")
    dup = pd.Index(ids)[pd.Index(ids).duplicated()]
    if len(dup):
        raise UserError(f"{path}: duplicate record id {dup[0]!r}")
    return ids, seqs


def write_fasta(
    path: str | Path, ids: list[str], seqs: list[str], descriptions: list[str] | None = None
) -> None:
    """Atomic FASTA write, 80 letters per line, optional header descriptions."""
    descriptions = descriptions or [""] * len(ids)
    with atomic_path(path) as tmp, open(tmp, "w") as f:
        for rid, desc, seq in zip(ids, descriptions, seqs):
            f.write(f">{rid}{' ' + desc if desc else ''}\n")
            f.writelines(seq[i : i + 80] + "\n" for i in range(0, len(seq), 80))


def read_labels(path: str | Path, ids: list[str], classes: list[str] | None = None) -> pd.Series:
    """Labels TSV with columns ``id`` and ``label`` → labels aligned to ``ids``.

    Every id in the TSV must exist in the FASTA and every FASTA id must have a label.
    """
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: file not found")
    table = pd.read_csv(path, sep="\t", dtype=str)
    missing_cols = {"id", "label"} - set(table.columns)
    if missing_cols:
        raise UserError(
            f"{path}: missing column(s) {', '.join(sorted(missing_cols))} (need id and label)"
        )
    known = set(ids)
    for line, rid in enumerate(table["id"], 2):
        if rid not in known:
            raise UserError(f"{path}: line {line}: unknown id {rid!r} (not in the FASTA)")
    labels = table.set_index("id")["label"]
    unlabelled = [i for i in ids if i not in labels.index]
    if unlabelled:
        raise UserError(f"{path}: no label for id {unlabelled[0]!r}")
    if classes is not None:
        for line, (rid, lab) in enumerate(table[["id", "label"]].itertuples(index=False), 2):
            if lab not in classes:
                raise UserError(
                    f"{path}: line {line}: unknown label {lab!r} for {rid!r} "
                    f"(known: {', '.join(classes)})"
                )
    return labels.loc[ids]


def package_data_file(package: str, relative: str) -> Path:
    """A data file inside an installed package, found without importing the package."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise UserError(
            f"package {package!r} is not installed (needed for its data file "
            f"{relative}); run `make install`"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / relative
    if not path.exists():
        raise UserError(f"{path}: data file missing from the installed {package!r} package")
    return path


def load_encode_dhs() -> pd.DataFrame:
    """The 47,872 ENCODE DHS sequences (200 bp) with cell type, chromosome and split."""
    table = pd.read_csv(package_data_file("dnadiffusion", f"data/{DHS_FILE}"), sep="\t")
    table["cell_type"] = table["TAG"].str.split("_").str[0]
    table["split"] = table["data_label"].map(
        {"training": "train", "validation": "valid", "test": "test"}
    )
    return table[["dhs_id", "chr", "sequence", "cell_type", "split"]].rename(
        columns={"dhs_id": "id"}
    )


def chromosome_halves(chroms: pd.Series) -> pd.Series:
    """Assign each chromosome to half 0 or 1 so that both halves hold ≈ equal sequence counts
    (greedy by size): disjoint data for the ``ft`` and ``eval`` reward-model copies."""
    counts = chroms.value_counts()
    half, load = {}, [0, 0]
    for chrom, n in counts.items():
        side = int(load[1] < load[0])
        half[chrom], load[side] = side, load[side] + n
    return chroms.map(half)
