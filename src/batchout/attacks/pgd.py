"""PGD: projected signed-gradient ascent on the cross-entropy, with random starts and restarts.

Usage: ``x_adv = create_attack("pgd", model, steps=20, restarts=2)(x, y, eps=0.3)``
"""

from __future__ import annotations

import torch
from torch import nn

from batchout.attacks.base import Attack, LossFn, box, cross_entropy, project, register_attack


@register_attack("pgd")
class PGD(Attack):
    """Projected Gradient Descent (Madry et al. 2018, "Towards Deep Learning Models Resistant to
    Adversarial Attacks") on the cross-entropy loss.

    Norm: L-infinity. Input range: pixels in [0, 1]; eps in the same units.
    Defaults: ``steps=10``; ``step_size=None`` means ``2.5 * eps / steps`` (Madry et al.'s rule,
    so the walk can cross the ball); ``restarts=1``; ``random_start=True`` (uniform in the ball).

    Worst case per example (``early_stop=True``, for evaluation): an iterate that already fools the
    model (seen after at least one step) is kept even if later steps wander back, and later restarts
    run only on the examples no earlier restart fooled. ``early_stop=False`` returns the final
    projected iterate of every walk, as in Madry et al.'s adversarial training (the early-stopped
    variant is closer to Zhang et al. 2020's "friendly" adversarial training, FAT).
    With ``random_start=False, steps=1, step_size=eps`` this is FGSM.
    """

    label = "PGD"

    def __init__(
        self,
        model: nn.Module,
        steps: int = 10,
        step_size: float | None = None,
        restarts: int = 1,
        random_start: bool = True,
        early_stop: bool = True,
    ) -> None:
        super().__init__(
            model,
            steps=self.check_int("steps", steps, 1),
            step_size=self.check_float("step_size", step_size, 0.0, 1.0, none_ok=True),
            restarts=self.check_int("restarts", restarts, 1),
            random_start=self.check_bool("random_start", random_start),
            early_stop=self.check_bool("early_stop", early_stop),
        )
        self.steps: int = self.settings["steps"]
        self.step_size: float | None = self.settings["step_size"]
        self.restarts: int = self.settings["restarts"]
        self.random_start: bool = self.settings["random_start"]
        self.early_stop: bool = self.settings["early_stop"]

    def loss(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The loss to maximise: per-example values or their sum."""
        return cross_entropy(logits, y)

    def perturb(self, x: torch.Tensor, y: torch.Tensor, eps: float) -> torch.Tensor:
        alpha = self.step_size if self.step_size is not None else 2.5 * eps / self.steps
        lo, hi = box(x, eps)
        best, found = self._walk(x, y, lo, hi, eps, alpha)
        if not self.early_stop:  # Madry: the last restart's final iterates, whatever they score
            for _ in range(1, self.restarts):
                best, _ = self._walk(x, y, lo, hi, eps, alpha)
            return best
        for _ in range(1, self.restarts):
            # The previous restart's final iterates were not checked inside the walk.
            with torch.no_grad():
                found |= self.model(best).argmax(1) != y
            todo = (~found).nonzero().squeeze(1)
            if todo.numel() == 0:
                break
            adv, hit = self._walk(x[todo], y[todo], lo[todo], hi[todo], eps, alpha)
            best[todo] = adv
            found[todo] = hit
        return best

    def _walk(
        self, x: torch.Tensor, y: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor, eps: float, alpha: float
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One PGD run: the kept point per example and whether it is known to fool the model."""
        adv = project(x + torch.empty_like(x).uniform_(-eps, eps), lo, hi) if self.random_start else x
        hit = torch.zeros(len(x), dtype=torch.bool, device=x.device)
        loss_fn: LossFn = self.loss
        if not self.early_stop:
            for _ in range(self.steps):
                grad, _ = self.input_grad(loss_fn, adv, y)
                adv = project(adv.add(grad.sign(), alpha=alpha), lo, hi)
            return adv, hit
        # Early exit: an example leaves the batch at its first fooling iterate, which is what it
        # returns anyway, so later steps on it were wasted work (eval mode: no example's gradient
        # depends on the others in the batch; tests/test_speedups.py checks the outputs are equal).
        kept, act = adv.clone(), torch.arange(len(x), device=x.device)
        for t in range(self.steps):
            grad, logits = self.input_grad(loss_fn, adv, y[act])
            if t > 0:  # the logits of the current iterate come free with its gradient
                fooled = logits.argmax(1) != y[act]
                if bool(fooled.any()):
                    kept[act[fooled]], hit[act[fooled]] = adv[fooled], True
                    stay = ~fooled
                    act, adv, grad = act[stay], adv[stay], grad[stay]
                    if act.numel() == 0:
                        return kept, hit
            adv = project(adv.add(grad.sign(), alpha=alpha), lo[act], hi[act])  # 3 kernels: few launches per step
        kept[act] = adv  # the survivors' final iterates (unchecked, like the last restart's)
        return kept, hit
