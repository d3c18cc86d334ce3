"""Prepare stage: one data set's raw files -> ``data/prepared/<name>/`` (seeded train/val/test .npy + meta.json).

Usage: ``meta = run(params.data, "mnist", Paths())`` writes ``data/prepared/mnist/`` atomically.
"""

from __future__ import annotations

from typing import Any

from batchout.config import DataParams
from batchout.data.prepare import describe, make_splits, write_prepared
from batchout.data.sources import load_raw
from batchout.paths import Paths


def run(data: DataParams, name: str, paths: Paths) -> dict[str, Any]:
    """Prepare data set ``name`` into ``paths.prepared(name)``; returns the meta dict."""
    raw = load_raw(data, name, paths.root)
    splits = make_splits(raw, data)
    return write_prepared(paths.prepared(name), splits, describe(name, raw, splits, data, paths.root))
