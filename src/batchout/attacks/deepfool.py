"""DeepFool: step to the nearest linearised decision boundary, a few times, then overshoot.

Usage: ``x_adv = create_attack("deepfool", model, steps=3)(x, y, eps=0.3)``
"""

from __future__ import annotations

import torch
from torch import nn

from batchout.attacks.base import Attack, register_attack


def _flat_norm(t: torch.Tensor) -> torch.Tensor:
    """Per-example L2 norm, shaped to broadcast over images."""
    return t.flatten(1).norm(dim=1).view(-1, *([1] * (t.dim() - 1)))


@register_attack("deepfool")
class DeepFool(Attack):
    """DeepFool (Moosavi-Dezfooli, Fawzi & Frossard 2016, "DeepFool: a simple and accurate method
    to fool deep neural networks"), the BatchOut paper's second attack.

    Norm: L2 (the attack's own geometry; it takes no budget). Input range: pixels in [0, 1].
    Defaults: ``steps=3`` (the BatchOut paper's setup; allowed 1..5), ``overshoot=0.02``.

    To fit the L-infinity eps grid, the final L2 point is projected onto the eps ball around ``x``
    and onto [0, 1]: reported DeepFool accuracy at eps is that of the clipped DeepFool point, which
    is weaker than unclipped DeepFool and than PGD. Every class is linearised at each step (one
    backward per class, the batch is vectorised); examples already misclassified stop moving.
    """

    label = "DeepFool"

    def __init__(self, model: nn.Module, steps: int = 3, overshoot: float = 0.02) -> None:
        super().__init__(
            model,
            steps=self.check_int("steps", steps, 1, 5),
            overshoot=self.check_float("overshoot", overshoot, 0.0, 1.0),
        )
        self.steps: int = self.settings["steps"]
        self.overshoot: float = self.settings["overshoot"]

    def perturb(self, x: torch.Tensor, y: torch.Tensor, eps: float) -> torch.Tensor:
        r_tot = torch.zeros_like(x)
        adv = x
        active = torch.ones(len(x), dtype=torch.bool, device=x.device)
        for _ in range(self.steps):
            grads, logits = self._class_grads(adv)
            active = active & (logits.argmax(1) == y)
            r_tot = r_tot + torch.where(active.view(-1, *([1] * (x.dim() - 1))), self._step(grads, logits, y), 0.0)
            adv = (x + (1.0 + self.overshoot) * r_tot).clamp(0.0, 1.0)
        return adv

    def _class_grads(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Gradients of every logit w.r.t. the input, K x N x C x H x W, and the logits N x K."""
        x = x.detach().requires_grad_(True)
        logits = self.model(x).float()
        k = logits.shape[1]
        grads = []
        for c in range(k):
            g = None
            if logits.requires_grad:
                (g,) = torch.autograd.grad(logits[:, c].sum(), x, retain_graph=c < k - 1, allow_unused=True)
            grads.append(torch.zeros_like(x) if g is None else g)
        return torch.stack(grads), logits.detach()

    @staticmethod
    def _step(grads: torch.Tensor, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The minimal L2 step to the closest linearised boundary (Algorithm 2 of the paper)."""
        n = len(y)
        rows = torch.arange(n, device=y.device)
        w = grads - grads[y, rows].unsqueeze(0)  # K x N x ...: boundary normals w_k - w_y
        f = (logits - logits[rows, y][:, None]).T  # K x N: logit gaps f_k - f_y
        w_norm = w.flatten(2).norm(dim=2)  # K x N
        dist = f.abs() / (w_norm + 1e-8)
        dist[y, rows] = float("inf")  # the true class is not a boundary
        best = dist.argmin(dim=0)  # N
        w_best = w[best, rows]
        scale = (dist[best, rows] + 1e-4).view(-1, *([1] * (w_best.dim() - 1)))
        return scale * w_best / (_flat_norm(w_best) + 1e-8)
