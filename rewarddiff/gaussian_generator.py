"""Gaussian (VP) diffusion generator over any state layout, bound to a denoising network.

Designs travel as the domain's dense tensors (B, ...). A :class:`StateLayout` maps them to the
diffusion state — rows stacked along dim 0: one row per design for plain vectors and point
sets (:class:`VectorLayout`, state (B, *shape)), one row per atom for molecules (state
(N, 3 + F) in a zero centre-of-mass subspace) — with the :class:`Frame` that says which design
each row belongs to. The generator owns everything else once, with the VP maths of
:mod:`rewarddiff.diffusion.gaussian`: the ε- (or v-) prediction loss, DDPM/DDIM sampling with
classifier-free guidance, reconstruction guidance (DPS), the path KL to a reference, per-step
log-densities (ddpo), differentiable sampling (draft) and the ELBO. ``objective="edm"`` and
``elbo="edm"`` select EDM's (Hoogeboom et al. 2022) l2 training loss and NLL estimator; what is
domain-specific in them (discrete features) comes from :meth:`StateLayout.edm_reconstruction`.

The network is called through the layout with t (rows,) float32 = integer step / T in [0, 1]
and label None or (B,): a class index (long; ``num_labels`` = no label) or a value (float;
NaN = no value). Every random draw comes from the passed ``torch.Generator`` on its own device
and is then moved to the model's, so results are reproducible whatever device the network
runs on.

Path KL: the sum of per-step Gaussian KLs along the chain. The final step t → 0 outputs its
posterior mean without noise but is still charged as a Gaussian step with its (small) posterior
variance, so a model that shifts its last denoising step pays for it; leaving the step out would
let fine-tuning move the designs at no KL cost.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import NamedTuple

import torch
from torch import Tensor, nn
from torch_geometric.utils import scatter

from rewarddiff import UserError
from rewarddiff.diffusion import null_label
from rewarddiff.diffusion.gaussian import GaussianDiffusion
from rewarddiff.generator import Generator


class Frame(NamedTuple):
    """The structure shared by every state of one chain (or one encoded batch) of designs."""

    num: int  # designs
    batch: Tensor | None = None  # (rows,) design of each row; None: row i is design i
    edges: Tensor | None = None  # (2, E) graph over the rows (molecules: within each one)
    mask: Tensor | None = None  # (num, N_max) slots in use (molecules)

    def per_design(self, values: Tensor, reduce: str = "sum") -> Tensor:
        """Row values (rows,) → (num,) by ``reduce`` over each design's rows."""
        if self.batch is None:
            return values
        return scatter(values, self.batch, dim=0, dim_size=self.num, reduce=reduce)

    def per_row(self, values: Tensor) -> Tensor:
        """Design values (num,) → (rows,)."""
        return values if self.batch is None else values[self.batch]


class Chain(NamedTuple):
    """One state of a reverse chain: what ddpo's trajectories hold."""

    state: Tensor  # (rows, ...)
    frame: Frame


class Reconstruction(NamedTuple):
    """EDM's pieces of log p(x | z_0) per design, each (num,) float64."""

    sq_error: Tensor  # ‖ε − ε̂‖² over the continuous coordinates (molecules: positions)
    dims: Tensor  # their subspace dimensions
    log_discrete: Tensor  # log p(discrete part | z_0), bins centred on z_0 (zero: none)


def _sum_rows(x: Tensor) -> Tensor:
    """(rows, ...) → (rows,) sums."""
    return x.flatten(1).sum(1)


class StateLayout(ABC):
    """How designs map to the diffusion state. What a layout must provide is abstract;
    the rest holds for plain Gaussian states (every coordinate free, no size prior)."""

    has_size_distribution = False  # refit_sizes: a size prior fine-tuning can move

    @abstractmethod
    def draw(self, num: int, generator: torch.Generator | None, device) -> Frame:
        """The frame of ``num`` new designs (molecules draw their sizes here)."""

    @abstractmethod
    def state_shape(self, frame: Frame) -> tuple[int, ...]:
        """Shape (rows, ...) of a state of ``frame``."""

    @abstractmethod
    def encode(self, x: Tensor) -> tuple[Tensor, Frame]:
        """Designs (B, ...) → state (rows, ...) on x's device and its frame."""

    @abstractmethod
    def decode(self, state: Tensor, frame: Frame) -> Tensor:
        """State → designs (B, ...) on the state's device, differentiable where designs are
        continuous."""

    @abstractmethod
    def denoise(
        self, net: nn.Module, state: Tensor, t: Tensor, frame: Frame, label: Tensor | None
    ) -> Tensor:
        """The network's output (the state's shape) at times t (rows,) in [0, 1]."""

    @abstractmethod
    def free_dims(self, frame: Frame) -> Tensor:
        """Dimensions (num,) float64 of each design's state subspace."""

    def project(self, x: Tensor, frame: Frame) -> Tensor:
        """Project a state-shaped tensor onto the state subspace (identity here)."""
        return x

    def log_reconstruction(
        self, d: GaussianDiffusion, x: Tensor, eps_hat: Tensor, noise: Tensor, frame: Frame
    ) -> Tensor:
        """log p(x | z_0) (num,) float64 for the clean state x, z_0 = α_0 x + σ_0·noise and
        ε̂ = ε̂(z_0): here a Gaussian density, −½‖ε − ε̂‖² − D(log σ_0/α_0 + ½ log 2π) (needs
        alpha_bar[0] < 1, as the polynomial schedule has)."""
        ab0 = d.alpha_bar[0]
        log_sigma_over_alpha = 0.5 * math.log((1 - ab0) / ab0)
        sq = frame.per_design(_sum_rows((eps_hat - noise).double().pow(2)))
        return -0.5 * sq - self.free_dims(frame) * (
            log_sigma_over_alpha + 0.5 * math.log(2 * math.pi)
        )

    def edm_reconstruction(
        self,
        d: GaussianDiffusion,
        x: Tensor,
        z0: Tensor,
        eps_hat: Tensor,
        noise: Tensor,
        frame: Frame,
    ) -> Reconstruction:
        """EDM's log p(x | z_0) in pieces for the clean state x, z_0 = α_0 x + σ_0·noise and
        ε̂ = ε̂(z_0): here every coordinate is continuous (then it equals
        :meth:`log_reconstruction`)."""
        sq = frame.per_design(_sum_rows((eps_hat - noise).double().pow(2)))
        return Reconstruction(sq, self.free_dims(frame).to(sq.device), torch.zeros_like(sq))

    def log_size(self, frame: Frame) -> Tensor:
        """log p(size) (num,) float64 of what the chain does not diffuse (zero here)."""
        return torch.zeros(frame.num, dtype=torch.float64)

    def with_config(self, config: dict) -> StateLayout:
        """This layout with what a saved generator config changed (nothing here)."""
        return self

    def refit_sizes(self, x: Tensor, weights: Tensor, mix: float) -> StateLayout:
        raise TypeError(f"{type(self).__name__} has no size distribution")

    def saved_settings(self) -> dict:
        """What fine-tuning changed in this layout, for the generator's config."""
        return {}


@dataclass(frozen=True)
class VectorLayout(StateLayout):
    """Designs of one fixed shape, e.g. (D,) vectors or (N, 3) point sets: the state is the
    design itself; the network is called ``net(x_t, t, label)``."""

    shape: tuple[int, ...]  # of one design

    def __post_init__(self):
        object.__setattr__(self, "shape", tuple(self.shape))

    def draw(self, num, generator, device) -> Frame:
        return Frame(num)

    def state_shape(self, frame: Frame) -> tuple[int, ...]:
        return (frame.num, *self.shape)

    def encode(self, x: Tensor) -> tuple[Tensor, Frame]:
        return x, Frame(len(x))

    def decode(self, state: Tensor, frame: Frame) -> Tensor:
        return state

    def denoise(self, net, state, t, frame, label) -> Tensor:
        return net(state, t, label)

    def free_dims(self, frame: Frame) -> Tensor:
        return torch.full((frame.num,), float(math.prod(self.shape)), dtype=torch.float64)


@dataclass
class GaussianGenerator(Generator):
    """The Gaussian generator over ``layout``'s state (module docstring)."""

    diffusion: GaussianDiffusion
    net: nn.Module
    layout: StateLayout
    num_labels: int = field(default=0, kw_only=True)  # classes; index num_labels = no label
    sampler: str = field(default="ddpm", kw_only=True)  # or "ddim" (η = 0, plain sampling)
    # what the network outputs: ε, or v (then ε = α_t v + σ_t x_t)
    prediction: str = field(default="epsilon", kw_only=True)
    # training loss: "mean" (per-design mean squared ε error, t ~ U{1..T}) or "edm" (EDM's l2
    # objective, :meth:`edm_loss`)
    objective: str = field(default="mean", kw_only=True)
    # the ELBO's log p(x | z_0): "x0_hat" (:meth:`StateLayout.log_reconstruction`, bins on the
    # network's x̂_0) or "edm" (EDM's NLL estimator, :meth:`StateLayout.edm_reconstruction`)
    elbo: str = field(default="x0_hat", kw_only=True)

    def __post_init__(self):
        choices = {"sampler": ("ddpm", "ddim"), "prediction": ("epsilon", "v"),
                   "objective": ("mean", "edm"), "elbo": ("x0_hat", "edm")}  # fmt: skip
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                expected = " or ".join(repr(a) for a in allowed)
                raise UserError(f"unknown {name} {getattr(self, name)!r}; expected {expected}")
        self.diffusion = dataclasses.replace(self.diffusion, project=self.layout.project)

    @property
    def has_size_distribution(self) -> bool:
        return self.layout.has_size_distribution

    def fit_size_distribution(self, x: Tensor, weights: Tensor, mix: float) -> None:
        """Move the layout's size prior toward the sizes of ``x`` weighted by ``weights`` (B,)
        (rgdm's ``size_mix``); saved in the config."""
        self.layout = self.layout.refit_sizes(x, weights, mix)
        self.config = self.config | self.layout.saved_settings()

    def load_config(self, config: dict) -> None:
        """Adopt a saved config, including a size distribution moved by fine-tuning."""
        super().load_config(config)
        self.layout = self.layout.with_config(config)

    # ----- random draws and the network -----------------------------------------------------
    def _noise(self, frame: Frame, generator: torch.Generator | None) -> Tensor:
        """Projected N(0, I) of a state of ``frame``, drawn on the generator's device."""
        device = generator.device if generator is not None else self.device
        z = torch.randn(self.layout.state_shape(frame), generator=generator, device=device)
        return self.layout.project(z.to(self.device), frame)

    def _steps(self, n: int, generator: torch.Generator | None, lowest: int = 1) -> Tensor:
        """Integer steps t ~ U{lowest..T} (n,) drawn on the generator's device, on the
        model's."""
        device = generator.device if generator is not None else self.device
        t = torch.randint(lowest, self.diffusion.num_steps + 1, (n,), generator=generator,
                          device=device)  # fmt: skip
        return t.to(self.device)

    def _eps(
        self,
        state: Tensor,
        t: Tensor | int,
        frame: Frame,
        label: Tensor | None = None,
        guidance: float = 0.0,
    ) -> Tensor:
        """ε̂ (the state's shape) at integer steps t (scalar or (rows,))."""
        steps = torch.as_tensor(t, device=state.device).expand(len(state))
        tt = steps.float() / self.diffusion.num_steps
        out = self.layout.denoise(self.net, state, tt, frame, label)
        if guidance and label is not None:
            # classifier-free guidance: out = (1 + w)·out(label) − w·out(no label); ε is affine
            # in the output with weights summing to 1, so guiding v guides ε alike
            null = null_label(label, self.num_labels)
            uncond = self.layout.denoise(self.net, state, tt, frame, null)
            out = (1 + guidance) * out - guidance * uncond
        return out if self.prediction == "epsilon" else self.diffusion.eps_from_v(state, steps, out)

    # ----- sampling: the one reverse chain --------------------------------------------------
    def _chain(
        self,
        num: int,
        generator: torch.Generator | None,
        reference: GaussianGenerator | None,
        label: Tensor | None,
        guidance: float,
        grad_steps: int,
        guide=None,
        guided_steps: int = 0,
        trajectory: list[Chain] | None = None,
    ) -> tuple[Tensor, Frame, Tensor]:
        """Ancestral (DDPM) sampling of ``num`` designs: final state, its frame and the path
        KL to ``reference`` (num,) in nats, on the model's device; the states x_T … x_0 are
        appended to ``trajectory`` if given. Only the last ``grad_steps`` steps track
        gradients (reparameterised: x_s = mean + sqrt(var)·z, z independent of θ); ``guide``
        replaces ε̂ in the last ``guided_steps`` steps (see :meth:`guide`)."""
        d = self.diffusion
        steps = list(itertools.pairwise(d.timesteps(self.sampling_steps)))
        frame = self.layout.draw(num, generator, self.device)
        state = self._noise(frame, generator)
        if trajectory is not None:
            trajectory.append(Chain(state, frame))
        path_kl = torch.zeros(num, device=self.device)
        # DDIM for plain sampling only: KLs, gradients and trajectories (ddpo's per-step
        # densities) need the Gaussian steps
        plain = reference is None and not grad_steps and trajectory is None
        ddim = self.sampler == "ddim" and plain
        for k, (t, s) in enumerate(steps):
            track = k >= len(steps) - grad_steps
            with contextlib.nullcontext() if track else torch.no_grad():
                if guide is not None and k >= len(steps) - guided_steps:
                    eps = guide(state, t, frame, label)
                else:
                    eps = self._eps(state, t, frame, label, guidance)
                noise = self._noise(frame, generator)  # zeroed by ddpm_step when s = 0
                if ddim:
                    state = d.ddim_step(state, t, s, eps, 0.0, frame)
                    continue
                state_s, mean, var = d.ddpm_step(state, t, s, eps, frame, noise=noise)
                if reference is not None:  # the final step's KL uses its posterior variance
                    # p_pre (unconditional, frozen): its ε still depends on x_t, which the KL's
                    # pathwise gradient must see
                    eps_ref = reference._eps(state, t, frame)
                    mean_ref = self.layout.project(
                        d.posterior_mean_var(state, t, s, eps_ref)[0], frame
                    )
                    path_kl = path_kl + frame.per_design(d.gaussian_kl(mean, mean_ref, var))
            state = state_s
            if trajectory is not None:
                trajectory.append(Chain(state, frame))
        return state, frame, path_kl

    def sample_chunk(self, num, generator, reference, label, guidance, guide, guided_steps):
        """Designs and the path KL: the sum of per-step Gaussian KLs (module docstring)."""
        state, frame, kl = self._chain(num, generator, reference, label, guidance, 0, guide,
                                       guided_steps)  # fmt: skip
        return self.layout.decode(state, frame), kl

    def sample_differentiable(self, num, grad_steps, reference=None, tau=1.0, generator=None,
                              label=None) -> tuple[Tensor, Tensor]:  # fmt: skip
        """Designs (num, ...) differentiable through the last ``grad_steps`` sampling steps
        (molecules: in their positions; atom types are the argmax) and the path KL to
        ``reference`` (num,) in nats over all stochastic steps, differentiable in its last
        ``grad_steps`` terms (through x_t on both sides; the reference network must be
        frozen); both on the model's device (eval mode). The same draws as :meth:`sample` for
        the same seed (num ≤ sample_batch). ``tau`` (the discrete generators' Gumbel-softmax
        temperature) is ignored."""
        self.net.eval()
        label = None if label is None else label.to(self.device)
        state, frame, kl = self._chain(num, generator, reference, label, 0.0, grad_steps)
        return self.layout.decode(state, frame), kl

    def guide(self, reward, scale: float):
        """Reconstruction guidance (DPS): ``guided_eps(x_t, t, frame, label)`` returns
        ε̂ − γ·σ_t·∇_{x_t} r(x̂₀(x_t)) (projected), the ε of the reward-tilted marginal to first
        order (exact for a linear reward on Gaussian data). ``reward``: designs (B, ...) →
        (B,), differentiable in the continuous part of the designs."""

        def guided_eps(state: Tensor, t: int, frame: Frame, label: Tensor | None) -> Tensor:
            with torch.enable_grad():
                state = state.detach().requires_grad_(True)
                eps = self._eps(state, t, frame, label)
                x0_hat = self.layout.decode(self.diffusion.predict_x0(state, t, eps), frame)
                (grad,) = torch.autograd.grad(reward(x0_hat).sum(), state)
            sigma = self.diffusion.noise_std(torch.tensor([t]))[0].item()
            return eps.detach() - scale * sigma * self.layout.project(grad, frame)

        return guided_eps

    @staticmethod
    def discrete(x: Tensor) -> Tensor:
        """The designs of a differentiable sample: (n, ...) on the CPU."""
        return x.detach().cpu()

    # ----- per-step transitions (ddpo) ------------------------------------------------------
    @torch.no_grad()
    def sample_trajectory(
        self, num: int, generator: torch.Generator | None = None
    ) -> tuple[list[Chain], list[int], Tensor]:
        """The whole reverse chain of an unconditional DDPM :meth:`sample` of ``num`` ≤
        ``sample_batch`` designs: states x_T … x_0 (on the model's device), the integer step
        grid T > … > 0 and the designs on the CPU."""
        self.net.eval()
        states = []
        state, frame, _ = self._chain(num, generator, None, None, 0.0, 0, trajectory=states)
        return (
            states,
            self.diffusion.timesteps(self.sampling_steps),
            self.layout.decode(state, frame).cpu(),
        )

    def _step(self, x_t: Chain, t: int, s: int, generator_of=None) -> tuple[Tensor, Tensor]:
        """Mean (projected) and variance (scalar tensor) of the reverse step t → s under
        ``generator_of`` (default: this generator)."""
        eps = (generator_of or self)._eps(x_t.state, t, x_t.frame)
        mean, var = self.diffusion.posterior_mean_var(x_t.state, t, s, eps)
        return self.layout.project(mean, x_t.frame), var[0]

    def step_log_prob(self, x_t: Chain, x_s: Chain, t: int, s: int) -> Tensor:
        """log N(x_s; mean_θ(x_t), var·I) of one reverse step t → s per design (num,) in nats
        over its subspace dimensions, with grad. The final step (s = 0) is deterministic:
        zeros, kept on the graph so that a loss built from them still back-propagates."""
        mean, var = self._step(x_t, t, s)
        frame = x_t.frame
        if s == 0:
            return frame.per_design(_sum_rows(mean)) * 0.0
        sq = frame.per_design(_sum_rows((x_s.state - mean).pow(2)))
        dims = self.layout.free_dims(frame).to(sq)
        # log N(x_s; mean, var I) = −‖x_s − mean‖² / (2 var) − D/2 · log(2π var)
        return -sq / (2 * var) - 0.5 * dims * torch.log(2 * math.pi * var)

    def step_kl(self, x_t: Chain, t: int, s: int, reference: GaussianGenerator) -> Tensor:
        """KL(p_θ(· | x_t) ‖ p_ref(· | x_t)) of one reverse step t → s per design (num,) in
        nats, with grad (the reference's under no_grad)."""
        mean, var = self._step(x_t, t, s)
        with torch.no_grad():
            mean_ref, _ = self._step(x_t, t, s, reference)
        return x_t.frame.per_design(self.diffusion.gaussian_kl(mean, mean_ref, var))

    # ----- training -------------------------------------------------------------------------
    def loss(self, x, weights=None, label=None, generator=None) -> Tensor:
        """ε-prediction loss (scalar) averaged over the designs x (B, ...) (Σ w·ℓ / Σ w with
        ``weights`` (B,)): per design ℓ = the mean squared error of ε̂ over its state
        coordinates at t ~ U{1..T} with noise N(0, I) (``objective`` "mean"), or EDM's l2 loss
        at t ~ U{0..T} (:meth:`edm_loss`; "edm"). ``label`` (B,) conditions the network (pass
        the null label on rows that train the unconditional model for guidance)."""
        self.net.train()
        state, frame = self.layout.encode(x.to(self.device))
        if self.objective == "edm":
            t = self._steps(frame.num, generator, lowest=0)
            per_design = self._edm_loss(state, frame, t, self._noise(frame, generator), label)
        else:
            t = self._steps(frame.num, generator)
            noise = self._noise(frame, generator)
            per_design = self._denoising_error(state, frame, t, noise, label)
        if weights is None:
            return per_design.mean()
        weights = weights.to(per_design.device)
        return (weights * per_design).sum() / weights.sum()

    def denoising_error(
        self, x: Tensor, t: Tensor, noise: Tensor, label: Tensor | None = None
    ) -> Tensor:
        """Per-design mean squared ε error (B,) at steps ``t`` (B,) for raw noise of the
        state's shape (projected here)."""
        state, frame = self.layout.encode(x.to(self.device))
        noise = self.layout.project(noise.to(self.device), frame)
        return self._denoising_error(state, frame, t.to(self.device), noise, label)

    def _denoising_error(self, state, frame, t, noise, label) -> Tensor:
        d, t_rows = self.diffusion, frame.per_row(t)
        label = None if label is None else label.to(state.device)
        eps = self._eps(d.q_sample(state, t_rows, noise), t_rows, frame, label)
        return frame.per_design(d.epsilon_loss(eps, noise), reduce="mean")

    def edm_loss(self, x: Tensor, t: Tensor, noise: Tensor, label: Tensor | None = None) -> Tensor:
        """EDM's l2 training loss per design (B,) float64 at steps ``t`` (B,) in {0..T} for raw
        noise of the state's shape (projected here); :meth:`loss` averages it for
        ``objective`` "edm". With denominator D = (row width)·(rows of the batch's largest
        design) — EDM's (3 + F)·N_max, N_max the batch's padded size — ℓ = KL(q(z_T | x) ‖
        N(0, I)) + ½‖ε − ε̂‖² / D (t > 0) or ½‖ε − ε̂‖²_continuous / D − log p(discrete | z_0)
        (t = 0) − log p(size)."""
        state, frame = self.layout.encode(x.to(self.device))
        noise = self.layout.project(noise.to(self.device), frame)
        return self._edm_loss(state, frame, t.to(self.device), noise, label)

    def _edm_loss(self, state, frame, t, noise, label) -> Tensor:
        d, t_rows = self.diffusion, frame.per_row(t)
        label = None if label is None else label.to(state.device)
        z_t = d.q_sample(state, t_rows, noise)
        eps = self._eps(z_t, t_rows, frame, label)
        rows = frame.per_design(torch.ones(len(state), device=state.device))
        denom = math.prod(state.shape[1:]) * rows.max().item()
        sq = frame.per_design(_sum_rows((eps - noise).pow(2)))
        # t = 0: EDM evaluates its L_0 on every design and keeps it where t = 0
        rec = self.layout.edm_reconstruction(d, state, z_t, eps, noise, frame)
        term_0 = 0.5 * rec.sq_error / denom - rec.log_discrete
        term_t = torch.where(t == 0, term_0, 0.5 * sq.double() / denom)
        log_size = self.layout.log_size(frame).to(state.device)
        return self._prior_kl(state, frame) + term_t - log_size

    # ----- likelihood -----------------------------------------------------------------------
    @torch.no_grad()
    def log_likelihood(
        self,
        x: Tensor,
        num_t: int = 16,
        generator: torch.Generator | None = None,
        label: Tensor | None = None,
    ) -> Tensor:
        """Variational lower bound on log p(x) in nats per design (n,) for designs x (n, ...):
        log p(size) − prior KL − T·E_t[L_t] (``num_t`` Monte-Carlo draws of t ~ U{1..T}) +
        log p(x | z_0) (``elbo`` "x0_hat": :meth:`StateLayout.log_reconstruction`; "edm":
        EDM's estimator with its L_0 always included, from :meth:`StateLayout.edm_reconstruction`
        and the log-constants), over each design's state subspace; on the CPU."""
        self.net.eval()
        chunks = range(0, len(x), self.sample_batch)
        labels = [None if label is None else label[i : i + self.sample_batch] for i in chunks]
        return torch.cat(
            [
                self._elbo(x[i : i + self.sample_batch].to(self.device), num_t, generator, lab)
                for i, lab in zip(chunks, labels)
            ]
        )

    def _elbo(
        self, x: Tensor, num_t: int, generator: torch.Generator | None, label: Tensor | None
    ) -> Tensor:
        d = self.diffusion
        state, frame = self.layout.encode(x)
        label = None if label is None else label.to(state.device)
        ab = d.alpha_bar.to(state.device)
        prior = self._prior_kl(state, frame)
        # diffusion: T · E_t [½ (SNR(t−1)/SNR(t) − 1) ‖ε − ε̂‖²], SNR = ᾱ / (1 − ᾱ)
        snr = ab / (1 - ab)
        diffusion_terms = torch.zeros(frame.num, dtype=torch.float64, device=state.device)
        for _ in range(num_t):
            t = self._steps(frame.num, generator)
            noise = self._noise(frame, generator)
            t_rows = frame.per_row(t)
            eps = self._eps(d.q_sample(state, t_rows, noise), t_rows, frame, label)
            err = frame.per_design(_sum_rows((eps - noise).double().pow(2)))
            diffusion_terms += 0.5 * (snr[t - 1] / snr[t] - 1) * err
        diffusion_terms *= d.num_steps / num_t
        # reconstruction from z_0, and whatever the chain does not diffuse (sizes)
        noise = self._noise(frame, generator)
        z0 = d.q_sample(state, 0, noise)
        eps = self._eps(z0, 0, frame, label)
        if self.elbo == "edm":
            rec = self.layout.edm_reconstruction(d, state, z0, eps, noise, frame)
            # log p(x | z_0) = −½‖ε − ε̂‖² − D_c (log σ_0/α_0 + ½ log 2π) + log p(discrete | z_0)
            log_sigma_over_alpha = 0.5 * torch.log((1 - ab[0]) / ab[0])
            log_px = (
                -0.5 * rec.sq_error
                + rec.log_discrete
                - rec.dims.to(state.device) * (log_sigma_over_alpha + 0.5 * math.log(2 * math.pi))
            )
        else:
            log_px = self.layout.log_reconstruction(d, state, eps, noise, frame).to(state.device)
        log_size = self.layout.log_size(frame).to(state.device)
        return (log_size + log_px - prior - diffusion_terms).float().cpu()

    def _prior_kl(self, state: Tensor, frame: Frame) -> Tensor:
        """KL(q(z_T | x) ‖ N(0, I)) (num,) float64 over each design's state subspace."""
        ab = self.diffusion.alpha_bar.to(state.device)
        dims = self.layout.free_dims(frame).to(state.device)
        # ½ (α_T² ‖x‖² + D (σ_T² − 1 − log σ_T²))
        sq = frame.per_design(_sum_rows(state.double().pow(2)))
        return 0.5 * (ab[-1] * sq + dims * ((1 - ab[-1]) - 1 - torch.log(1 - ab[-1])))
