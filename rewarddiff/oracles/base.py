"""The Oracle protocol: anything that scores a batch of designs."""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np

from rewarddiff import UserError

Direction = Literal["maximize", "minimize", "target"]


class OracleError(UserError):
    """An oracle that fails on every design of a batch: a broken oracle (or its setup), not
    bad designs — reported instead of an all-NaN column."""


def best_first(scores: np.ndarray) -> np.ndarray:
    """Indices of ``scores`` (n,) from the highest to the lowest, NaN last (stable on ties)."""
    return np.argsort(np.where(np.isfinite(scores), -scores, np.inf), kind="stable")


def summarize_scores(values: np.ndarray) -> dict:
    """Mean, top-10 % mean and max of the finite scores, and how many failed (NaN): floats are
    NaN when no score is finite."""
    values = np.asarray(values, dtype=np.float64)
    finite = np.sort(values[np.isfinite(values)])
    if not len(finite):
        return {"mean": np.nan, "top10": np.nan, "max": np.nan, "failed": len(values)}
    return {
        "mean": float(finite.mean()),
        "top10": float(finite[-max(1, len(finite) // 10) :].mean()),
        "max": float(finite[-1]),
        "failed": int(len(values) - len(finite)),
    }


@dataclass(frozen=True)
class OracleInfo:
    """Metadata shown by ``rewarddiff oracles`` and written beside every score column."""

    name: str
    domain: str
    direction: Direction = "maximize"
    units: str = ""
    cost: Literal["cheap", "moderate", "expensive"] = "cheap"
    differentiable: bool = False
    description: str = ""

    @property
    def kind(self) -> str:
        """The registered name: ``name`` without its argument pattern (``xtb`` of
        ``xtb:gap|dipole|energy[@timeout_s]``)."""
        return re.match(r"[^:\[@]*", self.name).group()

    def for_argument(self, argument: str | None, **changes) -> OracleInfo:
        """The info of the oracle built for ``argument`` from this registered one: named
        ``kind:argument`` (``kind`` without an argument), ``changes`` (a description, units, ...)
        replacing fields."""
        return replace(self, name=f"{self.kind}:{argument}" if argument else self.kind, **changes)


class Oracle(ABC):
    """Batched property function: ``oracle(designs) -> float array`` with NaN for failures.

    Subclasses implement :meth:`score`; :meth:`__call__` guarantees the contract (one float per
    design, NaN where the design could not be scored, never an exception for one bad design).
    Differentiable oracles also implement ``torch_score(x: Tensor) -> Tensor (B,)``.
    """

    info: OracleInfo

    @abstractmethod
    def score(self, designs: Any) -> np.ndarray:
        """Raw scores of a batch: (n,) floats."""

    def __call__(self, designs: Any) -> np.ndarray:
        try:
            values = np.asarray(self.score(designs), dtype=np.float64)
        except Exception:  # a batch failed: score one by one so only bad designs become NaN
            values, errors = self._score_each(designs)
            if len(designs) and len(errors) == len(designs):  # a broken oracle, not bad designs
                raise OracleError(
                    f"oracle {self.info.name} failed on all {len(designs)} designs; first "
                    f"error: {type(errors[0]).__name__}: {errors[0]}"
                ) from None
        if values.shape != (len(designs),):
            raise ValueError(
                f"oracle {self.info.name} returned shape {values.shape} for {len(designs)} designs"
            )
        values[~np.isfinite(values)] = np.nan
        return values

    def _score_each(self, designs) -> tuple[np.ndarray, list[Exception]]:
        """Scores of the designs one at a time (NaN where scoring raised) and the errors."""
        values, errors = [], []
        for design in designs:
            try:
                values.append(float(np.asarray(self.score([design]), dtype=np.float64)[0]))
            except Exception as err:
                values.append(float("nan"))
                errors.append(err)
        return np.array(values, dtype=np.float64), errors


@dataclass
class FunctionOracle(Oracle):
    """Wrap a plain per-batch function ``fn(designs) -> array`` as an Oracle."""

    info: OracleInfo
    fn: Any
    torch_fn: Any = field(default=None, repr=False)

    def score(self, designs):
        return self.fn(designs)

    def torch_score(self, x):
        if self.torch_fn is None:
            raise TypeError(f"oracle {self.info.name} is not differentiable")
        return self.torch_fn(x)
