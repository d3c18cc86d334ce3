"""Gradient-masking checks of Carlini et al. 2019 ("On Evaluating Adversarial Robustness") on a
model's robust-accuracy grid: each one a number and a pass/fail flag.

Usage: ``checks = sanity_checks(model, x, y, grid, params.attack.checks, 0.5, 500, "cpu", escalations=esc)``
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from batchout.attacks.base import check_eps, cross_entropy
from batchout.attacks.registry import create_attack
from batchout.data.loader import seeded_subset
from batchout.errors import BatchoutError
from batchout.evaluation.converge import Escalation
from batchout.evaluation.grid import GridResult
from batchout.evaluation.informative import informative_eps
from batchout.evaluation.predict import inputs
from batchout.evaluation.robust import robust_grid
from batchout.modes import frozen
from batchout.progress import QUIET, Task, track

if TYPE_CHECKING:  # only its fields are read: the attack core runs without the params schema
    from batchout.config import Checks

CONVERGENCE = ((1, 5), (1, 10), (1, 20), (1, 40), (2, 40))  # (restarts, steps) of the convergence curve


@dataclass
class _Probe:
    """Runs one attack over a few eps on the check subset."""

    model: nn.Module
    x: torch.Tensor
    y: torch.Tensor
    batch_size: int
    device: str | torch.device
    task: Task = QUIET  # one step per probe: the progress of the checks

    def acc(self, name: str, cfg: dict[str, Any], eps: list[float]) -> list[float]:
        grid = robust_grid(self.model, self.x, self.y, {name: cfg}, eps, self.batch_size, self.device, progress=None)
        acc = grid.acc(grid.robust[name])
        self.task.advance(1, attack=name, acc=acc[-1])
        return acc


def strong_pgd(model: nn.Module, settings: dict[str, dict[str, Any]]) -> tuple[int, int]:
    """(restarts, steps) of the more-iterations check's PGD: 2x the restarts and 4x the steps of the
    strongest gradient attack of the grid (ensemble members included), at least 2 x 40. Always strictly
    more than any of them, so the check can never compare an attack with itself."""
    budgets = [create_attack(name, model, **cfg).gradient_budget() for name, cfg in settings.items()]
    restarts, steps = max((r for r, _ in budgets), default=1), max((s for _, s in budgets), default=1)
    return max(2, 2 * restarts), max(40, 4 * steps)


def convergence(probe: _Probe, pgd_cfg: dict[str, Any], eps: float, strong: tuple[int, int]) -> dict[str, Any]:
    """PGD accuracy against steps and restarts at one eps (step size back to its default rule), ending
    at ``strong`` (restarts, steps)."""
    configs = list(dict.fromkeys([*CONVERGENCE, strong]))
    runs = [{**pgd_cfg, "steps": steps, "restarts": restarts, "step_size": None} for restarts, steps in configs]
    acc = [probe.acc("pgd", cfg, [eps])[0] for cfg in runs]
    return {"eps": eps, "restarts": [r for r, _ in configs], "steps": [s for _, s in configs], "acc": acc}


def ensemble_check(escalations: Sequence[Escalation], n: int, tol: float) -> dict[str, Any]:
    """The ensemble converged at every eps: folded into the escalation, whose last round re-attacked every
    point still robust (not a subset) at double the budget before it. ``ensemble_drop``: the most, over
    eps, that last round took off the accuracy (a fraction of the n attacked points)."""
    drops = [e.rounds[-1].broken / max(n, 1) if e.rounds else 0.0 for e in escalations]
    ok = all(e.converged for e in escalations) and max(drops, default=0.0) <= tol
    return {"ensemble_converged_ok": ok, "ensemble_drop": max(drops, default=0.0)}


def vanishing_gradient(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int,
                       device: str | torch.device) -> float:
    """The fraction of the points of ``x`` classified correctly whose cross-entropy input gradient at the clean
    image is exactly zero in fp32: a softmax saturated past float precision (a margin of ~20 logits or more)
    gives zero gradient, and then FGSM's sign step is zero and the point looks robust to it however weak the
    model is. Not a pass/fail check: the report names it as a cause where FGSM and the converged attack
    disagree."""
    fgsm = create_attack("fgsm", model)
    zero = correct = 0
    with frozen(model), torch.inference_mode(False), torch.enable_grad():
        for i in range(0, len(y), batch_size):
            xb, yb = x[i:i + batch_size].to(device), y[i:i + batch_size].to(device)
            grad, logits = fgsm.input_grad(cross_entropy, xb, yb)
            right = logits.argmax(1) == yb
            zero += int((right & (grad.flatten(1).abs().amax(1) == 0)).sum())
            correct += int(right.sum())
    return zero / max(correct, 1)


def _pgd_vs_fgsm(grid: GridResult, probe: _Probe, pgd_curve: list[float]) -> float:
    """max over eps of acc_pgd - acc_fgsm: both from the grid, or both from the subset (never mixed)."""
    if "pgd" in grid.robust and "fgsm" in grid.robust:
        pgd, fgsm = grid.acc(grid.robust["pgd"]), grid.acc(grid.robust["fgsm"])
    else:
        pgd, fgsm = pgd_curve, probe.acc("fgsm", grid.settings.get("fgsm", {}), grid.eps)
    return max(p - f for p, f in zip(pgd, fgsm, strict=True))


def _square_minus_pgd(probe: _Probe, cfg: dict[str, Any], eps: list[float], curve: dict[float, float]) -> float:
    """min over ``eps`` of Square's accuracy minus PGD's on the subset: below -tol, the gradients mislead."""
    return min(a - curve[e] for e, a in zip(eps, probe.acc("square", cfg, eps), strict=True))


def sanity_checks(model: nn.Module, x: torch.Tensor, y: torch.Tensor, grid: GridResult, checks: Checks,
                  large_eps: float, batch_size: int, device: str | torch.device, *,
                  escalations: Sequence[Escalation] = (), worst_acc: list[float] | None = None, seed: int = 0,
                  progress: str | None = "checks") -> dict[str, Any]:
    """Gradient-masking checks of Carlini et al. 2019; each one fails on a model or setting built to fail
    it (tests/test_checks.py). ``x, y``: the points the grid was measured on; ``checks.subset`` of them
    (seeded choice) are attacked again. "PGD" is the grid's ``pgd`` settings (else PGD's defaults), likewise
    FGSM and Square; ``tol`` is ``checks.tolerance`` (a fraction). ``worst_acc``: the worst case per eps the
    verdicts rest on (default: the grid's).

    1. ``monotone``: PGD accuracy on the subset, one run per eps (grid eps and ``large_eps``), never rises
       by more than tol as eps grows.
    2. ``pgd_vs_fgsm``: acc_pgd <= acc_fgsm + tol at every grid eps.
    3. ``more_iterations`` (without ``escalations``): at e*, PGD at :func:`strong_pgd` lowers accuracy by at
       most tol below PGD. e* is the grid eps whose worst case is furthest from 0 and from clean accuracy;
       the convergence curve (:data:`CONVERGENCE`, then that budget) there is returned as ``convergence``.
       With ``escalations`` the attack the verdicts rest on was itself doubled until it stopped breaking
       points, at every eps: that is this check (check 6), and a PGD the grid may not even run is not probed.
    4. ``large_eps``: PGD accuracy at ``large_eps`` is <= ``checks.large_eps_max_acc`` (a budget that can
       turn any image into flat grey must break any classifier).
    5. ``stronger_attack``: gradient-free Square (the grid's, else ``checks.square_queries`` queries) at
       e* and the largest eps is not more than tol below PGD.
    6. ``ensemble_converged`` (with ``escalations``): :func:`ensemble_check`, at every eps.

    Also measured, not judged: ``vanishing_gradient`` (:func:`vanishing_gradient`, over all of ``x``).
    """
    xf, y = inputs(x, y)
    eps, large_eps = [check_eps(e) for e in grid.eps], check_eps(large_eps)
    if not eps:
        raise BatchoutError("eps: the grid has no eps; allowed: a non-empty list of pixel budgets")
    sub, tol, strong = seeded_subset(len(y), checks.subset, seed), checks.tolerance, strong_pgd(model, grid.settings)
    probes = 2 + (0 if escalations else len(set(CONVERGENCE) | {strong})) + (
        "pgd" not in grid.robust or "fgsm" not in grid.robust)
    with track(progress or "", probes, "probe", enabled=progress is not None) as task:
        probe, pgd_cfg = _Probe(model, xf[sub], y[sub], batch_size, device, task), dict(grid.settings.get("pgd", {}))
        curve_eps = sorted(set(eps) | {large_eps, 0.0})
        curve = dict(zip(curve_eps, probe.acc("pgd", pgd_cfg, curve_eps), strict=True))
        rise = max((b - a for a, b in pairwise(curve[e] for e in curve_eps)), default=0.0)
        pgd_minus_fgsm = _pgd_vs_fgsm(grid, probe, [curve[e] for e in eps])
        star = informative_eps(eps, dict(zip(eps, worst_acc or grid.acc(grid.worst), strict=True)), grid.clean_acc)
        conv = None if escalations else convergence(probe, pgd_cfg, star, strong)
        square = grid.settings.get("square", {"n_queries": checks.square_queries})
        square_minus_pgd = _square_minus_pgd(probe, square, sorted({star, max(eps)}), curve)
    out: dict[str, Any] = {
        "subset": float(len(sub)), "informative_eps": star,
        "monotone_ok": rise <= tol, "monotone_max_rise": rise,
        "pgd_vs_fgsm_ok": pgd_minus_fgsm <= tol, "pgd_minus_fgsm_max": pgd_minus_fgsm,
        "large_eps_ok": curve[large_eps] <= checks.large_eps_max_acc, "large_eps_acc": curve[large_eps],
        "stronger_attack_ok": square_minus_pgd >= -tol, "square_minus_pgd": square_minus_pgd,
        "vanishing_gradient": vanishing_gradient(model, xf, y, batch_size, device),
    }
    if conv is not None:
        drop = curve[star] - conv["acc"][-1]
        out.update(more_iterations_ok=drop <= tol, more_iterations_drop=drop, convergence=conv)
    out.update(ensemble_check(escalations, len(y), tol) if escalations else {})
    out["suspected_gradient_masking"] = not all(v for k, v in out.items() if k.endswith("_ok"))
    return out
