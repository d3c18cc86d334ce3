"""A tiny Normalize-first model trained in a fraction of a second on 8x8 Gaussian blobs, shared
by the attack and evaluation tests.

Usage: ``from tiny_models import ZeroGradient, blobs, train_tiny`` (tests/ is on sys.path under pytest)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from batchout.models.common import Normalize


def blobs(n: int, classes: int = 3, channels: int = 1, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Gaussian blobs on 8x8 images, one centre per class (jittered), plus pixel noise, in [0, 1]."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.tensor([[2.0, 2.0], [2.0, 5.5], [5.5, 3.5]])[:classes]
    y = torch.randint(0, classes, (n,), generator=g)
    c = centres[y] + 0.6 * torch.randn(n, 2, generator=g)
    r = torch.arange(8.0)
    d2 = (r[None, :, None] - c[:, 0, None, None]) ** 2 + (r[None, None, :] - c[:, 1, None, None]) ** 2
    img = torch.exp(-d2 / (2 * 1.5**2)) + 0.05 * torch.randn(n, 8, 8, generator=g)
    return img.clamp(0, 1)[:, None].repeat(1, channels, 1, 1), y


def train_tiny(classes: int = 3, channels: int = 1) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """A Normalize-first MLP fitted to blobs in a fraction of a second; returns it and 200 test images."""
    torch.manual_seed(0)
    x, y = blobs(600, classes, channels)
    model = nn.Sequential(
        Normalize([0.5], [0.25]), nn.Flatten(), nn.Linear(64 * channels, 32), nn.ReLU(), nn.Linear(32, classes)
    )
    params = list(model.parameters())
    velocity = [torch.zeros_like(p) for p in params]
    for _ in range(150):  # full-batch SGD with momentum, written out: torch.optim's first step is slow to import
        grads = torch.autograd.grad(F.cross_entropy(model(x[:400]), y[:400]), params)
        with torch.no_grad():
            for p, v, g in zip(params, velocity, grads, strict=True):
                v.mul_(0.9).add_(g)
                p.sub_(0.05 * v)
    return model, x[400:], y[400:]


class ZeroGradient(nn.Module):
    """Gradient masking: the same function as ``inner`` (so the same true robustness), but the input enters
    only through a detached copy, so every input gradient is zero and gradient attacks cannot move."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x.detach())
