"""EDM's molecule state for the core Gaussian generator (:mod:`rewarddiff.gaussian_generator`).

State per atom: position (3, in the zero centre-of-mass subspace of its molecule), one-hot atom
type / 4 and atomic number / 10 (EDM's scaling), all diffused with one VP schedule; one row
per atom, the EGNN over the fully connected graph of each molecule. Molecule sizes are drawn
from the training histogram ``num_atoms_probs``. Designs travel as the dense (B, N_max, 4)
layout of :mod:`molgen.graph` (positions Å, atomic number; 0 = padding).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
from torch import Tensor
from torch_geometric.utils import scatter

from molgen.graph import fully_connected_edges, to_nodes
from rewarddiff.diffusion.gaussian import GaussianDiffusion
from rewarddiff.gaussian_generator import Frame, Reconstruction, StateLayout

ONE_HOT_SCALE, CHARGE_SCALE = 4.0, 10.0
EDM_BIN_FLOOR = 1e-10  # EDM adds it to every bin's mass before the log


def remove_mean(x: Tensor, batch: Tensor) -> Tensor:
    """Project the first three columns (positions) of (N, D) onto zero mean per molecule."""
    pos = x[:, :3] - scatter(x[:, :3], batch, dim=0, reduce="mean")[batch]
    return torch.cat([pos, x[:, 3:]], -1)


@dataclass(frozen=True)
class MoleculeLayout(StateLayout):
    atom_types: tuple[int, ...]  # atomic numbers of the one-hot channels
    num_atoms_probs: Tensor  # (max_atoms + 1,) float64 histogram of molecule sizes
    has_size_distribution = True  # refit_sizes: rgdm's size_mix

    def __post_init__(self):
        object.__setattr__(self, "atom_types", tuple(int(z) for z in self.atom_types))
        probs = torch.as_tensor(self.num_atoms_probs, dtype=torch.float64)
        object.__setattr__(self, "num_atoms_probs", probs)

    @property
    def max_atoms(self) -> int:
        return len(self.num_atoms_probs) - 1

    @property
    def feature_dim(self) -> int:
        """Invariant channels per atom F: one-hot types and the atomic-number channel."""
        return len(self.atom_types) + 1

    @staticmethod
    def _frame(mask: Tensor) -> Frame:
        """The frame of molecules with atom slots ``mask`` (B, N_max)."""
        batch = torch.arange(len(mask), device=mask.device)[:, None].expand_as(mask)[mask]
        return Frame(len(mask), batch, fully_connected_edges(batch), mask)

    def draw(self, num: int, generator: torch.Generator | None, device) -> Frame:
        """Sizes ~ ``num_atoms_probs`` (drawn on the CPU generator)."""
        sizes = torch.multinomial(self.num_atoms_probs, num, replacement=True, generator=generator)
        mask = (torch.arange(self.max_atoms)[None, :] < sizes[:, None]).to(device)
        return self._frame(mask)

    def state_shape(self, frame: Frame) -> tuple[int, ...]:
        return (len(frame.batch), 3 + self.feature_dim)

    def encode(self, x: Tensor) -> tuple[Tensor, Frame]:
        """Dense (B, N_max, 4) → state (N, 3 + F) (zero centre of mass) and frame."""
        pos, numbers, _, mask = to_nodes(x)
        table = torch.full((119,), -1, dtype=torch.long, device=x.device)
        table[torch.tensor(self.atom_types, device=x.device)] = torch.arange(
            len(self.atom_types), device=x.device
        )
        types = table[numbers.clamp(max=118)]
        if (types < 0).any():
            bad = sorted(set(numbers[types < 0].tolist()))
            raise ValueError(f"atomic numbers {bad} are not in the model's atom types")
        one_hot = torch.nn.functional.one_hot(types, len(self.atom_types)).float()
        state = torch.cat([pos, one_hot / ONE_HOT_SCALE, numbers[:, None] / CHARGE_SCALE], -1)
        frame = self._frame(mask)
        return remove_mean(state, frame.batch), frame

    def decode(self, state: Tensor, frame: Frame) -> Tensor:
        """State (N, 3 + F) → dense (B, N_max, 4): atom type by argmax of the one-hot block
        (the atomic-number channel is a training signal only, as in EDM); differentiable in
        the positions."""
        atom_types = torch.tensor(self.atom_types, device=state.device)
        numbers = atom_types[state[:, 3:-1].argmax(-1)]
        x = torch.zeros(*frame.mask.shape, 4, device=state.device)
        x[frame.mask] = torch.cat([state[:, :3], numbers[:, None].float()], -1)
        return x

    def denoise(self, net, state: Tensor, t: Tensor, frame: Frame, label) -> Tensor:
        """The EGNN's (ε_pos, ε_features) as one (N, 3 + F) tensor; ``label`` per molecule."""
        return torch.cat(net(state[:, :3], state[:, 3:], t, frame.batch, frame.edges, label), -1)

    def project(self, x: Tensor, frame: Frame) -> Tensor:
        return remove_mean(x, frame.batch)

    def _sizes(self, frame: Frame) -> Tensor:
        return frame.mask.sum(1)

    def free_dims(self, frame: Frame) -> Tensor:
        """3(n − 1) position dimensions (zero centre of mass) + n·F feature dimensions."""
        n = self._sizes(frame).double()
        return 3 * (n - 1) + n * self.feature_dim

    def log_reconstruction(
        self, d: GaussianDiffusion, x: Tensor, eps_hat: Tensor, noise: Tensor, frame: Frame
    ) -> Tensor:
        """EDM's log p(x | z_0): positions Gaussian over their (3n − 3)-dim subspace, atom types
        and atomic numbers as discretised Gaussians (unit bins)."""
        ab = d.alpha_bar.to(x.device)
        sigma_over_alpha = ((1 - ab[0]) / ab[0]).sqrt()
        dims_pos = 3 * (self._sizes(frame) - 1)
        sq_pos = frame.per_design((eps_hat[:, :3] - noise[:, :3]).pow(2).sum(-1)).double()
        log_pos = -0.5 * sq_pos - dims_pos * (
            torch.log(sigma_over_alpha) + 0.5 * math.log(2 * math.pi)
        )
        h_hat = d.predict_x0(d.q_sample(x, 0, noise), 0, eps_hat)[:, 3:]
        k = self.feature_dim - 1
        onehot_hat, charge_hat = h_hat[:, :k] * ONE_HOT_SCALE, h_hat[:, k] * CHARGE_SCALE
        true_type = (x[:, 3 : 3 + k] * ONE_HOT_SCALE).argmax(-1)
        true_charge = (x[:, 3 + k] * CHARGE_SCALE).round()
        # P(ĥ_c in the bin of 1) per class, normalised over classes; P(charge bin)
        log_bins = _log_bin(onehot_hat - 1, sigma_over_alpha * ONE_HOT_SCALE)
        log_type = log_bins.gather(1, true_type[:, None])[:, 0] - log_bins.logsumexp(-1)
        log_charge = _log_bin(charge_hat - true_charge, sigma_over_alpha * CHARGE_SCALE)
        return log_pos + frame.per_design(log_type + log_charge).double()

    def edm_reconstruction(self, d, x, z0, eps_hat, noise, frame) -> Reconstruction:
        """EDM's log p(x | z_0) in pieces (``log_pxh_given_z0_without_constants``): the ε error
        of the positions over 3(n − 1) dimensions; atom types and atomic numbers as unit bins
        of std σ_0·scale centred on z_0's features·scale (not on x̂_0: the network does not
        enter), each bin's mass floored by 1e-10, types normalised over the classes."""
        sigma0 = (1 - d.alpha_bar[0]).sqrt().to(x.device)
        sq_pos = frame.per_design((eps_hat[:, :3] - noise[:, :3]).double().pow(2).sum(-1))
        dims_pos = 3 * (self._sizes(frame) - 1).double()
        k = self.feature_dim - 1
        true_type = (x[:, 3 : 3 + k] * ONE_HOT_SCALE).argmax(-1)
        true_charge = (x[:, 3 + k] * CHARGE_SCALE).round()
        # log(P(|c + σ_0·scale·ε| < ½) + 1e-10) for centres c = z_0·scale − the true value
        log_bins = _log_floored(_log_bin(z0[:, 3 : 3 + k] * ONE_HOT_SCALE - 1,
                                         sigma0 * ONE_HOT_SCALE))  # fmt: skip
        log_type = log_bins.gather(1, true_type[:, None])[:, 0] - log_bins.logsumexp(-1)
        log_charge = _log_floored(
            _log_bin(z0[:, 3 + k] * CHARGE_SCALE - true_charge, sigma0 * CHARGE_SCALE)
        )
        return Reconstruction(sq_pos, dims_pos, frame.per_design(log_type + log_charge))

    def log_size(self, frame: Frame) -> Tensor:
        """log p(n) under the size histogram (−inf for sizes it never produced)."""
        probs = self.num_atoms_probs.to(frame.mask.device)
        return torch.log(probs[self._sizes(frame)])

    def with_config(self, config: dict) -> MoleculeLayout:
        """With the size distribution a fine-tuned model's config saved."""
        if "num_atoms_probs" not in config:
            return self
        return replace(self, num_atoms_probs=torch.tensor(config["num_atoms_probs"]))

    def refit_sizes(self, x: Tensor, weights: Tensor, mix: float) -> MoleculeLayout:
        """p(N) moved toward the weighted size histogram of ``x`` (B, N_max, 4), weights (B,):
        p ← (1 − mix)·p + mix·Σ_i w_i 1[N_i = N] (the weighted-likelihood fit of p(N), damped).
        EDM samples sizes from a fixed histogram; without this, fine-tuning cannot move size."""
        sizes = (x[..., 3] > 0.5).sum(1)
        target = torch.zeros_like(self.num_atoms_probs)
        target.index_add_(0, sizes, weights.to(target.dtype) / weights.sum())
        return replace(self, num_atoms_probs=(1 - mix) * self.num_atoms_probs + mix * target)

    def saved_settings(self) -> dict:
        return {"num_atoms_probs": self.num_atoms_probs.tolist()}


def _log_bin(offset: Tensor, sigma: Tensor) -> Tensor:
    """log P(|offset + σ ε| < 1/2), ε ~ N(0, 1): the mass of a unit bin around the centre.
    Symmetric in the offset; computed for |offset| in float64 so that the far tail stays
    finite."""
    offset, sigma = offset.abs().double(), torch.as_tensor(sigma).double()
    upper = torch.special.log_ndtr((0.5 - offset) / sigma)
    lower = torch.special.log_ndtr((-0.5 - offset) / sigma)
    return upper + torch.log1p(-torch.exp(lower - upper))


def _log_floored(log_p: Tensor) -> Tensor:
    """log(p + 1e-10) from log p, as EDM floors its bin masses."""
    return torch.logaddexp(log_p, log_p.new_tensor(math.log(EDM_BIN_FLOOR)))
