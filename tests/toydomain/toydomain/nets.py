"""The toy domain's networks: an MLP ε-network with an optional zero-initialised condition
(``ctrl``: class labels, ``rcgdm``: a scalar value) and an MLP classifier / regressor."""

from __future__ import annotations

import itertools
import math
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path

import torch
from torch import Tensor, nn

from rewarddiff import UserError
from rewarddiff.conditioning import condition_embedding
from rewarddiff.oracles.learned import RewardEnsemble

DIM = 2  # designs are points in R^DIM


class _Config:
    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class DenoiserConfig(_Config):
    hidden: int = 64
    layers: int = 2
    num_labels: int = 0  # set by the core (condition_network)
    value_condition: bool = False


@dataclass
class ClassifierConfig(_Config):
    hidden: int = 32
    layers: int = 2
    num_outputs: int = 1  # set by the core: classes, or 1 for a regressor


def mlp(inputs: int, hidden: int, layers: int) -> nn.Sequential:
    """``layers`` × (Linear, SiLU): inputs → hidden."""
    sizes = [inputs] + [hidden] * layers
    return nn.Sequential(*[m for a, b in itertools.pairwise(sizes)
                           for m in (nn.Linear(a, b), nn.SiLU())])  # fmt: skip


class Denoiser(nn.Module):
    """``(x_t (B, dim), t (B,) in [0, 1], label) -> ε̂ (B, dim)``."""

    def __init__(self, cfg: DenoiserConfig):
        super().__init__()
        self.inp = nn.Linear(DIM + 2, cfg.hidden)
        self.body = nn.Sequential(nn.SiLU(), mlp(cfg.hidden, cfg.hidden, cfg.layers - 1),
                                  nn.Linear(cfg.hidden, DIM))  # fmt: skip
        self.condition = condition_embedding(cfg.hidden, cfg.num_labels, cfg.value_condition)

    def forward(self, x: Tensor, t: Tensor, label: Tensor | None = None) -> Tensor:
        h = self.inp(torch.cat([x, t[:, None], torch.cos(math.pi / 2 * t)[:, None]], -1))
        if self.condition is not None:
            h = h + self.condition(label, len(x), x.device)
        return self.body(h)


class Classifier(nn.Module):
    """Points (B, dim) → logits (B, C), or (B,) for one output; ``features`` (B, hidden)."""

    def __init__(self, cfg: ClassifierConfig):
        super().__init__()
        self.num_outputs = cfg.num_outputs
        self.body = mlp(DIM, cfg.hidden, cfg.layers)
        self.out = nn.Linear(cfg.hidden, cfg.num_outputs)

    def features(self, x: Tensor) -> Tensor:
        return self.body(x)

    def forward(self, x: Tensor) -> Tensor:
        out = self.out(self.features(x))
        return out[:, 0] if self.num_outputs == 1 else out


@lru_cache(maxsize=8)
def load_classifier(path: str) -> RewardEnsemble:
    """The component classifier ensemble saved by ``train_reward`` (``config["classes"]``)."""
    if not Path(path).exists():
        raise UserError(f"{path}: component classifier not found (run train_reward)")
    return RewardEnsemble.load(path, lambda c: Classifier(ClassifierConfig(**c["network"])))
