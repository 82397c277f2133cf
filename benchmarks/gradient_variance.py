"""Gradient noise of rgdm's reward-weighted likelihood vs ddpo's policy gradient, at the
pretrained DNA model (the RGDM paper claims its estimator has lower variance).

    python benchmarks/gradient_variance.py --results results [--estimates 8 --batch 64]

Both estimators are evaluated at the same fixed parameters, each from ``--estimates`` fresh,
independent batches of ``--batch`` scored designs (the same oracle cost per estimate). Printed:
relative variance E‖g − ḡ‖² / ‖ḡ‖² (noise-to-signal, scale-free) and the mean cosine between
single estimates and their average.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from rewarddiff.domain import get_domain
from rewarddiff.finetune.ddpo import advantages
from rewarddiff.finetune.rgdm import payoff_weights


def flat_grad(net) -> torch.Tensor:
    return torch.cat([p.grad.flatten().double() for p in net.parameters() if p.grad is not None])


def rgdm_gradient(gen, reward, batch, tau, rng) -> torch.Tensor:
    x, _ = gen.sample(batch, rng)
    w = payoff_weights(reward(x), tau)
    idx = torch.multinomial(torch.as_tensor(w), batch, True, generator=rng)
    gen.net.zero_grad()
    gen.loss(x[idx], generator=rng).backward()
    return flat_grad(gen.net)


def ddpo_gradient(gen, reward, batch, rng) -> torch.Tensor:
    states, grid, x = gen.sample_trajectory(batch, rng)
    adv = advantages(reward(x))
    gen.net.zero_grad()
    for xt, xs, t, s in zip(states[:-1], states[1:], grid[:-1], grid[1:]):
        # at ratio 1 the PPO surrogate's gradient is the policy gradient −E[A ∇ log p]
        (-(adv * gen.step_log_prob(xt, xs, t, s)).mean()).backward()
    return flat_grad(gen.net)


def spread(grads: list[torch.Tensor]) -> tuple[float, float]:
    g = torch.stack(grads)
    mean = g.mean(0)
    rel_var = float((g - mean).pow(2).sum(1).mean() / mean.pow(2).sum())
    cosine = float(torch.nn.functional.cosine_similarity(g, mean[None]).mean())
    return rel_var, cosine


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--results", type=Path, default=Path("results"))
    parser.add_argument("--estimates", type=int, default=8)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--tau", type=float, default=0.5)
    parser.add_argument("--target", default="HepG2")
    args = parser.parse_args()
    torch.set_num_threads(2)
    dom = get_domain("dna")
    gen = dom.load_generator(args.results / "dna/pretrained/model.safetensors")
    reward = dom.reward_function(
        [{"oracle": f"celltype_logodds:{args.target}", "weight": 1.0}],
        args.results / "dna/rewards/ft/model.safetensors",
    )
    rows = []
    estimators = {
        "rgdm (reward-weighted likelihood)": lambda rng: rgdm_gradient(
            gen, reward, args.batch, args.tau, rng
        ),
        "ddpo (policy gradient)": lambda rng: ddpo_gradient(gen, reward, args.batch, rng),
    }
    for name, estimate in estimators.items():
        grads = [estimate(torch.Generator().manual_seed(100 + i)) for i in range(args.estimates)]
        rel_var, cosine = spread(grads)
        norm = float(np.mean([g.norm() for g in grads]))
        rows.append((name, rel_var, cosine, norm))
    print(f"DNA demo model, {args.estimates} estimates × {args.batch} scored designs each, "
          f"tau = {args.tau}\n")  # fmt: skip
    print("| estimator | relative variance E‖g−ḡ‖²/‖ḡ‖² | mean cosine to ḡ | mean ‖g‖ |")
    print("|---|---|---|---|")
    for name, rel_var, cosine, norm in rows:
        print(f"| {name} | {rel_var:.3g} | {cosine:.3f} | {norm:.3g} |")


if __name__ == "__main__":
    main()
