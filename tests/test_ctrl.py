"""ctrl: a new label condition added to a pretrained toy masked-diffusion model."""

import itertools
import math

import numpy as np
import pytest
import torch
from torch import nn
from toys import ConditionalToyNet, L, V, toy_task

from rewarddiff import UserError
from rewarddiff.conditioning import LabelCondition
from rewarddiff.diffusion.masked import MaskedDiffusion
from rewarddiff.finetune.ctrl import CTRLConfig, ctrl, label_scores
from rewarddiff.generator import MaskedSequenceGenerator, load_unconditional_weights

BETA = 4.0  # classifier sharpness


def count_logits(x):
    """Classifier logits over labels {0, 1}: β·(fraction of token y); x one-hot (B, L, V)."""
    return BETA * x[..., :2].mean(1)


def toy_condition(num_conditions=1):
    """Label y_k ∈ {0, 1} means "more of token y_k"; with two conditions the second reads the
    second half of the sequence."""

    def parts(x):
        return [x] if num_conditions == 1 else [x[:, : L // 2], x[:, L // 2 :]]

    def log_prob(x, y):
        return sum(count_logits(p).log_softmax(-1).gather(1, y[:, k : k + 1])[:, 0]
                   for k, p in enumerate(parts(x)))  # fmt: skip

    def predict(tokens):
        onehot = nn.functional.one_hot(tokens, V).float()
        return torch.stack([count_logits(p).argmax(-1) for p in parts(onehot)], 1)

    names = ["first", "second"][:num_conditions]
    return LabelCondition(names, [["a", "b"]] * num_conditions, log_prob, predict,
                          target=["b"] * num_conditions)  # fmt: skip


def conditional(task, num_labels):
    net = ConditionalToyNet(num_labels)
    load_unconditional_weights(net, task.generator.net.state_dict())
    task.generator = MaskedSequenceGenerator(MaskedDiffusion(V, num_labels=num_labels), net, L,
                                             sampling_steps=8)  # fmt: skip
    return task


def test_zero_initialised_condition_starts_at_the_pretrained_model():
    task = conditional(toy_task(), 2)
    x = torch.randint(V + 1, (16, L))
    t = torch.rand(16)
    for label in (None, torch.zeros(16, dtype=torch.long), torch.ones(16, dtype=torch.long)):
        assert torch.equal(task.generator.net(x, t, label), task.reference.net(x, t))
    with pytest.raises(ValueError, match="do not fit"):
        load_unconditional_weights(ConditionalToyNet(2), {"bogus": torch.zeros(1)})


def tilted_token_fraction(alpha):
    """Exact E[fraction of token 1 | y = 1] under p*(x|y) ∝ p_pre(x)·p̂(y|x)^{1/α}, p_pre uniform
    over V^L (enumerated by token counts)."""
    total = mass = 0.0
    for n0, n1 in itertools.product(range(L + 1), repeat=2):
        if n0 + n1 > L:
            continue
        ways = math.comb(L, n0) * math.comb(L - n0, n1) * (V - 2) ** (L - n0 - n1)
        logits = BETA * np.array([n0, n1]) / L
        weight = ways * np.exp((logits[1] - np.logaddexp(*logits)) / alpha)
        total += weight
        mass += weight * n1 / L
    return mass / total


def test_ctrl_adds_a_label_condition_toward_the_tilted_target():
    """Uniform p_pre, p̂(y|x) = softmax(β·token fractions): the KL-regularised optimum puts
    E[fraction of token 1 | y = 1] at tilted_token_fraction(α) = 0.399 for α = 0.25 (p_pre:
    0.25). The Gumbel straight-through gradient is biased low (as for draft), so ctrl stops
    short (measured 0.35 here); label accuracy by the classifier rises for both labels."""
    task = conditional(toy_task(), 2)
    alpha = 0.25
    cfg = CTRLConfig(oracle_budget=128 * 80, batch_size=128, grad_steps=8, kl_weight=alpha,
                     lr=1e-2, gumbel_tau=0.5, eval_per_label=1024, log_every=20)  # fmt: skip
    task.condition = toy_condition()
    evaluation = ctrl(task, cfg).extra["label_eval_ft"]
    assert task.reward.calls == 128 * 80
    x, _ = task.generator.sample(2048, torch.Generator().manual_seed(3))  # default: label "b"
    target = tilted_token_fraction(alpha)
    assert 0.32 < (x == 1).float().mean().item() < target + 0.03, target
    assert task.generator.condition.target == 1
    # requested vs predicted label: chance is 0.5
    assert evaluation["first"]["accuracy"] > 0.7
    assert evaluation["first"]["macro_f1"] > 0.7
    assert task.rows[-1]["label_accuracy"] > task.rows[0]["label_accuracy"]


def test_ctrl_two_conditions_as_one_joint_label():
    condition = toy_condition(num_conditions=2)
    assert condition.num_joint == 4 and condition.target_index() == 3
    y = torch.tensor([[0, 0], [0, 1], [1, 0], [1, 1]])
    assert condition.joint(y).tolist() == [0, 1, 2, 3]
    assert torch.equal(condition.split(condition.joint(y)), y)
    task = conditional(toy_task(), 4)
    cfg = CTRLConfig(oracle_budget=128 * 60, batch_size=128, grad_steps=8, kl_weight=0.1,
                     lr=1e-2, gumbel_tau=0.5, eval_per_label=256)  # fmt: skip
    task.condition = condition
    evaluation = ctrl(task, cfg).extra["label_eval_ft"]
    assert evaluation["first"]["accuracy"] > 0.65 and evaluation["second"]["accuracy"] > 0.65


def test_label_scores_known_values():
    scores = label_scores(np.array([0, 0, 1, 1]), np.array([0, 1, 1, 1]), 2)
    assert scores["accuracy"] == 0.75
    assert scores["f1"] == pytest.approx([2 / 3, 0.8])  # class 0: P 1, R 0.5; class 1: P 2/3, R 1
    assert scores["macro_f1"] == pytest.approx((2 / 3 + 0.8) / 2)


def test_unknown_label_prior_is_a_clear_error():
    with pytest.raises(UserError, match="label_prior must be uniform or data"):
        LabelCondition(["c"], [["a", "b"]], None, None, frequencies=[[1.0, 1.0]]).prior("bogus")


def test_molecule_ctrl_target_must_be_a_regressor_property(tmp_path):
    from molgen.domain import MoleculeDomain
    from molgen.regressor import PropertyRegressor, RegressorConfig
    from rewarddiff.oracles.learned import RewardEnsemble

    network = {"mul": 4, "lmax": 1, "layers": 1}
    ensemble = RewardEnsemble([PropertyRegressor(RegressorConfig(**network))], "regression")
    path = tmp_path / "regressor.safetensors"
    ensemble.save(path, {"network": network, "targets": ["alpha"], "mean": [0.0], "std": [1.0]})
    with pytest.raises(UserError, match=r"objective target 'gap' is not a property .*alpha"):
        MoleculeDomain().label_condition({"target": "gap"}, path)


def test_label_metrics_refuses_a_classifier_with_other_classes(tmp_path):
    """Scoring a ctrl model with an eval classifier whose classes differ is a clear error."""
    from types import SimpleNamespace

    from rewarddiff.campaign import label_metrics
    from rewarddiff.conditioning import ClassCondition

    gen = SimpleNamespace(condition=ClassCondition(target=0, names=["n"], classes=[["a", "b"]]))
    other = toy_condition()
    other.classes = [["a", "c"]]
    dom = SimpleNamespace(load_generator=lambda *_: gen, for_generator=lambda _: dom,
                          label_condition=lambda *_, **__: other)  # fmt: skip
    with pytest.raises(UserError, match=r"classes \[\['a', 'c'\]\] differ from the model's"):
        label_metrics(dom, tmp_path / "model", tmp_path / "eval.safetensors", {})
    gen.condition = None  # an unconditional model has no label metrics
    assert label_metrics(dom, tmp_path / "model", tmp_path / "eval.safetensors", {}) == {}


def test_data_label_prior_random_cut_and_guided_sampling():
    """label_prior='data' samples training labels by the offline pairs' frequencies; a random
    cut (CTRL) and classifier-free guidance at sampling still learn the condition."""
    condition = toy_condition()
    condition.frequencies = [[3.0, 1.0]]
    assert condition.prior("data")[0].tolist() == [0.75, 0.25]
    assert condition.prior("uniform")[0].tolist() == [0.5, 0.5]
    task = conditional(toy_task(), 2)
    cfg = CTRLConfig(oracle_budget=128 * 40, batch_size=128, grad_steps=8, random_cut=True,
                     kl_weight=0.25, lr=1e-2, gumbel_tau=0.5, guidance=2.0, label_prior="data",
                     eval_per_label=256)  # fmt: skip
    task.condition = condition
    evaluation = ctrl(task, cfg).extra["label_eval_ft"]
    assert task.generator.condition.guidance == 2.0
    assert evaluation["first"]["accuracy"] > 0.65


def test_molecule_ctrl_two_property_conditions(tmp_path):
    """Two conditions from one regressor (gap and alpha tertile bins, a 3 × 3 joint label):
    the joint log p̂ is the sum of the single-property ones, predictions have one column per
    property, the target is the top bin of both, and a saved spec rebuilds the condition."""
    from molgen.domain import MoleculeDomain

    dom = MoleculeDomain()
    dom.prepare({"source": "qm9", "max_per_split": 120, "max_atoms": 12}, tmp_path / "data")
    dom.train_reward({"targets": ["alpha", "gap"], "network": {"mul": 4, "lmax": 1, "layers": 1},
                      "fit": {"steps": 10, "batch_size": 16, "eval_every": 5}},
                     tmp_path / "data", tmp_path / "rewards", ("ft",))  # fmt: skip
    model = tmp_path / "rewards/ft/model.safetensors"
    both = dom.label_condition({"target": ["gap", "alpha"]}, model, tmp_path / "data")
    gap = dom.label_condition({"target": "gap"}, model, tmp_path / "data")
    alpha = dom.label_condition({"target": "alpha"}, model, tmp_path / "data")
    assert [c.names for c in (both, gap, alpha)] == [["gap_bin", "alpha_bin"], ["gap_bin"],
                                                     ["alpha_bin"]]  # fmt: skip
    assert both.num_joint == 9 and both.target_index() == 8
    x, _ = dom.load_split(tmp_path / "data", "test")
    x = x[:6]
    y = torch.tensor([[0, 2], [1, 1], [2, 0], [2, 2], [0, 0], [1, 2]])
    joint = both.log_prob(x, y)
    assert torch.allclose(joint, gap.log_prob(x, y[:, :1]) + alpha.log_prob(x, y[:, 1:]))
    predicted = both.predict(x)
    assert predicted.shape == (6, 2)
    assert torch.equal(predicted[:, :1], gap.predict(x))
    rebuilt = dom.label_condition({}, model, spec=both.spec)
    assert rebuilt.classes == both.classes and torch.equal(rebuilt.predict(x), predicted)
