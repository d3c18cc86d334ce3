"""Gradient-masking checks of Carlini et al. 2019 ("On Evaluating Adversarial Robustness") on a
model's robust-accuracy grid: each one a number and a pass/fail flag.

Usage: ``checks = sanity_checks(model, x, y, grid, params.attack.checks, 0.5, 500, "cpu")``
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from batchout.attacks.autoattack import STANDARD, AutoAttack
from batchout.attacks.base import check_eps
from batchout.attacks.registry import create_attack
from batchout.data.loader import seeded_subset
from batchout.errors import BatchoutError
from batchout.evaluation.predict import inputs
from batchout.evaluation.robust import robust_grid
from batchout.progress import QUIET, Task, track
from batchout.reporting.stats import informative_eps

if TYPE_CHECKING:  # only its fields are read: the attack core runs without the params schema
    from batchout.config import Checks


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
        return self._grid(name, cfg, eps)["robust_acc"][name]

    def flags(self, name: str, cfg: dict[str, Any], eps: float) -> torch.Tensor:
        """Per check point: still robust to the attack at ``eps``."""
        return torch.tensor([f == "1" for f in self._grid(name, cfg, [eps])["robust_flags"][name][0]])

    def _grid(self, name: str, cfg: dict[str, Any], eps: list[float]) -> dict[str, Any]:
        grid = robust_grid(self.model, self.x, self.y, {name: cfg}, eps, self.batch_size, self.device, progress=None)
        self.task.advance(1, attack=name, acc=grid["robust_acc"][name][-1])
        return grid


def _paired(
    grid_acc: dict[str, list[float]],
    probe: _Probe,
    name: str,
    cfg: dict[str, Any],
    pgd_curve: list[float],
    eps: list[float],
) -> tuple[list[float], list[float]]:
    """(acc_pgd, acc_name) per grid eps, both from the grid or both from the subset."""
    if "pgd" in grid_acc and name in grid_acc:
        return grid_acc["pgd"], grid_acc[name]
    return pgd_curve, probe.acc(name, cfg, eps)


CONVERGENCE = ((1, 5), (1, 10), (1, 20), (1, 40), (2, 40))  # (restarts, steps) of the convergence curve
ENSEMBLE_FACTOR = 4  # the ensemble check's budget: this many times the grid's steps and queries


def strong_pgd(model: nn.Module, settings: dict[str, dict[str, Any]]) -> tuple[int, int]:
    """(restarts, steps) of the more-iterations check's PGD: 2x the restarts and 4x the steps of the
    strongest gradient attack of the grid (ensemble members included), at least 2 x 40. Always strictly
    more than any of them, so the check can never compare an attack with itself."""
    steps, restarts = 1, 1  # FGSM: one step, no restart
    for name, cfg in settings.items():
        attack = create_attack(name, model, **cfg)
        for part in attack.members.values() if isinstance(attack, AutoAttack) else [attack]:
            steps = max(steps, part.settings.get("steps") or 1)
            restarts = max(restarts, part.settings.get("restarts") or 1)
    return max(2, 2 * restarts), max(40, 4 * steps)


def convergence(probe: _Probe, pgd_cfg: dict[str, Any], eps: float, strong: tuple[int, int]) -> dict[str, Any]:
    """PGD accuracy against steps and restarts at one eps (step size back to its default rule), ending
    at ``strong`` (restarts, steps)."""
    configs = list(dict.fromkeys([*CONVERGENCE, strong]))
    runs = [{**pgd_cfg, "steps": steps, "restarts": restarts, "step_size": None} for restarts, steps in configs]
    acc = [probe.acc("pgd", cfg, [eps])[0] for cfg in runs]
    return {"eps": eps, "restarts": [r for r, _ in configs], "steps": [s for _, s in configs], "acc": acc}


def scaled_ensemble(model: nn.Module, cfg: dict[str, Any], factor: int = ENSEMBLE_FACTOR) -> dict[str, Any]:
    """The same cascade (the same members and targets) with ``factor`` times every member's steps and queries."""
    members = AutoAttack(model, **cfg).members
    return {name: {k: v * factor if k in ("steps", "n_queries") else v for k, v in members[name].settings.items()}
            if name in members else False for name in STANDARD}


def ensemble_convergence(probe: _Probe, grid: dict[str, Any], sub: torch.Tensor, star: float) -> dict[str, Any] | None:
    """The grid's ensemble (``autoattack``) against the same cascade at ENSEMBLE_FACTOR x its steps and
    queries, at ``star`` on the check points ``sub``: how much accuracy the stronger budget takes off
    the ensemble (``drop``) and off the worst case over the whole grid (``worst_drop``, what the
    report's verdicts rest on). None when the grid has no ensemble."""
    cfg = grid.get("attacks", {}).get("autoattack")
    flags = grid.get("robust_flags", {}).get("autoattack")
    if cfg is None or flags is None:
        return None
    at = grid["eps"].index(star)
    strong_cfg = scaled_ensemble(probe.model, cfg)
    strong = probe.flags("autoattack", strong_cfg, star)
    ens = torch.tensor([flags[at][i] == "1" for i in sub.tolist()])
    worst = torch.tensor([grid["worst_flags"][at][i] == "1" for i in sub.tolist()])
    n = max(len(sub), 1)
    return {"eps": star, "factor": ENSEMBLE_FACTOR, "settings": strong_cfg,
            "acc": float(ens.sum()) / n, "acc_strong": float((ens & strong).sum()) / n,
            "drop": float((ens & ~strong).sum()) / n, "worst_drop": float((worst & ~strong).sum()) / n}


def sanity_checks(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    grid_result: dict[str, Any],
    checks: Checks,
    large_eps: float,
    batch_size: int,
    device: str | torch.device,
    *,
    seed: int = 0,
    progress: str | None = "checks",
) -> dict[str, Any]:
    """Gradient-masking checks of Carlini et al. 2019 ("On Evaluating Adversarial Robustness"); each
    one fails on a model or setting built to fail it (tests/test_checks.py).

    ``x, y`` are the examples the grid was measured on; ``checks.subset`` of them (seeded
    choice) are attacked again here. "PGD" is the grid's ``pgd`` settings, or PGD's defaults
    when the grid has no ``pgd``; likewise FGSM. ``tol`` is ``checks.tolerance`` (accuracy, as a
    fraction).

    1. ``monotone``: independent PGD runs on the subset, one per eps (grid eps plus
       ``large_eps``), give accuracies that never rise by more than tol as eps grows.
    2. ``pgd_vs_fgsm``: acc_pgd <= acc_fgsm + tol at every grid eps.
    3. ``more_iterations``: at e*, PGD with 2x the restarts and 4x the steps of the grid's strongest
       gradient attack, at least 2 x 40 (:func:`strong_pgd`; step size back to its default rule),
       lowers accuracy by at most tol below PGD: otherwise PGD had not converged. e* is the
       grid eps whose worst-case accuracy (over every attack of the grid, on all its examples) is
       furthest from 0 and from clean accuracy: there a weaker and a stronger attack can differ.
       The convergence curve (:data:`CONVERGENCE`, then that budget) at e* is returned as ``convergence``.
    4. ``large_eps``: PGD accuracy on the subset at ``large_eps`` is <= ``checks.large_eps_max_acc``
       (a budget that can turn any image into flat grey must break any classifier).
    5. ``stronger_attack``: gradient-free Square (the grid's settings, else ``checks.square_queries``
       queries) at e* and at the largest grid eps is not more than tol below PGD: a black-box attack
       beating the white-box one means the gradients mislead.
    6. ``ensemble_converged`` (only with an ``autoattack`` in the grid): at e*, the same cascade at
       ENSEMBLE_FACTOR x every member's steps and queries lowers the ensemble's accuracy on the subset
       by at most tol: otherwise the ensemble the verdicts rest on had not converged. Returned as
       ``ensemble`` (with ``worst_drop``, the drop of the grid's worst case).

    Check 2 uses the grid's own numbers when it measured both attacks independently; otherwise
    both sides are measured on the subset (never a grid number against a subset one).
    ``progress``: the description of the progress shown after each attack run here; None: silent.
    """
    xf, y = inputs(x, y)
    sub = seeded_subset(len(y), checks.subset, seed)
    grid_acc = grid_result.get("robust_acc", {})
    settings: dict[str, dict[str, Any]] = grid_result.get("attacks", {})
    strong = strong_pgd(model, settings)
    probes = (2 + len(set(CONVERGENCE) | {strong}) + ("pgd" not in grid_acc or "fgsm" not in grid_acc)  # see _paired
              + ("autoattack" in settings))
    task = track(progress or "", probes, "probe", enabled=progress is not None)
    probe = _Probe(model, xf[sub], y[sub], batch_size, device, task)
    eps = [check_eps(e) for e in grid_result["eps"]]
    if not eps:
        raise BatchoutError("eps: the grid has no eps; allowed: a non-empty list of pixel budgets")
    large_eps = check_eps(large_eps)
    pgd_cfg = dict(settings.get("pgd", {}))
    tol = checks.tolerance

    with task:
        curve_eps = sorted(set(eps) | {large_eps, 0.0})
        curve = dict(zip(curve_eps, probe.acc("pgd", pgd_cfg, curve_eps), strict=True))
        rise = max((b - a for a, b in pairwise(curve[e] for e in curve_eps)), default=0.0)
        pgd_curve = [curve[e] for e in eps]

        acc_pgd, acc_fgsm = _paired(grid_acc, probe, "fgsm", settings.get("fgsm", {}), pgd_curve, eps)
        pgd_minus_fgsm = max(p - f for p, f in zip(acc_pgd, acc_fgsm, strict=True))
        worst = dict(zip(eps, grid_result["worst_acc"], strict=True))
        star = informative_eps(eps, worst, grid_result["clean_acc"])
        conv = convergence(probe, pgd_cfg, star, strong)
        drop = curve[star] - conv["acc"][-1]
        square = settings.get("square", {"n_queries": checks.square_queries})
        square_eps = sorted({star, max(eps)})
        square_minus_pgd = min(a - curve[e] for e, a in zip(square_eps, probe.acc("square", square, square_eps),
                                                              strict=True))
        ensemble = ensemble_convergence(probe, grid_result, sub, star)

    out: dict[str, Any] = {
        "subset": float(len(sub)),
        "informative_eps": star,
        "monotone_ok": rise <= tol,
        "monotone_max_rise": rise,
        "pgd_vs_fgsm_ok": pgd_minus_fgsm <= tol,
        "pgd_minus_fgsm_max": pgd_minus_fgsm,
        "more_iterations_ok": drop <= tol,
        "more_iterations_drop": drop,
        "large_eps_ok": curve[large_eps] <= checks.large_eps_max_acc,
        "large_eps_acc": curve[large_eps],
        "stronger_attack_ok": square_minus_pgd >= -tol,
        "square_minus_pgd": square_minus_pgd,
    }
    if ensemble is not None:
        out.update(ensemble_converged_ok=ensemble["drop"] <= tol, ensemble_drop=ensemble["drop"])
    out["suspected_gradient_masking"] = not all(v for k, v in out.items() if k.endswith("_ok"))
    out["convergence"] = conv
    out["ensemble"] = ensemble
    return out
