"""Build the network a training run asks for: the registered model, sized for the prepared data,
with BatchOut installed as the run's method says.

Usage: ``model = build_model(cfg, load_meta(paths.prepared(cfg.dataset)))``
"""

from __future__ import annotations

from typing import Any

from torch import nn

from batchout.config.run import RunConfig
from batchout.layers.batchout import configure_batchout
from batchout.models.registry import create_model


def build_model(cfg: RunConfig, meta: dict[str, Any]) -> nn.Module:
    """The network for ``cfg`` on the data set described by ``meta`` (prepared meta.json)."""
    c, h, _ = meta["shape"]
    model = create_model(
        cfg.model, num_classes=meta["num_classes"], in_channels=c, image_size=h,
        mean=meta["mean"], std=meta["std"], **cfg.model_kwargs,
    )
    b = cfg.batchout
    configure_batchout(model, cfg.method, b.k, b.n, b.layers)
    return model
