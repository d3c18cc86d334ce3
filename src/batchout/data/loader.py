"""The prepared data set folder: meta.json (written and read only here) and checksum-verified
train/val/test tensors.

Usage: ``meta = load_meta(Paths().prepared("mnist")); x, y = load_split(Paths().prepared("mnist"), "train")``

``x`` is a uint8 N x C x H x W tensor (divide by 255 for [0, 1] pixels), ``y`` int64 labels.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from batchout.errors import BatchoutError
from batchout.io import sha256_file

SPLITS = ("train", "val", "test")
META_FORMAT = 1  # meta.json's "format"
META_FILE = "meta.json"


def _missing(folder: Path, what: str) -> BatchoutError:
    name = folder.name
    return BatchoutError(
        f"prepared data {what} missing in {folder}; run `dvc repro prepare@{name}` (or `batchout prepare {name}`)"
    )


def write_meta(folder: Path, meta: dict[str, Any]) -> None:
    """A plain write: the prepare stage builds the folder under a temporary name and swaps it in whole."""
    (Path(folder) / META_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def load_meta(folder: str | Path) -> dict[str, Any]:
    """The ``meta.json`` of a prepared data set folder (``data/prepared/<name>``)."""
    folder = Path(folder)
    path = folder / "meta.json"
    if not path.is_file():
        raise _missing(folder, "meta.json")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise BatchoutError(f"{path}: not valid JSON ({err}); rerun the prepare stage") from None
    required = ("classes", "num_classes", "shape", "counts", "sha256")
    lacking = [k for k in required if not isinstance(meta, dict) or k not in meta]
    if lacking:
        raise BatchoutError(f"{path}: keys {lacking} missing; rerun the prepare stage")
    return meta


def _load_array(path: Path, expected_sha: str | None, verify: bool) -> np.ndarray:
    if not path.is_file():
        raise _missing(path.parent, path.name)
    if verify and sha256_file(path) != expected_sha:
        raise BatchoutError(
            f"{path}: sha256 does not match meta.json; the file was modified or is corrupt, rerun the prepare stage"
        )
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as err:
        raise BatchoutError(f"{path}: not a readable .npy file ({err})") from None


def load_split(folder: str | Path, split: str, verify: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """(uint8 N x C x H x W images, int64 labels) of ``split``; ``verify`` checks sha256 against meta.json."""
    if split not in SPLITS:
        raise BatchoutError(f"split: unknown value {split!r}; allowed: {', '.join(SPLITS)}")
    folder = Path(folder)
    meta = load_meta(folder)
    arrays = []
    for stem in ("x", "y"):
        fname = f"{stem}_{split}.npy"
        arrays.append(_load_array(folder / fname, meta["sha256"].get(fname), verify))
    x, y = arrays
    shape = tuple(meta["shape"])
    if x.dtype != np.uint8 or x.shape[1:] != shape or y.dtype != np.int64 or y.shape != (len(x),):
        raise BatchoutError(
            f"{folder}/x_{split}.npy: got {x.dtype} {x.shape} with labels {y.dtype} {y.shape}; "
            f"expected uint8 N x {' x '.join(map(str, shape))} and int64 (N,)"
        )
    return torch.from_numpy(x), torch.from_numpy(y)


def seeded_subset(n: int, size: int | None, seed: int) -> torch.Tensor:
    """Sorted indices of a seeded choice of ``size`` of ``n`` examples (all of them when ``size`` is
    None or >= n): every model of a data set is scored on the same examples."""
    if size is None or size >= n:
        return torch.arange(n)
    gen = torch.Generator().manual_seed(seed)
    return torch.randperm(n, generator=gen)[:size].sort().values
