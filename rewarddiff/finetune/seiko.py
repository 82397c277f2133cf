"""seiko: feedback-efficient online fine-tuning (Uehara et al., arXiv 2402.16359).

Rounds with a hard budget of true-oracle calls, batch sizes doubling per round. Each round
samples designs from the current model, queries the oracle, refits a reward model on every
design queried so far and fine-tunes toward the optimistic reward by back-propagation through
the last K sampling steps, with a KL penalty to the previous round's model:

    ucb        r̂(x) + min(cap, κ·sqrt(φ(x)ᵀ (Σ φφᵀ + λI)⁻¹ φ(x)))   (φ: penultimate features)
    bootstrap  max over heads fit on bootstrap resamples
    greedy     r̂(x) (no exploration bonus)
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from rewarddiff import UserError
from rewarddiff.finetune.common import FinetuneTask
from rewarddiff.finetune.spec import MethodResult, MethodSpec
from rewarddiff.oracles.learned import FitConfig, fit

BONUSES = ("ucb", "bootstrap", "greedy")


@dataclass
class SEIKOConfig:
    """online rounds: query the oracle, refit an optimistic reward model, KL-tuned ascent"""

    oracle_budget: int = 1024  # true-oracle calls over all rounds
    rounds: int = 4  # round r queries budget·2^r / (2^rounds − 1) designs
    bonus: str = "ucb"  # ucb | bootstrap | greedy
    kappa: float = 1.0  # UCB coefficient c
    bonus_cap: float = 10.0
    ridge: float = 1e-3  # λ
    heads: int = 4  # bootstrap heads
    reward_steps: int = 300  # reward-model fit per round
    reward_lr: float = 1e-3
    reward_batch: int = 64
    steps_per_round: int = 20  # fine-tuning steps per round
    batch_size: int = 32
    grad_steps: int = 10  # K
    kl_weight: float = 0.01  # α: KL to the previous round's model, in reward-std units
    lr: float = 1e-4
    gumbel_tau: float = 1.0
    grad_clip: float = 1.0
    reward_network: dict = dataclasses.field(default_factory=dict)  # domain regressor settings


def round_sizes(budget: int, rounds: int) -> list[int]:
    """Doubling batch sizes b, 2b, 4b, … summing exactly to ``budget``."""
    sizes = [budget * 2**r // (2**rounds - 1) for r in range(rounds)]
    sizes[-1] += budget - sum(sizes)
    return sizes


class OptimisticReward(nn.Module):
    """Standardised reward-model ensemble with an exploration bonus: designs → (B,)."""

    def __init__(self, heads: list[nn.Module], bonus: str, precision: Tensor | None, cfg):
        super().__init__()
        self.heads, self.bonus, self.cfg = nn.ModuleList(heads), bonus, cfg
        self.register_buffer("precision", precision)  # (Σ φφᵀ + λI)⁻¹, UCB only

    def forward(self, x: Tensor) -> Tensor:
        if self.bonus == "bootstrap":
            return torch.stack([h(x) for h in self.heads]).amax(0)
        (head,) = self.heads
        if self.bonus == "greedy":
            return head(x)
        phi = head.features(x)
        width = (phi @ self.precision * phi).sum(-1).clamp_min(0).sqrt()
        return head(x) + (self.cfg.kappa * width).clamp(max=self.cfg.bonus_cap)


def fit_optimistic_reward(
    task: FinetuneTask, x: Tensor, z: Tensor, cfg: SEIKOConfig, rng: torch.Generator
) -> OptimisticReward:
    """Fit the reward model(s) to standardised rewards ``z`` (n,) and wrap the bonus."""
    n_heads = cfg.heads if cfg.bonus == "bootstrap" else 1
    fit_cfg = FitConfig(cfg.reward_steps, cfg.reward_batch, cfg.reward_lr,
                        eval_every=cfg.reward_steps, task="regression")  # fmt: skip
    heads = []
    for _ in range(n_heads):
        rows = torch.arange(len(x))
        if cfg.bonus == "bootstrap":  # resample with replacement
            rows = torch.randint(len(x), (len(x),), generator=rng)
        net = task.reward_network()
        fit(net, x[rows], z[rows], x[rows], z[rows], fit_cfg, rng)
        heads.append(net.eval().requires_grad_(False))
    precision = None
    if cfg.bonus == "ucb":
        with torch.no_grad():
            phi = heads[0].features(x).double()
        cov = phi.T @ phi + cfg.ridge * torch.eye(phi.shape[1], dtype=torch.float64)
        precision = torch.linalg.inv(cov).float()
    return OptimisticReward(heads, cfg.bonus, precision, cfg)


def seiko(task: FinetuneTask, cfg: SEIKOConfig) -> MethodResult:
    """Fine-tune ``task.generator`` in place over ``cfg.rounds`` query rounds."""
    if cfg.bonus not in BONUSES:
        raise UserError(f"seiko: bonus must be one of {', '.join(BONUSES)}, not {cfg.bonus!r}")
    if task.reward_network is None or not hasattr(task.generator, "sample_differentiable"):
        raise UserError("seiko needs a reward network from the domain and a differentiable sampler")
    gen, rng = task.generator, task.torch_generator
    opt = torch.optim.AdamW(gen.net.parameters(), lr=cfg.lr, weight_decay=0.0)
    done, state = task.resume(cfg, opt, queried_x=[], queried_r=[])
    queried_x, queried_r = state["queried_x"], [r.numpy() for r in state["queried_r"]]
    for round_, size in enumerate(round_sizes(cfg.oracle_budget, cfg.rounds)):
        if round_ < done:
            continue
        x, path_kl = gen.sample(size, rng, task.reference)
        rewards = task.reward(x)  # the true oracle: the only budgeted calls
        queried_x.append(x)
        queried_r.append(rewards)
        all_x, all_r = torch.cat(queried_x), np.concatenate(queried_r)
        finite = np.isfinite(all_r)
        mean, std = all_r[finite].mean(), all_r[finite].std() + 1e-8
        z = torch.as_tensor((all_r[finite] - mean) / std, dtype=torch.float32)
        surrogate = fit_optimistic_reward(task, all_x[torch.as_tensor(finite)], z, cfg, rng)
        previous = gen.frozen_copy()  # KL anchor: this round's starting model
        losses = []
        for _ in range(cfg.steps_per_round):
            x_soft, kl = gen.sample_differentiable(
                cfg.batch_size, cfg.grad_steps, previous, cfg.gumbel_tau, rng
            )
            # maximise optimistic r̂(x) − α·KL(p_θ ‖ p_previous); r̂ in reward std units
            loss = (-surrogate.to(x_soft.device)(x_soft) + cfg.kl_weight * kl).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(gen.net.parameters(), cfg.grad_clip)
            opt.step()
            losses.append(loss.item())
        task.record(round_, x, rewards, path_kl, queried=len(all_r),
                    loss=float(np.mean(losses)))  # fmt: skip
        task.checkpoint(round_ + 1, cfg, opt, queried_x=queried_x,
                        queried_r=[torch.as_tensor(r) for r in queried_r])  # fmt: skip
    task.record_final()
    return MethodResult()


SPEC = MethodSpec(id="seiko", config=SEIKOConfig, run=seiko)
