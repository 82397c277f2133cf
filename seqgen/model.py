"""Networks over sequences: a dilated residual 1-D CNN body shared by the masked-diffusion
denoiser and the property classifiers (DRAKES uses a 20-layer dilated CNN for DNA)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rewarddiff.conditioning import condition_embedding
from rewarddiff.nn import PooledClassifier


@dataclass
class CNNConfig:
    vocab_size: int = 4
    hidden: int = 128
    layers: int = 8
    kernel_size: int = 5
    max_dilation: int = 16
    num_labels: int = 0  # > 0 adds a zero-initialised label embedding (denoiser only)
    value_condition: bool = False  # adds a zero-initialised scalar-condition embedding (rcgdm)
    num_outputs: int = 4  # classifier outputs
    dropout: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


class ResidualBlock(nn.Module):
    """x + conv(GELU(norm(x) + cond)): dilated conv keeps the length."""

    def __init__(self, hidden: int, kernel_size: int, dilation: int, dropout: float):
        super().__init__()
        self.norm = nn.GroupNorm(1, hidden)
        self.conv = nn.Conv1d(
            hidden,
            hidden,
            kernel_size,
            dilation=dilation,
            padding=dilation * (kernel_size - 1) // 2,
        )
        self.out = nn.Conv1d(hidden, hidden, 1)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, cond: Tensor | None = None) -> Tensor:
        h = self.norm(x)
        if cond is not None:
            h = h + cond[..., None]
        return x + self.dropout(self.out(F.gelu(self.conv(F.gelu(h)))))


class DilatedCNN(nn.Module):
    """Embedding of tokens or relaxed one-hot, then residual dilated convolutions: (B, H, L)."""

    def __init__(self, cfg: CNNConfig, in_vocab: int):
        super().__init__()
        self.in_vocab = in_vocab
        self.embed = nn.Linear(in_vocab, cfg.hidden, bias=False)
        dilations = [
            min(2 ** (i % int(math.log2(cfg.max_dilation) + 1)), cfg.max_dilation)
            for i in range(cfg.layers)
        ]
        self.blocks = nn.ModuleList(
            ResidualBlock(cfg.hidden, cfg.kernel_size, d, cfg.dropout) for d in dilations
        )

    def forward(self, x: Tensor, cond: Tensor | None = None) -> Tensor:
        if not x.dtype.is_floating_point:
            x = F.one_hot(x, self.in_vocab).float()
        h = self.embed(x[..., : self.in_vocab]).transpose(1, 2)
        for block in self.blocks:
            h = block(h, cond)
        return h


def time_features(t: Tensor, dim: int) -> Tensor:
    """Sinusoidal features of t ∈ [0, 1]: (B, dim)."""
    freqs = torch.exp(-math.log(1000.0) * torch.arange(dim // 2, device=t.device) / (dim // 2))
    angles = 1000.0 * t[:, None] * freqs[None]
    return torch.cat([angles.sin(), angles.cos()], -1)


class SequenceDenoiser(nn.Module):
    """MDLM denoiser: ``(x_t, t, label) -> logits (B, L, V)``; input vocabulary includes MASK."""

    def __init__(self, cfg: CNNConfig):
        super().__init__()
        self.cfg = cfg
        self.body = DilatedCNN(cfg, cfg.vocab_size + 1)
        self.time = nn.Sequential(
            nn.Linear(cfg.hidden, cfg.hidden), nn.SiLU(), nn.Linear(cfg.hidden, cfg.hidden)
        )
        self.condition = condition_embedding(cfg.hidden, cfg.num_labels, cfg.value_condition)
        self.head = nn.Sequential(
            nn.GroupNorm(1, cfg.hidden), nn.Conv1d(cfg.hidden, cfg.vocab_size, 1)
        )

    def forward(self, x: Tensor, t: Tensor, label: Tensor | None = None) -> Tensor:
        """``label``: (B,) class index (``num_labels`` = none) or (B,) float value (NaN = none)."""
        cond = self.time(time_features(t, self.cfg.hidden))
        if self.condition is not None:
            cond = cond + self.condition(label, x.shape[0], x.device)
        return self.head(self.body(x, cond)).transpose(1, 2)


class SequenceClassifier(PooledClassifier):
    """Property model: tokens or one-hot (B, L, V) → logits (B, num_outputs), or (B,) for a
    single output (a regressor); differentiable in the one-hot input, so it can serve as a
    reward for back-propagation methods."""

    def __init__(self, cfg: CNNConfig):
        super().__init__(DilatedCNN(cfg, cfg.vocab_size), cfg.hidden, cfg.num_outputs, cfg.dropout)
        self.cfg = cfg

    def pool(self, h: Tensor) -> Tensor:
        return torch.cat([h.mean(-1), h.amax(-1)], -1)
