import numpy as np
import pytest

from seqgen.metrics import (
    gc_content,
    kmer_counts,
    kmer_pearson,
    max_positional_identity,
    mean_pairwise_hamming,
    motif_count_correlation,
    motif_distribution_kl,
)


def encode(seqs: list[str]) -> np.ndarray:
    return np.array([["ACGT".index(c) for c in s] for s in seqs], dtype=np.int64)


def kmer_index(kmer: str) -> int:
    return int("".join(str("ACGT".index(c)) for c in kmer), 4)


def test_kmer_counts_known():
    counts = kmer_counts(encode(["ACGTACGT"]), k=3)
    expected = np.zeros(64, dtype=np.int64)
    for kmer, n in {"ACG": 2, "CGT": 2, "GTA": 1, "TAC": 1}.items():
        expected[kmer_index(kmer)] = n
    np.testing.assert_array_equal(counts, expected)
    assert counts.sum() == 6


def test_kmer_pearson():
    tokens = np.random.default_rng(0).integers(0, 4, (50, 100))
    assert kmer_pearson(tokens, tokens) == pytest.approx(1.0)
    assert kmer_pearson(tokens, np.zeros_like(tokens)) < 0.2


def test_mean_pairwise_hamming():
    assert mean_pairwise_hamming(encode(["AAAA", "AAAT", "TTTT"])) == pytest.approx(
        np.mean([0.25, 1.0, 0.75])
    )
    tokens = np.random.default_rng(1).integers(0, 4, (30, 20))
    brute = (tokens[:, None] != tokens[None]).mean(-1)[np.triu_indices(30, k=1)].mean()
    assert mean_pairwise_hamming(tokens) == pytest.approx(brute)
    assert np.isnan(mean_pairwise_hamming(tokens[:1]))


def test_max_positional_identity():
    rng = np.random.default_rng(2)
    train = rng.integers(0, 4, (300, 200))
    mutated = train[7].copy()
    sites = rng.choice(200, size=10, replace=False)
    mutated[sites] = (mutated[sites] + rng.integers(1, 4, size=10)) % 4
    designs = np.stack([train[3], mutated, rng.integers(0, 4, 200)])
    identity = max_positional_identity(designs, train, chunk=2)
    assert identity[0] == 1.0 and identity[1] == 0.95
    brute = (designs[:, None] == train[None]).mean(-1).max(1)
    np.testing.assert_allclose(identity, brute)
    with pytest.raises(ValueError, match="length"):
        max_positional_identity(designs, train[:, :100])


def test_gc_content():
    gc = gc_content(encode(["GCGC", "ATAT", "ACGT", "GAAA"]))
    np.testing.assert_allclose(gc, [1.0, 0.0, 0.5, 0.25])


def test_motif_count_metrics():
    rng = np.random.default_rng(3)
    reference = rng.poisson([0.5, 2.0, 1.0, 3.0], size=(100, 4))
    designs = rng.poisson([3.0, 0.2, 2.0, 0.1], size=(80, 4))
    assert motif_count_correlation(reference, reference) == pytest.approx(1.0)
    assert motif_count_correlation(designs, reference) < 0
    assert np.isnan(motif_count_correlation(np.ones((5, 4)), reference))
    assert motif_distribution_kl(reference, reference) == pytest.approx(0.0, abs=1e-12)
    assert motif_distribution_kl(designs, reference) > 0.1
