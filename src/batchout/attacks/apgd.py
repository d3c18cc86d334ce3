"""APGD: Auto-PGD, a PGD with momentum whose step size halves by itself at fixed checkpoints.

Usage: ``x_adv = create_attack("apgd_ce", model)(x, y, eps=8 / 255)``;
``create_attack("apgd_t", model, n_targets=9, steps=100)(x, y, eps=0.3)``

One core (:class:`APGD`) runs the algorithm for a given loss; ``apgd_ce`` and ``apgd_t`` only say
which losses and targets to run, and in what order.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from batchout.attacks.base import Attack, box, project, register_attack

# loss(logits, y, target) -> per-example loss to maximise; ``target`` is ``y`` for untargeted losses.
TargetLoss = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]

MOMENTUM = 0.75  # weight of the new step; 1 - MOMENTUM goes to the previous displacement
RHO = 0.75  # halve when the loss rose in at most this fraction of the steps since the last checkpoint


def checkpoints(steps: int) -> list[int]:
    """Iteration counts after which the step size is checked (Croce & Hein 2020, section 3.2):
    at ``ceil(p_j * steps)`` with ``p_1 = 0.22`` and gaps shrinking by 0.03 to a floor of 0.06.
    For 100 steps: 22, 41, 57, 70, 80, 87, 93, 99. Fractions are kept in hundredths so the
    rounding is exact (``0.22 * 100`` is 22.000000000000004 in floats)."""
    marks, p, gap = set(), 22, 22
    while p <= 100:
        marks.add(-(-p * steps // 100))
        gap = max(gap - 3, 6)
        p += gap
    return sorted(marks)


def halve_mask(
    rises: torch.Tensor, interval: int, best: torch.Tensor, best_at_check: torch.Tensor, halved_before: torch.Tensor
) -> torch.Tensor:
    """Per example, whether to halve the step and restart from the best point: (a) the loss rose in
    at most ``RHO`` of the ``interval`` steps since the last checkpoint, or (b) the step was kept
    at the last checkpoint and the best loss has not improved since."""
    return (rises <= RHO * interval) | (~halved_before & (best <= best_at_check))


def ce_loss(logits: torch.Tensor, y: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits, y, reduction="none")


def targeted_ce_loss(logits: torch.Tensor, y: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``-CE(z, t)``: the reference code's targeted loss for fewer than 4 classes."""
    return -F.cross_entropy(logits, target, reduction="none")


def targeted_dlr_loss(logits: torch.Tensor, y: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Targeted DLR: ``-(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2)``, logits sorted descending."""
    z = logits.topk(4, dim=1).values
    gap = logits.gather(1, y[:, None]).squeeze(1) - logits.gather(1, target[:, None]).squeeze(1)
    return -gap / (z[:, 0] - 0.5 * (z[:, 2] + z[:, 3]) + 1e-12)


def _col(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A per-example vector shaped to broadcast over images."""
    return v.view(-1, *([1] * (like.dim() - 1)))


class APGD(Attack):
    """The APGD core (Croce & Hein 2020, "Reliable evaluation of adversarial robustness with an
    ensemble of diverse parameter-free attacks"), L-infinity, pixels in [0, 1], eps in the same units.

    Each run: a random start ``x + eps * u / max|u|`` (``u ~ U(-1, 1)``, so the largest coordinate
    sits on the boundary), step ``2 * eps``, momentum 0.75 (none on the first step), and at the
    :func:`checkpoints` the per-example :func:`halve_mask` decides to halve the step and restart
    from the best-loss point. An example leaves the working batch at its first misclassified
    iterate (that point is returned); the others return their best-loss point. Examples already
    misclassified at ``x`` are returned unchanged; later runs (restarts, targets) only see the
    examples no earlier run fooled. Randomness comes from torch's global RNG (seed it to repeat).

    Differences from the reference code (``pyautoattack`` 0.2.0): the first steps of the first
    interval are compared with the starting loss (the reference compares with 0), and checkpoints
    are ``ceil(p_j * steps)`` as in the paper (the reference floors the gaps: same for 100 steps).
    ``trace``: set to a list to record ``(iteration, example indices, step sizes)`` at checkpoints.
    """

    def __init__(self, model: nn.Module, **settings: int) -> None:
        super().__init__(model, **{k: self.check_int(k, v, 1) for k, v in settings.items()})
        self.steps: int = self.settings["steps"]
        self.restarts: int = self.settings["restarts"]
        self.trace: list[tuple[int, torch.Tensor, torch.Tensor]] | None = None

    def runs(self, clean: torch.Tensor, y: torch.Tensor) -> list[tuple[TargetLoss, torch.Tensor]]:
        """The (loss, target per example) pairs to run in order, from the clean logits."""
        raise NotImplementedError

    def perturb(self, x: torch.Tensor, y: torch.Tensor, eps: float) -> torch.Tensor:
        lo, hi = box(x, eps)
        with torch.no_grad():
            clean = self.model(x).float()
        out, fooled = x.clone(), clean.argmax(1) != y
        best = torch.full((len(x),), float("-inf"), device=x.device)
        for loss_fn, target in self.runs(clean, y):
            todo = (~fooled).nonzero().squeeze(1)
            if todo.numel() == 0:
                break
            adv, hit, loss = self._run(loss_fn, x[todo], y[todo], target[todo], lo[todo], hi[todo], eps)
            keep = hit | (loss > best[todo])
            out[todo[keep]], best[todo[keep]] = adv[keep], loss[keep]
            fooled[todo[hit]] = True
        return out

    def _eval(self, loss_fn: TargetLoss, x: torch.Tensor, y: torch.Tensor, t: torch.Tensor):
        """Input gradient and per-example loss at ``x``, and which examples it fools."""
        grad, logits = self.input_grad(lambda z, _: loss_fn(z, y, t), x, y)
        return grad, loss_fn(logits, y, t), logits.argmax(1) != y

    def _run(
        self,
        loss_fn: TargetLoss,
        x: torch.Tensor,
        y: torch.Tensor,
        t: torch.Tensor,
        lo: torch.Tensor,
        hi: torch.Tensor,
        eps: float,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One APGD run: the kept point per example, whether it fools the model, and its loss."""
        n = len(x)
        result = (x.clone(), torch.zeros(n, dtype=torch.bool, device=x.device), torch.zeros(n, device=x.device))
        s, fooled = self._start(loss_fn, x, y, t, lo, hi, eps)
        s = _retire(s, fooled, result)
        marks, last = set(checkpoints(self.steps)), 0
        for i in range(self.steps):
            if len(s["idx"]) == 0:
                break
            a, cur = (1.0 if i == 0 else MOMENTUM), s["cur"]
            z = project(cur + _col(s["step"], cur) * s["grad"].sign(), s["lo"], s["hi"])
            new = project(cur + a * (z - cur) + (1 - a) * (cur - s["prev"]), s["lo"], s["hi"])
            grad, loss, fooled = self._eval(loss_fn, new, s["y"], s["t"])
            better = loss > s["best"]
            s.update(
                prev=cur,
                cur=new,
                grad=grad,
                rises=s["rises"] + (loss > s["loss"]),
                loss=loss,
                best=torch.where(better, loss, s["best"]),
                x_best=torch.where(_col(better, new), new, s["x_best"]),
                g_best=torch.where(_col(better, new), grad, s["g_best"]),
            )
            s = _retire(s, fooled, result)
            if i + 1 in marks:
                self._checkpoint(s, i + 1, i + 1 - last)
                last = i + 1
        result[0][s["idx"]], result[2][s["idx"]] = s["x_best"], s["best"]
        return result

    def _start(
        self,
        loss_fn: TargetLoss,
        x: torch.Tensor,
        y: torch.Tensor,
        t: torch.Tensor,
        lo: torch.Tensor,
        hi: torch.Tensor,
        eps: float,
    ) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """The working state at the random start (``idx``: positions in the run's batch), and
        which examples the start already fools."""
        n, u = len(x), torch.rand_like(x) * 2 - 1
        cur = project(x + eps * u / _col(u.flatten(1).abs().amax(1).clamp_min(1e-12), u), lo, hi)
        grad, loss, fooled = self._eval(loss_fn, cur, y, t)
        state = dict(idx=torch.arange(n, device=x.device), y=y, t=t, lo=lo, hi=hi, cur=cur, prev=cur)
        state.update(grad=grad, loss=loss, best=loss, x_best=cur, g_best=grad, best_at_check=loss)
        state.update(step=torch.full((n,), 2.0 * eps, device=x.device), rises=torch.zeros(n, device=x.device))
        state.update(halved=torch.ones(n, dtype=torch.bool, device=x.device))  # (b) needs a kept step first
        return state, fooled

    def _checkpoint(self, s: dict[str, torch.Tensor], iteration: int, interval: int) -> None:
        halve = halve_mask(s["rises"], interval, s["best"], s["best_at_check"], s["halved"])
        back = _col(halve, s["cur"])
        s.update(
            step=torch.where(halve, s["step"] / 2, s["step"]),
            cur=torch.where(back, s["x_best"], s["cur"]),
            grad=torch.where(back, s["g_best"], s["grad"]),
            halved=halve,
            best_at_check=s["best"],
            rises=torch.zeros_like(s["rises"]),
        )
        if self.trace is not None:
            self.trace.append((iteration, s["idx"].clone(), s["step"].clone()))


def _retire(s: dict[str, torch.Tensor], fooled: torch.Tensor, result: tuple[torch.Tensor, ...]) -> dict:
    """Store the fooled examples' current points in ``result`` and drop them from the working batch."""
    if not fooled.any():
        return s
    idx = s["idx"][fooled]
    result[0][idx], result[1][idx], result[2][idx] = s["cur"][fooled], True, s["loss"][fooled]
    return {k: v[~fooled] for k, v in s.items()}


@register_attack("apgd_ce")
class APGDCE(APGD):
    """APGD on the cross-entropy loss (AutoAttack's first attack). See :class:`APGD`.

    Defaults: ``steps=100``, ``restarts=1`` (AutoAttack "standard"); momentum 0.75, step ``2 * eps``.
    """

    label = "APGD-CE"

    def __init__(self, model: nn.Module, steps: int = 100, restarts: int = 1) -> None:
        super().__init__(model, steps=steps, restarts=restarts)

    def runs(self, clean: torch.Tensor, y: torch.Tensor) -> list[tuple[TargetLoss, torch.Tensor]]:
        return [(ce_loss, y)] * self.restarts


@register_attack("apgd_t")
class APGDT(APGD):
    """Targeted APGD (AutoAttack's second attack). See :class:`APGD`.

    One run per target, the top-``n_targets`` other classes by clean logit (the top ``C - 1`` on
    a model with fewer classes), each only on the examples still robust. Loss: targeted DLR with
    4+ classes, else targeted cross-entropy ``-CE(z, t)`` (the reference code's fallback; CIFAR3
    has 3 classes). Defaults: ``steps=100``, ``restarts=1``, ``n_targets=9`` (AutoAttack "standard").
    """

    label = "APGD-T"

    def __init__(self, model: nn.Module, steps: int = 100, restarts: int = 1, n_targets: int = 9) -> None:
        super().__init__(model, steps=steps, restarts=restarts, n_targets=n_targets)
        self.n_targets: int = self.settings["n_targets"]

    def runs(self, clean: torch.Tensor, y: torch.Tensor) -> list[tuple[TargetLoss, torch.Tensor]]:
        classes = clean.shape[1]
        loss = targeted_dlr_loss if classes >= 4 else targeted_ce_loss
        order = clean.argsort(dim=1, descending=True)  # column 0 is y for every example still robust
        return [
            (loss, order[:, r]) for r in range(1, min(self.n_targets, classes - 1) + 1) for _ in range(self.restarts)
        ]
