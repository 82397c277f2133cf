"""Generators: a trainable denoiser bound to its diffusion and sampling settings.

Fine-tuning methods only talk to the :class:`Generator` interface, so one method
implementation serves every domain. ``MaskedSequenceGenerator`` (here) covers DNA and protein;
:class:`~rewarddiff.gaussian_generator.GaussianGenerator` every continuous domain.
"""

from __future__ import annotations

import copy
import dataclasses
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch import Tensor, nn

from rewarddiff.conditioning import Condition
from rewarddiff.diffusion.masked import MaskedDiffusion


@dataclass(kw_only=True)
class Generator(ABC):
    """A trainable denoiser bound to its diffusion and sampling settings: what the stages and
    the fine-tuning methods use. Designs are tensors (n, ...) on the CPU; ``label`` (n,)
    conditions a generator given a condition embedding. Implementations are dataclasses that
    add a field ``net`` (the trainable denoiser: methods optimise its parameters) and their
    diffusion, and implement the abstract methods; methods check the capabilities beyond
    them that they need: ``sample_trajectory``, ``step_log_prob`` and ``step_kl`` (policy
    gradients over the chain) and, where ``has_size_distribution``,
    ``fit_size_distribution(x, weights, mix)`` (a size prior fine-tuning can move)."""

    sampling_steps: int = 100  # reverse steps of a sample
    sample_batch: int = 256  # designs per network call when sampling
    config: dict = field(default_factory=dict)  # rebuilds ``net``; saved with the weights
    condition: Condition | None = None  # sampled at when no label is given (ctrl / rcgdm)
    has_size_distribution: ClassVar[bool] = False  # it samples sizes from a refittable prior

    @property
    def device(self) -> torch.device:
        return next(self.net.parameters()).device

    def frozen_copy(self) -> Generator:
        """The same generator over a frozen deep copy of the network (the reference p_pre)."""
        return dataclasses.replace(self, net=copy.deepcopy(self.net).eval().requires_grad_(False))

    def default_label(self, num: int) -> tuple[Tensor | None, float]:
        """The labels (num,) and classifier-free guidance scale sampled at when none are
        given: the :attr:`condition`'s, or (None, 0) without a default label."""
        if self.condition is None or self.condition.target is None:
            return None, 0.0
        return self.condition.labels(num), self.condition.guidance

    @torch.no_grad()
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
        """Designs (num, ...) and, with ``reference`` (the frozen, unconditional p_pre), the
        path KL to it (num,) in nats; both on the CPU whatever device the network runs on,
        drawn in chunks of at most ``sample_batch``. ``label`` (num,) conditions the samples
        (default: :meth:`default_label`), ``guidance`` is the classifier-free guidance scale
        w; ``guide`` (:meth:`guide`) steers the last ``guided_steps`` steps."""
        self.net.eval()
        if label is None:
            label, default_guidance = self.default_label(num)
            guidance = default_guidance if guidance is None else guidance
        designs, kls = [], []
        for start in range(0, num, self.sample_batch):
            b = min(self.sample_batch, num - start)
            labels = None if label is None else label[start : start + b].to(self.device)
            x, kl = self.sample_chunk(b, generator, reference, labels, guidance or 0.0, guide,
                                      guided_steps)  # fmt: skip
            designs.append(x.cpu())
            kls.append(kl.cpu())
        return torch.cat(designs), (torch.cat(kls) if reference is not None else None)

    @abstractmethod
    def sample_chunk(self, num, generator, reference, label, guidance, guide, guided_steps):
        """One chunk of :meth:`sample` (num ≤ ``sample_batch``, eval mode, no grad): designs
        and the path KL (num,) to ``reference`` (zeros without one), on the model's device."""

    @abstractmethod
    def sample_differentiable(self, num, grad_steps, reference=None, tau=1.0, generator=None,
                              label=None) -> tuple[Tensor, Tensor]:  # fmt: skip
        """Relaxed designs (num, ...) differentiable through the last ``grad_steps`` sampling
        steps and the path KL to ``reference`` (num,), differentiable in its last terms; both
        on the model's device (eval mode). ``tau``: the Gumbel-softmax temperature of
        discrete designs; ``label`` (num,) conditions the samples."""

    @abstractmethod
    def guide(self, reward, scale: float):
        """Reward-gradient guidance at scale γ for :meth:`sample`'s ``guide``; ``reward``:
        (relaxed) designs → (B,), differentiable."""

    @staticmethod
    @abstractmethod
    def discrete(x: Tensor) -> Tensor:
        """The designs of a differentiable sample, on the CPU."""

    @abstractmethod
    def loss(self, x, weights=None, label=None, generator=None) -> Tensor:
        """The denoising loss (scalar, with grad) of designs ``x`` (B, ...), weighted per
        design by ``weights`` (B,); ``label`` (B,) conditions the network."""

    @abstractmethod
    def log_likelihood(self, x, num_t=16, generator=None) -> Tensor:
        """ELBO of log p(x) in nats per design (n,) with ``num_t`` Monte-Carlo times; CPU."""

    def saved_config(self) -> dict:
        """``config`` with the condition (key ``condition``): saved with the weights."""
        condition = {} if self.condition is None else {"condition": self.condition.to_dict()}
        return self.config | condition

    def load_config(self, config: dict) -> None:
        """Adopt a saved config (:meth:`saved_config`, e.g. a fine-tuning checkpoint's) for the
        same network."""
        self.config = {k: v for k, v in config.items() if k != "condition"}
        self.condition = Condition.from_dict(config.get("condition"))

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
class MaskedSequenceGenerator(Generator):
    diffusion: MaskedDiffusion
    net: nn.Module
    length: int  # tokens per sequence

    def sample_chunk(self, num, generator, reference, label, guidance, guide, guided_steps):
        """Tokens (num, length) and the path KL (num,); ``guide(log_p, x_t)`` reshapes
        p_θ(x_0 | x_t) (classifier guidance, :meth:`guide`)."""
        ref = reference.net if reference else None
        return self.diffusion.chain(self.net, num, self.length, self.sampling_steps, label,
                                    guidance, ref, generator, self.device, guide,
                                    guided_steps)  # fmt: skip

    def sample_differentiable(self, num, grad_steps, reference=None, tau=1.0, generator=None,
                              label=None) -> tuple[Tensor, Tensor]:  # fmt: skip
        """Relaxed one-hot designs (num, length, V) differentiable through the last
        ``grad_steps`` sampling steps (Gumbel-softmax straight-through), and the path KL to
        ``reference`` (num,), both on the model's device (eval mode: no dropout noise);
        ``label`` (num,) conditions the samples."""
        self.net.eval()
        return self.diffusion.chain(
            self.net,
            num,
            self.length,
            self.sampling_steps,
            label=None if label is None else label.to(self.device),
            reference=reference.net if reference else None,
            generator=generator,
            device=self.device,
            grad_steps=min(grad_steps, self.sampling_steps),
            tau=tau,
        )

    @torch.no_grad()
    def sample_trajectory(
        self, num: int, generator: torch.Generator | None = None
    ) -> tuple[list[Tensor], list[float], Tensor]:
        """The whole reverse chain: states x_{t_0} (all MASK) … x_{t_K} (the design), each
        (num, length) on the model's device, the time grid t_0 = 1 > … > t_K = 0 and the
        designs (num, length) on the CPU."""
        self.net.eval()
        states = []
        d, steps = self.diffusion, self.sampling_steps
        x, _ = d.chain(self.net, num, self.length, steps, generator=generator,
                       device=self.device, trajectory=states)  # fmt: skip
        return states, torch.linspace(1.0, 0.0, steps + 1).tolist(), x.cpu()

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

    def loss(self, x, weights=None, label=None, generator=None) -> Tensor:
        """The MDLM NELBO per token (scalar), weighted per sequence."""
        self.net.train()
        x = x.to(self.device)
        label = None if label is None else label.to(self.device)
        weights = None if weights is None else weights.to(self.device)
        return self.diffusion.loss(self.net, x, label, weights, generator)

    @torch.no_grad()
    def log_likelihood(self, x, num_t=16, generator=None) -> Tensor:
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
