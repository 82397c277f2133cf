"""Design-set metrics for DNA (DRAKES / DNA-Diffusion evaluation protocol).

Sequences are token arrays ``(n, L) int`` with values in ``[0, vocab)``; motif counts are the
``(n, n_motifs)`` arrays of ``seqgen.motifs.hit_counts``.
"""

from __future__ import annotations

import numpy as np


def _pearson(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson r of two vectors; nan if either is constant."""
    x = np.asarray(x, dtype=np.float64) - np.mean(x)
    y = np.asarray(y, dtype=np.float64) - np.mean(y)
    denom = np.sqrt((x @ x) * (y @ y))
    return float(x @ y / denom) if denom > 0 else float("nan")


def _onehot(tokens: np.ndarray, vocab: int) -> np.ndarray:
    """One-hot ``(n, L * vocab)`` float32."""
    return np.eye(vocab, dtype=np.float32)[tokens].reshape(len(tokens), -1)


def kmer_counts(tokens: np.ndarray, k: int = 3, vocab: int = 4) -> np.ndarray:
    """Total k-mer counts over the set, ``(vocab**k,)`` int64.

    The k-mer ``t_1..t_k`` has index ``sum_i t_i * vocab**(k - i)`` (lexicographic order).
    """
    windows = np.lib.stride_tricks.sliding_window_view(np.asarray(tokens), k, axis=1)
    index = windows @ vocab ** np.arange(k - 1, -1, -1)
    return np.bincount(index.ravel(), minlength=vocab**k)


def kmer_pearson(designs: np.ndarray, reference: np.ndarray, k: int = 3, vocab: int = 4) -> float:
    """Pearson r between the k-mer count vectors of two sets (DRAKES "3-mer Pearson corr")."""
    return _pearson(kmer_counts(designs, k, vocab), kmer_counts(reference, k, vocab))


def motif_count_correlation(design_counts: np.ndarray, reference_counts: np.ndarray) -> float:
    """Pearson r over motifs between mean hits per sequence of two sets; nan if one is constant."""
    return _pearson(np.mean(design_counts, axis=0), np.mean(reference_counts, axis=0))


def motif_distribution_kl(
    design_counts: np.ndarray, reference_counts: np.ndarray, pseudocount: float = 1.0
) -> float:
    """KL(reference || designs) in nats between motif-frequency distributions (DNA-Diffusion).

    Each distribution is the per-motif total hit count over the set plus ``pseudocount``,
    normalised to sum to 1 over motifs.
    """
    p = np.sum(reference_counts, axis=0) + pseudocount
    q = np.sum(design_counts, axis=0) + pseudocount
    p, q = p / p.sum(), q / q.sum()
    return float(np.sum(p * np.log(p / q)))


def mean_pairwise_hamming(tokens: np.ndarray, vocab: int = 4) -> float:
    """Mean over unordered pairs of the fraction of differing positions; nan if n < 2.

    Summing the identity matrix ``onehot @ onehot.T`` over all pairs equals the sum of squared
    per-position letter counts, so this needs O(n L) time and memory, no pairwise matrix.
    """
    n, length = tokens.shape
    if n < 2:
        return float("nan")
    bins = tokens + vocab * np.arange(length)  # one bin per (position, letter)
    letter_counts = np.bincount(bins.ravel(), minlength=vocab * length)
    identical_pairs = (np.sum(letter_counts**2) - n * length) // 2
    return 1.0 - identical_pairs / (n * (n - 1) // 2 * length)


def max_positional_identity(
    designs: np.ndarray, reference: np.ndarray, chunk: int = 4096, vocab: int = 4
) -> np.ndarray:
    """For each design, max over reference sequences of the fraction of identical positions.

    Returns ``(n_designs,)`` float64 (memorisation score; 1.0 = copy of a reference sequence).
    Computed as one-hot matmuls over ``chunk x chunk`` blocks (peak ~``chunk**2 * 4`` bytes).
    """
    length = designs.shape[1]
    if reference.shape[1] != length:
        raise ValueError(f"length mismatch: designs {length}, reference {reference.shape[1]}")
    best = np.zeros(len(designs), dtype=np.float32)
    for i in range(0, len(designs), chunk):
        block = _onehot(designs[i : i + chunk], vocab)
        for j in range(0, len(reference), chunk):
            identity = block @ _onehot(reference[j : j + chunk], vocab).T
            np.maximum(best[i : i + chunk], identity.max(axis=1), out=best[i : i + chunk])
    return best.astype(np.float64) / length


def gc_content(tokens: np.ndarray, alphabet: str = "ACGT") -> np.ndarray:
    """Fraction of G or C per sequence, ``(n,)`` float64."""
    return np.isin(tokens, [alphabet.index("G"), alphabet.index("C")]).mean(axis=1)
