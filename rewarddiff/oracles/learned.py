"""Learned reward models: train, calibrate, save, load, predict; ensembles with mean and std.

The network is supplied by the domain (any ``nn.Module`` mapping a batch to ``(B, C)`` logits or
``(B,)`` regression outputs); this module only knows how to fit and combine such networks, and
what they predict (:class:`Classes` of a label column or standardised :class:`Regression`
columns) with its held-out figures.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from scipy.stats import mannwhitneyu
from torch import Tensor, nn

from rewarddiff.io import load_tensors, save_tensors


@dataclass
class FitConfig:
    steps: int = 2000
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 1e-2
    eval_every: int = 200
    task: str = "classification"  # or "regression"


def fit(
    net: nn.Module,
    x: Tensor,
    y: Tensor,
    x_val: Tensor,
    y_val: Tensor,
    cfg: FitConfig,
    generator: torch.Generator,
    log: Callable[[dict], None] | None = None,
) -> dict:
    """Fit ``net`` by cross-entropy (classes) or MSE; keep the weights with the best validation
    loss. Returns the best validation metrics."""
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    best, best_state = None, None
    for step in range(1, cfg.steps + 1):
        net.train()
        idx = torch.randint(len(x), (cfg.batch_size,), generator=generator)
        loss = _loss(net(x[idx]), y[idx], cfg.task)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % cfg.eval_every == 0 or step == cfg.steps:
            metrics = evaluate(net, x_val, y_val, cfg.task) | {
                "step": step,
                "train_loss": loss.item(),
            }
            if log:
                log(metrics)
            if best is None or metrics["loss"] < best["loss"]:
                best = metrics
                best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
    net.load_state_dict(best_state)
    return best


def _loss(out: Tensor, y: Tensor, task: str) -> Tensor:
    return F.cross_entropy(out, y) if task == "classification" else F.mse_loss(out, y)


@torch.no_grad()
def predict_batched(net: nn.Module, x: Tensor, batch_size: int = 512) -> Tensor:
    net.eval()
    return torch.cat([net(x[i : i + batch_size]) for i in range(0, len(x), batch_size)])


def evaluate(net: nn.Module, x: Tensor, y: Tensor, task: str) -> dict:
    out = predict_batched(net, x)
    metrics = {"loss": _loss(out, y, task).item()}
    if task == "classification":
        metrics["accuracy"] = (out.argmax(-1) == y).float().mean().item()
    else:
        metrics["mae"] = (out - y).abs().mean().item()
    return metrics


def fit_temperature(logits: Tensor, y: Tensor) -> float:
    """Temperature scaling (Guo et al. 2017): T minimising held-out NLL of softmax(logits / T),
    kept within [e⁻³, e³] (a degenerate validation set must not give T → 0 or ∞)."""
    log_t = torch.zeros((), requires_grad=True)
    opt = torch.optim.LBFGS([log_t], lr=0.1, max_iter=100)

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(logits / log_t.clamp(-3, 3).exp(), y)
        loss.backward()
        return loss

    opt.step(closure)
    return float(log_t.detach().clamp(-3, 3).exp())


class RewardEnsemble(nn.Module):
    """Heads trained independently (bootstrap or seeds); outputs averaged.

    For classifiers the heads' temperature-scaled probabilities are averaged; ``predict`` returns
    mean and std over heads: (B, C) each (or (B,) for regression).
    """

    def __init__(self, heads: list[nn.Module], task: str, temperature: float = 1.0):
        super().__init__()
        self.heads = nn.ModuleList(heads)
        self.task = task
        self.temperature = temperature

    def head_outputs(self, x: Tensor) -> Tensor:
        out = torch.stack([h(x) for h in self.heads])
        return (out / self.temperature).softmax(-1) if self.task == "classification" else out

    def forward(self, x: Tensor) -> Tensor:
        return self.head_outputs(x).mean(0)

    @torch.no_grad()
    def predict(self, x: Tensor, batch_size: int = 512) -> tuple[Tensor, Tensor]:
        self.eval()
        outs = torch.cat(
            [self.head_outputs(x[i : i + batch_size]) for i in range(0, len(x), batch_size)], dim=1
        )
        return outs.mean(0), outs.std(0, unbiased=False)

    def save(self, path: str | Path, config: dict) -> None:
        save_tensors(
            path,
            self.state_dict(),
            config
            | {"task": self.task, "temperature": self.temperature, "num_heads": len(self.heads)},
        )

    @classmethod
    def load(cls, path: str | Path, build_head: Callable[[dict], nn.Module]) -> RewardEnsemble:
        """Rebuild from ``path``; ``build_head(config)`` makes one untrained head network."""
        tensors, config = load_tensors(path)
        heads = [build_head(config) for _ in range(config["num_heads"])]
        model = cls(heads, config["task"], config["temperature"])
        model.load_state_dict(tensors)
        model.config = config
        return model.eval()


def auroc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve of ``scores`` (n,) for binary ``labels`` (n,) in {0, 1}:
    the Mann–Whitney U of the positives over n₊·n₋ (ties count one half)."""
    positive, negative = scores[labels == 1], scores[labels == 0]
    u = mannwhitneyu(positive, negative, alternative="two-sided").statistic
    return float(u / (len(positive) * len(negative)))


# ----- what a reward model is trained to predict -------------------------------------------------
@dataclass
class Classes:
    """Classifier targets: the labels' ``column`` as an index into ``classes`` (the outputs,
    in order). Ensembles are temperature-scaled on validation; the held-out figures are
    accuracy (overall, per class) and, for two classes, the AUROC of P(class 1)."""

    classes: list[str]
    column: str
    task: ClassVar[str] = "classification"

    @property
    def num_outputs(self) -> int:
        return len(self.classes)

    def of_half(self, labels: Any, rows: Tensor) -> Classes:
        """The targets of one copy, trained on ``rows`` (bool (n,)) of ``labels``."""
        return self

    def y(self, labels: Any) -> Tensor:
        return torch.tensor([self.classes.index(c) for c in labels[self.column]])

    def ensemble(self, heads: list[nn.Module], x_valid: Tensor, y_valid: Tensor) -> RewardEnsemble:
        logits = torch.stack([predict_batched(h, x_valid) for h in heads]).mean(0)
        return RewardEnsemble(heads, self.task, fit_temperature(logits, y_valid))

    def held_out(self, ensemble: RewardEnsemble, x_test: Tensor, labels: Any) -> dict:
        probs, _ = ensemble.predict(x_test)
        pred, truth = probs.argmax(-1), self.y(labels)
        out = {
            "accuracy": (pred == truth).float().mean().item(),
            "per_class_accuracy": {
                c: (pred[truth == k] == k).float().mean().item() for k, c in enumerate(self.classes)
            },
            "temperature": ensemble.temperature,
        }
        if len(self.classes) == 2:  # P(class 1) ranks the test set: Mann–Whitney AUROC
            out["auroc"] = auroc(probs[:, 1].numpy(), truth.numpy())
        return out

    def config(self) -> dict:
        return {"classes": self.classes}


@dataclass
class Regression:
    """Regression targets: the labels' ``columns`` (one output each; a plain (n,) output for
    one), standardised by the ``mean`` and ``std`` of the rows a copy trains on. The held-out
    figure is the MAE per column in its ``units``."""

    columns: list[str]
    units: dict[str, str]
    mean: Tensor | None = None
    std: Tensor | None = None
    task: ClassVar[str] = "regression"

    @property
    def num_outputs(self) -> int:
        return len(self.columns)

    def values(self, labels: Any) -> Tensor:
        """(n, columns) float32, or (n,) for one column."""
        values = torch.tensor(np.stack([labels[c] for c in self.columns], -1), dtype=torch.float32)
        return values[:, 0] if len(self.columns) == 1 else values

    def of_half(self, labels: Any, rows: Tensor) -> Regression:
        values = self.values(labels)[rows]
        return replace(self, mean=values.mean(0), std=values.std(0))

    def y(self, labels: Any) -> Tensor:
        return (self.values(labels) - self.mean) / self.std

    def ensemble(self, heads: list[nn.Module], x_valid: Tensor, y_valid: Tensor) -> RewardEnsemble:
        return RewardEnsemble(heads, self.task)

    def held_out(self, ensemble: RewardEnsemble, x_test: Tensor, labels: Any) -> dict:
        pred, _ = ensemble.predict(x_test, batch_size=256)
        mae = ((pred * self.std + self.mean) - self.values(labels)).abs().mean(0).reshape(-1)
        return {
            "targets": self.columns,
            "units": self.units,
            "test_mae": dict(zip(self.columns, mae.tolist())),
        }

    def config(self) -> dict:
        return {
            "targets": self.columns,
            "mean": self.mean.reshape(-1).tolist(),
            "std": self.std.reshape(-1).tolist(),
        }
