import numpy as np
import pytest
from Bio.Seq import Seq

from seqgen.motifs import CELL_TYPE_MOTIFS, best_hit_scores, hit_counts, load_motifs, pssm


@pytest.fixture(scope="module")
def hnf4a():
    return load_motifs(["MA0114"])[0]


def random_dna(length: int, seed: int) -> str:
    return "".join(np.random.default_rng(seed).choice(list("ACGT"), length))


def reverse_complement(seq: str) -> str:
    return str(Seq(seq).reverse_complement())


def test_versionless_id_resolves_to_latest(hnf4a):
    assert (hnf4a.matrix_id, hnf4a.name) == ("MA0114.5", "HNF4A")
    assert load_motifs(["MA0114.5"])[0].matrix_id == "MA0114.5"


def test_unknown_id_raises():
    with pytest.raises(ValueError, match="'MA9999.1'"):
        load_motifs(["MA0114", "MA9999.1"])


def test_cell_type_panel_loads():
    ids = [i for panel in CELL_TYPE_MOTIFS.values() for i in panel]
    assert [m.matrix_id for m in load_motifs(ids)] == ids


def test_best_hit_is_pssm_max_on_both_strands(hnf4a):
    site = str(hnf4a.consensus)
    background = random_dna(100, seed=0)
    forward = background[:40] + site + background[40:]
    reverse = background[:40] + reverse_complement(site) + background[40:]
    scores = best_hit_scores(hnf4a, [forward, reverse, background])
    top = pssm(hnf4a).max
    np.testing.assert_allclose(scores[:2], top, rtol=1e-6)
    assert scores[2] < top - 5


def test_short_sequence_is_nan_and_tokens_match_strings(hnf4a):
    site = str(hnf4a.consensus)
    scores = best_hit_scores(hnf4a, ["ACG", site, ""])
    assert np.isnan(scores[0]) and np.isnan(scores[2])
    assert scores[1] == pytest.approx(pssm(hnf4a).max, rel=1e-6)
    seqs = [random_dna(50, seed) for seed in range(3)]
    tokens = np.array([["ACGT".index(c) for c in s] for s in seqs])
    np.testing.assert_array_equal(best_hit_scores(hnf4a, tokens), best_hit_scores(hnf4a, seqs))


def test_hit_counts_count_inserted_sites(hnf4a):
    ctcf, klf4 = load_motifs(["MA0139", "MA0039"])
    site = str(hnf4a.consensus)
    seqs = [
        "A" * 100,
        "A" * 40 + site + "A" * 51,
        "A" * 30 + site + "A" * 20 + reverse_complement(site) + "A" * 32,
    ]
    counts = hit_counts([hnf4a, ctcf, klf4], seqs)
    assert counts.shape == (3, 3) and counts.dtype == np.int64
    np.testing.assert_array_equal(counts[:, 0], [0, 1, 2])
    np.testing.assert_array_equal(counts[:, 1:], 0)  # GC-rich motifs never hit poly-A
