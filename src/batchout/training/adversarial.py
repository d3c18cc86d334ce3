"""Adversarial training's batch: a fraction of each batch replaced by FGSM (Goodfellow et al. 2015)
or PGD (Madry et al. 2018) examples of the model being trained.

Usage: ``x = perturb_batch(model, x, y, cfg)`` (loaded through ``batchout.training.methods``)

Imports FGSM and PGD directly, not the attack registry: an adversarial arm depends on those two
attacks' code only, and no other arm on them.
"""

from __future__ import annotations

import torch
from torch import nn

from batchout.attacks.fgsm import FGSM
from batchout.attacks.pgd import PGD
from batchout.config.run import RunConfig


def perturb_batch(model: nn.Module, x: torch.Tensor, y: torch.Tensor, cfg: RunConfig) -> torch.Tensor:
    """Goodfellow-style: the first ``fraction`` of the batch replaced by adversarial examples. PGD
    examples are the final projected iterates (Madry et al. 2018), not the first that fools."""
    a = cfg.adversarial
    cut = max(1, round(a.fraction * len(x)))
    if a.attack == "fgsm":
        attack = FGSM(model)
    else:
        step = a.step_size if a.step_size is not None else 2.5 * a.eps / a.steps
        attack = PGD(model, steps=a.steps, step_size=step, early_stop=False)
    x_adv = attack(x[:cut], y[:cut], a.eps)
    return torch.cat([x_adv, x[cut:]])
