"""What every fine-tuning method shares: the task bundle, oracle-call accounting, the
per-round log (reward, distance from the pretrained model, diversity) and the scratch
checkpoint that lets an interrupted run resume mid-way."""

from __future__ import annotations

import csv
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from rewarddiff import UserError
from rewarddiff.conditioning import LabelCondition
from rewarddiff.generator import Generator
from rewarddiff.io import (
    atomic_path,
    flatten_state,
    matching_checkpoint,
    save_tensors,
    unflatten_state,
)
from rewarddiff.oracles.base import best_first, summarize_scores

FINAL_SAMPLES = 64  # designs drawn from a finished model for its final log row
LOG_SEED_OFFSET = 7919  # the log's random stream is seeded apart from the method's
# method settings that change only how often a run logs or checkpoints, not what it trains
RESULT_NEUTRAL = ("log_every", "checkpoint_every")
# count settings that must be at least 1 (other integer settings must be at least 0)
POSITIVE_COUNTS = ("oracle_budget", "batch_size", "n_samples", "rounds", "steps",
                   "steps_per_round", "ppo_epochs", "reward_steps", "reward_batch", "heads",
                   "log_every", "checkpoint_every", "eval_per_label", "sweep_samples")  # fmt: skip
# real settings that must be > 0, or ≥ 0 (other real settings: finite)
POSITIVE_REALS = ("lr", "reward_lr", "tau", "gumbel_tau")
NONNEGATIVE_REALS = ("kl_weight", "grad_clip", "reward_weight", "noise", "label_dropout",
                     "ema_decay", "data_mix", "ridge", "kappa", "condition_lr_scale")  # fmt: skip


def direction_sign(direction: str | None) -> float:
    """Methods always maximise: a ``minimize`` objective is steered as its negative."""
    signs = {None: 1.0, "maximize": 1.0, "minimize": -1.0}
    if direction not in signs:
        raise UserError(f"objective direction must be maximize or minimize, not {direction!r}")
    return signs[direction]


@dataclass
class CountingReward:
    """Wraps a reward function ``fn(x) -> (n,) array`` (and optionally its differentiable
    form ``torch_fn(relaxed x) -> (n,) tensor``), applies the direction ``sign`` and counts
    oracle calls (designs scored) of both."""

    fn: Callable[[Tensor], np.ndarray]
    sign: float = 1.0
    calls: int = 0
    torch_fn: Callable[[Tensor], Tensor] | None = None

    def __call__(self, x: Tensor) -> np.ndarray:
        self.calls += len(x)
        return self.sign * np.asarray(self.fn(x), dtype=np.float64)

    def differentiable(self, x: Tensor) -> Tensor:
        if self.torch_fn is None:
            raise UserError("this method needs a differentiable reward (oracles with torch_score)")
        self.calls += len(x)
        return self.sign * self.torch_fn(x)


@dataclass
class FinetuneTask:
    generator: Generator  # trained in place
    reference: Generator  # frozen pretrained model (p_pre)
    reward: CountingReward
    diversity: Callable[[Tensor], float]
    seed: int = 0
    log_path: Path | None = None
    # the domain's regressor over designs (→ (B,)), for methods that fit their own reward model
    reward_network: Callable[[], torch.nn.Module] | None = None
    # scratch checkpoint written by :meth:`checkpoint`; None = no mid-run checkpoints
    checkpoint_path: Path | None = None
    # the domain's sample-quality figures of designs (e.g. validity) → {name: value}, logged
    # in every row beside the reward (the rcgdm sweep's quality-vs-target trade-off)
    quality: Callable[[Tensor], dict] | None = None
    # what else determines the result (content hashes of the pretrained model, reward model
    # and data, the objective with its direction): a checkpoint of another identity is not
    # resumed
    identity: dict = field(default_factory=dict)
    # what a method's spec asks for: the pretraining data (designs (n, ...)) and the label
    # condition that ``generator`` was given an embedding for
    data: Tensor | None = None
    condition: LabelCondition | None = None
    rows: list[dict] = field(default_factory=list)
    torch_generator: torch.Generator = field(init=False)
    # the log's own random stream (log-likelihood estimates, final samples): how often a
    # method logs never changes what it trains
    log_generator: torch.Generator = field(init=False)
    started: float = field(init=False, default_factory=time.time)

    def __post_init__(self):
        self.torch_generator = torch.Generator().manual_seed(self.seed)
        self.log_generator = torch.Generator().manual_seed(self.seed + LOG_SEED_OFFSET)
        torch.manual_seed(self.seed)

    def record(
        self, round_: int, x: Tensor, rewards: np.ndarray, path_kl: Tensor | None, **extra
    ) -> dict:
        """Log one round: reward stats, log p_pre of the samples, path KL, diversity."""
        stats = summarize_scores(rewards)
        row = {
            "round": round_,
            "oracle_calls": self.reward.calls,
            "reward_mean": stats["mean"],
            "reward_top10": stats["top10"],
            "reward_max": stats["max"],
            "reward_nan": stats["failed"],
            "loglik_pretrained": float(
                self.reference.log_likelihood(x, generator=self.log_generator).mean()
            ),
            "path_kl": float(path_kl.mean()) if path_kl is not None else 0.0,
            "diversity": float(self.diversity(x)),
            **(self.quality(x) if self.quality is not None else {}),
            **extra,
            "wall_s": round(time.time() - self.started, 2),
        }
        self.rows.append(row)
        if self.log_path is not None:
            write_rows(self.log_path, self.rows)
        print(
            " ".join(
                f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()
            ),
            flush=True,
        )
        return row

    def record_final(self, n: int = FINAL_SAMPLES) -> dict:
        """Log the finished model: ``n`` fresh designs, their path KL to p_pre and their reward
        (for the log only: not budget calls). Round-based methods log each round's samples
        before that round's update; this row is what the report reads as the final distance."""
        last = self.rows[-1]["round"] if self.rows else -1
        with torch.no_grad():
            x, path_kl = self.generator.sample(n, self.log_generator, self.reference)
            rewards = self.reward.sign * np.asarray(self.reward.fn(x), dtype=np.float64)
        return self.record(last + 1, x, rewards, path_kl, stage="final")

    def checkpoint(self, done: int, cfg, opt: torch.optim.Optimizer, **state) -> None:
        """Save the run after ``done`` rounds (or steps) of the method configured by ``cfg``:
        generator weights and config, optimiser, RNG states, oracle calls, log rows and the
        method's own ``state`` (nested dicts / lists of tensors and JSON values)."""
        if self.checkpoint_path is None:
            return
        state = {"net": self.generator.net.state_dict(), "optim": opt.state_dict(),
                 "rng": self.torch_generator.get_state(), "torch_rng": torch.get_rng_state(),
                 "log_rng": self.log_generator.get_state(), "method": state}  # fmt: skip
        tensors, skeleton = flatten_state("state", state)
        meta = {
            "done": done,
            "settings": self.run_settings(cfg),
            "state": skeleton,
            "generator_config": self.generator.saved_config(),
            "oracle_calls": self.reward.calls,
            "rows": self.rows,
            "elapsed_s": time.time() - self.started,
        }
        save_tensors(self.checkpoint_path, tensors, meta)

    def resume(self, cfg, opt: torch.optim.Optimizer, **state) -> tuple[int, dict]:
        """Restore what :meth:`checkpoint` saved for the same method settings and seed; returns
        (rounds done, method state). Without a matching checkpoint: (0, ``state``)."""
        path = self.checkpoint_path
        checkpoint = None if path is None else matching_checkpoint(path, self.run_settings(cfg))
        if checkpoint is None:
            return 0, state
        tensors, meta = checkpoint
        saved = unflatten_state(meta["state"], tensors)
        self.generator.net.load_state_dict(saved["net"])
        self.generator.load_config(meta["generator_config"])
        opt.load_state_dict(saved["optim"])
        self.torch_generator.set_state(saved["rng"])
        self.log_generator.set_state(saved["log_rng"])
        torch.set_rng_state(saved["torch_rng"])
        self.reward.calls = meta["oracle_calls"]
        self.rows = meta["rows"]
        self.started = time.time() - meta["elapsed_s"]
        print(f"resumed after {meta['done']} rounds ({path})", flush=True)
        return meta["done"], saved["method"]

    def run_settings(self, cfg) -> dict:
        """What identifies a run in its checkpoint: the method's config class and its
        result-determining settings, the seed, and :attr:`identity`."""
        settings = {k: v for k, v in asdict(cfg).items() if k not in RESULT_NEUTRAL}
        run = {"method": type(cfg).__name__, "settings": settings, "seed": self.seed,
               "identity": self.identity}  # fmt: skip
        return json.loads(json.dumps(run, default=str))  # as the checkpoint reads it back


def check_method_settings(cfg, where: str) -> None:
    """Counts (:data:`POSITIVE_COUNTS`) ≥ 1, other integers ≥ 0, rates (:data:`POSITIVE_REALS`)
    > 0, weights (:data:`NONNEGATIVE_REALS`) ≥ 0, every real finite: otherwise a UserError
    naming ``where.<field>``."""
    for name, value in asdict(cfg).items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            continue
        if not np.isfinite(value):
            problem = "must be finite"
        elif isinstance(value, int) and value < (1 if name in POSITIVE_COUNTS else 0):
            problem = f"must be at least {1 if name in POSITIVE_COUNTS else 0}"
        elif name in POSITIVE_REALS and value <= 0:
            problem = "must be positive"
        elif name in NONNEGATIVE_REALS and value < 0:
            problem = "must be at least 0"
        else:
            continue
        raise UserError(f"{where}.{name} = {value}: {problem}")


class GradientStats:
    """Spread of the successive stochastic gradients of one round: the relative variance
    E‖g − ḡ‖² / ‖ḡ‖² (lower = a less noisy estimator; parameters drift within a round, which
    this includes). Call :meth:`add` after ``backward()`` and before clipping."""

    def __init__(self):
        self.total, self.square, self.count = None, 0.0, 0

    def add(self, params) -> None:
        g = torch.cat([p.grad.detach().flatten().double() for p in params if p.grad is not None])
        self.total = g if self.total is None else self.total + g
        self.square += float(g.pow(2).sum())
        self.count += 1

    def relative_variance(self) -> float:
        if self.count < 2:
            return float("nan")
        mean = self.total / self.count
        spread = self.square / self.count - float(mean.pow(2).sum())
        return spread / max(float(mean.pow(2).sum()), 1e-30)


def write_rows(path: Path, rows: list[dict]) -> None:
    fields = list(dict.fromkeys(k for r in rows for k in r))
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)


def top_k(x: Tensor, rewards: np.ndarray, k: int) -> tuple[Tensor, np.ndarray]:
    """The k designs with the highest finite reward (NaN ranks last)."""
    order = best_first(rewards)[:k]
    return x[torch.as_tensor(order)], rewards[order]
