"""rcgdm: reward-directed conditional diffusion (Yuan et al., arXiv 2307.07055).

A small labelled subset of the data is scored by the true oracle (the whole oracle budget); a
reward model f̂ fit on it pseudo-labels the unlabelled rest, ŷ = f̂(x) + N(0, ν²); the generator,
given a zero-initialised scalar-condition embedding, is trained on (x, ŷ) with label dropout and
then sampled at a target value a. Targets are in standard deviations of the labelled rewards
above their mean: the higher a, the stronger the extrapolation — more reward, less fidelity to
the data — which the sweep over ``sweep`` targets records.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from rewarddiff import UserError
from rewarddiff.conditioning import ValueCondition
from rewarddiff.finetune.common import FinetuneTask
from rewarddiff.finetune.spec import MethodResult, MethodSpec, always
from rewarddiff.oracles.learned import FitConfig, fit, predict_batched


@dataclass
class RCGDMConfig:
    """pseudo-label data with a reward model fit on a labelled subset; sample at target a"""

    oracle_budget: int = 1024  # labelled designs: true-oracle calls
    noise: float = 0.1  # ν: pseudo-label noise (standardised reward units)
    reward_steps: int = 500  # reward-model fit on the labelled subset
    reward_lr: float = 1e-3
    reward_batch: int = 64
    steps: int = 1000  # conditional diffusion training steps on (x, ŷ)
    batch_size: int = 64
    lr: float = 1e-4
    label_dropout: float = 0.1  # unconditional training fraction (classifier-free guidance)
    target: float = 2.0  # a, in standard deviations of the labelled rewards above their mean
    guidance: float = 0.0  # classifier-free guidance scale when sampling
    sweep: list[float] = field(default_factory=lambda: [0.0, 1.0, 2.0, 3.0])
    sweep_samples: int = 128  # designs per target (evaluation only: not budget calls)
    grad_clip: float = 1.0
    checkpoint_every: int = 200  # training steps between scratch checkpoints
    reward_network: dict = field(default_factory=dict)  # domain regressor settings


def fit_reward_model(
    task: FinetuneTask, x: Tensor, z: Tensor, cfg: RCGDMConfig, rng: torch.Generator
) -> torch.nn.Module:
    """Regressor ``task.reward_network()`` fit to standardised rewards ``z`` (n,), 10 % held
    out to keep the best weights."""
    order = torch.randperm(len(x), generator=rng)
    n_val = max(1, len(x) // 10)
    val, train = order[:n_val], order[n_val:]
    net = task.reward_network()
    fit_cfg = FitConfig(cfg.reward_steps, cfg.reward_batch, cfg.reward_lr,
                        eval_every=max(1, cfg.reward_steps // 5), task="regression")  # fmt: skip
    fit(net, x[train], z[train], x[val], z[val], fit_cfg, rng)
    return net.eval()


def pseudo_label(task: FinetuneTask, cfg: RCGDMConfig, data: Tensor) -> dict:
    """Score a random labelled subset with the true oracle (the budget), fit the reward model
    on it and pseudo-label the rest: the data order, the finite-reward mask of the subset,
    standardised labels z_all (labelled first, then the pool), reward mean/std and the fit's
    Pearson r on the labelled designs."""
    rng = task.torch_generator
    order = torch.randperm(len(data), generator=rng)
    labelled, pool = data[order[: cfg.oracle_budget]], data[order[cfg.oracle_budget :]]
    rewards = task.reward(labelled)
    finite = np.isfinite(rewards)
    if finite.sum() < 10:
        raise UserError(f"rcgdm: only {finite.sum()} labelled designs have a finite reward")
    mean, std = float(rewards[finite].mean()), float(rewards[finite].std() + 1e-8)
    labelled = labelled[torch.as_tensor(finite)]
    z = torch.as_tensor((rewards[finite] - mean) / std, dtype=torch.float32)
    regressor = fit_reward_model(task, labelled, z, cfg, rng)
    # pseudo-labels ŷ = f̂(x) + ν·ε on the unlabelled pool; true labels on the labelled subset
    pseudo = predict_batched(regressor, pool).float()
    pseudo = pseudo + cfg.noise * torch.randn(len(pool), generator=rng)
    fit_r = float(np.corrcoef(predict_batched(regressor, labelled).numpy(), z.numpy())[0, 1])
    return {"order": order, "finite": torch.as_tensor(finite), "z_all": torch.cat([z, pseudo]),
            "rewards": torch.as_tensor(rewards), "mean": mean, "std": std, "fit_r": fit_r,
            "losses": []}  # fmt: skip


def rcgdm(task: FinetuneTask, cfg: RCGDMConfig) -> MethodResult:
    """Train the value-conditioned ``task.generator`` in place on pseudo-labelled
    ``task.data``."""
    data = task.data
    if data is None or task.reward_network is None:
        raise UserError("rcgdm needs the pretraining data and a reward network from the domain")
    gen, rng = task.generator, task.torch_generator
    opt = torch.optim.AdamW(gen.net.parameters(), lr=cfg.lr, weight_decay=0.0)
    done, state = task.resume(cfg, opt)
    if not state:  # label the subset, fit the reward model, pseudo-label the pool
        state = pseudo_label(task, cfg, data)
        task.checkpoint(0, cfg, opt, **state)  # the labelled subset cost the whole budget
    finite, z_all = state["finite"], state["z_all"]
    labelled = data[state["order"][: cfg.oracle_budget]][finite]
    x_all = torch.cat([labelled, data[state["order"][cfg.oracle_budget :]]])
    losses = state["losses"]
    for step in range(done, cfg.steps):
        idx = torch.randint(len(x_all), (cfg.batch_size,), generator=rng)
        # label dropout: NaN = "no value", which trains the unconditional model for CFG
        dropped = torch.rand(cfg.batch_size, generator=rng) < cfg.label_dropout
        label = torch.where(dropped, float("nan"), z_all[idx])
        loss = gen.loss(x_all[idx], label=label, generator=rng)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(gen.net.parameters(), cfg.grad_clip)
        opt.step()
        losses.append(loss.item())
        if (step + 1) % cfg.checkpoint_every == 0:
            task.checkpoint(step + 1, cfg, opt, **state)
    rewards, mean, std = state["rewards"].numpy(), state["mean"], state["std"]
    task.record(
        0,
        labelled,
        rewards[finite.numpy()],
        None,
        stage="labelled",
        reward_fit_r=state["fit_r"],
        loss=float(np.mean(losses)),
        labelled=len(labelled),
        pseudo_labelled=len(x_all) - len(labelled),
    )
    # the extrapolation sweep: achieved reward vs target a (evaluation calls, outside the
    # budget), then the chosen target last (the report reads the path KL off the last row)
    stages = [("sweep", t) for t in cfg.sweep] + [("target", cfg.target)]
    for k, (stage, target) in enumerate(stages):
        label = torch.full((cfg.sweep_samples,), float(target))
        x, path_kl = gen.sample(cfg.sweep_samples, rng, task.reference, label, cfg.guidance)
        achieved = task.reward.sign * np.asarray(task.reward.fn(x), dtype=np.float64)
        task.record(k + 1, x, achieved, path_kl, stage=stage, target_z=target,
                    target_value=task.reward.sign * (mean + target * std))  # fmt: skip
    gen.condition = ValueCondition(target=cfg.target, guidance=cfg.guidance, mean=mean, std=std)
    return MethodResult()


SPEC = MethodSpec(
    id="rcgdm",
    config=RCGDMConfig,
    run=rcgdm,
    training_data=always,
    condition="value",
    training_curve=False,
)
