"""Attack until converged: re-attack the points still robust with the budget doubled, round after round,
until a round breaks at most ``tolerance`` points (converged) or the budget reaches its cap while points
still fall (not converged: the accuracy is an upper bound).

Usage: ``ev = converged(model, counted, x, y, {"autoattack": aa}, [0.1, 0.2], 500, "cpu",
escalate_attack="autoattack", tolerance=1, cap=CAP)`` (``aa`` built on ``counted = PassCounter(model)``);
``ev.worst_acc()``, ``ev.escalations[0].converged``; one eps: ``escalate(aa, counted, x, y, robust, 0.1, ...)``

Carlini et al. 2019 ("On Evaluating Adversarial Robustness") ask that doubling an attack's iterations or
restarts change nothing; AutoAttack and RobustBench run one fixed budget. Here the doubling is the
check, per model and eps, and it costs budget only where points still fall: each round runs the whole
attack (an ensemble: every member, ``Attack.escalated``) only on the points every earlier round and
attack left robust (``batchout.attacks.cascade``), and a point once broken stays broken. The first
round is the caller's (the attack grid at the profile's budget); a model that converges at once pays
for one doubled round on its robust points. Cost is counted in forward and backward passes
(``batchout.evaluation.passes``) through the counter the attack was built on.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from batchout.attacks.base import Attack
from batchout.attacks.cascade import Cascade
from batchout.evaluation.grid import GridResult, attack_grid
from batchout.evaluation.passes import PassCounter, Passes
from batchout.evaluation.predict import inputs
from batchout.modes import frozen
from batchout.progress import track


@dataclass(frozen=True)
class Round:
    """One escalation round: the budget it ran at, the points it attacked and broke, what it cost."""

    budget: dict[str, Any]  # the attack's settings (an ensemble: each member's)
    words: str  # the budget in words ("a reduced-budget AutoAttack (APGD-CE 20 steps, ...)")
    attacked: int  # points robust before the round
    broken: int  # of those, broken by this round
    passes: Passes
    seconds: float
    parts: dict[str, int] = field(default_factory=dict)  # points each part (an ensemble's member) broke


@dataclass
class Escalation:
    """Every round at one eps; ``robust``: per example after all of them. ``converged``: the last round
    broke at most the tolerance, or at most that many points were left to break; False: the cap was
    reached while points still fell."""

    eps: float
    robust: torch.Tensor
    converged: bool
    rounds: list[Round] = field(default_factory=list)

    @property
    def passes(self) -> Passes:
        return sum((r.passes for r in self.rounds), Passes())


def escalate(attack: Attack, counter: PassCounter, x: torch.Tensor, y: torch.Tensor, robust: torch.Tensor,
             eps: float, *, tolerance: int, cap: Mapping[str, int], classes: int, batch_size: int | None = None,
             device: torch.device | None = None, note: Callable[[str], None] | None = None) -> Escalation:
    """Escalate ``attack`` (built on ``counter``; its budget is the round already run) on the points of
    ``x, y`` still ``robust`` at ``eps``: double it (up to ``cap``; targets up to ``classes - 1``) and attack
    what is left, until a round breaks at most ``tolerance`` points. ``x, y`` stay where they are; the
    attacks run on ``device`` in chunks of ``batch_size``. A round runs every part (an ensemble's members)
    as one cascade over the points still robust, and records what each part broke. ``note`` gets a line
    before and after every round (a round at the cap can take minutes: the log must not fall silent).

    Every part runs even once a round has broken more than the tolerance (it cannot converge any more):
    stopping there was tried and made the escalation dearer on four of the quick profile's MNIST models
    (343 s against 310 s), because such rounds break fewer points each, so more of them are needed and the
    confirming round's budget ends higher."""
    cascade = Cascade(counter, x, y, robust, batch_size, device)
    out = Escalation(eps, cascade.robust, converged=False)
    current: Attack | None = attack
    while (left := int(cascade.robust.sum())) > tolerance:  # else it cannot fall by more than the tolerance
        current = current.escalated(cap, classes)
        if current is None:  # at the cap while the last round still broke points: an upper bound
            return out
        k = len(out.rounds) + 1
        if note:
            note(f"eps {eps:g} round {k}: {left:,} points still robust, attacking with {current.describe()}")
        before, start = counter.passes(), time.perf_counter()
        parts = {}
        for name, part in current.parts().items():  # a note per member: one member at the cap can take minutes
            parts[name] = cascade.run(part, eps)
            if note:
                note(f"eps {eps:g} round {k}: {part.describe()} broke {parts[name]:,} "
                     f"({time.perf_counter() - start:.0f} s into the round)")
        broken = sum(parts.values())
        out.rounds.append(r := Round(current.budget(), current.describe(), left, broken, counter.passes() - before,
                                     time.perf_counter() - start, parts))
        if note:
            note(f"eps {eps:g} round {k}: broke {broken:,} of {left:,} (tolerance {tolerance:,}) in "
                 f"{r.seconds:.0f} s, {r.passes.total:,} passes")
        if broken <= tolerance:
            break
    out.converged = True
    return out


@dataclass
class Evaluation:
    """The grid at the profile's budget, then (when an attack is escalated) its escalation per eps."""

    grid: GridResult
    escalations: list[Escalation]  # per grid eps, or empty: nothing was escalated

    @property
    def worst(self) -> torch.Tensor:
        """[E, N]: robust to every attack of the grid and every escalation round (the verdicts' flags)."""
        return torch.stack([e.robust for e in self.escalations]) if self.escalations else self.grid.worst

    def worst_acc(self) -> list[float]:
        return self.grid.acc(self.worst)

    def parts(self, name: str, i: int) -> dict[str, int]:
        """Points each member of ensemble ``name`` broke at eps index ``i``: in the grid and in every
        escalation round."""
        out = {m: int((self.grid.broken_by[name][i] == j).sum()) for j, m in enumerate(self.grid.members[name])}
        for r in self.escalations[i].rounds if self.escalations else []:
            for m, k in r.parts.items():
                out[m] = out.get(m, 0) + k
        return out


def converged(model: nn.Module, counter: PassCounter, x: torch.Tensor, y: torch.Tensor, attackers: dict[str, Attack],
              eps: list[float], batch_size: int, device: str | torch.device, *, escalate_attack: str | None,
              tolerance: int, cap: Mapping[str, int], progress: str | None = "attack") -> Evaluation:
    """The grid of ``attackers`` (built on ``counter``, a PassCounter around ``model``; eps reused upward), then
    ``attackers[escalate_attack]`` escalated at each eps (ascending) on the points every attack left robust,
    until it converges (:func:`escalate`). A point broken at a smaller eps stays broken at the larger ones.
    ``escalate_attack`` None or not among them: the grid alone (its worst case rests on no convergence check)."""
    grid = attack_grid(model, x, y, attackers, eps, batch_size, device, counter=counter, reuse_eps=True,
                       progress=progress)
    out = Evaluation(grid, [])
    if escalate_attack not in attackers or grid.n == 0:
        return out
    xf, yl = inputs(x, y)
    device = torch.device(device)
    with torch.no_grad(), frozen(model):
        classes = model(xf[:1].to(device)).shape[1]
    carried = grid.clean
    with track(f"converge {progress}" if progress else "", len(grid.eps), "eps value",
               enabled=progress is not None) as task:
        for i, e in enumerate(grid.eps):
            esc = escalate(attackers[escalate_attack], counter, xf, yl, grid.worst[i] & carried, e,
                           tolerance=tolerance, cap=cap, classes=classes, batch_size=batch_size, device=device,
                           note=task.note if progress is not None else None)
            out.escalations.append(esc)
            carried = esc.robust
            task.advance(1, eps=e, rounds=len(esc.rounds), acc=grid.acc(esc.robust), converged=esc.converged)
    return out
