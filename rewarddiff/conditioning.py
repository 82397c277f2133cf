"""Zero-initialised condition embeddings, added to a denoiser's hidden features so that a new
condition can be attached to a pretrained network without changing what it computes."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class ConditionEmbedding(nn.Module):
    """One condition → (B, hidden): class labels (B,) long, where index ``num_labels`` means
    "no label", or — with ``num_labels`` = 0 — scalar values (B,) float, where NaN means "no
    value". ``None`` means no condition for the whole batch. Every output starts at zero."""

    def __init__(self, hidden: int, num_labels: int = 0):
        super().__init__()
        self.num_labels = num_labels
        if num_labels:
            self.table = nn.Embedding(num_labels + 1, hidden)
            nn.init.zeros_(self.table.weight)
        else:
            self.mlp = nn.Sequential(nn.Linear(1, hidden), nn.SiLU(), nn.Linear(hidden, hidden))
            nn.init.zeros_(self.mlp[-1].weight)
            nn.init.zeros_(self.mlp[-1].bias)
            self.null = nn.Parameter(torch.zeros(hidden))

    def forward(self, label: Tensor | None, batch: int, device) -> Tensor:
        if self.num_labels:
            if label is None:
                label = torch.full((batch,), self.num_labels, device=device)
            return self.table(label)
        if label is None:
            return self.null.expand(batch, -1)
        embedded = self.mlp(torch.nan_to_num(label.float())[:, None])
        return torch.where(label.isnan()[:, None], self.null.expand_as(embedded), embedded)
