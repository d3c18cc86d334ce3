"""Accuracy of a model under given attack objects over an eps grid, sharing one clean pass.

Usage: ``grid = attack_grid(model, x, y, {"pgd": PGD(model, steps=10)}, [0.1, 0.3], 500, "cpu")``;
``grid.acc(grid.worst)`` -> accuracy per eps; by name: ``batchout.evaluation.robust.robust_grid``

Pure: tensors in, a :class:`GridResult` of per-example flags out (no files, no tracking; the attack
stage writes them as JSON). eps is always an L-infinity budget in pixel units of [0, 1] images; the
model normalizes inside, so eps means the same on every data set. Attacks run in fp32 with autocast
off: bf16 logits round small loss differences away, which weakens gradient attacks and would overstate
robustness. Imports no attack: a caller that builds its own depends on that attack's code only.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from batchout.attacks.base import check_eps
from batchout.errors import BatchoutError
from batchout.evaluation.passes import PassCounter, Passes
from batchout.evaluation.predict import inputs, predict
from batchout.modes import fp32_region, frozen
from batchout.progress import track


@dataclass
class GridResult:
    """Per example (input order) and eps (the grid's order): who survived what. Flags are CPU tensors.

    ``clean`` [N]: classified correctly (only those are attacked); ``robust[name]`` [E, N]: robust to that
    attack alone; ``worst`` [E, N]: robust to every attack (AutoAttack style: an example counts only if it
    survives all of them); ``broken_by[name]`` [E, N]: for an ensemble, the index of the member that broke
    the example (-1: none), members named in ``members[name]``; ``passes[name]``: per eps, the forward and
    backward passes the attack cost (zero when no counter was given); ``seconds[name]``: its time."""

    eps: list[float]
    clean: torch.Tensor
    robust: dict[str, torch.Tensor]
    worst: torch.Tensor
    settings: dict[str, dict[str, Any]]
    budgets: dict[str, str]  # name -> the budget in words, for reports
    reuse_eps: bool = False
    broken_by: dict[str, torch.Tensor] = field(default_factory=dict)
    members: dict[str, list[str]] = field(default_factory=dict)
    passes: dict[str, list[Passes]] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def n(self) -> int:
        return len(self.clean)

    def acc(self, flags: torch.Tensor) -> Any:
        """Accuracy over all N examples: a float for [N] flags, a list per eps for [E, N]."""
        return (flags.sum(-1).double() / max(self.n, 1)).tolist()  # float64: the exact count / n

    @property
    def clean_acc(self) -> float:
        return self.acc(self.clean)

    def breakdown(self, name: str) -> dict[str, list[float]]:
        """Accuracy per eps after each member of ensemble ``name`` (each member only removes points)."""
        by = self.broken_by[name]
        pool = self.robust[name] | (by >= 0)  # what the ensemble attacked
        return {m: self.acc(pool & ~((by >= 0) & (by <= j))) for j, m in enumerate(self.members[name])}


def _attack(model: nn.Module, attack: Any, x: torch.Tensor, y: torch.Tensor, pool: torch.Tensor, eps: float,
            batch_size: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Robust flags for all N examples (attacked where ``pool`` is set, False elsewhere), and for an
    ensemble the breaking member's index per example (-1 elsewhere)."""
    flags, broken = torch.zeros(len(y), dtype=torch.bool), torch.full((len(y),), -1, dtype=torch.long)
    if eps == 0.0:  # x_adv == x: the clean pass already decided
        return pool.clone(), broken
    for idx in pool.nonzero().squeeze(1).split(batch_size):
        xb, yb = x[idx].to(device, non_blocking=True), y[idx].to(device, non_blocking=True)
        x_adv = attack(xb, yb, eps)
        if hasattr(attack, "broken_by"):  # an ensemble (AutoAttack): who broke each point
            broken[idx] = attack.broken_by.cpu()
        # Scored in eval mode like the attack ran: a model left in train mode by its caller would
        # otherwise be judged with BatchOut, dropout and batch statistics active (another model).
        with torch.inference_mode(), frozen(model), fp32_region(device):
            flags[idx] = (model(x_adv).argmax(1) == yb).cpu()
    return flags, broken


@dataclass
class _Runner:
    """Runs one (attack, eps) of the grid and records it in ``out``."""

    model: nn.Module
    x: torch.Tensor
    y: torch.Tensor
    batch_size: int
    device: torch.device
    counter: PassCounter | None
    out: GridResult

    def __call__(self, name: str, attack: Any, i: int, pool: torch.Tensor) -> torch.Tensor:
        start, before = time.perf_counter(), self._passes()
        # scored through the counter too: the cost of a result includes the pass that checks it
        scorer = self.counter if self.counter is not None else self.model
        flags, broken = _attack(scorer, attack, self.x, self.y, pool, self.out.eps[i], self.batch_size, self.device)
        self.out.passes[name].append(self._passes() - before)
        self.out.seconds[name] += time.perf_counter() - start
        self.out.robust[name][i] = flags
        if name in self.out.broken_by:
            self.out.broken_by[name][i] = broken
        return flags

    def _passes(self) -> Passes:
        return self.counter.passes() if self.counter is not None else Passes()


def _empty(eps: list[float], clean: torch.Tensor, attackers: dict[str, Any], reuse_eps: bool) -> GridResult:
    shape = (len(eps), len(clean))
    out = GridResult(eps, clean, {}, torch.zeros(shape, dtype=torch.bool), {}, {}, reuse_eps)
    for name, attack in attackers.items():
        out.robust[name] = torch.zeros(shape, dtype=torch.bool)
        out.settings[name], out.budgets[name] = dict(attack.settings), attack.describe()
        out.passes[name], out.seconds[name] = [], 0.0
        if hasattr(attack, "members"):  # an ensemble: which member broke each point
            out.members[name], out.broken_by[name] = list(attack.members), torch.full(shape, -1, dtype=torch.long)
    return out


def attack_grid(model: nn.Module, x: torch.Tensor, y: torch.Tensor, attackers: dict[str, Any], eps: list[float],
                batch_size: int, device: str | torch.device, *, counter: PassCounter | None = None,
                reuse_eps: bool = False, progress: str | None = "attack") -> GridResult:
    """Every attack at every eps, sharing one clean pass; only clean-correct examples are attacked.

    By default each eps is attacked independently (nothing carried between budgets, so monotonicity
    stays a real check). ``reuse_eps=True`` carries the sound direction only: an example an attack
    fooled at a smaller eps is fooled at every larger one (its adversarial example lies inside the
    larger ball), so larger budgets attack only what that attack left robust (tests/test_speedups.py).
    ``counter``: the PassCounter the attackers were built on (their passes are recorded per eps).
    ``progress``: the description shown after each (attack, eps) with its accuracy; None: silent.
    The model is moved to ``device``.
    """
    device = torch.device(device)
    if batch_size < 1:
        raise BatchoutError(f"batch_size: got {batch_size}; allowed: an integer >= 1")
    eps = sorted(check_eps(e) for e in eps) if reuse_eps else [check_eps(e) for e in eps]
    xf, y = inputs(x, y)
    model.to(device)
    out = _empty(eps, predict(model, xf, batch_size, device) == y, attackers, reuse_eps)
    run = _Runner(model, xf, y, batch_size, device, counter, out)
    carried = {name: out.clean.clone() for name in [*attackers, "worst"]}  # not yet fooled at a smaller eps
    with track(progress or "", len(eps) * len(attackers), "attack", enabled=progress is not None) as task:
        for i, e in enumerate(eps):
            alive = carried["worst"].clone()  # robust to every attack so far at this eps
            for name, attack in attackers.items():
                flags = run(name, attack, i, carried[name])
                alive &= flags
                task.advance(1, attack=name, eps=e, acc=out.acc(flags), worst=out.acc(alive))
                if reuse_eps:
                    carried[name] = flags
            out.worst[i] = alive
            if reuse_eps:
                carried["worst"] = alive
    return out
