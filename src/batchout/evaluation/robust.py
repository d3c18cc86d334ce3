"""Accuracy of a model, clean and under attacks named as in params.yaml, over an eps grid.

Usage: ``grid = robust_grid(model, x, y, {"fgsm": {}, "pgd": {"steps": 10}}, [0.1, 0.3], 500, "cpu")``

Builds the attacks through the registry (so it depends on every attack) and runs
``batchout.evaluation.grid.attack_grid``; the result's ``attacks`` are the settings as given.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from batchout.attacks.registry import create_attack
from batchout.evaluation.grid import attack_grid


def robust_grid(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    attacks: dict[str, dict[str, Any]],
    eps: list[float],
    batch_size: int,
    device: str | torch.device,
    **options: Any,
) -> dict[str, Any]:
    """``attack_grid`` with each attack built from its name and settings (``attacks``: name -> settings);
    ``options``: ``cascade``, ``reuse_eps``, ``progress`` as there."""
    attackers = {name: create_attack(name, model, **settings) for name, settings in attacks.items()}
    result = attack_grid(model, x, y, attackers, eps, batch_size, device, **options)
    result["attacks"] = {name: dict(settings) for name, settings in attacks.items()}
    return result
