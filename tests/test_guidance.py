"""guidance: reward-gradient guidance at sampling time, no training."""

import math

import pytest
import torch
from toys import L, toy_task

from rewarddiff import UserError
from rewarddiff.finetune.guidance import GuidanceConfig, guidance


def zero_fraction(x):
    """Differentiable toy reward on relaxed one-hot (n, L, V): fraction of token 0."""
    return x[..., 0].mean(-1)


def test_guidance_with_a_linear_reward_hits_the_tilted_target():
    """Uniform p_pre and r = fraction of token 0: the tilted target p_pre·exp(γ r) has per-
    position P(0) = e^{γ/L} / (e^{γ/L} + 3), 0.5 for γ = L·ln 3. Guidance through x̂₀ is exact
    for a reward linear in the one-hot, so guiding every step must land there."""
    task = toy_task()
    task.reward.torch_fn = zero_fraction
    state = {k: v.clone() for k, v in task.generator.net.state_dict().items()}
    steps = task.generator.sampling_steps
    cfg = GuidanceConfig(n_samples=4096, scale=L * math.log(3.0), guided_steps=steps)
    x = guidance(task, cfg).designs
    assert (x == 0).float().mean().item() == pytest.approx(0.5, abs=0.03)
    assert task.reward.calls == 4096 * steps  # one differentiable call per design and step
    row = task.rows[0]
    assert row["guided_steps"] == steps and row["path_kl"] > 0.1
    for k, v in task.generator.net.state_dict().items():  # no training
        assert torch.equal(v, state[k])


def test_guidance_steps_follow_the_oracle_budget():
    task = toy_task()
    task.reward.torch_fn = zero_fraction
    guidance(task, GuidanceConfig(oracle_budget=256, n_samples=64, scale=2.0))
    assert task.rows[0]["guided_steps"] == 4 and task.reward.calls == 256


def test_guidance_needs_a_differentiable_reward():
    with pytest.raises(UserError, match="differentiable reward"):
        guidance(toy_task(), GuidanceConfig(n_samples=8))
