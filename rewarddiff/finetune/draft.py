"""draft: direct back-propagation of a differentiable reward through the last K sampling steps
(DRaFT, Clark et al. 2023; Gumbel-softmax straight-through for discrete chains as in DRAKES).

Each step samples a batch whose last ``grad_steps`` transitions are differentiable and ascends
E[r(x)] − α·KL(p_θ ‖ p_pre) over the sampling path. α = ``kl_weight`` = 0 is DRaFT (no
regularisation, prone to reward hacking); α > 0 is the KL-regularised variant (DRAKES, ELEGANT,
the CTRL/SEIKO inner loop) whose optimum is p*(x) ∝ p_pre(x)·exp(r(x)/α).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from rewarddiff.finetune.common import FinetuneTask
from rewarddiff.finetune.spec import MethodResult, MethodSpec


@dataclass
class DraftConfig:
    """back-propagate a differentiable reward through the last K steps (+ kl_weight·KL)"""

    oracle_budget: int = 1024  # differentiable reward evaluations: steps = budget // batch_size
    batch_size: int = 32
    grad_steps: int = 10  # K: sampling steps back-propagated through
    kl_weight: float = 0.0  # α
    lr: float = 1e-4
    gumbel_tau: float = 1.0  # Gumbel-softmax temperature of the relaxed transitions
    grad_clip: float = 1.0
    log_every: int = 10  # optimisation steps between log rows


def draft(task: FinetuneTask, cfg: DraftConfig) -> MethodResult:
    """Fine-tune ``task.generator`` in place."""
    gen, rng = task.generator, task.torch_generator
    opt = torch.optim.AdamW(gen.net.parameters(), lr=cfg.lr, weight_decay=0.0)
    steps = max(1, cfg.oracle_budget // cfg.batch_size)
    done, _ = task.resume(cfg, opt)
    for step in range(done, steps):
        x, path_kl = gen.sample_differentiable(
            cfg.batch_size, cfg.grad_steps, task.reference, cfg.gumbel_tau, rng
        )
        reward = task.reward.differentiable(x)
        # maximise r − α·KL: the KL's gradient comes from the last K transitions
        loss = (-reward + cfg.kl_weight * path_kl).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(gen.net.parameters(), cfg.grad_clip)
        opt.step()
        if (step + 1) % cfg.log_every == 0 or step == steps - 1:
            task.record(
                step,
                gen.discrete(x),
                reward.detach().cpu().numpy(),
                path_kl.detach().cpu(),
                loss=loss.item(),
                grad_norm=float(grad_norm),
            )
            task.checkpoint(step + 1, cfg, opt)
    return MethodResult()


SPEC = MethodSpec(id="draft", config=DraftConfig, run=draft, differentiable_reward=True)
