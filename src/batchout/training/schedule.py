"""Learning-rate schedules as a pure function of the optimizer step, with linear warm-up.

Usage: ``sched = make_scheduler(opt, cfg.schedule, steps_per_epoch=47, epochs=10)``

The seed's runs decayed the LR too early; here milestones are fractions of the whole run and the
schedule is explicit in params and logged with every run.
"""

from __future__ import annotations

import bisect
import math

import torch

from batchout.config import Schedule


def lr_factor(step: int, total_steps: int, warmup_steps: int, sched: Schedule) -> float:
    """Multiplier of the base LR at optimizer step ``step`` (0-based)."""
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    span = max(total_steps - warmup_steps, 1)
    t = min(max(step - warmup_steps, 0) / span, 1.0)  # progress after warm-up, in [0, 1]
    if sched.name == "constant":
        return 1.0
    if sched.name == "multistep":
        return sched.gamma ** bisect.bisect_right(sorted(sched.milestones), t)
    if sched.name == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * t))
    # onecycle: rise over the first 30% (after any warm-up), then cosine down to 1/1000 of the peak.
    if t < 0.3:
        return 0.1 + 0.9 * t / 0.3
    return 1e-3 + (1 - 1e-3) * 0.5 * (1.0 + math.cos(math.pi * (t - 0.3) / 0.7))


def make_scheduler(
    opt: torch.optim.Optimizer, sched: Schedule, steps_per_epoch: int, epochs: int
) -> torch.optim.lr_scheduler.LambdaLR:
    total = steps_per_epoch * epochs
    warmup = round(sched.warmup_epochs * steps_per_epoch)
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, total, warmup, sched))
