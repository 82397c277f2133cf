"""Network parts shared by the domains' models."""

from __future__ import annotations

from abc import ABC, abstractmethod

from torch import Tensor, nn


class PooledClassifier(nn.Module, ABC):
    """Classifier or regressor: ``body`` → :meth:`pool` (B, 2·hidden) → an MLP ``head`` →
    logits (B, num_outputs), or (B,) for a single output. Subclasses define :meth:`pool`."""

    def __init__(self, body: nn.Module, hidden: int, num_outputs: int, dropout: float):
        super().__init__()
        self.body = body
        self.head = nn.Sequential(
            nn.Linear(2 * hidden, hidden),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, num_outputs),
        )

    @abstractmethod
    def pool(self, h: Tensor) -> Tensor:
        """The body's output pooled over the set or sequence: (B, 2·hidden)."""

    def features(self, x: Tensor) -> Tensor:
        """Penultimate features (B, hidden) (SEIKO's UCB bonus is computed on them)."""
        return self.head[:-1](self.pool(self.body(x)))

    def forward(self, x: Tensor) -> Tensor:
        out = self.head[-1](self.features(x))
        return out[:, 0] if out.shape[-1] == 1 else out
