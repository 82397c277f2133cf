"""seiko: online fine-tuning with a hard oracle budget and an optimistic learned reward."""

import pytest
import torch
from toys import L, ToyRegressor, V, toy_task

from rewarddiff import UserError
from rewarddiff.finetune.seiko import SEIKOConfig, fit_optimistic_reward, round_sizes, seiko


def test_round_sizes_double_and_sum_to_the_budget():
    assert round_sizes(1500, 4) == [100, 200, 400, 800]
    assert sum(round_sizes(1000, 3)) == 1000 and round_sizes(1000, 1) == [1000]


@pytest.mark.parametrize("bonus", ["ucb", "bootstrap", "greedy"])
def test_seiko_raises_the_true_reward_within_its_budget(tmp_path, bonus):
    task = toy_task(log_path=tmp_path / "log.csv")
    task.reward_network = ToyRegressor
    before = task.reward.fn(task.generator.sample(512, torch.Generator().manual_seed(5))[0])
    cfg = SEIKOConfig(oracle_budget=448, rounds=3, bonus=bonus, heads=3, reward_steps=150,
                      reward_lr=1e-2, steps_per_round=25, batch_size=64, grad_steps=8,
                      kl_weight=0.05, lr=1e-2, gumbel_tau=0.5)  # fmt: skip
    seiko(task, cfg)
    after = task.reward.fn(task.generator.sample(512, torch.Generator().manual_seed(5))[0])
    assert task.reward.calls == 448
    # the reward-vs-calls curve, then the finished model's row (no further calls)
    assert [r["oracle_calls"] for r in task.rows] == [64, 192, 448, 448]
    assert after.mean() > before.mean() + 0.15, (before.mean(), after.mean())
    assert task.rows[-1]["reward_mean"] > task.rows[0]["reward_mean"]


def test_ucb_bonus_is_larger_away_from_the_queried_designs():
    task = toy_task()
    task.reward_network = ToyRegressor
    queried = torch.randint(2, (256, L))  # only tokens 0 and 1 were ever queried
    z = (queried == 0).float().mean(-1)
    z = (z - z.mean()) / z.std()
    cfg = SEIKOConfig(bonus="ucb", kappa=1.0, reward_steps=100, reward_lr=1e-2)
    surrogate = fit_optimistic_reward(task, queried, z, cfg, torch.Generator().manual_seed(0))
    head = surrogate.heads[0]
    unseen = torch.randint(2, V, (256, L))  # tokens 2 and 3 only
    with torch.no_grad():
        bonus_seen = (surrogate(queried) - head(queried)).mean()
        bonus_unseen = (surrogate(unseen) - head(unseen)).mean()
    assert 0 < bonus_seen < bonus_unseen


def test_seiko_rejects_unknown_bonus_and_missing_reward_network():
    with pytest.raises(UserError, match="bonus must be one of"):
        seiko(toy_task(), SEIKOConfig(bonus="thompson"))
    with pytest.raises(UserError, match="reward network"):
        seiko(toy_task(), SEIKOConfig())
