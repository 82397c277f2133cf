"""The toy domain's oracles: ``coord:<i>`` (the i-th coordinate, analytic and differentiable)
and ``component_prob:<k>`` / ``component_logodds:<k>`` (learned: P(component k | x) from the
classifier ensemble at ``reward_model``, or its log-odds)."""

from __future__ import annotations

import numpy as np
import torch

from rewarddiff import UserError
from rewarddiff.oracles.base import FunctionOracle, OracleInfo
from rewarddiff.oracles.registry import register_oracle
from toydomain.nets import DIM, load_classifier

DOMAIN = "toy"
COORD = OracleInfo("coord:<i>", DOMAIN, "maximize", "", "cheap", True, "the i-th coordinate")


def check_coord(argument: str | None, config: dict | None = None) -> None:
    if argument not in [str(i) for i in range(DIM)]:
        raise UserError(f"oracle coord needs a coordinate 0..{DIM - 1} (got {argument!r})")


@register_oracle(DOMAIN, "coord", COORD, check_coord)
def coord(argument=None, **context):
    check_coord(argument)
    i = int(argument)
    return FunctionOracle(COORD, lambda points: np.asarray(points)[:, i], lambda x: x[:, i])


def check_component(kind: str):
    def check(argument: str | None, config: dict) -> None:
        components = [str(k) for k in range((config.get("data") or {}).get("components", 4))]
        if argument not in components:
            raise UserError(f"oracle {kind}: unknown component {argument!r} "
                            f"(known: {', '.join(components)})")  # fmt: skip

    return check


def learned(kind: str, info: OracleInfo):
    @register_oracle(DOMAIN, kind, info, check_component(kind))
    def factory(argument=None, reward_model=None, **context):
        if reward_model is None:
            raise UserError(f"oracle {kind} needs a reward model (--reward-model PATH)")
        model = load_classifier(str(reward_model))
        check_component(kind)(argument, {"data": {"components": len(model.config["classes"])}})
        k = model.config["classes"].index(argument)

        def of_probs(p):
            p = p[:, k].clamp(1e-6, 1 - 1e-6)
            return torch.logit(p) if kind == "component_logodds" else p

        return FunctionOracle(
            info,
            lambda points: of_probs(model.predict(torch.as_tensor(np.asarray(points)))[0]).numpy(),
            lambda x: of_probs(model.to(x.device)(x)),
        )


for _kind, _units in (("component_prob", "probability"), ("component_logodds", "log-odds")):
    learned(
        _kind,
        OracleInfo(
            f"{_kind}:<k>",
            DOMAIN,
            "maximize",
            _units,
            "cheap",
            True,
            f"P(component k | x) ({_units}) from the component classifier",
        ),
    )
