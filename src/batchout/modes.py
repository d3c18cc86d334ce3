"""How a model is run when it is judged rather than trained: eval mode with frozen parameters, fp32.

Usage: ``with frozen(model), fp32_region(device): logits = model(x)``

Shared by clean accuracy (training's validation, the attack stage) and every attack, so that both
score the same model; needs torch only.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn


@contextlib.contextmanager
def frozen(model: nn.Module) -> Iterator[nn.Module]:
    """Eval mode and no parameter gradients inside; the previous mode and flags come back after.

    Attacks need gradients with respect to the input only: frozen parameters keep ``p.grad``
    untouched and save the weight-gradient work in every backward pass."""
    was_training = model.training
    flags = [(p, p.requires_grad) for p in model.parameters()]
    model.eval()
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield model
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)
        model.train(was_training)


def fp32_region(device: torch.device) -> contextlib.AbstractContextManager:
    """Autocast off: bf16 logits round small loss differences away and can weaken gradient attacks."""
    return torch.autocast(device_type=device.type, enabled=False)
