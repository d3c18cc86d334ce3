"""Clean predictions of a model: the one clean-accuracy path, shared by training's validation and the
attack stage, in eval mode and fp32 (``batchout.modes``).

Usage: ``pred = predict(model, x_uint8, 1000, torch.device("cpu"))``; ``xf, y = inputs(x, y)``

Imports no attack: the train stage runs this and must not depend on the attack code.
"""

from __future__ import annotations

import torch
from torch import nn

from batchout.errors import BatchoutError
from batchout.modes import fp32_region, frozen


def to_float(x: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float [0, 1] (the models normalise inside); float images pass unchanged."""
    return x.float().div_(255.0) if x.dtype == torch.uint8 else x


def as_pixels(x: torch.Tensor) -> torch.Tensor:
    """uint8 images -> float in [0, 1]; float images must already be in [0, 1] (checked)."""
    if x.dtype == torch.uint8:
        return to_float(x)
    if not x.is_floating_point():
        raise BatchoutError(f"images: got dtype {x.dtype}; allowed: uint8 or float pixels in [0, 1]")
    lo, hi = (float(x.min()), float(x.max())) if x.numel() else (0.0, 0.0)
    if lo < 0.0 or hi > 1.0:
        raise BatchoutError(
            f"images: float pixels span [{lo:.3g}, {hi:.3g}]; allowed: [0, 1] (normalize inside the model)"
        )
    return x.float()


def inputs(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if x.dim() != 4:
        raise BatchoutError(f"images: got shape {tuple(x.shape)}; allowed: N x C x H x W")
    if y.shape != x.shape[:1]:
        raise BatchoutError(f"labels: got shape {tuple(y.shape)}; allowed: ({len(x)},), one per image")
    return as_pixels(x), y.long().cpu()  # flags and labels live on the CPU; batches go to the device


@torch.inference_mode()
def predict(model: nn.Module, x: torch.Tensor, batch_size: int, device: torch.device) -> torch.Tensor:
    """Predicted classes (CPU, int64) of uint8 images or float pixels in [0, 1], in batches of
    ``batch_size``, in fp32 and eval mode (the caller's mode comes back after). The one clean-accuracy
    path: training's validation numbers and the attack stage's clean accuracy never disagree."""
    out = []
    with frozen(model), fp32_region(device):
        for i in range(0, len(x), batch_size):
            xb = x[i : i + batch_size].to(device, non_blocking=True)
            xb = to_float(xb)
            out.append(model(xb).argmax(1))
    return torch.cat(out).cpu() if out else torch.zeros(0, dtype=torch.long)
