"""EDM-style E(3)-equivariant diffusion over molecules, bound to an EGNN denoiser.

State per atom: position (3, in the zero centre-of-mass subspace of its molecule), one-hot atom
type / 4 and atomic number / 10 (EDM's scaling), all diffused with one VP schedule from
:mod:`rewarddiff.diffusion.gaussian`. Molecule sizes are drawn from the training histogram.
Designs travel as the dense (B, N_max, 4) layout of :mod:`molgen.graph`. Implements the
generator interface the fine-tuning methods use (``sample``, ``loss``, ``log_likelihood``).
"""

from __future__ import annotations

import contextlib
import itertools
import math
from dataclasses import dataclass, field
from typing import NamedTuple

import torch
from torch import Tensor
from torch_geometric.utils import scatter

from molgen.graph import fully_connected_edges, to_nodes
from molgen.model import EGNNDenoiser
from rewarddiff.diffusion import null_label
from rewarddiff.diffusion.gaussian import GaussianDiffusion
from rewarddiff.generator import NetworkGenerator

ONE_HOT_SCALE, CHARGE_SCALE = 4.0, 10.0


def remove_mean(x: Tensor, batch: Tensor) -> Tensor:
    """Project the first three columns (positions) of (N, D) onto zero mean per molecule."""
    pos = x[:, :3] - scatter(x[:, :3], batch, dim=0, reduce="mean")[batch]
    return torch.cat([pos, x[:, 3:]], -1)


class ChainState(NamedTuple):
    """One state of the reverse chain of a batch of b molecules with N atoms in all."""

    state: Tensor  # (N, 3 + F) positions (zero centre of mass) and scaled features
    batch: Tensor  # (N,) molecule of each atom
    edges: Tensor  # (2, E) fully connected within each molecule
    mask: Tensor  # (b, N_max) atom slots in use


@dataclass
class MoleculeGenerator(NetworkGenerator):
    diffusion: GaussianDiffusion
    net: EGNNDenoiser
    num_atoms_probs: Tensor  # (max_atoms + 1,) training histogram of molecule sizes
    sampling_steps: int = 1000
    sampler: str = "ddpm"  # or "ddim" (deterministic, eta = 0)
    sample_batch: int = 256
    config: dict = field(default_factory=dict)  # rebuilds ``net`` (saved with the weights)
    has_size_distribution = True  # fit_size_distribution: rgdm's size_mix

    def __post_init__(self):
        self.diffusion.project = remove_mean
        table = torch.full((119,), -1, dtype=torch.long)
        table[torch.tensor(self.net.cfg.atom_types)] = torch.arange(len(self.net.cfg.atom_types))
        self.type_index = table

    @property
    def max_atoms(self) -> int:
        return len(self.num_atoms_probs) - 1

    def load_config(self, config: dict) -> None:
        """Adopt a saved ``config``, including a size distribution moved by fine-tuning."""
        self.config = config
        if "num_atoms_probs" in config:
            self.num_atoms_probs = torch.tensor(config["num_atoms_probs"], dtype=torch.float64)

    def fit_size_distribution(self, x: Tensor, weights: Tensor, mix: float) -> None:
        """Move p(N) toward the weighted size histogram of ``x`` (B, N_max, 4) with weights (B,):
        p ← (1 − mix)·p + mix·Σ_i w_i 1[N_i = N] (the weighted-likelihood fit of p(N), damped).
        EDM samples sizes from a fixed histogram; without this, fine-tuning cannot move size."""
        sizes = (x[..., 3] > 0.5).sum(1)
        target = torch.zeros_like(self.num_atoms_probs)
        target.index_add_(0, sizes, weights.to(target.dtype) / weights.sum())
        self.num_atoms_probs = (1 - mix) * self.num_atoms_probs + mix * target
        self.config = self.config | {"num_atoms_probs": self.num_atoms_probs.tolist()}

    # ----- state encoding -------------------------------------------------------------------
    def encode(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Dense (B, N_max, 4) → state (N, 3 + F) on the model's device, batch (N,), mask."""
        pos, numbers, batch, mask = to_nodes(x.to(self.device))
        types = self.type_index.to(numbers.device)[numbers.clamp(max=118)]
        if (types < 0).any():
            bad = sorted(set(numbers[types < 0].tolist()))
            raise ValueError(f"atomic numbers {bad} are not in the model's atom types")
        one_hot = torch.nn.functional.one_hot(types, len(self.net.cfg.atom_types)).float()
        state = torch.cat([pos, one_hot / ONE_HOT_SCALE, numbers[:, None] / CHARGE_SCALE], -1)
        return remove_mean(state, batch), batch, mask

    def decode(self, state: Tensor, mask: Tensor) -> Tensor:
        """State (N, 3 + F) → dense (B, N_max, 4) on the state's device: atom type by argmax of
        the one-hot block (the atomic-number channel is a training signal only, as in EDM);
        differentiable in the positions."""
        atom_types = torch.tensor(self.net.cfg.atom_types, device=state.device)
        numbers = atom_types[state[:, 3:-1].argmax(-1)]
        x = torch.zeros(*mask.shape, 4, device=state.device)
        x[mask] = torch.cat([state[:, :3], numbers[:, None].float()], -1)
        return x

    def _eps(
        self,
        net,
        state: Tensor,
        t: Tensor,
        batch: Tensor,
        edges: Tensor,
        label: Tensor | None = None,
        guidance: float = 0.0,
    ) -> Tensor:
        """ε̂ (N, 3 + F) for integer steps t (N,); ``label`` (B,) per molecule; classifier-free
        guidance ε = (1 + w)·ε(label) − w·ε(no label) with w = ``guidance``."""
        tt = t.float() / self.diffusion.num_steps
        eps = torch.cat(net(state[:, :3], state[:, 3:], tt, batch, edges, label), -1)
        if guidance and label is not None:
            null = null_label(label, net.cfg.num_labels)
            uncond = torch.cat(net(state[:, :3], state[:, 3:], tt, batch, edges, null), -1)
            eps = (1 + guidance) * eps - guidance * uncond
        return eps

    def _noise(self, like: Tensor, batch: Tensor, generator: torch.Generator | None) -> Tensor:
        """Projected N(0, I) noise; drawn on the generator's device, moved to the state's."""
        device = generator.device if generator is not None else like.device
        z = torch.randn(like.shape, generator=generator, device=device).to(like.device)
        return remove_mean(z, batch)

    # ----- training -------------------------------------------------------------------------
    def loss(
        self,
        x: Tensor,
        weights: Tensor | None = None,
        label: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """EDM's ε-loss: per molecule the mean squared error over its atoms' state channels,
        t ~ U{1..T}; averaged over molecules (weighted by ``weights`` (B,) if given);
        ``label`` (B,) conditions a conditional network."""
        self.net.train()
        gen_device = generator.device if generator is not None else "cpu"
        t_mol = torch.randint(
            1, self.diffusion.num_steps + 1, (len(x),), generator=generator, device=gen_device
        )
        n_atoms = int((x[..., 3] > 0.5).sum())
        noise = torch.randn(n_atoms, 3 + self.net.cfg.feature_dim, generator=generator,
                            device=gen_device)  # fmt: skip
        per_mol = self.denoising_error(x, t_mol, noise, label)
        if weights is None:
            return per_mol.mean()
        weights = weights.to(per_mol.device)
        return (weights * per_mol).sum() / weights.sum()

    def denoising_error(
        self, x: Tensor, t_mol: Tensor, noise: Tensor, label: Tensor | None = None
    ) -> Tensor:
        """Per-molecule mean squared ε error (B,) at steps ``t_mol`` (B,) for raw noise (N, D)
        in flat node order (projected to zero centre of mass here)."""
        state, batch, _ = self.encode(x)
        t = t_mol.to(state.device)[batch]
        noise = remove_mean(noise.to(state.device), batch)
        z_t = self.diffusion.q_sample(state, t, noise)
        label = None if label is None else label.to(state.device)
        eps = self._eps(self.net, z_t, t, batch, fully_connected_edges(batch), label)
        return scatter(self.diffusion.epsilon_loss(eps, noise), batch, dim=0, reduce="mean")

    # ----- sampling -------------------------------------------------------------------------
    @torch.no_grad()
    def sample(
        self,
        num: int,
        generator: torch.Generator | None = None,
        reference: MoleculeGenerator | None = None,
        label: Tensor | None = None,
        guidance: float | None = None,
        guide=None,
        guided_steps: int = 0,
    ) -> tuple[Tensor, Tensor | None]:
        """Molecules (num, N_max, 4) and, with ``reference`` (unconditional p_pre), the path KL
        to it (num,) in nats: the sum of per-step Gaussian KLs (the final, noiseless t → 0 step
        charged with its posterior variance, so that moving it is not free); DDPM sampler; both
        on the CPU. ``label`` (num,) conditions the samples (default: :meth:`default_label`),
        ``guidance`` is the classifier-free guidance scale; ``guide`` (:meth:`guide`) steers
        the last ``guided_steps`` steps."""

        def draw(b, labels, w):
            state, kl, mask = self._chain(
                b, generator, reference, labels, w, 0, guide, guided_steps
            )
            return self.decode(state, mask), (kl if reference is not None else None)

        return self.sample_batches(num, label, guidance, draw)

    def sample_differentiable(
        self,
        num: int,
        grad_steps: int,
        reference: MoleculeGenerator | None = None,
        tau: float = 1.0,
        generator: torch.Generator | None = None,
        label: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Molecules (num, N_max, 4) whose positions are differentiable through the last
        ``grad_steps`` reparameterised steps (atom types are the argmax, constant), and the path
        KL to ``reference`` (num,), differentiable in its last terms; on the model's device.
        ``tau`` (the discrete generators' Gumbel temperature) is ignored."""
        self.net.eval()
        label = None if label is None else label.to(self.device)
        state, kl, mask = self._chain(num, generator, reference, label, 0.0, grad_steps)
        return self.decode(state, mask), kl

    @staticmethod
    def discrete(x: Tensor) -> Tensor:
        """The designs of a differentiable sample: (n, N_max, 4) on the CPU."""
        return x.detach().cpu()

    def guide(self, reward, scale: float):
        """Reconstruction guidance (DPS) for :meth:`sample`: ε̂ − γ·σ_t·∇_{z_t} r(x̂₀(z_t)),
        through the positions of x̂₀ (projected to zero centre of mass). ``reward``: dense
        molecules (B, N_max, 4) → (B,), differentiable in the positions."""

        def guided_eps(state, t, batch, edges, mask, label):
            with torch.enable_grad():
                state = state.detach().requires_grad_(True)
                eps = self._eps(self.net, state, t, batch, edges, label)
                x0_hat = self.decode(self.diffusion.predict_x0(state, t, eps), mask)
                (grad,) = torch.autograd.grad(reward(x0_hat).sum(), state)
            sigma = self.diffusion.noise_std(t)[:, None]
            return eps.detach() - scale * sigma * remove_mean(grad, batch)

        return guided_eps

    def _chain(
        self,
        b: int,
        generator,
        reference,
        label: Tensor | None,
        guidance: float,
        grad_steps: int,
        guide=None,
        guided_steps: int = 0,
        trajectory: list[ChainState] | None = None,
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Reverse diffusion of ``b`` molecules: final state (N, 3 + F), path KL (b,) and node
        mask (b, N_max), on the model's device; the last ``grad_steps`` steps track gradients.
        The states z_T … z_0 are appended to ``trajectory`` if given."""
        sizes = torch.multinomial(self.num_atoms_probs, b, replacement=True, generator=generator)
        mask = torch.arange(self.max_atoms)[None, :] < sizes[:, None]
        mask = mask.to(self.device)
        batch = torch.arange(b, device=self.device)[:, None].expand_as(mask)[mask]
        edges = fully_connected_edges(batch)
        width = 3 + self.net.cfg.feature_dim
        state = self._noise(torch.empty(len(batch), width, device=self.device), batch, generator)
        path_kl = torch.zeros(b, device=self.device)
        steps = list(itertools.pairwise(self.diffusion.timesteps(self.sampling_steps)))
        if trajectory is not None:
            trajectory.append(ChainState(state, batch, edges, mask))
        # DDIM for plain sampling only: KLs, gradients and trajectories (ddpo's per-step
        # densities) need the Gaussian steps
        plain = reference is None and not grad_steps and trajectory is None
        ddim = self.sampler == "ddim" and plain
        for k, (t, s) in enumerate(steps):
            track = k >= len(steps) - grad_steps
            with contextlib.nullcontext() if track else torch.no_grad():
                t_vec = torch.full((len(batch),), t, device=self.device)
                if guide is not None and k >= len(steps) - guided_steps:
                    eps = guide(state, t_vec, batch, edges, mask, label)
                else:
                    eps = self._eps(self.net, state, t_vec, batch, edges, label, guidance)
                noise = self._noise(state, batch, generator)
                if ddim:
                    state = self.diffusion.ddim_step(state, t, s, eps, 0.0, batch, noise=noise)
                    continue
                new, mean, var = self.diffusion.ddpm_step(state, t, s, eps, batch, noise=noise)
                if reference is not None:  # frozen p_pre; gradient reaches it through z_t
                    eps_ref = self._eps(reference.net, state, t_vec, batch, edges)
                    mean_ref = self.diffusion.ddpm_step(state, t, s, eps_ref, batch, noise=noise)[1]
                    kl = self.diffusion.gaussian_kl(mean, mean_ref, var)
                    path_kl = path_kl + scatter(kl, batch, dim=0, dim_size=b, reduce="sum")
                state = new
                if trajectory is not None:
                    trajectory.append(ChainState(state, batch, edges, mask))
        return state, path_kl, mask

    # ----- per-step transitions (ddpo) ------------------------------------------------------
    @torch.no_grad()
    def sample_trajectory(
        self, num: int, generator: torch.Generator | None = None
    ) -> tuple[list[ChainState], list[int], Tensor]:
        """The whole reverse chain of an unconditional DDPM :meth:`sample` of ``num`` ≤
        ``sample_batch`` molecules: states z_T … z_0 (on the model's device), the integer step
        grid T > … > 0 and the molecules (num, N_max, 4) on the CPU."""
        self.net.eval()
        states = []
        state, _, mask = self._chain(num, generator, None, None, 0.0, 0, trajectory=states)
        return states, self.diffusion.timesteps(self.sampling_steps), self.decode(state, mask).cpu()

    def _step(self, z_t: ChainState, t: int, s: int, net=None) -> tuple[Tensor, Tensor]:
        """Mean (N, 3 + F) and variance (scalar tensor) of the reverse step t → s under ``net``."""
        t_vec = torch.full((len(z_t.batch),), t, device=z_t.state.device)
        eps = self._eps(net or self.net, z_t.state, t_vec, z_t.batch, z_t.edges)
        mean, var = self.diffusion.posterior_mean_var(z_t.state, t, s, eps)
        return remove_mean(mean, z_t.batch), var[0]

    def step_log_prob(self, z_t: ChainState, z_s: ChainState, t: int, s: int) -> Tensor:
        """log N(z_s; mean_θ(z_t), var·I) per molecule (b,) in nats over its 3(n − 1) + n·F
        subspace dimensions, with grad. The final step (s = 0) is deterministic: zeros, kept
        on the graph."""
        mean, var = self._step(z_t, t, s)
        b = len(z_t.mask)
        if s == 0:
            return scatter(mean.sum(-1), z_t.batch, dim=0, dim_size=b, reduce="sum") * 0.0
        sq = scatter((z_s.state - mean).pow(2).sum(-1), z_t.batch, dim=0, dim_size=b, reduce="sum")
        n_atoms = z_t.mask.sum(1).to(sq.dtype)
        dims = 3 * (n_atoms - 1) + n_atoms * self.net.cfg.feature_dim
        return -sq / (2 * var) - 0.5 * dims * torch.log(2 * math.pi * var)

    def step_kl(self, z_t: ChainState, t: int, s: int, reference: MoleculeGenerator) -> Tensor:
        """KL(p_θ(· | z_t) ‖ p_ref(· | z_t)) of one reverse step per molecule (b,) in nats, with
        grad (the reference's under no_grad)."""
        mean, var = self._step(z_t, t, s)
        with torch.no_grad():
            mean_ref, _ = self._step(z_t, t, s, reference.net)
        kl = self.diffusion.gaussian_kl(mean, mean_ref, var)
        return scatter(kl, z_t.batch, dim=0, dim_size=len(z_t.mask), reduce="sum")

    # ----- likelihood -----------------------------------------------------------------------
    @torch.no_grad()
    def log_likelihood(
        self, x: Tensor, num_t: int = 16, generator: torch.Generator | None = None
    ) -> Tensor:
        """Variational lower bound on log p(x) in nats per molecule (n,): log p(size) − prior KL
        − T·E_t[L_t] (``num_t`` Monte-Carlo draws of t) + log p(x | z_0), with positions in
        the (3n − 3)-dim subspace and types / atomic numbers as discretised Gaussians (EDM)."""
        self.net.eval()
        return torch.cat(
            [
                self._elbo(x[i : i + self.sample_batch], num_t, generator)
                for i in range(0, len(x), self.sample_batch)
            ]
        )

    def _elbo(self, x: Tensor, num_t: int, generator) -> Tensor:
        d = self.diffusion
        state, batch, mask = self.encode(x)
        edges = fully_connected_edges(batch)
        n_atoms = mask.sum(1).to(state.device)
        b = len(mask)
        dims_pos = 3 * (n_atoms - 1)
        dims_all = dims_pos + n_atoms * self.net.cfg.feature_dim
        ab = d.alpha_bar.to(state.device)

        def per_mol(values: Tensor) -> Tensor:  # (N,) → (B,)
            return scatter(values, batch, dim=0, dim_size=b, reduce="sum").double()

        # prior: KL(q(z_T | x) || N(0, I)) over the subspace dimensions
        ab_T = ab[-1]
        sq = per_mol(state.pow(2).sum(-1))
        prior = 0.5 * (ab_T * sq + dims_all * ((1 - ab_T) - 1 - torch.log(1 - ab_T)))
        # diffusion: T · E_t [ 0.5 (SNR(t−1)/SNR(t) − 1) ||ε − ε̂||² ]
        snr = ab / (1 - ab)
        diffusion_terms = torch.zeros(b, dtype=torch.float64, device=state.device)
        for _ in range(num_t):
            t_mol = torch.randint(1, d.num_steps + 1, (b,), generator=generator).to(state.device)
            t = t_mol[batch]
            noise = self._noise(state, batch, generator)
            eps = self._eps(self.net, d.q_sample(state, t, noise), t, batch, edges)
            err = per_mol((eps - noise).pow(2).sum(-1))
            diffusion_terms += 0.5 * (snr[t_mol - 1] / snr[t_mol] - 1) * err
        diffusion_terms *= d.num_steps / num_t
        # reconstruction at t = 0
        t0 = torch.zeros(len(batch), dtype=torch.long, device=state.device)
        noise = self._noise(state, batch, generator)
        z0 = d.q_sample(state, t0, noise)
        eps = self._eps(self.net, z0, t0, batch, edges)
        sigma_over_alpha = ((1 - ab[0]) / ab[0]).sqrt()
        log_px = -0.5 * per_mol((eps[:, :3] - noise[:, :3]).pow(2).sum(-1)) - dims_pos * (
            torch.log(sigma_over_alpha) + 0.5 * math.log(2 * math.pi)
        )
        h_hat = d.predict_x0(z0, t0, eps)[:, 3:]
        k = self.net.cfg.feature_dim - 1
        onehot_hat = h_hat[:, :k] * ONE_HOT_SCALE
        charge_hat = h_hat[:, k] * CHARGE_SCALE
        true_type = (state[:, 3 : 3 + k] * ONE_HOT_SCALE).argmax(-1)
        true_charge = (state[:, 3 + k] * CHARGE_SCALE).round()
        # P(ĥ_c in the bin of 1) per class, normalised over classes; P(charge bin)
        log_bins = _log_bin(onehot_hat - 1, sigma_over_alpha * ONE_HOT_SCALE)
        log_type = log_bins.gather(1, true_type[:, None])[:, 0] - log_bins.logsumexp(-1)
        log_charge = _log_bin(charge_hat - true_charge, sigma_over_alpha * CHARGE_SCALE)
        log_ph = per_mol(log_type + log_charge)
        log_size = torch.log(self.num_atoms_probs.to(state.device)[n_atoms].double())
        return (log_size - prior - diffusion_terms + log_px + log_ph).float().cpu()


def _log_bin(offset: Tensor, sigma: Tensor) -> Tensor:
    """log P(|offset + σ ε| < 1/2), ε ~ N(0, 1): the mass of a unit bin around the centre.
    Symmetric in the offset; computed for |offset| in float64 so that the far tail stays
    finite."""
    offset, sigma = offset.abs().double(), torch.as_tensor(sigma).double()
    upper = torch.special.log_ndtr((0.5 - offset) / sigma)
    lower = torch.special.log_ndtr((-0.5 - offset) / sigma)
    return upper + torch.log1p(-torch.exp(lower - upper))
