"""Networks over point sets (B, N, 3): a point-transformer body shared by the DDPM ε-network
and the shape classifier.

Every point attends to its k nearest neighbours in coordinate space (found once per forward
with ``torch.cdist`` + ``topk`` in chunks) with relative positions x_j − x_i as a learned
positional term, then a feed-forward layer sees a max/mean-pooled context of its set. Nothing
depends on the order of the points, so the denoiser is permutation-equivariant and the
classifier permutation-invariant; sets in a batch never interact. Plain PyTorch: runs on CPU
and CUDA alike.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import torch
from torch import Tensor, nn

from rewarddiff.conditioning import condition_embedding
from rewarddiff.nn import PooledClassifier

KNN_CHUNK = 2**24  # distance-matrix entries per chunk of the neighbour search


class _Config:
    """``to_dict`` / ``from_dict`` for the dataclass configs below."""

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, config: dict):
        """Build from a dict that may hold other keys too (e.g. a saved generator's config)."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in config.items() if k in names})

    def _check(self):
        if self.hidden < 1 or self.layers < 1 or self.k < 1 or self.heads < 1:
            raise ValueError("hidden, layers, k and heads must be ≥ 1")
        if self.hidden % self.heads:
            raise ValueError(f"hidden ({self.hidden}) must be divisible by heads ({self.heads})")


@dataclass
class PointDenoiserConfig(_Config):
    hidden: int = 128
    layers: int = 4
    k: int = 16  # neighbours per point (itself included)
    heads: int = 4
    num_labels: int = 0  # > 0: a zero-initialised class-label embedding (ctrl)
    value_condition: bool = False  # a zero-initialised scalar-condition embedding (rcgdm)

    def __post_init__(self):
        self._check()
        if self.num_labels and self.value_condition:
            raise ValueError("a denoiser takes class labels or a scalar value, not both")


@dataclass
class PointClassifierConfig(_Config):
    hidden: int = 64
    layers: int = 3
    k: int = 16
    heads: int = 4
    num_outputs: int = 4  # classes (logits), or 1 for a regressor
    dropout: float = 0.0

    def __post_init__(self):
        self._check()
        if self.num_outputs < 1:
            raise ValueError("num_outputs must be ≥ 1")


@torch.no_grad()
def knn(x: Tensor, k: int) -> Tensor:
    """Indices (B, N, min(k, N)) of each point's nearest points in its own set, itself
    included, for x (B, N, 3). Distances are computed entry by entry (no matmul trick), so a
    permutation of the points permutes the neighbour sets exactly."""
    b, n, _ = x.shape
    step = max(1, KNN_CHUNK // (b * n))
    return torch.cat(
        [
            torch.cdist(x[:, i : i + step], x, compute_mode="donot_use_mm_for_euclid_dist")
            .topk(min(k, n), largest=False)
            .indices
            for i in range(0, n, step)
        ],
        1,
    )


def gather(features: Tensor, index: Tensor) -> Tensor:
    """Neighbour features (B, N, K, C) from features (B, M, C) and indices (B, N, K) into M."""
    b, m, c = features.shape
    offset = torch.arange(b, device=index.device).view(b, 1, 1) * m
    flat = features.reshape(b * m, c).index_select(0, (index + offset).flatten())
    return flat.view(*index.shape, c)


def time_features(t: Tensor, dim: int) -> Tensor:
    """Sinusoidal features (B, dim) of t ∈ [0, 1] (B,), periods from 2π/1000 to 2π."""
    freqs = torch.exp(-math.log(1000.0) * torch.arange(dim // 2, device=t.device) / (dim // 2))
    angles = 1000.0 * t.float()[:, None] * freqs[None]
    return torch.cat([angles.sin(), angles.cos()], -1)


class LocalAttention(nn.Module):
    """Multi-head attention of each point over its neighbours j. Logits q_i·k_j/√d plus a
    per-head bias from the edge encoding of x_j − x_i; keys and values carry a linear term in
    x_j − x_i (computed per point: it cancels in the softmax for keys and is subtracted after
    the weighted sum for values). h (B, N, H), x (B, N, 3), edges (B, N, K, E), index (B, N, K)
    → (B, N, H)."""

    def __init__(self, hidden: int, heads: int, edge_dim: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(hidden, 3 * hidden)
        self.position = nn.Linear(3, 2 * hidden, bias=False)
        self.bias = nn.Linear(edge_dim, heads)
        self.out = nn.Linear(hidden, hidden)

    def forward(self, h: Tensor, x: Tensor, edges: Tensor, index: Tensor) -> Tensor:
        hidden = h.shape[-1]
        q, k, v = self.qkv(h).split(hidden, -1)
        pk, pv = self.position(x).split(hidden, -1)
        k, v = gather(k + pk, index), gather(v + pv, index)  # (B, N, K, H)
        # per-head sums over channels as matrix products with the channel → head indicator
        # (H, heads): faster on CPU than reshaping the (B, N, K, H) tensors into heads
        member = torch.eye(self.heads, device=h.device).repeat_interleave(hidden // self.heads, 0)
        q = q[..., None] * member / math.sqrt(hidden // self.heads)  # (B, N, H, heads)
        weights = (k @ q + self.bias(edges)).softmax(2)  # (B, N, K, heads)
        out = (weights.transpose(-1, -2) @ v * member.T).sum(-2)  # (B, N, H)
        return self.out(out - pv)


class PointBlock(nn.Module):
    """Pre-norm residual block: local attention, then a feed-forward layer on each point's
    features plus its set's pooled (max, mean) context; with ``film``, a conditioning vector
    (B, H) scales and shifts both normalised inputs."""

    def __init__(self, hidden: int, heads: int, edge_dim: int, film: bool):
        super().__init__()
        self.norm1 = nn.LayerNorm(hidden)
        self.attention = LocalAttention(hidden, heads, edge_dim)
        self.norm2 = nn.LayerNorm(hidden)
        self.context = nn.Linear(2 * hidden, hidden)
        self.ff = nn.Sequential(
            nn.Linear(hidden, 2 * hidden), nn.SiLU(), nn.Linear(2 * hidden, hidden)
        )
        self.film = nn.Sequential(nn.SiLU(), nn.Linear(hidden, 4 * hidden)) if film else None

    def forward(
        self, h: Tensor, x: Tensor, edges: Tensor, index: Tensor, cond: Tensor | None = None
    ) -> Tensor:
        """h (B, N, H), x (B, N, 3), edges (B, N, K, E), index (B, N, K), cond (B, H)."""
        scale1 = shift1 = scale2 = shift2 = 0.0
        if self.film is not None:
            scale1, shift1, scale2, shift2 = self.film(cond)[:, None].chunk(4, -1)
        u = self.norm1(h) * (1 + scale1) + shift1
        h = h + self.attention(u, x, edges, index)
        u = self.norm2(h) * (1 + scale2) + shift2
        pooled = self.context(torch.cat([u.amax(1), u.mean(1)], -1))
        return h + self.ff(u + pooled[:, None])


class PointBody(nn.Module):
    """Per-point embedding of the coordinates and an edge encoding of (x_j − x_i, |x_j − x_i|)
    over the kNN graph, then ``layers`` point blocks: x (B, N, 3) → (B, N, H)."""

    def __init__(self, hidden: int, layers: int, k: int, heads: int, film: bool):
        super().__init__()
        self.k = k
        edge_dim = hidden // 2
        self.embed = nn.Sequential(nn.Linear(3, hidden), nn.SiLU(), nn.Linear(hidden, hidden))
        self.edge = nn.Sequential(
            nn.Linear(4, edge_dim), nn.SiLU(), nn.Linear(edge_dim, edge_dim), nn.SiLU()
        )
        self.blocks = nn.ModuleList(
            PointBlock(hidden, heads, edge_dim, film) for _ in range(layers)
        )
        self.norm = nn.LayerNorm(hidden)

    def forward(self, x: Tensor, cond: Tensor | None = None) -> Tensor:
        index = knn(x, self.k)
        rel = gather(x, index) - x[:, :, None]
        edges = self.edge(torch.cat([rel, rel.norm(dim=-1, keepdim=True)], -1))
        h = self.embed(x)
        for block in self.blocks:
            h = block(h, x, edges, index, cond)
        return self.norm(h)


class PointDenoiser(nn.Module):
    """DDPM ε-network over point sets: ``(x_t (B, N, 3), t (B,) in [0, 1], label) -> ε̂
    (B, N, 3)``, permutation-equivariant in the points. The time embedding (plus the optional
    zero-initialised condition) modulates every block."""

    def __init__(self, cfg: PointDenoiserConfig):
        super().__init__()
        self.cfg = cfg
        self.body = PointBody(cfg.hidden, cfg.layers, cfg.k, cfg.heads, film=True)
        self.time = nn.Sequential(
            nn.Linear(cfg.hidden, cfg.hidden), nn.SiLU(), nn.Linear(cfg.hidden, cfg.hidden)
        )
        self.condition = condition_embedding(cfg.hidden, cfg.num_labels, cfg.value_condition)
        self.out = nn.Linear(cfg.hidden, 3)

    def forward(self, x: Tensor, t: Tensor, label: Tensor | None = None) -> Tensor:
        """``label``: (B,) class index (``num_labels`` = none) or (B,) float value (NaN = none)."""
        cond = self.time(time_features(t, self.cfg.hidden))
        if self.condition is not None:
            cond = cond + self.condition(label, x.shape[0], x.device)
        return self.out(self.body(x, cond))


class PointClassifier(PooledClassifier):
    """Shape-family classifier or regressor: x (B, N, 3) → logits (B, num_outputs), or (B,) for
    a single output; permutation-invariant and differentiable in x (a reward for gradient-based
    fine-tuning)."""

    def __init__(self, cfg: PointClassifierConfig):
        body = PointBody(cfg.hidden, cfg.layers, cfg.k, cfg.heads, film=False)
        super().__init__(body, cfg.hidden, cfg.num_outputs, cfg.dropout)
        self.cfg = cfg

    def pool(self, h: Tensor) -> Tensor:
        return torch.cat([h.amax(1), h.mean(1)], -1)
