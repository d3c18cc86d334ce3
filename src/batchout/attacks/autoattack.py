"""AutoAttack, standard version: four diverse attacks in a cascade, the per-example worst case.

Usage: ``x_adv = create_attack("autoattack", model)(x, y, eps=8 / 255)``;
``AutoAttack(model, square={"n_queries": 1000}, fab_t=False)`` for a smaller budget

Croce & Hein 2020 ("Reliable evaluation of adversarial robustness with an ensemble of diverse
parameter-free attacks"): APGD-CE (100 steps) -> APGD-T (9 targets, 100 steps each) -> FAB-T
(9 targets) -> Square (5,000 queries), each run only on the points every earlier one failed to
break (``batchout.attacks.cascade``). The members are this package's ``apgd_ce``, ``apgd_t``, ``fab_t``
and ``square``, imported directly (a composite imports its parts; the registry is for names from
params); a setting per member overrides its defaults, and ``false`` leaves the member out (a cheaper,
non-standard ensemble: the results then name the members that ran). After a call, ``broken_by`` says
per example which member broke it (its index in ``members``, -1: none did): the grid's breakdown.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from typing import Any

import torch
from torch import nn

from batchout.attacks.apgd import APGDCE, APGDT
from batchout.attacks.base import Attack, register_attack
from batchout.attacks.cascade import Cascade
from batchout.attacks.fab import FABT
from batchout.attacks.square import Square
from batchout.errors import BatchoutError

# The members in the order they run, and the standard version's budget of each (over their defaults).
MEMBERS: dict[str, type[Attack]] = {"apgd_ce": APGDCE, "apgd_t": APGDT, "fab_t": FABT, "square": Square}
_STANDARD: dict[str, dict[str, Any]] = {"apgd_ce": {}, "apgd_t": {}, "fab_t": {}, "square": {"n_queries": 5000}}


@cache
def standard_budget() -> dict[str, dict[str, Any]]:
    """Every member's settings in the standard version (built once; settings need no model)."""
    return {name: MEMBERS[name](nn.Identity(), **cfg).settings for name, cfg in _STANDARD.items()}


def checked(model: nn.Module, settings: Mapping[str, Any], key: str) -> AutoAttack:
    """``AutoAttack(model, **settings)``, a refusal named by the params key holding the settings
    (``key`` ``tune.attack``: ``tune.attack.square.n_querys: unknown setting; ...``)."""
    try:
        return AutoAttack.build(model, **settings)
    except BatchoutError as err:
        text = str(err)
        rest = text.removeprefix("autoattack") if text.startswith("autoattack") else f".{text}"
        raise BatchoutError(f"{key}{rest}") from None


@register_attack("autoattack")
class AutoAttack(Attack):
    """The cascade of :data:`MEMBERS`; L-infinity, pixels in [0, 1]. Each keyword names a member and
    holds that member's settings (merged over the standard budget), or ``False`` to leave it out."""

    label = "AutoAttack"

    def __init__(self, model: nn.Module, apgd_ce: dict | bool | None = None, apgd_t: dict | bool | None = None,
                 fab_t: dict | bool | None = None, square: dict | bool | None = None) -> None:
        given = {"apgd_ce": apgd_ce, "apgd_t": apgd_t, "fab_t": fab_t, "square": square}
        for name, cfg in given.items():
            if cfg is not None and cfg is not False and not isinstance(cfg, dict):
                raise BatchoutError(f"{self.key(name)}: got {cfg!r}; allowed: a mapping of {name}'s settings, or false")
        super().__init__(model, **{k: v for k, v in given.items() if v is not None})
        kept = [name for name in MEMBERS if given[name] is not False]
        if not kept:
            raise BatchoutError(f"{self.name}: every member is left out; allowed: at least one of {', '.join(MEMBERS)}")
        self.members: dict[str, Attack] = {
            name: MEMBERS[name].build(model, **{**_STANDARD[name], **(given[name] or {})}) for name in kept}
        self.standard = self.budget() == standard_budget()  # every member, each at its standard budget
        self.broken_by = torch.zeros(0, dtype=torch.long)

    def budget(self) -> dict[str, Any]:
        """Each member's full settings, ``False`` for a member left out: the budget a result rests on."""
        return {name: dict(self.members[name].settings) if name in self.members else False for name in MEMBERS}

    def describe(self) -> str:
        """"the standard AutoAttack (APGD-CE 100 steps, ...)" or "a reduced-budget AutoAttack (...; FAB-T left
        out; not the standard one)": a verdict must say which one it rests on."""
        members = ", ".join(m.describe() for m in self.members.values())
        left = [MEMBERS[n].label for n in MEMBERS if n not in self.members]
        if left:
            members += f"; {', '.join(left)} left out"
        if self.standard:
            return f"the standard AutoAttack ({members})"
        return f"a reduced-budget AutoAttack ({members}; not the standard one)"

    def parts(self) -> dict[str, Attack]:
        return dict(self.members)

    def gradient_budget(self) -> tuple[int, int]:
        """The most restarts and steps of any member."""
        parts = [m.gradient_budget() for m in self.members.values()]
        return max(r for r, _ in parts), max(s for _, s in parts)

    def escalated(self, cap: Mapping[str, int], classes: int) -> AutoAttack | None:
        """The same members, each with its budget doubled (:meth:`Attack.escalated`); a member at its cap
        keeps its budget. None when every member is at its cap."""
        grown = {name: m.escalated(cap, classes) for name, m in self.members.items()}
        if all(g is None for g in grown.values()):
            return None
        return AutoAttack(self.model, **{name: (grown.get(name) or self.members[name]).settings
                                         if name in self.members else False for name in MEMBERS})

    def perturb(self, x: torch.Tensor, y: torch.Tensor, eps: float) -> torch.Tensor:
        cascade = Cascade(self.model, x, y)
        for attack in self.parts().values():
            if not cascade.robust.any():
                break
            cascade.run(attack, eps)
        self.broken_by = cascade.broken_by
        return cascade.x_adv
