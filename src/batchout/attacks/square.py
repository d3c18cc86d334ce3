"""Square Attack: gradient-free random search over square patches at the corners of the eps box.

Usage: ``x_adv = create_attack("square", model, n_queries=500)(x, y, eps=8 / 255)``
"""

from __future__ import annotations

import math

import torch
from torch import nn

from batchout.attacks.base import Attack, margin
from batchout.attacks.registry import register_attack

# The paper's p schedule: (fraction of a 10000-query budget, divisor of p_init) -- halve the
# patch area at these points of the run.
_P_SCHEDULE = ((10, 1), (50, 2), (200, 4), (500, 8), (1000, 16), (2000, 32), (4000, 64), (6000, 128), (8000, 256))


def p_selection(p_init: float, it: int, n_queries: int) -> float:
    """Fraction of pixels in the patch at iteration ``it``, rescaled to a 10000-query budget."""
    it = int(it / n_queries * 10000)
    for bound, div in _P_SCHEDULE:
        if it <= bound:
            return p_init / div
    return p_init / 512


def _signs(shape: tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
    return torch.randint(0, 2, shape, device=like.device).to(like.dtype) * 2 - 1


@register_attack("square")
class Square(Attack):
    """Square Attack (Andriushchenko, Croce, Flammarion & Hein 2020, "Square Attack: a
    query-efficient black-box adversarial attack via random search"), untargeted.

    Norm: L-infinity. Input range: pixels in [0, 1]; eps in the same units.
    Defaults: ``n_queries=1000`` (the paper uses 10000; params may cut it), ``p_init=0.8``.
    Loss: the margin ``z_y - max_{i!=y} z_i`` on logits; a candidate is kept when it lowers it.

    Gradient-free, so it sees through masked or obfuscated gradients. Vectorised over the batch
    (each example draws its own patch position and signs); only examples not yet fooled are
    queried; randomness comes from torch's global RNG (seed it for repeatable runs).
    """

    def __init__(self, model: nn.Module, n_queries: int = 1000, p_init: float = 0.8) -> None:
        super().__init__(
            model,
            n_queries=self.check_int("n_queries", n_queries, 1),
            p_init=self.check_float("p_init", p_init, 0.0, 1.0),
        )
        self.n_queries: int = self.settings["n_queries"]
        self.p_init: float = self.settings["p_init"]

    @torch.no_grad()
    def perturb(self, x: torch.Tensor, y: torch.Tensor, eps: float) -> torch.Tensor:
        n, c, h, w = x.shape
        # Start: vertical stripes of +-eps (the paper's initialisation), one query.
        best = (x + eps * _signs((n, c, 1, w), x)).clamp(0.0, 1.0)
        best_margin = margin(self.model(best).float(), y)
        for it in range(self.n_queries - 1):
            todo = (best_margin > 0).nonzero().squeeze(1)
            if todo.numel() == 0:
                break
            s = round(math.sqrt(p_selection(self.p_init, it, self.n_queries) * h * w))  # patch side, pixels
            s = max(1, min(s, min(h, w) - 1))
            cand = self._candidate(x[todo], best[todo], eps, s)
            m = margin(self.model(cand).float(), y[todo])
            better = m < best_margin[todo]
            best_margin[todo] = torch.where(better, m, best_margin[todo])
            best[todo] = torch.where(better.view(-1, 1, 1, 1), cand, best[todo])
        return best

    @staticmethod
    def _candidate(x: torch.Tensor, best: torch.Tensor, eps: float, s: int) -> torch.Tensor:
        """Replace an s x s patch (random position per example) of the perturbation by +-eps per
        channel; where that changes nothing, flip the signs so no query is wasted."""
        n, c, h, w = x.shape
        top = torch.randint(0, h - s + 1, (n, 1), device=x.device)
        left = torch.randint(0, w - s + 1, (n, 1), device=x.device)
        rows = torch.arange(h, device=x.device)[None, :]
        cols = torch.arange(w, device=x.device)[None, :]
        in_rows = (rows >= top) & (rows < top + s)
        in_cols = (cols >= left) & (cols < left + s)
        patch = (in_rows[:, :, None] & in_cols[:, None, :])[:, None]  # n x 1 x h x w
        signs = _signs((n, c, 1, 1), x)
        cand = torch.where(patch, (x + eps * signs).clamp(0.0, 1.0), best)
        same = ((cand - best).abs() < 1e-7).flatten(1).all(dim=1).view(-1, 1, 1, 1)
        flipped = torch.where(patch, (x - eps * signs).clamp(0.0, 1.0), best)
        return torch.where(same, flipped, cand)
