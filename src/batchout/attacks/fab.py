"""FAB-T: targeted Fast Adaptive Boundary attack, L-infinity, as AutoAttack runs it.

Usage: ``x_adv = create_attack("fab_t", model)(x, y, eps=8 / 255)``
"""

from __future__ import annotations

import torch
from torch import nn

from batchout.attacks.base import Attack, register_attack

ALPHA_MAX, ETA, BETA = 0.1, 1.05, 0.9  # the paper's (and AutoAttack's) constants


def project_to_hyperplane(t: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per row of ``t`` (points in [0, 1]^d): the step ``d`` of least L-infinity norm with
    ``w . (t + d) = b`` and ``t + d`` in [0, 1]^d. Where the box does not reach the hyperplane, the
    step to the box corner that gets closest to it.

    Moving every useful coordinate by ``lam`` (less where the box stops it first) changes ``w . z``
    by ``gain(lam) = sum_i |w_i| min(lam, room_i)``, piecewise linear and increasing; ``lam`` solves
    ``gain(lam) = |b - w . t|`` on the segment found by a sorted search over the ``room_i``."""
    need = b - (w * t).sum(1)
    ws = w * torch.where(need < 0, -1.0, 1.0)[:, None]  # now every row needs ws . d = |need|
    room = torch.where(ws > 0, 1.0 - t, t)  # how far each coordinate can move the useful way
    room_s, order = room.sort(dim=1)
    a_s = ws.abs().gather(1, order)
    clipped = torch.cumsum(a_s * room_s, dim=1)  # gain of the coordinates stopped at room_s[:, :k+1]
    free = a_s.sum(1, keepdim=True) - torch.cumsum(a_s, dim=1)  # weight of those still moving
    gain_at = (clipped + room_s * free).cummax(dim=1).values  # gain(room_s[:, k]); cummax: rounding
    k = torch.searchsorted(gain_at, need.abs()[:, None].contiguous())  # first segment reaching it
    reachable = k[:, 0] < t.shape[1]
    k0 = (k - 1).clamp(0, t.shape[1] - 1)
    done = torch.where(k > 0, clipped.gather(1, k0), 0.0)
    weight = torch.where(k > 0, free.gather(1, k0), a_s.sum(1, keepdim=True))
    lam = ((need.abs()[:, None] - done) / weight.clamp_min(1e-12)).clamp_min(0.0)
    lam = torch.where(reachable[:, None], lam, float("inf"))
    return ws.sign() * torch.minimum(room, lam)


@register_attack("fab_t")
class FABT(Attack):
    """Targeted FAB (Croce & Hein 2020, "Minimally distorted adversarial examples with a fast
    adaptive boundary attack"), in AutoAttack's "standard" setting (its third attack).

    Norm: L-infinity. Input range: pixels in [0, 1]; eps in the same units.
    Defaults: ``steps=100``, ``restarts=1``, ``n_targets=9`` (the top ``C - 1`` other classes by
    clean logit on a model with fewer classes); ``alpha_max=0.1``, ``eta=1.05``, ``beta=0.9`` fixed.

    Each step linearises ``z_t - z_y`` at the iterate, projects both the iterate and ``x`` onto
    that hyperplane within [0, 1] (:func:`project_to_hyperplane`), and moves to a convex mix of the
    two projections (overshoot ``eta``); an iterate that fools the model is kept if it is the
    closest yet and pulled back toward ``x`` by ``beta``. FAB minimises the distance; an example
    counts as broken once a fooling point within eps is found, and then leaves the working batch
    (the reference keeps shrinking it, which changes no robust accuracy). Examples with no fooling
    point within eps come back as ``x``. Restarts after the first start at random in ``eps / 2``.

    Our own implementation rather than a wrapper of ``pyautoattack.fab_pt``: the reference reseeds
    torch's global RNG on every call and runs every point for all iterations; a wrapper would
    also make pyautoattack a runtime dependency. tests/test_reference_attacks.py checks both agree.
    """

    label = "FAB-T"

    def __init__(self, model: nn.Module, steps: int = 100, restarts: int = 1, n_targets: int = 9) -> None:
        super().__init__(
            model,
            steps=self.check_int("steps", steps, 1),
            restarts=self.check_int("restarts", restarts, 1),
            n_targets=self.check_int("n_targets", n_targets, 1),
        )
        self.steps: int = self.settings["steps"]
        self.restarts: int = self.settings["restarts"]
        self.n_targets: int = self.settings["n_targets"]

    @torch.no_grad()
    def perturb(self, x: torch.Tensor, y: torch.Tensor, eps: float) -> torch.Tensor:
        clean = self.model(x).float()
        out, fooled = x.clone(), clean.argmax(1) != y
        order = clean.argsort(dim=1, descending=True)  # column 0 is y for every example still robust
        for rank in range(1, min(self.n_targets, clean.shape[1] - 1) + 1):
            for restart in range(self.restarts):
                todo = (~fooled).nonzero().squeeze(1)
                if todo.numel() == 0:
                    return out
                adv, hit = self._run(x[todo], y[todo], order[todo, rank], eps, restart > 0)
                out[todo[hit]] = adv[hit]
                fooled[todo[hit]] = True
        return out

    def _run(
        self, x0: torch.Tensor, y: torch.Tensor, t: torch.Tensor, eps: float, random_start: bool
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One FAB run toward targets ``t``: per example a fooling point within eps and whether found."""
        n = len(x0)
        found = (x0.clone(), torch.zeros(n, dtype=torch.bool, device=x0.device))
        x1 = x0.clone()
        if random_start:
            u = torch.rand_like(x0) * 2 - 1
            x1 = x0 + 0.5 * eps * u / u.flatten(1).abs().amax(1).clamp_min(1e-12).view(-1, *[1] * (x0.dim() - 1))
            x1 = x1.clamp(0.0, 1.0)
        idx, dist_best = torch.arange(n, device=x0.device), torch.full((n,), float("inf"), device=x0.device)
        for _ in range(self.steps):
            x1 = self._step(x0, x1, y, t)
            adv = self.model(x1).argmax(1) != y
            dist = (x1 - x0).flatten(1).abs().amax(1)
            closer = adv & (dist < dist_best)
            dist_best = torch.where(closer, dist, dist_best)
            found[0][idx[closer]] = x1[closer]
            x1 = torch.where(adv.view(-1, *[1] * (x0.dim() - 1)), x0 + (x1 - x0) * BETA, x1)
            done = dist_best <= eps
            if done.any():  # broken within eps: leave the working batch
                found[1][idx[done]] = True
                keep = ~done
                idx, x0, x1, y, t, dist_best = idx[keep], x0[keep], x1[keep], y[keep], t[keep], dist_best[keep]
                if len(idx) == 0:
                    break
        return found[0], found[1]

    def _step(self, x0: torch.Tensor, x1: torch.Tensor, y: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """One FAB step from ``x1``: the mix of the projections of ``x1`` and ``x0`` onto the
        linearised boundary ``z_t = z_y``, with overshoot ``ETA``, clipped to [0, 1]."""
        with torch.enable_grad():
            g, logits = self.input_grad(_target_gap, x1, torch.stack((y, t), dim=1))
        w = g.flatten(1)
        b = (w * x1.flatten(1)).sum(1) - _target_gap(logits, torch.stack((y, t), dim=1))  # boundary: w . z = b
        d = project_to_hyperplane(torch.cat((x1.flatten(1), x0.flatten(1))), torch.cat((w, w)), torch.cat((b, b)))
        d1, d2 = d[: len(y)], d[len(y) :]
        a1, a2 = d1.abs().amax(1).clamp_min(1e-8), d2.abs().amax(1).clamp_min(1e-8)
        alpha = (a1 / (a1 + a2)).clamp(0.0, ALPHA_MAX)[:, None]
        mixed = (x1.flatten(1) + ETA * d1) * (1 - alpha) + (x0.flatten(1) + ETA * d2) * alpha
        return mixed.clamp(0.0, 1.0).view_as(x1)


def _target_gap(logits: torch.Tensor, y_t: torch.Tensor) -> torch.Tensor:
    """``z_t - z_y`` per example; ``y_t`` holds the label and the target as two columns."""
    return (logits.gather(1, y_t[:, 1:]) - logits.gather(1, y_t[:, :1])).squeeze(1)
