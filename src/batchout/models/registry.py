"""Name -> model factory table (timm-style): register with a decorator, build by name.

Usage: ``@register_model("lenet")`` on a factory; ``create_model("lenet", num_classes=10,
in_channels=1, image_size=28, mean=[0.13], std=[0.31])``; ``list_models()``

A factory takes ``(num_classes, in_channels, image_size, mean, std, *, knobs...)``; the knobs are
the ``model_kwargs`` of a run and are checked here (unknown key) and by the factory (bad value).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any

from torch import nn

from batchout.errors import BatchoutError
from batchout.names import MODELS, check_listed

Factory = Callable[..., nn.Module]
_COMMON = ("num_classes", "in_channels", "image_size", "mean", "std")
_REGISTRY: dict[str, Factory] = {}


def register_model(name: str) -> Callable[[Factory], Factory]:
    """Decorator adding ``fn`` to the table under ``name`` (a name may be registered once)."""

    check_listed("model", name, MODELS)

    def add(fn: Factory) -> Factory:
        if name in _REGISTRY and _REGISTRY[name] is not fn:
            raise ValueError(f"model {name!r} is already registered")
        _REGISTRY[name] = fn
        return fn

    return add


def list_models() -> list[str]:
    return sorted(_REGISTRY)


def model_knobs(name: str) -> list[str]:
    """The ``model_kwargs`` keys a model accepts."""
    params = inspect.signature(_factory(name)).parameters
    return [p for p in params if p not in _COMMON]


def _factory(name: str) -> Factory:
    if name not in _REGISTRY:
        raise BatchoutError(f"model: unknown value {name!r}; allowed: {', '.join(list_models())}")
    return _REGISTRY[name]


def create_model(
    name: str,
    num_classes: int,
    in_channels: int,
    image_size: int,
    mean: Sequence[float],
    std: Sequence[float],
    **kwargs: Any,
) -> nn.Module:
    """Build model ``name`` for the given data shape; ``kwargs`` are the model's knobs."""
    fn = _factory(name)
    knobs = model_knobs(name)
    for key in kwargs:
        if key not in knobs:
            allowed = ", ".join(knobs) if knobs else "(none)"
            raise BatchoutError(f"model_kwargs.{key}: unknown key for model {name!r}; allowed: {allowed}")
    return fn(num_classes, in_channels, image_size, mean, std, **kwargs)
