"""guidance: steer sampling with the gradient of a differentiable reward; no training
(classifier guidance, Dhariwal & Nichol 2021; reconstruction guidance through x̂₀, DPS,
Chung et al. 2023).

Discrete (masked) chains: with x̂₀ = E_θ[one-hot x_0 | x_t], the first-order expansion
r(x_0) ≈ r(x̂₀) + ∇r(x̂₀)·(x_0 − x̂₀) tilts each position's p_θ(x_0 | x_t) by exp(γ·∇r(x̂₀)),
which is exact for rewards linear in the one-hot. Gaussian chains: ε̂ ← ε̂ − γ·σ_t·∇_{x_t} r(x̂₀(x_t)).
Every guided step scores the batch once, so at an oracle budget B and n designs only the last
B // n steps are guided (``guided_steps`` overrides; the log counts every call).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from rewarddiff import UserError
from rewarddiff.finetune.common import FinetuneTask
from rewarddiff.finetune.spec import MethodResult, MethodSpec


@dataclass
class GuidanceConfig:
    """no training: reward-gradient guidance through x0-hat at sampling (DPS-style)"""

    oracle_budget: int = 1024  # differentiable reward evaluations
    n_samples: int = 128  # designs drawn with guidance
    scale: float = 1.0  # γ
    guided_steps: int = 0  # last steps guided; 0 = oracle_budget // n_samples


def guidance(task: FinetuneTask, cfg: GuidanceConfig) -> MethodResult:
    """Selects ``cfg.n_samples`` guided designs; the generator is unchanged."""
    gen, rng = task.generator, task.torch_generator
    if task.reward.torch_fn is None:
        raise UserError("guidance needs a differentiable reward (oracles with torch_score)")
    steps = cfg.guided_steps or max(1, cfg.oracle_budget // cfg.n_samples)
    guide = gen.guide(task.reward.differentiable, cfg.scale)
    x, path_kl = gen.sample(cfg.n_samples, rng, task.reference, guide=guide, guided_steps=steps)
    with torch.no_grad():  # the reward of the final designs, for the log (not budget calls)
        rewards = task.reward.sign * task.reward.fn(x)
    task.record(0, x, rewards, path_kl, guided_steps=steps, scale=cfg.scale)
    return MethodResult(designs=x)


SPEC = MethodSpec(
    id="guidance",
    config=GuidanceConfig,
    run=guidance,
    produces="selection",
    differentiable_reward=True,
    training_curve=False,
)
