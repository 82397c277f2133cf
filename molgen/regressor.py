"""E(3)-equivariant property regressor for 3D molecules, built from e3nn primitives.

The network reads the dense padded batch of :mod:`molgen.graph` (``x`` (B, N_max, 4): positions in
Å and atomic number, 0 = padding) and returns one value per molecule (or ``num_outputs``). It is a
small NequIP-style message-passing network:

* atoms → one-hot element embedding → linear map to ``mul`` scalars (``0e``);
* edges: all atom pairs of a molecule closer than ``max_radius``; each edge carries the spherical
  harmonics of its unit vector (l ≤ ``lmax``) and a smooth radial basis of its length that goes to
  zero at the cutoff, so the output is continuous as atoms cross ``max_radius``;
* each interaction layer: linear map, depthwise ("uvu") tensor product of neighbour features with
  the edge harmonics whose per-edge weights come from an MLP of the radial basis, sum over
  neighbours divided by √(``avg_num_neighbors``), linear map, gate nonlinearity (SiLU on scalars,
  sigmoid gates on l > 0 features) and a linear self-interaction added before the gate, plus an
  identity residual when the feature irreps are unchanged;
* hidden features are ``mul × (0e + 1o + 2e + …)`` up to ``lmax`` (parity (−1)^l, the irreps
  reachable from the spherical harmonics; default ``lmax=1``); the last layer keeps scalars only;
* readout: invariant scalars → MLP → per-atom values → sum (extensive properties such as α, Cv)
  or mean over each molecule's atoms.

The output is invariant to rotations, reflections, translations, the order of atoms within a
molecule, the amount of padding and the other molecules of the batch.

Targets are not normalised here: standardise ``y`` before fitting (``(y − mean) / std`` on the
training split) and undo it on the predictions. With ``reduce="sum"`` the network's natural
output grows with the number of atoms, which suits extensive properties.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields

import torch
import torch.nn.functional as F
from e3nn import o3
from e3nn.math import soft_one_hot_linspace
from e3nn.nn import FullyConnectedNet, Gate
from torch import Tensor, nn
from torch_geometric.utils import scatter

from molgen.graph import fully_connected_edges, to_nodes

MAX_ATOMIC_NUMBER = 118


@dataclass
class RegressorConfig:
    atom_types: list[int] = field(default_factory=lambda: [1, 6, 7, 8, 9])  # atomic numbers
    mul: int = 32  # multiplicity of every hidden irrep
    # highest angular momentum of hidden features and edge harmonics; lmax=2 is about 4× slower
    # on CPU (e3nn has no specialised kernels for products of two l ≥ 1 irreps into l ≥ 1)
    lmax: int = 1
    layers: int = 3
    max_radius: float = 5.0  # Å
    num_basis: int = 10  # radial basis functions
    radial_neurons: int = 64
    num_outputs: int = 1
    reduce: str = "sum"  # "sum" (extensive properties) or "mean"
    avg_num_neighbors: float = 15.0  # message normalisation (QM9 within 5 Å: about 15)

    def __post_init__(self):
        self.atom_types = [int(z) for z in self.atom_types]
        if not self.atom_types or len(set(self.atom_types)) != len(self.atom_types):
            raise ValueError(f"atom_types must be distinct atomic numbers, got {self.atom_types}")
        if any(z < 1 or z > MAX_ATOMIC_NUMBER for z in self.atom_types):
            raise ValueError(f"atom_types must lie in 1..{MAX_ATOMIC_NUMBER}: {self.atom_types}")
        if self.reduce not in ("sum", "mean"):
            raise ValueError(f"reduce must be 'sum' or 'mean', got {self.reduce!r}")
        if self.layers < 1 or self.mul < 1 or self.lmax < 0 or self.num_outputs < 1:
            raise ValueError("layers, mul and num_outputs must be ≥ 1 and lmax ≥ 0")
        if self.max_radius <= 0:
            raise ValueError(f"max_radius must be positive, got {self.max_radius}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, config: dict) -> RegressorConfig:
        """Build from a dict that may hold other keys too (e.g. a saved ensemble's config)."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in config.items() if k in names})


def hidden_irreps(mul: int, lmax: int) -> o3.Irreps:
    """``mul × 0e + mul × 1o + mul × 2e + …`` up to ``lmax``."""
    return o3.Irreps([(mul, (degree, (-1) ** degree)) for degree in range(lmax + 1)])


class Interaction(nn.Module):
    """One message-passing layer: ``irreps_in`` node features → ``irreps_out`` node features."""

    def __init__(
        self,
        irreps_in: o3.Irreps,
        irreps_out: o3.Irreps,
        irreps_sh: o3.Irreps,
        num_basis: int,
        radial_neurons: int,
        avg_num_neighbors: float,
    ):
        super().__init__()
        self.irreps_in, self.irreps_out = o3.Irreps(irreps_in), o3.Irreps(irreps_out)
        scalars = o3.Irreps([(mul, ir) for mul, ir in self.irreps_out if ir.l == 0])
        gated = o3.Irreps([(mul, ir) for mul, ir in self.irreps_out if ir.l > 0])
        gates = o3.Irreps(f"{gated.num_irreps}x0e") if gated.num_irreps else o3.Irreps("")
        self.gate = Gate(scalars, [F.silu], gates, [torch.sigmoid] * len(gates), gated)
        irreps_gate_in = self.gate.irreps_in

        # Depthwise tensor product: each input channel meets each edge harmonic; only the output
        # irreps the gate can use are kept.
        wanted = {ir for _, ir in irreps_gate_in}
        mid, instructions = [], []
        for i, (mul, ir_in) in enumerate(self.irreps_in):
            for j, (_, ir_sh) in enumerate(irreps_sh):
                for ir_out in ir_in * ir_sh:
                    if ir_out in wanted:
                        instructions.append((i, j, len(mid), "uvu", True))
                        mid.append((mul, ir_out))
        irreps_mid, perm, _ = o3.Irreps(mid).sort()
        instructions = [(i, j, perm[k], mode, w) for i, j, k, mode, w in instructions]

        self.linear_in = o3.Linear(self.irreps_in, self.irreps_in)
        self.tp = o3.TensorProduct(
            self.irreps_in,
            irreps_sh,
            irreps_mid,
            instructions,
            shared_weights=False,
            internal_weights=False,
        )
        self.radial = FullyConnectedNet([num_basis, radial_neurons, self.tp.weight_numel], F.silu)
        self.linear_out = o3.Linear(irreps_mid.simplify(), irreps_gate_in)
        self.self_interaction = o3.Linear(self.irreps_in, irreps_gate_in)
        self.residual = self.irreps_in == self.irreps_out
        self.norm = 1.0 / math.sqrt(avg_num_neighbors)

    def forward(
        self, h: Tensor, src: Tensor, dst: Tensor, edge_sh: Tensor, edge_basis: Tensor
    ) -> Tensor:
        messages = self.tp(self.linear_in(h).index_select(0, src), edge_sh, self.radial(edge_basis))
        agg = scatter(messages, dst, dim=0, dim_size=h.shape[0], reduce="sum") * self.norm
        out = self.gate(self.linear_out(agg) + self.self_interaction(h))
        return h + out if self.residual else out


class PropertyRegressor(nn.Module):
    """x (B, N_max, 4) → (B,) predictions (or (B, num_outputs)); see the module docstring.

    Predictions are in standardised units: fit on ``(y − mean) / std``.
    """

    def __init__(self, cfg: RegressorConfig | None = None):
        super().__init__()
        cfg = cfg or RegressorConfig()
        self.cfg = cfg
        lookup = torch.full((MAX_ATOMIC_NUMBER + 1,), -1, dtype=torch.long)
        lookup[torch.tensor(cfg.atom_types)] = torch.arange(len(cfg.atom_types))
        self.register_buffer("type_index", lookup, persistent=False)

        self.irreps_sh = o3.Irreps.spherical_harmonics(cfg.lmax)
        hidden = hidden_irreps(cfg.mul, cfg.lmax)
        scalars = o3.Irreps(f"{cfg.mul}x0e")
        self.embed = nn.Linear(len(cfg.atom_types), cfg.mul, bias=False)  # one-hot → scalars
        nn.init.normal_(self.embed.weight)  # unit-variance initial features, as e3nn layers expect
        self.layers = nn.ModuleList()
        irreps = scalars
        for i in range(cfg.layers):
            out = scalars if i == cfg.layers - 1 else hidden
            self.layers.append(
                Interaction(
                    irreps,
                    out,
                    self.irreps_sh,
                    cfg.num_basis,
                    cfg.radial_neurons,
                    cfg.avg_num_neighbors,
                )
            )
            irreps = out
        self.readout = nn.Sequential(
            nn.Linear(cfg.mul, cfg.mul), nn.SiLU(), nn.Linear(cfg.mul, cfg.num_outputs)
        )
        # Zero-initialised last layer: predictions start at 0, the mean of a standardised target.
        nn.init.zeros_(self.readout[-1].weight)
        nn.init.zeros_(self.readout[-1].bias)

    def atom_types(self, z: Tensor) -> Tensor:
        """Atomic numbers (N,) → type indices (N,); a ValueError names unknown elements."""
        bad = (z < 0) | (z > MAX_ATOMIC_NUMBER)
        idx = self.type_index[z.clamp(0, MAX_ATOMIC_NUMBER)]
        bad |= idx < 0
        if bad.any():
            unknown = sorted(set(z[bad].tolist()))
            raise ValueError(
                f"PropertyRegressor: unknown atomic number(s) {unknown}; "
                f"this model knows {self.cfg.atom_types}"
            )
        return idx

    def forward(self, x: Tensor) -> Tensor:
        cfg = self.cfg
        pos, z, batch, _ = to_nodes(x)
        if len(z) == 0:
            out = x.new_zeros(x.shape[0], cfg.num_outputs)
            return out.squeeze(-1) if cfg.num_outputs == 1 else out
        per_atom = self.readout(self.atom_features(pos, z, batch))
        out = scatter(per_atom, batch, dim=0, dim_size=x.shape[0], reduce=cfg.reduce)
        return out.squeeze(-1) if cfg.num_outputs == 1 else out

    def features(self, x: Tensor) -> Tensor:
        """Per-molecule invariant features (B, mul): the readout's hidden layer, pooled like the
        output (SEIKO's UCB bonus is computed on them)."""
        pos, z, batch, _ = to_nodes(x)
        hidden = self.readout[:-1](self.atom_features(pos, z, batch))
        return scatter(hidden, batch, dim=0, dim_size=x.shape[0], reduce=self.cfg.reduce)

    def atom_features(self, pos: Tensor, z: Tensor, batch: Tensor) -> Tensor:
        """Invariant scalars per atom (N, mul) after the interaction layers."""
        cfg = self.cfg
        types = self.atom_types(z)
        h = self.embed(F.one_hot(types, len(cfg.atom_types)).to(pos.dtype))

        src, dst = fully_connected_edges(batch)
        vec = pos.index_select(0, src) - pos.index_select(0, dst)  # neighbour − receiver
        d2 = vec.pow(2).sum(-1)
        keep = d2 < cfg.max_radius**2
        src, dst, vec, d2 = src[keep], dst[keep], vec[keep], d2[keep]
        dist = d2.clamp_min(1e-12).sqrt()  # finite gradient for coincident atoms
        edge_sh = o3.spherical_harmonics(
            self.irreps_sh, vec, normalize=True, normalization="component"
        )
        edge_basis = soft_one_hot_linspace(
            dist, 0.0, cfg.max_radius, cfg.num_basis, basis="smooth_finite", cutoff=True
        ) * math.sqrt(cfg.num_basis)

        for layer in self.layers:
            h = layer(h, src, dst, edge_sh, edge_basis)
        return h
