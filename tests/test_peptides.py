"""Peptide data, oracles, metrics: modlamp sets, FASTA checks, tokens, splits, known values."""

import math

import numpy as np
import pytest
import torch

from rewarddiff import UserError
from rewarddiff.oracles.registry import available, make_oracle
from seqgen import peptide_metrics as pm
from seqgen import peptide_oracles as po
from seqgen import peptides
from seqgen.data import write_fasta

MAGAININ_2 = "GIGKFLHSAKKFGKAFVGEIMNS"  # 23 aa, Xenopus laevis
MELITTIN = "GIGAVLKVLTTGLPALISWIKRKRQQ"  # 26 aa, honeybee venom
KYTE_DOOLITTLE = {
    "A": 1.8, "R": -4.5, "N": -3.5, "D": -3.5, "C": 2.5, "Q": -3.5, "E": -3.5, "G": -0.4,
    "H": -3.2, "I": 4.5, "L": 3.8, "K": -3.9, "M": 1.9, "F": 2.8, "P": -1.6, "S": -0.8,
    "T": -0.7, "W": -0.9, "Y": -1.3, "V": 4.2,
}  # fmt: skip


# ----- data ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "name, rows, per_label, shortest, longest",
    [("AMPvsUniProt", 5200, 2600, 7, 174), ("AMPvsTMset", 412, 206, 8, 56)],
)
def test_read_modlamp(name, rows, per_label, shortest, longest):
    seqs, labels = peptides.read_modlamp(name)
    assert len(seqs) == rows and labels.dtype == np.int64
    assert np.bincount(labels).tolist() == [per_label, per_label]
    lengths = [len(s) for s in seqs]
    assert (min(lengths), max(lengths)) == (shortest, longest)
    assert set("".join(seqs)) <= set(peptides.AMINO_ACIDS)


def test_fasta_round_trip_with_labels_and_normalisation(tmp_path):
    write_fasta(tmp_path / "p.fasta", ["amp", "other"], [MAGAININ_2, MELITTIN])
    (tmp_path / "labels.tsv").write_text("id\tlabel\nother\t0\namp\t1\n")
    read = peptides.read_fasta(tmp_path / "p.fasta", tmp_path / "labels.tsv")
    assert read.ids == ["amp", "other"] and read.seqs == [MAGAININ_2, MELITTIN]
    assert read.labels.tolist() == [1, 0] and read.dropped == []
    (tmp_path / "q.fasta").write_text(">low\ngigkflhs\n>stop\nKLAKLAK*\n")
    assert peptides.read_fasta(tmp_path / "q.fasta").seqs == ["GIGKFLHS", "KLAKLAK"]


@pytest.mark.parametrize("letter", list("BJOUXZ"))
def test_fasta_non_standard_letter_names_record(tmp_path, letter):
    path = tmp_path / "bad.fasta"
    path.write_text(f">ok\nKLAK\n>bad1\nKL{letter}K\n")
    with pytest.raises(UserError, match=rf"record 2 \('bad1'\): invalid letter '{letter}' at "):
        peptides.read_fasta(path)


@pytest.mark.parametrize(
    "text, message",
    [
        (">a\nKLAK\n>b\nKL*AK\n", r"record 2 \('b'\): stop '\*' at position 3"),
        (">a\nKLAK\n>b\n\n", r"record 2 \('b'\): empty sequence"),
        (">a\nKLAK\n>b\n*\n", r"record 2 \('b'\): empty sequence"),
        (">a\n" + "K" * 51 + "\n", r"record 1 \('a'\): length 51 exceeds the maximum 50"),
        (">a\nKLAK\n>a\nKLAK\n", "duplicate record id 'a'"),
        ("", "no FASTA records"),
    ],
)
def test_bad_fasta(tmp_path, text, message):
    path = tmp_path / "bad.fasta"
    path.write_text(text)
    with pytest.raises(UserError, match=message) as err:
        peptides.read_fasta(path)
    assert str(path) in str(err.value)


def test_fasta_drop_long_keeps_labels_aligned(tmp_path):
    path, labels = tmp_path / "p.fasta", tmp_path / "labels.tsv"
    path.write_text(">a\nKLAK\n>long\n" + "K" * 12 + "\n>c\nGIGK\n")
    labels.write_text("id\tlabel\na\t1\nlong\t1\nc\t0\n")
    read = peptides.read_fasta(path, labels, max_length=10, drop_long=True)
    assert read.ids == ["a", "c"] and read.labels.tolist() == [1, 0] and read.dropped == ["long"]
    with pytest.raises(UserError, match="every record is longer than max_length 3"):
        peptides.read_fasta(path, max_length=3, drop_long=True)
    for bad in ("AMP", "2", "-1", "0.5"):
        labels.write_text(f"id\tlabel\na\t1\nlong\t1\nc\t{bad}\n")
        with pytest.raises(UserError, match=f"label '{bad}' for 'c' is not 0 .non-AMP. or 1"):
            peptides.read_fasta(path, labels, max_length=10, drop_long=True)


def test_encode_decode_variable_lengths():
    seqs = [MAGAININ_2, "K", "", MELITTIN]
    tokens = peptides.encode(seqs, max_length=30)
    assert tokens.shape == (4, 30) and tokens.dtype == torch.int64
    assert (tokens[1, 1:] == peptides.PAD).all() and tokens[0, 0] == peptides.AMINO_ACIDS.index("G")
    assert peptides.decode(tokens) == seqs
    with pytest.raises(ValueError, match="length 26 > max_length 20"):
        peptides.encode([MELITTIN], max_length=20)


def test_decode_ends_at_first_pad():
    pad = peptides.PAD
    tokens = torch.tensor([[0, pad, 1, pad], [0, 1, pad, pad], [pad, pad, pad, pad]])
    assert peptides.decode(tokens) == ["A", "AC", ""]
    assert peptides.letters_after_pad(tokens).tolist() == [True, False, False]
    with pytest.raises(ValueError, match="token ids"):
        peptides.decode(torch.tensor([[pad + 1]]))


def test_split_deterministic_grouped_and_pool_excludes_test():
    seqs, labels = peptides.read_modlamp()
    splits = peptides.split(seqs, labels, seed=0)
    assert (splits == peptides.split(seqs, labels, seed=0)).all()
    assert not (splits == peptides.split(seqs, labels, seed=1)).all()
    by_seq = {}
    for s, part in zip(seqs, splits):
        by_seq.setdefault(s, set()).add(part)
    assert all(len(parts) == 1 for parts in by_seq.values())  # duplicates share a split
    assert abs(np.mean(splits == "test") - 0.1) < 0.02
    for label in (0, 1):  # stratified
        assert abs(np.mean(splits[labels == label] == "train") - 0.8) < 0.03
    pool = peptides.pretraining_pool(seqs, splits)
    assert len(pool) == len(set(pool)) and not set(pool) & set(np.asarray(seqs)[splits == "test"])
    assert set(pool) == set(np.asarray(seqs)[splits != "test"])
    halves = peptides.train_halves(seqs, labels, splits, seed=0)
    assert ((halves >= 0) == (splits == "train")).all()
    half_seqs = [set(np.asarray(seqs)[halves == h]) for h in (0, 1)]
    assert not half_seqs[0] & half_seqs[1] and abs(np.mean(halves[halves >= 0]) - 0.5) < 0.03


def test_length_histogram_and_sampling():
    hist = peptides.length_histogram(["KK", "KKK", "KKK", "KKKKK"], max_length=6)
    assert hist.tolist() == [0, 0, 0.25, 0.5, 0, 0.25, 0]
    lengths = peptides.sample_lengths(hist, 4000, seed=0)
    assert set(lengths) == {2, 3, 5} and abs(np.mean(lengths == 3) - 0.5) < 0.03
    with pytest.raises(ValueError, match="longer than max_length"):
        peptides.length_histogram(["KKK"], max_length=2)


# ----- oracles -------------------------------------------------------------------------------
def _oracle(spec, seqs):
    return make_oracle(po.DOMAIN, spec)(seqs)


def test_oracles_registered_for_protein_domain():
    names = {"length", "charge", "gravy", "instability", "pi", "aromaticity", "helix_fraction",
             "hydrophobic_moment", "amp_windows"}  # fmt: skip
    assert names <= set(available("protein"))
    with pytest.raises(UserError, match="window 'x' is not a positive integer"):
        make_oracle("protein", "hydrophobic_moment:x")
    with pytest.raises(UserError, match="expected NAME=LOW..HIGH"):
        make_oracle("protein", "amp_windows:charge=2")


@pytest.mark.parametrize("seq", [MAGAININ_2, MELITTIN])
def test_composition_properties_by_hand(seq):
    gravy = sum(KYTE_DOOLITTLE[a] for a in seq) / len(seq)
    assert _oracle("gravy", [seq])[0] == pytest.approx(gravy)
    assert _oracle("length", [seq])[0] == len(seq)
    aromatic = sum(seq.count(a) for a in "FWY") / len(seq)
    assert _oracle("aromaticity", [seq])[0] == pytest.approx(aromatic)
    helix_formers = sum(seq.count(a) for a in "EMALK") / len(seq)
    assert _oracle("helix_fraction", [seq])[0] == pytest.approx(helix_formers)


# Henderson–Hasselbalch pKs of Biopython's IsoelectricPoint (Bjellqvist-style): side chains,
# default termini, and the N-terminal residues with their own pK (C-terminal S: default)
PK_POSITIVE = {"K": 10.0, "R": 12.0, "H": 5.98}
PK_NEGATIVE = {"D": 4.05, "E": 4.45, "C": 9.0, "Y": 10.0}
PK_N_TERMINUS, PK_C_TERMINUS = 7.5, 3.55


def charge_by_hand(seq, ph=7.0):
    """Σ positive 1/(1 + 10^(pH − pK)) − Σ negative 1/(1 + 10^(pK − pH)), termini included
    (G at the N terminus and S/Q at the C terminus take the default terminal pKs)."""
    positive = [PK_N_TERMINUS] + [PK_POSITIVE[a] for a in seq if a in PK_POSITIVE]
    negative = [PK_C_TERMINUS] + [PK_NEGATIVE[a] for a in seq if a in PK_NEGATIVE]
    return sum(1 / (1 + 10 ** (ph - pk)) for pk in positive) - sum(
        1 / (1 + 10 ** (pk - ph)) for pk in negative
    )


def test_charge_pi_instability_known_peptides():
    charge = _oracle("charge", [MAGAININ_2, MELITTIN])
    # magainin 2: 4 Lys, 1 His, 1 Glu; melittin (free acid): 3 Lys + 2 Arg, no acidic side chain
    assert charge[0] == pytest.approx(charge_by_hand(MAGAININ_2), abs=1e-3)  # 2.846
    assert charge[1] == pytest.approx(charge_by_hand(MELITTIN), abs=1e-3)  # 4.757
    # the isoelectric point is where that charge crosses zero (bisection on the same formula)
    for seq, pi in zip((MAGAININ_2, MELITTIN), _oracle("pi", [MAGAININ_2, MELITTIN])):
        low, high = 4.0, 14.0
        for _ in range(60):
            mid = (low + high) / 2
            low, high = (mid, high) if charge_by_hand(seq, mid) > 0 else (low, mid)
        # 10.00 and 12.02 (Biopython's search for the root stops at pH 12: melittin 12.00)
        assert pi == pytest.approx(min(low, 12.0), abs=0.01), seq
    assert _oracle("charge", ["DDEE"])[0] < -3.5
    # Guruprasad instability index (DIWV dipeptide sums × 10 / length): pinned values
    instability = _oracle("instability", [MAGAININ_2, MELITTIN])
    assert instability == pytest.approx([-0.104, 44.73], abs=0.01)
    assert instability[0] < 40 < instability[1]  # melittin is "unstable"


def test_hydrophobic_moment_known_values():
    # two residues by hand: |h_L + h_K e^{i 100°}| / 2 with Eisenberg L 1.06, K -1.50
    by_hand = abs(1.06 - 1.50 * complex(math.cos(math.radians(100)), math.sin(math.radians(100))))
    assert po.hydrophobic_moment("LK") == pytest.approx(by_hand / 2)
    # modlamp's documented value with its rounded Eisenberg scale
    modlamp_scale = {**po.EISENBERG, "I": 1.4, "F": 1.2, "V": 1.1, "L": 1.1, "R": -2.5}
    assert po.hydrophobic_moment("GLFDIVKKVVGALGSL", scale=modlamp_scale) == pytest.approx(
        0.48790226
    )
    # ideal amphipathic helix (L where cos(100° k) > 0) vs the same residues in two blocks
    ideal = "".join("L" if math.cos(math.radians(100 * k)) > 0 else "K" for k in range(18))
    blocks = "".join(sorted(ideal))
    moments = _oracle("hydrophobic_moment", [ideal, blocks])
    assert moments[0] > 0.8 and moments[0] > 4 * moments[1]
    # the whole peptides, by the definition: |Σ h_k e^{i·100°·k}| / n
    for seq, value in ((MAGAININ_2, 0.455), (MELITTIN, 0.353)):
        total = sum(po.EISENBERG[a] * complex(math.cos(math.radians(100 * k)),
                                              math.sin(math.radians(100 * k)))
                    for k, a in enumerate(seq))  # fmt: skip
        assert po.hydrophobic_moment(seq) == pytest.approx(abs(total) / len(seq))
        assert po.hydrophobic_moment(seq) == pytest.approx(value, abs=1e-3)
    whole, best11 = po.hydrophobic_moment(MELITTIN), _oracle("hydrophobic_moment:11", [MELITTIN])
    assert best11[0] >= whole and po.hydrophobic_moment("LK", window=11) == pytest.approx(
        by_hand / 2
    )


def test_unscorable_peptides_give_nan_without_failing_the_batch():
    batch = [MAGAININ_2, "", "KLXK", "klak", None]
    learned = {"amp_prob", "amp_logodds"}  # need a reward model (covered by the pipeline test)
    for name in set(available("protein")) - learned:
        values = _oracle(name, batch)
        assert np.isfinite(values[0]) and np.isnan(values[1:]).all(), name


def test_amp_windows_constraint_score():
    scores = _oracle("amp_windows", [MAGAININ_2, MELITTIN, "KK"])
    assert scores[0] == 1.0 and 0 < scores[1] < 1 and scores[2] < scores[1]
    inside = po.windows_satisfied([MAGAININ_2, MELITTIN], po.DEFAULT_WINDOWS)
    assert inside.tolist() == [[True, True, True], [True, True, False]]
    custom = _oracle("amp_windows:charge=..0,length=20..", [MAGAININ_2])
    assert 0 < custom[0] < 1  # charge +2.8 outside, length 23 inside


# ----- metrics -------------------------------------------------------------------------------
def test_composition_jsd_known_values():
    assert pm.composition_jsd([MAGAININ_2], [MAGAININ_2]) == pytest.approx(0.0, abs=1e-12)
    assert pm.composition_jsd(["AAAA"], ["CCCC"]) == pytest.approx(math.log(2))
    m = np.array([0.75, 0.25])  # p = (1, 0), q = (0.5, 0.5)
    expected = 0.5 * math.log(1 / m[0]) + 0.5 * (0.5 * math.log(0.5 / m[0]) + 0.5 * math.log(2))
    assert pm.composition_jsd(["AAAA"], ["ACAC", "CA"]) == pytest.approx(expected)


def test_length_distance_and_window_satisfaction():
    assert pm.length_wasserstein(["K" * 10, "K" * 20], ["K" * 12, "K" * 22]) == pytest.approx(2)
    sat = pm.window_satisfaction([MAGAININ_2, MELITTIN])
    assert sat == {"windows_satisfied": pytest.approx(5 / 6), "all_windows_satisfied": 0.5}


def test_identity_diversity_novelty():
    assert pm.identity(MAGAININ_2, MAGAININ_2) == 1.0
    assert pm.identity("KLAK", "KLAKKLAK") == 0.5 and pm.identity("AAAA", "CCCC") == 0.0
    assert pm.mean_pairwise_identity([MELITTIN] * 5) == 1.0
    assert math.isnan(pm.mean_pairwise_identity([MELITTIN]))
    varied = [MAGAININ_2, MELITTIN, "KLAKLAKKLAKLAK", "GLFDIVKKVVGALGSL", "FLPLIGRVLSGIL"]
    sampled = pm.mean_pairwise_identity(varied, max_pairs=4, seed=1)
    assert sampled == pm.mean_pairwise_identity(varied, max_pairs=4, seed=1) < 1
    assert pm.max_identity([MELITTIN, "KLAK"], varied).tolist() == [1.0, 4 / 14]
    novelty = pm.novelty([MELITTIN, "KLAK"], varied, threshold=0.7)
    assert novelty == {"max_identity_mean": pytest.approx((1 + 4 / 14) / 2), "novel_fraction": 0.5}


def test_differentiable_properties_match_biopython_on_one_hot_peptides():
    import torch
    from Bio.SeqUtils.ProtParam import ProteinAnalysis

    from rewarddiff.oracles.registry import make_oracles
    from seqgen import peptide_oracles as po
    from seqgen.peptides import encode

    seqs = ["GIGKFLHSAKKFGKAFVGEIMNS", "GIGAVLKVLTTGLPALISWIKRKRQQ", "DEAD", "MKWKLFKKIGE"]
    x = torch.nn.functional.one_hot(encode(seqs, 30), 21).double().requires_grad_(True)
    expected_charge = [ProteinAnalysis(s).charge_at_pH(7.0) for s in seqs]
    expected_instability = [ProteinAnalysis(s).instability_index() for s in seqs]
    torch.testing.assert_close(po.torch_charge(x).detach().tolist(), expected_charge)
    torch.testing.assert_close(po.torch_instability(x).detach().tolist(), expected_instability)
    assert po.torch_length(x).tolist() == [23.0, 26.0, 4.0, 11.0]
    windows = make_oracles("protein", ["amp_windows"])["amp_windows"]
    assert windows.info.differentiable
    soft = windows.torch_score(x)
    torch.testing.assert_close(soft.detach().numpy(), windows(seqs))
    soft.sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
