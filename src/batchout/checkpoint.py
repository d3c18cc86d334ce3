"""Model files and resumable checkpoints on disk (atomic writes, ``weights_only`` loads).

Usage: ``save_model(path, model, cfg, meta)``; ``model, cfg, meta = load_model(path)``
"""

from __future__ import annotations

import hashlib
import json
import pickle
from pathlib import Path
from typing import Any

import torch
from torch import nn

from batchout.config import RunConfig
from batchout.errors import BatchoutError
from batchout.io import save_torch
from batchout.layers.batchout import configure_batchout
from batchout.models.registry import create_model

MODEL_FORMAT = "batchout-model/1"
CHECKPOINT_FORMAT = "batchout-checkpoint/1"


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


def fingerprint(cfg: RunConfig, data_sha: dict[str, str]) -> str:
    """Identity of a run's inputs: a checkpoint from other params or other data is never resumed."""
    blob = json.dumps({"cfg": cfg.model_dump(mode="json"), "data": data_sha}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def _load(path: Path, what: str) -> dict[str, Any]:
    try:
        # weights_only: a model file from an untrusted source cannot run code when loaded.
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise BatchoutError(f"{what} {path} not found; run its train stage first (dvc repro)") from None
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, OSError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise BatchoutError(f"{what} {path} is not a loadable {what}: {first}") from None
    if not isinstance(obj, dict) or obj.get("format") not in (MODEL_FORMAT, CHECKPOINT_FORMAT):
        raise BatchoutError(f"{what} {path} is not a batchout {what} (no format tag)")
    return obj


def save_model(path: Path, model: nn.Module, cfg: RunConfig, meta: dict[str, Any]) -> None:
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    save_torch(path, {"format": MODEL_FORMAT, "config": cfg.model_dump(mode="json"), "meta": meta,
                      "state_dict": state})


def load_model(path: Path) -> tuple[nn.Module, RunConfig, dict[str, Any]]:
    obj = _load(Path(path), "model file")
    cfg = RunConfig.model_validate(obj["config"])
    model = build_model(cfg, obj["meta"])
    _load_state(model, obj["state_dict"], path, cfg)
    return model.eval(), cfg, obj["meta"]


def _load_state(model: nn.Module, state: dict[str, torch.Tensor], path: Path, cfg: RunConfig) -> None:
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        reason = " ".join(str(err).split())[:200]
        raise BatchoutError(f"{path}: weights do not fit model {cfg.model!r} ({reason})") from None


def save_checkpoint(path: Path, model: nn.Module, state: Any, fp: str, run_id: str | None) -> None:
    save_torch(path, {
        "format": CHECKPOINT_FORMAT, "fingerprint": fp, "mlflow_run_id": run_id,
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "epoch": state.epoch, "history": state.history, "optimizer": state.optimizer,
        "scheduler": state.scheduler, "rng": state.rng,
    })


def load_checkpoint(path: Path, fp: str) -> dict[str, Any] | None:
    """The checkpoint at ``path`` if it belongs to this exact run (same fingerprint), else None."""
    if not Path(path).is_file():
        return None
    obj = _load(Path(path), "checkpoint")
    return obj if obj.get("fingerprint") == fp else None
