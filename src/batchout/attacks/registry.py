"""Name -> attack class, so params.yaml can name attacks and their settings.

Usage: ``attack = create_attack("pgd", model, steps=20); x_adv = attack(x, y, eps=0.3)``;
``check_settings(params.attack.attacks, "attack.attacks.")``

The attack modules register themselves (``batchout.attacks.base.register_attack``) and are all
imported here, on first use: code that builds attacks by name can run any of them, so it depends on
all of them, while code that imports one attack module directly (adversarial training: FGSM, PGD)
depends on that module alone.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

from batchout.attacks.base import _REGISTRY, Attack
from batchout.errors import BatchoutError


def _all() -> dict[str, type[Attack]]:
    """Every attack, registered by importing its module (cheap after the first call)."""
    from batchout.attacks import apgd, autoattack, deepfool, fab, fgsm, pgd, pgd_dlr, square  # noqa: F401

    return _REGISTRY


def list_attacks() -> tuple[str, ...]:
    """Registered names, sorted (registration order depends on import order)."""
    return tuple(sorted(_all()))


def attack_settings(name: str) -> dict[str, Any]:
    """The settings an attack accepts, with their defaults (the paper defaults)."""
    return _lookup(name).accepted()


def create_attack(name: str, model: nn.Module, **settings: Any) -> Attack:
    """Build attack ``name`` on ``model``; unknown names or settings are one-line errors."""
    return _lookup(name).build(model, **settings)


def check_settings(attacks: Mapping[str, Mapping[str, Any]], prefix: str = "") -> None:
    """Build every attack of ``attacks`` (name -> settings) on a stand-in model: a bad name or setting
    is refused in one line, named by its params key (``prefix`` + ``pgd.steps``), before any work."""
    for name, settings in attacks.items():
        try:
            create_attack(name, nn.Identity(), **settings)
        except BatchoutError as err:
            raise BatchoutError(f"{prefix}{err}") from None


def _lookup(name: str) -> type[Attack]:
    registry = _all()
    if name not in registry:
        raise BatchoutError(f"attack: unknown value {name!r}; allowed: {', '.join(sorted(registry))}")
    return registry[name]
