"""FGSM: one signed-gradient step of size eps.

Usage: ``x_adv = create_attack("fgsm", model)(x, y, eps=0.3)``
"""

from __future__ import annotations

import torch
from torch import nn

from batchout.attacks.base import Attack, cross_entropy, register_attack


@register_attack("fgsm")
class FGSM(Attack):
    """Fast Gradient Sign Method (Goodfellow, Shlens & Szegedy 2015, "Explaining and Harnessing
    Adversarial Examples"): ``x + eps * sign(grad_x CE(f(x), y))``.

    Norm: L-infinity. Input range: pixels in [0, 1]; eps in the same units. No settings (the
    paper's method has none besides eps)."""

    label = "FGSM"

    def __init__(self, model: nn.Module) -> None:
        super().__init__(model)

    def perturb(self, x: torch.Tensor, y: torch.Tensor, eps: float) -> torch.Tensor:
        grad, _ = self.input_grad(cross_entropy, x, y)
        return x + eps * grad.sign()
