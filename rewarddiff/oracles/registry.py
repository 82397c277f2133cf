"""Oracle registry: built-ins register by name, third parties via the ``rewarddiff.oracles``
entry-point group. A spec string ``name:argument`` picks a factory and passes the argument.

A factory may come with a ``check(argument, config)``: a cheap, side-effect-free test of the
argument against the domain's config section (``config["domains"][domain]``; ``{}`` = the
defaults) that needs no trained model, so campaigns reject a bad spec before any training."""

from __future__ import annotations

from collections.abc import Callable
from importlib.metadata import entry_points

from rewarddiff import UserError
from rewarddiff.oracles.base import FunctionOracle, Oracle, OracleInfo

ENTRY_POINT_GROUP = "rewarddiff.oracles"

# (domain, name) -> (factory(argument, **context) -> Oracle, info template)
_FACTORIES: dict[tuple[str, str], tuple[Callable[..., Oracle], OracleInfo]] = {}
# (domain, name) -> check(argument, config) raising UserError for a bad argument
_CHECKS: dict[tuple[str, str], Callable[[str | None, dict], None]] = {}
_entry_points_loaded = False


def register_oracle(domain: str, name: str, info: OracleInfo, check: Callable | None = None):
    """Decorator: register ``factory(argument: str | None, **context) -> Oracle`` and, when
    given, ``check(argument: str | None, config: dict) -> None`` (see the module docstring)."""

    def wrap(factory):
        _FACTORIES[(domain, name)] = (factory, info)
        if check is not None:
            _CHECKS[(domain, name)] = check
        return factory

    return wrap


def register_function_oracle(info: OracleInfo, fn: Callable, torch_fn: Callable | None = None):
    """Register ``info.name``, an oracle that takes no argument: a :class:`FunctionOracle` of
    ``fn(designs)`` (and ``torch_fn(x)`` when differentiable) with ``info``."""

    @register_oracle(info.domain, info.name, info, no_argument(info.name))
    def factory(argument=None, **context):
        no_argument(info.name)(argument)
        return FunctionOracle(info, fn, torch_fn)


def no_argument(name: str) -> Callable[[str | None, dict | None], None]:
    """The check of an oracle that takes no argument (factories call it too)."""

    def check(argument: str | None, config: dict | None = None) -> None:
        if argument:
            raise UserError(f"oracle {name} takes no argument (got {name}:{argument})")

    return check


def check_label(kind: str, argument: str | None, labels, noun: str = "class") -> None:
    """UserError unless ``argument`` is one of ``labels`` (the label ``kind:<label>``, a
    classifier oracle, scores); ``noun`` says what a label is (class, family, ...)."""
    if argument not in labels:
        problem = f"unknown {noun} {argument!r}" if argument else f"needs a {noun}"
        raise UserError(f"oracle {kind}: {problem} (known: {', '.join(labels)})")


def label_check(
    kind: str, labels_of: Callable[[dict], object], noun: str = "class"
) -> Callable[[str | None, dict], None]:
    """The check of a classifier oracle ``kind:<label>`` against the labels ``labels_of(config)``
    a classifier trained on the config's data knows (None: not known yet, nothing to check)."""

    def check(argument: str | None, config: dict) -> None:
        labels = labels_of(config)
        if labels is not None:
            check_label(kind, argument, labels, noun)

    return check


def _load_entry_points() -> None:
    """Entry points name a callable that registers oracles (e.g. ``pkg.oracles:register``)."""
    global _entry_points_loaded
    if _entry_points_loaded:
        return
    _entry_points_loaded = True
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        register = ep.load()
        if callable(register):
            register()


def available(domain: str) -> dict[str, OracleInfo]:
    _load_entry_points()
    return {name: info for (d, name), (_, info) in sorted(_FACTORIES.items()) if d == domain}


def _lookup(domain: str, spec: str) -> tuple[str, str | None]:
    """(name, argument or None) of a registered spec; unknown names give a UserError."""
    _load_entry_points()
    name, _, argument = spec.partition(":")
    if (domain, name) not in _FACTORIES:
        known = ", ".join(available(domain)) or "none"
        raise UserError(f"unknown oracle {spec!r} for domain {domain!r} (known: {known})")
    return name, argument or None


def check_oracle(domain: str, spec: str, config: dict | None = None) -> None:
    """UserError unless ``spec`` names a registered oracle whose check (if it has one) accepts
    its argument; ``config``: the domain's config section. Builds nothing."""
    from rewarddiff.domain import get_domain

    get_domain(domain)  # built-in oracles register when their domain is imported
    name, argument = _lookup(domain, spec)
    if (domain, name) in _CHECKS:
        _CHECKS[(domain, name)](argument, config or {})


def make_oracles(domain: str, specs: list[str], **context) -> dict[str, Oracle]:
    """One oracle per distinct spec, in first-seen order."""
    return {spec: make_oracle(domain, spec, **context) for spec in dict.fromkeys(specs)}


def make_oracle(domain: str, spec: str, **context) -> Oracle:
    """Build an oracle from ``name`` or ``name:argument``; unknown names give a UserError."""
    name, argument = _lookup(domain, spec)
    factory, _ = _FACTORIES[(domain, name)]
    return factory(argument, **context)
