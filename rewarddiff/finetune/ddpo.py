"""ddpo: policy gradient over the denoising chain (DDPO, Black et al. 2023; DPOK, Fan et al. 2023).

Each round samples ``batch_size`` trajectories, scores the final designs (the oracle need not
be differentiable), standardises the returns into advantages and takes PPO steps on the
per-transition log-probabilities: maximise min(ρ·A, clip(ρ, 1 ± ε)·A) with
ρ = p_θ(x_s | x_t) / p_old(x_s | x_t). With ``kl_weight`` α > 0 the return is
R = r(x_0) − α·log(p_θ(τ) / p_pre(τ)) of the sampled trajectory τ (KL as a reward, as in
RLHF): its expectation is E[r] − α·KL(p_θ ‖ p_pre) over paths and the score-function gradient
of it is unbiased, so the fixed point is the tilted target p_pre·exp(r/α); standardising R
only rescales the step.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from rewarddiff import UserError
from rewarddiff.finetune.common import FinetuneTask, GradientStats
from rewarddiff.finetune.spec import MethodResult, MethodSpec


@dataclass
class DDPOConfig:
    """PPO on per-step log-probs of the denoising chain (any oracle; + kl_weight·KL)"""

    oracle_budget: int = 1024  # designs scored: rounds = budget // batch_size
    batch_size: int = 64  # trajectories per round
    ppo_epochs: int = 2  # passes over each round's transitions
    clip: float = 0.2  # ε of the clipped ratio
    kl_weight: float = 0.0  # α: KL to the pretrained model in the return (0 = DDPO, > 0 = DPOK)
    lr: float = 1e-4
    grad_clip: float = 1.0


def advantages(rewards: np.ndarray) -> Tensor:
    """Per-batch standardised rewards; failed designs (NaN) get advantage 0."""
    finite = np.isfinite(rewards)
    adv = np.zeros_like(rewards)
    if finite.sum() > 1:
        r = rewards[finite]
        adv[finite] = (r - r.mean()) / (r.std() + 1e-8)
    return torch.as_tensor(adv, dtype=torch.float32)


def ddpo(task: FinetuneTask, cfg: DDPOConfig) -> MethodResult:
    """Fine-tune ``task.generator`` in place."""
    gen, rng = task.generator, task.torch_generator
    if not hasattr(gen, "sample_trajectory"):
        raise UserError("ddpo needs a generator with per-step log-probabilities")
    opt = torch.optim.AdamW(gen.net.parameters(), lr=cfg.lr, weight_decay=0.0)
    done, _ = task.resume(cfg, opt)
    for round_ in range(done, max(1, cfg.oracle_budget // cfg.batch_size)):
        states, grid, x = gen.sample_trajectory(cfg.batch_size, rng)
        rewards = task.reward(x)
        steps = list(zip(states[:-1], states[1:], grid[:-1], grid[1:]))
        with torch.no_grad():  # the sampling policy: its log-probs and its path KL to p_pre
            old = [gen.step_log_prob(xt, xs, t, s) for xt, xs, t, s in steps]
            path_kl = sum(gen.step_kl(xt, t, s, task.reference) for xt, _, t, s in steps).cpu()
            returns = rewards
            if cfg.kl_weight > 0:  # R = r − α·log p_θ(τ)/p_pre(τ)
                log_ratio = sum(
                    o - task.reference.step_log_prob(xt, xs, t, s)
                    for o, (xt, xs, t, s) in zip(old, steps)
                )
                returns = rewards - cfg.kl_weight * log_ratio.cpu().double().numpy()
        adv = advantages(returns).to(gen.device)
        gen.net.train()
        clipped, losses, grads = [], [], GradientStats()
        for _ in range(cfg.ppo_epochs):
            for k in torch.randperm(len(steps), generator=rng).tolist():
                xt, xs, t, s = steps[k]
                ratio = (gen.step_log_prob(xt, xs, t, s) - old[k]).exp()
                # PPO: maximise min(ρA, clip(ρ)A)
                surrogate = torch.minimum(
                    ratio * adv, ratio.clamp(1 - cfg.clip, 1 + cfg.clip) * adv
                )
                loss = -surrogate.mean()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                grads.add(gen.net.parameters())
                torch.nn.utils.clip_grad_norm_(gen.net.parameters(), cfg.grad_clip)
                opt.step()
                clipped.append(((ratio - 1).abs() > cfg.clip).float().mean().item())
                losses.append(loss.item())
        task.record(
            round_,
            x,
            rewards,
            path_kl,
            loss=float(np.mean(losses)),
            clip_fraction=float(np.mean(clipped)),
            grad_rel_var=grads.relative_variance(),
        )
        task.checkpoint(round_ + 1, cfg, opt)
    task.record_final()
    return MethodResult()


SPEC = MethodSpec(id="ddpo", config=DDPOConfig, run=ddpo)
