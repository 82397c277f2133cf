"""GaussianGenerator over plain vectors (VectorLayout): a fit to N(0, 1) and its ELBO, path
KLs, differentiable sampling, per-step log-probabilities, classifier-free guidance, the saved
default condition, and draft / ddpo running on it."""

import copy
import dataclasses
import math

import pytest
import torch
from torch import nn
from toys import MLP, T, fit_normal_1d, make, seeded

from rewarddiff import UserError
from rewarddiff.conditioning import ClassCondition, ValueCondition
from rewarddiff.finetune import CountingReward, FinetuneTask
from rewarddiff.finetune.ddpo import DDPOConfig, ddpo
from rewarddiff.finetune.draft import DraftConfig, draft
from rewarddiff.gaussian_generator import Frame, GaussianGenerator

LOG_2PI = math.log(2 * math.pi)


class ExactNormal(nn.Module):
    """The optimal ε̂ for N(0, I) data: E[ε | x_t] = σ_t·x_t."""

    def __init__(self, alpha_bar):
        super().__init__()
        self.alpha_bar = alpha_bar.float()
        self.unused = nn.Parameter(torch.zeros(()))  # gives the generator a device

    def forward(self, x, t, label=None):
        sigma = (1 - self.alpha_bar[(t * T).round().long()]).sqrt()
        return sigma.view(-1, *[1] * (x.dim() - 1)) * x


def perturbed(gen: GaussianGenerator, scale: float = 0.05) -> GaussianGenerator:
    """A frozen copy with noise added to every weight."""
    ref, g = gen.frozen_copy(), seeded(123)
    with torch.no_grad():
        for p in ref.net.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g))
    return ref


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny ops: see conftest.py


@pytest.fixture(scope="module")
def normal_1d():
    return fit_normal_1d()


@pytest.fixture
def points():
    """An untrained generator of (4, 3) point sets."""
    torch.manual_seed(0)
    return make((4, 3), MLP(12))


def test_fit_to_a_standard_normal_samples_and_scores_it(normal_1d):
    x, kl = normal_1d.sample(4000, seeded(1))
    assert x.shape == (4000, 1) and kl is None
    assert abs(x.mean().item()) < 0.1 and abs(x.std().item() - 1) < 0.1
    held = torch.randn(4000, 1, generator=seeded(2))
    elbo = normal_1d.log_likelihood(held, num_t=64, generator=seeded(3))
    gap = (elbo - (-0.5 * held[:, 0] ** 2 - 0.5 * LOG_2PI)).mean().item()
    assert -0.15 < gap < 0.03  # a lower bound on E log N(x; 0, 1) = −1.419, and close to it
    # and it tracks the density's shape: log N(±2.5) − log N(0) = −3.125
    grid = torch.tensor([[0.0], [2.5], [-2.5]]).repeat_interleave(2000, 0)
    ll = normal_1d.log_likelihood(grid, num_t=64, generator=seeded(4)).view(3, -1).mean(1)
    torch.testing.assert_close(ll[1:] - ll[0], torch.full((2,), -3.125), atol=0.25, rtol=0)


def test_elbo_of_the_exact_denoiser_matches_its_closed_form():
    """With ε̂ = σ_t x_t, E_ε‖ε − ε̂‖² = α_t⁴·D + σ_t²α_t²‖x‖² per step, so the expected bound
    is known for every x; for N(0, I) data it also lies just below the true log density."""
    d, n = 2, 4000
    gen = make((d,), None, s=1e-2, sample_batch=4096)
    gen = dataclasses.replace(gen, net=ExactNormal(gen.diffusion.alpha_bar))
    x = torch.randn(n, d, generator=seeded(0))
    elbo = gen.log_likelihood(x, num_t=64, generator=seeded(1))
    ab = gen.diffusion.alpha_bar
    x2 = x.double().pow(2).sum(1)

    def err(t):  # E_ε‖ε − σ_t z_t‖² given x
        return ab[t] ** 2 * d + (1 - ab[t]) * ab[t] * x2

    snr = ab / (1 - ab)
    diffusion = sum(0.5 * (snr[t - 1] / snr[t] - 1) * err(t) for t in range(1, T + 1))
    prior = 0.5 * (ab[T] * x2 + d * ((1 - ab[T]) - 1 - torch.log(1 - ab[T])))
    recon = -0.5 * err(0) - d * (0.5 * torch.log((1 - ab[0]) / ab[0]) + 0.5 * LOG_2PI)
    expected = (recon - prior - diffusion).mean().item()
    assert elbo.shape == (n,)
    assert elbo.mean().item() == pytest.approx(expected, abs=0.05)
    true = (-0.5 * x2 - 0.5 * d * LOG_2PI).mean().item()
    assert true - 0.1 * d < expected < true


def test_path_kl_and_reproducibility(points):
    x, kl_self = points.sample(48, seeded(0), points.frozen_copy())
    assert x.shape == (48, 4, 3) and kl_self.shape == (48,)
    assert torch.equal(kl_self, torch.zeros(48))
    x_again, kl = points.sample(48, seeded(0), perturbed(points))
    assert torch.equal(x_again, x) and (kl > 0).all()
    small_batches = dataclasses.replace(points, sample_batch=16)
    x, kl = small_batches.sample(40, seeded(1), perturbed(points))
    assert x.shape == (40, 4, 3) and kl.shape == (40,)
    assert torch.equal(small_batches.sample(40, seeded(1))[0], x)


def test_sample_differentiable_draws_as_sample_and_backpropagates(points):
    ref = perturbed(points)
    x, kl = points.sample(32, seeded(0), ref)
    x_diff, kl_diff = points.sample_differentiable(32, 3, ref, generator=seeded(0))
    torch.testing.assert_close(points.discrete(x_diff), x)
    torch.testing.assert_close(kl_diff.detach(), kl)
    (x_diff.sum() + kl_diff.sum()).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in points.net.parameters())
    # no steps with gradient: the same draws, nothing to back-propagate
    x_none, kl_none = points.sample_differentiable(32, 0, ref, generator=seeded(0))
    assert not x_none.requires_grad and not kl_none.requires_grad
    torch.testing.assert_close(x_none, x_diff.detach())


def test_step_log_prob_is_the_sampler_transition_density(points):
    """Over x_s ~ p = N(mean, var·I) (D = 12), log p(x_s) = c − ½χ²_D: its mean is −H(p) =
    −D/2·(1 + log 2π var) (E_p log q < −H(p) for any q ≠ p) and its variance D/2."""
    states, grid, _ = points.sample_trajectory(4000, seeded(0))
    assert grid == points.diffusion.timesteps(20) and len(states) == len(grid)
    for x_t, x_s, t, s in zip(states, states[1:], grid, grid[1:]):
        log_p = points.step_log_prob(x_t, x_s, t, s).detach()
        if s == 0:  # the final step is deterministic
            assert torch.equal(log_p, torch.zeros(4000))
            continue
        var = points.diffusion.posterior_mean_var(x_t.state[:1], t, s, x_t.state[:1])[1].item()
        entropy = 0.5 * 12 * (1 + math.log(2 * math.pi * var))
        assert log_p.mean().item() == pytest.approx(-entropy, abs=0.15)
        assert log_p.var().item() == pytest.approx(6.0, abs=0.75)


def test_trajectory_is_the_sample_and_step_kls_sum_to_its_path_kl(points):
    ref = perturbed(points)
    x, kl = points.sample(32, seeded(0), ref)
    states, grid, designs = points.sample_trajectory(32, seeded(0))
    torch.testing.assert_close(states[-1].state.cpu(), x)
    torch.testing.assert_close(designs, x)
    steps = list(zip(states, grid, grid[1:]))
    total = sum(points.step_kl(x_t, t, s, ref) for x_t, t, s in steps)
    torch.testing.assert_close(total.detach(), kl)
    total.sum().backward()
    assert all(p.grad is not None for p in points.net.parameters())
    final = points.step_log_prob(states[-2], states[-1], grid[-2], 0)
    assert final.requires_grad and torch.equal(final.detach(), torch.zeros(32))


@pytest.mark.parametrize("kind", ["class", "value"])
def test_classifier_free_guidance(kind):
    torch.manual_seed(0)
    if kind == "class":  # 3 classes, index 3 = no label
        label, gen = torch.arange(32) % 3, make((4, 3), MLP(12, label_dim=4), num_labels=3)
    else:  # a scalar condition, NaN = no value
        label, gen = torch.linspace(-1, 1, 32), make((4, 3), MLP(12, label_dim=2))
    plain = gen.sample(32, seeded(0), label=label)[0]
    torch.testing.assert_close(gen.sample(32, seeded(0), label=label, guidance=0.0)[0], plain)
    gen.net.seen.clear()
    guided = gen.sample(32, seeded(0), label=label, guidance=2.0)[0]
    assert not torch.allclose(guided, plain, atol=1e-3)
    cond, null = gen.net.seen[:2]
    assert torch.equal(cond, label)
    assert (null == 3).all() if kind == "class" else null.isnan().all()
    # guiding toward "no label" is the unconditional model: (1 + w)·ε(∅) − w·ε(∅) = ε(∅)
    torch.testing.assert_close(
        gen.sample(32, seeded(1), label=null, guidance=2.0)[0],
        gen.sample(32, seeded(1), label=null)[0],
        atol=1e-4,
        rtol=1e-4,
    )
    # without a label: the condition set by ctrl / rcgdm, at its guidance; saved and reloaded
    target = label[5].item()
    if kind == "class":
        gen.condition = ClassCondition(
            target=target, guidance=2.0, names=["c"], classes=[list("abc")]
        )
    else:
        gen.condition = ValueCondition(target=target, guidance=2.0, mean=1.0, std=0.5)
    saved = gen.saved_config()
    gen.condition = None
    gen.load_config(saved)
    assert "condition" not in gen.config and gen.saved_config() == saved
    torch.testing.assert_close(
        gen.sample(32, seeded(2))[0],
        gen.sample(32, seeded(2), label=torch.full_like(label, target), guidance=2.0)[0],
    )


def finetune_task(gen: GaussianGenerator) -> FinetuneTask:
    """Fine-tune a copy of ``gen`` (20 sampling steps) to raise its single coordinate."""
    gen = dataclasses.replace(gen, net=copy.deepcopy(gen.net), sampling_steps=20)
    reward = CountingReward(lambda x: x[:, 0].numpy(), torch_fn=lambda x: x[:, 0])
    return FinetuneTask(gen, gen.frozen_copy(), reward, lambda x: float(x.std()))


def test_ddpo_runs_on_a_gaussian_generator(normal_1d):
    task = finetune_task(normal_1d)
    before = task.generator.sample(1000, seeded(9))[0].mean().item()
    ddpo(task, DDPOConfig(oracle_budget=64 * 8, batch_size=64, lr=1e-3))
    after = task.generator.sample(1000, seeded(9))[0].mean().item()
    assert after > before + 1.0, (before, after)
    assert task.rows[0]["path_kl"] == pytest.approx(0.0, abs=1e-6)  # round 0 samples p_pre
    assert task.rows[-1]["path_kl"] > 0


def test_draft_runs_on_a_gaussian_generator(normal_1d):
    task = finetune_task(normal_1d)
    before = task.generator.sample(1000, seeded(9))[0].mean().item()
    draft(task, DraftConfig(oracle_budget=32 * 20, batch_size=32, grad_steps=5, lr=1e-3))
    after = task.generator.sample(1000, seeded(9))[0].mean().item()
    assert after > before + 1.0, (before, after)
    assert task.rows[-1]["path_kl"] > 0


class Zero(nn.Module):
    """A network that outputs zeros plus an optional fixed error (B, *shape)."""

    def __init__(self, error: torch.Tensor | None = None):
        super().__init__()
        self.error = error
        self.unused = nn.Parameter(torch.zeros(()))

    def forward(self, x, t, label=None):
        return torch.zeros_like(x) if self.error is None else self.error.expand_as(x)


def test_v_prediction_is_exact_for_normal_data_and_damps_early_errors():
    """For N(0, I) data E[v | x_t] = α_t σ_t x_t − σ_t α_t x_t = 0: a zero v-network is the
    exact denoiser (ε = σ_t x_t), scores and samples N(0, 1). An output error δ on the first
    coarse step T → s moves an ε-network's mean by σ²_{t|s}/(σ_t α_{t|s})·δ but a v-network's
    by α_t times that: the v-network's early steps do not amplify its error."""
    base = make((2,), None, s=1e-2, sampling_steps=T, sample_batch=4096)
    exact = dataclasses.replace(base, net=ExactNormal(base.diffusion.alpha_bar))
    zero_v = dataclasses.replace(base, net=Zero(), prediction="v")
    x, t = torch.randn(64, 2, generator=seeded(0)), torch.randint(0, T + 1, (64,))
    frame = Frame(len(x))
    torch.testing.assert_close(zero_v._eps(x, t, frame), exact._eps(x, t, frame))
    held = torch.randn(2000, 2, generator=seeded(1))
    torch.testing.assert_close(
        zero_v.log_likelihood(held, num_t=8, generator=seeded(2)),
        exact.log_likelihood(held, num_t=8, generator=seeded(2)),
    )
    samples = zero_v.sample(4000, seeded(3))[0]
    assert abs(samples.mean().item()) < 0.05 and abs(samples.std().item() - 1) < 0.05

    coarse = make((2,), None, sampling_steps=5)  # s = 1e-5: α_T ≈ 0.003
    delta = torch.full((1, 2), 0.05)
    t, s = coarse.diffusion.timesteps(5)[:2]

    def mean_shift(prediction):
        good = dataclasses.replace(coarse, net=Zero(), prediction=prediction)
        bad = dataclasses.replace(coarse, net=Zero(delta), prediction=prediction)
        means = [
            coarse.diffusion.posterior_mean_var(x, t, s, g._eps(x, t, Frame(len(x))))[0]
            for g in (good, bad)
        ]
        return (means[1] - means[0]).abs().max().item()

    alpha_t = coarse.diffusion.signal(torch.tensor([t])).item()
    assert mean_shift("epsilon") > 0.5  # 0.05 amplified ten-fold in one step
    assert mean_shift("v") == pytest.approx(alpha_t * mean_shift("epsilon"), rel=1e-3)
    with pytest.raises(UserError, match="unknown prediction"):
        dataclasses.replace(base, prediction="x0")


def test_ddim_sampler_keeps_the_fit(normal_1d):
    """DDIM (η = 0): no path KL, reproducible for a seed, and the fitted N(0, 1) survives
    sampling in 20 deterministic steps."""
    ddim = dataclasses.replace(normal_1d, sampler="ddim", sampling_steps=20)
    x, kl = ddim.sample(4096, seeded(0))
    assert kl is None and torch.isfinite(x).all()
    assert x.mean().item() == pytest.approx(0.0, abs=0.1)
    assert x.std().item() == pytest.approx(1.0, abs=0.1)
    first, _ = ddim.sample(8, seeded(1))
    torch.testing.assert_close(ddim.sample(8, seeded(1))[0], first)
    # KLs and ddpo's trajectories need the Gaussian steps: DDIM is for plain sampling only
    ddpm = dataclasses.replace(ddim, sampler="ddpm")
    reference = perturbed(ddpm)
    for a, b in zip(ddim.sample(8, seeded(2), reference), ddpm.sample(8, seeded(2), reference)):
        torch.testing.assert_close(a, b)
    states, _, x = ddim.sample_trajectory(8, seeded(3))
    torch.testing.assert_close(x, ddpm.sample(8, seeded(3))[0])
    with pytest.raises(UserError, match="unknown sampler"):
        dataclasses.replace(normal_1d, sampler="euler")
