"""Attack cost in forward and backward passes per example: exact and machine-independent, unlike seconds.

Usage: ``counted = PassCounter(model); attack = create_attack("apgd_ce", counted); attack(x, y, eps)``;
then ``counted.passes()`` -> ``Passes(forward=..., backward=...)``

A forward pass of a batch of B images counts B; a backward pass through the model's output counts the
rows it carries (B for an input gradient of the whole batch). Counting wraps the model, so it sees
every call an attack makes, ours or a reference implementation's (benchmarks/bench_converge.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class Passes:
    """Images run forward, and images whose input gradient was back-propagated through the model."""

    forward: int = 0
    backward: int = 0

    def __add__(self, other: Passes) -> Passes:
        return Passes(self.forward + other.forward, self.backward + other.backward)

    def __sub__(self, other: Passes) -> Passes:
        return Passes(self.forward - other.forward, self.backward - other.backward)

    @property
    def total(self) -> int:
        return self.forward + self.backward

    def as_dict(self) -> dict[str, int]:
        return {"forward": self.forward, "backward": self.backward}


class PassCounter(nn.Module):
    """The wrapped model, counting rows forward and rows back-propagated through its output."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self._forward = 0
        self._backward = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.model(x)
        self._forward += len(x)
        if out.requires_grad:  # the hook runs when a backward pass reaches the logits
            out.register_hook(self._count_backward)
        return out

    def _count_backward(self, grad: torch.Tensor) -> None:
        self._backward += len(grad)

    def passes(self) -> Passes:
        return Passes(self._forward, self._backward)
