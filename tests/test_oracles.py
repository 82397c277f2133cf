"""Oracle protocol, registry (incl. entry points), transforms and DNA oracles."""

from importlib.metadata import EntryPoint

import numpy as np
import pytest
import torch

import seqgen.dna  # noqa: F401  (registers the dna domain and its oracles)
from rewarddiff import UserError
from rewarddiff.oracles import registry
from rewarddiff.oracles.base import FunctionOracle, OracleInfo
from rewarddiff.oracles.learned import RewardEnsemble
from rewarddiff.oracles.transforms import apply_transform, combine, double_sigmoid, sigmoid
from seqgen.model import CNNConfig, SequenceClassifier


def test_failing_design_gives_nan_not_exception():
    def fn(designs):
        return [1.0 / len(d) if d != "bad" else float("x") for d in designs]

    oracle = FunctionOracle(OracleInfo("inv_len", "dna"), fn)
    values = oracle(["AC", "bad", "ACGT"])
    assert values[0] == 0.5 and np.isnan(values[1]) and values[2] == 0.25


def test_unknown_oracle_names_known_ones():
    with pytest.raises(UserError, match="unknown oracle 'nope'.*gc_content"):
        registry.make_oracle("dna", "nope")


def test_entry_point_registers_third_party_oracle(monkeypatch):
    def register():
        registry.register_oracle("dna", "length", OracleInfo("length", "dna"))(
            lambda argument=None, **ctx: FunctionOracle(
                OracleInfo("length", "dna"), lambda s: [len(x) for x in s]
            )
        )

    import tests.test_oracles as me

    monkeypatch.setattr(me, "third_party_register", register, raising=False)
    ep = EntryPoint("length", "tests.test_oracles:third_party_register", registry.ENTRY_POINT_GROUP)
    monkeypatch.setattr(
        registry, "entry_points", lambda group: [ep] if group == registry.ENTRY_POINT_GROUP else []
    )
    monkeypatch.setattr(registry, "_entry_points_loaded", False)
    assert "length" in registry.available("dna")
    assert registry.make_oracle("dna", "length")(["ACG", "A"]).tolist() == [3.0, 1.0]


def test_transforms_known_values():
    assert sigmoid(5.0, 0.0, 10.0) == pytest.approx(0.5)
    assert sigmoid(10.0, 0.0, 10.0) > 0.9 and sigmoid(0.0, 0.0, 10.0) < 0.1
    inside, outside = double_sigmoid(np.array([5.0, 20.0]), 2.0, 8.0)
    assert inside > 0.99 and outside < 0.01
    window = apply_transform(
        [1.0, 3.0, 6.0], {"type": "target_window", "low": 2, "high": 4, "width": 1.0}
    )
    assert window.tolist() == pytest.approx([np.exp(-0.5), 1.0, np.exp(-2.0)])
    with pytest.raises(UserError, match="unknown transform"):
        apply_transform([1.0], {"type": "nope"})


def test_weighted_combination():
    cols = {"a": np.array([1.0, 2.0]), "b": np.array([10.0, np.nan])}
    out = combine(cols, [{"oracle": "a", "weight": 2.0}, {"oracle": "b", "weight": 0.5}])
    assert out[0] == pytest.approx(7.0) and np.isnan(out[1])


def test_gc_content_oracle():
    oracle = registry.make_oracle("dna", "gc_content")
    assert oracle(["GGCC", "ATAT", "ACGT"]).tolist() == [1.0, 0.0, 0.5]


def test_jaspar_oracle_prefers_consensus():
    oracle = registry.make_oracle("dna", "jaspar_motif:MA0114")
    site = "GGGGTCAAAGGTCA"  # HNF4A DR1-like site
    scores = oracle(["A" * 30 + site + "A" * 30, "A" * 74])
    assert scores[0] > scores[1] + 5
    with pytest.raises(UserError, match="MA9999"):
        registry.make_oracle("dna", "jaspar_motif:MA9999.1")


@pytest.fixture
def tiny_classifier(tmp_path):
    torch.manual_seed(0)
    cfg = CNNConfig(hidden=8, layers=1, num_outputs=2)
    heads = [SequenceClassifier(cfg), SequenceClassifier(cfg)]
    path = tmp_path / "model.safetensors"
    RewardEnsemble(heads, "classification", 1.3).save(
        path, {"network": cfg.to_dict(), "classes": ["HepG2", "K562"]}
    )
    return path, heads


def test_reward_ensemble_round_trip_and_celltype_oracles(tiny_classifier):
    path, heads = tiny_classifier
    model = RewardEnsemble.load(path, lambda c: SequenceClassifier(CNNConfig(**c["network"])))
    x = torch.randint(4, (5, 20))
    expected = torch.stack([(h.eval()(x) / 1.3).softmax(-1) for h in heads])
    mean, std = model.predict(x)
    assert torch.allclose(mean, expected.mean(0), atol=1e-6)
    assert torch.allclose(std, expected.std(0, unbiased=False), atol=1e-6)
    seqs = ["ACGTACGTACGTACGTACGT"] * 2
    prob = registry.make_oracle("dna", "celltype_prob:HepG2", reward_model=path)(seqs)
    logodds = registry.make_oracle("dna", "celltype_logodds:HepG2", reward_model=path)(seqs)
    assert np.allclose(logodds, np.log(prob / (1 - prob)), atol=1e-4)
    with pytest.raises(UserError, match="unknown class 'liver'"):
        registry.make_oracle("dna", "celltype_prob:liver", reward_model=path)


def test_best_first_orders_high_to_low_with_nan_last():
    from rewarddiff.oracles.base import best_first

    assert best_first(np.array([0.5, np.nan, 2.0, 0.5, -1.0])).tolist() == [2, 0, 3, 4, 1]
