"""Oracle protocol, registry (incl. entry points), transforms and DNA oracles."""

from importlib.metadata import EntryPoint

import numpy as np
import pytest
import torch
from badinput import assert_clean_error

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


def test_info_for_argument_derives_from_the_registered_info():
    info = OracleInfo("xtb:gap|dipole[@timeout_s]", "molecule", "maximize", "eV", "moderate",
                      description="registered")  # fmt: skip
    assert info.kind == "xtb"
    assert info.for_argument("gap", units="Hartree") == OracleInfo(
        "xtb:gap", "molecule", "maximize", "Hartree", "moderate", description="registered"
    )
    assert OracleInfo("mmff_strain[:hrelax]", "molecule").for_argument(None).name == "mmff_strain"


def test_function_oracle_registration_takes_no_argument(monkeypatch):
    monkeypatch.setattr(registry, "_FACTORIES", dict(registry._FACTORIES))
    monkeypatch.setattr(registry, "_CHECKS", dict(registry._CHECKS))
    info = OracleInfo("length_for_test", "dna")
    registry.register_function_oracle(info, lambda s: [len(x) for x in s])
    oracle = registry.make_oracle("dna", "length_for_test")
    assert oracle.info == info and oracle(["ACG", "A"]).tolist() == [3.0, 1.0]
    for build in (registry.make_oracle, registry.check_oracle):
        with pytest.raises(UserError, match="oracle length_for_test takes no argument"):
            build("dna", "length_for_test:3")


WINDOW_SYNTAX = ("expected NAME=LOW..HIGH with NAME one of length, charge, gravy, instability, "
                 "pi, aromaticity, helix_fraction, hydrophobic_moment")  # fmt: skip


@pytest.mark.parametrize(
    "domain, spec, message",
    [
        ("dna", "gc_content:7", "oracle gc_content takes no argument (got gc_content:7)"),
        ("dna", "jaspar_motif", "oracle jaspar_motif needs a matrix id, e.g. jaspar_motif:MA0114"),
        (
            "dna",
            "jaspar_motif:NOPE",
            "oracle jaspar_motif: unknown JASPAR matrix id 'NOPE' in JASPAR2024",
        ),
        ("protein", "charge:7", "oracle charge takes no argument (got charge:7)"),
        (
            "protein",
            "hydrophobic_moment:-3",
            "oracle hydrophobic_moment: window '-3' is not a positive integer",
        ),
        (
            "protein",
            "amp_windows:charge=9..2",
            "oracle amp_windows: property window 'charge=9..2': need LOW <= HIGH, got 9..2",
        ),
        (
            "protein",
            "amp_windows:charge=nan..2",
            "oracle amp_windows: property window 'charge=nan..2': need LOW <= HIGH, got nan..2",
        ),
        (
            "protein",
            "amp_windows:charge",
            f"oracle amp_windows: property window 'charge': {WINDOW_SYNTAX}",
        ),
        (
            "protein",
            "amp_windows:charge=2..9;length=10..40",
            "oracle amp_windows: property window 'charge=2..9;length=10..40': bounds must be "
            "numbers",
        ),
        ("molecule", "qed:1", "oracle qed takes no argument (got qed:1)"),
        (
            "molecule",
            "stability:mol",
            "oracle stability needs molecule or atom (stability:molecule), not 'mol'",
        ),
        (
            "molecule",
            "mmff_strain:full",
            "oracle mmff_strain takes no argument or hrelax, not 'full'",
        ),
        ("molecule", "xtb:gap@0", "oracle xtb: timeout must be positive, not 0.0"),
        ("shape", "height:2", "oracle height takes no argument (got height:2)"),
        ("shape", "aspect:hd", "oracle aspect needs hw or dw, e.g. aspect:hw (got 'hd')"),
    ],
)
def test_checks_and_factories_reject_bad_arguments_alike(domain, spec, message):
    for build in (registry.check_oracle, registry.make_oracle):  # the check imports the domain
        with pytest.raises(UserError) as err:
            build(domain, spec)
        assert str(err.value) == message, build


def test_score_rejects_a_bad_oracle_argument_in_one_line(tmp_path, capsys):
    fasta, out = tmp_path / "designs.fasta", tmp_path / "scores.csv"
    fasta.write_text(">a\nGGGGCCCC\n")
    argv = ["score", "--domain", "dna", "--input", fasta, "--oracles", "gc_content:7", "--out", out]
    assert_clean_error(capsys, argv, "rewarddiff score: error: oracle gc_content takes no argument "
                       "(got gc_content:7)", outputs=[out], keep=[fasta])  # fmt: skip


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
