"""Pieces every model shares: input normalisation, the BatchOut-site base class, knob checks.

Usage: ``class Net(SiteNet): ...; self.normalize = Normalize(mean, std)``;
``blocks = int_tuple("blocks", blocks, 3)``
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from batchout.errors import BatchoutError
from batchout.layers import BatchOutSite


class Normalize(nn.Module):
    """``(x - mean) / std`` per channel, for [0, 1] pixels; the first layer of every model so that
    attacks work in pixel space. mean/std are buffers: saved with the weights, moved with ``.to``."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor([float(v) for v in mean]).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor([float(v) for v in std]).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std

    def extra_repr(self) -> str:
        return f"channels={self.mean.numel()}"


class SiteNet(nn.Sequential):
    """Base for models with BatchOut sites: a Sequential, so module order is forward order and
    ``batchout_sites`` lists the ``BatchOutSite`` slots as the forward pass meets them.
    Subclasses set ``default_batchout_sites`` (the paper's placement) and ``final_site`` (the
    input of the last FC)."""

    default_batchout_sites: tuple[str, ...] = ()
    final_site: str = "features"

    @property
    def batchout_sites(self) -> tuple[str, ...]:
        return tuple(m.name for m in self.modules() if isinstance(m, BatchOutSite))


def check_common(num_classes: int, in_channels: int, image_size: int, mean: Sequence[float],
                 std: Sequence[float], min_size: int = 1) -> None:
    """Validate the data-set-derived arguments every factory receives."""
    for key, v, low in (("num_classes", num_classes, 2), ("in_channels", in_channels, 1),
                        ("image_size", image_size, min_size)):
        if isinstance(v, bool) or not isinstance(v, int) or v < low:
            raise BatchoutError(f"{key}: got {v!r}; allowed: an integer >= {low}")
    for key, vals in (("mean", mean), ("std", std)):
        if len(vals) != in_channels:
            raise BatchoutError(f"{key}: got {len(vals)} values; expected one per channel ({in_channels})")
    if any(float(s) <= 0 for s in std):
        raise BatchoutError(f"std: got {list(std)}; allowed: values > 0")


def positive_int(key: str, v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise BatchoutError(f"model_kwargs.{key}: got {v!r}; allowed: an integer >= 1")
    return v


def int_tuple(key: str, v: Any, length: int) -> tuple[int, ...]:
    ok = isinstance(v, Sequence) and not isinstance(v, str) and len(v) == length
    if not ok or any(isinstance(b, bool) or not isinstance(b, int) or b < 1 for b in v):
        raise BatchoutError(f"model_kwargs.{key}: got {v!r}; allowed: a list of {length} integers >= 1")
    return tuple(v)


def float_in(key: str, v: Any, low: float, high: float, low_open: bool = False) -> float:
    """A float in ``[low, high]`` (``(low, high]`` when ``low_open``)."""
    num = isinstance(v, int | float) and not isinstance(v, bool)
    if not num or v > high or v < low or (low_open and v == low):
        bracket = "(" if low_open else "["
        raise BatchoutError(f"model_kwargs.{key}: got {v!r}; allowed: a number in {bracket}{low}, {high}]")
    return float(v)
