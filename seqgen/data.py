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
from rewarddiff.io import atomic_path, read_user_text

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


class Record(str):
    """A sequence read from a FASTA file that keeps its header: ``id``, ``description`` (the
    rest of the header line) and ``where`` (file and record, for messages)."""

    def __new__(cls, seq: str, rid: str, description: str = "", where: str = ""):
        record = super().__new__(cls, seq)
        record.id, record.description, record.where = rid, description, where
        return record


def _text_lines(path: Path, kind: str) -> list[str]:
    """The lines of a UTF-8 text file (:func:`rewarddiff.io.read_user_text`)."""
    return read_user_text(path, f"a {kind} file").splitlines()


def _fasta_records(path: Path) -> list[tuple[int, str, str]]:
    """(line number, header, sequence) per record; blank lines are skipped and whitespace
    inside sequence lines removed."""
    records: list[tuple[int, str, list[str]]] = []
    for number, line in enumerate(_text_lines(path, "FASTA"), 1):
        if line.startswith(">"):
            records.append((number, line[1:].strip(), []))
        elif line.strip():
            if not records:
                raise UserError(
                    f"{path}: line {number}: sequence before the first '>' header "
                    "(not a FASTA file?)"
                )
            records[-1][2].append("".join(line.split()))
    return [(number, header, "".join(parts)) for number, header, parts in records]


def read_fasta(
    path: str | Path,
    alphabet: str = DNA_ALPHABET,
    length: int | None = None,
    allow_empty: bool = False,
    terminal_stop: bool = False,
) -> tuple[list[str], list[Record]]:
    """Read and validate a FASTA file → (ids, upper-case sequences as :class:`Record`).

    Lowercase letters are upper-cased; with ``terminal_stop`` one ``*`` at the end of a record
    is removed. Errors name the file, record and problem: text before the first header, an
    empty header, invalid letters, empty records (unless ``allow_empty``: a generated peptide
    may be empty), wrong length, duplicate ids, no records.
    """
    path = Path(path)
    allowed = set(alphabet)
    ids, seqs, first = [], [], {}
    for number, (line, header, seq) in enumerate(_fasta_records(path), 1):
        rid, description = (header.split(maxsplit=1) + ["", ""])[:2]
        where = f"{path}: record {number} ({rid!r})"
        if not rid:
            raise UserError(f"{path}: line {line}: record {number} has no id after '>'")
        seq = seq.upper()
        if terminal_stop:
            seq = seq.removesuffix("*")
            if "*" in seq:
                pos = seq.index("*") + 1
                raise UserError(f"{where}: stop '*' at position {pos}, before the end")
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
        if rid in first:
            raise UserError(f"{where}: duplicate record id {rid!r} (record {first[rid]} has it)")
        first[rid] = number
        ids.append(rid)
        seqs.append(Record(seq, rid, description, where))
    if not seqs:
        raise UserError(f"{path}: no FASTA records")
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


def _tsv_rows(path: Path) -> tuple[list[str], dict[int, list[str]]]:
    """Header fields and the rows (line number → fields) of a tab-separated text file; blank
    lines are skipped, a row with another number of fields than the header is an error."""
    numbered = enumerate(_text_lines(path, "TSV"), 1)
    lines = [(n, line) for n, line in numbered if line.strip() or "\t" in line]
    if not lines:
        raise UserError(f"{path}: empty file (expected a header line 'id<TAB>label')")
    header = [name.strip() for name in lines[0][1].split("\t")]
    rows = {}
    for number, line in lines[1:]:
        fields = [field.strip() for field in line.split("\t")]
        if len(fields) != len(header):
            raise UserError(
                f"{path}: line {number}: {len(fields)} tab-separated field(s), the header has "
                f"{len(header)} ({', '.join(header)})"
            )
        rows[number] = fields
    return header, rows


def read_label_table(path: str | Path, ids: list[str]) -> pd.DataFrame:
    """A TSV with columns ``id``, ``label`` (and any others) → its rows as strings, indexed by
    ``ids`` in that order.

    Errors name the file and line: an empty or non-text file, missing columns, rows of another
    width than the header, an empty or repeated id, an id not in ``ids`` (the FASTA), an empty
    label, an id of ``ids`` without a row.
    """
    path = Path(path)
    header, rows = _tsv_rows(path)
    missing_cols = {"id", "label"} - set(header)
    if missing_cols:
        raise UserError(
            f"{path}: missing column(s) {', '.join(sorted(missing_cols))} (need id and label; "
            f"the header has: {', '.join(header)})"
        )
    table = pd.DataFrame.from_dict(rows, orient="index", columns=header, dtype=str)
    known, seen = set(ids), {}
    for line, rid, label in table[["id", "label"]].itertuples():
        if not rid:
            raise UserError(f"{path}: line {line}: empty id")
        if rid not in known:
            raise UserError(f"{path}: line {line}: unknown id {rid!r} (not in the FASTA)")
        if rid in seen:
            raise UserError(f"{path}: line {line}: duplicate id {rid!r} (line {seen[rid]})")
        if not label:
            raise UserError(f"{path}: line {line}: empty label for {rid!r}")
        seen[rid] = line
    unlabelled = [i for i in ids if i not in seen]
    if unlabelled:
        more = f" (and {len(unlabelled) - 1} more)" if len(unlabelled) > 1 else ""
        raise UserError(f"{path}: no label for id {unlabelled[0]!r}{more}")
    return table.set_index("id").loc[ids]


def read_labels(path: str | Path, ids: list[str], classes: list[str] | None = None) -> pd.Series:
    """Labels TSV with columns ``id`` and ``label`` → labels aligned to ``ids`` (checked as in
    :func:`read_label_table`; with ``classes``, every label must be one of them)."""
    labels = read_label_table(path, ids)["label"]
    if classes is not None:
        for rid, lab in labels.items():
            if lab not in classes:
                raise UserError(
                    f"{path}: unknown label {lab!r} for {rid!r} (known: {', '.join(classes)})"
                )
    return labels


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
