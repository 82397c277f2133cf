"""What a steering method is to the rest of the pipeline: its :class:`MethodSpec` (settings,
needs, what it produces, one line of help) and the :class:`MethodResult` its run returns.

The CLI, the config and sheet schemas, the Snakemake rules, ``campaign.finetune`` and the report
read the spec; none of them names a method."""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from torch import Tensor

from rewarddiff.config import SHEET_KEYS
from rewarddiff.finetune.common import FinetuneTask

JSON_TYPES = {int: "integer", float: "number", bool: "boolean", str: "string", dict: "object",
              list: "array"}  # fmt: skip


@dataclass
class MethodResult:
    """What a run returns: the designs of a ``selection`` method (written as
    ``selected<suffix>``) and extras for the run's summary and manifest (e.g. ctrl's per-label
    evaluation). A ``model`` method leaves its fine-tuned model in ``task.generator``."""

    designs: Tensor | None = None
    extra: dict = field(default_factory=dict)


def never(cfg) -> bool:
    return False


def always(cfg) -> bool:
    return True


def no_problem(cfg) -> None:
    return None


@dataclass(frozen=True)
class MethodSpec:
    """One steering method. ``run(task, cfg)`` steers ``task.generator`` (or selects designs)
    with the settings ``cfg`` (an instance of ``config``) and returns a :class:`MethodResult`.

    Before the run, ``campaign.finetune`` gives the task what the spec asks for: the
    differentiable reward (``task.reward.differentiable``), the pretraining data
    (``task.data``, when ``training_data(cfg)``), a condition (``label``: ``task.condition``
    from the domain's classifier and a generator with a zero-initialised label embedding;
    ``value``: a generator with a scalar-value embedding) and, for a config with a
    ``reward_network`` setting, the domain's regressor (``task.reward_network()``).
    """

    id: str  # the sheet's method column, ``--method``, config ``finetune.<id>``, the run folder
    config: type  # settings dataclass; ``oracle_budget`` (and ``n_samples``) come from the sheet
    run: Callable[[FinetuneTask, Any], MethodResult]
    help: str = ""  # one line for ``rewarddiff finetune --help``; default: ``config``'s docstring
    produces: Literal["model", "selection"] = "model"
    differentiable_reward: bool = False  # the objective's torch_score form
    training_data: Callable[[Any], bool] = never  # needs the pretraining data, given settings
    condition: Literal["label", "value"] | None = None
    training_curve: bool = True  # its log rows are rounds of the objective (the report plots)
    # a check across settings (e.g. against the budget): (setting, problem) or None
    check: Callable[[Any], tuple[str, str] | None] = no_problem

    def __post_init__(self):
        names = {f.name for f in dataclasses.fields(self.config)}
        if "oracle_budget" not in names:
            raise TypeError(f"method {self.id}: {self.config.__name__} has no oracle_budget")
        if not self.help:  # the settings dataclass's own docstring (not dataclass's default)
            doc = (self.config.__doc__ or "").strip()
            if not doc.startswith(f"{self.config.__name__}("):
                object.__setattr__(self, "help", doc)
        if not self.help or "\n" in self.help:
            raise ValueError(f"method {self.id}: help must be one line (help= or config docstring)")
        if self.produces not in ("model", "selection"):
            raise ValueError(f"method {self.id}: produces model or selection, not {self.produces}")
        if self.condition not in (None, "label", "value"):
            raise ValueError(f"method {self.id}: condition label, value or None")

    @property
    def takes_n_samples(self) -> bool:
        """Whether the sheet's ``n_samples`` is one of its settings (designs it makes itself)."""
        return "n_samples" in {f.name for f in dataclasses.fields(self.config)}

    @property
    def fits_reward_model(self) -> bool:
        """Whether it fits its own reward model (a ``reward_network`` setting)."""
        return "reward_network" in {f.name for f in dataclasses.fields(self.config)}

    def sheet_settings(self, row) -> dict:
        """The settings a campaign-sheet ``row`` sets: ``oracle_budget`` and, where it takes
        them, ``n_samples``."""
        settings = {"oracle_budget": int(row["oracle_budget"])}
        if self.takes_n_samples:
            settings["n_samples"] = int(row["n_samples"])
        return settings

    def settings_schema(self) -> dict:
        """A JSON schema of its config section typed from the dataclass fields, for a method
        without a hand-written section in ``config.schema.yaml`` (unknown keys are errors)."""
        hints = typing.get_type_hints(self.config)
        properties = {}
        for f in dataclasses.fields(self.config):
            if f.name not in SHEET_KEYS:  # set per sheet row
                kind = JSON_TYPES.get(typing.get_origin(hints[f.name]) or hints[f.name])
                properties[f.name] = {"type": kind} if kind else {}
        return {"type": "object", "additionalProperties": False, "properties": properties}
