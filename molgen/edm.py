"""EDM's own denoiser network (Hoogeboom et al. 2022, ``EGNN_dynamics_QM9``) on our sparse layout.

Input per atom: h = [features (F), t, context (C)] and positions x. An embedding Linear maps
h to ``hidden`` channels; each of ``layers`` equivariant blocks runs ``inv_sublayers`` GCL
sublayers — messages m_ij = φ_e(h_i, h_j, a_ij), a_ij = (|x_i − x_j|², |x⁰_i − x⁰_j|²), gated
by a sigmoid attention, aggregated and added to h_i by a residual node MLP — and then moves
the atoms along (x_i − x_j)/(sqrt(|x_i − x_j|² + 1e-8) + norm_constant) by the separate
φ_x(h_i, h_j, a_ij) (tanh-bounded × coords_range). An output Linear maps back to F + 1 + C
channels, of which the first F are ε̂_features; ε̂_pos is x_out − x_in with its mean over each
molecule removed. The module names equal EDM's, so a released checkpoint's ``dynamics.*``
tensors load without renaming (:mod:`molgen.edm_import`).

EDM runs on padded dense batches with node and edge masks; here nodes are stacked (``batch``)
and ``edge_index`` holds each molecule's ordered pairs i ≠ j, which gives the same function:
masked edges (padding, self-loops) contribute nothing in EDM. Its ``mean`` aggregation divides
by the padded molecule size of the batch; here by the molecule's own size n (EDM's value for
an unpadded batch), so that a molecule's output never depends on its batch neighbours. EDM's
reset of a whole batch's output to zero when any value is NaN is not reproduced.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch
from torch import Tensor, nn
from torch_geometric.utils import scatter

from rewarddiff import UserError
from rewarddiff.conditioning import condition_embedding, per_atom_condition


@dataclass
class EDMConfig:
    hidden: int = 256  # EDM's nf
    layers: int = 9  # equivariant blocks (EDM's n_layers)
    inv_sublayers: int = 1  # GCL sublayers per block
    atom_types: list[int] = field(default_factory=lambda: [1, 6, 7, 8, 9])  # atomic numbers
    coords_range: float = 15.0  # tanh-bounded coordinate step scale, Å
    norm_constant: float = 1.0  # added to |x_i − x_j| in the step direction
    sin_embedding: bool = False  # distances as sinusoid features instead of squared Å
    normalization_factor: float = 1.0  # "sum" aggregation divides by this
    aggregation: str = "sum"  # "sum" | "mean"
    attention: bool = True  # sigmoid gate on messages
    tanh: bool = True  # bound coordinate steps by tanh × coords_range
    context_features: int = 0  # EDM's context_node_nf: per-molecule values fed to every atom
    num_labels: int = 0  # > 0: a zero-initialised class-label embedding (ctrl)
    value_condition: bool = False  # a zero-initialised scalar-condition embedding (rcgdm)

    def __post_init__(self):
        if self.aggregation not in ("sum", "mean"):
            raise UserError(f"network.aggregation: {self.aggregation!r} is not 'sum' or 'mean'")

    @property
    def feature_dim(self) -> int:
        """Invariant state channels per atom: one-hot types + atomic-number channel."""
        return len(self.atom_types) + 1

    def to_dict(self) -> dict:
        return asdict(self)


class Sinusoids:
    """EDM's distance embedding: squared distance (E, 1) Å² → (E, 12) sin/cos of
    |d|·2π·4^k/15, k = 0..5 (periods 15 Å down to 15/4⁵ Å). Detached as in EDM: no gradient
    flows to the positions through it."""

    def __init__(self, max_res: float = 15.0, min_res: float = 15.0 / 2000.0, div: int = 4):
        count = int(math.log(max_res / min_res, div)) + 1
        self.frequencies = 2 * math.pi * div ** torch.arange(count) / max_res
        self.dim = 2 * count

    def __call__(self, d_sq: Tensor) -> Tensor:
        angle = torch.sqrt(d_sq + 1e-8) * self.frequencies.to(d_sq.device)
        return torch.cat([angle.sin(), angle.cos()], -1).detach()


def coord2diff(x: Tensor, edge_index: Tensor, norm_constant: float) -> tuple[Tensor, Tensor]:
    """Squared distances (E, 1) Å² and step directions (x_i − x_j)/(|x_i − x_j| + c) (E, 3),
    |·| = sqrt(d² + 1e-8), for receiver-first edges ``edge_index`` (2, E)."""
    i, j = edge_index
    diff = x[i] - x[j]
    d_sq = diff.pow(2).sum(-1, keepdim=True)
    return d_sq, diff / (torch.sqrt(d_sq + 1e-8) + norm_constant)


def _aggregate(values: Tensor, index: Tensor, norm: Tensor) -> Tensor:
    """Edge values (E, D) summed per receiver, divided by ``norm`` (N, 1) → (N, D)."""
    return scatter(values, index, dim=0, dim_size=len(norm), reduce="sum") / norm


class GCL(nn.Module):
    """One invariant sublayer: attention-gated messages, residual node update."""

    def __init__(self, hidden: int, edge_features: int, attention: bool):
        super().__init__()
        self.edge_mlp = nn.Sequential(
            nn.Linear(2 * hidden + edge_features, hidden), nn.SiLU(),
            nn.Linear(hidden, hidden), nn.SiLU(),
        )  # fmt: skip
        self.node_mlp = nn.Sequential(
            nn.Linear(2 * hidden, hidden), nn.SiLU(), nn.Linear(hidden, hidden)
        )
        self.att_mlp = nn.Sequential(nn.Linear(hidden, 1), nn.Sigmoid()) if attention else None

    def forward(self, h: Tensor, edge_index: Tensor, edge_attr: Tensor, norm: Tensor) -> Tensor:
        """h (N, hidden), edge_attr (E, edge_features), norm (N, 1) → h (N, hidden)."""
        i, j = edge_index
        m = self.edge_mlp(torch.cat([h[i], h[j], edge_attr], -1))
        if self.att_mlp is not None:
            m = m * self.att_mlp(m)
        return h + self.node_mlp(torch.cat([h, _aggregate(m, i, norm)], -1))


class EquivariantUpdate(nn.Module):
    """EDM's coordinate update: x_i += Σ_j direction_ij · tanh(φ_x(h_i, h_j, a_ij))·range."""

    def __init__(self, hidden: int, edge_features: int, tanh: bool, coords_range: float):
        super().__init__()
        last = nn.Linear(hidden, 1, bias=False)
        nn.init.xavier_uniform_(last.weight, gain=0.001)  # start with tiny coordinate steps
        self.coord_mlp = nn.Sequential(
            nn.Linear(2 * hidden + edge_features, hidden), nn.SiLU(),
            nn.Linear(hidden, hidden), nn.SiLU(), last,
        )  # fmt: skip
        self.tanh, self.coords_range = tanh, coords_range

    def forward(
        self,
        h: Tensor,
        x: Tensor,
        edge_index: Tensor,
        direction: Tensor,
        edge_attr: Tensor,
        norm: Tensor,
    ) -> Tensor:
        """h (N, hidden), x (N, 3) Å, direction (E, 3), edge_attr (E, ·), norm (N, 1) → x."""
        i, j = edge_index
        phi = self.coord_mlp(torch.cat([h[i], h[j], edge_attr], -1))
        step = direction * torch.tanh(phi) * self.coords_range if self.tanh else direction * phi
        return x + _aggregate(step, i, norm)


class EquivariantBlock(nn.Module):
    """``inv_sublayers`` GCLs (``gcl_0``, …) then the coordinate update (``gcl_equiv``), all on
    the edge attributes (d², d0²) of the block's input positions."""

    def __init__(self, cfg: EDMConfig, edge_features: int, sinusoids: Sinusoids | None):
        super().__init__()
        self.sublayers = cfg.inv_sublayers
        for k in range(cfg.inv_sublayers):
            self.add_module(f"gcl_{k}", GCL(cfg.hidden, edge_features, cfg.attention))
        self.gcl_equiv = EquivariantUpdate(cfg.hidden, edge_features, cfg.tanh, cfg.coords_range)
        self.norm_constant, self.sinusoids = cfg.norm_constant, sinusoids

    def forward(
        self, h: Tensor, x: Tensor, edge_index: Tensor, d0_attr: Tensor, norm: Tensor
    ) -> tuple[Tensor, Tensor]:
        """h (N, hidden), x (N, 3), d0_attr (E, ·) the input distances' features, norm (N, 1)."""
        d_sq, direction = coord2diff(x, edge_index, self.norm_constant)
        d_attr = d_sq if self.sinusoids is None else self.sinusoids(d_sq)
        edge_attr = torch.cat([d_attr, d0_attr], -1)
        for k in range(self.sublayers):
            h = self.get_submodule(f"gcl_{k}")(h, edge_index, edge_attr, norm)
        return h, self.gcl_equiv(h, x, edge_index, direction, edge_attr, norm)


class EDMGraphNet(nn.Module):
    """EDM's ``EGNN``: ``embedding``, blocks ``e_block_0`` …, ``embedding_out``; in and out
    ``channels`` wide."""

    def __init__(self, cfg: EDMConfig, channels: int):
        super().__init__()
        self.embedding = nn.Linear(channels, cfg.hidden)
        self.embedding_out = nn.Linear(cfg.hidden, channels)
        self.sinusoids = Sinusoids() if cfg.sin_embedding else None
        edge_features = 2 if self.sinusoids is None else 2 * self.sinusoids.dim
        self.blocks = cfg.layers
        for b in range(cfg.layers):
            self.add_module(f"e_block_{b}", EquivariantBlock(cfg, edge_features, self.sinusoids))

    def forward(
        self, h: Tensor, x: Tensor, edge_index: Tensor, norm: Tensor, shift: Tensor | None
    ) -> tuple[Tensor, Tensor]:
        """h (N, channels), x (N, 3) Å, norm (N, 1); ``shift`` (N, hidden) is added to the
        embedded h (our condition embedding) → (h (N, channels), x (N, 3))."""
        d0_sq, _ = coord2diff(x, edge_index, 1.0)
        d0_attr = d0_sq if self.sinusoids is None else self.sinusoids(d0_sq)
        h = self.embedding(h)
        if shift is not None:
            h = h + shift
        for b in range(self.blocks):
            h, x = self.get_submodule(f"e_block_{b}")(h, x, edge_index, d0_attr, norm)
        return self.embedding_out(h), x


class EDMDenoiser(nn.Module):
    """ε-prediction for the EDM state with EDM's network: positions (N, 3) Å and scaled
    features (N, F), time t/T (N,) per node → (ε_pos (N, 3) with zero mean per molecule,
    ε_features (N, F)). Same call as :class:`molgen.model.EGNNDenoiser`."""

    def __init__(self, cfg: EDMConfig):
        super().__init__()
        self.cfg = cfg
        self.egnn = EDMGraphNet(cfg, cfg.feature_dim + 1 + cfg.context_features)
        self.condition = condition_embedding(cfg.hidden, cfg.num_labels, cfg.value_condition)
        if self.condition is not None and cfg.context_features:
            raise UserError(
                "an EDM network conditioned on EDM's context takes no condition embedding"
            )

    def forward(
        self,
        pos: Tensor,
        features: Tensor,
        t: Tensor,
        batch: Tensor,
        edge_index: Tensor,
        label: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        """``label``: one per molecule — with ``context_features`` C, EDM's normalised property
        values (B,) or (B, C) float, (value − mean)/mad; else a class index or value for the
        condition embedding (see ConditionEmbedding)."""
        h = torch.cat([features, t.unsqueeze(-1)], -1)
        if self.cfg.context_features:
            if label is None:
                raise ValueError("this EDM network is conditional: pass its context as label")
            context = label.reshape(len(label), -1).to(h.dtype)
            if context.shape[1] != self.cfg.context_features:
                raise ValueError(
                    f"context of {context.shape[1]} values per molecule, the network takes "
                    f"{self.cfg.context_features}"
                )
            h = torch.cat([h, context[batch]], -1)
        shift = None
        if self.condition is not None:
            shift = per_atom_condition(self.condition, label, batch)
        if self.cfg.aggregation == "sum":
            norm = h.new_full((len(h), 1), self.cfg.normalization_factor)
        else:  # EDM's count of a node's dense edges: its molecule's size (self-loop included)
            degree = torch.bincount(edge_index[0], minlength=len(h))
            norm = (degree + 1).to(h.dtype).unsqueeze(-1)
        h_out, x = self.egnn(h, pos, edge_index, norm, shift)
        velocity = x - pos
        velocity = velocity - scatter(velocity, batch, dim=0, reduce="mean")[batch]
        return velocity, h_out[:, : self.cfg.feature_dim]
