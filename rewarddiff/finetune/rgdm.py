"""rgdm: reward-guided exploration (Zhang & Xu, arXiv 2304.07132).

Each round draws designs from the current model, scores them and adds them to a replay buffer;
the model is then trained by the denoising loss on buffer samples drawn from the payoff
distribution q(x) ∝ exp(r(x)/τ) — reward-weighted likelihood, the max-entropy-RL solution —
optionally mixed with data samples as an anchor to the pretraining distribution.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import torch

from rewarddiff import UserError
from rewarddiff.finetune.common import FinetuneTask, GradientStats
from rewarddiff.finetune.spec import MethodResult, MethodSpec
from rewarddiff.training import EMA


@dataclass
class RGDMConfig:
    """reward-guided exploration: train on own samples weighted by exp(r/tau)"""

    oracle_budget: int = 1024  # designs scored over all rounds
    rounds: int = 4
    steps_per_round: int = 100
    batch_size: int = 64
    lr: float = 1e-4
    tau: float = 1.0  # payoff temperature: smaller = greedier
    data_mix: float = 0.0  # fraction of each batch drawn uniformly from the pretraining data
    grad_clip: float = 1.0
    ema_decay: float = 0.0  # > 0: sample from (and return) an EMA of the fine-tuned weights
    size_mix: float = 0.0  # generators with a size prior (molecules): move p(N) this far per round


def payoff_weights(rewards: np.ndarray, tau: float) -> np.ndarray:
    """softmax(r/τ) over finite rewards (NaN rewards get weight 0): (n,)."""
    z = np.where(np.isfinite(rewards), rewards / tau, -np.inf)
    z = z - z[np.isfinite(z)].max()
    w = np.exp(z)
    return w / w.sum()


def effective_sample_size(w: np.ndarray) -> float:
    """Kish ESS of normalised weights: 1 / Σ w²."""
    return float(1.0 / np.square(w).sum())


def rgdm(task: FinetuneTask, cfg: RGDMConfig) -> MethodResult:
    """Fine-tune ``task.generator`` in place for ``cfg.rounds`` rounds (with ``data_mix``,
    on batches partly drawn from ``task.data``)."""
    data = task.data
    if cfg.data_mix > 0 and data is None:
        raise ValueError("rgdm: data_mix > 0 needs the pretraining data")
    if cfg.size_mix > 0 and not task.generator.has_size_distribution:
        raise UserError("rgdm: size_mix needs a generator with a size distribution (molecules)")
    gen, rng = task.generator, task.torch_generator
    opt = torch.optim.AdamW(gen.net.parameters(), lr=cfg.lr, weight_decay=0.0)
    # diffusion samples are much better from averaged weights (EDM, DDPM): optional EMA
    ema = EMA(gen.net, cfg.ema_decay) if cfg.ema_decay > 0 else None
    per_round = cfg.oracle_budget // cfg.rounds
    done, state = task.resume(cfg, opt, buffer_x=[], buffer_r=[],
                              ema=ema.model.state_dict() if ema else {})  # fmt: skip
    buffer_x, buffer_r = state["buffer_x"], [r.numpy() for r in state["buffer_r"]]
    if ema:
        ema.model.load_state_dict(state["ema"])
    for round_ in range(done, cfg.rounds):
        sampler = dataclasses.replace(gen, net=ema.model) if ema else gen  # current settings
        x, path_kl = sampler.sample(per_round, rng, task.reference)
        rewards = task.reward(x)
        buffer_x.append(x)
        buffer_r.append(rewards)
        all_x, all_r = torch.cat(buffer_x), np.concatenate(buffer_r)
        w = payoff_weights(all_r, cfg.tau)
        ess = effective_sample_size(w)
        if cfg.size_mix > 0:  # the payoff-weighted fit of the size distribution
            gen.fit_size_distribution(all_x, torch.as_tensor(w), cfg.size_mix)
        n_data = int(round(cfg.data_mix * cfg.batch_size))
        losses, grads = [], GradientStats()
        for _ in range(cfg.steps_per_round):
            idx = torch.multinomial(
                torch.as_tensor(w), cfg.batch_size - n_data, True, generator=rng
            )
            batch = all_x[idx]
            if n_data:
                batch = torch.cat([batch, data[torch.randint(len(data), (n_data,), generator=rng)]])
            loss = gen.loss(batch, generator=rng)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            grads.add(gen.net.parameters())
            torch.nn.utils.clip_grad_norm_(gen.net.parameters(), cfg.grad_clip)
            opt.step()
            if ema:
                ema.update(gen.net)
            losses.append(loss.item())
        task.record(
            round_,
            x,
            rewards,
            path_kl,
            ess=ess,
            ess_fraction=ess / len(all_r),
            buffer=len(all_r),
            loss=float(np.mean(losses)),
            grad_rel_var=grads.relative_variance(),
        )
        task.checkpoint(round_ + 1, cfg, opt, buffer_x=buffer_x,
                        buffer_r=[torch.as_tensor(r) for r in buffer_r],
                        ema=ema.model.state_dict() if ema else {})  # fmt: skip
    if ema:  # the fine-tuned model is the averaged one
        gen.net.load_state_dict(ema.model.state_dict())
    task.record_final()
    return MethodResult()


SPEC = MethodSpec(
    id="rgdm", config=RGDMConfig, run=rgdm, training_data=lambda cfg: cfg.data_mix > 0
)
