"""EGNN denoiser (Satorras et al. 2021, as used by EDM) on fully connected molecular graphs.

Node features are invariant, positions equivariant: each layer updates features from messages
m_ij = φ_e(h_i, h_j, |x_i − x_j|², |x⁰_i − x⁰_j|²) gated by attention, and moves atoms along
(x_i − x_j) / (|x_i − x_j| + 1) scaled by tanh(φ_x(m_ij))·range, so the network commutes with
rotations, reflections, translations and atom permutations. Works on the flat PyTorch Geometric
layout (nodes stacked, ``batch`` vector) with ``torch_geometric.utils.scatter``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
from torch import Tensor, nn
from torch_geometric.utils import scatter

from rewarddiff.conditioning import condition_embedding, per_atom_condition


@dataclass
class EGNNConfig:
    hidden: int = 256
    layers: int = 9
    atom_types: list[int] = field(default_factory=lambda: [1, 6, 7, 8, 9])  # atomic numbers
    coords_range: float = 15.0  # tanh-bounded coordinate step scale (EDM)
    norm_constant: float = 1.0  # added to |x_i − x_j| in the coordinate update direction
    aggregation_norm: float = 1.0  # messages are summed, then divided by this (EDM: 1)
    num_labels: int = 0  # > 0: a zero-initialised class-label embedding (ctrl)
    value_condition: bool = False  # a zero-initialised scalar-condition embedding (rcgdm)

    @property
    def feature_dim(self) -> int:
        """Invariant state channels per atom: one-hot types + atomic-number channel."""
        return len(self.atom_types) + 1

    def to_dict(self) -> dict:
        return asdict(self)


class EGNNLayer(nn.Module):
    def __init__(self, cfg: EGNNConfig):
        super().__init__()
        h = cfg.hidden
        self.cfg = cfg
        self.edge_mlp = nn.Sequential(
            nn.Linear(2 * h + 2, h), nn.SiLU(), nn.Linear(h, h), nn.SiLU()
        )
        self.attention = nn.Sequential(nn.Linear(h, 1), nn.Sigmoid())
        self.node_mlp = nn.Sequential(nn.Linear(2 * h, h), nn.SiLU(), nn.Linear(h, h))
        last = nn.Linear(h, 1, bias=False)
        nn.init.xavier_uniform_(last.weight, gain=0.001)  # start with tiny coordinate steps
        self.coord_mlp = nn.Sequential(nn.Linear(h, h), nn.SiLU(), last)

    def forward(
        self, h: Tensor, pos: Tensor, edge_index: Tensor, d0_sq: Tensor
    ) -> tuple[Tensor, Tensor]:
        """h (N, hidden), pos (N, 3), edge_index (2, E) receiver-first, d0_sq (E, 1)."""
        i, j = edge_index
        diff = pos[i] - pos[j]
        d_sq = diff.pow(2).sum(-1, keepdim=True)
        m = self.edge_mlp(torch.cat([h[i], h[j], d_sq, d0_sq], -1))
        m = m * self.attention(m)
        norm = self.cfg.aggregation_norm
        agg = scatter(m, i, dim=0, dim_size=len(h), reduce="sum") / norm
        h = h + self.node_mlp(torch.cat([h, agg], -1))
        # x_i += Σ_j (x_i − x_j)/(|x_i − x_j| + c) · tanh(φ_x(m_ij)) · range
        direction = diff / (d_sq.sqrt() + self.cfg.norm_constant)
        step = direction * torch.tanh(self.coord_mlp(m)) * self.cfg.coords_range
        pos = pos + scatter(step, i, dim=0, dim_size=len(h), reduce="sum") / norm
        return h, pos


class EGNNDenoiser(nn.Module):
    """ε-prediction for the EDM state: positions (N, 3) and scaled features (N, F), time t/T
    (N,) per node → (ε_pos (N, 3) with zero mean per molecule, ε_features (N, F))."""

    def __init__(self, cfg: EGNNConfig):
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Linear(cfg.feature_dim + 1, cfg.hidden)
        self.layers = nn.ModuleList(EGNNLayer(cfg) for _ in range(cfg.layers))
        self.out = nn.Linear(cfg.hidden, cfg.feature_dim)
        self.condition = condition_embedding(cfg.hidden, cfg.num_labels, cfg.value_condition)

    def forward(
        self,
        pos: Tensor,
        features: Tensor,
        t: Tensor,
        batch: Tensor,
        edge_index: Tensor,
        label: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        """``label``: one per molecule (B,), class index or value (see ConditionEmbedding)."""
        i, j = edge_index
        d0_sq = (pos[i] - pos[j]).pow(2).sum(-1, keepdim=True)
        h = self.embed(torch.cat([features, t.unsqueeze(-1)], -1))
        if self.condition is not None:
            h = h + per_atom_condition(self.condition, label, batch)
        x = pos
        for layer in self.layers:
            h, x = layer(h, x, edge_index, d0_sq)
        velocity = x - pos
        velocity = velocity - scatter(velocity, batch, dim=0, reduce="mean")[batch]
        return velocity, self.out(h)
