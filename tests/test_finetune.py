"""Fine-tuning methods on a toy masked-diffusion task with a known reward."""

import numpy as np
import pytest
import torch
from torch import nn

from rewarddiff import UserError
from rewarddiff.diffusion.masked import MaskedDiffusion
from rewarddiff.finetune import (
    BestOfNConfig,
    CountingReward,
    FinetuneTask,
    RGDMConfig,
    best_of_n,
    rgdm,
)
from rewarddiff.finetune.common import direction_sign
from rewarddiff.finetune.rgdm import effective_sample_size, payoff_weights
from rewarddiff.generator import MaskedSequenceGenerator

V, L = 4, 8


class ToyNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(L * (V + 1) + 1, 64), nn.Tanh(), nn.Linear(64, L * V))

    def forward(self, x, t, label=None):
        if not x.dtype.is_floating_point:
            x = nn.functional.one_hot(x, V + 1).float()
        return self.net(torch.cat([x.flatten(1), t[:, None]], -1)).view(-1, L, V)


def toy_task(seed=0, log_path=None):
    torch.manual_seed(seed)
    gen = MaskedSequenceGenerator(
        MaskedDiffusion(V), ToyNet(), L, sampling_steps=8, sample_batch=128
    )
    data = torch.randint(V, (4096, L))  # uniform "pretraining" data
    opt = torch.optim.Adam(gen.net.parameters(), lr=3e-3)
    for _ in range(150):
        loss = gen.loss(data[torch.randint(len(data), (128,))])
        opt.zero_grad()
        loss.backward()
        opt.step()
    reward = CountingReward(lambda x: (x == 0).float().mean(-1).numpy())  # fraction of token 0
    return FinetuneTask(
        gen,
        gen.frozen_copy(),
        reward,
        lambda x: float((x[:, None] != x[None]).float().mean()),
        seed,
        log_path,
    )


def test_payoff_weights_and_ess():
    w = payoff_weights(np.array([0.0, np.log(3.0), np.nan]), tau=1.0)
    assert w.tolist() == pytest.approx([0.25, 0.75, 0.0])
    assert effective_sample_size(np.full(10, 0.1)) == pytest.approx(10.0)
    assert effective_sample_size(np.array([1.0, 0.0])) == pytest.approx(1.0)


def test_minimize_direction_negates_and_counts_calls():
    reward = CountingReward(lambda x: x.sum(-1).numpy().astype(float), direction_sign("minimize"))
    assert reward(torch.tensor([[1, 2], [0, 0]])).tolist() == [-3.0, 0.0]
    assert reward.calls == 2
    with pytest.raises(UserError, match="maximize or minimize"):
        direction_sign("target")


def test_best_of_n_keeps_top_k_at_budget():
    task = toy_task()
    kept = best_of_n(task, BestOfNConfig(oracle_budget=256, n_samples=16))
    assert kept.shape == (16, L) and task.reward.calls == 256
    pool, selected = task.rows
    assert selected["reward_mean"] >= pool["reward_top10"] - 1e-9


@pytest.mark.parametrize("ema_decay", [0.0, 0.9])
def test_rgdm_raises_reward_and_logs_each_round(tmp_path, ema_decay):
    task = toy_task(log_path=tmp_path / "log.csv")
    base = task.reward.fn(task.generator.sample(512, torch.Generator().manual_seed(5))[0]).mean()
    rgdm(
        task,
        RGDMConfig(
            oracle_budget=512,
            rounds=4,
            steps_per_round=60,
            batch_size=64,
            lr=3e-3,
            tau=0.05,
            ema_decay=ema_decay,
        ),
    )
    after = task.reward.fn(task.generator.sample(512, torch.Generator().manual_seed(5))[0]).mean()
    assert task.reward.calls == 512
    assert after > base + 0.15, (base, after)
    rows = task.rows
    assert [r["round"] for r in rows] == [0, 1, 2, 3]
    assert rows[0]["path_kl"] == pytest.approx(0.0, abs=1e-5)  # round 0 samples the reference
    assert rows[-1]["path_kl"] > 1.0  # the policy moved away from p_pre
    assert all(1.0 <= r["ess"] <= r["buffer"] for r in rows)
    assert (tmp_path / "log.csv").read_text().count("\n") == 5


def test_rgdm_size_mix_needs_a_size_distribution():
    with pytest.raises(UserError, match="size_mix needs a generator with a size distribution"):
        rgdm(toy_task(), RGDMConfig(oracle_budget=8, rounds=1, size_mix=0.5))
