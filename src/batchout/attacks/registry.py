"""Name -> attack class, so params.yaml can name attacks and their settings.

Usage: ``attack = create_attack("pgd", model, steps=20); x_adv = attack(x, y, eps=0.3)``
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable
from typing import Any, TypeVar

from torch import nn

from batchout.attacks.base import Attack
from batchout.errors import BatchoutError

A = TypeVar("A", bound=type[Attack])

_REGISTRY: dict[str, type[Attack]] = {}


def register_attack(name: str) -> Callable[[A], A]:
    """Class decorator: make the attack available as ``name`` (a params.yaml key)."""

    def deco(cls: A) -> A:
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ValueError(f"attack {name!r} registered twice ({_REGISTRY[name].__name__}, {cls.__name__})")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return deco


def list_attacks() -> tuple[str, ...]:
    """Registered names, sorted (registration order depends on import order)."""
    return tuple(sorted(_REGISTRY))


def attack_settings(name: str) -> dict[str, Any]:
    """The settings an attack accepts, with their defaults (the paper defaults)."""
    cls = _lookup(name)
    params = list(inspect.signature(cls.__init__).parameters.values())[2:]  # skip self, model
    return {p.name: p.default for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}


def create_attack(name: str, model: nn.Module, **settings: Any) -> Attack:
    """Build attack ``name`` on ``model``; unknown names or settings are one-line errors."""
    allowed = attack_settings(name)
    for key in settings:
        if key not in allowed:
            close = difflib.get_close_matches(key, list(allowed), n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            names = ", ".join(allowed) or "(none)"
            raise BatchoutError(f"{name}.{key}: unknown setting; {hint}allowed: {names}")
    return _REGISTRY[name](model, **settings)


def _lookup(name: str) -> type[Attack]:
    if name not in _REGISTRY:
        raise BatchoutError(f"attack: unknown value {name!r}; allowed: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]
