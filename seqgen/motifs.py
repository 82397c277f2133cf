"""JASPAR motif scanning: PFMs from the local pyjaspar database, scored with Bio.motifs PSSMs.

Scores are log2-odds (bits) against a uniform background, on both strands. A set of sequences
(strings, or a token array ``(n, L) int`` over ``alphabet``) is scanned with one C-accelerated
``PSSM.calculate`` call per strand: the sequences are joined with ``N`` separators, windows that
overlap an ``N`` (or any non-ACGT letter) score nan and are ignored.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Sequence

import numpy as np
from Bio import BiopythonWarning
from Bio.motifs import Motif
from Bio.motifs.matrix import PositionSpecificScoringMatrix
from pyjaspar import jaspar_releases, jaspardb

# JASPAR CORE vertebrate matrices (IDs as of JASPAR2024) of TFs known for the four ENCODE DHS
# cell types; CTCF (MA0139.2) is added to every panel as a ubiquitous control.
CELL_TYPE_MOTIFS: dict[str, list[str]] = {
    # liver: HNF4A, HNF1A, FOXA2, CEBPB
    "HepG2": ["MA0114.5", "MA0046.3", "MA0047.4", "MA0466.4", "MA0139.2"],
    # erythroid: GATA1, GATA1::TAL1, KLF1
    "K562": ["MA0035.5", "MA0140.3", "MA0493.3", "MA0139.2"],
    # lymphoid: SPI1, IRF4, RUNX1, EBF1
    "GM12878": ["MA0080.7", "MA1419.2", "MA0002.3", "MA0154.5", "MA0139.2"],
    # embryonic stem: POU5F1::SOX2, SOX2, KLF4
    "hESCT0": ["MA0142.1", "MA0143.5", "MA0039.5", "MA0139.2"],
}


@functools.cache
def _database(release: str) -> jaspardb:
    """Open (once per release) the SQLite JASPAR database shipped with pyjaspar."""
    if release not in jaspar_releases:
        raise ValueError(f"unknown JASPAR release {release!r}; have {sorted(jaspar_releases)}")
    return jaspardb(release=release)


def load_motifs(matrix_ids: list[str], release: str = "JASPAR2024") -> list[Motif]:
    """Fetch motifs by matrix ID ("MA0114.5"); a versionless ID ("MA0114") gets the latest."""
    db = _database(release)
    motifs = []
    for matrix_id in matrix_ids:
        with warnings.catch_warnings():  # pyjaspar warns and returns None for unknown IDs
            warnings.simplefilter("ignore", BiopythonWarning)
            motif = db.fetch_motif_by_id(matrix_id)
        if motif is None:
            raise ValueError(f"unknown JASPAR matrix id {matrix_id!r} in {release}")
        motifs.append(motif)
    return motifs


def pssm(motif: Motif, pseudocount: float = 0.25) -> PositionSpecificScoringMatrix:
    """Log2-odds PSSM (bits, uniform background); ``pseudocount`` is added to every letter count.

    0.25 per letter is one pseudo-site spread uniformly: it keeps zero counts finite and is
    negligible for the large site counts of current JASPAR matrices.
    """
    return motif.counts.normalize(pseudocounts=pseudocount).log_odds()


def _join(
    sequences: Sequence[str] | np.ndarray, alphabet: str, pad: int
) -> tuple[bytes, np.ndarray]:
    """Join sequences into ``seq0 N seq1 N ... N`` plus ``pad`` trailing N's.

    Returns the joined bytes and the start offset of each sequence ``(n,)``.
    """
    if isinstance(sequences, np.ndarray):
        letters = np.frombuffer((alphabet + "N").encode(), dtype=np.uint8)
        separated = np.pad(sequences, ((0, 0), (0, 1)), constant_values=len(alphabet))
        joined = letters[separated].tobytes()
        lengths = np.full(len(sequences), sequences.shape[1], dtype=np.int64)
    else:
        joined = "".join(s + "N" for s in sequences).encode()
        lengths = np.fromiter(map(len, sequences), dtype=np.int64, count=len(sequences))
    starts = np.cumsum(lengths + 1) - (lengths + 1)
    return joined + b"N" * pad, starts


def _window_scores(matrix: PositionSpecificScoringMatrix, joined: bytes) -> np.ndarray:
    """Scores ``(2, len(joined) - m + 1)`` float32 of every window, forward and reverse strand."""
    strands = (matrix, matrix.reverse_complement())
    return np.stack([np.atleast_1d(s.calculate(joined)) for s in strands])


def best_hit_scores(
    motif: Motif,
    sequences: Sequence[str] | np.ndarray,
    alphabet: str = "ACGT",
    pseudocount: float = 0.25,
) -> np.ndarray:
    """Best PSSM score (bits) over all positions and both strands, ``(n,)`` float64.

    Sequences shorter than the motif get nan.
    """
    joined, starts = _join(sequences, alphabet, pad=motif.length)
    if len(starts) == 0:
        return np.empty(0)
    best = np.fmax.reduce(_window_scores(pssm(motif, pseudocount), joined), axis=0)
    return np.fmax.reduceat(best, starts).astype(np.float64)


def hit_counts(
    motifs: Sequence[Motif],
    sequences: Sequence[str] | np.ndarray,
    threshold_fraction: float = 0.8,
    alphabet: str = "ACGT",
    pseudocount: float = 0.25,
) -> np.ndarray:
    """Number of motif hits per sequence, ``(n_seqs, n_motifs)`` int64.

    A hit is a window on either strand scoring >= min + threshold_fraction * (max - min) of the
    PSSM (the relative-score rule, "80 % of the score range"). Both strands count separately,
    so a palindromic site can count twice.
    """
    joined, starts = _join(sequences, alphabet, pad=max((m.length for m in motifs), default=0))
    counts = np.zeros((len(starts), len(motifs)), dtype=np.int64)
    if len(starts) == 0:
        return counts
    for j, motif in enumerate(motifs):
        matrix = pssm(motif, pseudocount)
        threshold = np.float32(matrix.min + threshold_fraction * (matrix.max - matrix.min))
        hits = (_window_scores(matrix, joined) >= threshold).sum(axis=0)
        counts[:, j] = np.add.reduceat(hits, starts)
    return counts
