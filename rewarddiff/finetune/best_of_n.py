"""best_of_n: draw N designs from the pretrained model, keep the top k by the fine-tuning reward.
No training; the honest baseline every method must beat at the same number of oracle calls."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from rewarddiff.finetune.common import FinetuneTask, top_k


@dataclass
class BestOfNConfig:
    oracle_budget: int = 1024  # N: designs drawn and scored
    n_samples: int = 128  # k: designs kept


def best_of_n(task: FinetuneTask, cfg: BestOfNConfig) -> Tensor:
    """Returns the k selected designs (k, ...); logs the pool and the selection. The selection's
    distance from p_pre is logged as the analytic bound KL ≤ log(N/k) (the top k of N draws
    have density at most N/k times p_pre's)."""
    x, path_kl = task.generator.sample(cfg.oracle_budget, task.torch_generator, task.reference)
    rewards = task.reward(x)
    task.record(0, x, rewards, path_kl, stage="pool")
    kept, kept_rewards = top_k(x, rewards, cfg.n_samples)
    kl_bound = torch.tensor([math.log(cfg.oracle_budget / len(kept))])
    task.record(1, kept, kept_rewards, kl_bound, stage="selected")
    return kept
