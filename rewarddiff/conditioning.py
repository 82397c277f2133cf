"""Conditions: zero-initialised condition embeddings, added to a denoiser's hidden features so
that a new condition can be attached to a pretrained network without changing what it
computes; the class conditions (with their classifiers) that ``ctrl`` steers toward; and the
condition a fine-tuned conditional generator samples at by default (:class:`Condition`)."""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import ClassVar

import torch
from torch import Tensor, nn

from rewarddiff import UserError


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


def condition_embedding(hidden: int, num_labels: int, value: bool) -> ConditionEmbedding | None:
    """A denoiser's zero-initialised condition: ``num_labels`` classes, a scalar ``value``, or
    None for an unconditional network (its settings' ``num_labels`` / ``value_condition``)."""
    if num_labels and value:
        raise ValueError("a denoiser takes class labels or a scalar value, not both")
    return ConditionEmbedding(hidden, num_labels) if num_labels or value else None


def per_atom_condition(embedding: ConditionEmbedding, label: Tensor | None, batch: Tensor):
    """The embedding of each molecule's label (B,) at its atoms: (N, hidden); ``batch`` (N,)."""
    num_mols = len(label) if label is not None else int(batch.max()) + 1
    return embedding(label, num_mols, batch.device)[batch]


@dataclass
class LabelCondition:
    """One or more class conditions and the classifiers that define them.

    ``log_prob(x, y)``: differentiable Σ_k log p̂_k(y_k | x) for generator outputs ``x`` and
    labels ``y`` (B, C) → (B,); ``predict(x)``: predicted labels (n, C) of designs.
    """

    names: list[str]
    classes: list[list[str]]
    log_prob: Callable[[Tensor, Tensor], Tensor]
    predict: Callable[[Tensor], Tensor]
    frequencies: list[list[float]] | None = None  # per condition; None = uniform
    target: list[str] | None = None  # the label sampled at by default afterwards
    spec: dict | list | None = None  # domain settings: rebuild it with another classifier copy

    @property
    def num_joint(self) -> int:
        return math.prod(len(c) for c in self.classes)

    def joint(self, y: Tensor) -> Tensor:
        """Per-condition labels (B, C) → joint index (B,) (row-major over conditions)."""
        index = torch.zeros(len(y), dtype=torch.long)
        for k, classes in enumerate(self.classes):
            index = index * len(classes) + y[:, k]
        return index

    def split(self, index: Tensor) -> Tensor:
        """Joint index (B,) → per-condition labels (B, C)."""
        out = []
        for classes in reversed(self.classes):
            out.append(index % len(classes))
            index = index // len(classes)
        return torch.stack(out[::-1], 1)

    def prior(self, kind: str) -> list[Tensor]:
        if kind == "uniform" or self.frequencies is None:
            return [torch.full((len(c),), 1.0 / len(c)) for c in self.classes]
        if kind != "data":
            raise UserError(f"ctrl: label_prior must be uniform or data, not {kind!r}")
        return [torch.as_tensor(f, dtype=torch.float64) / sum(f) for f in self.frequencies]

    def target_index(self) -> int | None:
        if self.target is None:
            return None
        labels = [[c.index(t)] for c, t in zip(self.classes, self.target)]
        return int(self.joint(torch.tensor(labels).T.reshape(1, -1))[0])


@dataclass(frozen=True, kw_only=True)
class Condition(ABC):
    """What a conditional generator samples at when no label is given, set by the method that
    added the condition and saved with the model (its config's ``condition``): the label
    ``target`` (None: no default label) at classifier-free guidance scale ``guidance``."""

    kind: ClassVar[str]
    target: float | None
    guidance: float = 0.0

    @abstractmethod
    def labels(self, num: int) -> Tensor:
        """The default labels (num,) of :meth:`Generator.sample` (needs a ``target``)."""

    def to_dict(self) -> dict:
        return {"kind": self.kind, **asdict(self)}

    @staticmethod
    def from_dict(saved: dict | None) -> Condition | None:
        """A saved condition (None when there is none)."""
        if not saved:
            return None
        kinds = {c.kind: c for c in (ClassCondition, ValueCondition)}
        fields = {k: v for k, v in saved.items() if k != "kind"}
        if saved.get("kind") not in kinds:
            raise UserError(f"model condition: unknown kind {saved.get('kind')!r}")
        try:
            return kinds[saved["kind"]](**fields)
        except TypeError as exc:
            raise UserError(f"model condition: {exc}") from None


@dataclass(frozen=True, kw_only=True)
class ClassCondition(Condition):
    """A joint class label (row-major over the conditions ``names`` and their ``classes``, as
    :meth:`LabelCondition.joint`) added by ``ctrl``; ``spec`` rebuilds the
    :class:`LabelCondition` with another classifier copy (the domain's settings)."""

    kind: ClassVar[str] = "class"
    target: int | None
    names: list[str]
    classes: list[list[str]]
    spec: dict | list | None = None

    def labels(self, num: int) -> Tensor:
        return torch.full((num,), int(self.target), dtype=torch.long)


@dataclass(frozen=True, kw_only=True)
class ValueCondition(Condition):
    """A standardised reward value added by ``rcgdm``: the label is z = (r − mean) / std."""

    kind: ClassVar[str] = "value"
    target: float | None
    mean: float = 0.0
    std: float = 1.0

    def labels(self, num: int) -> Tensor:
        return torch.full((num,), float(self.target), dtype=torch.float32)
