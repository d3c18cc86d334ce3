"""PGD on a scale-invariant margin loss: DLR for 3+ classes, the CW margin for 2 classes.

Usage: ``x_adv = create_attack("pgd_dlr", model, steps=20)(x, y, eps=8 / 255)``
"""

from __future__ import annotations

import torch

from batchout.attacks.base import margin, register_attack
from batchout.attacks.pgd import PGD


def dlr_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Difference of Logits Ratio (Croce & Hein 2020): ``-(z_y - max_{i!=y} z_i) / (z_1 - z_3)``,
    with ``z_1 >= z_2 >= z_3`` the sorted logits. Needs at least 3 classes."""
    top = logits.topk(3, dim=1).values
    return -margin(logits, y) / (top[:, 0] - top[:, 2] + 1e-12)


def cw_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Carlini & Wagner (2017) margin on logits: ``max_{i!=y} z_i - z_y`` (to maximise)."""
    return -margin(logits, y)


@register_attack("pgd_dlr")
class PGDDLR(PGD):
    """PGD (Madry et al. 2018) on the DLR loss of Croce & Hein 2020 ("Reliable evaluation of
    adversarial robustness with an ensemble of diverse parameter-free attacks") for 3+ classes,
    and on the Carlini & Wagner 2017 margin loss for 2 classes (DLR needs a third logit).

    Unlike cross-entropy, these losses do not saturate and are invariant to rescaling the
    logits, so a model with squashed or exploding logits cannot hide behind flat gradients.

    Norm: L-infinity. Input range: pixels in [0, 1]; eps in the same units. Defaults as PGD:
    ``steps=10``, ``step_size=None`` (``2.5 * eps / steps``), ``restarts=1``, ``random_start=True``.
    """

    label = "PGD-DLR"

    def loss(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return dlr_loss(logits, y) if logits.shape[1] >= 3 else cw_loss(logits, y)
