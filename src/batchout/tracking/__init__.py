"""Experiment tracking: the only code that imports MLflow (``store``: where the store is and how to
write to it safely; ``runs``: opening, resuming and closing runs, logging into them; ``datasets``: a
prepared data set as dataset inputs; ``system``: CPU/memory/GPU sampling of a run; ``registry``:
registered models and their aliases). ``meta`` holds what needs no MLflow: the store's URI, metric
names, provenance tags.

Usage: ``from batchout import tracking; tracking.configure(root)``;
``with tracking.start_run("mnist", "mnist-lenet-s0", tags=tracking.run_tags()) as log: log.log_epoch(1, m)``

Must not import: torch at module level (only ``log_model``/``load_model`` do, when called), nor any
other batchout subpackage but ``paths`` and ``errors``. Nothing outside this package imports mlflow.
"""

from __future__ import annotations

import importlib
from typing import Any

# name -> submodule. Resolved on first use, so reading a metric key or the store's URI (``meta``)
# does not pay MLflow's ~2 s import.
_API = {
    "configure": "store",
    "RunLogger": "runs", "load_model": "runs", "log_to_run": "runs", "mark_stale_runs": "runs",
    "start_run": "runs",
    "dataset_inputs": "datasets",
    "sampling_interval_s": "system", "system_metrics": "system",
    "drop_alias": "registry", "model_uri": "registry", "register": "registry", "set_aliases": "registry",
    "flatten": "meta", "metric_key": "meta", "repo_root": "meta", "run_tags": "meta", "tracking_uri": "meta",
}
__all__ = sorted(_API)


def __getattr__(name: str) -> Any:
    if name not in _API:
        raise AttributeError(f"module 'batchout.tracking' has no attribute {name!r}")
    return getattr(importlib.import_module(f"batchout.tracking.{_API[name]}"), name)
