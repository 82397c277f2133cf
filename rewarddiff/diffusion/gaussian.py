"""Gaussian (variance-preserving) diffusion maths shared by all continuous domains.

Convention: ``alpha_bar[t]`` is the *signal variance* (EDM's alpha_t^2), so for t = 0..T

    x_t = sqrt(alpha_bar[t]) * x_0 + sqrt(1 - alpha_bar[t]) * eps,   eps ~ N(0, I).

Below, alpha_t = sqrt(alpha_bar[t]) and sigma_t^2 = 1 - alpha_bar[t]. Tensors are batched along
the first dimension: ``x`` has shape (B, ...) and a timestep vector ``t`` has shape (B,), one step
per row (molecules pass per-node steps with x of shape (N, 3) and t of shape (N,)). An optional
``project`` hook keeps noise and states in a subspace (e.g. zero centre of mass per molecule);
it receives the tensor and an opaque ``context`` (e.g. a node-to-graph batch index).
"""

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor


def polynomial_schedule(num_steps: int, power: float = 2.0, s: float = 1e-5) -> Tensor:
    """EDM's polynomial schedule: alpha_bar (signal variance) of shape (num_steps + 1,), float64."""
    t = torch.arange(num_steps + 1, dtype=torch.float64)
    # alpha_bar(t) = (1 - (t/T)^power)^2
    alpha_bar = (1 - (t / num_steps) ** power) ** 2
    # clip per-step ratios alpha_bar_t / alpha_bar_{t-1} below at 0.001, then re-accumulate
    ratios = alpha_bar / torch.cat([torch.ones(1, dtype=torch.float64), alpha_bar[:-1]])
    alpha_bar = torch.cumprod(ratios.clamp(min=0.001, max=1.0), dim=0)
    # precision s keeps alpha_bar inside [s, 1 - s]
    return (1 - 2 * s) * alpha_bar + s


def cosine_schedule(num_steps: int, s: float = 0.008) -> Tensor:
    """Nichol & Dhariwal cosine schedule: alpha_bar of shape (num_steps + 1,), float64."""
    t = torch.arange(num_steps + 1, dtype=torch.float64)
    # f(t) = cos^2(pi/2 * (t/T + s) / (1 + s)), alpha_bar = f(t) / f(0)
    f = torch.cos((t / num_steps + s) / (1 + s) * math.pi / 2) ** 2
    alpha_bar = f / f[0]
    # beta_t = 1 - alpha_bar_t / alpha_bar_{t-1}, clipped at 0.999; alpha_bar = prod(1 - beta)
    betas = (1 - alpha_bar[1:] / alpha_bar[:-1]).clamp(max=0.999)
    return torch.cat([torch.ones(1, dtype=torch.float64), torch.cumprod(1 - betas, dim=0)])


@dataclass
class GaussianDiffusion:
    """VP diffusion with schedule ``alpha_bar`` (T + 1,) and an optional subspace projection."""

    alpha_bar: Tensor
    project: Callable[[Tensor, Any], Tensor] | None = None

    def __post_init__(self) -> None:
        self.alpha_bar = torch.as_tensor(self.alpha_bar, dtype=torch.float64)
        if self.alpha_bar.dim() != 1 or len(self.alpha_bar) < 2:
            raise ValueError("alpha_bar must be a 1-D tensor of shape (T + 1,) with T >= 1")

    @property
    def num_steps(self) -> int:
        """Number of diffusion steps T."""
        return len(self.alpha_bar) - 1

    def _project(self, x: Tensor, context: Any) -> Tensor:
        return x if self.project is None else self.project(x, context)

    def _rows(self, t: Tensor | int, x: Tensor) -> Tensor:
        """Integer steps as a long tensor of shape (B,), one per row of x."""
        return torch.as_tensor(t, device=x.device).long().expand(x.shape[0])

    def _at(self, t: Tensor | int, x: Tensor) -> Tensor:
        """alpha_bar[t] in float64, shaped (B, 1, ..., 1) to broadcast against x (B, ...)."""
        ab = self.alpha_bar.to(x.device)[self._rows(t, x)]
        return ab.view(-1, *([1] * (x.dim() - 1)))

    def signal(self, t: Tensor) -> Tensor:
        """alpha_t = sqrt(alpha_bar[t]) for integer steps t of shape (B,); float32 (B,)."""
        return self.alpha_bar.to(t.device)[t.long()].sqrt().float()

    def noise_std(self, t: Tensor) -> Tensor:
        """sigma_t = sqrt(1 - alpha_bar[t]) for integer steps t of shape (B,); float32 (B,)."""
        return (1 - self.alpha_bar.to(t.device)[t.long()]).sqrt().float()

    def sample_noise(
        self, shape_like: Tensor, context: Any = None, generator: torch.Generator | None = None
    ) -> Tensor:
        """Projected standard normal noise with the shape, dtype and device of ``shape_like``."""
        z = torch.randn(
            shape_like.shape, generator=generator, dtype=shape_like.dtype, device=shape_like.device
        )
        return self._project(z, context)

    def q_sample(self, x0: Tensor, t: Tensor | int, noise: Tensor) -> Tensor:
        """Forward marginal x_t = alpha_t x0 + sigma_t noise; x0, noise (B, ...), t (B,)."""
        ab = self._at(t, x0)
        return ab.sqrt().to(x0.dtype) * x0 + (1 - ab).sqrt().to(x0.dtype) * noise

    def epsilon_loss(self, eps_pred: Tensor, noise: Tensor) -> Tensor:
        """Per-row mean squared error between (B, ...) tensors; shape (B,)."""
        return (eps_pred - noise).pow(2).reshape(len(noise), -1).mean(1)

    def predict_x0(self, x_t: Tensor, t: Tensor | int, eps: Tensor) -> Tensor:
        """x0_hat = (x_t - sigma_t eps) / alpha_t; x_t, eps (B, ...), t (B,)."""
        ab = self._at(t, x_t)
        return (x_t - (1 - ab).sqrt().to(x_t.dtype) * eps) / ab.sqrt().to(x_t.dtype)

    def eps_from_v(self, x_t: Tensor, t: Tensor | int, v: Tensor) -> Tensor:
        """eps = alpha_t v + sigma_t x_t for a v-prediction v = alpha_t eps - sigma_t x0
        (Salimans & Ho 2022); x_t, v (B, ...), t (B,). Near t = T (alpha_t -> 0) the eps of a
        v-network is x_t plus alpha_t times its error, so coarse early sampling steps do not
        amplify the network's error as they do for a direct eps-prediction."""
        ab = self._at(t, x_t)
        return ab.sqrt().to(x_t.dtype) * v + (1 - ab).sqrt().to(x_t.dtype) * x_t

    def posterior_mean_var(
        self, x_t: Tensor, t: Tensor | int, s: Tensor | int, eps: Tensor
    ) -> tuple[Tensor, Tensor]:
        """Mean (B, ...) and variance (B,) of q(x_s | x_t, x0_hat) for steps s < t of shape (B,).

        With x0_hat = predict_x0(x_t, t, eps) this is the DDPM posterior for a jump t -> s,
        written through eps so that no x0 clipping is involved.
        """
        ab_t, ab_s = self._at(t, x_t), self._at(s, x_t)
        # alpha_{t|s}^2 = alpha_bar_t / alpha_bar_s
        a2_ts = ab_t / ab_s
        # sigma_{t|s}^2 = sigma_t^2 - alpha_{t|s}^2 sigma_s^2
        var_ts = (1 - ab_t) - a2_ts * (1 - ab_s)
        # mean = (x_t - sigma_{t|s}^2 / sigma_t * eps) / alpha_{t|s}
        eps_coef = (var_ts / (1 - ab_t).sqrt()).to(x_t.dtype)
        mean = (x_t - eps_coef * eps) / a2_ts.sqrt().to(x_t.dtype)
        # var = sigma_{t|s}^2 sigma_s^2 / sigma_t^2
        var = var_ts * (1 - ab_s) / (1 - ab_t)
        return mean, var.reshape(-1).to(x_t.dtype)

    def _step_noise(
        self,
        x: Tensor,
        s: Tensor | int,
        context: Any,
        generator: torch.Generator | None,
        noise: Tensor | None = None,
    ) -> Tensor:
        """Projected noise z of x's shape, zeroed on rows where s == 0 (the final step)."""
        z = (
            self.sample_noise(x, context, generator)
            if noise is None
            else self._project(noise, context)
        )
        keep = (self._rows(s, x) != 0).to(x.dtype)
        return z * keep.view(-1, *([1] * (x.dim() - 1)))

    def ddpm_step(
        self,
        x_t: Tensor,
        t: Tensor | int,
        s: Tensor | int,
        eps: Tensor,
        context: Any = None,
        generator: torch.Generator | None = None,
        noise: Tensor | None = None,
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Ancestral step t -> s. Returns (x_s, mean, var) with shapes (B, ...), (B, ...), (B,).

        x_s = mean + sqrt(var) z with z projected noise (or ``noise`` if given, projected);
        rows with s == 0 get z = 0, so x_0 is the posterior mean. ``var`` is the posterior
        variance regardless, as needed for per-step KL terms.
        """
        mean, var = self.posterior_mean_var(x_t, t, s, eps)
        mean = self._project(mean, context)
        z = self._step_noise(x_t, s, context, generator, noise)
        # x_s = mean + sqrt(var) z stays in the subspace since mean and z do
        x_s = mean + var.sqrt().view(-1, *([1] * (x_t.dim() - 1))) * z
        return x_s, mean, var

    def ddim_step(
        self,
        x_t: Tensor,
        t: Tensor | int,
        s: Tensor | int,
        eps: Tensor,
        eta: float = 0.0,
        context: Any = None,
        generator: torch.Generator | None = None,
        noise: Tensor | None = None,
    ) -> Tensor:
        """DDIM step t -> s for x_t, eps (B, ...); returns x_s (B, ...).

        eta = 0 is deterministic; eta = 1 injects the DDPM posterior variance (and then equals
        ``ddpm_step`` for the same noise). Rows with s == 0 get no noise.
        """
        ab_t, ab_s = self._at(t, x_t), self._at(s, x_t)
        x0_hat = self.predict_x0(x_t, t, eps)
        # sigma_eta^2 = eta^2 * sigma_{t|s}^2 sigma_s^2 / sigma_t^2
        var_eta = eta**2 * ((1 - ab_t) - ab_t / ab_s * (1 - ab_s)) * (1 - ab_s) / (1 - ab_t)
        # x_s = alpha_s x0_hat + sqrt(sigma_s^2 - sigma_eta^2) eps + sigma_eta z
        dir_coef = ((1 - ab_s) - var_eta).clamp(min=0).sqrt().to(x_t.dtype)
        x_s = ab_s.sqrt().to(x_t.dtype) * x0_hat + dir_coef * eps
        if eta > 0:
            z = self._step_noise(x_t, s, context, generator, noise)
            x_s = x_s + var_eta.sqrt().to(x_t.dtype) * z
        return self._project(x_s, context)

    @staticmethod
    def gaussian_kl(mean_p: Tensor, mean_q: Tensor, var: Tensor | float) -> Tensor:
        """KL(N(mean_p, var I) || N(mean_q, var I)) per row: sum (mean_p - mean_q)^2 / (2 var).

        This is the per-step KL between a fine-tuned and a reference model's reverse transitions,
        which share the posterior variance. Means are (B, ...), var is (B,) or a scalar and must
        be positive; the result has shape (B,). For projected states the sum should run over
        subspace coordinates; for the zero-CoM projection (orthogonal) this equals the full sum
        of squared differences of the projected means.
        """
        sq = (mean_p - mean_q).pow(2).reshape(len(mean_p), -1).sum(1)
        return sq / (2 * var)

    def timesteps(self, num_sampling_steps: int | None = None) -> list[int]:
        """Decreasing, unique, evenly spaced integer grid from T down to 0 (both included)."""
        n = self.num_steps if num_sampling_steps is None else num_sampling_steps
        if n < 1:
            raise ValueError(f"num_sampling_steps must be >= 1, got {n}")
        return sorted({round(self.num_steps * i / n) for i in range(n + 1)}, reverse=True)
