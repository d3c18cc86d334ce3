"""The one cascade: run attacks one after another, each only on the points every earlier one left robust.

Usage: ``c = Cascade(model, x, y); broken = c.run(attack, eps)``; then ``c.robust`` (per example: no
attack broke it), ``c.broken_by`` (the index of the run that broke it, -1: none), ``c.x_adv`` and
``c.pred`` (the breaking run's image and its prediction)

AutoAttack's members (``autoattack``), the report's example images (``evaluation.examples``) and the
escalation of a model's attack until it converges (``evaluation.converge``) are all this loop. A point
an attack broke stays broken: the cascade's accuracy is the per-example worst case over its runs.
Scoring happens in eval mode and fp32 (``batchout.modes``), like the attacks themselves.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from batchout.modes import fp32_region, frozen

AttackFn = Callable[[torch.Tensor, torch.Tensor, float], torch.Tensor]  # (x, y, eps) -> x_adv


class Cascade:
    """Per-example state of a cascade over ``x, y`` (one device; ``robust``: the points still to attack,
    all by default). ``batch_size`` splits each run into chunks of at most that many points (None: one)."""

    def __init__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, robust: torch.Tensor | None = None,
                 batch_size: int | None = None, device: torch.device | None = None) -> None:
        self.model, self.x, self.y, self.batch_size = model, x, y, batch_size
        self.device = x.device if device is None else device  # where the attacks run
        # per-example flags live with the labels, the adversarial images with the images
        self.robust = torch.ones(len(y), dtype=torch.bool, device=y.device) if robust is None else robust.clone()
        self.broken_by = torch.full((len(y),), -1, dtype=torch.long, device=self.robust.device)
        self.pred = torch.full((len(y),), -1, dtype=torch.long, device=self.robust.device)
        self.x_adv = x.clone()
        self.runs = 0  # runs so far: the next run's index in broken_by

    def run(self, attack: AttackFn, eps: float) -> int:
        """Attack the points still robust at ``eps``; returns how many this run broke."""
        index, self.runs = self.runs, self.runs + 1
        todo = self.robust.nonzero().squeeze(1)
        broken = 0
        for idx in todo.split(self.batch_size or max(len(todo), 1)):
            xb, yb = self.x[idx.to(self.x.device)].to(self.device), self.y[idx.to(self.y.device)].to(self.device)
            adv = attack(xb, yb, eps)
            with torch.no_grad(), frozen(self.model), fp32_region(self.device):
                pred = self.model(adv).argmax(1)
            fooled = pred != yb
            hit = idx[fooled.to(idx.device)]
            self.x_adv[hit.to(self.x.device)] = adv[fooled].to(self.x.device)
            self.pred[hit] = pred[fooled].to(self.pred.device)
            self.robust[hit], self.broken_by[hit] = False, index
            broken += len(hit)
        return broken
