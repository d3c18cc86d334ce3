"""An evaluation as the attack stage's JSON record: per-example flags as "0"/"1" strings, accuracies and
passes keyed by eps, and the escalation's rounds. The file boundary: the evaluation itself stays tensors.

Usage: ``doc = {**grid_record(ev), "converge": converge_record(ev, 1, cap)}``

Keys (``eps_key``: ``eps_0.1000``): ``robust_acc`` (attack -> eps -> accuracy; ``worst``: every attack and
every escalation round), ``robust_flags`` (the same per example, in the attacked order), ``clean_flags``,
``breakdown`` (ensemble -> member -> eps -> accuracy after that member), ``passes`` (attack -> eps ->
forward/backward passes, summed over the attacked points) and ``converge``: per eps, whether the escalated
attack converged, the budget the worst case rests on (``factor``: 2 to the rounds, x the profile's budget,
each member capped; ``budget``: in words), and every round (round 0: the grid at the profile's budget).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from batchout.evaluation.converge import Escalation, Evaluation
from batchout.evaluation.passes import Passes
from batchout.io import eps_key


def flag_string(flags: torch.Tensor) -> str:
    """Per example "1" (robust / correct) or "0", in input order: what the report's paired tests read."""
    return "".join("1" if f else "0" for f in flags.tolist())


def _per_eps(eps: list[float], values: list[Any]) -> dict[str, Any]:
    return {eps_key(e): v for e, v in zip(eps, values, strict=True)}


def grid_record(ev: Evaluation) -> dict[str, Any]:
    grid = ev.grid
    flags = {**grid.robust, "worst": ev.worst}
    return {"clean_acc": grid.clean_acc, "budgets": grid.budgets,
            "robust_acc": {a: _per_eps(grid.eps, grid.acc(f)) for a, f in flags.items()},
            "robust_flags": {a: _per_eps(grid.eps, [flag_string(row) for row in f]) for a, f in flags.items()},
            "clean_flags": flag_string(grid.clean),
            "breakdown": {a: {m: _per_eps(grid.eps, accs) for m, accs in grid.breakdown(a).items()}
                          for a in grid.broken_by},
            "passes": {a: _per_eps(grid.eps, [p.as_dict() for p in ps]) for a, ps in grid.passes.items()}}


def _rounds(ev: Evaluation, i: int, esc: Escalation) -> list[dict[str, Any]]:
    """Round 0 (the grid at this eps, every attack of it) and each escalation round: the points it attacked
    and broke, and the accuracy after it. Round 1 attacks fewer points than round 0 left robust where the
    escalation at a smaller eps broke some of them already (a point broken there is broken here)."""
    grid, n = ev.grid, max(ev.grid.n, 1)
    pool = grid.clean if i == 0 or not grid.reuse_eps else grid.worst[i - 1]  # what the grid attacked here
    robust = int(grid.worst[i].sum())
    rounds = [{"budget": "; ".join(grid.budgets.values()), "attacked": int(pool.sum()),
               "broken": int(pool.sum()) - robust, "acc": robust / n,
               "passes": sum((p[i] for p in grid.passes.values()), Passes()).as_dict()}]
    for r in esc.rounds:
        rounds.append({"budget": r.words, "settings": r.budget, "attacked": r.attacked, "broken": r.broken,
                       "by_member": r.parts, "acc": (r.attacked - r.broken) / n,
                       "passes": r.passes.as_dict(), "seconds": round(r.seconds, 3)})
    return rounds


def converge_record(ev: Evaluation, attack: str | None, tolerance: int, cap: Mapping[str, int]) -> dict[str, Any]:
    """The escalation per eps: ``converged``, ``factor``, ``budget`` (words), ``settings``, ``acc`` and ``rounds``;
    with the escalated ``attack``, ``tolerance`` (test points) and ``cap``. No escalation: every eps
    ``converged: false`` with ``factor`` 1 (the grid's budget; nothing showed it converged)."""
    out: dict[str, Any] = {"attack": attack, "tolerance": tolerance, "cap": dict(cap), "eps": {}}
    for i, e in enumerate(ev.grid.eps):
        esc = ev.escalations[i] if ev.escalations else None
        rounds = _rounds(ev, i, esc) if esc is not None else []
        last = esc.rounds[-1] if esc is not None and esc.rounds else None
        out["eps"][eps_key(e)] = {
            "converged": bool(esc is not None and esc.converged), "factor": 2 ** (len(rounds) - 1 if rounds else 0),
            "budget": last.words if last else "; ".join(ev.grid.budgets.values()),
            "settings": last.budget if last else None, "acc": ev.grid.acc(ev.worst[i]), "rounds": rounds,
            "passes": sum((p[i] for p in ev.grid.passes.values()), esc.passes if esc else Passes()).as_dict()}
    return out
