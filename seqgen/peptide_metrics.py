"""Design-set metrics for peptides: amino-acid composition and length-distribution distances to a
reference set, diversity and novelty by pairwise identity, property-window satisfaction.

Identity of two peptides = (identical residues in a global alignment maximising them: match 1,
mismatch 0, gaps free) / (length of the longer peptide). It is 1 only for identical peptides and
symmetric; a fragment of half a peptide's length scores at most 0.5. Gaps are free, so unrelated
peptides still match ~0.25 (mean over AMPvsUniProt pairs of up to 50 aa; a shuffled peptide's best
match among 1,000 of them is ~0.45). Peptides passed to identity metrics must be non-empty.
"""

from __future__ import annotations

import numpy as np
from Bio.Align import PairwiseAligner
from scipy.stats import wasserstein_distance

from seqgen.peptide_oracles import DEFAULT_WINDOWS, Window, windows_satisfied
from seqgen.peptides import AMINO_ACIDS

_ALIGNER = PairwiseAligner(mode="global", match_score=1.0, mismatch_score=0.0, gap_score=0.0)


def composition(seqs: list[str]) -> np.ndarray:
    """(20,) frequency of each amino acid (``AMINO_ACIDS`` order) over all residues of the set."""
    counts = np.array([sum(s.count(a) for s in seqs) for a in AMINO_ACIDS], dtype=np.float64)
    return counts / counts.sum()


def composition_jsd(designs: list[str], reference: list[str]) -> float:
    """Jensen-Shannon divergence in nats (0 … ln 2) between the sets' amino-acid compositions."""
    p, q = composition(designs), composition(reference)
    m = 0.5 * (p + q)

    def kl(a: np.ndarray) -> float:
        nonzero = a > 0
        return float(np.sum(a[nonzero] * np.log(a[nonzero] / m[nonzero])))

    return 0.5 * kl(p) + 0.5 * kl(q)


def length_wasserstein(designs: list[str], reference: list[str]) -> float:
    """Wasserstein-1 distance between the sets' length distributions, in residues."""
    return float(wasserstein_distance([len(s) for s in designs], [len(s) for s in reference]))


def identity(a: str, b: str) -> float:
    """Pairwise identity of two non-empty peptides in [0, 1] (definition in the module doc)."""
    return _ALIGNER.score(a, b) / max(len(a), len(b))


def mean_pairwise_identity(seqs: list[str], max_pairs: int = 10_000, seed: int = 0) -> float:
    """Mean identity over unordered pairs (all pairs, or ``max_pairs`` drawn with ``seed``);
    1 for a set of copies, lower = more diverse. NaN for fewer than two peptides."""
    n = len(seqs)
    if n < 2:
        return float("nan")
    first, second = np.triu_indices(n, k=1)
    if len(first) > max_pairs:
        chosen = np.random.default_rng(seed).choice(len(first), size=max_pairs, replace=False)
        first, second = first[chosen], second[chosen]
    return float(np.mean([identity(seqs[i], seqs[j]) for i, j in zip(first, second)]))


def max_identity(designs: list[str], reference: list[str]) -> np.ndarray:
    """(n_designs,) highest identity of each design to any reference peptide (1 = a copy)."""
    distinct = list(dict.fromkeys(reference))
    return np.array([max(identity(d, r) for r in distinct) for d in designs], dtype=np.float64)


def novelty(designs: list[str], reference: list[str], threshold: float = 0.7) -> dict:
    """Mean of :func:`max_identity` to the reference (training) set and the fraction of designs
    whose max identity is below ``threshold`` (novel designs)."""
    best = max_identity(designs, reference)
    return {
        "max_identity_mean": float(best.mean()),
        "novel_fraction": float(np.mean(best < threshold)),
    }


def window_satisfaction(seqs: list[str], windows: tuple[Window, ...] = DEFAULT_WINDOWS) -> dict:
    """Mean fraction of property windows each peptide satisfies, and the fraction of peptides
    inside all windows (unscorable peptides satisfy none)."""
    inside = windows_satisfied(seqs, windows)
    return {
        "windows_satisfied": float(inside.mean()),
        "all_windows_satisfied": float(inside.all(axis=1).mean()),
    }
