"""Robustness evaluation: accuracy under attack over an eps grid, and checks that it is honest.

Usage: ``grid = robust_grid(model, x, y, {"fgsm": {}, "pgd": {"steps": 10}}, [0.1, 0.3], 500, "cpu")``;
``checks = sanity_checks(model, x, y, grid, params.attack.checks, 0.5, 500, "cpu")``

Pure: tensors in, JSON-ready dicts out (no files, no tracking). eps is always an L-infinity budget
in pixel units of [0, 1] images; the model normalizes inside, so eps means the same on every data
set. Attacks run in fp32 with autocast off: bf16 logits round small loss differences away, which
weakens gradient attacks and would overstate robustness.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from itertools import pairwise
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from batchout.attacks import create_attack, frozen
from batchout.attacks.base import check_eps, fp32_region
from batchout.errors import BatchoutError

if TYPE_CHECKING:  # only its fields are read: the attack core runs without the params schema
    from batchout.config import Checks


def as_pixels(x: torch.Tensor) -> torch.Tensor:
    """uint8 images -> float in [0, 1]; float images must already be in [0, 1]."""
    if x.dtype == torch.uint8:
        return x.float().div_(255.0)
    if not x.is_floating_point():
        raise BatchoutError(f"images: got dtype {x.dtype}; allowed: uint8 or float pixels in [0, 1]")
    lo, hi = (float(x.min()), float(x.max())) if x.numel() else (0.0, 0.0)
    if lo < 0.0 or hi > 1.0:
        raise BatchoutError(
            f"images: float pixels span [{lo:.3g}, {hi:.3g}]; allowed: [0, 1] (normalize inside the model)"
        )
    return x.float()


def _inputs(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if x.dim() != 4:
        raise BatchoutError(f"images: got shape {tuple(x.shape)}; allowed: N x C x H x W")
    if y.shape != x.shape[:1]:
        raise BatchoutError(f"labels: got shape {tuple(y.shape)}; allowed: ({len(x)},), one per image")
    return as_pixels(x), y.long().cpu()  # flags and labels live on the CPU; batches go to the device


@torch.inference_mode()
def predict(model: nn.Module, x: torch.Tensor, batch_size: int, device: torch.device) -> torch.Tensor:
    """Predicted classes (CPU, int64) of float pixels, in batches, fp32, eval mode."""
    out = []
    with frozen(model), fp32_region(device):
        for i in range(0, len(x), batch_size):
            out.append(model(x[i : i + batch_size].to(device, non_blocking=True)).argmax(1))
    return torch.cat(out).cpu() if out else torch.zeros(0, dtype=torch.long)


def _robust_flags(
    model: nn.Module, attack: Any, x: torch.Tensor, y: torch.Tensor, eps: float, batch_size: int, device: torch.device
) -> torch.Tensor:
    """Per example: still classified correctly after the attack (examples are all clean-correct)."""
    if eps == 0.0 or len(x) == 0:  # x_adv == x: the clean pass already decided
        return torch.ones(len(x), dtype=torch.bool)
    flags = []
    for i in range(0, len(x), batch_size):
        xb = x[i : i + batch_size].to(device, non_blocking=True)
        yb = y[i : i + batch_size].to(device, non_blocking=True)
        x_adv = attack(xb, yb, eps)
        with torch.inference_mode(), fp32_region(device):
            flags.append(model(x_adv).argmax(1) == yb)
    return torch.cat(flags).cpu()  # one device sync per (attack, eps), none per batch


def _attack_pool(
    model: nn.Module,
    attack: Any,
    x: torch.Tensor,
    y: torch.Tensor,
    pool: torch.Tensor,
    eps: float,
    batch_size: int,
    device: torch.device,
) -> torch.Tensor:
    """Robust flags for all N examples: attacked where ``pool`` is set, False elsewhere."""
    idx = pool.nonzero().squeeze(1)
    flags = torch.zeros(len(y), dtype=torch.bool)
    flags[idx] = _robust_flags(model, attack, x[idx], y[idx], eps, batch_size, device)
    return flags


def _mean(flags: torch.Tensor, n: int) -> float:
    return float(flags.sum()) / max(n, 1)


def robust_grid(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    attacks: dict[str, dict[str, Any]],
    eps: list[float],
    batch_size: int,
    device: str | torch.device,
    *,
    cascade: bool = False,
) -> dict[str, Any]:
    """Accuracy under every attack at every eps, sharing one clean pass.

    Only examples classified correctly on clean input are attacked; the rest count as
    non-robust at every eps. Each eps is attacked independently (nothing is carried between
    budgets, so monotonicity stays a real check). The model is moved to ``device``.

    Returns ``n``, ``clean_acc``, ``eps``, ``attacks`` (name -> settings), ``worst_acc`` (per eps:
    an example counts only if it survives every attack, AutoAttack style), ``cumulative_acc``
    (name -> per eps: survivors of this attack and all earlier ones, in the given order),
    ``seconds`` (name -> attack time) and, unless ``cascade``, ``robust_acc`` (name -> per eps:
    each attack alone). ``cascade=True`` runs each attack only on the examples still robust to
    the earlier ones (faster; per-attack accuracies are then not measured and left out).
    """
    device = torch.device(device)
    if batch_size < 1:
        raise BatchoutError(f"attack.batch_size: got {batch_size}; allowed: an integer >= 1")
    eps = [check_eps(e) for e in eps]
    xf, y = _inputs(x, y)
    attackers = {name: create_attack(name, model, **settings) for name, settings in attacks.items()}
    model.to(device)
    n = len(y)
    correct = predict(model, xf, batch_size, device) == y
    robust: dict[str, list[float]] = {name: [] for name in attackers}
    cumulative: dict[str, list[float]] = {name: [] for name in attackers}
    seconds = dict.fromkeys(attackers, 0.0)
    worst: list[float] = []
    for e in eps:
        alive = correct.clone()  # per example: robust to every attack so far at this eps
        for name, attack in attackers.items():
            start = time.perf_counter()
            flags = _attack_pool(model, attack, xf, y, alive if cascade else correct, e, batch_size, device)
            seconds[name] += time.perf_counter() - start
            robust[name].append(_mean(flags, n))
            alive &= flags
            cumulative[name].append(_mean(alive, n))
        worst.append(_mean(alive, n))
    result: dict[str, Any] = {
        "n": n,
        "clean_acc": _mean(correct, n),
        "eps": eps,
        "attacks": {name: dict(settings) for name, settings in attacks.items()},
        "worst_acc": worst,
        "cumulative_acc": cumulative,
        "seconds": {name: round(s, 3) for name, s in seconds.items()},
        "mode": "cascade" if cascade else "independent",
    }
    if not cascade:
        result["robust_acc"] = robust
    return result


def _subset(n: int, size: int, seed: int) -> torch.Tensor:
    """A seeded choice of ``size`` example indices (all of them when ``size >= n``), sorted."""
    if size >= n:
        return torch.arange(n)
    gen = torch.Generator().manual_seed(seed)
    return torch.randperm(n, generator=gen)[:size].sort().values


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
    xf, y = _inputs(x, y)
    sub = _subset(len(y), checks.subset, seed)
    probe = _Probe(model, xf[sub], y[sub], batch_size, device)
    eps = [check_eps(e) for e in grid_result["eps"]]
    if not eps:
        raise BatchoutError("attack.eps: the grid has no eps; allowed: a non-empty list of pixel budgets")
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
