"""Batched, on-device augmentation: random crop after zero padding, and horizontal flip.

Usage: ``x = crop_flip(x, padding=4, flip=True)`` on a float batch N x C x H x W

No per-sample Python work: offsets are drawn for the whole batch and applied by indexing, so it
runs the same way on CPU and GPU.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def crop_flip(x: torch.Tensor, padding: int, flip: bool) -> torch.Tensor:
    n, _, h, w = x.shape
    if padding > 0:
        padded = F.pad(x, (padding, padding, padding, padding))
        dy = torch.randint(0, 2 * padding + 1, (n, 1), device=x.device)
        dx = torch.randint(0, 2 * padding + 1, (n, 1), device=x.device)
        rows = (dy + torch.arange(h, device=x.device)).view(n, 1, h, 1)  # N x 1 x H x 1
        cols = (dx + torch.arange(w, device=x.device)).view(n, 1, 1, w)  # N x 1 x 1 W
        batch = torch.arange(n, device=x.device).view(n, 1, 1, 1)
        chans = torch.arange(x.shape[1], device=x.device).view(1, -1, 1, 1)
        x = padded[batch, chans, rows, cols]
    if flip:
        mask = torch.rand(n, 1, 1, 1, device=x.device) < 0.5
        x = torch.where(mask, x.flip(3), x)
    return x
