"""AutoAttack, standard version: four diverse attacks in a cascade, the per-example worst case.

Usage: ``x_adv = create_attack("autoattack", model)(x, y, eps=8 / 255)``;
``create_attack("autoattack", model, square={"n_queries": 1000}, fab_t=False)`` for a smaller budget

Croce & Hein 2020 ("Reliable evaluation of adversarial robustness with an ensemble of diverse
parameter-free attacks"): APGD-CE (100 steps) -> APGD-T (9 targets, 100 steps each) -> FAB-T
(9 targets) -> Square (5,000 queries), each run only on the points every earlier one failed to
break. Ours are this package's ``apgd_ce``, ``apgd_t``, ``fab_t`` and ``square``; a setting per
member overrides its defaults, and ``false`` leaves the member out (a cheaper, non-standard
ensemble: the results then name the members that ran). After a call, ``broken_by`` says per example
which member broke it (its index in ``members``, -1: none did): ``robust_grid``'s breakdown.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from batchout.attacks.base import Attack, register_attack
from batchout.attacks.registry import create_attack
from batchout.errors import BatchoutError

# The standard version's members and their budgets, in the order they run.
STANDARD: dict[str, dict[str, Any]] = {"apgd_ce": {}, "apgd_t": {}, "fab_t": {}, "square": {"n_queries": 5000}}


@register_attack("autoattack")
class AutoAttack(Attack):
    """The cascade of :data:`STANDARD`; L-infinity, pixels in [0, 1]. Each keyword names a member
    and holds that member's settings (merged over the standard budget), or ``False`` to leave it out."""

    label = "AutoAttack"

    def __init__(self, model: nn.Module, apgd_ce: dict | bool | None = None, apgd_t: dict | bool | None = None,
                 fab_t: dict | bool | None = None, square: dict | bool | None = None) -> None:
        given = {"apgd_ce": apgd_ce, "apgd_t": apgd_t, "fab_t": fab_t, "square": square}
        for name, cfg in given.items():
            if cfg is not None and cfg is not False and not isinstance(cfg, dict):
                raise BatchoutError(f"{self.key(name)}: got {cfg!r}; allowed: a mapping of {name}'s settings, or false")
        super().__init__(model, **{k: v for k, v in given.items() if v is not None})
        kept = [name for name in STANDARD if given[name] is not False]
        if not kept:
            allowed = ", ".join(STANDARD)
            raise BatchoutError(f"{self.name}: every member is left out; allowed: at least one of {allowed}")
        self.members: dict[str, Attack] = {
            name: create_attack(name, model, **{**STANDARD[name], **(given[name] or {})}) for name in kept}
        self.broken_by = torch.zeros(0, dtype=torch.long)

    @property
    def standard(self) -> bool:
        """True when this is the standard version: every member, each at its standard budget."""
        standard = {name: create_attack(name, self.model, **cfg).settings for name, cfg in STANDARD.items()}
        return {name: m.settings for name, m in self.members.items()} == standard

    def describe(self) -> str:
        """"the standard AutoAttack (APGD-CE 100 steps, ...)" or "a reduced-budget AutoAttack (...; FAB-T left
        out), not the standard AutoAttack": a verdict must say which one it rests on."""
        members = ", ".join(m.describe() for m in self.members.values())
        left = [create_attack(n, self.model).label for n in STANDARD if n not in self.members]
        if left:
            members += f"; {', '.join(left)} left out"
        if self.standard:
            return f"the standard AutoAttack ({members})"
        return f"a reduced-budget AutoAttack ({members}), not the standard AutoAttack"

    def perturb(self, x: torch.Tensor, y: torch.Tensor, eps: float) -> torch.Tensor:
        x_adv = x.clone()
        alive = torch.ones(len(x), dtype=torch.bool, device=x.device)
        self.broken_by = torch.full((len(x),), -1, dtype=torch.long, device=x.device)
        for i, attack in enumerate(self.members.values()):
            idx = alive.nonzero().squeeze(1)
            if idx.numel() == 0:
                break
            adv = attack(x[idx], y[idx], eps)
            with torch.no_grad():
                fooled = self.model(adv).argmax(1) != y[idx]
            x_adv[idx[fooled]] = adv[fooled]
            alive[idx[fooled]] = False
            self.broken_by[idx[fooled]] = i
        return x_adv
