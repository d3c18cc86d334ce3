"""Accuracy of a model, clean and under attacks named as in params.yaml, over an eps grid; and the same
with one attack escalated until it converges (the verdicts' numbers).

Usage: ``grid = robust_grid(model, x, y, {"fgsm": {}, "pgd": {"steps": 10}}, [0.1, 0.3], 500, "cpu")``;
``grid.acc(grid.worst)``; ``ev = converged_grid(model, x, y, attacks, eps, 500, "cpu", escalate_attack="autoattack",
tolerance=1, cap={"steps": 100, "n_targets": 9, "n_queries": 5000, "restarts": 4})``; ``ev.worst_acc()``

Builds the attacks through the registry (so it depends on every attack) on a pass counter around the
model, and runs ``batchout.evaluation.grid.attack_grid``: each attack's cost comes back in forward and
backward passes per eps.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from batchout.attacks.registry import create_attack
from batchout.evaluation.converge import Evaluation, converged
from batchout.evaluation.grid import GridResult, attack_grid
from batchout.evaluation.passes import PassCounter


def robust_grid(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    attacks: dict[str, dict[str, Any]],
    eps: list[float],
    batch_size: int,
    device: str | torch.device,
    **options: Any,
) -> GridResult:
    """``attack_grid`` with each attack built from its name and settings (``attacks``: name -> settings);
    ``options``: ``reuse_eps``, ``progress`` as there. The result's ``settings`` are the settings as given."""
    counter = PassCounter(model)
    attackers = {name: create_attack(name, counter, **settings) for name, settings in attacks.items()}
    result = attack_grid(model, x, y, attackers, eps, batch_size, device, counter=counter, **options)
    result.settings = {name: dict(settings) for name, settings in attacks.items()}
    return result


def converged_grid(model: nn.Module, x: torch.Tensor, y: torch.Tensor, attacks: dict[str, dict[str, Any]],
                   eps: list[float], batch_size: int, device: str | torch.device, *, escalate_attack: str | None,
                   tolerance: int, cap: Mapping[str, int], progress: str | None = "attack") -> Evaluation:
    """``evaluation.converge.converged`` with each attack built from its name and settings on a pass
    counter; ``escalate_attack``: the name of the one escalated (None, or not in ``attacks``: none)."""
    counter = PassCounter(model)
    attackers = {name: create_attack(name, counter, **settings) for name, settings in attacks.items()}
    ev = converged(model, counter, x, y, attackers, eps, batch_size, device, escalate_attack=escalate_attack,
                   tolerance=tolerance, cap=cap, progress=progress)
    ev.grid.settings = {name: dict(settings) for name, settings in attacks.items()}
    return ev
