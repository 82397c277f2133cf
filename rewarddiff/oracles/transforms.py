"""Score transforms mapping raw oracle values to [0, 1] and weighted combinations (REINVENT-style).

A transform is configured as a dict, e.g. ``{"type": "sigmoid", "low": 0, "high": 10}``; an
objective is a list of components ``{"oracle": spec, "weight": w, "transform": {...}}``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from rewarddiff import UserError
from rewarddiff.oracles.registry import make_oracles


def sigmoid(x, low: float, high: float, k: float = 0.25):
    """Rises from ≈0 at ``low`` to ≈1 at ``high`` (REINVENT's sigmoid, steepness k)."""
    mid = 0.5 * (low + high)
    return 1.0 / (1.0 + 10.0 ** (10.0 * k * (mid - x) / (high - low)))


def reverse_sigmoid(x, low: float, high: float, k: float = 0.25):
    return 1.0 - sigmoid(x, low, high, k)


def double_sigmoid(
    x,
    low: float,
    high: float,
    coef_div: float = 100.0,
    coef_si: float = 150.0,
    coef_se: float = 150.0,
):
    """≈1 inside [low, high], falling off smoothly on both sides (REINVENT's double sigmoid)."""
    x = np.asarray(x, dtype=np.float64)
    a = 10.0 ** (coef_se * (x / coef_div))
    rise = a / (a + 10.0 ** (coef_se * (low / coef_div)))
    fall = 1.0 - 10.0 ** (coef_si * (x / coef_div)) / (
        10.0 ** (coef_si * (x / coef_div)) + 10.0 ** (coef_si * (high / coef_div))
    )
    return rise * fall


def target_window(x, low: float, high: float, width: float = 1.0):
    """1 inside [low, high]; Gaussian decay with scale ``width`` outside."""
    x = np.asarray(x, dtype=np.float64)
    gap = np.where(x < low, low - x, np.where(x > high, x - high, 0.0))
    return np.exp(-0.5 * (gap / width) ** 2)


def clip(x, low: float = -np.inf, high: float = np.inf):
    return np.clip(x, low, high)


TRANSFORMS = {
    "sigmoid": sigmoid,
    "reverse_sigmoid": reverse_sigmoid,
    "double_sigmoid": double_sigmoid,
    "target_window": target_window,
    "clip": clip,
    "identity": lambda x: x,
}


def apply_transform(values, spec: dict | None):
    if not spec:
        return np.asarray(values, dtype=np.float64)
    spec = dict(spec)
    kind = spec.pop("type", None)
    if kind not in TRANSFORMS:
        raise UserError(f"unknown transform type {kind!r} (known: {', '.join(TRANSFORMS)})")
    try:
        with np.errstate(over="ignore"):
            return np.asarray(TRANSFORMS[kind](np.asarray(values, dtype=np.float64), **spec))
    except TypeError as err:
        raise UserError(f"transform {kind!r}: {err}") from None


def combine_torch(oracles: dict, components: list[dict]) -> Callable:
    """Differentiable weighted sum of oracles' ``torch_score`` (no transforms):
    ``fn(x) -> (B,)`` for the relaxed designs ``x`` a back-propagation method produces."""
    for c in components:
        if c.get("transform"):
            raise UserError(f"oracle {c['oracle']}: transforms are not differentiable here")
        if not oracles[c["oracle"]].info.differentiable:
            raise UserError(f"oracle {c['oracle']} is not differentiable (no torch_score)")
    return lambda x: sum(c.get("weight", 1.0) * oracles[c["oracle"]].torch_score(x)
                         for c in components)  # fmt: skip


def combine(
    columns: dict[str, np.ndarray], components: list[dict], mode: str = "weighted_sum"
) -> np.ndarray:
    """Weighted sum (or weighted geometric mean) of transformed oracle columns.

    ``columns`` maps oracle spec → raw values (n,); NaN in any component gives NaN.
    """
    if mode not in ("weighted_sum", "geometric"):
        raise UserError(f"unknown combination mode {mode!r} (weighted_sum or geometric)")
    total_weight = sum(float(c.get("weight", 1.0)) for c in components)
    parts = [
        float(c.get("weight", 1.0))
        * (
            np.log(np.clip(apply_transform(columns[c["oracle"]], c.get("transform")), 1e-12, None))
            if mode == "geometric"
            else apply_transform(columns[c["oracle"]], c.get("transform"))
        )
        for c in components
    ]
    out = np.sum(parts, axis=0)
    return np.exp(out / total_weight) if mode == "geometric" else out


def objective_function(domain: str, components: list[dict], to_designs: Callable, **context):
    """Batch of generator outputs → combined objective (n,); the components' oracles are
    built once and kept (``context`` e.g. ``reward_model=PATH``)."""
    oracles = make_oracles(domain, [c["oracle"] for c in components], **context)
    return lambda x: combine({s: o(to_designs(x)) for s, o in oracles.items()}, components)


def differentiable_objective(domain: str, components: list[dict], **context) -> Callable:
    """Relaxed designs → differentiable combined objective (n,) (see :func:`combine_torch`)."""
    oracles = make_oracles(domain, [c["oracle"] for c in components], **context)
    return combine_torch(oracles, components)
