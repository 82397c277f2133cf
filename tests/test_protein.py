"""The protein domain: variable-length peptides through the shared masked diffusion."""

import numpy as np
import pandas as pd
import pytest
import torch

from rewarddiff import UserError
from rewarddiff.domain import get_domain
from rewarddiff.oracles.learned import auroc
from seqgen import peptides


def test_generated_lengths_follow_the_training_length_distribution():
    """Peptides of length 4 (¾ of the data) or 11 (¼), padded to 14: the generator must
    reproduce the two lengths and their proportions (PAD is a token it learns to place)."""
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    lengths = rng.choice([4, 11], size=2048, p=[0.75, 0.25])
    seqs = ["".join(rng.choice(list(peptides.AMINO_ACIDS), n)) for n in lengths]
    x = peptides.encode(seqs, 14)
    domain = get_domain("protein")
    gen = domain.build_generator({"network": {"hidden": 32, "layers": 2}, "sampling_steps": 42,
                                  "length": 14})  # fmt: skip
    opt = torch.optim.Adam(gen.net.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(0)
    for _ in range(500):
        loss = gen.diffusion.loss(gen.net, x[torch.randint(len(x), (64,), generator=g)])
        opt.zero_grad()
        loss.backward()
        opt.step()
    samples, _ = gen.sample(512, torch.Generator().manual_seed(1))
    produced = np.array([len(s) for s in domain.to_designs(samples)])
    assert np.isin(produced, [4, 11]).mean() > 0.9, np.bincount(produced)
    assert (produced == 4).mean() == pytest.approx(0.75, abs=0.1)


def test_auroc_known_values():
    labels = np.array([0, 0, 1, 1])
    assert auroc(np.array([0.1, 0.2, 0.8, 0.9]), labels) == 1.0
    assert auroc(np.array([0.9, 0.8, 0.2, 0.1]), labels) == 0.0
    assert auroc(np.array([0.5, 0.5, 0.5, 0.5]), labels) == 0.5  # ties count one half


def test_prepare_splits_and_bad_source(tmp_path):
    domain = get_domain("protein")
    summary = domain.prepare({"max_length": 30, "max_per_split": 50}, tmp_path)
    assert summary["max_length"] == 30 and summary["length_range"][1] <= 30
    assert summary["too_long_dropped"] > 0  # the AMP set holds peptides up to 174 residues
    x, labels = domain.load_split(tmp_path, "train")
    assert x.shape == (50, 30) and set(labels["label"]) == {"amp", "non_amp"}
    assert set(labels["half"]) == {0, 1}
    _, seqs = domain.load_split(tmp_path, "test")[0], domain.to_designs(x)
    assert all(seqs) and max(map(len, seqs)) <= 30
    with pytest.raises(UserError, match="unknown source 'uniprot'"):
        domain.prepare({"source": "uniprot"}, tmp_path)


def test_empty_designs_round_trip_and_score_nan(tmp_path):
    domain = get_domain("protein")
    path = tmp_path / "designs.fasta"
    domain.write_designs(path, ["GIGKFLHSAKKFGKAFVGEIMNS", ""], {})
    assert domain.read_designs(path) == ["GIGKFLHSAKKFGKAFVGEIMNS", ""]
    scores = domain.score(domain.read_designs(path), ["charge", "amp_windows"])
    assert np.isfinite(scores["charge"][0]) and np.isnan(scores["charge"][1])


def test_prepare_user_fasta_keeps_ids_and_names_dropped_records(tmp_path, capsys):
    rng = np.random.default_rng(0)
    aa = list("ACDEFGHIKLMNPQRSTVWY")
    seqs = {f"user{i}": "".join(rng.choice(aa, int(rng.integers(8, 20)))) for i in range(60)}
    seqs["too_long"] = "K" * 40
    fasta, labels = tmp_path / "p.fasta", tmp_path / "labels.tsv"
    fasta.write_text("".join(f">{k}\n{v}\n" for k, v in seqs.items()))
    labels.write_text("id\tlabel\n" + "".join(f"{k}\t{i % 2}\n" for i, k in enumerate(seqs)))
    params = {"source": "fasta", "fasta": str(fasta), "labels": str(labels), "max_length": 30}
    summary = get_domain("protein").prepare(params, tmp_path / "data")
    assert summary["too_long_ids"] == ["too_long"] and summary["too_long_dropped"] == 1
    assert "left out 1 peptides longer than max_length 30: too_long" in capsys.readouterr().out
    table = pd.read_csv(tmp_path / "data/labels.tsv", sep="\t")
    assert set(table["id"]) == set(seqs) - {"too_long"}  # the user's ids, not renumbered
