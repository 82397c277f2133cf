"""rcgdm: reward-conditioned diffusion from a small labelled subset and pseudo-labels."""

import pytest
import torch
from toys import ConditionalToyNet, L, ToyRegressor, V, toy_task

from rewarddiff import UserError
from rewarddiff.diffusion.masked import MaskedDiffusion
from rewarddiff.finetune.rcgdm import RCGDMConfig, rcgdm
from rewarddiff.generator import MaskedSequenceGenerator, load_unconditional_weights


def value_conditioned(task):
    net = ConditionalToyNet()
    load_unconditional_weights(net, task.generator.net.state_dict())
    task.generator = MaskedSequenceGenerator(MaskedDiffusion(V), net, L, sampling_steps=8,
                                             sample_batch=512)  # fmt: skip
    task.reward_network = ToyRegressor
    return task


def test_rcgdm_reward_rises_with_the_target_value(tmp_path):
    """Uniform data, reward = fraction of token 0 (mean 0.25, std 0.153 over the data). Sampling
    at a = mean + z·std must track the target: near 0.25 at z = 0, rising with z."""
    task = value_conditioned(toy_task(log_path=tmp_path / "log.csv"))
    data = torch.randint(V, (4096, L), generator=torch.Generator().manual_seed(1))
    cfg = RCGDMConfig(oracle_budget=256, noise=0.05, reward_steps=300, reward_lr=1e-2,
                      steps=600, batch_size=128, lr=3e-3, target=2.0, sweep=[0.0, 1.0, 2.0],
                      sweep_samples=512)  # fmt: skip
    task.data = data
    rcgdm(task, cfg)
    assert task.reward.calls == 256  # the labelled subset only; the sweep is evaluation
    labelled, *sweep, final = task.rows
    assert labelled["stage"] == "labelled" and labelled["reward_fit_r"] > 0.9
    achieved = [row["reward_mean"] for row in sweep]
    assert achieved[0] == pytest.approx(0.25, abs=0.05)
    assert achieved[0] < achieved[1] < achieved[2] and achieved[2] > 0.45, achieved
    assert sweep[2]["path_kl"] > sweep[0]["path_kl"]  # extrapolation moves away from p_pre
    x, _ = task.generator.sample(512, torch.Generator().manual_seed(2))  # default: a at z = 2
    assert (x == 0).float().mean().item() == pytest.approx(achieved[2], abs=0.06)
    assert task.generator.condition.kind == "value"
    assert final["stage"] == "target" and final["target_z"] == 2.0


def test_rcgdm_needs_data_and_a_reward_network():
    with pytest.raises(UserError, match="pretraining data"):
        rcgdm(toy_task(), RCGDMConfig(oracle_budget=8))
