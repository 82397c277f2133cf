"""Masked (absorbing-state) discrete diffusion, MDLM-style (Sahoo et al. 2024).

Tokens are integers ``0..V-1``; ``V`` is the MASK token. A denoising network is any callable
``net(x, t, label) -> logits (B, L, V)`` where ``x`` is either tokens ``(B, L) int64`` (values in
``0..V``) or a relaxed one-hot ``(B, L, V+1) float``, ``t`` is ``(B,)`` in [0, 1] and ``label`` is
``(B,) int64`` (class), ``(B,) float`` (scalar condition value) or None; the null label (index
``num_labels``, or NaN for values) means "no label" (classifier-free guidance).
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from rewarddiff.diffusion import null_label

NEG_INF = -1e9


def uniform(shape, generator: torch.Generator | None, device) -> Tensor:
    """U(0, 1) drawn on the generator's device (CPU generators drive CUDA sampling too)."""
    draw_on = generator.device if generator is not None else device
    return torch.rand(shape, generator=generator, device=draw_on).to(device)


@dataclass
class MaskedDiffusion:
    vocab_size: int
    eps: float = 1e-3  # α(1) = eps: at t = 1 almost every token is masked
    num_labels: int = 0
    label_dropout: float = 0.0

    @property
    def mask_id(self) -> int:
        return self.vocab_size

    # ----- log-linear schedule ---------------------------------------------------------------
    def alpha(self, t: Tensor) -> Tensor:
        # α_t = 1 − (1 − ε) t: probability that a token is still unmasked at time t
        return 1.0 - (1.0 - self.eps) * t

    def mask(self, x0: Tensor, t: Tensor, generator=None) -> Tensor:
        # q(x_t | x_0): each token independently becomes MASK with probability 1 − α_t
        u = uniform(x0.shape, generator, x0.device)
        return torch.where(u < (1.0 - self.alpha(t))[:, None], self.mask_id, x0)

    # ----- SUBS parameterisation -------------------------------------------------------------
    def denoise(
        self, net, x: Tensor, t: Tensor, label: Tensor | None = None, guidance: float = 0.0
    ) -> Tensor:
        """log p_θ(x_0 | x_t): (B, L, V); MASK never predicted, unmasked tokens carried over."""
        logits = net(x, t, label)
        if guidance and label is not None:
            # classifier-free guidance: (1 + w)·cond − w·uncond in logit space
            uncond = net(x, t, null_label(label, self.num_labels))
            logits = (1.0 + guidance) * logits - guidance * uncond
        log_probs = logits.float().log_softmax(-1)
        if x.dtype.is_floating_point:  # relaxed input: carry-over weighted by the one-hot
            keep = x[..., : self.vocab_size]
            is_masked = x[..., self.mask_id : self.mask_id + 1]
            return torch.log(keep + is_masked * log_probs.exp() + 1e-30)
        carry = F.one_hot(x.clamp(max=self.vocab_size - 1), self.vocab_size).bool()
        unmasked = (x != self.mask_id)[..., None]
        return torch.where(unmasked, torch.where(carry, 0.0, NEG_INF), log_probs)

    def drop_labels(self, label: Tensor | None, generator=None) -> Tensor | None:
        if label is None or self.label_dropout <= 0:
            return label
        drop = uniform(label.shape, generator, label.device) < self.label_dropout
        return torch.where(drop, null_label(label, self.num_labels), label)

    # ----- training objective ----------------------------------------------------------------
    def loss(
        self,
        net,
        x0: Tensor,
        label: Tensor | None = None,
        weights: Tensor | None = None,
        generator=None,
    ) -> Tensor:
        """Continuous-time NELBO per token, optionally weighted per sequence: scalar."""
        nll = self.sequence_nll(net, x0, self.drop_labels(label, generator), generator)
        if weights is not None:
            nll = nll * weights
        return nll.mean() / x0.shape[1]

    def sequence_nll(
        self, net, x0: Tensor, label: Tensor | None = None, generator=None, t: Tensor | None = None
    ) -> Tensor:
        """One-sample NELBO per sequence (nats): (B,)."""
        b = x0.shape[0]
        if t is None:
            # low-discrepancy t: one uniform offset shared, stratified over the batch
            u = uniform((), generator, x0.device)
            t = (u + torch.arange(b, device=x0.device) / b) % 1.0
        t = t.clamp(min=1e-4)
        xt = self.mask(x0, t, generator)
        log_p = self.denoise(net, xt, t, label)
        ce = -log_p.gather(-1, x0[..., None]).squeeze(-1)  # −log p_θ(x_0 | x_t) per position
        # MDLM: −α'_t / (1 − α_t) = 1/t weights the cross-entropy on masked positions
        return (ce * (xt == self.mask_id)).sum(-1) / t

    @torch.no_grad()
    def log_likelihood(
        self, net, x0: Tensor, label: Tensor | None = None, num_t: int = 32, generator=None
    ) -> Tensor:
        """ELBO estimate of log p(x_0) in nats per sequence, averaged over ``num_t`` times: (B,)."""
        b = x0.shape[0]
        total = torch.zeros(b, device=x0.device)
        offset = uniform((), generator, x0.device)
        for i in range(num_t):
            t = torch.full((b,), ((offset + i) / num_t).item() % 1.0, device=x0.device)
            total += self.sequence_nll(net, x0, label, generator, t=t)
        return -total / num_t

    # ----- ancestral sampling ----------------------------------------------------------------
    def unmask_probability(self, t: float, s: float) -> float:
        # a masked token at t is revealed by s < t with probability (α_s − α_t) / (1 − α_t)
        a_t, a_s = 1.0 - (1.0 - self.eps) * t, 1.0 - (1.0 - self.eps) * s
        return (a_s - a_t) / (1.0 - a_t)

    def step(self, log_p0: Tensor, x: Tensor, t: float, s: float, generator=None) -> Tensor:
        """One reverse step x_t → x_s: masked tokens are revealed from p_θ(x_0|x_t); others kept."""
        reveal = uniform(x.shape, generator, x.device) < self.unmask_probability(t, s)
        gumbel = -torch.log(-torch.log(uniform(log_p0.shape, generator, x.device).clamp_min(1e-20)))
        proposal = (log_p0 + gumbel).argmax(-1)
        return torch.where((x == self.mask_id) & reveal, proposal, x)

    def chain(
        self,
        net,
        num: int,
        length: int,
        steps: int,
        label: Tensor | None = None,
        guidance: float = 0.0,
        reference=None,
        generator=None,
        device=None,
        guide=None,
        guided_steps: int = 0,
        grad_steps: int = 0,
        tau: float = 1.0,
        trajectory: list[Tensor] | None = None,
    ) -> tuple[Tensor, Tensor]:
        """The reverse chain of ``num`` sequences in ``steps`` steps from all-MASK: the designs
        and the path KL (num,) in nats between the chain of ``net`` and that of ``reference``
        (another network, called without label: the unconditional p_pre) along the drawn
        trajectory; zeros without a reference. ``label`` and ``guidance`` (classifier-free)
        condition ``net``; ``guide(log_p, x_t) -> log_p`` (classifier guidance) reshapes
        p_θ(x_0 | x_t) in the last ``guided_steps`` steps; the states x_1 … x_0 are appended
        to ``trajectory`` if given.

        The first ``steps − grad_steps`` steps run on tokens without gradient; the last
        ``grad_steps`` on one-hots with Gumbel-softmax straight-through (temperature ``tau``):
        hard in the forward pass, with gradient to ``net`` through the relaxed samples, and a
        KL differentiable in those terms. Designs are tokens (num, length) without
        ``grad_steps``, else one-hots (num, length, V)."""
        grid = torch.linspace(1.0, 0.0, steps + 1).tolist()
        cut = steps - grad_steps
        x = torch.full((num, length), self.mask_id, dtype=torch.long, device=device)
        kl = torch.zeros(num, device=device)
        if trajectory is not None:
            trajectory.append(x)
        for i, (t, s) in enumerate(zip(grid[:-1], grid[1:])):
            relaxed = i >= cut
            if i == cut:
                x = F.one_hot(x, self.vocab_size + 1).float()
            with contextlib.nullcontext() if relaxed else torch.no_grad():
                tt = torch.full((num,), t, device=device)
                masked = x[..., self.mask_id].detach() if relaxed else x == self.mask_id
                log_p = self.denoise(net, x, tt, label, guidance)
                if guide is not None and i >= steps - guided_steps:
                    log_p = guide(log_p, x)
                if reference is not None:  # frozen; the KL's pathwise gradient runs through x
                    kl = kl + self.transition_kl(
                        log_p, self.denoise(reference, x, tt), masked, t, s
                    )
                if relaxed:
                    x = self.relaxed_step(log_p, x, masked, t, s, tau, generator)
                else:
                    x = self.step(log_p, x, t, s, generator)
            if trajectory is not None:
                trajectory.append(x)
        return (x[..., : self.vocab_size] if grad_steps else x), kl

    def relaxed_step(
        self, log_p: Tensor, x: Tensor, masked: Tensor, t: float, s: float, tau: float, generator
    ) -> Tensor:
        """:meth:`step` on one-hots (B, L, V + 1), straight-through: a masked position moves to
        the hard Gumbel-max draw of a·p_θ(x_0|x_t) + (1 − a)·δ_MASK, with the gradient of its
        Gumbel-softmax relaxation at temperature ``tau``; others are kept."""
        a = self.unmask_probability(t, s)
        stay = torch.full_like(log_p[..., :1], math.log(max(1.0 - a, 1e-30)))
        logits = torch.cat([log_p + math.log(max(a, 1e-30)), stay], -1)
        gumbel = -torch.log(
            -torch.log(uniform(logits.shape, generator, logits.device).clamp_min(1e-20))
        )
        soft = ((logits + gumbel) / tau).softmax(-1)
        hard = F.one_hot(soft.argmax(-1), self.vocab_size + 1).float()
        moved = hard + soft - soft.detach()  # straight-through estimator
        return masked[..., None] * moved + (1.0 - masked[..., None]) * x

    @torch.no_grad()
    def sample(self, net, num: int, length: int, steps: int, reference=None, **kw):
        """Tokens (num, length) of :meth:`chain`, and with ``reference`` the path KL (num,)."""
        x, kl = self.chain(net, num, length, steps, reference=reference, **kw)
        return (x, kl) if reference is not None else x

    @staticmethod
    def reward_guide(reward, scale: float):
        """Classifier guidance through x̂₀ = E_θ[one-hot x_0 | x_t]: ``guide(log_p, x_t)`` returns
        log p_θ(x_0 | x_t) + γ·∇r(x̂₀), renormalised — the first-order tilt by exp(γ·r), exact
        for rewards linear in the one-hot. Unmasked positions stay one-hot (their other tokens
        carry −∞). ``reward``: relaxed one-hot (B, L, V) → (B,)."""

        def guide(log_p: Tensor, x_t: Tensor) -> Tensor:
            with torch.enable_grad():
                x_hat = log_p.exp().detach().requires_grad_(True)
                (grad,) = torch.autograd.grad(reward(x_hat).sum(), x_hat)
            return (log_p + scale * grad).log_softmax(-1)

        return guide

    def transition_log_prob(
        self, log_p0: Tensor, x_t: Tensor, x_s: Tensor, t: float, s: float
    ) -> Tensor:
        """log p_θ(x_s | x_t) of one reverse step, summed over positions: (B,).

        A token masked at t is revealed as k with probability a·p_θ(k | x_t) or stays masked with
        probability 1 − a (a = unmask_probability); unmasked tokens are kept with probability 1.
        """
        a = self.unmask_probability(t, s)
        masked = x_t == self.mask_id
        revealed = masked & (x_s != self.mask_id)
        log_token = log_p0.gather(-1, x_s.clamp(max=self.vocab_size - 1)[..., None]).squeeze(-1)
        per_position = torch.where(revealed, math.log(max(a, 1e-30)) + log_token, 0.0)
        per_position = torch.where(masked & ~revealed, math.log(max(1.0 - a, 1e-30)), per_position)
        return per_position.sum(-1)

    def transition_kl(
        self, log_p: Tensor, log_ref: Tensor, masked: Tensor, t: float, s: float
    ) -> Tensor:
        """KL between two reverse transitions x_t → x_s, summed over positions: (B,).

        Both put mass 1 − a on staying masked, so KL = a · KL(p_θ(x_0|x_t) ‖ p_ref(x_0|x_t)) on
        masked positions, with a = (α_s − α_t)/(1 − α_t).
        """
        kl = (log_p.exp() * (log_p - log_ref)).sum(-1)
        return self.unmask_probability(t, s) * (kl * masked).sum(-1)
