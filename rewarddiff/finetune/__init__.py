"""Fine-tuning (steering) methods: one module per method, each declaring its ``SPEC``
(:class:`~rewarddiff.finetune.spec.MethodSpec`) next to its settings and run function.

``METHODS`` maps method ids to specs: every module of this package with a ``SPEC``, then the
specs that installed packages name in the entry-point group ``rewarddiff.methods`` (e.g.
``identity = "mypkg.identity:SPEC"``), or that :func:`register_method` adds."""

import importlib
import pkgutil
import re
from importlib.metadata import entry_points

from rewarddiff.finetune.common import CountingReward, FinetuneTask
from rewarddiff.finetune.spec import MethodResult, MethodSpec

ENTRY_POINT_GROUP = "rewarddiff.methods"
METHODS: dict[str, MethodSpec] = {}


def register_method(spec: MethodSpec) -> MethodSpec:
    """Add ``spec`` to :data:`METHODS`; its id must be new, lowercase letters and ``_`` (the
    workflow's method wildcard), and not ``pretrained`` (the baseline runs' folder)."""
    if not re.fullmatch("[a-z_]+", spec.id) or spec.id == "pretrained":
        raise ValueError(f"method id {spec.id!r}: lowercase letters and _, not 'pretrained'")
    if spec.id in METHODS:
        raise ValueError(f"method {spec.id!r} is registered twice")
    METHODS[spec.id] = spec
    return spec


for _module in pkgutil.iter_modules(__path__):
    _spec = getattr(importlib.import_module(f"{__name__}.{_module.name}"), "SPEC", None)
    if _spec is not None:
        register_method(_spec)
for _entry in entry_points(group=ENTRY_POINT_GROUP):
    register_method(_entry.load())

__all__ = ["METHODS", "CountingReward", "FinetuneTask", "MethodResult", "MethodSpec",
           "register_method"]  # fmt: skip
