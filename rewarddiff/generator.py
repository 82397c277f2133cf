"""Generators: a trainable denoiser bound to its diffusion and sampling settings.

Fine-tuning methods only talk to the :class:`Generator` interface, so one method
implementation serves every domain. ``MaskedSequenceGenerator`` covers DNA and protein;
Gaussian generators (molecules, shapes) implement the same methods.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from typing import Protocol

import torch
from torch import Tensor, nn

from rewarddiff.diffusion.masked import MaskedDiffusion


class Generator(Protocol):
    """What the stages and the fine-tuning methods use of a generator. Designs are tensors
    (n, ...) on the CPU; ``label`` (n,) conditions a generator given a condition embedding.
    Methods check the capabilities beyond plain sampling that they need:
    ``sample_differentiable`` (back-propagation through sampling), ``sample_trajectory``,
    ``step_log_prob`` and ``step_kl`` (policy gradients over the chain) and, where
    ``has_size_distribution``, ``fit_size_distribution(x, weights, mix)`` (a size prior that
    fine-tuning can move: molecules)."""

    net: nn.Module  # the trainable denoiser: methods optimise its parameters
    config: dict  # rebuilds ``net``; saved with the weights (``condition``: the sampling default)
    has_size_distribution: bool  # it samples sizes from a distribution that can be refit

    @property
    def device(self) -> torch.device: ...

    def frozen_copy(self) -> Generator:
        """The same generator over a frozen copy of the network (the reference p_pre)."""

    def load_config(self, config: dict) -> None:
        """Adopt a saved ``config`` (e.g. a fine-tuning checkpoint's)."""

    def sample(
        self,
        num: int,
        generator: torch.Generator | None = None,
        reference: Generator | None = None,
        label: Tensor | None = None,
        guidance: float | None = None,
        guide=None,
        guided_steps: int = 0,
    ) -> tuple[Tensor, Tensor | None]:
        """Designs (num, ...) and, with ``reference``, the path KL to it (num,) in nats."""

    def sample_differentiable(
        self,
        num: int,
        grad_steps: int,
        reference: Generator | None = None,
        tau: float = 1.0,
        generator: torch.Generator | None = None,
        label: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Relaxed designs differentiable through the last ``grad_steps`` steps, path KL."""

    def guide(self, reward, scale: float):
        """Reward-gradient guidance for :meth:`sample`'s ``guide``."""

    def discrete(self, x: Tensor) -> Tensor:
        """The designs of a differentiable sample, on the CPU."""

    def loss(
        self,
        x: Tensor,
        weights: Tensor | None = None,
        label: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """The denoising loss (scalar) of designs ``x``, with grad."""

    def log_likelihood(
        self, x: Tensor, num_t: int = 16, generator: torch.Generator | None = None
    ) -> Tensor:
        """ELBO of log p(x) in nats per design: (n,)."""


class NetworkGenerator:
    """What every generator dataclass with a ``net`` field shares."""

    has_size_distribution = False

    @property
    def device(self) -> torch.device:
        return next(self.net.parameters()).device

    def frozen_copy(self):
        """The same generator over a frozen deep copy of the network (the reference p_pre)."""
        return dataclasses.replace(self, net=copy.deepcopy(self.net).eval().requires_grad_(False))

    def default_label(self, num: int) -> tuple[Tensor | None, float]:
        """The condition sampled at when none is given, from ``config["condition"]`` (set by
        ``ctrl`` / ``rcgdm``): labels (num,) — class index (long) or standardised value
        (float) — and the classifier-free guidance scale; (None, 0) when unconditional."""
        cond = self.config.get("condition")
        if not cond or cond.get("target") is None:
            return None, 0.0
        dtype = torch.float32 if cond["kind"] == "value" else torch.long
        return torch.full((num,), cond["target"], dtype=dtype), float(cond.get("guidance", 0.0))

    def sample_batches(self, num: int, label: Tensor | None, guidance: float | None, draw):
        """What every ``sample`` shares: the default condition when no ``label`` (num,) is
        given, then ``draw(b, labels, guidance) -> (designs, path KL or None)`` per chunk of at
        most ``sample_batch``; the chunks concatenated on the CPU."""
        self.net.eval()
        if label is None:
            label, default_guidance = self.default_label(num)
            guidance = default_guidance if guidance is None else guidance
        designs, kls = [], []
        for start in range(0, num, self.sample_batch):
            b = min(self.sample_batch, num - start)
            labels = None if label is None else label[start : start + b].to(self.device)
            x, kl = draw(b, labels, guidance or 0.0)
            designs.append(x.cpu())
            if kl is not None:
                kls.append(kl.cpu())
        return torch.cat(designs), (torch.cat(kls) if kls else None)

    def load_config(self, config: dict) -> None:
        """Adopt a saved ``config`` (e.g. a fine-tuning checkpoint's) for the same network."""
        self.config = config

    def with_condition(self, new):
        """``new`` (a generator built with ``condition_network(…)``) loaded with this
        generator's weights on its device: the same function plus a zero condition embedding."""
        load_unconditional_weights(new.net, self.net.state_dict())
        new.net.to(self.device)
        return new


def condition_network(network: dict, num_labels: int) -> dict:
    """A network config with a condition embedding: ``num_labels`` classes, or a scalar value
    when ``num_labels`` is 0."""
    return network | {"num_labels": num_labels, "value_condition": num_labels == 0}


def load_unconditional_weights(net: nn.Module, state: dict[str, Tensor]) -> None:
    """Load a pretrained unconditional network's weights into ``net``, which adds a
    :class:`~rewarddiff.conditioning.ConditionEmbedding` (keys ``condition.*``); it keeps its
    zero initialisation, so the result computes exactly the pretrained function. Any other
    mismatch is an error."""
    missing, unexpected = net.load_state_dict(state, strict=False)
    wrong = [k for k in missing if not k.startswith("condition.")] + list(unexpected)
    if wrong:
        raise ValueError(f"weights do not fit the conditional network: {', '.join(wrong)}")


@dataclass
class MaskedSequenceGenerator(NetworkGenerator):
    diffusion: MaskedDiffusion
    net: nn.Module
    length: int
    sampling_steps: int = 100
    sample_batch: int = 256
    config: dict = field(default_factory=dict)  # rebuilds ``net`` (saved with the weights)

    @torch.no_grad()
    def sample(
        self,
        num: int,
        generator: torch.Generator | None = None,
        reference: MaskedSequenceGenerator | None = None,
        label: Tensor | None = None,
        guidance: float | None = None,
        guide=None,
        guided_steps: int = 0,
    ) -> tuple[Tensor, Tensor | None]:
        """Tokens (num, length) and, with ``reference``, the path KL to it (num,) in nats; both
        returned on the CPU whatever device the network runs on. ``label`` (num,) conditions
        the samples (default: :meth:`default_label`); ``guidance`` is the CFG scale;
        ``guide(log_p, x_t)`` reshapes the last ``guided_steps`` steps (classifier guidance)."""

        def draw(b, labels, w):
            out = self.diffusion.sample(
                self.net,
                b,
                self.length,
                self.sampling_steps,
                labels,
                w,
                reference.net if reference else None,
                generator,
                self.device,
                guide,
                guided_steps,
            )
            return out if reference else (out, None)

        return self.sample_batches(num, label, guidance, draw)

    def sample_differentiable(
        self,
        num: int,
        grad_steps: int,
        reference: MaskedSequenceGenerator | None = None,
        tau: float = 1.0,
        generator: torch.Generator | None = None,
        label: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Relaxed one-hot designs (num, length, V) differentiable through the last
        ``grad_steps`` sampling steps (Gumbel-softmax straight-through), and the path KL to
        ``reference`` (num,), both on the model's device (eval mode: no dropout noise);
        ``label`` (num,) conditions the samples."""
        self.net.eval()
        return self.diffusion.sample_differentiable(
            self.net,
            num,
            self.length,
            self.sampling_steps,
            min(grad_steps, self.sampling_steps),
            reference.net if reference else None,
            label=None if label is None else label.to(self.device),
            tau=tau,
            generator=generator,
            device=self.device,
        )

    @torch.no_grad()
    def sample_trajectory(
        self, num: int, generator: torch.Generator | None = None
    ) -> tuple[list[Tensor], list[float], Tensor]:
        """The whole reverse chain: states x_{t_0} (all MASK) … x_{t_K} (the design), each
        (num, length) on the model's device, the time grid t_0 = 1 > … > t_K = 0 and the
        designs (num, length) on the CPU."""
        self.net.eval()
        d = self.diffusion
        grid = torch.linspace(1.0, 0.0, self.sampling_steps + 1).tolist()
        x = torch.full((num, self.length), d.mask_id, dtype=torch.long, device=self.device)
        states = [x]
        for t, s in zip(grid[:-1], grid[1:]):
            tt = torch.full((num,), t, device=self.device)
            x = d.step(d.denoise(self.net, x, tt), x, t, s, generator)
            states.append(x)
        return states, grid, x.cpu()

    def step_log_prob(
        self, x_t: Tensor, x_s: Tensor, t: float, s: float, net: torch.nn.Module | None = None
    ) -> Tensor:
        """log p(x_s | x_t) per sequence (num,) under ``net`` (default: this model), with grad."""
        tt = torch.full((len(x_t),), t, device=x_t.device)
        log_p0 = self.diffusion.denoise(net or self.net, x_t, tt)
        return self.diffusion.transition_log_prob(log_p0, x_t, x_s, t, s)

    def step_kl(
        self, x_t: Tensor, t: float, s: float, reference: MaskedSequenceGenerator
    ) -> Tensor:
        """KL(p_θ(· | x_t) ‖ p_ref(· | x_t)) of one reverse step per sequence (num,), with grad."""
        tt = torch.full((len(x_t),), t, device=x_t.device)
        log_p = self.diffusion.denoise(self.net, x_t, tt)
        with torch.no_grad():
            log_ref = self.diffusion.denoise(reference.net, x_t, tt)
        return self.diffusion.transition_kl(log_p, log_ref, x_t == self.diffusion.mask_id, t, s)

    def guide(self, reward, scale: float):
        """Classifier guidance for :meth:`sample` (see ``MaskedDiffusion.reward_guide``)."""
        return self.diffusion.reward_guide(reward, scale)

    @staticmethod
    def discrete(x: Tensor) -> Tensor:
        """Relaxed one-hot (n, length, V) → tokens (n, length) on the CPU."""
        return x.detach().argmax(-1).cpu()

    def loss(
        self,
        x: Tensor,
        weights: Tensor | None = None,
        label: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        self.net.train()
        x = x.to(self.device)
        label = None if label is None else label.to(self.device)
        weights = None if weights is None else weights.to(self.device)
        return self.diffusion.loss(self.net, x, label, weights, generator)

    @torch.no_grad()
    def log_likelihood(
        self, x: Tensor, num_t: int = 16, generator: torch.Generator | None = None
    ) -> Tensor:
        """ELBO of log p(x) in nats per sequence: (n,)."""
        self.net.eval()
        return torch.cat(
            [
                self.diffusion.log_likelihood(
                    self.net,
                    x[i : i + self.sample_batch].to(self.device),
                    num_t=num_t,
                    generator=generator,
                ).cpu()
                for i in range(0, len(x), self.sample_batch)
            ]
        )
