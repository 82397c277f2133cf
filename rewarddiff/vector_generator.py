"""Gaussian (VP) diffusion over continuous designs of a fixed shape, bound to an ε-network.

Designs are float tensors (B, *shape), e.g. (B, D) vectors or (B, N, 3) point sets, diffused with
the VP maths of :mod:`rewarddiff.diffusion.gaussian` (no subspace projection). The network is
called ``net(x_t, t, label) -> ε̂`` (x_t's shape) with x_t (B, *shape), t (B,) float32 = integer
step / T in [0, 1] and label None or (B,): a class index (long; ``num_labels`` = no label) or a
value (float; NaN = no value), passed through unchanged. Implements the generator interface of
the fine-tuning methods: ``sample``, ``loss``, ``log_likelihood``, ``sample_differentiable``
(draft) and ``sample_trajectory`` / ``step_log_prob`` / ``step_kl`` (ddpo). Every random draw
comes from the passed ``torch.Generator`` on its own device and is then moved to the model's,
so results are reproducible whatever device the network runs on.

Path KL: the sum of per-step Gaussian KLs along the chain. The final step t → 0 outputs its
posterior mean without noise but is still charged as a Gaussian step with its (small) posterior
variance, so a model that shifts its last denoising step pays for it; leaving the step out would
let fine-tuning move the designs at no KL cost.
"""

from __future__ import annotations

import contextlib
import itertools
import math
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from rewarddiff.diffusion import null_label
from rewarddiff.diffusion.gaussian import GaussianDiffusion
from rewarddiff.generator import NetworkGenerator


@dataclass
class GaussianVectorGenerator(NetworkGenerator):
    diffusion: GaussianDiffusion
    net: nn.Module
    shape: tuple[int, ...]  # of one design
    sampling_steps: int = 100
    sample_batch: int = 256
    config: dict = field(default_factory=dict)  # rebuilds ``net`` (saved with the weights)
    num_labels: int = 0  # class labels 0..num_labels − 1; index num_labels = no label (CFG)
    sampler: str = "ddpm"  # or "ddim" (deterministic, η = 0) for plain sampling
    prediction: str = "epsilon"  # what the network outputs: ε, or v (then ε = α_t v + σ_t x_t)

    def __post_init__(self):
        if self.diffusion.project is not None:
            raise ValueError("GaussianVectorGenerator needs a diffusion without projection")
        if self.sampler not in ("ddpm", "ddim"):
            raise ValueError(f"unknown sampler {self.sampler!r}; expected 'ddpm' or 'ddim'")
        if self.prediction not in ("epsilon", "v"):
            raise ValueError(f"unknown prediction {self.prediction!r}; expected 'epsilon' or 'v'")
        self.shape = tuple(self.shape)

    @property
    def dims(self) -> int:
        """Number of dimensions D of one design."""
        return math.prod(self.shape)

    # ----- random draws and the network -----------------------------------------------------
    def _randn(self, shape: tuple[int, ...], generator: torch.Generator | None) -> Tensor:
        """N(0, I) of ``shape`` drawn on the generator's device, on the model's device."""
        device = generator.device if generator is not None else self.device
        return torch.randn(shape, generator=generator, device=device).to(self.device)

    def _steps(self, n: int, generator: torch.Generator | None) -> Tensor:
        """Integer steps t ~ U{1..T} (n,) drawn on the generator's device, on the model's."""
        device = generator.device if generator is not None else self.device
        t = torch.randint(1, self.diffusion.num_steps + 1, (n,), generator=generator, device=device)
        return t.to(self.device)

    def _eps(
        self, x: Tensor, t: Tensor | int, label: Tensor | None = None, guidance: float = 0.0
    ) -> Tensor:
        """ε̂ (B, *shape) at integer steps t (scalar or (B,)) for x (B, *shape)."""
        steps = torch.as_tensor(t, device=x.device).expand(len(x))
        tt = steps.float() / self.diffusion.num_steps
        out = self.net(x, tt, label)
        if guidance and label is not None:
            # classifier-free guidance: out = (1 + w)·out(label) − w·out(no label); ε is affine
            # in the output with weights summing to 1, so guiding v guides ε alike
            uncond = self.net(x, tt, null_label(label, self.num_labels))
            out = (1 + guidance) * out - guidance * uncond
        return out if self.prediction == "epsilon" else self.diffusion.eps_from_v(x, steps, out)

    # ----- sampling -------------------------------------------------------------------------
    def _chain(
        self,
        num: int,
        generator: torch.Generator | None,
        reference: GaussianVectorGenerator | None,
        label: Tensor | None,
        guidance: float,
        grad_steps: int,
        trajectory: list[Tensor] | None = None,
        guide=None,
        guided_steps: int = 0,
    ) -> tuple[Tensor, Tensor]:
        """DDPM ancestral sampling: designs x_0 (num, *shape) and the path KL to ``reference``
        (num,) in nats, on the model's device; the states x_T … x_0 are appended to
        ``trajectory`` if given. Only the last ``grad_steps`` steps track gradients
        (reparameterised: x_s = mean + sqrt(var)·z, z independent of θ); ``guide`` replaces ε̂
        in the last ``guided_steps`` steps (see :meth:`guide`)."""
        d = self.diffusion
        steps = list(itertools.pairwise(d.timesteps(self.sampling_steps)))
        x = self._randn((num, *self.shape), generator)
        if trajectory is not None:
            trajectory.append(x)
        path_kl = torch.zeros(num, device=self.device)
        # DDIM for plain sampling only: KLs, gradients and trajectories (ddpo's per-step
        # densities) need the Gaussian steps
        plain = reference is None and not grad_steps and trajectory is None
        ddim = self.sampler == "ddim" and plain
        for k, (t, s) in enumerate(steps):
            track = k >= len(steps) - grad_steps
            with contextlib.nullcontext() if track else torch.no_grad():
                if guide is not None and k >= len(steps) - guided_steps:
                    eps = guide(x, t, label)
                else:
                    eps = self._eps(x, t, label, guidance)
                noise = self._randn(x.shape, generator)  # zeroed by ddpm_step when s = 0
                if ddim:
                    x = d.ddim_step(x, t, s, eps, 0.0)
                    continue
                x_s, mean, var = d.ddpm_step(x, t, s, eps, noise=noise)
                if reference is not None:  # the final step's KL uses its posterior variance
                    # p_pre (unconditional, frozen): its ε still depends on x_t, which the KL's
                    # pathwise gradient must see
                    eps_ref = reference._eps(x, t)
                    mean_ref = d.posterior_mean_var(x, t, s, eps_ref)[0]
                    path_kl = path_kl + d.gaussian_kl(mean, mean_ref, var)
            x = x_s
            if trajectory is not None:
                trajectory.append(x)
        return x, path_kl

    @torch.no_grad()
    def sample(
        self,
        num: int,
        generator: torch.Generator | None = None,
        reference: GaussianVectorGenerator | None = None,
        label: Tensor | None = None,
        guidance: float | None = None,
        guide=None,
        guided_steps: int = 0,
    ) -> tuple[Tensor, Tensor | None]:
        """Designs (num, *shape) and, with ``reference``, the path KL to it (num,) in nats (the
        sum of per-step Gaussian KLs, see the module docstring); both on the CPU. ``label``
        (num,) conditions the samples (default: :meth:`default_label`), ``guidance`` is the
        classifier-free guidance scale w; ``guide`` (:meth:`guide`) steers the last
        ``guided_steps`` steps."""

        def draw(b, labels, w):
            x, kl = self._chain(b, generator, reference, labels, w, 0, None, guide, guided_steps)
            return x, (kl if reference is not None else None)

        return self.sample_batches(num, label, guidance, draw)

    def sample_differentiable(
        self,
        num: int,
        grad_steps: int,
        reference: GaussianVectorGenerator | None = None,
        tau: float = 1.0,
        generator: torch.Generator | None = None,
        label: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Designs (num, *shape) differentiable through the last ``grad_steps`` sampling steps
        and the path KL to ``reference`` (num,) in nats over all stochastic steps,
        differentiable in its last ``grad_steps`` terms (through x_t on both sides; the reference
        network must be frozen); both on the model's device (eval mode).
        The same draws as :meth:`sample` for the same seed (num ≤ sample_batch). ``tau``
        (the discrete generators' Gumbel-softmax temperature) is ignored."""
        self.net.eval()
        label = None if label is None else label.to(self.device)
        return self._chain(num, generator, reference, label, 0.0, grad_steps)

    def guide(self, reward, scale: float):
        """Reconstruction guidance (DPS): ``guided_eps(x_t, t, label)`` returns
        ε̂ − γ·σ_t·∇_{x_t} r(x̂₀(x_t)), the ε of the reward-tilted marginal to first order
        (exact for a linear reward on Gaussian data). ``reward``: designs (B, *shape) → (B,)."""

        def guided_eps(x: Tensor, t: int, label: Tensor | None) -> Tensor:
            with torch.enable_grad():
                x = x.detach().requires_grad_(True)
                eps = self._eps(x, t, label)
                x0_hat = self.diffusion.predict_x0(x, t, eps)
                (grad,) = torch.autograd.grad(reward(x0_hat).sum(), x)
            sigma = self.diffusion.noise_std(torch.tensor([t]))[0].item()
            return eps.detach() - scale * sigma * grad

        return guided_eps

    @staticmethod
    def discrete(x: Tensor) -> Tensor:
        """The designs of a differentiable sample: (n, *shape) on the CPU."""
        return x.detach().cpu()

    @torch.no_grad()
    def sample_trajectory(
        self, num: int, generator: torch.Generator | None = None
    ) -> tuple[list[Tensor], list[int], Tensor]:
        """The whole reverse chain: states x_T … x_0, each (num, *shape) on the model's device,
        the integer step grid T > … > 0 and the designs x_0 on the CPU (the draws of an
        unconditional :meth:`sample`)."""
        self.net.eval()
        states = []
        x, _ = self._chain(num, generator, None, None, 0.0, grad_steps=0, trajectory=states)
        return states, self.diffusion.timesteps(self.sampling_steps), x.cpu()

    def step_log_prob(self, x_t: Tensor, x_s: Tensor, t: int, s: int) -> Tensor:
        """log N(x_s; mean_θ(x_t), var·I) of one reverse step t → s per design (num,) in nats,
        with grad. The final step (s = 0) is deterministic: zeros, kept on the graph so that a
        loss built from them still back-propagates (with zero gradient)."""
        eps = self._eps(x_t, t)
        if s == 0:
            return eps.flatten(1).sum(1) * 0.0
        mean, var = self.diffusion.posterior_mean_var(x_t, t, s, eps)
        # log N(x_s; mean, var I) = −‖x_s − mean‖² / (2 var) − D/2 · log(2π var)
        sq = (x_s - mean).pow(2).flatten(1).sum(1)
        return -sq / (2 * var) - 0.5 * self.dims * torch.log(2 * math.pi * var)

    def step_kl(self, x_t: Tensor, t: int, s: int, reference: GaussianVectorGenerator) -> Tensor:
        """KL(p_θ(· | x_t) ‖ p_ref(· | x_t)) of one reverse step t → s per design (num,) in
        nats, with grad (the reference's under no_grad)."""
        d = self.diffusion
        mean, var = d.posterior_mean_var(x_t, t, s, self._eps(x_t, t))
        with torch.no_grad():
            mean_ref = d.posterior_mean_var(x_t, t, s, reference._eps(x_t, t))[0]
        return d.gaussian_kl(mean, mean_ref, var)

    # ----- training -------------------------------------------------------------------------
    def loss(
        self,
        x: Tensor,
        weights: Tensor | None = None,
        label: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """ε-prediction loss (scalar): per design the mean squared error of ε̂ at t ~ U{1..T}
        with noise N(0, I), averaged over the designs x (B, *shape) (Σ w·ℓ / Σ w with
        ``weights`` (B,)). ``label`` (B,) conditions the network (pass the null label on rows
        that train the unconditional model for guidance)."""
        self.net.train()
        d = self.diffusion
        x = x.to(self.device)
        label = None if label is None else label.to(self.device)
        t = self._steps(len(x), generator)
        noise = self._randn(x.shape, generator)
        per_row = d.epsilon_loss(self._eps(d.q_sample(x, t, noise), t, label), noise)
        if weights is None:
            return per_row.mean()
        weights = weights.to(per_row.device)
        return (weights * per_row).sum() / weights.sum()

    # ----- likelihood -----------------------------------------------------------------------
    @torch.no_grad()
    def log_likelihood(
        self,
        x: Tensor,
        num_t: int = 16,
        generator: torch.Generator | None = None,
        label: Tensor | None = None,
    ) -> Tensor:
        """Variational lower bound on log p(x) in nats per design (n,) for x (n, *shape): −prior
        KL − T·E_t[L_t] (``num_t`` Monte-Carlo draws of t) + log p(x | z_0), a Gaussian
        density (needs alpha_bar[0] < 1, as the polynomial schedule has); on the CPU."""
        self.net.eval()
        return torch.cat(
            [
                self._elbo(
                    x[i : i + self.sample_batch].to(self.device),
                    num_t,
                    generator,
                    None if label is None else label[i : i + self.sample_batch].to(self.device),
                )
                for i in range(0, len(x), self.sample_batch)
            ]
        )

    def _elbo(
        self, x: Tensor, num_t: int, generator: torch.Generator | None, label: Tensor | None
    ) -> Tensor:
        d, b, dims = self.diffusion, len(x), self.dims
        ab = d.alpha_bar.to(self.device)
        # prior: KL(q(z_T | x) ‖ N(0, I)) = ½ (α_T² ‖x‖² + D (σ_T² − 1 − log σ_T²))
        sq = x.double().pow(2).flatten(1).sum(1)
        prior = 0.5 * (ab[-1] * sq + dims * ((1 - ab[-1]) - 1 - torch.log(1 - ab[-1])))
        # diffusion: T · E_t [½ (SNR(t−1)/SNR(t) − 1) ‖ε − ε̂‖²], SNR = ᾱ / (1 − ᾱ)
        snr = ab / (1 - ab)
        diffusion_terms = torch.zeros(b, dtype=torch.float64, device=self.device)
        for _ in range(num_t):
            t = self._steps(b, generator)
            noise = self._randn(x.shape, generator)
            eps = self._eps(d.q_sample(x, t, noise), t, label)
            err = (eps - noise).double().pow(2).flatten(1).sum(1)
            diffusion_terms += 0.5 * (snr[t - 1] / snr[t] - 1) * err
        diffusion_terms *= d.num_steps / num_t
        # reconstruction: log N(x; x̂_0(z_0), σ_0²/α_0² I) = −½‖ε − ε̂‖² − D(log σ_0/α_0 + ½ log 2π)
        noise = self._randn(x.shape, generator)
        eps = self._eps(d.q_sample(x, 0, noise), 0, label)
        log_sigma_over_alpha = 0.5 * torch.log((1 - ab[0]) / ab[0])
        log_px = -0.5 * (eps - noise).double().pow(2).flatten(1).sum(1) - dims * (
            log_sigma_over_alpha + 0.5 * math.log(2 * math.pi)
        )
        return (log_px - prior - diffusion_terms).float().cpu()
