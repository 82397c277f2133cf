"""Oracle registry: built-ins register by name, third parties via the ``rewarddiff.oracles``
entry-point group. A spec string ``name:argument`` picks a factory and passes the argument."""

from __future__ import annotations

from collections.abc import Callable
from importlib.metadata import entry_points

from rewarddiff import UserError
from rewarddiff.oracles.base import Oracle, OracleInfo

ENTRY_POINT_GROUP = "rewarddiff.oracles"

# (domain, name) -> (factory(argument, **context) -> Oracle, info template)
_FACTORIES: dict[tuple[str, str], tuple[Callable[..., Oracle], OracleInfo]] = {}
_entry_points_loaded = False


def register_oracle(domain: str, name: str, info: OracleInfo):
    """Decorator: register ``factory(argument: str | None, **context) -> Oracle``."""

    def wrap(factory):
        _FACTORIES[(domain, name)] = (factory, info)
        return factory

    return wrap


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


def make_oracles(domain: str, specs: list[str], **context) -> dict[str, Oracle]:
    """One oracle per distinct spec, in first-seen order."""
    return {spec: make_oracle(domain, spec, **context) for spec in dict.fromkeys(specs)}


def make_oracle(domain: str, spec: str, **context) -> Oracle:
    """Build an oracle from ``name`` or ``name:argument``; unknown names give a UserError."""
    _load_entry_points()
    name, _, argument = spec.partition(":")
    if (domain, name) not in _FACTORIES:
        known = ", ".join(available(domain)) or "none"
        raise UserError(f"unknown oracle {spec!r} for domain {domain!r} (known: {known})")
    factory, _ = _FACTORIES[(domain, name)]
    return factory(argument or None, **context)
