"""Adversarial attacks in pixel space (L-infinity budgets on [0, 1] images), behind one registry.

Usage: ``from batchout.attacks import create_attack; x_adv = create_attack("pgd", model)(x, y, 0.3)``

Importing this package registers every attack; params.yaml names are checked against this registry.
Attacks know nothing of MLflow, files or training: model, images and budget in, adversarial images out.
"""

from __future__ import annotations

from batchout.attacks import apgd, autoattack, deepfool, fab, fgsm, pgd, pgd_dlr, square  # noqa: F401  (registration)
from batchout.attacks.base import Attack, frozen
from batchout.attacks.registry import attack_settings, create_attack, list_attacks, register_attack

__all__ = ["Attack", "attack_settings", "create_attack", "frozen", "list_attacks", "register_attack"]
