"""KL-regularised methods against the analytic tilted target on a Gaussian toy.

p_pre: a small MLP fitted to N(0, 1), sampled with a 10-step DDPM chain whose designs are
N(m, v) (m ≈ 0, v ≈ 0.75: few steps shrink the variance). For a reward linear in the design,
r(x) = β·x, tilting the chain's path measure by exp(r(x_0)/α) shifts every Gaussian transition's
mean and keeps its variance, so the optimum of E[r] − α·KL(path ‖ p_pre path) is reachable by
the fine-tuned network and its designs are exactly N(m + β·v/α, v), with KL β²v/(2α²) nats.
Reparameterised gradients are unbiased, so these methods must land there.
"""

import copy
import dataclasses

import numpy as np
import pytest
import torch
from toys import conditional_mlp, fit_normal_1d, seeded

from rewarddiff.conditioning import LabelCondition
from rewarddiff.finetune import CountingReward, FinetuneTask
from rewarddiff.finetune.ctrl import CTRLConfig, ctrl
from rewarddiff.finetune.ddpo import DDPOConfig, ddpo
from rewarddiff.finetune.draft import DraftConfig, draft
from rewarddiff.finetune.guidance import GuidanceConfig, guidance
from rewarddiff.finetune.seiko import SEIKOConfig, seiko

STEPS = 10


@pytest.fixture(scope="module")
def pretrained():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny ops: threads only contend
    gen = dataclasses.replace(fit_normal_1d(), sampling_steps=STEPS)
    x, _ = gen.sample(8000, seeded(1))
    yield gen, x.mean().item(), x.var().item()
    torch.set_num_threads(threads)


def linear_task(gen, beta=1.0):
    gen = dataclasses.replace(gen, net=copy.deepcopy(gen.net))
    reward = CountingReward(lambda x: beta * x[:, 0].numpy(), torch_fn=lambda x: beta * x[:, 0])
    return FinetuneTask(gen, gen.frozen_copy(), reward, lambda x: float(x.std()), seed=0)


def test_draft_with_kl_reaches_the_tilted_gaussian(pretrained):
    gen, m, v = pretrained
    alpha = 1.0
    task = linear_task(gen)
    draft(task, DraftConfig(oracle_budget=256 * 300, batch_size=256, grad_steps=STEPS,
                            kl_weight=alpha, lr=3e-3, log_every=100))  # fmt: skip
    x, kl = task.generator.sample(8000, seeded(2), task.reference)
    assert x.mean().item() == pytest.approx(m + v / alpha, abs=0.06)
    assert x.var().item() == pytest.approx(v, rel=0.12)
    assert kl.mean().item() == pytest.approx(v / (2 * alpha**2), abs=0.06)


def test_guidance_tilts_the_gaussian_without_training(pretrained):
    """Reconstruction guidance with γ = 1 targets the tilted data distribution N(β, 1) (for the
    chain: mean between m + β·v and β); no weights change."""
    gen, m, v = pretrained
    task = linear_task(gen)
    x = guidance(task, GuidanceConfig(n_samples=8000, scale=1.0, guided_steps=STEPS)).designs
    assert m + v - 0.08 < x.mean().item() < 1.05


def tilted_mean(m, v, log_weight):
    """E[x] under N(m, v)·exp(log_weight(x)), by quadrature."""
    x = np.linspace(m - 10 * v**0.5, m + 10 * v**0.5, 20001)
    log_p = -((x - m) ** 2) / (2 * v) + log_weight(x)
    w = np.exp(log_p - log_p.max())
    return float((w * x).sum() / w.sum())


def test_ctrl_conditional_designs_match_the_tilted_targets(pretrained):
    """Labels y ∈ {0, 1} with p̂(y = 1 | x) = sigmoid(2x); γ = α = 1: designs at label y must
    follow N(m, v)·p̂(y | x), whose means are computed by quadrature."""
    gen, m, v = pretrained
    task = linear_task(gen)
    task.generator = dataclasses.replace(
        task.generator, net=conditional_mlp(task.generator.net, 2), num_labels=2
    )

    def log_prob(x, y):
        logit = 2 * x[:, 0]
        # log σ(l) = l − softplus(l), log(1 − σ(l)) = −softplus(l)
        return torch.where(y[:, 0] == 1, logit, 0.0) - torch.nn.functional.softplus(logit)

    condition = LabelCondition(["side"], [["left", "right"]], log_prob,
                               lambda x: (x[:, :1] > 0).long(), target=["right"])  # fmt: skip
    cfg = CTRLConfig(oracle_budget=256 * 300, batch_size=256, grad_steps=STEPS, kl_weight=1.0,
                     lr=3e-3, eval_per_label=2000, log_every=100)  # fmt: skip
    task.condition = condition
    evaluation = ctrl(task, cfg).extra["label_eval_ft"]
    for label, sign in ((0, -1.0), (1, 1.0)):
        target = tilted_mean(m, v, lambda x, s=sign: -np.logaddexp(0.0, -2 * s * x))
        x, _ = task.generator.sample(8000, seeded(3), label=torch.full((8000,), label))
        assert x.mean().item() == pytest.approx(target, abs=0.07), (label, target)
    assert evaluation["side"]["accuracy"] > 0.7


def test_ddpo_with_kl_hovers_around_the_tilted_gaussian(pretrained):
    """PPO with the KL in the return (R = r − α·log p_θ/p_pre of the path) is an unbiased
    policy gradient of E[r] − α·KL, so its iterates fluctuate (constant learning rate) around
    the tilted optimum: averaged over the later rounds, the designs' mean is m + v/α and the
    path KL v/(2α²)."""
    gen, m, v = pretrained
    alpha = 1.0
    task = linear_task(gen)
    ddpo(task, DDPOConfig(oracle_budget=256 * 400, batch_size=256, ppo_epochs=1,
                          kl_weight=alpha, lr=3e-3))  # fmt: skip
    late = [r for r in task.rows[150:] if r.get("stage") != "final"]
    assert np.mean([r["reward_mean"] for r in late]) == pytest.approx(m + v / alpha, abs=0.1)
    assert np.mean([r["path_kl"] for r in late]) == pytest.approx(v / (2 * alpha**2), abs=0.1)
    # without the KL the same steps run far past the optimum
    free = linear_task(gen)
    ddpo(free, DDPOConfig(oracle_budget=256 * 150, batch_size=256, ppo_epochs=1, lr=3e-3))
    assert free.rows[-2]["reward_mean"] > m + 2 * v / alpha


class LinearFeatures(torch.nn.Module):
    """A regressor on designs (B, 1) → (B,) with penultimate ``features`` (for SEIKO)."""

    def __init__(self):
        super().__init__()
        self.body = torch.nn.Sequential(torch.nn.Linear(1, 16), torch.nn.Tanh())
        self.out = torch.nn.Linear(16, 1)

    def features(self, x):
        return self.body(x.flatten(1))

    def forward(self, x):
        return self.out(self.features(x))[:, 0]


def test_seiko_round_reaches_the_tilted_gaussian_of_its_surrogate(pretrained):
    """One greedy SEIKO round = KL-regularised ascent of the fitted reward in standardised
    units, z = (r − mean)/std: its optimum tilts p_pre by exp(z/α), i.e. shifts the mean by
    v/(α·std(r)) with std(r) = √v for r = x under p_pre."""
    gen, m, v = pretrained
    alpha = 1.0
    task = linear_task(gen)
    task.reward_network = LinearFeatures
    seiko(task, SEIKOConfig(oracle_budget=4096, rounds=1, bonus="greedy", reward_steps=400,
                            reward_lr=1e-2, steps_per_round=300, batch_size=256,
                            grad_steps=STEPS, kl_weight=alpha, lr=3e-3))  # fmt: skip
    assert task.reward.calls == 4096
    x, _ = task.generator.sample(8000, seeded(2), task.reference)
    assert x.mean().item() == pytest.approx(m + v / (alpha * v**0.5), abs=0.08)
    assert x.var().item() == pytest.approx(v, rel=0.15)
