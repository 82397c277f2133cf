"""best_of_n: draw N designs from the pretrained model, keep the top k by the fine-tuning reward.
No training; the honest baseline every method must beat at the same number of oracle calls."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from rewarddiff.finetune.common import FinetuneTask, top_k
from rewarddiff.finetune.spec import MethodResult, MethodSpec


@dataclass
class BestOfNConfig:
    """sample N from p_pre, keep the top k by reward (no training)"""

    oracle_budget: int = 1024  # N: designs drawn and scored
    n_samples: int = 128  # k: designs kept


def best_of_n(task: FinetuneTask, cfg: BestOfNConfig) -> MethodResult:
    """Selects k designs (k, ...); logs the pool and the selection. The selection's
    distance from p_pre is logged as the analytic bound KL ≤ log(N/k) (the top k of N draws
    have density at most N/k times p_pre's)."""
    x, path_kl = task.generator.sample(cfg.oracle_budget, task.torch_generator, task.reference)
    rewards = task.reward(x)
    task.record(0, x, rewards, path_kl, stage="pool")
    kept, kept_rewards = top_k(x, rewards, cfg.n_samples)
    kl_bound = torch.tensor([math.log(cfg.oracle_budget / len(kept))])
    task.record(1, kept, kept_rewards, kl_bound, stage="selected")
    return MethodResult(designs=kept)


def check(cfg: BestOfNConfig) -> tuple[str, str] | None:
    """The k kept cannot exceed the N drawn."""
    if cfg.n_samples > cfg.oracle_budget:
        return "n_samples", (f"best_of_n keeps n_samples of oracle_budget designs; "
                             f"{cfg.n_samples} > {cfg.oracle_budget}")  # fmt: skip
    return None


SPEC = MethodSpec(
    id="best_of_n", config=BestOfNConfig, run=best_of_n, produces="selection", check=check
)
