"""Square Attack: gradient-free random search over square patches at the corners of the eps box.

Usage: ``x_adv = create_attack("square", model, n_queries=500)(x, y, eps=8 / 255)``
"""

from __future__ import annotations

import math

import torch
from torch import nn

from batchout.attacks.base import Attack, margin, register_attack

# The paper's p schedule: (last iteration, divisor of p_init) -- the patch area halves after each of
# these iterations of a 10000-query run.
_P_SCHEDULE = ((10, 1), (50, 2), (200, 4), (500, 8), (1000, 16), (2000, 32), (4000, 64), (6000, 128), (8000, 256))


def p_selection(p_init: float, it: int, n_queries: int, rescale: bool = False) -> float:
    """Fraction of pixels in the patch at iteration ``it`` (0-based, after the initial query).

    ``rescale=False`` is AutoAttack's standard Square (``resc_schedule=False`` in the reference code):
    the schedule's iterations are absolute, whatever the budget, so a 5000-query run halves p at the
    same iterations as a 10000-query one. ``rescale=True`` stretches it to ``n_queries`` (the
    reference's stand-alone default): a 5000-query run then halves p twice as often."""
    if rescale:
        it = int(it / n_queries * 10000)
    for bound, div in _P_SCHEDULE:
        if it <= bound:
            return p_init / div
    return p_init / 512


def _signs(shape: list[int], like: torch.Tensor) -> torch.Tensor:
    """Random +-1, drawn as the reference code does (CPU generator, sign of 2 U - 1), so that one torch
    seed gives the reference's draws on any device."""
    return torch.sign(2 * torch.rand(shape) - 1).to(like.device, like.dtype)


def _position(span: int) -> int:
    """A patch offset in [0, span), drawn as the reference code does (floor of span x U)."""
    return int((span * torch.rand([1])).long())


@register_attack("square")
class Square(Attack):
    """Square Attack (Andriushchenko, Croce, Flammarion & Hein 2020, "Square Attack: a
    query-efficient black-box adversarial attack via random search"), untargeted.

    Norm: L-infinity. Input range: pixels in [0, 1]; eps in the same units.
    Defaults: ``n_queries=1000`` (the paper uses 10000; params may cut it), ``p_init=0.8``,
    ``rescale_schedule=False`` (AutoAttack's standard version; see :func:`p_selection`).
    Loss: the margin ``z_y - max_{i!=y} z_i`` on logits; a candidate is kept when it lowers it.

    Gradient-free, so it sees through masked or obfuscated gradients. The L-inf version of
    AutoAttack's reference code step by step, its random draws included: per iteration one patch
    position and one sign per channel shared by the batch, and only examples not yet fooled are
    queried. ``n_queries`` counts the initial query too: the reference's ``n_queries=Q`` is ours
    ``Q + 1``. Randomness comes from torch's global CPU generator (seed it for repeatable runs; the
    same seed reproduces the reference's run, tests/test_reference_attacks.py).
    """

    label = "Square"

    def __init__(self, model: nn.Module, n_queries: int = 1000, p_init: float = 0.8,
                 rescale_schedule: bool = False) -> None:
        super().__init__(
            model,
            n_queries=self.check_int("n_queries", n_queries, 1),
            p_init=self.check_float("p_init", p_init, 0.0, 1.0),
            rescale_schedule=self.check_bool("rescale_schedule", rescale_schedule),
        )
        self.n_queries: int = self.settings["n_queries"]
        self.p_init: float = self.settings["p_init"]
        self.rescale: bool = self.settings["rescale_schedule"]

    @torch.no_grad()
    def perturb(self, x: torch.Tensor, y: torch.Tensor, eps: float) -> torch.Tensor:
        n, c, h, w = x.shape
        # Start: vertical stripes of +-eps (the paper's initialisation), one query.
        best = (x + eps * _signs([n, c, 1, w], x)).clamp(0.0, 1.0)
        best_margin = margin(self.model(best).float(), y)
        for it in range(self.n_queries - 1):
            todo = (best_margin > 0).nonzero().squeeze(1)
            if todo.numel() == 0:
                break
            s = round(math.sqrt(p_selection(self.p_init, it, self.n_queries, self.rescale) * h * w))  # side, pixels
            s = min(max(s, 1), h, w)
            cand = self._candidate(x[todo], best[todo], eps, s)
            m = margin(self.model(cand).float(), y[todo])
            better = m < best_margin[todo]
            best_margin[todo] = torch.where(better, m, best_margin[todo])
            best[todo] = torch.where(better.view(-1, 1, 1, 1), cand, best[todo])
        return best

    @staticmethod
    def _candidate(x: torch.Tensor, best: torch.Tensor, eps: float, s: int) -> torch.Tensor:
        """Move an s x s patch (one position for the batch) of the perturbation by 2 eps per channel
        with random signs, then project back onto the eps box and [0, 1]: the patch lands on the
        box's corners, the rest stays as it was."""
        _, c, h, w = x.shape
        top, left = _position(h - s), _position(w - s)
        delta = torch.zeros(c, h, w, device=x.device, dtype=x.dtype)
        delta[:, top:top + s, left:left + s] = 2.0 * eps * _signs([c, 1, 1], x)
        return torch.min(torch.max(best + delta, x - eps), x + eps).clamp(0.0, 1.0)
