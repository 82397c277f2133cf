"""Fine-tuning methods on a toy masked-diffusion task with a known reward."""

import numpy as np
import pytest
import torch
from torch import nn
from toys import L, V, toy_task

from rewarddiff import UserError
from rewarddiff.diffusion.masked import MaskedDiffusion
from rewarddiff.finetune import CountingReward
from rewarddiff.finetune.best_of_n import BestOfNConfig, best_of_n
from rewarddiff.finetune.common import GradientStats, direction_sign
from rewarddiff.finetune.ddpo import DDPOConfig, ddpo
from rewarddiff.finetune.draft import DraftConfig, draft
from rewarddiff.finetune.rgdm import RGDMConfig, effective_sample_size, payoff_weights, rgdm


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
    kept = best_of_n(task, BestOfNConfig(oracle_budget=256, n_samples=16)).designs
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
    # four rounds, then the finished model's own row (fresh samples, not budget calls)
    assert [r["round"] for r in rows] == [0, 1, 2, 3, 4]
    assert rows[-1]["stage"] == "final" and rows[-1]["oracle_calls"] == 512
    assert rows[0]["path_kl"] == pytest.approx(0.0, abs=1e-5)  # round 0 samples the reference
    # the finished model is further from p_pre than after one round (the KL saturates by the
    # last rounds, so consecutive rows differ by estimation noise only)
    assert rows[-1]["path_kl"] > rows[1]["path_kl"] > 1.0
    assert all(1.0 <= r["ess"] <= r["buffer"] for r in rows[:-1])
    assert (tmp_path / "log.csv").read_text().count("\n") == 6


def test_rgdm_size_mix_needs_a_size_distribution():
    from molgen.layout import MoleculeLayout
    from rewarddiff.gaussian_generator import VectorLayout

    with pytest.raises(UserError, match="size_mix needs a generator with a size distribution"):
        rgdm(toy_task(), RGDMConfig(oracle_budget=8, rounds=1, size_mix=0.5))
    # the declared capability: molecules have one, plain vectors not
    assert MoleculeLayout.has_size_distribution and not VectorLayout.has_size_distribution
    with pytest.raises(TypeError, match="VectorLayout has no size distribution"):
        VectorLayout((3,)).refit_sizes(torch.zeros(2, 3), torch.ones(2), 0.5)


def zero_fraction(x):
    """Differentiable toy reward on relaxed one-hot (n, L, V): fraction of token 0."""
    return x[..., 0].mean(-1)


def test_draft_without_kl_climbs_the_reward():
    task = toy_task()
    task.reward.torch_fn = zero_fraction
    base = task.reward.fn(task.generator.sample(512, torch.Generator().manual_seed(5))[0]).mean()
    draft(task, DraftConfig(oracle_budget=64 * 40, batch_size=64, grad_steps=8, lr=3e-3))
    after = task.reward.fn(task.generator.sample(512, torch.Generator().manual_seed(5))[0]).mean()
    assert task.reward.calls == 64 * 40
    assert after > base + 0.4, (base, after)  # DRaFT pushes far past the KL-regularised optimum


def test_draft_with_kl_moves_toward_the_tilted_target():
    """Uniform p_pre over 4 tokens and r = fraction of token 0 over L positions: the optimum of
    E[r] − α·KL is per-position P(0) = e^{1/(Lα)} / (e^{1/(Lα)} + 3) = 0.475 for α = 1/L.

    The Gumbel-softmax straight-through reward gradient is biased low, so draft stops short of
    it (measured 0.39–0.40 with τ = 0.1, 0.34 with τ = 1); the test pins that it lands between
    p_pre (0.25) and the optimum, with a finite path KL, and does not overshoot."""
    task = toy_task()
    task.reward.torch_fn = zero_fraction
    cfg = DraftConfig(
        oracle_budget=128 * 80, batch_size=128, grad_steps=8, kl_weight=1.0 / L, lr=3e-3
    )
    cfg.gumbel_tau = 0.1
    draft(task, cfg)
    x, _ = task.generator.sample(2048, torch.Generator().manual_seed(6))
    assert 0.33 < (x == 0).float().mean().item() < np.e / (np.e + 3) + 0.03
    assert 0.1 < task.rows[-1]["path_kl"] < 0.94 + 0.2  # the optimum's KL is 0.94 nats


def test_draft_needs_a_differentiable_reward():
    with pytest.raises(UserError, match="differentiable reward"):
        draft(toy_task(), DraftConfig(oracle_budget=8, batch_size=8))


def test_transition_log_prob_matches_sampling_frequencies():
    """log p(x_s | x_t) of one reverse step agrees with how often the sampler takes it."""
    d = MaskedDiffusion(V)
    log_p0 = torch.log(torch.tensor([[[0.5, 0.3, 0.1, 0.1]]]))  # one position
    x_t = torch.full((1, 1), d.mask_id)
    t, s = 0.6, 0.3
    draws = torch.cat([d.step(log_p0, x_t, t, s, torch.Generator().manual_seed(i))
                       for i in range(4000)])  # fmt: skip
    for outcome in (0, 1, d.mask_id):
        freq = (draws == outcome).float().mean().item()
        x_s = torch.full((1, 1), outcome)
        prob = d.transition_log_prob(log_p0, x_t, x_s, t, s).exp().item()
        assert freq == pytest.approx(prob, abs=0.03)


def test_ddpo_raises_a_non_differentiable_reward():
    task = toy_task()
    base = task.reward.fn(task.generator.sample(512, torch.Generator().manual_seed(5))[0]).mean()
    ddpo(task, DDPOConfig(oracle_budget=128 * 15, batch_size=128, ppo_epochs=2, lr=3e-3))
    after = task.reward.fn(task.generator.sample(512, torch.Generator().manual_seed(5))[0]).mean()
    assert task.reward.calls == 128 * 15
    assert after > base + 0.15, (base, after)
    assert task.rows[0]["path_kl"] == pytest.approx(0.0, abs=1e-5)  # first round samples p_pre
    assert all(0.0 <= r["clip_fraction"] <= 1.0 for r in task.rows[:-1])


def test_gradient_stats_relative_variance():
    p = nn.Parameter(torch.zeros(2))
    stats = GradientStats()
    for g in ([1.0, 0.0], [3.0, 0.0]):  # mean (2, 0), spread E‖g − ḡ‖² = 1
        p.grad = torch.tensor(g)
        stats.add([p])
    assert stats.relative_variance() == pytest.approx(1.0 / 4.0)


def test_rgdm_data_mix_anchors_to_the_pretraining_data():
    """Batches drawn mostly from the (uniform) pretraining data hold the model nearer p_pre
    than the same rounds without data."""
    cfg = dict(oracle_budget=512, rounds=4, steps_per_round=60, batch_size=64, lr=3e-3, tau=0.05)
    data = torch.randint(V, (4096, L), generator=torch.Generator().manual_seed(1))
    results = {}
    for mix in (0.0, 0.75):
        task = toy_task()
        task.data = data if mix else None
        rgdm(task, RGDMConfig(**cfg, data_mix=mix))
        x, _ = task.generator.sample(1024, torch.Generator().manual_seed(5))
        results[mix] = task.reward.fn(x).mean()
    assert results[0.0] > 0.45 and results[0.75] < results[0.0] - 0.1, results
    with pytest.raises(ValueError, match="data_mix > 0 needs the pretraining data"):
        rgdm(toy_task(), RGDMConfig(oracle_budget=8, rounds=1, data_mix=0.5))
