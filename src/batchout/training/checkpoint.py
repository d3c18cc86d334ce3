"""Model files and resumable checkpoints on disk (atomic writes, ``weights_only`` loads).

Usage: ``save_model(path, model, cfg, meta)``; ``model, cfg, meta = load_model(path)``;
``check_model_fits(path, cfg, meta, name=..., dataset=..., model=..., method=..., seed=...)``

Refusals are one line naming the file (exit 2 at the CLI): a missing, truncated or corrupt file,
one holding anything but tensors and plain containers (``weights_only`` loads refuse pickled
objects, which could run code), weights that do not fit the stored architecture, or a model file
of another run. A checkpoint of other params or data (fingerprint mismatch) is not an error: it
is ignored with a warning and training restarts from scratch, overwriting it.
"""

from __future__ import annotations

import functools
import hashlib
import json
import pickle
import re
import sys
import zipfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from batchout.config.run import RunConfig
from batchout.errors import BatchoutError
from batchout.io import save_torch, sweep_stale_temps
from batchout.models.build import build_model

MODEL_FORMAT = "batchout-model/1"
CHECKPOINT_FORMAT = "batchout-checkpoint/1"


@functools.cache
def code_digest() -> str:
    """sha256 over this package's Python sources: a checkpoint written by other code is not resumed."""
    root = Path(__file__).resolve().parents[1]  # the whole batchout package
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def fingerprint(cfg: RunConfig, data_sha: dict[str, str]) -> str:
    """Identity of a run's inputs (params, data and code): any other checkpoint is never resumed."""
    blob = json.dumps({"cfg": cfg.model_dump(mode="json"), "data": data_sha, "code": code_digest()},
                      sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def _load(path: Path, what: str) -> dict[str, Any]:
    try:
        # weights_only: a model file from an untrusted source cannot run code when loaded.
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise BatchoutError(f"{what} {path} not found; run its train stage first (dvc repro)") from None
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, OSError, zipfile.BadZipFile,
            KeyError, AttributeError, TypeError, IndexError) as err:  # what truncated/forged files raise
        if isinstance(err, pickle.UnpicklingError) and "unsupported global" in str(err).lower():
            # torch's own text suggests weights_only=False, exactly what must not be done with such a file
            raise BatchoutError(f"{what} {path} holds pickled objects, not just tensors: refused, loading it "
                                f"could run code; {_REDO[what]}") from None
        first = re.sub(r"\x1b\[[0-9;]*m", "", str(err)).strip().split(". ")[0][:160] or type(err).__name__
        raise BatchoutError(f"{what} {path} is not a loadable {what} ({first}); {_REDO[what]}") from None
    if not isinstance(obj, dict) or obj.get("format") not in (MODEL_FORMAT, CHECKPOINT_FORMAT):
        raise BatchoutError(f"{what} {path} is not a batchout {what} (no format tag); {_REDO[what]}")
    lacking = [k for k in _KEYS[obj["format"]] if k not in obj]
    if lacking:
        raise BatchoutError(f"{what} {path} lacks {lacking}; {_REDO[what]}")
    return obj


_REDO = {"model file": "retrain it (its train stage)", "checkpoint": "delete it to train from scratch"}
_KEYS = {MODEL_FORMAT: ("config", "meta", "state_dict"),
         CHECKPOINT_FORMAT: ("fingerprint", "model", "epoch", "history", "optimizer", "scheduler", "rng")}


def save_model(path: Path, model: nn.Module, cfg: RunConfig, meta: dict[str, Any]) -> None:
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    save_torch(path, {"format": MODEL_FORMAT, "config": cfg.model_dump(mode="json"), "meta": meta,
                      "state_dict": state})


def load_model(path: Path) -> tuple[nn.Module, RunConfig, dict[str, Any]]:
    obj = _load(Path(path), "model file")
    try:
        cfg = RunConfig.model_validate(obj["config"])
        model = build_model(cfg, obj["meta"])
    except (ValueError, KeyError, TypeError, BatchoutError) as err:  # pydantic's ValidationError is a ValueError
        reason = " ".join(str(err).split())[:200]
        raise BatchoutError(f"model file {path}: its stored config or meta is unusable ({reason})") from None
    _load_state(model, obj["state_dict"], path, cfg)
    return model.eval(), cfg, obj["meta"]


def check_model_fits(path: Path, cfg: RunConfig, meta: dict[str, Any], data_meta: dict[str, Any],
                     **expected: Any) -> None:
    """Refuse a model file of another run (``expected``: name, dataset, model, method, seed, ...
    as params.yaml says) or one whose input shape or classes differ from the prepared data's."""
    have = cfg.model_dump(mode="json")
    wrong = {k: (have.get(k), v) for k, v in expected.items() if have.get(k) != v}
    for key in ("shape", "num_classes"):
        if meta.get(key) != data_meta.get(key):
            wrong[f"data {key}"] = (meta.get(key), data_meta.get(key))
    if wrong:
        diff = ", ".join(f"{k} {a!r} (expected {b!r})" for k, a, b in ((k, *v) for k, v in wrong.items()))
        raise BatchoutError(f"model file {path} does not belong to this run: {diff}; retrain it (its train stage)")


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
    """The checkpoint at ``path`` if it belongs to this exact run (same fingerprint), else None
    (with a warning on stderr when a checkpoint of other params, data or code is ignored)."""
    path = Path(path)
    sweep_stale_temps(path.parent)  # a kill while saving the last checkpoint leaves its temp here
    if not path.is_file():
        return None
    obj = _load(path, "checkpoint")
    if obj.get("format") != CHECKPOINT_FORMAT:
        raise BatchoutError(f"checkpoint {path} is a model file, not a checkpoint; {_REDO['checkpoint']}")
    if obj["fingerprint"] != fp:
        print(f"warning: ignoring checkpoint {path}: written for other params, data or code; training from scratch",
              file=sys.stderr)
        return None
    return obj


def restore_model(model: nn.Module, ckpt: dict[str, Any], path: Path, cfg: RunConfig) -> None:
    """Load a checkpoint's weights, refusing (one line) weights that do not fit ``model``."""
    _load_state(model, ckpt["model"], path, cfg)
