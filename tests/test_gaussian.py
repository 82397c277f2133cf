import itertools
import math

import pytest
import torch

from rewarddiff.diffusion.gaussian import GaussianDiffusion, cosine_schedule, polynomial_schedule
from rewarddiff.gaussian_generator import Frame, GaussianGenerator, VectorLayout


def _remove_row_mean(x, context):
    return x - x.mean(dim=1, keepdim=True)


@pytest.mark.parametrize("schedule", [polynomial_schedule, cosine_schedule])
def test_schedule_shape_and_monotonicity(schedule):
    ab = schedule(1000)
    assert ab.shape == (1001,) and ab.dtype == torch.float64
    assert abs(ab[0].item() - 1) < 1e-4
    assert (ab[1:] < ab[:-1]).all()
    assert (ab > 0).all() and (ab <= 1).all()
    assert ab[-1] < 1e-3


def test_polynomial_schedule_hand_values():
    T, s = 1000, 1e-5
    ab = polynomial_schedule(T, power=2.0, s=s)

    def expected(alpha):
        return (1 - 2 * s) * alpha + s

    assert ab[0].item() == pytest.approx(expected(1.0), abs=1e-9)
    assert ab[1].item() == pytest.approx(expected((1 - (1 / T) ** 2) ** 2), abs=1e-9)
    assert ab[500].item() == pytest.approx(expected((1 - 0.5**2) ** 2), abs=1e-9)
    # the last ratio alpha(T) / alpha(T-1) = 0 is clipped to 0.001
    last = 0.001 * (1 - (999 / T) ** 2) ** 2
    assert ab[T].item() == pytest.approx(expected(last), abs=1e-12)
    ab3 = polynomial_schedule(T, power=3.0, s=s)
    assert ab3[250].item() == pytest.approx(expected((1 - 0.25**3) ** 2), abs=1e-9)


def test_cosine_schedule_hand_values():
    T, s = 1000, 0.008

    def f(t):
        return math.cos((t / T + s) / (1 + s) * math.pi / 2) ** 2

    ab = cosine_schedule(T, s=s)
    assert ab[0].item() == 1.0
    assert ab[500].item() == pytest.approx(f(500) / f(0), abs=1e-9)
    # final beta is clipped at 0.999
    assert ab[T].item() == pytest.approx(0.001 * ab[T - 1].item(), rel=1e-9)


def test_timesteps_grid():
    diff = GaussianDiffusion(polynomial_schedule(100))
    assert diff.num_steps == 100
    assert diff.timesteps() == list(range(100, -1, -1))
    for n in (1, 7, 33, 100, 250):
        grid = diff.timesteps(n)
        assert grid[0] == 100 and grid[-1] == 0
        assert all(a > b for a, b in itertools.pairwise(grid))
        assert len(grid) == min(n, 100) + 1
    assert diff.timesteps(4) == [100, 75, 50, 25, 0]
    with pytest.raises(ValueError):
        diff.timesteps(0)


def test_signal_and_noise_std():
    diff = GaussianDiffusion(polynomial_schedule(50))
    t = torch.tensor([0, 10, 50])
    a, sg = diff.signal(t), diff.noise_std(t)
    assert a.shape == (3,) and a.dtype == torch.float32 and sg.dtype == torch.float32
    torch.testing.assert_close(a**2 + sg**2, torch.ones(3))
    torch.testing.assert_close(a**2, diff.alpha_bar[t].float())


def test_q_sample_marginal():
    diff = GaussianDiffusion(cosine_schedule(500))
    g = torch.Generator().manual_seed(0)
    x0 = torch.tensor([[-1.0, 0.5, 2.0]]).expand(50_000, 3)
    t = torch.full((50_000,), 300)
    x_t = diff.q_sample(x0, t, diff.sample_noise(x0, generator=g))
    a, sg = diff.signal(t[:1]), diff.noise_std(t[:1])
    torch.testing.assert_close(x_t.mean(0), a * x0[0], atol=0.02, rtol=0)
    torch.testing.assert_close(x_t.std(0), sg.expand(3), atol=0.02, rtol=0)


def test_epsilon_loss_and_predict_x0():
    diff = GaussianDiffusion(cosine_schedule(100))
    g = torch.Generator().manual_seed(1)
    x0 = torch.randn(4, 2, 3, generator=g)
    noise = torch.randn(4, 2, 3, generator=g)
    t = torch.tensor([1, 20, 60, 99])
    x_t = diff.q_sample(x0, t, noise)
    torch.testing.assert_close(diff.predict_x0(x_t, t, noise), x0, atol=1e-4, rtol=1e-4)
    loss = diff.epsilon_loss(noise + 2.0, noise)
    assert loss.shape == (4,)
    torch.testing.assert_close(loss, torch.full((4,), 4.0))


@pytest.mark.parametrize("schedule", [polynomial_schedule, cosine_schedule])
def test_posterior_matches_classic_ddpm(schedule):
    diff = GaussianDiffusion(schedule(100))
    ab = diff.alpha_bar
    g = torch.Generator().manual_seed(2)
    t = torch.tensor([1, 2, 37, 100])
    x_t = torch.randn(4, 5, generator=g, dtype=torch.float64)
    eps = torch.randn(4, 5, generator=g, dtype=torch.float64)
    mean, var = diff.posterior_mean_var(x_t, t, t - 1, eps)

    ab_t, ab_prev = ab[t][:, None], ab[t - 1][:, None]
    beta = 1 - ab_t / ab_prev
    x0 = (x_t - (1 - ab_t).sqrt() * eps) / ab_t.sqrt()
    expected_mean = (
        ab_prev.sqrt() * beta / (1 - ab_t) * x0
        + (1 - beta).sqrt() * (1 - ab_prev) / (1 - ab_t) * x_t
    )
    expected_var = ((1 - ab_prev) / (1 - ab_t) * beta)[:, 0]
    assert var.shape == (4,)
    torch.testing.assert_close(mean, expected_mean, atol=1e-8, rtol=1e-6)
    torch.testing.assert_close(var, expected_var, atol=1e-12, rtol=1e-9)


def test_ddpm_step_final_rows_are_noise_free():
    diff = GaussianDiffusion(polynomial_schedule(20))
    x_t = torch.randn(3, 4, generator=torch.Generator().manual_seed(3))
    eps = 0.5 * x_t
    t, s = torch.tensor([5, 5, 5]), torch.tensor([0, 2, 0])
    x_s, mean, var = diff.ddpm_step(x_t, t, s, eps, noise=torch.ones(3, 4))
    assert (var > 0).all()
    torch.testing.assert_close(x_s[[0, 2]], mean[[0, 2]])
    torch.testing.assert_close(x_s[1], mean[1] + var[1].sqrt())


def test_ddim_deterministic_and_exact_with_true_noise():
    diff = GaussianDiffusion(cosine_schedule(100))
    g = torch.Generator().manual_seed(4)
    x0 = torch.randn(6, 3, generator=g, dtype=torch.float64)
    noise = torch.randn(6, 3, generator=g, dtype=torch.float64)
    t = torch.tensor([100, 90, 50, 10, 3, 1])
    x_t = diff.q_sample(x0, t, noise)
    zero = torch.zeros(6, dtype=torch.long)
    out1 = diff.ddim_step(x_t, t, zero, noise, generator=torch.Generator().manual_seed(0))
    out2 = diff.ddim_step(x_t, t, zero, noise, generator=torch.Generator().manual_seed(1))
    assert torch.equal(out1, out2)
    torch.testing.assert_close(out1, x0, atol=1e-6, rtol=1e-6)
    # intermediate jumps land on the same forward trajectory
    s = t // 2
    expected = diff.q_sample(x0, s, noise)
    torch.testing.assert_close(diff.ddim_step(x_t, t, s, noise), expected)


def test_ddim_eta_one_equals_ddpm_step():
    diff = GaussianDiffusion(polynomial_schedule(100))
    g = torch.Generator().manual_seed(5)
    x_t, eps, z = (torch.randn(4, 3, generator=g, dtype=torch.float64) for _ in range(3))
    t, s = torch.tensor([100, 60, 20, 7]), torch.tensor([80, 30, 19, 0])
    ddpm = diff.ddpm_step(x_t, t, s, eps, noise=z)[0]
    torch.testing.assert_close(diff.ddim_step(x_t, t, s, eps, eta=1.0, noise=z), ddpm)
    # the injected noise scales as eta * sqrt(posterior variance), none on rows with s == 0
    var = diff.posterior_mean_var(x_t, t, s, eps)[1]
    half = diff.ddim_step(x_t, t, s, eps, eta=0.5, noise=z)
    half_no_noise = diff.ddim_step(x_t, t, s, eps, eta=0.5, noise=torch.zeros_like(z))
    torch.testing.assert_close(
        half - half_no_noise, 0.5 * var.sqrt()[:, None] * z * (s > 0)[:, None]
    )


def test_gaussian_kl():
    mean = torch.randn(3, 4, 2)
    torch.testing.assert_close(GaussianDiffusion.gaussian_kl(mean, mean, 0.1), torch.zeros(3))
    p = torch.tensor([[1.0, 2.0], [0.0, -3.0]])
    q = torch.tensor([[0.0, 0.0], [1.0, -1.0]])
    kl = GaussianDiffusion.gaussian_kl(p, q, torch.tensor([0.5, 2.0]))
    torch.testing.assert_close(kl, torch.tensor([5.0 / 1.0, 5.0 / 4.0]))


class Denoiser(torch.nn.Module):
    """A fixed ε-function ``fn(x_t, integer steps)`` as a generator's network."""

    def __init__(self, fn, num_steps):
        super().__init__()
        self.fn, self.num_steps = fn, num_steps
        self.unused = torch.nn.Parameter(torch.zeros(()))  # gives the generator a device

    def forward(self, x, t, label=None):
        return self.fn(x, (t * self.num_steps).round())


@pytest.mark.parametrize(("sampler", "steps"), [("ddpm", 200), ("ddim", 50)])
def test_sample_reproduces_gaussian_data(sampler, steps):
    m, v = 1.5, 0.25
    diff = GaussianDiffusion(polynomial_schedule(200))

    def exact_eps(x_t, t):
        # E[eps | x_t] = sigma_t (x_t - alpha_t m) / (alpha_t^2 v + sigma_t^2)
        a, sg = diff.signal(t.long())[:, None], diff.noise_std(t.long())[:, None]
        return sg * (x_t - a * m) / (a**2 * v + sg**2)

    gen = GaussianGenerator(diff, Denoiser(exact_eps, 200), VectorLayout((1,)),
                            sampling_steps=steps, sample_batch=20_000, sampler=sampler)  # fmt: skip
    x, _ = gen.sample(20_000, torch.Generator().manual_seed(0))
    assert x.shape == (20_000, 1)
    assert abs(x.mean().item() - m) < 0.03
    assert abs(x.var().item() / v - 1) < 0.08


class RowMeanLayout(VectorLayout):
    """Point sets (5, 3) with zero mean over the points: a projected state subspace."""

    def project(self, x, frame):
        assert isinstance(frame, Frame)
        return _remove_row_mean(x, frame)


def test_projection_keeps_states_in_subspace():
    seen = []

    def denoise(x_t, t):
        assert t.shape == (4,)
        seen.append(x_t.mean(dim=1).abs().max().item())
        return 0.3 * x_t + 1.0  # deliberately not in the subspace

    diff = GaussianDiffusion(cosine_schedule(30))
    g = torch.Generator().manual_seed(6)
    for sampler in ("ddpm", "ddim"):
        gen = GaussianGenerator(diff, Denoiser(denoise, 30), RowMeanLayout((5, 3)),
                                sampling_steps=30, sampler=sampler)  # fmt: skip
        x, _ = gen.sample(4, g)
        assert x.mean(dim=1).abs().max() < 1e-5 and x.std() > 0.1
    assert len(seen) == 60 and max(seen) < 1e-5

    # the diffusion's own hook: a step's mean and noise stay in the subspace
    diff = GaussianDiffusion(cosine_schedule(30), project=_remove_row_mean)
    x_t = _remove_row_mean(torch.randn(4, 5, 3, generator=g), None)
    x_s, mean, _ = diff.ddpm_step(x_t, torch.full((4,), 10), torch.full((4,), 9), x_t + 1.0)
    assert x_s.mean(dim=1).abs().max() < 1e-5 and mean.mean(dim=1).abs().max() < 1e-5
