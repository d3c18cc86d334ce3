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

from batchout.attacks.base import check_eps
from batchout.data.loader import seeded_subset
from batchout.errors import BatchoutError
from batchout.evaluation.robust import inputs, robust_grid

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

    def acc(self, name: str, cfg: dict[str, Any], eps: list[float]) -> list[float]:
        grid = robust_grid(self.model, self.x, self.y, {name: cfg}, eps, self.batch_size, self.device)
        return grid["robust_acc"][name]


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
) -> dict[str, bool | float]:
    """Gradient-masking checks of Carlini et al. 2019 ("On Evaluating Adversarial Robustness").

    ``x, y`` are the examples the grid was measured on; ``checks.subset`` of them (seeded
    choice) are attacked again here. "PGD" is the grid's ``pgd`` settings, or PGD's defaults
    when the grid has no ``pgd``; likewise FGSM, square and pgd_dlr. ``tol`` is
    ``checks.tolerance`` (accuracy, as a fraction).

    1. ``monotone``: independent PGD runs on the subset, one per eps (grid eps plus
       ``large_eps``), give accuracies that never rise by more than tol as eps grows.
    2. ``pgd_vs_fgsm``: acc_pgd <= acc_fgsm + tol at every grid eps.
    3. ``more_iterations``: PGD with 4x steps and at least 2 restarts (step size back to its
       default rule) on the subset at the largest grid eps is not more than tol above PGD.
    4. ``large_eps``: PGD accuracy on the subset at ``large_eps`` is <= ``checks.large_eps_max_acc``
       (a budget that can turn any image into flat grey must break any classifier).
    5. ``stronger_attack``: the stronger attack -- ``square`` (gradient-free) if the grid has it,
       else ``pgd_dlr`` -- is not more than tol below PGD at any grid eps.

    Checks 2 and 5 use the grid's own numbers when it measured both attacks independently;
    otherwise both sides are measured on the subset (never a grid number against a subset one).
    Returns ``<check>_ok`` flags, the number behind each, ``subset`` and
    ``suspected_gradient_masking`` (any check failed).
    """
    xf, y = inputs(x, y)
    sub = seeded_subset(len(y), checks.subset, seed)
    probe = _Probe(model, xf[sub], y[sub], batch_size, device)
    eps = [check_eps(e) for e in grid_result["eps"]]
    if not eps:
        raise BatchoutError("eps: the grid has no eps; allowed: a non-empty list of pixel budgets")
    large_eps = check_eps(large_eps)
    settings: dict[str, dict[str, Any]] = grid_result.get("attacks", {})
    grid_acc: dict[str, list[float]] = grid_result.get("robust_acc", {})
    pgd_cfg = dict(settings.get("pgd", {}))
    tol = checks.tolerance

    curve_eps = sorted(set(eps) | {large_eps})
    curve = dict(zip(curve_eps, probe.acc("pgd", pgd_cfg, curve_eps), strict=True))
    rise = max((b - a for a, b in pairwise(curve[e] for e in curve_eps)), default=0.0)
    pgd_curve = [curve[e] for e in eps]

    acc_pgd, acc_fgsm = _paired(grid_acc, probe, "fgsm", settings.get("fgsm", {}), pgd_curve, eps)
    pgd_minus_fgsm = max(p - f for p, f in zip(acc_pgd, acc_fgsm, strict=True))

    stronger_pgd = {**pgd_cfg, "steps": 4 * pgd_cfg.get("steps", 10), "step_size": None}
    stronger_pgd["restarts"] = max(2, pgd_cfg.get("restarts", 1))
    gain = probe.acc("pgd", stronger_pgd, [max(eps)])[0] - curve[max(eps)]

    strong = "square" if "square" in settings else "pgd_dlr"
    acc_pgd, acc_strong = _paired(grid_acc, probe, strong, settings.get(strong, {}), pgd_curve, eps)
    strong_minus_pgd = min(s - p for s, p in zip(acc_strong, acc_pgd, strict=True))

    out: dict[str, bool | float] = {
        "subset": float(len(sub)),
        "monotone_ok": rise <= tol,
        "monotone_max_rise": rise,
        "pgd_vs_fgsm_ok": pgd_minus_fgsm <= tol,
        "pgd_minus_fgsm_max": pgd_minus_fgsm,
        "more_iterations_ok": gain <= tol,
        "more_iterations_gain": gain,
        "large_eps_ok": curve[large_eps] <= checks.large_eps_max_acc,
        "large_eps_acc": curve[large_eps],
        "stronger_attack_ok": strong_minus_pgd >= -tol,
        "stronger_minus_pgd_min": strong_minus_pgd,
        "stronger_attack_is_square": strong == "square",
    }
    out["suspected_gradient_masking"] = not all(v for k, v in out.items() if k.endswith("_ok"))
    return out
