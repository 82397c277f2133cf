"""Property bins as label conditions for ``ctrl``: the training tertiles of a regressed property
as three classes, p̂(bin | x) = Φ((hi − μ(x))/σ) − Φ((lo − μ(x))/σ) from the regressor ensemble
μ, σ per property calibrated by maximum likelihood of the validation molecules' bins."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from molgen.data import PROPERTY_UNITS
from rewarddiff import UserError
from rewarddiff.conditioning import LabelCondition
from rewarddiff.oracles.learned import RewardEnsemble


def target_properties(objective: dict, targets: list[str]) -> list[str]:
    """The properties of the objective's ``target`` (a name, or a list such as ``[gap, alpha]``
    for a joint label over 3 × 3 bins); each must be one of the regressor's ``targets``."""
    props = objective.get("target")
    props = [props] if isinstance(props, str) or props is None else list(props)
    for prop in props:
        if prop not in targets:
            raise UserError(f"ctrl: objective target {prop!r} is not a property of the "
                            f"reward model ({targets})")  # fmt: skip
    return props


def tertile_spec(props: list[str], train: dict) -> list[dict]:
    """One condition per property: its tertile edges over the training columns ``train``."""
    return [{"property": p, "edges": np.quantile(train[p], [1 / 3, 2 / 3]).tolist()}
            for p in props]  # fmt: skip


def property_bins(
    model: RewardEnsemble, spec: list[dict] | dict, objective: dict, valid=None
) -> LabelCondition:
    """The conditions of ``spec`` (property, edges per condition) on the regressor ``model``;
    ``valid`` (molecules, columns) calibrates σ (without it only ``predict`` works). The
    target bin is the top one of each property (the bottom one to minimise)."""
    targets = model.config["targets"]
    spec = [spec] if isinstance(spec, dict) else spec  # one condition (older models)
    index = [targets.index(s["property"]) for s in spec]
    scale = torch.tensor([[model.config["std"][k] for k in index]])
    shift = torch.tensor([[model.config["mean"][k] for k in index]])
    edges = torch.tensor([[-np.inf, *s["edges"], np.inf] for s in spec])  # (C, 4)

    def mu(x: torch.Tensor) -> torch.Tensor:  # (B, C) properties in their units
        out = model.to(x.device)(x)
        out = out[:, None] if out.dim() == 1 else out[:, index]
        return out * scale.to(x.device) + shift.to(x.device)

    def bin_log_probs(values: Tensor, sigma: Tensor, edges: Tensor = edges) -> Tensor:
        """(B, C) values, (C,) σ, (C, 4) bin edges → (B, C, 3) log p̂(bin)."""
        z = (edges.to(values.device) - values[..., None]) / sigma.to(values.device)[:, None]
        cdf = torch.special.ndtr(z)
        return torch.log(cdf[..., 1:] - cdf[..., :-1] + 1e-6)

    def batched_mu(x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return torch.cat([mu(x[i : i + 256]) for i in range(0, len(x), 256)])

    sigma = scale[0].clone()
    if valid is not None:  # calibration on held-out molecules (temperature scaling)
        x_va, col_va = valid
        values = batched_mu(x_va[:1000])
        for c, s in enumerate(spec):
            truth = torch.as_tensor(np.asarray(col_va[s["property"]])[: len(values)])
            bins = torch.bucketize(truth, edges[c, 1:-1])
            grid = float(scale[0, c]) * np.geomspace(0.05, 3.0, 60)
            nll = [-bin_log_probs(values[:, c : c + 1], torch.tensor([g]), edges[c : c + 1])
                   [:, 0].gather(1, bins[:, None]).mean().item() for g in grid]  # fmt: skip
            sigma[c] = float(grid[int(np.argmin(nll))])

    def log_prob(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Σ_c log p̂_c(y_c | x): (B,)"""
        log_p = bin_log_probs(mu(x), sigma)
        return log_p.gather(2, y[:, :, None].to(log_p.device))[..., 0].sum(1)

    def predict(x: torch.Tensor) -> torch.Tensor:
        values = batched_mu(x)
        bins = [torch.bucketize(values[:, c].contiguous(), edges[c, 1:-1].to(values.device))
                for c in range(len(spec))]  # fmt: skip
        return torch.stack(bins, 1).cpu()

    names, classes, target = [], [], []
    for s in spec:
        prop, (low, high) = s["property"], s["edges"]
        unit = PROPERTY_UNITS.get(prop, "")
        names.append(f"{prop}_bin")
        classes.append([f"{prop} < {low:.4g} {unit}", f"{low:.4g}–{high:.4g}",
                        f"{prop} > {high:.4g} {unit}"])  # fmt: skip
        target.append(classes[-1][0 if objective.get("direction") == "minimize" else -1])
    return LabelCondition(names, classes, log_prob, predict, target=target, spec=spec)
