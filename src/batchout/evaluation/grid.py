"""Accuracy of a model under given attack objects over an eps grid, sharing one clean pass.

Usage: ``grid = attack_grid(model, x, y, {"pgd": PGD(model, steps=10)}, [0.1, 0.3], 500, "cpu")``;
by name: ``batchout.evaluation.robust.robust_grid``

Pure: tensors in, JSON-ready dicts out (no files, no tracking). eps is always an L-infinity budget
in pixel units of [0, 1] images; the model normalizes inside, so eps means the same on every data
set. Attacks run in fp32 with autocast off: bf16 logits round small loss differences away, which
weakens gradient attacks and would overstate robustness. Imports no attack: a caller that builds
its own (the tune stage's PGD) depends on that attack's code only.
"""

from __future__ import annotations

import time
from typing import Any

import torch
from torch import nn

from batchout.attacks.base import check_eps
from batchout.errors import BatchoutError
from batchout.evaluation.predict import inputs, predict
from batchout.modes import fp32_region, frozen
from batchout.progress import track


def _robust_flags(
    model: nn.Module, attack: Any, x: torch.Tensor, y: torch.Tensor, eps: float, batch_size: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per example: still classified correctly after the attack (examples are all clean-correct),
    and, for an ensemble, the index of the member that broke it (-1: none, or not an ensemble)."""
    broken = torch.full((len(x),), -1, dtype=torch.long)
    if eps == 0.0 or len(x) == 0:  # x_adv == x: the clean pass already decided
        return torch.ones(len(x), dtype=torch.bool), broken
    flags, members = [], []
    for i in range(0, len(x), batch_size):
        xb = x[i : i + batch_size].to(device, non_blocking=True)
        yb = y[i : i + batch_size].to(device, non_blocking=True)
        x_adv = attack(xb, yb, eps)
        if hasattr(attack, "broken_by"):  # an ensemble (AutoAttack): who broke each point
            members.append(attack.broken_by)
        # Scored in eval mode like the attack ran: a model left in train mode by its caller (the
        # tune stage's freshly trained trial) would otherwise be judged with BatchOut, dropout and
        # batch statistics active, i.e. a different model than the one attacked.
        with torch.inference_mode(), frozen(model), fp32_region(device):
            flags.append(model(x_adv).argmax(1) == yb)
    # one device sync per (attack, eps), none per batch
    return torch.cat(flags).cpu(), (torch.cat(members).cpu() if members else broken)


def _attack_pool(
    model: nn.Module,
    attack: Any,
    x: torch.Tensor,
    y: torch.Tensor,
    pool: torch.Tensor,
    eps: float,
    batch_size: int,
    device: torch.device,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Robust flags for all N examples (attacked where ``pool`` is set, False elsewhere), and the
    breaking member's index per example (-1 elsewhere)."""
    idx = pool.nonzero().squeeze(1)
    flags = torch.zeros(len(y), dtype=torch.bool)
    broken = torch.full((len(y),), -1, dtype=torch.long)
    flags[idx], broken[idx] = _robust_flags(model, attack, x[idx], y[idx], eps, batch_size, device)
    return flags, broken


def _mean(flags: torch.Tensor, n: int) -> float:
    return float(flags.sum()) / max(n, 1)


def flag_string(flags: torch.Tensor) -> str:
    """Per example "1" (robust / correct) or "0", in input order: what paired tests read."""
    return "".join("1" if f else "0" for f in flags.tolist())


def attack_grid(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    attackers: dict[str, Any],
    eps: list[float],
    batch_size: int,
    device: str | torch.device,
    *,
    cascade: bool = False,
    reuse_eps: bool = False,
    progress: str | None = "attack",
) -> dict[str, Any]:
    """Accuracy under every attack at every eps, sharing one clean pass.

    Only examples classified correctly on clean input are attacked; the rest count as
    non-robust at every eps. By default each eps is attacked independently (nothing is carried
    between budgets, so monotonicity stays a real check). ``reuse_eps=True`` carries the sound
    direction only: an example an attack fooled at a smaller eps is fooled at every larger one (its
    adversarial example lies inside the larger ball), so larger budgets attack only the examples
    that attack left robust; an example robust at a larger eps is never assumed robust at a smaller
    one. Reuse can only lower an accuracy, and only where an attack failed at a larger budget on an
    example it broke at a smaller one (tests/test_speedups.py). The model is moved to ``device``.

    Returns ``n``, ``clean_acc``, ``eps``, ``attacks`` (name -> settings), ``worst_acc`` (per eps:
    an example counts only if it survives every attack, AutoAttack style), ``worst_flags`` (per
    eps: that per example, as a string of 0/1 in input order, for paired tests), ``cumulative_acc``
    (name -> per eps: survivors of this attack and all earlier ones, in the given order),
    ``seconds`` (name -> attack time) and, unless ``cascade``, ``robust_acc`` (name -> per eps:
    each attack alone). An ``autoattack`` entry also gives ``breakdown`` (name -> member -> per eps:
    accuracy after that member of the cascade). ``cascade=True`` runs each attack only on the examples still robust to
    the earlier ones (faster; per-attack accuracies are then not measured and left out).
    ``progress``: the description of the progress shown after each (attack, eps), with that attack's
    accuracy ``acc`` and the survivors of every attack so far at that eps (``worst``); None: silent.
    """
    device = torch.device(device)
    if batch_size < 1:
        raise BatchoutError(f"batch_size: got {batch_size}; allowed: an integer >= 1")
    eps = [check_eps(e) for e in eps]
    if reuse_eps:
        eps = sorted(eps)  # carried from each budget to the next larger one
    xf, y = inputs(x, y)
    model.to(device)
    n = len(y)
    correct = predict(model, xf, batch_size, device) == y
    robust: dict[str, list[float]] = {name: [] for name in attackers}
    robust_flags: dict[str, list[str]] = {name: [] for name in attackers}
    cumulative: dict[str, list[float]] = {name: [] for name in attackers}
    seconds = dict.fromkeys(attackers, 0.0)
    worst: list[float] = []
    worst_flags: list[str] = []
    breakdown = {name: {m: [] for m in a.members} for name, a in attackers.items() if hasattr(a, "members")}
    # Per attack (and "worst"): the examples not yet fooled at a smaller eps; all clean-correct ones
    # unless reuse_eps carries the fooled ones over.
    carried = {name: correct.clone() for name in [*attackers, "worst"]}
    task = track(progress or "", len(eps) * len(attackers), "attack", enabled=progress is not None)
    with task:
        for e in eps:
            alive = carried["worst"].clone()  # per example: robust to every attack so far at this eps
            for name, attack in attackers.items():
                start = time.perf_counter()
                pool = alive if cascade else carried[name]
                flags, broken = _attack_pool(model, attack, xf, y, pool, e, batch_size, device)
                for j, member in enumerate(breakdown.get(name, {})):  # accuracy after each ensemble member
                    breakdown[name][member].append(_mean(pool & ~((broken >= 0) & (broken <= j)), n))
                seconds[name] += time.perf_counter() - start
                robust[name].append(_mean(flags, n))
                robust_flags[name].append(flag_string(flags))
                alive &= flags
                cumulative[name].append(_mean(alive, n))
                task.advance(1, attack=name, eps=e, acc=robust[name][-1], worst=cumulative[name][-1])
                if reuse_eps:
                    carried[name] = flags
            if reuse_eps:
                carried["worst"] = alive
            worst.append(_mean(alive, n))
            worst_flags.append(flag_string(alive))
    result: dict[str, Any] = {
        "n": n,
        "clean_acc": _mean(correct, n),
        "eps": eps,
        "attacks": {name: dict(attack.settings) for name, attack in attackers.items()},
        "budgets": {name: attack.describe() for name, attack in attackers.items()},  # in words, for reports
        "worst_acc": worst,
        "worst_flags": worst_flags,
        "clean_flags": flag_string(correct),
        "cumulative_acc": cumulative,
        "seconds": {name: round(s, 3) for name, s in seconds.items()},
        "mode": "cascade" if cascade else "independent",
        "reuse_eps": reuse_eps,
    }
    if not cascade:
        result["robust_acc"] = robust
        result["robust_flags"] = robust_flags
    if breakdown:
        result["breakdown"] = breakdown
    return result
