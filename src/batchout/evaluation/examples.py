"""Adversarial examples to look at: the first few attacked test images, clean and at every eps.

Usage: ``ex = adversarial_examples(model, x, y, {"fgsm": {}, "pgd": {"steps": 10}}, [0.1, 0.3], "cpu")``;
``ex["x_adv"][i]`` and ``ex["pred_adv"][i]`` are the images and predictions at ``ex["eps"][i]``

Pure: tensors in, numpy arrays out (no files). Per eps and example, the picture is the first attack of
the grid (in params order) whose image the model gets wrong: an example counts as fooled when any
attack fools it, as in the report's worst-case numbers. An example no attack fools, or one already
wrong on clean input (not attacked, as in ``robust_grid``), keeps its clean image and prediction.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from batchout.attacks.base import Attack, check_eps
from batchout.attacks.cascade import Cascade
from batchout.attacks.registry import create_attack
from batchout.evaluation.predict import inputs, predict
from batchout.modes import frozen

N_EXAMPLES = 8  # image pairs per model in the report's grid: one row of a page


def _first_success(model: nn.Module, attackers: list[Attack], x: torch.Tensor, y: torch.Tensor,
                   pred: torch.Tensor, eps: float, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(images, predictions) at ``eps``: each example's first fooling attack, else its clean input.
    A cascade (``batchout.attacks.cascade``): later attacks run only on the examples still correct."""
    cascade = Cascade(model, x, y, robust=pred == y, device=device)
    for attack in attackers if eps > 0.0 else []:
        cascade.run(attack, eps)
    broken = cascade.broken_by >= 0
    return cascade.x_adv, torch.where(broken, cascade.pred, pred)


def adversarial_examples(model: nn.Module, x: torch.Tensor, y: torch.Tensor, attacks: dict[str, dict[str, Any]],
                         eps: list[float], device: str | torch.device, n: int = N_EXAMPLES) -> dict[str, np.ndarray]:
    """The first ``n`` images of ``x`` (uint8, or float pixels in [0, 1]) under the grid ``attacks``.

    Returns ``x_clean`` (n x C x H x W, as given), ``y``, ``pred_clean`` (n), ``eps`` (E, as given),
    ``x_adv`` (E x n x C x H x W, float32 in [0, 1]) and ``pred_adv`` (E x n). The model runs in eval
    mode on ``device`` (moved there); its train/eval mode comes back after.
    """
    device = torch.device(device)
    eps = [check_eps(e) for e in eps]
    xf, yl = inputs(x[:n], y[:n])
    attackers = [create_attack(name, model, **settings) for name, settings in attacks.items()]
    with frozen(model):
        model.to(device)
        pred = predict(model, xf, max(len(xf), 1), device)
        pairs = [_first_success(model, attackers, xf, yl, pred, e, device) for e in eps]
    return {"x_clean": x[:n].cpu().numpy(), "y": yl.numpy(), "pred_clean": pred.numpy(),
            "eps": np.asarray(eps, dtype=np.float64),
            # reshape, not stack: an empty eps list still gives arrays of the documented rank
            "x_adv": np.asarray([xa.numpy() for xa, _ in pairs], np.float32).reshape(len(eps), *xf.shape),
            "pred_adv": np.asarray([p.numpy() for _, p in pairs], np.int64).reshape(len(eps), len(yl))}
